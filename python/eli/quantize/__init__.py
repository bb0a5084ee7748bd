"""eli.quantize: quantize a model with eli, no torch.

    eli.quantize(model, out, method="rtn" | "awq" | "gptq" | "fp8" | "int8", bits=4 | 8,
                 group_size=128 (-1: per channel), calib=None, format="hf" | "gguf",
                 gguf_type="q4_k", act_order=False, sym=True, imatrix=False, progress=True) -> dict

format="hf" writes a Hugging Face directory eli (and vLLM-style loaders) read (eli/quantize/hf.py:
GPTQ layout for rtn / gptq, AWQ GEMM for awq, compressed-tensors W8A8 for fp8 / int8); AWQ and GPTQ
calibrate on a CPU forward of `calib` (a text file; default: a built-in English paragraph).
format="gguf" requantizes a GGUF file to `gguf_type` (eli.quantize.gguf_requant); imatrix=True (or
a `calib` file) weights its quantization error by an importance matrix from a CPU forward of `calib`;
imatrix=PATH reads one from a llama.cpp imatrix file (GGUF or legacy .dat; eli.quantize.imatrix_file).
The package module is itself callable (eli.quantize(...) is quantize(...)), so `eli.quantize` is
both the function and the namespace of its submodules.
Returns a report: {"out", "method", "bits", "group_size", "linears", "errors": {linear: {"error",
"rtn_error", ...}}} (the output error on the calibration statistics, where calibrated).
"""
from __future__ import annotations

import os
import pathlib
import sys
import types
from typing import Optional

from ..errors import InvalidRequestError, UnsupportedError

METHODS = ("rtn", "awq", "gptq", "fp8", "int8")
FORMATS = ("hf", "gguf")


def _check(method, bits, group_size, fmt, act_order, sym) -> None:
    if fmt not in FORMATS:
        raise InvalidRequestError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "gguf":
        return
    if method not in METHODS:
        raise InvalidRequestError(f"unknown quantization method {method!r}; choose one of {', '.join(METHODS)}")
    if not isinstance(bits, int) or bits not in (4, 8):
        raise InvalidRequestError(f"bits must be 4 or 8, got {bits!r}")
    if method == "awq" and bits != 4:
        raise InvalidRequestError("method 'awq' writes 4-bit weights (the AWQ GEMM layout); use bits=4, or "
                                  "method 'gptq' / 'rtn' for 8 bits")
    if method in ("fp8", "int8") and bits != 8:
        raise InvalidRequestError(f"method {method!r} is 8-bit (W8A8); use bits=8")
    if not isinstance(group_size, int) or not (group_size == -1 or group_size > 0):
        raise InvalidRequestError(f"group_size must be a positive integer or -1 (per channel), got {group_size!r}")
    if act_order and method != "gptq":
        raise InvalidRequestError("act_order applies to method 'gptq' only")
    if not sym and method != "rtn" and method != "gptq":
        raise InvalidRequestError(f"sym=False applies to methods 'rtn' and 'gptq' (AWQ is always asymmetric, "
                                  f"{method!r} is symmetric)")


def _is_gguf(path: str) -> bool:
    p = pathlib.Path(path)
    if p.is_file():
        return p.suffix == ".gguf"
    return p.is_dir() and not (p / "config.json").exists() and any(p.glob("*.gguf"))


def quantize(model: str, out: str, method: str = "rtn", bits: int = 4, group_size: int = 128,
             calib: Optional[str] = None, format: str = "hf", gguf_type: str = "q4_k", act_order: bool = False,
             sym: bool = True, imatrix=False, progress: bool = True) -> dict:
    """Quantizes `model` (a path or a name eli resolves) into `out` (see the module docstring)."""
    method = str(method).lower()
    _check(method, bits, group_size, format, act_order, sym)
    imatrix_path = None
    if isinstance(imatrix, (str, os.PathLike)):
        imatrix_path = os.fspath(imatrix)
        if format != "gguf":
            raise InvalidRequestError("an imatrix file applies to --format gguf only")
        if calib is not None:
            raise InvalidRequestError(f"--calib computes an importance matrix, --imatrix {imatrix_path} reads one: "
                                      "give one of them")
        if not os.path.isfile(imatrix_path):
            raise InvalidRequestError(f"imatrix file {imatrix_path!r} does not exist (or is not a file)")
    elif not isinstance(imatrix, bool):
        raise InvalidRequestError(f"imatrix must be True / False or the path of a llama.cpp imatrix file, "
                                  f"got {type(imatrix).__name__}")
    out_path = pathlib.Path(out)
    if out_path.exists() and (out_path.is_file() or any(out_path.iterdir())):
        raise InvalidRequestError(f"{out} already exists; remove it or choose another output path")
    from .. import hub

    src = hub.resolve_model(model, allow_download=True, progress=progress)
    if format == "gguf":
        try:
            from .gguf_requant import quantize_gguf
        except ImportError as e:
            raise UnsupportedError(f"--format gguf is not available in this eli ({e})") from e
        weights = imatrix_path
        if imatrix_path is None and (imatrix or calib is not None):
            from .calib import calibration_text
            from .gguf_requant import gguf_imatrix

            weights = gguf_imatrix(src, calibration_text(calib), progress=progress)
        quantize_gguf(src, str(out_path), gguf_type, imatrix=weights, progress=progress)
        return {"out": str(out_path), "format": "gguf", "type": gguf_type, "imatrix": weights is not None,
                "imatrix_file": imatrix_path}
    if _is_gguf(src):
        raise InvalidRequestError(f"{src} is a GGUF file: --format hf needs a float32 / float16 / bfloat16 Hugging "
                                  "Face checkpoint (GGUF weights are already quantized); use --format gguf to "
                                  "requantize it")
    from .calib import calibration_text
    from .hf import quantize_hf

    text = calibration_text(calib) if method in ("awq", "gptq") else ""
    if out_path.exists():
        out_path.rmdir()  # empty (checked above): replaced by the finished directory
    return quantize_hf(src, out_path, method=method, bits=bits, group_size=group_size, calib_text=text,
                       act_order=act_order, sym=sym, progress=progress)


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return quantize(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
