# tests/python/test_chat_template.py: chat template rendering vs transformers, sandbox and budgets.
#
# SmolLM2's template (read from its GGUF) and a few hand-written templates exercising the helpers
# (tojson, namespace, loop controls, bos_token) must render exactly like transformers'
# apply_chat_template did: its renders are committed in tests/data/tokenizers/chat_template_reference.json
# (scripts/make_tokenizer_references.py, which reads kConversations / kCustomTemplates from here; no
# transformers at test time). Sandbox escapes, runaway loops, memory bombs, oversized output and malformed
# message lists must all end in a ValueError, quickly.
from __future__ import annotations

import functools
import json
import re
import time

import pytest

from test_tokenizer_gguf import eli_module, kTokDataDir, read_gguf_meta

chat_template = eli_module("chat_template")
render_chat = chat_template.render_chat
Tokenizer = eli_module("tokenizer").Tokenizer

kConversations = [
    [{"role": "user", "content": "Hi there!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"}],
    [{"role": "user", "content": "Bonjour 😀 日本語"}, {"role": "assistant", "content": "Salut !"},
     {"role": "user", "content": "  spaces\n\nand lines  "}],
    [{"role": "user", "content": "{{ not a template }} {% raw %}"}],
    [{"role": "user", "content": ""}],
]


@functools.lru_cache(maxsize=1)
def chat_reference() -> dict:
    """transformers' renders, written by scripts/make_tokenizer_references.py."""
    ref = json.loads((kTokDataDir / "chat_template_reference.json").read_text(encoding="utf-8"))
    assert ref["generator"] == "scripts/make_tokenizer_references.py"
    # The committed renders are of exactly these conversations (regenerate the reference if they change).
    assert ref["conversations"] == kConversations
    return ref


@pytest.fixture(scope="module")
def smol(smollm2_gguf):
    meta = read_gguf_meta(str(smollm2_gguf))
    return Tokenizer.from_gguf_metadata(meta), chat_reference()["smollm2"]


@pytest.mark.parametrize("add_gen", [True, False])
def test_smollm2_template_matches_transformers(smol, add_gen):
    tok, ref = smol
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    assert tok.chat_template == ref["chat_template"]
    renders = ref[str(add_gen).lower()]
    assert [r["messages"] for r in renders] == kConversations
    for r in renders:
        got = render_chat(tok.chat_template, r["messages"], add_generation_prompt=add_gen, bos_token=tok.bos_token,
                          eos_token=tok.eos_token)
        assert got == r["text"]
        assert tok.encode(got, add_special_tokens=False) == r["ids"]


kCustomTemplates = [
    "{{ bos_token }}{% for m in messages %}[{{ m.role | upper }}] {{ m.content }}{{ eos_token }}\n{% endfor %}",
    "{{ messages | tojson }}|{{ messages[0] | tojson(indent=2) }}",
    "{% set ns = namespace(n=0) %}{% for m in messages %}{% if m.role == 'assistant' %}{% continue %}{% endif %}"
    "{% set ns.n = ns.n + 1 %}{{ loop.index }}:{{ m.content }}\n{% if ns.n > 1 %}{% break %}{% endif %}{% endfor %}"
    "{{ ns.n }}{% if add_generation_prompt %}<go>{% endif %}",
    "{%- for m in messages -%}\n  {%- if loop.first %}{{ '<sys>' }}{% endif -%}\n  {{ m['content'] | trim }}\n"
    "{%- endfor %}\n{{ dict(a=1) | tojson }}",
]


@pytest.mark.parametrize("template", kCustomTemplates)
def test_custom_templates_match_transformers(template):
    refs = [c for c in chat_reference()["custom"] if c["template"] == template]
    assert len(refs) == 1, "template missing from chat_template_reference.json: regenerate it"
    ref = refs[0]
    assert [r["messages"] for r in ref["renders"]] == kConversations
    for r in ref["renders"]:
        got = render_chat(template, r["messages"], add_generation_prompt=True, bos_token=ref["bos_token"],
                          eos_token=ref["eos_token"])
        assert got == r["text"]


def test_fallback_and_helpers():
    msgs = [{"role": "user", "content": "hi"}]
    assert render_chat(None, msgs) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert render_chat("", msgs, add_generation_prompt=False) == "<|im_start|>user\nhi<|im_end|>\n"
    assert len(render_chat("{{ strftime_now('%Y-%m-%d') }}", msgs)) == 10
    assert render_chat("{{ enable_thinking }}", msgs, enable_thinking=False) == "False"
    with pytest.raises(ValueError, match="roles must alternate"):
        render_chat("{{ raise_exception('roles must alternate') }}", msgs)


kEscapes = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ messages.__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ namespace.__init__.__globals__ }}",
    "{% set ns = namespace() %}{% set ns.__class__ = 1 %}",
    "{{ messages.append(1) }}",
    "{{ messages[0].update({'role': 'x'}) }}",
    "{{ (messages|first).pop('role') }}",
    "{{ raise_exception.__globals__ }}",
    "{{ ''['__class__'] }}",
    "{{ '{0.__class__}'.format('') }}",
]


