// dropout.cu — dropout between stacked layers (nn.RNN's `dropout`), reproducible: each element's keep/drop decision
// is a hash of (seed, counter, index), integer arithmetic only, so the CPU twin (CpuKernels.DropoutUniform) draws the
// very same mask, a resumed run redraws it from the run's minibatch count, and no generator state exists.
//
// dropout_forward(x[n], n, p, scale, seed, count[2], y[n], mask[n])
//     u = top 24 bits of splitmix64(seed + c·φ + i·K) / 2^24, in [0, 1), with c = the 64-bit count at `count`
//     ([low, high] 32-bit halves on the device: the run's minibatch, which a captured step advances itself);
//     mask[i] = u >= p ? scale : 0 (scale = 1/(1 − p), computed once on the host); y[i] = x[i]·mask[i].
// dropout_backward(dy[n], mask[n], n, dx[n])
//     dx = dy·mask (dx may be dy).
// Launch (both): 1-D grid-stride over n, 256 threads per block. Row-major float32.

#include "common.cuh"

static __device__ __forceinline__ float dropout_uniform(unsigned long long seed, unsigned long long counter, unsigned long long i)
{
    unsigned long long z = seed + counter * 0x9E3779B97F4A7C15ull + i * 0xD1B54A32D192ED03ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

extern "C" __global__ void dropout_forward(const float* __restrict__ x, int n, float p, float scale, unsigned long long seed,
                                           const int* __restrict__ count, float* __restrict__ y, float* __restrict__ mask)
{
    unsigned long long counter = load_u64(count);
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    {
        float m = dropout_uniform(seed, counter, (unsigned long long)i) >= p ? scale : 0.0f;
        mask[i] = m;
        y[i] = x[i] * m;
    }
}

extern "C" __global__ void dropout_backward(const float* dy, const float* __restrict__ mask, int n, float* dx)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) dx[i] = dy[i] * mask[i];
}
