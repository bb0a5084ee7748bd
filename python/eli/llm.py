# eli/llm.py: eli.LLM, the offline Python API: load a model, generate (batched), stream, chat,
# score; and EngineFrontend, the setup it shares with eli.AsyncLLM (async_llm.py). The C++
# AsyncEngine runs the step loop on its own thread (GIL released); this layer submits requests,
# reads their outputs, turns text into ids and back, applies stop strings and chat templates.
#
# Invariants: every request added to the engine has delivered its final output (finished or
# aborted) before a public method returns (or raises), so an exception or a broken-off stream never
# leaves KV blocks held. Requests are read per id, so interleaved streams and generate calls (or
# several threads) never take each other's outputs.
from __future__ import annotations

import time
from typing import Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from . import hub
from .chat_template import render_chat_ids
from .errors import InvalidRequestError, ModelLoadError
from .outputs import RequestOutput
from .request_tracker import RequestTracker
from .sampling_params import SamplingParams
from .tokenizer import Tokenizer

Prompt = Union[str, Sequence[int]]
_kWaitMs = 100  # output waits return to Python this often, so Ctrl-C is seen


def _native():
    from . import _eli  # the compiled engine; imported lazily so pure-Python tools work without it

    return _eli


_KV_CACHE_DTYPES = ("auto", "float32", "bfloat16", "float16")


def _memory_config(gpu_memory_utilization, gpu_memory_bytes, kv_cache_dtype) -> dict:
    """Checks the memory keywords (before any model is resolved or loaded) and returns their engine
    config entries. The engine checks them again, and what only it knows (bfloat16 KV on the CPU,
    a budget the GPU cannot give, weights over the budget)."""
    f = gpu_memory_utilization
    if isinstance(f, bool) or not isinstance(f, (int, float, np.integer, np.floating)):
        raise InvalidRequestError(f"gpu_memory_utilization must be a number in (0, 1], got {f!r}")
    if not 0.0 < float(f) <= 1.0:  # NaN fails too
        raise InvalidRequestError(
            f"gpu_memory_utilization must be in (0, 1], got {f} (the fraction of the GPU's total memory "
            "eli may hold; for an absolute budget pass gpu_memory_bytes)")
    b = gpu_memory_bytes
    if b is not None and (isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 0 < int(b) < 2**64):
        raise InvalidRequestError(f"gpu_memory_bytes must be a positive integer (bytes) or None, got {b!r}")
    if kv_cache_dtype not in _KV_CACHE_DTYPES:
        raise InvalidRequestError(
            f"kv_cache_dtype must be one of {', '.join(_KV_CACHE_DTYPES)}; got {kv_cache_dtype!r}")
    return {"gpu_memory_utilization": float(f), "gpu_memory_bytes": int(b or 0), "kv_cache_dtype": kv_cache_dtype}


def _resolve_device(device: str) -> str:
    """"auto" -> "cuda" when this build sees a CUDA device, else "cpu"; anything else is passed
    through ("cpu", "cuda", "cuda:N"; the engine raises a typed error for what it cannot run)."""
    if device != "auto":
        return device
    return "cuda" if _native().cuda_device_count() > 0 else "cpu"


