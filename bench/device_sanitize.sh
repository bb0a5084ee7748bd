#!/usr/bin/env bash
# bench/device_sanitize.sh: GPU hygiene on the device (reliability issue, item 4). Runs
# compute-sanitizer's memcheck, racecheck and initcheck over the CUDA kernel tests (CudaKernel*)
# and a whole-engine decode that recycles KV blocks (CudaEngineSanitize.DecodeRecyclesBlocks:
# ~600 steps of the tiny bf16 checkpoint in a 14-block pool, with preemption), and requires
# "ERROR SUMMARY: 0 errors" from each tool.
#
# Run it on the GPU machine after bench/device_run.sh built $BUILD (default build/device); when the
# test binary is missing it configures and builds it the same way (carry build/gtest_prefix):
#   run(command="bash bench/device_run.sh; bash bench/device_sanitize.sh", carry=["build/gtest_prefix"])
# The three tools run in parallel (separate processes on the one GPU), each under a time limit
# (ELI_SANITIZE_TIMEOUT seconds, default 330), so the whole script stays under ~6 minutes on an H100.
# Left out (ELI_SANITIZE_EXCLUDE, a gtest negative filter, replaces the default): tests that fail or
# allocate on purpose (OutOfMemory, the fault tests are not CudaKernel*), loops that count driver
# allocations, and the real-model-shape / long-context cases, whose odd-shape siblings run the same
# code paths at sizes a 10-100x slowdown can afford.
# Writes $OUT/sanitize_<tool>.log (the sanitizer's findings, first 200 lines, plus the gtest result
# and the ERROR SUMMARY) and $OUT/sanitize_summary.md (the table printed last).
# ELI_SANITIZE_TESTS (default 'CudaKernel*:CudaEngineSanitize*'): the positive gtest filter, for a
# round over the suites a change touched.
# ELI_SANITIZE_SHARDS (default 1): each tool's tests are split into this many gtest shards
# (GTEST_TOTAL_SHARDS / GTEST_SHARD_INDEX) run side by side, so a slow tool (racecheck over the
# flash-prefill tests) fits the time limit; the shard logs are merged into one per tool.
# ELI_TEST_UNDER_SANITIZER=1 is set for the tests: the sampling tests then run fewer vocabularies
# and rows (statistics, not code paths; tests/cpp/kernel_test_util.h under_sanitizer()).
# ELI_SANITIZE_SIMT_TOOLS (default "racecheck initcheck"): these tools run with ELI_GEMM_SIMT=1,
# i.e. eli's own SIMT GEMM instead of cuBLASLt. cuBLASLt's sm_90 kernels (nvjet, TMA stores) are
# vendor code the tools cannot model: racecheck reports hazards inside them and initcheck does not
# see their TMA writes (bench/results/2026-11-26_h100_sanitize.md shows the A/B). memcheck runs the
# cuBLASLt path as shipped.
# Exit status: non-zero if any tool reported an error, a test failed or was skipped for lack of a
# GPU, or a tool timed out or did not print its ERROR SUMMARY.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/device_out}"
BUILD="${ELI_DEVICE_BUILD_DIR:-$ROOT/build/device}"
LIMIT="${ELI_SANITIZE_TIMEOUT:-330}"
TOOLS="${ELI_SANITIZE_TOOLS:-memcheck racecheck initcheck}"
EXCLUDE="${ELI_SANITIZE_EXCLUDE:-*RepeatedLoop*:*OutOfMemory*:*LongContext*:*LongSequence*:*RealShapes*:*ManyRows*:*CpuOnlyBuild*}"
FILTER="${ELI_SANITIZE_TESTS:-CudaKernel*:CudaEngineSanitize*}:-${EXCLUDE}"
SHARDS="${ELI_SANITIZE_SHARDS:-1}"
SIMT_TOOLS="${ELI_SANITIZE_SIMT_TOOLS:-racecheck initcheck}"
mkdir -p "$OUT"
export PATH="/usr/local/cuda/bin:$PATH"

if ! command -v compute-sanitizer >/dev/null; then
  echo "!! compute-sanitizer not found (looked in PATH and /usr/local/cuda/bin)" | tee "$OUT/sanitize_summary.md"
  exit 2
