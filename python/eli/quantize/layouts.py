"""eli/quantize/layouts.py: the published tensor layouts `eli quantize` writes, from codes in eli's
orientation (q: (n out, k in) unsigned codes, scales / zeros: (n, groups), g_idx: (k,)).

GPTQ (AutoGPTQ / vLLM "gptq", checkpoint_format "gptq"):
  qweight (k * bits / 32, n) int32: input rows packed along k, value j of a word at bit bits * j;
  qzeros  (groups, n * bits / 32) int32: (z - 1) packed along n the same way (the v1 format's
          offset: a loader adds 1 back);
  scales  (groups, n) float16;  g_idx (k,) int32: the group of each input.
AWQ GEMM ("awq", version "gemm", 4 bits, zero_point):
  qweight (k, n / 8) int32 and qzeros (groups, n / 8) int32 packed along n, nibble i of a word
  holding column 8 c + AWQ_ORDER[i]; scales (groups, n) float16.
compressed-tensors W8A8 (int-quantized / float-quantized, channel strategy):
  weight (n, k) int8 or F8_E4M3 bytes, weight_scale (n, 1) float32.
Every function returns {suffix: (array, safetensors dtype)} and checks the shape constraints of
the packing (InvalidRequestError naming the tensor).
"""
from __future__ import annotations

import numpy as np

from ..errors import InvalidRequestError

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def _pack_last(v: np.ndarray, bits: int) -> np.ndarray:
    """(R, C) values < 2^bits -> (R, C * bits / 32) int32, value j of a word at bits * j."""
    per = 32 // bits
    v = v.astype(np.uint32).reshape(v.shape[0], v.shape[1] // per, per)
    word = np.zeros(v.shape[:2], dtype=np.uint32)
    for j in range(per):
        word |= v[:, :, j] << np.uint32(bits * j)
    return word.view(np.int32)


def _pack_awq(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint32).reshape(v.shape[0], v.shape[1] // 8, 8)
    word = np.zeros(v.shape[:2], dtype=np.uint32)
    for i, col in enumerate(AWQ_ORDER):
        word |= v[:, :, col] << np.uint32(4 * i)
    return word.view(np.int32)


def _need(cond: bool, name: str, what: str) -> None:
    if not cond:
        raise InvalidRequestError(f"{name}: {what}")


def gptq_tensors(name: str, q: np.ndarray, scales: np.ndarray, zeros: np.ndarray, g_idx: np.ndarray,
                 bits: int) -> dict:
    n, k = q.shape
    per = 32 // bits
    _need(k % per == 0 and n % per == 0, name, f"the GPTQ layout packs {per} values per int32 along both "
          f"dimensions; ({n}, {k}) is not a multiple of {per}")
    _need(int(zeros.min()) >= 1, name, "a zero point of 0 cannot be stored in the GPTQ v1 format")
    return {
        ".qweight": (np.ascontiguousarray(_pack_last(q, bits).T), "I32"),
        ".qzeros": (_pack_last(np.ascontiguousarray((zeros - 1).T), bits), "I32"),
        ".scales": (np.ascontiguousarray(scales.T).astype(np.float16), "F16"),
        ".g_idx": (g_idx.astype(np.int32), "I32"),
    }


def awq_tensors(name: str, q: np.ndarray, scales: np.ndarray, zeros: np.ndarray) -> dict:
    n, k = q.shape
    _need(n % 8 == 0, name, f"the AWQ layout packs 8 output channels per int32; {n} is not a multiple of 8")
    return {
        ".qweight": (_pack_awq(np.ascontiguousarray(q.T)), "I32"),
        ".qzeros": (_pack_awq(np.ascontiguousarray(zeros.T)), "I32"),
        ".scales": (np.ascontiguousarray(scales.T).astype(np.float16), "F16"),
    }


def channel_tensors(codes: np.ndarray, scales: np.ndarray, kind: str) -> dict:
    dtype = "F8_E4M3" if kind == "fp8" else "I8"
    arr = codes if kind == "fp8" else codes.view(np.int8)
    return {".weight": (arr, dtype), ".weight_scale": (scales.astype(np.float32).reshape(-1, 1), "F32")}
