# eli/async_llm.py: eli.AsyncLLM, the asyncio API the OpenAI server builds on. The C++ AsyncEngine
# runs the step loop on its own thread; one Python thread ("eli-outputs") waits for outputs with
# the GIL released and hands each request's batch to that request's asyncio.Queue through
# loop.call_soon_threadsafe; `generate()` turns them into StreamOutput snapshots.
#
# Contract (kept stable for the server):
#   llm = AsyncLLM(model, **same keywords as eli.LLM); llm.tokenizer; llm.info
#   async for out in llm.generate(prompt, params, request_id=None): ...  # StreamOutput snapshots
#       (params.n > 1: the n completions' snapshots interleave, out.outputs[0].index says which)
#       cumulative text/token_ids/logprobs plus delta_text/delta_token_ids/delta_logprobs; the last
#       one has finish_reason ("stop", "length", "abort", "error"; error text in .error).
#       Admission errors (bad ids, too long, bad params, duplicate id, engine dead or shut down)
#       raise from the first __anext__, before any output.
#   await llm.abort(request_id); llm.chat_prompt_ids(messages, chat_template=None) -> list[int]
#   await llm.embed(prompts, pooling="last", normalize=True) -> np.ndarray (embeddings.py)
#   llm.stats(); llm.health(); llm.healthy(); llm.shutdown(drain=False)
#   A dead engine (a device fault) raises eli.EngineDeadError for new requests; requests in flight
#   when it died end with finish_reason "error".
#
# Invariants: a request whose consumer stops iterating, or whose task is cancelled, is aborted in
# the generator's finally (the C++ loop frees its blocks before its next step); one cancelled while
# still being admitted is aborted once admitted, and its route is closed at once, so its outputs
# are never queued or counted. Routing never loses
# an output: outputs that arrive before a request's route is registered wait in `_early`, and the
# route is registered by the thread that admitted the request, under the same lock the pump uses.
# Nothing waits for a slow consumer: neither the C++ loop nor the pump. Its outputs wait in its
# route's queue (at most max_tokens + 1 of them) and it gets them all in its next snapshot;
# health()["stream_queued_outputs"] counts what all routes hold.
from __future__ import annotations

import asyncio
import atexit
import itertools
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Optional

import numpy as np

from .embeddings import embedding_params, finish_embedding, take as take_embeddings
from .errors import InvalidRequestError, user_message
from .llm import EngineFrontend, ParamsLike, Prompt, _document
from .outputs import CompletionOutput
from .request_tracker import StreamOutput
from .sampling_params import SamplingParams

_kWaitMs = 100          # the pump returns to Python this often (to notice a shutdown)
_kAdmitThreads = 16     # admissions that can wait for the same step (one step applies them all)

_live = weakref.WeakSet()


@atexit.register
def _shutdown_all() -> None:
    # A daemon thread blocked in C++ at interpreter exit is unsafe: stop every pump first.
    for d in list(_live):
        d.shutdown(False)


class _Route:
    """Where one request's outputs go: a queue on its event loop. `deliver` and `close` run on that
    loop; `counter` (the dispatcher) counts outputs in queues, exactly: delivered minus consumed,
    and nothing is delivered (or counted) after close."""
    __slots__ = ("loop", "queue", "counter", "closed")

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, counter=None):
        self.loop = loop
        self.queue = queue
        self.counter = counter
        self.closed = False

    def deliver(self, items: list) -> None:
        if self.closed:
            return
        self.queue.put_nowait(items)
        if self.counter is not None:
            self.counter.add(len(items))

    def take(self) -> list:
        """Every batch queued now, flattened, without waiting."""
        items = []
        while not self.queue.empty():
            items.extend(self.queue.get_nowait())
        return items

    def consumed(self, n: int) -> None:
        if self.counter is not None:
            self.counter.add(-n)

    def close(self) -> None:
        self.closed = True
        self.consumed(len(self.take()))


class _Counter:
    __slots__ = ("lock", "value")

    def __init__(self):
        self.lock = threading.Lock()
        self.value = 0

    def add(self, n: int) -> None:
        with self.lock:
            self.value += n


