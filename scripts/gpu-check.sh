#!/usr/bin/env bash
# The whole GPU check, one command, on a machine with an NVIDIA GPU, Python + PyTorch, and no .NET:
#
#   scripts/gpu-check.sh            # uses artifacts/gpu-bundle (or unpacks artifacts/gpu-bundle.tar.xz)
#
# Build the bundle beforehand on a machine with .NET: ./build.sh --target=Publish (artifacts/gpu-bundle.tar.xz, ~34 MB:
# it travels to the GPU machine with the working tree, whose limit is 64 MiB).
#
# A card is lent rarely and briefly, so this run must not waste it:
# * Nothing is lost. Every run's stdout and stderr go to a file of its own under $RAW (default /tmp/charrnn-gpu-check),
#   with the kernel and plan caches; everything printed is also in $OUT/console.log; after every phase $RAW is packed
#   into $OUT/gpu-check.tar.gz and the tables into $OUT/summary.md, both replaced atomically, so a run killed at any
#   point still brings back all it did. $OUT holds those three files alone (the device tool returns at most 8).
# * Runs are ordered by value: (1) the book's run, first round, every variant side by side (CharRnn's paths, PyTorch
#   nn.RNN with its whole step in torch.cuda.graph and eager); (2) the large config FP32 with cuBLAS SGEMM measured in the
#   same run; (3) the gated cells (book gru-/lstm-concise against nn.GRU/nn.LSTM captured, and an LSTM 2 x 512 at B 64,
#   T 50); (4) the Gpu tests, capped ($TEST_TIMEOUT s); (5) per-op profiles; (6) rounds 2..$ROUNDS, TF32/BF16, the
#   gated cells at the large size, the persistent tilings; (7) PyTorch's book 6.4 trainer once; (8) every preset with
#   `charrnn train` (perplexity trajectories); (9) NCCL with one rank; (10) compute-sanitizer while time is left.
# * Time is bounded: each command at most $STEP_TIMEOUT s, the whole script $BUDGET s (default 400, so the device tool's
#   timeout_s can be 480 and a rerun still fits in its 15 minutes); what would overrun is skipped and said so.
# * nvidia-smi's clocks, power and performance state are kept from before and after the runs.
# Unpack the results with `tar -xzf gpu-check.tar.gz -C DIR` and print the tables with `python3 bench/summarize.py DIR`.
#
# Its plumbing can be dry-run without a GPU on the CUDA emulator (timings meaningless; the PyTorch runs fail there):
#   CHARRNN_CUDA_LIB_DIR=$PWD/artifacts/cuda-emulator OUT=/tmp/gc RAW=/tmp/gc-raw EPOCHS=2 SLOW_EPOCHS=2 SHORT_EPOCHS=2 \
#   GATED_EPOCHS=2 ROUNDS=2 LARGE_STEPS=1 LARGE_H=32 LARGE_B=8 CHARRNN_H=32 SGEMM=64 TRAIN_ARGS="--epochs 2 --hidden 16" \
#   TEST_TIMEOUT=20 scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}
RAW=${RAW:-${TMPDIR:-/tmp}/charrnn-gpu-check}
EPOCHS=${EPOCHS:-250}
SLOW_EPOCHS=${SLOW_EPOCHS:-40}      # PyTorch's book trainer: ~15x slower, its rate is per epoch
SHORT_EPOCHS=${SHORT_EPOCHS:-50}    # the tiling and profile runs
GATED_EPOCHS=${GATED_EPOCHS:-160}   # gru-/lstm-concise (the book's 160)
ROUNDS=${ROUNDS:-3}
LARGE_STEPS=${LARGE_STEPS:-100}
LARGE_H=${LARGE_H:-1024}            # the large config's H and B (smaller only for a dry run of this script)
LARGE_B=${LARGE_B:-256}
CHARRNN_H=${CHARRNN_H:-512}         # the char-rnn size class: LSTM 2 x CHARRNN_H at B 64, T 50
SGEMM=${SGEMM:-8192}                # the SGEMM size measured beside the large config
TRAIN_ARGS=${TRAIN_ARGS:-}          # extra arguments for the presets' train runs (a dry run: "--epochs 2 --hidden 16")
BUNDLE=${BUNDLE:-artifacts/gpu-bundle}
TEST_TIMEOUT=${TEST_TIMEOUT:-120}   # seconds for the Gpu tests
STEP_TIMEOUT=${STEP_TIMEOUT:-90}    # seconds for each benchmark command (a hang must not eat the GPU time)
BUDGET=${BUDGET:-400}               # seconds for the whole script: each step gets at most what is left of it
rm -rf "$RAW" && mkdir -p "$RAW/train" "$OUT" || exit 2
rm -f "$OUT/console.log" "$OUT/summary.md" "$OUT/gpu-check.tar.gz"
exec > >(tee -a "$OUT/console.log") 2>&1
export CHARRNN_KERNEL_CACHE="$RAW/kernel-cache" CHARRNN_PLAN_CACHE="$RAW/plans.json" PYTHONUNBUFFERED=1
status=0
failed=()

