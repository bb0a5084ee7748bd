# tests/python/test_structured_bench.py: bench/cpu_structured_bench.py's helpers (validation,
# ratios, llama.cpp's GBNF of each case) and one tiny run of the bench (eli only, the tests' tiny
# llama_base checkpoint): the JSON record it writes has its fields and eli's constrained outputs of
# the bounded cases end and validate. No timing is asserted. The llama.cpp part is skipped when
# llama_cpp is not importable.
import importlib.util
import os
import json
import pathlib
import subprocess
import sys

import pytest

import eli

ROOT = pathlib.Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "cpu_structured_bench.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("cpu_structured_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_validate(bench):
    flat = bench.CASES["flat"]
    ok = json.dumps({"name": "Ann", "age": 30, "city": "Oslo", "employed": True})
    assert bench.validate(flat, ok) == (True, "")
    assert not bench.validate(flat, json.dumps({"name": "Ann", "age": 300, "city": "Oslo", "employed": True}))[0]
    assert not bench.validate(flat, '{"name": "Ann", "age": 30')[0]  # cut at max_tokens
    assert bench.validate(bench.CASES["json_object"], '{"a": [1, 2]}')[0]
    assert not bench.validate(bench.CASES["json_object"], "[1, 2]")[0]
    regex = bench.CASES["regex"]
    assert bench.validate(regex, "Marie Curie was born on 1867-11-07 in Warsaw.")[0]
    assert not bench.validate(regex, "Marie Curie was born on 1867-11-07 in Warsaw. Yes.")[0]
    pyd = bench.CASES["pydantic"]
    doc = {"name": "Bo", "age": 4, "address": {"street": "S", "city": "C", "country": "N"},
           "pets": [{"name": "Rex", "species": "dog", "age": None}], "nickname": None}
    assert bench.validate(pyd, json.dumps(doc))[0]
    doc["pets"][0]["species"] = "cow"
    assert not bench.validate(pyd, json.dumps(doc))[0]


def test_summarize_and_rates(bench):
    recs = [{"engine": "eli", "case": "flat", "mode": "plain", "decode_tok_s": 100.0},
            {"engine": "eli", "case": "flat", "mode": "constrained", "decode_tok_s": 90.0},
            {"engine": "llama.cpp resample", "case": "flat", "mode": "plain", "decode_tok_s": 80.0},
            {"engine": "llama.cpp resample", "case": "flat", "mode": "constrained", "decode_tok_s": 40.0}]
    (s,) = bench.summarize(recs)
    assert s["eli ratio"] == pytest.approx(0.9)
    assert s["llama.cpp resample ratio"] == pytest.approx(0.5)
    assert s["eli / llama.cpp resample"] == pytest.approx(90.0 / 40.0)
    assert bench.decode_rate(11, 2.0) == pytest.approx(5.0)
    assert bench.decode_rate(1, 2.0) == 0.0
    assert bench.pct([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)


def test_llama_cpp_grammars(bench):
    pytest.importorskip("llama_cpp")
    for name, case in bench.CASES.items():
        g = bench.gbnf_for(case)
        assert "root ::=" in g, name
    assert "Address" in bench.gbnf_for(bench.CASES["pydantic"]) or "address" in bench.gbnf_for(bench.CASES["pydantic"])


def test_tiny_run_writes_record(tmp_path, data_dir):
    out = tmp_path / "structured.json"
    cmd = [sys.executable, str(BENCH), "--model", str(data_dir / "models" / "llama_base"), "--engines", "eli",
           "--cases", "flat,regex,nested", "--short-prompts", "--reps", "2", "--warmup", "1",
           "--max-tokens", "240", "--threads", "1", "--out", str(out)]
    # The eli this test imports (installed in CI, or the checkout's python/ on PYTHONPATH).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pathlib.Path(eli.__file__).resolve().parent.parent),
                                                        os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    assert "valid" in p.stdout  # the table
    doc = json.loads(out.read_text())
    for key in ("cpu", "commit", "threads", "batch", "max_tokens", "reps", "versions", "cases", "results", "summary"):
        assert key in doc, key
    assert doc["threads"] == 1 and doc["reps"] == 2
    recs = {(r["case"], r["mode"]): r for r in doc["results"] if r["engine"] == "eli"}
    assert set(recs) == {(c, m) for c in ("flat", "regex", "nested") for m in ("plain", "constrained")}
    for (case, mode), r in recs.items():
        assert r["decode_tok_s"] > 0 and len(r["samples"]) == 2
        if mode == "constrained":
            assert {"valid", "n", "stopped", "text", "grammar_us_per_token", "mask_us_p50"} <= set(r)
            assert r["mask_us_p50"] > 0  # the mask was timed
            # plain decodes as many tokens as the constrained run did
            assert recs[(case, "plain")]["tokens"] == r["tokens"]
    for case in ("flat", "regex"):  # bounded documents that fit in 240 tokens: they end and validate
        r = recs[(case, "constrained")]
        assert r["stopped"] == r["n"] == r["valid"] == 2, r
    nested = recs[("nested", "constrained")]
    assert nested["valid"] == nested["stopped"]  # every output that ended validates
    assert {s["case"] for s in doc["summary"]} == {"flat", "regex", "nested"}
    assert all(s["eli ratio"] > 0 for s in doc["summary"])
