#!/usr/bin/env python3
"""Writes tests/data/malformed/text/: the hostile chat templates, tokenizer files and GGUF tokenizer
metadata of the Python side (issue 20 items 1, 2, 18; RELIABILITY items 9, 10), plus manifest.json.

  templates/NAME.jinja           one attack per file (issue 20 item 1 and the budgets behind it)
  tokenizers/NAME/tokenizer.json  (and tokenizer_config.json where the case needs one)
  gguf_vocab/NAME.json.gz        a GGUF tokenizer metadata dict (what the C++ reader hands to
                                  eli.tokenizer.Tokenizer.from_gguf_metadata), gzipped

manifest.json: {"templates": [...], "tokenizers": [...], "gguf_vocab": [...]}, each case
{"name", "attack", "expect"} where expect is a substring of the eli error (ChatTemplateError for
templates, ModelLoadError for files) or, for a template, null when it must render (to ""), and
"stage" for tokenizers: "load" (refused by Tokenizer.from_hf_dir). The C++ side of the malformed
corpus is scripts/make_malformed_corpus.py. Deterministic output; the files are committed.
"""
import base64
import gzip
import json
import pathlib
import shutil

ROOT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "malformed" / "text"

# ---- chat templates ------------------------------------------------------------------------------
TEMPLATES = [
    ("pow_tower", "{% set x = 10**256**256 %}{% set y = x**256 %}",
     "a bigint power tower (93 s through LLM.chat before)", "integer power"),
    ("percent_width", "{{ '%0999999999d' % 1 }}", "a '%' format width of 10^9 (17 s, 3.8 GB)", "format width"),
    ("percent_width_folded", "{% if false %}{{ '%0999999999d' % 1 }}{% endif %}",
     "the same in dead code: must not be evaluated at compile time (constant folding)", None),
    ("indent_string_width", "{{ (messages[0].content)|indent('x' * 1000000, true, true) }}",
     "indent() with a 1 MB string as the width (3.8 GB)", "indent() result"),
    ("indent_cr_lines", "{{ ('\r' * 500000)|indent('x' * 1000, true, true) }}",
     "indent() of 500,000 lines that are not split on '\\n' (str.splitlines knows \\r, \\u2028...)",
     "indent() result"),
    ("join_references", "{% set s = 'x' * 1000000 %}{{ ([s] * 1000)|join }}",
     "join of 1,000 references to a 1 MB string", "a join"),
    ("print_references", "{% set s = 'x' * 1000000 %}{{ [s] * 1000 }}",
     "str() of a list of 1,000 references to a 1 MB string", "printing a value"),
    ("captured_block", "{% set s = 'x' * 1000000 %}{% set b %}{% for i in range(1000) %}{{ s }}{% endfor %}{% endset %}",
     "a {% set %} block capturing 1 GB", "captured template output"),
    ("replace_empty", "{{ ('a' * 100000)|replace('', 'x' * 1000) }}", "replace('') inserting everywhere",
     "replace() result"),
    ("brace_width", "{{ '{:>999999999}'.format(1) }}", "a str.format width of 10^9", "format width"),
    ("brace_repeat", "{% set s = 'x' * 1000000 %}{{ ('{0}' * 1000).format(s) }}",
     "str.format repeating a 1 MB argument 1,000 times", "format() result"),
    ("tojson_references", "{% set s = 'x' * 1000000 %}{{ ([s] * 1000)|tojson }}",
     "tojson of 1,000 references to a 1 MB string", "tojson output"),
    ("int_squaring", "{% set ns = namespace(x=3) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}{% endfor %}",
     "repeated squaring of an integer", "integer product"),
    ("macro_recursion", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "unbounded macro recursion",
     "macros nest"),
    ("loop_recursion", "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}", "unbounded recursive loop",
     "recursed too deeply"),
    ("sort_million", "{{ (('x' * 1000000)|list|sort)|length }}", "sorting a million items", "sort() of"),
    ("sum_lists", "{{ ([[1]] * 100000)|sum(start=[]) }}", "sum() of lists (quadratic copying)",
     "sum() only adds numbers"),
    ("lipsum_huge", "{{ lipsum(100000, false, 10000, 10000) }}", "lipsum() of 10^9 words", "lipsum()"),
    ("wordwrap_huge", "{{ ('a ' * 500000)|wordwrap(1) }}", "wordwrap() of 1 MB (pure Python)", "wordwrap()"),
    ("wordwrap_long_word", "{{ ('a' * 250000)|wordwrap(1) }}",
     "wordwrap() of one 250,000-character word (quadratic in textwrap: 9 s)", "wordwrap()"),
    ("striptags_quadratic", "{{ ('<a>' * 80000)|striptags }}",
     "striptags() of 80,000 tags (one copy of the text per tag)", "striptags()"),
    ("striptags_method", "{{ (('<a>' * 80000)|safe).striptags() }}", "the same through Markup.striptags",
     "striptags()"),
    ("encode_punycode", "{{ ('a' * 100000).encode('punycode') }}", "a quadratic codec", "str.encode()"),
    ("int_to_bytes", "{{ (1).to_bytes(1000000000, 'big') }}", "a 1 GB allocation from int.to_bytes",
     "int.to_bytes()"),
    ("batch_fill", "{{ [1]|batch(1000000000, 'x')|list }}", "batch() padding to 10^9 items", "batch size argument"),
    ("expandtabs", "{{ ('\\t' * 1000000).expandtabs(64) }}", "expandtabs() of 10^6 tabs", "expandtabs()"),
    ("nested_loops", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "10^10 loop iterations", "time budget"),
    ("strftime_format", "{{ strftime_now('%c' * 100000) }}", "a 200 KB strftime format", "strftime_now()"),
    ("deep_parens", "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "parentheses nested 5,000 deep",
     "nests too deeply"),
    ("deep_ifs", "{% if true %}" * 500 + "x" + "{% endif %}" * 500, "if blocks nested 500 deep",
     "nests too deeply"),
    ("deep_fors", "{% for a in [1] %}" * 30 + "x" + "{% endfor %}" * 30, "for loops nested 30 deep",
     "nests too deeply"),
    ("retained_values",
     "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + [('x' * 1000000) ~ i] %}{% endfor %}",
     "keeping 100,000 distinct 1 MB strings alive (each value alone is within budget)", "the template built more than"),
    ("namespace_cycle", "{% set ns = namespace() %}{% set ns.x = ns %}{{ ns }}", "printing a self-referencing namespace",
     "nests deeper"),
]

