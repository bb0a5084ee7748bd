#!/usr/bin/env python3
# bench/gpu/run_all.py: the step runner behind `device_bench.sh run`: runs the selected benchmark
# steps, each in its own process (its own process group, killed at its timeout), in an order that
# starts whatever is ready (its set-up jobs done: eli installed, llama.cpp built, weights written),
# until a deadline inside the device call's 10 minutes; then collects every result written on this
# machine so far (earlier calls included) into one JSON + a tar.gz of the logs under $OUT, and
# prints the table last.
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
# - Derived figures use the ceilings measured in the same machine session (bench_ceilings.py):
#   decode: bytes/token (common.py) * tok/s / read ceiling; prefill: 2 * P_layers * T / time / GEMM.
#   usage: run_all.py [all | ceilings decode prefill coldstart throughput serving eli-engine ...]
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import signal
import subprocess
import sys
import tarfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_throughput  # noqa: E402
import common  # noqa: E402

W = common.WORK
ROOT = common.ROOT
PY = sys.executable
ENV = os.environ
SMALL = ENV.get("ELI_BENCH_SMALL") == "1"
DEVICE = ENV.get("ELI_BENCH_DEVICE", "cuda")
DTYPE = ENV.get("ELI_BENCH_DTYPE", "bfloat16")
GROUPS = ["ceilings", "decode", "prefill", "coldstart", "throughput", "serving", "eli-engine"]
RESERVE_S = 25.0  # kept for collecting and printing


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
        for s in SHAPES:
            big = s == "8b"
            if "eli" in ENGINES:
                n = f"eli_{s}{sfx}"
                S.append(Step(n, "decode", ["eli_install", f"weights_{s}"],
                              [PY, str(HERE / "bench_eli.py"), "--model", hf_dir(s), "--shape", s, "--what", what,
                               "--device", DEVICE, "--dtype", DTYPE, "--reps", "5", "--budget-s", "100" if big else "60",
                               *(["--max-model-len", "1024"] if small else []),
                               *dec_p, *pre_p, "--out", str(result_path(n))], 300, 110 if big else 60))
            if "llama" in ENGINES:
                n = f"llama.cpp_{s}{sfx}"
                lw = ["--depths", "0,16,64", "--decode-tokens", "16"] if small else ["--depths", "0,128,4096"]
                S.append(Step(n, "decode", ["llama_build", f"weights_{s}"],
                              [PY, str(HERE / "bench_llama_cpp.py"), "--bin", str(LLAMA_BIN), "--gguf", gguf(s),
                               "--shape", s, "--what", what, "--reps", "5", *lw, *pre_p,
                               "--log", str(W / "logs" / f"{n}.tool.log"), "--out", str(result_path(n))],
                              300, 100 if big else 50))
            if "hf" in ENGINES:
                hd = ["--contexts", "16,64", "--decode-tokens", "8"] if small else ["--contexts", "128,4096", "--decode-tokens", "64"]
                for attn in ("sdpa", "eager"):
                    n = f"hf-{attn}_{s}{sfx}"
                    S.append(Step(n, "decode", [f"weights_{s}"],
                                  [PY, str(HERE / "bench_hf.py"), "--model", hf_dir(s), "--shape", s, "--attn", attn,
                                   "--what", what, "--device", DEVICE, "--reps", "3", "--min-reps", "2",
                                   "--budget-s", "45", *hd, *pre_p, "--out", str(result_path(n))],
                                  240, 90 if big else 60))
    if "eli-engine" in groups and "eli" in ENGINES:
        for s in SHAPES:
            S.append(Step(f"eli-engine_{s}", "eli-engine", ["eli_install", f"weights_{s}"],
                          [PY, str(HERE / "bench_eli.py"), "--api", "engine", "--model", hf_dir(s), "--shape", s,
                           "--what", "decode,prefill", "--device", DEVICE, "--dtype", DTYPE, "--reps", "5",
                           "--budget-s", "60", *(["--max-model-len", "1024"] if small else []), *dec_p, *pre_p, "--out", str(result_path(f"eli-engine_{s}"))],
                          240, 90 if s == "8b" else 50))
    if "coldstart" in groups:
        for s in SHAPES:
            eng = [e for e, k in (("eli", "eli"), ("eli-cli", "eli"), ("hf", "hf"), ("llama.cpp", "llama")) if k in ENGINES]
            deps = [f"weights_{s}"] + (["eli_install"] if "eli" in ENGINES else [])
            deps += ["llama_build"] if "llama" in ENGINES else []
            S.append(Step(f"coldstart_{s}", "coldstart", deps,
                          [PY, str(HERE / "bench_coldstart.py"), "--shape", s, "--hf-dir", hf_dir(s), "--gguf", gguf(s),
                           "--bin", str(LLAMA_BIN), "--engines", ",".join(eng), "--device", DEVICE,
                           "--reps", "1" if small else ("2" if s == "8b" else "3"),
                           "--out", str(result_path(f"coldstart_{s}"))], 420, 220 if s == "8b" else 120))
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
            extra = ["--prompt-len", "32", "--output-len", "16"] if SMALL and kind == "fixed" else []
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
                if left - RESERVE_S >= s.est_s:
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
                next(x for x in pending if x.name == n).est_s <= left - RESERVE_S]
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


