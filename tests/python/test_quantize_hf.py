"""tests/python/test_quantize_hf.py: `eli quantize --format hf` end to end on tiny random checkpoints.

Each method's output is opened by eli, and its logits are compared with eli's logits on a float32
checkpoint holding the dequantized weights, which this file builds by unpacking the written tensors
with its own numpy code (byte / nibble views, not the writer's shifts): the packing and the
config are checked independently of the writer. Weight-only formats (rtn, gptq, awq) must match to
float rounding; W8A8 formats (fp8, int8) also quantize activations, so their logits are compared
with a tolerance, and their weights exactly against a numpy quantization of the source.
GPTQ's output error on the calibration statistics is recomputed here (numpy) and must be below
RTN's; AWQ's reported error must be below RTN's. Argument errors are checked by message.
"""
import json
import pathlib
import shutil
import struct

import numpy as np
import pytest

import eli
from eli.quantize import calib, layouts

MODELS = pathlib.Path(__file__).resolve().parents[1] / "data" / "models"
LLAMA = MODELS / "llama_sharded"   # GQA, sharded safetensors, int4-friendly shapes (64, 96)
QWEN3 = MODELS / "qwen3"           # q/k norms, shapes 40 / 72 (8-bit only)
GEMMA3 = MODELS / "gemma3"         # (1 + w) norms, pre/post feed-forward norms
IDS = [1] + list(range(3, 40))


# ---------------------------------------------------------------- independent reading / unpacking
def read_st(path: pathlib.Path) -> dict:
    """{name: (dtype, shape, raw bytes)} of one safetensors file."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        lo, hi = meta["data_offsets"]
        out[name] = (meta["dtype"], meta["shape"], data[8 + n + lo:8 + n + hi])
    return out


def arr(entry, np_dtype) -> np.ndarray:
    return np.frombuffer(entry[2], dtype=np_dtype).reshape(entry[1])


def to_f32(entry) -> np.ndarray:
    dt = entry[0]
    if dt == "BF16":
        return (np.frombuffer(entry[2], dtype=np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(entry[1])
    return arr(entry, {"F32": np.float32, "F16": np.float16}[dt]).astype(np.float32)


def unpack_words(words: np.ndarray, bits: int) -> np.ndarray:
    """int32 words -> their values in order (lowest bits first), along a new last axis, via bytes."""
    b = np.ascontiguousarray(words).view(np.uint8).reshape(words.shape + (4,))  # little-endian bytes
    if bits == 8:
        return b.astype(np.int64)
    return np.stack([b & 15, b >> 4], axis=-1).reshape(words.shape + (8,)).astype(np.int64)


def dequant_gptq(t: dict, base: str, bits: int) -> np.ndarray:
    qw = arr(t[base + ".qweight"], np.int32)            # (k / p, n)
    k_p, n = qw.shape
    q = unpack_words(qw, bits).transpose(0, 2, 1).reshape(-1, n)  # (k, n)
    qz = arr(t[base + ".qzeros"], np.int32)             # (G, n / p)
    z = unpack_words(qz, bits).reshape(qz.shape[0], -1) + 1        # v1: stored z - 1
    s = arr(t[base + ".scales"], np.float16).astype(np.float32)
    g = arr(t[base + ".g_idx"], np.int32)
    return ((q - z[g]).astype(np.float32) * s[g]).T.copy()


AWQ_COLUMN_OF_NIBBLE = [0, 2, 4, 6, 1, 3, 5, 7]  # AutoAWQ's pack order


def unpack_awq(words: np.ndarray) -> np.ndarray:
    nib = unpack_words(words, 4)                        # (R, C, 8) nibbles in word order
    out = np.empty_like(nib)
    for i, col in enumerate(AWQ_COLUMN_OF_NIBBLE):
        out[:, :, col] = nib[:, :, i]
    return out.reshape(words.shape[0], -1)


def dequant_awq(t: dict, base: str) -> np.ndarray:
    q = unpack_awq(arr(t[base + ".qweight"], np.int32))  # (k, n)
    z = unpack_awq(arr(t[base + ".qzeros"], np.int32))   # (G, n)
    s = arr(t[base + ".scales"], np.float16).astype(np.float32)
    gs = q.shape[0] // s.shape[0]
    g = np.arange(q.shape[0]) // gs
    return ((q - z[g]).astype(np.float32) * s[g]).T.copy()


def e4m3(code: np.ndarray) -> np.ndarray:
    c = code.astype(np.int64)
    e, m = (c >> 3) & 15, c & 7
    v = np.where(e == 0, m * 2.0 ** -9, (1 + m / 8) * 2.0 ** (e - 7))
    return np.where(c & 0x80, -v, v).astype(np.float32)


def dense_copy(qdir: pathlib.Path, dst: pathlib.Path) -> dict:
    """Writes dst: qdir's model with every quantized linear dequantized (float32); returns it."""
    from safetensors.numpy import save_file

    cfg = json.loads((qdir / "config.json").read_text())
    qc = cfg.pop("quantization_config")
    t = read_st(qdir / "model.safetensors")
    dense = {}
    for name, entry in t.items():
        base, _, suffix = name.rpartition(".")
        if suffix == "qweight":
            dense[base + ".weight"] = (dequant_awq(t, base) if qc["quant_method"] == "awq"
                                       else dequant_gptq(t, base, qc["bits"]))
        elif suffix == "weight" and entry[0] in ("I8", "F8_E4M3"):
            codes = arr(entry, np.int8).astype(np.float32) if entry[0] == "I8" else e4m3(arr(entry, np.uint8))
            dense[name] = codes * arr(t[base + ".weight_scale"], np.float32)
        elif suffix in ("qzeros", "scales", "g_idx", "weight_scale"):
            continue
        else:
            dense[name] = to_f32(entry)
    dst.mkdir()
    save_file(dense, str(dst / "model.safetensors"))
    (dst / "config.json").write_text(json.dumps(cfg))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(qdir / f, dst / f)
    return dense


