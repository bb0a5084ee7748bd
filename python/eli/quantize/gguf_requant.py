"""eli.quantize.gguf_requant: requantize a GGUF model file to another block type, without torch.

quantize_gguf(src, out, qtype, imatrix=None) reads a GGUF file with gguf-py (llama.cpp's own reader/writer, the
`gguf` package), dequantizes each weight matrix with eli's reference dequantizers
(kernels/ref/dequant_ref.cc, through _eli.gguf_dequantize), quantizes it with eli's quantizers
(kernels/ref/gguf_quantize.cc, _eli.gguf_quantize) and writes a new GGUF with gguf-py's GGUFWriter,
which takes pre-quantized block bytes with their type (add_tensor_info(..., raw_dtype=...)), so
no GGUF writing code lives here.

Invariants:
  * every metadata key/value is copied as stored (strings as raw bytes, so tokenizer vocabularies
    with non-UTF-8 byte tokens round-trip), except general.file_type and
    general.quantization_version, which are set for the new file;
  * 1-D tensors (norms, biases), *_norm.weight, rope / position tables and non-"weight" tensors are
    copied byte for byte; a matrix already of its target type is copied too (no second rounding);
  * the output goes to a temporary file beside `out`, renamed over `out` only after the last byte
    is written: an error or an interrupt leaves neither a partial `out` nor the temporary file;
  * bad input (unknown qtype, missing source, out == src, a tensor type eli cannot read, NaN
    weights) raises before or instead of writing, with the tensor's name where one is involved.

Importance matrix (imatrix=): {GGUF tensor name: (row_len,) float32 weights}, the mean x_j^2 of the
inputs each matrix multiplies, read from a llama.cpp imatrix file (imatrix=PATH, GGUF or legacy .dat:
eli.quantize.imatrix_file; one weight row per expert for stacked experts), or from eli's calibration observer (gguf_imatrix(src, text): a CPU float32
forward of the source model over the text, runtime/quantize/calibration.h). Each matrix with an entry
is quantized with its column weights weighting the squared error (kernels/ref/gguf_quantize.h), as
llama.cpp's --imatrix; matrices without one (the output projection, the embedding) are unweighted.

Tensor types (llama.cpp's llama_tensor_get_type rules for these file types, restated):
  * the output projection, and the token embedding when the model has no separate output
    (tied), gets Q6_K unless the target is Q8_0; Q8_0 when its rows don't divide into the target's
    blocks;
  * q2_k: attn_v gets Q4_K when the model groups >= 4 query heads per KV head, else Q3_K;
    ffn_down and attn_output get Q3_K;
  * q3_k_m: attn_v gets Q5_K in the first two layers, Q4_K after; ffn_down Q5_K in the first
    sixteenth of the layers (i < n/16), Q4_K after; attn_output and a merged attn_qkv Q4_K;
  * q3_k_l: attn_v, ffn_down and attn_output get Q5_K, a merged attn_qkv Q4_K;
  * q3_k_s: every other matrix Q3_K (no bumps, as llama.cpp's Q3_K_S for dense models);
  * models with 8 experts: attn_output gets Q5_K (q2_k, q3_k_s, q3_k_m, q4_k_m, iq4_nl, iq4_xs);
  * iq4_nl / iq4_xs (LLAMA_FTYPE_MOSTLY_IQ4_NL / IQ4_XS): attn_v gets Q5_K when the model groups >= 4
    query heads per KV head; ffn_down gets Q5_K in the first eighth of the layers (i < n/8) unless an
    importance matrix is given; every other matrix (the token embedding of a model with a separate
    output included) gets the target type;
  * q4_k_m / q5_k_m: attn_v and ffn_down of the "more bits" layers get Q6_K. With i the layer's
    number (blk.i; the position among the n such tensors for a name without one), the more-bits layers are the first eighth (i < n/8), the last
    eighth (i >= 7n/8), and every third layer in between ((i - n/8) % 3 == 2, integer division),
    i.e. the ends of the network plus a regular third of its middle. A merged attn_qkv gets Q5_K
    (q4_k_m) / Q6_K (q5_k_m);
  * models with 8 experts: attn_v and attn_k get Q8_0 (llama.cpp's MoE rule, all file types);
  * q8_0, q4_0, q4_k, q5_k, q6_k: every other matrix gets that type. (llama.cpp's Q4_K_S / Q5_K_S
    bump a few early layers a step; eli's plain q4_k / q5_k do not. The file_type is written as
    the nearest llama.cpp type: Q4_K_S, Q5_K_S.)
  * a matrix whose row length is not a multiple of its target's block size falls back as
    llama.cpp's does, with a logged note: Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0 (rows a multiple
    of 32), else F16; IQ4_XS -> IQ4_NL; Q2_K / Q3_K -> Q4_0 (what the llama.cpp of llama-cpp-python
    0.3.36 writes: scripts/make_iq4_references.py checks the SmolLM2 q3_k_m types against it).
    (SmolLM2-135M's hidden size 576 = 2.25 x 256 sends most of its matrices there.)
"""
from __future__ import annotations

