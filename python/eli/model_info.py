# eli/model_info.py: what `eli info` / `eli show` prints about a model, built from
# eli.inspect_model's raw description (headers only, no weights read) and the model's tokenizer.
#
# summarize() returns a small JSON-able dict: the summary a user asks for first (architecture,
# parameters, size, format and quantization name, context length, tokenizer kind, chat template,
# a memory estimate) with `architecture` at the top level; verbose=True adds the tensor list and the
# GGUF metadata, whose long arrays (vocabulary, merges, scores) are replaced by their lengths.
# format_text() renders the same dict for a terminal: one line per item, tensors one per line.
# Nothing here raises for a tokenizer that cannot be loaded: the summary says why instead.
from __future__ import annotations

import collections
import json
import pathlib
import re
from typing import Any, Optional

# GGUF general.file_type (llama.cpp's llama_ftype; 5 and 6 were retired, 33-35 removed since).
GGUF_FILE_TYPES = {
    0: "ALL_F32", 1: "MOSTLY_F16", 2: "MOSTLY_Q4_0", 3: "MOSTLY_Q4_1", 4: "MOSTLY_Q4_1_SOME_F16",
    7: "MOSTLY_Q8_0", 8: "MOSTLY_Q5_0", 9: "MOSTLY_Q5_1", 10: "MOSTLY_Q2_K", 11: "MOSTLY_Q3_K_S",
    12: "MOSTLY_Q3_K_M", 13: "MOSTLY_Q3_K_L", 14: "MOSTLY_Q4_K_S", 15: "MOSTLY_Q4_K_M",
    16: "MOSTLY_Q5_K_S", 17: "MOSTLY_Q5_K_M", 18: "MOSTLY_Q6_K", 19: "MOSTLY_IQ2_XXS",
    20: "MOSTLY_IQ2_XS", 21: "MOSTLY_Q2_K_S", 22: "MOSTLY_IQ3_XS", 23: "MOSTLY_IQ3_XXS",
    24: "MOSTLY_IQ1_S", 25: "MOSTLY_IQ4_NL", 26: "MOSTLY_IQ3_S", 27: "MOSTLY_IQ3_M",
    28: "MOSTLY_IQ2_S", 29: "MOSTLY_IQ2_M", 30: "MOSTLY_IQ4_XS", 31: "MOSTLY_IQ1_M",
    32: "MOSTLY_BF16", 36: "MOSTLY_TQ1_0", 37: "MOSTLY_TQ2_0", 38: "MOSTLY_MXFP4_MOE",
}

_GGUF_TOKENIZERS = {"gpt2": "BPE (GPT-2 style byte-level)", "llama": "SentencePiece-style"}
_MAX_ARRAY_SHOWN = 16  # GGUF metadata arrays longer than this are summarized by their length


