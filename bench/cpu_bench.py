#!/usr/bin/env python3
# bench/cpu_bench.py: CPU throughput of eli against llama.cpp on the default model
# (SmolLM2-135M-Instruct, Q4_1 GGUF), following the `llama-bench -p 128 -n 64` protocol.
#
# What is measured (batch 1, same thread count for every engine):
#   prefill tok/s = prompt_len / time of one forward over a random prompt_len-token prompt
#                   (empty KV cache; a fresh seeded random prompt per repetition, so eli's prefix
#                   cache never hits);
#   decode tok/s  = gen_len / time of gen_len single-token steps after a 1-token prompt (the first
#                   forward, over the 1-token prompt, is excluded).
# Each configuration runs in its own subprocess (so one engine's idle worker threads never compete
# with another's), does one warm-up prefill + decode, then `--reps` repetitions; the median is
# reported. With `--rounds R` the whole set of subprocesses is run R times, interleaved, and the
# median is taken over all R * reps samples (fairer when the machine's load drifts).
#
# Engines and model files:
#   eli f32 / eli bf16: eli.LLM(<gguf>, dtype=...) with the GGUF blocks run natively (the
#     "gguf-native" method: x quantized per block to 8 bits, integer dot products; dtype is then
#     the dtype of the dense remainder: the embedding and the tied lm_head).
#   eli dq-f32 / dq-bf16: the same file with ELI_GGUF_NATIVE=0: every GGUF matrix dequantized at
#     load into dtype (the fallback; eli's only path before native kernels).
#   --formats q4_1,q4_k_m,q8_0: the Q4_1 source file and requantized copies (llama.cpp's
#     llama_model_quantize with allow_requantize, into --cache-dir; needs llama-cpp-python); every
#     eli and llama.cpp row runs on each format's file, the table shows the format in `file`.
#     Timed at the engine boundary: the synchronous compiled engine (_eli.Engine add_request/step,
#     stepped from this process, as llama-bench times llama_decode); each step also samples (greedy)
#     a token, which llama-bench does not.
#   eli-api f32 / bf16: the same through the public Python API (LLM.stream with its own timers:
#     prefill = time to the first token, decode = the rest), i.e. including the AsyncEngine step
#     thread hand-off, the Python request tracker and the incremental detokenizer; the gap to the
#     "eli" rows is that overhead.
#   llama.cpp Q4_1 / F32 / BF16 / F16: llama-cpp-python's low-level bindings (llama_decode on a
#     llama_batch_get_one batch, llama_synchronize after each call, KV memory cleared before each
#     repetition), the same calls llama-bench makes, with its context defaults (n_batch 2048,
#     n_ubatch 512, flash attention "auto"), n_ctx 512. The F32/BF16/F16 files are made from the
#     Q4_1 GGUF with llama_model_quantize(allow_requantize) into --cache-dir, so both engines run
#     the very same (dequantized Q4_1) weights. We chose the low-level API over Llama.eval because
#     Llama.eval adds per-call Python work (numpy logits copies, batch refills) that llama-bench
#     does not have.
#
# Output: a table (printed last) and JSON in bench/results/<date>_<cpu>_cpu_smollm2.json.
# Usage: PYTHONPATH=python python bench/cpu_bench.py [--threads N] [--reps 5] [--rounds 1]
#        [--engines eli,eli-api,llama] [--profile]   (see bench/README.md)
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
ELI_DTYPES = {"f32": "float32", "bf16": "bfloat16", "dq-f32": "float32", "dq-bf16": "bfloat16"}
LLAMA_DTYPES = ["Q4_1", "F32", "BF16", "F16"]
# Requantized copies of the Q4_1 source (llama.cpp ftype names) for --formats.
LLAMA_FTYPES = {"F32": "LLAMA_FTYPE_ALL_F32", "F16": "LLAMA_FTYPE_MOSTLY_F16", "BF16": "LLAMA_FTYPE_MOSTLY_BF16",
                "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0"}


