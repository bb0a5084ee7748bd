#!/usr/bin/env bash
# tests/run.sh: every CPU test of eli, as README.md prints it and as CI runs it.
#   1. pip-installs the package with its test extras (builds the wheel: the CUDA backend too when
#      nvcc is present, which is how CI keeps the CUDA code compiling);
#   2. builds and runs the C++ tests (GoogleTest, through ctest);
#   3. runs the Python tests with pytest (GPU-marked tests run only where a GPU is present).
# Environment: PYTHON (default python3), ELI_TEST_JOBS (build parallelism, default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
JOBS=${ELI_TEST_JOBS:-$(nproc)}
export CMAKE_BUILD_PARALLEL_LEVEL=$JOBS

echo "== installing eli and its test dependencies"
"$PY" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
"$PY" -m pip install --quiet ninja cmake >/dev/null 2>&1 || true
"$PY" -m pip install --quiet ".[test]"

echo "== C++ tests"
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
cmake -S . -B build/cpp-tests "${GEN[@]}" -DELI_BUILD_TESTS=ON -DELI_CUDA=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/cpp-tests --target eli_cpp_tests
ctest --test-dir build/cpp-tests --output-on-failure -j "$JOBS"

echo "== Python tests"
"$PY" -m pytest -q tests/python "$@"
