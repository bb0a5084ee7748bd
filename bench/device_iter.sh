#!/usr/bin/env bash
# bench/device_iter.sh: one development round on the GPU machine, in one device call: build and run
# the C++ tests (bench/device_run.sh), the kernel micro-benchmarks (bench/cuda_matmul_bench.cc,
# bench/cuda_attention_bench.cc), then install the Python package and run the GPU pytest files.
# Every log goes into $OUT/logs.tgz (the device returns at most 8 files); a summary is printed last.
#   usage: bench/device_iter.sh [gtest filter] ; env ELI_ITER_SKIP_BENCH=1, ELI_ITER_SKIP_PY=1,
#          ELI_ITER_PYTEST="tests/python/x.py ..." (default: the GPU parity/equivalence files)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/device_out}"
LOG="$OUT/logs"
mkdir -p "$LOG"
export PATH="/usr/local/cuda/bin:$PATH"
FILTER="${1:-*}"
summary=()

OUT="$LOG" ELI_DEVICE_SKIP_PYTHON=1 bash "$ROOT/bench/device_run.sh" "$FILTER" > "$LOG/device_run.txt" 2>&1
summary+=("c++ tests: exit $? ($(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$LOG/tests.log" 2>/dev/null | tr '\n' ' '))")
grep -E "^\[  FAILED  \]" "$LOG/tests.log" 2>/dev/null | head -40

if [ "${ELI_ITER_SKIP_BENCH:-0}" != "1" ] && [ -d "$ROOT/build/device" ]; then
  # The benchmark programs are CMake targets of the same build (ELI_BUILD_BENCH).
  cmake -S "$ROOT" -B "$ROOT/build/device" -DELI_BUILD_BENCH=ON > "$LOG/bench_configure.txt" 2>&1 &&
    timeout 300 cmake --build "$ROOT/build/device" --target eli_cuda_matmul_bench eli_cuda_attention_bench \
      -j "$(nproc)" > "$LOG/bench_build.txt" 2>&1
  summary+=("bench build: exit $?")
  timeout 180 "$ROOT/build/device/eli_cuda_matmul_bench" "$OUT/matmul_bench.json" > "$LOG/matmul_bench.txt" 2>&1
  summary+=("matmul bench: exit $?")
  timeout 120 "$ROOT/build/device/eli_cuda_attention_bench" > "$LOG/attention_bench.txt" 2>&1
  summary+=("attention bench: exit $?")
fi

if [ "${ELI_ITER_SKIP_PY:-0}" != "1" ]; then
  ELI_CUDA=ON ELI_CUDA_ARCHS=90 CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    python3 -m pip install --no-build-isolation --no-deps "$ROOT" > "$LOG/pip_install.txt" 2>&1
  summary+=("pip install: exit $?")
  files=${ELI_ITER_PYTEST:-"tests/python/test_cuda_parity.py tests/python/test_cuda_engine_equivalence.py"}
  args=()
  for f in $files; do args+=("$ROOT/$f"); done
  (cd /tmp && PYTHONUNBUFFERED=1 timeout 300 python3 -m pytest -q -rs -p no:cacheprovider "${args[@]}" 2>&1) \
    > "$LOG/pytest.txt"
  summary+=("pytest: exit $? ($(tail -1 "$LOG/pytest.txt"))")
  grep -E "^(FAILED|ERROR)|Error|assert" "$LOG/pytest.txt" | head -30
fi

tar czf "$OUT/logs.tgz" -C "$OUT" logs && rm -rf "$LOG"
echo "================ summary"
for s in "${summary[@]}"; do echo "$s"; done
[ -f "$OUT/matmul_bench.json" ] && echo "(matmul_bench.json written)"
tar xzf "$OUT/logs.tgz" -O logs/matmul_bench.txt 2>/dev/null | tail -45
tar xzf "$OUT/logs.tgz" -O logs/attention_bench.txt 2>/dev/null | tail -25
