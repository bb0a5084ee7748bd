#!/usr/bin/env bash
# tests/fuzz/run_short.sh: a short fuzzing pass for CI: each harness for ELI_FUZZ_SECONDS (default
# 20 s; 5 harnesses, so ~2 minutes in all), starting from the seed corpora of build.sh in a
# throw-away working corpus. Prints the executions run per harness; exits non-zero if any harness
# finds a crash, a leak, a timeout (> 10 s on one input) or an out-of-memory (> 2 GiB), or fails
# to run. Crashing inputs are kept under $OUT/crashes-short/ (reproduce: bin/fuzz_<name> FILE).
# Usage: bash tests/fuzz/run_short.sh   (run build.sh first)
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${ELI_FUZZ_BUILD:-$ROOT/build/fuzz}"
SECONDS_EACH="${ELI_FUZZ_SECONDS:-20}"
HARNESSES=(json safetensors sharded_index hf_config gguf)
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

dict_for() { if [ "$1" = gguf ]; then echo "$ROOT/tests/fuzz/dict/gguf.dict"; else echo "$ROOT/tests/fuzz/dict/json.dict"; fi; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/eli_fuzz_short.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT/crashes-short"
failed=0
total=0
printf '%-14s %12s %8s  %s\n' harness executions exec/s result
for h in "${HARNESSES[@]}"; do
  bin="$OUT/bin/fuzz_$h"
  if [ ! -x "$bin" ] || [ ! -d "$OUT/corpus/$h" ]; then
    echo "run_short.sh: $bin or its corpus is missing: run tests/fuzz/build.sh" >&2
    exit 2
  fi
  mkdir -p "$WORK/$h"
  "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -dict="$(dict_for "$h")" -artifact_prefix="$OUT/crashes-short/$h-" \
    "$WORK/$h" "$OUT/corpus/$h" > "$WORK/$h.log" 2>&1
  rc=$?
  execs="$(grep -o 'stat::number_of_executed_units: [0-9]*' "$WORK/$h.log" | tail -1 | awk '{print $2}')"
  speed="$(grep -o 'exec/s: [0-9]*' "$WORK/$h.log" | tail -1 | awk '{print $2}')"
  result=ok
  if [ "$rc" -ne 0 ] || [ -z "$execs" ]; then
    result="FAILED (rc $rc)"
    failed=1
    echo "---- $h: last lines of the log" >&2
    grep -E 'FINDING|ERROR|SUMMARY|Test unit written|#[0-9]+ ' "$WORK/$h.log" | tail -40 >&2
  fi
  total=$((total + ${execs:-0}))
  printf '%-14s %12s %8s  %s\n' "$h" "${execs:-?}" "${speed:-?}" "$result"
done
echo "run_short.sh: $total executions in all"
if [ "$failed" -ne 0 ]; then
  echo "run_short.sh: FAILED: crashing inputs are in $OUT/crashes-short/" >&2
  exit 1
fi
