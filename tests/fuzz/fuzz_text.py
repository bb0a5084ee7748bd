#!/usr/bin/env python3
"""tests/fuzz/fuzz_text.py: a time-bounded fuzz run of eli's chat-template renderer and tokenizer loaders
(hypothesis-based; the C++ parsers have the libFuzzer harnesses beside this file).

Targets and the properties each input must satisfy (any other outcome, including a hang past the
watchdog or a BaseException such as pyo3's PanicException, is a finding):
  template   random templates (operators, filters, methods, macros, blocks, hostile sizes) over random
             messages: render_chat returns text or raises ChatTemplateError/InvalidRequestError;
             when the tracked render (render_chat_spans) also succeeds its text is the same, and
             Tokenizer.encode_chat of it carries exactly the special tokens of the same text with the
             user spans blanked out (no user text became a control token);
  tokenizer  random tokenizer.json variations (normalizers, decoders, post-processors, charsmaps,
             JSON damage): Tokenizer.from_hf_dir loads or raises ModelLoadError; a loaded tokenizer
             encodes and decodes random text or raises an eli error;
  gguf_vocab random GGUF tokenizer metadata: Tokenizer.from_gguf_metadata builds or raises ValueError;
             a built one encodes/decodes or raises an eli error.

Usage: python3 tests/fuzz/fuzz_text.py [--seconds 45] [--target template|tokenizer|gguf_vocab]
(CI: .ci/fuzz_short.sh). tests/python/test_fuzz_text.py runs each target briefly and deterministically.
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import pathlib
import re
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "python"))

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from test_tokenizer_gguf import eli_module, read_gguf_meta, synthetic_gguf  # noqa: E402

chat_template = eli_module("chat_template")
errors = eli_module("errors")
Tokenizer = eli_module("tokenizer").Tokenizer

kWatchdogS = 30  # one example running longer than this is a hang: dump the stacks and exit
kSpecials = ["<|begin|>", "<|end|>", "<|endoftext|>"]  # bl.gguf's special tokens
_state: dict = {}


def _bl_tokenizer():
    if "bl" not in _state:
        _state["bl"] = Tokenizer.from_gguf_metadata(read_gguf_meta(str(synthetic_gguf("bl"))))
    return _state["bl"]


# ---- templates --------------------------------------------------------------------------------------
_numbers = st.sampled_from(["0", "1", "7", "-3", "256", "65537", "10**9", "2**64", "1.5", "1e308"])
_strings = st.sampled_from(["''", "'a'", "'<|end|>'", "'%s'", "'%0999999d'", "'{}'", "'{:>99999999}'",
                            "'\\n'", "'x' * 1000", "'ab' * 70000", "'\ufdd0'"])
_atoms = st.one_of(_numbers, _strings, st.sampled_from([
    "messages[0].content", "messages[-1].content", "messages[0].role", "messages", "messages[0]",
    "extra", "c", "ns.x", "[1, 2, 3]", "{'k': messages[0].content}", "range(5)", "none", "true", "loop"]))
_filters = st.sampled_from([
    "upper", "lower", "trim", "title", "capitalize", "length", "list", "first", "last", "reverse", "sort",
    "unique", "string", "tojson", "tojson(indent=2)", "join", "join(', ')", "center(50)", "center(99999999)",
    "indent(4)", "indent('>>', true, true)", "wordwrap(3)", "replace('a', 'bb')", "replace('', 'x')",
    "format(1)", "batch(2)", "slice(3)", "sum", "int", "float", "abs", "e", "striptags", "urlize",
    "truncate(5)", "wordcount", "items", "dictsort", "map('upper')", "select", "reject", "default('d')",
    "pprint", "xmlattr", "urlencode", "filesizeformat", "round", "count", "random", "max", "min"])
_methods = st.sampled_from([
    ".upper()", ".strip()", ".split()", ".split('a')", ".rsplit(' ', 1)", ".splitlines()", ".replace('a', 'X')",
    ".startswith('<')", ".format(1, 2)", ".join(['a', 'b'])", ".center(9)", ".zfill(5)", ".partition('|')",
    ".encode()", ".expandtabs(4)", ".get('role')", ".items()", "[1:]", "[::-1]", "[0]", "[:3]"])
_binops = st.sampled_from([" + ", " * ", " ** ", " % ", " ~ ", " - ", " // ", " / ", " == ", " in "])


@st.composite
def expressions(draw, depth=0):
    e = draw(_atoms)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.integers(0, 3 if depth < 2 else 2))
        if kind == 0:
            e = f"({e})|{draw(_filters)}"
        elif kind == 1:
            e = f"({e}){draw(_methods)}"
        elif kind == 2:
            e = f"({e}){draw(_binops)}{draw(_atoms)}"
        else:
            e = f"({e}){draw(_binops)}({draw(expressions(depth + 1))})"
    return e


@st.composite
def templates(draw):
    parts = ["{% set ns = namespace(x=messages[0].content) %}{% set c = messages[0].content %}"]
    for _ in range(draw(st.integers(1, 5))):
        e = draw(expressions())
        kind = draw(st.integers(0, 7))
        parts.append([
            f"{{{{ {e} }}}}",
            f"{{% set v = {e} %}}{{{{ v }}}}",
            f"{{% for i in {e} %}}[{{{{ i }}}}]{{% endfor %}}",
            f"{{% if {e} %}}<|begin|>yes<|end|>{{% endif %}}",
            f"{{% macro m(a) %}}<{{{{ a }}}}>{{% endmacro %}}{{{{ m({e}) }}}}",
            f"{{% filter upper %}}{{{{ {e} }}}}{{% endfilter %}}",
            f"{{% set b %}}{{{{ {e} }}}}{{% endset %}}{{{{ b }}}}{{{{ b[1:] }}}}",
            f"{{% set ns.x = {e} %}}{{{{ ns.x }}}}",
        ][kind])
    parts.append("{% for m in messages %}<|begin|>{{ m.role }}\n{{ m.content }}<|end|>{% endfor %}")
    return "".join(parts)


_texts = st.lists(st.sampled_from(list("ab <|>/\n_") + kSpecials + ["\ufdd0", "\ufdd3", "日", "😀", "0" * 20]),
                  max_size=12).map("".join)


@st.composite
def conversations(draw):
    n = draw(st.integers(1, 3))
    roles = ["system", "user", "assistant", "tool", "robot", ""]
    msgs = [{"role": draw(st.sampled_from(roles[:4] if draw(st.integers(0, 9)) else roles)),
             "content": draw(_texts)} for _ in range(n)]
    return msgs, draw(_texts)


_ADDRESS = re.compile(r" at 0x[0-9a-f]+", re.I)
_HEX = set("0123456789abcdefABCDEF")


def _same_but_addresses(a: str, b: str) -> bool:
    """a == b up to object addresses: the " at 0x..." of a repr, or (after filters such as upper or
    list that reshape the repr) any positions where both renders hold a hex digit."""
    a, b = _ADDRESS.sub("", a), _ADDRESS.sub("", b)
    return len(a) == len(b) and all(x == y or (x in _HEX and y in _HEX) for x, y in zip(a, b))


def check_template(template: str, msgs: list, extra: str) -> None:
    ok_errors = (chat_template.ChatTemplateError, errors.InvalidRequestError)
    try:
        plain = chat_template.render_chat(template, msgs, time_budget_s=0.3, extra=extra)
    except ok_errors:
        plain = None
    try:
        text, spans = chat_template.render_chat_spans(template, msgs, time_budget_s=0.3,
                                                      template_vars={"extra": extra})
    except ok_errors:
        return
    if plain is not None:  # (object reprs differ by address between two renders)
        assert _same_but_addresses(text, plain), (template, msgs)
    tok = _bl_tokenizer()
    try:
        ids = tok.encode_chat(text, spans)
    except errors.InvalidRequestError:
        return
    blanked = list(text)
    for a, b in spans:
        blanked[a:b] = "x" * (b - a)
    ref = tok.encode("".join(blanked), add_special_tokens=False)
    special = tok.special_token_ids
    assert [i for i in ids if i in special] == [i for i in ref if i in special], (template, msgs, text, spans)


# ---- tokenizer.json ---------------------------------------------------------------------------------
_BASE_TOKENIZER = json.loads((ROOT / "tests" / "data" / "tokenizers" / "sp_hf" / "tokenizer.json").read_text())
_short = st.text(alphabet="ab▁ x<>", max_size=6)


@st.composite
def normalizer_cfgs(draw, depth=0):
    kinds = ["Replace", "ReplaceRegex", "Prepend", "NFKC", "NFC", "Lowercase", "Strip", "Precompiled", "Bogus"]
    if depth < 2:
        kinds.append("Sequence")
    kind = draw(st.sampled_from(kinds))
    if kind == "Sequence":
        return {"type": "Sequence", "normalizers": draw(st.lists(normalizer_cfgs(depth + 1), max_size=3))}
    if kind in ("Replace", "ReplaceRegex"):
        pattern = {"Regex": draw(st.sampled_from(["", "a+", "(a|b)*", "[", "x"]))} if kind == "ReplaceRegex" \
            else {"String": draw(_short)}
        return {"type": "Replace", "pattern": pattern, "content": draw(_short) * draw(st.sampled_from([1, 10, 200]))}
    if kind == "Prepend":
        return {"type": "Prepend", "prepend": draw(_short) * draw(st.sampled_from([1, 100]))}
    if kind == "Strip":
        return {"type": "Strip", "strip_left": draw(st.booleans()), "strip_right": draw(st.booleans())}
    if kind == "Precompiled":
        import base64
        blob = draw(st.binary(max_size=24))
        return {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(blob).decode()}
    return {"type": kind}


@st.composite
def tokenizer_jsons(draw):
    cfg = json.loads(json.dumps(_BASE_TOKENIZER))
    if draw(st.booleans()):
        cfg["normalizer"] = draw(normalizer_cfgs())
    if draw(st.booleans()):
        cfg["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": draw(_short)},
             "content": draw(_short) * draw(st.sampled_from([1, 50]))},
            {"type": draw(st.sampled_from(["ByteFallback", "Fuse", "Bogus"]))}]}
    if draw(st.booleans()):
        n = draw(st.sampled_from([0, 1, 70]))
        cfg["post_processor"] = {"type": "TemplateProcessing",
                                 "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}] * n
                                 + [{"Sequence": {"id": "A", "type_id": 0}}],
                                 "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                                          {"Sequence": {"id": "B", "type_id": 1}}],
                                 "special_tokens": {"<s>": {"id": "<s>", "ids": [draw(st.integers(-1, 10**6))],
                                                            "tokens": ["<s>"]}}}
    text = json.dumps(cfg)
    if draw(st.integers(0, 4)) == 0:  # byte-level damage
        pos = draw(st.integers(0, len(text) - 1))
        text = text[:pos] + draw(st.sampled_from(["", "{", "\"", "9" * 30, "null", "]"])) + text[pos + 1:]
    return text


def check_tokenizer(text: str, sample: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        (pathlib.Path(d) / "tokenizer.json").write_text(text, encoding="utf-8")
        try:
            tok = Tokenizer.from_hf_dir(d)
        except errors.ModelLoadError:
            return
    _use(tok, sample)


def _use(tok, sample: str) -> None:
    try:
        ids = tok.encode(sample)
        tok.decode(ids)
        tok.encode_chat(sample, [(0, len(sample) // 2)])
        [tok.token_bytes(i) for i in ids]
    except (errors.InvalidRequestError, errors.EliError):
        pass


# ---- GGUF tokenizer metadata ----------------------------------------------------------------------
@st.composite
def gguf_metas(draw):
    model = draw(st.sampled_from(["gpt2", "llama", "llama", "bert"]))
    tokens = draw(st.lists(st.text(alphabet="abĠ▁<>0x", min_size=0, max_size=5), min_size=1, max_size=30))
    meta = {"tokenizer.ggml.model": model, "tokenizer.ggml.tokens": tokens}
    if draw(st.booleans()):
        meta["tokenizer.ggml.scores"] = [float(draw(st.integers(-50, 5))) for _ in tokens]
    if draw(st.booleans()):
        meta["tokenizer.ggml.token_type"] = [draw(st.integers(0, 7)) for _ in tokens]
    if model == "gpt2" or draw(st.booleans()):
        meta["tokenizer.ggml.merges"] = [f"{draw(st.sampled_from(tokens))} {draw(st.sampled_from(tokens))}"
                                         for _ in range(draw(st.integers(0, 6)))]
    for key in ("bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id"):
        if draw(st.booleans()):
            meta[f"tokenizer.ggml.{key}"] = draw(st.integers(-2, len(tokens) + 1))
    if draw(st.booleans()):
        meta["tokenizer.ggml.pre"] = draw(st.sampled_from(["llama3", "qwen2", "tekken", "gpt-4o", "unknown"]))
    return meta


def check_gguf_vocab(meta: dict, sample: str) -> None:
    try:
        tok = Tokenizer.from_gguf_metadata(meta)
    except ValueError:
        return
    _use(tok, sample)


# ---- runners --------------------------------------------------------------------------------------
def _guarded(fn):
    def run(*args):
        faulthandler.dump_traceback_later(kWatchdogS, exit=True)
        try:
            fn(*args)
        finally:
            faulthandler.cancel_dump_traceback_later()
    return run


def build_targets(examples: int, derandomize: bool) -> dict:
    s = settings(max_examples=examples, deadline=None, derandomize=derandomize, database=None,
                 suppress_health_check=list(HealthCheck))
    return {
        "template": s(given(templates(), conversations())(
            lambda t, c: _guarded(check_template)(t, c[0], c[1]))),
        "tokenizer": s(given(tokenizer_jsons(), _texts)(lambda t, x: _guarded(check_tokenizer)(t, x))),
        "gguf_vocab": s(given(gguf_metas(), _texts)(lambda m, x: _guarded(check_gguf_vocab)(m, x))),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=45.0, help="total time budget (split over the targets)")
    ap.add_argument("--target", choices=["template", "tokenizer", "gguf_vocab"], action="append")
    args = ap.parse_args()
    names = args.target or ["template", "tokenizer", "gguf_vocab"]
    targets = build_targets(examples=40, derandomize=False)
    per = args.seconds / len(names)
    for name in names:
        t0, rounds = time.monotonic(), 0
        while time.monotonic() - t0 < per:
            targets[name]()  # raises (with the falsifying example) on a finding
            rounds += 1
        print(f"fuzz_text.py {name}: {rounds * 40} examples in {time.monotonic() - t0:.0f} s, no finding")
    return 0


if __name__ == "__main__":
    sys.exit(main())
