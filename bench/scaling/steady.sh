#!/bin/bash
# Usage: bench/scaling/steady.sh OUTDIR (after dotnet build src/Cli -c Release). 3 alternating rounds, 40 epochs each: tokens/s median of epochs 21-40 (steady state) and of 3-12 (warm-up included).
set -u
cd "$(dirname "$0")/../.."
dll=${DLL:-$PWD/src/Cli/bin/Release/net10.0/charrnn.dll}
out=${1:-/tmp/steady}; mkdir -p $out
E=${EPOCHS:-40}
med() { python3 - "$1" <<'PY'
import json,sys,statistics
rows=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def m(a,b):
    t=[r["tokens_per_s"] for r in rows if a<=r.get("epoch",0)<=b]
    return f"{statistics.median(t):.0f} ({min(t):.0f}-{max(t):.0f})"
print(f"epochs 21-40: {m(21,40)}; epochs 3-12: {m(3,12)}")
PY
}
run() { local name=$1; shift
  rm -f $out/m.jsonl
  "$@" train --device cpu --epochs $E --pred-period 1000 --metrics $out/m.jsonl > $out/$name.$r.out 2> $out/$name.$r.err
  cp $out/m.jsonl $out/$name.$r.jsonl
  echo "round $r $name: $(med $out/m.jsonl) | $(grep -o 'gradient average.*' $out/$name.$r.err)"
}
for r in 1 2 3; do
  run one-pinned taskset -c 0 env DOTNET_PROCESSOR_COUNT=1 dotnet $dll
  run mpich-unbound mpiexec.mpich -n 2 -env DOTNET_PROCESSOR_COUNT 1 dotnet $dll
  run mpich-bound mpiexec.mpich -bind-to core -n 2 -env DOTNET_PROCESSOR_COUNT 1 dotnet $dll
  run openmpi-bound mpirun.openmpi --allow-run-as-root --bind-to core -np 2 -x DOTNET_PROCESSOR_COUNT=1 dotnet $dll
done
