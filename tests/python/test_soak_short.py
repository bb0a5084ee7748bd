# tests/python/test_soak_short.py: a short run of the reliability soak (tests/soak/soak.py) on the
# tiny llama_base checkpoint: 200 requests with random sampling settings, ~20% random aborts and a
# KV pool small enough to force preemption. Asserts the soak's invariants one by one (no leaked
# blocks, nothing stuck, preemptions happened, healthy engine, no errors, greedy outputs equal to
# lone runs, RSS flat) so a failure names the broken one. Runs in ~1-5 s on a 2-core machine.
import importlib.util
import pathlib

import pytest

SOAK_PATH = pathlib.Path(__file__).resolve().parents[1] / "soak" / "soak.py"


def _load_soak():
    spec = importlib.util.spec_from_file_location("eli_soak", SOAK_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def fig(data_dir):
    soak = _load_soak()
    return soak.run_soak(model=str(data_dir / "models" / "llama_base"), requests=200, concurrency=32,
                         dtype="float32", n_threads=1, greedy_checks=50, seed=1234, request_timeout=60.0,
                         verbose=False)


def test_every_request_ran(fig):
    assert fig["requests"] == 200
    assert fig["completed"] == 200
    assert fig["stuck"] == 0
    assert fig["errors"] == 0


def test_aborts_happened(fig):
    assert fig["aborts_planned"] >= 20  # ~20% of 200
    assert fig["aborts_observed"] > 0


def test_no_leaked_blocks(fig):
    assert fig["kv_blocks_free"] == fig["kv_blocks_total"]
    assert fig["num_running"] == 0 and fig["num_waiting"] == 0


def test_preemption_forced(fig):
    assert fig["preemptions"] > 0


def test_engine_healthy(fig):
    assert fig["healthy"]


def test_greedy_equals_lone_runs(fig):
    assert fig["greedy_checked"] >= 20
    assert fig["greedy_mismatches"] == 0


def test_no_violations(fig):
    # RSS flatness, token counts, logprob counts and finish reasons are checked inside the soak.
    assert fig["violations"] == []
