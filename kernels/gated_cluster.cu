// gated_cluster.cu — the LSTM's and the (PyTorch) GRU's whole recurrence in one launch per direction inside Hopper
// thread-block clusters (sm_90), the design of rnn_cluster.cu: block r of a cluster of C owns hidden units
// [r·cols, (r+1)·cols), cols = H / C, and keeps the columns of W_hh its units' gates need (all G gates) in shared
// memory for all T steps; every block holds the cluster's whole state rows (H_t forward; the G·H-wide recurrent
// gradient backward), each step's new values are pushed into every block's copy through distributed shared memory,
// one barrier.cluster a step, double-buffered. Cluster q owns batch rows [q·rows, (q+1)·rows).
//
// The gate math is gates.cu's, in the same association (the per-step path's GEMM result is product + operand, which
// is the kernels' operand + product: float addition commutes), so the two paths agree to the GEMMs' summation order.
// Buffers are the per-step path's, so either path's backward runs after either path's forward.
//
// lstm_forward_cluster(pre[T·B×4H], bx, bh or null, wh[H×4H], B, H, T, rows, split, gates[T·B×4H], cs[(T+1)·B×H], hs[(T+1)·B×H])
//     per step: the four gates' pre-activations pre_t + H_t·W_hh, then lstm_forward's math; rows [0, B) of cs and hs
//     hold C_0 and H_0. Shared: 4H·cols (W_hh[:, g·H + own]) + 2·rows·H + split·rows·4·cols floats.
// lstm_backward_cluster(dh[T·B×H], gates, cs, wh, B, H, T, rows, split, dpre[T·B×4H], dh0 or null, dc0 or null)
//     per step t = T−1…0: dH_t + dPre_{t+1}·W_hhᵀ (not at T−1), then lstm_backward's math with the carried dC (zero at
//     T−1); dH_0 = dPre_0·W_hhᵀ and dC_0 when dh0 is given. Shared: 4H·cols (W_hh[own, :]) + 2·rows·4H + split·rows·cols
//     + rows·cols (the carried dC) floats.
// gru_forward_cluster(xpre[T·B×3H], bx, bh or null, wh[H×3H], B, H, T, rows, split, hproj[T·B×3H], gates[T·B×3H], hs)
//     per step: hproj_t = H_t·W_hh (all three gates), then gru_forward's math. Shared as lstm with 3 for 4.
// gru_backward_cluster(dh, gates, hproj, bh or null, hs, wh, B, H, T, rows, split, dxpre, dhproj, dh0 or null)
//     per step t = T−1…0: (dH_t + z_{t+1}·dh_{t+1}) + dHProj_{t+1}·W_hhᵀ (only dH_t at T−1), then gru_backward's math;
//     dH_0 = (0 + z_0·dh_0) + dHProj_0·W_hhᵀ when dh0 is given. Shared: 3H·cols + 2·rows·3H + split·rows·cols +
//     rows·cols (the carried z·dh) floats.
// Launch: cuLaunchKernelEx with a cluster dimension C, grid (B / rows)·C, up to 256 threads; H a multiple of C.

#include "cluster.cuh"

// w[k·(G·cols) + g·cols + j] = W_hh[k, g·H + c0 + j]: the forward's slice (W_hh is H × G·H).
static __device__ __forceinline__ void load_forward_slice(float* w, const float* wh, int G, int H, int cols, int c0)
{
    for (int i = threadIdx.x; i < G * H * cols; i += blockDim.x)
    {
        int k = i / (G * cols), m = i - k * (G * cols), g = m / cols, j = m - g * cols;
        w[i] = wh[(long long)k * G * H + g * H + c0 + j];
    }
}

// w[k·cols + j] = W_hh[c0 + j, k] for k < G·H: the backward's slice (columns of W_hhᵀ), read along rows of W_hh.
static __device__ __forceinline__ void load_backward_slice(float* w, const float* wh, int G, int H, int cols, int c0)
{
    for (int i = threadIdx.x; i < G * H * cols; i += blockDim.x)
    {
        int j = i / (G * H), k = i - j * (G * H);
        w[k * cols + j] = wh[(long long)(c0 + j) * G * H + k];
    }
}

