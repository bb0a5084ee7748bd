# eli/server/render_worker.py: the chat-template render worker, a separate process run as
# `python -m eli.server.render_worker` by render_pool.RenderPool (issue 20 item 1).
#
# Why a process: a chat template is untrusted code, and some operations it can reach run in C while
# holding the GIL (big-integer arithmetic, formatting, compile-time constant folding); a thread
# cannot be stopped and would stall the server's event loop. A process can be killed at a deadline.
#
# Protocol (stdin -> stdout, one job at a time), each frame = 4-byte big-endian length + kind byte +
# payload:
#   parent -> worker: b"I" pickle({"tokenizer": eli.tokenizer.Tokenizer}) once, then
#                     b"J" pickle(job dict, see chat_prompt.build_prompt_ids) per job.
#   worker -> parent: b"R" (ready, after I); b"K" + int32 little-endian token ids;
#                     b"E" + JSON {"status", "message", "param", "code"}.
# Only the parent's frames are unpickled (the parent is trusted); replies are plain bytes / JSON,
# so a compromised worker cannot run code in the server. fd 1 is pointed at stderr, so a stray print
# cannot corrupt the frames. SIGINT/SIGTERM are ignored (Ctrl-C reaches the whole process group;
# the server ends the worker itself); the worker exits when its stdin closes (server gone).
# Memory: once the tokenizer is loaded, RLIMIT_DATA caps the worker's heap at what it uses plus
# kHeadroomBytes ($ELI_RENDER_WORKER_HEADROOM_BYTES), so a template building a huge value gets a
# MemoryError (a 400) instead of taking the host's memory (Linux; elsewhere no cap).
from __future__ import annotations

import array
import json
import os
import pickle
import signal
import struct
import sys

_HEADER = struct.Struct(">IB")
kHeadroomBytes = 2 << 30


def limit_memory(headroom: int) -> bool:
    """Caps this process's data segment (RLIMIT_DATA) at its current size plus `headroom`.
    False where that cannot be done."""
    try:
        import resource

        with open("/proc/self/status", encoding="ascii") as f:
            used = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmData:"))
        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        cap = used + headroom
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        if soft == resource.RLIM_INFINITY or soft > cap:
            resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
        return True
    except (ImportError, OSError, ValueError, StopIteration):
        return False


def read_frame(f) -> tuple[bytes, bytes] | None:
    head = f.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    n, kind = _HEADER.unpack(head)
    payload = f.read(n)
    if len(payload) < n:
        return None
    return bytes([kind]), payload


def frame(kind: bytes, payload: bytes) -> bytes:
    return _HEADER.pack(len(payload), kind[0]) + payload


def _error(status: int, message: str, param=None, code=None) -> bytes:
    return frame(b"E", json.dumps({"status": status, "message": message, "param": param,
                                   "code": code}).encode("utf-8"))


def _ids_bytes(ids) -> bytes:
    a = array.array("i", ids)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # prints go to stderr, not into the frames
    sys.stdout = sys.stderr

    from .chat_prompt import PromptError, build_prompt_ids

    tokenizer = None
    while True:
        got = read_frame(inp)
        if got is None:
            return 0
        kind, payload = got
        if kind == b"I":
            tokenizer = pickle.loads(payload)["tokenizer"]
            limit_memory(int(os.environ.get("ELI_RENDER_WORKER_HEADROOM_BYTES") or kHeadroomBytes))
            reply = frame(b"R", b"")
        elif kind == b"J" and tokenizer is not None:
            try:
                reply = frame(b"K", _ids_bytes(build_prompt_ids(pickle.loads(payload), tokenizer)))
            except PromptError as e:
                reply = _error(e.status, e.message, e.param, e.code)
            except (MemoryError, RecursionError) as e:
                reply = _error(400, f"the chat prompt could not be built: {type(e).__name__}", "messages")
            except Exception as e:  # noqa: BLE001 -- a bug: reported as a 500, the worker lives on
                reply = _error(500, f"chat rendering failed: {type(e).__name__}: {e}")
        else:
            reply = _error(500, f"render worker: unexpected frame {kind!r}")
        out.write(reply)
        out.flush()


if __name__ == "__main__":
    sys.exit(main())