pack() { # everything so far into $OUT, atomically (a kill mid-way leaves the previous pack whole)
  cp -f "$OUT/console.log" "$RAW/console.log" 2>/dev/null
  python3 bench/summarize.py "$RAW" > "$OUT/summary.md.part" 2>&1; mv -f "$OUT/summary.md.part" "$OUT/summary.md"
  tar -czf "$OUT/gpu-check.tar.gz.part" -C "$RAW" . && mv -f "$OUT/gpu-check.tar.gz.part" "$OUT/gpu-check.tar.gz"
}
phase() { pack; echo; echo "== [$SECONDS s] $*"; }
smi() { { nvidia-smi -q -d CLOCK,POWER,PERFORMANCE,TEMPERATURE 2>&1 || echo "nvidia-smi failed"; } > "$RAW/nvidia-smi-$1.txt"; }
finish() {
  trap - EXIT TERM INT
  smi after
  echo; echo "== [$SECONDS s] done: $((${#failed[@]})) failed or skipped${failed:+: ${failed[*]}}"
  pack
  cat "$OUT/summary.md"
  exit $status
}
trap finish EXIT
trap 'echo "gpu-check: stopped by a signal"; status=1; finish' TERM INT

# run NAME COMMAND...: stdout to $RAW/NAME.out, stderr to $RAW/NAME.err, a line on the console, the stderr tail on failure.
run() {
  local name=$1; shift
  local left=$((BUDGET - SECONDS)) limit=$STEP_TIMEOUT
  [ $left -lt $limit ] && limit=$left
  if [ $limit -lt 10 ]; then status=1; failed+=("$name(skipped)"); echo "SKIPPED $name (the ${BUDGET}s budget is spent): $*"; return 1; fi
  echo "$*" > "$RAW/$name.cmd"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$RAW/$name.out" 2> "$RAW/$name.err"
  local rc=$?
  if [ $rc -ne 0 ]; then
    status=1; failed+=("$name")
    echo "FAILED $name (exit $rc$([ $rc -eq 124 ] && echo ", timed out after ${limit}s"), $((SECONDS - t0)) s): $*"
    tail -n 4 "$RAW/$name.err" | sed 's/^/    /'
  else
    echo "ok $name ($((SECONDS - t0)) s) $(grep -m1 -E '^time ' "$RAW/$name.out" | cut -c1-110)"
  fi
  return $rc
}

echo "gpu-check: raw files in $RAW, results in $OUT; budget ${BUDGET}s, ${STEP_TIMEOUT}s a command"
if [ ! -x "$BUNDLE/charrnn" ]; then
  if [ -f artifacts/gpu-bundle.tar.xz ]; then
    mkdir -p "$BUNDLE" && tar -xJf artifacts/gpu-bundle.tar.xz -C "$BUNDLE"
  else
    echo "gpu-check: no bundle at $BUNDLE (build it with ./build.sh --target=Publish)"; status=2; exit 2
  fi
fi

# Where PyTorch's pip wheels keep cuBLAS/NVRTC/NCCL, in case they are not on the loader path or in /usr/local/cuda.
if [ -z "${CHARRNN_CUDA_LIB_DIR:-}" ]; then
  dirs=$(python3 - <<'PY' 2>/dev/null
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
try:
    import torch; roots.append(os.path.dirname(os.path.dirname(torch.__file__)))
except Exception:
    pass
found = []
for r in roots:
    for pat in ("nvidia/*/lib/libcublas.so.*", "nvidia/*/lib/libnvrtc.so.*", "nvidia/*/lib/libnccl.so.*", "torch/lib/libcublas.so.*", "torch/lib/libnvrtc*.so*"):
        for f in glob.glob(os.path.join(r, pat)):
            d = os.path.dirname(f)
            if d not in found:
                found.append(d)
print(":".join(found))
PY
)
  [ -n "$dirs" ] && export CHARRNN_CUDA_LIB_DIR="$dirs"
fi
echo "CHARRNN_CUDA_LIB_DIR=${CHARRNN_CUDA_LIB_DIR:-}"

phase "machine"
smi before
{ nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm,power.limit --format=csv 2>&1
  nvidia-smi 2>/dev/null | grep -o "CUDA Version: [0-9.]*"
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" 2>&1
  uname -a; nproc; } | tee "$RAW/machine.txt"
