# eli/request_tracker.py: the Python-side state of one request while the engine generates it:
# incremental detokenization, stop strings (which can span token boundaries), logprobs.
#
# Invariants: `pending_text()` never returns text that could still turn out to be the start of a
# stop string (it holds back the last max_stop_len - 1 characters until the request ends); once a
# stop string matched, the text ends right before it (or after it with include_stop_str_in_output)
# and the request is finished with reason "stop". `snapshot()` hands out each token, logprob and
# character exactly once as a delta (what pending_text() released, nothing of a partial stop string
# or of an incomplete UTF-8 sequence).
from __future__ import annotations

import dataclasses
from typing import Any, Optional

from .detokenizer import IncrementalDetokenizer
from .outputs import RequestOutput
from .sampling_params import SamplingParams


@dataclasses.dataclass
class StreamOutput(RequestOutput):
    """A cumulative snapshot of a streaming request plus what is new since the previous one.

    `text` is the text released so far (so the concatenated delta_text equals it); on the final
    snapshot (finish_reason set) it is the full output text."""

    delta_text: str = ""
    delta_token_ids: list[int] = dataclasses.field(default_factory=list)
    delta_logprobs: Optional[list[dict[int, float]]] = None


class RequestTracker:
    def __init__(self, request_id: Any, prompt: Optional[str], prompt_ids: list[int], params: SamplingParams,
                 tokenizer):
        self.params = params
        self.output = RequestOutput(request_id=request_id, prompt=prompt, prompt_token_ids=prompt_ids,
                                    logprobs=[] if params.logprobs is not None else None)
        self._detok = IncrementalDetokenizer(tokenizer, prompt_ids, skip_special_tokens=params.skip_special_tokens)
        self._stops = list(params.stop or [])
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._text = ""        # all decoded text so far (up to a stop string, if one matched)
        self._emitted = 0      # chars of _text already handed out by pending_text()
        self._sent_tokens = 0  # tokens (and logprob entries) already handed out by snapshot()

    @property
    def finished(self) -> bool:
        return self.output.finish_reason is not None

    def add_token(self, token: int, logprob: float, top: list) -> bool:
        """Records a generated token. Returns True when a stop string just ended the request."""
        out = self.output
        out.token_ids.append(token)
        if out.logprobs is not None:
            entry = {int(t): float(lp) for t, lp in top}
            entry[int(token)] = float(logprob)
            out.logprobs.append(entry)
        return self._append_text(self._detok.push(token))

    def add_extra(self, extra: Optional[dict]) -> None:
        """What an engine output carries besides its token (prompt logprobs on the first one)."""
        if self.params.prompt_logprobs is None or self.output.prompt_logprobs is not None:
            return
        if extra is None and self.output.token_ids == []:
            return  # an output without a token (an end) before the first one
        entries = (extra or {}).get("prompt_logprobs") or []
        self.output.prompt_logprobs = [None] + [{int(t): float(lp) for t, lp in reversed(e)} for e in entries]

    def _append_text(self, piece: str) -> bool:
        if not piece:
            return False
        start = max(0, len(self._text) - self._hold)
        self._text += piece
        if not self._stops:
            return False
        best = -1
        best_stop = ""
        for s in self._stops:
            i = self._text.find(s, start)
            if i != -1 and (best == -1 or i < best):
                best, best_stop = i, s
        if best == -1:
            return False
        end = best + len(best_stop) if self.params.include_stop_str_in_output else best
        self._text = self._text[:end]
        self._emitted = min(self._emitted, len(self._text))
        self.output.finish_reason = "stop"
        return True

    def finish(self, reason: str, error: str = "") -> None:
        """The engine ended the request (stop token, length, abort, error)."""
        if self.finished:
            return  # a stop string already ended it; the engine's abort echo changes nothing
        self._append_text(self._detok.flush())
        if not self.finished:
            self.output.finish_reason = reason
        if error:
            self.output.error = error

    def pending_text(self) -> str:
        """New text that is safe to show now."""
        limit = len(self._text) if self.finished else max(self._emitted, len(self._text) - self._hold)
        piece = self._text[self._emitted:limit]
        self._emitted = limit
        return piece

    def result(self) -> RequestOutput:
        self.output.text = self._text
        return self.output

    def snapshot(self) -> StreamOutput:
        """The cumulative state now, with the deltas since the previous snapshot."""
        out = self.output
        delta_text = self.pending_text()
        n = len(out.token_ids)
        delta_ids = out.token_ids[self._sent_tokens:n]
        delta_lp = None if out.logprobs is None else out.logprobs[self._sent_tokens:n]
        self._sent_tokens = n
        return StreamOutput(request_id=out.request_id, prompt=out.prompt, prompt_token_ids=out.prompt_token_ids,
                            text=self._text[:self._emitted], token_ids=list(out.token_ids),
                            logprobs=None if out.logprobs is None else list(out.logprobs),
                            finish_reason=out.finish_reason, error=out.error,
                            prompt_logprobs=out.prompt_logprobs, delta_text=delta_text,
                            delta_token_ids=delta_ids, delta_logprobs=delta_lp)
