"""eli/quantize/st_io.py: safetensors reading and writing for `eli quantize`, numpy only.

Reading: a checkpoint's tensors (one file or an index of shards) by name, f32 / f16 / bf16 as
float32 arrays (bf16 widened exactly), integer tensors as they are; any other stored dtype of a
matrix (fp8, packed quantized weights) is refused: quantizing needs the full-precision weights.
Writing: the safetensors layout (8-byte little-endian header size, JSON header, data), with the
dtypes numpy lacks written from their raw bytes (F8_E4M3 from uint8 codes, BF16 from uint16 bits).
The header is padded to 8 bytes and tensors are written in name order.
"""
from __future__ import annotations

import json
import pathlib
import struct

import numpy as np

from ..errors import InvalidRequestError, ModelLoadError

_NP = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64, "I64": np.int64,
       "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_, "F8_E4M3": np.uint8}
_FLOAT = ("F32", "F16", "BF16")


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """Round to nearest even (NaN kept NaN), as uint16 bits."""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    return np.where(nan, np.uint16(0x7FC0), r)


class Checkpoint:
    """The tensors of a Hugging Face checkpoint directory (memory-mapped, read on demand)."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        index = root / "model.safetensors.index.json"
        if index.exists():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        else:
            files = sorted(p.name for p in root.glob("*.safetensors"))
        if not files:
            raise ModelLoadError(f"{root}: no .safetensors files (eli quantize reads Hugging Face safetensors "
                                 "checkpoints; for a .gguf input use --format gguf)")
        self.entries: dict[str, tuple[pathlib.Path, dict, int]] = {}
        for name in files:
            path = root / name
            with open(path, "rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(size))
            for key, meta in header.items():
                if key != "__metadata__":
                    self.entries[key] = (path, meta, 8 + size)
        self._maps: dict[pathlib.Path, np.memmap] = {}

    def names(self) -> list[str]:
        return sorted(self.entries)

    def dtype(self, name: str) -> str:
        return self.entries[name][1]["dtype"]

    def shape(self, name: str) -> list[int]:
        return list(self.entries[name][1]["shape"])

    def raw(self, name: str) -> np.ndarray:
        """The stored values (bf16 / f8 as their unsigned integer bits)."""
        path, meta, base = self.entries[name]
        if meta["dtype"] not in _NP:
            raise ModelLoadError(f"{path}: tensor {name} has dtype {meta['dtype']}, which eli quantize does not read")
        if path not in self._maps:
            self._maps[path] = np.memmap(path, dtype=np.uint8, mode="r")
        lo, hi = meta["data_offsets"]
        return self._maps[path][base + lo:base + hi].view(_NP[meta["dtype"]]).reshape(meta["shape"])

    def float32(self, name: str) -> np.ndarray:
        dt = self.dtype(name)
        if dt not in _FLOAT:
            raise InvalidRequestError(f"{self.root}: tensor {name} is stored as {dt}; eli quantize needs float32, "
                                      "float16 or bfloat16 weights (is the checkpoint already quantized?)")
        a = self.raw(name)
        return bf16_to_f32(a) if dt == "BF16" else np.array(a, dtype=np.float32)


def as_stored(x: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values converted back to a float storage dtype (bf16 as uint16 bits)."""
    if dtype == "BF16":
        return f32_to_bf16(x)
    return np.asarray(x, dtype=_NP[dtype])


def write_safetensors(path: pathlib.Path, tensors: dict[str, tuple[np.ndarray, str]]) -> None:
    """Writes {name: (array, safetensors dtype)}; the array's itemsize must match the dtype's."""
    header, offset = {}, 0
    for name in sorted(tensors):
        arr, dtype = tensors[name]
        if np.dtype(_NP[dtype]).itemsize != arr.dtype.itemsize:
            raise ValueError(f"{name}: a {arr.dtype} array cannot be stored as {dtype}")
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name in sorted(tensors):
            f.write(np.ascontiguousarray(tensors[name][0]).tobytes())
