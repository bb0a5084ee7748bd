# eli/server/embeddings.py: POST /v1/embeddings (OpenAI's shapes), registered by app.py: the pooled
# final hidden states (after the final norm) of the loaded model, as llama.cpp's and vLLM's
# embedding modes, through AsyncLLM.embed (one continuous batch with whatever else runs).
#
# input: a string, a list of strings, a list of token ids, or a list of token-id lists (at most
# kMaxEmbedInputs; none empty; ids inside the vocabulary; each shorter than the context).
# encoding_format: "float" (lists of numbers) or "base64" (little-endian float32 bytes, what the
# openai client asks for by default). dimensions: refused (400) unless it equals the model's hidden
# size (no truncation). Extensions: pooling "last" (default) or "mean"; normalize (default true,
# L2). usage counts the input tokens. A client that disconnects aborts its requests.
from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import List, Literal, Optional, Union

import numpy as np
from fastapi import Request
from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt

from ..errors import EliError, EngineDeadError, InvalidRequestError, OutOfMemoryError
from .core import _wait_disconnect
from .protocol import ApiError

kMaxEmbedInputs = 256


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: Optional[str] = None
    input: Union[str, List[str], List[StrictInt], List[List[StrictInt]]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[StrictInt] = None
    user: Optional[str] = None
    pooling: Literal["last", "mean"] = "last"
    normalize: StrictBool = True


def embedding_inputs(req: EmbeddingRequest, vocab_size: int, max_chars: int) -> list:
    """The request's inputs, each a string or a token-id list, checked."""
    x = req.input
    if isinstance(x, str):
        raw: list = [x]
    elif len(x) == 0:
        raise ApiError(400, "input must not be empty", param="input")
    elif isinstance(x[0], int):
        raw = [x]
    else:
        raw = list(x)
    if len(raw) > kMaxEmbedInputs:
        raise ApiError(400, f"at most {kMaxEmbedInputs} inputs per request, got {len(raw)}", param="input")
    for item in raw:
        if isinstance(item, str):
            if not item:
                raise ApiError(400, "input must not contain empty strings", param="input")
            if len(item) > max_chars:
                raise ApiError(400, f"an input has {len(item)} characters; more than {max_chars} cannot fit the "
                               f"context", param="input", code="context_length_exceeded")
        else:
            if not item:
                raise ApiError(400, "input must not contain empty token lists", param="input")
            bad = next((t for t in item if not 0 <= t < vocab_size), None)
            if bad is not None:
                raise ApiError(400, f"token id {bad} is outside the vocabulary [0, {vocab_size})", param="input")
    return raw


def _encode(vec: np.ndarray, fmt: str):
    if fmt == "base64":
        return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
    return [float(v) for v in vec]


def register(v1, srv) -> None:
    """Adds POST /embeddings to the /v1 router `v1` of the app serving `srv` (core.Server)."""

    @v1.post("/embeddings")
    async def embeddings(request: Request):
        req: EmbeddingRequest = await srv.read_body(request, EmbeddingRequest)
        hidden = int(srv.llm.info["spec"]["hidden_size"])
        if req.dimensions is not None and req.dimensions != hidden:
            raise ApiError(400, f"dimensions: this model's embeddings have {hidden} dimensions and cannot be "
                           f"shortened; leave dimensions out or set it to {hidden}", param="dimensions")
        inputs = embedding_inputs(req, srv.vocab_size, srv.max_prompt_chars)
        slots = srv.reserve(len(inputs), param="input")
        try:
            ids = await srv.encode_prompts(inputs)
            for x in ids:
                if len(x) >= srv.max_model_len:
                    raise ApiError(400, f"an input has {len(x)} tokens; this model's maximum context length is "
                                   f"{srv.max_model_len} tokens (at most {srv.max_model_len - 1} can be embedded)",
                                   param="input", code="context_length_exceeded")
            vectors = await _run(srv, request, ids, req.pooling, req.normalize)
        finally:
            slots.free = len(inputs)  # the requests ended (or never started): nothing waits any more
            slots.close()
        n_tokens = sum(len(x) for x in ids)
        return {"object": "list", "model": srv.model_name,
                "data": [{"object": "embedding", "index": i, "embedding": _encode(v, req.encoding_format)}
                         for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}}


async def _run(srv, request, ids: list, pooling: str, normalize: bool) -> np.ndarray:
    work = asyncio.ensure_future(srv.llm.embed(ids, pooling=pooling, normalize=normalize))
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():  # the client went away: cancelling aborts the requests
            work.cancel()
            with contextlib.suppress(BaseException):
                await work
            raise ApiError(499, "client disconnected", code="client_closed")
        out = work.result()
    except ApiError:
        raise
    except EngineDeadError as e:
        raise ApiError(503, str(e), type="service_unavailable") from None
    except (InvalidRequestError, ValueError) as e:
        raise ApiError(400, str(e), param="input") from None
    except (OutOfMemoryError, MemoryError) as e:
        raise ApiError(503, str(e) or "out of memory", type="service_unavailable") from None
    except (EliError, RuntimeError) as e:
        raise ApiError(500, f"engine error: {e}", type="server_error") from None
    finally:
        watcher.cancel()
        if not work.done():
            work.cancel()
    return out if out.ndim == 2 else out[None, :]
