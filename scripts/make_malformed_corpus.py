#!/usr/bin/env python3
"""Writes tests/data/malformed/hf/: one small handcrafted malformed model directory per failure
class of RELIABILITY.md items 1-7 (and 11), plus manifest.json.

Each case is a directory shaped like a Hugging Face model (config.json + weights), so that both
open_safetensors(dir) / parse_hf_config(dir/config.json) in C++ and eli.inspect_model(dir) in
Python can be pointed at it. Exactly one thing is wrong in each; everything else is valid.
manifest.json: {"valid": [...], "valid_extra": [...], "cases": [{"path", "class", "stage", "expect"}]},
where stage says which reader must fail: "weights" (open_safetensors), "config" (parse_hf_config)
or "model" (only the whole open, open_model_files / eli.inspect_model: containment of config.json,
tensors against the config), and expect is a substring of the error. "valid" models are the plain
11-tensor tiny model; "valid_extra" ones load too but differ (an extra tensor eli ignores, a
symlink that stays inside the directory).
Hostile symlinks point out of their case directory at SECRET_FILE, a stand-in for /etc/passwd (its
first bytes are "root:x:0"): the load must refuse them without quoting a byte of it. They stay
inside the corpus so that no committed link points outside the repository (an sdist with such a
link would not unpack); every committed link resolves to a regular file. FIFOs, dangling links and
link loops are made at run time by the C++ tests.
The generated files are committed; this script is their source. Deterministic output.
"""
import json
import os
import pathlib
import shutil
import struct

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "malformed" / "hf"

# A valid tiny Llama: vocab 16, hidden 8, 1 layer, 2 heads (head_dim 4), 1 kv head, tied embeddings.
VALID_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 16,
    "hidden_size": 8,
    "intermediate_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "tie_word_embeddings": True,
    "torch_dtype": "float16",
}
VALID_SHAPES = {
    "model.embed_tokens.weight": [16, 8],
    "model.layers.0.input_layernorm.weight": [8],
    "model.layers.0.self_attn.q_proj.weight": [8, 8],
    "model.layers.0.self_attn.k_proj.weight": [4, 8],
    "model.layers.0.self_attn.v_proj.weight": [4, 8],
    "model.layers.0.self_attn.o_proj.weight": [8, 8],
    "model.layers.0.post_attention_layernorm.weight": [8],
    "model.layers.0.mlp.gate_proj.weight": [16, 8],
    "model.layers.0.mlp.up_proj.weight": [16, 8],
    "model.layers.0.mlp.down_proj.weight": [8, 16],
    "model.norm.weight": [8],
}


def valid_tensors():
    rng = np.random.default_rng(0)
    out = {}
    for name, shape in VALID_SHAPES.items():
        if name.endswith("norm.weight"):
            out[name] = np.ones(shape, dtype=np.float16)
        else:
            out[name] = (rng.standard_normal(shape) * 0.2).astype(np.float16)
    return out


def st_bytes(header_text: str, data: bytes, header_len=None) -> bytes:
    """A safetensors file from raw header text (padded to 8 bytes) and a data section."""
    h = header_text.encode("utf-8") if isinstance(header_text, str) else header_text
    h += b" " * ((8 - len(h) % 8) % 8)
    n = len(h) if header_len is None else header_len
    return struct.pack("<Q", n) + h + data


