// selftest_kernels.cu — deliberately wrong kernels, built into the emulator for selftest.cpp only (CharRnn never loads
// them): they prove that the emulator exposes a missing barrier and an order-dependent race.
//
// selftest_sum_missing_barrier(in[256], out[1])
//     out[0] = Σ in — a shared-memory tree reduction with the __syncthreads() inside the loop left out.
//     Launch: one block of 256 threads.
// selftest_last_writer(out[1])
//     Every thread writes its global index to out[0]: the value left depends on the order threads run in.
//     Launch: any grid, any block.

#define N 256

extern "C" __global__ void __launch_bounds__(N) selftest_sum_missing_barrier(const float* in, float* out)
{
    __shared__ float sh[N];
    sh[threadIdx.x] = in[threadIdx.x];
    __syncthreads();
    for (int s = N / 2; s > 0; s >>= 1)
    {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        // (the barrier belongs here)
    }
    if (threadIdx.x == 0) out[0] = sh[0];
}

extern "C" __global__ void selftest_last_writer(int* out) { out[0] = blockIdx.x * blockDim.x + threadIdx.x; }
