#!/usr/bin/env bash
# tests/cpu_isa_passes.sh: runs the CPU test suites again with the kernel registry capped below
# what this CPU has (ELI_CPU_ISA, kernels/cpu/cpu_features.h), so that every CPU kernel variant is
# tested on one machine: on an AVX-512 CPU an avx2 pass and a generic pass, on an AVX2 CPU a
# generic pass (the default run of tests/run.sh already covered the best variant).
# Each pass runs the whole C++ suite (ctest: the kernel parity tests compare every kernel the
# registry may pick with the reference, and CpuIsaCap.RegistryPicksTheCappedVariant checks that it
# picks the capped one) and the Python tests that run whole models through the CPU kernels with
# exact or toleranced comparisons, on the tiny checkpoints of tests/data/models (every
# architecture, f32 / bf16 / f16 weights: the same kernels SmolLM2 uses): parity with Hugging Face
# references, batch / chunking / preemption / prefix-cache equivalence. The SmolLM2 tests are
# left out: the same kernels at 135M parameters cost ~8 CPU-minutes per pass under the generic
# cap, against ~2 for this subset (measured on a 2-core AMD EPYC, 2026-12).
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

PY_TESTS=(tests/python/test_model_parity.py tests/python/test_batch_equivalence.py
          tests/python/test_engine.py tests/python/test_prefix_cache.py)
for isa in $PASSES; do
  echo "== ELI_CPU_ISA=$isa: C++ tests"
  ELI_CPU_ISA=$isa ctest --test-dir build/cpp-tests --output-on-failure -j "$JOBS"
  echo "== ELI_CPU_ISA=$isa: Python tests (${PY_TESTS[*]##*/})"
  ELI_CPU_ISA=$isa "$PY" -m pytest -q "${PY_TESTS[@]}" -k "not smollm2"
done
