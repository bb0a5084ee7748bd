# tests/python/test_layering.py: the direction of #include between eli's layers (docs/architecture.md).
# Each C++ source may include its own layer and the layers below it, never one above: a kernel
# never sees the model or the engine, the model never sees the runner or the engine, core sees
# nothing but core and the public headers. A wrong-way include fails here (and so in CI) with the
# file, the line and the rule.
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Bottom to top. A layer may include any layer listed before it (and itself).
# Mirrors ELI_LAYERS in CMakeLists.txt (one static library per layer, linking only those below).
LAYERS = [
    ("api", ("include/eli",)),
    ("core", ("runtime/core",)),
    ("device", ("runtime/device",)),
    ("kernels", ("kernels",)),
    ("comm", ("runtime/comm",)),
    ("kv", ("runtime/kv",)),
    ("model", ("runtime/model",)),
    ("runner", ("runtime/runner", "runtime/parallel")),
    ("engine", ("runtime/engine",)),
    ("quantize", ("runtime/quantize",)),
    ("bindings", ("python/src",)),
]
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}
SOURCES = (".h", ".cc", ".cu", ".cuh", ".cpp")


def layer_of(path: str):
    if path.startswith("eli/"):
        return "api"
    for name, prefixes in LAYERS:
        if any(path == p or path.startswith(p + "/") for p in prefixes):
            return name
    return None


def includes():
    for name, prefixes in LAYERS:
        for f in sorted(f for p in prefixes for f in (ROOT / p).rglob("*")):
            if f.suffix not in SOURCES or not f.is_file():
                continue
            rel = f.relative_to(ROOT).as_posix()
            for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
                m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                if m:
                    yield rel, n, name, m.group(1)


def test_every_layer_has_sources():
    for name, prefixes in LAYERS:
        prefix = prefixes[0]
        assert any((ROOT / prefix).rglob("*.h")) or any((ROOT / prefix).rglob("*.cc")), f"no sources in {prefix}"


def test_includes_only_point_down():
    wrong = []
    for rel, n, src, inc in includes():
        dst = layer_of(inc)
        if dst is None:
            continue
        if RANK[dst] > RANK[src]:
            wrong.append(f"{rel}:{n}: {src} includes {inc} ({dst}, a layer above)")
    assert not wrong, "wrong-way includes:\n" + "\n".join(wrong)


def test_public_headers_include_only_public_headers():
    bad = [f"{rel}:{n}: {inc}" for rel, n, src, inc in includes() if src == "api" and not inc.startswith("eli/")]
    assert not bad, "include/eli must stay self-contained:\n" + "\n".join(bad)


@pytest.mark.parametrize("path,layer", [("runtime/model/blocks.h", "model"), ("eli/engine.h", "api"),
                                        ("kernels/ops.h", "kernels"), ("bench/x.cc", None)])
def test_layer_of(path, layer):
    assert layer_of(path) == layer


def test_cmake_layer_targets_match():
    # CMakeLists.txt builds one static library per layer in this order; the link dependencies
    # (ELI_LAYER_<name>_DEPS) may only name layers below.
    text = (ROOT / "CMakeLists.txt").read_text()
    m = re.search(r"set\(ELI_LAYERS ([^)]*)\)", text)
    assert m, "CMakeLists.txt lost its ELI_LAYERS list"
    cmake_layers = m.group(1).split()
    ours = [name for name, _ in LAYERS if name not in ("api", "bindings")]
    assert cmake_layers == ours
    for layer, deps in re.findall(r"set\(ELI_LAYER_(\w+)_DEPS ([^)]*)\)", text):
        for dep in deps.split():
            assert RANK[dep] < RANK[layer], f"CMake layer {layer} links {dep}, which is not below it"
