# eli/llm.py: eli.LLM, the offline Python API: load a model, generate (batched, n completions per
# prompt, prompt logprobs), stream, chat, score, embed (embeddings.py); and EngineFrontend, the setup it shares with eli.AsyncLLM
# (async_llm.py): options, model resolution, the tokenizer, prompt and params checking, chat
# rendering. The C++ AsyncEngine runs the step loop on its own thread (GIL released); this layer
# submits requests, reads their outputs, turns text into ids and back, applies stop strings.
#
# Invariants: every request added to the engine has delivered its final output (finished or
# aborted) before a public method returns (or raises), so an exception or a broken-off stream never
# leaves KV blocks held. Requests are read per id, so interleaved streams and generate calls (or
# several threads) never take each other's outputs. Bad input (options, prompts, params, messages)
# raises InvalidRequestError naming what was wrong before anything reaches the engine.
#
# max_tokens is an upper bound, as in vLLM's engine: a request whose prompt leaves fewer tokens in
# the context stops at the context limit with finish_reason "length"; only a prompt that leaves no
# room at all is refused. (The OpenAI server refuses an explicit max_tokens past the context, as
# vLLM's server does; it checks that before calling AsyncLLM.)
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import time
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from . import engine_options, hub
from .embeddings import collect_embeddings, embedding_params, finish_embedding
from .errors import InvalidRequestError, ModelLoadError, UnsupportedError, user_message
from .outputs import CompletionOutput, RequestOutput
from .request_tracker import RequestTracker
from .sampling_params import SamplingParams, describe_defaults, model_sampling_defaults
from .tokenizer import Tokenizer

Prompt = Union[str, Sequence[int], dict]
ParamsLike = Union[SamplingParams, dict, None]
_kWaitMs = 100  # output waits return to Python this often, so Ctrl-C is seen
_log = logging.getLogger("eli")


def _native():
    from . import _eli  # the compiled engine; imported lazily so pure-Python tools work without it

    return _eli


def _resolve_device(device: str) -> str:
    """"auto" -> "cuda" when this build sees a CUDA device, else "cpu". A CUDA device this build or
    machine cannot give is an UnsupportedError saying which (no C++ internals)."""
    native = _native()
    if device == "auto":
        return "cuda" if native.cuda_device_count() > 0 else "cpu"
    if not device.startswith("cuda"):
        return device
    if not native.cuda_compiled():
        raise UnsupportedError(f"device={device!r}: this build of eli has no CUDA support (it was built for the CPU "
                               "only); use device='cpu' or 'auto', or reinstall with ELI_CUDA=ON on a machine with nvcc")
    count = native.cuda_device_count()
    if count == 0:
        raise UnsupportedError(f"device={device!r}: no CUDA device is visible (no GPU, no driver, or "
                               "CUDA_VISIBLE_DEVICES hides them); use device='cpu' or 'auto'")
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        raise UnsupportedError(f"device={device!r}: only {count} CUDA device{'s are' if count > 1 else ' is'} "
                               f"visible (cuda:0..cuda:{count - 1})")
    return device


def _eager_loading_for_shared_gpus(devices: str) -> None:
    """Ranks sharing a GPU (devices="cuda:0,0") need CUDA_MODULE_LOADING=EAGER (docs/parallelism.md:
    a lazy kernel load waits for the GPU while a peer rank's kernel waits for it). When the caller
    left the variable unset it is set here, which takes effect if CUDA has not started in this
    process yet; otherwise the engine refuses with an UnsupportedError naming the variable."""
    if not devices or "CUDA_MODULE_LOADING" in os.environ:
        return
    seen = set()
    for entry in devices.split(","):
        entry = entry.strip()
        index = entry[len("cuda:"):] if entry.startswith("cuda:") else entry
        if not index.isdigit():
            continue
        if index in seen:
            os.environ["CUDA_MODULE_LOADING"] = "EAGER"
            _log.info("devices=%r puts ranks on one GPU: CUDA_MODULE_LOADING=EAGER set for this process", devices)
            return
        seen.add(index)


