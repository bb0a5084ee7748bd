#!/usr/bin/env python3
"""scripts/make_gemma_tokenizer_reference.py: a Gemma-style tokenizer and its references.

Real Gemma (1/2/3) tokenizers cannot be downloaded here, so this trains a small one of the same kind
and records how Hugging Face and llama.cpp tokenize with it. Deterministic (seeded corpus,
single-threaded SentencePiece training). Writes, under tests/data/gemma_tokenizer/:
  hf/tokenizer.json, hf/tokenizer_config.json
        transformers' GemmaTokenizerFast built from the trained SentencePiece model (BPE with
        byte_fallback, normalizer Replace(" " -> "\u2581"), no prefix space, decoder Replace +
        ByteFallback + Fuse), <start_of_turn> / <end_of_turn> special, a Gemma-3-style chat template.
  gemma.gguf
        the GGUF llama.cpp's convert_hf_to_gguf.py writes for gemma3 from that directory (its
        _create_vocab_sentencepiece + SpecialVocab rules, re-implemented here: piece types from the
        SentencePiece model, every added token of tokenizer_config.json scored -1000 and typed control
        (special) or user-defined with "\u2581" spelled " "; bos/eos/unk/pad ids, add_bos/add_eos,
        the chat template, add_space_prefix false), a few gemma3 hyper-parameters, no tensors.
  sp_no_space_prefix.gguf
        tests/data/tokenizers/sp.gguf's generic 'llama' vocabulary with add_space_prefix = false.
  expected.json
        {"generator", "versions", "texts": [{"text", "hf" (tokenizer.json encode with BOS),
         "hf_split" (special-token strings as plain text), "hf_decode" (decode of "hf", specials
         skipped), "hf_decode_keep", "llama_cpp" (llama_cpp.Llama(vocab_only).tokenize(add_bos,
         special=True)), "llama_cpp_plain" (special=False), "llama_cpp_decode"}],
         "chat": [{"messages", "add_generation_prompt", "text" (apply_chat_template, tokenize=False)}],
         "no_space_prefix": [{"text", "llama_cpp"}] (sp_no_space_prefix.gguf, add_bos, special=False)}

Usage (two interpreters: transformers + sentencepiece, and llama-cpp-python, live in different venvs):
  /work/venvs/gemmatok/bin/python scripts/make_gemma_tokenizer_reference.py build
  /work/venvs/bench/bin/python    scripts/make_gemma_tokenizer_reference.py llama-cpp
The first writes everything but the llama_cpp fields; the second adds them to expected.json.
"""
from __future__ import annotations

import json
import pathlib
import random
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "gemma_tokenizer"
kGenerator = "scripts/make_gemma_tokenizer_reference.py"
kVocabSize = 3000
kSpecialTurns = ["<start_of_turn>", "<end_of_turn>"]
# Gemma's user-defined pieces: whitespace runs, newlines, tabs (the real model has many more).
kUserDefined = ["\n", "\n\n", "\n\n\n", "\t", "\t\t", "\u2581\u2581", "\u2581\u2581\u2581", "\u2581" * 4,
                "\u2581" * 8, "<table>", "<tr>"]
kControl = ["<mask>", "[@BOS@]", "<unused0>", "<unused1>"]

# A Gemma-3-style chat template (written for this test: system text joins the first user turn,
# roles user / model, the template writes <bos> itself).
kChatTemplate = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') "
    "+ message['content'] | trim + '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

