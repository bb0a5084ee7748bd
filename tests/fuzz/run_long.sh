#!/usr/bin/env bash
# tests/fuzz/run_long.sh: a long fuzzing session (hours) of every harness, for a developer machine
# or a nightly job. Each harness runs for SECONDS (default 3600) with a persistent corpus under
# $OUT/corpus-long/<name>/ (grown across sessions, seeded from build.sh's corpus) and keeps going
# after a finding (-fork mode, -ignore_crashes=1), saving every crashing / leaking / timing-out
# input under tests/fuzz/crashes/<name>-*. Logs: $OUT/long-logs/<name>.log. At the end it prints
# executions and findings per harness and exits 1 if anything was saved under tests/fuzz/crashes/.
# Usage: bash tests/fuzz/run_long.sh [SECONDS] [HARNESS...]
#        ELI_FUZZ_PARALLEL=2 runs two harnesses at a time (each one process).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${ELI_FUZZ_BUILD:-$ROOT/build/fuzz}"
SECS="${1:-3600}"
shift || true
HARNESSES=("$@")
[ ${#HARNESSES[@]} -eq 0 ] && HARNESSES=(json safetensors sharded_index hf_config gguf)
PARALLEL="${ELI_FUZZ_PARALLEL:-1}"
CRASHES="$ROOT/tests/fuzz/crashes"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
mkdir -p "$CRASHES" "$OUT/long-logs"

dict_for() { if [ "$1" = gguf ]; then echo "$ROOT/tests/fuzz/dict/gguf.dict"; else echo "$ROOT/tests/fuzz/dict/json.dict"; fi; }

run_one() {
  local h="$1" bin="$OUT/bin/fuzz_$1"
  if [ ! -x "$bin" ]; then echo "run_long.sh: $bin missing: run tests/fuzz/build.sh" >&2; return 2; fi
  mkdir -p "$OUT/corpus-long/$h"
  # -fork=1: one child at a time, restarted after a crash so the session continues.
  "$bin" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -max_total_time="$SECS" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -dict="$(dict_for "$h")" \
    -artifact_prefix="$CRASHES/$h-" "$OUT/corpus-long/$h" "$OUT/corpus/$h" \
    > "$OUT/long-logs/$h.log" 2>&1
}

started="$(date -u +%FT%TZ)"
running=0
for h in "${HARNESSES[@]}"; do
  run_one "$h" &
  running=$((running + 1))
  if [ "$running" -ge "$PARALLEL" ]; then wait -n; running=$((running - 1)); fi
done
wait

echo "run_long.sh: started $started, ${SECS}s per harness, commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
printf '%-14s %14s %8s %8s\n' harness executions corpus findings
found=0
for h in "${HARNESSES[@]}"; do
  log="$OUT/long-logs/$h.log"
  # fork mode prints "#N: cov: ... exec/s ..." lines; the last one carries the total.
  execs="$(grep -oE '^#[0-9]+' "$log" 2>/dev/null | tail -1 | tr -d '#')"
  corpus="$(find "$OUT/corpus-long/$h" -type f 2>/dev/null | wc -l)"
  n="$(find "$CRASHES" -name "$h-*" -type f 2>/dev/null | wc -l)"
  found=$((found + n))
  printf '%-14s %14s %8s %8s\n' "$h" "${execs:-?}" "$corpus" "$n"
done
if [ "$found" -ne 0 ]; then
  echo "run_long.sh: $found finding(s) under $CRASHES (reproduce: $OUT/bin/fuzz_<name> FILE)"
  exit 1
fi