def _check_text(text: str, what: str) -> str:
    """Text that will be tokenized must be valid Unicode (no lone surrogates such as '\\ud800')."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidRequestError(f"{what} is not valid Unicode: a lone surrogate {text[e.start]!r} at index "
                                  f"{e.start}") from None
    return text


class _NoTokenizer:
    """Stands in for the tokenizer under skip_tokenizer_init: outputs carry token ids, no text."""

    @staticmethod
    def decode(ids, skip_special_tokens: bool = True) -> str:
        return ""


class EngineFrontend:
    """What eli.LLM and eli.AsyncLLM share: options, model resolution, the tokenizer, prompt and
    params checking, chat rendering. The engine is a _eli.AsyncEngine: its own C++ thread runs the
    step loop; this class only submits, aborts and reads outputs.

    model: a Hugging Face directory (config.json + safetensors), a .gguf file, a short name
    ("smollm2") or a Hugging Face repo id; None means the default model (SmolLM2-135M-Instruct).
    download: fetch a short name or repo id that is not cached (False: local and cached only).
    progress: show download progress bars.
    The engine options below come from include/eli/engine_options.def; an unknown keyword, a wrong
    type or a value out of its bounds is an InvalidRequestError naming it, raised before any model
    is resolved or loaded. Every failure to open the model is an eli.ModelLoadError.

    Memory (CUDA): gpu_memory_utilization is the fraction in (0, 1] of the GPU's total memory eli may
    hold in all (weights, workspaces, KV cache, a fixed headroom), as in vLLM; gpu_memory_bytes, when
    given, is an absolute budget that overrides it. The KV cache gets what the budget leaves (capped
    by max_num_seqs full contexts) unless num_kv_blocks or kv_cache_bytes say otherwise; anything
    that cannot fit raises eli.OutOfMemoryError at load, with the numbers. On the CPU the KV cache
    holds max_num_seqs full contexts, at most 1/8 of the available RAM (at least one context).
    self.info has the plan (weight_dtype, kv_cache_dtype, num_kv_blocks, memory bytes, threads);
    self.load_summary says it in one line (also logged to the "eli" logger at INFO).
    Sampling defaults (generate(params=None), a dict of fields, get_default_sampling_params()): the
    model's generation_config.json or GGUF general.sampling.* values when it has any, else
    temperature 0.7, top_p 0.9 (self.default_sampling, self.default_sampling_source).
    """

    _caller = "EngineFrontend"

    def __init__(self, model: Optional[str] = None, *, download: bool = True, progress: bool = True, **options):
        values = engine_options.engine_values(options, self._caller)
        for name, v in (("download", download), ("progress", progress)):
            if not isinstance(v, bool):
                raise InvalidRequestError(f"{self._caller}(): {name} must be True or False, got {v!r}")
        _eager_loading_for_shared_gpus(str(values.get("devices") or ""))
        native = _native()
        engine_options.check_native(native)
        values["device"] = _resolve_device(values["device"])
        path = hub.resolve_model(model, allow_download=download, progress=progress)
        meta = native.inspect_model(path)
        self.model_path = path
        self.options = values
        engine = native.AsyncEngine(engine_options.engine_config(path, values))
        try:
            self.info = engine.info()
            self.tokenizer = None if values["skip_tokenizer_init"] else self._load_tokenizer(path, meta)
        except BaseException:
            engine.shutdown(False)
            raise
        self._engine = engine
        # EOS ids the tokenizer knows (generation_config.json, GGUF) beyond the model config's.
        spec_eos = set(self.info["spec"]["eos_token_ids"])
        self._extra_eos = [i for i in (self.tokenizer.eos_token_ids if self.tokenizer else []) if i not in spec_eos]
        self.default_sampling, self.default_sampling_source = model_sampling_defaults(path, meta.get("gguf_metadata"))
        self.load_summary = self._summary(meta)
        _log.info("%s", self.load_summary)

    def _load_tokenizer(self, path: str, meta: dict) -> Tokenizer:
        vocab = self.info["spec"]["vocab_size"]
        try:
            if meta["format"] == "gguf":
                return Tokenizer.from_gguf_metadata(meta["gguf_metadata"], n_embedding_rows=vocab)
            return Tokenizer.from_hf_dir(path, n_embedding_rows=vocab)
        except (ValueError, OSError, TypeError) as e:
            raise ModelLoadError(f"{path}: tokenizer: {e} (to run the model on token ids without a tokenizer, "
                                 "pass skip_tokenizer_init=True)") from e

    def _summary(self, meta: dict) -> str:
        info = self.info
        stored = collections.Counter(t[1] for t in meta.get("tensors", ()) if len(t[2]) == 2).most_common(1)
        held = info["weight_dtype"]
        weights = f"{held} (from {stored[0][0]})" if stored and stored[0][0] != held else held
        kv_mib = info["memory"]["kv_bytes"] / 2**20
        window_blocks = info.get("num_kv_window_blocks", 0)
        window = f" (+{window_blocks} for the sliding-window layers)" if window_blocks else ""
        n = info["num_params"]
        size = f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"
        return (f"eli: {self.model_path} ({info['format']}, {size} parameters) on "
                f"{info['device']}: weights {weights}, KV cache {info['kv_cache_dtype']} {info['num_kv_blocks']} "
                f"blocks{window} x {info['block_size']} tokens ({kv_mib:.0f} MiB), context {info['max_model_len']}, "
                f"{info['num_threads']} threads; sampling defaults: {describe_defaults(self.default_sampling)} "
                f"({self.default_sampling_source})"
                + (f"; weights offloaded: {info['weight_placement']}"
                   if info["memory"].get("weights_host_bytes") or info["memory"].get("weights_disk_bytes") else ""))

    # ---- context manager ----------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def shutdown(self, drain: bool = False) -> None:
        """Stops the engine thread; requests still in flight end with finish_reason "abort"."""
        self._engine.shutdown(drain)

    # ---- prompts and params -------------------------------------------------------------------
    def _require_tokenizer(self, what: str) -> Tokenizer:
        if self.tokenizer is None:
            raise InvalidRequestError(f"{what} need a tokenizer, but this model was loaded with "
                                      "skip_tokenizer_init=True; pass token ids (a list of ints) instead")
        return self.tokenizer

    def _encode(self, prompt: Prompt) -> tuple[Optional[str], list[int]]:
        """(text or None, token ids) of one prompt: a string, a list of token ids, or vLLM's
        {"prompt": text} / {"prompt_token_ids": ids}."""
        if isinstance(prompt, dict):
            keys = set(prompt)
            if keys == {"prompt"} and isinstance(prompt["prompt"], str):
                prompt = prompt["prompt"]
            elif keys == {"prompt_token_ids"} and not isinstance(prompt["prompt_token_ids"], (str, dict)):
                prompt = prompt["prompt_token_ids"]
            else:
                raise InvalidRequestError(f"a dict prompt must be {{'prompt': str}} or {{'prompt_token_ids': [ids]}}, "
                                          f"got keys {sorted(map(str, keys))}")
        if isinstance(prompt, str):
            tok = self._require_tokenizer("text prompts")
            return prompt, tok.encode(_check_text(prompt, "the prompt"))
        if isinstance(prompt, (bytes, bytearray, memoryview)):
            raise InvalidRequestError("a prompt must be a string or a list of token ids, got bytes (decode it first, "
                                      "e.g. prompt.decode('utf-8'))")
        if prompt is None or not isinstance(prompt, (list, tuple, np.ndarray)):
            raise InvalidRequestError(f"a prompt must be a string or a list of token ids, got {type(prompt).__name__}")
        ids = list(prompt)
        for i in ids:
            if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
                raise InvalidRequestError(f"token ids must be integers, got {i!r}")
            if not -(2**31) <= int(i) < 2**31:  # the engine checks the vocabulary range
                raise InvalidRequestError(f"token id {int(i)} is outside the vocabulary")
        return None, [int(i) for i in ids]

    @staticmethod
    def _prompt_list(prompts) -> list:
        """One prompt or a list of prompts -> a list of prompts."""
        if prompts is None:
            raise InvalidRequestError("prompts must be a string, a list of token ids, or a list of those; got None")
        if isinstance(prompts, (str, dict, bytes, bytearray, memoryview)):
            return [prompts]
        if isinstance(prompts, np.ndarray):
            return [prompts] if prompts.ndim == 1 else list(prompts)
        if isinstance(prompts, (list, tuple)):
            if prompts and isinstance(prompts[0], (int, np.integer)) and not isinstance(prompts[0], bool):
                return [prompts]  # one prompt of token ids
            return list(prompts)
        if isinstance(prompts, Iterable):
            return list(prompts)
        raise InvalidRequestError(f"prompts must be a string, a list of token ids, or a list of those; "
                                  f"got {type(prompts).__name__}")

    def get_default_sampling_params(self, **overrides) -> SamplingParams:
        """SamplingParams with the model's sampling defaults (see the class doc), then `overrides`."""
        return SamplingParams.from_dict(overrides, self.default_sampling)

    def _params(self, params: ParamsLike) -> SamplingParams:
        """None -> the model's defaults; a dict of SamplingParams fields -> those fields over the
        model's defaults (as the OpenAI server treats a JSON body); a SamplingParams -> itself."""
        if params is None:
            return self.get_default_sampling_params()
        if isinstance(params, dict):
            return self.get_default_sampling_params(**params)
        if isinstance(params, SamplingParams):
            return params
        raise InvalidRequestError(f"params must be an eli.SamplingParams, a dict of its fields, or None; "
                                  f"got {type(params).__name__}")

    def _check_params(self, params: SamplingParams) -> SamplingParams:
        if params.stop and self.tokenizer is None:
            self._require_tokenizer("stop strings")
        return params

    def _engine_params(self, ids: list[int], params: SamplingParams):
        """The engine's params for one completion: max_tokens capped by the context (finish_reason
        "length" at the limit); a prompt that leaves no room is an InvalidRequestError."""
        limit = self.info["max_model_len"]
        room = limit - len(ids)
        if ids and room < 1:
            raise InvalidRequestError(f"the prompt ({len(ids)} tokens) leaves no room to generate within the "
                                      f"context length of {limit} tokens")
        model = None
        if params.structured:  # a fresh llguidance matcher per completion (eli.structured)
            spec = self.info["spec"]
            model = (self.tokenizer, spec["vocab_size"], list(spec["eos_token_ids"]) + list(self._extra_eos))
        return params.engine_params(self._extra_eos, max_tokens=min(params.max_tokens, max(room, 1)), model=model)

    def _tracker(self, rid, text: Optional[str], ids: list[int], params: SamplingParams) -> RequestTracker:
        return RequestTracker(rid, text, ids, params, self.tokenizer or _NoTokenizer())

    def chat_prompt_ids(self, messages: list[dict], chat_template: Optional[str] = None,
                        add_generation_prompt: bool = True) -> list[int]:
        """Renders `messages` with the chat template (the model's unless given) to prompt ids; user
        text never becomes special tokens (eli.chat_template.render_chat_ids). Bad messages (empty,
        unknown roles, wrong types) and template failures are InvalidRequestError."""
        tok = self._require_tokenizer("chat messages")
        if not isinstance(messages, (list, tuple)):
            raise InvalidRequestError(f"messages must be a list of {{'role': ..., 'content': ...}} dicts, "
                                      f"got {type(messages).__name__}")
        if not messages:
            raise InvalidRequestError("messages is empty: a chat needs at least one message")
        template = None if chat_template is None or chat_template == "" else chat_template
        try:
            # The template writes BOS itself where the model wants one.
            from .chat_template import render_chat_ids  # jinja2 and the sandbox: imported on first chat use

            return render_chat_ids(tok, template, list(messages), add_generation_prompt=add_generation_prompt)
        except InvalidRequestError:
            raise
        except (ValueError, TypeError) as e:
            raise InvalidRequestError(f"chat messages: {e}") from e

    _chat_prompt = chat_prompt_ids

    # ---- engine state ---------------------------------------------------------------------------
    def stats(self) -> dict:
        """Engine counters (KV blocks, running/waiting, preemptions and KV swaps, prefix cache, tokens, steps)."""
        return self._engine.stats()

    def health(self) -> dict:
        """healthy, error, steps, busy, seconds_since_last_step (busy and old: the loop is wedged)."""
        return self._engine.health()

    def healthy(self) -> bool:
        return self._engine.healthy()

    def score(self, token_ids: Iterable[int]) -> np.ndarray:
        """Logits of every position, float32 of shape (len, vocab) (for parity checks). Runs on the
        engine thread between two steps."""
        if isinstance(token_ids, (str, bytes, dict)) or token_ids is None:
            raise InvalidRequestError(f"score() takes a list of token ids, got {type(token_ids).__name__}")
        _, ids = self._encode(list(token_ids))
        return self._engine.score(ids)


