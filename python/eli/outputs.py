# eli/outputs.py: what generate() returns, one RequestOutput per prompt (vLLM-like names).
from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass
class RequestOutput:
    request_id: int
    prompt: Optional[str]
    prompt_token_ids: list[int]
    text: str = ""
    token_ids: list[int] = dataclasses.field(default_factory=list)
    # One dict per generated token: {token_id: logprob} holding the sampled token and the top-n.
    logprobs: Optional[list[dict[int, float]]] = None
    finish_reason: Optional[str] = None  # "stop", "length", "abort" or "error"
    error: Optional[str] = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None
