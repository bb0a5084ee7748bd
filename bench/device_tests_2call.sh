#!/usr/bin/env bash
# bench/device_tests_2call.sh: the GPU test round split over two back-to-back device calls, so that
# a file larger than one call may carry (the SmolLM2 GGUF, 98 MB, against 64 MiB a call) arrives in
# two parts while the build runs. The machine stays warm between the calls only if the second
# follows within its idle release; `finish` says so when the first part is missing.
#   start  PART   copies PART to $W/parts/, starts in the background (setsid nohup, they outlive the
#                 call): bench/device_run.sh 'Cuda*' (C++ build + CUDA tests) and the pip install
#                 of the tree with CUDA for sm_90; returns at once.
#   finish PART   copies PART, joins the parts into $W/smollm2.gguf (sha256 checked against
#                 $ROOT/peers/smollm2.sha256 when present), waits for the background jobs, then runs
#                 the GPU pytest files (ELI_TEST_SMOLLM2 set when the GGUF is whole) and writes every
#                 log to $OUT/logs.tgz with a summary.
# Env: W (default /tmp/eli-2call), ELI_2CALL_PYTEST (default: the GPU parity and equivalence files).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
W="${W:-/tmp/eli-2call}"
OUT="${OUT:-$ROOT/device_out}"
export PATH="/usr/local/cuda/bin:$PATH"
mkdir -p "$W/parts" "$W/logs" "$W/status" "$OUT"

bg() {  # name, command: runs detached, leaves $W/status/<name>.rc
  setsid nohup bash -c "{ $2 ; } > '$W/logs/$1.txt' 2>&1; echo \$? > '$W/status/$1.rc'" </dev/null >/dev/null 2>&1 &
}

case "${1:-}" in
  start)
    [ -n "${2:-}" ] && cp "$2" "$W/parts/1"
    rm -f "$W/status/"*.rc
    bg cpp "OUT='$W/logs/cpp' ELI_DEVICE_SKIP_PYTHON=1 bash '$ROOT/bench/device_run.sh' 'Cuda*'"
    bg pip "ELI_CUDA=ON ELI_CUDA_ARCHS=90 CMAKE_BUILD_PARALLEL_LEVEL=8 python3 -m pip install --no-build-isolation --no-deps '$ROOT'"
    echo "started: cpp, pip (logs in $W/logs)"
    ;;
  finish)
    [ -n "${2:-}" ] && cp "$2" "$W/parts/2"
    gguf=""
    if [ -f "$W/parts/1" ] && [ -f "$W/parts/2" ]; then
      cat "$W/parts/1" "$W/parts/2" > "$W/smollm2.gguf"
      if [ -f "$ROOT/peers/smollm2.sha256" ]; then
        want="$(cut -d' ' -f1 "$ROOT/peers/smollm2.sha256")"
        got="$(sha256sum "$W/smollm2.gguf" | cut -d' ' -f1)"
        [ "$want" = "$got" ] && gguf="$W/smollm2.gguf" || echo "!! SmolLM2 parts do not match the checksum"
      else
        gguf="$W/smollm2.gguf"
      fi
    else
      echo "!! part 1 is missing (the machine was not warm): the SmolLM2 GPU tests will skip"
    fi
    if [ ! -f "$W/status/pip.rc" ] && [ ! -f "$W/status/cpp.rc" ] && ! pgrep -f device_run.sh >/dev/null; then
      echo "!! no background jobs (fresh machine): running them now"
      bash "$0" start ""
    fi
    for j in pip cpp; do
      for _ in $(seq 480); do [ -f "$W/status/$j.rc" ] && break; sleep 1; done
      echo "$j: exit $(cat "$W/status/$j.rc" 2>/dev/null || echo 'still running')"
    done
    files=${ELI_2CALL_PYTEST:-"tests/python/test_cuda_parity.py tests/python/test_cuda_engine_equivalence.py"}
    args=()
    for f in $files; do args+=("$ROOT/$f"); done
    (cd /tmp && ELI_TEST_SMOLLM2="$gguf" PYTHONUNBUFFERED=1 timeout 330 python3 -m pytest -q -rs -p no:cacheprovider \
        "${args[@]}" 2>&1) > "$W/logs/pytest.txt"
    echo "pytest: exit $? ($(tail -1 "$W/logs/pytest.txt"))"
    grep -E "^(FAILED|ERROR)|^E  " "$W/logs/pytest.txt" | head -40
    grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED  \]" "$W/logs/cpp/tests.log" 2>/dev/null | head -40
    tar czf "$OUT/logs.tgz" -C "$W" logs
    ;;
  *)
    echo "usage: $0 start PART | finish PART" >&2
    exit 2
    ;;
esac
