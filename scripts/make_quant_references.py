#!/usr/bin/env python3
"""scripts/make_quant_references.py: dequantization references for the 12 GGUF block types.

The oracle is gguf-py (the `gguf` PyPI package: llama.cpp's block layouts implemented
independently in numpy). For each type T (q4_0 ... iq4_xs) it writes, under tests/data/quant/:
  T.blocks   raw block bytes: 1024 elements of random blocks (random bytes, every fp16 scale field
             replaced by a finite fp16: a few edge values -- +-0, the smallest subnormal, 65504 --
             then uniform in [-2, 2]), followed by 512 elements that gguf.quants.quantize made from
             normal floats where gguf-py can quantize T (nothing more where it cannot)
  T.f32      gguf.quants.dequantize of T.blocks, little-endian f32, one value per element
Deterministic (seed 20260514); about 100 KB in all. Usage: python scripts/make_quant_references.py
"""
import pathlib

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "quant"

# type -> byte offsets of its fp16 fields inside one block
FP16_FIELDS = {
    Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q8_0: [0],
    Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208],
    Q.IQ4_NL: [0], Q.IQ4_XS: [0],
}
EDGE_HALVES = np.array([0.0, -0.0, 2.0 ** -24, 65504.0], dtype=np.float16)
RANDOM_ELEMS, QUANTIZED_ELEMS = 1024, 512


def random_blocks(rng, qtype, n_elems):
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = n_elems // block_elems
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for i, off in enumerate(FP16_FIELDS[qtype]):
        scale = rng.uniform(-2.0, 2.0, size=n_blocks).astype(np.float16)
        edges = np.roll(EDGE_HALVES, i)[:n_blocks]
        scale[:len(edges)] = edges
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    return raw


def quantized_blocks(rng, qtype):
    """Blocks gguf-py's own quantizer makes from normal floats, or None where it has none."""
    x = rng.standard_normal(QUANTIZED_ELEMS).astype(np.float32).reshape(1, -1)
    try:
        return gguf.quants.quantize(x, qtype).reshape(-1, gguf.GGML_QUANT_SIZES[qtype][1])
    except NotImplementedError:
        return None


def main():
    rng = np.random.default_rng(20260514)
    OUT.mkdir(parents=True, exist_ok=True)
    total = 0
    for qtype in FP16_FIELDS:
        blocks = random_blocks(rng, qtype, RANDOM_ELEMS)
        quantized = quantized_blocks(rng, qtype)
        if quantized is not None:
            blocks = np.concatenate([blocks, quantized])
        ref = gguf.quants.dequantize(blocks.reshape(-1), qtype).astype("<f4")
        assert np.all(np.isfinite(ref)), qtype.name
        name = qtype.name.lower()
        (OUT / f"{name}.blocks").write_bytes(blocks.tobytes())
        (OUT / f"{name}.f32").write_bytes(ref.tobytes())
        total += blocks.nbytes + ref.nbytes
        print(f"{name}: {ref.size} elements ({'with' if quantized is not None else 'no'} gguf-py quantize)")
    print(f"wrote {total} bytes under {OUT}")


if __name__ == "__main__":
    main()
