// reduce.cu — column sums (bias gradients) and row argmax (greedy generation).
//
// column_sum(src[rows×ld], rows, cols, ld, dst[cols])
//     dst[c] = Σ_r src[r·ld + c] for c < cols (src may be a column range of a wider matrix, ld its row stride).
//     A block takes 32 columns; its 8 row groups (threadIdx.x / 32) sum rows g, g + 8, g + 16, … in order, then the
//     8 partial sums are added in group order: deterministic, 8× the parallelism of one thread per column, warps
//     reading 32 consecutive floats of a row. Launch: ceil(cols/32) blocks × 256 threads.
// argmax_rows(logits[rows×cols], bias[cols], rows, cols, out[rows])
//     out[r] = argmax_c (logits[r, c] + bias[c]); ties go to the smallest c (like torch.argmax on CPU).
//     Launch: one block per row, 256 threads; shared-memory (value, index) tree reduction.

#include "common.cuh"

#define SUM_COLS 32
#define SUM_GROUPS (THREADS / SUM_COLS)

extern "C" __global__ void __launch_bounds__(THREADS)
column_sum(const float* __restrict__ src, int rows, int cols, int ld, float* __restrict__ dst)
{
    __shared__ float part[SUM_GROUPS][SUM_COLS];
    int j = threadIdx.x % SUM_COLS, g = threadIdx.x / SUM_COLS, c = blockIdx.x * SUM_COLS + j;
    float s = 0.0f;
    if (c < cols)
        for (int r = g; r < rows; r += SUM_GROUPS) s += src[(long long)r * ld + c];
    part[g][j] = s;
    __syncthreads();
    if (g == 0 && c < cols)
    {
        float t = part[0][j];
        for (int k = 1; k < SUM_GROUPS; k++) t += part[k][j];
        dst[c] = t;
    }
}

extern "C" __global__ void __launch_bounds__(THREADS)
argmax_rows(const float* __restrict__ logits, const float* __restrict__ bias, int rows, int cols, int* __restrict__ out)
{
    __shared__ float sv[THREADS];
    __shared__ int si[THREADS];
    int r = blockIdx.x;
    if (r >= rows) return;
    float best = NEG_INF;
    int bi = cols; // "none yet"
    for (int c = threadIdx.x; c < cols; c += THREADS)
    {
        float v = logits[(long long)r * cols + c] + bias[c];
        if (v > best || bi == cols) { best = v; bi = c; }
    }
    sv[threadIdx.x] = best;
    si[threadIdx.x] = bi;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1)
    {
        if (threadIdx.x < s)
        {
            float v = sv[threadIdx.x + s];
            int i = si[threadIdx.x + s];
            if (i < cols && (si[threadIdx.x] == cols || v > sv[threadIdx.x] || (v == sv[threadIdx.x] && i < si[threadIdx.x])))
            {
                sv[threadIdx.x] = v;
                si[threadIdx.x] = i;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) out[r] = si[0] == cols ? 0 : si[0];
}
