#!/usr/bin/env python3
"""scripts/make_iq4_references.py: llama.cpp references for eli's IQ4_NL / IQ4_XS quantizer
(tests/python/test_quantize_iq.py), written to tests/data/gguf/ref/iq4_llamacpp.json.

The oracle is llama.cpp itself, through llama-cpp-python (its bundled libllama) in a second Python
environment (--llama-python, default /work/venvs/bench/bin/python); this script runs in an
environment with eli (PYTHONPATH=python, the built _eli module) and gguf-py. Steps:
  1. the source: tests/data/gguf/tiny_llama_mixed.gguf (2 layers, width 256, so IQ4_XS applies)
     dequantized to float32 by gguf-py (deterministic), written to a temporary F32 GGUF
     (write_f32_copy; the test builds the same file);
  2. llama.cpp (llama_model_quantize) quantizes that F32 file to IQ4_NL and IQ4_XS, once with
     pure = true (every matrix the target type: per-tensor reconstruction errors to compare eli's
     quantizer with) and once as the whole-model ftype (which tensor gets which type);
  3. eli (eli.quantize.gguf_requant.quantize_gguf) quantizes the same F32 file to iq4_nl / iq4_xs;
     llama.cpp loads eli's files and records the logits of a fixed prompt and 12 greedy tokens;
  4. the default model (SmolLM2-135M-Instruct, Q4_1, 576-wide rows): llama.cpp requantizes it to
     IQ4_NL / IQ4_XS (allow_requantize); recorded: its tensor types and the mean KL divergence of
     its next-token distributions from the source's on tests/data/smollm2_reference.json's
     paragraph, both files scored by eli (the bar eli's own iq4 files must meet); and the tensor
     types llama.cpp gives it for q3_k_m / q4_k_m / q5_k_m (eli's mix rules are checked on them).
Recorded: per type and tensor, llama.cpp's mean squared reconstruction error (pure) and tensor
type (ftype mix); per eli file its sha256 (the test checks it quantizes to the same bytes), the
prompt, llama.cpp's logits at every prompt position, its greedy continuation and the logits it
chose each greedy token from; the llama.cpp version. Usage: PYTHONPATH=python python scripts/make_iq4_references.py [--llama-python PY]
"""
import argparse
import hashlib
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import gguf

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "tests" / "data" / "gguf" / "tiny_llama_mixed.gguf"
OUT = ROOT / "tests" / "data" / "gguf" / "ref" / "iq4_llamacpp.json"
FTYPES = {"iq4_nl": 25, "iq4_xs": 30}  # LLAMA_FTYPE_MOSTLY_IQ4_NL / IQ4_XS
MIX_ONLY = {"q3_k_m": 12, "q4_k_m": 15, "q5_k_m": 17}  # SmolLM2: tensor types only
PROMPT = [1, 5, 9, 3, 17, 42, 8, 23]
N_GREEDY = 12

LLAMA_SIDE = r"""
import json, sys
import numpy as np
import llama_cpp

job = json.loads(sys.argv[1])
out = {"version": llama_cpp.__version__, "quantized": {}, "runs": {}}
for name, (src, dst, ftype, pure) in job["quantize"].items():
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype, p.pure, p.nthread, p.allow_requantize = ftype, pure, 2, True
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), p)
    if rc != 0:
        raise SystemExit(f"llama_model_quantize {name} failed: {rc}")
for name, path in job["run"].items():
    llm = llama_cpp.Llama(model_path=path, n_ctx=64, logits_all=True, verbose=False, n_threads=2)
    ids = job["prompt"]
    llm.eval(ids)
    logits = np.array(llm.scores[:len(ids)], dtype=np.float32)
    greedy, steps = [], []
    for _ in range(job["n_greedy"]):
        step = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        tok = int(np.argmax(step))
        greedy.append(tok)
        steps.append(step.tolist())
        llm.eval([tok])
    out["runs"][name] = {"logits": np.round(logits, 5).tolist(), "greedy": greedy,
                      "greedy_logits": np.round(np.array(steps), 5).tolist()}
print("@@JSON@@" + json.dumps(out))
"""


