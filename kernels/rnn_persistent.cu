// rnn_persistent.cu — a plain (tanh/relu) RNN layer's whole recurrence in one cooperative launch per direction, with
// the recurrent weights held in shared memory across the time steps (cuDNN's persistent RNN kernels; Diamos et al.,
// "Persistent RNNs", ICML 2016). The per-step path issues a GEMM and an elementwise kernel per step — 2·T launches per
// direction, each waiting on the one before — where this issues one.
//
// The H hidden columns are split among the blocks: block k owns columns [k·cols, (k+1)·cols) and keeps the slice of
// W_hh they need in its shared memory for the whole launch. A step reads the previous step's states (all columns,
// written by every block) from global memory around L1 (__ldcg), staged in shared memory a tile of kt columns at a
// time; a grid barrier ends each step.
//
// rnn_forward_persistent(pre[T·B×H], b1[H], b2[H] or null, wh[H×H], B, H, T, act, cols, split, kt, state[2], hs[(T+1)·B×H])
//     for t = 0…T−1: H_{t+1} = act(pre_t + H_t·W_hh + b1 (+ b2)) into rows [(t+1)·B, (t+2)·B) of hs (rows [0, B) hold
//     H_0); pre_t = rows [t·B, (t+1)·B) of pre (the input products), read only. act 0 = tanh, 1 = relu.
//     Shared memory: H·cols floats (W_hh[:, own columns]) + B·(kt+1) floats (the tile) + split·B·cols (partial sums).
// rnn_backward_persistent(dh[T·B×H], hs[(T+1)·B×H], wh[H×H], B, H, T, act, cols, split, kt, state[2], dpre[T·B×H], dh0[B×H] or null)
//     for t = T−1…0: dPre_t = (dH_t + dPre_{t+1}·W_hhᵀ) ⊙ act′(H_{t+1}), without the recurrent term at t = T−1; then,
//     when dh0 is given, dH_0 = dPre_0·W_hhᵀ. dh is read only. Shared memory: cols·H floats (W_hh[own rows, :],
//     transposed) + B·(kt+1) + split·B·cols floats.
// The same sums, in the same association, as the per-step path's elementwise kernels (bias_act_forward, act_backward)
// around a GEMM: ((pre + H·W) + b1) + b2 and (dH + dPre·Wᵀ)·act′. Each product H_t·W_hh[:, j] is split into `split`
// contiguous k ranges per tile summed by one thread each and added in a fixed order: the same bits on every run, no atomics (the
// GEMM's own order differs from cuBLAS's, so the two paths agree to rounding, not bit for bit).
// state: grid_barrier's counter (common.cuh: one atomic per block and step), zero before the first launch.
// Launch: cuLaunchCooperativeKernel, grid H / cols (all resident), up to 256 threads (whole warps, as many as the
// B·cols·split partial sums need); split ≥ 1 with B·cols·split ≤ 256 unless split = 1 (then a thread may take several
// outputs). Any block size works: every loop strides by blockDim.x.

#include "common.cuh"

// The recurrent products of one step, into red[s·O + o] for output o = b·cols + j (O = B·cols) and k range s:
// Σ_{k in range s} x[b·H + k]·w[k·cols + j]. x (B rows of H, written by every block) is staged through shared memory
// in tiles of kt columns — coalesced reads of each value once per block, where each thread reading its own k range from
// global memory would fetch the same rows over and over — into xs, rows kt + 1 apart (no bank conflicts between the
// rows a warp reads). Each tile's range s is cut into `split` contiguous parts, summed by one thread each (in four
// interleaved chains) and added to red tile after tile: a fixed order, the same bits on every run. Ends with a
// barrier, so red is complete.
static __device__ __forceinline__ void recurrent_partials(const float* x, const float* w, float* xs, float* red, int B,
                                                          int H, int cols, int split, int kt)
{
    int O = B * cols;
    for (int i = threadIdx.x; i < O * split; i += blockDim.x) red[i] = 0.0f;
    for (int k0 = 0; k0 < H; k0 += kt)
    {
        int len = H - k0 < kt ? H - k0 : kt;
        for (int i = threadIdx.x; i < B * len; i += blockDim.x)
        {
            int b = i / len, kk = i - b * len;
            xs[b * (kt + 1) + kk] = __ldcg(x + (long long)b * H + k0 + kk);
        }
        __syncthreads();
        for (int i = threadIdx.x; i < O * split; i += blockDim.x)
        {
            int o = i % O, s = i / O, b = o / cols, j = o - b * cols;
            int a0 = len * s / split, a1 = len * (s + 1) / split;
            const float* xr = xs + b * (kt + 1);
            const float* wk = w + (long long)k0 * cols + j;
            // Four independent chains (k mod 4), combined as (0 + 1) + (2 + 3): a quarter of the FMA latency of one
            // chain, in a fixed order.
            float acc0 = 0.0f, acc1 = 0.0f, acc2 = 0.0f, acc3 = 0.0f;
            int k = a0;
            for (; k + 3 < a1; k += 4)
            {
                acc0 = fmaf(xr[k], wk[k * cols], acc0);
                acc1 = fmaf(xr[k + 1], wk[(k + 1) * cols], acc1);
                acc2 = fmaf(xr[k + 2], wk[(k + 2) * cols], acc2);
                acc3 = fmaf(xr[k + 3], wk[(k + 3) * cols], acc3);
            }
            for (; k < a1; k++) acc0 = fmaf(xr[k], wk[k * cols], acc0);
            red[i] += (acc0 + acc1) + (acc2 + acc3);
        }
        __syncthreads();
    }
}

