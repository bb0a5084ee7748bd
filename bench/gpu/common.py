# bench/gpu/common.py: what the GPU benchmark scripts share: the model shapes (Llama-3.2-1B,
# Llama-3.1-8B and tiny test shapes), the byte and FLOP counts that turn a measured rate into a
# fraction of the hardware limit, seeded random prompts, result records, logging, machine facts.
#
# Invariants: imports only the standard library and numpy (never torch, never eli), so every bench
# script can use it whatever engine it drives. Counts (all for bf16 weights, 2 bytes a value):
#   P_layers      = the decoder layers' matrices: per layer H*(nh*hd) + 2*H*(nkv*hd) + (nh*hd)*H + 3*H*I
#   P_head        = V*H (the LM head; the same matrix as the embedding when tied)
#   weight bytes read per decoded token = 2 * (P_layers + P_head)   (one embedding row: negligible;
#                                          norms: negligible)
#   KV bytes per token of context       = 2 (K and V) * L * nkv * hd * 2
#   decode bytes per token at context c = weight bytes + c * KV bytes per token
#   prefill FLOPs for T tokens          = 2 * P_layers * T  (the LM head runs on the last token only;
#                                          attention's T^2 term is reported apart, attn_flops)
from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any, Iterable, Optional

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORK = pathlib.Path(os.environ.get("ELI_BENCH_WORK", "/tmp/eli-bench"))

_LLAMA3_1B_ROPE = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192}
_LLAMA3_8B_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192}

# name -> shape. vocab includes the 256 special tokens of Llama 3 (ids 128000..128255).
SHAPES: dict[str, dict[str, Any]] = {
    "llama-3.2-1b": dict(hidden=2048, layers=16, heads=32, kv_heads=8, head_dim=64, inter=8192, vocab=128256,
                         tied=True, rope_theta=500000.0, rope_scaling=_LLAMA3_1B_ROPE, max_pos=131072, eps=1e-5,
                         std=0.02),
    "llama-3.1-8b": dict(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, inter=14336, vocab=128256,
                         tied=False, rope_theta=500000.0, rope_scaling=_LLAMA3_8B_ROPE, max_pos=131072, eps=1e-5,
                         std=0.02),
    "llama-3.1-70b": dict(hidden=8192, layers=80, heads=64, kv_heads=8, head_dim=128, inter=28672, vocab=128256,
                          tied=False, rope_theta=500000.0, rope_scaling=_LLAMA3_8B_ROPE, max_pos=131072, eps=1e-5,
                          std=0.02),
    # Test shapes (CPU self-test). Larger std so greedy tokens have clear margins between engines.
    # tiny: llama3 RoPE scaling that changes most frequencies at short positions (theta 1e4, original
    # context 64), so a test sees whether an engine applies it.
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, inter=128, vocab=512, tied=False,
                 rope_theta=10000.0, rope_scaling={**_LLAMA3_8B_ROPE, "original_max_position_embeddings": 64},
                 max_pos=4096, eps=1e-5, std=0.15),
    "tiny-plain": dict(hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, inter=128, vocab=512, tied=True,
                       rope_theta=10000.0, rope_scaling=None, max_pos=4096, eps=1e-5, std=0.15),
}
ALIASES = {"1b": "llama-3.2-1b", "8b": "llama-3.1-8b", "70b": "llama-3.1-70b"}
SHORT = {"llama-3.2-1b": "1b", "llama-3.1-8b": "8b", "llama-3.1-70b": "70b", "tiny": "tiny", "tiny-plain": "tiny-plain"}


def shape_name(name: str) -> str:
    name = ALIASES.get(name.lower(), name.lower())
    if name not in SHAPES:
        raise ValueError(f"unknown shape {name!r}; known: {', '.join(list(SHAPES) + list(ALIASES))}")
    return name


def shape(name: str) -> dict[str, Any]:
    return SHAPES[shape_name(name)]


# ---- counts ----------------------------------------------------------------------------------
def layer_params(s: dict) -> int:
    H, I, hd = s["hidden"], s["inter"], s["head_dim"]
    q, kv = s["heads"] * hd, s["kv_heads"] * hd
    return s["layers"] * (H * q + 2 * H * kv + q * H + 3 * H * I)


def head_params(s: dict) -> int:
    return s["vocab"] * s["hidden"]


