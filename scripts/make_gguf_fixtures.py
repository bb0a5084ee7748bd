#!/usr/bin/env python3
"""scripts/make_gguf_fixtures.py: writes the small GGUF test fixtures.

Outputs (deterministic, seed 1234; total well under 2 MB):
  tests/data/gguf/quant_types.gguf      one tensor per supported type (random blocks, finite fp16
                                        scales), plus a 3-D tensor to check the shape reversal
  tests/data/gguf/ref/<tensor>.npy      gguf-py's dequantization of each tensor (f32, GGUF's
                                        reversed shape undone: row-major, outermost first)
  tests/data/gguf/tiny_llama.gguf       llama-arch metadata + F32 weights (tied embeddings)
  tests/data/gguf/tiny_qwen2.gguf       qwen2 metadata, q/k/v biases, untied lm head
  tests/data/gguf/tiny_qwen3.gguf       qwen3 metadata, q/k norms, yarn rope scaling
  tests/data/gguf/tiny_llama_mixed.gguf a 2-layer llama whose matrices mix block types as a Q4_K_M
                                        file does (q/k Q4_K, v Q6_K, gate/up of different types, an
                                        F16 down projection) and use every new type (Q2_K, Q3_K,
                                        IQ4_NL, IQ4_XS); random blocks scaled to weights of std ~0.05
  tests/data/gguf/permute_{hf,gguf}.npy a Q weight before/after llama.cpp's Q/K row permutation
                                        (n_heads 3, head_dim 8, cols 5)
  tests/data/malformed/gguf/*.gguf + manifest.json   one hand-built file per failure class
                                        [{"path", "class", "stage", "expect"}] (expect: error
                                        substring; stage "parse": GgufFile::open must fail,
                                        "model": the file parses, the whole open must fail)

Usage: python scripts/make_gguf_fixtures.py [--malformed-only]  (needs numpy and gguf)
"""
import json
import pathlib
import struct

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "gguf"
BAD = ROOT / "tests" / "data" / "malformed" / "gguf"

# (type, byte offsets of fp16 fields inside one block)
BLOCK_TYPES = {
    Q.Q8_0: [0],
    Q.Q4_0: [0],
    Q.Q4_1: [0, 2],
    Q.Q5_0: [0],
    Q.Q5_1: [0, 2],
    Q.Q4_K: [0, 2],
    Q.Q5_K: [0, 2],
    Q.Q6_K: [208],
}
# The block types added later (kept out of BLOCK_TYPES so quant_types.gguf stays as it was).
MORE_BLOCK_TYPES = {
    Q.Q2_K: [80, 82],
    Q.Q3_K: [108],
    Q.IQ4_NL: [0],
    Q.IQ4_XS: [0],
}