def _document(cls, caller: str) -> None:
    """The option keywords in cls's signature and docstring (help(eli.LLM) lists them)."""
    import inspect

    init = cls.__init__
    base = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=Optional[str]),
            inspect.Parameter("download", inspect.Parameter.KEYWORD_ONLY, default=True, annotation=bool),
            inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=True, annotation=bool)]
    init.__signature__ = inspect.Signature(base + engine_options.signature_parameters())
    cls.__doc__ = (cls.__doc__ or "") + "\n\n" + EngineFrontend.__doc__ + "\n" + engine_options.docstring()


class LLM(EngineFrontend):
    """A loaded model ready to generate (blocking API). Usable as a context manager (`with
    eli.LLM(...) as llm:` shuts the engine down on exit)."""

    _caller = "LLM"

    def __init__(self, model: Optional[str] = None, **kwargs):
        super().__init__(model, **kwargs)
        self.last_stats: dict = {}

    # ---- requests ---------------------------------------------------------------------------
    def _add(self, prompt: Prompt, params: SamplingParams) -> RequestTracker:
        text, ids = self._encode(prompt)
        rid = self._engine.add_request(ids, self._engine_params(ids, params))
        return self._tracker(rid, text, ids, params)

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
                for rid, token, logprob, top, finish, error, extra in outs:
                    t = trackers[rid]
                    if token >= 0 and not t.finished:
                        if t.add_token(token, logprob, top):
                            engine.abort_request(rid)  # a stop string matched: free its blocks now
                        t.add_extra(extra)
                    if finish:
                        t.finish(finish, user_message(error))
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
                for rid, _, _, _, finish, error, _ in outs:
                    if finish:
                        trackers[rid].finish(finish, user_message(error))
                        open_ids.discard(rid)
            for t in trackers.values():
                if not t.finished:
                    t.finish("abort")

    def generate(self, prompts: Union[Prompt, Sequence[Prompt]],
                 params: Union[ParamsLike, Sequence[ParamsLike]] = None) -> list[RequestOutput]:
        """Generates for every prompt in one continuous batch; returns one RequestOutput per prompt,
        in prompt order, with params.n completions in .outputs (.text etc. are the first's).

        prompts: a string, a list of token ids, {"prompt": text} / {"prompt_token_ids": ids}, or a
        list of those. params: a SamplingParams, a dict of its fields (over the model's sampling
        defaults), None (the model's defaults), or one of those per prompt. max_tokens is an upper
        bound: a completion stops at the context limit with finish_reason "length"."""
        prompts = self._prompt_list(prompts)
        if isinstance(params, (list, tuple)):
            plist = [self._check_params(self._params(p)) for p in params]
            if len(plist) != len(prompts):
                raise InvalidRequestError(f"{len(plist)} sampling params for {len(prompts)} prompts")
        else:
            plist = [self._check_params(self._params(params))] * len(prompts)
        encoded = [self._encode(p) for p in prompts]
        # One engine request per completion: (prompt index, completion index, params).
        # prompt logprobs are the same for every completion: the first one asks for them
        jobs = [(i, c, sp if c == 0 or sp.prompt_logprobs is None else dataclasses.replace(sp, prompt_logprobs=None))
                for i, p in enumerate(plist) for c, sp in enumerate(p.completions())]
        rids = self._engine.add_requests([encoded[i][1] for i, _, _ in jobs],
                                         [self._engine_params(encoded[i][1], sp) for i, _, sp in jobs])
        trackers = {rid: self._tracker(rid, encoded[i][0], encoded[i][1], sp) for rid, (i, _, sp) in zip(rids, jobs)}
        start = time.perf_counter()
        for _ in self._run(trackers):
            pass
        self.last_stats = {"seconds": time.perf_counter() - start,
                           "generated_tokens": sum(len(t.output.token_ids) for t in trackers.values())}
        per_prompt: list[list] = [[] for _ in prompts]
        for rid, (i, _, _) in zip(rids, jobs):
            per_prompt[i].append(trackers[rid].result())
        results = []
        for (text, ids), outs in zip(encoded, per_prompt):
            if len(outs) == 1:
                results.append(outs[0])
            else:
                results.append(RequestOutput.from_completions(outs[0].request_id, text, ids, [
                    CompletionOutput(c, o.text, o.token_ids, o.logprobs, o.finish_reason, o.error)
                    for c, o in enumerate(outs)], prompt_logprobs=outs[0].prompt_logprobs))
        return results

    def embed(self, texts: Union[Prompt, Sequence[Prompt]], pooling: str = "last",
              normalize: bool = True) -> np.ndarray:
        """Embeddings of `texts`: the final hidden states (after the model's final norm) pooled over
        each prompt's tokens, as llama.cpp's and vLLM's embedding modes. pooling: "last" (the last
        token's state) or "mean" (the mean over every token). normalize: L2-normalized (default).
        texts: a prompt (string or token ids) or a list of them; returns float32 of shape (hidden,)
        for one prompt, (len(texts), hidden) for a list. All run in one continuous batch."""
        single = (isinstance(texts, (str, dict)) or (isinstance(texts, np.ndarray) and texts.ndim == 1)
                  or (isinstance(texts, (list, tuple)) and bool(texts) and isinstance(texts[0], (int, np.integer))))
        prompts = self._prompt_list(texts)
        if not prompts:
            raise InvalidRequestError("embed needs at least one input")
        encoded = [self._encode(p)[1] for p in prompts]
        rids = self._engine.add_requests(encoded, [embedding_params(self, ids, pooling) for ids in encoded])
        vectors = collect_embeddings(self._engine, rids, _kWaitMs)
        out = np.stack([finish_embedding(vectors[r], normalize) for r in rids])
        return out[0] if single else out

    def stream(self, prompt: Prompt, params: ParamsLike = None) -> Iterator[str]:
        """Yields text pieces as they are generated (never broken UTF-8, never part of a stop string).
        One completion (params.n must be 1); self.last_output has the RequestOutput afterwards."""
        params = self._check_params(self._params(params))
        if params.n != 1:
            raise InvalidRequestError(f"stream() yields one completion; n is {params.n} (use generate() for n > 1)")
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

    def chat(self, messages: list[dict], params: ParamsLike = None, *,
             chat_template: Optional[str] = None) -> RequestOutput:
        """One assistant reply to `messages` ([{"role": ..., "content": ...}, ...]); params.n
        replies in .outputs."""
        return self.generate([self._chat_prompt(messages, chat_template)], params)[0]

    def stream_chat(self, messages: list[dict], params: ParamsLike = None, *,
                    chat_template: Optional[str] = None) -> Iterator[str]:
        """As stream(), for one assistant reply to `messages` (checked and rendered at the call)."""
        return self.stream(self._chat_prompt(messages, chat_template), params)


_document(LLM, "LLM")