def st_from_tensors(tensors: dict, metadata=None) -> bytes:
    header, chunks, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, arr in tensors.items():
        b = arr.tobytes()
        header[name] = {"dtype": "F16", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    return st_bytes(json.dumps(header, separators=(",", ":")), b"".join(chunks))


def entry(name, dtype, shape, begin, end):
    return f'"{name}":{{"dtype":"{dtype}","shape":{shape},"data_offsets":[{begin},{end}]}}'


CASES = []
SECRET_FILE = "outside_secret.txt"  # in ROOT, outside every case directory
SECRET = b"root:x:0:0:eli-corpus-secret:/root:/bin/bash\n"


def case(name, cls, stage, expect, files, config=None):
    d = ROOT / name
    d.mkdir(parents=True)
    cfg = VALID_CONFIG if config is None else config
    if isinstance(cfg, (bytes, str)):
        (d / "config.json").write_bytes(cfg if isinstance(cfg, bytes) else cfg.encode())
    else:
        (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    if files is None:  # config cases carry the valid weights
        files = {"model.safetensors": st_from_tensors(valid_tensors())}
    for rel, content in files.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, tuple) and content[0] == "symlink":
            os.symlink(content[1], p)
        else:
            p.write_bytes(content)
    CASES.append({"path": name, "class": f"RELIABILITY item {cls}", "stage": stage, "expect": expect})


def weights(name, cls, expect, data: bytes):
    case(name, cls, "weights", expect, {"model.safetensors": data})


def config(name, cls, expect, **changes):
    cfg = dict(VALID_CONFIG)
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    case(name, cls, "config", expect, None, cfg)


def index(weight_map) -> bytes:
    return json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}, indent=2).encode()


