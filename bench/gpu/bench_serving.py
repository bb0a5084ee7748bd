#!/usr/bin/env python3
# bench/gpu/bench_serving.py: online serving of eli: starts `eli serve` on the model, waits for
# GET /health, runs `eli bench serve` against it (Poisson arrivals at --rate req/s, --num-requests
# requests of ShareGPT-like lengths: lognormal, mean 200 prompt / 180 output tokens, token-id
# prompts, ignore_eos), keeps its JSON, then stops the server gracefully (SIGTERM; SIGKILL
# only if it has not exited --stop-timeout-s later) and records how long the stop took.
# The server is this script's child in this script's process group: the `finally` stops it on
# errors, SIGTERM and Ctrl-C, and a driver that kills this script's group on a timeout kills it too,
# so no server outlives the step holding the GPU. uvicorn re-raises the SIGTERM it handled after its
# graceful shutdown, so a cleanly stopped server exits with -15.
# Needs fastapi, uvicorn, prometheus-client (server) and httpx (client) importable: on the GPU
# machine from the wheels of scripts/fetch_serve_wheels.sh (device_bench.sh puts them on PYTHONPATH).
#   usage: bench_serving.py --model DIR --shape 8b --out FILE [--rate 4 --num-requests 200]
from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common  # noqa: E402


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 -- localhost
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, ""
    except Exception as e:  # noqa: BLE001
        return -1, f"{type(e).__name__}: {e}"


def _raise_interrupt(signum, frame) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


def stop(proc: subprocess.Popen, timeout: float) -> dict:
    if proc.poll() is not None:
        return {"already_exited": True, "returncode": proc.returncode}
    t0 = time.perf_counter()
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
        return {"graceful": True, "stop_s": round(time.perf_counter() - t0, 2), "returncode": proc.returncode}
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return {"graceful": False, "stop_s": round(time.perf_counter() - t0, 2), "returncode": proc.returncode}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--shape", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--port", type=int, default=8011)
    ap.add_argument("--rate", type=float, default=4.0)
    ap.add_argument("--num-requests", type=int, default=200)
    ap.add_argument("--input-len-mean", type=int, default=200)
    ap.add_argument("--output-len-mean", type=int, default=180)
    ap.add_argument("--max-model-len", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--startup-timeout-s", type=float, default=180.0)
    ap.add_argument("--bench-timeout-s", type=float, default=300.0)
    ap.add_argument("--stop-timeout-s", type=float, default=40.0)
    ap.add_argument("--log-dir", default=str(common.WORK / "logs"))
    args = ap.parse_args()
    short = common.SHORT[common.shape_name(args.shape)]
    res = common.Results(args.out, f"serving_{short}", engine="eli", rate=args.rate, num_requests=args.num_requests,
                         input_len_mean=args.input_len_mean, output_len_mean=args.output_len_mean)
    log_dir = pathlib.Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{args.port}"
    busy, _ = http_get(base + "/health", 2.0)
    if busy > 0:
        res.error("setup", f"something already answers on port {args.port}; not starting a second server")
        res.done()
        return 1
    server_log = open(log_dir / f"serve_{short}.log", "w", encoding="utf-8")
    cmd = [sys.executable, "-m", "eli", "serve", "--model", args.model, "--offline", "--device", args.device,
           "--dtype", args.dtype, "--port", str(args.port), "--max-model-len", str(args.max_model_len),
           "--served-model-name", f"random-{short}", "--log-level", "warning"]
    common.log("  $ " + " ".join(cmd))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=server_log, stderr=subprocess.STDOUT, env=env)
    # SIGTERM (a driver's timeout) becomes an exception, so the `finally` below stops the server.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    rc = 1
    try:
        ready = None
        while time.perf_counter() - t0 < args.startup_timeout_s:
            if proc.poll() is not None:
                raise RuntimeError(f"eli serve exited with {proc.returncode} during start-up (see {server_log.name})")
            code, _ = http_get(base + "/health", 2.0)
            if code == 200:
                ready = time.perf_counter() - t0
                break
            time.sleep(0.5)
        if ready is None:
            raise RuntimeError(f"/health not ready after {args.startup_timeout_s} s")
        code, models = http_get(base + "/v1/models")
        res.info(server_ready_s=round(ready, 2), server_command=" ".join(cmd),
                 models=json.loads(models) if code == 200 else models)
        common.log(f"  server ready after {ready:.1f} s")
        bench_out = log_dir / f"bench_serve_{short}.json"
        bcmd = [sys.executable, "-m", "eli", "bench", "serve", "--url", base, "--num-requests", str(args.num_requests),
                "--request-rate", str(args.rate), "--input-len-mean", str(args.input_len_mean),
                "--output-len-mean", str(args.output_len_mean), "--length-dist", "lognormal", "--seed", str(args.seed),
                "--out", str(bench_out)]
        common.log("  $ " + " ".join(bcmd))
        tb = time.perf_counter()
        p = subprocess.run(bcmd, capture_output=True, text=True, timeout=args.bench_timeout_s, env=env)
        (log_dir / f"bench_serve_{short}.log").write_text(p.stdout + "\n--- stderr\n" + p.stderr)
        print(p.stdout[-3000:], file=sys.stderr)
        summary = common.read_json(bench_out, None)
        if summary is None:
            raise RuntimeError(f"eli bench serve rc {p.returncode}, no JSON: {p.stderr[-1500:]}")
        res.info(bench_serve=summary, bench_wall_s=round(time.perf_counter() - tb, 2))
        code, metrics = http_get(base + "/metrics")
        if code == 200:
            (log_dir / f"metrics_{short}.txt").write_text(metrics)
        for key, unit in (("output_token_throughput", "tok/s"), ("request_throughput", "req/s"),
                          ("p50_ttft_ms", "ms"), ("p99_ttft_ms", "ms"), ("p50_tpot_ms", "ms"), ("p99_tpot_ms", "ms"),
                          ("p50_e2e_ms", "ms")):
            if summary.get(key) is not None:
                res.add(common.record("eli", args.shape, f"serving_{key}", [float(summary[key])], unit,
                                      rate=args.rate, num_requests=args.num_requests,
                                      successful=summary.get("successful"), failed=summary.get("failed")))
        rc = 0 if summary.get("failed", 1) == 0 and p.returncode == 0 else 1
        if summary.get("failed"):
            res.error("requests", f"{summary.get('failed')} failed: {summary.get('first_errors')}")
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001
        res.error("serving", e if isinstance(e, Exception) else "interrupted (SIGTERM/Ctrl-C)")
    finally:
        info = stop(proc, args.stop_timeout_s)
        server_log.close()
        res.info(server_stop=info)
        common.log(f"  server stopped: {info}")
        try:
            tail = (log_dir / f"serve_{short}.log").read_text(errors="replace")[-2000:]
            res.info(server_log_tail=tail)
        except OSError:
            pass
        res.done()
    return rc


if __name__ == "__main__":
    sys.exit(main())
