# tests/python/conftest.py: shared fixtures. The default model (SmolLM2-135M-Instruct GGUF) is
# fetched once through eli's own pull logic into ELI_CACHE (default ~/.cache/eli).
import os
import pathlib

import pytest

from testdata import DATA_DIR  # noqa: E402 (re-exported for fixtures below)


def _has_cuda() -> bool:
    try:
        import eli

        return eli.cuda_device_count() > 0
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    # GPU tests run whenever a GPU is present; elsewhere they are deselected, not silently passed.
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (runs on the GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def smollm2_gguf() -> pathlib.Path:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF, pulled on first use."""
    override = os.environ.get("ELI_TEST_SMOLLM2")
    if override:
        return pathlib.Path(override)
    from eli import hub

    return pathlib.Path(hub.resolve_model("smollm2"))
