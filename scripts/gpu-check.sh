#!/usr/bin/env bash
# The whole GPU check, one command, on a machine with an NVIDIA GPU, Python + PyTorch, and no .NET:
#
#   scripts/gpu-check.sh            # uses artifacts/gpu-bundle (or unpacks artifacts/gpu-bundle.tar.xz)
#
# Build the bundle beforehand on a machine with .NET: ./build.sh --target=Publish
# It prints the card, driver and CUDA versions and `charrnn info`; runs the test suite strictly (CHARRNN_REQUIRE_GPU=1:
# a GPU test that cannot run fails); NCCL with one rank; then benchmarks, side by side on the same card, the sides
# alternating, $ROUNDS rounds (default 3), each run's first epoch (compilation, capture, warm-up) timed apart:
#   (a) the book's scratch-random run ($EPOCHS epochs, default 250): CharRnn fast (persistent recurrence + CUDA graph)
#       and plain (--recurrence steps --graph off); PyTorch nn.RNN (cuDNN) + Linear with the same hyperparameters,
#       eager with pre-uploaded minibatches and with its whole step captured by torch.cuda.graph (d2l_peer.py --mode);
#       the book's 6.4 trainer ($SLOW_EPOCHS epochs: it is ~15x slower, its rate is per epoch). Once each: CharRnn with
#       one of the two fast paths, a few CHARRNN_PERSISTENT_COLS, --profile (the per-op breakdown);
#   (b) the large config (H 1024, B 256, T 35, full corpus, $LARGE_STEPS minibatches after 3 untimed): CharRnn vs
#       nn.RNN + Linear in FP32, TF32 and BF16 (PyTorch's by autocast), RNN cell in every round, GRU and LSTM in FP32
#       once; cuBLAS SGEMM measured in the same run; peak device memory on both sides;
#   (c) `charrnn train` of every preset on the card (the perplexity trajectories; logs in $OUT/train);
#   (d) compute-sanitizer on the kernel tests, when installed and time is left.
# Results: JSON files and summary.md under $OUT (default ./gpu-check-out); the tables are printed last.
# Its plumbing can be smoke-run without a GPU on the CUDA emulator (timings meaningless; the PyTorch runs fail there):
#   CHARRNN_CUDA_LIB_DIR=artifacts/cuda-emulator OUT=/tmp/gc EPOCHS=2 SLOW_EPOCHS=2 SHORT_EPOCHS=2 ROUNDS=1 \
#   LARGE_STEPS=1 LARGE_H=32 LARGE_B=8 SGEMM=64 TRAIN_ARGS="--epochs 2 --hidden 16" TEST_TIMEOUT=15 scripts/gpu-check.sh
# Time limits: the test suite $TEST_TIMEOUT s, each command $STEP_TIMEOUT s, the whole script $BUDGET s (default 420,
# inside the device tool's 15 minutes with start-up and a rerun in mind); a step that would overrun is cut or skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}
EPOCHS=${EPOCHS:-250}
SLOW_EPOCHS=${SLOW_EPOCHS:-40}
SHORT_EPOCHS=${SHORT_EPOCHS:-50}    # the tiling and profile runs
ROUNDS=${ROUNDS:-3}
LARGE_STEPS=${LARGE_STEPS:-100}
LARGE_H=${LARGE_H:-1024}            # the large config's H and B (smaller only for a smoke run of this script)
LARGE_B=${LARGE_B:-256}
SGEMM=${SGEMM:-8192}                # the SGEMM size measured beside the large config
TRAIN_ARGS=${TRAIN_ARGS:-}          # extra arguments for the presets' train runs (a smoke run: "--epochs 2 --hidden 16")
BUNDLE=${BUNDLE:-artifacts/gpu-bundle}
TEST_TIMEOUT=${TEST_TIMEOUT:-150}   # seconds for the whole test suite
STEP_TIMEOUT=${STEP_TIMEOUT:-90}   # seconds for each benchmark command (a hang must not eat the GPU time)
BUDGET=${BUDGET:-420}               # seconds for the whole script: each step gets at most what is left of it
mkdir -p "$OUT"
status=0

