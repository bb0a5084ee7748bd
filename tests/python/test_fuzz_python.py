# tests/python/test_fuzz_python.py: property-based fuzzing of eli's Python API (hypothesis).
#
# Properties (each must hold for every generated input; a crash of the process also fails):
#   * mutated / random bytes written as a .gguf, a model.safetensors or a config.json make
#     eli.inspect_model either succeed or raise eli.ModelLoadError, never another exception;
#   * random SamplingParams values are either accepted (and then generation works or raises
#     InvalidRequestError) or refused with a ValueError (InvalidRequestError derives from it);
#   * random token-id prompts (negative, >= vocab, huge, empty, longer than the context) give a
#     result or eli.InvalidRequestError;
#   * every fuzz-found regression input (tests/data/malformed/fuzz/manifest.json) raises
#     eli.ModelLoadError with the manifest's expected text.
# Bounded and deterministic: derandomize=True, no example database, max_examples sized so the
# whole file runs in well under 40 s on a 2-core CI machine. The C++ libFuzzer harnesses live in
# tests/fuzz/ (see docs/fuzzing.md).
import json
import math
import pathlib
import shutil
import struct

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parent.parent / "data"
FUZZ_DIR = DATA / "malformed" / "fuzz"

FAST = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SLOW = settings(FAST, max_examples=60)

GGUF_SEEDS = [DATA / "gguf" / "tiny_qwen2.gguf", DATA / "gguf" / "quant_types.gguf",
              DATA / "malformed" / "gguf" / "nested_array.gguf"]
ST_SEED = DATA / "malformed" / "hf" / "valid_tiny"

INTERESTING_U64 = [0, 1, 2, 7, 8, 31, 32, 0x7F, 0xFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 2**63 - 1, 2**63, 2**64 - 1]


@pytest.fixture(scope="module")
def eli():
    return pytest.importorskip("eli")


# ---- byte mutations -------------------------------------------------------------------------

def _mutation():
    return st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(0, 255)),
        st.tuples(st.just("u64"), st.integers(0, 1 << 20), st.sampled_from(INTERESTING_U64)),
        st.tuples(st.just("u32"), st.integers(0, 1 << 20), st.sampled_from([0, 1, 8, 9, 13, 99, 2**31, 2**32 - 1])),
        st.tuples(st.just("truncate"), st.integers(0, 1 << 20), st.just(0)),
        st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=16)),
    )


def _mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, pos, val in ops:
        if not buf:
            break
        pos %= len(buf)
        if op == "flip":
            buf[pos] ^= val or 1
        elif op == "u64":
            buf[pos:pos + 8] = struct.pack("<Q", val)
        elif op == "u32":
            buf[pos:pos + 4] = struct.pack("<I", val)
        elif op == "truncate":
            del buf[pos:]
        else:
            buf[pos:pos] = val
    return bytes(buf)


def _expect_load_error_or_ok(eli, path):
    try:
        eli.inspect_model(str(path))
    except eli.ModelLoadError:
        pass  # the only acceptable failure; anything else propagates and fails the property


# ---- model files ----------------------------------------------------------------------------

@FAST
@given(seed=st.sampled_from(GGUF_SEEDS), ops=st.lists(_mutation(), min_size=1, max_size=4))
def test_mutated_gguf_only_model_load_error(eli, tmp_path, seed, ops):
    path = tmp_path / "m.gguf"
    path.write_bytes(_mutate(seed.read_bytes(), ops))
    _expect_load_error_or_ok(eli, path)


@FAST
@given(body=st.binary(max_size=256), version=st.sampled_from([2, 3]))
def test_random_gguf_bytes_only_model_load_error(eli, tmp_path, body, version):
    path = tmp_path / "r.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<I", version) + body)
    _expect_load_error_or_ok(eli, path)


def _model_dir(tmp_path, config: bytes, weights: bytes) -> pathlib.Path:
    d = tmp_path / "model"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    (d / "config.json").write_bytes(config)
    (d / "model.safetensors").write_bytes(weights)
    return d


