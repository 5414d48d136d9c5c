#!/usr/bin/env bash
# Builds the CUDA emulator (see README.md) into $1 (default artifacts/cuda-emulator): libcuda.so.1 (driver API + every
# kernels/*.cu compiled for the host), libcublas.so.12 and an empty libcublasLt.so.12 (the resolver loads Lt first).
# Point CHARRNN_CUDA_LIB_DIR at that folder to run CharRnn's CUDA backend on it. Needs g++ and perl.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/artifacts/cuda-emulator}
mkdir -p "$out/obj"
out=$(cd "$out" && pwd)
CXX=${CXX:-g++}
flags=(-O2 -g -fPIC -std=c++17 -Wall -Wno-unused-function -Wno-sign-compare -Wno-unknown-pragmas -I"$here" -I"$root/kernels")
# Where the CPU has FMA, fmaf() becomes one instruction instead of a libm call (the same exact result; a tenth of the
# persistent kernels' time here); nothing else is contracted into FMAs (-ffp-contract=off, as without -mfma).
grep -qw fma /proc/cpuinfo 2>/dev/null && flags+=(-mfma -ffp-contract=off)
objs=()
# A file whose kernels wait for other blocks (grid_barrier) must keep its shared memory in DYNAMIC_SHARED.
selftests=("$here/selftest_kernels.cu" "$here/selftest_coop_kernels.cu" "$here/selftest_cluster_kernels.cu")
bash "$here/check_shared.sh" "$root"/kernels/*.cu "${selftests[@]}"
for cu in "$root"/kernels/*.cu "${selftests[@]}"; do
    name=$(basename "$cu" .cu)
    tu="$out/obj/kernel_$name.cpp"
    {
        echo '#include "cuda_shim.h"'
        echo "#include \"$cu\""
        # EMU_REGISTER(name, launch bound) for each extern "C" __global__ the file defines: no list of kernels to keep.
        perl -0777 -ne 'while (/extern\s+"C"\s+__global__\s+(?:__launch_bounds__\s*\(([^)]*)\)\s*)?void\s+(?:__launch_bounds__\s*\(([^)]*)\)\s*)?(\w+)\s*\(/g) { my $b = $1 // $2 // "1024"; print "EMU_REGISTER($3, $b)\n"; }' "$cu"
    } > "$tu"
    "$CXX" "${flags[@]}" -c "$tu" -o "$out/obj/kernel_$name.o"
    objs+=("$out/obj/kernel_$name.o")
done
"$CXX" "${flags[@]}" -c "$here/driver.cpp" -o "$out/obj/driver.o"
"$CXX" "${flags[@]}" -c "$here/fiber.S" -o "$out/obj/fiber.o"
"$CXX" -shared -o "$out/libcuda.so.1" -Wl,-soname,libcuda.so.1 "$out/obj/driver.o" "$out/obj/fiber.o" "${objs[@]}"
"$CXX" "${flags[@]}" -shared -o "$out/libcublas.so.12" -Wl,-soname,libcublas.so.12 "$here/cublas.cpp" \
    -L"$out" -l:libcuda.so.1 -Wl,-rpath,'$ORIGIN' -ldl
"$CXX" "${flags[@]}" -shared -o "$out/libnccl.so.2" -Wl,-soname,libnccl.so.2 "$here/nccl.cpp" \
    -L"$out" -l:libcuda.so.1 -Wl,-rpath,'$ORIGIN'
echo 'int charrnn_emulated_cublaslt;' | "$CXX" -x c++ -shared -fPIC -o "$out/libcublasLt.so.12" -Wl,-soname,libcublasLt.so.12 -
# A fault-injecting NVRTC (forwards to the real one; see nvrtc_faults.cpp), in its own folder so it is used only on purpose.
mkdir -p "$out/nvrtc-faults"
"$CXX" "${flags[@]}" -shared -o "$out/nvrtc-faults/libnvrtc.so.13" -Wl,-soname,libnvrtc.so.13 "$here/nvrtc_faults.cpp" -ldl
echo "CUDA emulator built in $out (kernels: $(cd "$root/kernels" && ls *.cu | tr '\n' ' '))"
"$CXX" -O1 -g -std=c++17 -DEMU_SOURCE_DIR="\"$here\"" -o "$out/selftest" "$here/selftest.cpp" -L"$out" -l:libcuda.so.1 -l:libcublas.so.12 -Wl,-rpath,'$ORIGIN'
if [[ "${EMU_SKIP_SELFTEST:-0}" != 1 ]]; then "$out/selftest"; fi