kChats = [
    [{"role": "user", "content": "Hello there!"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name 3 colours."},
     {"role": "assistant", "content": "Red, green, blue."}, {"role": "user", "content": "  And  more?\n"}],
]

# Fixed test strings: whitespace runs at every position, tabs, newlines, specials, bytes, scripts.
kTexts = [
    "", " ", "  ", "   ", "    ", "         ", "\n", "\n\n", "\n\n\n\n", "\t", "\t\t\t", " \n ", "\r\n",
    "a", " a", "  a", "a ", "a  ", "Hello world", " Hello world", "Hello  world", "Hello   world!",
    "Hello\tworld", "Hello\nworld", "line one\n\nline two\n", "  leading and trailing  ",
    "The quick brown fox jumps over the lazy dog.", "It's 2024-01-31; pi = 3.14159, n = 1,000,000.",
    "12345678901234567890", "Straße café naïve Ærøskøbing São Paulo", "e\u0301 n\u0303o",
    "Привет, мир! Как дела?", "Γειά σου Κόσμε", "日本語のテキストです。", "你好世界，这是中文。", "한국어 텍스트",
    "مرحبا بالعالم", "नमस्ते दुनिया", "ไทย",
    "😀 🚀 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ 🤖 🧪", "\U0001f9d1\u200d\U0001f4bb", "\u200b\ufeff\x00\x7f", "\u00a0\u3000",
    "def f(x):\n    return x + 1\n", "if (a) {\n\tb();\n\t\tc();\n}\n", "for (int i = 0; i < n; ++i) {",
    "    indented = True\n        more = False\n", '{"key": [1, 2, 3], "nested": {"a": null}}',
    "<start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\n", "<start_of_turn>", "<end_of_turn>",
    "x<start_of_turn>y", " <end_of_turn> ", "<bos>text<eos>", "<pad><unk><mask>", "[@BOS@]<unused0>",
    "<table><tr>cell</tr></table>", "\u2581 \u2581\u2581 literal", "<0x41> is not A",
    "a\u2581b", "▁▁▁", "mixed \t \n \t\n spaces", "tabs\t\tand  spaces  \t  end",
]


def _corpus(seed: int = 1234, n: int = 6000) -> str:
    rng = random.Random(seed)
    words = ("the quick brown fox jumps over lazy dog tokenizer model text language gemma hello world data "
             "function return value print import class self state token merge byte piece space tab newline "
             "der die das und ist nicht ein eine le la les et est une pas el los las que por para "
             "привет мир язык текст модель Γειά κόσμε 日本語 テキスト 中文 世界 你好 한국어 مرحبا नमस्ते").split()
    code = ["def f(x):\n    return x + 1\n", "if (a) {\n\tb();\n}\n", "for i in range(10):\n        print(i)\n",
            "int main(void) {\n    return 0;\n}\n", '{"key": [1, 2, 3]}', "x == y && z != w", "a->b",
            "    \n", "\t\t", "<table><tr>", "</tr></table>"]
    emoji = ["😀", "🚀", "👍", "❤️", "🤖"]
    # Pseudo-words from syllables of several scripts, so that thousands of merges are learned.
    syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"] + \
        [c + v for c in "бвгдклмнпрст" for v in "аеиоу"] + list("あいうえおかきくけこさしすせそたちつてと") + \
        list("的一是不了人我在有他这中大来上个国到说们为子和你地出道也时年") + ["th", "sch", "ng", "qu"]
    words += ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    lines = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(3, 14)):
            r = rng.random()
            if r < 0.7:
                parts.append(rng.choice(words))
            elif r < 0.8:
                parts.append(rng.choice(code))
            elif r < 0.85:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 6))))
            elif r < 0.88:
                parts.append(rng.choice(emoji))
            else:
                parts.append(rng.choice([" ", "  ", "    ", "\t", ",", ".", "!", "?", ":", ";", "(", ")"]))
        lines.append(" ".join(parts))
    return "\n".join(lines)


def _versions(*mods) -> dict:
    return {m.__name__: getattr(m, "__version__", "?") for m in mods}


