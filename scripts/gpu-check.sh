#!/usr/bin/env bash
# The whole GPU check, one command, on a machine with an NVIDIA GPU, Python + PyTorch, and no .NET:
#
#   scripts/gpu-check.sh            # uses artifacts/gpu-bundle (or unpacks artifacts/gpu-bundle.tar.xz)
#
# Build the bundle beforehand on a machine with .NET: ./build.sh --target=Publish
# It prints the card, driver and CUDA versions; runs the test suite strictly (CHARRNN_REQUIRE_GPU=1: a GPU test that
# cannot run fails); then benchmarks, side by side on the same card:
#   (a) the book's scratch-random config ($EPOCHS epochs, default 250): CharRnn vs PyTorch scratch (6.4) vs PyTorch
#       nn.RNN (cuDNN) with the same hyperparameters;
#   (b) a large config (H 1024, B 256, T 35, full corpus, $LARGE_STEPS minibatches, default 100): CharRnn vs PyTorch
#       nn.RNN + Linear, with a cuBLAS SGEMM rate measured in the same run; FP32 against FP32 and TF32 against TF32
#       (PyTorch also with its own defaults, where cuDNN's RNN may use TF32 while matmuls do not).
# PyTorch runs in strict FP32 unless said (d2l_peer.py --precision), like CharRnn without --tf32.
# Results: JSON files and summary.md under $OUT (default ./gpu-check-out); the compact table is printed last.
# Time limits: the test suite $TEST_TIMEOUT s, each benchmark $STEP_TIMEOUT s, the whole script $BUDGET s (default 480,
# inside the device tool's 15 minutes with start-up and a rerun in mind); a step that would overrun is cut or skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}
EPOCHS=${EPOCHS:-250}
LARGE_STEPS=${LARGE_STEPS:-100}
BUNDLE=${BUNDLE:-artifacts/gpu-bundle}
TEST_TIMEOUT=${TEST_TIMEOUT:-240}   # seconds for the whole test suite
STEP_TIMEOUT=${STEP_TIMEOUT:-150}   # seconds for each benchmark command (a hang must not eat the GPU time)
BUDGET=${BUDGET:-480}               # seconds for the whole script: each step gets at most what is left of it
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

echo "== compute-sanitizer (memcheck, racecheck, synccheck on a few Gpu tests)"
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$SAN" ]; then
  for tool in memcheck racecheck synccheck; do
    timeout 90 "$SAN" --tool $tool --error-exitcode 9 "$BUNDLE/CharRnn.Tests" --filter "FullyQualifiedName~GateOpTests|FullyQualifiedName~BackendOpTests" \
      > "$OUT/sanitizer-$tool.log" 2>&1; echo "compute-sanitizer $tool: exit $?" | tee -a "$OUT/sanitizer.txt"
  done
else
  echo "compute-sanitizer: not installed on this machine; not run" | tee "$OUT/sanitizer.txt"
fi

echo "== benchmarks"
run() {
  local left=$((BUDGET - SECONDS)) limit=$STEP_TIMEOUT
  [ $left -lt $limit ] && limit=$left
  if [ $limit -lt 10 ]; then status=1; echo "SKIPPED (the ${BUDGET}s budget is spent): $*" >&2; return; fi
  echo "+ $*" >&2
  timeout "$limit" "$@"
  local rc=$?
  if [ $rc -ne 0 ]; then status=1; echo "FAILED (exit $rc${rc:+$([ $rc -eq 124 ] && echo ', timed out')}): $*" >&2; fi
}
run "$BUNDLE/charrnn" bench --device cuda --config book --preset scratch-random --epochs "$EPOCHS" --json "$OUT/charrnn_book.json"
run python3 bench/pytorch/d2l_peer.py --model scratch --device cuda --epochs "$EPOCHS" --json "$OUT/torch_scratch_book.json"
run python3 bench/pytorch/d2l_peer.py --model concise --optimizer sgd --lr 100 --clip 0.01 --sampling random \
  --device cuda --epochs "$EPOCHS" --json "$OUT/torch_nnrnn_book.json"
run "$BUNDLE/charrnn" bench --device cuda --config large --minibatches "$LARGE_STEPS" --json "$OUT/charrnn_large.json"
run "$BUNDLE/charrnn" bench --device cuda --config large --minibatches "$LARGE_STEPS" --tf32 --sgemm 0 --json "$OUT/charrnn_large_tf32.json"
for precision in fp32 tf32 default; do # torch_large.json (FP32), torch_large_tf32.json, torch_large_default.json
  suffix=_$precision; [ "$precision" = fp32 ] && suffix=
  run python3 bench/pytorch/d2l_peer.py --model concise --optimizer sgd --lr 100 --clip 0.01 --sampling random \
    --hidden 1024 --batch 256 --chars all --minibatches "$LARGE_STEPS" --device cuda --precision "$precision" \
    --json "$OUT/torch_large$suffix.json"
done

echo "== summary"
python3 bench/summarize.py "$OUT" | tee "$OUT/summary.md"
exit $status
