# tests/python/test_options.py: the engine option table (include/eli/engine_options.def) on the
# Python side: the generated table module is current and equals the compiled module's; the
# keywords of eli.LLM / eli.AsyncLLM are checked from it before any model is resolved (unknown
# keyword, wrong type, every bound, n_threads against the machine), always as InvalidRequestError
# naming the caller or option, never RuntimeError/bad_cast; the C++ side refuses the same values;
# the typed EngineConfig binding; the docs and signature; the CLI's generated flags (present, bounded
# at parse time, passed only when given) and --help without the compiled module.
import contextlib
import inspect
import io
import math
import os
import pathlib
import subprocess
import sys

import pytest

import eli
from eli import _eli, cli, engine_options
from eli._engine_options_table import ROWS
from eli.engine_options import BY_NAME, OPTIONS

MISSING = "/nonexistent/eli-model-dir"  # never reached: validation comes first
DEF = pathlib.Path(__file__).resolve().parents[2] / "include" / "eli" / "engine_options.def"


# ---- the table --------------------------------------------------------------------------------

def test_generated_table_is_current():
    rows = engine_options.parse_def(DEF.read_text(encoding="utf-8"))
    assert list(ROWS) == rows, "include/eli/engine_options.def changed: run `python -m eli.engine_options`"
    namespace = {}
    exec(engine_options.render_table(rows), namespace)  # what the generator writes reads back the same
    assert list(namespace["ROWS"]) == rows


def test_compiled_table_matches():
    engine_options.check_native(_eli)  # raises on any difference
    native = {r["name"]: r for r in _eli.engine_options()}
    assert list(native) == [o.name for o in OPTIONS]
    assert native["block_size"]["default"] == 16 and native["n_threads"]["limit"] == "CPU_THREADS"


def test_stale_build_is_detected():
    class Stale:
        @staticmethod
        def engine_options():
            rows = _eli.engine_options()
            rows[0] = dict(rows[0], doc="an older description")
            return rows

        max_threads_per_cpu = staticmethod(_eli.max_threads_per_cpu)

    with pytest.raises(eli.EliError, match="another engine option table"):
        engine_options.check_native(Stale)

    class Old:  # built before the table existed
        pass

    with pytest.raises(eli.EliError, match="rebuild"):
        engine_options.check_native(Old)


@pytest.mark.parametrize("bad, match", [
    ('ELI_ENGINE_OPTION(I64, x, 1, 0, 2, NONE, SAME, "", "", ENGINE)', "arguments"),
    ('ELI_ENGINE_OPTION(I65, x, 1, 0, 2, NONE, SAME, "", "", ENGINE, "d")', "KIND"),
    ('ELI_ENGINE_OPTION(I64, x, 1, 0, 2, NONE, MAYBE, "", "", ENGINE, "d")', "PY_DEFAULT"),
    ('ELI_ENGINE_OPTION(I64, x, 1, 0, sizeof(int), NONE, SAME, "", "", ENGINE, "d")', "unsupported"),
    ('ELI_ENGINE_OPTION(I64, x, 1, 0, 2, NONE, SAME, "", "", ENGINE, "d")\n'
     'ELI_ENGINE_OPTION(I64, x, 1, 0, 2, NONE, SAME, "", "", ENGINE, "d")', "twice"),
    ('int x;', "engine_options.def"),
    ('long x', "expected ELI_ENGINE_OPTION"),
])
def test_parser_refuses_what_it_cannot_read(bad, match):
    with pytest.raises(ValueError, match=match):
        engine_options.parse_def(bad)


def test_parser_reads_comments_literals_and_shifts():
    rows = engine_options.parse_def('// a comment, with (parens)\n/* block */\n'
                                    'ELI_ENGINE_OPTION(U64, big, 0, 1, (1ull << 40) - 1, NONE, NONE, "a|b", "-",\n'
                                    '                  ENGINE, "two " "literals, (joined) // not a comment")\n')
    (r,) = rows
    assert r["max"] == 2**40 - 1 and r["py_default"] is None and r["flag"] == "" and r["choices"] == ["a", "b"]
    assert r["doc"] == "two literals, (joined) // not a comment"