# ---- collecting ------------------------------------------------------------------------------
def collect(state: dict, run_id: str, t_start: float) -> tuple[dict, str]:
    results, infos = [], {}
    for f in sorted((W / "results").glob("*.json")):
        if f.name.startswith("dataset_"):
            continue
        d = common.read_json(f, None)
        if not isinstance(d, dict) or "records" not in d:
            continue
        infos[f.stem] = d.get("info", {})  # result files are named by step
        for r in d["records"]:
            results.append(dict(r, step=f.stem))
    ceil = infos.get("ceilings", {}).get("ceilings", {})
    read_bw = ceil.get("read_gb_s")
    gemm = ceil.get("gemm_tflops")
    for r in results:
        s = common.SHAPES.get(r.get("model") or "", None)
        if s is None or r.get("value") is None:
            continue
        if r["metric"] == "decode_tok_s":
            ctx = r.get("mean_context", r.get("prompt_len", 0))
            b = common.decode_bytes_per_token(s, ctx)
            r["bytes_per_token"] = int(b)
            r["achieved_gb_s"] = round(r["value"] * b / 1e9, 1)
            if read_bw:
                r["limit_tok_s"] = round(read_bw * 1e9 / b, 1)
                r["fraction_of_read_ceiling"] = round(r["value"] * b / (read_bw * 1e9), 4)
        elif r["metric"] == "prefill_tok_s":
            T = r.get("prompt_len", 0)
            r["tflops"] = round(common.prefill_flops(s, T) * r["value"] / T / 1e12, 2)
            r["tflops_incl_attention"] = round((common.prefill_flops(s, T) + common.attn_flops(s, T)) * r["value"] / T / 1e12, 2)
            if gemm:
                r["fraction_of_gemm_ceiling"] = round(r["tflops"] / gemm, 4)
    limits = {}
    if read_bw and gemm:
        for short in sorted(set(SHAPES) | set(TP_SHAPES)):
            s = common.shape(short)
            lim = {f"decode_tok_s_at_{c}": round(read_bw * 1e9 / common.decode_bytes_per_token(
                s, common.mean_decode_context(c, 128)), 1) for c in (0, 128, 4096)}
            lim["weight_bytes_per_token"] = common.weight_bytes_per_token(s)
            lim["kv_bytes_per_token"] = common.kv_bytes_per_token(s)
            lim["prefill_tok_s_gemm_bound"] = round(gemm * 1e12 / (2 * common.layer_params(s)), 1)
            ds = common.read_json(W / "results" / f"dataset_fixed_{short}.json", None) if short in TP_SHAPES else None
            if ds or short in TP_SHAPES:
                n = ds["n"] if ds else 256
                p = ds["params"]["prompt_len"] if ds else 512
                o = ds["params"]["output_len"] if ds else 256
                lim["offline_fixed"] = bench_throughput.throughput_limit(s, n, p, o, read_bw * 1e9, gemm * 1e12)
                einfo = infos.get(f"tp_eli_fixed_{short}", {}).get("engine_info", {})
                cap = (einfo.get("num_kv_blocks") or 0) * (einfo.get("block_size") or 0)
                if cap:
                    lim["offline_fixed_eli_kv_capacity"] = bench_throughput.throughput_limit(
                        s, n, p, o, read_bw * 1e9, gemm * 1e12, cap)
            limits[common.shape_name(short)] = lim
    gpu = common.gpu_info()
    card = common.card_short_name(gpu.get("name", "cpu")) if gpu else "cpu"
    peers = {}
    for k, v in infos.items():
        if k.startswith("llama.cpp_") and v.get("llama_cpp"):
            peers["llama.cpp"] = dict(v["llama_cpp"], source="llama-cpp-python 0.3.36 sdist vendor/llama.cpp",
                                      build="CUDA, CMAKE_CUDA_ARCHITECTURES=90, Release")
        if k.startswith("hf-") and v.get("transformers"):
            peers["transformers"] = {"transformers": v["transformers"], "torch": v.get("torch")}
    eli_info = next((v for k, v in infos.items() if k.startswith("eli_") and v.get("engine_info")), {})
    date = datetime.date.today().isoformat()
    doc = {
        "gpu": gpu.get("name", "none"), "gpu_info": gpu, "driver": gpu.get("driver_version"),
        "commit": common.git_commit(), "tree_hash": common.tree_hash(), "date": common.now_iso(),
        "host": {"cpus": os.cpu_count(), "load_avg_end": common.load_avg()},
        "protocol": ("random bf16 weights at real shapes (bench/gpu/make_weights.py), batch 1; decode: N tokens "
                     "after a fresh prompt of c tokens, only the decode timed; prefill: fresh prompt of T tokens, "
                     "time to first token; median of repetitions after warm-up; each engine in its own process; "
                     "see bench/README.md (GPU benchmark)"),
        "ceilings": ceil, "ceilings_info": {k: v for k, v in infos.get("ceilings", {}).items() if k != "ceilings"},
        "eli": {"engine_info": eli_info.get("engine_info"), "engine_options": eli_info.get("engine_options"),
                "install": (W / "status" / "eli_install.tree").read_text().strip()
                if (W / "status" / "eli_install.tree").is_file() else None},
        "peers": peers, "limits": limits, "results": results, "steps": state,
        "setup_jobs": {j: job_state(j) for j in ("llama_build", "eli_install", "weights")},
        "llama_bin": str(LLAMA_BIN) + (" (prebuilt: ELI_BENCH_LLAMA_BIN)" if ENV.get("ELI_BENCH_LLAMA_BIN") else ""),
        "run_id": run_id, "run_seconds": round(time.time() - t_start, 1),
    }
    return doc, f"{date}_{card}_gpu_bench"