@FAST
@given(ops=st.lists(_mutation(), min_size=1, max_size=4))
def test_mutated_safetensors_only_model_load_error(eli, tmp_path, ops):
    weights = (ST_SEED / "model.safetensors").read_bytes()
    d = _model_dir(tmp_path, (ST_SEED / "config.json").read_bytes(), _mutate(weights, ops))
    _expect_load_error_or_ok(eli, d)


@FAST
@given(header=st.dictionaries(st.text(max_size=8), st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=12),
    max_size=4), tail=st.binary(max_size=64))
def test_random_safetensors_header_only_model_load_error(eli, tmp_path, header, tail):
    h = json.dumps(header).encode()
    d = _model_dir(tmp_path, (ST_SEED / "config.json").read_bytes(), struct.pack("<Q", len(h)) + h + tail)
    _expect_load_error_or_ok(eli, d)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=8)
_CONFIG_KEYS = ["architectures", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings", "rms_norm_eps",
                "rope_theta", "rope_scaling", "rope_parameters", "tie_word_embeddings", "sliding_window",
                "eos_token_id", "bos_token_id", "attention_bias", "torch_dtype", "auto_map"]


@FAST
@given(changes=st.dictionaries(st.sampled_from(_CONFIG_KEYS), _JSON_VALUES, min_size=1, max_size=4),
       drop=st.lists(st.sampled_from(_CONFIG_KEYS), max_size=2))
def test_mutated_config_fields_only_model_load_error(eli, tmp_path, changes, drop):
    config = json.loads((ST_SEED / "config.json").read_text())
    config.update(changes)
    for k in drop:
        config.pop(k, None)
    d = _model_dir(tmp_path, json.dumps(config).encode(), (ST_SEED / "model.safetensors").read_bytes())
    _expect_load_error_or_ok(eli, d)


@FAST
@given(ops=st.lists(_mutation(), min_size=1, max_size=3))
def test_mutated_config_bytes_only_model_load_error(eli, tmp_path, ops):
    config = _mutate((ST_SEED / "config.json").read_bytes(), ops)
    d = _model_dir(tmp_path, config, (ST_SEED / "model.safetensors").read_bytes())
    _expect_load_error_or_ok(eli, d)


# ---- requests -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def llm(eli):
    return eli.LLM(str(DATA / "models" / "llama_base"), device="cpu", max_num_seqs=4, progress=False)


_NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10),
                     st.sampled_from([0.0, -0.0, 1e-30, 1e30, 2**63, -(2**63)]), st.booleans(), st.none(),
                     st.text(max_size=3))
_COUNTS = st.one_of(st.integers(-3, 8), st.sampled_from([2**20, 2**20 + 1, 2**31 - 1, -(2**31)]), st.floats(), st.booleans(),
                    st.none(), st.text(max_size=3))


@SLOW
@given(kw=st.fixed_dictionaries({}, optional={
    "max_tokens": _COUNTS, "temperature": _NUMBERS, "top_k": _COUNTS, "top_p": _NUMBERS, "min_p": _NUMBERS,
    "repetition_penalty": _NUMBERS, "presence_penalty": _NUMBERS, "frequency_penalty": _NUMBERS,
    "seed": st.one_of(st.none(), st.integers(-5, 2**65)), "logprobs": _COUNTS,
    "stop": st.one_of(st.none(), st.text(max_size=4), st.lists(st.text(max_size=4), max_size=3)),
    "stop_token_ids": st.one_of(st.none(), st.lists(st.integers(-2**40, 2**40), max_size=3)),
}))
def test_random_sampling_params_valid_or_value_error(eli, llm, kw):
    try:
        params = eli.SamplingParams(**kw)
    except ValueError:
        return
    try:
        out = llm.generate([[1, 5, 9]], params)
    except ValueError:  # InvalidRequestError: rejected by validate_sampling_params in C++
        return
    assert len(out) == 1
    toks = out[0].token_ids
    assert all(0 <= t < 263 for t in toks)
    if isinstance(params.max_tokens, int) and params.max_tokens >= 0:
        assert len(toks) <= params.max_tokens


