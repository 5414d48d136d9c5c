// selftest_cluster_kernels.cu — a kernel for selftest.cpp's thread-block cluster cases (CharRnn never loads it).
//
// selftest_cluster_exchange(out[blocks], mode)
//     mode 0: after a first cluster_sync, each block writes blockIdx.x + 1 into slot [its rank] of every block's dynamic
//     shared memory of its cluster (cluster_map), waits at a cluster barrier, and writes the sum of its slots to
//     out[blockIdx.x] (the sum over its cluster); a last cluster barrier before exiting.
//     mode 1: the same without the first cluster_sync (mapping another block before it may have started).
//     mode 2: rank 0 exits after the exchange; the others wait at one more barrier, then read rank 0's memory.
//     mode 3: maps rank cluster_size() (outside the cluster).
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(64) selftest_cluster_exchange(int* out, int mode)
{
    DYNAMIC_SHARED(int, slots);
    unsigned rank = cluster_rank(), n = cluster_size();
    if (mode != 1) cluster_sync();
    if (mode == 3 && threadIdx.x == 0) cluster_map(slots, n)[0] = 1;
    if (threadIdx.x < n) cluster_map(slots, threadIdx.x)[rank] = (int)blockIdx.x + 1;
    cluster_sync();
    if (mode == 2)
    {
        if (rank == 0) return;
        cluster_sync();
        if (threadIdx.x == 0) out[blockIdx.x] = cluster_map(slots, 0)[0];
        return;
    }
    if (threadIdx.x == 0)
    {
        int sum = 0;
        for (unsigned r = 0; r < n; r++) sum += slots[r];
        out[blockIdx.x] = sum;
    }
    cluster_sync();
}
