# eli/server/fim.py: fill-in-the-middle prompts for the completions `suffix` field.
#
# A model can fill in the middle when its vocabulary holds one of the known families' FIM tokens
# (prefix / suffix / middle markers); the prompt is then built from token ids in prefix-suffix-
# middle order (PSM, what every family below was trained with): [BOS] PRE prefix SUF suffix MID.
# The client's prefix and suffix texts are encoded on their own, so they never become markers.
# A model without FIM tokens gets a 400 that says so (never a silent plain completion).
from __future__ import annotations

from typing import Optional

from .protocol import ApiError

# (family, prefix marker, suffix marker, middle marker), most specific first.
FIM_FAMILIES = (
    ("qwen/starcoder2/codegemma", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    ("starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    ("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>"),
    ("deepseek-coder", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
)


def fim_tokens(tokenizer) -> Optional[tuple[str, int, int, int]]:
    """(family, prefix id, suffix id, middle id) of the first family whose three markers are all
    single tokens of the vocabulary, or None."""
    for family, pre, suf, mid in FIM_FAMILIES:
        ids = [tokenizer.token_to_id(t) for t in (pre, suf, mid)]
        if all(i is not None for i in ids):
            return (family, ids[0], ids[1], ids[2])
    return None


def _leading_special(tokenizer) -> list[int]:
    """The ids the tokenizer puts before any text (BOS when the model adds one)."""
    with_special = tokenizer.encode("a", add_special_tokens=True)
    plain = tokenizer.encode("a", add_special_tokens=False)
    if plain and with_special[len(with_special) - len(plain):] == plain:
        return with_special[:len(with_special) - len(plain)]
    return []


def fim_prompt_ids(tokenizer, prefix: str, suffix: str) -> list[int]:
    """Token ids of a fill-in-the-middle prompt; ApiError(400) when the model has no FIM tokens."""
    found = fim_tokens(tokenizer)
    if found is None:
        names = ", ".join(f"{pre} {suf} {mid}" for _, pre, suf, mid in FIM_FAMILIES)
        raise ApiError(400, "suffix needs a model trained for fill-in-the-middle; this model's vocabulary has "
                       f"no FIM tokens (looked for: {names})", param="suffix", code="fim_not_supported")
    _, pre, suf, mid = found
    try:
        p = tokenizer.encode(prefix, add_special_tokens=False, parse_special=False) if prefix else []
        s = tokenizer.encode(suffix, add_special_tokens=False, parse_special=False) if suffix else []
    except (ValueError, TypeError) as e:
        raise ApiError(400, f"the prompt could not be tokenized: {e}", param="prompt") from None
    return _leading_special(tokenizer) + [pre] + p + [suf] + s + [mid]
