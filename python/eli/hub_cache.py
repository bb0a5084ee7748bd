# eli/hub_cache.py: what the model caches hold (`eli ls`) and removing one model (`eli rm`).
#
# Two caches hold models eli can run by name:
#   eli's own:         $ELI_CACHE/models/<short name>/   (the packaged GGUF short names, hub.py)
#   Hugging Face's:    $HF_HUB_CACHE/models--<owner>--<name>/  (snapshots of owner/name repo ids,
#                      default ~/.cache/huggingface/hub, shared with transformers and others)
# The Hugging Face cache is read from its directory layout, so listing works without
# huggingface_hub installed.
#
# Invariant of remove(): it deletes exactly one model directory, and only one that lies strictly
# inside one of the two cache roots after resolving symlinks; the roots themselves, paths outside
# them and symlinked model directories are refused with ModelResolutionError. Nothing is removed
# by name guessing: a name must match a listed entry.
from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
from typing import Union

from eli import hub
from eli.errors import ModelResolutionError

_HF_PREFIX = "models--"


@dataclasses.dataclass(frozen=True)
class CachedModel:
    """One model directory in a cache."""

    name: str  # short name (eli cache) or owner/name (Hugging Face cache)
    source: str  # "eli" or "huggingface"
    path: pathlib.Path  # the directory `eli rm` deletes
    size_bytes: int  # bytes on disk (files, not following symlinks)
    loadable: bool  # eli can load it: a verified packaged file, or config.json + *.safetensors
    revisions: tuple[str, ...] = ()  # Hugging Face snapshot revisions (short hashes)


def eli_models_root() -> pathlib.Path:
    return hub.cache_dir() / "models"


def hf_cache_root() -> pathlib.Path:
    """The Hugging Face hub cache: huggingface_hub's own setting when installed, else the same
    environment variables it reads (HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME)."""
    try:
        from huggingface_hub import constants

        return pathlib.Path(constants.HF_HUB_CACHE).expanduser()
    except Exception:  # noqa: BLE001 -- not installed, or an old version without constants
        pass
    if os.environ.get("HF_HUB_CACHE"):
        return pathlib.Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return pathlib.Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return pathlib.Path(xdg).expanduser() / "huggingface" / "hub"


def _tree_size(path: pathlib.Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            if not os.path.islink(os.path.join(dirpath, f)):
                total += st.st_size
    return total


def _eli_entries() -> list[CachedModel]:
    root = eli_models_root()
    if not root.is_dir():
        return []
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        out.append(CachedModel(name=d.name, source="eli", path=d, size_bytes=_tree_size(d),
                               loadable=d.name in hub.REGISTRY and hub.is_cached(d.name)))
    return out


def _hf_snapshot_loadable(snapshot: pathlib.Path) -> bool:
    return (snapshot / "config.json").is_file() and any(snapshot.glob("*.safetensors"))


def _hf_entries() -> list[CachedModel]:
    root = hf_cache_root()
    if not root.is_dir():
        return []
    out = []
    for d in sorted(p for p in root.iterdir() if p.name.startswith(_HF_PREFIX) and p.is_dir()):
        if d.is_symlink():
            continue
        repo_id = "/".join(d.name[len(_HF_PREFIX):].split("--"))
        snapshots = d / "snapshots"
        revs = sorted(s for s in snapshots.iterdir() if s.is_dir()) if snapshots.is_dir() else []
        out.append(CachedModel(
            name=repo_id, source="huggingface", path=d, size_bytes=_tree_size(d),
            loadable=any(_hf_snapshot_loadable(s) for s in revs),
            revisions=tuple(s.name[:8] for s in revs)))
    return out


def list_cached() -> list[CachedModel]:
    """Every model directory in eli's cache, then every model repo in the Hugging Face cache."""
    return _eli_entries() + _hf_entries()


def _inside(path: pathlib.Path, root: pathlib.Path) -> bool:
    """True when `path` lies strictly inside `root`, both with symlinks resolved."""
    try:
        real, real_root = path.resolve(strict=True), root.resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return real != real_root and real_root in real.parents


def find_cached(name_or_path: Union[str, "os.PathLike[str]"]) -> CachedModel:
    """The cached model a name (short name, alias, owner/name) or a path inside a cache names."""
    text = os.fspath(name_or_path).strip()
    if not text:
        raise ModelResolutionError("empty model name")
    entries = list_cached()
    entry = hub.lookup(text)
    canonical = entry.name if entry is not None else text
    for e in entries:
        if e.source == "eli" and e.name == canonical:
            return e
        if e.source == "huggingface" and e.name.lower() == text.partition("@")[0].lower():
            return e
    path = pathlib.Path(text).expanduser()
    if path.exists():
        for e in entries:
            if path.resolve() == e.path.resolve() or _inside(path, e.path):
                return e
        roots = f"{eli_models_root()} or {hf_cache_root()}"
        raise ModelResolutionError(
            f"refusing to remove '{text}': it is not a model in eli's cache or the Hugging Face "
            f"cache ({roots}); eli rm only removes cached downloads, never your own files")
    raise ModelResolutionError(
        f"'{text}' is not in the cache; `eli ls` lists what is (names as shown there)")


def remove(model: CachedModel) -> None:
    """Deletes the model's cache directory (see the invariant in the header)."""
    root = eli_models_root() if model.source == "eli" else hf_cache_root()
    path = pathlib.Path(model.path)
    if path.is_symlink() or not path.is_dir() or not _inside(path, root):
        raise ModelResolutionError(
            f"refusing to remove {path}: not a model directory inside the cache {root}")
    if model.source == "eli":
        with hub._exclusive_lock(path / ".lock"):  # noqa: SLF001 -- not under a pull in progress
            shutil.rmtree(path)
    else:
        shutil.rmtree(path)
    if model.source == "huggingface":
        locks = root / ".locks" / path.name
        if locks.is_dir() and not locks.is_symlink() and _inside(locks, root):
            shutil.rmtree(locks, ignore_errors=True)


def describe(model: CachedModel) -> str:
    where = "eli cache" if model.source == "eli" else "Hugging Face cache"
    return f"{model.name} ({where}, {hub.format_bytes(model.size_bytes)}): {model.path}"


__all__ = ["CachedModel", "list_cached", "find_cached", "remove", "describe", "eli_models_root",
           "hf_cache_root"]