# ---- keywords ----------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", ["LLM", "AsyncLLM"])
def test_unknown_keyword_names_the_class(cls):
    with pytest.raises(eli.InvalidRequestError, match=rf"{cls}\(\) got an unknown keyword argument 'blok_size' "
                                                      r"\(did you mean 'block_size'\?\)"):
        getattr(eli, cls)(MISSING, blok_size=16, download=False)


def _wrong_type(o):
    return {"BOOL": "no", "TRI": "yes", "STR": 3, "F64": "0.5"}.get(o.kind, "16")


@pytest.mark.parametrize("name", [o.name for o in OPTIONS])
def test_wrong_type_is_invalid_request(name):
    o = BY_NAME[name]
    with pytest.raises(eli.InvalidRequestError, match=name):
        eli.LLM(MISSING, download=False, **{name: _wrong_type(o)})


@pytest.mark.parametrize("kwargs, match", [
    (dict(block_size="16"), "block_size must be an integer, got '16'"),   # was RuntimeError: std::bad_cast
    (dict(enable_prefix_caching="no"), "enable_prefix_caching must be True or False"),
    (dict(n_threads=2.0), "n_threads must be an integer"),
    (dict(n_threads=True), "n_threads must be an integer"),
    (dict(gpu_memory_utilization=10**400), "gpu_memory_utilization must be a finite number"),
    (dict(gpu_memory_utilization=math.nan), "gpu_memory_utilization"),
    (dict(max_num_seqs=2**70), "max_num_seqs"),
    (dict(seed=-1), "seed"),
    (dict(device="gpu"), "device must be one of auto, cpu, cuda, cuda:N"),
    (dict(device=None), "device"),
    (dict(dtype="fp8"), "dtype"),
])
def test_bad_values_are_invalid_request(kwargs, match):
    with pytest.raises(eli.InvalidRequestError, match=match):
        eli.LLM(MISSING, download=False, **kwargs)
    with pytest.raises(eli.InvalidRequestError, match="download must be True or False"):
        eli.LLM(MISSING, download="yes")


def _past_bounds(o):
    """(value, ...) just outside each bound of a bounded option (skipping its "auto" default)."""
    step = 0.5 if o.kind == "F64" else 1
    hi = o.max_now()
    out = [hi + step if o.kind == "F64" else int(hi) + 1]
    if o.limit == "OPEN_MIN":
        out.append(o.min)
    elif o.min - step != o.default and not (o.kind == "U64" and o.min == 0):
        out.append(o.min - step)
    return out


BOUNDED = [(o.name, v) for o in OPTIONS if o.bounded for v in _past_bounds(o)]


@pytest.mark.parametrize("name, value", BOUNDED)
def test_every_bound_checked_in_python_and_cpp(name, value):
    o = BY_NAME[name]
    if o.kind == "TRI":  # True / False / None in Python; -1, 0, 1 in C++
        with pytest.raises(eli.InvalidRequestError, match=rf"{name} must be True or False"):
            eli.LLM(MISSING, download=False, **{name: value})
    else:
        with pytest.raises(eli.InvalidRequestError, match=rf"LLM\(\): {name} must be in .*got {engine_options._num(value)}$"):
            eli.LLM(MISSING, download=False, **{name: value})
    # The C++ engine refuses the same value (argument error, no source location in the message).
    cfg = _eli.EngineConfig()
    setattr(cfg, name, int(value) if o.kind != "F64" else value)
    with pytest.raises(eli.InvalidRequestError, match=rf"{name} must be in") as err:
        _eli.validate_engine_config(cfg)
    assert ".cc:" not in str(err.value)


def test_bounded_options_cover_the_size_like_ones():
    names = {n for n, _ in BOUNDED}
    assert {"n_threads", "block_size", "max_num_seqs", "max_num_batched_tokens", "max_model_len", "num_kv_blocks",
            "kv_cache_bytes", "gpu_memory_bytes", "gpu_memory_utilization"} <= names


def test_n_threads_bounded_by_the_machine():
    cpus = os.cpu_count() or 1
    limit = engine_options.kMaxThreadsPerCpu * cpus
    with pytest.raises(eli.InvalidRequestError, match=rf"n_threads must be in \[1, {limit}\].*hardware thread.*100000"):
        eli.LLM(MISSING, download=False, n_threads=100000)
    assert BY_NAME["n_threads"].check(limit) == limit
    assert BY_NAME["n_threads"].check(None) == 0 and BY_NAME["n_threads"].check(0) == 0  # one per hardware thread
    assert _eli.hardware_threads() == cpus


