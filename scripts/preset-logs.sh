#!/usr/bin/env bash
# Prints the CPU training log of every preset (6 epochs, a report every 3, both GEMM engines; and each cell with two
# layers and a validation split) with the timing text removed, plus every epoch's perplexities at full precision from
# --metrics, so two builds can be compared byte for byte: a change that claims "behaviour unchanged" diffs this
# script's output before and after.  Usage: scripts/preset-logs.sh [CHARRNN_DLL] > logs.txt
set -euo pipefail
cd "$(dirname "$0")/.."
dll=${1:-src/Cli/bin/Release/net10.0/charrnn.dll}
[ -f "$dll" ] || dotnet build src/Cli -c Release -v q >/dev/null
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
run() {
  echo "== $*"
  dotnet "$dll" train --device cpu --epochs 6 --pred-period 3 --metrics "$tmp/m.jsonl" "$@" 2>/dev/null \
    | sed -E 's/, time [0-9]+\.[0-9]+ sec$//; /^total training time/d'
  # perplexity and val_perplexity as JSON wrote them (round-trip doubles); seconds and tokens/s dropped
  sed -E 's/"seconds":[^,]*,"tokens_per_s":[^,]*,//' "$tmp/m.jsonl"
}
for blas in managed openblas; do
  for preset in scratch-random scratch-consecutive concise gru-scratch lstm-scratch gru-concise lstm-concise; do
    run --blas "$blas" --preset "$preset"
  done
done
for preset in concise gru-scratch lstm-concise; do
  run --preset "$preset" --layers 2 --val-fraction 0.2 --hidden 64
done