extern "C" __global__ void __launch_bounds__(THREADS)
lstm_forward_cluster(const float* __restrict__ pre, const float* __restrict__ bx, const float* __restrict__ bh,
                     const float* __restrict__ wh, int B, int H, int T, int rows, int split, float* gates, float* cs,
                     float* hs)
{
    DYNAMIC_SHARED(float, w);
    unsigned C = cluster_size(), rank = cluster_rank();
    int cols = H / (int)C, c0 = (int)rank * cols, row0 = (int)(blockIdx.x / C) * rows, O = rows * cols, O4 = 4 * O;
    float* xs = w + 4 * H * cols; // two buffers of rows × H: H_t
    float* red = xs + 2 * rows * H;
    load_forward_slice(w, wh, 4, H, cols, c0);
    for (int i = threadIdx.x; i < rows * H; i += blockDim.x) xs[i] = hs[(long long)row0 * H + i];
    // In registers across the steps, per output of this thread: the four biases (b_x + b_h, as lstm_forward adds
    // them), the cell state, and the step's four input products, the next step's loaded before the barrier.
    float bias[4 * CLUSTER_OUTS], cell[CLUSTER_OUTS], pp[4 * CLUSTER_OUTS];
#pragma unroll
    for (int m = 0; m < CLUSTER_OUTS; m++)
    {
        int o = threadIdx.x + m * blockDim.x;
        if (o >= O) continue;
        int b = o / cols, c = c0 + (o - b * cols);
        long long row = (long long)row0 + b;
#pragma unroll
        for (int g = 0; g < 4; g++)
        {
            bias[4 * m + g] = bx[g * H + c];
            if (bh != 0) bias[4 * m + g] += bh[g * H + c];
            pp[4 * m + g] = pre[row * 4 * H + g * H + c];
        }
        cell[m] = cs[row * H + c];
    }
    cluster_sync();
    for (int t = 0; t < T; t++)
    {
        float* cur = xs + (t & 1) * rows * H;
        float* nxt = xs + ((t + 1) & 1) * rows * H;
        cluster_products(cur, H, w, 4 * cols, red, rows, split);
#pragma unroll
        for (int m = 0; m < CLUSTER_OUTS; m++)
        {
            int o = threadIdx.x + m * blockDim.x;
            if (o >= O) continue;
            int b = o / cols, j = o - b * cols, c = c0 + j;
            long long row = (long long)t * B + row0 + b, e = row * H + c;
            int q = b * 4 * cols + j; // gate g's product: q + g·cols
            float si = pp[4 * m] + cluster_sum(red, q, O4, split), sf = pp[4 * m + 1] + cluster_sum(red, q + cols, O4, split);
            float sg = pp[4 * m + 2] + cluster_sum(red, q + 2 * cols, O4, split), so = pp[4 * m + 3] + cluster_sum(red, q + 3 * cols, O4, split);
            float i = sigmoidf_(si + bias[4 * m]), f = sigmoidf_(sf + bias[4 * m + 1]);
            float g = tanhf(sg + bias[4 * m + 2]), og = sigmoidf_(so + bias[4 * m + 3]);
            float cv = f * cell[m] + i * g;
            float h = og * tanhf(cv);
            cell[m] = cv;
            cs[e + (long long)B * H] = cv;
            hs[e + (long long)B * H] = h;
            float* gt = gates + row * 4 * H;
            gt[c] = i; gt[H + c] = f; gt[2 * H + c] = g; gt[3 * H + c] = og;
            cluster_push(nxt, b * H + c, h, C);
            if (t + 1 < T)
            {
                const float* p = pre + (row + B) * 4 * H;
#pragma unroll
                for (int k = 0; k < 4; k++) pp[4 * m + k] = p[k * H + c];
            }
        }
        cluster_sync();
    }
}