run info "$BUNDLE/charrnn" info && cat "$RAW/info.out"
"$BUNDLE/charrnn" info --help 2>/dev/null | grep -q -- "--plans" && run info-plans "$BUNDLE/charrnn" info --plans

C="$BUNDLE/charrnn"
P="python3 bench/pytorch/d2l_peer.py"
BOOK="bench --device cuda --config book --sgemm 0"   # + --epochs: the book's run $EPOCHS, the gated presets $GATED_EPOCHS
NNRNN_BOOK="--model concise --optimizer sgd --lr 100 --clip 0.01 --sampling random --device cuda --epochs $EPOCHS"
CLARGE="bench --device cuda --config large --hidden $LARGE_H --batch $LARGE_B --minibatches $LARGE_STEPS"
PLARGE="--model concise --optimizer sgd --lr 100 --clip 0.01 --sampling random --hidden $LARGE_H --batch $LARGE_B --chars all --minibatches $LARGE_STEPS --device cuda"
GATED="--optimizer adam --lr 0.01 --clip none --sampling consecutive --device cuda"
CRNN="--layers 2 --hidden $CHARRNN_H --batch 64 --steps 50"
# The cluster variant joins the book table where this charrnn has `--recurrence cluster` (older bundles do not).
CLUSTER=$("$C" bench --help 2>/dev/null | grep -q "cluster" && echo yes)

book_round() { # one round of the book table, the sides alternating
  local r=$1
  run charrnn_book_fast_$r $C $BOOK --epochs "$EPOCHS" --json "$RAW/charrnn_book_fast_$r.json"
  run torch_nnrnn_graph_$r $P $NNRNN_BOOK --mode graph --json "$RAW/torch_nnrnn_graph_$r.json"
  run charrnn_book_plain_$r $C $BOOK --epochs "$EPOCHS" --recurrence steps --graph off --json "$RAW/charrnn_book_plain_$r.json"
  run torch_nnrnn_eager_$r $P $NNRNN_BOOK --mode eager --json "$RAW/torch_nnrnn_eager_$r.json"
  run charrnn_book_persistent_only_$r $C $BOOK --epochs "$EPOCHS" --graph off --json "$RAW/charrnn_book_persistent_only_$r.json"
  run charrnn_book_graph_only_$r $C $BOOK --epochs "$EPOCHS" --recurrence steps --json "$RAW/charrnn_book_graph_only_$r.json"
  [ -n "$CLUSTER" ] && run charrnn_book_cluster_$r $C $BOOK --epochs "$EPOCHS" --recurrence cluster --json "$RAW/charrnn_book_cluster_$r.json"
}
large_round() { # PREC ROUND [SGEMM]
  run charrnn_large_$1_$2 $C $CLARGE --precision "$1" --sgemm "${3:-0}" --json "$RAW/charrnn_large_$1_$2.json"
  run torch_large_$1_$2 $P $PLARGE --mode eager --precision "$1" --json "$RAW/torch_large_$1_$2.json"
}
gated_round() { # ROUND: book gru-/lstm-concise and the char-rnn-sized LSTM, each against PyTorch captured
  local r=$1 cell
  for cell in gru lstm; do
    run charrnn_${cell}_book_$r $C $BOOK --preset $cell-concise --epochs "$GATED_EPOCHS" --json "$RAW/charrnn_${cell}_book_$r.json"
    run torch_${cell}_book_graph_$r $P --model concise --cell $cell $GATED --epochs "$GATED_EPOCHS" --mode graph --json "$RAW/torch_${cell}_book_graph_$r.json"
    # the per-step path beside auto's timed choice (the cluster kernels, where they won), in the first round only
    [ "$r" = 1 ] && run charrnn_${cell}_perstep_1 $C $BOOK --preset $cell-concise --epochs "$GATED_EPOCHS" --recurrence steps --json "$RAW/charrnn_${cell}_perstep_1.json"
  done
  run charrnn_lstm_charrnn_$r $C bench --device cuda --config large --preset lstm-concise $CRNN --minibatches "$LARGE_STEPS" --sgemm 0 --json "$RAW/charrnn_lstm_charrnn_$r.json"
  run torch_lstm_charrnn_graph_$r $P --model concise --cell lstm $CRNN $GATED --chars all --minibatches "$LARGE_STEPS" --mode graph --json "$RAW/torch_lstm_charrnn_graph_$r.json"
}