class EngineFrontend:
    """What eli.LLM and eli.AsyncLLM share: model resolution, the engine config, the tokenizer,
    prompt encoding and chat rendering. The engine is a _eli.AsyncEngine: its own C++ thread runs
    the step loop; this class only submits, aborts and reads outputs.

    model: a Hugging Face directory (config.json + safetensors), a .gguf file, a short name
    ("smollm2") or a Hugging Face repo id; None means the default model (SmolLM2-135M-Instruct).

    Memory (CUDA): gpu_memory_utilization is the fraction in (0, 1] of the GPU's total memory eli may
    hold in all (weights, workspaces, KV cache, a fixed headroom), as in vLLM; gpu_memory_bytes, when
    given, is an absolute budget that overrides it. The KV cache gets what the budget leaves (capped
    by max_num_seqs full contexts) unless num_kv_blocks or kv_cache_bytes say otherwise; anything
    that cannot fit raises eli.OutOfMemoryError at load, with the numbers. kv_cache_dtype: "auto"
    (on CUDA the weights' 16-bit type, else float32), "float32", "bfloat16" or "float16" (CUDA
    only; float16 goes with float16 weights only). dtype "auto" keeps an f32 or f16 checkpoint's
    precision on CUDA and runs bf16 and quantized GGUF ones in bfloat16.
    self.info["memory"] has the plan (budget, weights, workspace, KV and headroom bytes).
    enable_cuda_graphs: decode steps replay CUDA graphs captured per batch-size bucket (default);
    False launches every kernel eagerly (for comparisons and debugging).
    async_scheduling: queue the next step before this step's samples reach the host, so the GPU
    never waits for the host (None: on for GPU models, off on the CPU; steps sampling with
    penalties run one at a time either way). Outputs are identical either way.
    """

    def __init__(self, model: Optional[str] = None, *, device: str = "auto", dtype: str = "auto",
                 n_threads: Optional[int] = None, block_size: int = 16, num_kv_blocks: Optional[int] = None,
                 kv_cache_bytes: Optional[int] = None, max_num_seqs: int = 64,
                 max_num_batched_tokens: int = 2048, max_model_len: Optional[int] = None,
                 enable_chunked_prefill: bool = True, enable_prefix_caching: bool = True,
                 gpu_memory_utilization: float = 0.9, gpu_memory_bytes: Optional[int] = None,
                 kv_cache_dtype: str = "auto", enable_cuda_graphs: bool = True,
                 async_scheduling: Optional[bool] = None,
                 seed: Optional[int] = None, download: bool = True, progress: bool = True):
        memory = _memory_config(gpu_memory_utilization, gpu_memory_bytes, kv_cache_dtype)
        path = hub.resolve_model(model, allow_download=download, progress=progress)
        native = _native()
        meta = native.inspect_model(path)
        self.model_path = path
        config = {
            "model": path,
            "device": _resolve_device(device),
            "dtype": dtype,
            "n_threads": n_threads or 0,
            "block_size": block_size,
            "num_kv_blocks": num_kv_blocks or 0,
            "kv_cache_bytes": kv_cache_bytes or 0,
            "max_num_seqs": max_num_seqs,
            "max_num_batched_tokens": max_num_batched_tokens,
            "max_model_len": max_model_len or 0,
            "enable_chunked_prefill": enable_chunked_prefill,
            "enable_prefix_caching": enable_prefix_caching,
            "enable_cuda_graphs": bool(enable_cuda_graphs),
            "async_scheduling": -1 if async_scheduling is None else int(bool(async_scheduling)),
            "seed": seed or 0,
            **memory,
        }
        engine = native.AsyncEngine(config)
        try:
            self.info = engine.info()
            vocab = self.info["spec"]["vocab_size"]
            try:
                if meta["format"] == "gguf":
                    self.tokenizer = Tokenizer.from_gguf_metadata(meta["gguf_metadata"], n_embedding_rows=vocab)
                else:
                    self.tokenizer = Tokenizer.from_hf_dir(path, n_embedding_rows=vocab)
            except ValueError as e:
                raise ModelLoadError(f"{path}: tokenizer: {e}") from e
        except BaseException:
            engine.shutdown(False)
            raise
        self._engine = engine
        # EOS ids the tokenizer knows (generation_config.json, GGUF) beyond the model config's.
        spec_eos = set(self.info["spec"]["eos_token_ids"])
        self._extra_eos = [i for i in self.tokenizer.eos_token_ids if i not in spec_eos]

    def _encode(self, prompt: Prompt) -> tuple[Optional[str], list[int]]:
        if isinstance(prompt, str):
            return prompt, self.tokenizer.encode(prompt)
        ids = list(prompt)
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
                raise InvalidRequestError(f"token ids must be integers, got {i!r}")
            if not -(2**31) <= int(i) < 2**31:  # the engine checks the vocabulary range
                raise InvalidRequestError(f"token id {int(i)} is outside the vocabulary")
        return None, [int(i) for i in ids]

    def chat_prompt_ids(self, messages: list[dict], chat_template: Optional[str] = None,
                        add_generation_prompt: bool = True) -> list[int]:
        """Renders `messages` with the chat template (the model's unless given) to prompt ids; user
        text never becomes special tokens (eli.chat_template.render_chat_ids)."""
        # The template writes BOS itself where the model wants one.
        template = None if chat_template is None or chat_template == "" else chat_template
        return render_chat_ids(self.tokenizer, template, messages, add_generation_prompt=add_generation_prompt)

    _chat_prompt = chat_prompt_ids

    def stats(self) -> dict:
        """Engine counters (KV blocks, running/waiting, preemptions, prefix cache, tokens, steps)."""
        return self._engine.stats()

    def health(self) -> dict:
        """healthy, error, steps, busy, seconds_since_last_step (busy and old: the loop is wedged)."""
        return self._engine.health()

    def healthy(self) -> bool:
        return self._engine.healthy()

    def score(self, token_ids: Iterable[int]) -> np.ndarray:
        """Logits of every position, float32 of shape (len, vocab) (for parity checks). Runs on the
        engine thread between two steps."""
        _, ids = self._encode(list(token_ids))
        return self._engine.score(ids)