if [ ! -x "$BUNDLE/charrnn" ]; then
  if [ -f artifacts/gpu-bundle.tar.xz ]; then
    mkdir -p "$BUNDLE" && tar -xJf artifacts/gpu-bundle.tar.xz -C "$BUNDLE"
  else
    echo "gpu-check: no bundle at $BUNDLE (build it with ./build.sh --target=Publish)" >&2
    exit 2
  fi
fi

# Where PyTorch's pip wheels keep cuBLAS/NVRTC, in case they are not on the loader path or in /usr/local/cuda.
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
  [ -n "$dirs" ] && export CHARRNN_CUDA_LIB_DIR="$dirs" && echo "CHARRNN_CUDA_LIB_DIR=$dirs"
fi

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
nvidia-smi 2>/dev/null | grep -o "CUDA Version: [0-9.]*" | tee -a "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" 2>&1 | tee -a "$OUT/gpu.txt"
"$BUNDLE/charrnn" info 2>&1 | tee "$OUT/info.txt"

echo "== tests (CHARRNN_REQUIRE_GPU=1)"
[ $TEST_TIMEOUT -gt $((BUDGET - SECONDS - 60)) ] && TEST_TIMEOUT=$((BUDGET - SECONDS - 60)) # keep a minute for benchmarks
CHARRNN_REQUIRE_GPU=1 CHARRNN_KERNEL_CACHE="$OUT/kernel-cache" timeout "$TEST_TIMEOUT" "$BUNDLE/CharRnn.Tests" --report-trx --report-trx-filename tests.trx \
  --results-directory "$OUT" > "$OUT/tests.log" 2>&1 || status=1
python3 - "$OUT/tests.trx" <<'PY' || true
import collections, sys, xml.etree.ElementTree as ET
ns = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception as e:
    sys.exit(f"no test results ({e})")
counts = collections.Counter()
failures = []
for r in root.iter("{%s}UnitTestResult" % ns["t"]):
    outcome = r.get("outcome")
    counts[outcome] += 1
    if outcome == "Failed":
        msg = r.find(".//t:Message", ns)
        failures.append((r.get("testName"), (msg.text or "").strip().splitlines()[:3] if msg is not None else []))
