# tests/python/test_tool_parsers.py: the per-family tool-call parsers (eli/tool_parsers).
#
# For every family: whole-text parsing of content, single and parallel calls, content around calls;
# streaming fed in every chunking tried (one character at a time, random splits, one piece) gives
# exactly what whole-text parsing gives (content and calls), never emits markup as content while a
# call is pending, and sends per call one delta with id/type/name then one with the arguments;
# malformed output (bad JSON, unclosed blocks, wrong shapes) falls back to content, never raises.
# Detection from the real chat templates in tests/data/chat_templates/.
from __future__ import annotations

import json
import pathlib
import random

import pytest

from test_tokenizer_gguf import eli_module

tp = eli_module("tool_parsers")
base = eli_module("tool_parsers.base")

kTemplates = pathlib.Path(__file__).resolve().parents[1] / "data" / "chat_templates"

W = {"city": "Paris", "unit": "C"}
T = {"tz": "Europe/Paris"}

# (parser, text, expected content (None: only calls), expected [(name, arguments dict)])
CASES = [
    # hermes (Qwen2.5 / Qwen3 / Hermes)
    ("hermes", "Hello there.", "Hello there.", []),
    ("hermes", '<tool_call>\n{"name": "weather", "arguments": {"city": "Paris", "unit": "C"}}\n</tool_call>',
     None, [("weather", W)]),
    ("hermes", 'Let me check.\n<tool_call>\n{"name": "weather", "arguments": {"city": "Paris", "unit": "C"}}\n'
     '</tool_call>\n<tool_call>\n{"name": "time", "arguments": {"tz": "Europe/Paris"}}\n</tool_call>',
     "Let me check.\n\n", [("weather", W), ("time", T)]),
    ("hermes", '<tool_call>{"name": "time", "arguments": "{\\"tz\\": \\"Europe/Paris\\"}"}</tool_call>',
     None, [("time", T)]),  # arguments as a JSON string
    ("hermes", '<tool_call>\n{"name": "time", "arguments": {"tz": "Europe/Paris"}}', None, [("time", T)]),  # EOS before the close
    ("hermes", "<think>\nhm\n</think>\n\nNo tools needed: 4 < 5.", "<think>\nhm\n</think>\n\nNo tools needed: 4 < 5.", []),
    ("hermes", "a <tool_call>{not json}</tool_call> b", "a <tool_call>{not json}</tool_call> b", []),
    ("hermes", '<tool_call>{"arguments": {}}</tool_call>', '<tool_call>{"arguments": {}}</tool_call>', []),  # no name
    ("hermes", "<tool_call>\n{\"name\": \"weather\", \"argu", "<tool_call>\n{\"name\": \"weather\", \"argu", []),
    ("hermes", "text ending in <tool_ca", "text ending in <tool_ca", []),
    ("hermes", '<tool_call>{"name": "f", "arguments": [1]}</tool_call>', '<tool_call>{"name": "f", "arguments": [1]}</tool_call>', []),
    ("hermes", '<tool_call>{"name": "f", "arguments": {"x": NaN}}</tool_call>',
     '<tool_call>{"name": "f", "arguments": {"x": NaN}}</tool_call>', []),
    # llama3_json (Llama 3.1 / 3.2 / 3.3)
    ("llama3_json", "The capital is Paris.", "The capital is Paris.", []),
    ("llama3_json", '{"name": "weather", "parameters": {"city": "Paris", "unit": "C"}}', None, [("weather", W)]),
    ("llama3_json", '<|python_tag|>{"name": "weather", "parameters": {"city": "Paris", "unit": "C"}}', None, [("weather", W)]),
    ("llama3_json", '  {"name": "weather", "arguments": {"city": "Paris", "unit": "C"}}; {"name": "time", "parameters": {"tz": "Europe/Paris"}}',
     None, [("weather", W), ("time", T)]),
    ("llama3_json", '{"answer": 42}', '{"answer": 42}', []),
    ("llama3_json", '{"name": "weather", "parameters": {"city": "Pa', '{"name": "weather", "parameters": {"city": "Pa', []),
    ("llama3_json", '{"name": "time", "parameters": {"tz": "Europe/Paris"}} and then some words',
     " and then some words", [("time", T)]),
    ("llama3_json", "Use {braces} later", "Use {braces} later", []),
    ("llama3_json", "{bad json}", "{bad json}", []),
    ("llama3_json", "", "", []),
    # mistral
    ("mistral", "Bonjour.", "Bonjour.", []),
    ("mistral", '[TOOL_CALLS][{"name": "weather", "arguments": {"city": "Paris", "unit": "C"}}, '
     '{"name": "time", "arguments": {"tz": "Europe/Paris"}, "id": "abcdefghi"}]', None, [("weather", W), ("time", T)]),
    ("mistral", 'Sure. [TOOL_CALLS] [{"name": "time", "arguments": {"tz": "Europe/Paris"}}]', "Sure. ", [("time", T)]),
    ("mistral", "[TOOL_CALLS] not json", "[TOOL_CALLS] not json", []),
    ("mistral", '[TOOL_CALLS][{"name": "time"', '[TOOL_CALLS][{"name": "time"', []),
    ("mistral", '[TOOL_CALLS][{"nom": "time"}]', '[TOOL_CALLS][{"nom": "time"}]', []),
    ("mistral", "[TOOL_CALLS][]", "[TOOL_CALLS][]", []),
    ("mistral", "ends with [TOOL_", "ends with [TOOL_", []),
    # json (fallback)
    ("json", "Just text.", "Just text.", []),
    ("json", '{"name": "time", "arguments": {"tz": "Europe/Paris"}}', None, [("time", T)]),
    ("json", '[{"name": "time", "arguments": {"tz": "Europe/Paris"}}, {"name": "weather", "parameters": {"city": "Paris", "unit": "C"}}]',
     None, [("time", T), ("weather", W)]),
    ("json", '{"tool_calls": [{"type": "function", "function": {"name": "time", "arguments": "{\\"tz\\": \\"Europe/Paris\\"}"}}]}',
     None, [("time", T)]),
    ("json", '<tool_call>\n{"name": "time", "arguments": {"tz": "Europe/Paris"}}\n</tool_call>', None, [("time", T)]),
    ("json", '{"answer": "no call"}', '{"answer": "no call"}', []),
    ("json", '{"name": "time", "arguments": {"tz"', '{"name": "time", "arguments": {"tz"', []),
]


