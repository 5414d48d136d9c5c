// onehot.cu — the input side of the char-RNN: onehot(X)·W_xh and its gradient.
//
// one_hot_scatter(tokens[n], n, V, out[n×V])
//     out[r, c] = (c == tokens[r]) ? 1 : 0. Writes every element (no memset needed first).
//     Launch: 1-D grid-stride over n·V elements, 256 threads per block.
// gather_rows(tokens[n], n, H, table[V×H], out[n×H])
//     out[r, :] = table[tokens[r], :]  — exactly onehot(tokens)·table, without the GEMM.
//     Launch: 1-D grid-stride over n·H elements, 256 threads per block.
// scatter_add_rows(tokens[n], n, H, src[n×H], table[V×H])
//     table[tokens[r], :] += src[r, :] for r = 0, 1, …, n-1 in that order — exactly onehotᵀ·src.
//     Deterministic without atomics: thread j owns column j and walks the rows in order.
//     Launch: ceil(H/256) blocks × 256 threads.
// All matrices row-major float32; token ids int32 in [0, V).

#include "common.cuh"

extern "C" __global__ void one_hot_scatter(const int* __restrict__ tokens, int n, int V, float* __restrict__ out)
{
    long long total = (long long)n * V;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
    {
        int r = (int)(i / V);
        int c = (int)(i - (long long)r * V);
        out[i] = tokens[r] == c ? 1.0f : 0.0f;
    }
}

extern "C" __global__ void gather_rows(const int* __restrict__ tokens, int n, int H,
                                       const float* __restrict__ table, float* __restrict__ out)
{
    long long total = (long long)n * H;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
    {
        int r = (int)(i / H);
        int c = (int)(i - (long long)r * H);
        out[i] = table[(long long)tokens[r] * H + c];
    }
}

extern "C" __global__ void scatter_add_rows(const int* __restrict__ tokens, int n, int H,
                                            const float* __restrict__ src, float* __restrict__ table)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= H) return;
    for (int r = 0; r < n; r++)
        table[(long long)tokens[r] * H + c] += src[(long long)r * H + c];
}
