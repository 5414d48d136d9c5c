// activation.cu — the recurrence's elementwise half, fused.
//
// bias_act_forward(pre[rows×cols], b1[cols], b2[cols] or null, rows, cols, act, h[rows×cols])
//     h = act(pre + b1 + b2), biases broadcast over rows; act 0 = tanh, 1 = relu.
//     (b2 is nn.RNN's second bias, b_hh; null for the scratch model.)
// act_backward(dh[n], h[n], n, act, dpre[n])
//     dpre = dh ⊙ act'(·) written in terms of the output: tanh → 1 − h², relu → [h > 0].
//     The incoming gradients were already summed into dh: the recurrent part dPre_{t+1}·W_hhᵀ is accumulated onto
//     the output part by the cuBLAS GEMM with beta = 1, so this kernel reads one buffer.
// Launch (both): 1-D grid-stride over the elements, 256 threads per block. Row-major float32.

#include "common.cuh"

extern "C" __global__ void bias_act_forward(const float* __restrict__ pre, const float* __restrict__ b1,
                                            const float* __restrict__ b2, int rows, int cols, int act,
                                            float* __restrict__ h)
{
    long long total = (long long)rows * cols;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
    {
        int c = (int)(i % cols);
        float s = pre[i] + b1[c];
        if (b2 != 0) s += b2[c];
        h[i] = act == 0 ? tanhf(s) : fmaxf(s, 0.0f);
    }
}

extern "C" __global__ void act_backward(const float* __restrict__ dh, const float* __restrict__ h, int n, int act,
                                        float* __restrict__ dpre)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    {
        float y = h[i];
        dpre[i] = act == 0 ? dh[i] * (1.0f - y * y) : (y > 0.0f ? dh[i] : 0.0f);
    }
}
