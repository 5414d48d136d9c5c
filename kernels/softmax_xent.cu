// softmax_xent.cu — output layer loss and its gradient in one pass, loss summed on the device.
//
// softmax_xent(logits[rows×V], bias[V], labels[rows], rows, V, grad_scale, dlogits[rows×V], row_loss[rows])
//     s = logits[r] + bias;  p = softmax(s) (max-subtracted);
//     dlogits[r] = (p − onehot(labels[r])) · grad_scale;  row_loss[r] = log Σ exp(s − max) − (s[label] − max).
//     Launch: one block per row (grid = rows), 256 threads; shared-memory tree reductions (deterministic).
// loss_accumulate(row_loss[rows], rows, acc[2])
//     acc[0] += Σ row_loss (double, fixed tree order); acc[1] += rows. The accumulator lives on the device for the
//     whole epoch and is read once, when the epoch's perplexity is printed.
//     Launch: exactly one block of 256 threads.

#include "common.cuh"

extern "C" __global__ void __launch_bounds__(THREADS)
softmax_xent(const float* __restrict__ logits, const float* __restrict__ bias, const int* __restrict__ labels,
             int rows, int V, float grad_scale, float* __restrict__ dlogits, float* __restrict__ row_loss)
{
    __shared__ float sh[THREADS];
    int r = blockIdx.x;
    if (r >= rows) return;
    const float* z = logits + (long long)r * V;
    float* d = dlogits + (long long)r * V;
    float m = NEG_INF;
    for (int c = threadIdx.x; c < V; c += THREADS) m = fmaxf(m, z[c] + bias[c]);
    m = block_max(m, sh);
    float sum = 0.0f;
    for (int c = threadIdx.x; c < V; c += THREADS)
    {
        float e = expf(z[c] + bias[c] - m);
        d[c] = e;
        sum += e;
    }
    sum = block_sum(sum, sh);
    int y = labels[r];
    float k = grad_scale / sum;
    for (int c = threadIdx.x; c < V; c += THREADS) d[c] = d[c] * k - (c == y ? grad_scale : 0.0f);
    if (threadIdx.x == 0) row_loss[r] = logf(sum) - (z[y] + bias[y] - m);
}

extern "C" __global__ void __launch_bounds__(THREADS)
loss_accumulate(const float* __restrict__ row_loss, int rows, double* __restrict__ acc)
{
    __shared__ double sh[THREADS];
    double s = 0.0;
    for (int i = threadIdx.x; i < rows; i += THREADS) s += (double)row_loss[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0)
    {
        acc[0] += s;
        acc[1] += (double)rows;
    }
}
