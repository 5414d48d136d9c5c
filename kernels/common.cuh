// common.cuh — what several kernels share, defined once: the block width, −∞, the block-wide tree reductions, dynamic
// shared memory and the grid barrier of the persistent kernels.
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

// A 64-bit counter kept in two ints, low half first (the step counters' run minibatch: StepCounters on the host).
static __device__ __forceinline__ unsigned long long load_u64(const int* pair)
{
    return (unsigned long long)(unsigned)pair[1] << 32 | (unsigned)pair[0];
}

static __device__ __forceinline__ void store_u64(int* pair, unsigned long long v)
{
    pair[0] = (int)(unsigned)v;
    pair[1] = (int)(unsigned)(v >> 32);
}
#define NEG_INF __int_as_float(0xff800000) // −inf without math.h

// The logistic function as every gate kernel computes it (gates.cu, gated_cluster.cu): the same bits in both.
static __device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

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

// DYNAMIC_SHARED(type, name): `type* name` pointing at the block's dynamic shared memory (the launch's sharedMemBytes).
// One extern array for every kernel of the program, cast per kernel (extern __shared__ arrays of different types
// under one name would conflict). The CUDA emulator defines its own (cuda_shim.h): one region per block.
#ifndef DYNAMIC_SHARED
extern __shared__ __align__(16) unsigned char charrnn_dynamic_shared[];
#define DYNAMIC_SHARED(type, name) type* name = (type*)charrnn_dynamic_shared
#endif

// grid_barrier(state): every thread of every block waits here until all blocks have arrived; what any block wrote
// before is then visible to all (fences on both sides, and the readers bypass L1 with __ldcg). Only for cooperative
// launches (all blocks resident at once). `state` is an unsigned int in device memory, zero before the first launch
// (the plans allocate two; the second is unused). One atomic per block and barrier (cooperative groups' scheme): block
// 0 adds 2^31 − (n − 1), every other block 1, so the sum of a barrier's n arrivals is exactly 2^31: the top bit flips
// when the last block arrives and the low bits are back where they were; each block waits for the top bit to differ
// from what it saw before its own add. The same state serves every later barrier and launch. A wait that goes on for
// seconds (blocks that are not co-resident after all) traps instead of hanging.
static __device__ __forceinline__ void grid_barrier(unsigned* state)
{
    __syncthreads();
    if (threadIdx.x == 0)
    {
        unsigned n = gridDim.x * gridDim.y * gridDim.z;
        unsigned add = blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 ? 0x80000000u - (n - 1) : 1u;
        volatile unsigned* v = state;
        __threadfence(); // this block's writes before its arrival
        unsigned seen = atomicAdd(state, add);
        unsigned long long spins = 0;
        while (((seen ^ *v) & 0x80000000u) == 0)
        {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 700
            __nanosleep(32);
#endif
            if (++spins == (1ull << 27)) __trap();
        }
        __threadfence(); // the other blocks' writes before our reads
    }
    __syncthreads();
}

// Thread-block clusters (sm_90; launched by cuLaunchKernelEx with a cluster dimension, CudaKernel.LaunchCluster):
// cluster_rank() = %cluster_ctarank (this block's index in its cluster), cluster_size() = %cluster_nctarank,
// cluster_sync() = barrier.cluster.arrive + barrier.cluster.wait (every thread of every block of the cluster; release
// and acquire by default, so shared-memory writes to other blocks before it are visible to them after it),
// cluster_map(p, r) = mapa: the generic address of the same byte of block r's shared memory as p is of this block's
// (distributed shared memory; ordinary loads and stores through it). A block's shared memory disappears when it exits,
// so a kernel that writes to other blocks ends with a cluster_sync. Plain PTX (ISA 7.8, NVRTC 11.8 knows it); below
// sm_90 they trap (the plans never launch them there). The CUDA emulator defines its own (cuda_shim.h).
#ifndef CLUSTER_SHIM
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define CHARRNN_CLUSTERS 1
#endif
static __device__ __forceinline__ unsigned cluster_rank()
{
#ifdef CHARRNN_CLUSTERS
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
#else
    __trap();
    return 0;
#endif
}

static __device__ __forceinline__ unsigned cluster_size()
{
#ifdef CHARRNN_CLUSTERS
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(r));
    return r;
#else
    __trap();
    return 0;
#endif
}

static __device__ __forceinline__ void cluster_sync()
{
#ifdef CHARRNN_CLUSTERS
    asm volatile("barrier.cluster.arrive;\n\tbarrier.cluster.wait;" ::: "memory");
#else
    __trap();
#endif
}

template <typename T> static __device__ __forceinline__ T* cluster_map(T* p, unsigned rank)
{
#ifdef CHARRNN_CLUSTERS
    unsigned long long r;
    asm volatile("mapa.u64 %0, %1, %2;" : "=l"(r) : "l"(p), "r"(rank));
    return (T*)r;
#else
    __trap();
    return p;
#endif
}
#endif

#endif