phase "(1) the book's run, round 1 of $ROUNDS, every variant"
book_round 1
phase "(2) the large config, FP32, with SGEMM in the same run"
large_round fp32 1 "$SGEMM"
run charrnn_large_persistent $C $CLARGE --sgemm 0 --recurrence persistent --json "$RAW/charrnn_large_persistent.json"
phase "(3) the gated cells, round 1"
gated_round 1
phase "(4) the Gpu tests (CHARRNN_REQUIRE_GPU=1: a GPU test that cannot run fails), at most ${TEST_TIMEOUT}s"
STEP_TIMEOUT_SAVED=$STEP_TIMEOUT; STEP_TIMEOUT=$TEST_TIMEOUT
CHARRNN_REQUIRE_GPU=1 run tests "$BUNDLE/CharRnn.Tests" --filter "TestCategory=Gpu" --report-trx --report-trx-filename tests.trx --results-directory "$RAW"
STEP_TIMEOUT=$STEP_TIMEOUT_SAVED
python3 - "$RAW/tests.trx" <<'PY' | tee "$RAW/tests-summary.txt"
import collections, sys, xml.etree.ElementTree as ET
ns = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception as e:
    print(f"tests: no results ({e}); see tests.out and tests.err")
    sys.exit(0)
counts = collections.Counter()
failures = collections.defaultdict(list)
for r in root.iter("{%s}UnitTestResult" % ns["t"]):
    counts[r.get("outcome")] += 1
    if r.get("outcome") == "Failed":
        msg = r.find(".//t:Message", ns)
        first = ((msg.text or "").strip().splitlines() or ["?"])[0] if msg is not None else "?"
        failures[first].append(r.get("testName"))
print("tests:", ", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items())))
for first, names in sorted(failures.items(), key=lambda kv: -len(kv[1]))[:15]:
    print(f"  FAILED x{len(names)}: {first[:200]}\n    e.g. {names[0]}")
PY
phase "(5) per-op profiles"
run profile_book $C bench --device cuda --config book --epochs "$SHORT_EPOCHS" --sgemm 0 --profile
run profile_book_plain $C bench --device cuda --config book --epochs "$SHORT_EPOCHS" --sgemm 0 --recurrence steps --graph off --profile
run profile_large $C bench --device cuda --config large --hidden "$LARGE_H" --batch "$LARGE_B" --minibatches 30 --sgemm 0 --profile
phase "(6) rounds 2..$ROUNDS, TF32/BF16, gated cells at the large size, persistent tilings"
for r in $(seq 2 "$ROUNDS"); do book_round "$r"; large_round fp32 "$r"; done
for r in $(seq 1 "$ROUNDS"); do large_round tf32 "$r"; large_round bf16 "$r"; done
for r in $(seq 2 "$ROUNDS"); do gated_round "$r"; done
for cell in gru lstm; do
  run charrnn_large_$cell $C $CLARGE --cell $cell --sgemm 0 --json "$RAW/charrnn_large_$cell.json"
  run torch_large_$cell $P $PLARGE --cell $cell --mode eager --json "$RAW/torch_large_$cell.json"
done
for cols in 2 8 16; do
  CHARRNN_PERSISTENT_COLS=$cols run charrnn_book_cols$cols $C bench --device cuda --config book --epochs "$SHORT_EPOCHS" --sgemm 0 --json "$RAW/charrnn_book_cols$cols.json"
done
phase "(7) PyTorch's book 6.4 trainer, once ($SLOW_EPOCHS epochs)"
run torch_scratch_book_1 $P --model scratch --device cuda --epochs "$SLOW_EPOCHS" --json "$RAW/torch_scratch_book_1.json"
phase "(8) every preset with charrnn train on the card"
for p in scratch-random scratch-consecutive concise gru-scratch lstm-scratch gru-concise lstm-concise; do
  # shellcheck disable=SC2086
  run train/train-$p $C train --device cuda --preset $p $TRAIN_ARGS
done
phase "(9) NCCL, one rank, end to end"
NCCL_DEBUG=WARN run nccl $C train --device cuda --nccl --epochs 3 --pred-period 1 --hidden 64
phase "(10) compute-sanitizer on the kernel tests, while time is left"
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$SAN" ]; then
  for tool in memcheck racecheck synccheck; do
    run sanitizer-$tool "$SAN" --tool $tool --error-exitcode 9 "$BUNDLE/CharRnn.Tests" \
      --filter "FullyQualifiedName~OpHarnessTests|FullyQualifiedName~BackendOpTests|FullyQualifiedName~PersistentRecurrence|FullyQualifiedName~ClusterRecurrence|FullyQualifiedName~GatedCluster"
  done
else
  echo "compute-sanitizer: not installed on this machine; not run" | tee "$RAW/sanitizer.txt"
fi
exit $status