# ---- helpers ----------------------------------------------------------------------------------
def random_prompt(seed: int, n: int, vocab: int) -> list[int]:
    import numpy as np

    return [int(t) for t in np.random.default_rng(seed).integers(0, vocab, size=n)]


def cpu_name() -> str:
    name = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} cores)"


def cpu_short_name() -> str:
    name = cpu_name().split(" (")[0].lower()
    name = re.sub(r"\((r|tm)\)|cpu|processor|@.*$", " ", name)
    name = re.sub(r"[^a-z0-9]+", "-", name).strip("-")
    return f"{name or 'cpu'}-{os.cpu_count()}c"


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def eli_build() -> str:
    """The compiled module eli imports (resolved) and its mtime: the build may differ from `commit`."""
    so = next((ROOT / "python" / "eli").glob("_eli*.so"), None)
    if so is None:
        return "unknown"
    real = so.resolve()
    return f"{real} ({datetime.datetime.fromtimestamp(real.stat().st_mtime).isoformat(timespec='seconds')})"


def load_avg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return -1.0


def cpu_busy(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy (any process) over `seconds`, from /proc/stat; -1 if unknown."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    try:
        t0, i0 = snap()
        time.sleep(seconds)
        t1, i1 = snap()
    except OSError:
        return -1.0
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_idle(max_wait: float, threshold: float) -> float:
    """Waits (up to max_wait s) until the machine is idle (busy < threshold); returns the last busy."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy(2.0)
    return busy


# ---- eli --------------------------------------------------------------------------------------
def bench_eli(cfg: dict) -> dict:
    if cfg["dtype"].startswith("dq-"):
        os.environ["ELI_GGUF_NATIVE"] = "0"  # read at load: every GGUF matrix dequantized
    import eli
    from eli.sampling_params import SamplingParams

    if cfg["engine"] == "eli":
        # The synchronous compiled engine, stepped from here: the boundary that llama-bench's
        # llama_decode corresponds to (no engine thread, no Python request tracking).
        from eli import _eli

        from eli.engine_options import engine_config

        engine = _eli.Engine(engine_config(cfg["model"], device="cpu", dtype=ELI_DTYPES[cfg["dtype"]],
                                           n_threads=cfg["threads"]))
        info = engine.info()
    else:
        llm = eli.LLM(cfg["model"], dtype=ELI_DTYPES[cfg["dtype"]], n_threads=cfg["threads"], download=False,
                      progress=False)
        info = llm.info
    vocab = info["spec"]["vocab_size"]
    p_len, g_len = cfg["prompt_len"], cfg["gen_len"]

    def run_engine(ids: list[int], max_tokens: int) -> list[float]:
        """Adds one request and steps it to the end; returns the wall time of every step."""
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True).engine_params([])
        rid = engine.add_request(ids, params)
        times, n_tok = [], 0
        while engine.has_unfinished():
            t0 = time.perf_counter()
            outs = engine.step()
            times.append(time.perf_counter() - t0)
            n_tok += sum(1 for o in outs if o[0] == rid and o[1] >= 0)
        if n_tok != max_tokens or len(times) != max_tokens:
            raise RuntimeError(f"eli: expected {max_tokens} tokens in as many steps, got {n_tok} in {len(times)}")
        return times

    def prefill(seed: int) -> float:
        return p_len / run_engine(random_prompt(seed, p_len, vocab), 1)[0]

    def decode(seed: int) -> float:
        return g_len / sum(run_engine(random_prompt(seed, 1, vocab), g_len + 1)[1:])

    def api(seed: int, n_prompt: int, n_gen: int) -> dict:
        sp = SamplingParams(max_tokens=n_gen, temperature=0.0, ignore_eos=True)
        for _ in llm.stream(random_prompt(seed, n_prompt, vocab), sp):
            pass
        return llm.last_stats

    def api_prefill(seed: int) -> float:
        return p_len / api(seed, p_len, 1)["prefill_seconds"]

    def api_decode(seed: int) -> float:
        s = api(seed, 1, g_len + 1)
        return (s["generated_tokens"] - 1) / s["decode_seconds"]

    if cfg["engine"] == "eli-api":
        prefill, decode = api_prefill, api_decode
    return run_protocol(cfg, prefill, decode, info={"weight_dtype": info["weight_dtype"],
                                                     "num_threads": info["num_threads"]})


def profile_eli_decode(model: str, dtype: str, threads: int, gen_len: int) -> None:
    """cProfile of one LLM.generate of gen_len tokens after a 1-token prompt (Python-side cost)."""
    import cProfile
    import pstats

    import eli
    from eli.sampling_params import SamplingParams

    llm = eli.LLM(model, dtype=ELI_DTYPES[dtype], n_threads=threads, download=False, progress=False)
    sp = SamplingParams(max_tokens=gen_len, temperature=0.0, ignore_eos=True)
    llm.generate([random_prompt(1, 1, 1000)], sp)  # warm-up
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    llm.generate([random_prompt(2, 1, 1000)], sp)
    prof.disable()
    wall = time.perf_counter() - t0
    print(f"\n== cProfile: eli {dtype}, LLM.generate of {gen_len} tokens, {threads} threads, {wall:.3f} s wall")
    pstats.Stats(prof).sort_stats("tottime").print_stats(15)


# ---- llama.cpp --------------------------------------------------------------------------------
_QUIET_LOG = None


def _llama_quiet(lc) -> None:
    global _QUIET_LOG

    @lc.llama_log_callback
    def _cb(level, text, user_data):  # noqa: ARG001
        pass

    _QUIET_LOG = _cb  # keep the ctypes callback alive
    lc.llama_log_set(_QUIET_LOG, None)


def llama_model_file(src: str, dtype: str, cache_dir: pathlib.Path) -> str:
    """The GGUF for `dtype`: the source for Q4_1, else a requantized copy in cache_dir (made once)."""
    if dtype == "Q4_1":
        return src
    import llama_cpp as lc

    cache_dir.mkdir(parents=True, exist_ok=True)
    out = cache_dir / (pathlib.Path(src).stem.replace("Q4_1", "") + f"from-Q4_1.{dtype}.gguf")
    if out.exists():
        return str(out)
    ftype = getattr(lc, LLAMA_FTYPES[dtype])
    params = lc.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    tmp = out.with_suffix(".tmp")
    _llama_quiet(lc)
    rc = lc.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize to {dtype} failed ({rc})")
    os.replace(tmp, out)
    return str(out)


def llama_open(lc, path: str, threads: int, n_ctx: int, n_batch: int, n_ubatch: int = 512,
               extra_bufts: bool = True):
    """(model, context) of llama-cpp-python's low-level API, quiet, mmap'd, `threads` for both
    decode and batch. Extra buffer types = ggml's AMX and repacked-weight paths (on by default, as in
    llama-bench)."""
    _llama_quiet(lc)
    lc.llama_backend_init()
    mparams = lc.llama_model_default_params()
    mparams.use_mmap = True
    mparams.use_extra_bufts = extra_bufts
    model = lc.llama_model_load_from_file(path.encode(), mparams)
    if not model:
        raise RuntimeError(f"llama.cpp could not load {path}")
    cparams = lc.llama_context_default_params()
    cparams.n_ctx = n_ctx
    cparams.n_batch = n_batch
    cparams.n_ubatch = n_ubatch
    cparams.n_threads = threads
    cparams.n_threads_batch = threads
    cparams.no_perf = True
    ctx = lc.llama_init_from_model(model, cparams)
    if not ctx:
        raise RuntimeError("llama.cpp: could not create a context")
    return model, ctx


def bench_llama(cfg: dict) -> dict:
    import llama_cpp as lc

    extra_bufts = cfg.get("extra_bufts", True)
    model, ctx = llama_open(lc, cfg["model"], cfg["threads"], n_ctx=512, n_batch=2048, extra_bufts=extra_bufts)
    lc.llama_set_n_threads(ctx, cfg["threads"], cfg["threads"])
    vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(model))
    p_len, g_len = cfg["prompt_len"], cfg["gen_len"]

    def clear() -> None:
        lc.llama_memory_clear(lc.llama_get_memory(ctx), True)

    def decode(tokens: list[int]) -> None:
        arr = (lc.llama_token * len(tokens))(*tokens)
        rc = lc.llama_decode(ctx, lc.llama_batch_get_one(arr, len(tokens)))
        if rc != 0:
            raise RuntimeError(f"llama_decode failed ({rc})")
        lc.llama_synchronize(ctx)

    def prefill_fn(seed: int) -> float:
        clear()
        ids = random_prompt(seed, p_len, vocab)
        t0 = time.perf_counter()
        decode(ids)
        return p_len / (time.perf_counter() - t0)

    def decode_fn(seed: int) -> float:
        clear()
        ids = random_prompt(seed, g_len + 1, vocab)
        decode(ids[:1])  # the 1-token prompt: not timed (as eli's first step)
        t0 = time.perf_counter()
        for t in ids[1:]:
            decode([t])
        return g_len / (time.perf_counter() - t0)

    raw = lc.llama_print_system_info()  # bytes (c_char_p)
    sysinfo = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    res = run_protocol(cfg, prefill_fn, decode_fn, info={"llama_cpp_version": lc.__version__,
                                                         "system_info": sysinfo.strip(),
                                                         "extra_bufts": extra_bufts})
    lc.llama_free(ctx)
    lc.llama_model_free(model)
    return res


# ---- protocol and driver -------------------------------------------------------------------------
def run_protocol(cfg: dict, prefill, decode, info: dict) -> dict:
    seed = cfg["seed"] * 1000 + cfg["round"] * 100
    for _ in range(cfg["warmup"]):
        prefill(seed + 99)
        decode(seed + 98)
    pre = [prefill(seed + i) for i in range(cfg["reps"])]
    dec = [decode(seed + 50 + i) for i in range(cfg["reps"])]
    return {"prefill": pre, "decode": dec, "info": info}


def worker_main(cfg: dict) -> None:
    res = bench_llama(cfg) if cfg["engine"] == "llama.cpp" else bench_eli(cfg)
    print("RESULT " + json.dumps(res), flush=True)


def run_worker(cfg: dict) -> dict:
    try:
        return _run_worker(cfg)
    except WorkerCrash as e:
        if cfg["engine"] != "llama.cpp" or e.returncode != -signal.SIGILL or not cfg.get("extra_bufts", True):
            raise
    # ggml's AMX path (an "extra buffer type", used for Q4_1 on AMX CPUs) can die with SIGILL on
    # tileloadd where the tile state is not usable (seen in VMs): rerun without extra buffer types.
    print(f"  llama.cpp {cfg['dtype']}: SIGILL with extra buffer types (AMX); retrying without", file=sys.stderr)
    return _run_worker({**cfg, "extra_bufts": False})


class WorkerCrash(RuntimeError):
    def __init__(self, msg: str, returncode: int):
        super().__init__(msg)
        self.returncode = returncode


def _run_worker(cfg: dict) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT / "python"), env.get("PYTHONPATH", "")] if p)
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(cfg)], capture_output=True, text=True,
                          env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise WorkerCrash(f"worker {cfg['engine']} {cfg['dtype']} failed (rc {proc.returncode}):\n"
                      f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}", proc.returncode)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="smollm2", help="eli model name or path of the Q4_1 GGUF")
    ap.add_argument("--engines", default="eli,eli-api,llama.cpp")
    ap.add_argument("--llama-dtypes", default=",".join(LLAMA_DTYPES),
                    help="llama.cpp rows on the Q4_1 source (Q4_1) or its requantized copies (F32, BF16, F16)")
    ap.add_argument("--eli-dtypes", default="f32,bf16,dq-f32,dq-bf16",
                    help="eli rows: f32/bf16 native GGUF kernels, dq-*: dequantized at load (ELI_GGUF_NATIVE=0)")
    ap.add_argument("--formats", default="q4_1",
                    help="GGUF files: q4_1 (the source) and requantized copies q4_k_m, q8_0 (llama-cpp-python); "
                         "eli and llama.cpp (in that format) run on each")
    ap.add_argument("--cache-dir", default=str(pathlib.Path.home() / ".cache" / "eli" / "bench"))
    ap.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                    help="before each configuration wait up to S seconds for the CPUs to be idle (busy < 15%%)")
    ap.add_argument("--no-json", action="store_true")
    ap.add_argument("--profile", action="store_true", help="also cProfile a gen-len eli decode (f32)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main(json.loads(args.worker))
        return 0

    sys.path.insert(0, str(ROOT / "python"))
    from eli import hub

    src = hub.resolve_model(args.model)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    configs = []
    eli_dtypes = [d.strip() for d in args.eli_dtypes.split(",") if d.strip()]
    for fmt in [f.strip().upper() for f in args.formats.split(",") if f.strip()]:
        path = llama_model_file(src, fmt, pathlib.Path(args.cache_dir))
        for eng in ("eli", "eli-api"):
            if eng in engines:
                configs += [{"engine": eng, "dtype": d, "model": path, "format": fmt.lower()} for d in eli_dtypes]
        if ("llama.cpp" in engines or "llama" in engines) and fmt != "Q4_1":
            configs.append({"engine": "llama.cpp", "dtype": fmt, "model": path, "format": fmt.lower()})
    if "llama.cpp" in engines or "llama" in engines:
        for d in [d.strip() for d in args.llama_dtypes.split(",") if d.strip()]:
            configs.append({"engine": "llama.cpp", "dtype": d, "format": "q4_1" if d == "Q4_1" else d.lower(),
                            "model": llama_model_file(src, d, pathlib.Path(args.cache_dir))})
    common = {"threads": args.threads, "prompt_len": args.prompt_len, "gen_len": args.gen_len,
              "reps": args.reps, "warmup": args.warmup, "seed": args.seed}

    load_before = load_avg()
    samples: dict[tuple, dict] = {}
    infos: dict[tuple, dict] = {}
    busy_before: dict[tuple, list] = {}
    for rnd in range(args.rounds):
        for c in configs:
            key = (c["engine"], c["dtype"], c["format"])
            busy = wait_idle(args.wait_idle, 0.15) if args.wait_idle > 0 else cpu_busy()
            busy_before.setdefault(key, []).append(round(busy, 3))
            print(f"[round {rnd + 1}/{args.rounds}] {key[0]} {key[1]} {key[2]} (load {load_avg():.2f}, cpu busy "
                  f"{100 * busy:.0f}%) ...", file=sys.stderr, flush=True)
            r = run_worker({**c, **common, "round": rnd})
            s = samples.setdefault(key, {"prefill": [], "decode": []})
            s["prefill"] += r["prefill"]
            s["decode"] += r["decode"]
            infos[key] = r["info"]
    load_after = load_avg()

    if args.profile:
        profile_eli_decode(src, "f32", args.threads, args.gen_len)

    rows = []
    for c in configs:
        key = (c["engine"], c["dtype"], c["format"])
        rows.append({"engine": key[0], "dtype": key[1], "format": key[2], "model": pathlib.Path(c["model"]).name,
                     "prefill": statistics.median(samples[key]["prefill"]),
                     "decode": statistics.median(samples[key]["decode"]),
                     "prefill_spread": _spread(samples[key]["prefill"]),
                     "decode_spread": _spread(samples[key]["decode"])})
    by = {(r["engine"], r["dtype"], r["format"]): r for r in rows}
    lcpp = dict(next((v for k, v in infos.items() if k[0] == "llama.cpp"), {}))
    lcpp.pop("extra_bufts", None)
    if lcpp:
        lcpp["extra_bufts_by_dtype"] = {k[1]: v.get("extra_bufts") for k, v in infos.items() if k[0] == "llama.cpp"}
    for r in rows:
        r["note"] = "*" if infos[(r["engine"], r["dtype"], r["format"])].get("extra_bufts") is False else ""
    print(f"\ncpu: {cpu_name()}; threads {args.threads}; load avg before/after {load_before:.2f}/{load_after:.2f}")
    if lcpp:
        print(f"llama-cpp-python {lcpp.get('llama_cpp_version')}: {lcpp.get('system_info', '')[:300]}")
    print_table(rows, by, args)

    if not args.no_json:
        results = []
        for r in rows:
            for metric, field in (("prefill_tok_s", "prefill"), ("decode_tok_s", "decode")):
                key = (r["engine"], r["dtype"], r["format"])
                mode = "llama.cpp" if r["engine"] == "llama.cpp" else (
                    "dequantized at load" if r["dtype"].startswith("dq-") else "native gguf kernels")
                results.append({"engine": r["engine"], "model": r["model"], "dtype": r["format"],
                                "engine_dtype": r["dtype"], "mode": mode, "batch": 1,
                                "prompt_len": args.prompt_len if field == "prefill" else 1,
                                "gen_len": 0 if field == "prefill" else args.gen_len, "metric": metric,
                                "value": round(r[field], 2), "unit": "tok/s",
                                "samples": [round(x, 2) for x in samples[key][field]],
                                "cpu_busy_before": busy_before[key]})
        date = datetime.datetime.now().strftime("%Y-%m-%d")
        doc = {"cpu": cpu_name(), "commit": git_commit(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
               "threads": args.threads, "protocol": f"llama-bench -p {args.prompt_len} -n {args.gen_len}; median of "
               f"{args.reps * args.rounds} after {args.warmup} warm-up", "load_avg_before_after": [load_before, load_after],
               "eli_build": eli_build(), "llama_cpp": lcpp, "results": results}
        out_dir = pathlib.Path(args.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{date}_{cpu_short_name()}_cpu_smollm2.json"
        path.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"\nwrote {path}", file=sys.stderr)
    return 0


def _spread(xs: list[float]) -> float:
    """Relative half-range of the samples (0.05 = +-5%)."""
    m = statistics.median(xs)
    return (max(xs) - min(xs)) / (2 * m) if m else 0.0


def print_table(rows: list[dict], by: dict, args) -> None:
    print(f"\nbatch 1, prefill = {args.prompt_len}-token prompt, decode = {args.gen_len} tokens; "
          f"median of {args.reps * args.rounds} (+-half-range)")
    hdr = f"{'engine':<10} {'dtype':<7} {'model file':<48} {'thr':>3} {'prefill tok/s':>18} {'decode tok/s':>16}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['engine']:<10} {r['dtype'] + r['note']:<7} {r['model'][:48]:<48} {args.threads:>3} "
              f"{r['prefill']:>10.1f} +-{100 * r['prefill_spread']:>3.0f}% {r['decode']:>8.1f} +-{100 * r['decode_spread']:>3.0f}%")
    if any(r["note"] for r in rows):
        print("* llama.cpp without extra buffer types (AMX/repack): the default path died with SIGILL here")
    lines = []
    # Same GGUF file: eli's best native row and its best dequantized row against llama.cpp on it.
    for (eng, dt, fmt), q in by.items():
        if eng != "llama.cpp" or dt.lower() != fmt:
            continue
        for label, pick in (("native", lambda r: not r["dtype"].startswith("dq-")),
                            ("dequant", lambda r: r["dtype"].startswith("dq-"))):
            elis = [r for k, r in by.items() if k[0] == "eli" and k[2] == fmt and pick(r)]
            if not elis:
                continue
            bp = max(elis, key=lambda r: r["prefill"])
            bd = max(elis, key=lambda r: r["decode"])
            lines.append(f"  {fmt}: eli {label:<7} / llama.cpp: prefill {bp['prefill'] / q['prefill']:.2f}x "
                         f"(eli {bp['dtype']}), decode {bd['decode'] / q['decode']:.2f}x (eli {bd['dtype']})")
    if lines:
        print("ratios (eli / llama.cpp, >1 means eli is faster):")
        print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
