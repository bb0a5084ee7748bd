#!/usr/bin/env python3
"""scripts/make_tokenizer_references.py: Hugging Face transformers references for eli's tokenizers.

Writes (deterministic, seeded), under tests/data/tokenizers/:
  sp.gguf                     tiny SentencePiece-style vocabulary ('llama': BPE + byte fallback +
                              Metaspace; merges derived from the scores), 1200 tokens, no tensors
  bl.gguf                     tiny byte-level BPE ('gpt2', pre 'llama-bpe', merges, control tokens and
                              a user-defined token), 1500 tokens, no tensors
  sp_hf/                      transformers' save_pretrained of the sp.gguf tokenizer + a
                              generation_config.json with eos_token_id [2, 0] (Tokenizer.from_hf_dir)
  <name>_reference.json.gz    for name in smollm2 (the real GGUF), sp, bl, sp_hf:
                                {"generator", "versions", "source", "vocab_size" (len(hf_tok)),
                                 "bos_token_id", "eos_token_id", "bos_token", "eos_token", "chat_template",
                                 "texts_from": how the texts were generated (random_texts of the tests),
                                 "cases": [{"text", "ids" (encode), "decode" (skip specials),
                                            "decode_keep" (keep specials), and for ~25% of them
                                            "ids_no_add" (add_special_tokens=False),
                                            "ids_split" (split_special_tokens=True)}],
                                 "id_cases": [{"ids" (random ids), "decode", "decode_keep"}]}
                              (sp_hf: only "ids" and "decode" per case, no id_cases, as its test checks)
  chat_template_reference.json  transformers' apply_chat_template(tokenize=False) renders:
                                {"smollm2": {"true"/"false" (add_generation_prompt): [{"messages",
                                  "text", "ids" (encode(text, add_special_tokens=False))}]},
                                 "custom": [{"template", "renders": [{"messages", "text"}]}]}
                                (custom templates rendered by the sp.gguf tokenizer,
                                 add_generation_prompt=True)

The texts, conversations and custom templates come from the test modules (random_texts in
tests/python/test_tokenizer_gguf.py, kConversations / kCustomTemplates in test_chat_template.py), so
the tests and the references cannot drift apart silently: the chat tests check that the reference holds
exactly their conversations and templates.

Usage: python scripts/make_tokenizer_references.py [--smollm2-gguf PATH] [--skip-smollm2] [--keep-vocab]
  --keep-vocab: reuse the committed sp.gguf / bl.gguf instead of retraining them.
Needs torch (CPU), transformers, tokenizers, gguf (test-time needs none of transformers / torch).
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import pathlib
import random
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "tokenizers"
kGenerator = "scripts/make_tokenizer_references.py"
kMaxReferenceBytes = 300_000

sys.path.insert(0, str(ROOT / "tests" / "python"))
sys.path.insert(0, str(ROOT / "python"))

from test_tokenizer_gguf import random_texts  # noqa: E402  (the tests' seeded text generator)


# ---- synthetic vocabularies ----------------------------------------------------------------------
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


# ---- transformers --------------------------------------------------------------------------------
def hf_gguf_tokenizer(path: pathlib.Path):
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def _versions() -> dict:
    import tokenizers
    import transformers

    return {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


def _header(hf, source: str, texts_from: str) -> dict:
    return {"generator": kGenerator, "versions": _versions(), "source": source, "texts_from": texts_from,
            "vocab_size": len(hf), "bos_token_id": hf.bos_token_id, "eos_token_id": hf.eos_token_id,
            "bos_token": hf.bos_token, "eos_token": hf.eos_token, "chat_template": hf.chat_template}


def full_reference(hf, texts: list[str], seed: int, source: str, texts_from: str) -> dict:
    """Encode/decode of every text (+ the extra encode flags on a seeded ~25%) and random id decodes."""
    rng = random.Random(seed)
    cases = []
    for s in texts:
        ids = hf.encode(s)
        case = {"text": s, "ids": ids, "decode": hf.decode(ids, skip_special_tokens=True),
                "decode_keep": hf.decode(ids, skip_special_tokens=False)}
        if rng.random() < 0.25:
            case["ids_no_add"] = hf.encode(s, add_special_tokens=False)
            case["ids_split"] = hf.encode(s, split_special_tokens=True)
        cases.append(case)
    id_cases = []
    n = len(hf)
    for _ in range(300):
        ids = [rng.randrange(n) for _ in range(rng.randint(1, 12))]
        id_cases.append({"ids": ids, "decode": hf.decode(ids, skip_special_tokens=True),
                         "decode_keep": hf.decode(ids, skip_special_tokens=False)})
    return dict(_header(hf, source, texts_from), cases=cases, id_cases=id_cases)


def write_gz_json(path: pathlib.Path, obj: dict) -> None:
    """Deterministic gzip (mtime 0, no file name) of compact UTF-8 JSON; fails over the size budget."""
    raw = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f:
        f.write(raw)
    data = buf.getvalue()
    if len(data) > kMaxReferenceBytes:
        raise SystemExit(f"{path.name}: {len(data)} bytes > budget {kMaxReferenceBytes}: use fewer texts")
    path.write_bytes(data)
    print(f"wrote {path.relative_to(ROOT)} ({len(data)} bytes, {len(obj.get('cases', []))} cases)")


# ---- main ----------------------------------------------------------------------------------------
kSmolSpecials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<file_sep>", "<|im_start|>user\nhi<|im_end|>"]
kSyntheticSpecials = ["<s>", "</s>", "<unk>", "<|begin|>", "<|end|>", "<think>", "<|user|>", "<0x41>"]
kSmolTexts = (1234, 2500)     # random_texts seed, count
kSyntheticTexts = (99, 1500)
kHfDirTexts = (5, 300)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smollm2-gguf", default=None, help="default: eli.hub.resolve_model('smollm2')")
    ap.add_argument("--skip-smollm2", action="store_true")
    ap.add_argument("--keep-vocab", action="store_true", help="reuse the committed sp.gguf / bl.gguf")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    sp, bl = OUT / "sp.gguf", OUT / "bl.gguf"
    if not args.keep_vocab:
        write_llama_gguf(sp)
        write_bytelevel_gguf(bl)
        print(f"wrote {sp.name} ({sp.stat().st_size} bytes), {bl.name} ({bl.stat().st_size} bytes)")

    for name, path in (("sp", sp), ("bl", bl)):
        hf = hf_gguf_tokenizer(path)
        seed, n = kSyntheticTexts
        ref = full_reference(hf, random_texts(seed, n, kSyntheticSpecials), seed=2,
                             source=f"tests/data/tokenizers/{path.name}",
                             texts_from=f"random_texts({seed}, {n}, {kSyntheticSpecials!r})")
        write_gz_json(OUT / f"{name}_reference.json.gz", ref)

    # HF directory variant: transformers' own save of the sp tokenizer, plus a generation config.
    hf_sp = hf_gguf_tokenizer(sp)
    hf_dir = OUT / "sp_hf"
    shutil.rmtree(hf_dir, ignore_errors=True)
    hf_sp.save_pretrained(hf_dir)
    (hf_dir / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 0], "bos_token_id": 1}))
    seed, n = kHfDirTexts
    cases = []
    for s in random_texts(seed, n, ["<s>", "</s>"]):
        ids = hf_sp.encode(s)
        cases.append({"text": s, "ids": ids, "decode": hf_sp.decode(ids, skip_special_tokens=True)})
    ref = dict(_header(hf_sp, "tests/data/tokenizers/sp_hf", f"random_texts({seed}, {n}, ['<s>', '</s>'])"),
               cases=cases, generation_config={"eos_token_id": [2, 0], "bos_token_id": 1})
    write_gz_json(OUT / "sp_hf_reference.json.gz", ref)

    from test_chat_template import kConversations, kCustomTemplates

    chat = {"generator": kGenerator, "versions": _versions(), "conversations": kConversations,
            "custom_rendered_by": "tests/data/tokenizers/sp.gguf", "custom": []}
    for template in kCustomTemplates:
        renders = [{"messages": msgs, "text": hf_sp.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=True, chat_template=template)} for msgs in kConversations]
        chat["custom"].append({"template": template, "bos_token": hf_sp.bos_token, "eos_token": hf_sp.eos_token,
                               "renders": renders})

    if not args.skip_smollm2:
        path = args.smollm2_gguf
        if path is None:
            import eli.hub

            path = eli.hub.resolve_model("smollm2")
        path = pathlib.Path(path)
        hf = hf_gguf_tokenizer(path)
        seed, n = kSmolTexts
        ref = full_reference(hf, random_texts(seed, n, kSmolSpecials), seed=1, source=path.name,
                             texts_from=f"random_texts({seed}, {n}, {kSmolSpecials!r})")
        write_gz_json(OUT / "smollm2_reference.json.gz", ref)
        smol = {"source": path.name, "chat_template": hf.chat_template}
        for add_gen in (True, False):
            renders = []
            for msgs in kConversations:
                text = hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_gen)
                renders.append({"messages": msgs, "text": text, "ids": hf.encode(text, add_special_tokens=False)})
            smol[str(add_gen).lower()] = renders
        chat["smollm2"] = smol
    else:
        old = OUT / "chat_template_reference.json"
        if old.exists():
            chat["smollm2"] = json.loads(old.read_text(encoding="utf-8")).get("smollm2")

    out = OUT / "chat_template_reference.json"
    out.write_text(json.dumps(chat, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
