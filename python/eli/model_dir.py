# eli/model_dir.py: read the small files of a model directory (tokenizer.json, tokenizer_config.json,
# chat_template.jinja, ...) without trusting the directory.
#
# A downloaded model directory is untrusted input: any of its files may be a symlink to anywhere
# (/etc/passwd, ~/.ssh/...), a FIFO or device that blocks forever when opened or read, a directory,
# or far larger than a config file can sensibly be. Every file the Python side reads from a model
# directory goes through read_model_file(), which guarantees:
#   - the name is one plain file name (no '/', no '..');
#   - the resolved path stays inside the model directory, or inside the Hugging Face cache's blobs/
#     directory for a snapshots/REV/FILE -> ../../blobs/HASH link (the same rule the C++ loader applies
#     to index shards);
#   - the file is opened non-blocking and must be a regular file (checked on the open descriptor, which
#     must be the file that was resolved);
#   - at most `max_bytes` are read, whatever the file claims or grows to.
# Errors are eli.ModelLoadError naming the file and what was wrong, never quoting file content.
from __future__ import annotations

import errno
import json
import os
import pathlib
import stat

from .errors import ModelLoadError

kMaxConfigFileBytes = 16 * 1024 * 1024  # tokenizer_config.json, config.json, chat_template.jinja, ...


def _under(path: str, root: str) -> bool:
    return path.startswith(root.rstrip(os.sep) + os.sep)


def _allowed_roots(root_real: str) -> list[str]:
    roots = [root_real]
    parent = os.path.dirname(root_real)
    if os.path.basename(parent) == "snapshots":  # HF cache: snapshots/REV/FILE -> ../../blobs/HASH
        roots.append(os.path.join(os.path.dirname(parent), "blobs"))
    return roots


def model_file_path(root: str | os.PathLike, name: str) -> pathlib.Path | None:
    """The contained path of `name` in the model directory `root`, or None if there is no such entry.
    ModelLoadError if it exists but resolves outside the directory (or is a broken symlink)."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise ValueError(f"invalid model file name {name!r}")
    root_path = pathlib.Path(root)
    path = root_path / name
    try:
        os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot be read ({os.strerror(e.errno or errno.EIO)})") from None
    real = os.path.realpath(path)
    if not os.path.exists(real):
        raise ModelLoadError(f"{path}: is a broken symlink")
    root_real = os.path.realpath(root_path)
    if not any(_under(real, r) for r in _allowed_roots(root_real)):
        raise ModelLoadError(f"{path}: resolves outside the model directory (symlink); refused")
    return path


def read_model_file(root: str | os.PathLike, name: str, max_bytes: int = kMaxConfigFileBytes) -> bytes | None:
    """The bytes of model file `name` in `root`, or None if absent. See the module comment for the rules."""
    path = model_file_path(root, name)
    if path is None:
        return None
    real = os.path.realpath(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(real, flags)
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot be opened ({os.strerror(e.errno or errno.EIO)})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ModelLoadError(f"{path}: is not a regular file")
        try:
            st_real = os.stat(real)
        except OSError:
            st_real = None
        if st_real is None or (st_real.st_dev, st_real.st_ino) != (st.st_dev, st.st_ino):
            raise ModelLoadError(f"{path}: changed while it was being opened")
        if st.st_size > max_bytes:
            raise ModelLoadError(f"{path}: is {st.st_size} bytes, over the {max_bytes}-byte limit")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise ModelLoadError(f"{path}: grew past the {max_bytes}-byte limit while being read")
        return b"".join(chunks)
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot be read ({os.strerror(e.errno or errno.EIO)})") from None
    finally:
        os.close(fd)


def read_model_text(root: str | os.PathLike, name: str, max_bytes: int = kMaxConfigFileBytes) -> str | None:
    """Model file `name` as UTF-8 text (None if absent); ModelLoadError if it is not valid UTF-8."""
    data = read_model_file(root, name, max_bytes)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ModelLoadError(f"{pathlib.Path(root) / name}: not valid UTF-8 (at byte {e.start})") from None


def read_model_json(root: str | os.PathLike, name: str, max_bytes: int = kMaxConfigFileBytes) -> dict | None:
    """Model file `name` parsed as a JSON object (None if absent). ModelLoadError on invalid JSON, a
    non-object top level or nesting too deep for the parser; the message gives the position only."""
    text = read_model_text(root, name, max_bytes)
    if text is None:
        return None
    where = pathlib.Path(root) / name
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{where}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise ModelLoadError(f"{where}: JSON nests too deeply") from None
    if not isinstance(value, dict):
        raise ModelLoadError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


__all__ = ["model_file_path", "read_model_file", "read_model_text", "read_model_json", "kMaxConfigFileBytes"]