class LLM(EngineFrontend):
    """A loaded model ready to generate (blocking API). See EngineFrontend for the arguments."""

    def __init__(self, model: Optional[str] = None, **kwargs):
        super().__init__(model, **kwargs)
        self.last_stats: dict = {}

    def shutdown(self) -> None:
        """Stops the engine thread; requests still in flight end with finish_reason "abort"."""
        self._engine.shutdown(False)

    # ---- requests ---------------------------------------------------------------------------
    def _add(self, prompt: Prompt, params: SamplingParams) -> RequestTracker:
        text, ids = self._encode(prompt)
        rid = self._engine.add_request(ids, params.engine_dict(self._extra_eos))
        return RequestTracker(rid, text, ids, params, self.tokenizer)

    def _run(self, trackers: dict[int, RequestTracker]) -> Iterator[RequestTracker]:
        """Reads the tracked requests' outputs until each has its final engine output; yields the
        trackers that changed. On exit (also an exception or a closed generator) every request
        still open is aborted and its final output awaited, so its KV blocks are free."""
        engine = self._engine
        open_ids = set(trackers)
        try:
            while open_ids:
                outs = engine.wait_request_outputs(list(open_ids), _kWaitMs)
                if outs is None:
                    break
                changed = {}
                for rid, token, logprob, top, finish, error in outs:
                    t = trackers[rid]
                    if token >= 0 and not t.finished:
                        if t.add_token(token, logprob, top):
                            engine.abort_request(rid)  # a stop string matched: free its blocks now
                    if finish:
                        t.finish(finish, error)
                        open_ids.discard(rid)
                    changed[rid] = t
                yield from changed.values()
        finally:
            for rid in open_ids:
                engine.abort_request(rid)
            while open_ids:  # the abort echoes
                outs = engine.wait_request_outputs(list(open_ids), _kWaitMs)
                if outs is None:
                    break
                for rid, _, _, _, finish, error in outs:
                    if finish:
                        trackers[rid].finish(finish, error)
                        open_ids.discard(rid)
            for t in trackers.values():
                if not t.finished:
                    t.finish("abort")

    def generate(self, prompts: Union[Prompt, Sequence[Prompt]], params: Union[SamplingParams, Sequence[SamplingParams], None] = None) -> list[RequestOutput]:
        """Generates for every prompt in one continuous batch; returns outputs in prompt order."""
        if isinstance(prompts, str) or (isinstance(prompts, Sequence) and prompts and isinstance(prompts[0], (int, np.integer))):
            prompts = [prompts]
        prompts = list(prompts)
        if params is None:
            params = SamplingParams()
        plist = list(params) if isinstance(params, Sequence) else [params] * len(prompts)
        if len(plist) != len(prompts):
            raise InvalidRequestError(f"{len(plist)} sampling params for {len(prompts)} prompts")
        encoded = [self._encode(p) for p in prompts]
        eos = self._extra_eos
        rids = self._engine.add_requests([ids for _, ids in encoded], [sp.engine_dict(eos) for sp in plist])
        trackers = {rid: RequestTracker(rid, text, ids, sp, self.tokenizer)
                    for rid, (text, ids), sp in zip(rids, encoded, plist)}
        start = time.perf_counter()
        for _ in self._run(trackers):
            pass
        self.last_stats = {"seconds": time.perf_counter() - start,
                           "generated_tokens": sum(len(t.output.token_ids) for t in trackers.values())}
        return [trackers[rid].result() for rid in rids]

    def stream(self, prompt: Prompt, params: Optional[SamplingParams] = None) -> Iterator[str]:
        """Yields text pieces as they are generated (never broken UTF-8, never part of a stop string)."""
        params = params or SamplingParams()
        t = self._add(prompt, params)
        start = time.perf_counter()
        first = None
        for _ in self._run({t.output.request_id: t}):
            if first is None and t.output.token_ids:
                first = time.perf_counter()
            piece = t.pending_text()
            if piece:
                yield piece
        piece = t.pending_text()
        if piece:
            yield piece
        end = time.perf_counter()
        n = len(t.output.token_ids)
        first = first or end
        self.last_stats = {
            "prompt_tokens": len(t.output.prompt_token_ids),
            "generated_tokens": n,
            "prefill_seconds": first - start,
            "decode_seconds": end - first,
            "finish_reason": t.output.finish_reason,
        }
        self.last_output = t.result()

    def chat(self, messages: list[dict], params: Optional[SamplingParams] = None, *,
             chat_template: Optional[str] = None) -> RequestOutput:
        """One assistant reply to `messages` ([{"role": ..., "content": ...}, ...])."""
        return self.generate([self._chat_prompt(messages, chat_template)], params)[0]

    def stream_chat(self, messages: list[dict], params: Optional[SamplingParams] = None, *,
                    chat_template: Optional[str] = None) -> Iterator[str]:
        return self.stream(self._chat_prompt(messages, chat_template), params)
