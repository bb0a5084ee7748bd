# tests/python/test_malformed_hf.py: every case of the handcrafted malformed Hugging Face corpus
# (tests/data/malformed/hf, written by scripts/make_malformed_corpus.py) must raise
# eli.ModelLoadError with its expected message through eli.inspect_model, and the process must stay
# usable afterwards (RELIABILITY items 1-7 and 11).
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

import eli

CORPUS = pathlib.Path(__file__).resolve().parent.parent / "data" / "malformed" / "hf"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
CASES = MANIFEST["cases"]


def test_manifest_covers_every_class():
    assert len(CASES) >= 25
    classes = {c["class"] for c in CASES}
    for item in range(1, 8):
        assert f"RELIABILITY item {item}" in classes, item


@pytest.mark.parametrize("case", CASES, ids=[c["path"] for c in CASES])
def test_malformed_case_raises_model_load_error(case):
    path = CORPUS / case["path"]
    with pytest.raises(eli.ModelLoadError, match=re.escape(case["expect"])) as info:
        eli.inspect_model(str(path))
    # The message names the case's file or directory, so the user knows what to fix.
    assert case["path"] in str(info.value)
    # ModelLoadError is a ValueError, so generic handlers catch it too.
    assert isinstance(info.value, ValueError)
    # No C++ source location in what users see (ELI_DEBUG=1 adds it), and no byte of a file that a
    # hostile symlink points at (outside_secret.txt starts like /etc/passwd).
    assert ".cc:" not in str(info.value) and "check failed" not in str(info.value)
    assert "root:x" not in str(info.value)


@pytest.mark.parametrize("name", MANIFEST["valid"])
def test_valid_corpus_models_load(name):
    info = eli.inspect_model(str(CORPUS / name))
    assert info["spec"]["vocab_size"] == 16
    assert len(info["tensors"]) == 11


@pytest.mark.parametrize("name", MANIFEST["valid_extra"])
def test_valid_extra_models_load(name):
    # An extra tensor eli does not read (rotary inv_freq, a vision tower), a symlink that stays
    # inside the directory: both load.
    info = eli.inspect_model(str(CORPUS / name))
    assert len(info["tensors"]) >= 11


def test_debug_switch_shows_the_location(tmp_path):
    # ELI_DEBUG=1 puts the C++ location back, for bug reports.
    code = ("import eli\ntry:\n    eli.inspect_model(%r)\nexcept eli.ModelLoadError as e:\n    print(e)\n"
            % str(CORPUS / "h5_symlink_weights_escape"))
    env = dict(os.environ, ELI_DEBUG="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "outside the model directory" in out.stdout, out.stderr
    assert "model_dir.cc:" in out.stdout and "check failed" not in out.stdout, out.stdout  # ELI_THROW: no condition


def test_process_usable_after_failures():
    for case in CASES:
        with pytest.raises(eli.ModelLoadError):
            eli.inspect_model(str(CORPUS / case["path"]))
    # A valid model still loads afterwards.
    info = eli.inspect_model(str(CORPUS / "valid_tiny"))
    assert len(info["tensors"]) == 11
    tiny = CORPUS.parent.parent / "models" / "llama_tiny"
    if not tiny.exists():
        pytest.skip(f"{tiny} is absent: only the corpus's own valid model was checked")
    assert eli.inspect_model(str(tiny))["tensors"]