def random_blocks(rng, qtype, rows, cols):
    """Random block bytes of a (rows, cols) tensor with finite fp16 scale fields."""
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = rows * cols // block_elems
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for off in {**BLOCK_TYPES, **MORE_BLOCK_TYPES}[qtype]:
        scale = rng.uniform(-2.0, 2.0, size=n_blocks).astype(np.float16)
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(rows, cols // block_elems * block_bytes)


def random_half_bits(rng, n, bf16):
    """Random 16-bit patterns without NaNs (covers subnormals, infinities, signed zeros)."""
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    exp_mask = 0x7F80 if bf16 else 0x7C00
    mant_mask = 0x007F if bf16 else 0x03FF
    nan = ((bits & exp_mask) == exp_mask) & ((bits & mant_mask) != 0)
    bits[nan] &= ~np.uint16(mant_mask)  # turn NaNs into infinities
    bits[:4] = [0x0000, 0x8000, exp_mask, exp_mask | 0x8000]
    bits[4:6] = [0x0001, 0x8001]  # smallest subnormals
    return bits


def write_quant_types(rng):
    ref_dir = OUT / "ref"
    ref_dir.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(OUT / "quant_types.gguf"), arch="llama")
    refs = {}
    for qtype in BLOCK_TYPES:
        block_elems = gguf.GGML_QUANT_SIZES[qtype][0]
        rows, cols = 3, 2 * block_elems if block_elems == 256 else 4 * block_elems
        raw = random_blocks(rng, qtype, rows, cols)
        name = qtype.name.lower()
        w.add_tensor(name, raw, raw_dtype=qtype)
        refs[name] = gguf.quants.dequantize(raw, qtype).reshape(rows, cols)
    f32 = rng.standard_normal((5, 7)).astype(np.float32)
    w.add_tensor("f32", f32)
    refs["f32"] = f32
    f16 = random_half_bits(rng, 6 * 16, bf16=False).view(np.float16).reshape(6, 16)
    w.add_tensor("f16", f16)
    refs["f16"] = gguf.quants.dequantize(f16.view(np.uint8), Q.F16).reshape(6, 16)
    bf16 = random_half_bits(rng, 4 * 16, bf16=True).reshape(4, 16)
    w.add_tensor("bf16", bf16.view(np.uint8), raw_dtype=Q.BF16)  # byte shape (4, 32) -> (4, 16)
    refs["bf16"] = gguf.quants.dequantize(bf16.view(np.uint8), Q.BF16).reshape(4, 16)
    # 3-D tensor: GGUF stores dims innermost first; the reader must give (2, 3, 32).
    raw3 = random_blocks(rng, Q.Q8_0, 6, 32).reshape(2, 3, 34)
    w.add_tensor("q8_0_3d", raw3, raw_dtype=Q.Q8_0)
    refs["q8_0_3d"] = gguf.quants.dequantize(raw3, Q.Q8_0).reshape(2, 3, 32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    for name, ref in refs.items():
        np.save(ref_dir / f"{name}.npy", np.ascontiguousarray(ref, dtype=np.float32))


def hf_to_gguf_permute(w, n_head):
    """llama.cpp's converter permutation (convert_hf_to_gguf.py LlamaModel.permute semantics)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def transformers_reverse_permute(w, n_head):
    """transformers' GGUF loader inverse (modeling_gguf_pytorch_utils semantics)."""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


def write_permute(rng):
    hf = rng.standard_normal((3 * 8, 5)).astype(np.float32)
    permuted = np.ascontiguousarray(hf_to_gguf_permute(hf, 3))
    assert np.array_equal(transformers_reverse_permute(permuted, 3), hf)
    np.save(OUT / "permute_hf.npy", hf)
    np.save(OUT / "permute_gguf.npy", permuted)


def add_tokens(w, n_vocab):
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"tok{i}" for i in range(n_vocab)])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)