@pytest.mark.parametrize("template", kEscapes)
def test_sandbox_escapes_rejected(template):
    with pytest.raises(ValueError, match="unsafe"):
        render_chat(template, [{"role": "user", "content": "hi"}])


kBombs = [
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}",
    "{{ 'a' * 1000000000 }}",
    "{{ [1] * 1000000000 }}",
    "{% set ns = namespace(x='ab') %}{% for i in range(64) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}",
    "{% set ns = namespace(x='ab') %}{% for i in range(64) %}{% set ns.x = ns.x + ns.x %}{% endfor %}",
    "{{ 'x' | center(1000000000) }}",
    "{{ 'x'.ljust(1000000000) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ '%999999999d' | format(1) }}",
    "{{ 7 ** 999999999 }}",
    "{% for i in range(100000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' }}{% endfor %}",
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
]


@pytest.mark.parametrize("template", kBombs)
def test_budgets(template):
    t0 = time.monotonic()
    with pytest.raises(ValueError):
        render_chat(template, [{"role": "user", "content": "hi"}], time_budget_s=0.5)
    assert time.monotonic() - t0 < 5.0


def test_output_budget_configurable():
    msgs = [{"role": "user", "content": "x" * 600}, {"role": "assistant", "content": "y" * 600}]
    with pytest.raises(ValueError, match="output"):
        render_chat(None, msgs, max_output_chars=1000)
    assert len(render_chat(None, msgs, max_output_chars=10000)) > 1200
    # One string longer than the whole budget is refused before rendering, naming the message.
    with pytest.raises(ValueError, match=r"messages\[0\]\.content"):
        render_chat(None, [{"role": "user", "content": "x" * 5000}], max_output_chars=1000)


@pytest.mark.parametrize("messages", [
    "hi",
    None,
    [["user", "hi"]],
    [{"content": "hi"}],
    [{"role": "", "content": "hi"}],
    [{"role": 3, "content": "hi"}],
    [{"role": "user"}],
    [{"role": "user", "content": 5}],
    [{"role": "user", "content": "hi", "extra": object()}],
    [{"role": "user", "content": "hi", "meta": {1: "non-string key"}}],
])
def test_malformed_messages(messages):
    with pytest.raises(ValueError, match="messages"):
        render_chat(None, messages)


def test_syntax_error():
    with pytest.raises(ValueError, match="syntax"):
        render_chat("{% for %}", [{"role": "user", "content": "hi"}])


# ---- issue 20 item 1: budgets enforced before the operation (the hostile template corpus) ---------
kCorpus = kTokDataDir.parent / "malformed" / "text"
kCorpusManifest = json.loads((kCorpus / "manifest.json").read_text(encoding="utf-8"))
ChatTemplateError = chat_template.ChatTemplateError
InvalidRequestError = eli_module("errors").InvalidRequestError


@pytest.mark.parametrize("case", kCorpusManifest["templates"], ids=lambda c: c["name"])
def test_hostile_template_corpus(case):
    """Each attack is refused by the check that names it (so before the operation ran: a check
    after the fact would first spend the minutes and gigabytes), or renders when it must."""
    template = (kCorpus / "templates" / f"{case['name']}.jinja").read_text(encoding="utf-8")
    msgs = [{"role": "user", "content": "one\ntwo\nthree"}]
    if case["expect"] is None:
        assert render_chat(template, msgs, time_budget_s=0.5) == ""
        return
    with pytest.raises(ChatTemplateError, match=re.escape(case["expect"])) as info:
        render_chat(template, msgs, time_budget_s=0.5)
    assert isinstance(info.value, ValueError)
    # The same breach through the tracked (LLM.chat / server) path.
    with pytest.raises(ChatTemplateError, match=re.escape(case["expect"])):
        chat_template.render_chat_spans(template, msgs, time_budget_s=0.5)


def test_corpus_covers_the_issue_attacks():
    names = {c["name"] for c in kCorpusManifest["templates"]}
    assert {"pow_tower", "percent_width", "indent_string_width", "percent_width_folded", "deep_parens",
            "macro_recursion", "lipsum_huge", "wordwrap_huge", "sort_million", "sum_lists"} <= names


def test_no_constant_folding_at_compile_time():
    # Jinja folds constant expressions while compiling; a folded '%' format of width 10^9 cost 17 s and
    # 3.8 GB before any budget applied. Intercepted operators and pass_context filters/finalize make
    # every expression run at render time, through the checks.
    chat_template._ENV.from_string("{{ '%0999999999d' % 1 }}{{ 'x' | center(1000000000) }}")  # compiles at once
    with pytest.raises(ChatTemplateError, match="format width"):
        render_chat("{{ '%0999999999d' % 1 }}", [{"role": "user", "content": "hi"}])


def test_template_size_and_token_caps():
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(ChatTemplateError, match="over the limit of 262144"):
        render_chat("x" * (256 * 1024 + 1), msgs)
    assert render_chat("x" * (256 * 1024), msgs) == "x" * (256 * 1024)  # plain text is cheap to compile
    with pytest.raises(ChatTemplateError, match="more than 32768 tokens"):
        render_chat("{{x}}" * 11000, msgs)


