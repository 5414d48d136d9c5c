// step.cu — a training step's bookkeeping on the device, so that a step captured once (a CUDA graph) can be replayed
// for every minibatch with nothing from the host but the launch.
//
// The step counters: 4 ints on the device, [minibatch in the epoch, run minibatch (low 32 bits), run minibatch (high),
// optimizer steps taken] (StepCounters on the host; load_u64/store_u64 join the halves). The host sets them when they differ from what it expects (an epoch's start, a resume);
// otherwise each step advances them itself.
//
// select_minibatch(counters[4], epoch_x[count × n], epoch_y[count × n], n, x[n], y[n])
//     x, y = minibatch counters[0] of the epoch's uploaded inputs and labels (n = T·B tokens each), into the buffers
//     the step reads. Launch: 1-D grid-stride over n, 256 threads.
// step_advance(counters[4])
//     Every counter + 1 (the run minibatch as one 64-bit number). Launch: one block of one thread.

#include "common.cuh"

extern "C" __global__ void select_minibatch(const int* __restrict__ counters, const int* __restrict__ epoch_x,
                                            const int* __restrict__ epoch_y, int n, int* __restrict__ x, int* __restrict__ y)
{
    long long first = (long long)counters[0] * n;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    {
        x[i] = epoch_x[first + i];
        y[i] = epoch_y[first + i];
    }
}

extern "C" __global__ void step_advance(int* counters)
{
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    counters[0] += 1;
    store_u64(counters + 1, load_u64(counters + 1) + 1);
    counters[3] += 1;
}
