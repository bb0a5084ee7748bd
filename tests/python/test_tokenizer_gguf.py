# tests/python/test_tokenizer_gguf.py: eli's tokenizers vs committed Hugging Face transformers references.
#
# Three GGUF vocabularies: the real SmolLM2 file (byte-level "gpt2" BPE), a synthetic SentencePiece
# style one ("llama": byte fallback, Metaspace, merges derived from scores) and a synthetic byte-level
# one with a llama-bpe split regex and a user-defined token (tests/data/tokenizers/{sp,bl}.gguf), plus
# the HF-directory form of the sp tokenizer (tests/data/tokenizers/sp_hf). For each, eli's Tokenizer
# (built from the GGUF metadata dict the C++ reader hands over) must give the same ids and the same
# decoded text as transformers.AutoTokenizer(gguf_file=...) did on a few thousand seeded random strings.
# The transformers outputs are committed (tests/data/tokenizers/*_reference.json.gz), written by
# scripts/make_tokenizer_references.py: no transformers / torch at test time. Plus the validation paths
# (bad metadata -> ValueError) and the input-size budget.
# The helpers at the top are reused by test_detokenizer.py, test_chat_template.py and the script.
from __future__ import annotations

import functools
import gzip
import importlib
import json
import pathlib
import random
import sys
import types

import pytest

kEliDir = pathlib.Path(__file__).resolve().parents[2] / "python" / "eli"
kTokDataDir = pathlib.Path(__file__).resolve().parents[1] / "data" / "tokenizers"


def eli_module(name: str):
    """Import eli.<name> without needing the compiled _eli extension."""
    try:
        return importlib.import_module(f"eli.{name}")
    except ImportError:
        pkg = types.ModuleType("eli")
        pkg.__path__ = [str(kEliDir)]
        sys.modules["eli"] = pkg
        return importlib.import_module(f"eli.{name}")


Tokenizer = eli_module("tokenizer").Tokenizer
gguf_vocab = eli_module("gguf_vocab")


# ---- GGUF + reference helpers ---------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def read_gguf_meta(path: str) -> dict:
    """The GGUF key/value metadata as a plain dict: the compiled reader's (eli.inspect_model) when the
    extension is built, else read with the pure-Python gguf package the same way."""
    try:
        from eli import _eli
    except ImportError:
        _eli = None
    if _eli is not None:
        return dict(_eli.inspect_model(str(path))["gguf_metadata"])
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(path)
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        kind = field.types[0]
        if kind == GGUFValueType.ARRAY:
            if field.types[-1] == GGUFValueType.STRING:
                out[key] = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
            else:
                vals = [x.item() for i in field.data for x in field.parts[i]]
                out[key] = [bool(v) for v in vals] if field.types[-1] == GGUFValueType.BOOL else vals
        elif kind == GGUFValueType.STRING:
            out[key] = bytes(field.parts[field.data[0]]).decode("utf-8")
        else:
            v = field.parts[field.data[0]][0].item()
            out[key] = bool(v) if kind == GGUFValueType.BOOL else v
    return out


def synthetic_gguf(name: str) -> pathlib.Path:
    """Path of a committed synthetic vocabulary: 'sp' (SentencePiece style) or 'bl' (byte-level)."""
    return kTokDataDir / f"{name}.gguf"


@functools.lru_cache(maxsize=8)
def load_reference(name: str) -> dict:
    """A committed transformers reference (scripts/make_tokenizer_references.py wrote it)."""
    with gzip.open(kTokDataDir / f"{name}_reference.json.gz", "rt", encoding="utf-8") as f:
        ref = json.load(f)
    assert ref["generator"] == "scripts/make_tokenizer_references.py"
    return ref


def random_texts(seed: int, n: int, specials: list[str]) -> list[str]:
    """Seeded random strings covering the hard cases of tokenization."""
    rng = random.Random(seed)
    ascii_words = ["the", "quick", "brown", "fox", "Hello", "WORLD", "tokenizer", "don't", "I'm", "we'll", "it's"]
    pools = {
        "punct": list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
        "space": [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u3000", "      "],
        "digit": ["0", "7", "42", "1234", "3.14159", "1,000,000", "2024-01-31", "٣", "१२"],
        "cjk": ["日本語", "中文", "한국어", "ひらがな", "カタカナ", "漢字テスト", "你好世界", "ｆｕｌｌｗｉｄｔｈ"],
        "emoji": ["😀", "🚀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "❤️", "🤖", "🧪", "\U0001f9d1\u200d\U0001f4bb"],
        "latin": ["café", "naïve", "Ærøskøbing", "São Paulo", "Straße", "e\u0301", "n\u0303o", "Œuvre", "ĳ", "ǅ"],
        "code": ["def f(x):\n    return x + 1\n", "for (int i = 0; i < n; ++i) {", "a->b", "x == y && z != w",
                 "#include <stdio.h>", "print(f\"{x!r}\")", "    ", "\tif x:\n\t\tpass", "SELECT * FROM t;"],
        "other": ["Ελληνικά", "русский", "עברית", "العربية", "हिन्दी", "ไทย", "\u200b", "\ufeff", "\x00", "\x7f"],
        "special": specials,
    }
    names = [k for k, v in pools.items() if v]
    out = ["", " ", "  ", "\n", "a", " a", "  a", "a ", *specials]
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 10)):
            r = rng.random()
            if r < 0.3:
                parts.append(rng.choice(ascii_words))
            elif r < 0.35:
                parts.append("".join(chr(rng.randint(0x20, 0x7E)) for _ in range(rng.randint(1, 8))))
            elif r < 0.38:
                parts.append(chr(rng.choice([rng.randint(0xA0, 0xD7FF), rng.randint(0xE000, 0xFFFD),
                                             rng.randint(0x10000, 0x10FFFF)])))
            else:
                parts.append(rng.choice(pools[rng.choice(names)]))
            if rng.random() < 0.5:
                parts.append(rng.choice(["", " ", " ", "\n"]))
        out.append("".join(parts))
    return out


