#!/usr/bin/env bash
# tests/fuzz/build.sh: builds the libFuzzer harnesses (tests/fuzz/fuzz_*.cc) with clang++
# -fsanitize=fuzzer,address,undefined, compiling the parser sources of runtime/core and
# runtime/model directly (no CMake), and generates the seed corpora from tests/data.
#
# Output (default build/fuzz, or $ELI_FUZZ_BUILD): bin/fuzz_<name>, corpus/<name>/ (seeds,
# regenerated each build; run_long.sh grows its own copy), obj/ (incremental: a source is only
# recompiled when newer than its object). UBSan findings abort (-fno-sanitize-recover).
# Usage: bash tests/fuzz/build.sh [-j N]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${ELI_FUZZ_BUILD:-$ROOT/build/fuzz}"
JOBS=2
if [ "${1:-}" = "-j" ]; then JOBS="$2"; fi
CXX="${CXX_FUZZ:-clang++}"
if ! command -v "$CXX" >/dev/null; then
  echo "build.sh: $CXX not found (apt-get install -y clang libclang-rt-14-dev)" >&2
  exit 2
fi

# Parser sources and what they need at link time.
SOURCES=(
  runtime/core/error.cc runtime/core/dtype.cc runtime/core/json.cc runtime/core/mapped_file.cc
  runtime/model/weight_source.cc runtime/model/model_dir.cc runtime/model/safetensors.cc runtime/model/hf_config.cc
  runtime/model/model_spec_check.cc runtime/model/gguf.cc runtime/model/gguf_spec.cc runtime/model/rope.cc
  runtime/model/quant_config.cc runtime/core/fault_injection.cc
)
HARNESSES=(json safetensors sharded_index hf_config gguf)

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CXXFLAGS="-std=c++17 -O1 -g $SAN -I$ROOT/include -I$ROOT -DELI_FUZZ_DATA_DIR=\"$ROOT/tests/data\""
# A changed shared header or build script invalidates every object (headers of runtime/ are not
# tracked: run with ELI_FUZZ_CLEAN=1, or delete $OUT/obj, after changing one).
if [ "${ELI_FUZZ_CLEAN:-0}" = 1 ] || [ "$ROOT/tests/fuzz/fuzz_common.h" -nt "$OUT/obj/.stamp" ] \
   || [ "$ROOT/tests/fuzz/build.sh" -nt "$OUT/obj/.stamp" ]; then
  rm -rf "$OUT/obj"
fi
mkdir -p "$OUT/obj" "$OUT/bin"

compile() {  # compile SRC OBJ EXTRA_FLAGS
  local src="$1" obj="$2" extra="$3"
  if [ ! -e "$obj" ] || [ "$src" -nt "$obj" ]; then
    echo "  CXX $src"
    # shellcheck disable=SC2086
    "$CXX" $CXXFLAGS $extra -c "$src" -o "$obj"
  fi
}
export -f compile
export CXX CXXFLAGS

jobs_list=()
for s in "${SOURCES[@]}"; do
  jobs_list+=("$ROOT/$s|$OUT/obj/$(echo "$s" | tr / _).o|-fsanitize=fuzzer-no-link")
done
for h in "${HARNESSES[@]}"; do
  jobs_list+=("$ROOT/tests/fuzz/fuzz_$h.cc|$OUT/obj/fuzz_$h.o|-fsanitize=fuzzer-no-link")
done
printf '%s\n' "${jobs_list[@]}" | xargs -P "$JOBS" -I{} bash -c \
  'IFS="|" read -r s o e <<< "{}"; compile "$s" "$o" "$e"'

touch "$OUT/obj/.stamp"
OBJS=()
for s in "${SOURCES[@]}"; do OBJS+=("$OUT/obj/$(echo "$s" | tr / _).o"); done
for h in "${HARNESSES[@]}"; do
  echo "  LINK fuzz_$h"
  # shellcheck disable=SC2086
  "$CXX" $CXXFLAGS -fsanitize=fuzzer "$OUT/obj/fuzz_$h.o" "${OBJS[@]}" -lpthread -o "$OUT/bin/fuzz_$h"
done

python3 "$ROOT/tests/fuzz/make_seeds.py" "$ROOT/tests/data" "$OUT/corpus"
echo "build.sh: harnesses in $OUT/bin, seeds in $OUT/corpus"
