# tests/python/test_gguf_gemma_tokenizer.py: Gemma's tokenizer rebuilt from GGUF metadata alone,
# against Hugging Face's tokenizer for the same model and against llama.cpp.
#
# tests/data/gemma_tokenizer/ (scripts/make_gemma_tokenizer_reference.py) holds a small Gemma-style
# SentencePiece BPE tokenizer in both forms: hf/tokenizer.json (transformers' GemmaTokenizerFast) and
# gemma.gguf (the metadata convert_hf_to_gguf.py writes for gemma3: user-defined space runs spelled
# with real spaces, every added token scored -1000), plus expected.json: the ids, decodes and chat
# renders transformers / tokenizers and llama.cpp gave for a fixed list of texts. eli must match
# tokenizer.json exactly (ids, ids with special-token strings as text, decodes), on the fixed texts and
# on seeded random ones compared live against tokenizer.json; llama.cpp agrees with it except on the
# documented whitespace cases (kLlamaCppDiffers), where we follow Hugging Face.
from __future__ import annotations

import copy
import json
import pathlib

import pytest

from test_tokenizer_gguf import eli_module, random_texts, read_gguf_meta

tokenizers = pytest.importorskip("tokenizers")

Tokenizer = eli_module("tokenizer").Tokenizer
gguf_vocab = eli_module("gguf_vocab")
chat_template = eli_module("chat_template")

kDir = pathlib.Path(__file__).resolve().parents[1] / "data" / "gemma_tokenizer"
kGguf = kDir / "gemma.gguf"
kSpecials = ["<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>", "<mask>", "<unk>", "[@BOS@]",
             "<unused0>", "<table>", "<tr>", "\u2581\u2581", "\n\n"]
# Where llama.cpp's ids differ from Hugging Face's (we follow Hugging Face):
#   a run of 9 spaces: HF's BPE merges the run pairwise ("\u2581"*4, "\u2581"*2, "\u2581"*3); llama.cpp
#     matches the longest user-defined run first ("\u2581"*8, "\u2581"), as SentencePiece itself does;
#   literal "\u2581" characters in the text: HF normalizes them into the same pieces as spaces;
#     llama.cpp's user-defined tokens are spelled with spaces, so they match nothing there.
kLlamaCppDiffers = {" " * 9, "\u2581 \u2581\u2581 literal", "\u2581\u2581\u2581"}


@pytest.fixture(scope="module")
def meta() -> dict:
    return read_gguf_meta(str(kGguf))


@pytest.fixture(scope="module")
def eli_tok(meta):
    return Tokenizer.from_gguf_metadata(meta)


@pytest.fixture(scope="module")
def hf_tok():
    return tokenizers.Tokenizer.from_file(str(kDir / "hf" / "tokenizer.json"))


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((kDir / "expected.json").read_text(encoding="utf-8"))


def test_reference_shape(meta, expected):
    # The file is what convert_hf_to_gguf.py writes for a Gemma 3 SentencePiece vocabulary.
    assert meta["general.architecture"] == "gemma3" and meta["tokenizer.ggml.model"] == "llama"
    assert meta["tokenizer.ggml.add_space_prefix"] is False and "tokenizer.ggml.merges" not in meta
    toks, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    assert toks[15] == "  " and types[15] == gguf_vocab.kTokenUserDefined  # "\u2581\u2581" in the model
    assert types[toks.index("<start_of_turn>")] == gguf_vocab.kTokenControl
    assert len(expected["texts"]) > 50 and all("llama_cpp" in r for r in expected["texts"])


def test_fixed_texts_match_hf(eli_tok, expected):
    for row in expected["texts"]:
        text = row["text"]
        ids = eli_tok.encode(text)
        assert ids == row["hf"], text
        assert eli_tok.encode(text, parse_special=False) == row["hf_split"], text
        assert eli_tok.decode(ids) == row["hf_decode"], text
        assert eli_tok.decode(ids, skip_special_tokens=False) == row["hf_decode_keep"], text


def test_llama_cpp_agrees_except_documented(expected):
    differs = set()
    for row in expected["texts"]:
        if row["llama_cpp"] != row["hf"] or row["llama_cpp_plain"] != row["hf_split"]:
            differs.add(row["text"])
    assert differs == kLlamaCppDiffers


