// common.cuh — what several kernels share, defined once: the block width, −∞, and the block-wide tree reductions.
//
// Every kernels/*.cu includes it. NVRTC gets it as an in-memory header (KernelSources.Headers; there is no include
// path at run time), the CUDA emulator's g++ finds it next to the .cu files. Plain C-like CUDA, no system headers
// (NVRTC 11.8 in CI has none built in).
//
// block_sum(v, sh) / block_max(v, sh): reduce one value per thread over a block of exactly THREADS threads, in a
// fixed tree order (so the result is the same on every run), through `sh` (THREADS elements of shared memory). Every
// thread of the block must call them, and every thread gets the result; `sh` may be reused right after.
#ifndef CHARRNN_COMMON_CUH
#define CHARRNN_COMMON_CUH

#define THREADS 256
#define NEG_INF __int_as_float(0xff800000) // −inf without math.h

template <typename T> static __device__ __forceinline__ T block_sum(T v, T* sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1)
    {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    T r = sh[0];
    __syncthreads();
    return r;
}

static __device__ __forceinline__ float block_max(float v, float* sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1)
    {
        if (threadIdx.x < s) sh[threadIdx.x] = fmaxf(sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    float r = sh[0];
    __syncthreads();
    return r;
}

#endif
