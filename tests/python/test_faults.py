# tests/python/test_faults.py: the fault-injection hooks (runtime/core/fault_injection.h, armed through
# eli._eli.arm_fault; docs/fault_injection.md) seen from Python, and slow consumers:
#   - the API (names, specs, counters, all-or-nothing lists);
#   - device_alloc: an engine whose first device allocation fails raises eli.OutOfMemoryError;
#   - thread_start: an engine whose thread pool cannot start a worker raises eli.OutOfMemoryError
#     naming the threads asked for and started (issue 21), and the next engine loads;
#   - step_oom: every request in flight ends with finish_reason "error", the engine stays healthy,
#     frees every block and later generations give the reference tokens;
#   - preempt_storm: greedy outputs identical to the unarmed run, preemptions counted, no leaks;
#   - kernel_poison on the CPU (a simulated device fault): AsyncLLM and LLM report the engine dead,
#     requests in flight and waiting end with "error", new ones raise eli.EngineDeadError, the
#     server answers 503 on /health and on new requests;
#   - kernel_poison on CUDA (GPU only): the same in a subprocess whose CUDA context is really broken
#     by an illegal-address kernel, then a fresh process generates the CPU's greedy tokens;
#   - slow consumers: an AsyncLLM stream that stops reading and an SSE client that stops reading
#     (at the ASGI send and over a real TCP socket) never hold up the engine or other requests; the
#     slow one completes correctly and what waits for it is counted.
from __future__ import annotations

import asyncio
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import eli
from eli import _eli

HERE = pathlib.Path(__file__).resolve().parent
MODEL = HERE.parent / "data" / "models" / "llama_base"
PROMPTS = [f"fault prompt {i}: " + "xyzw"[: 1 + i % 4] * (1 + i % 3) for i in range(8)]


@pytest.fixture(autouse=True)
def _disarm():
    _eli.disarm_faults()
    yield
    _eli.disarm_faults()


def greedy(n, **kw):
    return eli.SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True, **kw)


def _llm(cls=None, **kw):
    cls = cls or eli.LLM
    args = dict(device="cpu", dtype="float32", n_threads=1, block_size=4, num_kv_blocks=128, progress=False)
    args.update(kw)
    return cls(str(MODEL), **args)


def _reference(prompts, n):
    ref = _llm()
    try:
        return [list(o.token_ids) for o in ref.generate(prompts, greedy(n))]
    finally:
        ref.shutdown()


def _all_free(stats):
    return stats["kv_blocks_free"] == stats["kv_blocks_total"] and stats["num_running"] == 0 \
        and stats["num_waiting"] == 0


async def _collect(gen):
    outs = [o async for o in gen]
    assert outs and outs[-1].finish_reason is not None
    return outs