fi

if [ ! -x "$BUILD/eli_cpp_tests" ]; then
  echo "== $BUILD/eli_cpp_tests missing: building it"
  EXTRA=()
  command -v ninja >/dev/null && EXTRA+=(-G Ninja)
  GTEST_PREFIX="${GTEST_PREFIX:-$ROOT/build/gtest_prefix}"
  [ -d "$GTEST_PREFIX" ] && EXTRA+=(-DCMAKE_PREFIX_PATH="$GTEST_PREFIX")
  { cmake -S "$ROOT" -B "$BUILD" "${EXTRA[@]}" -DCMAKE_BUILD_TYPE=Release -DELI_BUILD_TESTS=ON \
      -DELI_CUDA=ON -DELI_CUDA_ARCHS=90 && cmake --build "$BUILD" --target eli_cpp_tests -j "$(nproc)"; } \
    > "$OUT/sanitize_build.log" 2>&1 || { tail -n 40 "$OUT/sanitize_build.log"; exit 2; }
fi

echo "== compute-sanitizer $(compute-sanitizer --version | tail -1)"
echo "== filter: $FILTER"
"$BUILD/eli_cpp_tests" --gtest_list_tests --gtest_filter="$FILTER" > "$OUT/sanitize_tests.txt" 2>&1
echo "== $(grep -c '^  ' "$OUT/sanitize_tests.txt") tests per tool; limit ${LIMIT}s per tool"

run_shard() {  # tool shard -> $OUT/.sanitize_<tool>.<shard>.{raw,rc}
  local tool=$1 shard=$2 simt=0
  local args=(--tool "$tool" --error-exitcode 9 --print-limit 100)
  case " $SIMT_TOOLS " in *" $tool "*) simt=1 ;; esac
  ELI_TEST_UNDER_SANITIZER=1 ELI_GEMM_SIMT=$simt GTEST_TOTAL_SHARDS="$SHARDS" GTEST_SHARD_INDEX="$shard" \
    timeout --kill-after=15 "$LIMIT" compute-sanitizer "${args[@]}" "$BUILD/eli_cpp_tests" \
    --gtest_filter="$FILTER" > "$OUT/.sanitize_$tool.$shard.raw" 2>&1
  echo $? > "$OUT/.sanitize_$tool.$shard.rc"
}

run_tool() {  # tool -> $OUT/sanitize_<tool>.{log,rc,sec}
  local tool=$1 t0 rc=0 s r errors=0 passed=0 summaries=0
  t0=$(date +%s)
  local spids=()
  for ((s = 0; s < SHARDS; ++s)); do
    run_shard "$tool" "$s" &
    spids+=($!)
  done
  for p in "${spids[@]}"; do wait "$p"; done
  for ((s = 0; s < SHARDS; ++s)); do
    r=$(cat "$OUT/.sanitize_$tool.$s.rc")
    # The worst shard's status: a timeout (124/137) outranks findings (9), which outrank 0.
    case "$r" in 124|137) rc=$r ;; 0) ;; *) [ "$rc" = 0 ] && rc=$r ;; esac
  done
  echo "$rc" > "$OUT/.sanitize_$tool.rc"
  echo $(( $(date +%s) - t0 )) > "$OUT/.sanitize_$tool.sec"
  local raws=("$OUT"/.sanitize_"$tool".*.raw)
  for r in "${raws[@]}"; do
    local line e p
    # racecheck prints "RACECHECK SUMMARY: N hazards displayed (E errors, W warnings)".
    line=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$r" | tail -n 1)
    if [ -n "$line" ]; then
      summaries=$((summaries + 1))
      case "$line" in
        *RACECHECK*) e=$(echo "$line" | sed 's/.*hazards displayed (\([0-9]*\) errors, \([0-9]*\) warnings).*/\1+\2/') ;;
        *) e=$(echo "$line" | sed 's/.*ERROR SUMMARY: \([0-9]*\) error.*/\1/') ;;
      esac
      errors=$((errors + ${e:-0}))  # racecheck: errors + warnings
    fi
    p=$(grep -E '^\[  PASSED  \]' "$r" | tail -n 1 | sed 's/^\[  PASSED  \] *\([0-9]*\).*/\1/')
    passed=$((passed + ${p:-0}))
  done
  {
    echo "== compute-sanitizer --tool $tool (exit $rc, $(cat "$OUT/.sanitize_$tool.sec") s, $SHARDS shard(s), ELI_GEMM_SIMT=$(case " $SIMT_TOOLS " in *" $tool "*) echo 1 ;; *) echo 0 ;; esac))"
    echo "== findings (first 200 lines of the sanitizer's own output)"
    cat "${raws[@]}" | grep '^=========' | grep -v 'ERROR SUMMARY' | head -n 200
    echo "== tests"
    cat "${raws[@]}" | grep -E '^\[  FAILED  \]|no CUDA device' | head -n 40
    echo "[  PASSED  ] $passed tests (all shards)"
    echo "== slowest tests under this tool"
    cat "${raws[@]}" | grep -E '^\[       OK \] .*\([0-9]+ ms\)' | sed 's/.*\] \(.*\) (\([0-9]*\) ms)/\2 ms \1/' \
      | sort -rn | head -n 8
    for r in "${raws[@]}"; do
      grep -q -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$r" && continue
      echo "== unfinished shard $r: last test started"
      grep -E '^\[ RUN      \]' "$r" | tail -n 1
    done
    echo "== summary"
    if [ "$summaries" = "$SHARDS" ]; then
      echo "========= ERROR SUMMARY: $errors errors"
    else
      echo "(only $summaries of $SHARDS shards printed an ERROR SUMMARY)"
    fi
  } > "$OUT/sanitize_$tool.log"
  rm -f "${raws[@]}" "$OUT"/.sanitize_"$tool".*.rc
}

