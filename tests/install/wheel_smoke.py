# tests/install/wheel_smoke.py MODEL_DIR: the smoke test of an installed wheel (run by
# tests/install/check_wheel.sh in a fresh venv, outside the repository): eli imports from the venv,
# generates a few tokens on the CPU, the CLI starts, and no CUDA toolkit library (runtime, cuBLAS,
# NCCL, NVRTC) was opened. Prints one line per check and "N passed, 0 failed" at the end.
import pathlib
import re
import subprocess
import sys


def main(model):
    import eli
    from eli import _eli

    checks = 0
    where = pathlib.Path(eli.__file__).resolve()
    assert pathlib.Path(sys.prefix).resolve() in where.parents, f"eli imported from {where}, not the venv"
    print(f"eli {getattr(eli, '__version__', '?')} from {where.parent} (built with CUDA: {_eli.cuda_compiled()})")
    checks += 1
    llm = eli.LLM(model, device="cpu", dtype="float32", n_threads=1)
    out = llm.generate(["Hello"], eli.SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))[0]
    assert len(out.token_ids) == 4, out.token_ids
    print(f"generated {out.token_ids} {out.text!r}")
    checks += 1
    cli = pathlib.Path(sys.prefix) / "bin" / "eli"
    r = subprocess.run([str(cli), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "generate" in r.stdout, r.stderr
    print("eli --help: ok")
    checks += 1
    maps = pathlib.Path("/proc/self/maps").read_text()
    libs = sorted(set(re.findall(r"/\S*lib(?:cudart|cublas\w*|nccl|nvrtc)\.so[.0-9]*", maps)))
    assert not libs, f"CUDA toolkit libraries were opened: {libs}"
    print("no CUDA toolkit library opened")
    checks += 1
    print(f"wheel smoke: {checks} passed, 0 failed")


if __name__ == "__main__":
    main(sys.argv[1])
