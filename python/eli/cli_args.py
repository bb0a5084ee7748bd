# eli/cli_args.py: value types for the `eli` command line's sampling flags, checked when the
# command line is parsed, so `eli generate --top-p 2` fails with a usage error before any model is
# resolved, downloaded or loaded; and the backslash escapes accepted in --stop strings.
#
# The ranges are the engine's own (validate_sampling_params in runtime/engine/sampling_params.cc);
# the engine checks every request again, so these only move the error earlier. Each type raises
# argparse.ArgumentTypeError with the accepted range, which argparse prints as
# "argument --top-p: ..." and exit code 2.
from __future__ import annotations

import argparse
import math
import re
from typing import Callable

kMaxTokensCap = 1 << 20  # the engine's cap on max_tokens
kMaxAbsPenalty = 2.0  # presence/frequency penalty range, as OpenAI's


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def float_range(what: str, ok: Callable[[float], bool]) -> Callable[[str], float]:
    """An argparse type: a finite float for which ok(value) holds; `what` names the range."""
    def parse(text: str) -> float:
        value = _number(text, what)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value
    parse.__name__ = what  # argparse names the type in some messages
    return parse


def int_range(what: str, ok: Callable[[int], bool]) -> Callable[[str], int]:
    """An argparse type: an integer for which ok(value) holds."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    parse.__name__ = what
    return parse


max_tokens = int_range(f"an integer in [1, {kMaxTokensCap}]", lambda v: 1 <= v <= kMaxTokensCap)
temperature = float_range("a number >= 0 (0 = greedy)", lambda v: v >= 0)
top_k = int_range("0 or -1 (off) or an integer >= 1", lambda v: v >= -1)
top_p = float_range("a number in (0, 1]", lambda v: 0 < v <= 1)
min_p = float_range("a number in [0, 1]", lambda v: 0 <= v <= 1)
repetition_penalty = float_range("a number > 0", lambda v: v > 0)
additive_penalty = float_range("a number in [-2, 2]", lambda v: abs(v) <= kMaxAbsPenalty)
seed = int_range("an integer in [0, 2**64)", lambda v: 0 <= v < 2**64)

# \n \t \r \\ \" \' \0 \xHH \uHHHH \UHHHHHHHH; any other backslash stays as typed.
_ESCAPE_RE = re.compile(r"\\(?:([ntr0\\\"'])|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8}))")
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def unescape(text: str) -> str:
    """Decodes backslash escapes as a shell user types them: --stop "\\n" stops at a newline."""
    def sub(m: re.Match) -> str:
        simple, hex2, hex4, hex8 = m.groups()
        if simple is not None:
            return _SIMPLE[simple]
        code = int(hex2 or hex4 or hex8, 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise argparse.ArgumentTypeError(f"{m.group(0)} is not a Unicode character")
        return chr(code)
    return _ESCAPE_RE.sub(sub, text)


def stop_string(text: str) -> str:
    """An argparse type: a non-empty stop string, escapes decoded."""
    value = unescape(text)
    if not value:
        raise argparse.ArgumentTypeError("a stop string must not be empty")
    return value


__all__ = ["max_tokens", "temperature", "top_k", "top_p", "min_p", "repetition_penalty",
           "additive_penalty", "seed", "unescape", "stop_string", "float_range", "int_range"]
