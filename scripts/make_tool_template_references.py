#!/usr/bin/env python3
# scripts/make_tool_template_references.py: transformers' renders of tool-call conversations through
# the real chat templates (tests/data/chat_templates/*.jinja) -> tests/data/chat_templates/tool_renders.json,
# the oracle of tests/python/test_chat_template_tools.py.
# Run in the reference environment (transformers installed): `source /work/wt/ref_env.sh` first.
# The conversations and tools come from the test file; they are first normalized by
# eli.chat_template.normalize_tool_history (as eli does before rendering; vLLM does the same), then
# rendered by transformers.utils.chat_template_utils.render_jinja_template with bos "<s>", eos "</s>".
# A template that raises (Llama 3.x refuses parallel calls) is recorded as an error.
from __future__ import annotations

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "python"))
sys.path.insert(0, str(ROOT / "python"))


def main() -> int:
    import transformers
    from transformers.utils.chat_template_utils import render_jinja_template

    from test_chat_template_tools import CONVERSATIONS, TOOLS, VARS, kDir, kFamilies, ct

    renders = []
    for fam in kFamilies:
        template = (kDir / f"{fam}.jinja").read_text(encoding="utf-8")
        for i, conv in enumerate(CONVERSATIONS):
            msgs = ct.normalize_tool_history(ct.validate_messages(conv), template)
            for with_tools in (True, False):
                try:
                    out = render_jinja_template([msgs], tools=TOOLS if with_tools else None, chat_template=template,
                                                add_generation_prompt=True, bos_token="<s>", eos_token="</s>", **VARS)
                    text, err = (out[0] if isinstance(out, tuple) else out)[0], None
                except Exception as e:  # noqa: BLE001 -- the template's own refusal
                    text, err = None, f"{type(e).__name__}: {e}"
                renders.append({"template": fam, "conversation": i, "tools": with_tools, "text": text, "error": err})
    qwen3 = (kDir / "qwen3.jinja").read_text(encoding="utf-8")
    out = {"transformers": transformers.__version__,
           "normalized": [ct.normalize_tool_history(ct.validate_messages(c), qwen3) for c in CONVERSATIONS],
           "renders": renders}
    (kDir / "tool_renders.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(renders)} renders, {sum(r['error'] is not None for r in renders)} template errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
