#!/usr/bin/env python3
# bench/gpu/run_all.py: the step runner behind `device_bench.sh run`: runs the selected benchmark
# steps, each in its own process (its own process group, killed at its timeout), in an order that
# starts whatever is ready (its set-up jobs done: eli installed, llama.cpp built, weights written),
# until a deadline inside the device call's 10 minutes; then collects every result written on this
# machine so far (earlier calls included) into one JSON + a tar.gz of the logs under $OUT, and
# prints the table last (report.py).
#
# Invariants:
# - A failing or hanging step never stops the others: its status (failed / timeout / skipped and
#   why) is recorded and shown. Steps that succeeded in an earlier call are not run again (unless
#   ELI_BENCH_RERUN=1); failed ones neither (unless ELI_BENCH_RETRY_FAILED=1); timed-out and
#   not-yet-run ones are.
# - A step starts only if its estimated time fits before the deadline; its timeout never passes it.
# - GPU steps start only when the GPU's used memory has dropped (the previous engine has exited).
# - Timed steps start only once the background builds (llama.cpp, eli) are over: a build on every
#   core would slow the engines' host threads (HF most) and bias the comparison. The ceilings
#   (GPU-only) run at once.
#   usage: run_all.py [all | ceilings decode prefill coldstart throughput serving eli-engine ...]
from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
import report  # noqa: E402

W = common.WORK
ROOT = common.ROOT
PY = sys.executable
ENV = os.environ
SMALL = ENV.get("ELI_BENCH_SMALL") == "1"
DEVICE = ENV.get("ELI_BENCH_DEVICE", "cuda")
DTYPE = ENV.get("ELI_BENCH_DTYPE", "bfloat16")
GROUPS = ["ceilings", "decode", "prefill", "coldstart", "throughput", "serving", "eli-engine"]
RESERVE_S = 25.0  # kept for collecting and printing
# Steps' time estimates are conservative (cold machines, first builds of cuBLASLt plans); on a call
# with little device time left, ELI_BENCH_EST_SCALE < 1 lets steps start that would likely fit.
EST_SCALE = float(ENV.get("ELI_BENCH_EST_SCALE", "1") or "1")


def shapes_env(key: str, default: str) -> list[str]:
    return [common.SHORT[common.shape_name(s)] for s in ENV.get(key, default).split(",") if s.strip()]


SHAPES = shapes_env("ELI_BENCH_SHAPES", "1b,8b")
TP_SHAPES = shapes_env("ELI_BENCH_TP_SHAPES", "8b")
SERVE_SHAPES = shapes_env("ELI_BENCH_SERVE_SHAPES", "8b")
ENGINES = {e.strip() for e in ENV.get("ELI_BENCH_ENGINES", "eli,hf,llama").split(",") if e.strip()}
LLAMA_BIN = pathlib.Path(ENV.get("ELI_BENCH_LLAMA_BIN") or (W / "llama-build" / "bin"))
SITE = ENV.get("ELI_BENCH_SITE", "/tmp/site")  # where the carried serve wheels are installed


def hf_dir(short: str) -> str:
    return str(W / "weights" / common.shape_name(short))


def gguf(short: str) -> str:
    return str(W / "weights" / f"{common.shape_name(short)}.gguf")


def result_path(step: str) -> pathlib.Path:
    return W / "results" / f"{step}.json"


# ---- steps -----------------------------------------------------------------------------------
@dataclasses.dataclass
class Step:
    name: str
    group: str
    deps: list[str]
    cmd: list[str]
    timeout_s: float
    est_s: float
    gpu: bool = True
    extra_env: dict = dataclasses.field(default_factory=dict)


