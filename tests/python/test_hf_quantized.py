# tests/python/test_hf_quantized.py: Hugging Face quantized checkpoints (AWQ, GPTQ, compressed-tensors)
# against transformers, and the `quantization` option.
#
# Every tests/data/models_quantized/<name>/ holds a tiny quantized checkpoint in a published layout and
# quant_reference.npz, written by scripts/make_quantized_fixtures.py: transformers' logits and greedy
# tokens of the dense "dequantized" model (plus numpy per-token activation quantization for the W8A8
# formats). eli loads the quantized checkpoint (repacked into its own layouts, run by its quantized
# kernels) with dtype="float32" and must
#   - score: reproduce the full-forward logits within the fixture's rel_tol (1e-4 for weight-only
#     formats; W8A8: see _check_logits) with the same argmax on every row that is not a near-tie;
#   - generate: reproduce the 20 greedy tokens, alone and batched with a second prompt (decode runs
#     the GEMV kernels, the prompt the GEMM kernels).
# Then: unknown quantization methods / schemes are refused by name; the `quantization` option must
# match the checkpoint; quantization="fp8" quantizes a dense checkpoint at load (its own reference).
import json
import pathlib
import shutil

import numpy as np
import pytest

import eli

DATA = pathlib.Path(__file__).resolve().parent.parent / "data"
QDIR = DATA / "models_quantized"
FIXTURES = sorted(p.parent for p in QDIR.glob("*/quant_reference.npz") if (p.parent / "config.json").exists())
N_NEW = 20

_llms: dict[str, object] = {}


def _llm(path: pathlib.Path, **kw):
    key = str(path) + repr(sorted(kw.items()))
    if key not in _llms:
        _llms[key] = eli.LLM(str(path), device="cpu", dtype="float32", **kw)
    return _llms[key]


def _ref(d: pathlib.Path) -> dict:
    with np.load(d / "quant_reference.npz") as z:
        return {k: z[k] for k in z.files}


def _greedy():
    return eli.SamplingParams(max_tokens=N_NEW, temperature=0.0, ignore_eos=True)


def _ids(a) -> list[int]:
    return [int(t) for t in a]


WEIGHT_ONLY_TOL = 1e-4
FLIP_FACTOR = 25  # W8A8: a row after a flipped activation code may be off by up to 25 x rel_tol


