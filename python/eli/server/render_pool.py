# eli/server/render_pool.py: a small pool of render worker processes (render_worker.py) with a hard
# deadline per job, driven from the server's event loop (issue 20 item 1).
#
# Invariants:
# - A job runs in one worker at a time; the event loop only waits on pipes, so a runaway template
#   (even one holding the GIL in C) cannot stall /health or other requests.
# - A job that misses its deadline, or whose worker dies, gets RenderTimeout / RenderCrashed, and
#   that worker is killed and replaced in the background; the other workers are unaffected.
# - A caller cancelled mid-job (client disconnect) does not desynchronize the worker: the exchange
#   runs as its own task and returns the worker to the pool (or replaces it) when it ends.
# - After kMaxSpawnFailures consecutive workers fail to start, the pool reports itself broken
#   (every job fails fast with RenderCrashed) instead of respawning forever.
from __future__ import annotations

import array
import asyncio
import contextlib
import json
import logging
import os
import pathlib
import pickle
import sys
from typing import Optional, Sequence

from .chat_prompt import PromptError
from .render_worker import _HEADER, frame

log = logging.getLogger("eli.server")

kSpawnTimeoutS = 60.0
kMaxSpawnFailures = 3


class RenderTimeout(Exception):
    pass


class RenderCrashed(Exception):
    pass


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc

    async def send(self, kind: bytes, payload: bytes) -> None:
        self.proc.stdin.write(frame(kind, payload))
        await self.proc.stdin.drain()

    async def recv(self) -> tuple[bytes, bytes]:
        head = await self.proc.stdout.readexactly(_HEADER.size)
        n, kind = _HEADER.unpack(head)
        return bytes([kind]), await self.proc.stdout.readexactly(n)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()


_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")


def _worker_env() -> dict:
    """The server's environment without secrets (API keys, hub tokens): the worker runs untrusted
    templates and needs none of them. Tokenizers run single-threaded there (one job at a time; no
    thread pool of one stack per core inside the worker's memory cap)."""
    env = {k: v for k, v in os.environ.items() if not any(w in k.upper() for w in _SECRET_WORDS)}
    env.update(TOKENIZERS_PARALLELISM="false", RAYON_NUM_THREADS="1")
    return env


def default_command() -> list[str]:
    """python -c ...: the worker imports the same eli package as this process (the directory
    holding it goes first on the worker's path unless it is already on the path, e.g. site-packages)."""
    root = str(pathlib.Path(__file__).resolve().parents[2])
    code = (f"import sys; r = {root!r}; r in sys.path or sys.path.insert(0, r); "
            "from eli.server.render_worker import main; sys.exit(main())")
    return [sys.executable, "-c", code]