import logging
import os
import re
import uuid
from dataclasses import dataclass
from typing import Optional

import numpy as np

log = logging.getLogger("eli.quantize")

# qtype -> (base block type name, llama.cpp general.file_type code)
QTYPES = {
    "q8_0": ("Q8_0", 7),
    "q4_0": ("Q4_0", 2),
    "q4_k": ("Q4_K", 14),    # LLAMA_FTYPE_MOSTLY_Q4_K_S (nearest)
    "q5_k": ("Q5_K", 16),    # LLAMA_FTYPE_MOSTLY_Q5_K_S (nearest)
    "q6_k": ("Q6_K", 18),
    "q4_k_m": ("Q4_K", 15),
    "q5_k_m": ("Q5_K", 17),
    "q2_k": ("Q2_K", 10),
    "q3_k_s": ("Q3_K", 11),
    "q3_k_m": ("Q3_K", 12),
    "q3_k_l": ("Q3_K", 13),
    "iq4_nl": ("IQ4_NL", 25),
    "iq4_xs": ("IQ4_XS", 30),
}
_MIXES = ("q4_k_m", "q5_k_m")
_IQ4 = ("iq4_nl", "iq4_xs")
# GGUF types eli's reference dequantizers read (source tensors that must be requantized).
_READABLE = {"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
             "Q6_K", "IQ4_NL", "IQ4_XS"}
# Matrices that stay as stored (llama.cpp keeps these unquantized too).
_KEEP = ("_norm.weight", "ffn_gate_inp.weight", "pos_embd", "token_types", "rope_freqs", "attn_rel_b")
# A K type whose row length is not a multiple of 256 falls back to a 32-element type as llama.cpp's
# (tensor_type_fallback); anything still not dividing falls back to F16.
_FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "IQ4_XS": "IQ4_NL", "Q4_K": "Q5_0", "Q5_K": "Q5_1",
             "Q6_K": "Q8_0"}
_LAYER = re.compile(r"(?:^|\.)blk\.(\d+)\.")


def _import_gguf():
    try:
        import gguf  # noqa: F401
    except ImportError as e:
        raise ImportError("GGUF requantization needs the `gguf` package (llama.cpp's gguf-py): "
                          "pip install gguf  (or pip install 'efficient-llm-inference[quantize]')") from e
    return gguf


def _layer_index(name: str, counter: int) -> int:
    """The layer number in `name` (blk.N.), else the running count of such tensors: the files'
    tensor order need not be the layers' (SmolLM2's GGUF lists blk.0, blk.1, blk.10, ...), and
    llama.cpp's more-bits rules go by layer."""
    m = _LAYER.search(name)
    return int(m.group(1)) if m else counter


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


@dataclass
class TensorPlan:
    name: str
    src_type: str          # GGML type name, e.g. "Q4_1"
    ne: tuple              # GGUF dims, innermost (row length) first
    target: Optional[str]  # GGML type name to write; None: copy as stored
    note: str = ""

    @property
    def row_len(self) -> int:
        return int(self.ne[0])

    @property
    def rows(self) -> int:
        return int(np.prod(self.ne[1:], dtype=np.int64)) if len(self.ne) > 1 else 1


def _quantizable(name: str, n_dims: int) -> bool:
    return n_dims >= 2 and name.endswith(".weight") and not any(k in name for k in _KEEP)


