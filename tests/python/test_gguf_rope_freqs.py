# tests/python/test_gguf_rope_freqs.py: Llama-3.x GGUFs carry their RoPE scaling as the tensor
# rope_freqs.weight (per-pair frequency divisors, llama.cpp's converter form), not as metadata.
#
# The tiny HF checkpoint tests/data/models/llama_rope_llama3 (rope_scaling llama3, with a transformers
# reference.npz from scripts/make_references.py) is converted here, in a temp dir, to the GGUF that
# llama.cpp's convert_hf_to_gguf.py would write: F32 weights, Q/K rows permuted, no rope scaling keys,
# rope_freqs.weight computed the converter's way (float32). eli must give the same logits on both
# (1e-4 relative, the parity tolerance), and refuse malformed rope_freqs with eli.ModelLoadError.
# A GGUF without rope_freqs must differ (the test would catch the tensor being ignored).
import json
import math
import pathlib
import struct

import numpy as np
import pytest

eli = pytest.importorskip("eli")
gguf = pytest.importorskip("gguf")

HF_DIR = pathlib.Path(__file__).resolve().parent.parent / "data" / "models" / "llama_rope_llama3"
REL_TOL = 1e-4


def read_safetensors_f32(path: pathlib.Path) -> dict:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + b:8 + n + e], dtype="<f4").reshape(info["shape"])
    return out


def converter_rope_divisors(cfg: dict) -> np.ndarray:
    """convert_hf_to_gguf.py (LlamaModel, rope_type llama3) semantics, float32 like the converter."""
    rs = cfg["rope_scaling"]
    base, dim = cfg["rope_theta"], cfg["head_dim"]
    factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old_ctx = rs["original_max_position_embeddings"]
    freqs = (1.0 / (np.float32(base) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))).astype(np.float32)
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    out = []
    for f in freqs:
        wavelen = np.float32(2 * math.pi) / f
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (np.float32(old_ctx) / wavelen - np.float32(low)) / np.float32(high - low)
            out.append(1.0 / ((1 - smooth) / np.float32(factor) + smooth))
    return np.asarray(out, dtype=np.float32)


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's converter row permutation of Q/K (interleaved rotary pairs)."""
    return np.ascontiguousarray(w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def write_gguf(path: pathlib.Path, rope_freqs=None, rope_freqs_raw=None):
    """The HF checkpoint as a llama GGUF. rope_freqs: f32 array (or None to omit the tensor);
    rope_freqs_raw: (array, GGMLQuantizationType) written as is, for the malformed cases."""
    cfg = json.loads((HF_DIR / "config.json").read_text())
    st = read_safetensors_f32(HF_DIR / "model.safetensors")
    heads, kv_heads, head_dim = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(cfg["vocab_size"])
    n_vocab = cfg["vocab_size"]
    w.add_tokenizer_model("llama")
    w.add_token_list([f"tok{i}" for i in range(n_vocab)])
    w.add_token_scores([0.0] * n_vocab)
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    if rope_freqs is not None:
        w.add_tensor("rope_freqs.weight", np.asarray(rope_freqs, dtype=np.float32))
    if rope_freqs_raw is not None:
        arr, qtype = rope_freqs_raw
        w.add_tensor("rope_freqs.weight", arr, raw_dtype=qtype)
    w.add_tensor("token_embd.weight", st["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", st["model.norm.weight"])
    w.add_tensor("output.weight", st["lm_head.weight"])
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "input_layernorm": "attn_norm",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for i in range(cfg["num_hidden_layers"]):
        for hf, g in names.items():
            t = st[f"model.layers.{i}.{hf}.weight"]
            if g == "attn_q":
                t = permute_qk(t, heads)
            elif g == "attn_k":
                t = permute_qk(t, kv_heads)
            w.add_tensor(f"blk.{i}.{g}.weight", np.ascontiguousarray(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _score(model_path, ids) -> np.ndarray:
    llm = eli.LLM(str(model_path), device="cpu", dtype="float32")
    try:
        return np.asarray(llm.score(ids), dtype=np.float64)
    finally:
        llm.shutdown()


def _rel_err(got, want) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.fixture(scope="module")
def reference():
    with np.load(HF_DIR / "reference.npz") as z:
        return [int(t) for t in z["input_ids"]], z["logits"].astype(np.float64)


@pytest.fixture(scope="module")
def divisors():
    d = converter_rope_divisors(json.loads((HF_DIR / "config.json").read_text()))
    # The fixture's pairs fall in all three llama3 bands (unscaled, smoothed, divided by factor).
    assert (d == 1.0).any() and (d == 8.0).any() and ((d > 1.0) & (d < 8.0)).any(), d
    return d


def test_gguf_rope_freqs_matches_hf_llama3(tmp_path, reference, divisors):
    ids, want = reference
    assert len(ids) > 1
    hf = _score(HF_DIR, ids)
    path = write_gguf(tmp_path / "llama3.gguf", rope_freqs=divisors)
    meta = eli.inspect_model(str(path))
    assert meta["format"] == "gguf"
    got = _score(path, ids)
    assert got.shape == hf.shape == want.shape
    assert np.isfinite(got).all()
    assert _rel_err(got, hf) <= REL_TOL, f"GGUF vs HF checkpoint: {_rel_err(got, hf):.3e}"
    assert _rel_err(got, want) <= REL_TOL, f"GGUF vs transformers: {_rel_err(got, want):.3e}"


def test_gguf_without_rope_freqs_differs(tmp_path, reference):
    # The same weights with no rope_freqs: unscaled RoPE, equal at position 0 only.
    ids, want = reference
    got = _score(write_gguf(tmp_path / "plain.gguf"), ids)
    assert _rel_err(got[:1], want[:1]) <= REL_TOL
    assert _rel_err(got, want) > 100 * REL_TOL


def _malformed_cases():
    d = converter_rope_divisors(json.loads((HF_DIR / "config.json").read_text()))
    nan, zero, neg, inf = d.copy(), d.copy(), d.copy(), d.copy()
    nan[2], zero[0], neg[1], inf[-1] = np.nan, 0.0, -1.0, np.inf
    half = len(d)
    return [
        ("too_short", d[:-1], None, f"has {half - 1} values, must have rot_dim / 2 = {half}"),
        ("too_long", np.append(d, np.float32(1.0)), None, f"has {half + 1} values"),
        ("nan", nan, None, "value [2] = nan must be finite and > 0"),
        ("zero", zero, None, "value [0] = 0 must be finite and > 0"),
        ("negative", neg, None, "value [1] = -1 must be finite and > 0"),
        ("inf", inf, None, f"value [{half - 1}] = inf must be finite and > 0"),
        ("f16", None, (d.astype(np.float16), gguf.GGMLQuantizationType.F16), "must be F32"),
        ("2d", None, (d.reshape(1, half), gguf.GGMLQuantizationType.F32), "has 2 dims, must be 1-D"),
    ]


@pytest.mark.parametrize("case", _malformed_cases(), ids=lambda c: c[0])
def test_malformed_rope_freqs_raise_model_load_error(tmp_path, case):
    name, freqs, raw, expect = case
    path = write_gguf(tmp_path / f"{name}.gguf", rope_freqs=freqs, rope_freqs_raw=raw)
    with pytest.raises(eli.ModelLoadError) as info:
        eli.inspect_model(str(path))
    msg = str(info.value)
    assert "rope_freqs.weight" in msg and expect in msg, msg
    with pytest.raises(eli.ModelLoadError):
        eli.LLM(str(path), device="cpu", dtype="float32")