async def _until(pred, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def _wait(pred, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


# ---- the API -------------------------------------------------------------------------------------

def test_fault_api():
    assert set(_eli.fault_points()) == {"device_alloc", "preempt_storm", "kernel_poison", "slow_step_ms", "step_oom",
                                        "thread_start", "disk_read", "kv_disk_write", "kv_disk_read"}
    _eli.arm_fault("slow_step_ms", "value=1:times=2")
    assert _eli.fault_armed("slow_step_ms")
    assert _eli.fault_counts("slow_step_ms") == (0, 0)
    _eli.disarm_fault("slow_step_ms")
    assert not _eli.fault_armed("slow_step_ms")
    with pytest.raises(ValueError, match="unknown fault point"):
        _eli.arm_fault("nope")
    with pytest.raises(ValueError, match="prob"):
        _eli.arm_fault("step_oom", "prob=2")
    with pytest.raises(ValueError):
        _eli.arm_faults("step_oom:after=1,bogus")
    assert not _eli.fault_armed("step_oom")  # a bad list arms nothing
    _eli.arm_faults("step_oom:after=5,preempt_storm:prob=0.1")
    assert _eli.fault_armed("step_oom") and _eli.fault_armed("preempt_storm")
    _eli.disarm_faults()
    assert not _eli.fault_armed("step_oom")
    assert isinstance(_eli.fault_env_enabled(), bool)


# ---- device_alloc / step_oom ---------------------------------------------------------------------

def test_device_alloc_fails_engine_construction():
    _eli.arm_fault("device_alloc", "times=1")
    with pytest.raises(eli.OutOfMemoryError, match="injected fault device_alloc"):
        _llm()
    assert _eli.fault_counts("device_alloc")[1] == 1
    llm = _llm()  # spent: the next engine loads
    try:
        assert len(llm.generate(["ok"], greedy(3))[0].token_ids) == 3
    finally:
        llm.shutdown()


def test_thread_start_failure_is_an_eli_error():
    _eli.arm_fault("thread_start", "after=2:times=1")
    with pytest.raises(eli.OutOfMemoryError, match="asked for 6 threads, started 3") as info:
        _llm(n_threads=6)
    assert ".cc" not in str(info.value)  # no C++ location in the user's message
    assert _eli.fault_counts("thread_start")[1] == 1
    llm = _llm(n_threads=2)  # spent: the next engine starts its threads
    try:
        assert len(llm.generate(["ok"], greedy(3))[0].token_ids) == 3
    finally:
        llm.shutdown()


def test_step_oom_fails_requests_engine_goes_on():
    want = _reference(PROMPTS[:3], 16)
    llm = _llm()
    try:
        _eli.arm_fault("step_oom", "after=2:times=1")
        outs = llm.generate(PROMPTS[:3], greedy(200))
        for o in outs:
            assert o.finish_reason == "error"
            assert "out of memory" in o.error
            assert len(o.token_ids) == 2  # steps 1 and 2 ran, step 3 failed
        assert llm.healthy()
        assert _all_free(llm.stats())
        again = llm.generate(PROMPTS[:3], greedy(16))
        assert [list(o.token_ids) for o in again] == want
        assert [o.finish_reason for o in again] == ["length"] * 3
    finally:
        llm.shutdown()


# ---- preempt_storm ---------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["prob=1", "prob=0.5:seed=11"])
def test_preempt_storm_keeps_greedy_outputs(spec):
    want = _reference(PROMPTS, 20)
    llm = _llm(max_num_batched_tokens=16)
    try:
        _eli.arm_fault("preempt_storm", spec)
        got = llm.generate(PROMPTS, greedy(20))
        fired = _eli.fault_counts("preempt_storm")[1]
        _eli.disarm_fault("preempt_storm")
        assert [list(o.token_ids) for o in got] == want
        s = llm.stats()
        assert fired > 5 and s["preemptions"] > 5, (fired, s)
        assert _all_free(s)
        assert llm.healthy()
    finally:
        llm.shutdown()


# ---- kernel_poison (CPU: a simulated device fault) --------------------------------------------------

def test_kernel_poison_cpu_async_llm_and_server():
    llm = _llm(eli.AsyncLLM, max_num_seqs=2)  # the third request is still waiting when it dies
    try:
        async def main():
            llm._engine.pause_after_steps(0)
            tasks = [asyncio.create_task(_collect(llm.generate(p, greedy(100)))) for p in PROMPTS[:3]]
            await _until(lambda: llm.stats()["num_waiting"] + llm.stats()["num_running"] == 3, "admission")
            _eli.arm_fault("kernel_poison", "after=3")
            llm._engine.pause_after_steps(-1)
            results = await asyncio.gather(*tasks)
            for outs in results:
                assert outs[-1].finish_reason == "error"
                assert "kernel_poison" in outs[-1].error
            assert not llm.healthy()
            assert "kernel_poison" in llm.health()["error"]
            with pytest.raises(eli.EngineDeadError, match="engine is dead: .*kernel_poison"):
                await llm.generate(PROMPTS[0], greedy(2)).__anext__()

        asyncio.run(main())
        with pytest.raises(eli.EngineDeadError):
            llm.score([1, 2, 3])
    finally:
        _eli.disarm_faults()
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")
    from eli.server import create_app
    from server_helpers import ThreadedServer

    with ThreadedServer(create_app(llm, model_name="m", owns_llm=True)) as s:
        h = httpx.get(s.url + "/health")
        assert h.status_code == 503
        r = httpx.post(s.url + "/v1/completions", json={"model": "m", "prompt": "hi", "max_tokens": 2})
        assert r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable"


def test_kernel_poison_cpu_llm():
    llm = _llm()
    try:
        assert len(llm.generate([PROMPTS[0]], greedy(3))[0].token_ids) == 3
        _eli.arm_fault("kernel_poison", "after=2")
        outs = llm.generate(PROMPTS[:2], greedy(50))
        assert [o.finish_reason for o in outs] == ["error", "error"]
        with pytest.raises(eli.EngineDeadError, match="engine is dead"):
            llm.generate([PROMPTS[0]], greedy(2))
        assert isinstance(eli.EngineDeadError("x"), eli.EliError)
    finally:
        _eli.disarm_faults()
        llm.shutdown()


# ---- kernel_poison on CUDA: a really broken context, in subprocesses ----------------------------

_CHILD = r'''
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[3])
import eli
from eli import _eli
model, mode = sys.argv[1], sys.argv[2]
res = {}

def greedy(n):
    return eli.SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True)

def describe(fn):
    try:
        fn()
        return "accepted"
    except Exception as e:
        return f"{type(e).__name__}: {e}"

if mode == "async":
    llm = eli.AsyncLLM(model, device="cuda", num_kv_blocks=64, max_num_seqs=2, progress=False)

    async def collect(gen):
        return [o async for o in gen]

    async def main():
        llm._engine.pause_after_steps(0)
        tasks = [asyncio.create_task(collect(llm.generate(p, greedy(100)))) for p in ["a b c", "d e f", "g h"]]
        while llm.stats()["num_waiting"] + llm.stats()["num_running"] < 3:
            await asyncio.sleep(0.005)
        _eli.arm_fault("kernel_poison", "after=3")
        llm._engine.pause_after_steps(-1)
        outs = await asyncio.gather(*tasks)
        res["finishes"] = [o[-1].finish_reason for o in outs]
        res["errors"] = [o[-1].error for o in outs]
        res["fires"] = _eli.fault_counts("kernel_poison")[1]
        res["healthy"] = llm.healthy()
        res["health_error"] = llm.health()["error"]
        try:
            await llm.generate("x", greedy(2)).__anext__()
            res["new_request"] = "accepted"
        except Exception as e:
            res["new_request"] = f"{type(e).__name__}: {e}"

    asyncio.run(main())
    try:
        import httpx
        from eli.server import create_app
        from server_helpers import ThreadedServer
        with ThreadedServer(create_app(llm, model_name="m")) as s:
            res["health_status"] = httpx.get(s.url + "/health").status_code
            res["completion_status"] = httpx.post(s.url + "/v1/completions",
                                                  json={"model": "m", "prompt": "hi", "max_tokens": 2}).status_code
    except ImportError as e:
        res["server"] = f"skipped: {e}"
    print("RESULT " + json.dumps(res), flush=True)
    llm.shutdown()  # destroying an engine on a broken context must not crash
elif mode == "llm":
    llm = eli.LLM(model, device="cuda", num_kv_blocks=64, progress=False)
    res["before"] = len(llm.generate(["a b"], greedy(4))[0].token_ids)
    _eli.arm_fault("kernel_poison", "after=2")
    outs = llm.generate(["a b c", "d e"], greedy(50))
    res["finishes"] = [o.finish_reason for o in outs]
    res["again"] = describe(lambda: llm.generate(["x"], greedy(2)))
    print("RESULT " + json.dumps(res), flush=True)
    llm.shutdown()
else:
    llm = eli.LLM(model, device=mode, dtype="float32", num_kv_blocks=64, progress=False)
    res["tokens"] = list(llm.generate(["the fresh process"], greedy(16))[0].token_ids)
    print("RESULT " + json.dumps(res), flush=True)
    llm.shutdown()
print("EXIT OK", flush=True)
'''


def _child(mode):
    p = subprocess.run([sys.executable, "-c", _CHILD, str(MODEL), mode, str(HERE)], capture_output=True,
                       text=True, timeout=300, env=dict(os.environ))
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert p.returncode == 0 and lines and "EXIT OK" in p.stdout, \
        f"child {mode} failed (rc {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.gpu
def test_kernel_poison_cuda_kills_engine_new_process_works():
    a = _child("async")
    assert a["fires"] == 1
    assert a["finishes"] == ["error"] * 3, a
    assert all(e for e in a["errors"]), a
    assert a["healthy"] is False and a["health_error"], a
    assert a["new_request"].startswith("EngineDeadError: engine is dead: "), a
    if "server" not in a:
        assert a["health_status"] == 503 and a["completion_status"] == 503, a
    b = _child("llm")
    assert b["before"] == 4
    assert b["finishes"] == ["error", "error"], b
    assert b["again"].startswith("EngineDeadError"), b
    # A new process gets a working CUDA context: the same greedy tokens as the CPU.
    assert _child("cuda")["tokens"] == _child("cpu")["tokens"]


# ---- slow consumers ------------------------------------------------------------------------------

def test_slow_async_stream_consumer_never_blocks_the_engine():
    n_slow = 120
    want = _reference([PROMPTS[0]], n_slow)[0]
    llm = _llm(eli.AsyncLLM)
    try:
        async def main():
            gate = asyncio.Event()
            first_tokens = []

            async def slow():
                outs = []
                async for o in llm.generate(PROMPTS[0], greedy(n_slow)):
                    outs.append(o)
                    if len(outs) == 1:
                        first_tokens.append(len(o.token_ids))
                        await gate.wait()  # stops reading
                return outs

            slow_task = asyncio.create_task(slow())
            await _until(lambda: bool(first_tokens), "the slow stream's first snapshot")
            fast = await asyncio.gather(*(_collect(llm.generate(p, greedy(40))) for p in PROMPTS[1:5]))
            assert all(len(f[-1].token_ids) == 40 for f in fast)
            # The engine finished the unread request too; its outputs wait for the reader, counted.
            await _until(lambda: _all_free(llm.stats()), "the engine to finish every request")
            backlog = n_slow - first_tokens[0]
            await _until(lambda: llm.health()["stream_queued_outputs"] == backlog, "the backlog count")
            assert llm.health()["queued_outputs"] == 0  # the pump took everything from the C++ queues
            gate.set()
            outs = await slow_task
            assert len(outs) == 2  # everything that waited came as one snapshot
            assert llm.health()["stream_queued_outputs"] == 0
            return outs[-1]

        final = asyncio.run(main())
        assert list(final.token_ids) == want
        assert final.finish_reason == "length"
    finally:
        llm.shutdown()


class GatedSend:
    """ASGI wrapper: for a request with the header x-gate, every response body message after the
    first `free` waits until `gate` is set (`held` is set while one waits): what a client that
    stopped reading causes once the socket buffers are full. Other requests pass untouched."""

    def __init__(self, app, free=0):
        self.app = app
        self.free = free
        self.gate = threading.Event()
        self.held = threading.Event()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not any(k == b"x-gate" for k, _ in scope.get("headers", [])):
            return await self.app(scope, receive, send)
        sent = 0

        async def gated(message):
            nonlocal sent
            if message["type"] == "http.response.body":
                sent += 1
                while sent > self.free and not self.gate.is_set():
                    self.held.set()
                    await asyncio.sleep(0.005)
            await send(message)

        await self.app(scope, receive, gated)


@pytest.fixture(scope="module")
def slow_server():
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("httpx")
    from eli.server import create_app
    from server_helpers import ThreadedServer

    llm = _llm(eli.AsyncLLM, max_num_seqs=16)
    app = create_app(llm, model_name="m", owns_llm=True)
    gated = GatedSend(app)
    with ThreadedServer(gated) as s:
        s.llm, s.srv, s.gated = llm, app.state.server, gated
        yield s


_SLOW_BODY = {"model": "m", "prompt": "a slow reader", "max_tokens": 150, "temperature": 0, "ignore_eos": True,
              "logprobs": 2}


def _fast_requests(url, n=4):
    import httpx

    body = {"model": "m", "max_tokens": 30, "temperature": 0, "ignore_eos": True}
    t0 = time.monotonic()
    with ThreadPoolExecutor(n) as ex:
        rs = list(ex.map(lambda i: httpx.post(url + "/v1/completions", json=dict(body, prompt=f"fast {i}"), timeout=60),
                         range(n)))
    assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
    assert all(r.json()["choices"][0]["finish_reason"] == "length" for r in rs)
    return time.monotonic() - t0


def _check_sse(events, want_text, n_tokens):
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert not any("error" in c for c in chunks), chunks[-1]
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert text == want_text
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert sum(len((c["choices"][0]["logprobs"] or {}).get("tokens", [])) for c in chunks) == n_tokens


def test_slow_sse_client_at_the_asgi_send(slow_server):
    import httpx

    s = slow_server
    want = httpx.post(s.url + "/v1/completions", json=_SLOW_BODY, timeout=60).json()["choices"][0]["text"]
    baseline = _fast_requests(s.url)
    result = {}

    def reader():
        with httpx.Client(timeout=120) as c:
            with c.stream("POST", s.url + "/v1/completions", json=dict(_SLOW_BODY, stream=True),
                          headers={"x-gate": "1"}) as r:
                result["status"] = r.status_code
                result["events"] = [ln[6:] for ln in r.iter_lines() if ln.startswith("data: ")]

    s.gated.gate.clear()
    s.gated.held.clear()
    th = threading.Thread(target=reader)
    th.start()
    try:
        _wait(s.gated.held.is_set, "the slow stream's first event to be held")
        during = _fast_requests(s.url)
        # Other requests ran at normal speed (loose bound: a shared 2-core machine is noisy).
        assert during < 3 * baseline + 2.0, (during, baseline)
        # The engine finished the slow request although its client reads nothing: the events wait in
        # the server's stream queue (deltas, O(tokens)), counted.
        _wait(lambda: _all_free(s.llm.stats()), "the engine to finish the slow request")
        # (Its first event is held at the send; snapshots merge what came between two reads of the
        # server, so 1..151 events wait: at most one per token, and the end marker of the choice.)
        _wait(lambda: s.llm.health()["stream_queued_outputs"] == 0, "the server to take every output")
        assert 0 < s.srv.sse_queued <= 151 and s.srv.sse_queued_peak <= 151, (s.srv.sse_queued, s.srv.sse_queued_peak)
        assert th.is_alive()
    finally:
        s.gated.gate.set()
        th.join(60)
    assert result["status"] == 200
    _check_sse(result["events"], want, 150)
    _wait(lambda: s.srv.sse_queued == 0, "the stream queue to drain")


def test_slow_sse_client_over_tcp(slow_server):
    import httpx

    s = slow_server
    want = httpx.post(s.url + "/v1/completions", json=_SLOW_BODY, timeout=60).json()["choices"][0]["text"]
    payload = json.dumps(dict(_SLOW_BODY, stream=True)).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the reader is slow
    sock.settimeout(60)
    try:
        sock.connect(("127.0.0.1", s.port))
        sock.sendall(b"POST /v1/completions HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
        data = sock.recv(256)  # then it stops reading for a while
        assert b" 200 " in data.split(b"\r\n", 1)[0], data
        _fast_requests(s.url)
        _wait(lambda: _all_free(s.llm.stats()), "the engine to finish the slow request")
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    body = data.split(b"\r\n\r\n", 1)[1].decode()
    events = [ln[6:] for ln in body.split("\n") if ln.startswith("data: ")]
    _check_sse(events, want, 150)