def plan_tensors(tensors, qtype: str, *, n_layer: Optional[int] = None, n_expert: int = 0, n_gqa: int = 1,
                 has_imatrix: bool = False):
    """The target type of every tensor. tensors: [(name, src_type_name, ne)] in file order (ne
    innermost first); n_gqa: query heads per KV head; has_imatrix: an importance matrix will weight
    the quantization (iq4_nl / iq4_xs then keep ffn_down at their own type, as llama.cpp). Pure
    function (the rules in the module docstring); returns [TensorPlan]."""
    base, _ = QTYPES[qtype]
    sizes = _block_sizes()
    names = [t[0] for t in tensors]
    has_output = "output.weight" in names
    n_attn_v = sum(1 for n in names if "attn_v.weight" in n or "attn_qkv.weight" in n)
    n_down = n_layer if n_layer else sum(1 for n in names if "ffn_down" in n)
    i_attn_v = i_down = 0
    plans = []
    for name, src_type, ne in tensors:
        ne = tuple(int(d) for d in ne)
        if not _quantizable(name, len(ne)):
            plans.append(TensorPlan(name, src_type, ne, None))
            continue
        t = base
        if name == "output.weight" or (name == "token_embd.weight" and not has_output):
            if ne[0] % sizes[base][0] != 0:
                t = "Q8_0"
            elif base != "Q8_0":
                t = "Q6_K"
        elif "attn_v.weight" in name:
            i = _layer_index(name, i_attn_v)
            if qtype in _MIXES and _use_more_bits(i, n_attn_v):
                t = "Q6_K"
            elif qtype == "q2_k":
                t = "Q4_K" if n_gqa >= 4 else "Q3_K"
            elif qtype == "q3_k_m":
                t = "Q5_K" if i < 2 else "Q4_K"
            elif qtype == "q3_k_l":
                t = "Q5_K"
            elif qtype in _IQ4 and n_gqa >= 4:
                t = "Q5_K"
            if n_expert == 8:
                t = "Q8_0"
            i_attn_v += 1
        elif "attn_k.weight" in name:
            if n_expert == 8:
                t = "Q8_0"
        elif "attn_qkv.weight" in name:
            if qtype == "q4_k_m":
                t = "Q5_K"
            elif qtype == "q5_k_m":
                t = "Q6_K"
            elif qtype in ("q3_k_m", "q3_k_l"):
                t = "Q4_K"
        elif "attn_output.weight" in name:
            if n_expert == 8:
                if qtype in ("q2_k", "q3_k_s", "q3_k_m", "q4_k_m") + _IQ4:
                    t = "Q5_K"
            elif qtype == "q2_k":
                t = "Q3_K"
            elif qtype == "q3_k_m":
                t = "Q4_K"
            elif qtype == "q3_k_l":
                t = "Q5_K"
        elif "ffn_down" in name:
            i = _layer_index(name, i_down)
            if qtype in _MIXES and _use_more_bits(i, n_down):
                t = "Q6_K"
            elif qtype == "q2_k":
                t = "Q3_K"
            elif qtype == "q3_k_m":
                t = "Q5_K" if i < n_down // 16 else "Q4_K"
            elif qtype == "q3_k_l":
                t = "Q5_K"
            elif qtype in _IQ4 and i < n_down // 8 and not has_imatrix:
                t = "Q5_K"
            i_down += 1
        note = ""
        if ne[0] % sizes[t][0] != 0:
            fallback = _FALLBACK.get(t, "F16")
            if ne[0] % sizes[fallback][0] != 0:
                fallback = "F16"
            note = f"row length {ne[0]} is not a multiple of {t}'s block of {sizes[t][0]}: using {fallback}"
            t = fallback
        plans.append(TensorPlan(name, src_type, ne, t, note))
    return plans


def _block_sizes():
    gguf = _import_gguf()
    return {q.name: gguf.GGML_QUANT_SIZES[q] for q in gguf.GGMLQuantizationType if q in gguf.GGML_QUANT_SIZES}