def test_random_texts_match_tokenizer_json(eli_tok, hf_tok):
    texts = random_texts(20261207, 1500, kSpecials)
    split = tokenizers.Tokenizer.from_str(hf_tok.to_str())
    split.encode_special_tokens = True
    for text in texts:
        ids = hf_tok.encode(text).ids
        assert eli_tok.encode(text) == ids, text
        assert eli_tok.encode(text, parse_special=False) == split.encode(text).ids, text
        assert eli_tok.encode(text, add_special_tokens=False) == hf_tok.encode(text, add_special_tokens=False).ids
        assert eli_tok.decode(ids) == hf_tok.decode(ids), text
        assert eli_tok.decode(ids, skip_special_tokens=False) == hf_tok.decode(ids, skip_special_tokens=False)


def test_round_trip(eli_tok):
    # No prefix space, no Strip: every text comes back exactly, leading and trailing spaces included.
    for text in random_texts(99, 800, kSpecials) + ["  x  ", " ", "\t \n", "\u2581x"]:
        ids = eli_tok.encode(text, add_special_tokens=False)
        want = text.replace("\u2581", " ")  # a literal word marker decodes as the space it stands for
        assert eli_tok.decode(ids, skip_special_tokens=False) == want, text


def test_special_tokens_parsed_whole(eli_tok, meta):
    toks = meta["tokenizer.ggml.tokens"]
    sot, eot = toks.index("<start_of_turn>"), toks.index("<end_of_turn>")
    assert eli_tok.encode("<start_of_turn>user\nhi<end_of_turn>", add_special_tokens=False)[0] == sot
    assert eot in eli_tok.encode("x<end_of_turn>", add_special_tokens=False)
    assert {sot, eot} <= eli_tok.special_token_ids
    assert sot not in eli_tok.encode("<start_of_turn>", add_special_tokens=False, parse_special=False)
    # A user-defined run is an ordinary (non-special) added token; its bytes are real spaces.
    run = toks.index("  ")
    assert run not in eli_tok.special_token_ids and eli_tok.token_bytes(run) == b"  "
    assert eli_tok.id_to_token(run) == "\u2581\u2581"
    assert eli_tok.decode([sot, run, eot]) == "  "


def test_bos_eos_as_metadata_says(meta):
    bos, eos = meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"]
    tok = Tokenizer.from_gguf_metadata(meta)
    assert tok.encode("") == [bos] and tok.encode("a")[0] == bos and tok.bos_token_id == bos
    assert tok.encode("a", add_special_tokens=False)[0] != bos
    m = dict(meta, **{"tokenizer.ggml.add_bos_token": False, "tokenizer.ggml.add_eos_token": True})
    tok2 = Tokenizer.from_gguf_metadata(m)
    assert tok2.encode("") == [eos] and tok2.encode("a")[-1] == eos and tok2.encode("a")[0] != bos


@pytest.mark.parametrize("arch", ["gemma", "gemma2", "gemma3", "gemma3n", "gemma-embedding"])
def test_every_gemma_architecture(meta, hf_tok, arch):
    tok = Tokenizer.from_gguf_metadata(dict(meta, **{"general.architecture": arch}))
    for text in ["Hello   world", "  x\t\ty", "a         b", "<start_of_turn>model\n"]:
        assert tok.encode(text) == hf_tok.encode(text).ids, (arch, text)


def test_merge_order_is_token_position_not_score(meta, hf_tok):
    # Gemma files score every added token -1000; the merges follow the piece order regardless.
    m = dict(meta, **{"tokenizer.ggml.scores": [0.0] * len(meta["tokenizer.ggml.scores"])})
    tok = Tokenizer.from_gguf_metadata(m)
    texts = random_texts(5, 300, kSpecials)
    assert all(tok.encode(t) == hf_tok.encode(t).ids for t in texts)
    # The generic SentencePiece builder (score-ranked merges, user-defined space runs as the file spells
    # them) gets Gemma wrong, even without its prefix space: the Gemma branch is what makes these match.
    plain = Tokenizer.from_gguf_metadata(dict(meta, **{"general.architecture": "llama"}))
    assert sum(plain.encode(t) != hf_tok.encode(t).ids for t in texts) >= 10
    prefixed = {k: v for k, v in meta.items() if k != "tokenizer.ggml.add_space_prefix"}
    plain = Tokenizer.from_gguf_metadata(dict(prefixed, **{"general.architecture": "llama"}))
    assert sum(plain.encode(t) != hf_tok.encode(t).ids for t in texts) > len(texts) // 4


