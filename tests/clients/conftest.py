# tests/clients/conftest.py: the real-client suite's fixtures. One `eli serve` process (CPU) for the
# whole session, on a copy of the tiny random llama_base checkpoint whose context is raised to 4096
# (tool prompts are long in its byte-level vocabulary; the weights and RoPE do not depend on the
# limit), with Qwen3's real chat template (tests/data/chat_templates/), so tools reach the model
# through the template and replies are read by the hermes parser, as for a real Qwen3.
from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from clients_common import API_KEY, MODEL_NAME, need

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "tests" / "data" / "models" / "llama_base"
TEMPLATE = ROOT / "tests" / "data" / "chat_templates" / "qwen3.jinja"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def eli_server(tmp_path_factory):
    model = tmp_path_factory.mktemp("model") / "llama_base_4k"
    model.mkdir()
    for f in MODEL.iterdir():
        if f.name != "reference.npz":
            shutil.copy(f, model / f.name)
    cfg = json.loads((MODEL / "config.json").read_text())
    cfg["max_position_embeddings"] = 4096
    (model / "config.json").write_text(json.dumps(cfg))
    port = _free_port()
    log = open(tmp_path_factory.mktemp("log") / "serve.log", "w+")
    env = dict(os.environ, ELI_API_KEY=API_KEY)
    proc = subprocess.Popen(
        [sys.executable, "-m", "eli", "serve", str(model), "--port", str(port), "--dtype", "float32",
         "--threads", "1", "--served-model-name", MODEL_NAME, "--chat-template", str(TEMPLATE),
         "--render-workers", "0", "--max-tokens-default", "256", "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"eli serve exited with {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("eli serve did not become healthy within 120 s")
            time.sleep(0.2)
        yield base + "/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def openai_client(eli_server):
    openai = need("openai")
    return openai.OpenAI(base_url=eli_server, api_key=API_KEY, max_retries=0, timeout=120)
