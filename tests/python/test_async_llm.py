# tests/python/test_async_llm.py: eli.AsyncLLM on the tiny llama_base checkpoint: concurrent
# generations equal sequential greedy ones, stream deltas add up to the final output, cancellation
# and abort free every KV block, admission errors raise before any output, an engine fault and a
# shutdown end every request in flight.
import asyncio
import time

import pytest

import eli

PROMPTS = [f"prompt {i}: " + "abcdefgh"[: 1 + i % 8] * (1 + i % 3) for i in range(16)]


@pytest.fixture(scope="module")
def model_dir(data_dir):
    return str(data_dir / "models" / "llama_base")


@pytest.fixture(scope="module")
def alm(model_dir):
    llm = eli.AsyncLLM(model_dir, dtype="float32", n_threads=1, block_size=4, num_kv_blocks=256)
    yield llm
    llm.shutdown()


def greedy(n=12, **kw):
    return eli.SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True, **kw)


async def collect(gen):
    outs = [o async for o in gen]
    assert outs and outs[-1].finish_reason is not None
    assert all(o.finish_reason is None for o in outs[:-1])
    return outs


async def wait_blocks_free(llm, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        s = llm.stats()
        if s["kv_blocks_free"] == s["kv_blocks_total"] and s["num_running"] == 0 and s["num_waiting"] == 0:
            return
        assert time.monotonic() < deadline, f"blocks not freed: {s}"
        await asyncio.sleep(0.005)


async def admitted(llm, n, timeout=10.0):
    """Waits until n requests are in the engine (the tests pause the loop to make phases exact)."""
    deadline = time.monotonic() + timeout
    while True:
        s = llm.stats()
        if s["num_waiting"] + s["num_running"] == n:
            return
        assert time.monotonic() < deadline, f"requests not admitted: {s}"
        await asyncio.sleep(0.002)


def test_concurrent_generations_equal_sequential(alm, model_dir):
    sync = eli.LLM(model_dir, dtype="float32", n_threads=1)
    want = [sync.generate([p], greedy(8 + i % 5))[0] for i, p in enumerate(PROMPTS)]
    sync.shutdown()

    async def main():
        gens = [collect(alm.generate(p, greedy(8 + i % 5))) for i, p in enumerate(PROMPTS)]
        return await asyncio.gather(*gens)

    got = asyncio.run(main())
    for w, outs in zip(want, got):
        final = outs[-1]
        assert final.token_ids == w.token_ids
        assert final.text == w.text
        assert final.finish_reason == "length"
        assert final.prompt_token_ids == w.prompt_token_ids
    asyncio.run(wait_blocks_free(alm))


def test_stream_deltas_concatenate_to_final(alm):
    base = asyncio.run(collect(alm.generate(PROMPTS[3], greedy(30))))[-1]
    assert len(base.text) > 8
    stop = base.text[5:8]  # a stop string in the middle of the output

    async def main(params):
        return await collect(alm.generate(PROMPTS[3], params))

    for params in (greedy(30, logprobs=2), greedy(30, stop=[stop])):
        outs = asyncio.run(main(params))
        final = outs[-1]
        assert "".join(o.delta_text for o in outs) == final.text
        assert [t for o in outs for t in o.delta_token_ids] == final.token_ids
        for o in outs:  # every snapshot is cumulative and consistent with its deltas
            assert final.text.startswith(o.text)
            assert o.text.endswith(o.delta_text)
        if params.logprobs is not None:
            assert [lp for o in outs for lp in o.delta_logprobs] == final.logprobs
            assert len(final.logprobs) == len(final.token_ids) == 30
        else:
            assert final.finish_reason == "stop"
            assert final.text == base.text[: base.text.index(stop)]
            assert all(stop not in o.text for o in outs)
            assert outs[0].delta_logprobs is None
    asyncio.run(wait_blocks_free(alm))


def test_cancellation_frees_blocks(model_dir):
    # One sequence at a time: the second request stays queued behind the first.
    llm = eli.AsyncLLM(model_dir, dtype="float32", n_threads=1, max_num_seqs=1, block_size=4, num_kv_blocks=128)
    engine = llm._engine

    async def consume(gen, flag=None):
        async for _ in gen:
            if flag is not None:
                flag.set()

    async def main():
        first = asyncio.Event()
        engine.pause_after_steps(0)
        running = asyncio.create_task(consume(llm.generate(PROMPTS[0], greedy(200)), first))
        queued = asyncio.create_task(consume(llm.generate(PROMPTS[1], greedy(200))))
        await admitted(llm, 2)
        engine.pause_after_steps(3)  # the first request decodes 3 tokens, then the loop pauses
        await first.wait()
        s = llm.stats()
        assert s["kv_blocks_free"] < s["kv_blocks_total"] and s["num_waiting"] == 1
        queued.cancel()
        running.cancel()
        for t in (running, queued):
            with pytest.raises(asyncio.CancelledError):
                await t
        await wait_blocks_free(llm)  # freed while the loop is paused: by the abort itself
        engine.pause_after_steps(-1)
        # A consumer that stops iterating (break + close) aborts its request too.
        engine.pause_after_steps(2)
        gen = llm.generate(PROMPTS[2], greedy(200))
        async for out in gen:
            assert out.finish_reason is None
            break
        assert llm.stats()["kv_blocks_free"] < llm.stats()["kv_blocks_total"]
        await gen.aclose()
        await wait_blocks_free(llm)
        engine.pause_after_steps(-1)
        # The engine still serves.
        outs = await collect(llm.generate(PROMPTS[2], greedy(4)))
        assert outs[-1].finish_reason == "length" and len(outs[-1].token_ids) == 4

    try:
        asyncio.run(main())
    finally:
        llm.shutdown()


def test_abort_by_id(alm):
    async def main():
        alm._engine.pause_after_steps(3)
        try:
            gen = alm.generate(PROMPTS[4], greedy(200), request_id="req-1")
            outs = [await gen.__anext__()]
            with pytest.raises(eli.InvalidRequestError, match="already running"):
                await alm.generate(PROMPTS[4], greedy(4), request_id="req-1").__anext__()
            await alm.abort("req-1")
            await alm.abort("no-such-request")  # ignored
            await wait_blocks_free(alm)  # the abort frees the blocks even while the loop is paused
        finally:
            alm._engine.pause_after_steps(-1)
        outs += [o async for o in gen]
        final = outs[-1]
        assert final.finish_reason == "abort"
        assert final.request_id == "req-1"
        assert 1 <= len(final.token_ids) <= 3
        # The id is free again.
        again = await collect(alm.generate(PROMPTS[4], greedy(3), request_id="req-1"))
        assert again[-1].finish_reason == "length"

    asyncio.run(main())


def test_admission_errors_raise_immediately(alm):
    vocab = alm.info["spec"]["vocab_size"]

    async def first(prompt, params):
        return await alm.generate(prompt, params).__anext__()

    with pytest.raises(eli.InvalidRequestError, match="outside the vocabulary"):
        asyncio.run(first([1, 2, vocab], greedy()))
    with pytest.raises(eli.InvalidRequestError, match="context length"):  # the prompt fills the context
        asyncio.run(first([1] * alm.info["max_model_len"], greedy()))
    with pytest.raises(eli.InvalidRequestError, match="empty"):
        asyncio.run(first([], greedy()))
    with pytest.raises(ValueError, match="temperature"):
        asyncio.run(first("hi", eli.SamplingParams(temperature=float("nan"))))
    asyncio.run(wait_blocks_free(alm))
    assert alm.healthy()


def test_chat_prompt_ids(alm):
    template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    msgs = [{"role": "user", "content": "hi there"}]
    ids = alm.chat_prompt_ids(msgs, chat_template=template)
    assert ids == alm.tokenizer.encode("<user>hi there", add_special_tokens=False)
    outs = asyncio.run(collect(alm.generate(ids, greedy(3))))
    assert outs[-1].prompt_token_ids == ids and outs[-1].prompt is None


def test_shutdown_ends_requests_in_flight(model_dir):
    llm = eli.AsyncLLM(model_dir, dtype="float32", n_threads=1, max_num_seqs=3)

    async def main():
        async def run(p):
            return [o async for o in llm.generate(p, greedy(200))]

        llm._engine.pause_after_steps(0)
        tasks = [asyncio.create_task(run(p)) for p in PROMPTS[:4]]
        await admitted(llm, 4)
        llm._engine.pause_after_steps(3)  # three decode, the fourth stays queued
        while llm.health()["steps"] < 3:
            await asyncio.sleep(0.002)
        llm.shutdown()
        results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
        for outs in results:
            assert outs[-1].finish_reason == "abort"
            assert len(outs[-1].token_ids) <= 3
        assert sum(len(outs[-1].token_ids) for outs in results) == 9
        with pytest.raises(ValueError, match="shut down"):
            await llm.generate(PROMPTS[0], greedy()).__anext__()

    asyncio.run(main())
    s = llm.stats()
    assert s["kv_blocks_free"] == s["kv_blocks_total"]
    llm.shutdown()  # idempotent


def test_engine_fault_fails_requests_and_health(model_dir):
    llm = eli.AsyncLLM(model_dir, dtype="float32", n_threads=1)

    async def main():
        llm._engine.pause_after_steps(0)
        tasks = [asyncio.create_task(collect(llm.generate(p, greedy(200)))) for p in PROMPTS[:3]]
        await admitted(llm, 3)
        llm._engine.inject_step_fault(2, "injected device fault")  # steps 1 and 2 run, step 3 fails
        llm._engine.pause_after_steps(-1)
        for outs in await asyncio.gather(*tasks):
            assert outs[-1].finish_reason == "error"
            assert "injected device fault" in outs[-1].error
            assert len(outs[-1].token_ids) == 2
        assert not llm.healthy()
        assert "injected" in llm.health()["error"]
        with pytest.raises(eli.EngineDeadError, match="engine is dead: .*injected device fault"):
            await llm.generate(PROMPTS[0], greedy()).__anext__()

    try:
        asyncio.run(main())
    finally:
        llm.shutdown()