@SLOW
@given(ids=st.one_of(
    st.lists(st.integers(0, 262), max_size=8),
    st.lists(st.integers(-2**31, 2**31 - 1), min_size=1, max_size=4),
    st.lists(st.integers(0, 262), min_size=250, max_size=300)))
def test_random_token_prompts_result_or_invalid_request(eli, llm, ids):
    try:
        out = llm.generate([ids], eli.SamplingParams(max_tokens=2, temperature=0.0))
    except eli.InvalidRequestError:
        # empty, outside [0, vocab), or prompt + max_tokens (2) past the 256-token context
        assert not ids or any(not 0 <= i < 263 for i in ids) or len(ids) + 2 > 256, ids
        return
    assert ids and all(0 <= i < 263 for i in ids) and len(ids) + 2 <= 256
    assert list(out[0].prompt_token_ids) == ids


# Fuzz finding (docs/fuzzing.md), fixed: ids outside int32 used to reach the bindings unchecked.
@pytest.mark.parametrize("bad", [2**31, -(2**31) - 1, 2**64])
def test_token_ids_outside_int32_are_invalid_request(eli, llm, bad):
    with pytest.raises(eli.InvalidRequestError):
        llm.generate([[1, bad]], eli.SamplingParams(max_tokens=1))


# Fuzz findings (docs/fuzzing.md), fixed: stop=1 and integers past their C++ width used to raise
# TypeError / RuntimeError(std::bad_cast).
@pytest.mark.parametrize("kw", [{"stop": 1}, {"max_tokens": 2**63}, {"top_k": 2**64}, {"logprobs": 2**31}])
def test_sampling_params_findings_are_value_errors(eli, llm, kw):
    with pytest.raises(ValueError):
        llm.generate([[1, 5]], eli.SamplingParams(**kw))


def test_the_properties_can_fail(eli, tmp_path):
    # Guard against a vacuous harness: a non-model-load failure must not be swallowed.
    with pytest.raises(FileNotFoundError):
        _expect_load_error_or_ok(type("E", (), {"ModelLoadError": eli.ModelLoadError,
                                                "inspect_model": staticmethod(lambda p: open(p))}), tmp_path / "nope")
    assert math.isnan(float("nan"))


# ---- regressions found by the libFuzzer harnesses -------------------------------------------

def _fuzz_cases():
    manifest = FUZZ_DIR / "manifest.json"
    return json.loads(manifest.read_text())["cases"] if manifest.exists() else []


@pytest.mark.parametrize("case", _fuzz_cases(), ids=lambda c: c["path"])
def test_fuzz_regression_raises_model_load_error(eli, tmp_path, case):
    src = FUZZ_DIR / case["path"]
    if case["harness"] == "gguf":
        path = tmp_path / "m.gguf"
        path.write_bytes(src.read_bytes())
    elif case["harness"] == "hf_config":
        path = _model_dir(tmp_path, src.read_bytes(), (ST_SEED / "model.safetensors").read_bytes())
    elif case["harness"] == "safetensors":
        path = _model_dir(tmp_path, (ST_SEED / "config.json").read_bytes(), src.read_bytes())
    else:
        pytest.fail(f"no Python route for harness {case['harness']}")
    with pytest.raises(eli.ModelLoadError) as info:
        eli.inspect_model(str(path))
    assert case["expect"] in str(info.value)


def test_gguf_metadata_array_element_cap(eli, tmp_path):
    # Hardening from the fuzzing review (docs/limits.md): a u8 array of 2^24 + 1 elements fits in its
    # 16 MiB file but would take 8x that as int64s; the reader caps metadata array elements per file.
    n = (1 << 24) + 1
    path = tmp_path / "big_array.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 3) + b"big"
                     + struct.pack("<IIQ", 9, 0, n) + bytes(n))
    with pytest.raises(eli.ModelLoadError, match="metadata array elements per file"):
        eli.inspect_model(str(path))
