#!/usr/bin/env python3
# tests/soak/traced_serve.py: `python -m eli serve` with memory probes, for the server soak's
# --trace mode (soak_server.py). Same arguments as `eli serve`; probes go to $ELI_SOAK_TRACE_DIR.
#
# Each SIGUSR1 (SIGUSR2: the final probe) appends one JSON line to <dir>/probes.jsonl: VmRSS and
# its split by mapping kind (/proc/self/smaps: files, main malloc heap, pymalloc arenas, thread
# stacks, per-thread malloc arenas), glibc mallinfo2 (native bytes in use / free in arenas), the
# malloc arena count, the thread count, live objects of the types a per-request leak would keep
# (eli, asyncio, uvicorn, h11, starlette, anyio) and the per-request tables that must be empty when
# the server is idle: AsyncLLM's routes / early outputs / ids, its stream_queued_outputs counter
# and the server's sse_queued and unstarted (waiting-sequence reservations) counters ("tables").
#
# With ELI_SOAK_TRACEMALLOC=1 tracemalloc also runs (ELI_SOAK_TRACE_FRAMES frames, default 8):
# probes report py_traced (the Python heap), probe ELI_SOAK_TRACE_BASE (default 2) keeps a
# snapshot, and the final probe writes <dir>/top_diff.txt, the allocation sites whose live bytes
# changed most since then. It slows the server ~20x and inflates VmRSS with its own tables, so it
# is for finding a leak, not for the soak's figures.
#
# Invariant: the probes only read; nothing here changes what the server does.
from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import time
import tracemalloc

TRACE_DIR = os.environ.get("ELI_SOAK_TRACE_DIR", "/tmp/eli_soak_trace")
BASE_PROBE = int(os.environ.get("ELI_SOAK_TRACE_BASE", "2"))
WATCH_PREFIXES = ("eli.", "asyncio.", "uvicorn.", "h11.", "starlette.", "anyio.", "httptools", "_asyncio")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]


def _mallinfo() -> dict:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        m = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {"sbrk_arena": m.arena, "mmapped": m.hblkhd, "in_use": m.uordblks, "free": m.fordblks,
            "free_chunks": m.ordblks}


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _rss_breakdown() -> dict:
    """VmRSS by kind of mapping (KiB), from /proc/self/smaps: file-backed (code, the model), the main
    malloc heap, and anonymous mappings by size: 1 MiB ones are pymalloc arenas, ~8 MiB ones thread
    stacks, 64 MiB-aligned ones per-thread malloc arenas."""
    out = {"file": 0, "heap": 0, "pymalloc_1m": 0, "stack_8m": 0, "malloc_arena_64m": 0, "anon_other": 0}
    size = 0
    kind = ""
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                head = line.split()
                if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                    lo, hi = (int(x, 16) for x in head[0].split("-"))
                    size = hi - lo
                    path = head[5] if len(head) > 5 else ""
                    if path == "[heap]":
                        kind = "heap"
                    elif path.startswith("/"):
                        kind = "file"
                    elif size == 1 << 20:
                        kind = "pymalloc_1m"
                    elif 8 << 20 <= size <= (8 << 20) + (64 << 10):
                        kind = "stack_8m"
                    elif size <= 64 << 20 and lo % (64 << 20) == 0:
                        kind = "malloc_arena_64m"
                    else:
                        kind = "anon_other"
                elif head[0] == "Rss:":
                    out[kind] += int(head[1])
    except OSError:
        return {}
    return out


def _arenas() -> int:
    """Number of glibc malloc arenas (main + per-thread), from malloc_info's XML."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.open_memstream.restype = ctypes.c_void_p
        buf, size = ctypes.c_char_p(), ctypes.c_size_t()
        f = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
        libc.malloc_info(0, ctypes.c_void_p(f))
        libc.fclose(ctypes.c_void_p(f))
        xml = ctypes.string_at(buf, size.value).decode()
        libc.free(buf)
        return xml.count("<heap nr=")
    except (OSError, AttributeError):
        return -1


def _object_counts() -> dict:
    counts: dict[str, int] = {}
    for o in gc.get_objects():
        t = type(o)
        name = f"{t.__module__}.{t.__qualname__}"
        if name.startswith(WATCH_PREFIXES):
            counts[name] = counts.get(name, 0) + 1
    return counts


def _engine_tables() -> dict:
    try:
        from eli import async_llm
    except ImportError:
        return {}
    out = {}
    for d in list(async_llm._live):
        out.update(routes=len(d.routes), early=len(d.early), queued=d.queued.value)
    for o in gc.get_objects():
        name = type(o).__name__
        if name == "AsyncLLM":
            out["ids"] = len(getattr(o, "_ids", {}))
        elif name == "Server" and type(o).__module__ == "eli.server.core":
            out["sse_queued"] = o.sse_queued
            out["unstarted"] = o.unstarted
    return out


class _Prober:
    def __init__(self):
        os.makedirs(TRACE_DIR, exist_ok=True)
        self.n = 0
        self.base = None
        self.out = open(os.path.join(TRACE_DIR, "probes.jsonl"), "a")

    def probe(self, final: bool = False) -> None:
        t0 = time.monotonic()
        gc.collect()
        cur, peak = tracemalloc.get_traced_memory()  # (0, 0) with ELI_SOAK_TRACEMALLOC=0
        rec = {"probe": self.n, "final": final, "rss": _rss(), "py_traced": cur, "py_traced_peak": peak,
               "tracemalloc_overhead": tracemalloc.get_tracemalloc_memory(), "malloc": _mallinfo(),
               "arenas": _arenas(), "rss_kib": _rss_breakdown(), "tables": _engine_tables(),
               "objects": _object_counts(), "threads": len(os.listdir("/proc/self/task"))}
        if self.n == BASE_PROBE and tracemalloc.is_tracing():
            self.base = tracemalloc.take_snapshot()
        if final and self.base is not None:
            stats = tracemalloc.take_snapshot().compare_to(self.base, "traceback")
            with open(os.path.join(TRACE_DIR, "top_diff.txt"), "w") as f:
                f.write(f"probe {BASE_PROBE} -> {self.n}: traced {cur / 1048576:.2f} MiB\n")
                for s in stats[:30]:
                    f.write(f"{s.size_diff / 1024:+.1f} KiB, {s.count_diff:+d} blocks "
                            f"(now {s.size / 1024:.1f} KiB)\n")
                    for line in s.traceback.format()[-16:]:
                        f.write(f"    {line}\n")
        rec["probe_s"] = round(time.monotonic() - t0, 3)
        self.out.write(json.dumps(rec) + "\n")
        self.out.flush()
        self.n += 1


def main() -> int:
    if os.environ.get("ELI_SOAK_TRACEMALLOC", "0") == "1":
        tracemalloc.start(int(os.environ.get("ELI_SOAK_TRACE_FRAMES", "8")))
    prober = _Prober()
    signal.signal(signal.SIGUSR1, lambda *_: prober.probe())
    signal.signal(signal.SIGUSR2, lambda *_: prober.probe(final=True))
    from eli.cli import main as eli_main
    return eli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
