# eli/detokenizer.py: streaming (incremental) detokenization.
#
# Decoding token by token is wrong for two reasons: a multibyte character can be split across
# tokens (byte-level BPE, SentencePiece <0xNN> byte fallback), and decoders are context dependent
# (SentencePiece strips the leading space of the first token only). So, like vLLM, we decode a
# sliding window: `prefix` = tokens[prefix_offset:read_offset] (already emitted, kept as context) and
# `full` = tokens[prefix_offset:]; the new text is full[len(prefix):], emitted only when it grew and
# does not end in U+FFFD (an incomplete UTF-8 sequence) or in a run of SentencePiece byte-fallback
# tokens (their decoder judges a run as a whole). The offsets move only when text is emitted.
# Invariant: the concatenation of push() pieces and flush() equals decode(context + pushed)
# minus decode(context) (context = the tail of prompt_ids; with no prompt, decode(pushed));
# flush() repairs any window artefact by diffing against one full decode at the end.
from __future__ import annotations

from typing import Iterable

kPromptContextTokens = 6  # prompt tokens kept as decoding context (enough for any space/byte logic)
kMaxHeldTokens = 64  # force the window forward if this many tokens produced no printable text


class IncrementalDetokenizer:
    """Turn a stream of token ids into text pieces that never contain broken UTF-8."""

    def __init__(self, tokenizer, prompt_ids: Iterable[int] | None = None, skip_special_tokens: bool = True):
        # tokenizer: eli.tokenizer.Tokenizer or anything with decode(ids, skip_special_tokens=...).
        self._tok = tokenizer
        self._skip = skip_special_tokens
        ctx = list(prompt_ids or [])[-kPromptContextTokens:]
        self._ids: list[int] = ctx  # context tokens then generated ones
        self._n_ctx = len(ctx)
        self._ctx_text = self._decode(ctx) if ctx else ""
        self._prefix_offset = 0
        self._read_offset = len(ctx)
        # Byte-fallback tokens decode as one run: a later invalid byte turns the whole run into U+FFFDs,
        # so text is held while the stream ends in such a run (skipped special tokens do not end a run).
        self._byte_ids = frozenset(getattr(tokenizer, "byte_fallback_ids", ()) or ())
        self._special_ids = frozenset(getattr(tokenizer, "special_token_ids", ()) or ()) if skip_special_tokens \
            else frozenset()
        self._emitted: list[str] = []
        self._emitted_len = 0
        self._flushed = False

    def _decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=self._skip)

    @property
    def token_ids(self) -> list[int]:
        """The generated ids pushed so far (without the prompt context)."""
        return self._ids[self._n_ctx:]

    @property
    def text(self) -> str:
        """Everything emitted so far."""
        return "".join(self._emitted)

    def push(self, token_id: int) -> str:
        """Add one generated token; return the text it completes ('' while held back)."""
        if self._flushed:
            raise RuntimeError("push() after flush()")
        self._ids.append(token_id)
        if self._byte_ids and self._in_byte_run():
            return ""
        window = self._ids[self._prefix_offset:]
        prefix_text = self._decode(self._ids[self._prefix_offset:self._read_offset])
        full_text = self._decode(window)
        held = len(self._ids) - self._read_offset
        if len(full_text) > len(prefix_text) and (not full_text.endswith("\ufffd") or held >= kMaxHeldTokens) \
                and full_text.startswith(prefix_text):
            piece = full_text[len(prefix_text):]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            self._emit(piece)
            return piece
        return ""

    def _in_byte_run(self) -> bool:
        for i in reversed(self._ids):
            if i in self._special_ids:
                continue
            return i in self._byte_ids
        return False

    def push_many(self, token_ids: Iterable[int]) -> str:
        return "".join(self.push(t) for t in token_ids)

    def flush(self) -> str:
        """End of stream: return whatever is still held back (incomplete bytes become U+FFFD)."""
        if self._flushed:
            return ""
        self._flushed = True
        full = self._decode(self._ids)
        if self._ctx_text and full.startswith(self._ctx_text):
            full = full[len(self._ctx_text):]
        elif self._ctx_text:
            # Context and generation merged across the boundary: fall back to the window diff.
            full = self.text + self._decode(self._ids[self._prefix_offset:])[
                len(self._decode(self._ids[self._prefix_offset:self._read_offset])):]
        emitted = self.text
        rest = full[len(emitted):] if full.startswith(emitted) else full[len(_common_prefix(full, emitted)):]
        self._emit(rest)
        return rest

    def _emit(self, piece: str) -> None:
        if piece:
            self._emitted.append(piece)
            self._emitted_len += len(piece)


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return a[:n]


__all__ = ["IncrementalDetokenizer"]
