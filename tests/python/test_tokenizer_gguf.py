# tests/python/test_tokenizer_gguf.py: eli's tokenizers vs Hugging Face transformers.
#
# Three GGUF vocabularies: the real SmolLM2 file (byte-level "gpt2" BPE), a synthetic SentencePiece
# style one ("llama": byte fallback, Metaspace, merges derived from scores) and a synthetic byte-level
# one with a llama-bpe split regex and a user-defined token. For each, eli's Tokenizer (built from the
# metadata dict, read here with gguf.GGUFReader the way the C++ reader hands it over) must give the same
# ids and the same decoded text as transformers.AutoTokenizer(gguf_file=...) on a few thousand seeded
# random strings. Plus the validation paths (bad metadata -> ValueError) and the input-size budget.
# The helpers at the top are reused by test_detokenizer.py and test_chat_template.py.
from __future__ import annotations

import functools
import importlib
import pathlib
import random
import sys
import types

import pytest

kEliDir = pathlib.Path(__file__).resolve().parents[2] / "python" / "eli"


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


# ---- GGUF helpers ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def read_gguf_meta(path: str) -> dict:
    """The GGUF key/value metadata as a plain dict, like the C++ reader gives to eli."""
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


def _corpus(rng: random.Random, n: int) -> list[str]:
    words = ["hello", "world", "the", "token", "ünïcödé", "naïve", "café", "日本語", "中文字符", "emoji", "😀",
             "🚀🔥", "quick brown fox", "def f(x):", "return x+1", "  indented", "12345", "Ελληνικά", "русский",
             "<tag>", "don't", "I'll", "\n", "\t"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(n)]


