# tests/clients/clients_common.py: what the real-client tests share besides fixtures: the served
# model's name and API key, and need(module): the client library, or a skip that says it is not
# installed (CI installs every one of them in .ci/run, so there they run).
from __future__ import annotations

import importlib

import pytest

MODEL_NAME = "tiny-random"
API_KEY = "sk-client-tests"


def need(module: str):
    """Imports `module`, or skips saying the client library is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pytest.skip(f"{module} is not installed ({e}); CI installs it (.ci/run), locally: pip install it")
