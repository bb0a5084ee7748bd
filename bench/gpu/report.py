#!/usr/bin/env python3
# bench/gpu/report.py: turns the per-step result files of a GPU benchmark machine session
# ($WORK/results/<step>.json, written by the bench_*.py scripts) into the run's JSON, the logs
# tarball and the table that run_all.py prints last.
#
# Invariants: derived figures use the ceilings measured in the same machine session
# (bench_ceilings.py): decode: fraction_of_read_ceiling = tok/s * bytes per token (common.py) /
# read ceiling; prefill: tflops = 2 * P_layers * T / time, fraction_of_gemm_ceiling = tflops / GEMM.
# Records are kept as the steps wrote them (plus those fields and `step`); nothing is averaged here.
from __future__ import annotations

import dataclasses
import datetime
import os
import pathlib
import sys
import tarfile
import time
from typing import Callable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_throughput  # noqa: E402
import common  # noqa: E402

ROOT = common.ROOT


@dataclasses.dataclass
class Config:
    work: pathlib.Path
    shapes: list[str]
    tp_shapes: list[str]
    llama_bin: pathlib.Path
    job_state: Callable[[str], str]
    llama_prebuilt: bool = False
    eli_install_skipped: bool = False


# ---- collecting ------------------------------------------------------------------------------
def collect(cfg: Config, state: dict, run_id: str, t_start: float) -> tuple[dict, str]:
    W = cfg.work
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
        for short in sorted(set(cfg.shapes) | set(cfg.tp_shapes)):
            s = common.shape(short)
            lim = {f"decode_tok_s_at_{c}": round(read_bw * 1e9 / common.decode_bytes_per_token(
                s, common.mean_decode_context(c, 128)), 1) for c in (0, 128, 4096)}
            lim["weight_bytes_per_token"] = common.weight_bytes_per_token(s)
            lim["kv_bytes_per_token"] = common.kv_bytes_per_token(s)
            lim["prefill_tok_s_gemm_bound"] = round(gemm * 1e12 / (2 * common.layer_params(s)), 1)
            ds = common.read_json(W / "results" / f"dataset_fixed_{short}.json", None) if short in cfg.tp_shapes else None
            if ds or short in cfg.tp_shapes:
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
            ver = next((f.read_text().strip() for f in (W / "llama.cpp-src" / "ELI_LLAMA_CPP_PYTHON_VERSION",
                                                         ROOT / "peers" / "llama.cpp" / "ELI_LLAMA_CPP_PYTHON_VERSION")
                        if f.is_file()), "unknown")
            peers["llama.cpp"] = dict(v["llama_cpp"], source=f"llama-cpp-python {ver} sdist, vendor/llama.cpp",
                                      build="GGML_CUDA=ON, CMAKE_CUDA_ARCHITECTURES=90, Release; -ngl 99 -fa 1",
                                      binaries=str(cfg.llama_bin))
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
        "setup_jobs": {j: ("prebuilt" if j == "llama_build" and cfg.llama_prebuilt else
                           "skipped" if j == "eli_install" and cfg.eli_install_skipped else
                           cfg.job_state(j)) for j in ("llama_build", "eli_install", "weights")},
        "llama_bin": str(cfg.llama_bin) + (" (prebuilt: ELI_BENCH_LLAMA_BIN)" if cfg.llama_prebuilt else ""),
        "run_id": run_id, "run_seconds": round(time.time() - t_start, 1),
    }
    return doc, f"{date}_{card}_gpu_bench"


def tarball(W: pathlib.Path, path: pathlib.Path) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for sub in ("logs", "results", "status"):
            p = W / sub
            if p.is_dir():
                for f in sorted(p.rglob("*")):
                    if f.is_file() and f.stat().st_size < 20 << 20 and not f.name.startswith("dataset_"):
                        tar.add(str(f), arcname=f"{sub}/{f.relative_to(p)}")


# ---- table -----------------------------------------------------------------------------------
def table(doc: dict, shapes: list[str]) -> str:
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
    hdr = (f"{'model':<7}{'metric':<17}{'eli':>9}{'llama.cpp':>10}{'hf-sdpa':>9}{'hf-eager':>9}{'eli/llama':>10}"
           f"{'eli/hf':>8}{'eli %lim':>9}{'llama %lim':>11}{'limit':>9}")
    lines.append(hdr)
    models = [common.shape_name(s) for s in shapes]
    notes: list[str] = []
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
            ecell = v(e) + ("!" if e and e.get("stream_timing_suspect") else "")
            if e and e.get("stream_timing_suspect"):
                notes.append(f"! {short} decode@{plen}: eli's first-token stamp lagged (caller thread behind the "
                             f"engine); from total times instead: {common.fmt(e.get('decode_tok_s_from_totals'), '.0f')} tok/s")
            lines.append(f"{short:<7}{label:<17}{ecell:>9}{v(l_):>10}{v(hs, spec='.1f'):>9}{v(he, spec='.1f'):>9}"
                         f"{ratio(e, l_):>10}{ratio(e, hbest):>8}{pct(e, key):>9}{pct(l_, key):>11}"
                         f"{common.fmt(lim, '.0f'):>9}")
        pre = [get(eng, m, "prefill_tok_s", t) for eng in ("eli", "llama.cpp") for t in (512, 2048)]
        if any(pre):
            lines.append(f"{'':<7}{'prefill TFLOP/s':<17}" + "  ".join(
                f"{eng}@{t}: {v(get(eng, m, 'prefill_tok_s', t), 'tflops', '.0f')}"
                for eng in ("eli", "llama.cpp") for t in (512, 2048)))
        ee = [r for r in R if r["engine"] == "eli-engine" and r.get("model") == m]
        if ee:
            lines.append(f"{'':<7}eli-engine (step loop, no API): " + ", ".join(
                f"{r['metric'].split('_')[0]}@{r.get('prompt_len')} {v(r)}" for r in ee))
    lines += notes
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
