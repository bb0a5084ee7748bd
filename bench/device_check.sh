#!/usr/bin/env bash
# bench/device_check.sh: one device call that proves a change on the GPU: ONE CMake build (CUDA,
# sm_90, C++ tests and the Python module together, all cores), then the C++ GPU suites and the
# pytest GPU files against the module built there (no second pip build). Logs go to $OUT; a
# summary is printed last. Exit status: non-zero if the build or a test failed.
#   usage: bench/device_check.sh [gtest filter, default 'Cuda*'] [pytest files...]
#   carry: build/gtest_prefix (bench/make_gtest_prefix.sh) when the machine has no GoogleTest.
# Environment: ELI_CHECK_ARCHS (default 90), ELI_CHECK_TEST_TIMEOUT (seconds per suite, default 240),
# ELI_CHECK_SKIP_PYTHON=1 (C++ only: no Python module built, no pytest), ELI_CHECK_BENCHES="a b"
# (benchmark targets eli_cuda_<a>_bench ... built with the rest and run last, each under
# ELI_CHECK_BENCH_TIMEOUT seconds (default 90), writing $OUT/<a>.json and $OUT/<a>.txt).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/device_out}"
BUILD="$ROOT/build/device_check"
FILTER="${1:-Cuda*}"
shift || true
PYFILES=("$@")
[ ${#PYFILES[@]} -eq 0 ] && PYFILES=(tests/python/test_cuda_parity.py tests/python/test_cuda_engine_equivalence.py)
T="${ELI_CHECK_TEST_TIMEOUT:-240}"
mkdir -p "$OUT"
export PATH="/usr/local/cuda/bin:$PATH"
t0=$(date +%s)
el() { echo "$(( $(date +%s) - t0 ))s"; }
summary=()
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$OUT/env.txt" 2>&1
git -C "$ROOT" rev-parse --short HEAD >> "$OUT/env.txt" 2>/dev/null

GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
EXTRA=()
[ -d "$ROOT/build/gtest_prefix" ] && EXTRA+=(-DCMAKE_PREFIX_PATH="$ROOT/build/gtest_prefix")
BENCHES=(${ELI_CHECK_BENCHES:-})
BENCH_TARGETS=()
for b in "${BENCHES[@]}"; do BENCH_TARGETS+=("eli_cuda_${b}_bench"); done
[ ${#BENCHES[@]} -gt 0 ] && EXTRA+=(-DELI_BUILD_BENCH=ON)
if ! { cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" "${EXTRA[@]}" -DCMAKE_BUILD_TYPE=Release -DELI_BUILD_TESTS=ON \
         -DELI_BUILD_PYTHON="$([ "${ELI_CHECK_SKIP_PYTHON:-0}" = 1 ] && echo OFF || echo ON)" -DELI_CUDA=ON -DELI_CUDA_ARCHS="${ELI_CHECK_ARCHS:-90}" -DPython_EXECUTABLE="$(command -v python3)" \
         > "$OUT/configure.txt" 2>&1 &&
       timeout 480 cmake --build "$BUILD" --target eli_cpp_tests $([ "${ELI_CHECK_SKIP_PYTHON:-0}" = 1 ] || echo _eli) "${BENCH_TARGETS[@]}" \
         -j "$(nproc)" > "$OUT/build.txt" 2>&1; }; then
  echo "build failed ($(el))"
  tail -40 "$OUT/configure.txt" "$OUT/build.txt"
  exit 1
fi
summary+=("build: ok ($(el))")

status=0
timeout "$T" "$BUILD/eli_cpp_tests" --gtest_filter="$FILTER" > "$OUT/cpp_tests.txt" 2>&1 || status=$?
summary+=("c++ '$FILTER': exit $status; $(grep -E '^\[  (PASSED|FAILED) ' "$OUT/cpp_tests.txt" | tr '\n' ' ') ($(el))")
grep -E "^\[  FAILED  \]" "$OUT/cpp_tests.txt" | head -40

if [ "${ELI_CHECK_SKIP_PYTHON:-0}" != 1 ]; then
  # The module next to the Python sources: pytest imports the tree's eli with it.
  cp "$BUILD"/_eli*.so "$ROOT/python/eli/" 2>/dev/null
  py=0
  PYTHONPATH="$ROOT/python${PYTHONPATH:+:$PYTHONPATH}" timeout "$T" python3 -m pytest -q -x "${PYFILES[@]}" > "$OUT/pytest.txt" 2>&1 || py=$?
  summary+=("pytest ${PYFILES[*]}: exit $py; $(tail -1 "$OUT/pytest.txt") ($(el))")
  [ $py -ne 0 ] && status=1 && tail -30 "$OUT/pytest.txt"
fi

for b in "${BENCHES[@]}"; do
  timeout "${ELI_CHECK_BENCH_TIMEOUT:-90}" "$BUILD/eli_cuda_${b}_bench" "$OUT/$b.json" > "$OUT/$b.txt" 2>&1
  summary+=("bench $b: exit $? ($(el))")
done

echo "================ summary"
cat "$OUT/env.txt"
for s in "${summary[@]}"; do echo "$s"; done
exit $status
