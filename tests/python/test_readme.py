# tests/python/test_readme.py: README.md's commands are the ones users run first, so they are tested.
#
# The Python block(s) run as written against the default model (SmolLM2 GGUF), with only the
# sizes made small (every max_tokens=N becomes max_tokens=8), and must print output. Every `eli ...`
# command in the bash blocks must parse with the real command-line parser (nothing is run). The set-up
# commands that CI greps for and users copy are checked literally.
import os
import re
import shlex

import pytest

from eli import cli

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def _readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def _blocks(lang: str) -> list[str]:
    return re.findall(r"^```" + lang + r"\n(.*?)^```", _readme(), flags=re.S | re.M)


def _engine_available() -> bool:
    try:
        from eli import _eli  # noqa: F401

        return True
    except Exception:
        return False


def test_setup_commands_are_what_users_can_run():
    text = _readme()
    bash = _blocks("bash")
    assert bash[0].strip() == 'pip install ".[serve]" && eli generate "Write a haiku about the sea."'
    assert bash[1].strip() == "bash tests/run.sh"  # .ci/run runs exactly this
    assert "efficient-llm-inference[" not in text, "that distribution is not on PyPI"
    for name in ("ELI_CUDA", "ELI_CUDA_ARCHS", "GoogleTest", "docs/benchmarks.md"):
        assert name in text
    assert len(text.splitlines()) < 200, "the README is for users; history goes to docs/benchmarks.md"


def _eli_commands() -> list[list[str]]:
    commands = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            segment: list[str] = []
            for w in words + ["&&"]:
                if w in ("&&", "|", ";"):
                    if segment and segment[0] == "eli":
                        commands.append(segment[1:])
                    segment = []
                else:
                    segment.append(w)
    return commands


def test_every_eli_command_in_the_readme_parses(capsys):
    commands = _eli_commands()
    assert len(commands) >= 10
    for argv in commands:
        parser = cli.build_parser()
        try:
            args, extras = parser.parse_known_args(argv)
            extras = cli._apply_positionals(args, extras)
        except SystemExit as e:  # --help
            assert e.code == 0, argv
            continue
        assert extras == [], (argv, extras)
    capsys.readouterr()


def test_stop_escape_example_means_a_blank_line():
    (argv,) = [c for c in _eli_commands() if "--stop" in c]
    args, _ = cli.build_parser().parse_known_args(argv)
    assert args.stop == ["\n\n"]


@pytest.mark.skipif(not _engine_available(), reason="eli's compiled engine is not built")
def test_python_quick_start_runs_and_prints(smollm2_gguf, capsys):
    blocks = _blocks("python")
    assert blocks, "the README has a Python example"
    for source in blocks:
        assert "max_tokens=" in source
        small = re.sub(r"max_tokens=\d+", "max_tokens=8", source)
        if os.environ.get("ELI_TEST_SMOLLM2"):  # the model is given by path, not in the cache
            small = small.replace('eli.LLM("smollm2")', f"eli.LLM({str(smollm2_gguf)!r})")
        namespace: dict = {"__name__": "__readme__"}
        printed = []
        try:
            # Run paragraph by paragraph (blank-line separated, in one namespace): each paragraph
            # that prints must print something, so an empty stream or reply cannot hide.
            for paragraph in re.split(r"\n\s*\n", small):
                exec(compile(paragraph, "README.md", "exec"), namespace)  # noqa: S102 -- our README
                out = capsys.readouterr().out
                if "print(" in paragraph:
                    assert out.strip(), f"this README paragraph printed nothing:\n{paragraph}"
                    printed.append(out)
        finally:
            llm = namespace.get("llm")
            if llm is not None:
                llm.shutdown()
        assert len(printed) >= 4  # the chat reply, the streamed reply, the completions, the counters
        assert "kv_blocks_total" in printed[-1]