class RenderPool:
    """`workers` render processes for `tokenizer`; run(job) -> token ids, within `timeout_s`."""

    def __init__(self, tokenizer, *, workers: int = 2, timeout_s: float = 10.0,
                 command: Optional[Sequence[str]] = None):
        if workers < 1:
            raise ValueError("a render pool needs at least one worker")
        self.n_workers = workers
        self.timeout_s = timeout_s
        self.command = list(command or default_command())
        self._init = pickle.dumps({"tokenizer": tokenizer})
        self._idle: Optional[asyncio.Queue] = None
        self._tasks: set = set()
        self._all: set = set()
        self._spawn_failures = 0
        self.broken: Optional[str] = None
        self.closed = False
        self.kills = 0  # workers killed at a deadline or found dead (tests, logs)

    def start(self) -> None:
        """Starts the workers in the background (call on the serving event loop)."""
        self._idle = asyncio.Queue()
        for _ in range(self.n_workers):
            self._spawn_later()

    def _spawn_later(self) -> None:
        if self.closed:
            return
        t = asyncio.ensure_future(self._spawn())
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _spawn(self) -> None:
        w = None
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=_worker_env())
            w = _Worker(proc)
            self._all.add(w)
            await w.send(b"I", self._init)
            kind, _ = await asyncio.wait_for(w.recv(), kSpawnTimeoutS)
            if kind != b"R":
                raise RuntimeError(f"unexpected reply {kind!r}")
        except asyncio.CancelledError:
            if w is not None:
                self._discard(w)
            raise
        except Exception as e:  # noqa: BLE001
            if w is not None:
                self._discard(w)
            self._spawn_failures += 1
            log.error("chat render worker failed to start (%s: %s)", type(e).__name__, e)
            if self._spawn_failures >= kMaxSpawnFailures:
                self.broken = f"chat render workers fail to start ({type(e).__name__}: {e})"
                self._wake_waiters()
            else:
                await asyncio.sleep(0.5)
                self._spawn_later()
            return
        self._spawn_failures = 0
        if self.closed:
            self._discard(w)
            return
        self._idle.put_nowait(w)

    def _wake_waiters(self) -> None:
        for _ in range(self.n_workers + 64):
            self._idle.put_nowait(None)

    def _discard(self, w: _Worker) -> None:
        w.kill()
        self._all.discard(w)
        t = asyncio.ensure_future(w.proc.wait())  # reap it
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def run(self, job: dict) -> list[int]:
        """Token ids for `job`; raises PromptError (the job's own error), RenderTimeout, RenderCrashed."""
        if self.broken:
            raise RenderCrashed(self.broken)
        if self._idle is None:
            self.start()
        w = await self._idle.get()
        if w is None:
            self._idle.put_nowait(None)
            raise RenderCrashed(self.broken or "the render pool is closed")
        t = asyncio.ensure_future(self._exchange(w, pickle.dumps(job)))
        self._tasks.add(t)
        t.add_done_callback(self._exchange_done)
        return await asyncio.shield(t)

    async def _exchange(self, w: _Worker, payload: bytes) -> list[int]:
        try:
            await w.send(b"J", payload)
            kind, body = await asyncio.wait_for(w.recv(), self.timeout_s)
        except asyncio.TimeoutError:
            self._replace(w, "missed its deadline")
            raise RenderTimeout(f"rendering the chat template took longer than {self.timeout_s:g} s") from None
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError) as e:
            self._replace(w, f"died ({type(e).__name__})")
            raise RenderCrashed("the chat render worker died while rendering this request") from None
        except BaseException:
            self._replace(w, "was interrupted")
            raise
        self._idle.put_nowait(w)
        if kind == b"K":
            a = array.array("i")
            a.frombytes(body)
            if sys.byteorder != "little":
                a.byteswap()
            return a.tolist()
        if kind == b"E":
            err = json.loads(body)
            raise PromptError(err["message"], param=err.get("param"), code=err.get("code"),
                              status=int(err.get("status") or 500))
        raise RenderCrashed(f"the chat render worker sent an unexpected reply {kind!r}")

    def _exchange_done(self, t: asyncio.Task) -> None:
        self._tasks.discard(t)
        if not t.cancelled():
            t.exception()  # retrieved: a caller that went away must not leave "never retrieved" noise

    def _replace(self, w: _Worker, why: str) -> None:
        self.kills += 1
        log.warning("chat render worker %d %s; starting a new one", w.proc.pid, why)
        self._discard(w)
        self._spawn_later()

    async def close(self) -> None:
        self.closed = True
        for t in list(self._tasks):
            t.cancel()
        for w in list(self._all):
            with contextlib.suppress(Exception):
                w.proc.stdin.close()
        for w in list(self._all):
            try:
                await asyncio.wait_for(w.proc.wait(), 2.0)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                w.kill()
                with contextlib.suppress(Exception):
                    await w.proc.wait()
        self._all.clear()
        if self._idle is not None:
            self._wake_waiters()


__all__ = ["RenderCrashed", "RenderPool", "RenderTimeout"]
