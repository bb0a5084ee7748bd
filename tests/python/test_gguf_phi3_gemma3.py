# tests/python/test_gguf_phi3_gemma3.py: Phi-3 and Gemma 3 from GGUF files in llama.cpp's naming,
# against their Hugging Face twins; and the config / GGUF checks of the two architectures.
#
# The tiny HF checkpoints tests/data/models/phi3 (LongRoPE) and gemma3_gguf (query_pre_attn_scalar =
# head_dim and llama.cpp's sliding-window pattern 6, as a GGUF can express them) each carry a
# transformers reference.npz (scripts/make_references.py). Here they are converted, in a temp dir,
# to the GGUF llama.cpp's convert_hf_to_gguf.py writes:
#   phi3:   blk.N.attn_qkv (fused q, k, v), blk.N.ffn_up holding the fused gate_up (2 I rows),
#           rope_factors_long / rope_factors_short tensors, rope.scaling.original_context_length and
#           rope.scaling.attn_factor metadata; no Q/K row permutation;
#   gemma3: blk.N.post_attention_norm, ffn_norm = pre_feedforward_layernorm, post_ffw_norm,
#           attn_q_norm / attn_k_norm, every norm stored as 1 + w; tied head (no output.weight).
# eli must give the same logits from both (1e-5 relative) and the transformers logits (1e-4), and
# the same greedy tokens; a GGUF that drops the LongRoPE factors, or whose norms lack the + 1, must
# differ (so the test would catch them being ignored).
import json
import math
import pathlib
import shutil
import struct

import numpy as np
import pytest

eli = pytest.importorskip("eli")
gguf = pytest.importorskip("gguf")

MODELS = pathlib.Path(__file__).resolve().parent.parent / "data" / "models"
TWIN_TOL = 1e-5
REF_TOL = 1e-4


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


def _common(w, cfg: dict, head_dim: int, vocab_meta: dict | None = None):
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    if vocab_meta is not None:  # a real tokenizer's metadata (tokenizer.ggml.* and the chat template)
        _add_vocab(w, vocab_meta)
        return
    w.add_vocab_size(cfg["vocab_size"])
    w.add_tokenizer_model("llama")
    w.add_token_list([f"tok{i}" for i in range(cfg["vocab_size"])])
    w.add_token_scores([0.0] * cfg["vocab_size"])
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])


def _add_vocab(w, m: dict):
    w.add_vocab_size(len(m["tokenizer.ggml.tokens"]))
    w.add_tokenizer_model(m["tokenizer.ggml.model"])
    w.add_tokenizer_pre(m["tokenizer.ggml.pre"])
    w.add_token_list(m["tokenizer.ggml.tokens"])
    w.add_token_scores(m["tokenizer.ggml.scores"])
    w.add_token_types(m["tokenizer.ggml.token_type"])
    w.add_bos_token_id(m["tokenizer.ggml.bos_token_id"])
    w.add_eos_token_id(m["tokenizer.ggml.eos_token_id"])
    w.add_unk_token_id(m["tokenizer.ggml.unknown_token_id"])
    w.add_pad_token_id(m["tokenizer.ggml.padding_token_id"])
    w.add_add_bos_token(m["tokenizer.ggml.add_bos_token"])
    w.add_add_eos_token(m["tokenizer.ggml.add_eos_token"])
    w.add_add_space_prefix(m["tokenizer.ggml.add_space_prefix"])
    w.add_chat_template(m["tokenizer.chat_template"])


