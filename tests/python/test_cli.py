# tests/python/test_cli.py: the `eli` command line (python/eli/cli.py).
#
# Parsing, exit codes and output routing are tested in-process against a fake engine (no compiled
# module needed); the end-to-end tests at the bottom run `python -m eli.cli` in a subprocess on the
# real SmolLM2 GGUF and need the engine (skipped, with a reason, until it is built).
import io
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import types

import pytest

from eli import cli, hub
from eli.errors import ModelLoadError

SUBCOMMANDS = ["generate", "run", "chat", "info", "show", "pull", "list", "ls", "rm"]


# ---------------------------------------------------------------------------------------------
# Help and usage errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sub", [None] + SUBCOMMANDS)
def test_help_of_every_subcommand(sub, capsys):
    argv = ["--help"] if sub is None else [sub, "--help"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    canonical = {"show": "info", "ls": "list"}.get(sub, sub)  # aliases print the command's usage
    assert out.startswith("usage: eli" + ("" if sub is None else f" {canonical}"))
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
        ["generate", "a", "b", "c"],
        ["generate", "-m", "x", "a", "b"],
        ["generate", "--stop", "", "hi"],
        ["generate", "--top-k", "-2", "hi"],
        ["chat", "-m", "x", "y"],
        ["chat", "a", "b"],
        ["run", "a", "b", "c"],
        ["info", "-m", "x", "y"],
        ["serve", "-m", "x", "y"],
        ["pull"],
        ["rm"],
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
        inspect_model=lambda path: _fake_inspect(path),
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


def _fake_inspect(path):
    """What eli.inspect_model returns for a GGUF, with a vocabulary that would make JSON huge."""
    spec = {"architecture": "llama", "vocab_size": 49152, "hidden_size": 576,
            "intermediate_size": 1536, "num_layers": 30, "num_heads": 9, "num_kv_heads": 3,
            "head_dim": 64, "max_position_embeddings": 8192}
    tensors = [(f"blk.{i}.attn_q.weight", "q4_1", [576, 576]) for i in range(30)]
    tensors += [("output_norm.weight", "f32", [576])]
    meta = {"general.name": "Fake", "general.file_type": 3, "tokenizer.ggml.model": "gpt2",
            "tokenizer.ggml.tokens": [f"tok{i}" for i in range(49152)],
            "tokenizer.ggml.merges": [f"a{i} b{i}" for i in range(48900)]}
    return {"path": str(path), "format": "gguf", "spec": spec, "tensors": tensors,
            "num_params": 134515008, "gguf_metadata": meta}


def test_info_json_is_small_with_top_level_architecture(fake_engine, capsys):
    assert cli.main(["info", str(fake_engine), "--json"]) == 0
    out = capsys.readouterr().out
    info = json.loads(out)
    # the help's example: `eli info ./model-dir --json | jq .architecture`
    assert info["architecture"] == "llama" and info["spec"]["architecture"] == "llama"
    assert info["path"] == str(fake_engine) and info["format"] == "gguf"
    assert info["file_type"] == 3 and info["quantization"] == "MOSTLY_Q4_1"
    assert info["tensor_dtypes"] == {"q4_1": 30, "f32": 1}
    assert info["num_params"] == 134515008 and info["context_length"] == 8192
    assert info["memory_estimate"]["kv_bytes_per_token"]["float32"] == 2 * 30 * 3 * 64 * 4
    # the fake vocabulary is not a loadable tokenizer: said, not raised
    assert info["tokenizer"]["error"] and info["chat_template"] == {"present": False}
    assert len(out) < 4000, "no vocabulary, merges or tensor list by default"
    assert "tensors" not in info and "gguf_metadata" not in info


def test_info_verbose_json_summarizes_arrays(fake_engine, capsys):
    assert cli.main(["show", "--json", "--verbose", str(fake_engine)]) == 0
    out = capsys.readouterr().out
    info = json.loads(out)
    assert len(info["tensors"]) == 31 and info["tensors"][0] == {
        "name": "blk.0.attn_q.weight", "dtype": "q4_1", "shape": [576, 576]}
    meta = info["gguf_metadata"]
    assert meta["tokenizer.ggml.tokens"] == {"array_length": 49152}
    assert meta["tokenizer.ggml.merges"] == {"array_length": 48900}
    assert meta["general.file_type"] == 3
    assert len(out) < 20000


def test_info_text_summary_and_verbose_tensor_table(fake_engine, capsys):
    assert cli.main(["info", "-m", str(fake_engine)]) == 0
    out = capsys.readouterr().out
    assert "MOSTLY_Q4_1" in out and "general.file_type: 3" not in out
    assert "134.5M (134,515,008)" in out and "8,192 tokens" in out
    assert "tokenizer:" in out and "cannot be loaded" in out
    assert "blk.0.attn_q.weight" not in out and len(out.splitlines()) < 15
    assert cli.main(["info", str(fake_engine), "--verbose"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    tensor_lines = [ln for ln in lines if ".attn_q.weight" in ln]
    assert len(tensor_lines) == 30, "one tensor per line"
    assert tensor_lines[0].split() == ["blk.0.attn_q.weight", "q4_1", "576", "x", "576"]
    assert any("[array of 49,152 items]" in ln for ln in lines)
    assert any("general.file_type:" in ln and "3 (MOSTLY_Q4_1)" in ln for ln in lines)
    assert max(len(ln) for ln in lines) < 200


def test_chat_template_fallback_warns_once(caplog, monkeypatch):
    from eli import chat_template

    monkeypatch.setattr(chat_template, "_fallback_warned", False)
    with caplog.at_level(logging.WARNING, logger="eli"):
        for _ in range(3):
            text = chat_template.render_chat(None, [{"role": "user", "content": "hi"}])
        chat_template.render_chat("{{ messages[0]['content'] }}", [{"role": "user", "content": "x"}])
    assert "<|im_start|>user" in text
    assert [r.levelno for r in caplog.records if "no chat template" in r.getMessage()] == [logging.WARNING]


def test_gguf_file_type_names():
    from eli.model_info import gguf_file_type_name

    assert gguf_file_type_name(3) == "MOSTLY_Q4_1"
    assert gguf_file_type_name(0) == "ALL_F32" and gguf_file_type_name(15) == "MOSTLY_Q4_K_M"
    assert gguf_file_type_name(32) == "MOSTLY_BF16"
    assert gguf_file_type_name(999) == "unknown file_type 999"
    assert gguf_file_type_name(None) is None and gguf_file_type_name(True) is None


def test_info_help_example_reads_architecture(capsys):
    assert cli.main(["info", "--help"]) == 0
    assert "--json | jq .architecture" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# Positional MODEL, the Ollama aliases, flag values checked before loading
# ---------------------------------------------------------------------------------------------


def test_generate_model_and_prompt_positionals(fake_engine, capsys):
    assert cli.main(["generate", str(fake_engine), "Hi there"]) == 0
    llm = FakeLLM.instances[-1]
    assert llm.model == str(fake_engine) and llm.calls[0][1][-1]["content"] == "Hi there"
    # options between the two positionals (argparse alone would reject "Hi")
    assert cli.main(["generate", str(fake_engine), "-n", "8", "--temperature", "0", "Hi"]) == 0
    llm = FakeLLM.instances[-1]
    assert llm.model == str(fake_engine) and llm.calls[0][1][-1]["content"] == "Hi"
    assert llm.calls[0][2]["max_tokens"] == 8
    # one positional is the prompt; the model comes from -m
    assert cli.main(["generate", "-m", str(fake_engine), "Hello"]) == 0
    assert FakeLLM.instances[-1].calls[0][1][-1]["content"] == "Hello"


def test_unquoted_prompt_gets_a_hint(fake_engine, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ELI_CACHE", str(tmp_path / "cache"))
    assert cli.main(["generate", "Hello", "world", "--offline"]) == 1
    err = capsys.readouterr().err
    assert "unknown model 'Hello'" in err and "quote a prompt" in err and "Traceback" not in err


def test_chat_info_serve_take_a_positional_model(fake_engine, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hi\n"))
    assert cli.main(["chat", str(fake_engine)]) == 0
    assert FakeLLM.instances[-1].model == str(fake_engine)
    seen = {}
    monkeypatch.setitem(cli._COMMANDS, "serve", lambda args: seen.setdefault("model", args.model) and 0)
    assert cli.main(["serve", "smollm2", "--port", "8123"]) == 0
    assert seen["model"] == "smollm2"
    assert cli.main(["serve", "--help"]) == 0
    assert "[MODEL]" in capsys.readouterr().out


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_run_is_generate_with_a_prompt_and_chat_without(fake_engine, capsys, monkeypatch):
    assert cli.main(["run", str(fake_engine), "Why?"]) == 0  # ollama run MODEL PROMPT
    llm = FakeLLM.instances[-1]
    assert llm.model == str(fake_engine) and llm.calls[0][0] == "stream_chat"
    assert llm.calls[0][1] == [{"role": "user", "content": "Why?"}]
    assert llm.calls[0][2]["max_tokens"] == 512
    monkeypatch.setattr(sys, "stdin", io.StringIO("piped question\n"))
    assert cli.main(["run", str(fake_engine)]) == 0  # piped stdin: one reply
    assert FakeLLM.instances[-1].calls[0][1][-1]["content"] == "piped question"
    monkeypatch.setattr(sys, "stdin", _Tty("one\ntwo\n/exit\n"))
    assert cli.main(["run", str(fake_engine)]) == 0  # a terminal: the interactive chat
    calls = FakeLLM.instances[-1].calls
    assert [c[1][-1]["content"] for c in calls] == ["one", "two"]
    assert len(calls[1][1]) == 3  # history kept
    monkeypatch.setattr(sys, "stdin", io.StringIO("x\n"))
    assert cli.main(["run", "-m", str(fake_engine), "Hello"]) == 0  # with -m, one positional is the prompt
    assert FakeLLM.instances[-1].calls[0][1][-1]["content"] == "Hello"


def test_ls_show_are_aliases(capsys, tmp_path, monkeypatch):
    from eli import hub_cache

    monkeypatch.setenv("ELI_CACHE", str(tmp_path / "eli"))
    monkeypatch.setattr(hub_cache, "hf_cache_root", lambda: tmp_path / "hf")
    assert cli.main(["ls"]) == 0
    assert "smollm2-135m-instruct" in capsys.readouterr().out
    assert cli.main(["show", "--help"]) == 0 and "--verbose" in capsys.readouterr().out


@pytest.mark.parametrize("flag, value, message", [
    ("--top-p", "2", "(0, 1]"), ("--top-p", "0", "(0, 1]"), ("--temperature", "-1", ">= 0"),
    ("--temperature", "nan", ">= 0"), ("--temperature", "inf", ">= 0"), ("--min-p", "1.5", "[0, 1]"),
    ("--top-k", "-3", "0 or -1"), ("--repetition-penalty", "0", "> 0"),
    ("--presence-penalty", "2.5", "[-2, 2]"), ("--frequency-penalty", "-3", "[-2, 2]"),
    ("--seed", "-1", "2**64"), ("--max-tokens", "0", "[1,"), ("--max-tokens", "99999999", "[1,"),
])
def test_bad_sampling_value_fails_before_any_model_work(flag, value, message, capsys, monkeypatch):
    def no_resolve(*a, **k):
        raise AssertionError("the model must not be resolved for a bad flag")

    monkeypatch.setattr(hub, "resolve_model", no_resolve)
    monkeypatch.setattr(cli, "_import_engine", _fail_engine)
    for command in (["generate"], ["chat"], ["run"]):
        assert cli.main(command + [flag, value, "hi"] if command != ["chat"] else command + [flag, value]) == 2
        err = capsys.readouterr().err
        assert f"{flag}: expected" in err and message in err and "Traceback" not in err


def test_stop_strings_accept_escapes(fake_engine, capsys):
    argv = ["generate", "-m", str(fake_engine), "--stop", "\\n", "--stop", "a\\tb", "--stop",
            "\\x41\\u00e9\\\\", "--stop", "C:\\path", "--stop", "plain", "Hi"]
    assert cli.main(argv) == 0
    params = FakeLLM.instances[-1].calls[0][2]
    assert params["stop"] == ["\n", "a\tb", "A\u00e9\\", "C:\\path", "plain"]


def test_unescape_rejects_surrogates():
    import argparse

    from eli.cli_args import unescape

    assert unescape("\\U0001F600") == "\U0001F600"
    with pytest.raises(argparse.ArgumentTypeError):
        unescape("\\ud800")


def test_sampling_help_prints_the_default_values(capsys):
    from eli.sampling_params import SamplingParams

    d = SamplingParams()
    assert cli.main(["generate", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "engine's)" not in out
    assert f"greedy (default: {d.temperature})" in out
    assert f"(default: {d.top_p}" in out and f"(default: {d.min_p}" in out
    assert "generation_config.json" in out


def test_model_defaults_are_used_for_unset_flags(fake_engine, capsys, monkeypatch):
    from eli.sampling_params import SamplingParams

    monkeypatch.setattr(FakeLLM, "get_default_sampling_params",
                        lambda self: SamplingParams(temperature=0.3, top_p=0.8), raising=False)
    assert cli.main(["generate", "-m", str(fake_engine), "--top-p", "0.5", "Hi"]) == 0
    params = FakeLLM.instances[-1].calls[0][2]
    assert isinstance(params, SamplingParams)
    assert (params.temperature, params.top_p, params.max_tokens) == (0.3, 0.5, 128)


def test_generate_says_when_the_model_has_no_template(fake_engine, capsys, monkeypatch):
    monkeypatch.setattr(FakeLLM.__init__, "__defaults__", ("auto", "auto", None, None))
    assert cli.main(["generate", "-m", str(fake_engine), "Hi"]) == 0
    assert "no chat template" in capsys.readouterr().err
    assert cli.main(["generate", "-m", str(fake_engine), "--raw", "Hi"]) == 0
    assert "no chat template" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# End to end with the real engine and model (subprocess)
# ---------------------------------------------------------------------------------------------


def _engine_available() -> bool:
    try:
        from eli import _eli  # noqa: F401 -- the compiled module, not just the lazy wrappers

        return True
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
def test_info_on_the_real_gguf(smollm2_gguf):
    proc = _run_cli("info", str(smollm2_gguf), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["path"] == str(smollm2_gguf) and info["architecture"] == "llama"
    assert info["file_type"] == 3 and info["quantization"] == "MOSTLY_Q4_1"
    assert info["tokenizer"]["vocab_size"] == 49152 and "BPE" in info["tokenizer"]["kind"]
    assert info["chat_template"]["present"] and info["chat_template"]["source"] == "GGUF metadata"
    assert info["context_length"] == 8192 and info["num_params"] > 100_000_000
    assert len(proc.stdout) < 10_000, "the vocabulary and merges stay out of the default JSON"
    text = _run_cli("show", str(smollm2_gguf))
    assert text.returncode == 0, text.stderr
    assert "MOSTLY_Q4_1" in text.stdout and "token_embd.weight" not in text.stdout
    verbose = _run_cli("info", str(smollm2_gguf), "--verbose")
    assert any(ln.split()[:2] == ["token_embd.weight", "q8_0"] for ln in verbose.stdout.splitlines())


@needs_engine
def test_info_on_hf_dir_shows_tokenizer_and_chat_template(data_dir, tmp_path, capsys):
    model = tmp_path / "m"
    shutil.copytree(data_dir / "models" / "llama_base", model)
    assert cli.main(["info", str(model), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "llama" and info["format"] == "safetensors"
    assert info["dtype"] == "float32" and info["quantization"] is None
    assert info["tokenizer"]["kind"].startswith("BPE") and info["tokenizer"]["eos_token"] == "</s>"
    assert info["chat_template"] == {"present": False}
    (model / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    assert cli.main(["info", str(model), "--json"]) == 0
    chat = json.loads(capsys.readouterr().out)["chat_template"]
    assert chat["present"] and chat["source"] == "chat_template.jinja"
    assert cli.main(["info", str(model)]) == 0
    out = capsys.readouterr().out
    assert "tokenizer:" in out and "</s>" in out and "yes (chat_template.jinja" in out


@needs_engine
def test_chat_api_on_a_model_without_template_warns(data_dir, caplog, monkeypatch):
    import eli
    from eli import chat_template

    monkeypatch.setattr(chat_template, "_fallback_warned", False)
    llm = eli.LLM(str(data_dir / "models" / "llama_base"), device="cpu")
    try:
        with caplog.at_level(logging.WARNING, logger="eli"):
            llm.chat([{"role": "user", "content": "hi"}], eli.SamplingParams(max_tokens=2))
            llm.chat([{"role": "user", "content": "again"}], eli.SamplingParams(max_tokens=2))
    finally:
        llm.shutdown()
    warnings = [r for r in caplog.records if "no chat template" in r.getMessage()]
    assert len(warnings) == 1, "warned once per process"


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
