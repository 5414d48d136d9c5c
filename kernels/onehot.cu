// onehot.cu — the input side of the char-RNN: onehot(X)·W_xh and its gradient.
//
// one_hot_scatter(tokens[n], n, V, out[n×V])
//     out[r, c] = (c == tokens[r]) ? 1 : 0. Writes every element (no memset needed first).
//     Launch: 1-D grid-stride over n·V elements, 256 threads per block.
// gather_rows(tokens[n], n, H, table[V×H], out[n×H])
//     out[r, :] = table[tokens[r], :]  — exactly onehot(tokens)·table, without the GEMM.
//     Launch: 1-D grid-stride over n·H elements, 256 threads per block.
// scatter_add_rows(tokens[n], n, H, src[n×H], V, table[V×H])
//     table[tokens[r], :] += src[r, :] for r = 0, 1, …, n-1 in that order — onehotᵀ·src without the GEMM.
//     Deterministic without atomics, and parallel over the table: block v owns table row v (grid-stride over V),
//     scans the tokens (staged through shared memory 256 at a time) and adds the matching rows of src in row order,
//     one thread per column — the same additions, in the same order, as the CPU's loop.
//     Launch: min(V, 65535) blocks × 256 threads.
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

extern "C" __global__ void __launch_bounds__(THREADS)
scatter_add_rows(const int* __restrict__ tokens, int n, int H, const float* __restrict__ src, int V, float* __restrict__ table)
{
    __shared__ int tok[THREADS];
    for (int v = blockIdx.x; v < V; v += gridDim.x)
        for (int c0 = 0; c0 < H; c0 += THREADS)
        {
            int c = c0 + threadIdx.x;
            float acc = c < H ? table[(long long)v * H + c] : 0.0f;
            for (int r0 = 0; r0 < n; r0 += THREADS)
            {
                __syncthreads(); // the previous chunk is no longer read
                if (r0 + threadIdx.x < n) tok[threadIdx.x] = tokens[r0 + threadIdx.x];
                __syncthreads();
                int m = n - r0 < THREADS ? n - r0 : THREADS;
                if (c < H)
                    for (int i = 0; i < m; i++)
                        if (tok[i] == v) acc += src[(long long)(r0 + i) * H + c];
            }
            if (c < H) table[(long long)v * H + c] = acc;
        }
}