pids=()
for tool in $TOOLS; do
  run_tool "$tool" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done

status=0
{
  echo "| tool | exit | seconds | tests | ERROR SUMMARY |"
  echo "| --- | --- | --- | --- | --- |"
  for tool in $TOOLS; do
    log="$OUT/sanitize_$tool.log"
    rc=$(cat "$OUT/.sanitize_$tool.rc" 2>/dev/null || echo "?")
    sec=$(cat "$OUT/.sanitize_$tool.sec" 2>/dev/null || echo "?")
    summary=$(grep 'ERROR SUMMARY' "$log" | tail -n 1 | sed 's/^=* *//')
    tests=$(grep -E '^\[  PASSED  \]' "$log" | tail -n 1 | sed 's/^\[  PASSED  \] *\([0-9]*\).*/\1/')
    failed=$(grep -cE '^\[  FAILED  \]' "$log")
    skipped=$(grep -c 'no CUDA device' "$log")
    verdict=ok
    case "$rc" in 124|137) verdict="TIMED OUT after ${LIMIT}s" ;; esac
    [ -z "$summary" ] && summary="(none: did not finish)" && verdict="${verdict/ok/NO SUMMARY}"
    echo "$summary" | grep -q 'ERROR SUMMARY: 0 errors' || verdict="${verdict/ok/FINDINGS}"
    [ "$failed" != "0" ] && verdict="${verdict/ok/TEST FAILURES}"
    [ "$skipped" != "0" ] && verdict="${verdict/ok/SKIPPED: no CUDA device}"
    [ "$rc" != "0" ] && [ "$verdict" = ok ] && verdict="exit $rc"
    echo "| $tool | $rc ($verdict) | $sec | ${tests:-?} passed, $failed failed | $summary |"
  done
} | tee "$OUT/sanitize_summary.md"
rm -f "$OUT"/.sanitize_*.rc "$OUT"/.sanitize_*.sec
# Any row whose verdict is not "ok" fails the script (the table was made in a subshell).
# (Tool rows only: "| <tool> | <rc> (<verdict>) |"; the header row has no verdict.)
if grep -E '^\| [a-z]+ \| [0-9?]+ \(' "$OUT/sanitize_summary.md" | grep -vq '(ok)'; then status=1; fi
echo "== sanitize exit status $status" | tee -a "$OUT/sanitize_summary.md"
exit "$status"
