# eli/tokenizer_guard.py: checks that keep a hostile tokenizer file from taking the process down.
#
# The `tokenizers` library trusts its configuration: a normalizer `Replace("a", 100,000 x "b")`
# turns a 1,000-character prompt into a 1.6 GB allocation and, when that fails, a Rust abort
# (SIGABRT: no exception, the process dies); a malformed Precompiled charsmap panics on load or
# on the first encode, and pyo3 raises PanicException, a BaseException that `except Exception`
# does not catch. So, for every tokenizer eli builds:
#   - check_backend() bounds statically how much the normalizer can multiply text (product over a
#     Sequence of each step's worst case: Replace content/pattern length, Precompiled's longest
#     replacement string, Unicode normalization forms' known maxima) and how much the decoder can
#     (Replace); over kMaxNormalizerExpansion / kMaxDecoderExpansion the file is refused
#     (ModelLoadError). Unknown normalizer/decoder types are refused rather than guessed. The
#     bound is returned so the caller can divide its per-call input limit by it. A TemplateProcessing
#     post-processor may add at most kMaxTemplatePieces pieces. Then a probe normalizes, encodes and
#     decodes a sample text once, so a tokenizer that panics on ordinary text fails at load;
#   - load_backend() and backend_call() turn a panic into ModelLoadError (at load) or EliError
#     (afterwards) and keep library error messages from quoting file content.
from __future__ import annotations

import base64
import binascii
import json
import math
import re

from tokenizers import Tokenizer as HfTokenizer

from .errors import EliError, ModelLoadError

kMaxNormalizerExpansion = 64  # real tokenizers: 1 (byte-level BPE) to ~36 (T5-style charsmaps)
kMaxDecoderExpansion = 16
kMaxTemplatePieces = 64
kMaxConfigDepth = 16
# Worst-case length multipliers of the fixed normalizers (Unicode: U+FDFA is 18 characters under
# NFKC; a canonical decomposition is at most 4; a case mapping at most 3).
kFixedNormalizers = {"NFKC": 18, "NFKD": 18, "NFC": 4, "NFD": 4, "Lowercase": 3, "BertNormalizer": 3,
                     "ByteLevel": 4, "Strip": 1, "StripAccents": 1, "Nmt": 1}
kFixedDecoders = {"ByteLevel": 1, "ByteFallback": 1, "Fuse": 1, "Strip": 1, "Metaspace": 1, "CTC": 1,
                  "WordPiece": 2, "BPEDecoder": 2}
kProbeText = ("The quick brown fox, 123 456.7! \t\n  x  <0x41> \u2581a\u2581 \u00c0\u00e9\u00df\u0130\u0132"
              "\ufb01\u2026 \u65e5\u672c\u8a9e \ud55c\uad6d\uc5b4 \U0001f600 e\u0301 \ufdfa \u00a0\u3000 "
              + "".join(chr(c) for c in range(0x21, 0x7f)))


def is_panic(e: BaseException) -> bool:
    """A Rust panic surfaced by pyo3 (pyo3_runtime.PanicException, not importable by name)."""
    return type(e).__name__ == "PanicException"


def clean_message(msg: str) -> str:
    """A tokenizers error message without quoted file content, short."""
    msg = re.sub(r"`[^`]*`", "`...`", str(msg))
    msg = re.sub(r'"[^"]*"', '"..."', msg)
    msg = msg.splitlines()[0] if msg else msg
    return msg[:200]


def load_backend(text: str, what: str) -> HfTokenizer:
    """tokenizers.Tokenizer.from_str(text); ModelLoadError (naming `what`) on any failure or panic."""
    try:
        return HfTokenizer.from_str(text)
    except Exception as e:
        raise ModelLoadError(f"{what} could not be loaded: {clean_message(e)}") from None
    except BaseException as e:
        if is_panic(e):
            raise ModelLoadError(f"{what} could not be loaded (the tokenizers library panicked: "
                                 f"{clean_message(e)})") from None
        raise


def backend_call(fn, *args, **kwargs):
    """fn(*args, **kwargs) on a loaded tokenizer: a panic or library error becomes EliError."""
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError):
        raise
    except Exception as e:
        raise EliError(f"tokenizer failed: {clean_message(e)}") from None
    except BaseException as e:
        if is_panic(e):
            raise EliError(f"tokenizer failed (the tokenizers library panicked: {clean_message(e)})") from None
        raise


# ---- static bounds ----------------------------------------------------------------------------------
def _replace_bound(cfg: dict, where: str) -> float:
    pattern, content = cfg.get("pattern") or {}, cfg.get("content", "")
    if not isinstance(content, str) or not isinstance(pattern, dict):
        raise ModelLoadError(f"tokenizer {where} Replace is malformed")
    literal = pattern.get("String")
    if isinstance(literal, str) and literal:
        return max(1.0, len(content) / len(literal))
    return 1.0 + len(content)  # a regex (or an empty string) may match at every position


