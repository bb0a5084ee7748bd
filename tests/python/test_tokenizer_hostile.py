# tests/python/test_tokenizer_hostile.py: hostile tokenizer files and model directories (issue 20
# items 2, 7, 16, 17, 18; RELIABILITY item 9).
#
#   - the tokenizer corpus (tests/data/malformed/text/tokenizers, scripts/make_hostile_text_corpus.py):
#     normalizer / decoder / post-processor bombs and files that make the tokenizers library panic are
#     refused at load with ModelLoadError;
#   - a panic of the library is never a BaseException escaping eli: ModelLoadError at load, EliError
#     afterwards; library messages do not quote file content;
#   - the per-call input limit is divided by the normalizer's expansion bound;
#   - the GGUF vocabulary corpus: derived-merge bombs and duplicate token strings are refused;
#   - model-directory files are contained (symlinks out of the directory, FIFOs, directories,
#     oversized or non-UTF-8 files), with the Hugging Face cache's blobs/ links still allowed;
#   - token_bytes gives each token's raw bytes (byte-level BPE pieces of a character, byte-fallback
#     tokens), which is what chat logprobs report.
from __future__ import annotations

import gzip
import json
import os
import pathlib
import shutil
import types

import pytest
from tokenizers import Tokenizer as HfTokenizer
from tokenizers import normalizers

from test_tokenizer_gguf import eli_module, kTokDataDir, random_texts, read_gguf_meta, synthetic_gguf

tokenizer_mod = eli_module("tokenizer")
guard = eli_module("tokenizer_guard")
model_dir = eli_module("model_dir")
gguf_vocab = eli_module("gguf_vocab")
errors = eli_module("errors")
Tokenizer = tokenizer_mod.Tokenizer
ModelLoadError, EliError, InvalidRequestError = errors.ModelLoadError, errors.EliError, errors.InvalidRequestError

kCorpus = kTokDataDir.parent / "malformed" / "text"
kManifest = json.loads((kCorpus / "manifest.json").read_text(encoding="utf-8"))
kSecret = "SECRET-4f1c-DO-NOT-QUOTE"


# ---- the tokenizer corpus ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", kManifest["tokenizers"], ids=lambda c: c["name"])
def test_hostile_tokenizer_corpus(case):
    with pytest.raises(ModelLoadError, match=case["expect"]) as info:
        Tokenizer.from_hf_dir(kCorpus / "tokenizers" / case["name"])
    assert isinstance(info.value, ValueError)
    assert "bbbbbbbb" not in str(info.value) and "zzzzzzzz" not in str(info.value)


def test_replace_bomb_would_have_been_fatal():
    # The same normalizer on its own (as tokenizers runs it) multiplies a 1,000-character prompt to
    # 100 M characters: what the load-time check stands in front of (shown on 10 characters here).
    cfg = json.loads((kCorpus / "tokenizers" / "normalizer_replace_bomb" / "tokenizer.json").read_text())
    raw = HfTokenizer.from_str(json.dumps(cfg))
    assert len(raw.normalizer.normalize_str("a" * 10)) == 1_000_000


def test_panic_at_encode_is_an_eli_error():
    # This charsmap loads, then panics on the first encode (the corpus case is refused by the load
    # probe). Called through backend_call, the panic is an EliError, not pyo3's PanicException.
    cfg = (kCorpus / "tokenizers" / "precompiled_panic_encode" / "tokenizer.json").read_text()
    raw = HfTokenizer.from_str(cfg)
    with pytest.raises(BaseException) as info:
        raw.encode("hello a")
    assert type(info.value).__name__ == "PanicException" and not isinstance(info.value, Exception)
    with pytest.raises(EliError, match="panicked"):
        guard.backend_call(raw.encode, "hello a")


def test_panic_class_detection():
    panic = type("PanicException", (BaseException,), {})

    def boom(*_):
        raise panic("index out of bounds `secret`")

    with pytest.raises(EliError, match="panicked") as info:
        guard.backend_call(boom)
    assert "secret" not in str(info.value)
    with pytest.raises(KeyboardInterrupt):
        guard.backend_call(lambda: (_ for _ in ()).throw(KeyboardInterrupt()))


def test_input_limit_follows_normalizer_expansion():
    tok = HfTokenizer.from_str((kTokDataDir / "sp_hf" / "tokenizer.json").read_text(encoding="utf-8"))
    tok.normalizer = normalizers.NFKC()
    t = Tokenizer(tok)
    assert t.max_input_chars == tokenizer_mod.kMaxNormalizedChars // 18
    with pytest.raises(InvalidRequestError, match="budget"):
        t.encode("x" * (t.max_input_chars + 1))
    assert Tokenizer.from_hf_dir(kTokDataDir / "sp_hf").max_input_chars == tokenizer_mod.kDefaultMaxInputChars


def test_unparsable_tokenizer_json_is_not_quoted(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "' + kSecret + '"}}')
    with pytest.raises(ModelLoadError, match="tokenizer.json could not be loaded") as info:
        Tokenizer.from_hf_dir(tmp_path)
    assert kSecret not in str(info.value)