# ---- tokenizer.json ------------------------------------------------------------------------------
VOCAB = {c: i for i, c in enumerate(["<unk>", "<s>", "</s>", "a", "b", "c", "h", "e", "l", "o", " ", "ab", "he",
                                      "ll", "hell", "hello"])}
MERGES = ["a b", "h e", "l l", "he ll", "hell o"]


def base_tokenizer() -> dict:
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for t, i in VOCAB.items() if t.startswith("<")],
        "normalizer": None, "pre_tokenizer": None, "post_processor": None, "decoder": None,
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": VOCAB, "merges": MERGES},
    }


def replace(pattern, content, regex=False):
    return {"type": "Replace", "pattern": {"Regex" if regex else "String": pattern}, "content": content}


def charsmap(strings: list[bytes], trie: bytes = b"") -> str:
    return base64.b64encode(len(trie).to_bytes(4, "little") + trie + b"\0".join(strings)).decode()


TOKENIZERS = [
    ("normalizer_replace_bomb", {"normalizer": replace("a", "b" * 100000)},
     "a normalizer replacing 'a' by 100,000 'b's (1.6 GB and SIGABRT from a 1,000-character prompt)",
     "can expand text 100000 times"),
    ("normalizer_chain_bomb", {"normalizer": {"type": "Sequence", "normalizers": [
        replace("a", "b" * 400), replace("b", "c" * 400)]}},
     "two chained replacements multiplying text 160,000 times", "can expand text 160000 times"),
    ("normalizer_regex_bomb", {"normalizer": replace("", "x" * 500, regex=True)},
     "a regex replacement matching at every position", "can expand text 501 times"),
    ("normalizer_prepend_bomb", {"normalizer": {"type": "Prepend", "prepend": "x" * 5000}},
     "a 5,000-character prefix on every text", "can expand text 5001 times"),
    ("decoder_replace_bomb", {"decoder": replace("a", "z" * 5000)},
     "a decoder replacing 'a' by 5,000 characters", "decoder can expand text 5000 times"),
    ("post_processor_bomb", {"post_processor": {"type": "TemplateProcessing",
                                                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}] * 1000
                                                + [{"Sequence": {"id": "A", "type_id": 0}}],
                                                "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                                                         {"Sequence": {"id": "B", "type_id": 1}}],
                                                "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}},
     "a post-processor adding 1,000 tokens to every text", "post-processor adds more than"),
    ("precompiled_panic_load", {"normalizer": {"type": "Precompiled",
                                               "precompiled_charsmap": base64.b64encode(b"\xff\xff\xff\x7f").decode()}},
     "a malformed SentencePiece charsmap (the tokenizers library panics while loading)", "panicked"),
    ("precompiled_panic_encode", {"normalizer": {"type": "Precompiled", "precompiled_charsmap": charsmap([b"abc"])}},
     "a charsmap with an empty trie (loads, then panics on the first encode)", "fails on a sample text"),
]


