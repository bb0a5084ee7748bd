#!/usr/bin/env python3
# bench/gpu/selftest_cpu.py: checks, on a CPU machine, that make_weights.py writes what the GPU
# benchmark assumes: the HF checkpoint and the GGUF of a tiny shape compute the same function in
# every engine. Not part of CI (it needs torch, transformers and llama-cpp-python).
#
# Checks (each prints PASS/FAIL; exit status 1 if any failed):
#   1. gguf-py reads the GGUF back: names, shapes, types (BF16 matrices, F32 norms, rope_freqs for
#      llama3 scaling), and un-permuting its Q/K gives the safetensors' Q/K bit for bit.
#   2. transformers (float32) and eli (CPU, float32) on the HF dir: identical greedy tokens, logits
#      within 1e-4 relative.
#   3. llama.cpp (llama-cpp-python, CPU) on the GGUF vs transformers: same greedy tokens (llama.cpp's
#      CPU path rounds activations to bf16 for bf16 weights, so logits agree to ~1e-2 only).
#   4. eli on the GGUF (tiny-plain: no RoPE scaling, which eli's GGUF loader does not read) vs eli
#      on the HF dir: identical greedy tokens (tests the Q/K permutation both ways).
#   5. the tokenizer: transformers' AutoTokenizer and eli's Tokenizer load it and agree.
#   usage: PYTHONPATH=python python3 bench/gpu/selftest_cpu.py [--keep DIR]
from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
import make_weights  # noqa: E402

FAILS: list[str] = []
N_GEN = 12


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)
    if not ok:
        FAILS.append(name)


def prompts(vocab: int) -> list[list[int]]:
    return [common.rand_prompt(100 + i, n, vocab) for i, n in enumerate((5, 17, 40))]


def hf_greedy(d: pathlib.Path, ps: list[list[int]]):
    import torch
    import transformers

    m = transformers.AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32)
    m.eval()
    toks, logits0 = [], []
    with torch.inference_mode():
        for p in ps:
            ids = torch.tensor([p])
            out = m.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=N_GEN, min_new_tokens=N_GEN,
                             do_sample=False, pad_token_id=0, output_logits=True, return_dict_in_generate=True)
            toks.append(out.sequences[0, len(p):].tolist())
            logits0.append(m(ids).logits[0].float().numpy())
    return toks, logits0


def eli_greedy(path: str, ps: list[list[int]], via_engine: bool = False):
    import eli
    from eli.sampling_params import SamplingParams

    sp = SamplingParams(max_tokens=N_GEN, temperature=0.0, ignore_eos=True)
    if via_engine:  # no tokenizer needed (a no_vocab GGUF)
        from eli import _eli

        from eli.engine_options import engine_config

        eng = _eli.Engine(engine_config(path, device="cpu", dtype="float32"))
        toks, scores = [], []
        for p in ps:
            rid = eng.add_request(p, sp.engine_params([]))
            got = []
            while eng.has_unfinished():
                for o in eng.step():
                    if o[0] == rid and o[1] >= 0:
                        got.append(o[1])
            toks.append(got)
        return toks, None
    llm = eli.LLM(path, device="cpu", dtype="float32", download=False, progress=False)
    outs = llm.generate(ps, sp)
    toks = [list(o.outputs[0].token_ids) if hasattr(o, "outputs") else list(o.token_ids) for o in outs]
    scores = [np.asarray(llm.score(p)) for p in ps]
    llm.shutdown()
    return toks, scores