def _calls(result):
    return [(c.name, json.loads(c.arguments)) for c in result.tool_calls]


@pytest.mark.parametrize("name,text,content,calls", CASES)
def test_whole_text(name, text, content, calls):
    r = tp.get_parser(name).parse(text)
    assert r.content == content
    assert _calls(r) == calls
    for c in r.tool_calls:
        assert isinstance(json.loads(c.arguments), dict)
        if name == "mistral":
            assert len(c.id) == 9 and c.id.isalnum()
        else:
            assert c.id.startswith("call_")


def _chunkings(text, rng):
    yield [text]
    yield list(text)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, max(len(text), 2)), min(rng.randint(1, 6), max(len(text) - 1, 1))))
        yield [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]


@pytest.mark.parametrize("name,text,content,calls", CASES)
def test_streamed_equals_whole(name, text, content, calls):
    rng = random.Random(hash(text) & 0xFFFF)
    parser = tp.get_parser(name)
    whole = parser.parse(text)
    for chunks in _chunkings(text, rng):
        st = parser.stream()
        deltas = []
        for c in chunks:
            deltas += st.feed(c)
        deltas += st.finish()
        got = tp.merge_deltas(deltas)
        assert got.content == whole.content, chunks
        assert _calls(got) == _calls(whole), chunks
        # per call: first the id/type/name delta (arguments ""), then the arguments
        heads = [d["tool_calls"][0] for d in deltas if "tool_calls" in d and "id" in d["tool_calls"][0]]
        assert [h["index"] for h in heads] == list(range(len(calls)))
        for h in heads:
            assert h["type"] == "function" and h["function"]["arguments"] == ""


@pytest.mark.parametrize("name,marker,call", [
    ("hermes", "<tool_call>", '<tool_call>\n{"name": "time", "arguments": {"tz": "Europe/Paris"}}\n</tool_call>'),
    ("mistral", "[TOOL_CALLS]", '[TOOL_CALLS][{"name": "time", "arguments": {"tz": "Europe/Paris"}}]'),
    ("json", "<tool_call>", 'x <tool_call>{"name": "time", "arguments": {"tz": "Europe/Paris"}}</tool_call>'),
])
def test_no_partial_markup_leaks_while_streaming(name, marker, call):
    st = tp.get_parser(name).stream()
    sent = ""
    for ch in call:
        for d in st.feed(ch):
            sent += d.get("content", "")
            assert marker[:2] not in sent, sent
    st.finish()
    assert st.has_calls


def test_llama_waits_for_the_python_tag_and_json():
    st = tp.get_parser("llama3_json").stream()
    for piece in ["<|pyth", "on_tag|>", '{"name": "time", ', '"parameters": {"tz": "UTC"}']:
        assert st.feed(piece) == []
    out = st.feed("}")
    assert out[0]["tool_calls"][0]["function"]["name"] == "time"
    assert json.loads(out[1]["tool_calls"][0]["function"]["arguments"]) == {"tz": "UTC"}
    assert st.finish() == []


