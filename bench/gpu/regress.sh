#!/usr/bin/env bash
# bench/gpu/regress.sh: the runtime-v2 no-regression run in one device call: the commit before
# runtime v2 (e3adf37, carried as a tarball) and this tree, built side by side on the same card,
# then eli's own benchmarks on random weights for both, alternating old/new per benchmark so drift
# hits both equally: decode (ctx 128 / 4096) and prefill (512 / 2048) for the 1B and 8B shapes
# (bench_eli.py), cold start (bench_coldstart.py, eli only), the 8B offline throughput set
# (bench_throughput.py fixed 256 x 512/256). Results: $OUT/regress_<tag>_<what>.json and a table
# (old, new, new/old) printed last.
#   prepare (here):  git archive e3adf37 > .whl/old.tar   (.whl is git-excluded; carry it)
#   usage (device):  bash bench/gpu/regress.sh [.whl/old.tar] ; env REGRESS_SHAPES="1b 8b",
#                    REGRESS_WHAT="decode prefill coldstart throughput", REGRESS_JOBS (build jobs),
#                    REGRESS_COLD_ROUNDS (cold start as that many alternating old/new rounds, default 1),
#                    REGRESS_NEW_TREE (a tree with its module built, e.g. after bench/device_check.sh: no rebuild)
# Weights: /tmp/eli-bench/weights/<shape> from make_weights.py (written here when missing; kept on
# a warm machine between calls). Steps already done in an earlier call on the same machine are
# skipped (their JSON exists in /tmp/eli-regress), so a second call picks up where the first stopped.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$ROOT/device_out}"
TAR="${1:-$ROOT/.whl/old.tar}"
W=/tmp/eli-bench/weights
R=/tmp/eli-regress
JOBS="${REGRESS_JOBS:-8}"
mkdir -p "$OUT" "$R" "$W"
export PATH="/usr/local/cuda/bin:$PATH" PYTHONUNBUFFERED=1
t0=$(date +%s)
el() { echo "$(( $(date +%s) - t0 ))s"; }

build_tree() {  # src dir, build dir
  local src="$1" b="$2"
  [ -f "$src/python/eli/.regress_built" ] && return 0
  [ "$src" = "$R/new" ] && [ -n "${REGRESS_NEW_TREE:-}" ] && return 0
  cmake -S "$src" -B "$b" -G Ninja -DCMAKE_BUILD_TYPE=Release -DELI_BUILD_PYTHON=ON -DELI_CUDA=ON \
    -DELI_CUDA_ARCHS=90 -DPython_EXECUTABLE="$(command -v python3)" > "$b.configure.log" 2>&1 &&
    cmake --build "$b" --target _eli -j "$JOBS" > "$b.build.log" 2>&1 &&
    cp "$b"/_eli*.so "$src/python/eli/" && touch "$src/python/eli/.regress_built"
}

if [ ! -d "$R/old" ]; then mkdir -p "$R/old" && tar -C "$R/old" -xf "$TAR"; fi
if [ -n "${REGRESS_NEW_TREE:-}" ]; then  # a tree whose python/eli already has its built module (device_check.sh's)
  rm -rf "$R/new" && ln -s "$REGRESS_NEW_TREE" "$R/new"
else
  rm -rf "$R/new" && mkdir -p "$R/new" && tar -C "$ROOT" --exclude=./.whl --exclude=./build --exclude=./.git -cf - . | tar -C "$R/new" -xf -
fi
dir_of() { case "$1" in 1b) echo "$W/llama-3.2-1b" ;; 8b) echo "$W/llama-3.1-8b" ;; *) echo "$W/$1" ;; esac; }
for shape in ${REGRESS_SHAPES:-1b 8b}; do
  [ -f "$(dir_of "$shape")/.complete.json" ] || python3 "$ROOT/bench/gpu/make_weights.py" --shape "$shape" --out "$W" --formats hf \
    > "$R/weights_$shape.log" 2>&1 &