# ---- GGUF vocabularies --------------------------------------------------------------------------------
@pytest.mark.parametrize("case", kManifest["gguf_vocab"], ids=lambda c: c["name"])
def test_hostile_gguf_vocab_corpus(case):
    meta = json.loads(gzip.decompress((kCorpus / "gguf_vocab" / f"{case['name']}.json.gz").read_bytes()))
    with pytest.raises(ValueError, match=case["expect"]):
        Tokenizer.from_gguf_metadata(meta)


def test_derived_merge_limits(monkeypatch):
    tokens = ["a", "b", "ab", "ba", "aba", "bab"]
    assert len(gguf_vocab.merges_from_scores(tokens, [0.0] * 6)) == 6
    monkeypatch.setattr(gguf_vocab, "kMaxDerivedMerges", 3)
    with pytest.raises(ValueError, match="merges"):
        gguf_vocab.merges_from_scores(tokens, [0.0] * 6)
    monkeypatch.setattr(gguf_vocab, "kMaxDerivedMerges", 100)
    monkeypatch.setattr(gguf_vocab, "kMaxMergeWork", 10)
    with pytest.raises(ValueError, match="would copy"):
        gguf_vocab.merges_from_scores(tokens, [0.0] * 6)


def test_duplicate_tokens():
    meta = dict(read_gguf_meta(str(synthetic_gguf("sp"))))
    tokens = list(meta["tokenizer.ggml.tokens"])
    dup = dict(meta, **{"tokenizer.ggml.tokens": tokens[:-1] + [tokens[300]]})
    with pytest.raises(ValueError, match="twice"):
        Tokenizer.from_gguf_metadata(dup)
    # Empty strings are exempt (llama.cpp renames them and loads the file).
    empties = dict(meta, **{"tokenizer.ggml.tokens": tokens[:-2] + ["", ""]})
    Tokenizer.from_gguf_metadata(empties)


def test_non_string_chat_template_is_a_load_error(tmp_path):
    meta = dict(read_gguf_meta(str(synthetic_gguf("sp"))), **{"tokenizer.chat_template": 5})
    with pytest.raises(ValueError, match="chat_template"):
        Tokenizer.from_gguf_metadata(meta)
    d = _copy_sp_hf(tmp_path)
    for bad in (5, [{"name": "default", "template": 5}], {"x": 1}):
        (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": bad}))
        with pytest.raises(ModelLoadError, match="chat_template"):
            Tokenizer.from_hf_dir(d)


# ---- model directory containment -------------------------------------------------------------------
def _copy_sp_hf(tmp_path) -> pathlib.Path:
    d = tmp_path / "model"
    shutil.copytree(kTokDataDir / "sp_hf", d)
    (d / "chat_template.jinja").unlink()  # so that tokenizer_config.json's chat_template is read
    return d


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                                  "generation_config.json", "special_tokens_map.json", "config.json"])
def test_symlink_out_of_the_directory_refused(tmp_path, name):
    d = _copy_sp_hf(tmp_path)
    outside = tmp_path / "passwd"
    outside.write_text(kSecret + ":x:0:0:root:/root:/bin/bash\n")
    (d / name).unlink(missing_ok=True)
    os.symlink(outside, d / name)
    with pytest.raises(ModelLoadError, match="outside the model directory") as info:
        Tokenizer.from_hf_dir(d)
    assert kSecret not in str(info.value)
    (d / name).unlink()
    os.symlink("../passwd", d / name)  # relative links are resolved too
    with pytest.raises(ModelLoadError, match="outside the model directory"):
        Tokenizer.from_hf_dir(d)


def test_fifo_directory_and_broken_links_refused(tmp_path):
    d = _copy_sp_hf(tmp_path)
    os.mkfifo(d / "chat_template.jinja")  # opening a FIFO blocks forever without O_NONBLOCK
    with pytest.raises(ModelLoadError, match="not a regular file"):
        Tokenizer.from_hf_dir(d)
    os.unlink(d / "chat_template.jinja")
    (d / "chat_template.jinja").mkdir()
    with pytest.raises(ModelLoadError, match="not a regular file"):
        Tokenizer.from_hf_dir(d)
    (d / "chat_template.jinja").rmdir()
    os.symlink(d / "missing", d / "chat_template.jinja")
    with pytest.raises(ModelLoadError, match="broken symlink"):
        Tokenizer.from_hf_dir(d)


def test_size_caps_and_encoding(tmp_path, monkeypatch):
    d = _copy_sp_hf(tmp_path)
    (d / "tokenizer_config.json").write_text('{"pad": "' + "x" * 5000 + '"}')
    monkeypatch.setattr(tokenizer_mod, "kMaxConfigFileBytes", 4096)
    with pytest.raises(ModelLoadError, match="over the 4096-byte limit"):
        Tokenizer.from_hf_dir(d)
    monkeypatch.undo()
    (d / "tokenizer_config.json").write_bytes(b'{"chat_template": "\xff' + kSecret.encode() + b'"}')
    with pytest.raises(ModelLoadError, match="not valid UTF-8") as info:
        Tokenizer.from_hf_dir(d)
    assert kSecret not in str(info.value)
    (d / "tokenizer_config.json").write_text('{"chat_template": ' + kSecret)
    with pytest.raises(ModelLoadError, match="not valid JSON") as info:
        Tokenizer.from_hf_dir(d)
    assert kSecret not in str(info.value)


