# eli/sampling_params.py: SamplingParams, the per-request generation settings (names as in vLLM),
# and the sampling defaults a model brings (generation_config.json, GGUF general.sampling.*).
#
# Invariants: a SamplingParams that constructed is valid: __post_init__ checks the Python types
# and what C++ never sees (n, stop strings, None for "no logprobs"), then the numeric rules through
# the engine's own validate_sampling_params (runtime/engine/sampling_params.cc), so the engine and
# every front end share one rule set and a bad value fails at construction, not at generate().
# Every refusal is an InvalidRequestError naming the field. (Fields stay assignable; the engine
# checks every request again at admission.) Bounds on amplifying fields (n, stop
# strings, logprobs) are constants here so the server can quote them.
# Structured output (json_schema, json_object, regex, grammar, choice: one at a time) is compiled
# and checked by eli.structured (llguidance) at construction; the per-request matcher is made by
# engine_params() when the caller gives it the model's tokenizer (eli.LLM / AsyncLLM do).
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import os
import pathlib
import warnings
from typing import Any, Optional, Sequence, Union

from .errors import InvalidRequestError

kMaxStopStrings = 64
kMaxStopStringChars = 512
kMaxCacheSaltChars = 1024
kMaxN = 256             # completions per prompt (SamplingParams.n)
kMaxLogprobs = 20       # include/eli/sampling_params.h kMaxLogprobs
kMaxStopTokenId = 2**31 - 1
kMaxLogitBias = 100.0        # include/eli/sampling_params.h kMaxLogitBias (OpenAI's range)
kMaxLogitBiasEntries = 1024  # include/eli/sampling_params.h kMaxLogitBiasEntries

# Sampling when neither the request nor the model says otherwise (see model_sampling_defaults):
# gentle chat defaults. temperature 0.7 keeps replies varied but coherent, and top_p 0.9 trims the
# long tail of unlikely tokens that makes small models derail at temperature 1.0; the same ballpark
# as the defaults chat models ship (Llama 3: 0.6 / 0.9, Qwen2.5: 0.7 / 0.8) and chat front ends use.
# Raw SamplingParams() keeps vLLM's neutral values (temperature 1.0, top_p 1.0).
DEFAULT_SAMPLING: dict = {"temperature": 0.7, "top_p": 0.9}

# generation_config.json keys (HF) and GGUF metadata keys that set SamplingParams fields.
_HF_KEYS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")
_GGUF_KEYS = {"general.sampling.temp": "temperature", "general.sampling.top_p": "top_p",
              "general.sampling.top_k": "top_k", "general.sampling.min_p": "min_p",
              "general.sampling.penalty_repeat": "repetition_penalty"}
_kMaxGenerationConfigBytes = 1 << 20


def _native():
    from . import _eli  # the compiled engine (lazily: importing eli needs no build)

    return _eli