done
build_tree "$R/old" "$R/old_build" & b1=$!
build_tree "$R/new" "$R/new_build" & b2=$!
wait $b1; s1=$?; wait $b2; s2=$?
wait  # the weights
echo "builds: old $s1, new $s2 ($(el))"
[ $s1 -eq 0 ] && [ $s2 -eq 0 ] || { tail -20 "$R"/*_build.build.log; exit 1; }

run() {  # tag what shape -- command...
  local tag="$1" what="$2" shape="$3"; shift 4
  local f="$R/regress_${tag}_${what}_${shape}.json"
  [ -s "$f" ] && grep -q '"value"' "$f" && return 0
  PYTHONPATH="$R/$tag/python" timeout 400 "$@" --out "$f" > "$R/regress_${tag}_${what}_${shape}.log" 2>&1 ||
    echo "!! $tag $what $shape failed: $(tail -2 "$R/regress_${tag}_${what}_${shape}.log" | tr '\n' ' ')"
  cp "$f" "$OUT/" 2>/dev/null
  echo "$tag $what $shape done ($(el))"
}
B="$ROOT/bench/gpu"
for shape in ${REGRESS_SHAPES:-1b 8b}; do
  for what in ${REGRESS_WHAT:-decode prefill coldstart throughput}; do
    if [ "$what" = coldstart ]; then  # rounds of old, new: start-up drift hits both alike
      for i in $(seq 1 "${REGRESS_COLD_ROUNDS:-1}"); do
        for tag in old new; do
          run "$tag" "coldstart-r$i" "$shape" -- python3 "$B/bench_coldstart.py" --shape "$shape" --hf-dir "$(dir_of "$shape")" --engines eli --reps 3
        done
      done
      continue
    fi
    for tag in old new; do
      case "$what" in
        decode|prefill) run "$tag" "$what" "$shape" -- python3 "$B/bench_eli.py" --model "$(dir_of "$shape")" --shape "$shape" --what "$what" --reps 3 ;;
        throughput)
          [ "$shape" = 8b ] || continue
          [ -f "$R/fixed.json" ] || python3 "$B/bench_throughput.py" gen --kind fixed --out "$R/fixed.json" > /dev/null
          run "$tag" "$what" "$shape" -- python3 "$B/bench_throughput.py" eli --shape "$shape" --model "$(dir_of "$shape")" --dataset "$R/fixed.json" ;;
      esac
    done
  done
done
python3 - "$R" <<'EOF'
import json, pathlib, sys
r = pathlib.Path(sys.argv[1])
def values(p):
    try:
        d = json.loads(p.read_text())
    except Exception:
        return {}
    recs = d if isinstance(d, list) else d.get("records", [d])
    out = {}
    for x in recs:
        if isinstance(x, dict) and isinstance(x.get("value"), (int, float)):
            key = " ".join(str(x.get(k)) for k in ("model", "metric", "context", "prompt_len", "n") if x.get(k) is not None)
            out[key] = x["value"]
    return out
import re, statistics
# Cold-start rounds (regress_<tag>_coldstart-r<i>_<shape>.json) count as one benchmark: the median
# of the rounds' medians.
groups = {}
for old in sorted(r.glob("regress_old_*.json")):
    new = r / old.name.replace("regress_old_", "regress_new_")
    if new.exists():
        groups.setdefault(re.sub(r"-r\d+_", "_", old.name), []).append((values(old), values(new)))
print(f"{'benchmark':<70} {'old':>12} {'new':>12} {'new/old':>8}")
for name, pairs in sorted(groups.items()):
    for k in sorted(pairs[0][0]):
        a = [p[0][k] for p in pairs if k in p[0] and k in p[1]]
        b = [p[1][k] for p in pairs if k in p[0] and k in p[1]]
        if a and statistics.median(a):
            ma, mb = statistics.median(a), statistics.median(b)
            rounds = f" ({len(a)} rounds)" if len(a) > 1 else ""
            print(f"{(k + rounds):<70} {ma:>12.3f} {mb:>12.3f} {mb / ma:>8.3f}")
EOF
