# tests/python/test_load_checks.py: config-versus-tensor checks that need the weights (RELIABILITY
# item 6: vocab not matching the embedding, head_dim not matching the projections, missing
# tensors), and the torch-free promise of the package.
import json
import shutil
import subprocess
import sys

import pytest

import eli

from testdata import DATA_DIR

BASE = DATA_DIR / "models" / "llama_base"


def _variant(tmp_path, **changes):
    d = tmp_path / "model"
    shutil.copytree(BASE, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(vocab_size=300), "embed_tokens.*shape"),
        (dict(intermediate_size=90), "gate_proj.*shape"),
        (dict(head_dim=8), "q_proj.*shape"),
        (dict(num_hidden_layers=4), "layers.3.*missing"),
    ],
)
def test_config_that_disagrees_with_tensors(tmp_path, changes, match):
    with pytest.raises(eli.ModelLoadError, match=match):
        eli.LLM(str(_variant(tmp_path, **changes)), device="cpu")
    # The process stays usable.
    assert eli.LLM(str(BASE), device="cpu").generate([[1, 2, 3]], eli.SamplingParams(max_tokens=2))[0].token_ids


def test_pickle_only_directory_refused(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises((eli.ModelLoadError, eli.ModelResolutionError), match="(?i)pickle|safetensors|model"):
        eli.LLM(str(d), device="cpu")


def test_import_never_pulls_torch():
    code = "import sys, eli, eli.llm, eli.cli, eli.hub, eli.tokenizer; assert 'torch' not in sys.modules, 'torch'; " \
           "assert 'transformers' not in sys.modules, 'transformers'"
    subprocess.run([sys.executable, "-c", code], check=True)