def llama_cpp_greedy(gguf_path: str, ps: list[list[int]]):
    import llama_cpp as lc

    @lc.llama_log_callback
    def _quiet(level, text, user_data):  # noqa: ARG001
        pass

    lc.llama_log_set(_quiet, None)
    lc.llama_backend_init()
    mp = lc.llama_model_default_params()
    model = lc.llama_model_load_from_file(gguf_path.encode(), mp)
    if not model:
        raise RuntimeError("llama.cpp could not load the GGUF")
    n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(model))
    toks, logits0 = [], []
    for p in ps:
        cp = lc.llama_context_default_params()
        cp.n_ctx = 256
        cp.n_threads = cp.n_threads_batch = 2
        ctx = lc.llama_init_from_model(model, cp)

        def decode(ids: list[int]) -> np.ndarray:
            arr = (lc.llama_token * len(ids))(*ids)
            if lc.llama_decode(ctx, lc.llama_batch_get_one(arr, len(ids))) != 0:
                raise RuntimeError("llama_decode failed")
            ptr = lc.llama_get_logits_ith(ctx, -1)
            return np.ctypeslib.as_array(ptr, shape=(n_vocab,)).copy()

        last = decode(p)
        logits0.append(last)
        got = []
        for _ in range(N_GEN):
            t = int(np.argmax(last))
            got.append(t)
            last = decode([t])
        toks.append(got)
        lc.llama_free(ctx)
    lc.llama_model_free(model)
    return toks, logits0


def read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    """bf16 bit patterns (uint16) by the official reader (through torch: numpy has no bfloat16)."""
    import torch
    from safetensors import safe_open

    out = {}
    with safe_open(str(path), framework="pt") as f:
        for k in f.keys():
            t = f.get_tensor(k)
            assert t.dtype == torch.bfloat16, (k, t.dtype)
            out[k] = t.view(torch.int16).numpy().view(np.uint16)
    return out


def check_gguf(d: pathlib.Path, gguf_path: pathlib.Path, s: dict) -> None:
    gguf = make_weights.import_gguf(None)
    r = gguf.GGUFReader(str(gguf_path))
    st = read_safetensors(d / "model.safetensors")
    names = {t.name: t for t in r.tensors}
    expect = {make_weights.gguf_name(n) for n, _, _ in make_weights.tensor_list(s)}
    if s["rope_scaling"]:
        expect.add("rope_freqs.weight")
    check("gguf: tensor names", set(names) == expect, f"{len(names)} tensors")
    bad = []
    for hf, shp, kind in make_weights.tensor_list(s):
        t = names[make_weights.gguf_name(hf)]
        want_type = gguf.GGMLQuantizationType.F32 if kind == "norm" else gguf.GGMLQuantizationType.BF16
        if t.tensor_type != want_type or tuple(int(x) for x in reversed(t.shape)) != tuple(shp):
            bad.append(f"{hf}: {t.tensor_type.name} {list(t.shape)}")
            continue
        ref = st[hf]
        if kind == "norm":
            got = make_weights.to_bf16_bits(np.asarray(t.data, dtype=np.float32).reshape(shp))
        else:
            got = np.asarray(t.data).view(np.uint16).reshape(shp)
            if hf.endswith("q_proj.weight"):
                got = unpermute(got, s["heads"])
            elif hf.endswith("k_proj.weight"):
                got = unpermute(got, s["kv_heads"])
        if not np.array_equal(got, ref):
            bad.append(f"{hf}: values differ")
    check("gguf: types, shapes, values (Q/K un-permuted) equal the safetensors", not bad, "; ".join(bad[:4]))
    kv = {f.name: f for f in r.fields.values()}
    model = bytes(kv["tokenizer.ggml.model"].parts[-1]).decode()
    check("gguf: tokenizer.ggml.model = no_vocab, llama.vocab_size set",
          model == "no_vocab" and int(kv["llama.vocab_size"].parts[-1][0]) == s["vocab"])
    if s["rope_scaling"]:
        rf = np.asarray(names["rope_freqs.weight"].data, dtype=np.float32)
        check("gguf: rope_freqs factors", np.allclose(rf, make_weights.llama3_rope_factors(s)) and rf.max() > 1.0,
              f"min {rf.min():.3g} max {rf.max():.3g}")


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / max(np.linalg.norm(b.astype(np.float64)), 1e-30))