def build_steps(groups: set[str]) -> list[Step]:
    S: list[Step] = []
    small = SMALL
    dec_p = ["--contexts", "16,64", "--decode-tokens", "16"] if small else ["--contexts", "128,4096", "--decode-tokens", "128"]
    pre_p = ["--prefill-lens", "32,64"] if small else ["--prefill-lens", "512,2048"]
    if "ceilings" in groups and DEVICE.startswith("cuda"):
        S.append(Step("ceilings", "ceilings", [], [PY, str(HERE / "bench_ceilings.py"), "--out", str(result_path("ceilings"))],
                      120, 40))
    what = ",".join(g for g in ("decode", "prefill") if g in groups)
    sfx = "" if what == "decode,prefill" else f"_{what}"  # a partial run keeps its own result file
    if what:
        # eli and llama.cpp on every shape first (the comparison that matters most), HF last.
        if "eli" in ENGINES:
            for s in SHAPES:
                n = f"eli_{s}{sfx}"
                S.append(Step(n, "decode", ["eli_install", f"weights_{s}"],
                              [PY, str(HERE / "bench_eli.py"), "--model", hf_dir(s), "--shape", s, "--what", what,
                               "--device", DEVICE, "--dtype", DTYPE, "--reps", "5", "--budget-s", "100" if s == "8b" else "60",
                               *(["--max-model-len", "1024"] if small else []),
                               *dec_p, *pre_p, "--out", str(result_path(n))], 300, 110 if s == "8b" else 60))
        if "llama" in ENGINES:
            lw = ["--depths", "0,16,64", "--decode-tokens", "16"] if small else ["--depths", "0,128,4096"]
            for s in SHAPES:
                n = f"llama.cpp_{s}{sfx}"
                S.append(Step(n, "decode", ["llama_build", f"weights_{s}"],
                              [PY, str(HERE / "bench_llama_cpp.py"), "--bin", str(LLAMA_BIN), "--gguf", gguf(s),
                               "--shape", s, "--what", what, "--reps", "5", *lw, *pre_p,
                               "--log", str(W / "logs" / f"{n}.tool.log"), "--out", str(result_path(n))],
                              300, 100 if s == "8b" else 50))
        if "hf" in ENGINES:
            hd = ["--contexts", "16,64", "--decode-tokens", "8"] if small else ["--contexts", "128,4096", "--decode-tokens", "64"]
            variants = [("sdpa", "dynamic"), ("eager", "dynamic")]
            if ENV.get("ELI_BENCH_HF_STATIC") == "1":  # static KV cache (no torch.compile)
                variants.append(("sdpa", "static"))
            for s in SHAPES:
                for attn, cache in variants:
                    n = f"hf-{attn}{'-static' if cache == 'static' else ''}_{s}{sfx}"
                    S.append(Step(n, "decode", [f"weights_{s}"],
                                  [PY, str(HERE / "bench_hf.py"), "--model", hf_dir(s), "--shape", s, "--attn", attn,
                                   "--cache", cache, "--what", what, "--device", DEVICE, "--reps", "3",
                                   "--min-reps", "2", "--budget-s", "45", *hd, *pre_p, "--out", str(result_path(n))],
                                  240, 90 if s == "8b" else 60))
    if "eli-engine" in groups and "eli" in ENGINES:
        for s in SHAPES:
            S.append(Step(f"eli-engine_{s}", "eli-engine", ["eli_install", f"weights_{s}"],
                          [PY, str(HERE / "bench_eli.py"), "--api", "engine", "--model", hf_dir(s), "--shape", s,
                           "--what", "decode,prefill", "--device", DEVICE, "--dtype", DTYPE, "--reps", "5",
                           "--budget-s", "60", *(["--max-model-len", "1024"] if small else []), *dec_p, *pre_p, "--out", str(result_path(f"eli-engine_{s}"))],
                          240, 90 if s == "8b" else 50))
    if "coldstart" in groups:
        for s in SHAPES:
            cli = ENV.get("ELI_BENCH_COLDSTART_CLI") == "1"  # `python -m eli generate` too (a little slower than -c)
            eng = [e for e, k in (("eli", "eli"), ("eli-cli", "eli" if cli else "-"), ("hf", "hf"), ("llama.cpp", "llama"))
                   if k in ENGINES]
            deps = [f"weights_{s}"] + (["eli_install"] if "eli" in ENGINES else [])
            deps += ["llama_build"] if "llama" in ENGINES else []
            S.append(Step(f"coldstart_{s}", "coldstart", deps,
                          [PY, str(HERE / "bench_coldstart.py"), "--shape", s, "--hf-dir", hf_dir(s), "--gguf", gguf(s),
                           "--bin", str(LLAMA_BIN), "--engines", ",".join(eng), "--device", DEVICE,
                           "--reps", "1" if small else ("3" if s == "8b" else "2"),
                           "--out", str(result_path(f"coldstart_{s}"))], 420, 200 if s == "8b" else 100))
    if "throughput" in groups:
        for s in TP_SHAPES:
            for kind in ("fixed", "sharegpt"):
                ds = str(W / "results" / f"dataset_{kind}_{s}.json")
                if "eli" in ENGINES:
                    S.append(Step(f"tp_eli_{kind}_{s}", "throughput", ["eli_install", f"weights_{s}", f"dataset_{kind}_{s}"],
                                  [PY, str(HERE / "bench_throughput.py"), "eli", "--model", hf_dir(s), "--shape", s,
                                   "--dataset", ds, "--device", DEVICE, "--dtype", DTYPE,
                                   *(["--max-num-seqs", "16", "--max-model-len", "2048"] if small else []),
                                   "--out", str(result_path(f"tp_eli_{kind}_{s}"))], 360, 120))
            if "llama" in ENGINES:
                lb = ["--npp", "32", "--ntg", "16", "--npl", "1,4"] if small else []
                S.append(Step(f"tp_llama.cpp_{s}", "throughput", ["llama_build", f"weights_{s}"],
                              [PY, str(HERE / "bench_throughput.py"), "llama", "--bin", str(LLAMA_BIN), "--gguf", gguf(s),
                               "--shape", s, *lb, "--log", str(W / "logs" / f"tp_llama.cpp_{s}.tool.log"),
                               "--out", str(result_path(f"tp_llama.cpp_{s}"))], 300, 90))
            if "hf" in ENGINES:
                caps = (["--max-requests", "8"] if small else ["--max-requests", "64"]) + ["--time-limit-s", "60"]
                for kind, extra in (("fixed", ["--time-limit-s", "60"]), ("sharegpt", caps)):
                    ds = str(W / "results" / f"dataset_{kind}_{s}.json")
                    S.append(Step(f"tp_hf_{kind}_{s}", "throughput", [f"weights_{s}", f"dataset_{kind}_{s}"],
                                  [PY, str(HERE / "bench_throughput.py"), "hf", "--model", hf_dir(s), "--shape", s,
                                   "--dataset", ds, "--device", DEVICE, "--attn", "sdpa",
                                   "--batch", "8" if small else "64", *extra,
                                   "--out", str(result_path(f"tp_hf_{kind}_{s}"))], 300, 150))
    if "serving" in groups and "eli" in ENGINES:
        for s in SERVE_SHAPES:
            sv = (["--rate", "10", "--num-requests", "20", "--input-len-mean", "40", "--output-len-mean", "20",
                   "--max-model-len", "256"] if small else ["--rate", "4", "--num-requests", "200"])
            S.append(Step(f"serving_{s}", "serving", ["eli_install", f"weights_{s}", "serve_deps"],
                          [PY, str(HERE / "bench_serving.py"), "--model", hf_dir(s), "--shape", s, "--device", DEVICE,
                           "--dtype", DTYPE, *sv, "--log-dir", str(W / "logs"),
                           "--out", str(result_path(f"serving_{s}"))], 420, 150,
                          extra_env={"PYTHONPATH": os.pathsep.join(p for p in [SITE, ENV.get("PYTHONPATH", "")] if p)}))
    for st in S:  # timed steps wait until the builds are over (they would steal the host's cores)
        if st.group != "ceilings":
            st.deps.append("quiet")
    return S