def _precompiled_bound(blob: str) -> float:
    """The longest replacement string of a SentencePiece charsmap (trie size, trie, NUL-separated strings)."""
    try:
        data = base64.b64decode(blob, validate=False)
    except (binascii.Error, ValueError, TypeError):
        raise ModelLoadError("tokenizer normalizer Precompiled: the charsmap is not valid base64") from None
    if len(data) < 4:
        raise ModelLoadError("tokenizer normalizer Precompiled: the charsmap is truncated")
    trie = int.from_bytes(data[:4], "little")
    strings = data[4 + trie:]
    longest = max((len(s.decode("utf-8", "replace")) for s in strings.split(b"\0")), default=0)
    return float(max(1, longest))


def _normalizer_bound(cfg, depth: int = 0) -> float:
    if depth > kMaxConfigDepth or not isinstance(cfg, dict):
        raise ModelLoadError("tokenizer normalizer is malformed or nests too deeply")
    kind = cfg.get("type")
    if kind == "Sequence":
        return math.prod(_normalizer_bound(c, depth + 1) for c in cfg.get("normalizers") or [])
    if kind == "Replace":
        return _replace_bound(cfg, "normalizer")
    if kind == "Prepend":
        prepend = cfg.get("prepend", "")
        return 1.0 + (len(prepend) if isinstance(prepend, str) else kMaxNormalizerExpansion)
    if kind == "Precompiled":
        return _precompiled_bound(cfg.get("precompiled_charsmap") or "")
    if kind in kFixedNormalizers:
        return float(kFixedNormalizers[kind])
    raise ModelLoadError(f"tokenizer normalizer type {str(kind)[:40]!r} is not supported")


def _decoder_bound(cfg, depth: int = 0) -> float:
    if depth > kMaxConfigDepth or not isinstance(cfg, dict):
        raise ModelLoadError("tokenizer decoder is malformed or nests too deeply")
    kind = cfg.get("type")
    if kind == "Sequence":
        return math.prod(_decoder_bound(c, depth + 1) for c in cfg.get("decoders") or [])
    if kind == "Replace":
        return _replace_bound(cfg, "decoder")
    if kind in kFixedDecoders:
        return float(kFixedDecoders[kind])
    raise ModelLoadError(f"tokenizer decoder type {str(kind)[:40]!r} is not supported")


def _check_post_processor(cfg, depth: int = 0) -> None:
    if depth > kMaxConfigDepth or not isinstance(cfg, dict):
        raise ModelLoadError("tokenizer post-processor is malformed or nests too deeply")
    if cfg.get("type") == "Sequence":
        for c in cfg.get("processors") or []:
            _check_post_processor(c, depth + 1)
    elif cfg.get("type") == "TemplateProcessing":
        pieces = len(cfg.get("single") or []) + len(cfg.get("pair") or [])
        ids = sum(len(v.get("ids") or []) for v in (cfg.get("special_tokens") or {}).values() if isinstance(v, dict))
        if pieces > 2 * kMaxTemplatePieces or ids > kMaxTemplatePieces:
            raise ModelLoadError(f"tokenizer post-processor adds more than {kMaxTemplatePieces} tokens per text")


def _state(component) -> dict | None:
    if component is None:
        return None
    return json.loads(component.__getstate__())


def check_backend(backend: HfTokenizer) -> int:
    """Refuse hostile normalizers/decoders/post-processors, probe the tokenizer once, and return the
    normalizer's expansion bound (>= 1). ModelLoadError on any problem."""
    norm = _state(backend.normalizer)
    expansion = _normalizer_bound(norm) if norm is not None else 1.0
    if expansion > kMaxNormalizerExpansion:
        raise ModelLoadError(f"the tokenizer's normalizer can expand text {expansion:g} times "
                             f"(limit {kMaxNormalizerExpansion}); refused as a memory bomb")
    dec = _state(backend.decoder)
    if dec is not None:
        factor = _decoder_bound(dec)
        if factor > kMaxDecoderExpansion:
            raise ModelLoadError(f"the tokenizer's decoder can expand text {factor:g} times "
                                 f"(limit {kMaxDecoderExpansion}); refused as a memory bomb")
    post = _state(backend.post_processor)
    if post is not None:
        _check_post_processor(post)
    _probe(backend, expansion)
    return max(1, math.ceil(expansion))


def _probe(backend: HfTokenizer, expansion: float) -> None:
    try:
        if backend.normalizer is not None:
            out = backend.normalizer.normalize_str(kProbeText)
            if len(out) > expansion * len(kProbeText) + 64:
                raise ModelLoadError("the tokenizer's normalizer expands text beyond its own bound; refused")
        ids = backend.encode(kProbeText, add_special_tokens=True).ids
        backend.decode(ids, skip_special_tokens=False)
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"the tokenizer fails on a sample text: {clean_message(e)}") from None
    except BaseException as e:
        if is_panic(e):
            raise ModelLoadError(f"the tokenizer fails on a sample text (the tokenizers library panicked: "
                                 f"{clean_message(e)})") from None
        raise


__all__ = ["check_backend", "load_backend", "backend_call", "is_panic", "clean_message"]