def _check_logits(got, ref: dict, name: str):
    """Weight-only formats: every row within rel_tol (1e-4) of the reference. W8A8 formats: an
    activation whose f32 value differs from transformers' in the last bit can round to the next
    int8 / e4m3 code, which moves that row's logits (and, through attention, later rows') by a few
    percent of their scale, where quantizing at all moves them by about 30 percent: at least 3/4 of
    the rows within rel_tol (2e-3) and every row within 25 x rel_tol."""
    want = ref["logits"]
    tol = float(np.asarray(ref["rel_tol"]).reshape(-1)[0])
    w8a8 = tol > WEIGHT_ONLY_TOL
    got = np.asarray(got)
    assert got.shape == want.shape
    assert np.isfinite(got).all()
    scale = float(np.abs(want).max())
    row_err = np.abs(got.astype(np.float64) - want).max(axis=-1) / scale
    bound = FLIP_FACTOR * tol if w8a8 else tol
    assert row_err.max() <= bound, f"{name}: max rel err {row_err.max():.3e} > {bound} (rows {np.round(row_err, 6)})"
    if w8a8:
        assert (row_err <= tol).mean() >= 0.75, f"{name}: rows off by more than {tol}: {np.round(row_err, 6)}"
    top2 = np.sort(want, axis=-1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 4 * bound * scale
    if not w8a8:
        assert clear.sum() >= len(want) // 2
    np.testing.assert_array_equal(got.argmax(-1)[clear], want.argmax(-1)[clear])


def test_every_published_layout_has_a_fixture():
    names = {p.name for p in FIXTURES}
    for want in ("awq_g128", "awq_channel", "gptq_g128", "gptq_g32_act_order", "gptq8_g128_v2",
                 "gptq8_g64_act_order", "ct_w4a16_g128", "ct_w8a16_channel", "ct_fp8_dynamic", "ct_int8_dynamic"):
        assert want in names, f"missing fixture {want}: run scripts/make_quantized_fixtures.py"


@pytest.fixture(params=FIXTURES, ids=[p.name for p in FIXTURES])
def fixture_dir(request) -> pathlib.Path:
    return request.param


def test_score_matches_transformers(fixture_dir):
    ref = _ref(fixture_dir)
    _check_logits(_llm(fixture_dir).score(_ids(ref["input_ids"])), ref, fixture_dir.name)


def test_greedy_matches_transformers(fixture_dir):
    ref = _ref(fixture_dir)
    llm = _llm(fixture_dir)
    outs = llm.generate([_ids(ref["greedy_prompt"])], _greedy())
    assert list(outs[0].outputs[0].token_ids) == _ids(ref["greedy_tokens"])
    both = llm.generate([_ids(ref["greedy_prompt"]), _ids(ref["prompt2"])], _greedy())
    assert list(both[0].outputs[0].token_ids) == _ids(ref["greedy_tokens"])
    assert list(both[1].outputs[0].token_ids) == _ids(ref["greedy_tokens2"])


@pytest.mark.parametrize("name,fmt,lo,hi", [
    ("awq_g128", "awq int4 g128", 0.5, 0.55),          # 4 bits + f16 scale and packed zero per 128
    ("gptq_g32_act_order", "gptq int4 g32 act-order", 0.55, 0.7),  # + g_idx (4 bytes per input)
    ("gptq8_g128_v2", "gptq int8 g128", 1.0, 1.1),
    ("ct_w4a16_g128", "compressed-tensors int4 g128", 0.5, 0.55),
    ("ct_fp8_dynamic", "fp8 e4m3 per-channel", 1.0, 1.05),
    ("ct_int8_dynamic", "int8 per-channel", 1.0, 1.05),
])
def test_info_shows_each_group_format_and_bytes_per_param(name, fmt, lo, hi):
    from eli import model_info

    info = model_info.summarize(dict(eli.inspect_model(str(QDIR / name))), str(QDIR / name))
    groups = {g["group"]: g for g in info["tensor_groups"]}
    q = groups["model.layers.*.self_attn.q_proj"]
    assert q["format"] == fmt
    assert q["modules"] == 2 and q["params"] == 2 * 128 * 128  # two layers
    assert lo <= q["bytes_per_param"] <= hi, q
    assert groups["model.embed_tokens"]["format"] == "f16"
    assert groups["model.embed_tokens"]["bytes_per_param"] == 2.0
    # Parameters are the logical ones (eight int4 per stored int32), not the stored elements.
    raw = dict(eli.inspect_model(str(QDIR / name)))
    assert info["num_params"] == sum(g["params"] for g in info["tensor_groups"])
    packed = not fmt.startswith(("fp8", "int8"))  # int32 words of 4- / 8-bit values
    assert (info["num_params"] > raw["num_params"]) == packed
    text = model_info.format_text(info)
    assert "bytes per parameter" in text and fmt in text


# ---------------------------------------------------------------- refusals


def _copy_with_config(tmp_path: pathlib.Path, src: str, edit) -> pathlib.Path:
    dst = tmp_path / src
    shutil.copytree(QDIR / src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    edit(cfg)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize("method", ["bitsandbytes", "hqq", "eetq", "aqlm", "marlin", "exl2", "fp8", "quanto"])
def test_unknown_methods_are_refused_by_name(tmp_path, method):
    d = _copy_with_config(tmp_path, "awq_g128", lambda c: c.__setitem__("quantization_config", {"quant_method": method}))
    with pytest.raises(eli.UnsupportedError) as e:
        eli.LLM(str(d), device="cpu")
    msg = str(e.value)
    assert f"'{method}'" in msg and "awq" in msg and "gptq" in msg and "compressed-tensors" in msg


@pytest.mark.parametrize("src,edit,needle", [
    ("awq_g128", lambda q: q.update(version="gemv"), "AWQ version 'gemv'"),
    ("awq_g128", lambda q: q.update(bits=3), "AWQ with 3 bits"),
    ("gptq_g128", lambda q: q.update(bits=3), "GPTQ with 3 bits"),
    ("gptq_g128", lambda q: q.update(checkpoint_format="marlin"), "checkpoint_format 'marlin'"),
    ("ct_w4a16_g128", lambda q: q["config_groups"].update(group_1=q["config_groups"]["group_0"]), "2 config groups"),
    ("ct_fp8_dynamic", lambda q: q["config_groups"]["group_0"]["weights"].update(num_bits=4), "scheme"),
    ("ct_int8_dynamic", lambda q: q["config_groups"]["group_0"]["input_activations"].update(dynamic=False,
                                                                                            strategy="tensor"),
     "scheme"),
])
def test_unsupported_variants_are_refused(tmp_path, src, edit, needle):
    d = _copy_with_config(tmp_path, src, lambda c: edit(c["quantization_config"]))
    with pytest.raises(eli.UnsupportedError, match="quantization_config") as e:
        eli.LLM(str(d), device="cpu")
    assert needle in str(e.value)


def test_malformed_published_tensor_is_a_model_load_error(tmp_path):
    # A config claiming group 64 over tensors written for group 128: the scales' shape is checked.
    d = _copy_with_config(tmp_path, "awq_g128", lambda c: c["quantization_config"].update(group_size=64))
    with pytest.raises(eli.ModelLoadError, match="qzeros.*shape"):
        eli.LLM(str(d), device="cpu")


def _edit_tensor(d: pathlib.Path, name: str, dtype: str | None = None, data=None):
    """Rewrites tensor `name` of d/model.safetensors in place: a new header dtype (same element size)
    and / or new raw bytes (same length)."""
    path = d / "model.safetensors"
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    entry = header[name]
    if dtype is not None:
        entry["dtype"] = dtype
    if data is not None:
        b, e = entry["data_offsets"]
        blob = np.ascontiguousarray(data).tobytes()
        assert len(blob) == e - b
        raw[8 + n + b:8 + n + e] = blob
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (n - len(h))
    assert len(h) == n
    raw[8:8 + n] = h
    path.write_bytes(bytes(raw))


def _tensor(d: pathlib.Path, name: str, dtype) -> np.ndarray:
    raw = (d / "model.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    b, e = json.loads(raw[8:8 + n])[name]["data_offsets"]
    return np.frombuffer(raw[8 + n + b:8 + n + e], dtype=dtype).copy()


def test_hostile_published_tensors_are_typed_errors(tmp_path):
    # g_idx naming a group that does not exist.
    d = _copy_with_config(tmp_path / "a", "gptq_g32_act_order", lambda c: None)
    g = _tensor(d, "model.layers.0.mlp.down_proj.g_idx", np.int32)
    g[5] = 999
    _edit_tensor(d, "model.layers.0.mlp.down_proj.g_idx", data=g)
    with pytest.raises(eli.ModelLoadError, match="g_idx value 999"):
        eli.LLM(str(d), device="cpu")
    # Merged parts (q, k, v read one input) with different act-order permutations.
    d = _copy_with_config(tmp_path / "b", "gptq_g32_act_order", lambda c: None)
    g = _tensor(d, "model.layers.1.self_attn.k_proj.g_idx", np.int32)
    _edit_tensor(d, "model.layers.1.self_attn.k_proj.g_idx", data=g[::-1].copy())
    with pytest.raises(eli.UnsupportedError, match="different g_idx"):
        eli.LLM(str(d), device="cpu")
    # A packed weight stored as floats.
    d = _copy_with_config(tmp_path / "c", "awq_g128", lambda c: None)
    _edit_tensor(d, "model.layers.0.self_attn.o_proj.qweight", dtype="F32")
    with pytest.raises(eli.ModelLoadError, match="int32"):
        eli.LLM(str(d), device="cpu")
    # A W8A8 weight in the wrong storage type.
    d = _copy_with_config(tmp_path / "d", "ct_fp8_dynamic", lambda c: None)
    _edit_tensor(d, "model.layers.0.mlp.up_proj.weight", dtype="I8")
    with pytest.raises(eli.ModelLoadError, match="F8_E4M3"):
        eli.LLM(str(d), device="cpu")
    # A NaN among FP8 weights (the kernels widen e4m3 codes without NaN handling).
    d = _copy_with_config(tmp_path / "e", "ct_fp8_dynamic", lambda c: None)
    w = _tensor(d, "model.layers.1.self_attn.o_proj.weight", np.uint8)
    w[77] = 0xFF
    _edit_tensor(d, "model.layers.1.self_attn.o_proj.weight", data=w)
    with pytest.raises(eli.ModelLoadError, match="o_proj: FP8 weight holds a NaN"):
        eli.LLM(str(d), device="cpu")


# ---------------------------------------------------------------- the quantization option


def test_option_must_match_the_checkpoint():
    with pytest.raises(ValueError, match="quantization='gptq'.*awq"):
        eli.LLM(str(QDIR / "awq_g128"), device="cpu", quantization="gptq")
    with pytest.raises(ValueError, match="not quantized"):
        eli.LLM(str(DATA / "models" / "llama_base"), device="cpu", quantization="awq")
    with pytest.raises(ValueError, match="quantization='none'"):
        eli.LLM(str(QDIR / "awq_g128"), device="cpu", quantization="none")
    # Matching names load.
    ref = _ref(QDIR / "awq_g128")
    _check_logits(_llm(QDIR / "awq_g128", quantization="awq").score(_ids(ref["input_ids"])), ref, "awq explicit")


def test_fp8_option_on_a_compressed_tensors_fp8_checkpoint_is_a_match():
    ref = _ref(QDIR / "ct_fp8_dynamic")
    _check_logits(_llm(QDIR / "ct_fp8_dynamic", quantization="fp8").score(_ids(ref["input_ids"])), ref, "fp8 ct")


def test_online_fp8_matches_its_reference():
    d = QDIR / "fp8_online_llama_base"
    ref = _ref(d)
    llm = _llm(DATA / "models" / "llama_base", quantization="fp8")
    got = np.asarray(llm.score(_ids(ref["input_ids"])))
    _check_logits(got, ref, "fp8 online")
    # Not the unquantized model: the option took effect.
    with np.load(DATA / "models" / "llama_base" / "reference.npz") as z:
        dense = z["logits"]
    # Not the unquantized model: the option took effect (quantization moves the logits far more than
    # the W8A8 tolerance allows).
    tol = float(np.asarray(ref["rel_tol"]).reshape(-1)[0])
    assert float(np.abs(got - dense).max()) > 4 * FLIP_FACTOR * tol * float(np.abs(dense).max())
    outs = llm.generate([_ids(ref["greedy_prompt"])], _greedy())
    assert list(outs[0].outputs[0].token_ids) == _ids(ref["greedy_tokens"])