def test_compile_failures_are_cached(monkeypatch):
    template = "{% if true %}" * 400 + "{% endif %}" * 400
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(ChatTemplateError, match="nests too deeply"):
        render_chat(template, msgs)
    calls = []
    monkeypatch.setattr(chat_template, "_compile_uncached", lambda t: calls.append(t))
    with pytest.raises(ChatTemplateError, match="nests too deeply"):
        render_chat(template, msgs)
    assert calls == []


def test_process_usable_after_breaches():
    # RecursionError / MemoryError-class failures leave nothing broken behind.
    for case in kCorpusManifest["templates"]:
        template = (kCorpus / "templates" / f"{case['name']}.jinja").read_text(encoding="utf-8")
        try:
            render_chat(template, [{"role": "user", "content": "hi"}], time_budget_s=0.2)
        except ChatTemplateError:
            pass
    assert render_chat(None, [{"role": "user", "content": "hi"}]) == \
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


# ---- message validation (issue 20 items 13, 17, 20; issue 21) --------------------------------------
def test_empty_conversation_refused():
    with pytest.raises(InvalidRequestError, match="empty"):
        render_chat(None, [])


def test_roles():
    with pytest.raises(InvalidRequestError, match="'robot' is not a role"):
        render_chat(None, [{"role": "robot", "content": "beep"}])
    for role in chat_template.kBaseRoles:
        assert f"<|im_start|>{role}\n" in render_chat(None, [{"role": role, "content": "x"}])
    llama = (kTokDataDir / "templates" / "llama31.jinja").read_text(encoding="utf-8")
    assert "ipython" in chat_template.template_roles(llama)
    assert "ipython" not in chat_template.template_roles(chat_template.kFallbackTemplate)
    out = render_chat(llama, [{"role": "user", "content": "q"}, {"role": "ipython", "content": "42"}])
    # (the template runs strings through tojson too: they are iterable)
    assert '<|start_header_id|>ipython<|end_header_id|>\n\n"42"<|eot_id|>' in out
    with pytest.raises(InvalidRequestError, match="not a role"):
        render_chat(None, [{"role": "ipython", "content": "42"}])


@pytest.mark.parametrize("messages,where", [
    ([{"role": "user", "content": "a\ud800b"}], r"messages\[0\]\.content"),
    ([{"role": "user", "content": "ok", "name": "x\udfff"}], r"messages\[0\]\.name"),
    ([{"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "\ud83d"}}]}],
     r"messages\[0\]\.tool_calls\[0\]\.function\.arguments"),
])
def test_lone_surrogates_refused(messages, where):
    with pytest.raises(InvalidRequestError, match=where + ".*surrogate"):
        render_chat(None, messages)


def test_surrogates_in_template_variables_refused():
    with pytest.raises(InvalidRequestError, match="surrogate"):
        render_chat("{{ x }}", [{"role": "user", "content": "hi"}], x="\ud800")


def test_content_parts():
    parts = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "world"}]
    assert render_chat(None, [{"role": "user", "content": parts}]) == \
        render_chat(None, [{"role": "user", "content": "Hello world"}])
    with pytest.raises(InvalidRequestError, match="only text content parts"):
        render_chat(None, [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])
    with pytest.raises(InvalidRequestError, match="only text content parts"):
        render_chat(None, [{"role": "user", "content": ["bare string"]}])
    with pytest.raises(InvalidRequestError, match="must be a string or a list"):
        render_chat(None, [{"role": "user", "content": b"bytes"}])


@pytest.mark.parametrize("template", [5, b"{{ 1 }}", ["{{ 1 }}"], {"template": "x"}])
def test_non_string_template_is_invalid_request(template):
    with pytest.raises(InvalidRequestError, match="chat template must be a string"):
        render_chat(template, [{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("name", ["messages", "add_generation_prompt", "bos_token", "eos_token"])
def test_reserved_template_variables(name):
    with pytest.raises(InvalidRequestError, match="reserved"):
        chat_template.render_chat_spans(None, [{"role": "user", "content": "hi"}], template_vars={name: "x"})


def test_random_filter_is_deterministic():
    # A chat prompt renders the same every time (prefix caching, reproducible requests): jinja2's
    # `random` filter picks with a fixed seed, the same in both render paths (found by the text
    # fuzzer, tests/fuzz/fuzz_text.py).
    from eli import chat_template as ct

    template = "{{ (messages[0].content)|random }}{{ [1, 2, 3, 4, 5, 6, 7, 8]|random }}|{{ []|random }}|"
    msgs = [{"role": "user", "content": "abcdefgh"}]
    outs = {ct.render_chat(template, msgs) for _ in range(20)}
    assert len(outs) == 1
    text, _ = ct.render_chat_spans(template, msgs)
    assert outs == {text}
    assert text.endswith("||")  # an empty sequence gives an undefined (empty) value, not an error
