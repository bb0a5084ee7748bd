#!/usr/bin/env bash
# tests/install/check_cuda_detect.sh: the CUDA decision of the build (cmake/cuda_detect.cmake) on
# this machine, with stand-in nvidia-smi programs for the GPU cases: configure only (seconds).
#   no GPU visible, ELI_CUDA=AUTO      -> CUDA OFF, even with nvcc installed
#   one H100 visible (9.0), AUTO       -> CUDA ON for sm_90 when nvcc is found (else OFF, saying so)
#   an A100 and an H100, AUTO          -> sm_80;90
#   ELI_CUDA=ON, no GPU                -> ON for 80;86;87;89;90 (or a configure error without nvcc)
#   ELI_CUDA=ON ELI_CUDA_ARCHS=89      -> sm_89
#   ELI_CUDA=maybe                     -> a configure error
# Prints "N passed, M failed" and exits non-zero on a failure.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
W="$ROOT/build/cuda-detect-check"
rm -rf "$W"
mkdir -p "$W/bin-none" "$W/bin-h100" "$W/bin-two"
fake_smi() {  # folder, compute capabilities...
  local dir=$1; shift
  {
    echo '#!/bin/sh'
    echo 'case "$1" in'
    printf '  -L) '; local i=0; for c in "$@"; do printf 'echo "GPU %d: stand-in (UUID: GPU-%d)"; ' $i $i; i=$((i + 1)); done; echo ';;'
    printf '  *) '; for c in "$@"; do printf 'echo "%s"; ' "$c"; done; echo ';;'
    echo 'esac'
  } >"$dir/nvidia-smi"
  chmod +x "$dir/nvidia-smi"
}
fake_smi "$W/bin-h100" 9.0
fake_smi "$W/bin-two" 8.0 9.0
HAVE_NVCC=0
command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ] && HAVE_NVCC=1
GPU_SYS=0
{ command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "GPU "; } && GPU_SYS=1
ls /proc/driver/nvidia/gpus/* >/dev/null 2>&1 && GPU_SYS=1

# This PATH without the folders that hold a real nvidia-smi, plus the toolkit's bin.
BASE_PATH=$(echo "$PATH" | tr ':' '\n' | while read -r d; do [ -n "$d" ] && [ ! -x "$d/nvidia-smi" ] && echo "$d"; done |
  paste -sd: -):/usr/local/cuda/bin
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
pass=0 fail=0
check() {  # name, PATH prefix, expected regex, cmake args...
  local name=$1 pre=$2 want=$3; shift 3
  local dir="$W/b-$name" out
  out=$(PATH="$pre:$BASE_PATH" cmake -S "$ROOT" -B "$dir" "${GEN[@]}" "$@" 2>&1)
  if echo "$out" | grep -Eq "$want"; then
    pass=$((pass + 1)); echo "ok   $name: $(echo "$out" | grep -Eo 'eli: CUDA backend.*|ELI_CUDA=maybe.*' | head -1)"
  else
    fail=$((fail + 1)); echo "FAIL $name: wanted /$want/"; echo "$out" | tail -5
  fi
}
if [ "$GPU_SYS" = 0 ]; then
  check no-gpu "$W/bin-none" "CUDA backend OFF \(ELI_CUDA=AUTO and no GPU is visible" -DELI_CUDA=AUTO
fi
if [ "$HAVE_NVCC" = 1 ]; then
  check h100 "$W/bin-h100" "CUDA backend ON for sm_90 \(ELI_CUDA=AUTO, architectures of the visible GPUs\)" -DELI_CUDA=AUTO
  check two-gpus "$W/bin-two" "CUDA backend ON for sm_80;90 " -DELI_CUDA=AUTO
  [ "$GPU_SYS" = 0 ] && check on-no-gpu "$W/bin-none" "CUDA backend ON for sm_80;86;87;89;90 " -DELI_CUDA=ON
  check on-archs "$W/bin-none" "CUDA backend ON for sm_89 \(ELI_CUDA=ON, architectures from ELI_CUDA_ARCHS\)" \
    -DELI_CUDA=ON -DELI_CUDA_ARCHS=89
else
  check on-no-nvcc "$W/bin-none" "ELI_CUDA=ON but no CUDA compiler" -DELI_CUDA=ON
fi
check bad-value "$W/bin-none" "ELI_CUDA=maybe: expected AUTO, ON or OFF" -DELI_CUDA=maybe
echo "cuda detect: $pass passed, $fail failed"
[ "$fail" = 0 ]