# ---- dependencies ----------------------------------------------------------------------------
def job_state(name: str) -> str:
    st = W / "status"
    rc = st / f"{name}.rc"
    if rc.is_file():
        return "ok" if rc.read_text().strip() == "0" else "failed"
    pid = st / f"{name}.pid"
    if pid.is_file():
        try:
            os.kill(int(pid.read_text().strip()), 0)
            return "pending"
        except (OSError, ValueError):
            return "failed"
    return "failed"


_serve_deps: str | None = None


def serve_deps_state() -> str:
    """Installs the carried wheels (.whl/) into SITE once; checks the serve imports."""
    global _serve_deps
    if _serve_deps is not None:
        return _serve_deps
    whl = sorted((ROOT / ".whl").glob("*.whl")) if (ROOT / ".whl").is_dir() else []
    stamp = pathlib.Path(SITE) / ".eli_bench_wheels"
    if whl and not stamp.is_file():
        common.log(f"installing {len(whl)} wheels from .whl/ into {SITE}")
        rc, out = common.run_cmd([PY, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                                  "--no-cache-dir", "--upgrade", "--target", SITE, *map(str, whl)], timeout=180)
        (W / "logs" / "serve_wheels.log").write_text(out)
        if rc == 0:
            stamp.write_text("\n".join(w.name for w in whl))
    env = dict(ENV, PYTHONPATH=os.pathsep.join(p for p in [SITE, ENV.get("PYTHONPATH", "")] if p))
    rc, out = common.run_cmd([PY, "-c", "import fastapi, uvicorn, prometheus_client, httpx; print('serve deps ok')"],
                             timeout=60, env=env)
    (W / "logs" / "serve_deps.log").write_text(out)
    _serve_deps = "ok" if rc == 0 else "failed"
    if rc != 0:
        common.log(f"!! serve dependencies missing (carry .whl/ from scripts/fetch_serve_wheels.sh): {out[-300:]}")
    return _serve_deps