def test_explicit_merges_used(meta, hf_tok):
    # A file that carries merges (some converters write them) uses them as given.
    model = json.loads(hf_tok.to_str())["model"]
    merges = [" ".join(p) if isinstance(p, list) else p for p in model["merges"]]
    tok = Tokenizer.from_gguf_metadata(dict(meta, **{"tokenizer.ggml.merges": merges}))
    texts = random_texts(6, 200, kSpecials)
    assert all(tok.encode(t) == hf_tok.encode(t).ids for t in texts)


def test_respelled_collision_refused(meta):
    m = copy.deepcopy(meta)
    toks, types = m["tokenizer.ggml.tokens"], m["tokenizer.ggml.token_type"]
    # An ordinary piece spelled "\u2581\u2581" beside the user-defined "  ": the respelling would collide.
    toks[toks.index("\u2581")] = "\u2581\u2581"
    with pytest.raises(ValueError, match="respelled"):
        gguf_vocab.build_gguf_vocab(m)
    types[toks.index("  ")] = gguf_vocab.kTokenNormal  # not user-defined: left as spelled, no collision
    gguf_vocab.build_gguf_vocab(m)


def test_chat_template_renders_like_transformers(eli_tok, hf_tok, meta, expected):
    assert eli_tok.chat_template == meta["tokenizer.chat_template"]
    for case in expected["chat"]:
        text = chat_template.render_chat(eli_tok.chat_template, case["messages"], case["add_generation_prompt"],
                                         eli_tok.bos_token, eli_tok.eos_token)
        assert text == case["text"]
        ids = chat_template.render_chat_ids(eli_tok, None, case["messages"], case["add_generation_prompt"])
        assert ids == hf_tok.encode(case["text"], add_special_tokens=False).ids
        assert ids[0] == eli_tok.bos_token_id and ids.count(eli_tok.bos_token_id) == 1


def test_token_bytes_match_hf_decode(eli_tok, hf_tok):
    # What each token contributes to the output (structured output and logprob bytes rely on it): the
    # decode of that token alone, with no prefix space to strip; a byte-fallback token is its byte.
    for i in range(eli_tok.vocab_size):
        got = eli_tok.token_bytes(i)
        if i in eli_tok.byte_fallback_ids:
            assert got == bytes([int(hf_tok.id_to_token(i)[3:5], 16)]), i
        else:
            assert got.decode("utf-8") == hf_tok.decode([i], skip_special_tokens=False), i


# ---- a generic SentencePiece ('llama') vocabulary with tokenizer.ggml.add_space_prefix = false ------
def test_llama_no_space_prefix_matches_llama_cpp(expected):
    # convert_hf_to_gguf.py writes the key from tokenizer_config.json's add_prefix_space; llama.cpp
    # (like the model's own tokenizer.json) then puts no word marker before the first word.
    tok = Tokenizer.from_gguf_metadata(read_gguf_meta(str(kDir / "sp_no_space_prefix.gguf")))
    assert len(expected["no_space_prefix"]) > 50
    for row in expected["no_space_prefix"]:
        assert tok.encode(row["text"], parse_special=False) == row["llama_cpp"], row["text"]
        assert tok.decode(row["llama_cpp"]) == row["text"]  # nothing stripped: the text comes back whole


def test_llama_no_space_prefix_is_the_prefixed_encoding_of_a_space(expected):
    meta = read_gguf_meta(str(kDir / "sp_no_space_prefix.gguf"))
    never = Tokenizer.from_gguf_metadata(meta)
    first = Tokenizer.from_gguf_metadata({k: v for k, v in meta.items() if k != "tokenizer.ggml.add_space_prefix"})
    # (Metaspace prepends no marker to empty text or to text that already starts with one.)
    texts = [t for t in random_texts(11, 400, []) if t and not t.startswith((" ", "\u2581"))]
    assert len(texts) > 300
    for text in texts:
        assert never.encode(" " + text, add_special_tokens=False) == first.encode(text, add_special_tokens=False)
        assert never.encode(text) != first.encode(text), text
