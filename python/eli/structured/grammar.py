# eli/structured/grammar.py: a SamplingParams structured-output field -> an llguidance grammar
# string, validated (without a tokenizer) so a bad schema, regex or grammar is refused when the
# SamplingParams is built, with an InvalidRequestError naming the field.
#
# Fields (one at a time): json_schema (dict or JSON string: the subset llguidance supports, which
# covers OpenAI strict mode and pydantic: objects, arrays, enums, anyOf/oneOf, $ref/$defs, string
# formats and patterns, min/max items and lengths), json_object (any JSON object), regex (Rust
# regex syntax, full match), grammar (Lark in llguidance's dialect, e.g. with %json; or GBNF as
# llama.cpp writes it, converted to Lark), choice (a list of strings: exactly one of them).
from __future__ import annotations

import json
from typing import Any, Optional

from ..errors import InvalidRequestError

STRUCTURED_FIELDS = ("json_schema", "json_object", "regex", "grammar", "choice")
# JSON layout: json.dumps' separators and no other whitespace (llguidance's flexible whitespace
# lets a model emit newlines and spaces without end). A schema's "x-guidance" key overrides these.
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
kMaxGrammarChars = 1 << 20   # json_schema / regex / grammar text (after JSON encoding)
kMaxChoices = 1024
kMaxChoiceChars = 64 * 1024  # all choices together


def _llg():
    try:
        import llguidance
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise InvalidRequestError(f"structured output needs the llguidance package ({e})") from None
    return llguidance


def _looks_like_gbnf(text: str) -> bool:
    return "::=" in text


def grammar_for(field: str, value: Any) -> str:
    """The llguidance grammar of one structured-output field; InvalidRequestError naming the field
    when it is malformed (wrong type, bad JSON schema, bad regex, bad grammar)."""
    llg = _llg()
    try:
        if field == "json_schema":
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError as e:
                    raise InvalidRequestError(f"json_schema: not valid JSON: {e}") from None
            if isinstance(value, bool) or not isinstance(value, dict):
                raise InvalidRequestError(f"json_schema must be a JSON schema object (a dict or its JSON text), "
                                          f"got {type(value).__name__}")
            text = json.dumps(value)
            _check_size(field, text)
            grammar = llg.LLMatcher.grammar_from_json_schema(text, defaults=dict(JSON_OPTIONS))
        elif field == "json_object":
            grammar = llg.LLMatcher.grammar_from_json_schema('{"type": "object"}', defaults=dict(JSON_OPTIONS))
        elif field == "regex":
            _check_str(field, value)
            grammar = llg.LLMatcher.grammar_from_regex(value)
        elif field == "grammar":
            _check_str(field, value)
            grammar = llg.grammar_from("gbnf" if _looks_like_gbnf(value) else "lark", value)
        elif field == "choice":
            grammar = _choice_grammar(llg, value)
        else:
            raise InvalidRequestError(f"unknown structured-output field {field!r}")
    except InvalidRequestError:
        raise
    except (ValueError, TypeError) as e:
        raise InvalidRequestError(f"{field}: {e}") from None
    err = llg.LLMatcher.validate_grammar(grammar)
    if err:
        raise InvalidRequestError(f"{field}: {err.strip()}")
    return grammar


def _check_str(field: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"{field} must be a non-empty string, got {value!r}")
    _check_size(field, value)


def _check_size(field: str, text: str) -> None:
    if len(text) > kMaxGrammarChars:
        raise InvalidRequestError(f"{field} is {len(text)} characters; the limit is {kMaxGrammarChars}")


def _choice_grammar(llg, value: Any) -> str:
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple)) or not value:
        raise InvalidRequestError(f"choice must be a non-empty list of strings, got {value!r}")
    if len(value) > kMaxChoices:
        raise InvalidRequestError(f"choice: at most {kMaxChoices} choices are allowed, got {len(value)}")
    if not all(isinstance(c, str) and c for c in value):
        raise InvalidRequestError("choice: every choice must be a non-empty string")
    if sum(len(c) for c in value) > kMaxChoiceChars:
        raise InvalidRequestError(f"choice: the choices total more than {kMaxChoiceChars} characters")
    # Each choice as a Lark string literal (JSON string escapes are Lark's).
    lark = "start: " + " | ".join(json.dumps(c) for c in value) + "\n"
    return llg.LLMatcher.grammar_from_lark(lark)


def which_field(values: dict) -> Optional[str]:
    """The one structured field set in `values` (None if none); InvalidRequestError if several."""
    set_fields = [f for f in STRUCTURED_FIELDS if values.get(f) not in (None, False)]
    if len(set_fields) > 1:
        raise InvalidRequestError(f"only one of {', '.join(STRUCTURED_FIELDS)} may be set, got "
                                  f"{', '.join(set_fields)}")
    return set_fields[0] if set_fields else None