def main():
    if ROOT.exists():
        shutil.rmtree(ROOT)
    ROOT.mkdir(parents=True)
    tensors = valid_tensors()
    valid_st = st_from_tensors(tensors, metadata={"format": "pt"})
    case("valid_tiny", 0, "none", "", {"model.safetensors": valid_st})
    CASES.pop()

    f32 = np.arange(4, dtype=np.float32).tobytes()  # 16 bytes, one [4] F32 tensor
    one = "{" + entry("a", "F32", [4], 0, 16) + "}"

    # ---- item 1: header length and header text ----
    weights("h1_header_len_larger_than_file", 1, "is larger than the file", st_bytes(one, f32, header_len=4096))
    weights("h1_header_len_over_100mib", 1, "exceeds the 100 MiB limit", st_bytes(one, f32, header_len=200 << 20))
    weights("h1_header_len_overflows_plus_8", 1, "overflows when 8 is added", st_bytes(one, f32, header_len=2**64 - 1))
    weights("h1_header_len_under_2", 1, "is too small", struct.pack("<Q", 1) + b"{")
    weights("h1_file_under_8_bytes", 1, "truncated: expected at least 8 bytes", b"\x10\x00\x00")
    weights("h1_header_not_brace", 1, "does not start with '{'", st_bytes("[" + one[1:-1] + "]", f32))
    weights("h1_header_invalid_utf8", 1, "invalid UTF-8",
            st_bytes(one[:-1].encode() + b',"b\xff\xfe":{}}', f32))
    weights("h1_header_invalid_json", 1, "invalid header JSON", st_bytes('{"a": }', b""))
    weights("h1_header_duplicate_key", 1, "duplicate key",
            st_bytes("{" + entry("a", "F32", [4], 0, 16) + "," + entry("a", "F32", [4], 16, 32) + "}", f32 + f32))
    weights("h1_header_nan", 1, "NaN and Infinity are not JSON",
            st_bytes('{"a":{"dtype":"F32","shape":[NaN],"data_offsets":[0,16]}}', f32))
    weights("h1_header_trailing_garbage", 1, "unexpected trailing characters", st_bytes(one + " }", f32))
    weights("h1_header_lone_surrogate", 1, "lone high surrogate",
            st_bytes('{"__metadata__":{"k":"\\ud800"},' + one[1:], f32))
    weights("h1_metadata_not_string", 1, "__metadata__ value of 'k' is not a string",
            st_bytes('{"__metadata__":{"k":3},' + one[1:], f32))
    weights("h11_header_deep_nesting", 11, "nesting deeper than the limit",
            st_bytes('{"__metadata__":{"k":' + "[" * 100 + "]" * 100 + "}," + one[1:], f32))

    # ---- item 2: offsets ----
    def two(b0, e0, b1, e1, data):
        return st_bytes("{" + entry("a", "F32", [4], b0, e0) + "," + entry("b", "F32", [4], b1, e1) + "}", data)

    weights("h2_end_before_start", 2, "before start", st_bytes("{" + entry("a", "F32", [4], 16, 0) + "}", f32))
    weights("h2_overlap", 2, "overlaps", two(0, 16, 8, 24, f32 + f32[:8]))
    weights("h2_aliased", 2, "overlaps", two(0, 16, 0, 16, f32))
    weights("h2_gap", 2, "gap of 4 bytes", two(0, 16, 20, 36, f32 + b"\0" * 4 + f32))
    weights("h2_not_starting_at_0", 2, "does not start at offset 0",
            st_bytes("{" + entry("a", "F32", [4], 8, 24) + "}", b"\0" * 8 + f32))
    weights("h2_trailing_bytes", 2, "trailing bytes", st_bytes(one, f32 + b"\0" * 8))
    weights("h2_span_mismatch", 2, "shape x dtype needs 16", st_bytes("{" + entry("a", "F32", [4], 0, 8) + "}", f32[:8]))

    # ---- item 3: shapes and dtypes ----
    weights("h3_elements_overflow", 3, "element count overflows",
            st_bytes("{" + entry("a", "F32", [2**62, 4], 0, 16) + "}", f32))
    weights("h3_bytes_overflow_to_zero", 3, "byte size overflows",  # 2^62 elements * 4 bytes = 2^64 = 0 mod 2^64
            st_bytes("{" + entry("a", "F32", [2**31, 2**31], 0, 0) + "}", b""))
    weights("h3_negative_dim", 3, "negative dimension", st_bytes("{" + entry("a", "F32", [-4], 0, 16) + "}", f32))
    weights("h3_zero_dim", 3, "zero dimension", st_bytes("{" + entry("a", "F32", [0, 4], 0, 0) + "}", b""))
    weights("h3_non_integer_dim", 3, "shape entries must be integers",
            st_bytes("{" + entry("a", "F32", "[2.5]", 0, 10) + "}", f32[:10]))
    weights("h3_dim_past_int64", 3, "shape entries must be integers",
            st_bytes("{" + entry("a", "F32", "[100000000000000000000000]", 0, 16) + "}", f32))
    weights("h3_unknown_dtype", 3, "unsupported dtype 'F33'", st_bytes("{" + entry("a", "F33", [4], 0, 16) + "}", f32))
    weights("h3_f64_dtype", 3, "unsupported dtype 'F64'", st_bytes("{" + entry("a", "F64", [2], 0, 16) + "}", f32))

    # ---- item 4: truncated ----
    full = st_bytes(one, f32)
    weights("h4_truncated_data", 4, "truncated: expected", full[:-6])

    # ---- item 5: sharded index ----
    names = list(tensors)
    shard_a = {k: tensors[k] for k in names[:5]}
    shard_b = {k: tensors[k] for k in names[5:]}
    a_name, b_name = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    good_map = {**{k: a_name for k in shard_a}, **{k: b_name for k in shard_b}}
    sharded = {a_name: st_from_tensors(shard_a), b_name: st_from_tensors(shard_b)}
    case("valid_sharded", 0, "none", "", {"model.safetensors.index.json": index(good_map), **sharded})
    CASES.pop()
    case("h5_missing_shard", 5, "weights", "listed in the index is missing",
         {"model.safetensors.index.json": index(good_map), a_name: sharded[a_name]})
    case("h5_dotdot_path", 5, "weights", "outside the model directory",
         {"model.safetensors.index.json": index({**good_map, names[-1]: "../valid_tiny/model.safetensors"}), **sharded})
    case("h5_absolute_path", 5, "weights", "is absolute: outside the model directory",
         {"model.safetensors.index.json": index({**good_map, names[-1]: "/etc/passwd"}), **sharded})
    case("h5_symlink_escape", 5, "weights", "outside the model directory (symlink)",
         {"model.safetensors.index.json": index(good_map), a_name: sharded[a_name],
          b_name: ("symlink", "../valid_sharded/" + b_name)})
    dup_b = dict(shard_b)
    dup_b[names[0]] = tensors[names[0]]
    case("h5_tensor_in_two_shards", 5, "weights", "appears in two shards",
         {"model.safetensors.index.json": index(good_map), a_name: sharded[a_name], b_name: st_from_tensors(dup_b)})
    case("h5_tensor_absent_from_shard", 5, "weights", "absent from its shard",
         {"model.safetensors.index.json": index({**good_map, "lm_head.weight": b_name}), **sharded})
    case("h5_tensor_not_in_index", 5, "weights", "is not listed in the index weight_map",
         {"model.safetensors.index.json": index({k: v for k, v in good_map.items() if k != names[-1]}), **sharded})
    case("h5_empty_weight_map", 5, "weights", "weight_map is empty",
         {"model.safetensors.index.json": index({}), **sharded})
    dup_index = index(good_map).replace(b'"weight_map": {', b'"weight_map": {\n    "%s": "%s",' % (
        names[0].encode(), b_name.encode()))
    case("h5_index_duplicate_key", 5, "weights", "duplicate key", {"model.safetensors.index.json": dup_index, **sharded})

    # ---- item 6: config.json numbers ----
    config("h6_layers_zero", 6, "num_hidden_layers = 0 is out of range", num_hidden_layers=0)
    config("h6_layers_absurd", 6, "num_hidden_layers = 1000000000 is out of range", num_hidden_layers=10**9)
    config("h6_heads_not_dividing_hidden", 6, "does not divide hidden_size", num_attention_heads=3,
           num_key_value_heads=3)
    config("h6_kv_heads_zero", 6, "num_key_value_heads = 0 is out of range", num_key_value_heads=0)
    config("h6_kv_heads_not_dividing", 6, "does not divide num_attention_heads", num_attention_heads=4,
           num_key_value_heads=3, head_dim=2)
    config("h6_vocab_zero", 6, "vocab_size = 0 is out of range", vocab_size=0)
    config("h6_vocab_absurd", 6, "vocab_size = 4294967296 is out of range", vocab_size=2**32)
    config("h6_head_dim_odd", 6, "is odd", head_dim=5)
    config("h6_head_dim_absurd", 6, "head_dim = 4096 is out of range", head_dim=4096)
    config("h6_max_positions_absurd", 6, "max_position_embeddings = 1099511627776 is out of range",
           max_position_embeddings=2**40)
    config("h6_rope_factor_zero", 6, "rope scaling factor = 0 must be finite and > 0",
           rope_scaling={"rope_type": "linear", "factor": 0.0})
    config("h6_rope_factor_negative", 6, "rope scaling factor = -2 must be finite and > 0",
           rope_scaling={"type": "dynamic", "factor": -2.0})
    case("h6_rope_factor_nan", 6, "config", "NaN and Infinity are not JSON", None,
         json.dumps({**VALID_CONFIG, "rope_scaling": {"rope_type": "linear", "factor": float("nan")}}))
    config("h6_rope_theta_zero", 6, "rope_theta = 0 must be finite and > 0", rope_theta=0)
    config("h6_rope_v5_theta_negative", 6, "rope_theta = -1 must be finite and > 0", rope_theta=None,
           rope_parameters={"rope_type": "default", "rope_theta": -1.0})
    config("h6_rope_unknown_type", 6, "unsupported rope type 'longrope'",
           rope_scaling={"rope_type": "longrope", "factor": 2.0})
    config("h6_llama3_equal_freq_factors", 6, "must exceed low_freq_factor",
           rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 32})
    config("h6_eps_negative", 6, "rms_norm_eps = -1e-05 must be finite and > 0", rms_norm_eps=-1e-5)
    config("h6_string_for_int", 6, "hidden_size must be an integer", hidden_size="8")
    config("h6_missing_layers", 6, "missing required field num_hidden_layers", num_hidden_layers=None)
    config("h6_eos_outside_vocab", 6, "eos_token_id = 999 is outside the vocabulary", eos_token_id=[2, 999])
    case("h6_config_duplicate_key", 6, "config", "duplicate key", None,
         json.dumps(VALID_CONFIG)[:-1] + ', "hidden_size": 16}')
    case("h11_config_deep_nesting", 11, "config", "nesting deeper than the limit", None,
         json.dumps(VALID_CONFIG)[:-1] + ', "x": ' + "[" * 200 + "]" * 200 + "}")

    # ---- item 5 / issue 20 item 7: containment of every file of the directory ----
    (ROOT / SECRET_FILE).write_bytes(SECRET)
    secret_link = ("symlink", "../" + SECRET_FILE)
    case("h5_symlink_weights_escape", 5, "weights", "outside the model directory (symlink)",
         {"model.safetensors": secret_link})
    case("h5_symlink_config_escape", 5, "model", "outside the model directory (symlink)",
         {"model.safetensors": valid_st})
    (ROOT / "h5_symlink_config_escape" / "config.json").unlink()
    os.symlink(secret_link[1], ROOT / "h5_symlink_config_escape" / "config.json")
    case("h5_symlink_index_escape", 5, "weights", "outside the model directory (symlink)",
         {"model.safetensors.index.json": secret_link, **sharded})
    # A directory link out of the case (to a sibling, not to "..": a link loop would trip tree walkers).
    case("h5_symlink_dir_escape", 5, "weights", "outside the model directory (symlink)",
         {"weights": ("symlink", "../valid_tiny"), "model.safetensors": ("symlink", "weights/model.safetensors")})
    # (A dangling link and a directory named model.safetensors are tested by tests/cpp/test_model_files.cc
    # at run time: committed, they would trip every tool that walks tests/data.)

    # ---- item 6 / issue 20 item 18: tensors the config does not account for ----
    beyond = dict(tensors)
    beyond["model.layers.99.mlp.up_proj.weight"] = tensors["model.layers.0.mlp.up_proj.weight"]
    case("h6_tensor_beyond_layers", 6, "model",
         "tensor 'model.layers.99.mlp.up_proj.weight' belongs to layer 99 but the model has 1 layers",
         {"model.safetensors": st_from_tensors(beyond)})
    bad_index = dict(tensors)
    bad_index["model.layers.1e3.mlp.up_proj.weight"] = tensors["model.layers.0.mlp.up_proj.weight"]
    case("h6_tensor_bad_layer_index", 6, "model", "tensor 'model.layers.1e3.mlp.up_proj.weight' has no valid layer",
         {"model.safetensors": st_from_tensors(bad_index)})

    # ---- item 7: code escape hatches ----
    case("h7_pickle_bin_only", 7, "weights", "eli never unpickles", {"pytorch_model.bin": b"PK\x03\x04 not a zip"})
    case("h7_pickle_pt_only", 7, "weights", "eli never unpickles", {"consolidated.pt": b"\x80\x02}q\x00."})
    case("h7_auto_map_unknown_arch", 7, "config", "needs custom code (auto_map)", None,
         {**VALID_CONFIG, "architectures": ["EvilForCausalLM"], "model_type": "evil",
          "auto_map": {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}})
    config("h7_unknown_arch", 7, "unsupported architecture GPTNeoXForCausalLM",
           architectures=["GPTNeoXForCausalLM"], model_type="gpt_neox")

    # ---- loads, though not the plain layout ----
    extra = dict(tensors)
    extra["model.layers.0.self_attn.rotary_emb.inv_freq"] = np.ones([2], dtype=np.float16)
    extra["vision_tower.blocks.40.weight"] = np.ones([2], dtype=np.float16)
    case("valid_extra_tensors", 0, "none", "", {"model.safetensors": st_from_tensors(extra)})
    CASES.pop()
    case("valid_inner_symlink", 0, "none", "", {"weights/model.safetensors": valid_st,
                                                "model.safetensors": ("symlink", "weights/model.safetensors")})
    CASES.pop()

    manifest = {"valid": ["valid_tiny", "valid_sharded"], "valid_extra": ["valid_extra_tensors", "valid_inner_symlink"],
                "secret_file": SECRET_FILE, "cases": CASES}
    (ROOT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(CASES)} cases to {ROOT}")


if __name__ == "__main__":
    main()
