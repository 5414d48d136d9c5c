// selftest_coop_kernels.cu — kernels for selftest.cpp's cooperative-launch cases (CharRnn never loads them).
//
// Cooperative launches (every block resident at once; see common.cuh's grid_barrier).
// selftest_grid_exchange(data[blocks], state[2], out[blocks], barrier)
//     Block b writes b + 1 into data[b], passes a grid barrier (when `barrier`), then reads its neighbour's data[b+1]
//     into out[b]; each block also keeps its index in its dynamic shared memory across the barrier and checks it
//     (out[b] = −2 if another block's value is found there). Without the barrier the neighbour may not have written yet.
// selftest_grid_deadlock(state[2])
//     Every block but block 0 waits at a grid barrier that block 0 never reaches.
// selftest_spin_outside_cooperative()
//     Spin-waits (__nanosleep) in an ordinary launch.

#include "common.cuh"

extern "C" __global__ void __launch_bounds__(64) selftest_grid_exchange(int* data, unsigned* state, int* out, int barrier)
{
    DYNAMIC_SHARED(int, mine);
    int b = blockIdx.x, n = gridDim.x;
    if (threadIdx.x == 0)
    {
        data[b] = b + 1;
        mine[0] = b;
    }
    if (barrier) grid_barrier(state);
    if (threadIdx.x == 0) out[b] = mine[0] != b ? -2 : __ldcg(&data[(b + 1) % n]);
}

extern "C" __global__ void __launch_bounds__(64) selftest_grid_deadlock(unsigned* state)
{
    if (blockIdx.x != 0) grid_barrier(state);
}

extern "C" __global__ void selftest_spin_outside_cooperative() { __nanosleep(10); }
