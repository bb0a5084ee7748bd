"""eli/cli_quantize.py: the `eli quantize` subcommand (argument parsing and the summary it prints);
the work is eli.quantize (python/eli/quantize/)."""
from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Quantize MODEL with eli (no torch) and write the result to OUT.

--format hf (default): MODEL is a float32 / float16 / bfloat16 Hugging Face checkpoint; OUT is a
Hugging Face directory with a standard quantization_config that eli (and vLLM-style loaders) read:
  rtn    round to nearest, 4 or 8 bits, per group    -> GPTQ layout
  gptq   GPTQ error-compensating rounding (--act-order) -> GPTQ layout
  awq    AWQ activation-aware channel scales, 4 bits -> AWQ GEMM layout (scales folded into the norms / v / up)
  fp8    FP8 e4m3 weights per channel, dynamic FP8 activations -> compressed-tensors W8A8
  int8   int8 weights per channel, dynamic int8 activations     -> compressed-tensors W8A8
gptq and awq calibrate on a CPU forward of --calib (a text file; default: a built-in English
paragraph). Embeddings, lm_head and norms stay as stored.
--format gguf: MODEL is a .gguf file, requantized to --type (q8_0, q4_0, q4_k, q5_k, q6_k, or the
llama.cpp mixes q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_m, q5_k_m, iq4_nl, iq4_xs). An importance matrix
(each input column's mean x^2) weights the quantization error, from either source:
  --imatrix FILE   read a llama.cpp imatrix file (llama-imatrix's GGUF output or its legacy .dat)
  --imatrix        (no value) or --calib FILE: compute one with a CPU forward of the calibration
                   text (default: a built-in paragraph)
Put MODEL before a bare --imatrix (or end it with --), else MODEL is read as the imatrix FILE."""

EPILOG = """\
examples:
  eli quantize ./SmolLM2-135M-Instruct -o ./smollm2-gptq4 --method gptq --bits 4 --group-size 128
  eli quantize ./model -o ./model-awq --method awq --calib my_text.txt
  eli quantize ./model -o ./model-fp8 --method fp8
  eli quantize ./model.gguf -o ./model-q4k.gguf --format gguf --type Q4_K
  eli quantize ./model.gguf -o ./model-q3km.gguf --format gguf --type q3_k_m --imatrix --calib my_text.txt
  eli quantize ./model.gguf -o ./model-iq4xs.gguf --format gguf --type iq4_xs --imatrix imatrix.gguf"""


def add_parser(sub, formatter) -> None:
    q = sub.add_parser("quantize", formatter_class=formatter, help="quantize a model (RTN, GPTQ, AWQ, FP8, INT8; "
                       "HF or GGUF output)", description=DESCRIPTION, epilog=EPILOG)
    q.add_argument("model", metavar="MODEL", help="Hugging Face directory, .gguf file or a name eli resolves")
    q.add_argument("-o", "--out", required=True, metavar="OUT", help="output directory (hf) or file (gguf); "
                   "must not exist")
    q.add_argument("--method", default="rtn", choices=["rtn", "awq", "gptq", "fp8", "int8"],
                   help="quantization method (--format hf)")
    q.add_argument("--bits", type=int, default=None, choices=[4, 8],
                   help="weight bits (default: 4; 8 for fp8 / int8)")
    q.add_argument("--group-size", type=int, default=128, metavar="G",
                   help="inputs per scale (rtn / gptq / awq); -1: one scale per output channel")
    q.add_argument("--calib", default=None, metavar="FILE", help="calibration text file (gptq / awq; gguf: "
                   "the imatrix text, implies --imatrix)")
    q.add_argument("--act-order", action="store_true", help="gptq: quantize columns by decreasing activation "
                   "energy (desc_act)")
    q.add_argument("--asym", action="store_true", help="rtn / gptq: asymmetric grid with zero points "
                   "(default symmetric)")
    q.add_argument("--format", default="hf", choices=["hf", "gguf"], help="output format")
    q.add_argument("--type", default="Q4_K", metavar="T", help="GGUF block type or mix for --format gguf")
    q.add_argument("--imatrix", nargs="?", const=True, default=False, metavar="FILE",
                   help="gguf: weight the quantization error by an importance matrix (mean x^2 per input column): "
                   "FILE = a llama.cpp imatrix file (GGUF or legacy .dat) to read; no value = compute one from a CPU "
                   "forward of --calib (default: a built-in paragraph)")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bars, no summary")


def cmd_quantize(args: argparse.Namespace) -> int:
    from eli.quantize import quantize

    bits = args.bits if args.bits is not None else (8 if args.method in ("fp8", "int8") else 4)
    report = quantize(args.model, args.out, method=args.method, bits=bits, group_size=args.group_size,
                      calib=args.calib, format=args.format, gguf_type=args.type, act_order=args.act_order,
                      sym=not args.asym, imatrix=args.imatrix, progress=not args.quiet)
    if not args.quiet:
        errors = report.get("errors") or {}
        line = f"eli quantize: wrote {report['out']}"
        if "linears" in report:
            line += f" ({report['linears']} matrices, {args.method}, {bits} bits)"
        if errors:
            e = sum(v["error"] for v in errors.values())
            r = sum(v["rtn_error"] for v in errors.values())
            if r > 0:
                line += f"; output error on the calibration text {e / r:.3f} x round-to-nearest's"
        print(line, file=sys.stderr)
    return 0
