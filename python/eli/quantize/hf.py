"""eli/quantize/hf.py: `eli quantize --format hf`: a 16/32-bit Hugging Face checkpoint in, a
quantized Hugging Face checkpoint out that eli (and the exporters' other loaders) read.

  rtn / gptq, 4 or 8 bits  -> GPTQ layout (quant_method "gptq", checkpoint_format "gptq")
  awq, 4 bits              -> AWQ GEMM layout (quant_method "awq", version "gemm", zero_point)
  fp8 / int8 (8 bits)      -> compressed-tensors W8A8, per-channel weights, dynamic per-token acts
Quantized: the 2-D `*_proj.weight` tensors of model.layers.N.self_attn / .mlp; everything else
(embeddings, lm_head, norms, biases) is copied as stored, except what AWQ folds its scales into.

AWQ folding (eli's AWQ loader has no scale tensor, so the inverse input scale 1/s must be exact in
the preceding op): q/k/v (or qkv_proj) -> input_layernorm; gate/up -> pre_feedforward_layernorm
(Gemma) or post_attention_layernorm; o_proj -> the rows of v_proj (scales tied over the query heads
sharing a KV head); down_proj -> the rows of up_proj. A linear without such a target keeps s = 1.
Gemma stores norm weights as w with the layer computing (1 + w): the fold writes (1 + w) / s - 1.

Output is written to a temporary directory beside `out` and renamed at the end: an interrupted or
failed run leaves no partial `out`.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import tempfile

import numpy as np

from ..errors import InvalidRequestError
from . import layouts
from .st_io import Checkpoint, as_stored, write_safetensors

_LINEAR = re.compile(r"^(model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+_proj))\.weight$")
_COPY = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
         "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.json")
_STATS_KEY = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj", "gate_proj": "gate_up_proj",
              "up_proj": "gate_up_proj"}


def stats_key(linear: str) -> str:
    """eli's name of the (merged) linear whose input `linear` (an HF name without .weight) reads."""
    head, _, last = linear.rpartition(".")
    return f"{head}.{_STATS_KEY.get(last, last)}"


def find_linears(ck: Checkpoint) -> list[str]:
    out = []
    for name in ck.names():
        m = _LINEAR.match(name)
        if m and len(ck.shape(name)) == 2:
            out.append(m.group(1))
    return out


def quantization_config(method: str, bits: int, group_size: int, sym: bool, act_order: bool) -> dict:
    if method in ("rtn", "gptq"):
        return {"quant_method": "gptq", "bits": bits, "group_size": group_size, "desc_act": act_order, "sym": sym,
                "checkpoint_format": "gptq", "static_groups": False, "true_sequential": True, "damp_percent": 0.01,
                "quantizer": f"eli-{method}"}
    if method == "awq":
        return {"quant_method": "awq", "bits": 4, "group_size": group_size, "zero_point": True, "version": "gemm",
                "modules_to_not_convert": None}
    typ = "float" if method == "fp8" else "int"
    fmt = "float-quantized" if method == "fp8" else "int-quantized"
    weights = {"num_bits": 8, "type": typ, "symmetric": True, "dynamic": False, "strategy": "channel",
               "group_size": None}
    acts = {"num_bits": 8, "type": typ, "symmetric": True, "dynamic": True, "strategy": "token"}
    group = {"targets": ["Linear"], "weights": weights, "input_activations": acts, "output_activations": None,
             "format": fmt}
    return {"quant_method": "compressed-tensors", "format": fmt, "quantization_status": "compressed",
            "config_groups": {"group_0": group}, "ignore": ["lm_head"], "kv_cache_scheme": None}


