// optim.cu — global-norm gradient clipping and the parameter updates; the clip scale never leaves the device.
//
// sumsq_partial(g[n], n, partials[gridDim.x])
//     Pass 1 of the norm: block b writes Σ g[i]² (double) over the elements it visits with a fixed grid-stride,
//     so the partition, and the result, is the same on every run. One launch per gradient tensor, each writing
//     its own slice of `partials`. Launch: CLIP_BLOCKS (64) blocks × 256 threads.
// clip_finalize(partials[count], count, theta, clip[2])
//     Pass 2: norm = sqrt(Σ partials) in a fixed tree order; clip[0] = scale = theta / norm if theta > 0 and
//     norm > theta, else 1 (the book's grad_clipping); clip[1] = norm. Launch: exactly one block of 256 threads.
// sgd_update(p[n], g[n], n, lr, clip[2])
//     p −= lr · clip[0] · g  (the book's sgd with batch_size 1). Launch: grid-stride, 256 threads.
// adam_update(p[n], g[n], m[n], v[n], n, beta1, beta2, eps, step_size, bc2_sqrt, clip[2])
//     torch.optim.Adam: g' = clip[0]·g; m = β1 m + (1−β1) g'; v = β2 v + (1−β2) g'²;
//     p −= step_size · m / (sqrt(v) / bc2_sqrt + eps), with step_size = lr / (1 − β1^t), bc2_sqrt = sqrt(1 − β2^t)
//     computed once per step by the optimizer (Optimizers.Adam). Launch: grid-stride, 256 threads.

#include "common.cuh"

extern "C" __global__ void __launch_bounds__(THREADS)
sumsq_partial(const float* __restrict__ g, int n, double* __restrict__ partials)
{
    __shared__ double sh[THREADS];
    double s = 0.0;
    for (int i = blockIdx.x * THREADS + threadIdx.x; i < n; i += gridDim.x * THREADS)
    {
        double x = (double)g[i];
        s += x * x;
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

extern "C" __global__ void __launch_bounds__(THREADS)
clip_finalize(const double* __restrict__ partials, int count, float theta, float* __restrict__ clip)
{
    __shared__ double sh[THREADS];
    double s = 0.0;
    for (int i = threadIdx.x; i < count; i += THREADS) s += partials[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0)
    {
        double norm = sqrt(s);
        clip[0] = (theta > 0.0f && norm > (double)theta) ? (float)((double)theta / norm) : 1.0f;
        clip[1] = (float)norm;
    }
}

extern "C" __global__ void sgd_update(float* __restrict__ p, const float* __restrict__ g, int n, float lr,
                                      const float* __restrict__ clip)
{
    float k = -lr * clip[0];
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        p[i] = fmaf(g[i], k, p[i]);
}

extern "C" __global__ void adam_update(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                       float* __restrict__ v, int n, float beta1, float beta2, float eps,
                                       float step_size, float bc2_sqrt, const float* __restrict__ clip)
{
    float s = clip[0];
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    {
        float gi = g[i] * s;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
}
