# eli/structured/tokenizer.py: llguidance's view of an eli Tokenizer (its LLTokenizer): every
# token's bytes (Tokenizer.token_bytes), the special ids, the EOS ids, and the tokenizer itself for
# the strings llguidance needs tokenized. Built once per (tokenizer, vocab, eos) and cached on the
# tokenizer (building it walks the whole vocabulary: ~1 s at 128K tokens).
# The vocabulary is the model's (its logits rows, >= the tokenizer's): ids past the tokenizer are
# empty tokens llguidance never allows.
from __future__ import annotations

import threading
from typing import Sequence

_lock = threading.Lock()


class _Wrapped:
    """What llguidance.TokenizerWrapper reads: tokens, specials, EOS/BOS, and str -> ids."""

    def __init__(self, tokenizer, vocab_size: int, eos_ids: Sequence[int]):
        self._tok = tokenizer
        n = len(tokenizer)
        self.tokens = [tokenizer.token_bytes(i) if i < n else b"" for i in range(vocab_size)]
        self.special_token_ids = sorted(i for i in tokenizer.special_token_ids if i < vocab_size)
        self.eos_token_id = eos_ids[0] if eos_ids else None
        self.bos_token_id = getattr(tokenizer, "bos_token_id", None)

    def __call__(self, s):
        if not isinstance(s, str):
            raise TypeError("eli's tokenizer takes str")
        return self._tok.encode(s, add_special_tokens=False, parse_special=False)


def ll_tokenizer(tokenizer, vocab_size: int, eos_ids: Sequence[int]):
    """The llguidance.LLTokenizer of `tokenizer` over `vocab_size` ids with these EOS ids."""
    import llguidance

    key = (vocab_size, tuple(eos_ids))
    with _lock:
        cache = tokenizer.__dict__.setdefault("_eli_ll_tokenizers", {})
        tok = cache.get(key)
        if tok is None:
            wrapped = llguidance.TokenizerWrapper(_Wrapped(tokenizer, vocab_size, list(eos_ids)))
            try:
                tok = llguidance.LLTokenizer(wrapped, n_vocab=vocab_size, eos_token=list(eos_ids) or None)
            except TypeError:
                # llguidance before 1.9 takes one EOS id: the first one ends constrained output
                # there (the engine still stops on every EOS id it knows).
                tok = llguidance.LLTokenizer(wrapped, n_vocab=vocab_size,
                                             eos_token=eos_ids[0] if eos_ids else None)
            cache[key] = tok
    return tok