def _field_value(gguf, field):
    """(value, type, sub_type) of a reader field, strings as raw bytes; None to skip (with reason)."""
    T = gguf.GGUFValueType
    vtype = field.types[0]
    if vtype == T.STRING:
        return bytes(field.parts[field.data[0]]), vtype, None
    if vtype == T.ARRAY:
        sub = field.types[-1] if len(field.types) > 1 else None
        if sub is None or len(field.data) == 0:
            return None  # an empty array (gguf-py cannot write one)
        if sub == T.ARRAY:
            return None  # nested arrays (gguf-py cannot read them element-wise)
        if sub == T.STRING:
            return [bytes(field.parts[i]) for i in field.data], vtype, sub
        return field.contents(), vtype, sub
    return field.contents(), vtype, None


def _tensor_bytes(t) -> np.ndarray:
    """The tensor's stored bytes as uint8 (rows, row_bytes)."""
    raw = np.ascontiguousarray(t.data).reshape(-1).view(np.uint8)
    rows = int(np.prod([int(d) for d in t.shape[1:]], dtype=np.int64)) if len(t.shape) > 1 else 1
    return raw.reshape(rows, -1)


def _check_args(src: str, out: str, qtype: str) -> str:
    if not isinstance(qtype, str) or qtype.lower() not in QTYPES:
        raise ValueError(f"unknown GGUF quantization type {qtype!r}; choose one of {', '.join(QTYPES)}")
    if not os.path.isfile(src):
        raise FileNotFoundError(f"GGUF source {src!r} does not exist (or is not a file)")
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise FileNotFoundError(f"output directory {out_dir!r} does not exist")
    if os.path.realpath(src) == os.path.realpath(out) or (os.path.exists(out) and os.path.samefile(src, out)):
        raise ValueError(f"output path {out!r} is the source file; write the requantized model elsewhere")
    return qtype.lower()


