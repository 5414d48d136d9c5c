// gates.cu — the fused per-step gate kernels of the GRU and LSTM cells (PyTorch's gate order i,f,g,o and r,z,n; PyTorch's GRU and the book's scratch GRU).
//
// Rows are batch rows of one time step (n = B); H hidden units; gate blocks side by side in columns, so element
// (row, gate k, unit j) of an (n × G·H) matrix is at row·G·H + k·H + j. Biases bx, bh are (G·H); bh may be null.
// Launch (all eight): 1-D grid-stride over n·H (row, unit) pairs, 256 threads per block. Row-major float32.
//
// lstm_forward(pre[n×4H], bx, bh, c_prev[n×H], n, H, gates[n×4H], c[n×H], h[n×H])
//     pre = x·W_x + h·W_h (no biases). i, f, o = σ(pre + b), g = tanh(pre + b); c = f·c_prev + i·g; h = o·tanh(c);
//     gates ← (i, f, g, o).
// lstm_backward(dh[n×H], dc[n×H], gates[n×4H], c_prev[n×H], c[n×H], n, H, dpre[n×4H])
//     dc holds d/dc_t from step t+1 on entry and d/dc_{t−1} on exit. With tc = tanh(c), dct = dc + dh·o·(1 − tc²):
//     dpre = (dct·g·i(1−i), dct·c_prev·f(1−f), dct·i·(1−g²), dh·tc·o(1−o)); dc ← dct·f.
// gru_forward(xpre[n×3H], hproj[n×3H], bx, bh, h_prev[n×H], n, H, gates[n×3H], h[n×H])
//     r = σ(x_r + bx_r + h_r + bh_r), z = σ(x_z + bx_z + h_z + bh_z), n = tanh(x_n + bx_n + r·(h_n + bh_n));
//     h = (1 − z)·n + z·h_prev; gates ← (r, z, n).
// gru_backward(dh[n×H], gates[n×3H], hproj[n×3H], bh, h_prev[n×H], n, H, dxpre[n×3H], dhproj[n×3H], dh_prev[n×H])
//     dn = dh(1−z)(1−n²), dz = dh(h_prev − n)z(1−z), dr = dn·(h_n + bh_n)·r(1−r);
//     dxpre = (dr, dz, dn); dhproj = (dr, dz, dn·r); dh_prev += dh·z.
//
// The book's scratch GRU (d2l 6.7): n = tanh(x·W_n + b_n + (r ⊙ h)·U_n) — r applied before the product.
// gru_reset_gates(xpre[n×3H], hproj[n×3H], bx, h_prev[n×H], n, H, gates[n×3H], rh[n×H])
//     hproj's r, z blocks = h·U (no bias). r = σ(x_r + b_r + h_r), z = σ(x_z + b_z + h_z) → gates; rh = r·h_prev.
// gru_candidate(xpre[n×3H], hproj[n×3H], bx, h_prev[n×H], n, H, gates[n×3H], h[n×H])
//     hproj's n block = rh·U_n. n = tanh(x_n + b_n + hproj_n) → gates; h = z·h_prev + (1 − z)·n.
// gru_candidate_backward(dh[n×H], gates[n×3H], h_prev[n×H], n, H, dxpre[n×3H], dhproj[n×3H], dh_prev[n×H])
//     z, n columns of dxpre and dhproj: dz = dh(h_prev − n)z(1−z), dn = dh(1−z)(1−n²); dh_prev += dh·z.
// gru_reset_backward(drh[n×H], gates[n×3H], h_prev[n×H], n, H, dxpre[n×3H], dhproj[n×3H], dh_prev[n×H])
//     drh = d/d(r·h_prev). r columns: drh·h_prev·r(1−r); dh_prev += drh·r.

#include "common.cuh"

// sigmoidf_: common.cuh (the cluster kernels use it too).