def test_links_inside_the_directory_and_hf_cache_allowed(tmp_path):
    # Hugging Face cache layout: snapshots/REV/FILE -> ../../blobs/HASH.
    repo = tmp_path / "models--org--name"
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for f in (kTokDataDir / "sp_hf").iterdir():
        shutil.copy(f, repo / "blobs" / f"hash-{f.name}")
        os.symlink(f"../../blobs/hash-{f.name}", snap / f.name)
    (snap / "sub").mkdir()
    shutil.copy(kTokDataDir / "sp_hf" / "tokenizer.json", snap / "sub" / "t.json")
    (snap / "tokenizer.json").unlink()
    os.symlink("sub/t.json", snap / "tokenizer.json")
    ref = Tokenizer.from_hf_dir(kTokDataDir / "sp_hf")
    tok = Tokenizer.from_hf_dir(snap)
    assert tok.encode("hello world") == ref.encode("hello world")
    assert model_dir.read_model_file(snap, "absent.json") is None
    with pytest.raises(ValueError):
        model_dir.read_model_file(snap, "../x")


# ---- token bytes (issue 20 item 16) -----------------------------------------------------------------
def test_token_bytes_byte_level(smollm2_gguf):
    tok = Tokenizer.from_gguf_metadata(read_gguf_meta(str(smollm2_gguf)))
    ids = tok.encode("日本", add_special_tokens=False)
    pieces = [tok.token_bytes(i) for i in ids]
    assert pieces == [b"\xe6\x97", b"\xa5", b"\xe6\x9c\xac"]  # a token ending mid-character: raw bytes
    for text in random_texts(3, 200, []):
        ids = tok.encode(text, add_special_tokens=False)
        raw = b"".join(tok.token_bytes(i) for i in ids)
        # (SmolLM2's vocabulary lacks a few rare lead bytes: encode drops them, as transformers does)
        assert raw.decode("utf-8", errors="replace") == tok.decode(ids, skip_special_tokens=False), text
    assert tok.token_bytes(tok.eos_token_id) == b"<|im_end|>"
    with pytest.raises(InvalidRequestError):
        tok.token_bytes(tok.vocab_size)


def test_token_bytes_sentencepiece():
    tok = Tokenizer.from_gguf_metadata(read_gguf_meta(str(synthetic_gguf("sp"))))
    byte_ids = sorted(tok.byte_fallback_ids)
    assert byte_ids and all(len(tok.token_bytes(i)) == 1 for i in byte_ids)
    n = 0
    for text in random_texts(4, 200, []):
        if not text or "\u2581" in text or "\x00" in text:
            continue
        ids = tok.encode(text, add_special_tokens=False)
        if tok.unk_token_id in ids:
            continue
        expected = text if text.startswith(" ") else " " + text  # the Metaspace word marker
        assert b"".join(tok.token_bytes(i) for i in ids) == expected.encode("utf-8"), text
        n += 1
    assert n > 100


def test_server_chat_logprobs_report_raw_bytes(smollm2_gguf):
    # The OpenAI server's chat logprobs `bytes` come from token_bytes (they were U+FFFD's bytes for a
    # token ending mid-character). Server.chat_logprobs on a stand-in for the server object.
    pytest.importorskip("fastapi")
    from eli.server.app import Server

    tok = Tokenizer.from_gguf_metadata(read_gguf_meta(str(smollm2_gguf)))
    stub = types.SimpleNamespace(tokenizer=tok, _token_str={})
    stub.token_str = lambda t: Server.token_str(stub, t)
    stub._top = lambda entry, n: Server._top(stub, entry, n)
    ids = tok.encode("日本", add_special_tokens=False)
    out = Server.chat_logprobs(stub, ids, [{i: -0.5} for i in ids], 1)
    assert [bytes(e["bytes"]) for e in out] == [b"\xe6\x97", b"\xa5", b"\xe6\x9c\xac"]
    assert [bytes(e["top_logprobs"][0]["bytes"]) for e in out] == [b"\xe6\x97", b"\xa5", b"\xe6\x9c\xac"]


def test_lone_surrogates_are_invalid_requests():
    tok = Tokenizer.from_gguf_metadata(read_gguf_meta(str(synthetic_gguf("bl"))))
    for call in (lambda: tok.encode("a\ud800b"), lambda: tok.encode("a\udfff", parse_special=False),
                 lambda: tok.encode_chat("a\ud800b", [(0, 1)])):
        with pytest.raises(InvalidRequestError, match="lone surrogate"):
            call()
