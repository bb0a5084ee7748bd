# tests/python/test_chat_template_tools_hub.py: issue 18 item 4, a model pulled from the Hub keeps
# its chat template. A fake Hub (no network): a repo folder holding weights, tokenizer files,
# chat_template.jinja / chat_template.json and files that must not come (pickles, README), and a
# fake huggingface_hub.snapshot_download that copies what eli's allow/ignore patterns select (fnmatch,
# as huggingface_hub filters). The template eli then loads is the repo's (the .jinja file first, then
# tokenizer_config.json's, then chat_template.json's), its tool-call parser is detected from it, and
# a repo without any template loads with none, which the server warns about at startup.
from __future__ import annotations

import fnmatch
import logging
import pathlib
import shutil
import sys
import types

import pytest

from eli import hub
from eli.tokenizer import Tokenizer
from eli.tool_parsers import detect_parser_name

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
MODEL = DATA / "models" / "llama_base"
QWEN3 = (DATA / "chat_templates" / "qwen3.jinja").read_text(encoding="utf-8")
MISTRAL = (DATA / "chat_templates" / "mistral_nemo.jinja").read_text(encoding="utf-8")


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("ELI_CACHE", str(tmp_path / "cache"))
    repos = tmp_path / "hub"
    fetched: list = []

    def snapshot_download(repo_id, *, allow_patterns=None, ignore_patterns=None, local_files_only=False, **kw):
        src = repos / repo_id
        dst = tmp_path / "snapshots" / repo_id
        dst.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            ok = any(fnmatch.fnmatch(f.name, p) for p in allow_patterns or ["*"])
            if ok and not any(fnmatch.fnmatch(f.name, p) for p in ignore_patterns or []):
                shutil.copy(f, dst / f.name)
                fetched.append(f.name)
        return str(dst)

    mod = types.ModuleType("huggingface_hub")
    mod.snapshot_download = snapshot_download
    mod.utils = types.SimpleNamespace(disable_progress_bars=lambda: None, enable_progress_bars=lambda: None)
    monkeypatch.setitem(sys.modules, "huggingface_hub", mod)

    def make_repo(name, files):
        d = repos / name
        d.mkdir(parents=True)
        for f in MODEL.iterdir():
            if f.name != "reference.npz":
                shutil.copy(f, d / f.name)
        (d / "pytorch_model.bin").write_bytes(b"pickle")
        (d / "README.md").write_text("# model card")
        for fname, text in files.items():
            (d / fname).write_text(text, encoding="utf-8")
        return name

    return make_repo, fetched


def _pull(name):
    path = hub.resolve_model(name, progress=False)
    return path, Tokenizer.from_hf_dir(path)


def test_chat_template_jinja_comes_with_the_model(fake_hub):
    make_repo, fetched = fake_hub
    path, tok = _pull(make_repo("org/qwenish", {"chat_template.jinja": QWEN3}))
    assert "chat_template.jinja" in fetched and "pytorch_model.bin" not in fetched and "README.md" not in fetched
    assert tok.chat_template == QWEN3
    assert detect_parser_name(tok.chat_template) == "hermes"


def test_chat_template_json_comes_with_the_model(fake_hub):
    import json
    make_repo, fetched = fake_hub
    path, tok = _pull(make_repo("org/mistralish", {"chat_template.json": json.dumps({"chat_template": MISTRAL})}))
    assert "chat_template.json" in fetched
    assert tok.chat_template == MISTRAL and detect_parser_name(tok.chat_template) == "mistral"


def test_the_jinja_file_wins(fake_hub):
    import json
    make_repo, _ = fake_hub
    _, tok = _pull(make_repo("org/both", {"chat_template.jinja": QWEN3,
                                          "chat_template.json": json.dumps({"chat_template": MISTRAL})}))
    assert tok.chat_template == QWEN3


def test_no_template_is_none_and_the_server_warns(fake_hub, caplog):
    from server_helpers import FakeAsyncLLM

    from eli.server.app import create_app

    make_repo, _ = fake_hub
    path, tok = _pull(make_repo("org/bare", {}))
    assert tok.chat_template is None
    with caplog.at_level(logging.WARNING, logger="eli.server"):
        app = create_app(FakeAsyncLLM(path), model_name="bare", render_workers=0)
    assert app.state.server.tool_parser.name == "json"
    assert any("no chat template" in r.getMessage() for r in caplog.records)
