// optim.cu — global-norm gradient clipping and the parameter updates, each one launch over every parameter tensor;
// the clip scale, the learning rate and Adam's bias corrections never leave the device (so a captured step replays
// them unchanged, and nothing is read back per minibatch).
//
// The multi-tensor kernels take a table in device memory, one row of 64-bit words per tensor: blockIdx.y picks the
// tensor, the blocks along x share its elements with a fixed grid-stride, so the partition (and every sum) is the same
// on every run and the same as one launch per tensor would give.
//
// sumsq_multi(table[count × 2] = {g, n}, partials[count × gridDim.x])
//     Pass 1 of the norm: block (b, i) writes Σ g_i[k]² (double) over its grid-stride share of tensor i into
//     partials[i·gridDim.x + b]. Launch: CLIP_BLOCKS (64) × count blocks, 256 threads.
// clip_finalize(partials[count], count, theta, clip[2])
//     Pass 2: norm = sqrt(Σ partials) in a fixed tree order; clip[0] = scale = theta / norm if theta > 0 and
//     norm > theta, else 1 (the book's grad_clipping); clip[1] = norm. Launch: exactly one block of 256 threads.
// sgd_update_multi(table[count × 3] = {p, g, n}, scalars[3], clip[2])
//     p −= lr · clip[0] · g with lr = scalars[0] (the book's sgd with batch_size 1). Launch: any x × count blocks, 256 threads.
// adam_corrections(steps[1], beta1, beta2, scalars[3])
//     PyTorch's bias corrections for step t = steps[0] + 1 (the steps taken before this one, kept on the device):
//     scalars[1] = step size lr / (1 − β1^t), scalars[2] = sqrt(1 − β2^t), lr = scalars[0]; powers in double, then
//     float. Launch: one block of one thread.
// adam_update_multi(table[count × 5] = {p, g, m, v, n}, beta1, beta2, eps, scalars[3], clip[2])
//     torch.optim.Adam: g' = clip[0]·g; m = β1 m + (1−β1) g'; v = β2 v + (1−β2) g'²;
//     p −= scalars[1] · m / (sqrt(v) / scalars[2] + eps). Launch: any x × count blocks, 256 threads.

#include "common.cuh"

extern "C" __global__ void __launch_bounds__(THREADS)
sumsq_multi(const unsigned long long* __restrict__ table, double* __restrict__ partials)
{
    __shared__ double sh[THREADS];
    const float* g = (const float*)table[2 * blockIdx.y];
    int n = (int)table[2 * blockIdx.y + 1];
    double s = 0.0;
    for (int i = blockIdx.x * THREADS + threadIdx.x; i < n; i += gridDim.x * THREADS)
    {
        double x = (double)g[i];
        s += x * x;
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) partials[blockIdx.y * gridDim.x + blockIdx.x] = s;
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

extern "C" __global__ void sgd_update_multi(const unsigned long long* __restrict__ table, const float* __restrict__ scalars,
                                            const float* __restrict__ clip)
{
    float* p = (float*)table[3 * blockIdx.y];
    const float* g = (const float*)table[3 * blockIdx.y + 1];
    int n = (int)table[3 * blockIdx.y + 2];
    float k = -scalars[0] * clip[0];
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) p[i] = fmaf(g[i], k, p[i]);
}

extern "C" __global__ void adam_corrections(const int* __restrict__ steps, float beta1, float beta2, float* __restrict__ scalars)
{
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double t = (double)steps[0] + 1.0;
    scalars[1] = scalars[0] / (1.0f - (float)pow((double)beta1, t));
    scalars[2] = sqrtf(1.0f - (float)pow((double)beta2, t));
}

extern "C" __global__ void adam_update_multi(const unsigned long long* __restrict__ table, float beta1, float beta2, float eps,
                                             const float* __restrict__ scalars, const float* __restrict__ clip)
{
    float* p = (float*)table[5 * blockIdx.y];
    const float* g = (const float*)table[5 * blockIdx.y + 1];
    float* m = (float*)table[5 * blockIdx.y + 2];
    float* v = (float*)table[5 * blockIdx.y + 3];
    int n = (int)table[5 * blockIdx.y + 4];
    float s = clip[0], step_size = scalars[1], bc2_sqrt = scalars[2];
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