class _Dims:
    def __init__(self, cfg: dict):
        self.n_heads = int(cfg["num_attention_heads"])
        self.n_kv = int(cfg.get("num_key_value_heads") or self.n_heads)
        self.head_dim = int(cfg.get("head_dim") or cfg["hidden_size"] // self.n_heads)
        self.norm_offset = 1.0 if str(cfg.get("model_type", "")).startswith("gemma") else 0.0


class _Tensors:
    """The output tensors: copies as stored, or float32 edits written back in the stored dtype."""

    def __init__(self, ck: Checkpoint):
        self.ck = ck
        self.edited: dict[str, np.ndarray] = {}

    def get(self, name: str) -> np.ndarray:
        return self.edited[name] if name in self.edited else self.ck.float32(name)

    def scale_rows(self, name: str, rows: slice, factor: np.ndarray) -> None:
        w = self.get(name).copy()
        w[rows] *= factor.reshape((-1,) + (1,) * (w.ndim - 1))
        self.edited[name] = w


def _awq_fold_target(ck: Checkpoint, key: str, dims: _Dims):
    """(kind, tensor, rows) that 1/s of `key`'s input is folded into, or None."""
    layer, _, last = key.rpartition(".")
    prefix = layer.rpartition(".")[0]  # model.layers.N
    names = set(ck.names())
    if last == "qkv_proj":
        n = f"{prefix}.input_layernorm.weight"
        return ("norm", n, slice(None)) if n in names else None
    if last == "gate_up_proj":
        for n in (f"{prefix}.pre_feedforward_layernorm.weight", f"{prefix}.post_attention_layernorm.weight"):
            if n in names:
                return "norm", n, slice(None)
        return None
    if last == "o_proj":
        kv = dims.n_kv * dims.head_dim
        if f"{prefix}.self_attn.v_proj.weight" in names:
            return "rows", f"{prefix}.self_attn.v_proj", slice(0, kv)
        if f"{prefix}.self_attn.qkv_proj.weight" in names:
            q = dims.n_heads * dims.head_dim
            return "rows", f"{prefix}.self_attn.qkv_proj", slice(q + kv, q + 2 * kv)
        return None
    if last == "down_proj":
        if f"{prefix}.mlp.up_proj.weight" in names:
            return "rows", f"{prefix}.mlp.up_proj", slice(None)
        if f"{prefix}.mlp.gate_up_proj.weight" in names:
            inter = ck.shape(f"{prefix}.mlp.gate_up_proj.weight")[0] // 2
            return "rows", f"{prefix}.mlp.gate_up_proj", slice(inter, 2 * inter)
    return None


def _tie_o_proj(x: np.ndarray, dims: _Dims) -> np.ndarray:
    """Mean |x| of o_proj's inputs averaged over the query heads that share a KV head, so one scale
    per v row exists; returned per input channel, and the per-v-row view."""
    group = dims.n_heads // dims.n_kv
    per_kv = x.reshape(dims.n_kv, group, dims.head_dim).mean(axis=1)
    return np.repeat(per_kv[:, None, :], group, axis=1).reshape(-1), per_kv.reshape(-1)


def _check_shapes(ck: Checkpoint, linears: list[str], method: str, bits: int, group_size: int) -> None:
    """Every matrix float, then (integer methods) every group size dividing, then every packing fitting."""
    for lin in linears:
        dt = ck.dtype(lin + ".weight")
        if dt not in ("F32", "F16", "BF16"):
            raise InvalidRequestError(f"{lin}.weight is stored as {dt}; eli quantize needs float32, float16 or "
                                      "bfloat16 weights (is the checkpoint already quantized?)")
    if method in ("fp8", "int8"):
        return
    shapes = {lin: ck.shape(lin + ".weight") for lin in linears}
    for lin, (n, k) in shapes.items():
        if group_size != -1 and k % group_size:
            raise InvalidRequestError(f"group_size {group_size} does not divide the {k} input features of {lin}; "
                                      "pick a divisor or -1 (per channel)")
    for lin, (n, k) in shapes.items():
        gs = k if group_size == -1 else group_size
        if bits == 4 and (k % 32 or gs % 32):
            raise InvalidRequestError(f"{lin}: eli's int4 layout needs the input features ({k}) and the group size "
                                      f"({gs}) to be multiples of 32")
        per = 8 if method == "awq" else 32 // bits
        if n % per or (method != "awq" and k % per):
            raise InvalidRequestError(f"{lin}: shape ({n}, {k}) cannot be packed {per} values per int32 "
                                      f"({'AWQ' if method == 'awq' else 'GPTQ'} layout)")


def quantize_hf(src: str, out: pathlib.Path, *, method: str, bits: int, group_size: int, calib_text: str,
                act_order: bool, sym: bool, progress: bool) -> dict:
    root = pathlib.Path(src)
    cfg = json.loads((root / "config.json").read_text())
    if cfg.get("quantization_config"):
        raise InvalidRequestError(f"{src} is already quantized ({cfg['quantization_config'].get('quant_method')}); "
                                  "eli quantize needs a float32 / float16 / bfloat16 checkpoint")
    ck = Checkpoint(root)
    linears = find_linears(ck)
    if not linears:
        raise InvalidRequestError(f"{src}: no model.layers.N.*_proj.weight matrices to quantize")
    _check_shapes(ck, linears, method, bits, group_size)
    dims = _Dims(cfg)
    stats = None
    if method in ("gptq", "awq"):
        from .calib import collect

        stats = collect(str(root), calib_text, progress)
        missing = sorted({stats_key(l) for l in linears} - set(stats))
        if missing:
            raise InvalidRequestError(f"calibration saw no inputs for {missing[0]} (eli's model does not read it)")

    groups: dict[str, list[str]] = {}
    for lin in linears:
        groups.setdefault(stats_key(lin), []).append(lin)
    tensors = _Tensors(ck)
    report: dict = {"method": method, "bits": bits, "group_size": group_size, "linears": len(linears), "errors": {}}

    # AWQ: every group's scale first (searched on the original weights), then the folds.
    awq_scales: dict[str, np.ndarray] = {}
    if method == "awq":
        from .. import _eli

        for key in _bar(list(groups), progress, "awq search"):
            target = _awq_fold_target(ck, key, dims)
            abs_mean, hess, _ = stats[key]
            if target is None:
                continue
            if key.endswith("o_proj"):
                abs_mean, _ = _tie_o_proj(abs_mean, dims)
            w = np.ascontiguousarray(np.concatenate([ck.float32(l + ".weight") for l in groups[key]]))
            s, alpha, err, rtn = _eli.awq_search(w, np.ascontiguousarray(abs_mean, dtype=np.float32), hess, 4,
                                                 group_size, sym=False)
            report["errors"][key] = {"error": err, "rtn_error": rtn, "alpha": alpha}
            if alpha == 0.0:
                continue
            awq_scales[key] = s
            kind, name, rows = target
            if kind == "norm":
                norm = tensors.get(name)
                tensors.edited[name] = ((norm + dims.norm_offset) / s - dims.norm_offset).astype(np.float32)
            else:
                inv = 1.0 / s
                if key.endswith("o_proj"):
                    inv = 1.0 / _tie_o_proj(s, dims)[1]  # s is tied: one value per v row
                tensors.scale_rows(name + ".weight", rows, inv)
                if name + ".bias" in ck.entries:
                    tensors.scale_rows(name + ".bias", rows, inv)

    out_tensors: dict[str, tuple[np.ndarray, str]] = {}
    from .. import _eli

    for key in _bar(list(groups), progress, f"quantize ({method})"):
        hess = stats[key][1] if stats is not None else None
        for lin in groups[key]:
            w = np.ascontiguousarray(tensors.get(lin + ".weight"), dtype=np.float32)
            if method in ("fp8", "int8"):
                codes, scales = _eli.quantize_channel(w, method)
                parts = layouts.channel_tensors(codes, scales, method)
            elif method == "awq":
                if key in awq_scales:
                    w = np.ascontiguousarray(w * awq_scales[key][None, :])
                q, scales, zeros, _ = _eli.quantize_int(w, 4, group_size, False, zero_min=0)
                parts = layouts.awq_tensors(lin, q, scales, zeros)
            else:
                q, scales, zeros, g_idx = _eli.quantize_int(w, bits, group_size, sym, zero_min=1, method=method,
                                                            hessian=hess, act_order=act_order)
                parts = layouts.gptq_tensors(lin, q, scales, zeros, g_idx, bits)
                if hess is not None:
                    rq, rs, rz, rg = _eli.quantize_int(w, bits, group_size, sym, zero_min=1)
                    e = report["errors"].setdefault(key, {"error": 0.0, "rtn_error": 0.0})
                    e["error"] += _eli.quant_output_error(w, _dequant(q, scales, zeros, g_idx), hess)
                    e["rtn_error"] += _eli.quant_output_error(w, _dequant(rq, rs, rz, rg), hess)
            for suffix, value in parts.items():
                out_tensors[lin + suffix] = value

    quantized = {lin + ".weight" for lin in linears}
    for name in ck.names():
        if name in quantized:
            continue
        dt = ck.dtype(name)
        value = as_stored(tensors.edited[name], dt) if name in tensors.edited else np.asarray(ck.raw(name))
        out_tensors[name] = (value, dt)

    qcfg = dict(cfg)
    qcfg["quantization_config"] = quantization_config(method, bits, group_size, sym, act_order)
    _write_dir(root, out, qcfg, out_tensors)
    report["out"] = str(out)
    return report


def _dequant(q, scales, zeros, g_idx) -> np.ndarray:
    return np.ascontiguousarray(((q.astype(np.int32) - zeros[:, g_idx]) * scales[:, g_idx]).astype(np.float32))


def _write_dir(src: pathlib.Path, out: pathlib.Path, cfg: dict, tensors: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        write_safetensors(tmp / "model.safetensors", tensors)
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        for f in src.iterdir():
            if f.is_file() and (f.name in _COPY or f.suffix in (".jinja", ".tiktoken")):
                shutil.copy2(f, tmp / f.name)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _bar(items, progress: bool, desc: str):
    from .calib import _bar as bar

    return bar(items, progress, desc)
