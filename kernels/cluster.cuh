// cluster.cuh — what the thread-block cluster kernels share (rnn_cluster.cu, gated_cluster.cu): the step's products
// from the state rows every block of a cluster holds, their fixed-order sum, and the push of a value into every block's
// copy of the next state (distributed shared memory). See rnn_cluster.cu for the design.
#ifndef CHARRNN_CLUSTER_CUH
#define CHARRNN_CLUSTER_CUH

#include "common.cuh"

// Outputs (rows × columns of a step) per thread whose operands a cluster kernel keeps in registers across the steps:
// a block has at most CLUSTER_OUTS × its threads outputs (ClusterRecurrence refuses shapes that need more).
#define CLUSTER_OUTS 4

// red[s·O + o] = Σ_{k in range s of split} x[b·K + k]·w[k·outs + m] for o = b·outs + m, O = rows·outs: each of the
// rows × outs products of length K cut into `split` contiguous ranges, one thread each, four interleaved chains
// combined as (0 + 1) + (2 + 3): a fixed order, the same bits on every run. x and w in shared memory (x is the state
// every block of the cluster holds whole, w this block's slice of the weights). Ends with a barrier: red complete.
static __device__ __forceinline__ void cluster_products(const float* x, int K, const float* w, int outs, float* red,
                                                        int rows, int split)
{
    int O = rows * outs;
    for (int i = threadIdx.x; i < O * split; i += blockDim.x)
    {
        int o = i % O, s = i / O, b = o / outs, m = o - b * outs;
        int a0 = K * s / split, a1 = K * (s + 1) / split;
        const float* xr = x + b * K;
        const float* wk = w + m;
        float acc0 = 0.0f, acc1 = 0.0f, acc2 = 0.0f, acc3 = 0.0f;
        int k = a0;
        for (; k + 3 < a1; k += 4)
        {
            acc0 = fmaf(xr[k], wk[k * outs], acc0);
            acc1 = fmaf(xr[k + 1], wk[(k + 1) * outs], acc1);
            acc2 = fmaf(xr[k + 2], wk[(k + 2) * outs], acc2);
            acc3 = fmaf(xr[k + 3], wk[(k + 3) * outs], acc3);
        }
        for (; k < a1; k++) acc0 = fmaf(xr[k], wk[k * outs], acc0);
        red[i] = (acc0 + acc1) + (acc2 + acc3);
    }
    __syncthreads();
}

// Product o's total: its ranges added in order.
static __device__ __forceinline__ float cluster_sum(const float* red, int o, int O, int split)
{
    float acc = red[o];
    for (int s = 1; s < split; s++) acc += red[s * O + o];
    return acc;
}

// v into element i of `buf` in every block of the cluster (this one included).
static __device__ __forceinline__ void cluster_push(float* buf, int i, float v, unsigned C)
{
    for (unsigned r = 0; r < C; r++) cluster_map(buf, r)[i] = v;
}

#endif
