#!/usr/bin/env bash
# tests/cpu_isa_passes.sh: runs the CPU test suites again with the kernel registry capped below
# what this CPU has (ELI_CPU_ISA, kernels/cpu/cpu_features.h), so that every CPU kernel variant is
# tested on one machine: on an AVX-512 CPU an avx2 pass and a generic pass, on an AVX2 CPU a
# generic pass (the default run of tests/run.sh already covered the best variant).
# Each pass runs the whole C++ suite (ctest; the kernel parity tests compare every variant the
# registry may pick with the reference, and CpuIsaCap.RegistryPicksTheCappedVariant checks the
# cap) and the Python tests that run whole models through the CPU kernels on numerics-sensitive
# paths (parity with Hugging Face references, batch / prefix-cache / chunking equivalence), the
# rest of the Python suite exercises no kernel that these miss.
# Needs tests/run.sh first (the installed eli and build/cpp-tests). Environment: PYTHON,
# ELI_TEST_JOBS, ELI_ISA_PASSES (a list, e.g. "avx2"; default: every ISA below the CPU's).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
JOBS=${ELI_TEST_JOBS:-$(nproc)}

best=generic
if grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo &&
   grep -qw avx512dq /proc/cpuinfo; then
  best=avx512
elif grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo; then
  best=avx2
fi
case "$best" in
  avx512) default_passes="avx2 generic" ;;
  avx2) default_passes="generic" ;;
  *) default_passes="" ;;
esac
PASSES=${ELI_ISA_PASSES:-$default_passes}
echo "== CPU ISA passes: this CPU's best is $best; capped passes: ${PASSES:-none}"

PY_TESTS=(tests/python/test_model_parity.py tests/python/test_smollm2_parity.py
          tests/python/test_batch_equivalence.py tests/python/test_prefix_cache.py
          tests/python/test_engine.py)
for isa in $PASSES; do
  echo "== ELI_CPU_ISA=$isa: C++ tests"
  ELI_CPU_ISA=$isa ctest --test-dir build/cpp-tests --output-on-failure -j "$JOBS"
  echo "== ELI_CPU_ISA=$isa: Python tests (${PY_TESTS[*]##*/})"
  ELI_CPU_ISA=$isa "$PY" -m pytest -q "${PY_TESTS[@]}"
done
