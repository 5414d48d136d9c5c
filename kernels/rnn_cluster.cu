// rnn_cluster.cu — a plain (tanh/relu) RNN layer's whole recurrence in one launch per direction, inside Hopper
// thread-block clusters (sm_90): the second design of the persistent recurrence (rnn_persistent.cu is the first).
//
// Why: the grid kernel restages all of H_t from global memory in every block and crosses a grid barrier (atomics and
// L2 round trips) every step. In a cluster the blocks share one GPC: each block keeps its slice of W_hh in shared
// memory for all T steps AND a full copy of the state rows it needs, each step's new state slice is pushed straight
// into every block's copy through distributed shared memory, and one barrier.cluster (a hardware barrier) ends the
// step. Clusters are independent: cluster q owns batch rows [q·rows, (q+1)·rows), so there is no grid-wide barrier
// and no need for all clusters to be resident at once.
//
// Block r of a cluster of C blocks owns hidden columns [r·cols, (r+1)·cols), cols = H / C.
//
// rnn_forward_cluster(pre[T·B×H], b1[H], b2[H] or null, wh[H×H], B, H, T, act, rows, split, hs[(T+1)·B×H])
//     for t = 0…T−1: H_{t+1} = act(pre_t + H_t·W_hh + b1 (+ b2)) into rows [(t+1)·B, (t+2)·B) of hs (rows [0, B) hold
//     H_0); pre read only; act 0 = tanh, 1 = relu. Shared memory: H·cols (W_hh[:, own columns]) + 2·rows·H (the state,
//     double-buffered) + split·rows·cols floats (partial sums).
// rnn_backward_cluster(dh[T·B×H], hs[(T+1)·B×H], wh[H×H], B, H, T, act, rows, split, dpre[T·B×H], dh0[B×H] or null)
//     for t = T−1…0: dPre_t = (dH_t + dPre_{t+1}·W_hhᵀ) ⊙ act′(H_{t+1}), without the recurrent term at t = T−1; then,
//     when dh0 is given, dH_0 = dPre_0·W_hhᵀ. dh read only. Shared memory as forward (W_hh[own rows, :] transposed).
// The same sums in the same association as the per-step path's elementwise kernels around a GEMM:
// ((pre + H·W) + b1) + b2 and (dH + dPre·Wᵀ)·act′. Each product is split into `split` contiguous k ranges summed by
// one thread each (four interleaved chains) and added in a fixed order: the same bits on every run, no atomics.
// Launch: cuLaunchKernelEx with a cluster dimension C (8 portable, 16 with the non-portable opt-in), grid (B / rows)·C,
// up to 256 threads; H a multiple of C, B a multiple of rows, rows·cols ≤ CLUSTER_OUTS·threads (cluster.cuh: each
// thread keeps its outputs' operands in registers). The loops stride by blockDim.x.
//
// Double buffering makes one barrier a step enough: step t reads buffer t & 1 and writes buffer (t + 1) & 1 in every
// block; a block writes a buffer again only after the barrier that every reader of its last contents has reached.

#include "cluster.cuh"

extern "C" __global__ void __launch_bounds__(THREADS)
rnn_forward_cluster(const float* __restrict__ pre, const float* __restrict__ b1, const float* __restrict__ b2,
                    const float* __restrict__ wh, int B, int H, int T, int act, int rows, int split, float* hs)
{
    DYNAMIC_SHARED(float, w); // w[k·cols + j] = W_hh[k, c0 + j]
    unsigned C = cluster_size(), rank = cluster_rank();
    int cols = H / (int)C, c0 = (int)rank * cols, row0 = (int)(blockIdx.x / C) * rows, O = rows * cols;
    float* xs = w + H * cols; // two buffers of rows × H: the state H_t of this cluster's rows
    float* red = xs + 2 * rows * H;
    for (int i = threadIdx.x; i < H * cols; i += blockDim.x)
    {
        int k = i / cols, j = i - k * cols;
        w[i] = wh[(long long)k * H + c0 + j];
    }
    for (int i = threadIdx.x; i < rows * H; i += blockDim.x) xs[i] = hs[(long long)row0 * H + i]; // H_0
    // A thread's outputs keep their biases and the step's pre-activation in registers; the next step's pre-activations
    // are loaded before the barrier, so their global-memory latency hides behind it.
    float pf[CLUSTER_OUTS], c1[CLUSTER_OUTS], c2[CLUSTER_OUTS];
#pragma unroll
    for (int m = 0; m < CLUSTER_OUTS; m++)
    {
        int o = threadIdx.x + m * blockDim.x;
        if (o >= O) continue;
        int b = o / cols, c = c0 + (o - b * cols);
        c1[m] = b1[c];
        c2[m] = b2 != 0 ? b2[c] : 0.0f;
        pf[m] = pre[((long long)row0 + b) * H + c];
    }
    cluster_sync(); // every block has started (its shared memory exists) before any writes to it
    for (int t = 0; t < T; t++)
    {
        float* cur = xs + (t & 1) * rows * H;
        float* nxt = xs + ((t + 1) & 1) * rows * H;
        cluster_products(cur, H, w, cols, red, rows, split);
#pragma unroll
        for (int m = 0; m < CLUSTER_OUTS; m++)
        {
            int o = threadIdx.x + m * blockDim.x;
            if (o >= O) continue;
            int b = o / cols, c = c0 + (o - b * cols);
            long long r = ((long long)t * B + row0 + b) * H + c;
            float s = pf[m] + cluster_sum(red, o, O, split);
            s += c1[m];
            if (b2 != 0) s += c2[m];
            float y = act == 0 ? tanhf(s) : fmaxf(s, 0.0f);
            hs[r + (long long)B * H] = y;
            cluster_push(nxt, b * H + c, y, C);
            if (t + 1 < T) pf[m] = pre[r + (long long)B * H];
        }
        cluster_sync(); // H_{t+1} complete in every block (and red free to reuse)
    }
}

