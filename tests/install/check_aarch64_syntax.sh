#!/usr/bin/env bash
# tests/install/check_aarch64_syntax.sh: the host-side C++ (runtime, kernels, bindings; with and
# without ELI_WITH_CUDA) parses for aarch64, the Jetson Orin host, so x86-only code (intrinsics,
# the x86 ISA files' symbols) cannot leak past the ELI_X86 guards unnoticed. A clang
# `--target=aarch64-linux-gnu -fsyntax-only` pass, not a build: an x86 machine has no aarch64
# sysroot, so it reads this machine's glibc / libstdc++ headers with a 64-bit wordsize shim (the
# x86 headers pick 32-bit types when __x86_64__ is not defined). Skipped, with a message, where
# clang++ is absent. The x86 ISA files (*_avx2.cc, *_avx512.cc; CMake leaves them out of non-x86
# builds) and the .cu files (nvcc's business) are not parsed.
#   usage: bash tests/install/check_aarch64_syntax.sh [python]   (python: finds nanobind / Python.h)
set -uo pipefail
cd "$(dirname "$0")/../.."
PY="${1:-${PYTHON:-python3}}"
if ! command -v clang++ >/dev/null; then
  echo "aarch64 syntax check: skipped (no clang++)"
  exit 0
fi
SHIM="$(mktemp -d)"
trap 'rm -rf "$SHIM"' EXIT
mkdir -p "$SHIM/bits" "$SHIM/gnu"
printf '#define __WORDSIZE 64\n#define __WORDSIZE_TIME64_COMPAT32 1\n#define __SYSCALL_WORDSIZE 64\n' > "$SHIM/bits/wordsize.h"
: > "$SHIM/gnu/stubs.h"
GCC_VER="$(g++ -dumpversion | cut -d. -f1)"
TRIPLE="$(g++ -dumpmachine)"
FLAGS=(--target=aarch64-linux-gnu -std=c++17 -fsyntax-only -nostdinc++ -isystem "$SHIM"
       -isystem "/usr/include/c++/$GCC_VER" -isystem "/usr/include/$TRIPLE/c++/$GCC_VER" -isystem "/usr/include/$TRIPLE"
       -I include -I . -I third_party)
NB="$("$PY" -c 'import nanobind; print(nanobind.include_dir())' 2>/dev/null)"
PYI="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null)"
CUDA_INC=""
for d in /usr/local/cuda/include "${CUDA_HOME:-/nonexistent}/include"; do [ -f "$d/cuda_runtime.h" ] && CUDA_INC="$d" && break; done

fails=0
n=0
check() {  # file, extra flags...
  local f="$1"
  shift
  local out
  out="$(clang++ "${FLAGS[@]}" "$@" "$f" 2>&1 | grep -E 'error' | head -5)"
  n=$((n + 1))
  if [ -n "$out" ]; then
    echo "== $f $*"
    echo "$out"
    fails=$((fails + 1))
  fi
}
for f in runtime/*/*.cc kernels/*.cc kernels/*/*.cc; do
  case "$f" in */cuda/*|*_avx2.cc|*_avx512.cc) continue ;; esac
  check "$f"
done
if [ -n "$CUDA_INC" ]; then
  for f in runtime/*/*.cc runtime/device/cuda/*.cc kernels/*.cc; do check "$f" -isystem "$CUDA_INC" -DELI_WITH_CUDA=1; done
fi
if [ -n "$NB" ] && [ -n "$PYI" ]; then
  for f in python/src/*.cc; do check "$f" -isystem "$NB" -isystem "$NB/../ext/robin_map/include" -isystem "$PYI"; done
fi
skipped=""
[ -z "$CUDA_INC" ] && skipped+=" (no CUDA headers: the ELI_WITH_CUDA pass skipped)"
{ [ -z "$NB" ] || [ -z "$PYI" ]; } && skipped+=" (no nanobind for $PY: the bindings skipped)"
echo "aarch64 syntax check: $n parses, $fails with errors$skipped"
[ "$fails" -eq 0 ]
