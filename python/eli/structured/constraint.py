# eli/structured/constraint.py: LLGuidanceConstraint, one request's llguidance matcher behind the
# engine's TokenConstraint seam (include/eli/token_constraint.h; bridged by
# python/src/token_constraint_py.cc, which holds the GIL around each call).
#
# Invariants: one constraint per request (the engine calls it from its stepping thread only);
# fill_mask writes exactly (vocab + 31) // 32 uint32 words at the pointer it is given; a matcher in
# llguidance's error state raises (the engine ends that request with the message), never returns a
# mask that would let the request wander off the grammar.
from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from ..errors import InvalidRequestError


class ConstraintError(RuntimeError):
    """The matcher is in an error state (a rejected token, a resource limit)."""


_executor = None
_executor_lock = threading.Lock()


def _llg_executor():
    """llguidance's thread pool for the masks of a step (one per process)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            import llguidance

            _executor = llguidance.LLExecutor()
        return _executor


class LLGuidanceConstraint:
    def __init__(self, matcher, vocab_size: int):
        self._m = matcher
        self._vocab = vocab_size
        self._words = (vocab_size + 31) // 32
        self._scratch = None  # a mask of llguidance's width when it differs from the engine's

    def fill_mask(self, ptr: int, vocab: int) -> None:
        if vocab != self._vocab:
            raise ConstraintError(f"the engine's vocabulary ({vocab}) is not the constraint's ({self._vocab})")
        if self._m.is_error():
            raise ConstraintError(self._m.get_error())
        self._m.unsafe_compute_mask_ptr(ptr, self._words * 4)
        if self._m.is_error():
            raise ConstraintError(self._m.get_error())

    @classmethod
    def fill_masks_batch(cls, cons: list, index: list, ptr: int, words: int, vocab: int) -> list:
        """The masks of a step's constrained rows at once (the engine's TokenConstraint::fill_masks):
        cons[i]'s mask at ptr + index[i] * words * 4, computed on llguidance's thread pool.
        Returns one error message per constraint ("" for none)."""
        errors = [""] * len(cons)
        items = []
        for i, (c, k) in enumerate(zip(cons, index)):
            if vocab != c._vocab or words != c._words:
                errors[i] = f"the engine's vocabulary ({vocab}) is not the constraint's ({c._vocab})"
            elif c._m.is_error():
                errors[i] = c._m.get_error()
            else:
                items.append((c._m, int(k)))
        if items:
            _llg_executor().unsafe_compute_mask_ptr(items, ptr, words * 4, max(int(k) for k in index) + 1)
        for i, c in enumerate(cons):
            if not errors[i] and c._m.is_error():
                errors[i] = c._m.get_error()
        return errors

    def accept(self, token: int) -> bool:
        return bool(self._m.consume_token(token))

    def is_finished(self) -> bool:
        return bool(self._m.is_stopped()) and not self._m.is_error()

    def rollback(self, n: int) -> bool:
        return bool(self._m.rollback(n))

    # For tests and tools: the allowed ids of the next token.
    def allowed(self) -> np.ndarray:
        mask = np.zeros(self._words, dtype=np.uint32)
        self.fill_mask(mask.ctypes.data, self._vocab)
        bits = np.unpackbits(mask.view(np.uint8), bitorder="little")[: self._vocab]
        return np.nonzero(bits)[0]


def make_constraint(grammar: str, tokenizer, vocab_size: int, eos_ids: Sequence[int]) -> LLGuidanceConstraint:
    """A fresh matcher of `grammar` (from grammar.grammar_for) for one request."""
    import llguidance

    from .tokenizer import ll_tokenizer

    if tokenizer is None:
        raise InvalidRequestError("structured output (json_schema, regex, grammar, choice) needs a tokenizer, but "
                                  "this model was loaded with skip_tokenizer_init=True")
    tok = ll_tokenizer(tokenizer, vocab_size, eos_ids)
    matcher = llguidance.LLMatcher(tok, grammar, log_level=0)
    if matcher.is_error():
        raise InvalidRequestError(f"structured output: {matcher.get_error()}")
    return LLGuidanceConstraint(matcher, vocab_size)
