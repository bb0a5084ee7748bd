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
    msgs = [{"role": "user", "content": "x" * 5000}]
    with pytest.raises(ValueError, match="output"):
        render_chat(None, msgs, max_output_chars=1000)
    assert len(render_chat(None, msgs, max_output_chars=10000)) > 5000


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
