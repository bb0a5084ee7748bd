"""bench/gguf_requant_quality.py: quality of eli's GGUF requantizer (eli.quantize.gguf_requant) on a
GGUF model (default: SmolLM2-135M-Instruct Q4_1), against the source's own logits, on the CPU.

For each qtype (optionally with an importance matrix from eli's calibration paragraph): file size,
mean KL divergence of the next-token distribution from the source's on the test paragraph
(tests/data/smollm2_reference.json), top-1 agreement, perplexity change on --tokens tokens of an
English text (default: /usr/share/common-licenses/GPL-3, not the calibration text) and the time the
requantization took. Prints a markdown table and writes JSON (--json).

--matrix-errors: instead, per block type (Q2_K, Q3_K, Q4_K; RTN = max-abs scaling, the search,
the search with the imatrix), the errors on the model's K-quantizable matrices (row length a
multiple of 256; SmolLM2: the 30 ffn_down), summed: plain squared error, the imatrix-weighted one,
and the output error sum over rows of (w_hat - w) H (w_hat - w)^T with H the full mean x x^T of the
calibration paragraph (the GPTQ measure), relative to the search without the imatrix.

  PYTHONPATH=python python bench/gguf_requant_quality.py --types q3_k_m,q2_k --imatrix both
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent


def logprobs(llm, ids) -> np.ndarray:
    x = np.asarray(llm.score(ids)).astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def ppl(lp, ids) -> float:
    return float(np.exp(-lp[np.arange(len(ids) - 1), ids[1:]].mean()))


def measure(path, para, text_ids, threads):
    import eli

    llm = eli.LLM(str(path), device="cpu", n_threads=threads, progress=False)
    try:
        return logprobs(llm, para), logprobs(llm, text_ids)
    finally:
        llm.shutdown()


def matrix_errors(args) -> int:
    import gguf
    from eli import _eli, engine_options, hub
    from eli.quantize.calib import DEFAULT_TEXT
    from eli.quantize.gguf_requant import imatrix_names
    from eli.tokenizer import Tokenizer

    src = str(args.model or hub.resolve_model("smollm2"))
    engine = _eli.Engine(engine_options.engine_config(src, device="cpu", dtype="float32", caller="quantize"))
    meta = _eli.inspect_model(src)
    tok = Tokenizer.from_gguf_metadata(meta["gguf_metadata"], n_embedding_rows=engine.info()["spec"]["vocab_size"])
    stats = _eli.calibrate(engine, [tok.encode(DEFAULT_TEXT)[:256]])
    hess = {g: h for name, (_, h, _) in stats.items() for g in imatrix_names(name)}
    del engine
    reader = gguf.GGUFReader(src)
    mats = [t for t in reader.tensors if t.name in hess and int(t.shape[0]) % 256 == 0]
    totals: dict = {}
    for t in mats:
        x = _eli.gguf_dequantize(t.tensor_type.name.lower(), np.ascontiguousarray(np.asarray(t.data).reshape(
            int(np.prod([int(d) for d in t.shape[1:]])), -1).view(np.uint8)), int(t.shape[0]))
        h = np.ascontiguousarray(hess[t.name], dtype=np.float32)
        w = np.ascontiguousarray(np.diagonal(h), dtype=np.float32)
        for qtype in ("q2_k", "q3_k", "q4_k"):
            for how, kw in (("RTN", {"search": False}), ("search", {}), ("search + imatrix", {"imatrix": w})):
                y = _eli.gguf_dequantize(qtype, _eli.gguf_quantize(qtype, x, **kw), x.shape[1])
                e = totals.setdefault((qtype, how), [0.0, 0.0, 0.0])
                e[0] += float(np.sum((y - x) ** 2, dtype=np.float64))
                e[1] += float(np.sum(w * (y - x) ** 2, dtype=np.float64))
                e[2] += float(_eli.quant_output_error(x, y, h))
    print(f"{len(mats)} matrices of {pathlib.Path(src).name} ({', '.join(sorted({t.name.split('.')[2] for t in mats}))}); "
          "errors relative to the search without imatrix")
    print("| type | method | squared error | imatrix-weighted | output error (full H) |")
    print("|---|---|---|---|---|")
    rows = []
    for (qtype, how), e in totals.items():
        base = totals[(qtype, "search")]
        rows.append({"type": qtype, "method": how, "sq": e[0], "weighted": e[1], "output": e[2]})
        print(f"| {qtype.upper()} | {how} | {e[0] / base[0]:.3f} | {e[1] / base[1]:.3f} | {e[2] / base[2]:.3f} |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"source": src, "matrices": len(mats), "rows": rows}, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="source GGUF (default: eli's smollm2)")
    ap.add_argument("--types", default="q8_0,q4_k,q3_k_l,q3_k_m,q3_k_s,q2_k")
    ap.add_argument("--imatrix", default="both", choices=["no", "yes", "both"])
    ap.add_argument("--text", default="/usr/share/common-licenses/GPL-3")
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the rows here")
    ap.add_argument("--matrix-errors", action="store_true", help="per-matrix errors instead (see above)")
    args = ap.parse_args()
    logging.getLogger("eli.quantize").setLevel(logging.ERROR)  # the fallback notes, once per tensor
    if args.matrix_errors:
        return matrix_errors(args)

    import eli
    from eli import hub
    from eli.quantize.calib import DEFAULT_TEXT
    from eli.quantize.gguf_requant import gguf_imatrix, quantize_gguf

    src = pathlib.Path(args.model or hub.resolve_model("smollm2"))
    para = json.loads((ROOT / "tests/data/smollm2_reference.json").read_text())["paragraph"]["ids"]
    llm = eli.LLM(str(src), device="cpu", n_threads=args.threads, progress=False)
    text_ids = llm.tokenizer.encode(pathlib.Path(args.text).read_text())[: args.tokens]
    llm.shutdown()
    src_para, src_text = measure(src, para, text_ids, args.threads)
    src_ppl = ppl(src_text, text_ids)
    t0 = time.perf_counter()
    imat = gguf_imatrix(str(src), DEFAULT_TEXT, progress=False) if args.imatrix != "no" else None
    t_imat = time.perf_counter() - t0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for qtype in args.types.split(","):
            for use in ([False, True] if args.imatrix == "both" else [args.imatrix == "yes"]):
                out = pathlib.Path(tmp) / f"{qtype}{'_imat' if use else ''}.gguf"
                t0 = time.perf_counter()
                quantize_gguf(str(src), str(out), qtype, imatrix=imat if use else None, progress=False)
                dt = time.perf_counter() - t0
                lp_para, lp_text = measure(out, para, text_ids, args.threads)
                kl = float(np.mean(np.sum(np.exp(src_para) * (src_para - lp_para), axis=-1)))
                top1 = float(np.mean(src_para.argmax(-1) == lp_para.argmax(-1)))
                row = {"qtype": qtype, "imatrix": use, "size_mib": out.stat().st_size / 2**20, "kl": kl,
                       "top1": top1, "ppl": ppl(lp_text, text_ids), "ppl_rel": ppl(lp_text, text_ids) / src_ppl - 1,
                       "seconds": dt}
                rows.append(row)
                print(f"{qtype}{' +imatrix' if use else ''}: {row}", file=sys.stderr)
                os.unlink(out)
    print(f"source {src.name}: {src.stat().st_size / 2**20:.1f} MiB, perplexity {src_ppl:.3f} on {len(text_ids)} "
          f"tokens; imatrix {t_imat:.1f} s")
    print("| qtype | imatrix | size | KL (paragraph) | top-1 | perplexity | time |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['qtype']} | {'yes' if r['imatrix'] else 'no'} | {r['size_mib']:.1f} MiB | {r['kl']:.4f} | "
              f"{100 * r['top1']:.0f}% | {100 * r['ppl_rel']:+.1f}% | {r['seconds']:.0f} s |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"source": str(src), "source_ppl": src_ppl,
                                                       "tokens": len(text_ids), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
