#!/usr/bin/env bash
# .ci/fuzz_short.sh: CI step for the parser fuzzers (tests/fuzz, docs/fuzzing.md). Installs clang
# and the libFuzzer/sanitizer runtimes when missing, builds the harnesses in build/fuzz and runs
# tests/fuzz/run_short.sh (~20 s per harness, ~2 minutes in all). Exits non-zero on any finding;
# crashing inputs are left in build/fuzz/crashes-short/.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzzer_runtime_ok() {
  command -v clang++ >/dev/null 2>&1 || return 1
  echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' \
    > /tmp/eli_fuzz_probe.cc
  clang++ -fsanitize=fuzzer,address,undefined /tmp/eli_fuzz_probe.cc -o /tmp/eli_fuzz_probe >/dev/null 2>&1
}

if ! fuzzer_runtime_ok; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian 12 ships clang 14; libclang-rt-14-dev holds libFuzzer and the sanitizer runtimes.
  apt-get install -y -qq clang libclang-rt-14-dev >/dev/null || apt-get install -y -qq clang >/dev/null
  fuzzer_runtime_ok || { echo "fuzz_short.sh: clang++ cannot link -fsanitize=fuzzer" >&2; exit 2; }
fi
clang++ --version | head -1

bash tests/fuzz/build.sh -j "${ELI_FUZZ_JOBS:-2}"
bash tests/fuzz/run_short.sh