def write_tiny_llama(rng):
    arch, n_vocab, hidden, ffn, heads, kv_heads, layers = "llama", 32, 64, 128, 4, 2, 2
    head_dim = hidden // heads
    w = gguf.GGUFWriter(str(OUT / "tiny_llama.gguf"), arch=arch)
    w.add_block_count(layers)
    w.add_context_length(256)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(50000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
    w.add_rope_scaling_factor(2.0)
    add_tokens(w, n_vocab)

    def t(name, *shape):
        w.add_tensor(name, (0.1 * rng.standard_normal(shape)).astype(np.float32))

    t("token_embd.weight", n_vocab, hidden)
    for i in range(layers):
        t(f"blk.{i}.attn_norm.weight", hidden)
        t(f"blk.{i}.attn_q.weight", heads * head_dim, hidden)
        t(f"blk.{i}.attn_k.weight", kv_heads * head_dim, hidden)
        t(f"blk.{i}.attn_v.weight", kv_heads * head_dim, hidden)
        t(f"blk.{i}.attn_output.weight", hidden, heads * head_dim)
        t(f"blk.{i}.ffn_norm.weight", hidden)
        t(f"blk.{i}.ffn_gate.weight", ffn, hidden)
        t(f"blk.{i}.ffn_up.weight", ffn, hidden)
        t(f"blk.{i}.ffn_down.weight", hidden, ffn)
    t("output_norm.weight", hidden)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def scaled_blocks(rng, qtype, rows, cols, std=0.05):
    """Random blocks whose dequantized values have about `std`: a block dequantizes linearly in
    its fp16 fields, so the fields of random blocks are rescaled by std / (their values' std)."""
    raw = random_blocks(rng, qtype, rows, cols).reshape(-1, gguf.GGML_QUANT_SIZES[qtype][1])
    c = std / float(np.std(gguf.quants.dequantize(raw, qtype)))
    for off in {**BLOCK_TYPES, **MORE_BLOCK_TYPES}[qtype]:
        f = raw[:, off:off + 2].copy().view(np.float16).astype(np.float32) * c
        raw[:, off:off + 2] = f.astype(np.float16).view(np.uint8).reshape(-1, 2)
    return raw.reshape(rows, -1)


def write_tiny_mixed(rng):
    arch, n_vocab, hidden, ffn, heads, kv_heads, layers = "llama", 64, 256, 256, 4, 2, 2
    head_dim = hidden // heads
    w = gguf.GGUFWriter(str(OUT / "tiny_llama_mixed.gguf"), arch=arch)
    w.add_block_count(layers)
    w.add_context_length(256)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head_dim)
    add_tokens(w, n_vocab)

    def q(name, qtype, rows, cols):
        if qtype == Q.F16:
            w.add_tensor(name, (0.05 * rng.standard_normal((rows, cols))).astype(np.float16))
        else:
            w.add_tensor(name, scaled_blocks(rng, qtype, rows, cols), raw_dtype=qtype)

    def norm(name):
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(hidden)).astype(np.float32))

    types = [  # (q, k, v, o, gate, up, down) per layer
        (Q.Q4_K, Q.Q4_K, Q.Q6_K, Q.Q2_K, Q.Q4_K, Q.Q4_K, Q.Q6_K),
        (Q.Q3_K, Q.Q3_K, Q.Q3_K, Q.IQ4_XS, Q.IQ4_NL, Q.Q5_K, Q.F16),
    ]
    q("token_embd.weight", Q.Q8_0, n_vocab, hidden)
    for i, (tq, tk, tv, to, tg, tu, td) in enumerate(types):
        norm(f"blk.{i}.attn_norm.weight")
        q(f"blk.{i}.attn_q.weight", tq, heads * head_dim, hidden)
        q(f"blk.{i}.attn_k.weight", tk, kv_heads * head_dim, hidden)
        q(f"blk.{i}.attn_v.weight", tv, kv_heads * head_dim, hidden)
        q(f"blk.{i}.attn_output.weight", to, hidden, heads * head_dim)
        norm(f"blk.{i}.ffn_norm.weight")
        q(f"blk.{i}.ffn_gate.weight", tg, ffn, hidden)
        q(f"blk.{i}.ffn_up.weight", tu, ffn, hidden)
        q(f"blk.{i}.ffn_down.weight", td, hidden, ffn)
    norm("output_norm.weight")
    q("output.weight", Q.Q6_K, n_vocab, hidden)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_tiny_qwen(rng, arch):
    n_vocab, hidden, ffn, heads, kv_heads, head_dim = 48, 32, 64, 4, 2, 16  # head_dim != hidden/heads
    w = gguf.GGUFWriter(str(OUT / f"tiny_{arch}.gguf"), arch=arch)
    w.add_block_count(1)
    w.add_context_length(4096)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_freq_base(1000000.0)
    w.add_layer_norm_rms_eps(1e-6)
    if arch == "qwen3":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(4.0)
        w.add_rope_scaling_orig_ctx_len(1024)
    add_tokens(w, n_vocab)

    def t(name, *shape):
        w.add_tensor(name, (0.1 * rng.standard_normal(shape)).astype(np.float32))

    t("token_embd.weight", n_vocab, hidden)
    t("blk.0.attn_q.weight", heads * head_dim, hidden)
    if arch == "qwen2":
        t("blk.0.attn_q.bias", heads * head_dim)
        t("blk.0.attn_k.bias", kv_heads * head_dim)
        t("blk.0.attn_v.bias", kv_heads * head_dim)
    else:
        t("blk.0.attn_q_norm.weight", head_dim)
        t("blk.0.attn_k_norm.weight", head_dim)
    t("output.weight", n_vocab, hidden)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ---- malformed files, built byte by byte ---------------------------------------------------
U8, U32, F32, BOOL, STRING, ARRAY, U64 = 0, 4, 6, 7, 8, 9, 10


def s(text):
    b = text.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, payload):
    return s(key) + struct.pack("<I", vtype) + payload


def tinfo(name, dims, ggml_type, offset):
    out = s(name) + struct.pack("<I", len(dims))
    for d in dims:
        out += struct.pack("<Q", d)
    return out + struct.pack("<IQ", ggml_type, offset)


def gguf_file(kvs=(), tensors=(), data=b"", version=3, magic=b"GGUF", n_tensors=None, n_kv=None,
              align=32):
    head = magic + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                               len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(tensors)
    if tensors or data:
        body += b"\0" * ((-len(body)) % align)
    return body + data


def u32(v):
    return struct.pack("<I", v)