def _finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_phi3_gguf(path: pathlib.Path, with_factors: bool = True, long_factor=None, short_factor=None,
                    split_qkv: bool = False) -> pathlib.Path:
    """convert_hf_to_gguf.py's Phi3MiniModel layout of tests/data/models/phi3."""
    src = MODELS / "phi3"
    cfg = json.loads((src / "config.json").read_text())
    st = read_safetensors_f32(src / "model.safetensors")
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    rp = cfg["rope_parameters"]
    orig, max_pos = cfg["original_max_position_embeddings"], cfg["max_position_embeddings"]
    w = gguf.GGUFWriter(str(path), arch="phi3")
    _common(w, cfg, head_dim)
    w.add_rope_freq_base(rp["rope_theta"])
    w.add_rope_dimension_count(head_dim)
    w.add_rope_scaling_orig_ctx_len(orig)
    scale = max_pos / orig
    w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1.0 else 1.0)
    long_factor = rp["long_factor"] if long_factor is None else long_factor
    short_factor = rp["short_factor"] if short_factor is None else short_factor
    if with_factors:
        if len(long_factor):
            w.add_tensor("rope_factors_long.weight", np.asarray(long_factor, dtype=np.float32))
        if len(short_factor):
            w.add_tensor("rope_factors_short.weight", np.asarray(short_factor, dtype=np.float32))
    w.add_tensor("token_embd.weight", st["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", st["model.norm.weight"])
    w.add_tensor("output.weight", st["lm_head.weight"])
    names = {"input_layernorm": "attn_norm", "self_attn.qkv_proj": "attn_qkv", "self_attn.o_proj": "attn_output",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    q_rows = cfg["num_attention_heads"] * head_dim
    kv_rows = cfg["num_key_value_heads"] * head_dim
    for i in range(cfg["num_hidden_layers"]):
        for hf, g in names.items():
            t = st[f"model.layers.{i}.{hf}.weight"]
            if g == "attn_qkv" and split_qkv:  # llama.cpp also loads phi3 with separate q / k / v
                for part, rows in (("attn_q", t[:q_rows]), ("attn_k", t[q_rows:q_rows + kv_rows]),
                                   ("attn_v", t[q_rows + kv_rows:])):
                    w.add_tensor(f"blk.{i}.{part}.weight", np.ascontiguousarray(rows))
                continue
            w.add_tensor(f"blk.{i}.{g}.weight", np.ascontiguousarray(t))
    _finish(w)
    return path


def write_gemma3_gguf(path: pathlib.Path, norm_plus_one: bool = True, pattern=None,
                      vocab_meta: dict | None = None) -> pathlib.Path:
    """convert_hf_to_gguf.py's Gemma3Model layout of tests/data/models/gemma3_gguf. vocab_meta: GGUF
    tokenizer metadata to write instead of the placeholder vocabulary; the embedding (tied head) gets
    zero rows up to its token count, so the logits of the model's own ids are unchanged."""
    src = MODELS / "gemma3_gguf"
    cfg = json.loads((src / "config.json").read_text())
    st = read_safetensors_f32(src / "model.safetensors")
    if vocab_meta is not None:
        emb = st["model.embed_tokens.weight"]
        pad = len(vocab_meta["tokenizer.ggml.tokens"]) - emb.shape[0]
        assert pad >= 0, "the tokenizer must cover the model's embedding rows"
        st["model.embed_tokens.weight"] = np.concatenate([emb, np.zeros((pad, emb.shape[1]), np.float32)])
    rp = cfg["rope_parameters"]
    w = gguf.GGUFWriter(str(path), arch="gemma3")
    _common(w, cfg, cfg["head_dim"], vocab_meta)
    w.add_rope_freq_base(rp["full_attention"]["rope_theta"])
    w.add_sliding_window(cfg["sliding_window"])
    if pattern is not None:  # an int (every pattern-th layer global) or one bool per layer (True: sliding)
        w.add_sliding_window_pattern(pattern)

    def norm(t):
        return np.ascontiguousarray(t + np.float32(1.0)) if norm_plus_one else t

    w.add_tensor("token_embd.weight", st["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", norm(st["model.norm.weight"]))
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
             "self_attn.k_norm": "attn_k_norm", "post_attention_layernorm": "post_attention_norm",
             "pre_feedforward_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "post_feedforward_layernorm": "post_ffw_norm"}
    for i in range(cfg["num_hidden_layers"]):
        for hf, g in names.items():
            t = st[f"model.layers.{i}.{hf}.weight"]
            w.add_tensor(f"blk.{i}.{g}.weight", norm(t) if hf.endswith("norm") else np.ascontiguousarray(t))
    _finish(w)
    return path


def _reference(name: str) -> dict:
    with np.load(MODELS / name / "reference.npz") as z:
        return {k: z[k] for k in z.files}


def _run(model_path, ref: dict):
    # Token ids only: the GGUF holds a placeholder vocabulary; the weights are what is compared here
    # (test_gemma3_gguf_tokenizer_from_metadata covers a real Gemma tokenizer).
    llm = eli.LLM(str(model_path), device="cpu", dtype="float32", skip_tokenizer_init=True)
    try:
        logits = np.asarray(llm.score([int(t) for t in ref["input_ids"]]), dtype=np.float64)
        params = eli.SamplingParams(max_tokens=len(ref["greedy_tokens"]), temperature=0.0, ignore_eos=True)
        toks = [int(t) for t in llm.generate([[int(t) for t in ref["greedy_prompt"]]], params)[0].token_ids]
        return logits, toks
    finally:
        llm.shutdown()


def _rel_err(got, want) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


WRITERS = {"phi3": write_phi3_gguf, "gemma3_gguf": write_gemma3_gguf}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_gguf_twin_matches_hf(tmp_path, name):
    ref = _reference(name)
    path = WRITERS[name](tmp_path / f"{name}.gguf")
    meta = eli.inspect_model(str(path))
    assert meta["format"] == "gguf"
    hf_logits, hf_toks = _run(MODELS / name, ref)
    got, toks = _run(path, ref)
    assert got.shape == hf_logits.shape == ref["logits"].shape
    assert np.isfinite(got).all()
    assert _rel_err(got, hf_logits) <= TWIN_TOL, f"GGUF vs HF load: {_rel_err(got, hf_logits):.3e}"
    assert _rel_err(got, ref["logits"]) <= REF_TOL, f"GGUF vs transformers: {_rel_err(got, ref['logits']):.3e}"
    assert toks == hf_toks == [int(t) for t in ref["greedy_tokens"]]


def test_phi3_gguf_split_qkv_matches(tmp_path):
    ref = _reference("phi3")
    got, toks = _run(write_phi3_gguf(tmp_path / "split.gguf", split_qkv=True), ref)
    hf, _ = _run(MODELS / "phi3", ref)
    assert _rel_err(got, hf) <= TWIN_TOL
    assert toks == [int(t) for t in ref["greedy_tokens"]]


def test_phi3_gguf_spec(tmp_path):
    spec = eli.inspect_model(str(write_phi3_gguf(tmp_path / "p.gguf")))["spec"]
    assert spec["architecture"] == "phi3" and spec["rope_scaling"] == "longrope"
    assert spec["rope_factor"] == pytest.approx(256 / 10)


def test_gemma3_specs(tmp_path):
    hf = eli.inspect_model(str(MODELS / "gemma3"))["spec"]
    assert hf["architecture"] == "gemma3" and hf["sliding_window"] == 0
    assert hf["layer_sliding_windows"] == [6, 6, 0, 6, 6, 0]
    assert hf["local_rope_theta"] == 10000.0 and hf["rope_theta"] == 1e6
    assert hf["hidden_act"] == "gelu_pytorch_tanh" and hf["query_pre_attn_scalar"] == 24
    g = eli.inspect_model(str(write_gemma3_gguf(tmp_path / "g.gguf")))["spec"]
    assert g["layer_sliding_windows"] == [6, 6, 6, 6, 6, 0] and g["query_pre_attn_scalar"] == 16


def test_gemma3_gguf_tokenizer_from_metadata(tmp_path):
    # The tokenizer comes from the GGUF metadata alone (a Gemma-style SentencePiece vocabulary, as
    # convert_hf_to_gguf.py writes it): ids, chat prompts and decoding as Hugging Face's tokenizer.json.
    tokenizers = pytest.importorskip("tokenizers")
    from test_tokenizer_gguf import read_gguf_meta

    tok_dir = MODELS.parent / "gemma_tokenizer"
    vocab_meta = read_gguf_meta(str(tok_dir / "gemma.gguf"))
    hf = tokenizers.Tokenizer.from_file(str(tok_dir / "hf" / "tokenizer.json"))
    expected = json.loads((tok_dir / "expected.json").read_text(encoding="utf-8"))
    path = write_gemma3_gguf(tmp_path / "tok.gguf", vocab_meta=vocab_meta)
    ref = _reference("gemma3_gguf")
    llm = eli.LLM(str(path), device="cpu", dtype="float32")
    try:
        tok = llm.tokenizer
        assert tok is not None and tok.vocab_size == len(vocab_meta["tokenizer.ggml.tokens"])
        for row in expected["texts"]:
            assert tok.encode(row["text"]) == row["hf"], row["text"]
            assert tok.decode(row["hf"]) == row["hf_decode"], row["text"]
        for case in expected["chat"]:
            ids = llm.chat_prompt_ids(case["messages"], add_generation_prompt=case["add_generation_prompt"])
            assert ids == hf.encode(case["text"], add_special_tokens=False).ids
        # The padded embedding leaves the model's own logits as they were.
        logits = np.asarray(llm.score([int(t) for t in ref["input_ids"]]), dtype=np.float64)
        n = ref["logits"].shape[-1]
        assert _rel_err(logits[..., :n], ref["logits"]) <= REF_TOL
        out = llm.generate(["Hello  world"], eli.SamplingParams(max_tokens=3, temperature=0.0, ignore_eos=True))[0]
        assert out.prompt_token_ids == hf.encode("Hello  world").ids
        assert out.text == hf.decode(out.token_ids)
    finally:
        llm.shutdown()


def test_gemma3_27b_gguf_scalar(tmp_path):
    # llama.cpp's rule (GGUF has no query_pre_attn_scalar): head_dim, but hidden / heads for the 27B
    # model (62 blocks). Metadata only: 62 blocks, hidden 5376, 32 heads of 128.
    w = gguf.GGUFWriter(str(tmp_path / "27b.gguf"), arch="gemma3")
    cfg = dict(num_hidden_layers=62, max_position_embeddings=131072, hidden_size=5376, intermediate_size=21504,
               num_attention_heads=32, num_key_value_heads=16, rms_norm_eps=1e-6, vocab_size=300,
               bos_token_id=2, eos_token_id=1)
    _common(w, cfg, 128)
    w.add_sliding_window(1024)
    _finish(w)
    spec = eli.inspect_model(str(tmp_path / "27b.gguf"))["spec"]
    assert spec["query_pre_attn_scalar"] == 168
    assert spec["layer_sliding_windows"][:6] == [1024] * 5 + [0]


def test_phi3_gguf_without_factors_differs(tmp_path):
    ref = _reference("phi3")
    got, _ = _run(write_phi3_gguf(tmp_path / "nofactors.gguf", with_factors=False), ref)
    assert _rel_err(got, ref["logits"]) > 100 * REF_TOL


@pytest.mark.parametrize("pattern,same", [(6, True), ([True] * 5 + [False], True), (2, False),
                                          ([False] * 6, False)], ids=["int6", "bools", "int2", "all_global"])
def test_gemma3_gguf_sliding_window_pattern(tmp_path, pattern, same):
    # The key absent means llama.cpp's pattern 6 (the reference); the explicit forms must agree with it.
    ref = _reference("gemma3_gguf")
    got, _ = _run(write_gemma3_gguf(tmp_path / "pattern.gguf", pattern=pattern), ref)
    assert (_rel_err(got, ref["logits"]) <= REF_TOL) == same, _rel_err(got, ref["logits"])


@pytest.mark.parametrize("long_factor,short_factor,match", [
    ([], None, "only one of rope_factors_long / rope_factors_short"),
    ([1.0] * 5, None, "has 5 values, must have rot_dim / 2 = 6"),
    (None, [1.0, 1.0, 1.0, np.nan, 1.0, 1.0], "value [3] = nan must be finite and > 0"),
    (None, [1.0, 1.0, 0.0, 1.0, 1.0, 1.0], "value [2] = 0 must be finite and > 0"),
], ids=["only_short", "short_list", "nan", "zero"])
def test_phi3_gguf_bad_factors_refused(tmp_path, long_factor, short_factor, match):
    path = write_phi3_gguf(tmp_path / "bad.gguf", long_factor=long_factor, short_factor=short_factor)
    with pytest.raises(eli.ModelLoadError) as info:
        eli.inspect_model(str(path))
    assert match in str(info.value), str(info.value)


def test_gemma3_gguf_norms_without_plus_one_differ(tmp_path):
    ref = _reference("gemma3_gguf")
    got, _ = _run(write_gemma3_gguf(tmp_path / "raw_norms.gguf", norm_plus_one=False), ref)
    assert _rel_err(got, ref["logits"]) > 100 * REF_TOL


# ---- config.json checks of the two architectures (a copy of the tiny checkpoint, config edited)

def _edited(tmp_path, name: str, edit) -> pathlib.Path:
    out = tmp_path / name
    shutil.copytree(MODELS / name, out)
    cfg = json.loads((out / "config.json").read_text())
    edit(cfg)
    (out / "config.json").write_text(json.dumps(cfg))
    return out


@pytest.mark.parametrize("key", ["attn_logit_softcapping", "final_logit_softcapping"])
def test_gemma3_softcapping_refused(tmp_path, key):
    path = _edited(tmp_path, "gemma3", lambda c: c.__setitem__(key, 30.0))
    with pytest.raises(eli.ModelLoadError, match=key):
        eli.inspect_model(str(path))


def test_gemma3_bad_layer_types_refused(tmp_path):
    path = _edited(tmp_path, "gemma3", lambda c: c.__setitem__("layer_types", c["layer_types"][:-1]))
    with pytest.raises(eli.ModelLoadError, match="layer_types has 5 entries"):
        eli.inspect_model(str(path))
    path = _edited(tmp_path / "b", "gemma3", lambda c: c["layer_types"].__setitem__(0, "chunked_attention"))
    with pytest.raises(eli.ModelLoadError, match=r"layer_types\[0\]"):
        eli.inspect_model(str(path))


def test_gemma3_sliding_window_pattern_without_layer_types(tmp_path):
    # The older config form (sliding_window_pattern, no layer_types) gives the same model.
    def edit(c):
        del c["layer_types"]
        c["sliding_window_pattern"] = 3

    ref = _reference("gemma3")
    got, toks = _run(_edited(tmp_path, "gemma3", edit), ref)
    assert _rel_err(got, ref["logits"]) <= REF_TOL
    assert toks == [int(t) for t in ref["greedy_tokens"]]


def test_gemma3_local_and_global_rope_both_read(tmp_path):
    # Swapping the two RoPE bases must change the logits (each layer kind reads its own base).
    def edit(c):
        rp = c["rope_parameters"]
        rp["full_attention"]["rope_theta"], rp["sliding_attention"]["rope_theta"] = (
            rp["sliding_attention"]["rope_theta"], rp["full_attention"]["rope_theta"])

    ref = _reference("gemma3")
    got, _ = _run(_edited(tmp_path, "gemma3", edit), ref)
    assert _rel_err(got, ref["logits"]) > 100 * REF_TOL


@pytest.mark.parametrize("field,value,match", [
    ("short_factor", [1.0, 1.0], "short_factor / long_factor has 2 values"),
    ("long_factor", [1.0, 1.0, 1.0, 1.0, 1.0, -2.0], "longrope factor"),
    ("long_factor", None, "missing required field rope_parameters.long_factor"),
])
def test_phi3_bad_longrope_refused(tmp_path, field, value, match):
    path = _edited(tmp_path, "phi3", lambda c: c["rope_parameters"].__setitem__(field, value))
    with pytest.raises(eli.ModelLoadError, match=match):
        eli.inspect_model(str(path))
