# eli/errors.py: the typed Python exceptions of eli's pure-Python layer.
#
# Invariants: this module imports nothing from eli (nor the compiled _eli module), so hub.py and the
# CLI can raise and catch these even when the extension is not built. Both classes derive from
# ValueError: a bad model name/path or a bad model file is a bad *input*, and callers that only know
# ValueError still catch them. The bindings register the C++ model-load error kind as
# ModelLoadError (this very class), so `except eli.errors.ModelLoadError` catches both sides.


class ModelResolutionError(ValueError):
    """A model name or path could not be turned into local files.

    Raised by eli.hub for unknown short names, missing paths, failed downloads (no network, pip
    failure, checksum mismatch) and Hugging Face repos that cannot be fetched. The message says
    what was tried and how to fix it.
    """


class ModelLoadError(ValueError):
    """Local model files exist but cannot be loaded (corrupt, truncated, unsupported, unsafe).

    Raised by the C++ loader through the bindings (its kModelLoad error kind maps here).
    """


class EliError(RuntimeError):
    """An engine failure that is not the caller's fault (device error, broken invariant)."""


class EngineDeadError(EliError):
    """The engine died (a device fault broke it) and takes no more work; the message says why.

    Raised for every new request (and score) after the death; requests that were in flight when it
    died end with finish_reason "error". A CUDA context broken by a kernel fault stays broken for the
    whole process: a new engine needs a new process.
    """


class InvalidRequestError(ValueError):
    """A request or parameter the engine rejects (bad ids, too long for the context, bad sampling)."""


class OutOfMemoryError(MemoryError):
    """A memory budget could not be met (KV pool, weights, workspace); the message has the numbers."""


class UnsupportedError(NotImplementedError):
    """Valid input this build or backend cannot run (e.g. CUDA in a CPU-only build)."""


__all__ = [
    "ModelResolutionError",
    "ModelLoadError",
    "EliError",
    "EngineDeadError",
    "InvalidRequestError",
    "OutOfMemoryError",
    "UnsupportedError",
]