def tiny_model(extra=()):
    """A valid 1-layer llama GGUF (hidden 8, 2 heads, ffn 16, vocab 16, F32) plus `extra` tensors
    (name, dims innermost first); every tensor is zeros."""
    kvs = [kv("general.architecture", STRING, s("llama")), kv("llama.block_count", U32, u32(1)),
           kv("llama.context_length", U32, u32(64)), kv("llama.embedding_length", U32, u32(8)),
           kv("llama.feed_forward_length", U32, u32(16)), kv("llama.attention.head_count", U32, u32(2))]
    dims = [("token_embd.weight", [8, 16]), ("output_norm.weight", [8])]
    for part, d in [("attn_norm", [8]), ("attn_q", [8, 8]), ("attn_k", [8, 8]), ("attn_v", [8, 8]),
                    ("attn_output", [8, 8]), ("ffn_norm", [8]), ("ffn_gate", [8, 16]), ("ffn_up", [8, 16]),
                    ("ffn_down", [16, 8])]:
        dims.append((f"blk.0.{part}.weight", d))
    dims += list(extra)
    infos, off = [], 0
    for name, d in dims:
        infos.append(tinfo(name, d, 0, off))
        off += -(-int(np.prod(d)) * 4 // 32) * 32
    return gguf_file(kvs, infos, b"\0" * off)


def write_malformed():
    BAD.mkdir(parents=True, exist_ok=True)
    arch = kv("general.architecture", STRING, s("llama"))
    f32_4x8 = tinfo("w", [8, 4], 0, 0)  # (4, 8) f32 = 128 bytes
    cases = [
        ("bad_magic", "magic", gguf_file(magic=b"GGML"), "bad magic"),
        ("bad_version", "version", gguf_file(version=7), "unsupported version 7"),
        ("version_1", "version", gguf_file(version=1), "unsupported version 1"),
        ("truncated_header", "truncation", b"GGUF\x03\x00\x00\x00\x00", "truncated header"),
        ("empty", "truncation", b"", "truncated header"),
        ("huge_kv_count", "counts", gguf_file(kvs=[arch], n_kv=1 << 62), "kv count"),
        ("huge_tensor_count", "counts", gguf_file(kvs=[arch], n_tensors=(1 << 64) - 1), "tensor count"),
        ("key_length_past_file", "string_length",
         gguf_file(n_kv=1) + struct.pack("<Q", 1 << 40) + b"abc" * 8, "runs past the end of the file"),
        ("string_value_past_file", "string_length",
         gguf_file(kvs=[s("general.name") + struct.pack("<IQ", STRING, 10_000_000) + b"x" * 16]),
         "runs past the end of the file"),
        ("unknown_value_type", "value_type", gguf_file(kvs=[kv("general.x", 99, b"\0" * 8)]),
         "unknown value type 99"),
        ("unknown_array_type", "value_type",
         gguf_file(kvs=[kv("general.x", ARRAY, struct.pack("<IQ", 42, 1) + b"\0" * 8)]),
         "unknown array element type 42"),
        ("array_length_overflow", "array_length",
         gguf_file(kvs=[kv("general.x", ARRAY, struct.pack("<IQ", U64, (1 << 61) + 1) + b"\0" * 16)]),
         "overflows or runs past the end"),
        ("array_length_huge_strings", "array_length",
         gguf_file(kvs=[kv("tokenizer.ggml.tokens", ARRAY, struct.pack("<IQ", STRING, 1 << 40) + s("a"))]),
         "overflows or runs past the end"),
        ("nested_array", "value_type",
         gguf_file(kvs=[kv("general.x", ARRAY, struct.pack("<IQ", ARRAY, 1) + struct.pack("<IQ", U8, 0))]),
         "nested array"),
        ("bad_bool", "value_type", gguf_file(kvs=[kv("general.flag", BOOL, b"\x07")]), "is not 0 or 1"),
        ("duplicate_key", "duplicate",
         gguf_file(kvs=[arch, kv("general.architecture", STRING, s("qwen2"))]),
         "duplicate key 'general.architecture'"),
        ("too_many_dims", "shape", gguf_file([arch], [tinfo("w", [32, 1, 1, 1, 1], 0, 0)], b"\0" * 128),
         "has 5 dims"),
        ("zero_dims", "shape", gguf_file([arch], [tinfo("w", [], 0, 0)], b"\0" * 32), "has 0 dims"),
        ("zero_dim", "shape", gguf_file([arch], [tinfo("w", [8, 0], 0, 0)], b"\0" * 32), "(must be > 0)"),
        ("negative_dim", "shape", gguf_file([arch], [tinfo("w", [8, (1 << 64) - 2], 0, 0)], b"\0" * 32),
         "(must be > 0)"),
        ("element_count_overflow", "shape",
         gguf_file([arch], [tinfo("w", [1 << 32, 1 << 32, 1 << 32], 0, 0)], b"\0" * 32),
         "element count overflows"),
        ("byte_count_overflow", "shape",
         gguf_file([arch], [tinfo("w", [1 << 31, 1 << 30, 2], 0, 0)], b"\0" * 32),
         "byte size overflows"),
        ("not_block_multiple", "shape", gguf_file([arch], [tinfo("w", [33, 2], 2, 0)], b"\0" * 64),
         "not a multiple of the Q4_0 block size 32"),
        ("unsupported_type", "dtype", gguf_file([arch], [tinfo("w", [256], 16, 0)], b"\0" * 96),
         "GGUF tensor 'w' has type IQ2_XXS (ggml type 16), which eli cannot load (supported: F32, F16, BF16, Q4_0"),
        ("unknown_type", "dtype", gguf_file([arch], [tinfo("w", [16], 1234, 0)], b"\0" * 64),
         "tensor 'w' has type unknown (ggml type 1234)"),
        # Issue 20 item 12: counts that would amplify memory (~250 bytes per 13-byte KV, ~500 per
        # 32-byte tensor entry) are capped before anything is reserved, whatever the file size.
        ("kv_count_over_limit", "counts", gguf_file(kvs=[arch], n_kv=4_846_153), "kv count 4846153 exceeds the limit"),
        ("tensor_count_over_limit", "counts", gguf_file(kvs=[arch], n_tensors=70_000),
         "tensor count 70000 exceeds the limit of 65536"),
        ("misaligned_offset", "offset",
         gguf_file([arch], [tinfo("a", [8], 0, 0), tinfo("b", [8], 0, 40)], b"\0" * 96),
         "offset 40 is not aligned to 32"),
        ("bad_alignment", "offset",
         gguf_file([arch, kv("general.alignment", U32, struct.pack("<I", 48))], [f32_4x8], b"\0" * 128),
         "general.alignment 48 is not a power of two"),
        ("zero_alignment", "offset",
         gguf_file([arch, kv("general.alignment", U32, struct.pack("<I", 0))], [f32_4x8], b"\0" * 128),
         "general.alignment 0 is not a power of two"),
        ("truncated_data", "truncation", gguf_file([arch], [f32_4x8], b"\0" * 100), "truncated: expected"),
        ("offset_past_end", "truncation",
         gguf_file([arch], [tinfo("w", [8], 0, 1 << 40)], b"\0" * 32), "truncated: expected"),
        ("offset_overflow", "offset",
         gguf_file([arch], [tinfo("w", [8], 0, (1 << 64) - 32)], b"\0" * 32), "data range overflows"),
        ("overlapping_tensors", "overlap",
         gguf_file([arch], [tinfo("a", [16], 0, 0), tinfo("b", [8], 0, 32)], b"\0" * 128),
         "overlapping tensor ranges"),
        ("duplicate_tensor_name", "duplicate",
         gguf_file([arch], [tinfo("w", [8], 0, 0), tinfo("w", [8], 0, 32)], b"\0" * 64),
         "duplicate tensor name 'w'"),
        ("tensor_info_truncated", "truncation",
         gguf_file([arch], n_tensors=1) + tinfo("w", [8, 1, 1, 1], 0, 0)[:-4], "truncated: tensor offset"),
    ]
    # Issue 20 item 18: files that parse but contradict their own metadata.
    model_cases = [
        ("tensor_beyond_block_count", "tensor_names", tiny_model([("blk.99.attn_norm.weight", [8])]),
         "tensor 'blk.99.attn_norm.weight' belongs to layer 99 but the model has 1 layers (block_count = 1)"),
        ("tensor_unknown_name", "tensor_names", tiny_model([("blk.0.ffn_gate_exps.weight", [8, 16, 2])]),
         "tensor 'blk.0.ffn_gate_exps.weight' is not one eli reads for architecture 'llama'"),
    ]
    manifest = []
    for stage, group in (("parse", cases), ("model", model_cases)):
        for name, cls, blob, expect in group:
            path = BAD / f"{name}.gguf"
            path.write_bytes(blob)
            manifest.append({"path": f"{name}.gguf", "class": cls, "stage": stage, "expect": expect})
    (BAD / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def main():
    import sys
    if "--malformed-only" in sys.argv[1:]:
        write_malformed()
        return
    rng = np.random.default_rng(1234)
    OUT.mkdir(parents=True, exist_ok=True)
    write_quant_types(rng)
    write_permute(rng)
    write_tiny_llama(rng)
    write_tiny_qwen(rng, "qwen2")
    write_tiny_qwen(rng, "qwen3")
    write_tiny_mixed(np.random.default_rng(1414))  # own seed: the fixtures above stay as they were
    write_malformed()
    total = sum(p.stat().st_size for d in (OUT, BAD) for p in d.rglob("*") if p.is_file())
    print(f"wrote GGUF fixtures: {total} bytes")


if __name__ == "__main__":
    main()
