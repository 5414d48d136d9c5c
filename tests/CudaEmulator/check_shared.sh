#!/usr/bin/env bash
# check_shared.sh FILE.cu... — refuses (exit 1, one line per file) a kernel file that both waits at a grid barrier and
# declares static __shared__ memory. Static __shared__ variables are one per kernel in the emulator (cuda_shim.h),
# right only while blocks run one at a time: kernels that wait for other blocks (grid_barrier) must keep their shared
# memory in DYNAMIC_SHARED, one region per block (cluster kernels too: cluster_sync). Comments are ignored. build.sh runs it; selftest proves it fires.
status=0
for cu in "$@"; do
    if perl -0777 -ne 's{//[^\n]*}{}g; s{/\*.*?\*/}{}gs; exit(!(/(?:grid_barrier|cluster_sync)\s*\(/ && /__shared__/))' "$cu"; then
        echo "$cu: kernels that call grid_barrier or cluster_sync must use DYNAMIC_SHARED, not static __shared__ (see cuda_shim.h)" >&2
        status=1
    fi
done
exit $status