# ---- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smol(smollm2_gguf):
    return Tokenizer.from_gguf_metadata(read_gguf_meta(str(smollm2_gguf))), load_reference("smollm2")


@pytest.fixture(scope="module", params=["sp", "bl"])
def synthetic(request):
    path = synthetic_gguf(request.param)
    return Tokenizer.from_gguf_metadata(read_gguf_meta(str(path))), load_reference(request.param)


def _compare(eli_tok, ref: dict) -> None:
    assert len(ref["cases"]) > 100 and len(ref["id_cases"]) == 300
    n_extra = 0
    for case in ref["cases"]:
        s, ids = case["text"], case["ids"]
        assert eli_tok.encode(s) == ids, f"encode mismatch on {s!r}"
        if "ids_no_add" in case:
            n_extra += 1
            assert eli_tok.encode(s, add_special_tokens=False) == case["ids_no_add"], s
            assert eli_tok.encode(s, parse_special=False) == case["ids_split"], s
        assert eli_tok.decode(ids) == case["decode"], f"decode mismatch on {s!r}"
        assert eli_tok.decode(ids, skip_special_tokens=False) == case["decode_keep"], s
    assert n_extra > 0
    # Random id sequences (byte tokens out of order, specials in the middle) decode the same too.
    for case in ref["id_cases"]:
        ids = case["ids"]
        assert eli_tok.decode(ids) == case["decode"], ids
        assert eli_tok.decode(ids, skip_special_tokens=False) == case["decode_keep"], ids


# ---- parity ------------------------------------------------------------------------------------
def test_smollm2_matches_transformers(smol):
    eli_tok, ref = smol
    assert eli_tok.vocab_size == 49152 == ref["vocab_size"]
    assert eli_tok.bos_token_id == ref["bos_token_id"] == 1
    assert eli_tok.eos_token_ids == [ref["eos_token_id"]] == [2]
    assert eli_tok.chat_template == ref["chat_template"]
    assert eli_tok.special_tokens["eos_token"] == "<|im_end|>"
    assert any("<|im_start|>" in c["text"] for c in ref["cases"])
    _compare(eli_tok, ref)


def test_synthetic_matches_transformers(synthetic):
    eli_tok, ref = synthetic
    assert eli_tok.vocab_size == ref["vocab_size"]
    assert eli_tok.bos_token_id == ref["bos_token_id"]
    assert eli_tok.eos_token_ids == [ref["eos_token_id"]]
    # add_bos is on for both synthetic files (llama default / explicit flag).
    assert eli_tok.encode("hi")[0] == eli_tok.bos_token_id
    _compare(eli_tok, ref)


def test_from_hf_dir_matches_transformers():
    ref = load_reference("sp_hf")
    tok = Tokenizer.from_hf_dir(kTokDataDir / "sp_hf")
    assert tok.eos_token_ids == ref["generation_config"]["eos_token_id"] == [2, 0]
    assert tok.bos_token_id == ref["bos_token_id"] == 1
    assert tok.chat_template == ref["chat_template"]
    assert len(ref["cases"]) > 100
    for case in ref["cases"]:
        ids = tok.encode(case["text"])
        assert ids == case["ids"], case["text"]
        assert tok.decode(ids) == case["decode"]


# ---- validation --------------------------------------------------------------------------------
def _small_meta() -> dict:
    return dict(read_gguf_meta(str(synthetic_gguf("sp"))))


def test_unknown_tokenizer_model_rejected():
    meta = _small_meta()
    meta["tokenizer.ggml.model"] = "rwkv"
    with pytest.raises(ValueError, match="rwkv"):
        Tokenizer.from_gguf_metadata(meta)


def test_bad_metadata_rejected():
    base = read_gguf_meta(str(synthetic_gguf("bl")))
    bad_merges = dict(base, **{"tokenizer.ggml.merges": base["tokenizer.ggml.merges"] + ["zzq\u2603 xyz"]})
    with pytest.raises(ValueError, match="unknown token"):
        Tokenizer.from_gguf_metadata(bad_merges)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        Tokenizer.from_gguf_metadata(dict(base, **{"tokenizer.ggml.bos_token_id": 10**9}))
    with pytest.raises(ValueError, match="token_type"):
        Tokenizer.from_gguf_metadata(dict(base, **{"tokenizer.ggml.token_type": [1, 2]}))
    with pytest.raises(ValueError, match="tokens"):
        Tokenizer.from_gguf_metadata({"tokenizer.ggml.model": "gpt2"})
    with pytest.raises(ValueError, match="expected"):
        Tokenizer.from_gguf_metadata(dict(base, **{"tokenizer.ggml.tokens": "abc"}))
    with pytest.raises(ValueError, match="embedding rows"):
        Tokenizer.from_gguf_metadata(base, n_embedding_rows=10)


def test_input_budget():
    tok = Tokenizer.from_gguf_metadata(_small_meta(), max_input_chars=1000)
    assert len(tok.encode("a" * 1000)) > 0
    with pytest.raises(ValueError, match="budget"):
        tok.encode("a" * 1001)
    with pytest.raises(ValueError):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError):
        tok.decode([-1])


def test_merges_from_scores_order():
    tokens = ["a", "b", "c", "ab", "bc", "abc"]
    merges = gguf_vocab.merges_from_scores(tokens, [0, 0, 0, -1, -2, -0.5])
    assert merges == [("ab", "c"), ("a", "bc"), ("a", "b"), ("b", "c")]