def build() -> None:
    import gguf
    import sentencepiece as spm
    import tokenizers
    import transformers
    from transformers import AddedToken, GemmaTokenizerFast

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "hf").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "corpus.txt").write_text(_corpus(), encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(tmp / "corpus.txt"), model_prefix=str(tmp / "tokenizer"), model_type="bpe",
            vocab_size=kVocabSize, byte_fallback=True, add_dummy_prefix=False, split_digits=True,
            remove_extra_whitespaces=False, normalization_rule_name="identity", allow_whitespace_only_pieces=True,
            character_coverage=0.9995, pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>",
            eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>", control_symbols=kControl,
            user_defined_symbols=kSpecialTurns + kUserDefined, num_threads=1, input_sentence_size=0,
            shuffle_input_sentence=False, minloglevel=2)
        model_file = tmp / "tokenizer.model"
        (tmp / "src").mkdir()
        (tmp / "src" / "tokenizer.model").write_bytes(model_file.read_bytes())
        hf = GemmaTokenizerFast.from_pretrained(str(tmp / "src"), add_bos_token=True, add_eos_token=False)
        hf.add_special_tokens({"additional_special_tokens": [AddedToken(t, normalized=False, special=True)
                                                             for t in kSpecialTurns]})
        hf.chat_template = kChatTemplate
        hf.save_pretrained(str(tmp / "hf"))
        (OUT / "hf" / "tokenizer.json").write_bytes((tmp / "hf" / "tokenizer.json").read_bytes())
        # tokenizer_config.json as transformers 4.x wrote it for Gemma (and as Google publishes it):
        # with added_tokens_decoder, add_bos_token / add_eos_token and the chat template, which
        # convert_hf_to_gguf.py reads; no temp path.
        cfg = json.loads((tmp / "hf" / "tokenizer_config.json").read_text(encoding="utf-8"))
        cfg.pop("vocab_file", None)
        cfg.pop("is_local", None)
        cfg.pop("local_files_only", None)
        added = json.loads((OUT / "hf" / "tokenizer.json").read_text(encoding="utf-8"))["added_tokens"]
        cfg["added_tokens_decoder"] = {str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in added}
        cfg.update(add_bos_token=True, add_eos_token=False, chat_template=kChatTemplate)
        (OUT / "hf" / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=1) + "\n",
                                                          encoding="utf-8")
        _write_gguf(model_file, OUT / "hf" / "tokenizer_config.json", OUT / "gemma.gguf", gguf, spm)
    _write_no_space_prefix_gguf(gguf)

    tok = tokenizers.Tokenizer.from_file(str(OUT / "hf" / "tokenizer.json"))
    split = tokenizers.Tokenizer.from_file(str(OUT / "hf" / "tokenizer.json"))
    split.encode_special_tokens = True
    rows = []
    for text in kTexts:
        ids = tok.encode(text, add_special_tokens=True).ids
        rows.append({"text": text, "hf": ids, "hf_split": split.encode(text, add_special_tokens=True).ids,
                     "hf_decode": tok.decode(ids, skip_special_tokens=True),
                     "hf_decode_keep": tok.decode(ids, skip_special_tokens=False)})
    hf2 = transformers.AutoTokenizer.from_pretrained(str(OUT / "hf"))
    chats = [{"messages": m, "add_generation_prompt": g,
              "text": hf2.apply_chat_template(m, tokenize=False, add_generation_prompt=g)}
             for m in kChats for g in (False, True)]
    doc = {"generator": kGenerator, "versions": _versions(transformers, tokenizers, spm, gguf),
           "texts": rows, "chat": chats}
    (OUT / "expected.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}: {len(rows)} texts, vocab {tok.get_vocab_size()}")


