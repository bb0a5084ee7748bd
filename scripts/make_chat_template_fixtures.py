#!/usr/bin/env python3
# scripts/make_chat_template_fixtures.py: writes tests/data/chat_templates/*.jinja, the real chat
# templates of the model families eli's tool-call parsers serve, plus SOURCES.md crediting each.
#
# The templates are the model authors' own (Meta, Alibaba Qwen, Mistral AI, Nous Research, Hugging
# Face); eli only tests its renderer and tool-call parsers against them. Sources:
#   - llama.cpp's models/templates/ (MIT), which copies each model's tokenizer_config.json
#     chat_template verbatim, at a pinned commit;
#   - Qwen2.5: the chat_template of Qwen/Qwen2.5-7B-Instruct's tokenizer_config.json (Apache-2.0);
#   - SmolLM2: the tokenizer.chat_template of the GGUF eli ships as its default model.
# Usage: python scripts/make_chat_template_fixtures.py [--from DIR]
#   without --from: downloads each file (needs network) and writes it;
#   --from DIR: takes NAME.jinja files from DIR instead, for a machine without
#   access to GitHub / the Hub.
# Tests never touch the network: they read the committed files.
from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import sys
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "chat_templates"
LLAMA_CPP = "https://raw.githubusercontent.com/ggml-org/llama.cpp/b354d7c9ecb76c97c07098617cdebbdfffa2583e/models/templates/"

# name -> (model, where it comes from, how to fetch it); SOURCES.md records each file's sha256
SOURCES = {
    "llama3.1": ("meta-llama/Llama-3.1-8B-Instruct (same template as Llama-3.3-70B-Instruct)",
                 LLAMA_CPP + "meta-llama-Llama-3.3-70B-Instruct.jinja", "raw"),
    "llama3.2": ("meta-llama/Llama-3.2-3B-Instruct",
                 LLAMA_CPP + "meta-llama-Llama-3.2-3B-Instruct.jinja", "raw"),
    "qwen2.5": ("Qwen/Qwen2.5-7B-Instruct",
                "https://huggingface.co/Qwen/Qwen2.5-7B-Instruct/raw/main/tokenizer_config.json",
                "tokenizer_config"),
    "qwen3": ("Qwen/Qwen3-0.6B", LLAMA_CPP + "Qwen-Qwen3-0.6B.jinja", "raw"),
    "mistral_nemo": ("mistralai/Mistral-Nemo-Instruct-2407",
                     LLAMA_CPP + "mistralai-Mistral-Nemo-Instruct-2407.jinja", "raw"),
    "hermes3": ("NousResearch/Hermes-3-Llama-3.1-8B (tool_use template)",
                LLAMA_CPP + "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", "raw"),
    "smollm2": ("HuggingFaceTB/SmolLM2-135M-Instruct (eli's default GGUF)", "gguf:smollm2-135m-instruct", "gguf"),
}


def _fetch(url: str, kind: str) -> str:
    if kind == "gguf":
        import gguf  # the gguf-py reader, a test dependency

        from eli.hub import resolve_model
        path = resolve_model(url.split(":", 1)[1])
        field = gguf.GGUFReader(path).fields["tokenizer.chat_template"]
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    with urllib.request.urlopen(url, timeout=60) as r:  # noqa: S310 (fixed https URLs above)
        body = r.read().decode("utf-8")
    return json.loads(body)["chat_template"] if kind == "tokenizer_config" else body


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--from", dest="src", type=pathlib.Path, help="take NAME.jinja files from this folder")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    lines = ["# Chat templates used by eli's tests (written by scripts/make_chat_template_fixtures.py)", "",
             "Each file is a model's own chat template, copied verbatim for tests of eli's renderer and",
             "tool-call parsers; the templates belong to the model authors. llama.cpp's models/templates/",
             "(MIT) is the copy used where it has one.", "",
             "| file | model | source | sha256 |", "|---|---|---|---|"]
    for name, (model, url, kind) in SOURCES.items():
        if args.src is not None and kind != "gguf":
            text = (args.src / f"{name}.jinja").read_text(encoding="utf-8")
        else:
            text = _fetch(url, kind)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        (OUT / f"{name}.jinja").write_text(text, encoding="utf-8", newline="")
        lines.append(f"| {name}.jinja | {model} | {url} | {digest} |")
        print(f"{name}: {len(text)} chars, sha256 {digest[:16]}")
    (OUT / "SOURCES.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