def logits(path, **kw) -> np.ndarray:
    return eli.LLM(str(path), device="cpu", dtype="float32", **kw).score(IDS)


# ---------------------------------------------------------------- end to end
WEIGHT_ONLY = [
    ("rtn", LLAMA, dict(bits=4, group_size=32)),
    ("rtn", QWEN3, dict(bits=8, group_size=-1, sym=False)),
    ("gptq", LLAMA, dict(bits=4, group_size=32, act_order=True)),
    ("gptq", QWEN3, dict(bits=8, group_size=-1)),
    ("awq", LLAMA, dict(bits=4, group_size=32)),
    ("awq", GEMMA3, dict(bits=4, group_size=32)),
]


@pytest.mark.parametrize("method,src,kw", WEIGHT_ONLY, ids=[f"{m}-{s.name}-{k['bits']}" for m, s, k in WEIGHT_ONLY])
def test_weight_only_output_equals_its_dequantized_model(tmp_path, method, src, kw):
    out = tmp_path / "q"
    report = eli.quantize(str(src), str(out), method=method, progress=False, **kw)
    cfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert cfg["quant_method"] == ("awq" if method == "awq" else "gptq")
    assert (out / "tokenizer.json").exists()
    assert report["linears"] == 7 * json.loads((src / "config.json").read_text())["num_hidden_layers"]
    dense_copy(out, tmp_path / "dense")
    got, ref = logits(out), logits(tmp_path / "dense")
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    # And the quantized model is near, but not the same as, the source (tiny random models are
    # sensitive: the bound is loose).
    src_logits = logits(src)
    rms = float(np.sqrt(np.mean((got - src_logits) ** 2)))
    assert 0 < rms < float(np.sqrt(np.mean(src_logits ** 2)))


@pytest.mark.parametrize("method", ["fp8", "int8"])
def test_w8a8_output(tmp_path, method):
    out = tmp_path / "q"
    eli.quantize(str(QWEN3), str(out), method=method, bits=8, progress=False)
    cfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert cfg["quant_method"] == "compressed-tensors"
    assert cfg["config_groups"]["group_0"]["weights"]["type"] == ("float" if method == "fp8" else "int")
    dense = dense_copy(out, tmp_path / "dense")
    src = read_st(QWEN3 / "model.safetensors")
    for name, w in dense.items():
        if not name.endswith("_proj.weight"):
            continue
        ref = to_f32(src[name])
        amax = np.abs(ref).max(axis=1, keepdims=True)
        if method == "int8":  # exact: codes = rint(w / s), s = max|w| / 127
            s = (amax / np.float32(127)).astype(np.float32)
            np.testing.assert_array_equal(w, np.clip(np.rint(ref / s), -127, 127) * s)
        else:  # nearest e4m3 value (all 127 positive codes searched)
            s = (amax / np.float32(448)).astype(np.float32)
            grid = e4m3(np.arange(127))
            x = np.abs(ref / s)
            best = grid[np.abs(x[..., None] - grid).argmin(axis=-1)]
            assert np.all(np.abs(np.abs(w / s) - x) <= np.abs(best - x) + 1e-5 * np.maximum(x, 1))
    got = logits(out)
    if method == "int8":  # the dequantized model differs by the activations' int8 rounding only
        ref = logits(tmp_path / "dense")
        assert np.abs(got - ref).max() <= 0.05 * np.abs(ref).max()
    else:  # eli's online FP8 of the dequantized model requantizes to the same codes and scales
        online = logits(tmp_path / "dense", quantization="fp8")
        assert np.abs(got - online).max() <= 1e-4 * np.abs(online).max()


