#!/usr/bin/env bash
# bench/gpu/device_bench.sh: the one-call-at-a-time driver of the GPU benchmark (eli against
# llama.cpp and HF transformers, plus the hardware ceilings) on the lent GPU machine.
#
#   bench/gpu/device_bench.sh prepare        starts the slow set-up in the background and returns:
#       llama_build  llama.cpp (peers/llama.cpp, copied to $WORK) -> llama-bench, llama-batched-bench
#       eli_install  eli (the tree, copied to $WORK/eli-src) -> pip install (CUDA, sm_90), checked
#       weights      random bf16 weights: HF dir + GGUF per shape (make_weights.py), 1B first
#     Each job runs under setsid nohup (it outlives the device call), logs to $WORK/logs/<job>.log
#     and leaves $WORK/status/<job>.rc (its exit status) when done. Idempotent: a job that runs or
#     succeeded is not started again (eli_install is redone when the eli sources changed).
#   bench/gpu/device_bench.sh run [what...]  prepare (idempotent), then bench/gpu/run_all.py: waits
#     for what each step needs, runs the steps (each its own process, with a timeout) until a
#     deadline inside the call's 10 minutes, and writes, cumulatively over the calls made on this
#     machine: $OUT/<date>_<card>_gpu_bench.json, $OUT/<date>_<card>_gpu_bench_logs.tar.gz and the
#     table (printed last). Steps that succeeded in an earlier call are not run again, so
#     `run all` repeated picks up where the last call stopped.
#     what: all (default) | ceilings decode prefill coldstart throughput serving eli-engine
#   bench/gpu/device_bench.sh status         the jobs' state.
# Environment (defaults): ELI_BENCH_WORK=/tmp/eli-bench, ELI_BENCH_SHAPES=1b,8b,
#   ELI_BENCH_TP_SHAPES=8b, ELI_BENCH_SERVE_SHAPES=8b, ELI_BENCH_ENGINES=eli,hf,llama,
#   ELI_BENCH_DEADLINE_S=560 (from this script's start), ELI_BENCH_EST_SCALE=1 (x the steps' time estimates), ELI_BENCH_RERUN=0, ELI_BENCH_COMMIT (the commit, when the device copy
#   has no .git), ELI_BENCH_DEVICE=cuda, ELI_BENCH_JOBS=12 (per build), ELI_BENCH_COLDSTART_CLI=1 (also time
#   `python -m eli generate`), ELI_BENCH_HF_STATIC=1 (also HF sdpa with a static KV cache), and for tests on a CPU box:
#   ELI_BENCH_SKIP_INSTALL=1 (use the `eli` python imports), ELI_BENCH_LLAMA_BIN=<prebuilt bin dir>,
#   ELI_BENCH_SMALL=1 (small counts; see run_all.py).
set -uo pipefail

export ELI_BENCH_T0="${ELI_BENCH_T0:-$(date +%s)}"  # run_all.py's deadline counts from here
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${ELI_BENCH_WORK:-/tmp/eli-bench}"
export ELI_BENCH_WORK="$WORK"
export OUT="${OUT:-$ROOT/device_out}"
JOBS="${ELI_BENCH_JOBS:-12}"  # per build; both run at once on 16 cores (links and configure leave gaps)
mkdir -p "$WORK/logs" "$WORK/status" "$WORK/results" "$WORK/weights" "$OUT"
export PATH="/usr/local/cuda/bin:$PATH"
export PYTHONUNBUFFERED=1
# Keep NVLink multicast off on multi-GPU kinds (KINDS.md); harmless on one GPU.
export NCCL_NVLS_ENABLE="${NCCL_NVLS_ENABLE:-0}"

say() { echo "[$(date +%H:%M:%S)] $*"; }

job_state() {  # ok | failed | running | none
  local name="$1" st="$WORK/status"
  if [ -f "$st/$name.rc" ]; then
    [ "$(cat "$st/$name.rc")" = "0" ] && echo ok || echo failed
  elif [ -f "$st/$name.pid" ] && kill -0 "$(cat "$st/$name.pid")" 2>/dev/null; then
    echo running
  else
    echo none
  fi
}

start_job() {  # name, command string (bash)
  local name="$1" cmd="$2" state
  state="$(job_state "$name")"
  if [ "$state" = ok ] || [ "$state" = running ]; then
    say "job $name: $state"
    return 0
  fi
  rm -f "$WORK/status/$name.rc" "$WORK/status/$name.pid"
  # The job writes its own pid (setsid may fork, so $! need not be the job), runs, leaves its rc.
  setsid nohup bash -c "echo \$\$ > '$WORK/status/$name.pid'; set -o pipefail; { $cmd ; } ; echo \$? > '$WORK/status/$name.rc'" \
    >"$WORK/logs/$name.log" 2>&1 </dev/null &
  local i
  for i in $(seq 50); do [ -s "$WORK/status/$name.pid" ] && break; sleep 0.1; done
  say "job $name: started (pid $(cat "$WORK/status/$name.pid" 2>/dev/null || echo '?'), log $WORK/logs/$name.log)"
}

all_shapes() {
  echo "${ELI_BENCH_SHAPES:-1b,8b},${ELI_BENCH_TP_SHAPES:-8b},${ELI_BENCH_SERVE_SHAPES:-8b}" | tr ',' '\n' \
    | awk 'NF && !seen[$0]++'   # in the order given: 1b (small, ready first) before 8b
}

