# eli/sampling_params.py: SamplingParams, the per-request generation settings (names as in vLLM).
#
# Invariants: validation of numeric fields happens in C++ (validate_sampling_params) so the
# engine and every front end share one rule set; this class checks only what C++ never sees
# (stop strings) and the Python types. Bounds on amplifying fields (stop strings, logprobs) are
# constants here so the server can quote them.
from __future__ import annotations

import dataclasses
import hashlib
from typing import Optional, Sequence, Union

from .errors import InvalidRequestError

kMaxStopStrings = 64
kMaxStopStringChars = 512
kMaxCacheSaltChars = 1024


@dataclasses.dataclass
class SamplingParams:
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

    def __post_init__(self) -> None:
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
        self.stop_token_ids = [self._int("stop_token_ids", i, 32) for i in (self.stop_token_ids or [])]
        for name in ("max_tokens", "top_k"):
            self._int(name, getattr(self, name), 64)
        for name in ("temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InvalidRequestError(f"{name} must be a number, got {v!r}")
        if self.seed is not None:
            self._int("seed", self.seed)
            if self.seed < 0 or self.seed >= 2**64:
                raise InvalidRequestError(f"seed must be in [0, 2**64), got {self.seed}")
        if self.logprobs is not None:
            self._int("logprobs", self.logprobs, 32)
        if self.cache_salt is not None and (not isinstance(self.cache_salt, str) or not self.cache_salt
                                            or len(self.cache_salt) > kMaxCacheSaltChars):
            raise InvalidRequestError(f"cache_salt must be a non-empty string of at most {kMaxCacheSaltChars} "
                                      f"characters")

    @staticmethod
    def _int(name: str, v, bits: int = 64) -> int:
        # The C++ fields are int32/int64: values past them are invalid requests, not cast errors.
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvalidRequestError(f"{name} must be an integer, got {v!r}")
        if not -(2 ** (bits - 1)) <= v < 2 ** (bits - 1):
            raise InvalidRequestError(f"{name} {v} is out of range")
        return v

    def engine_dict(self, extra_stop_ids: Sequence[int] = ()) -> dict:
        """The dict the C++ engine reads (see python/src/convert.cc)."""
        stop_ids = list(self.stop_token_ids or [])
        if not self.ignore_eos:
            stop_ids += [i for i in extra_stop_ids if i not in stop_ids]
        return {
            "max_tokens": self.max_tokens,
            "temperature": float(self.temperature),
            "top_k": self.top_k,
            "top_p": float(self.top_p),
            "min_p": float(self.min_p),
            "repetition_penalty": float(self.repetition_penalty),
            "presence_penalty": float(self.presence_penalty),
            "frequency_penalty": float(self.frequency_penalty),
            "seed": self.seed,
            "stop_token_ids": stop_ids,
            "ignore_eos": self.ignore_eos,
            "logprobs": -1 if self.logprobs is None else self.logprobs,
            "cache_salt": _salt64(self.cache_salt),
        }


def _salt64(salt: Optional[str]) -> int:
    """The engine's 64-bit prefix-cache salt of a salt string (0: none; never 0 for a string)."""
    if salt is None:
        return 0
    h = int.from_bytes(hashlib.blake2b(salt.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
    return h or 1