def write_llama_gguf(path: pathlib.Path, vocab_size: int = 1200, seed: int = 0) -> None:
    """A tiny SentencePiece-style vocabulary (BPE + byte fallback + Metaspace) written as a 'llama' GGUF
    with tokens, scores and token types only (merges are derived from the scores)."""
    import gguf
    from tokenizers import Tokenizer as HfTok
    from tokenizers import models, pre_tokenizers, trainers

    tok = HfTok(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["<|user|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(_corpus(random.Random(seed), 2000) + random_texts(seed, 3000, []), trainer)
    tokens = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    scores, types_ = [], []
    for i, t in enumerate(tokens):
        kind = {"<unk>": 2, "<s>": 3, "</s>": 3, "<|user|>": 4}.get(t)
        if kind is None:
            kind = 6 if (t.startswith("<0x") and len(t) == 6) else 1
        types_.append(kind)
        scores.append(-float(i) if kind == 1 else 0.0)
    w = gguf.GGUFWriter(str(path), "llama")
    _add_llama_config(w, len(tokens))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types_)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_chat_template("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}")
    _finish(w)


def write_bytelevel_gguf(path: pathlib.Path, vocab_size: int = 1500, seed: int = 1) -> None:
    """A tiny byte-level BPE with merges, pre 'llama-bpe', control tokens and a user-defined token."""
    import json

    import gguf
    from tokenizers import Tokenizer as HfTok
    from tokenizers import models, pre_tokenizers, trainers

    tok = HfTok(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    # "<|endoftext|>" is present (as in GPT-2/Qwen vocabularies): transformers appends it past the vocabulary
    # of a byte-level file that lacks it, which eli deliberately does not do.
    trainer = trainers.BpeTrainer(vocab_size=vocab_size,
                                  special_tokens=["<|begin|>", "<|end|>", "<|endoftext|>", "<think>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(random.Random(seed), 2000) + random_texts(seed, 3000, []), trainer)
    model = json.loads(tok.to_str())["model"]
    tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    types_ = [3 if t in ("<|begin|>", "<|end|>", "<|endoftext|>") else 4 if t == "<think>" else 1 for t in tokens]
    w = gguf.GGUFWriter(str(path), "llama")
    _add_llama_config(w, len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types(types_)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|begin|>"))
    w.add_eos_token_id(tokens.index("<|end|>"))
    w.add_add_bos_token(True)
    _finish(w)


def _add_llama_config(w, n_vocab: int) -> None:
    # transformers builds a model config from the file before the tokenizer: give it a minimal one.
    w.add_block_count(1)
    w.add_context_length(128)
    w.add_embedding_length(8)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)


def _finish(w) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@functools.lru_cache(maxsize=4)
def hf_gguf_tokenizer(path: pathlib.Path):
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@functools.lru_cache(maxsize=1)
def synthetic_dir() -> pathlib.Path:
    import tempfile

    d = pathlib.Path(tempfile.mkdtemp(prefix="eli_tok_"))
    write_llama_gguf(d / "sp.gguf")
    write_bytelevel_gguf(d / "bl.gguf")
    return d


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
    return Tokenizer.from_gguf_metadata(read_gguf_meta(str(smollm2_gguf))), hf_gguf_tokenizer(smollm2_gguf)


@pytest.fixture(scope="module", params=["sp", "bl"])
def synthetic(request):
    path = synthetic_dir() / f"{request.param}.gguf"
    return Tokenizer.from_gguf_metadata(read_gguf_meta(str(path))), hf_gguf_tokenizer(path)


def _compare(eli_tok, hf_tok, texts: list[str], seed: int) -> None:
    rng = random.Random(seed)
    for s in texts:
        ids = eli_tok.encode(s)
        assert ids == hf_tok.encode(s), f"encode mismatch on {s!r}"
        if rng.random() < 0.25:
            assert eli_tok.encode(s, add_special_tokens=False) == hf_tok.encode(s, add_special_tokens=False), s
            assert eli_tok.encode(s, parse_special=False) == hf_tok.encode(s, split_special_tokens=True), s
        assert eli_tok.decode(ids) == hf_tok.decode(ids, skip_special_tokens=True), f"decode mismatch on {s!r}"
        assert eli_tok.decode(ids, skip_special_tokens=False) == hf_tok.decode(ids, skip_special_tokens=False)
    # Random id sequences (byte tokens out of order, specials in the middle) decode the same too.
    n = eli_tok.vocab_size
    for _ in range(300):
        ids = [rng.randrange(n) for _ in range(rng.randint(1, 12))]
        assert eli_tok.decode(ids) == hf_tok.decode(ids, skip_special_tokens=True), ids
        assert eli_tok.decode(ids, skip_special_tokens=False) == hf_tok.decode(ids, skip_special_tokens=False), ids


# ---- parity ------------------------------------------------------------------------------------
def test_smollm2_matches_transformers(smol):
    eli_tok, hf_tok = smol
    assert eli_tok.vocab_size == 49152 == len(hf_tok)
    assert eli_tok.bos_token_id == hf_tok.bos_token_id == 1
    assert eli_tok.eos_token_ids == [hf_tok.eos_token_id] == [2]
    assert eli_tok.chat_template == hf_tok.chat_template
    assert eli_tok.special_tokens["eos_token"] == "<|im_end|>"
    specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<file_sep>", "<|im_start|>user\nhi<|im_end|>"]
    _compare(eli_tok, hf_tok, random_texts(1234, 2500, specials), seed=1)


def test_synthetic_matches_transformers(synthetic):
    eli_tok, hf_tok = synthetic
    assert eli_tok.vocab_size == len(hf_tok)
    assert eli_tok.bos_token_id == hf_tok.bos_token_id
    assert eli_tok.eos_token_ids == [hf_tok.eos_token_id]
    # add_bos is on for both synthetic files (llama default / explicit flag).
    assert eli_tok.encode("hi")[0] == eli_tok.bos_token_id
    specials = ["<s>", "</s>", "<unk>", "<|begin|>", "<|end|>", "<think>", "<|user|>", "<0x41>"]
    _compare(eli_tok, hf_tok, random_texts(99, 1500, specials), seed=2)


def test_from_hf_dir_matches_transformers(tmp_path):
    import json

    _, hf_tok = Tokenizer, hf_gguf_tokenizer(synthetic_dir() / "sp.gguf")
    hf_tok.save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 0], "bos_token_id": 1}))
    tok = Tokenizer.from_hf_dir(tmp_path)
    assert tok.eos_token_ids == [2, 0]
    assert tok.bos_token_id == 1
    assert tok.chat_template == hf_tok.chat_template
    for s in random_texts(5, 300, ["<s>", "</s>"]):
        ids = tok.encode(s)
        assert ids == hf_tok.encode(s), s
        assert tok.decode(ids) == hf_tok.decode(ids, skip_special_tokens=True)


# ---- validation --------------------------------------------------------------------------------
def _small_meta() -> dict:
    return dict(read_gguf_meta(str(synthetic_dir() / "sp.gguf")))


def test_unknown_tokenizer_model_rejected():
    meta = _small_meta()
    meta["tokenizer.ggml.model"] = "rwkv"
    with pytest.raises(ValueError, match="rwkv"):
        Tokenizer.from_gguf_metadata(meta)


def test_bad_metadata_rejected():
    base = read_gguf_meta(str(synthetic_dir() / "bl.gguf"))
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