def total_params(s: dict) -> int:
    """Every parameter stored (embedding, head when untied, norms)."""
    norms = s["layers"] * 2 * s["hidden"] + s["hidden"]
    return layer_params(s) + head_params(s) * (1 if s["tied"] else 2) + norms


def weight_bytes_per_token(s: dict, bytes_per_value: int = 2) -> int:
    return bytes_per_value * (layer_params(s) + head_params(s))


def kv_bytes_per_token(s: dict, bytes_per_value: int = 2) -> int:
    return 2 * s["layers"] * s["kv_heads"] * s["head_dim"] * bytes_per_value


def decode_bytes_per_token(s: dict, context: float) -> float:
    return weight_bytes_per_token(s) + context * kv_bytes_per_token(s)


def mean_decode_context(prompt_len: int, gen_tokens: int) -> float:
    """Mean number of positions attended over `gen_tokens` decode steps after a context of prompt_len
    (step j = 0.. feeds the token at position prompt_len + j and attends to prompt_len + j + 1)."""
    return prompt_len + (gen_tokens + 1) / 2.0


def prefill_flops(s: dict, tokens: int) -> float:
    return 2.0 * layer_params(s) * tokens


def attn_flops(s: dict, tokens: int) -> float:
    """Causal attention of a fresh prompt: QK^T and PV, 2 FLOPs a multiply-add, T(T+1)/2 pairs."""
    return 2.0 * 2.0 * s["layers"] * s["heads"] * s["head_dim"] * tokens * (tokens + 1) / 2.0


# ---- prompts ---------------------------------------------------------------------------------
def rand_prompt(seed: int, n: int, vocab: int) -> list[int]:
    """n seeded random token ids below the special-token range (ids < vocab - 256 for real shapes)."""
    import numpy as np

    hi = vocab - 256 if vocab > 4096 else max(2, vocab - 8)
    return [int(t) for t in np.random.default_rng(seed).integers(0, hi, size=n)]


# ---- statistics and records ------------------------------------------------------------------
def summary(samples: list[float]) -> dict:
    if not samples:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def record(engine: str, shape_key: Optional[str], metric: str, samples: list[float], unit: str, **extra) -> dict:
    """One result: value = median of samples (rounded for the table; samples kept)."""
    s = summary(samples)
    rec = {"engine": engine, "model": shape_name(shape_key) if shape_key else None, "dtype": "bf16", "metric": metric,
           "value": None if s["median"] is None else round(s["median"], 4), "unit": unit,
           "samples": [round(x, 4) for x in samples]}
    rec.update(extra)
    return rec


class Results:
    """A step's result file, rewritten after every record (a killed step keeps what it measured)."""

    def __init__(self, path: Optional[str], step: str, **info):
        self.path = pathlib.Path(path) if path else None
        self.data = {"step": step, "started": now_iso(), "finished": None, "info": dict(info),
                     "records": [], "errors": []}
        self.flush()

    def add(self, rec: dict) -> None:
        self.data["records"].append(rec)
        log(f"  {rec['engine']:<12} {SHORT.get(rec['model'], rec['model']) or '-':<6} {rec['metric']:<28} "
            f"{rec['value']} {rec['unit']}  (n={len(rec.get('samples', []))})")
        self.flush()

    def info(self, **kv) -> None:
        self.data["info"].update(kv)
        self.flush()

    def error(self, what: str, exc: BaseException | str) -> None:
        msg = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        log(f"  !! {what}: {msg}")
        self.data["errors"].append({"what": what, "error": str(msg)[-2000:]})
        self.flush()

    def done(self) -> None:
        self.data["finished"] = now_iso()
        self.flush()

    def flush(self) -> None:
        if self.path is not None:
            write_json(self.path, self.data)


# ---- small utilities -------------------------------------------------------------------------
def now_iso() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def write_json(path: os.PathLike | str, obj: Any) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, default=str)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: os.PathLike | str, default: Any = None) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def csv_ints(text: str) -> list[int]:
    return [int(x) for x in str(text).split(",") if x.strip()]


def run_cmd(cmd: list[str], timeout: float = 30.0, **kw) -> tuple[int, str]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
        return p.returncode, (p.stdout or "") + (p.stderr or "")
    except (OSError, subprocess.SubprocessError) as e:
        return -1, f"{type(e).__name__}: {e}"


