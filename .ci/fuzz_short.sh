#!/usr/bin/env bash
# .ci/fuzz_short.sh: CI step for the parser fuzzers (tests/fuzz, docs/fuzzing.md). First the Python
# side: tests/fuzz/fuzz_text.py fuzzes the chat-template renderer and the tokenizer loaders for
# ELI_FUZZ_TEXT_SECONDS (default 45; hypothesis, installed when missing; eli, tokenizers and jinja2
# come from the package install of tests/run.sh). Then installs clang and the libFuzzer/sanitizer
# runtimes when missing, builds the C++ harnesses in build/fuzz and runs tests/fuzz/run_short.sh
# (~20 s per harness, ~2 minutes in all). Exits non-zero on any finding; crashing inputs of the C++
# harnesses are left in build/fuzz/crashes-short/, the Python findings are printed (hypothesis shows
# the falsifying example).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
"$PY" -c "import hypothesis" 2>/dev/null || "$PY" -m pip install --quiet "hypothesis>=6.0"
RUST_BACKTRACE=0 "$PY" tests/fuzz/fuzz_text.py --seconds "${ELI_FUZZ_TEXT_SECONDS:-45}"

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
