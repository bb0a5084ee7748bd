# tests/python/test_fuzz_text.py: a short, deterministic pass of the chat-template and tokenizer-loader
# fuzz targets (tests/fuzz/fuzz_text.py; CI also runs them for ~45 s with random seeds in
# .ci/fuzz_short.sh). See that file for the properties checked.
import importlib.util
import pathlib

import pytest

pytest.importorskip("hypothesis")

_PATH = pathlib.Path(__file__).resolve().parents[1] / "fuzz" / "fuzz_text.py"
_spec = importlib.util.spec_from_file_location("fuzz_text", _PATH)
fuzz_text = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz_text)

TARGETS = fuzz_text.build_targets(examples=25, derandomize=True)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target(name):
    TARGETS[name]()