def dep_state(dep: str) -> tuple[str, str]:
    """(ok | pending | failed, reason)."""
    st = W / "status"
    if dep == "llama_build" and ENV.get("ELI_BENCH_LLAMA_BIN"):
        ok = (LLAMA_BIN / "llama-bench").is_file()
        return ("ok", "") if ok else ("failed", f"no llama-bench in {LLAMA_BIN}")
    if dep in ("llama_build", "eli_install", "weights"):
        s = job_state(dep)
        return s, "" if s != "failed" else f"job {dep} failed or never started (see logs/{dep}.log)"
    if dep.startswith("weights_"):
        if (st / f"{dep}.ok").is_file():
            return "ok", ""
        if (st / f"{dep}.failed").is_file():
            return "failed", f"{dep}: " + (st / f"{dep}.failed").read_text()[:200]
        s = job_state("weights")
        if s == "pending":
            return "pending", ""
        return "failed", f"the weights job ended without {dep} (see logs/weights.log)"
    if dep.startswith("dataset_"):
        _, kind, s = dep.split("_", 2)
        path = W / "results" / f"{dep}.json"
        if not path.is_file():
            n = (40 if kind == "sharegpt" else 16) if SMALL else (1000 if kind == "sharegpt" else 256)
            extra = (["--prompt-len", "32", "--output-len", "16", "--clip-max", "128"]) if SMALL else []
            rc, out = common.run_cmd([PY, str(HERE / "bench_throughput.py"), "gen", "--kind", kind, "--n", str(n),
                                      "--vocab", str(common.shape(s)["vocab"]), *extra, "--out", str(path)], timeout=120)
            if rc != 0:
                return "failed", f"dataset generation failed: {out[-300:]}"
        return "ok", ""
    if dep == "quiet":
        busy = [j for j in ("llama_build", "eli_install") if job_state(j) == "pending"]
        return ("pending", "") if busy else ("ok", "")
    if dep == "serve_deps":
        s = serve_deps_state()
        return s, "" if s == "ok" else "fastapi/uvicorn/prometheus_client/httpx not importable (see logs/serve_deps.log)"
    return "failed", f"unknown dependency {dep}"


# ---- running ---------------------------------------------------------------------------------
def load_state() -> dict:
    return common.read_json(W / "status" / "steps.json", {}) or {}


def save_state(state: dict) -> None:
    common.write_json(W / "status" / "steps.json", state)


def wait_gpu_idle(max_s: float = 30.0, limit_mib: int = 2048) -> None:
    if not DEVICE.startswith("cuda"):
        return
    t0 = time.perf_counter()
    used = common.gpu_memory_used_mib()
    while used is not None and used > limit_mib and time.perf_counter() - t0 < max_s:
        time.sleep(1.0)
        used = common.gpu_memory_used_mib()
    if used is not None and used > limit_mib:
        rc, out = common.run_cmd(["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory", "--format=csv"])
        common.log(f"!! GPU still has {used} MiB in use: {out.strip()[-400:]}")