class _Dispatcher:
    """Owns the pump thread; holds no reference to the AsyncLLM (so that can be collected)."""

    def __init__(self, engine):
        self.engine = engine
        self.lock = threading.Lock()
        self.routes: dict[int, _Route] = {}
        self.early: dict[int, list] = {}
        self.queued = _Counter()  # outputs waiting in routes' queues (slow consumers)
        self.thread = threading.Thread(target=self._pump, name="eli-outputs", daemon=True)
        self.thread.start()
        _live.add(self)

    def submit(self, ids: list[int], params: dict, route: _Route) -> int:
        """Admits a request (blocks up to one engine step) and registers its route."""
        rid = self.engine.add_request(ids, params)
        with self.lock:
            early = self.early.pop(rid, None)
            if not (early and early[-1][4]):
                self.routes[rid] = route
            if early:
                self._post(route, early)
        return rid

    def submit_many(self, prompts: list, params: list, route: _Route) -> list:
        """Admits requests between the same two steps (all or none) with one route for all."""
        rids = self.engine.add_requests(prompts, params)
        with self.lock:
            for rid in rids:
                early = self.early.pop(rid, None)
                if not (early and early[-1][4]):
                    self.routes[rid] = route
                if early:
                    self._post(route, early)
        return rids

    @staticmethod
    def _post(route: _Route, items: list) -> None:
        try:
            route.loop.call_soon_threadsafe(route.deliver, items)
        except RuntimeError:
            pass  # its event loop is closed: nobody is listening

    def _pump(self) -> None:
        engine = self.engine
        while True:
            outs = engine.wait_outputs(_kWaitMs)
            if outs is None:
                return
            if not outs:
                continue
            by_rid: dict[int, list] = {}
            for o in outs:
                by_rid.setdefault(o[0], []).append(o)
            with self.lock:
                for rid, items in by_rid.items():
                    route = self.routes.get(rid)
                    if route is None:
                        self.early.setdefault(rid, []).extend(items)
                        continue
                    if items[-1][4]:  # final output: the route is done
                        del self.routes[rid]
                    self._post(route, items)

    def shutdown(self, drain: bool) -> None:
        self.engine.shutdown(drain)  # every request gets its final output; the pump then ends
        if self.thread is not threading.current_thread():
            self.thread.join()
        _live.discard(self)


