#!/usr/bin/env bash
# tests/source_stamp.sh [PYTHON] [EXTRAS]: prints a hash of what an installed eli was built from:
# the content of every tracked or untracked-but-not-ignored file under the paths that go into the
# package (sources, headers, build files, the Python package), the build options that change the
# module (ELI_CUDA, ELI_CUDA_ARCHS, the Python version) and the extras asked for. tests/run.sh
# compares it with the installed eli/_build_info.json to skip a reinstall. Prints nothing and fails
# outside a git checkout (an sdist: always reinstall).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
EXTRAS=${2:-}
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || exit 1
PATHS=(CMakeLists.txt pyproject.toml cmake include runtime kernels python)
{
  files=$(git ls-files -z -co --exclude-standard -- "${PATHS[@]}" |
    while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\n' "$f"; done | LC_ALL=C sort)
  paste <(printf '%s\n' "$files") <(printf '%s\n' "$files" | git hash-object --stdin-paths)
  echo "ELI_CUDA=${ELI_CUDA:-AUTO} ELI_CUDA_ARCHS=${ELI_CUDA_ARCHS:-} extras=$EXTRAS"
  "$PY" -c 'import sys; print(sys.version)'
} | sha256sum | cut -c1-32