def kill_group(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the step's process group, SIGKILL after grace_s; waits for the step to end."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
            # the leader is gone; make sure no child of the group survives it
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def run_step(step: Step, timeout: float, run_id: str) -> dict:
    log_path = W / "logs" / f"{step.name}.log"
    env = dict(ENV, PYTHONUNBUFFERED="1", ELI_BENCH_WORK=str(W), **step.extra_env)
    if step.gpu:
        wait_gpu_idle()
    common.log(f"== {step.name} (timeout {timeout:.0f} s; load {common.load_avg()})")
    t0 = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as logf:
        logf.write("$ " + " ".join(step.cmd) + "\n")
        logf.flush()
        proc = subprocess.Popen(step.cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT),
                                start_new_session=True)
        status = "ok"
        try:
            rc = proc.wait(timeout=timeout)
            if rc != 0:
                status = "failed"
        except subprocess.TimeoutExpired:
            status = "timeout"
            kill_group(proc, grace_s=15)
            rc = proc.returncode
        finally:
            if proc.poll() is None:  # an exception here (Ctrl-C): leave nothing running
                kill_group(proc, grace_s=5)
            try:  # and nothing the step started and left behind (a server, a child)
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    dt = time.perf_counter() - t0
    res = common.read_json(result_path(step.name), {}) or {}
    errs = res.get("errors", [])
    tail = ""
    if status != "ok":
        try:
            tail = log_path.read_text(errors="replace")[-1200:]
        except OSError:
            pass
        common.log(f"!! {step.name}: {status} (rc {rc}) after {dt:.0f} s; log tail:\n{tail}")
    else:
        common.log(f"   {step.name}: ok in {dt:.0f} s")
    return {"status": status, "rc": rc, "seconds": round(dt, 1), "run_id": run_id, "load_after": common.load_avg(),
            "errors": [e.get("what", "") + ": " + e.get("error", "")[:300] for e in errs][:5],
            "log_tail": tail[-600:] if status != "ok" else ""}


def run_steps(steps: list[Step], deadline: float, run_id: str, state: dict) -> None:
    rerun = ENV.get("ELI_BENCH_RERUN") == "1"
    retry_failed = ENV.get("ELI_BENCH_RETRY_FAILED") == "1"
    pending = []
    for s in steps:
        prev = state.get(s.name, {}).get("status")
        if prev in ("ok", "failed") and state[s.name].get("cmd") != s.cmd:
            prev = None  # the same step with other options: run it again
        if prev == "ok" and not rerun:
            common.log(f"   {s.name}: done in an earlier call (ELI_BENCH_RERUN=1 to redo)")
        elif prev == "failed" and not (rerun or retry_failed):
            common.log(f"   {s.name}: failed in an earlier call (ELI_BENCH_RETRY_FAILED=1 to retry)")
        else:
            pending.append(s)
    last_wait_log = 0.0
    while pending:
        left = deadline - time.time()
        ready, waiting = None, []
        for s in list(pending):
            states = [(d, *dep_state(d)) for d in s.deps]
            bad = [(d, why) for d, st, why in states if st == "failed"]
            if bad:
                pending.remove(s)
                state[s.name] = {"status": "skipped", "reason": "; ".join(f"{d}: {w}" for d, w in bad)[:400],
                                 "run_id": run_id}
                common.log(f"   {s.name}: skipped ({state[s.name]['reason']})")
                save_state(state)
                continue
            if all(st == "ok" for _, st, _ in states):
                if left - RESERVE_S >= s.est_s * EST_SCALE:
                    ready = s
                    break
                waiting.append((s.name, "no time"))
            else:
                waiting.append((s.name, ",".join(d for d, st, _ in states if st == "pending")))
        if ready is not None:
            pending.remove(ready)
            timeout = min(ready.timeout_s, deadline - time.time() - RESERVE_S)
            state[ready.name] = dict(run_step(ready, timeout, run_id), cmd=ready.cmd)
            save_state(state)
            continue
        if not pending:
            break
        fits = [n for n, why in waiting if why != "no time" and
                next(x for x in pending if x.name == n).est_s * EST_SCALE <= left - RESERVE_S]
        if not fits or left - RESERVE_S < 5:
            for s in pending:
                state.setdefault(s.name, {})
                if state[s.name].get("status") != "ok":
                    state[s.name] = {"status": "not run", "reason": "no time left in this call: run again",
                                     "run_id": run_id}
            save_state(state)
            common.log(f"   deadline: not run in this call: {', '.join(s.name for s in pending)}")
            break
        if time.time() - last_wait_log > 30:
            common.log(f"   waiting for set-up jobs: {waiting[:6]} ({left:.0f} s left)")
            for j in ("llama_build", "eli_install", "weights"):
                lp = W / "logs" / f"{j}.log"
                if lp.is_file() and job_state(j) == "pending":
                    lines = lp.read_text(errors="replace").strip().splitlines()
                    common.log(f"     {j}: {lines[-1][:160] if lines else ''}")
            last_wait_log = time.time()
        time.sleep(5)


