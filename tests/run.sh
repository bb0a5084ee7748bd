#!/usr/bin/env bash
# tests/run.sh: every CPU test of eli, as README.md prints it and as CI runs it.
#   1. pip-installs the package with its test extras, unless the installed one was built from this
#      very tree (the stamp below): the build directory is reused and the build runs without pip's
#      isolated environment, so a reinstall compiles only what changed; ELI_CUDA / ELI_CUDA_ARCHS
#      pass through (CI sets ELI_CUDA=ON when nvcc is present, which compiles the CUDA backend
#      without running it);
#   2. builds and runs the C++ tests (GoogleTest, through ctest);
#   3. runs the Python tests with pytest (GPU-marked tests run only where a GPU is present), and
#      tests/clients: real client libraries against `eli serve` (installed by .ci/run).
# The stamp: a hash of every tracked or untracked-but-not-ignored file that goes into the package
# (tests/source_stamp.sh), the build options and the extras; the build installs it as
# eli/_build_info.json ("source_stamp"), and a matching installed stamp skips step 1.
# Environment: PYTHON (default python3), ELI_TEST_JOBS (build parallelism, default: all cores),
# ELI_FORCE_INSTALL=1 (reinstall even when the stamp matches).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
JOBS=${ELI_TEST_JOBS:-$(nproc)}
export CMAKE_BUILD_PARALLEL_LEVEL=$JOBS

need_tool() { command -v "$1" >/dev/null 2>&1 || "$PY" -m pip install --quiet "$1" >/dev/null 2>&1 || true; }
need_tool ninja
need_tool cmake
# The build requirements in this environment, so that the install below can skip pip's isolated
# build environment: scikit-build-core wipes the build folder's CMakeFiles (every object file)
# whenever it runs from a new isolated environment, which a plain `pip install .` always is.
"$PY" -c 'import scikit_build_core, nanobind' 2>/dev/null ||
  "$PY" -m pip install --quiet "scikit-build-core>=0.10" "nanobind>=2.0"

STAMP=$(bash tests/source_stamp.sh "$PY" test || true)
INSTALLED=$("$PY" - <<'EOF' 2>/dev/null || true
import importlib.util, json, pathlib
spec = importlib.util.find_spec("eli")
if spec and spec.submodule_search_locations:
    for d in spec.submodule_search_locations:
        p = pathlib.Path(d) / "_build_info.json"
        if p.is_file():
            print(json.loads(p.read_text()).get("source_stamp", ""))
            break
EOF
)
if [ -n "$STAMP" ] && [ "$STAMP" = "$INSTALLED" ] && [ "${ELI_FORCE_INSTALL:-0}" != 1 ]; then
  echo "== eli is installed from this tree (stamp ${STAMP:0:12}): not reinstalling"
else
  echo "== installing eli and its test dependencies (stamp ${STAMP:0:12}, installed ${INSTALLED:0:12})"
  ELI_SOURCE_STAMP="$STAMP" "$PY" -m pip install --quiet --no-build-isolation ".[test]"
fi

echo "== C++ tests"
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
cmake -S . -B build/cpp-tests "${GEN[@]}" -DELI_BUILD_TESTS=ON -DELI_CUDA=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/cpp-tests --target eli_cpp_tests
ctest --test-dir build/cpp-tests --output-on-failure -j "$JOBS"

echo "== Python tests"
"$PY" -m pytest -q tests/python tests/clients "$@"