def gpu_info() -> dict:
    """The card as nvidia-smi sees it (no torch): name, driver, memory, clocks; {} without it."""
    if shutil.which("nvidia-smi") is None:
        return {}
    fields = ["name", "driver_version", "memory.total", "memory.used", "clocks.sm", "clocks.mem",
              "clocks.max.sm", "clocks.max.mem", "power.limit", "temperature.gpu", "pci.bus_id"]
    rc, out = run_cmd(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"])
    if rc != 0:
        return {"error": out.strip()[-300:]}
    first = out.strip().splitlines()[0] if out.strip() else ""
    vals = [v.strip() for v in first.split(",")]
    info = dict(zip(fields, vals))
    info["count"] = len(out.strip().splitlines())
    rc, out = run_cmd(["nvcc", "--version"])
    if rc == 0:
        info["nvcc"] = out.strip().splitlines()[-1] if out.strip() else ""
    return info


def card_name() -> str:
    """The first GPU's name as nvidia-smi prints it; "unknown" without one."""
    return gpu_info().get("name") or "unknown"


def run_result_child(script: str, cfg: dict, env: Optional[dict] = None, timeout: float = 900) -> dict:
    """Runs `script` (python -c) in a fresh process with json(cfg) as argv[1] and returns the JSON
    of its line "RESULT {...}", or {"error": the tail of its output} when it printed none."""
    try:
        p = subprocess.run([sys.executable, "-c", script, json.dumps(cfg)], capture_output=True, text=True,
                           env={**os.environ, **(env or {})}, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return {"error": f"timed out after {timeout} s: {str(e.stdout or '')[-1500:]}"}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (p.stderr or p.stdout)[-2000:]}


def card_short_name(name: str) -> str:
    import re

    n = name.lower().replace("nvidia", "")
    n = re.sub(r"[^a-z0-9]+", "-", n).strip("-")
    return n or "gpu"


def gpu_memory_used_mib() -> Optional[int]:
    rc, out = run_cmd(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"])
    try:
        return int(out.strip().splitlines()[0]) if rc == 0 else None
    except (ValueError, IndexError):
        return None


def git_commit() -> str:
    env = os.environ.get("ELI_BENCH_COMMIT")
    if env:
        return env
    rc, head = run_cmd(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
    if rc != 0:
        return "unknown"
    rc2, dirty = run_cmd(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    return head.strip() + ("-dirty" if rc2 == 0 and dirty.strip() else "")


def tree_hash() -> str:
    """sha256 over eli's sources (include, runtime, kernels, python/eli, python/src, CMake files):
    ties a result to the exact tree when the device copy has no .git."""
    h = hashlib.sha256()
    exts = {".h", ".cc", ".cu", ".cuh", ".py", ".txt", ".toml", ".cmake", ".cpp"}
    parts = []
    for top in ("include", "runtime", "kernels", "python/eli", "python/src", "CMakeLists.txt", "pyproject.toml"):
        p = ROOT / top
        if p.is_file():
            parts.append(p)
        elif p.is_dir():
            parts += [f for f in p.rglob("*") if f.is_file() and f.suffix in exts and "__pycache__" not in f.parts]
    for f in sorted(parts):
        h.update(str(f.relative_to(ROOT)).encode())
        try:
            h.update(f.read_bytes())
        except OSError:
            pass
    return h.hexdigest()[:16]


def load_avg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def fmt(v: Optional[float], spec: str = ".1f") -> str:
    if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))):
        return "-"
    return format(v, spec)


def page_cache_read(paths: Iterable[os.PathLike | str], chunk: int = 64 << 20) -> dict:
    """Reads files once (puts them in the page cache; a second read shows if they were there)."""
    total, t0 = 0, time.perf_counter()
    buf = bytearray(chunk)
    for p in paths:
        p = pathlib.Path(p)
        files = [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else [p]
        for f in files:
            with open(f, "rb", buffering=0) as fh:
                while True:
                    n = fh.readinto(buf)
                    if not n:
                        break
                    total += n
    dt = time.perf_counter() - t0
    return {"bytes": total, "seconds": round(dt, 3), "gb_s": round(total / dt / 1e9, 2) if dt > 0 else None}