def gguf_file_type_name(value: Any) -> Optional[str]:
    """The quantization name of a GGUF general.file_type value (e.g. 3 -> "MOSTLY_Q4_1")."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return GGUF_FILE_TYPES.get(value, f"unknown file_type {value}")


def _files_size(path: pathlib.Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.glob("*.safetensors") if p.is_file())


def _read_json_object(path: pathlib.Path) -> dict:
    """A small JSON config as a dict; {} when missing, too large or not an object."""
    try:
        if not path.is_file() or path.stat().st_size > (16 << 20):
            return {}
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _template_source(path: pathlib.Path, gguf: bool) -> str:
    """Which file the chat template comes from (the tokenizer's reading order)."""
    if gguf:
        return "GGUF metadata"
    if (path / "chat_template.jinja").is_file():
        return "chat_template.jinja"
    if _read_json_object(path / "tokenizer_config.json").get("chat_template"):
        return "tokenizer_config.json"
    return "chat_template.json"


def _tokenizer_info(raw: dict, path: pathlib.Path, verbose: bool) -> tuple[dict, dict]:
    """(tokenizer summary, chat template summary), from the tokenizer eli itself would build."""
    from eli.tokenizer import Tokenizer

    gguf = raw.get("format") == "gguf"
    meta = raw.get("gguf_metadata") or {}
    try:
        if gguf:
            tok = Tokenizer.from_gguf_metadata(meta)
        else:
            tok = Tokenizer.from_hf_dir(path)
    except Exception as e:  # noqa: BLE001 -- reported, not raised: info must describe broken models too
        return {"kind": None, "error": str(e)}, {"present": False}
    if gguf:
        model = meta.get("tokenizer.ggml.model")
        kind = f"{_GGUF_TOKENIZERS.get(model, str(model))}, GGUF vocabulary"
    else:
        backend_model = tok.backend.model
        kind = type(backend_model).__name__
        if getattr(backend_model, "byte_fallback", False):
            kind += " with byte fallback (SentencePiece-style)"
        kind += ", tokenizer.json"
    info = {"kind": kind, "vocab_size": tok.vocab_size, "bos_token": tok.bos_token,
            "eos_token": tok.eos_token, "bos_token_id": tok.bos_token_id,
            "eos_token_ids": list(tok.eos_token_ids)}
    template = tok.chat_template
    chat: dict[str, Any] = {"present": bool(template)}
    if template:
        chat.update(source=_template_source(path, gguf), chars=len(template))
        if verbose:
            chat["text"] = template
    return info, chat


def _memory_estimate(spec: dict, n_params: int) -> dict:
    layers, kv_heads, head_dim = (int(spec.get(k) or 0) for k in ("num_layers", "num_kv_heads", "head_dim"))
    ctx = int(spec.get("max_position_embeddings") or 0)
    per_token = {"float32": 2 * layers * kv_heads * head_dim * 4,
                 "bfloat16": 2 * layers * kv_heads * head_dim * 2}
    return {
        "weights_bytes": {"float32": n_params * 4, "bfloat16": n_params * 2},
        "kv_bytes_per_token": per_token,
        "kv_bytes_full_context": {k: v * ctx for k, v in per_token.items()},
        "note": "weights run dequantized (float32 or bfloat16); the KV cache holds K and V of every "
                "layer per token",
    }


# Bytes of one element (plain types) or (elements, bytes) of one block (GGUF block types), by the
# dtype names of eli.inspect_model (runtime/core/dtype.cc).
_DTYPE_BYTES = {"f32": 4, "f16": 2, "bf16": 2, "i32": 4, "i64": 8, "i8": 1, "u8": 1, "f8_e4m3": 1}
_GGUF_BLOCKS = {"q8_0": (32, 34), "q4_0": (32, 18), "q4_1": (32, 20), "q5_0": (32, 22), "q5_1": (32, 24),
                "q4_k": (256, 144), "q5_k": (256, 176), "q6_k": (256, 210), "q2_k": (256, 84), "q3_k": (256, 110),
                "iq4_nl": (32, 18), "iq4_xs": (256, 136)}


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _nbytes(dtype: str, shape) -> int:
    if dtype in _GGUF_BLOCKS:
        elems, nbytes = _GGUF_BLOCKS[dtype]
        return _numel(shape) // elems * nbytes
    return _numel(shape) * _DTYPE_BYTES.get(dtype, 4)


def _ct_weights(q: dict) -> dict:
    groups = q.get("config_groups") or {}
    first = next(iter(groups.values()), {}) if isinstance(groups, dict) else {}
    return (first.get("weights") or {}) if isinstance(first, dict) else {}


def _group_text(gs: Any) -> str:
    return "per-channel" if gs in (None, -1, 0) else f"g{gs}"


def _module_format(ts: dict, q: dict) -> tuple[str, int]:
    """(format, logical parameter count) of one module's tensors {suffix: (dtype, shape)}."""
    method = str(q.get("quant_method", "")).lower() if q else ""
    if "qweight" in ts:
        bits = int(q.get("bits") or q.get("w_bit") or 4)
        dt, shape = ts["qweight"]
        params = _numel(shape) * (32 // bits)
        fmt = f"{method or 'packed'} int{bits} {_group_text(q.get('group_size', q.get('q_group_size')))}"
        if q.get("desc_act"):
            fmt += " act-order"
        return fmt, params
    if "weight_packed" in ts:
        w = _ct_weights(q)
        bits = int(w.get("num_bits") or 4)
        dt, shape = ts["weight_packed"]
        gs = w.get("group_size") if w.get("strategy") == "group" else None
        return f"compressed-tensors int{bits} {_group_text(gs)}", _numel(shape) * (32 // bits)
    if "weight" in ts:
        dt, shape = ts["weight"]
        if dt in ("f8_e4m3", "i8") and "weight_scale" in ts:
            per = "per-tensor" if _numel(ts["weight_scale"][1]) == 1 else "per-channel"
            return f"{'fp8 e4m3' if dt == 'f8_e4m3' else 'int8'} {per}", _numel(shape)
        return dt, _numel(shape)
    dt, shape = next(iter(ts.values()))
    return dt, _numel(shape)


def tensor_groups(tensors: list, quant: Optional[dict]) -> list[dict]:
    """Tensors grouped by module kind (layer index replaced by *) and storage format, each with its
    logical parameters, stored bytes (scales, zero points and g_idx included) and bytes per parameter."""
    modules: dict[str, dict] = collections.defaultdict(dict)
    for name, dtype, shape in tensors:
        mod, _, suffix = str(name).rpartition(".")
        modules[mod][suffix] = (str(dtype), list(shape))
    groups: dict[tuple, dict] = {}
    for mod, ts in modules.items():
        fmt, params = _module_format(ts, quant or {})
        if "bias" in ts and len(ts) > 1:
            params += _numel(ts["bias"][1])
        key = re.sub(r"(^|\.)(layers|blk)\.\d+(\.|$)", r"\1\2.*\3", mod)
        g = groups.setdefault((key, fmt), {"group": key, "format": fmt, "modules": 0, "params": 0, "bytes": 0})
        g["modules"] += 1
        g["params"] += params
        g["bytes"] += sum(_nbytes(dt, shape) for dt, shape in ts.values())
    out = list(groups.values())
    for g in out:
        g["bytes_per_param"] = round(g["bytes"] / g["params"], 4) if g["params"] else None
    return out


def _metadata_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and len(value) > _MAX_ARRAY_SHOWN:
        return {"array_length": len(value)}
    return value


def summarize(raw: dict, path: Optional[str] = None, *, verbose: bool = False) -> dict:
    """The `eli info` dict from eli.inspect_model(path)'s result (see the file header)."""
    path = str(path or raw.get("path") or "")
    root = pathlib.Path(path)
    spec = dict(raw.get("spec") or {})
    fmt = raw.get("format")
    meta = raw.get("gguf_metadata") or {}
    tensors = list(raw.get("tensors") or [])
    n_params = int(raw.get("num_params") or 0)
    dtypes = collections.Counter(str(t[1]) for t in tensors)
    out: dict[str, Any] = {
        "path": path,
        "architecture": spec.get("architecture"),
        "format": fmt,
    }
    if fmt == "gguf":
        out["name"] = meta.get("general.name") or root.stem
        out["file_type"] = meta.get("general.file_type")
        out["quantization"] = gguf_file_type_name(meta.get("general.file_type"))
    else:
        cfg = _read_json_object(root / "config.json")
        out["name"] = cfg.get("_name_or_path") or root.name
        out["dtype"] = cfg.get("torch_dtype") or cfg.get("dtype")
        q = cfg.get("quantization_config")
        out["quantization"] = q.get("quant_method") if isinstance(q, dict) else None
    out["tensor_dtypes"] = dict(dtypes.most_common())
    qcfg = None if fmt == "gguf" else _read_json_object(root / "config.json").get("quantization_config")
    groups = tensor_groups(tensors, qcfg if isinstance(qcfg, dict) else None)
    out["tensor_groups"] = groups
    total_params = sum(g["params"] for g in groups)
    total_bytes = sum(g["bytes"] for g in groups)
    out["weight_bytes"] = total_bytes
    out["bytes_per_param"] = round(total_bytes / total_params, 4) if total_params else None
    if isinstance(qcfg, dict):
        n_params = total_params  # packed tensors hold several parameters per stored element
    out["num_params"] = n_params
    try:
        out["size_bytes"] = _files_size(root)
    except OSError:
        out["size_bytes"] = None
    out["context_length"] = spec.get("max_position_embeddings")
    out["tokenizer"], out["chat_template"] = _tokenizer_info(raw, root, verbose)
    out["memory_estimate"] = _memory_estimate(spec, n_params)
    out["spec"] = spec
    if verbose:
        out["tensors"] = [{"name": t[0], "dtype": t[1], "shape": list(t[2])} for t in tensors]
        if meta:
            out["gguf_metadata"] = {k: _metadata_value(v) for k, v in meta.items()}
    return out


# --------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------


def _count(n: Optional[int]) -> str:
    if n is None:
        return "-"
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def _short(value: Any, limit: int = 100) -> str:
    text = str(value)
    if "\n" in text or len(text) > limit:
        first = text.strip().splitlines()[0] if text.strip() else ""
        return f"{first[:60]!r}... ({len(text):,} chars)"
    return text


def format_text(info: dict, *, verbose: bool = False) -> str:
    from eli.hub import format_bytes

    spec = info.get("spec") or {}
    lines: list[tuple[str, str]] = [("path", info.get("path", "")), ("name", str(info.get("name")))]
    dtypes = ", ".join(f"{k} x {v}" for k, v in (info.get("tensor_dtypes") or {}).items())
    if info.get("format") == "gguf":
        fmt = f"GGUF, {info.get('quantization') or 'no general.file_type'}"
    else:
        fmt = f"{info.get('format')}, {info.get('dtype') or 'dtype not stated in config.json'}"
        if info.get("quantization"):
            fmt += f", quantization {info['quantization']}"
    lines.append(("format", f"{fmt} (tensors: {dtypes})" if dtypes else fmt))
    kv = spec.get("num_kv_heads")
    shape = (f"{spec.get('num_layers')} layers, hidden {spec.get('hidden_size')}, "
             f"{spec.get('num_heads')} heads ({kv} KV), head_dim {spec.get('head_dim')}, "
             f"FFN {spec.get('intermediate_size')}")
    lines.append(("architecture", f"{info.get('architecture')}: {shape}"))
    size = info.get("size_bytes")
    lines.append(("parameters", f"{_count(info.get('num_params'))} ({info.get('num_params') or 0:,}); "
                  f"files {format_bytes(size) if size is not None else '-'}"))
    ctx = info.get("context_length")
    lines.append(("context length", f"{ctx:,} tokens" if isinstance(ctx, int) else "-"))
    tok = info.get("tokenizer") or {}
    if tok.get("error"):
        lines.append(("tokenizer", f"cannot be loaded: {tok['error']}"))
    else:
        specials = ", ".join(f"{k} {tok[k + '_token']}" for k in ("bos", "eos") if tok.get(k + "_token"))
        lines.append(("tokenizer", f"{tok.get('kind')}, {tok.get('vocab_size'):,} tokens"
                      + (f"; {specials}" if specials else "")))
    chat = info.get("chat_template") or {}
    if chat.get("present"):
        lines.append(("chat template", f"yes ({chat.get('source')}, {chat.get('chars', 0):,} chars)"))
    else:
        lines.append(("chat template", "none (chat requests fall back to ChatML; use --raw prompts)"))
    mem = info.get("memory_estimate") or {}
    if mem:
        w, t, full = mem["weights_bytes"], mem["kv_bytes_per_token"], mem["kv_bytes_full_context"]
        ctx_text = f"{ctx:,}" if isinstance(ctx, int) else "?"
        lines.append(("memory (est.)", f"weights {format_bytes(w['float32'])} as float32, "
                      f"{format_bytes(w['bfloat16'])} as bfloat16; KV cache "
                      f"{format_bytes(t['float32'])} per token as float32 "
                      f"({format_bytes(full['float32'])} for one {ctx_text}-token sequence)"))
    if info.get("bytes_per_param"):
        lines.append(("weights", f"{format_bytes(info.get('weight_bytes') or 0)} stored, "
                      f"{info['bytes_per_param']:.3f} bytes per parameter"))
    plan = info.get("placement")
    if plan:
        # The engine's own description (binary units, as in its load log and error messages).
        lines.append(("placement", f"{plan['placement']} ({plan['offloaded_layers']} of {plan['n_layers']} "
                      "layers offloaded)"))
    width = max(len(k) for k, _ in lines) + 1
    text = [f"{k + ':':<{width}} {v}" for k, v in lines]
    groups = info.get("tensor_groups") or []
    if groups:
        text.append("tensor groups (format, parameters, bytes per parameter):")
        gw = max(len(g["group"]) for g in groups)
        fw = max(len(g["format"]) for g in groups)
        for g in groups:
            bpp = f"{g['bytes_per_param']:.3f}" if g.get("bytes_per_param") is not None else "-"
            text.append(f"  {g['group']:<{gw}}  {g['format']:<{fw}}  {_count(g['params']):>7}  {bpp} B/param")
    if not verbose:
        text.append("(eli info --verbose: the full spec, metadata and tensor list)")
        return "\n".join(text) + "\n"
    text.append("")
    text.append("spec:")
    sw = max((len(k) for k in spec), default=0) + 1
    text += [f"  {k + ':':<{sw}} {_short(v)}" for k, v in spec.items()]
    meta = info.get("gguf_metadata")
    if meta:
        text.append("")
        text.append("gguf metadata:")
        mw = max(len(k) for k in meta) + 1
        for k, v in meta.items():
            if isinstance(v, dict) and "array_length" in v:
                v = f"[array of {v['array_length']:,} items]"
            elif k == "general.file_type":
                v = f"{v} ({gguf_file_type_name(v)})"
            text.append(f"  {k + ':':<{mw}} {_short(v)}")
    tensors = info.get("tensors") or []
    if tensors:
        text.append("")
        text.append(f"tensors ({len(tensors)}):")
        nw = max(len(t["name"]) for t in tensors)
        dw = max(len(t["dtype"]) for t in tensors)
        for t in tensors:
            shape = " x ".join(str(d) for d in t["shape"])
            text.append(f"  {t['name']:<{nw}}  {t['dtype']:<{dw}}  {shape}")
    return "\n".join(text) + "\n"


__all__ = ["GGUF_FILE_TYPES", "gguf_file_type_name", "summarize", "format_text"]
