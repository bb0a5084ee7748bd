# eli/embeddings.py: what LLM.embed and AsyncLLM.embed share: the engine params of an embedding
# request (SamplingParams::pooling, include/eli/sampling_params.h), reading the pooled vectors back,
# and the L2 normalization.
#
# Invariants: an embedding request samples nothing; it ends after its prompt with one output whose
# extra holds the pooled final hidden state (after the final norm; mean pooling already divided
# by the prompt length). collect_embeddings returns only when every request it waits for has
# ended: on an error or an interrupt it aborts the rest and waits for their ends (KV blocks free).
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import EliError, InvalidRequestError, user_message
from .sampling_params import SamplingParams

POOLINGS = {"last": 1, "mean": 2}  # include/eli/sampling_params.h kPoolingLast / kPoolingMean


def embedding_params(frontend, ids: Sequence[int], pooling: str):
    """The engine params of one embedding request (the prompt must leave one token of context)."""
    if pooling not in POOLINGS:
        raise InvalidRequestError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    limit = frontend.info["max_model_len"]
    if len(ids) >= limit:
        raise InvalidRequestError(f"the input has {len(ids)} tokens; at most {limit - 1} can be embedded "
                                  f"(the context length is {limit})")
    p = SamplingParams(max_tokens=1, ignore_eos=True).engine_params()
    p.pooling = POOLINGS[pooling]
    return p


def finish_embedding(vec, normalize: bool) -> np.ndarray:
    v = np.asarray(vec, dtype=np.float32)
    if normalize:
        norm = float(np.linalg.norm(v.astype(np.float64)))
        if norm > 0.0:
            v = (v / norm).astype(np.float32)
    return v


def take(outs, vectors: dict, pending: set) -> None:
    """Records the ends among engine output tuples (rid, token, logprob, top, finish, error, extra)."""
    for rid, _, _, _, finish, error, extra in outs:
        if not finish or rid not in pending:
            continue
        pending.discard(rid)
        if finish != "stop" or not extra or "embedding" not in extra:
            vectors[rid] = EliError(f"embedding request ended with {finish}: {user_message(error)}".rstrip(": "))
        else:
            vectors[rid] = extra["embedding"]


def collect_embeddings(engine, rids: list, wait_ms: int) -> dict:
    """{request id: pooled vector} of embedding requests, waiting for all; raises the first error."""
    pending, vectors = set(rids), {}
    try:
        while pending:
            outs = engine.wait_request_outputs(list(pending), wait_ms)
            if outs is None:
                raise EliError("the engine stopped before the embeddings were computed")
            take(outs, vectors, pending)
    finally:
        if pending:
            for rid in pending:
                engine.abort_request(rid)
            while pending:
                outs = engine.wait_request_outputs(list(pending), wait_ms)
                if outs is None:
                    break
                take(outs, vectors, pending)
    for rid in rids:
        if isinstance(vectors.get(rid), BaseException):
            raise vectors[rid]
    return vectors
