// onehot.cu — the input side of the char-RNN: onehot(X)·W_xh and its gradient.
//
// one_hot_scatter(tokens[n], n, V, out[n×V])
//     out[r, c] = (c == tokens[r]) ? 1 : 0. Writes every element (no memset needed first).
//     Launch: 1-D grid-stride over n·V elements, 256 threads per block.
// gather_rows(tokens[n], n, H, table[V×H], out[n×H])
//     out[r, :] = table[tokens[r], :]  — exactly onehot(tokens)·table, without the GEMM.
//     Launch: 1-D grid-stride over n·H elements, 256 threads per block.
// token_row_order(tokens[n], n, V, order[2V+1+n])
//     Groups the token positions by token, each group in position order (a stable counting sort): order[0..V] =
//     start[v], the first slot of token v's group (start[V] = n); order[V+1 .. 2V] scratch; order[2V+1 ..] = pos, the
//     positions r, token 0's first. Integer atomics for the counts (their sum does not depend on the order); the
//     ranks within a group are counted chunk by chunk, in position order.
//     Launch: exactly one block of 256 threads.
// scatter_add_ordered(order, n, V, H, src[n×H], table[V×H])
//     table[v, c] += src[r, c] for the positions r of token v, in position order — onehotᵀ·src without the GEMM, the
//     same additions in the same order as the CPU's loop (so the same bits), no float atomics, O(n·H) work.
//     Launch: 1-D grid-stride over V·H elements, 256 threads per block.
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
token_row_order(const int* __restrict__ tokens, int n, int V, int* __restrict__ order)
{
    __shared__ int sh[THREADS];
    int* start = order;          // V + 1
    int* cursor = order + V + 1; // V
    int* pos = order + 2 * V + 1; // n
    for (int v = threadIdx.x; v <= V; v += THREADS) start[v] = 0;
    __syncthreads();
    for (int r = threadIdx.x; r < n; r += THREADS) atomicAdd(&start[tokens[r] + 1], 1);
    __syncthreads();
    // Exclusive scan of the counts: each thread sums a contiguous chunk, thread 0 scans the chunk sums.
    int per = (V + 1 + THREADS - 1) / THREADS, lo = threadIdx.x * per, hi = lo + per < V + 1 ? lo + per : V + 1;
    int sum = 0;
    for (int v = lo; v < hi; v++) sum += start[v];
    sh[threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.x == 0)
        for (int t = 0, acc = 0; t < THREADS; t++) { int c = sh[t]; sh[t] = acc; acc += c; }
    __syncthreads();
    for (int v = lo, acc = sh[threadIdx.x]; v < hi; v++) { acc += start[v]; start[v] = acc; }
    __syncthreads();
    for (int v = threadIdx.x; v < V; v += THREADS) cursor[v] = start[v];
    __syncthreads();
    // Place the positions chunk by chunk: within a chunk, a position's rank is the number of earlier ones with its token.
    for (int b = 0; b < n; b += THREADS)
    {
        int r = b + threadIdx.x, m = n - b < THREADS ? n - b : THREADS;
        int v = r < n ? tokens[r] : -1;
        sh[threadIdx.x] = v;
        __syncthreads();
        int rank = 0;
        bool last = true;
        for (int j = 0; j < m; j++)
            if (sh[j] == v)
            {
                if (j < (int)threadIdx.x) rank++;
                else if (j > (int)threadIdx.x) last = false;
            }
        if (r < n) pos[cursor[v] + rank] = r;
        __syncthreads(); // every thread has read cursor
        if (r < n && last) cursor[v] += rank + 1;
        __syncthreads();
    }
}

extern "C" __global__ void scatter_add_ordered(const int* __restrict__ order, int n, int V, int H, const float* __restrict__ src,
                                               float* __restrict__ table)
{
    const int* start = order;
    const int* pos = order + 2 * V + 1;
    long long total = (long long)V * H;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
    {
        int v = (int)(i / H), c = (int)(i - (long long)v * H);
        float acc = table[i];
        for (int j = start[v]; j < start[v + 1]; j++) acc += src[(long long)pos[j] * H + c];
        table[i] = acc;
    }
}
