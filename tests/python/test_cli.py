# tests/python/test_cli.py: the `eli` command line (python/eli/cli.py).
#
# Parsing, exit codes and output routing are tested in-process against a fake engine (no compiled
# module needed); the end-to-end tests at the bottom run `python -m eli.cli` in a subprocess on the
# real SmolLM2 GGUF and need the engine (skipped, with a reason, until it is built).
import io
import json
import os
import pathlib
import subprocess
import sys
import types

import pytest

from eli import cli, hub
from eli.errors import ModelLoadError

SUBCOMMANDS = ["generate", "chat", "info", "pull", "list"]


# ---------------------------------------------------------------------------------------------
# Help and usage errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sub", [None] + SUBCOMMANDS)
def test_help_of_every_subcommand(sub, capsys):
    argv = ["--help"] if sub is None else [sub, "--help"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: eli" + ("" if sub is None else f" {sub}"))
    if sub in ("generate", "chat", "info", "pull", None):
        assert "examples:" in out


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("eli ")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["generate", "--max-tokens", "0", "hi"],
        ["generate", "--max-tokens", "many", "hi"],
        ["generate", "--temperature", "warm", "hi"],
        ["generate", "--device", "tpu", "hi"],
        ["generate", "--dtype", "int3", "hi"],
        ["generate", "--threads", "-1", "hi"],
        ["generate", "--raw", "--chat", "hi"],
        ["generate", "--raw", "--system", "be nice", "hi"],
        ["generate", "a", "b"],
        ["pull"],
        ["info", "--bogus"],
    ],
)
def test_usage_errors_exit_2(argv, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_import_engine", _fail_engine)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "usage: eli" in err and "Traceback" not in err


def test_empty_stdin_prompt_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_import_engine", _fail_engine)
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    assert cli.main(["generate"]) == 2
    assert "prompt is empty" in capsys.readouterr().err


def _fail_engine(*names):
    raise AssertionError("the engine must not be loaded for a usage error")


# ---------------------------------------------------------------------------------------------
# Expected errors, Ctrl-C
# ---------------------------------------------------------------------------------------------


def test_unknown_model_is_one_line_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ELI_CACHE", str(tmp_path))
    assert cli.main(["pull", "no-such-model"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'no-such-model'") and "Traceback" not in err


def test_keyboard_interrupt_exits_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli._COMMANDS, "pull", interrupted)
    assert cli.main(["pull", "smollm2"]) == 130
    assert "Traceback" not in capsys.readouterr().err


def test_list(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ELI_CACHE", str(tmp_path))
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out and "not downloaded" in out and str(tmp_path) in out


# ---------------------------------------------------------------------------------------------
# generate / chat / info against a fake engine
# ---------------------------------------------------------------------------------------------


class FakeLLM:
    instances = []

    def __init__(self, model, device="auto", dtype="auto", n_threads=None, template="{{x}}"):
        self.model, self.device, self.dtype, self.n_threads = model, device, dtype, n_threads
        self.tokenizer = types.SimpleNamespace(chat_template=template)
        self.calls = []
        FakeLLM.instances.append(self)

    def _pieces(self):
        yield from ["Hello", ",", " world"]
        self.last_stats = {"prompt_tokens": 5, "generated_tokens": 3,
                           "prefill_seconds": 0.01, "decode_seconds": 0.02}

    def stream(self, prompt, params):
        self.calls.append(("stream", prompt, params))
        return self._pieces()

    def stream_chat(self, messages, params):
        self.calls.append(("stream_chat", [dict(m) for m in messages], params))
        return self._pieces()


@pytest.fixture
def fake_engine(monkeypatch, tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    FakeLLM.instances = []
    mod = types.SimpleNamespace(
        LLM=FakeLLM,
        SamplingParams=lambda **kw: kw,
        inspect_model=lambda path: {"architecture": "llama", "n_layers": 30,
                                    "n_parameters": 134515008, "chat_template": "x" * 500,
                                    "tensor_dtypes": {"q4_1": 211, "f32": 61}},
    )
    monkeypatch.setattr(cli, "_import_engine", lambda *names: mod)
    return gguf


def test_generate_streams_and_reports(fake_engine, capsys, monkeypatch):
    argv = ["generate", "-m", str(fake_engine), "--max-tokens", "8", "--temperature", "0",
            "--top-k", "5", "--stop", "a", "--stop", "b", "--ignore-eos", "--seed", "3",
            "--device", "cpu", "--dtype", "float32", "--threads", "2", "--system", "sys", "Hi"]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert out == "Hello, world\n"
    assert "prompt 5 tok" in err and "generated 3 tok" in err
    (llm,) = FakeLLM.instances
    assert (llm.model, llm.device, llm.dtype, llm.n_threads) == (str(fake_engine), "cpu", "float32", 2)
    kind, messages, params = llm.calls[0]
    assert kind == "stream_chat"
    assert messages == [{"role": "system", "content": "sys"}, {"role": "user", "content": "Hi"}]
    assert params == {"max_tokens": 8, "temperature": 0.0, "top_k": 5, "seed": 3,
                      "stop": ["a", "b"], "ignore_eos": True}


def test_generate_raw_from_stdin_quiet(fake_engine, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("line one\nline two\n"))
    assert cli.main(["generate", "-m", str(fake_engine), "--raw", "-q", "-"]) == 0
    out, err = capsys.readouterr()
    assert out == "Hello, world\n" and err == ""
    kind, prompt, params = FakeLLM.instances[0].calls[0]
    assert kind == "stream" and prompt == "line one\nline two" and params == {"max_tokens": 128}


def test_generate_chat_flag_needs_a_template(fake_engine, capsys, monkeypatch):
    monkeypatch.setattr(FakeLLM.__init__, "__defaults__", ("auto", "auto", None, None))
    assert cli.main(["generate", "-m", str(fake_engine), "--chat", "Hi"]) == 1
    assert "no chat template" in capsys.readouterr().err
    assert cli.main(["generate", "-m", str(fake_engine), "Hi"]) == 0  # default: raw fallback
    assert FakeLLM.instances[-1].calls[0][0] == "stream"


def test_model_load_error_is_one_line(fake_engine, capsys, monkeypatch):
    def broken(*a, **k):
        raise ModelLoadError("bad tensor offsets in m.gguf")

    monkeypatch.setattr(FakeLLM, "__init__", broken)
    assert cli.main(["generate", "-m", str(fake_engine), "Hi"]) == 1
    err = capsys.readouterr().err
    assert err == "error: bad tensor offsets in m.gguf\n"


def test_chat_keeps_history_and_resets(fake_engine, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("first\n/reset\nsecond\nthird\n/unknown\n"))
    assert cli.main(["chat", "-m", str(fake_engine), "--system", "S", "--stats"]) == 0
    out, err = capsys.readouterr()
    assert out == "Hello, world\n" * 3
    assert "(history cleared)" in err and "unknown command" in err and "generated 3 tok" in err
    histories = [c[1] for c in FakeLLM.instances[0].calls]
    sys_msg = {"role": "system", "content": "S"}
    assert histories[0] == [sys_msg, {"role": "user", "content": "first"}]
    assert histories[1] == [sys_msg, {"role": "user", "content": "second"}]
    assert histories[2] == [sys_msg, {"role": "user", "content": "second"},
                            {"role": "assistant", "content": "Hello, world"},
                            {"role": "user", "content": "third"}]


def test_chat_exit_command(fake_engine, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("/exit\nnever\n"))
    assert cli.main(["chat", "-m", str(fake_engine)]) == 0
    assert FakeLLM.instances[0].calls == []


def test_info_json_and_text(fake_engine, capsys):
    assert cli.main(["info", str(fake_engine), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "llama" and info["path"] == str(fake_engine)
    assert cli.main(["info", str(fake_engine)]) == 0
    out = capsys.readouterr().out
    assert "architecture:" in out and "134,515,008" in out and "(500 chars)" in out
    assert "q4_1:" in out


# ---------------------------------------------------------------------------------------------
# End to end with the real engine and model (subprocess)
# ---------------------------------------------------------------------------------------------


def _engine_available() -> bool:
    try:
        import eli

        return hasattr(eli, "LLM") and hasattr(eli, "inspect_model")
    except Exception:
        return False


needs_engine = pytest.mark.skipif(not _engine_available(), reason="eli's compiled engine is not built")


def _run_cli(*args, stdin=None):
    env = dict(os.environ)
    root = str(pathlib.Path(hub.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "eli.cli", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=600)


def test_pull_prints_cached_path(smollm2_gguf):
    if os.environ.get("ELI_TEST_SMOLLM2"):
        pytest.skip("model given by ELI_TEST_SMOLLM2, not in the cache")
    proc = _run_cli("pull", "smollm2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(smollm2_gguf)


@needs_engine
def test_info_json_on_gguf(smollm2_gguf):
    proc = _run_cli("info", str(smollm2_gguf), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert isinstance(info, dict) and info["path"] == str(smollm2_gguf)
    assert len(info) > 3


@needs_engine
def test_generate_end_to_end(smollm2_gguf):
    proc = _run_cli("generate", "-m", str(smollm2_gguf), "--offline", "--max-tokens", "8",
                    "--temperature", "0", "The capital of France is")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip(), "no text generated"
    assert "generated" in proc.stderr and "Traceback" not in proc.stderr
    again = _run_cli("generate", "-m", str(smollm2_gguf), "--offline", "--max-tokens", "8",
                     "--temperature", "0", "-q", "-", stdin="The capital of France is\n")
    assert again.returncode == 0, again.stderr
    assert again.stdout == proc.stdout and again.stderr == ""  # greedy is deterministic


@needs_engine
def test_generate_bad_model_file(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 32)
    proc = _run_cli("generate", "-m", str(bad), "--offline", "--max-tokens", "2", "Hi")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