class AsyncLLM(EngineFrontend):
    """A loaded model serving concurrent asyncio requests. Same constructor keywords as eli.LLM;
    usable as a context manager (`with` or `async with`: shutdown on exit)."""

    _caller = "AsyncLLM"

    def __init__(self, model: Optional[str] = None, **kwargs):
        super().__init__(model, **kwargs)
        self._dispatch = _Dispatcher(self._engine)
        self._admit = ThreadPoolExecutor(max_workers=_kAdmitThreads, thread_name_prefix="eli-admit")
        self._ids: dict[Any, int] = {}  # request_id -> engine id, while its generator runs
        self._groups: dict[Any, list] = {}  # request_id of an n > 1 request -> its completions' ids
        self._abort_on_admit: set = set()  # request ids aborted while still being admitted
        self._group_ids = itertools.count()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        self.shutdown()

    async def generate(self, prompt: Prompt, params: ParamsLike = None,
                       request_id: Any = None) -> AsyncIterator[StreamOutput]:
        """Streams the request's snapshots; the last one has finish_reason set. params: a
        SamplingParams, a dict of its fields (over the model's sampling defaults) or None (the
        model's defaults); max_tokens stops at the context limit with finish_reason "length".

        With params.n > 1 the n completions run concurrently and their snapshots interleave: each
        snapshot is one completion's (its .outputs holds that one CompletionOutput, whose .index says
        which); every completion's last snapshot has finish_reason set, and the stream ends when all
        n have. Without a request_id such a stream carries an internal id ("eli-n", k)."""
        params = self._check_params(self._params(params))
        if request_id is not None and (request_id in self._ids or request_id in self._groups):
            raise InvalidRequestError(f"request id {request_id!r} is already running")
        text, ids = self._encode(prompt)
        if params.n == 1:
            stream = self._generate_one(text, ids, params, request_id)
        else:
            stream = self._generate_n(text, ids, params, request_id)
        try:
            async for out in stream:
                yield out
        finally:
            await stream.aclose()

    async def _generate_n(self, text: Optional[str], ids: list[int], params: SamplingParams,
                          request_id: Any) -> AsyncIterator[StreamOutput]:
        key = ("eli-n", next(self._group_ids)) if request_id is None else request_id
        subs = params.completions()
        sub_ids = [(key, i) for i in range(len(subs))]
        self._groups[key] = sub_ids
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(i: int, stream) -> None:
            try:
                async for snap in stream:
                    queue.put_nowait((i, snap, None))
            except asyncio.CancelledError:
                raise
            except BaseException as e:  # noqa: BLE001 -- handed to the consumer
                queue.put_nowait((i, None, e))
                return
            queue.put_nowait((i, None, None))

        streams = [self._generate_one(text, ids, sp, sub) for sp, sub in zip(subs, sub_ids)]
        tasks = [asyncio.ensure_future(pump(i, st)) for i, st in enumerate(streams)]
        try:
            remaining = len(tasks)
            while remaining:
                i, snap, err = await queue.get()
                if err is not None:
                    raise err
                if snap is None:
                    remaining -= 1
                    continue
                snap.request_id = key
                snap._completions = [CompletionOutput(i, snap.text, snap.token_ids, snap.logprobs,
                                                      snap.finish_reason, snap.error)]
                yield snap
        finally:
            # Cancelled completions abort their requests in their own generators' finally.
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for st in streams:
                await st.aclose()
            self._groups.pop(key, None)
            self._abort_on_admit.difference_update(sub_ids)

    async def _generate_one(self, text: Optional[str], ids: list[int], params: SamplingParams,
                            request_id: Any) -> AsyncIterator[StreamOutput]:
        engine_params = self._engine_params(ids, params)
        loop = asyncio.get_running_loop()
        route = _Route(loop, asyncio.Queue(), self._dispatch.queued)
        key = object() if request_id is None else request_id
        self._ids[key] = -1  # reserved: a second generate() with this id fails while we admit
        try:
            fut = loop.run_in_executor(self._admit, self._dispatch.submit, ids, engine_params, route)
            try:
                rid = await asyncio.shield(fut)
            except asyncio.CancelledError:
                # Admission goes on in its thread; abort the request as soon as it has an id.
                fut.add_done_callback(
                    lambda f: f.cancelled() or f.exception() is not None or self._engine.abort_request(f.result()))
                raise
        except BaseException:
            # Nobody will read this route: after a cancelled admission the thread still registers
            # it and its outputs keep coming until the abort's final one; closed, they are neither
            # queued nor counted in stream_queued_outputs.
            route.close()
            self._ids.pop(key, None)
            self._abort_on_admit.discard(key)
            raise
        if request_id is None:
            del self._ids[key]
            key = rid
        self._ids[key] = rid
        if key in self._abort_on_admit:  # abort() came while it was being admitted
            self._abort_on_admit.discard(key)
            self._engine.abort_request(rid)
        tracker = self._tracker(key, text, ids, params)
        ended = False  # the engine delivered its final output
        try:
            while not tracker.finished:
                items = list(await route.queue.get())
                items.extend(route.take())  # a slow consumer gets one snapshot for all that came
                route.consumed(len(items))
                for _, token, logprob, top, finish, error, extra in items:
                    if token >= 0 and not tracker.finished:
                        if tracker.add_token(token, logprob, top):
                            self._engine.abort_request(rid)  # a stop string matched: free its blocks now
                        tracker.add_extra(extra)
                    if finish:
                        ended = True
                        tracker.finish(finish, user_message(error))
                yield tracker.snapshot()
        finally:
            route.close()
            if self._ids.get(key) == rid:
                del self._ids[key]
            if not ended and not tracker.finished:
                self._engine.abort_request(rid)

    async def embed(self, prompts, pooling: str = "last", normalize: bool = True) -> np.ndarray:
        """As eli.LLM.embed: pooled final hidden states, float32 (hidden,) for one prompt or
        (len(prompts), hidden) for a list, admitted together. Cancelling aborts them."""
        single = (isinstance(prompts, (str, dict)) or (isinstance(prompts, np.ndarray) and prompts.ndim == 1)
                  or (isinstance(prompts, (list, tuple)) and bool(prompts) and isinstance(prompts[0], (int, np.integer))))
        plist = self._prompt_list(prompts)
        if not plist:
            raise InvalidRequestError("embed needs at least one input")
        encoded = [self._encode(p)[1] for p in plist]
        params = [embedding_params(self, ids, pooling) for ids in encoded]
        loop = asyncio.get_running_loop()
        route = _Route(loop, asyncio.Queue(), self._dispatch.queued)
        fut = loop.run_in_executor(self._admit, self._dispatch.submit_many, encoded, params, route)
        try:
            rids = await asyncio.shield(fut)
        except asyncio.CancelledError:
            fut.add_done_callback(lambda f: f.cancelled() or f.exception() is not None
                                  or [self._engine.abort_request(r) for r in f.result()])
            route.close()
            raise
        except BaseException:
            route.close()
            raise
        pending, vectors = set(rids), {}
        try:
            while pending:
                items = list(await route.queue.get())
                items.extend(route.take())
                route.consumed(len(items))
                take_embeddings(items, vectors, pending)
        finally:
            route.close()
            for rid in pending:
                self._engine.abort_request(rid)
        for rid in rids:
            if isinstance(vectors[rid], BaseException):
                raise vectors[rid]
        out = np.stack([finish_embedding(vectors[rid], normalize) for rid in rids])
        return out[0] if single else out

    def health(self) -> dict:
        """As eli.LLM's, plus stream_queued_outputs: outputs waiting for slow stream consumers."""
        h = super().health()
        h["stream_queued_outputs"] = self._dispatch.queued.value
        return h

    async def abort(self, request_id: Any) -> None:
        """Ends a running request (all its completions, also those still being admitted); its
        generator yields a final output with finish_reason "abort". Unknown or finished ids are
        ignored."""
        group = self._groups.get(request_id)
        for key in group if group is not None else [request_id]:
            rid = self._ids.get(key)
            if rid is None and group is None:
                continue  # unknown or finished
            if rid is None or rid < 0:
                self._abort_on_admit.add(key)  # still being admitted: aborted as soon as it has an id
            else:
                self._engine.abort_request(rid)

    def shutdown(self, drain: bool = False) -> None:
        """Stops the engine: requests in flight end with "abort" (or finish first, with drain);
        later generate() calls raise. Idempotent."""
        self._dispatch.shutdown(drain)  # the admission threads stay: later calls get the engine's error

    def __del__(self):
        d = getattr(self, "_dispatch", None)
        if d is not None:
            d.shutdown(False)
        admit = getattr(self, "_admit", None)
        if admit is not None:
            admit.shutdown(wait=False)


_document(AsyncLLM, "AsyncLLM")
