# eli/errors.py: the typed Python exceptions of eli's pure-Python layer.
#
# Invariants: this module imports nothing from eli (nor the compiled _eli module), so hub.py and the
# CLI can raise and catch these even when the extension is not built. ModelLoadError (with its
# subclass ModelResolutionError) and InvalidRequestError derive from ValueError: a bad model
# name/path, a bad model file or a bad argument is a bad *input*, and callers that only know
# ValueError still catch them. The bindings map the C++ error kinds onto these very classes
# (kModelLoad -> ModelLoadError, kInvalidArgument -> InvalidRequestError, ...), so one `except`
# catches both sides. The messages carry no C++ source locations unless ELI_DEBUG is set.
import os as _os
import re as _re

# " [file.cc:123: check failed: cond]", the source location eli::Error appends (runtime/core/error.cc).
_LOCATION = _re.compile(r" \[[A-Za-z0-9_.+-]+\.[A-Za-z]+:\d+(?:: check failed: .*)?\]$", _re.S)


def user_message(text: str) -> str:
    """An engine message without its C++ source location, unless ELI_DEBUG is set (not "0").
    The bindings do the same for raised errors; this is for error texts that arrive as data (a
    request's finish_reason "error" text)."""
    if _os.environ.get("ELI_DEBUG", "") not in ("", "0"):
        return text
    return _LOCATION.sub("", text)


class ModelLoadError(ValueError):
    """A model could not be opened: its files are corrupt, truncated, unsupported or unsafe, or (the
    subclass ModelResolutionError) its name or path could not be turned into local files.

    Raised by the C++ loader through the bindings (its kModelLoad error kind maps here) and by the
    Python layer (tokenizer files, chat templates). `except eli.ModelLoadError` catches every
    failure to open a model.
    """


class ModelResolutionError(ModelLoadError):
    """A model name or path could not be turned into local files.

    Raised by eli.hub for unknown short names, missing paths, directories with neither config.json
    nor a .gguf file, failed downloads (no network, pip failure, checksum mismatch) and Hugging Face
    repos that cannot be fetched. The message says what was tried and how to fix it.
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
    """A request or parameter the engine rejects: bad prompts or ids, too long for the context, bad
    SamplingParams, an unknown or out-of-range engine option (the message names it and the bound)."""


class OutOfMemoryError(MemoryError):
    """A memory budget could not be met (KV pool, weights, workspace); the message has the numbers."""


class UnsupportedError(NotImplementedError):
    """Valid input this build or backend cannot run (e.g. CUDA in a CPU-only build)."""


__all__ = [
    "ModelLoadError",
    "ModelResolutionError",
    "EliError",
    "EngineDeadError",
    "InvalidRequestError",
    "OutOfMemoryError",
    "UnsupportedError",
]
