#!/usr/bin/env bash
# scripts/fetch_llama_cpp.sh: fetches llama.cpp's source (the tree vendored in the llama-cpp-python
# source distribution, a pinned version) into peers/llama.cpp/ for the GPU benchmark
# (bench/gpu/device_bench.sh builds llama-bench and llama-batched-bench from it on the device).
#
# Invariants: peers/ is git-ignored (/peers/ in .gitignore): llama.cpp code is never committed.
# The tree is trimmed to what the CUDA build of llama-bench / llama-batched-bench needs (ggml with
# its CPU and CUDA backends, src/, include/, common/, tools/llama-bench, tools/batched-bench,
# gguf-py/ for the GGUF writer) so that it fits the device call's carry (64 MiB with the repo).
# Re-running replaces peers/llama.cpp. Works from a fresh clone: the download runs in a private venv
# (pip's metadata step needs scikit-build-core, which the system Python need not have).
#   usage: scripts/fetch_llama_cpp.sh [version, default 0.3.36]
set -euo pipefail

VERSION="${1:-0.3.36}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/peers/llama.cpp"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# pip download of an sdist prepares its metadata, which runs the sdist's build backend
# (scikit-build-core) even with --no-deps: a private venv holds it, so a fresh machine needs
# nothing but python3 with venv and pip (and the package index pip is configured for).
echo "== pip download llama-cpp-python==$VERSION (sdist), in a private venv with scikit-build-core"
python3 -m venv "$TMP/venv" >"$TMP/venv.log" 2>&1 || { cat "$TMP/venv.log"; exit 1; }
"$TMP/venv/bin/python" -m pip install --quiet --disable-pip-version-check scikit-build-core >"$TMP/pip.log" 2>&1 ||
  { cat "$TMP/pip.log"; exit 1; }
"$TMP/venv/bin/python" -m pip download --disable-pip-version-check --no-deps --no-binary :all: \
  --no-build-isolation -d "$TMP" "llama-cpp-python==$VERSION" >>"$TMP/pip.log" 2>&1 || { cat "$TMP/pip.log"; exit 1; }
SDIST="$(ls "$TMP"/llama_cpp_python-*.tar.gz 2>/dev/null | head -1)"
[ -n "$SDIST" ] || { echo "no sdist downloaded"; cat "$TMP/pip.log"; exit 1; }
echo "   $SDIST ($(du -h "$SDIST" | cut -f1))"
tar -xzf "$SDIST" -C "$TMP"
SRC="$(ls -d "$TMP"/llama_cpp_python-*/vendor/llama.cpp)"
[ -f "$SRC/CMakeLists.txt" ] || { echo "no vendor/llama.cpp/CMakeLists.txt in $SDIST"; exit 1; }

# What the benchmark build does not need.
for d in docs models .github media benches tests conversion tools/ui examples \
         tools/server/public tools/server/webui tools/mtmd/legacy-models; do
  rm -rf "${SRC:?}/$d"
done
# ggml backends other than the CPU and CUDA ones (CMake only descends into enabled backends).
for d in "$SRC"/ggml/src/ggml-*/; do
  name="$(basename "$d")"
  case "$name" in
    ggml-cpu|ggml-cuda) ;;
    *) rm -rf "$d" ;;
  esac
done
# Large test vocabularies, if any survived.
find "$SRC" -name '*.gguf' -delete

# llama.cpp's top CMakeLists adds examples/ and tests/ only under LLAMA_BUILD_EXAMPLES/TESTS (we
# configure them OFF); tools/CMakeLists.txt adds most tools unconditionally, so each of those must
# survive the trim (ui/ cli/ server/ only with LLAMA_BUILD_SERVER, rpc/ with GGML_RPC, tuning/ with
# GGML_METAL: those may go). Checked here, so a change of the upstream layout fails now, not on the device.
if [ -f "$SRC/tools/CMakeLists.txt" ]; then
  missing=0
  for t in $(sed -n 's/^[[:space:]]*add_subdirectory(\([^)]*\)).*/\1/p' "$SRC/tools/CMakeLists.txt"); do
    case "$t" in ui|cli|server|rpc|tuning) continue ;; esac
    if [ ! -f "$SRC/tools/$t/CMakeLists.txt" ]; then
      echo "!! tools/$t is referenced by tools/CMakeLists.txt but missing"; missing=1
    fi
  done
  [ "$missing" = 0 ] || exit 1
fi
for need in tools/llama-bench tools/batched-bench gguf-py/gguf ggml/src/ggml-cuda ggml/src/ggml-cpu src include common; do
  [ -e "$SRC/$need" ] || { echo "!! $need missing from the trimmed tree"; exit 1; }
done

rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
mv "$SRC" "$DEST"
echo "$VERSION" >"$DEST/ELI_LLAMA_CPP_PYTHON_VERSION"

# Make sure git ignores it (the caller may run this on a fresh clone).
if ! git -C "$ROOT" check-ignore -q "$DEST" 2>/dev/null; then
  echo "!! $DEST is not git-ignored: add /peers/ to .gitignore"
fi
SIZE_KB="$(du -sk "$DEST" | cut -f1)"
echo "== peers/llama.cpp: $((SIZE_KB / 1024)) MiB ($(find "$DEST" -type f | wc -l) files)"
if [ "$SIZE_KB" -gt $((40 * 1024)) ]; then
  echo "!! larger than 40 MiB: it may not fit the device call's 64 MiB carry with the repository"
  exit 1
fi