extern "C" __global__ void __launch_bounds__(THREADS)
rnn_backward_cluster(const float* __restrict__ dh, const float* __restrict__ hs, const float* __restrict__ wh, int B,
                     int H, int T, int act, int rows, int split, float* dpre, float* dh0)
{
    DYNAMIC_SHARED(float, w); // w[k·cols + j] = W_hh[c0 + j, k]: column c0 + j of W_hhᵀ
    unsigned C = cluster_size(), rank = cluster_rank();
    int cols = H / (int)C, c0 = (int)rank * cols, row0 = (int)(blockIdx.x / C) * rows, O = rows * cols;
    float* xs = w + H * cols; // two buffers of rows × H: dPre_{t+1} of this cluster's rows
    float* red = xs + 2 * rows * H;
    for (int i = threadIdx.x; i < H * cols; i += blockDim.x)
    {
        int j = i / H, k = i - j * H; // consecutive threads read consecutive k of one row of W_hh
        w[k * cols + j] = wh[(long long)(c0 + j) * H + k];
    }
    // dH_t and H_{t+1} of a thread's outputs in registers, the next (earlier) step's loaded before the barrier.
    float pdh[CLUSTER_OUTS], py[CLUSTER_OUTS];
#pragma unroll
    for (int m = 0; m < CLUSTER_OUTS; m++)
    {
        int o = threadIdx.x + m * blockDim.x;
        if (o >= O) continue;
        int b = o / cols, c = c0 + (o - b * cols);
        long long r = ((long long)(T - 1) * B + row0 + b) * H + c;
        pdh[m] = dh[r];
        py[m] = hs[r + (long long)B * H];
    }
    cluster_sync();
    for (int t = T - 1; t >= 0; t--)
    {
        float* mine = xs + (t & 1) * rows * H;         // dPre_t, written by every block now
        float* later = xs + ((t + 1) & 1) * rows * H;  // dPre_{t+1}
        if (t < T - 1) cluster_products(later, H, w, cols, red, rows, split);
#pragma unroll
        for (int m = 0; m < CLUSTER_OUTS; m++)
        {
            int o = threadIdx.x + m * blockDim.x;
            if (o >= O) continue;
            int b = o / cols, c = c0 + (o - b * cols);
            long long r = ((long long)t * B + row0 + b) * H + c;
            float g = pdh[m];
            if (t < T - 1) g += cluster_sum(red, o, O, split);
            float y = py[m];
            float d = act == 0 ? g * (1.0f - y * y) : (y > 0.0f ? g : 0.0f);
            dpre[r] = d;
            cluster_push(mine, b * H + c, d, C);
            if (t > 0)
            {
                pdh[m] = dh[r - (long long)B * H];
                py[m] = hs[r];
            }
        }
        cluster_sync(); // dPre_t complete in every block
    }
    if (dh0 != 0)
    {
        cluster_products(xs, H, w, cols, red, rows, split); // buffer 0: dPre_0
        for (int o = threadIdx.x; o < O; o += blockDim.x)
        {
            int b = o / cols, c = c0 + (o - b * cols);
            dh0[(long long)(row0 + b) * H + c] = cluster_sum(red, o, O, split);
        }
    }
}
