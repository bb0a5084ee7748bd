# eli: the Efficient LLM Inference runtime. The package re-exports the public API; the compiled
# engine (_eli) is an implementation detail, imported lazily so that pure-Python parts (the CLI's
# --help, `eli pull`, tokenizers) work even before it is needed. Never imports torch.
from __future__ import annotations

import os as _os

# Development hook: ELI_NATIVE_DIR names a build directory whose _eli module is used instead of
# the installed one (several developers, one source tree, separate builds).
if _os.environ.get("ELI_NATIVE_DIR"):
    __path__.insert(0, _os.environ["ELI_NATIVE_DIR"])  # noqa: F821 (package __path__)

from .errors import (EliError, EngineDeadError, InvalidRequestError, ModelLoadError, ModelResolutionError,
                     OutOfMemoryError, UnsupportedError)
from .outputs import CompletionOutput, RequestOutput
from .sampling_params import SamplingParams

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy access to the engine-backed API.
    if name == "LLM":
        from .llm import LLM

        return LLM
    if name == "quantize":
        import importlib

        return importlib.import_module(".quantize", __name__)  # a callable module: eli.quantize(...)
    if name == "AsyncLLM":
        from .async_llm import AsyncLLM

        return AsyncLLM
    raise AttributeError(f"module 'eli' has no attribute {name!r}")


def inspect_model(path: str) -> dict:
    """Headers and metadata of a model (no weights read): format, spec, tensors, GGUF metadata."""
    from . import _eli

    return _eli.inspect_model(str(path))


def cuda_device_count() -> int:
    from . import _eli

    return _eli.cuda_device_count()


__all__ = [
    "LLM",
    "AsyncLLM",
    "SamplingParams",
    "RequestOutput",
    "CompletionOutput",
    "inspect_model",
    "quantize",
    "cuda_device_count",
    "EliError",
    "EngineDeadError",
    "InvalidRequestError",
    "ModelLoadError",
    "ModelResolutionError",
    "OutOfMemoryError",
    "UnsupportedError",
]
