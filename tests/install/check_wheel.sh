#!/usr/bin/env bash
# tests/install/check_wheel.sh WHEEL [--hide-cuda]: installs a built wheel into a fresh venv (no
# system site-packages; dependencies from PyPI) and runs tests/install/wheel_smoke.py from outside
# the repository. For any wheel it also checks that the compiled module needs no CUDA library
# (readelf NEEDED) and leaves no cuBLAS/CUDA symbol undefined (nm).
# --hide-cuda: runs the smoke test again in a private mount namespace where every CUDA toolkit
# library is hidden (each /usr/local/cuda* folder and each libcudart/libcublas*/libnccl/libnvrtc
# file of the loader cache covered by an empty bind mount) with LD_LIBRARY_PATH empty, after
# checking there that the toolkit's libcudart and libcublasLt no longer load: that is a machine
# without the toolkit. Needs root and unshare(1); where that fails it says so and exits non-zero.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WHEEL=$(readlink -f "$1")
HIDE=${2:-}
PY=${PYTHON:-python3}
W="$ROOT/build/wheel-check/$(basename "$WHEEL" .whl)"
MODEL="$ROOT/tests/data/models/llama_base"
rm -rf "$W"
mkdir -p "$W"
echo "== $(basename "$WHEEL") ($(du -h "$WHEEL" | cut -f1)): fresh venv in $W"
"$PY" -m venv "$W/venv"
"$W/venv/bin/pip" install --quiet "$WHEEL"
cd "$W"  # away from the repository's python/ folder

mod=$(ls "$W"/venv/lib/python*/site-packages/eli/_eli*.so)
if readelf -d "$mod" | grep NEEDED | grep -Ei 'cuda|cublas|nccl|nvrtc'; then
  echo "check_wheel: the module needs a CUDA library at load time" >&2; exit 1
fi
if nm -D --undefined-only "$mod" | grep -Ei ' (cublas|cuda|nccl)'; then
  echo "check_wheel: undefined CUDA symbols in the module" >&2; exit 1
fi
echo "module: NEEDED $(readelf -d "$mod" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')"

LD_LIBRARY_PATH= "$W/venv/bin/python" "$ROOT/tests/install/wheel_smoke.py" "$MODEL"

if [ "$HIDE" = --hide-cuda ]; then
  echo "== the same with the CUDA toolkit hidden"
  mkdir -p "$W/empty"
  unshare -m --propagation private env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="${HOME:-/root}" W="$W" ROOT="$ROOT" MODEL="$MODEL" \
    bash -euc '
    for d in /usr/local/cuda*; do
      if [ -d "$d" ] && [ ! -L "$d" ]; then mount --bind "$W/empty" "$d"; fi
    done
    for f in $(ldconfig -p | sed -n "s/.*lib\(cudart\|cublas\|cublasLt\|nccl\|nvrtc\)\.so.* => //p"); do
      real=$(readlink -f "$f" || true)
      if [ -f "$real" ]; then mount --bind /dev/null "$real"; fi
    done
    for lib in libcudart.so.13 libcublasLt.so.13 libcublasLt.so.12; do
      if "$W/venv/bin/python" -c "import ctypes, sys; ctypes.CDLL(sys.argv[1])" "$lib" 2>/dev/null; then
        echo "check_wheel: $lib still loads: the toolkit is not hidden" >&2; exit 1
      fi
    done
    echo "toolkit hidden: libcudart and libcublasLt do not load"
    LD_LIBRARY_PATH= "$W/venv/bin/python" "$ROOT/tests/install/wheel_smoke.py" "$MODEL"
  ' || { echo "check_wheel: the hidden-toolkit run failed (see above)" >&2; exit 1; }
fi
echo "check_wheel: ok"