eli_tree_hash() { (cd "$ROOT/bench/gpu" && python3 -c "import common; print(common.tree_hash())"); }

prepare() {
  say "prepare: ROOT=$ROOT WORK=$WORK"
  { nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader 2>&1 || true
    df -h "$WORK" 2>&1 | tail -1
    python3 --version 2>&1; } | sed 's/^/   /'
  local avail_gb
  avail_gb="$(df -Pk "$WORK" | awk 'NR==2 {print int($4/1024/1024)}')"
  if [ "${avail_gb:-0}" -lt 45 ]; then
    say "!! only ${avail_gb} GB free under $WORK; the 1B + 8B weights need ~37 GB (both formats)"
  fi

  # llama.cpp: from the carried peers/llama.cpp (scripts/fetch_llama_cpp.sh), copied so that a later
  # call's re-sync of the tree never touches a running build.
  if [ -n "${ELI_BENCH_LLAMA_BIN:-}" ]; then
    say "job llama_build: skipped (ELI_BENCH_LLAMA_BIN=$ELI_BENCH_LLAMA_BIN)"
  elif [ ! -f "$ROOT/peers/llama.cpp/CMakeLists.txt" ] && [ ! -f "$WORK/llama.cpp-src/CMakeLists.txt" ]; then
    say "!! peers/llama.cpp is missing: carry it (run scripts/fetch_llama_cpp.sh first); llama.cpp steps will be skipped"
    echo 1 >"$WORK/status/llama_build.rc"
  else
    if [ "$(job_state llama_build)" = none ] || [ "$(job_state llama_build)" = failed ]; then
      rm -rf "$WORK/llama.cpp-src" && cp -a "$ROOT/peers/llama.cpp" "$WORK/llama.cpp-src"
    fi
    local gen=""
    command -v ninja >/dev/null && gen="-G Ninja"
    start_job llama_build "cmake -S '$WORK/llama.cpp-src' -B '$WORK/llama-build' $gen -DCMAKE_BUILD_TYPE=Release \
      -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF \
      -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_WEBUI=OFF \
      && cmake --build '$WORK/llama-build' --target llama-bench llama-batched-bench -j $JOBS \
      && ls -la '$WORK/llama-build/bin/llama-bench' '$WORK/llama-build/bin/llama-batched-bench'"
  fi

  # Weights: gguf-py from the same llama.cpp tree.
  local gguf_py="$WORK/llama.cpp-src/gguf-py"
  [ -d "$gguf_py" ] || gguf_py="$ROOT/peers/llama.cpp/gguf-py"
  local shape_args=""
  for s in $(all_shapes); do shape_args="$shape_args --shape $s"; done
  if [ "$(job_state weights)" = failed ]; then rm -f "$WORK/status/weights.rc"; fi
  mkdir -p "$WORK/bin"
  cp "$ROOT/bench/gpu/make_weights.py" "$ROOT/bench/gpu/common.py" "$WORK/bin/"
  start_job weights "python3 '$WORK/bin/make_weights.py' $shape_args --out '$WORK/weights' \
      --status-dir '$WORK/status' --gguf-py '$gguf_py'"

  # eli: installed from a copy of the tree (redone when the sources changed).
  if [ "${ELI_BENCH_SKIP_INSTALL:-0}" = 1 ]; then
    say "job eli_install: skipped (ELI_BENCH_SKIP_INSTALL=1)"
    echo 0 >"$WORK/status/eli_install.rc"
  else
    local h
    h="$(eli_tree_hash)"
    if [ "$(job_state eli_install)" = ok ] && [ "$(cat "$WORK/status/eli_install.tree" 2>/dev/null)" != "$h" ]; then
      say "eli sources changed since the last install: reinstalling"
      rm -f "$WORK/status/eli_install.rc"
    fi
    if [ "$(job_state eli_install)" != running ] && [ "$(job_state eli_install)" != ok ]; then
      rm -rf "$WORK/eli-src" && mkdir -p "$WORK/eli-src"
      tar -C "$ROOT" --exclude=./peers --exclude=./.whl --exclude=./build --exclude=./.git \
          --exclude=./device_out --exclude=./tests/data/large --exclude=./.models --exclude=./.hypothesis \
          --exclude=./.pytest_cache --exclude=./.gl -cf - . | tar -C "$WORK/eli-src" -xf -
      echo "$h" >"$WORK/status/eli_install.tree"
    fi
    start_job eli_install "cd '$WORK/eli-src' && ELI_CUDA=ON ELI_CUDA_ARCHS=90 CMAKE_BUILD_PARALLEL_LEVEL=$JOBS \
      python3 -m pip install --no-build-isolation --no-deps -v . \
      && cd /tmp && python3 -c 'import eli, eli._eli as e; print(\"eli\", eli.__file__, \"cuda_compiled\", e.cuda_compiled(), \"devices\", e.cuda_device_count()); assert e.cuda_compiled()'"
  fi
}

status() {
  for j in llama_build weights eli_install; do
    printf '   %-12s %s\n' "$j" "$(job_state "$j")"
  done
  ls "$WORK/status" 2>/dev/null | grep -E '^weights_' | sed 's/^/   /'
}

cmd="${1:-run}"
shift || true
case "$cmd" in
  prepare)
    prepare
    status
    ;;
  status)
    status
    ;;
  run)
    prepare
    status
    python3 "$ROOT/bench/gpu/run_all.py" "$@"
    exit $?
    ;;
  *)
    echo "usage: $0 prepare | run [what...] | status" >&2
    exit 2
    ;;
esac