extern "C" __global__ void __launch_bounds__(THREADS)
lstm_backward_cluster(const float* __restrict__ dh, const float* __restrict__ gates, const float* __restrict__ cs,
                      const float* __restrict__ wh, int B, int H, int T, int rows, int split, float* dpre, float* dh0,
                      float* dc0)
{
    DYNAMIC_SHARED(float, w);
    unsigned C = cluster_size(), rank = cluster_rank();
    int cols = H / (int)C, c0 = (int)rank * cols, row0 = (int)(blockIdx.x / C) * rows, O = rows * cols;
    float* xs = w + 4 * H * cols; // two buffers of rows × 4H: dPre_{t+1}
    float* red = xs + 2 * rows * 4 * H;
    float* dcs = red + split * O; // the carried dC of this block's outputs
    load_backward_slice(w, wh, 4, H, cols, c0);
    cluster_sync();
    for (int t = T - 1; t >= 0; t--)
    {
        float* mine = xs + (t & 1) * rows * 4 * H;
        float* later = xs + ((t + 1) & 1) * rows * 4 * H;
        if (t < T - 1) cluster_products(later, 4 * H, w, cols, red, rows, split);
        for (int o = threadIdx.x; o < O; o += blockDim.x)
        {
            int b = o / cols, c = c0 + (o - b * cols);
            long long row = (long long)t * B + row0 + b, e = row * H + c;
            float d = dh[e];
            if (t < T - 1) d += cluster_sum(red, o, O, split);
            const float* gt = gates + row * 4 * H;
            float i = gt[c], f = gt[H + c], g = gt[2 * H + c], og = gt[3 * H + c];
            float tc = tanhf(cs[e + (long long)B * H]);
            float dct = (t < T - 1 ? dcs[o] : 0.0f) + d * og * (1.0f - tc * tc);
            float di = dct * g * i * (1.0f - i), df = dct * cs[e] * f * (1.0f - f);
            float dg = dct * i * (1.0f - g * g), dO = d * tc * og * (1.0f - og);
            float* dp = dpre + row * 4 * H;
            dp[c] = di; dp[H + c] = df; dp[2 * H + c] = dg; dp[3 * H + c] = dO;
            dcs[o] = dct * f;
            int m = b * 4 * H + c;
            cluster_push(mine, m, di, C);
            cluster_push(mine, m + H, df, C);
            cluster_push(mine, m + 2 * H, dg, C);
            cluster_push(mine, m + 3 * H, dO, C);
        }
        cluster_sync();
    }
    if (dh0 != 0)
    {
        cluster_products(xs, 4 * H, w, cols, red, rows, split); // buffer 0: dPre_0
        for (int o = threadIdx.x; o < O; o += blockDim.x)
        {
            int b = o / cols, c = c0 + (o - b * cols);
            dh0[(long long)(row0 + b) * H + c] = cluster_sum(red, o, O, split);
            if (dc0 != 0) dc0[(long long)(row0 + b) * H + c] = dcs[o];
        }
    }
}

extern "C" __global__ void __launch_bounds__(THREADS)
gru_forward_cluster(const float* __restrict__ xpre, const float* __restrict__ bx, const float* __restrict__ bh,
                    const float* __restrict__ wh, int B, int H, int T, int rows, int split, float* hproj, float* gates,
                    float* hs)
{
    DYNAMIC_SHARED(float, w);
    unsigned C = cluster_size(), rank = cluster_rank();
    int cols = H / (int)C, c0 = (int)rank * cols, row0 = (int)(blockIdx.x / C) * rows, O = rows * cols, O3 = 3 * O;
    float* xs = w + 3 * H * cols;
    float* red = xs + 2 * rows * H;
    load_forward_slice(w, wh, 3, H, cols, c0);
    for (int i = threadIdx.x; i < rows * H; i += blockDim.x) xs[i] = hs[(long long)row0 * H + i];
    // In registers across the steps, per output of this thread: the hidden biases, and the step's x + b_x of the three
    // gates (gru_forward's first addition, which needs no product), the next step's loaded before the barrier.
    float hb[3 * CLUSTER_OUTS], xb[3 * CLUSTER_OUTS];
#pragma unroll
    for (int m = 0; m < CLUSTER_OUTS; m++)
    {
        int o = threadIdx.x + m * blockDim.x;
        if (o >= O) continue;
        int b = o / cols, c = c0 + (o - b * cols);
        const float* x = xpre + ((long long)row0 + b) * 3 * H;
#pragma unroll
        for (int g = 0; g < 3; g++)
        {
            hb[3 * m + g] = bh != 0 ? bh[g * H + c] : 0.0f;
            xb[3 * m + g] = x[g * H + c] + bx[g * H + c];
        }
    }
    cluster_sync();
    for (int t = 0; t < T; t++)
    {
        float* cur = xs + (t & 1) * rows * H;
        float* nxt = xs + ((t + 1) & 1) * rows * H;
        cluster_products(cur, H, w, 3 * cols, red, rows, split);
#pragma unroll
        for (int m = 0; m < CLUSTER_OUTS; m++)
        {
            int o = threadIdx.x + m * blockDim.x;
            if (o >= O) continue;
            int b = o / cols, j = o - b * cols, c = c0 + j;
            long long row = (long long)t * B + row0 + b;
            int q = b * 3 * cols + j;
            float ur = cluster_sum(red, q, O3, split), uz = cluster_sum(red, q + cols, O3, split), un = cluster_sum(red, q + 2 * cols, O3, split);
            float* u = hproj + row * 3 * H;
            u[c] = ur; u[H + c] = uz; u[2 * H + c] = un;
            float rg = sigmoidf_(xb[3 * m] + ur + hb[3 * m]);
            float z = sigmoidf_(xb[3 * m + 1] + uz + hb[3 * m + 1]);
            float nn = tanhf(xb[3 * m + 2] + rg * (un + hb[3 * m + 2]));
            float h = (1.0f - z) * nn + z * cur[b * H + c];
            if (t + 1 < T)
            {
                const float* x = xpre + (row + B) * 3 * H;
#pragma unroll
                for (int g = 0; g < 3; g++) xb[3 * m + g] = x[g * H + c] + bx[g * H + c];
            }
            hs[(row + B) * H + c] = h;
            float* gt = gates + row * 3 * H;
            gt[c] = rg; gt[H + c] = z; gt[2 * H + c] = nn;
            cluster_push(nxt, b * H + c, h, C);
        }
        cluster_sync();
    }
}