extern "C" __global__ void lstm_forward(const float* __restrict__ pre, const float* __restrict__ bx,
                                        const float* __restrict__ bh, const float* __restrict__ c_prev, int n, int H,
                                        float* __restrict__ gates, float* __restrict__ c, float* __restrict__ h)
{
    long long total = (long long)n * H;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total; e += (long long)gridDim.x * blockDim.x)
    {
        int r = (int)(e / H), j = (int)(e - (long long)r * H);
        const float* p = pre + (long long)r * 4 * H;
        float bi = bx[j], bf = bx[H + j], bg = bx[2 * H + j], bo = bx[3 * H + j];
        if (bh != 0) { bi += bh[j]; bf += bh[H + j]; bg += bh[2 * H + j]; bo += bh[3 * H + j]; }
        float i = sigmoidf_(p[j] + bi), f = sigmoidf_(p[H + j] + bf);
        float g = tanhf(p[2 * H + j] + bg), o = sigmoidf_(p[3 * H + j] + bo);
        float cv = f * c_prev[e] + i * g;
        c[e] = cv;
        h[e] = o * tanhf(cv);
        float* gt = gates + (long long)r * 4 * H;
        gt[j] = i; gt[H + j] = f; gt[2 * H + j] = g; gt[3 * H + j] = o;
    }
}

extern "C" __global__ void lstm_backward(const float* __restrict__ dh, float* __restrict__ dc,
                                         const float* __restrict__ gates, const float* __restrict__ c_prev,
                                         const float* __restrict__ c, int n, int H, float* __restrict__ dpre)
{
    long long total = (long long)n * H;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total; e += (long long)gridDim.x * blockDim.x)
    {
        int r = (int)(e / H), j = (int)(e - (long long)r * H);
        const float* gt = gates + (long long)r * 4 * H;
        float i = gt[j], f = gt[H + j], g = gt[2 * H + j], o = gt[3 * H + j];
        float tc = tanhf(c[e]);
        float d = dh[e];
        float dct = dc[e] + d * o * (1.0f - tc * tc);
        float* dp = dpre + (long long)r * 4 * H;
        dp[j] = dct * g * i * (1.0f - i);
        dp[H + j] = dct * c_prev[e] * f * (1.0f - f);
        dp[2 * H + j] = dct * i * (1.0f - g * g);
        dp[3 * H + j] = d * tc * o * (1.0f - o);
        dc[e] = dct * f;
    }
}

extern "C" __global__ void gru_forward(const float* __restrict__ xpre, const float* __restrict__ hproj,
                                       const float* __restrict__ bx, const float* __restrict__ bh,
                                       const float* __restrict__ h_prev, int n, int H,
                                       float* __restrict__ gates, float* __restrict__ h)
{
    long long total = (long long)n * H;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total; e += (long long)gridDim.x * blockDim.x)
    {
        int r = (int)(e / H), j = (int)(e - (long long)r * H);
        const float* x = xpre + (long long)r * 3 * H;
        const float* u = hproj + (long long)r * 3 * H;
        float hr = 0.0f, hz = 0.0f, hn = 0.0f;
        if (bh != 0) { hr = bh[j]; hz = bh[H + j]; hn = bh[2 * H + j]; }
        float rg = sigmoidf_(x[j] + bx[j] + u[j] + hr);
        float z = sigmoidf_(x[H + j] + bx[H + j] + u[H + j] + hz);
        float nn = tanhf(x[2 * H + j] + bx[2 * H + j] + rg * (u[2 * H + j] + hn));
        h[e] = (1.0f - z) * nn + z * h_prev[e];
        float* gt = gates + (long long)r * 3 * H;
        gt[j] = rg; gt[H + j] = z; gt[2 * H + j] = nn;
    }
}

extern "C" __global__ void gru_backward(const float* __restrict__ dh, const float* __restrict__ gates,
                                        const float* __restrict__ hproj, const float* __restrict__ bh,
                                        const float* __restrict__ h_prev, int n, int H, float* __restrict__ dxpre,
                                        float* __restrict__ dhproj, float* __restrict__ dh_prev)
{
    long long total = (long long)n * H;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total; e += (long long)gridDim.x * blockDim.x)
    {
        int r = (int)(e / H), j = (int)(e - (long long)r * H);
        const float* gt = gates + (long long)r * 3 * H;
        float rg = gt[j], z = gt[H + j], nn = gt[2 * H + j], d = dh[e];
        float hn = hproj[(long long)r * 3 * H + 2 * H + j] + (bh != 0 ? bh[2 * H + j] : 0.0f);
        float dn = d * (1.0f - z) * (1.0f - nn * nn);
        float dz = d * (h_prev[e] - nn) * z * (1.0f - z);
        float dr = dn * hn * rg * (1.0f - rg);
        float* dx = dxpre + (long long)r * 3 * H;
        float* du = dhproj + (long long)r * 3 * H;
        dx[j] = dr; dx[H + j] = dz; dx[2 * H + j] = dn;
        du[j] = dr; du[H + j] = dz; du[2 * H + j] = dn * rg;
        dh_prev[e] += d * z;
    }
}