def agree(a: list[list[int]], b: list[list[int]]) -> tuple[bool, str]:
    same = sum(x == y for x, y in zip(a, b))
    first = [next((i for i, (u, v) in enumerate(zip(x, y)) if u != v), None) for x, y in zip(a, b)]
    return same == len(a), f"{same}/{len(a)} prompts identical; first mismatch at {first}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", default=None, help="write the weights here (default: a temp dir)")
    args = ap.parse_args()
    out = pathlib.Path(args.keep or tempfile.mkdtemp(prefix="eli-selftest-"))
    subprocess.run([sys.executable, str(HERE / "make_weights.py"), "--shape", "tiny", "--shape", "tiny-plain",
                    "--out", str(out), "--force"], check=True)
    for name in ("tiny", "tiny-plain"):
        s = common.SHAPES[name]
        d, g = out / name, out / f"{name}.gguf"
        print(f"== {name}", flush=True)
        check_gguf(d, g, s)
        ps = prompts(s["vocab"])
        ht, hl = hf_greedy(d, ps)
        et, el = eli_greedy(str(d), ps)
        ok, det = agree(ht, et)
        check(f"{name}: eli (HF dir) vs transformers greedy tokens", ok, det)
        r = max(rel(e, h) for e, h in zip(el, hl))
        check(f"{name}: eli vs transformers logits", r < 1e-4, f"max rel {r:.2e}")
        margins = [float(np.sort(h[-1])[-1] - np.sort(h[-1])[-2]) for h in hl]
        print(f"      (transformers top-1 margins at the last prompt position: {[round(m, 3) for m in margins]})")
        lt, ll = llama_cpp_greedy(str(g), ps)
        r = max(rel(l, h[-1]) for l, h in zip(ll, hl))
        # llama.cpp's CPU path rounds activations to bf16: near-ties may flip a late greedy token.
        n_same = sum(u == v for x, y in zip(ht, lt) for u, v in zip(x, y))
        ok, det = agree(ht, lt)
        check(f"{name}: llama.cpp (GGUF) vs transformers greedy tokens (>= 90% equal)",
              n_same >= 0.9 * N_GEN * len(ps), f"{det}; {n_same}/{N_GEN * len(ps)} tokens equal")
        check(f"{name}: llama.cpp vs transformers prompt logits (bf16 activations)", r < 3e-2, f"max rel {r:.2e}")
        if s["rope_scaling"]:
            # Sensitivity: the same model without the RoPE scaling must be far from both, or the
            # check above would not see a missing rope_freqs.
            import json as _json
            import shutil as _sh
            alt = out / f"{name}-noscale"
            _sh.rmtree(alt, ignore_errors=True)
            _sh.copytree(d, alt)
            cfg = _json.loads((alt / "config.json").read_text())
            cfg.pop("rope_scaling")
            (alt / "config.json").write_text(_json.dumps(cfg))
            _, nl = hf_greedy(alt, ps)
            r_alt = max(rel(l, h[-1]) for l, h in zip(ll, nl))
            check(f"{name}: RoPE scaling matters here (llama.cpp vs unscaled transformers far apart)",
                  r_alt > 5 * r, f"max rel {r_alt:.2e} vs {r:.2e}")
        if not s["rope_scaling"]:
            gt, _ = eli_greedy(str(g), ps, via_engine=True)
            ok, det = agree(et, gt)
            check(f"{name}: eli (GGUF) vs eli (HF dir) greedy tokens", ok, det)
    # Tokenizer: transformers and eli.
    try:
        import transformers
        from eli.tokenizer import Tokenizer

        d = out / "tiny"
        ht = transformers.AutoTokenizer.from_pretrained(str(d))
        et = Tokenizer.from_hf_dir(d, n_embedding_rows=common.SHAPES["tiny"]["vocab"])
        text = "Hello, wörld! 1234"
        a, b = ht.encode(text), et.encode(text)
        check("tokenizer: transformers and eli encode alike, BOS first, round trip", a == b and a[0] == 504
              and et.decode(b, skip_special_tokens=True) == text, f"{a[:6]}... vs {b[:6]}...")
    except Exception as e:  # noqa: BLE001
        check("tokenizer", False, f"{type(e).__name__}: {e}")
    print(f"\n{len(FAILS)} failed: {FAILS}" if FAILS else "\nall passed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
