# tests/python/test_server_cli.py: the operator side of `eli serve` and `eli bench serve` (issue 21,
# Server section): a busy port fails before the model loads, install hints a user can run, the
# access log and the periodic stats line, the default max_tokens, and `eli bench serve` ending at the
# first authentication error with one clear message, with progress.
from __future__ import annotations

import io
import json
import logging
import pathlib
import socket
import sys

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from eli.cli import main  # noqa: E402
from eli.server import create_app  # noqa: E402

from server_helpers import FakeAsyncLLM, ThreadedServer  # noqa: E402
from test_server import metric_labeled  # noqa: E402

MODEL_DIR = pathlib.Path(__file__).resolve().parent.parent / "data" / "models" / "llama_base"


def test_busy_port_fails_before_the_model_loads(capsys, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        missing = str(tmp_path / "no-such-model")
        assert main(["serve", "-m", missing, "--port", str(port), "--offline"]) == 1
        err = capsys.readouterr().err
        assert f"cannot listen on 127.0.0.1:{port}" in err and "no-such-model" not in err
    # a free port and a bad model: the model error, and the port is released again
    assert main(["serve", "-m", missing, "--port", str(port), "--offline"]) == 1
    assert "no-such-model" in capsys.readouterr().err
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))


def test_serve_help_and_missing_extra_point_at_runnable_installs(capsys, monkeypatch):
    assert main(["serve", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # help text is wrapped
    assert "efficient-llm-inference[serve]" not in out
    assert 'pip install ".[serve]"' in out and "pip install fastapi uvicorn prometheus-client" in out
    assert "access log" in out  # --log-level says what each level shows
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    assert main(["serve", "-m", "x", "--offline"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "pip install fastapi uvicorn prometheus-client" in err and "efficient-llm-inference[serve]" not in err


def test_uvicorn_config_logs_requests_at_info():
    from eli.server.serve import uvicorn_config

    app = create_app(FakeAsyncLLM(str(MODEL_DIR)), model_name="m", render_workers=0)
    info = uvicorn_config(app, log_level="info")
    assert info.access_log and info.limit_concurrency == 1024 and info.timeout_keep_alive == 5
    assert info.log_config["loggers"]["eli"]["level"] == "INFO"
    assert info.http.__name__.startswith("HeadTimeout")
    assert not uvicorn_config(app, log_level="warning").access_log


def test_stats_line():
    from eli.server.metrics import StatsLogger

    stats = {"prompt_tokens": 0, "generated_tokens": 0, "num_running": 0, "num_waiting": 0,
             "kv_blocks_total": 100, "kv_blocks_free": 100, "prefix_cache_hits": 0, "prefix_cache_queries": 0}
    records = []
    logger = logging.getLogger("eli.test_stats_line")
    logger.addHandler(type("H", (logging.Handler,), {"emit": lambda self, r: records.append(r.getMessage())})())
    logger.setLevel(logging.INFO)
    sl = StatsLogger(lambda: stats, 10.0, logger)
    assert sl.maybe_log(now=0.0) is None  # the baseline
    stats.update(prompt_tokens=200, generated_tokens=50, num_running=3, num_waiting=1, kv_blocks_free=75,
                 prefix_cache_hits=10, prefix_cache_queries=40)
    assert sl.maybe_log(now=5.0) is None  # not due
    line = sl.maybe_log(now=10.0)
    assert line == ("Avg prompt throughput: 20.0 tokens/s, Avg generation throughput: 5.0 tokens/s, Running: 3 reqs, "
                    "Waiting: 1 reqs, KV cache usage: 25.0%, Prefix cache hit rate: 25.0%")
    assert records == [line]
    stats.update(num_running=0, num_waiting=0)
    assert sl.maybe_log(now=20.0) is None  # idle: silent
    assert StatsLogger(lambda: stats, 0, logger).maybe_log(now=99.0) is None  # 0 = off


def test_max_tokens_default():
    llm = FakeAsyncLLM(str(MODEL_DIR))
    app = create_app(llm, model_name="m", max_tokens_default=5, render_workers=0)
    msg = [{"role": "user", "content": "hi"}]
    with ThreadedServer(app) as s:
        for body, want in (({"messages": msg}, 5), ({"messages": msg, "max_tokens": 7}, 7),
                           ({"prompt": "x"}, 16), ({"prompt": "x", "max_tokens": None}, 5)):
            path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
            n0 = len(llm.requests)
            r = httpx.post(s.url + path, json=body, timeout=30)
            assert r.status_code == 200, r.text
            assert llm.requests[n0][1].max_tokens == want, body


def test_bench_fails_fast_on_auth_errors(capsys):
    llm = FakeAsyncLLM(str(MODEL_DIR))
    app = create_app(llm, model_name="m", api_key="right", render_workers=0)
    with ThreadedServer(app) as s:
        rc = main(["bench", "serve", "--url", s.url, "--api-key", "wrong", "--num-requests", "50",
                   "--input-len-mean", "2", "--output-len-mean", "2"])
        err = capsys.readouterr().err
        assert rc == 1
        lines = [x for x in err.splitlines() if x.strip()]
        assert len(lines) == 1 and "401" in lines[0] and "--api-key" in lines[0], err
        text = httpx.get(s.url + "/metrics", headers={"Authorization": "Bearer right"}).text
        assert metric_labeled(text, "eli:http_requests_total", endpoint="/v1/models", status="401") == 1
        assert metric_labeled(text, "eli:http_requests_total", endpoint="/v1/completions") == 0
        assert llm.requests == []
        # with the key: progress on stderr, results on stdout
        rc = main(["bench", "serve", "--url", s.url, "--api-key", "right", "--num-requests", "4",
                   "--input-len-mean", "2", "--output-len-mean", "2", "--json"])
        captured = capsys.readouterr()
        assert rc == 0 and json.loads(captured.out)["successful"] == 4
        assert "bench: 4/4 requests" in captured.err


def test_bench_progress_lines():
    from eli.bench_serve import Progress

    out = io.StringIO()
    p = Progress(out, 20)
    for i in range(1, 21):
        p(i, 1 if i > 10 else 0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and "\r" not in out.getvalue()  # one line per 10% when not a terminal
    assert lines[-1] == "bench: 20/20 requests (1 failed)"
    tty = io.StringIO()
    tty.isatty = lambda: True
    p = Progress(tty, 5)
    p(1, 0)
    p(2, 0)
    p.finish()  # an error ends the run: the progress line is closed first
    assert tty.getvalue() == "\rbench: 1/5 requests\rbench: 2/5 requests\n"