static __device__ __forceinline__ float recurrent_sum(const float* red, int o, int O, int split)
{
    float acc = red[o];
    for (int s = 1; s < split; s++) acc += red[s * O + o];
    return acc;
}

extern "C" __global__ void __launch_bounds__(THREADS)
rnn_forward_persistent(const float* __restrict__ pre, const float* __restrict__ b1, const float* __restrict__ b2,
                       const float* __restrict__ wh, int B, int H, int T, int act, int cols, int split,
                       int kt, unsigned* state, float* hs)
{
    DYNAMIC_SHARED(float, w); // w[k·cols + j] = W_hh[k, c0 + j]
    float* xs = w + H * cols;
    float* red = xs + B * (kt + 1);
    int c0 = blockIdx.x * cols, O = B * cols;
    for (int i = threadIdx.x; i < H * cols; i += blockDim.x)
    {
        int k = i / cols, j = i - k * cols;
        w[i] = wh[(long long)k * H + c0 + j];
    }
    __syncthreads();
    for (int t = 0; t < T; t++)
    {
        recurrent_partials(hs + (long long)t * B * H, w, xs, red, B, H, cols, split, kt);
        for (int o = threadIdx.x; o < O; o += blockDim.x)
        {
            int b = o / cols, c = c0 + (o - b * cols);
            long long r = ((long long)t * B + b) * H + c;
            float s = pre[r] + recurrent_sum(red, o, O, split);
            s += b1[c];
            if (b2 != 0) s += b2[c];
            hs[r + (long long)B * H] = act == 0 ? tanhf(s) : fmaxf(s, 0.0f);
        }
        grid_barrier(state); // H_{t+1} complete everywhere (and red free to reuse)
    }
}

extern "C" __global__ void __launch_bounds__(THREADS)
rnn_backward_persistent(const float* __restrict__ dh, const float* __restrict__ hs, const float* __restrict__ wh,
                        int B, int H, int T, int act, int cols, int split, int kt, unsigned* state, float* dpre, float* dh0)
{
    DYNAMIC_SHARED(float, w); // w[k·cols + j] = W_hh[c0 + j, k]: column c0 + j of W_hhᵀ
    float* xs = w + H * cols;
    float* red = xs + B * (kt + 1);
    int c0 = blockIdx.x * cols, O = B * cols;
    for (int i = threadIdx.x; i < H * cols; i += blockDim.x)
    {
        int j = i / H, k = i - j * H; // consecutive threads read consecutive k of one row of W_hh
        w[k * cols + j] = wh[(long long)(c0 + j) * H + k];
    }
    __syncthreads();
    for (int t = T - 1; t >= 0; t--)
    {
        if (t < T - 1) recurrent_partials(dpre + (long long)(t + 1) * B * H, w, xs, red, B, H, cols, split, kt);
        for (int o = threadIdx.x; o < O; o += blockDim.x)
        {
            int b = o / cols, c = c0 + (o - b * cols);
            long long r = ((long long)t * B + b) * H + c;
            float g = dh[r];
            if (t < T - 1) g += recurrent_sum(red, o, O, split);
            float y = hs[r + (long long)B * H];
            dpre[r] = act == 0 ? g * (1.0f - y * y) : (y > 0.0f ? g : 0.0f);
        }
        grid_barrier(state); // dPre_t complete everywhere
    }
    if (dh0 != 0)
    {
        recurrent_partials(dpre, w, xs, red, B, H, cols, split, kt);
        for (int o = threadIdx.x; o < O; o += blockDim.x)
        {
            int b = o / cols, c = c0 + (o - b * cols);
            dh0[(long long)b * H + c] = recurrent_sum(red, o, O, split);
        }
    }
}