def quantize_gguf(src: str, out: str, qtype: str, *, imatrix=None, progress: bool = True) -> None:
    """Writes `out`, a copy of the GGUF `src` with its weight matrices requantized to `qtype`
    (q8_0, q4_0, q4_k, q5_k, q6_k, iq4_nl, iq4_xs, or the llama.cpp mixes q2_k, q3_k_s, q3_k_m,
    q3_k_l, q4_k_m, q5_k_m). Metadata (architecture, tokenizer, chat template) is copied;
    general.file_type is updated. imatrix: None; {tensor name: (row_len,) column weights, or
    (n_expert, row_len) for a stack of experts} (gguf_imatrix); or the path of a llama.cpp imatrix
    file (GGUF or legacy .dat, eli.quantize.imatrix_file), whose entries must match the matrices'
    row lengths (ValueError naming the tensor); matrices it has no entry for are quantized without
    weights, with one logged note naming them."""
    src, out = os.fspath(src), os.fspath(out)
    qtype = _check_args(src, out, qtype)
    imatrix_file = None
    if isinstance(imatrix, (str, os.PathLike)):
        from .imatrix_file import read_imatrix

        imatrix_file = read_imatrix(imatrix)
        imatrix = None
    imatrix = _check_imatrix(imatrix)
    gguf = _import_gguf()
    from .. import _eli

    try:
        reader = gguf.GGUFReader(src, "r")
    except Exception as e:  # gguf-py raises ValueError / struct errors of its own on a bad file
        raise ValueError(f"cannot read GGUF file {src!r}: {e}") from e
    if reader.byte_order != "I":
        raise ValueError(f"{src!r} is a big-endian GGUF file; only little-endian files are supported")
    fields = reader.fields
    arch_field = fields.get("general.architecture")
    if arch_field is None:
        raise ValueError(f"{src!r} has no general.architecture")
    arch = bytes(arch_field.parts[arch_field.data[0]]).decode("utf-8")

    def meta_int(key):
        f = fields.get(key)
        return int(f.contents()) if f is not None and f.types and f.types[0] != gguf.GGUFValueType.ARRAY else None

    tensors = [(t.name, t.tensor_type.name, tuple(int(d) for d in t.shape)) for t in reader.tensors]
    n_head, n_head_kv = meta_int(f"{arch}.attention.head_count"), meta_int(f"{arch}.attention.head_count_kv")
    plans = plan_tensors(tensors, qtype, n_layer=meta_int(f"{arch}.block_count"),
                         n_expert=meta_int(f"{arch}.expert_count") or 0,
                         n_gqa=(n_head // n_head_kv) if n_head and n_head_kv else 1,
                         has_imatrix=bool(imatrix) or imatrix_file is not None)
    if imatrix_file is not None:
        from .imatrix_file import match_entries

        quantized = [(p.name, p.ne) for p in plans if p.target is not None and p.target != p.src_type]
        imatrix, missing = match_entries(imatrix_file, quantized)
        if missing:
            log.warning("imatrix %s has no entry for %d of the %d matrices to quantize (%s): those are quantized "
                        "without importance weights", imatrix_file.path, len(missing), len(quantized),
                        ", ".join(missing[:6]) + (", ..." if len(missing) > 6 else ""))
    for p in plans:
        w = imatrix.get(p.name)
        n_mat = p.ne[2] if len(p.ne) > 2 else 1
        if w is not None and p.target is not None and w.shape not in ((p.row_len,), (n_mat, p.row_len)):
            raise ValueError(f"imatrix entry {p.name}: {' x '.join(map(str, w.shape))} column weights for rows of "
                             f"{p.row_len}" + (f" ({n_mat} experts)" if n_mat > 1 else ""))
        if p.target is not None and p.target != p.src_type and p.src_type not in _READABLE:
            raise ValueError(f"tensor {p.name}: source type {p.src_type} cannot be dequantized by eli "
                             f"(readable: {', '.join(sorted(_READABLE))})")
        if p.note:
            log.warning("%s: %s", p.name, p.note)

    out_dir = os.path.dirname(os.path.abspath(out))
    # Not mkstemp: GGUFWriter creates the file itself, with the umask's permissions (mkstemp's are 0600).
    tmp = os.path.join(out_dir, f".{os.path.basename(out)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    writer = None
    try:
        writer = gguf.GGUFWriter(tmp, arch=arch)
        _copy_metadata(gguf, writer, fields, QTYPES[qtype][1])
        Q = gguf.GGMLQuantizationType
        for p, t in zip(plans, reader.tensors):
            dtype = p.src_type if p.target is None or p.target == p.src_type else p.target
            shape = list(reversed(p.ne))  # numpy order, outermost first
            elems, nbytes = gguf.GGML_QUANT_SIZES[Q[dtype]]
            row_bytes = p.row_len // elems * nbytes
            writer.add_tensor_info(p.name, shape[:-1] + [row_bytes], np.dtype(np.uint8), p.rows * row_bytes,
                                   raw_dtype=Q[dtype])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plans), unit="tensor", desc=f"quantize {qtype}", disable=not progress)
        for p, t in zip(plans, reader.tensors):
            writer.write_tensor_data(_convert(_eli, p, t, imatrix.get(p.name)))
            bar.update(1)
        bar.close()
        writer.close()
        writer = None
        os.replace(tmp, out)
    except BaseException:
        if writer is not None:
            try:
                writer.close()
            except Exception:
                pass
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        del reader


def _copy_metadata(gguf, writer, fields, file_type: int) -> None:
    for name, field in fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type",
                                                 "general.quantization_version"):
            continue
        if name == "general.alignment":
            writer.add_custom_alignment(int(field.contents()))
            continue
        v = _field_value(gguf, field)
        if v is None:
            log.warning("metadata %s: an empty or nested array, which gguf-py cannot write; not copied", name)
            continue
        writer.add_key_value(name, v[0], v[1], sub_type=v[2])
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _convert(_eli, p: TensorPlan, t, weights=None) -> np.ndarray:
    """The bytes to write for tensor `t` under plan `p` (uint8, (rows, row_bytes)); weights: the
    tensor's imatrix column weights or None."""
    raw = _tensor_bytes(t)
    if p.target is None or p.target == p.src_type:
        return raw
    try:
        x = _eli.gguf_dequantize(p.src_type.lower(), raw, p.row_len)
        if p.target == "F16":
            return np.ascontiguousarray(x.astype(np.float16)).view(np.uint8)
        if weights is not None and weights.ndim == 2:  # one weight row per expert matrix
            per = x.shape[0] // weights.shape[0]
            return np.concatenate([_eli.gguf_quantize(p.target.lower(), np.ascontiguousarray(x[e * per:(e + 1) * per]),
                                                      imatrix=weights[e]) for e in range(weights.shape[0])])
        return _eli.gguf_quantize(p.target.lower(), x, imatrix=weights)
    except ValueError as e:
        raise ValueError(f"tensor {p.name} ({p.src_type} -> {p.target}): {e}") from e