extern "C" __global__ void __launch_bounds__(THREADS)
gru_backward_cluster(const float* __restrict__ dh, const float* __restrict__ gates, const float* __restrict__ hproj,
                     const float* __restrict__ bh, const float* __restrict__ hs, const float* __restrict__ wh, int B,
                     int H, int T, int rows, int split, float* dxpre, float* dhproj, float* dh0)
{
    DYNAMIC_SHARED(float, w);
    unsigned C = cluster_size(), rank = cluster_rank();
    int cols = H / (int)C, c0 = (int)rank * cols, row0 = (int)(blockIdx.x / C) * rows, O = rows * cols;
    float* xs = w + 3 * H * cols; // two buffers of rows × 3H: dHProj_{t+1}
    float* red = xs + 2 * rows * 3 * H;
    float* carry = red + split * O; // z_{t+1}·dh_{t+1} of this block's outputs
    load_backward_slice(w, wh, 3, H, cols, c0);
    cluster_sync();
    for (int t = T - 1; t >= 0; t--)
    {
        float* mine = xs + (t & 1) * rows * 3 * H;
        float* later = xs + ((t + 1) & 1) * rows * 3 * H;
        if (t < T - 1) cluster_products(later, 3 * H, w, cols, red, rows, split);
        for (int o = threadIdx.x; o < O; o += blockDim.x)
        {
            int b = o / cols, c = c0 + (o - b * cols);
            long long row = (long long)t * B + row0 + b, e = row * H + c;
            float d = dh[e];
            if (t < T - 1) d = (d + carry[o]) + cluster_sum(red, o, O, split);
            const float* gt = gates + row * 3 * H;
            float rg = gt[c], z = gt[H + c], nn = gt[2 * H + c];
            float hn = hproj[row * 3 * H + 2 * H + c] + (bh != 0 ? bh[2 * H + c] : 0.0f);
            float dn = d * (1.0f - z) * (1.0f - nn * nn);
            float dz = d * (hs[e] - nn) * z * (1.0f - z);
            float dr = dn * hn * rg * (1.0f - rg);
            float* dx = dxpre + row * 3 * H;
            float* du = dhproj + row * 3 * H;
            dx[c] = dr; dx[H + c] = dz; dx[2 * H + c] = dn;
            du[c] = dr; du[H + c] = dz; du[2 * H + c] = dn * rg;
            carry[o] = d * z;
            int m = b * 3 * H + c;
            cluster_push(mine, m, dr, C);
            cluster_push(mine, m + H, dz, C);
            cluster_push(mine, m + 2 * H, dn * rg, C);
        }
        cluster_sync();
    }
    if (dh0 != 0)
    {
        cluster_products(xs, 3 * H, w, cols, red, rows, split); // buffer 0: dHProj_0
        for (int o = threadIdx.x; o < O; o += blockDim.x)
        {
            int b = o / cols, c = c0 + (o - b * cols);
            dh0[(long long)(row0 + b) * H + c] = (0.0f + carry[o]) + cluster_sum(red, o, O, split);
        }
    }
}
