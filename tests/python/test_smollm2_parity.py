# tests/python/test_smollm2_parity.py: the real default model (SmolLM2-135M-Instruct, Q4_1 GGUF) against
# transformers.
#
# tests/data/smollm2_reference.json comes from scripts/make_references.py: transformers dequantizes the
# GGUF to float32 (un-permuting the llama Q/K rows, as eli does), then greedy-decodes 32 tokens per
# prompt with eos ignored and scores an English paragraph. eli, loading the same file with
# dtype="float32", must produce the same greedy tokens (alone and batched), logprobs of those tokens close
# to transformers', and the paragraph's perplexity within 0.5%.
import json
import os
import pathlib

import numpy as np
import pytest

import eli

REF_PATH = pathlib.Path(__file__).resolve().parent.parent / "data" / "smollm2_reference.json"
N_NEW = 32
PPL_REL_TOL = 5e-3
LOGPROB_ABS_TOL = 2e-2


@pytest.fixture(scope="module")
def ref() -> dict:
    return json.loads(REF_PATH.read_text())


@pytest.fixture(scope="module")
def llm(smollm2_gguf):
    # The dequantize-at-load path (ELI_GGUF_NATIVE=0, read at load): f32 weights as transformers
    # holds them, so greedy tokens must match exactly. The native GGUF kernels (8-bit activations)
    # are held to the same reference by tests/python/test_gguf_native.py.
    old = os.environ.get("ELI_GGUF_NATIVE")
    os.environ["ELI_GGUF_NATIVE"] = "0"
    try:
        return eli.LLM(str(smollm2_gguf), device="cpu", dtype="float32")
    finally:
        if old is None:
            del os.environ["ELI_GGUF_NATIVE"]
        else:
            os.environ["ELI_GGUF_NATIVE"] = old


def _greedy() -> "eli.SamplingParams":
    return eli.SamplingParams(max_tokens=N_NEW, temperature=0.0, ignore_eos=True)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))



def test_reference_shape(ref):
    assert len(ref["prompts"]) >= 4
    assert {p["kind"] for p in ref["prompts"]} == {"chat", "raw"}
    for p in ref["prompts"]:
        assert len(p["greedy_ids"]) == N_NEW == len(p["greedy_logprobs"])
    assert len(ref["paragraph"]["ids"]) >= 100


def test_greedy_matches_transformers(llm, ref):
    for p in ref["prompts"]:
        out = llm.generate([p["prompt_ids"]], _greedy())[0]
        got = [int(t) for t in out.token_ids]
        assert got == p["greedy_ids"], f"{p['kind']} prompt {p['text']!r}: {got} != {p['greedy_ids']}"


def test_batched_greedy_matches_transformers(llm, ref):
    outs = llm.generate([p["prompt_ids"] for p in ref["prompts"]], _greedy())
    assert len(outs) == len(ref["prompts"])
    for out, p in zip(outs, ref["prompts"]):
        assert [int(t) for t in out.token_ids] == p["greedy_ids"], p["text"]


def test_greedy_logprobs_match_transformers(llm, ref):
    # Scored teacher-forced through llm.score, so this holds whatever form RequestOutput.logprobs takes.
    for p in ref["prompts"]:
        ids = p["prompt_ids"] + p["greedy_ids"]
        lp = _log_softmax(np.asarray(llm.score(ids)))
        n = len(p["prompt_ids"])
        got = lp[np.arange(n - 1, len(ids) - 1), p["greedy_ids"]]
        np.testing.assert_allclose(got, p["greedy_logprobs"], atol=LOGPROB_ABS_TOL, rtol=0,
                                   err_msg=p["text"])


def test_paragraph_perplexity(llm, ref):
    ids = ref["paragraph"]["ids"]
    logits = np.asarray(llm.score(ids))
    assert logits.dtype == np.float32 and logits.shape[0] == len(ids)
    lp = _log_softmax(logits)
    nll = -lp[np.arange(len(ids) - 1), ids[1:]].mean()
    ppl = float(np.exp(nll))
    want = ref["paragraph"]["perplexity"]
    assert abs(ppl - want) / want <= PPL_REL_TOL, f"perplexity {ppl:.4f} vs transformers {want:.4f}"