def _write_gguf(model_file: pathlib.Path, config_file: pathlib.Path, out: pathlib.Path, gguf, spm) -> None:
    """convert_hf_to_gguf.py's gemma3 vocabulary (SentencePiece branch), re-implemented."""
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    n = sp.vocab_size()
    tokens, scores, types = [], [], []
    for i in range(n):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        t = gguf.TokenType.NORMAL
        if sp.is_unknown(i):
            t = gguf.TokenType.UNKNOWN
        elif sp.is_control(i):
            t = gguf.TokenType.CONTROL
        elif sp.is_unused(i):
            t = gguf.TokenType.UNUSED
        elif sp.is_byte(i):
            t = gguf.TokenType.BYTE
        types.append(t)
    cfg = json.loads(config_file.read_text(encoding="utf-8"))
    for key, data in cfg.get("added_tokens_decoder", {}).items():
        i, content = int(key), data["content"]
        looks_special = content.startswith(("<|", "<｜")) and content.endswith(("|>", "｜>")) or \
            content in ("<s>", "</s>", "<unk>", "<mask>", "<bos>", "<eos>", "<pad>") or \
            (content.startswith("<") and content.endswith(">") and content[1:-1].startswith(("unused", "[")))
        if data.get("special") or looks_special:
            types[i] = gguf.TokenType.CONTROL
        else:
            content = content.replace("\u2581", " ")
            types[i] = gguf.TokenType.USER_DEFINED
        scores[i] = -1000.0
        tokens[i] = content
    w = gguf.GGUFWriter(str(out), arch="gemma3")
    w.add_name("gemma tokenizer reference")
    w.add_block_count(1)
    w.add_context_length(256)
    w.add_embedding_length(32)
    w.add_feed_forward_length(64)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_key_length(16)
    w.add_value_length(16)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    ids = {p: sp.piece_to_id(p) for p in ("<bos>", "<eos>", "<unk>", "<pad>")}
    w.add_bos_token_id(ids["<bos>"])
    w.add_eos_token_id(ids["<eos>"])
    w.add_unk_token_id(ids["<unk>"])
    w.add_pad_token_id(ids["<pad>"])
    w.add_add_bos_token(bool(cfg.get("add_bos_token", True)))
    w.add_add_eos_token(bool(cfg.get("add_eos_token", False)))
    w.add_chat_template(kChatTemplate)
    w.add_add_space_prefix(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _write_no_space_prefix_gguf(gguf) -> None:
    """tests/data/tokenizers/sp.gguf's vocabulary (a generic 'llama' SentencePiece one) with
    tokenizer.ggml.add_space_prefix = false, as convert_hf_to_gguf.py writes it for a Llama-family
    model whose tokenizer_config.json says add_prefix_space: false."""
    reader = gguf.GGUFReader(str(ROOT / "tests" / "data" / "tokenizers" / "sp.gguf"))

    def field(key):
        f = reader.fields[key]
        if f.types[0] == gguf.GGUFValueType.ARRAY:
            if f.types[-1] == gguf.GGUFValueType.STRING:
                return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
            return [x.item() for i in f.data for x in f.parts[i]]
        return f.parts[f.data[0]][0].item()

    w = gguf.GGUFWriter(str(OUT / "sp_no_space_prefix.gguf"), arch="llama")
    w.add_block_count(1)
    w.add_context_length(256)
    w.add_embedding_length(32)
    w.add_feed_forward_length(64)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(field("tokenizer.ggml.tokens"))
    w.add_token_scores(field("tokenizer.ggml.scores"))
    w.add_token_types(field("tokenizer.ggml.token_type"))
    w.add_bos_token_id(field("tokenizer.ggml.bos_token_id"))
    w.add_eos_token_id(field("tokenizer.ggml.eos_token_id"))
    w.add_unk_token_id(field("tokenizer.ggml.unknown_token_id"))
    w.add_add_space_prefix(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def add_llama_cpp() -> None:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(OUT / "gemma.gguf"), vocab_only=True, verbose=False)
    doc = json.loads((OUT / "expected.json").read_text(encoding="utf-8"))
    for row in doc["texts"]:
        b = row["text"].encode("utf-8")
        row["llama_cpp"] = llm.tokenize(b, add_bos=True, special=True)
        row["llama_cpp_plain"] = llm.tokenize(b, add_bos=True, special=False)
        row["llama_cpp_decode"] = llm.detokenize(row["llama_cpp"]).decode("utf-8", "replace")
    doc["versions"]["llama_cpp"] = llama_cpp.__version__
    # The generic SentencePiece vocabulary without a space prefix (texts with NUL left out: llama.cpp
    # reads text as a C string there and gives <unk>).
    sp = llama_cpp.Llama(model_path=str(OUT / "sp_no_space_prefix.gguf"), vocab_only=True, verbose=False)
    texts = [r["text"] for r in doc["texts"] if "\x00" not in r["text"] and "\u2581" not in r["text"]]
    doc["no_space_prefix"] = [{"text": t, "llama_cpp": sp.tokenize(t.encode("utf-8"), add_bos=True, special=False)}
                              for t in texts]
    (OUT / "expected.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    same = sum(r["llama_cpp"] == r["hf"] for r in doc["texts"])
    print(f"llama.cpp agrees with HF on {same}/{len(doc['texts'])} texts")


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("build", "llama-cpp"):
        sys.exit(__doc__)
    build() if sys.argv[1] == "build" else add_llama_cpp()