# ---- GGUF tokenizer metadata ----------------------------------------------------------------------
def gguf_llama(tokens: list[str]) -> dict:
    return {"general.architecture": "llama", "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.scores": [float(-i) for i in range(len(tokens))],
            "tokenizer.ggml.token_type": [1] * len(tokens)}


GGUF_VOCAB = [
    ("merge_bomb", gguf_llama(["a" * n for n in range(1, 2049)]),
     "tokens 'a' * 1..2048 with scores and no merges (a 2.8 MB GGUF: 6.4 GB and 33 s before)",
     "deriving merges from the scores"),
    ("duplicate_tokens", gguf_llama(["<unk>", "<s>", "</s>", "a", "b", "ab", "a"]),
     "one token string listed twice (llama.cpp asserts on this)", "lists the token 'a' twice"),
]


def main() -> None:
    if ROOT.exists():
        shutil.rmtree(ROOT)
    manifest = {"generator": "scripts/make_hostile_text_corpus.py", "templates": [], "tokenizers": [], "gguf_vocab": []}
    (ROOT / "templates").mkdir(parents=True)
    for name, source, attack, expect in TEMPLATES:
        (ROOT / "templates" / f"{name}.jinja").write_text(source, encoding="utf-8")
        manifest["templates"].append({"name": name, "attack": attack, "expect": expect})
    for name, override, attack, expect in TOKENIZERS:
        d = ROOT / "tokenizers" / name
        d.mkdir(parents=True)
        cfg = dict(base_tokenizer(), **override)
        (d / "tokenizer.json").write_text(json.dumps(cfg, ensure_ascii=False), encoding="utf-8")
        manifest["tokenizers"].append({"name": name, "attack": attack, "stage": "load", "expect": expect})
    (ROOT / "gguf_vocab").mkdir(parents=True)
    for name, meta, attack, expect in GGUF_VOCAB:
        data = json.dumps(meta, ensure_ascii=False).encode("utf-8")
        with open(ROOT / "gguf_vocab" / f"{name}.json.gz", "wb") as f:
            f.write(gzip.compress(data, mtime=0))
        manifest["gguf_vocab"].append({"name": name, "attack": attack, "expect": expect})
    (ROOT / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