def test_plain_content_streams_without_delay():
    st = tp.get_parser("hermes").stream()
    assert st.feed("Hello") == [{"content": "Hello"}]
    assert st.feed(" <") == [{"content": " "}]   # "<" may start <tool_call>: held back
    assert st.feed("b>") == [{"content": "<b>"}]
    st = tp.get_parser("llama3_json").stream()
    assert st.feed("Hi") == [{"content": "Hi"}]


def test_hostile_outputs_never_raise():
    rng = random.Random(7)
    alphabet = ['<tool_call>', '</tool_call>', '[TOOL_CALLS]', '<|python_tag|>', '{', '}', '[', ']', '"', '\\',
                ':', ',', ';', ' ', '\n', 'name', 'arguments', 'parameters', '"name"', '"arguments"', '1', 'x']
    for name in tp.PARSERS:
        parser = tp.get_parser(name)
        for _ in range(300):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
            whole = parser.parse(text)
            st = parser.stream()
            deltas = []
            for i in range(0, len(text), 3):
                deltas += st.feed(text[i:i + 3])
            deltas += st.finish()
            got = tp.merge_deltas(deltas)
            assert got.content == whole.content and _calls(got) == _calls(whole), text
            for c in whole.tool_calls:
                assert isinstance(json.loads(c.arguments), dict)


def test_deep_nesting_is_content_not_an_error():
    text = "<tool_call>" + "[" * 100_000 + "</tool_call>"
    r = tp.get_parser("hermes").parse(text)
    assert r.content == text and r.tool_calls == []


def test_long_stream_keeps_a_small_buffer():
    st = tp.get_parser("hermes").stream()
    for _ in range(2000):
        st.feed("word " * 10)
    assert len(st.buf) < 10_000


@pytest.mark.parametrize("template,expected", [
    ("llama3.1", "llama3_json"), ("llama3.2", "llama3_json"), ("qwen2.5", "hermes"), ("qwen3", "hermes"),
    ("hermes3", "hermes"), ("mistral_nemo", "mistral"), ("smollm2", "json"),
])
def test_detect_from_real_templates(template, expected):
    text = (kTemplates / f"{template}.jinja").read_text(encoding="utf-8")
    assert tp.detect_parser_name(text) == expected
    assert tp.resolve_parser(None, text).name == expected
    assert tp.resolve_parser("auto", text).name == expected
    assert tp.resolve_parser("mistral", text).name == "mistral"  # the flag wins
    assert tp.template_renders_tools(text) == (template != "smollm2")


def test_unknown_parser_names_the_choices():
    with pytest.raises(ValueError, match="hermes"):
        tp.get_parser("nope")
    assert tp.get_parser("qwen3").name == "hermes" and tp.get_parser("llama3.2").name == "llama3_json"


@pytest.mark.parametrize("name,head,tail", [
    ("llama3_json", '{"name": "f", "parameters": {"x": "', '"}}'),
    ("mistral", '[TOOL_CALLS][{"name": "f", "arguments": {"x": "', '"}}]'),
    ("json", '{"name": "f", "arguments": {"x": "', '"}}'),
])
def test_long_call_is_scanned_once_not_once_per_token(monkeypatch, name, head, tail):
    # A call streamed in small pieces: the pending JSON value is resumed, not rescanned from its
    # start on every piece (the parser runs on the server's event loop).
    scanned = [0]
    real = base._scan_json

    def counting(s, pos, *state):
        scanned[0] += len(s) - pos
        return real(s, pos, *state)

    monkeypatch.setattr(base, "_scan_json", counting)
    body = 'ab\\"{[' * 4000
    text = head + body + tail
    st = tp.get_parser(name).stream()
    deltas = []
    for i in range(0, len(text), 4):
        deltas += st.feed(text[i:i + 4])
    deltas += st.finish()
    got = tp.merge_deltas(deltas)
    assert [c.name for c in got.tool_calls] == ["f"] and json.loads(got.tool_calls[0].arguments)["x"] == body.replace('\\"', '"')
    assert scanned[0] < 3 * len(text), scanned[0]


def test_long_hermes_block_is_searched_once():
    # The close tag of a pending block is searched from where the last search stopped (the
    # frontier tracks the buffer's end), not from the block's start on every piece.
    st = tp.get_parser("hermes").stream()
    text = '<tool_call>{"name": "f", "arguments": {"x": "' + "y" * 60000 + '"}}</tool_call>'
    for i in range(0, len(text) - 20, 4):
        st.feed(text[i:i + 4])
        if len(st.buf) >= len("<tool_call>"):
            assert st.scanner._close_resume == (st.start, len(st.buf))
    st.feed(text[i + 4:])
    assert st.scanner._close_resume is None and st.has_calls
