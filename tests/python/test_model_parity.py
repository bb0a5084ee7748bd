# tests/python/test_model_parity.py: eli's model code against Hugging Face transformers, exactly.
#
# Every tests/data/models/<name>/ holds a tiny random checkpoint (one per architecture / RoPE scaling /
# bias / GQA-MQA / tying / dtype / sharding variant) and reference.npz written by
# scripts/make_references.py (transformers, eager attention, float32 on CPU). eli loads each one with
# dtype="float32" (bf16 / f16 checkpoints are upcast; the reference used the same upcast weights) and must
#   - score: reproduce the full-forward logits within 1e-4 relative (max abs error / max abs reference),
#     with the same argmax on every row that is not a near-tie;
#   - generate: reproduce HF's 20 greedy tokens (eos ignored), alone and batched with a second prompt.
# Dynamic NTK RoPE (llama_rope_dynamic, max_position 16) follows HF's cached semantics, which differ from
# recomputing the whole sequence: a forward over positions [0, n) rotates all its tokens with the base
# for seq_len = max(n, max_position); each decode token at position p uses the base for max(p + 1,
# max_position); cached keys keep the rotation they were written with. (The uncached alternative gives
# different greedy tokens for prompt2 of that model, so the test tells the two apart.)
import pathlib

import numpy as np
import pytest

import eli

MODELS_DIR = pathlib.Path(__file__).resolve().parent.parent / "data" / "models"
MODEL_DIRS = sorted(p.parent for p in MODELS_DIR.glob("*/reference.npz"))
REL_TOL = 1e-4
N_NEW = 20

_llms: dict[str, object] = {}


def _llm(model_dir: pathlib.Path):
    # One engine per model for the whole session: the tests of a model share it.
    key = str(model_dir)
    if key not in _llms:
        _llms[key] = eli.LLM(key, device="cpu", dtype="float32")
    return _llms[key]


def _ref(model_dir: pathlib.Path) -> dict:
    with np.load(model_dir / "reference.npz") as z:
        return {k: z[k] for k in z.files}


def _greedy() -> "eli.SamplingParams":
    return eli.SamplingParams(max_tokens=N_NEW, temperature=0.0, ignore_eos=True)


def _ids(arr) -> list[int]:
    return [int(t) for t in arr]


def test_reference_models_present():
    assert len(MODEL_DIRS) >= 12, f"expected the generated reference models under {MODELS_DIR}"


@pytest.fixture(params=MODEL_DIRS, ids=[p.name for p in MODEL_DIRS])
def model_dir(request) -> pathlib.Path:
    return request.param


def test_score_matches_transformers(model_dir):
    ref = _ref(model_dir)
    want = ref["logits"]  # (L, V) float32
    got = _llm(model_dir).score(_ids(ref["input_ids"]))
    got = np.asarray(got)
    assert got.dtype == np.float32
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.isfinite(got).all()
    scale = float(np.abs(want).max())
    err = float(np.abs(got.astype(np.float64) - want).max())
    assert err / scale <= REL_TOL, f"{model_dir.name}: max abs err {err:.3e}, max abs ref {scale:.3e}"
    # Argmax per row, except rows whose top-2 gap is within the tolerance (a tie is no evidence).
    top2 = np.sort(want, axis=-1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 4 * REL_TOL * scale
    assert clear.sum() >= len(want) // 2
    np.testing.assert_array_equal(got.argmax(-1)[clear], want.argmax(-1)[clear])


def test_greedy_matches_transformers(model_dir):
    ref = _ref(model_dir)
    outs = _llm(model_dir).generate([_ids(ref["greedy_prompt"])], _greedy())
    assert len(outs) == 1
    assert _ids(outs[0].token_ids) == _ids(ref["greedy_tokens"]), model_dir.name
    assert outs[0].finish_reason == "length"


def test_batched_greedy_matches_separate(model_dir):
    ref = _ref(model_dir)
    llm = _llm(model_dir)
    p1, p2 = _ids(ref["greedy_prompt"]), _ids(ref["prompt2"])
    assert len(p1) != len(p2)
    alone1 = _ids(llm.generate([p1], _greedy())[0].token_ids)
    alone2 = _ids(llm.generate([p2], _greedy())[0].token_ids)
    both = llm.generate([p1, p2], _greedy())
    assert len(both) == 2
    assert _ids(both[0].token_ids) == alone1
    assert _ids(both[1].token_ids) == alone2
    # Both also equal the transformers references (the second prompt's included).
    assert alone1 == _ids(ref["greedy_tokens"])
    assert alone2 == _ids(ref["greedy_tokens2"])