print("tests:", ", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items())))
by_first_line = collections.defaultdict(list)
for name, lines in failures:
    by_first_line[lines[0] if lines else "?"].append(name)
for first, names in sorted(by_first_line.items(), key=lambda kv: -len(kv[1]))[:15]:
    print(f"  FAILED x{len(names)}: {first[:200]}")
    print(f"    e.g. {names[0]}")
PY

echo "== NCCL, one rank, end to end (data-parallel path on one GPU)"
NCCL_DEBUG=WARN timeout 60 "$BUNDLE/charrnn" train --device cuda --nccl --epochs 3 --pred-period 1 --hidden 64 2>&1 | tail -5 | tee "$OUT/nccl.txt" || status=1

run() {
  local left=$((BUDGET - SECONDS)) limit=$STEP_TIMEOUT
  [ $left -lt $limit ] && limit=$left
  if [ $limit -lt 10 ]; then status=1; echo "SKIPPED (the ${BUDGET}s budget is spent): $*" >&2; return 1; fi
  echo "+ $*" >&2
  timeout "$limit" "$@"
  local rc=$?
  if [ $rc -ne 0 ]; then status=1; echo "FAILED (exit $rc$([ $rc -eq 124 ] && echo ', timed out')): $*" >&2; fi
  return $rc
}
C="$BUNDLE/charrnn"
P="python3 bench/pytorch/d2l_peer.py"
NNRNN_BOOK="--model concise --optimizer sgd --lr 100 --clip 0.01 --sampling random --device cuda"
LARGE="--hidden $LARGE_H --batch $LARGE_B --chars all"
CLARGE="--config large --hidden $LARGE_H --batch $LARGE_B"

echo "== (a) the book's run, $ROUNDS alternating rounds"
for r in $(seq 1 "$ROUNDS"); do
  run $C bench --device cuda --config book --epochs "$EPOCHS" --sgemm 0 --json "$OUT/charrnn_book_fast_$r.json" > "$OUT/charrnn_book_fast_$r.txt"
  run $P $NNRNN_BOOK --epochs "$EPOCHS" --mode graph --json "$OUT/torch_nnrnn_graph_$r.json"
  run $C bench --device cuda --config book --epochs "$EPOCHS" --sgemm 0 --recurrence steps --graph off --json "$OUT/charrnn_book_plain_$r.json" > /dev/null
  run $P $NNRNN_BOOK --epochs "$EPOCHS" --mode eager --json "$OUT/torch_nnrnn_eager_$r.json"
  run $P --model scratch --device cuda --epochs "$SLOW_EPOCHS" --json "$OUT/torch_scratch_book_$r.json"
done
echo "== (a) one path at a time, persistent tiling, per-op breakdown"
run $C bench --device cuda --config book --epochs "$EPOCHS" --sgemm 0 --graph off --json "$OUT/charrnn_book_persistent_only.json" > /dev/null
run $C bench --device cuda --config book --epochs "$EPOCHS" --sgemm 0 --recurrence steps --json "$OUT/charrnn_book_graph_only.json" > /dev/null
for cols in 2 8 16; do
  CHARRNN_PERSISTENT_COLS=$cols run $C bench --device cuda --config book --epochs "$SHORT_EPOCHS" --sgemm 0 --json "$OUT/charrnn_book_cols$cols.json" > /dev/null
done
run $C bench --device cuda --config book --epochs "$SHORT_EPOCHS" --sgemm 0 --profile > "$OUT/profile_book.txt"
run $C bench --device cuda --config book --epochs "$SHORT_EPOCHS" --sgemm 0 --recurrence steps --graph off --profile > "$OUT/profile_book_plain.txt"

echo "== (b) the large config, $ROUNDS alternating rounds"
for r in $(seq 1 "$ROUNDS"); do
  for prec in fp32 tf32 bf16; do
    sg=0; [ "$prec" = fp32 ] && [ "$r" = 1 ] && sg=$SGEMM
    run $C bench --device cuda $CLARGE --minibatches "$LARGE_STEPS" --precision $prec --sgemm $sg --json "$OUT/charrnn_large_${prec}_$r.json" > /dev/null
    run $P --model concise --optimizer sgd --lr 100 --clip 0.01 --sampling random $LARGE --minibatches "$LARGE_STEPS" \
      --device cuda --mode eager --precision $prec --json "$OUT/torch_large_${prec}_$r.json"
  done
done
for cell in gru lstm; do
  run $C bench --device cuda $CLARGE --cell $cell --minibatches "$LARGE_STEPS" --sgemm 0 --json "$OUT/charrnn_large_${cell}.json" > /dev/null
  run $P --model concise --cell $cell --optimizer sgd --lr 100 --clip 0.01 --sampling random $LARGE --minibatches "$LARGE_STEPS" \
    --device cuda --mode eager --json "$OUT/torch_large_${cell}.json"
done
run $C bench --device cuda $CLARGE --minibatches "$LARGE_STEPS" --sgemm 0 --recurrence persistent --json "$OUT/charrnn_large_persistent.json" > /dev/null
run $C bench --device cuda $CLARGE --minibatches 30 --sgemm 0 --profile > "$OUT/profile_large.txt"

echo "== (c) every preset on the card"
mkdir -p "$OUT/train"
for p in scratch-random scratch-consecutive concise gru-scratch lstm-scratch gru-concise lstm-concise; do
  # shellcheck disable=SC2086
  run $C train --device cuda --preset $p $TRAIN_ARGS > "$OUT/train/train-$p.txt" 2> "$OUT/train/train-$p.err"
done

echo "== (d) compute-sanitizer (memcheck, racecheck, synccheck on the kernel tests)"
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$SAN" ]; then
  for tool in memcheck racecheck synccheck; do
    run "$SAN" --tool $tool --error-exitcode 9 "$BUNDLE/CharRnn.Tests" \
      --filter "FullyQualifiedName~GateOpTests|FullyQualifiedName~BackendOpTests|FullyQualifiedName~PersistentRecurrence" \
      > "$OUT/sanitizer-$tool.log" 2>&1; echo "compute-sanitizer $tool: exit $?" | tee -a "$OUT/sanitizer.txt"
  done
else
  echo "compute-sanitizer: not installed on this machine; not run" | tee "$OUT/sanitizer.txt"
fi

echo "== summary"
python3 bench/summarize.py "$OUT" | tee "$OUT/summary.md"
exit $status
