#!/usr/bin/env bash
# bench/gpu/parallel_dry_run.sh: the parallel benchmarks on ONE GPU, to show the scripts and the
# sharded GPU path work before a multi-GPU host runs them for speed (docs/parallelism.md): random
# weights at a real shape (default 1b), then
#   parallel_bench.py  layouts 1x1, 2x1, 1x2, 2x2 with every rank on cuda:0 (--share-gpu)
#   bench_throughput   a small fixed set at tp 1 and at tp 2 on cuda:0,0
# Ranks sharing one GPU are slower than one rank by design: these numbers are not speed claims.
# Output: $OUT/parallel_*.json, $OUT/throughput_tp*.json and the tables on stdout.
#   usage (device): bash bench/gpu/parallel_dry_run.sh [shape]   (PYTHONPATH must find eli)
set -uo pipefail
# Ranks sharing a GPU need eager kernel loading (docs/parallelism.md), set before CUDA starts.
export CUDA_MODULE_LOADING=EAGER
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$ROOT/device_out}"
SHAPE="${1:-1b}"
W=/tmp/eli-bench/weights
mkdir -p "$OUT" "$W"
B="$ROOT/bench/gpu"
case "$SHAPE" in 1b) DIR="$W/llama-3.2-1b" ;; 8b) DIR="$W/llama-3.1-8b" ;; 70b) DIR="$W/llama-3.1-70b" ;; *) DIR="$W/$SHAPE" ;; esac
[ -f "$DIR/.complete.json" ] || python3 "$B/make_weights.py" --shape "$SHAPE" --out "$W" --formats hf > "$OUT/weights.log" 2>&1
python3 "$B/parallel_bench.py" --model "$DIR" --device cuda --layouts 1x1,2x1,1x2,2x2 --share-gpu \
  --batch 8 --prompt-len 256 --gen-len 32 --reps 2 2>&1 | tail -8
cp "$ROOT"/bench/results/*_parallel_cuda.json "$OUT/" 2>/dev/null
python3 "$B/bench_throughput.py" gen --kind fixed --n 32 --prompt-len 256 --output-len 64 --out /tmp/fixed_small.json > /dev/null
for layout in "1 " "2 cuda:0,0"; do
  set -- $layout
  tp=$1; devices=${2:-}
  python3 "$B/bench_throughput.py" eli --model "$DIR" --shape "$SHAPE" --dataset /tmp/fixed_small.json --tp "$tp" \
    ${devices:+--devices "$devices"} --max-num-seqs 32 --out "$OUT/throughput_tp$tp.json" > "$OUT/throughput_tp$tp.log" 2>&1 &&
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); r=[x for x in (d if isinstance(d,list) else d.get('records',[])) if 'output_tok_s' in x.get('metric','')]; print('throughput tp', sys.argv[2], [round(x['value'],1) for x in r])" "$OUT/throughput_tp$tp.json" "$tp" ||
    { echo "throughput tp $tp failed:"; tail -3 "$OUT/throughput_tp$tp.log"; }
done
