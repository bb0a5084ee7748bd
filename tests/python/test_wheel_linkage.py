# tests/python/test_wheel_linkage.py: the compiled module links no CUDA library at load time
# (issue 19: a CUDA wheel must import on a machine without the toolkit). cuBLASLt is loaded at run
# time (runtime/device/cuda_library_loader.h) and the CUDA runtime is static, so readelf shows no
# CUDA library as NEEDED and no cuBLAS/CUDA symbol is left undefined; importing eli and running
# on the CPU opens no CUDA library. CI installs eli built with CUDA (ELI_CUDA=ON), where these
# checks matter; tests/install/check_wheel.sh repeats them on an installed wheel with the toolkit
# hidden. The missing-library error needs a GPU (it is raised when a CUDA device is created).
import os
import re
import shutil
import subprocess
import sys

import pytest

import eli
from eli import _eli

from testdata import DATA_DIR

CUDA_LIB = re.compile(r"lib(cuda|cudart|cublas|cublasLt|nccl|nvrtc|nvJitLink|cusparse|cufft|curand)\b")


def module_path():
    return _eli.__file__


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs binutils (readelf)")
def test_no_cuda_library_is_needed():
    out = subprocess.run(["readelf", "-d", module_path()], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
    assert needed, out  # readelf did parse the module
    assert not [n for n in needed if CUDA_LIB.search(n)], (_eli.cuda_compiled(), needed)


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs binutils (nm)")
def test_no_cuda_symbol_is_left_undefined():
    out = subprocess.run(["nm", "-D", "--undefined-only", module_path()], capture_output=True, text=True,
                         check=True).stdout
    bad = [line for line in out.splitlines() if re.search(r"\b(cublas|cuda|nccl)\w*", line)]
    assert not bad, (_eli.cuda_compiled(), bad)


def test_import_and_cpu_use_open_no_cuda_library():
    # (libcuda, the driver, may be opened by the static runtime to count devices: it is no toolkit
    # library, and a machine with a GPU has it.)
    code = (
        "import eli; llm = eli.LLM(%r, device='cpu', dtype='float32', n_threads=1);"
        "llm.generate([[5, 6, 7]], eli.SamplingParams(max_tokens=2, temperature=0.0));"
        "maps = open('/proc/self/maps').read(); import re;"
        "print('CUDA-LIBS:', sorted(set(re.findall(r'/[^ ]*lib(?:cudart|cublas\\w*|nccl|nvrtc)\\.so[.0-9]*', maps))))"
        % str(DATA_DIR / "models" / "llama_base")
    )
    env = dict(os.environ, LD_LIBRARY_PATH="")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "CUDA-LIBS: []" in r.stdout, (_eli.cuda_compiled(), r.stdout)


@pytest.mark.gpu
def test_missing_cublaslt_is_a_clear_error():
    code = "import eli; eli.LLM(%r, device='cuda', dtype='bfloat16')" % str(DATA_DIR / "models" / "llama_base")
    env = dict(os.environ, ELI_CUBLASLT_PATH="/nonexistent/libcublasLt.so.13")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "cuBLASLt (libcublasLt.so." in r.stderr and "pip install nvidia-cublas" in r.stderr, r.stderr
    assert "ELI_CUBLASLT_PATH=/nonexistent" in r.stderr, r.stderr
