#!/usr/bin/env bash
# CharRnn's CPU backend against PyTorch (Debian's python3-torch, CPU, OpenBLAS) on the book's three configs,
# side by side on this machine: the two run alternately, ROUNDS times each, EPOCHS epochs a run; each side's speed is
# the median over all its epochs after the first WARMUP of each run (JIT and allocator warm-up on both sides).
# PyTorch runs at its best: OpenBLAS (selected by update-alternatives when libopenblas0-pthread is installed), the
# faster of 1 and 2 threads (tried first), OMP_WAIT_POLICY=PASSIVE.
# The last lines are the tokens/s per side and the ratio per config. JSON and a summary go to $OUT (bench/out/cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
EPOCHS=${EPOCHS:-20}
WARMUP=${WARMUP:-3}
OUT=${OUT:-bench/out/cpu}
PY=/usr/bin/python3   # Debian's python, the one python3-torch installs into
mkdir -p "$OUT"

need=()
$PY -c "import torch" 2>/dev/null || need+=(python3-torch)
[ -e /usr/lib/x86_64-linux-gnu/libopenblas.so.0 ] || need+=(libopenblas0-pthread)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
dotnet build src/Cli -c Release -v q -nologo >/dev/null
CHARRNN="dotnet src/Cli/bin/Release/net10.0/charrnn.dll"
export OMP_WAIT_POLICY=PASSIVE

{
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "charrnn: $($CHARRNN info 2>/dev/null | head -1)"
  echo "pytorch: $($PY -c 'import torch; print(torch.__version__, torch.__config__.show().count("BLAS"), "blas refs")' 2>/dev/null)"
  echo "libblas.so.3 -> $(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)"
} | tee "$OUT/machine.txt"

# PyTorch's best thread count per model, from a short trial.
best_threads() {
  local model=$1 best=1 best_tps=0
  for t in 1 2; do
    tps=$($PY bench/pytorch/d2l_peer.py --model "$model" --epochs 4 --threads "$t" | $PY -c "import json,sys; print(int(json.load(sys.stdin)['tokens_per_s']))")
    echo "pytorch $model threads $t: $tps tokens/s (trial)" >&2
    if [ "$tps" -gt "$best_tps" ]; then best=$t; best_tps=$tps; fi
  done
  echo $best
}
T_SCRATCH=$(best_threads scratch)
T_CONCISE=$(best_threads concise)

declare -A PEER=(
  [scratch-random]="--model scratch --sampling random --threads $T_SCRATCH"
  [scratch-consecutive]="--model scratch --sampling consecutive --threads $T_SCRATCH"
  [concise]="--model concise --threads $T_CONCISE"
)
for r in $(seq 1 "$ROUNDS"); do
  for p in scratch-random scratch-consecutive concise; do
    echo "round $r: $p" >&2
    # shellcheck disable=SC2086
    $PY bench/pytorch/d2l_peer.py ${PEER[$p]} --epochs "$EPOCHS" --json "$OUT/pytorch-$p-$r.json"
    $CHARRNN bench --device cpu --preset "$p" --epochs "$EPOCHS" --sgemm 0 --json "$OUT/charrnn-$p-$r.json" >/dev/null 2>&1
  done
done

$PY - "$OUT" "$WARMUP" <<'PY'
import glob, json, statistics, sys
out, warm = sys.argv[1], int(sys.argv[2])
lines = []
for p in ["scratch-random", "scratch-consecutive", "concise"]:
    def epochs(side):
        secs, tokens, ppl = [], None, []
        for f in sorted(glob.glob(f"{out}/{side}-{p}-*.json")):
            d = json.load(open(f))
            if side == "pytorch":
                e = [x["seconds"] for x in d["epochs"]]
                tokens = d["minibatches"] / (len(e) - 1) * d["batch"] * d["steps"]  # minibatches: those after epoch 1
                ppl.append(d["final_perplexity"])
            else:
                e = d["EpochSeconds"]
                tokens = d["Minibatches"] / (len(e) - 1) * d["Batch"] * d["Steps"]
                ppl.append(d["FinalPerplexity"])
            secs += e[warm:]
        return tokens / statistics.median(secs), statistics.median(ppl), len(secs)
    ours, our_ppl, n1 = epochs("charrnn")
    theirs, their_ppl, n2 = epochs("pytorch")
    lines.append(f"{p}: CharRnn {ours:,.0f} tokens/s, PyTorch {theirs:,.0f} tokens/s, ratio {ours / theirs:.2f}x "
                 f"(median of {n1}/{n2} epochs; perplexity after the run {our_ppl:.1f} vs {their_ppl:.1f})")
open(f"{out}/summary.txt", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
