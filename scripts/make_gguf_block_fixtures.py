#!/usr/bin/env python3
"""scripts/make_gguf_block_fixtures.py: random GGUF blocks of the 12 block types the CUDA kernels
decode, with gguf-py's numpy dequantization of them as the independent reference
(tests/cpp/test_cuda_gguf_blocks_host.cc checks kernels/cuda/gguf_blocks.cuh against it).

Outputs (deterministic, seed 4242; about 110 KB in all), per type NAME (q4_k, iq4_xs, ...):
  tests/data/gguf_blocks/NAME.bin   raw blocks as stored in a GGUF file (every byte random, the
                                    fp16 scale fields finite: |v| in [2^-10, 2^-5], either sign)
  tests/data/gguf_blocks/NAME.f32   their dequantization by gguf.quants.dequantize, little-endian f32

Usage: python scripts/make_gguf_block_fixtures.py   (needs numpy and gguf)
"""
import pathlib

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "gguf_blocks"

# type: (bytes per block, byte offsets of the fp16 fields)
TYPES = {
    Q.Q8_0: (34, [0]), Q.Q4_0: (18, [0]), Q.Q4_1: (20, [0, 2]), Q.Q5_0: (22, [0]), Q.Q5_1: (24, [0, 2]),
    Q.Q4_K: (144, [0, 2]), Q.Q5_K: (176, [0, 2]), Q.Q6_K: (210, [208]), Q.Q2_K: (84, [80, 82]),
    Q.Q3_K: (110, [108]), Q.IQ4_NL: (18, [0]), Q.IQ4_XS: (136, [0]),
}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(4242)
    for t, (nbytes, fields) in TYPES.items():
        block_elems = gguf.GGML_QUANT_SIZES[t][0]
        assert gguf.GGML_QUANT_SIZES[t][1] == nbytes, t
        n_blocks = 2048 // block_elems  # 2048 weights of every type
        raw = rng.integers(0, 256, size=(n_blocks, nbytes), dtype=np.uint8)
        for off in fields:
            mag = np.exp2(rng.uniform(-10.0, -5.0, size=n_blocks))
            sign = np.where(rng.random(n_blocks) < 0.5, -1.0, 1.0)
            raw[:, off:off + 2] = (mag * sign).astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
        ref = dequantize(raw.reshape(-1), t).astype("<f4").reshape(-1)
        assert ref.size == n_blocks * block_elems and np.isfinite(ref).all(), t
        name = t.name.lower()
        (OUT / f"{name}.bin").write_bytes(raw.tobytes())
        (OUT / f"{name}.f32").write_bytes(ref.tobytes())
        print(f"{name}: {n_blocks} blocks")


if __name__ == "__main__":
    main()
