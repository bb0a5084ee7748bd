#!/usr/bin/env bash
# bench/device_run.sh: the one script to run on the GPU machine. Builds eli with CUDA for sm_90
# (Release, tests on, all cores), runs the C++ tests (CudaKernel* and CudaEngine* included) and
# writes every log to $OUT (set by the device tool; defaults to ./device_out); then (unless ELI_DEVICE_SKIP_PYTHON=1)
# pip-installs the Python package with CUDA for sm_90 and runs the GPU parity tests
# (tests/python/test_cuda_parity.py, tests/python/test_model_parity.py); with
# ELI_DEVICE_MEMCHECK=1 also runs the CUDA kernel tests under compute-sanitizer memcheck.
# Exit status: non-zero if the build or any test failed; the logs are written either way.
# The SmolLM2 GGUF is not on the GPU machine (no network, too big to carry): its GPU test runs
# only when ELI_TEST_SMOLLM2 names a copy.
#   usage: bench/device_run.sh [gtest filter, default '*']
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/device_out}"
BUILD="${ELI_DEVICE_BUILD_DIR:-$ROOT/build/device}"
FILTER="${1:-*}"
mkdir -p "$OUT"
export PATH="/usr/local/cuda/bin:$PATH"

{
  echo "== $(date -u +%FT%TZ) host $(hostname)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv || true
  nvcc --version | tail -2 || true
  cmake --version | head -1
} 2>&1 | tee "$OUT/env.log"

EXTRA=()
command -v ninja >/dev/null && EXTRA+=(-G Ninja)
# GoogleTest: the machine's own, else a prefix carried with the tree (made by bench/make_gtest_prefix.sh; GTEST_PREFIX or
# build/gtest_prefix: include/ and lib/<triple>/{libgtest*.a,cmake/GTest} copied from a dev box).
GTEST_PREFIX="${GTEST_PREFIX:-$ROOT/build/gtest_prefix}"
[ -d "$GTEST_PREFIX" ] && EXTRA+=(-DCMAKE_PREFIX_PATH="$GTEST_PREFIX")
cmake -S "$ROOT" -B "$BUILD" "${EXTRA[@]}" -DCMAKE_BUILD_TYPE=Release -DELI_BUILD_TESTS=ON \
  -DELI_CUDA=ON -DELI_CUDA_ARCHS=90 2>&1 | tee "$OUT/configure.log"
cmake --build "$BUILD" --target eli_cpp_tests -j "$(nproc)" 2>&1 | tee "$OUT/build.log"

status=0
"$BUILD/eli_cpp_tests" --gtest_filter="$FILTER" --gtest_output="xml:$OUT/gtest.xml" 2>&1 \
  | tee "$OUT/tests.log" || status=$?
# The GPU suites once more, alone, so their result is easy to find.
"$BUILD/eli_cpp_tests" --gtest_filter='CudaKernel*:CudaEngine*' 2>&1 | tee "$OUT/tests_cuda.log" || status=$?
if grep -q "no CUDA device" "$OUT/tests_cuda.log"; then
  echo "!! CudaKernel/CudaEngine tests skipped: no CUDA device visible" | tee -a "$OUT/tests_cuda.log"
  status=1
fi

if [ "${ELI_DEVICE_MEMCHECK:-0}" = "1" ] && command -v compute-sanitizer >/dev/null; then
  compute-sanitizer --tool memcheck --error-exitcode 9 "$BUILD/eli_cpp_tests" \
    --gtest_filter='CudaKernel*:-*RepeatedLoop*:*OutOfMemory*' 2>&1 | tail -n 60 > "$OUT/memcheck.log" || status=$?
  tail -n 5 "$OUT/memcheck.log"
fi

if [ "${ELI_DEVICE_SKIP_PYTHON:-0}" != "1" ]; then
  {
    python3 --version
    python3 -c "import numpy, nanobind, scikit_build_core, tokenizers, jinja2, safetensors, pytest; print('py deps ok')"
    python3 -c "import tqdm" 2>/dev/null && echo "tqdm ok" || echo "tqdm missing (only the download progress bar uses it)"
  } 2>&1 | tee "$OUT/python_env.log" || status=$?
  ELI_CUDA=ON ELI_CUDA_ARCHS=90 CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    python3 -m pip install --no-build-isolation --no-deps -v "$ROOT" > "$OUT/pip_install.log" 2>&1 || {
      status=$?; tail -n 40 "$OUT/pip_install.log"; }
  # From outside the source tree so that `import eli` finds the installed package.
  (cd /tmp && PYTHONUNBUFFERED=1 python3 -m pytest -q -rs -p no:cacheprovider \
      "$ROOT/tests/python/test_cuda_parity.py" "$ROOT/tests/python/test_model_parity.py" \
      "$ROOT/tests/python/test_cuda_engine_equivalence.py" ${ELI_DEVICE_PYTEST_EXTRA:-} 2>&1) \
    | tee "$OUT/pytest_gpu.log" || status=$?
fi
echo "== exit status $status" | tee "$OUT/status.log"
exit "$status"