def write_f32_copy(src, dst) -> None:
    """dst: the GGUF `src` with every tensor dequantized to F32 by gguf-py, metadata copied (plus one
    placeholder BPE merge, without which llama.cpp refuses the fixture's gpt2 vocabulary)."""
    from eli.quantize.gguf_requant import _copy_metadata

    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), arch=bytes(r.fields["general.architecture"].parts[-1]).decode())
    _copy_metadata(gguf, w, r.fields, 0)  # LLAMA_FTYPE_ALL_F32
    if "tokenizer.ggml.merges" not in r.fields:  # llama.cpp's gpt2 vocabulary loader requires merges
        w.add_key_value("tokenizer.ggml.merges", [b"t o"], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.STRING)
    for t in r.tensors:
        x = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32)
        w.add_tensor(t.name, x.reshape([int(d) for d in reversed(t.shape)]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tensor_mse(src_path, q_path) -> dict:
    src = {t.name: t for t in gguf.GGUFReader(str(src_path)).tensors}
    out = {}
    for t in gguf.GGUFReader(str(q_path)).tensors:
        x = np.asarray(src[t.name].data, dtype=np.float32).reshape(-1)
        y = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(-1)
        out[t.name] = {"type": t.tensor_type.name, "mse": float(np.mean((x - y) ** 2.0, dtype=np.float64))}
    return out


def matrix_types(path) -> dict:
    """{name: GGML type name} of the 2-D tensors of a GGUF file (the norms stay F32 anyway)."""
    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors if len(t.shape) > 1}


def logprobs(path, ids) -> np.ndarray:
    """eli's next-token log-probabilities (CPU, float64) of `ids` under the model at `path`."""
    import eli

    llm = eli.LLM(str(path), device="cpu", n_threads=2, progress=False)
    try:
        x = np.asarray(llm.score(ids)).astype(np.float64)
    finally:
        llm.shutdown()
    x -= x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-python", default="/work/venvs/bench/bin/python")
    args = ap.parse_args()
    from eli import hub
    from eli.quantize.gguf_requant import quantize_gguf

    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        f32 = d / "tiny_f32.gguf"
        write_f32_copy(SRC, f32)
        job = {"quantize": {}, "run": {}, "prompt": PROMPT, "n_greedy": N_GREEDY}
        smollm2 = pathlib.Path(hub.resolve_model("smollm2"))
        for q, ft in MIX_ONLY.items():
            job["quantize"][f"{q}_smollm2"] = (str(smollm2), str(d / f"lc_smollm2_{q}.gguf"), ft, False)
        for q, ft in FTYPES.items():
            job["quantize"][f"{q}_smollm2"] = (str(smollm2), str(d / f"lc_smollm2_{q}.gguf"), ft, False)
            job["quantize"][f"{q}_pure"] = (str(f32), str(d / f"lc_{q}_pure.gguf"), ft, True)
            job["quantize"][f"{q}_mix"] = (str(f32), str(d / f"lc_{q}_mix.gguf"), ft, False)
            quantize_gguf(str(f32), str(d / f"eli_{q}.gguf"), q, progress=False)
            job["run"][q] = str(d / f"eli_{q}.gguf")
        res = subprocess.run([args.llama_python, "-c", LLAMA_SIDE, json.dumps(job)], capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"llama.cpp side failed:\n{res.stderr[-4000:]}")
        lc = json.loads(res.stdout.split("@@JSON@@", 1)[1])
        ref = {"source": "tests/data/gguf/tiny_llama_mixed.gguf dequantized to F32 by gguf-py",
               "llama_cpp_python": lc["version"], "prompt": PROMPT, "types": {}}
        ids = json.loads((ROOT / "tests" / "data" / "smollm2_reference.json").read_text())["paragraph"]["ids"]
        src_lp = logprobs(smollm2, ids)
        for q in MIX_ONLY:
            ref.setdefault("smollm2", {})[q] = {"llama_cpp_types": matrix_types(d / f"lc_smollm2_{q}.gguf")}
        for q in FTYPES:
            lc_file = d / f"lc_smollm2_{q}.gguf"
            lp = logprobs(lc_file, ids)
            ref.setdefault("smollm2", {})[q] = {
                "llama_cpp_types": matrix_types(lc_file),
                "llama_cpp_kl_scored_by_eli": float(np.mean(np.sum(np.exp(src_lp) * (src_lp - lp), axis=-1))),
            }
            pure = tensor_mse(f32, d / f"lc_{q}_pure.gguf")
            mix = tensor_mse(f32, d / f"lc_{q}_mix.gguf")
            ref["types"][q] = {
                "llama_cpp_pure_mse": {k: v["mse"] for k, v in pure.items() if v["type"] != "F32"},
                "llama_cpp_pure_types": {k: v["type"] for k, v in pure.items()},
                "llama_cpp_mix_types": {k: v["type"] for k, v in mix.items()},
                "eli_file_sha256": hashlib.sha256((d / f"eli_{q}.gguf").read_bytes()).hexdigest(),
                "llama_cpp_logits_on_eli_file": lc["runs"][q]["logits"],
                "llama_cpp_greedy_on_eli_file": lc["runs"][q]["greedy"],
                "llama_cpp_greedy_logits_on_eli_file": lc["runs"][q]["greedy_logits"],
            }
    OUT.write_text(json.dumps(ref, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