def tarball(path: pathlib.Path) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for sub in ("logs", "results", "status"):
            p = W / sub
            if p.is_dir():
                for f in sorted(p.rglob("*")):
                    if f.is_file() and f.stat().st_size < 20 << 20 and not f.name.startswith("dataset_"):
                        tar.add(str(f), arcname=f"{sub}/{f.relative_to(p)}")


# ---- table -----------------------------------------------------------------------------------
def table(doc: dict) -> str:
    R = doc["results"]

    def get(engine: str, model: str, metric: str, plen=None, **kw):
        for r in R:
            if r["engine"] == engine and r.get("model") == model and r["metric"] == metric and \
                    (plen is None or r.get("prompt_len") == plen) and all(r.get(k) == v for k, v in kw.items()):
                return r
        return None

    def v(r, key="value", spec=".0f"):
        return common.fmt(r.get(key) if r else None, spec)

    def ratio(a, b):
        if not a or not b or not a.get("value") or not b.get("value"):
            return "-"
        x = a["value"] / b["value"]
        return f"{x:.2f}x" if x < 10 else (f"{x:.1f}x" if x < 100 else f"{x:.0f}x")

    def pct(r, key):
        return "-" if not r or r.get(key) is None else f"{100 * r[key]:.0f}%"

    c = doc["ceilings"]
    lines = [f"== eli GPU benchmark: {doc['gpu']} (driver {doc['driver']}), commit {str(doc['commit'])[:12]}, "
             f"tree {doc['tree_hash']}, {doc['date']}",
             f"ceilings: copy {common.fmt(c.get('copy_gb_s'), '.0f')} GB/s, read {common.fmt(c.get('read_gb_s'), '.0f')} "
             f"GB/s ({c.get('read_method', '-')}), bf16 GEMM 8192^3 {common.fmt(c.get('gemm_tflops'), '.0f')} TFLOP/s"]
    hdr = (f"{'model':<6}{'metric':<17}{'eli':>9}{'llama.cpp':>10}{'hf-sdpa':>9}{'hf-eager':>9}{'eli/llama':>10}"
           f"{'eli/hf':>8}{'eli %lim':>9}{'llama %lim':>11}{'limit':>9}")
    lines.append(hdr)
    models = [common.shape_name(s) for s in SHAPES]
    for m in models:
        short = common.SHORT[m]
        rows = [("decode", "decode_tok_s", c_) for c_ in (sorted({r.get("prompt_len") for r in R
                if r.get("model") == m and r["metric"] == "decode_tok_s"}))]
        rows += [("prefill", "prefill_tok_s", t_) for t_ in sorted({r.get("prompt_len") for r in R
                 if r.get("model") == m and r["metric"] == "prefill_tok_s"})]
        for kind, metric, plen in rows:
            e, l_ = get("eli", m, metric, plen), get("llama.cpp", m, metric, plen)
            hs, he = get("hf-sdpa", m, metric, plen), get("hf-eager", m, metric, plen)
            hbest = max([h for h in (hs, he) if h and h.get("value")], key=lambda h: h["value"], default=None)
            key = "fraction_of_read_ceiling" if kind == "decode" else "fraction_of_gemm_ceiling"
            lim = (e or l_ or {}).get("limit_tok_s") if kind == "decode" else \
                doc["limits"].get(m, {}).get("prefill_tok_s_gemm_bound")
            label = f"{kind}@{plen} tok/s"
            lines.append(f"{short:<6}{label:<17}{v(e):>9}{v(l_):>10}{v(hs, spec='.1f'):>9}{v(he, spec='.1f'):>9}"
                         f"{ratio(e, l_):>10}{ratio(e, hbest):>8}{pct(e, key):>9}{pct(l_, key):>11}"
                         f"{common.fmt(lim, '.0f'):>9}")
        pre = [get(eng, m, "prefill_tok_s", t) for eng in ("eli", "llama.cpp") for t in (512, 2048)]
        if any(pre):
            lines.append(f"{'':<6}{'prefill TFLOP/s':<17}" + "  ".join(
                f"{eng}@{t}: {v(get(eng, m, 'prefill_tok_s', t), 'tflops', '.0f')}"
                for eng in ("eli", "llama.cpp") for t in (512, 2048)))
        ee = [r for r in R if r["engine"] == "eli-engine" and r.get("model") == m]
        if ee:
            lines.append(f"{'':<6}eli-engine (step loop, no API): " + ", ".join(
                f"{r['metric'].split('_')[0]}@{r.get('prompt_len')} {v(r)}" for r in ee))
    cold = [r for r in R if r["metric"] == "coldstart_s"]
    if cold:
        lines.append("cold start (s, file in page cache): " + "; ".join(
            f"{common.SHORT.get(m, m)}: " + ", ".join(f"{r['engine']} {v(r, spec='.1f')}" for r in cold if r["model"] == m)
            for m in sorted({r["model"] for r in cold})))
    tp = [r for r in R if r["metric"].startswith("offline_") or r["metric"].startswith("batched_")]
    for m in sorted({r["model"] for r in tp}):
        short = common.SHORT.get(m, m)
        lim = doc["limits"].get(m, {}).get("offline_fixed", {})
        for kind in ("fixed", "sharegpt"):
            e = get("eli", m, f"offline_{kind}_output_tok_s")
            h = get("hf-sdpa", m, f"offline_{kind}_output_tok_s")
            parts = [f"eli {v(e)}", f"hf-sdpa {v(h)}" + (" (subsample)" if h and h.get("subsample") else "")]
            if kind == "fixed":
                for pl in (1, 16, 64):
                    l_ = get("llama.cpp", m, "batched_output_tok_s", batch=pl)
                    if l_:
                        parts.append(f"llama.cpp pl={pl} {v(l_)}")
                parts.append(f"limit {common.fmt(lim.get('output_tok_s'), '.0f')}")
            lines.append(f"{short:<6}offline {kind} output tok/s: " + ", ".join(parts))
    sv = [r for r in R if r["metric"].startswith("serving_")]
    for m in sorted({r["model"] for r in sv}):
        g = {r["metric"][len("serving_"):]: r["value"] for r in sv if r["model"] == m}
        lines.append(f"{common.SHORT.get(m, m):<6}serving (eli, {sv[0].get('rate')} req/s): "
                     f"output {common.fmt(g.get('output_token_throughput'), '.0f')} tok/s, "
                     f"TTFT p50/p99 {common.fmt(g.get('p50_ttft_ms'), '.0f')}/{common.fmt(g.get('p99_ttft_ms'), '.0f')} ms, "
                     f"TPOT p50/p99 {common.fmt(g.get('p50_tpot_ms'), '.1f')}/{common.fmt(g.get('p99_tpot_ms'), '.1f')} ms")
    st = doc["steps"]
    by: dict[str, list[str]] = {}
    for name, s in st.items():
        by.setdefault(s.get("status", "?"), []).append(name)
    lines.append("steps: " + "; ".join(f"{k} {len(v_)}" for k, v_ in sorted(by.items())))
    for name, s in st.items():
        if s.get("status") != "ok":
            why = s.get("reason") or "; ".join(s.get("errors") or []) or f"rc {s.get('rc')}"
            lines.append(f"  {s.get('status')}: {name}: {why[:200]}")
        elif s.get("errors"):
            lines.append(f"  ok with errors: {name}: {'; '.join(s['errors'])[:200]}")
    lines.append(f"setup jobs: {doc['setup_jobs']}")
    return "\n".join(lines)


def main() -> int:
    t_start = time.time()
    run_id = time.strftime("%Y%m%d-%H%M%S")
    deadline = t_start + float(ENV.get("ELI_BENCH_DEADLINE_S", "560"))
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
    doc, base = collect(state, run_id, t_start)
    json_path = out_dir / f"{base}.json"
    common.write_json(json_path, doc)
    try:
        tarball(out_dir / f"{base}_logs.tar.gz")
    except Exception as e:  # noqa: BLE001
        common.log(f"!! tarball: {e}")
    text = table(doc)
    (out_dir / f"{base}_table.txt").write_text(text + "\n")
    print("\n" + text)
    print(f"JSON: {json_path}  (+ {base}_logs.tar.gz, {base}_table.txt)")
    bad = [n for n, s in state.items() if s.get("status") not in ("ok",)]
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
