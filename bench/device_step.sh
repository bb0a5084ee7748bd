#!/usr/bin/env bash
# bench/device_step.sh: one device call for decode-step work: builds eli (CUDA, sm_90, tests and
# benchmarks on), writes random weights at the 1B and 8B shapes (bench/gpu/make_weights.py, kept
# across calls on a warm machine), runs the decode-step breakdown (bench/cuda_decode_step_bench.cc:
# the ModelRunner's real step) and the CUDA C++ tests, each under a timeout, with every log in $OUT.
# A summary is printed last.
#   usage: bench/device_step.sh [gtest filter, default 'Cuda*'] ; env ELI_STEP_SKIP_TESTS=1 (builds
#          only the step bench), ELI_STEP_JOBS (build jobs), ELI_STEP_SHAPES (default "1b 8b"),
#          ELI_STEP_BENCH_{BATCHES,CONTEXTS,ITERS,KV_DTYPES} (see the bench), GTEST_PREFIX (default build/gtest_prefix)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/device_out}"
BUILD="${ELI_DEVICE_BUILD_DIR:-$ROOT/build/device}"
FILTER="${1:-Cuda*}"
mkdir -p "$OUT"
export PATH="/usr/local/cuda/bin:$PATH"
summary=()
t0=$(date +%s)
el() { echo "$(( $(date +%s) - t0 ))s"; }

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$OUT/env.txt" 2>&1
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
GTEST_PREFIX="${GTEST_PREFIX:-$ROOT/build/gtest_prefix}"
TARGETS=(eli_cuda_decode_step_bench eli_cpp_tests)
[ "${ELI_STEP_SKIP_TESTS:-0}" = "1" ] && TARGETS=(eli_cuda_decode_step_bench)
if ! { cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DELI_BUILD_TESTS=ON -DELI_BUILD_BENCH=ON \
         -DELI_CUDA=ON -DELI_CUDA_ARCHS=90 -DCMAKE_PREFIX_PATH="$GTEST_PREFIX" > "$OUT/configure.txt" 2>&1 &&
       timeout 400 cmake --build "$BUILD" --target "${TARGETS[@]}" -j "${ELI_STEP_JOBS:-$(nproc)}" > "$OUT/build.txt" 2>&1; }; then
  echo "build failed ($(el))"; tail -40 "$OUT/configure.txt" "$OUT/build.txt"; exit 1
fi
summary+=("build: ok ($(el))")

WEIGHTS="${ELI_STEP_WEIGHTS:-/tmp/eli-bench/weights}"
dirs=()
for shape in ${ELI_STEP_SHAPES:-1b 8b}; do
  if [ ! -f "$WEIGHTS/$shape/.complete.json" ]; then
    timeout 300 python3 "$ROOT/bench/gpu/make_weights.py" --shape "$shape" --out "$WEIGHTS" --formats hf \
      >> "$OUT/make_weights.txt" 2>&1
  fi
  [ -f "$WEIGHTS/$shape/.complete.json" ] && dirs+=("$WEIGHTS/$shape")
done
summary+=("weights: ${dirs[*]:-none} ($(el))")
# The writer's last lines in the summary when a shape is missing (its log may not come back).
[ ${#dirs[@]} -lt $(echo ${ELI_STEP_SHAPES:-1b 8b} | wc -w) ] && summary+=("make_weights: $(tail -3 "$OUT/make_weights.txt" 2>/dev/null | tr '\n' ' ')")
if [ ${#dirs[@]} -gt 0 ]; then
  timeout 300 "$BUILD/eli_cuda_decode_step_bench" "${dirs[@]}" --json "$OUT/decode_step.json" > "$OUT/decode_step.txt" 2>&1
  summary+=("step bench: exit $? ($(el))")
fi

if [ "${ELI_STEP_SKIP_TESTS:-0}" != "1" ]; then
  timeout 300 "$BUILD/eli_cpp_tests" --gtest_filter="$FILTER" > "$OUT/tests.txt" 2>&1
  summary+=("c++ tests '$FILTER': exit $? ($(grep -E '^\[  (PASSED|FAILED) ' "$OUT/tests.txt" | tr '\n' ' ')) ($(el))")
  grep -E "^\[  FAILED  \]" "$OUT/tests.txt" | head -30
fi

echo "================ summary"
cat "$OUT/env.txt"
for s in "${summary[@]}"; do echo "$s"; done
cat "$OUT/decode_step.txt" 2>/dev/null | tail -50