def _check_imatrix(imatrix) -> dict:
    if imatrix is None:
        return {}
    if not isinstance(imatrix, dict):
        raise TypeError(f"imatrix must be a dict {{tensor name: column weights}}, got {type(imatrix).__name__}")
    out = {}
    for name, w in imatrix.items():
        w = np.asarray(w, dtype=np.float32)
        w = np.ascontiguousarray(w if w.ndim == 2 else w.reshape(-1))
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"imatrix entry {name}: weights must be finite and >= 0")
        out[name] = w
    return out


# eli's linear names (runtime/model/gguf_spec.cc maps GGUF names to these; merged projections share
# their input) -> the GGUF matrices that multiply the same input.
_ELI_TO_GGUF = {
    "self_attn.q_proj": ("attn_q",), "self_attn.k_proj": ("attn_k",), "self_attn.v_proj": ("attn_v",),
    "self_attn.qkv_proj": ("attn_q", "attn_k", "attn_v", "attn_qkv"), "self_attn.o_proj": ("attn_output",),
    "mlp.gate_proj": ("ffn_gate",), "mlp.up_proj": ("ffn_up",), "mlp.gate_up_proj": ("ffn_gate", "ffn_up"),
    "mlp.down_proj": ("ffn_down",),
}
_ELI_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


def imatrix_names(eli_name: str) -> list:
    """The GGUF tensor names whose input is eli linear `eli_name`'s ([] if eli's name is not mapped)."""
    m = _ELI_LAYER.match(eli_name)
    if not m:
        return []
    return [f"blk.{m.group(1)}.{g}.weight" for g in _ELI_TO_GGUF.get(m.group(2), ())]


def gguf_imatrix(src: str, text: Optional[str] = None, *, ids: Optional[list] = None, progress: bool = True) -> dict:
    """The importance matrix of the GGUF model `src` on `text` (None: eli's built-in calibration
    paragraph) or on token ids `ids` (no tokenizer needed): {GGUF tensor name: mean over calibration
    rows of x_j^2, float32 (row_len,)}, from a CPU float32 forward with eli's calibration observer
    (the statistics `eli quantize --method gptq` uses; the diagonal of its mean x x^T)."""
    from .. import _eli, engine_options
    from ..tokenizer import Tokenizer
    from .calib import DEFAULT_TEXT, SEQ_LEN, _bar

    src = os.fspath(src)
    if not os.path.isfile(src):
        raise FileNotFoundError(f"GGUF source {src!r} does not exist (or is not a file)")
    config = engine_options.engine_config(src, device="cpu", dtype="float32", caller="quantize")
    engine = _eli.Engine(config)
    info = engine.info()
    if ids is None:
        meta = _eli.inspect_model(src)
        tok = Tokenizer.from_gguf_metadata(meta["gguf_metadata"], n_embedding_rows=info["spec"]["vocab_size"])
        ids = tok.encode(DEFAULT_TEXT if text is None else text)
    ids = [int(i) for i in ids]
    if len(ids) < 2:
        raise ValueError("the calibration text gives fewer than 2 tokens")
    step = max(2, min(SEQ_LEN, info["max_model_len"]))
    acc: dict = {}
    for i in _bar(range(0, len(ids), step), progress, "imatrix", "seq"):
        for name, (_, hess, rows) in _eli.calibrate(engine, [ids[i:i + step]]).items():
            d = np.diagonal(hess).astype(np.float64) * rows
            a, r = acc.get(name, (0.0, 0))
            acc[name] = (a + d, r + rows)
    out = {}
    for name, (a, r) in acc.items():
        for g in imatrix_names(name):
            out[g] = np.ascontiguousarray(a / r, dtype=np.float32)
    return out