def test_values_reach_cpp_types():
    v = engine_options.engine_values({"async_scheduling": True, "seed": 2**64 - 1, "n_threads": 1})
    assert v["async_scheduling"] == 1 and v["seed"] == 2**64 - 1 and v["n_threads"] == 1
    assert engine_options.engine_values({})["async_scheduling"] == -1
    assert engine_options.engine_values({})["device"] == "auto"


def test_debug_switch_keeps_source_locations(monkeypatch):
    cfg = _eli.EngineConfig()
    cfg.block_size = 0
    monkeypatch.setenv("ELI_DEBUG", "1")
    with pytest.raises(eli.InvalidRequestError, match=r"block_size must be in.*\[engine_config\.cc:\d+"):
        _eli.validate_engine_config(cfg)


def test_engine_config_is_typed():
    cfg = _eli.EngineConfig()
    for o in OPTIONS:
        assert getattr(cfg, o.name) == o.default
    with pytest.raises(TypeError):
        cfg.block_size = "16"
    with pytest.raises(TypeError):
        _eli.Engine({"model": MISSING})  # no dicts


# ---- documentation --------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", ["LLM", "AsyncLLM"])
def test_signature_and_doc_list_every_option(cls):
    klass = getattr(eli, cls)
    sig = inspect.signature(klass)
    for o in OPTIONS:
        p = sig.parameters[o.name]
        assert p.kind is inspect.Parameter.KEYWORD_ONLY and p.default == o.py_default
        assert f"{o.name}:" in klass.__doc__
    assert "download" in sig.parameters and "model" in sig.parameters
    assert "[1, " in klass.__doc__  # bounds are documented


# ---- the command line -----------------------------------------------------------------------------

def _help(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(argv) == 0
    return out.getvalue()


@pytest.mark.parametrize("sub", ["generate", "chat", "serve"])
def test_every_option_has_its_flag(sub):
    text = _help([sub, "--help"])
    for o in OPTIONS:
        if o.flag:
            assert o.flag in text, o.flag
    assert "--threads" in text and "--skip-tokenizer-init" in text and "(default: 16)" in text


def test_flags_parse_to_keywords_only_when_given():
    p = cli.build_parser()
    args = p.parse_args(["serve", "--threads", "1", "--block-size", "8", "--no-enable-prefix-caching",
                         "--async-scheduling", "--device", "cuda:1", "--skip-tokenizer-init",
                         "--gpu-memory-bytes", "1024"])
    assert cli._engine_kwargs(args) == {"n_threads": 1, "block_size": 8, "enable_prefix_caching": False,
                                        "async_scheduling": True, "device": "cuda:1", "skip_tokenizer_init": True,
                                        "gpu_memory_bytes": 1024}
    assert cli._engine_kwargs(p.parse_args(["generate", "hi"])) == {}


@pytest.mark.parametrize("argv", [
    ["generate", "--threads", "100000", "hi"],
    ["generate", "--threads", "0x", "hi"],
    ["generate", "--block-size", "0", "hi"],
    ["generate", "--max-num-seqs", "1e9", "hi"],
    ["chat", "--device", "gpu"],
    ["serve", "--kv-cache-bytes", str(2**60)],
])
def test_out_of_bound_flags_are_usage_errors(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_help_needs_no_compiled_module():
    code = ("import sys, importlib.abc\n"
            "class B(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'eli._eli': raise ImportError('blocked')\n"
            "sys.meta_path.insert(0, B())\n"
            "from eli import cli\n"
            "rc = [cli.main([c, '--help']) for c in ('generate', 'serve')]\n"
            "assert 'eli._eli' not in sys.modules, 'imported'\n"
            "sys.exit(max(rc))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "--max-num-batched-tokens" in r.stdout


def test_cli_sampling_flags_fail_before_loading(monkeypatch, capsys):
    import types

    def never(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(cli, "_import_engine", lambda *names: types.SimpleNamespace(
        LLM=never, SamplingParams=eli.SamplingParams))
    # A usage error (exit 2) found while parsing, before the model is resolved or loaded.
    assert cli.main(["generate", "-m", MISSING, "--top-p", "2", "hi"]) == 2
    err = capsys.readouterr().err
    assert ("top_p" in err or "top-p" in err) and "loaded" not in err and ".cc:" not in err
