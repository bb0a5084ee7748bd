#!/usr/bin/env bash
# tests/install/check_install.sh: the plain-CMake path for C++ users: configure, build and install
# the library (CPU-only), then build a consumer with find_package(eli) and run it on a tiny model.
set -euo pipefail
cd "$(dirname "$0")/../.."
W=build/install-check
rm -rf "$W"
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
cmake -S . -B "$W/build" "${GEN[@]}" -DELI_CUDA=OFF -DCMAKE_INSTALL_PREFIX="$PWD/$W/prefix" >/dev/null
cmake --build "$W/build"
cmake --install "$W/build" >/dev/null
cmake -S tests/install -B "$W/consumer" "${GEN[@]}" -DCMAKE_PREFIX_PATH="$PWD/$W/prefix" >/dev/null
cmake --build "$W/consumer"
out=$("$W/consumer/demo" tests/data/models/llama_base)
echo "consumer generated: $out"
[ "$(echo "$out" | wc -w)" -eq 5 ] || { echo "check_install: expected 5 tokens" >&2; exit 1; }
echo "check_install: ok"
