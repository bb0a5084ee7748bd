# tests/python/test_async_llm_admission_cancel.py: requests cancelled while AsyncLLM is still admitting
# them (the server's "client left in the first milliseconds" case) leave no per-request state behind:
# once the engine is idle, the dispatcher's routes and early outputs, the request-id table and
# health()["stream_queued_outputs"] are all back to zero. Before the fix the cancelled request's
# route stayed open, its outputs (up to the abort's final one) were counted as queued for a slow
# consumer and never consumed, so the counter grew with every such cancel (the server soak saw ~1000
# after 6000 requests).
import asyncio
import time

import pytest

import eli


@pytest.fixture(scope="module")
def llm(data_dir):
    llm = eli.AsyncLLM(str(data_dir / "models" / "llama_base"), dtype="float32", n_threads=1, block_size=4,
                       num_kv_blocks=256)
    yield llm
    llm.shutdown()


async def _idle(llm, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        s = llm.stats()
        if not llm._dispatch.routes and s["num_running"] == 0 and s["num_waiting"] == 0:
            return
        assert time.monotonic() < deadline, f"engine not idle: {s}, {len(llm._dispatch.routes)} routes"
        await asyncio.sleep(0.01)


def test_cancel_during_admission_leaves_nothing(llm):
    n = 24

    async def first(gen):
        return await gen.__anext__()

    async def main():
        tasks = []
        for i in range(n):
            params = eli.SamplingParams(max_tokens=40, temperature=0.0, ignore_eos=True)
            kw = {"request_id": f"req-{i}"} if i % 2 else {}
            t = asyncio.create_task(first(llm.generate(f"prompt {i}: abc", params, **kw)))
            await asyncio.sleep(0)  # the task runs up to its admission (in the admit thread) ...
            t.cancel()              # ... and is cancelled while it waits for it
            tasks.append(t)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results), results
        await _idle(llm)
        await asyncio.sleep(0.3)  # outputs posted to the loop before the routes went are delivered
        s = llm.stats()
        assert s["kv_blocks_free"] == s["kv_blocks_total"]
        assert llm.health()["stream_queued_outputs"] == 0
        assert llm._dispatch.routes == {} and llm._dispatch.early == {}
        assert llm._ids == {}
        # The engine still serves, and a normal request leaves nothing behind either.
        outs = [o async for o in llm.generate("after", eli.SamplingParams(max_tokens=5, temperature=0.0,
                                                                           ignore_eos=True))]
        assert outs[-1].finish_reason == "length" and len(outs[-1].token_ids) == 5
        assert llm.health()["stream_queued_outputs"] == 0

    asyncio.run(main())
