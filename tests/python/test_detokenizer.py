# tests/python/test_detokenizer.py: streaming detokenization never breaks text.
#
# For the real SmolLM2 vocabulary (byte-level BPE) and the synthetic SentencePiece-style and byte-level
# GGUF vocabularies committed in tests/data/tokenizers: the pieces returned by push() plus flush() must equal
# tokenizer.decode(all ids), for random id sequences and for encoded multibyte/emoji text, with and
# without skipping special tokens; no piece may carry a U+FFFD that the final text does not have.
from __future__ import annotations

import random

import pytest

from test_tokenizer_gguf import eli_module, random_texts, read_gguf_meta, synthetic_gguf

Tokenizer = eli_module("tokenizer").Tokenizer
IncrementalDetokenizer = eli_module("detokenizer").IncrementalDetokenizer


@pytest.fixture(scope="module", params=["smollm2", "sp", "bl"])
def tok(request, smollm2_gguf):
    path = str(smollm2_gguf) if request.param == "smollm2" else str(synthetic_gguf(request.param))
    return Tokenizer.from_gguf_metadata(read_gguf_meta(path))


def _stream(tok, ids, prompt_ids=None, skip=True):
    d = IncrementalDetokenizer(tok, prompt_ids=prompt_ids, skip_special_tokens=skip)
    pieces = [d.push(i) for i in ids]
    pieces.append(d.flush())
    return pieces


def _check(tok, ids, skip=True):
    pieces = _stream(tok, ids, skip=skip)
    want = tok.decode(ids, skip_special_tokens=skip)
    assert "".join(pieces) == want, (ids, pieces, want)
    if "\ufffd" not in want:
        assert not any("\ufffd" in p for p in pieces), (ids, pieces)


def test_random_id_sequences(tok):
    rng = random.Random(7)
    n = tok.vocab_size
    byte_ids = [i for i in (tok.token_to_id(f"<0x{b:02X}>") for b in range(0x80, 0x100)) if i is not None]
    special = sorted(tok.special_token_ids)
    for k in range(400):
        ids = []
        for _ in range(rng.randint(1, 30)):
            r = rng.random()
            if r < 0.2 and byte_ids:
                ids.append(rng.choice(byte_ids))
            elif r < 0.3 and special:
                ids.append(rng.choice(special))
            else:
                ids.append(rng.randrange(n))
        _check(tok, ids, skip=k % 2 == 0)


def test_encoded_multibyte_text(tok):
    texts = random_texts(11, 400, []) + ["😀", "👨‍👩‍👧‍👦 family", "日本語のテキスト", "  leading spaces", "a\n\nb",
                                         "naïve café 🇫🇷 über", "e\u0301\u0301\u0301", "🤖" * 20]
    for s in texts:
        ids = tok.encode(s, add_special_tokens=False)
        _check(tok, ids)
        _check(tok, tok.encode(s), skip=False)


def test_bytes_held_until_complete():
    tok = Tokenizer.from_gguf_metadata(read_gguf_meta(str(synthetic_gguf("sp"))))
    ids = [tok.token_to_id(f"<0x{b:02X}>") for b in "😀".encode("utf-8")]
    d = IncrementalDetokenizer(tok)
    # A byte run is released by the first token after it (a later invalid byte would change the whole run).
    assert [d.push(i) for i in ids] == ["", "", "", ""]
    assert d.push(tok.token_to_id("a")) == "😀a"
    assert d.flush() == ""
    # Byte-level BPE: the character is released as soon as its last byte arrives.
    bl = Tokenizer.from_gguf_metadata(read_gguf_meta(str(synthetic_gguf("bl"))))
    alphabet = eli_module("gguf_vocab").byte_to_unicode()
    ids = [bl.token_to_id(alphabet[b]) for b in "😀".encode("utf-8")]
    d = IncrementalDetokenizer(bl)
    assert [d.push(i) for i in ids] == ["", "", "", "😀"]
    # An incomplete tail at the end of the stream comes out (as U+FFFD) on flush, like decode() gives it.
    d = IncrementalDetokenizer(tok)
    assert [d.push(i) for i in ids[:2]] == ["", ""]
    assert d.flush() == tok.decode(ids[:2])


def test_prompt_context_keeps_leading_space(tok):
    prompt = tok.encode("User: say hello\nAssistant:")
    gen = tok.encode(" Hello there, 世界 🌍!", add_special_tokens=False)
    pieces = _stream(tok, gen, prompt_ids=prompt)
    full, head = tok.decode(prompt + gen), tok.decode(prompt)
    assert full.startswith(head)
    assert "".join(pieces) == full[len(head):]
    assert "".join(pieces).startswith(" Hello")


def test_push_after_flush_rejected(tok):
    d = IncrementalDetokenizer(tok)
    d.flush()
    with pytest.raises(RuntimeError):
        d.push(0)