@dataclasses.dataclass
class SamplingParams:
    """How one request samples and when it stops (vLLM's fields and defaults).

    n: completions per prompt (LLM.generate / AsyncLLM.generate return or stream all of them;
    with a seed, completion i uses seed + i). max_tokens: an upper bound; eli.LLM / AsyncLLM stop at
    the context limit with finish_reason "length" when the prompt leaves fewer tokens. seed: an
    integer in [0, 2**64) (negative seeds are refused); None draws from the engine's seed.
    logprobs: None (none) or 0..20 (the sampled token's logprob plus that many top ones).
    prompt_logprobs: None or 0..20, the same for every prompt token (RequestOutput.prompt_logprobs).
    Bad values raise InvalidRequestError at construction, naming the field.
    """
    max_tokens: int = 16
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: Optional[int] = None
    stop: Optional[Union[str, Sequence[str]]] = None
    stop_token_ids: Optional[Sequence[int]] = None
    ignore_eos: bool = False
    logprobs: Optional[int] = None
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    # Prefix-cache salt (as vLLM's cache_salt): requests with different salts never share KV blocks.
    cache_salt: Optional[str] = None
    n: int = 1  # after the fields above, so that positional arguments keep their meaning
    # Prompt logprobs (vLLM's prompt_logprobs): None, or 0..20: RequestOutput.prompt_logprobs holds,
    # per prompt token, {token_id: logprob} of that token plus the top k (None for the first).
    prompt_logprobs: Optional[int] = None
    # Token constraints (applied inside the sampler, on every device).
    min_tokens: int = 0  # EOS and stop_token_ids cannot be sampled before this many tokens
    logit_bias: Optional[dict] = None  # {token id: bias in [-100, 100]} added to the logits
    allowed_token_ids: Optional[Sequence[int]] = None  # only these tokens may be sampled
    # Structured output (one at a time; eli.structured, llguidance).
    json_schema: Optional[Union[dict, str]] = None  # the output is JSON valid against this schema
    json_object: bool = False                       # the output is a JSON object
    regex: Optional[str] = None                     # the output fully matches this regex
    grammar: Optional[str] = None                   # Lark (llguidance dialect) or GBNF grammar
    choice: Optional[Sequence[str]] = None          # the output is exactly one of these strings

    def __post_init__(self) -> None:
        self._check_stop()
        self.stop_token_ids = [_int("stop_token_ids", i, 0, kMaxStopTokenId) for i in
                               _seq("stop_token_ids", self.stop_token_ids)]
        self.n = _int("n", self.n, 1, kMaxN)
        self.max_tokens = _int("max_tokens", self.max_tokens, -(2**63), 2**63 - 1)
        self.top_k = _int("top_k", self.top_k, -(2**63), 2**63 - 1)
        for name in ("temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty"):
            setattr(self, name, _float(name, getattr(self, name)))
        for name in ("ignore_eos", "include_stop_str_in_output", "skip_special_tokens"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidRequestError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.seed is not None:
            self.seed = _int("seed", self.seed, 0, 2**64 - 1,
                             hint=" (an integer in [0, 2**64); negative seeds are not accepted)")
        if self.logprobs is not None:
            self.logprobs = _int("logprobs", self.logprobs, 0, kMaxLogprobs,
                                 hint=" (None for no logprobs; -1 is not a value here)")
        if self.prompt_logprobs is not None:
            self.prompt_logprobs = _int("prompt_logprobs", self.prompt_logprobs, 0, kMaxLogprobs,
                                        hint=" (None for no prompt logprobs)")
        if self.cache_salt is not None and (not isinstance(self.cache_salt, str) or not self.cache_salt
                                            or len(self.cache_salt) > kMaxCacheSaltChars):
            raise InvalidRequestError(f"cache_salt must be a non-empty string of at most {kMaxCacheSaltChars} "
                                      f"characters")
        self._check_token_constraints()
        if self.choice is not None and isinstance(self.choice, tuple):
            self.choice = list(self.choice)
        self._structured_grammar()  # compiles and checks the structured-output field
        # The numeric rules (ranges, NaN, ...) are the engine's: one rule set for every front end.
        _native().validate_sampling_params(self.engine_params(), kMaxStopTokenId + 1)

    def _check_token_constraints(self) -> None:
        self.min_tokens = _int("min_tokens", self.min_tokens, 0, 2**63 - 1)
        if self.min_tokens > self.max_tokens:
            raise InvalidRequestError(f"min_tokens ({self.min_tokens}) must be <= max_tokens ({self.max_tokens})")
        if self.logit_bias is not None:
            if not isinstance(self.logit_bias, dict):
                raise InvalidRequestError(f"logit_bias must be a dict of token id -> bias, got {self.logit_bias!r}")
            if len(self.logit_bias) > kMaxLogitBiasEntries:
                raise InvalidRequestError(f"logit_bias: at most {kMaxLogitBiasEntries} entries allowed, got "
                                          f"{len(self.logit_bias)}")
            bias = {}
            for k, v in self.logit_bias.items():
                if isinstance(k, str) and k.strip().lstrip("-").isdigit():
                    k = int(k)  # JSON object keys are strings (OpenAI's logit_bias)
                tid = _int("logit_bias key", k, 0, kMaxStopTokenId, hint=" (a token id)")
                b = _float(f"logit_bias[{tid}]", v)
                if abs(b) > kMaxLogitBias:
                    raise InvalidRequestError(f"logit_bias[{tid}] must be in [-100, 100], got {b}")
                if tid in bias:
                    raise InvalidRequestError(f"logit_bias: token id {tid} is listed twice")
                bias[tid] = b
            self.logit_bias = bias
        if self.allowed_token_ids is not None:
            ids = [_int("allowed_token_ids", i, 0, kMaxStopTokenId) for i in _seq("allowed_token_ids", self.allowed_token_ids)]
            if not ids:
                raise InvalidRequestError("allowed_token_ids must not be empty (None allows every token)")
            self.allowed_token_ids = ids
        if not isinstance(self.json_object, bool):
            raise InvalidRequestError(f"json_object must be True or False, got {self.json_object!r}")

    def _structured_grammar(self) -> Optional[str]:
        """The llguidance grammar of the structured-output field (None if none is set)."""
        from .structured.grammar import grammar_for, which_field

        field = which_field({f: getattr(self, f) for f in ("json_schema", "json_object", "regex", "grammar", "choice")})
        if field is None:
            return None
        value = getattr(self, field)
        key = (field, json.dumps(value, sort_keys=True, default=repr))
        cached = self.__dict__.get("_grammar_cache")
        if cached is None or cached[0] != key:
            cached = (key, grammar_for(field, value))
            self.__dict__["_grammar_cache"] = cached
        return cached[1]

    @property
    def structured(self) -> bool:
        """Whether a structured-output field is set."""
        return self._structured_grammar() is not None

    def _check_stop(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.stop is not None and not isinstance(self.stop, (list, tuple)):
            raise InvalidRequestError(f"stop must be a string or a list of strings, got {self.stop!r}")
        self.stop = list(self.stop or [])
        if len(self.stop) > kMaxStopStrings:
            raise InvalidRequestError(f"at most {kMaxStopStrings} stop strings are allowed, got {len(self.stop)}")
        for s in self.stop:
            if not isinstance(s, str) or not s:
                raise InvalidRequestError(f"stop strings must be non-empty strings, got {s!r}")
            if len(s) > kMaxStopStringChars:
                raise InvalidRequestError(f"a stop string is {len(s)} characters; the limit is {kMaxStopStringChars}")

    def completions(self) -> list["SamplingParams"]:
        """The n single-completion params of this request: completion i uses seed + i (mod 2**64)
        when a seed is set, so the completions differ (as the OpenAI server does)."""
        if self.n == 1:
            return [self]
        out = []
        for i in range(self.n):
            seed = None if self.seed is None else (self.seed + i) % 2**64
            out.append(dataclasses.replace(self, n=1, seed=seed))
        return out

    def engine_params(self, extra_stop_ids: Sequence[int] = (), max_tokens: Optional[int] = None,
                      model: Optional[tuple] = None):
        """The engine's typed SamplingParams (include/eli/sampling_params.h). `extra_stop_ids` (the
        tokenizer's EOS ids) apply unless ignore_eos; `max_tokens` overrides the field (the context
        cap of LLM.generate). `model` = (tokenizer, vocab_size, eos_ids): with it, a structured
        field gets its per-request constraint (a fresh llguidance matcher); without it, none is
        attached (what validation needs)."""
        stop_ids = list(self.stop_token_ids or [])
        if not self.ignore_eos:
            stop_ids += [i for i in extra_stop_ids if i not in stop_ids]
        p = _native().SamplingParams()
        p.max_tokens = self.max_tokens if max_tokens is None else max_tokens
        p.temperature = self.temperature
        p.top_k = self.top_k
        p.top_p = self.top_p
        p.min_p = self.min_p
        p.repetition_penalty = self.repetition_penalty
        p.presence_penalty = self.presence_penalty
        p.frequency_penalty = self.frequency_penalty
        p.has_seed = self.seed is not None
        p.seed = self.seed or 0
        p.stop_token_ids = stop_ids
        p.ignore_eos = self.ignore_eos
        p.logprobs = -1 if self.logprobs is None else self.logprobs
        p.cache_salt = _salt64(self.cache_salt)
        p.prompt_logprobs = -1 if self.prompt_logprobs is None else self.prompt_logprobs
        p.min_tokens = min(self.min_tokens, p.max_tokens)
        p.logit_bias = sorted((self.logit_bias or {}).items())
        p.allowed_token_ids = list(self.allowed_token_ids or [])
        grammar = self._structured_grammar()
        if grammar is not None and model is not None:
            from .structured.constraint import make_constraint

            tokenizer, vocab_size, eos_ids = model
            p.constraint = make_constraint(grammar, tokenizer, vocab_size, eos_ids)
        return p

    @classmethod
    def from_dict(cls, fields: dict, defaults: Optional[dict] = None) -> "SamplingParams":
        """SamplingParams from a dict of its fields over `defaults` (e.g. the model's); an unknown
        key is an InvalidRequestError naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        for k in fields:
            if k not in known:
                raise InvalidRequestError(f"unknown SamplingParams field {k!r}; the fields are: {', '.join(sorted(known))}")
        return cls(**{**(defaults or {}), **fields})


def _seq(name: str, v) -> list:
    if v is None:
        return []
    if isinstance(v, (str, bytes, dict)) or not hasattr(v, "__iter__"):
        raise InvalidRequestError(f"{name} must be a list of integers, got {v!r}")
    return list(v)


def _int(name: str, v, lo: int, hi: int, hint: str = "") -> int:
    # The C++ fields are int32/int64/uint64: values past them are invalid requests, not cast errors.
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise InvalidRequestError(f"{name} must be an integer, got {v!r}")
    v = int(v)
    if not lo <= v <= hi:
        raise InvalidRequestError(f"{name} must be in [{lo}, {hi}], got {v}{hint}")
    return v


def _float(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise InvalidRequestError(f"{name} must be a number, got {v!r}")
    try:
        f = float(v)
    except (OverflowError, ValueError):
        raise InvalidRequestError(f"{name} must be a finite number, got {v!r}") from None
    if not math.isfinite(f):
        raise InvalidRequestError(f"{name} must be a finite number, got {f}")
    return f


# ---- the model's defaults -----------------------------------------------------------------------

def _read_generation_config(model_path: str) -> dict:
    path = pathlib.Path(model_path) / "generation_config.json"
    try:
        if not path.is_file() or path.stat().st_size > _kMaxGenerationConfigBytes:
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def model_sampling_defaults(model_path: Optional[str] = None, gguf_metadata: Optional[dict] = None) -> tuple[dict, str]:
    """(values, source): the SamplingParams fields a request gets when it does not set them.

    From the model when it has any (an HF directory's generation_config.json: temperature, top_p,
    top_k, min_p, repetition_penalty; a GGUF's general.sampling.* keys), the rest at SamplingParams'
    neutral values, as vLLM does; otherwise DEFAULT_SAMPLING ("eli's chat defaults"). Values that
    would not validate are dropped with a warning."""
    found: dict[str, Any] = {}
    source = ""
    if gguf_metadata:
        found = {field: gguf_metadata[key] for key, field in _GGUF_KEYS.items() if key in gguf_metadata}
        source = "GGUF general.sampling.*"
    elif model_path is not None and os.path.isdir(model_path):
        gen = _read_generation_config(model_path)
        found = {k: gen[k] for k in _HF_KEYS if k in gen and gen[k] is not None}
        source = "generation_config.json"
    good = {}
    for k, v in found.items():
        if k == "top_k" and isinstance(v, float) and v.is_integer():
            v = int(v)
        try:
            SamplingParams(**{k: v})
        except InvalidRequestError as e:
            warnings.warn(f"{source}: ignoring {k}={v!r}: {e}", stacklevel=2)
            continue
        good[k] = v
    if not good:
        return dict(DEFAULT_SAMPLING), "eli's chat defaults"
    return good, source


def describe_defaults(values: Optional[dict] = None) -> str:
    """'temperature 0.7, top_p 0.9': how --help and logs show sampling defaults."""
    values = DEFAULT_SAMPLING if values is None else values
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())


def _salt64(salt: Optional[str]) -> int:
    """The engine's 64-bit prefix-cache salt of a salt string (0: none; never 0 for a string)."""
    if salt is None:
        return 0
    h = int.from_bytes(hashlib.blake2b(salt.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
    return h or 1