# ---------------------------------------------------------------- error against RTN
def test_gptq_and_awq_beat_rtn_on_the_calibration_statistics(tmp_path):
    stats = calib.collect(str(LLAMA), calib.DEFAULT_TEXT, progress=False)
    src = {}
    for f in LLAMA.glob("*.safetensors"):
        src.update(read_st(f))
    errs = {}
    for method in ("rtn", "gptq"):
        out = tmp_path / method
        eli.quantize(str(LLAMA), str(out), method=method, bits=4, group_size=32, progress=False)
        t = read_st(out / "model.safetensors")
        total = 0.0
        for name in t:
            if name.endswith(".qweight"):
                base = name[:-len(".qweight")]
                d = dequant_gptq(t, base, 4) - to_f32(src[base + ".weight"])
                h = stats[eli.quantize.hf.stats_key(base)][1].astype(np.float64)
                total += float(np.einsum("ri,ij,rj->", d, h, d))
        errs[method] = total
    assert errs["gptq"] < 0.8 * errs["rtn"], errs
    report = eli.quantize(str(LLAMA), str(tmp_path / "awq"), method="awq", group_size=32, progress=False)
    e = report["errors"]
    assert len(e) == 8  # qkv, o, gate_up, down per layer: every input has a fold target
    assert all(v["error"] <= v["rtn_error"] for v in e.values())
    assert sum(v["error"] for v in e.values()) < 0.97 * sum(v["rtn_error"] for v in e.values())


# ---------------------------------------------------------------- packers against the unpackers
def test_packers_round_trip():
    rng = np.random.default_rng(0)
    for bits in (4, 8):
        q = rng.integers(0, 2 ** bits, size=(16, 64)).astype(np.uint8)
        z = rng.integers(1, 2 ** bits, size=(16, 2)).astype(np.int32)
        s = rng.uniform(0.01, 1, size=(16, 2)).astype(np.float32)
        g = (np.arange(64) // 32).astype(np.int32)
        t = {"m" + k: (v[1], list(v[0].shape), v[0].tobytes())
             for k, v in layouts.gptq_tensors("m", q, s, z, g, bits).items()}
        want = (q.astype(np.int64) - z[:, g]) * s.astype(np.float16).astype(np.float32)[:, g]
        np.testing.assert_array_equal(dequant_gptq(t, "m", bits), want.astype(np.float32))
    z0 = rng.integers(0, 16, size=(16, 2)).astype(np.int32)
    t = {"m" + k: (v[1], list(v[0].shape), v[0].tobytes()) for k, v in layouts.awq_tensors("m", q % 16, s, z0).items()}
    g = np.arange(64) // 32
    want = ((q % 16).astype(np.int64) - z0[:, g]) * s.astype(np.float16).astype(np.float32)[:, g]
    np.testing.assert_array_equal(dequant_awq(t, "m"), want.astype(np.float32))


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("kw,message", [
    (dict(bits=3), "bits must be 4 or 8"),
    (dict(method="nf4"), "unknown quantization method"),
    (dict(group_size=48), "group_size 48 does not divide"),
    (dict(group_size=0), "group_size must be"),
    (dict(method="awq", bits=8), "4-bit"),
    (dict(method="rtn", act_order=True), "act_order"),
    (dict(format="onnx"), "format must be"),
])
def test_bad_arguments(tmp_path, kw, message):
    with pytest.raises(eli.InvalidRequestError, match=message):
        eli.quantize(str(LLAMA), str(tmp_path / "out"), progress=False, **kw)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_refuses_gguf_quantized_and_existing_inputs(tmp_path):
    gguf = MODELS.parent / "gguf" / "tiny_llama.gguf"
    with pytest.raises(eli.InvalidRequestError, match="GGUF"):
        eli.quantize(str(gguf), str(tmp_path / "a"), progress=False)
    q = MODELS.parent / "models_quantized" / "gptq_g128"
    with pytest.raises(eli.InvalidRequestError, match="already quantized"):
        eli.quantize(str(q), str(tmp_path / "b"), progress=False)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("x")
    with pytest.raises(eli.InvalidRequestError, match="already exists"):
        eli.quantize(str(LLAMA), str(tmp_path / "c"), progress=False)
    with pytest.raises(eli.InvalidRequestError, match="int4 layout"):  # llama_base: 72 / 100 features
        eli.quantize(str(MODELS / "llama_base"), str(tmp_path / "d"), group_size=-1, progress=False)


def test_cli(tmp_path, capsys):
    from eli import cli

    assert cli.main(["quantize", "--help"]) == 0
    assert "--method" in capsys.readouterr().out
    assert cli.main(["quantize", str(LLAMA), "-o", str(tmp_path / "q"), "--method", "gptq", "--group-size", "32",
                     "--calib", str(MODELS.parent.parent.parent / "README.md")]) == 0
    assert "x round-to-nearest's" in capsys.readouterr().err
    assert json.loads((tmp_path / "q" / "config.json").read_text())["quantization_config"]["group_size"] == 32
    assert cli.main(["quantize", str(LLAMA), "-o", str(tmp_path / "r"), "--bits", "3"]) == 2
    assert cli.main(["quantize", str(LLAMA), "-o", str(tmp_path / "r"), "--group-size", "48", "-q"]) == 1
    assert "does not divide" in capsys.readouterr().err