extern "C" __global__ void gru_reset_gates(const float* __restrict__ xpre, const float* __restrict__ hproj,
                                           const float* __restrict__ bx, const float* __restrict__ h_prev, int n, int H,
                                           float* __restrict__ gates, float* __restrict__ rh)
{
    long long total = (long long)n * H;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total; e += (long long)gridDim.x * blockDim.x)
    {
        int r = (int)(e / H), j = (int)(e - (long long)r * H);
        const float* x = xpre + (long long)r * 3 * H;
        const float* u = hproj + (long long)r * 3 * H;
        float rg = sigmoidf_(x[j] + bx[j] + u[j]);
        float* gt = gates + (long long)r * 3 * H;
        gt[j] = rg;
        gt[H + j] = sigmoidf_(x[H + j] + bx[H + j] + u[H + j]);
        rh[e] = rg * h_prev[e];
    }
}

extern "C" __global__ void gru_candidate(const float* __restrict__ xpre, const float* __restrict__ hproj,
                                         const float* __restrict__ bx, const float* __restrict__ h_prev, int n, int H,
                                         float* __restrict__ gates, float* __restrict__ h)
{
    long long total = (long long)n * H;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total; e += (long long)gridDim.x * blockDim.x)
    {
        int r = (int)(e / H), j = (int)(e - (long long)r * H);
        float* gt = gates + (long long)r * 3 * H;
        float nn = tanhf(xpre[(long long)r * 3 * H + 2 * H + j] + bx[2 * H + j] + hproj[(long long)r * 3 * H + 2 * H + j]);
        float z = gt[H + j];
        gt[2 * H + j] = nn;
        h[e] = z * h_prev[e] + (1.0f - z) * nn;
    }
}

extern "C" __global__ void gru_candidate_backward(const float* __restrict__ dh, const float* __restrict__ gates,
                                                  const float* __restrict__ h_prev, int n, int H,
                                                  float* __restrict__ dxpre, float* __restrict__ dhproj,
                                                  float* __restrict__ dh_prev)
{
    long long total = (long long)n * H;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total; e += (long long)gridDim.x * blockDim.x)
    {
        int r = (int)(e / H), j = (int)(e - (long long)r * H);
        const float* gt = gates + (long long)r * 3 * H;
        float z = gt[H + j], nn = gt[2 * H + j], d = dh[e];
        float dn = d * (1.0f - z) * (1.0f - nn * nn);
        float dz = d * (h_prev[e] - nn) * z * (1.0f - z);
        long long row = (long long)r * 3 * H;
        dxpre[row + H + j] = dz; dhproj[row + H + j] = dz;
        dxpre[row + 2 * H + j] = dn; dhproj[row + 2 * H + j] = dn;
        dh_prev[e] += d * z;
    }
}

extern "C" __global__ void gru_reset_backward(const float* __restrict__ drh, const float* __restrict__ gates,
                                              const float* __restrict__ h_prev, int n, int H,
                                              float* __restrict__ dxpre, float* __restrict__ dhproj,
                                              float* __restrict__ dh_prev)
{
    long long total = (long long)n * H;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total; e += (long long)gridDim.x * blockDim.x)
    {
        int r = (int)(e / H), j = (int)(e - (long long)r * H);
        float rg = gates[(long long)r * 3 * H + j], d = drh[e];
        float dr = d * h_prev[e] * rg * (1.0f - rg);
        dxpre[(long long)r * 3 * H + j] = dr;
        dhproj[(long long)r * 3 * H + j] = dr;
        dh_prev[e] += d * rg;
    }
}
