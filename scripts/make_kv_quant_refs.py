#!/usr/bin/env python3
"""scripts/make_kv_quant_refs.py: the independent oracle of the fp8 e4m3 conversions that the
quantized KV cache uses (kernels/ref/kv_quant.h), made with torch's float8_e4m3fn (OCP e4m3,
round to nearest even). Writes tests/data/kv_quant/e4m3_cases.txt, one case a line:
    <f32 bits hex> <e4m3 code hex>
first the 254 finite codes decoded (value -> code, so the C++ test checks both directions), then
random values over the whole range, exact midpoints between neighbouring codes (ties) and values
just beside them. Run in the reference environment: source /work/wt/ref_env.sh (torch is never a
dependency of eli). Deterministic (fixed seed)."""
import os
import struct

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "kv_quant", "e4m3_cases.txt")


def bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", float(np.float32(x))))[0]


def main() -> None:
    rng = np.random.default_rng(1234)
    codes = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).to(torch.float32).numpy()
    finite = [(float(v), c) for c, v in enumerate(codes) if np.isfinite(v)]
    xs = [v for v, _ in finite]
    pos = sorted({v for v in xs if v >= 0})
    for a, b in zip(pos, pos[1:]):
        mid = np.float32((a + b) / 2)
        xs += [mid, -mid, np.nextafter(mid, np.float32(0)), np.nextafter(mid, np.float32(1e9))]
    mags = np.exp2(rng.uniform(-14, np.log2(448.0), 3000)).astype(np.float32)
    xs += list(mags * rng.choice([-1, 1], size=mags.size))
    x = torch.tensor(np.array(xs, dtype=np.float32))
    x = x[x.abs() <= 448]
    q = x.to(torch.float8_e4m3fn).view(torch.uint8).numpy()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        for v, c in zip(x.numpy(), q):
            f.write(f"{bits(v):08x} {int(c):02x}\n")
    print(f"wrote {len(q)} cases to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
