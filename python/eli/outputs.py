# eli/outputs.py: what generate() returns, one RequestOutput per prompt (vLLM's names), with the
# prompt's logprobs when SamplingParams.prompt_logprobs asks.
#
# A RequestOutput holds its completions in `outputs` (one CompletionOutput per sample, n of them
# with SamplingParams(n=...)); `text`, `token_ids`, `logprobs`, `finish_reason` and `error` are
# the first completion's, kept as fields for the common n == 1 case (and for the streaming
# snapshots that extend this class). Invariant: outputs[0] always agrees with those fields: with
# no explicit list, `outputs` is built from them on each access (sharing the token and logprob
# lists); an explicit list (from_completions) sets them from its first entry.
from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass
class CompletionOutput:
    """One sampled completion of a prompt (vLLM's CompletionOutput)."""
    index: int
    text: str
    token_ids: list[int]
    # One dict per generated token: {token_id: logprob} holding the sampled token and the top-n.
    logprobs: Optional[list[dict[int, float]]] = None
    finish_reason: Optional[str] = None  # "stop", "length", "abort" or "error"
    error: Optional[str] = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


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
    # With SamplingParams.prompt_logprobs: per prompt token, {token_id: logprob} of that token plus
    # the top k; None for the first token (nothing precedes it). As vLLM's prompt_logprobs.
    prompt_logprobs: Optional[list[Optional[dict[int, float]]]] = None
    _completions: Optional[list[CompletionOutput]] = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def outputs(self) -> list[CompletionOutput]:
        """The completions (n of them with SamplingParams(n=...)); outputs[0] is `text` etc."""
        if self._completions is not None:
            return self._completions
        return [CompletionOutput(0, self.text, self.token_ids, self.logprobs, self.finish_reason, self.error)]

    @property
    def finished(self) -> bool:
        return all(c.finish_reason is not None for c in self.outputs)

    @classmethod
    def from_completions(cls, request_id, prompt: Optional[str], prompt_token_ids: list[int],
                         completions: list[CompletionOutput], prompt_logprobs=None) -> "RequestOutput":
        """A RequestOutput with several completions; its shortcut fields are the first one's."""
        first = completions[0]
        return cls(request_id=request_id, prompt=prompt, prompt_token_ids=prompt_token_ids, text=first.text,
                   token_ids=first.token_ids, logprobs=first.logprobs, finish_reason=first.finish_reason,
                   error=first.error, prompt_logprobs=prompt_logprobs, _completions=list(completions))