def main() -> int:
    t_start = time.time()
    run_id = time.strftime("%Y%m%d-%H%M%S")
    # The deadline counts from the device command's start (device_bench.sh exports ELI_BENCH_T0).
    t0 = float(ENV.get("ELI_BENCH_T0") or t_start)
    deadline = t0 + float(ENV.get("ELI_BENCH_DEADLINE_S", "560"))
    args = [a.strip() for a in sys.argv[1:] if a.strip()] or ["all"]
    groups = set(GROUPS) - {"eli-engine"} if "all" in args else set()
    groups |= {a for a in args if a in GROUPS}
    unknown = [a for a in args if a not in GROUPS and a != "all"]
    if unknown:
        common.log(f"!! unknown items {unknown}; known: all {' '.join(GROUPS)}")
    (W / "results").mkdir(parents=True, exist_ok=True)
    (W / "logs").mkdir(parents=True, exist_ok=True)
    out_dir = pathlib.Path(ENV.get("OUT", str(ROOT / "device_out")))
    out_dir.mkdir(parents=True, exist_ok=True)
    common.log(f"run {run_id}: groups {sorted(groups)}, shapes {SHAPES}, engines {sorted(ENGINES)}, device {DEVICE}, "
               f"deadline in {deadline - t_start:.0f} s, work {W}, out {out_dir}")
    state = load_state()
    steps = build_steps(groups)
    try:
        run_steps(steps, deadline, run_id, state)
    except Exception as e:  # noqa: BLE001 -- still collect what there is
        common.log(f"!! step runner: {type(e).__name__}: {e}")
    cfg = report.Config(work=W, shapes=SHAPES, tp_shapes=TP_SHAPES, llama_bin=LLAMA_BIN, job_state=job_state,
                        llama_prebuilt=bool(ENV.get("ELI_BENCH_LLAMA_BIN")),
                        eli_install_skipped=ENV.get("ELI_BENCH_SKIP_INSTALL") == "1")
    try:
        doc, base = report.collect(cfg, state, run_id, t_start)
    except Exception as e:  # noqa: BLE001 -- never lose the run: write the raw step states instead
        import traceback
        traceback.print_exc()
        doc = {"error": f"report.collect: {type(e).__name__}: {e}", "steps": state, "date": common.now_iso(),
               "gpu_info": common.gpu_info(), "commit": common.git_commit()}
        base = f"{time.strftime('%Y-%m-%d')}_gpu_bench_raw"
    json_path = out_dir / f"{base}.json"
    common.write_json(json_path, doc)
    try:
        report.tarball(W, out_dir / f"{base}_logs.tar.gz")
    except Exception as e:  # noqa: BLE001
        common.log(f"!! tarball: {e}")
    try:
        text = report.table(doc, SHAPES)
    except Exception as e:  # noqa: BLE001
        text = f"(no table: {type(e).__name__}: {e}; see {json_path})"
    (out_dir / f"{base}_table.txt").write_text(text + "\n")
    print("\n" + text)
    print(f"JSON: {json_path}  (+ {base}_logs.tar.gz, {base}_table.txt)")
    bad = [n for n, s in state.items() if s.get("status") not in ("ok",)]
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
