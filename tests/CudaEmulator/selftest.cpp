// selftest.cpp — checks that the CUDA emulator catches the bugs it claims to catch (each case in its own child process,
// since most of them leave a sticky error behind, as a GPU would), and that barriers and results are right.
// Built and run by build.sh; prints one line per case and "selftest: N passed, N failed"; exits non-zero on a failure.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <csignal>
#include <functional>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

typedef int CUresult;
extern "C" {
CUresult cuInit(unsigned);
CUresult cuDevicePrimaryCtxRetain(void**, int);
CUresult cuCtxSetCurrent(void*);
CUresult cuCtxSynchronize();
CUresult cuMemAlloc_v2(unsigned long long*, size_t);
CUresult cuMemFree_v2(unsigned long long);
CUresult cuMemAllocHost_v2(void**, size_t);
CUresult cuMemcpyDtoH_v2(void*, unsigned long long, size_t);
CUresult cuMemcpyHtoDAsync_v2(unsigned long long, const void*, size_t, void*);
CUresult cuModuleLoadData(void**, const void*);
CUresult cuModuleGetFunction(void**, void*, const char*);
CUresult cuModuleUnload(void*);
CUresult cuLaunchKernel(void*, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void*, void**, void**);
CUresult cuLaunchCooperativeKernel(void*, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void*, void**);
CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int*, void*, int, size_t);
CUresult cuFuncSetAttribute(void*, int, int);
CUresult cuLaunchKernelEx(const void*, void*, void**, void**);
CUresult cuOccupancyMaxActiveClusters(int*, void*, const void*);
CUresult cuMemsetD32Async(unsigned long long, unsigned, size_t, void*);
CUresult cuStreamCreate(void**, unsigned);
CUresult cuStreamSynchronize(void*);
CUresult cuStreamBeginCapture_v2(void*, int);
CUresult cuStreamEndCapture(void*, void**);
CUresult cuEventCreate(void**, unsigned);
CUresult cuEventRecord(void*, void*);
CUresult cuStreamWaitEvent(void*, void*, unsigned);
int cublasCreate_v2(void**);
int cublasSetStream_v2(void*, void*);
int cublasSetPointerMode_v2(void*, int);
int cublasSetMathMode(void*, int);
int cublasSgemm_v2(void*, int, int, int, int, int, const float*, unsigned long long, int, unsigned long long, int,
                   const float*, unsigned long long, int);
}

namespace
{
int g_failed = 0, g_passed = 0;

// A PTX image naming the kernels used here (the emulator reads .entry names and .maxntid; the code is the host build).
const char* kPtx = ".version 7.8\n.target sm_90\n.address_size 64\n"
                   ".visible .entry one_hot_scatter(.param .u64 a) {}\n"
                   ".visible .entry column_sum(.param .u64 a) {}\n"
                   ".visible .entry softmax_xent(.param .u64 a) .maxntid 256, 1, 1 {}\n"
                   ".visible .entry selftest_sum_missing_barrier(.param .u64 a) .maxntid 256, 1, 1 {}\n"
                   ".visible .entry selftest_last_writer(.param .u64 a) {}\n"
                   ".visible .entry selftest_grid_exchange(.param .u64 a) .maxntid 64, 1, 1 {}\n"
                   ".visible .entry selftest_grid_deadlock(.param .u64 a) .maxntid 64, 1, 1 {}\n"
                   ".visible .entry selftest_spin_outside_cooperative(.param .u64 a) {}\n"
                   ".visible .entry selftest_cluster_exchange(.param .u64 a) .maxntid 64, 1, 1 {}\n";

void* g_mod;
void* g_stream;

#define REQUIRE(cond)                                                                                                 \
    do { if (!(cond)) { fprintf(stderr, "  failed: %s (line %d)\n", #cond, __LINE__); _exit(1); } } while (0)

void setup()
{
    void* ctx;
    REQUIRE(cuInit(0) == 0);
    REQUIRE(cuDevicePrimaryCtxRetain(&ctx, 0) == 0);
    REQUIRE(cuCtxSetCurrent(ctx) == 0);
    REQUIRE(cuModuleLoadData(&g_mod, kPtx) == 0);
    REQUIRE(cuStreamCreate(&g_stream, 1) == 0);
}

void* fn(const char* name)
{
    void* f;
    REQUIRE(cuModuleGetFunction(&f, g_mod, name) == 0);
    return f;
}

// A synchronous upload, as the backend's staging ring does it: an asynchronous copy, then a stream synchronisation.
CUresult upload(unsigned long long dst, const void* src, size_t n)
{
    if (CUresult r = cuMemcpyHtoDAsync_v2(dst, src, n, g_stream)) return r;
    return cuStreamSynchronize(g_stream);
}

unsigned long long dalloc(size_t bytes)
{
    unsigned long long p;
    REQUIRE(cuMemAlloc_v2(&p, bytes) == 0);
    return p;
}

void* blas_handle()
{
    void* h;
    REQUIRE(cublasCreate_v2(&h) == 0);
    REQUIRE(cublasSetStream_v2(h, g_stream) == 0);
    return h;
}

// one_hot_scatter(tokens, n, V, out) with the given n, V.
CUresult one_hot(unsigned long long tokens, int n, int V, unsigned long long out, unsigned threads = 256)
{
    void* args[] = {&tokens, &n, &V, &out};
    return cuLaunchKernel(fn("one_hot_scatter"), 4, 1, 1, threads, 1, 1, 0, g_stream, args, nullptr);
}

/// Runs one case in a child process; `env` ("NAME=VALUE") is set there before the emulator initialises; `set_up`
/// false runs the body before cuInit.
void expect(const char* name, std::function<void()> body, int want_exit = 0, const char* env = nullptr, bool set_up = true)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
    {
        if (env) putenv(strdup(env));
        if (set_up) setup();
        body();
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    bool ok = code == want_exit;
    printf("%s %s\n", ok ? "ok  " : "FAIL", name);
    (ok ? g_passed : g_failed)++;
}
}

int main()
{
    setvbuf(stdout, nullptr, _IONBF, 0);
    expect("a correct launch computes the right values", [] {
        int tokens[3] = {2, 0, 1};
        auto t = dalloc(sizeof tokens), out = dalloc(3 * 4 * 4);
        REQUIRE(upload(t, tokens, sizeof tokens) == 0);
        REQUIRE(one_hot(t, 3, 4, out) == 0);
        float h[12];
        REQUIRE(cuStreamSynchronize(g_stream) == 0);
        REQUIRE(cuMemcpyDtoH_v2(h, out, sizeof h) == 0);
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) REQUIRE(h[r * 4 + c] == (c == tokens[r] ? 1.0f : 0.0f));
    });
    expect("barriers: softmax_xent (shared-memory tree reductions) matches a direct computation", [] {
        const int rows = 3, V = 700;
        std::vector<float> z(rows * V), b(V, 0.1f);
        for (int i = 0; i < rows * V; i++) z[i] = (float)std::sin(i * 0.37) * 3;
        int labels[rows] = {5, 699, 0};
        auto dz = dalloc(z.size() * 4), db = dalloc(V * 4), dl = dalloc(sizeof labels), dd = dalloc(z.size() * 4),
             dr = dalloc(rows * 4);
        REQUIRE(upload(dz, z.data(), z.size() * 4) == 0);
        REQUIRE(upload(db, b.data(), V * 4) == 0);
        REQUIRE(upload(dl, labels, sizeof labels) == 0);
        int r_ = rows, v_ = V;
        float scale = 0.5f;
        void* args[] = {&dz, &db, &dl, &r_, &v_, &scale, &dd, &dr};
        REQUIRE(cuLaunchKernel(fn("softmax_xent"), rows, 1, 1, 256, 1, 1, 0, g_stream, args, nullptr) == 0);
        std::vector<float> loss(rows);
        REQUIRE(cuStreamSynchronize(g_stream) == 0);
        REQUIRE(cuMemcpyDtoH_v2(loss.data(), dr, rows * 4) == 0);
        for (int r = 0; r < rows; r++)
        {
            double m = -1e30, s = 0;
            for (int c = 0; c < V; c++) m = std::fmax(m, z[r * V + c] + 0.1);
            for (int c = 0; c < V; c++) s += std::exp(z[r * V + c] + 0.1 - m);
            double want = std::log(s) - (z[r * V + labels[r]] + 0.1 - m);
            REQUIRE(std::fabs(loss[r] - want) < 1e-4);
        }
    });
    expect("work is asynchronous: queued work has not run until the stream is synchronised", [] {
        float v = 42;
        auto d = dalloc(4);
        REQUIRE(cuMemcpyHtoDAsync_v2(d, &v, 4, g_stream) == 0); // pageable: staged at the call, written when it runs
        REQUIRE(std::isnan(*(float*)d));                         // the emulator's device memory is host memory: peek
        REQUIRE(cuStreamSynchronize(g_stream) == 0);
        REQUIRE(*(float*)d == 42);
    });
    expect("a pinned upload reads the host buffer when it runs, not when it is enqueued", [] {
        float* pinned;
        REQUIRE(cuMemAllocHost_v2((void**)&pinned, 4) == 0);
        *pinned = 1;
        auto d = dalloc(4);
        REQUIRE(cuMemcpyHtoDAsync_v2(d, pinned, 4, g_stream) == 0);
        *pinned = 2; // the bug a staging ring must avoid
        float back;
        REQUIRE(cuStreamSynchronize(g_stream) == 0);
        REQUIRE(cuMemcpyDtoH_v2(&back, d, 4) == 0);
        REQUIRE(back == 2);
    });
    expect("a download (synchronous: CharRnn binds no asynchronous one) waits for the work queued before it", [] {
        float* pinned;
        REQUIRE(cuMemAllocHost_v2((void**)&pinned, 4) == 0);
        *pinned = 3;
        auto d = dalloc(4);
        REQUIRE(cuMemcpyHtoDAsync_v2(d, pinned, 4, g_stream) == 0);
        REQUIRE(std::isnan(*(float*)d)); // still queued
        float back = 0;
        REQUIRE(cuMemcpyDtoH_v2(&back, d, 4) == 0); // no stream synchronisation: the download itself must wait
        REQUIRE(back == 3);
    });
    expect("build.sh refuses a grid-barrier or cluster-barrier kernel file with static __shared__ and accepts DYNAMIC_SHARED", [] {
        char dir[] = "/tmp/emu-shared-XXXXXX";
        REQUIRE(mkdtemp(dir) != nullptr);
        std::string bad = std::string(dir) + "/bad.cu", good = std::string(dir) + "/good.cu";
        FILE* f = fopen(bad.c_str(), "w");
        fputs("extern \"C\" __global__ void k(float* a) { __shared__ float s[32]; s[0] = a[0]; grid_barrier(a); }\n", f);
        fclose(f);
        f = fopen(good.c_str(), "w");
        fputs("// not __shared__: a comment naming it is fine\n"
              "extern \"C\" __global__ void k(float* a) { float* s = DYNAMIC_SHARED(float); s[0] = a[0]; grid_barrier(a); }\n", f);
        fclose(f);
        std::string check = std::string("bash " EMU_SOURCE_DIR "/check_shared.sh ");
        REQUIRE(system((check + bad + " 2>/dev/null").c_str()) != 0);
        REQUIRE(system((check + good).c_str()) == 0);
        f = fopen(bad.c_str(), "w"); // a cluster kernel: its blocks run together too
        fputs("extern \"C\" __global__ void k(float* a) { __shared__ float s[32]; s[0] = a[0]; cluster_sync(); }\n", f);
        fclose(f);
        REQUIRE(system((check + bad + " 2>/dev/null").c_str()) != 0);
        remove(bad.c_str());
        remove(good.c_str());
        rmdir(dir);
    });
    expect("fresh device memory is not zero (reads as NaN)", [] {
        auto d = dalloc(16);
        float h[4];
        REQUIRE(cuMemcpyDtoH_v2(h, d, sizeof h) == 0);
        REQUIRE(std::isnan(h[0]) && std::isnan(h[3]));
    });
    expect("a kernel writing past its buffer is caught (illegal address, sticky)", [] {
        int tokens[2] = {0, 1};
        auto t = dalloc(sizeof tokens), out = dalloc(2 * 3 * 4 - 4); // one float short
        REQUIRE(upload(t, tokens, sizeof tokens) == 0);
        REQUIRE(one_hot(t, 2, 3, out) == 0);
        REQUIRE(cuStreamSynchronize(g_stream) == 700);
        REQUIRE(cuCtxSynchronize() == 700);
    });
    expect("a kernel running off the end of the rounded allocation hits the guard page (the process aborts)", [] {
        int tokens[64] = {};
        auto t = dalloc(sizeof tokens), out = dalloc(256);
        REQUIRE(upload(t, tokens, sizeof tokens) == 0);
        REQUIRE(one_hot(t, 64, 1024, out) == 0);
        cuStreamSynchronize(g_stream);
    }, 134);
    expect("a pointer argument outside every allocation is refused at launch", [] {
        int x = 0;
        auto out = dalloc(64);
        REQUIRE(one_hot((unsigned long long)(uintptr_t)&x, 1, 4, out) == 700);
    });
    expect("a freed buffer cannot be used", [] {
        auto t = dalloc(16), out = dalloc(64);
        REQUIRE(cuMemFree_v2(t) == 0);
        REQUIRE(one_hot(t, 1, 4, out) == 700);
    });
    expect("more threads than __launch_bounds__ is a launch failure", [] {
        auto a = dalloc(64);
        int n = 1;
        float s = 1;
        void* args[] = {&a, &a, &a, &n, &n, &s, &a, &a};
        REQUIRE(cuLaunchKernel(fn("softmax_xent"), 1, 1, 1, 512, 1, 1, 0, g_stream, args, nullptr) == 701);
    });
    // #26: checks the emulator had but no case proved.
    expect("calls before cuInit fail (NOT_INITIALIZED)", [] {
        unsigned long long p;
        REQUIRE(cuMemAlloc_v2(&p, 16) == 3);
        void* ctx;
        REQUIRE(cuDevicePrimaryCtxRetain(&ctx, 0) == 3);
    }, 0, nullptr, false);
    expect("a kernel name the module lacks is NOT_FOUND", [] {
        void* f;
        REQUIRE(cuModuleGetFunction(&f, g_mod, "no_such_kernel") == 500);
    });
    expect("invalid handles: an unloaded module, a function that is none", [] {
        void* f = fn("one_hot_scatter");
        int x = 0;
        REQUIRE(cuModuleUnload(g_mod) == 0);
        REQUIRE(cuModuleUnload(g_mod) == 400);
        void* args[] = {&x};
        REQUIRE(cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, g_stream, args, nullptr) == 400); // its module is gone
        REQUIRE(cuLaunchKernel(&x, 1, 1, 1, 32, 1, 1, 0, g_stream, args, nullptr) == 400);
    });
    expect("a memset beyond an allocation is refused", [] {
        auto d = dalloc(16);
        REQUIRE(cuMemsetD32Async(d, 0, 4, g_stream) == 0);
        REQUIRE(cuMemsetD32Async(d, 0, 5, g_stream) != 0);
        REQUIRE(cuMemsetD32Async(d + 8, 0, 3, g_stream) != 0);
        REQUIRE(cuStreamSynchronize(g_stream) == 0);
    });
    expect("calls without a current context fail", [] {
        REQUIRE(cuCtxSetCurrent(nullptr) == 0);
        unsigned long long p;
        REQUIRE(cuMemAlloc_v2(&p, 16) == 201);
    });
    expect("a copy beyond an allocation is refused", [] {
        auto d = dalloc(16);
        float h[8] = {};
        REQUIRE(cuMemcpyHtoDAsync_v2(d, h, sizeof h, g_stream) == 1);
        REQUIRE(cuMemcpyHtoDAsync_v2(d + 4, h, 16, g_stream) == 1);
    });
    expect("cuBLAS: a leading dimension smaller than the rows is INVALID_VALUE", [] {
        void* h = blas_handle();
        auto a = dalloc(4 * 6), b = dalloc(4 * 6), c = dalloc(4 * 9);
        float one = 1, zero = 0;
        REQUIRE(cublasSgemm_v2(h, 0, 0, 3, 3, 2, &one, a, 3, b, 2, &zero, c, 3) == 0);
        REQUIRE(cublasSgemm_v2(h, 0, 0, 3, 3, 2, &one, a, 2, b, 2, &zero, c, 3) == 7); // lda < m
        REQUIRE(cublasSgemm_v2(h, 1, 0, 3, 3, 2, &one, a, 1, b, 2, &zero, c, 3) == 7); // op T: lda < k
        REQUIRE(cublasSgemm_v2(h, 0, 0, 3, 3, 2, &one, a, 3, b, 2, &zero, c, 2) == 7); // ldc < m
    });
    expect("cuBLAS: an output overlapping an input is INVALID_VALUE", [] {
        void* h = blas_handle();
        auto a = dalloc(4 * 9), b = dalloc(4 * 12);
        float one = 1, zero = 0;
        REQUIRE(cublasSgemm_v2(h, 0, 0, 3, 3, 3, &one, a, 3, b, 3, &zero, a, 3) == 7);     // C is A
        REQUIRE(cublasSgemm_v2(h, 0, 0, 3, 3, 3, &one, a, 3, b, 3, &zero, b + 12, 3) == 7); // C starts inside B
    });
    expect("cuBLAS: host pointer mode reads alpha at the call, device mode when the product runs", [] {
        void* h = blas_handle();
        float A[1] = {2}, B[1] = {3}, C[1];
        auto a = dalloc(4), b = dalloc(4), c = dalloc(4), alpha_d = dalloc(4), beta_d = dalloc(4);
        REQUIRE(upload(a, A, 4) == 0);
        REQUIRE(upload(b, B, 4) == 0);
        float alpha = 1, beta = 0;
        REQUIRE(cublasSgemm_v2(h, 0, 0, 1, 1, 1, &alpha, a, 1, b, 1, &beta, c, 1) == 0);
        alpha = 5; // changed before the queued product runs: host mode already read 1
        REQUIRE(cuStreamSynchronize(g_stream) == 0);
        REQUIRE(cuMemcpyDtoH_v2(C, c, 4) == 0);
        REQUIRE(C[0] == 6);
        float two = 2, zero = 0;
        REQUIRE(upload(alpha_d, &two, 4) == 0);
        REQUIRE(upload(beta_d, &zero, 4) == 0);
        REQUIRE(cublasSetPointerMode_v2(h, 1) == 0);
        REQUIRE(cublasSgemm_v2(h, 0, 0, 1, 1, 1, (const float*)alpha_d, a, 1, b, 1, (const float*)beta_d, c, 1) == 0);
        REQUIRE(cuStreamSynchronize(g_stream) == 0);
        REQUIRE(cuMemcpyDtoH_v2(C, c, 4) == 0);
        REQUIRE(C[0] == 12); // alpha 2 read from device memory
    });
    expect("cuBLAS: TF32 math rounds the operands to 10-bit mantissas", [] {
        void* h = blas_handle();
        float A[1] = {1.0f + 1.0f / 4096}, B[1] = {1}, C[1];
        auto a = dalloc(4), b = dalloc(4), c = dalloc(4);
        REQUIRE(upload(a, A, 4) == 0);
        REQUIRE(upload(b, B, 4) == 0);
        float one = 1, zero = 0;
        REQUIRE(cublasSgemm_v2(h, 0, 0, 1, 1, 1, &one, a, 1, b, 1, &zero, c, 1) == 0);
        REQUIRE(cuStreamSynchronize(g_stream) == 0);
        REQUIRE(cuMemcpyDtoH_v2(C, c, 4) == 0);
        REQUIRE(C[0] == A[0]); // FP32: exact
        REQUIRE(cublasSetMathMode(h, 3) == 0); // CUBLAS_TF32_TENSOR_OP_MATH
        REQUIRE(cublasSgemm_v2(h, 0, 0, 1, 1, 1, &one, a, 1, b, 1, &zero, c, 1) == 0);
        REQUIRE(cuStreamSynchronize(g_stream) == 0);
        REQUIRE(cuMemcpyDtoH_v2(C, c, 4) == 0);
        REQUIRE(C[0] == 1.0f); // 2^-12 is below TF32's 10-bit mantissa
    });
    expect("cuBLAS: column-major semantics (a 2×3 by 3×2 product, both transposes)", [] {
        void* h = blas_handle();
        float A[6] = {1, 2, 3, 4, 5, 6}; // column-major 2×3: [[1,3,5],[2,4,6]]
        float B[6] = {1, 0, 2, 1, 0, 3}; // column-major 3×2: [[1,1],[0,0],[2,3]]
        auto a = dalloc(24), b = dalloc(24), c = dalloc(16);
        REQUIRE(upload(a, A, 24) == 0);
        REQUIRE(upload(b, B, 24) == 0);
        float one = 1, zero = 0, C[4];
        REQUIRE(cublasSgemm_v2(h, 0, 0, 2, 2, 3, &one, a, 2, b, 3, &zero, c, 2) == 0);
        REQUIRE(cuStreamSynchronize(g_stream) == 0);
        REQUIRE(cuMemcpyDtoH_v2(C, c, 16) == 0);
        REQUIRE(C[0] == 11 && C[1] == 14 && C[2] == 16 && C[3] == 20); // [[11,16],[14,20]]
        // Cᵀ = Bᵀ·Aᵀ: B stored 3×2 (ld 3) transposed, A stored 2×3 (ld 2) transposed.
        REQUIRE(cublasSgemm_v2(h, 1, 1, 2, 2, 3, &one, b, 3, a, 2, &zero, c, 2) == 0);
        REQUIRE(cuStreamSynchronize(g_stream) == 0);
        REQUIRE(cuMemcpyDtoH_v2(C, c, 16) == 0);
        REQUIRE(C[0] == 11 && C[1] == 16 && C[2] == 14 && C[3] == 20);
    });
    expect("cuBLAS: an operand running past its allocation is an illegal address", [] {
        void* h = blas_handle();
        auto a = dalloc(4 * 5), b = dalloc(4 * 6), c = dalloc(4 * 9);
        float one = 1, zero = 0;
        REQUIRE(cublasSgemm_v2(h, 0, 0, 3, 3, 2, &one, a, 3, b, 2, &zero, c, 3) == 13);
        REQUIRE(cuCtxSynchronize() == 700);
    });
    expect("synchronising during a graph capture fails and invalidates the capture", [] {
        REQUIRE(cuStreamBeginCapture_v2(g_stream, 1) == 0);
        REQUIRE(cuCtxSynchronize() == 900);
        void* g;
        REQUIRE(cuStreamEndCapture(g_stream, &g) == 901);
    });
    expect("a stream forked into a graph capture must be joined back before the capture ends", [] {
        void *side, *fork, *join, *g;
        REQUIRE(cuStreamCreate(&side, 1) == 0);
        REQUIRE(cuEventCreate(&fork, 2) == 0);
        REQUIRE(cuEventCreate(&join, 2) == 0);
        auto d = dalloc(64);
        for (int joined = 1; joined >= 0; joined--) // joined back: a graph; not joined back: UNJOINED
        {
            REQUIRE(cuStreamBeginCapture_v2(g_stream, 1) == 0);
            REQUIRE(cuEventRecord(fork, g_stream) == 0);
            REQUIRE(cuStreamWaitEvent(side, fork, 0) == 0);
            REQUIRE(cuMemsetD32Async(d, 0, 16, side) == 0);
            REQUIRE(cuEventRecord(join, side) == 0);
            if (joined) REQUIRE(cuStreamWaitEvent(g_stream, join, 0) == 0);
            REQUIRE(cuStreamEndCapture(g_stream, &g) == (joined ? 0 : 904));
        }
    });
    static auto missing_barrier_sum = [](float* got, float* want) {
        float in[256];
        *want = 0;
        for (int i = 0; i < 256; i++) *want += in[i] = (float)(i % 7 + 1);
        auto d = dalloc(sizeof in), out = dalloc(4);
        REQUIRE(upload(d, in, sizeof in) == 0);
        void* args[] = {&d, &out};
        REQUIRE(cuLaunchKernel(fn("selftest_sum_missing_barrier"), 1, 1, 1, 256, 1, 1, 0, g_stream, args, nullptr) == 0);
        REQUIRE(cuStreamSynchronize(g_stream) == 0);
        REQUIRE(cuMemcpyDtoH_v2(got, out, 4) == 0);
    };
    expect("a reduction missing its in-loop __syncthreads gives a wrong sum (shuffled order)", [] {
        float got, want;
        missing_barrier_sum(&got, &want);
        REQUIRE(got != want);
    });
    expect("... and in index order", [] {
        float got, want;
        missing_barrier_sum(&got, &want);
        REQUIRE(got != want);
    }, 0, "CHARRNN_EMULATOR_ORDER=sequential");
    static auto last_writer = [](int launches) {
        std::vector<int> seen;
        auto out = dalloc(4);
        for (int i = 0; i < launches; i++)
        {
            void* args[] = {&out};
            REQUIRE(cuLaunchKernel(fn("selftest_last_writer"), 4, 1, 1, 256, 1, 1, 0, g_stream, args, nullptr) == 0);
            int v;
            REQUIRE(cuStreamSynchronize(g_stream) == 0);
            REQUIRE(cuMemcpyDtoH_v2(&v, out, 4) == 0);
            seen.push_back(v);
        }
        return seen;
    };
    expect("threads and blocks run in a different order each launch: an order-dependent result changes", [] {
        auto seen = last_writer(4);
        REQUIRE(seen[0] != seen[1] || seen[1] != seen[2] || seen[2] != seen[3]);
    });
    expect("CHARRNN_EMULATOR_ORDER=sequential runs in index order: the last thread of the last block writes last", [] {
        auto seen = last_writer(2);
        REQUIRE(seen[0] == 1023 && seen[1] == 1023);
    }, 0, "CHARRNN_EMULATOR_ORDER=sequential");
    expect("fault injection: the Nth allocation fails with CUDA_ERROR_OUT_OF_MEMORY, the others work", [] {
        unsigned long long p;
        REQUIRE(cuMemAlloc_v2(&p, 16) == 0);
        REQUIRE(cuMemAlloc_v2(&p, 16) == 2);
        REQUIRE(cuMemAlloc_v2(&p, 16) == 0);
    }, 0, "CHARRNN_EMULATOR_FAIL_ALLOC_AT=2");
    expect("fault injection: the Nth launch faults when it runs (sticky illegal address), the ones before it run", [] {
        int tokens[2] = {0, 1};
        auto t = dalloc(sizeof tokens), out = dalloc(2 * 3 * 4);
        REQUIRE(upload(t, tokens, sizeof tokens) == 0);
        REQUIRE(one_hot(t, 2, 3, out) == 0);
        REQUIRE(cuStreamSynchronize(g_stream) == 0);
        REQUIRE(one_hot(t, 2, 3, out) == 0); // enqueued fine: the fault shows when the work runs
        REQUIRE(cuStreamSynchronize(g_stream) == 700);
        REQUIRE(cuCtxSynchronize() == 700);
    }, 0, "CHARRNN_EMULATOR_FAULT_LAUNCH_AT=2");
    expect("a fault outside the emulator's work goes to the previous handler (here the default: death by SIGSEGV)", [] {
        volatile int* p = nullptr;
        *p = 1;
    }, 128 + SIGSEGV);
    // selftest_grid_exchange on `blocks` blocks; returns out[] (each block's neighbour's value, or -2 when the block
    // found another block's value in its dynamic shared memory).
    static auto grid_exchange = [](int blocks, int barrier, bool cooperative, CUresult* launched = nullptr) {
        auto data = dalloc(blocks * 4), state = dalloc(8), out = dalloc(blocks * 4);
        REQUIRE(cuMemsetD32Async(state, 0, 2, g_stream) == 0);
        void* args[] = {&data, &state, &out, &barrier};
        CUresult r = cooperative ? cuLaunchCooperativeKernel(fn("selftest_grid_exchange"), blocks, 1, 1, 64, 1, 1, 16, g_stream, args)
                                 : cuLaunchKernel(fn("selftest_grid_exchange"), blocks, 1, 1, 64, 1, 1, 16, g_stream, args, nullptr);
        if (launched) *launched = r;
        else REQUIRE(r == 0);
        std::vector<int> h(blocks);
        if (r == 0)
        {
            REQUIRE(cuStreamSynchronize(g_stream) == 0);
            REQUIRE(cuMemcpyDtoH_v2(h.data(), out, blocks * 4) == 0);
        }
        return h;
    };
    expect("cooperative launch: a grid barrier makes every block's write visible to the others; dynamic shared memory is per block", [] {
        for (int blocks : {1, 2, 7, 40})
        {
            auto out = grid_exchange(blocks, 1, true);
            for (int b = 0; b < blocks; b++) REQUIRE(out[b] == (b + 1) % blocks + 1);
        }
    });
    expect("cooperative launch: without the grid barrier a block reads its neighbour before it was written", [] {
        auto out = grid_exchange(40, 0, true);
        bool wrong = false;
        for (int b = 0; b < 40; b++) wrong |= out[b] != (b + 1) % 40 + 1;
        REQUIRE(wrong);
    });
    expect("cooperative launch: more blocks than can be resident at once is refused; the occupancy calculator says how many", [] {
        int per_sm = 0;
        REQUIRE(cuOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn("selftest_grid_exchange"), 64, 16) == 0);
        REQUIRE(per_sm == 32);
        CUresult r;
        grid_exchange(per_sm * 132 + 1, 1, true, &r);
        REQUIRE(r == 720);
    });
    expect("cooperative launch: more threads than the emulator has fibers for is refused (its limit, not a GPU's), not a crash", [] {
        CUresult r;
        grid_exchange(400, 1, true, &r); // 400 blocks x 64 threads: resident on 132 SMs, over the 24 576 fibers
        REQUIRE(r == 720);
    });
    expect("a grid barrier that some block never reaches is reported as a deadlock (sticky launch failure)", [] {
        auto state = dalloc(8);
        REQUIRE(cuMemsetD32Async(state, 0, 2, g_stream) == 0);
        void* args[] = {&state};
        REQUIRE(cuLaunchCooperativeKernel(fn("selftest_grid_deadlock"), 4, 1, 1, 64, 1, 1, 0, g_stream, args) == 0);
        REQUIRE(cuStreamSynchronize(g_stream) == 719);
    });
    expect("spin-waiting outside a cooperative launch stops the emulator", [] {
        REQUIRE(cuLaunchKernel(fn("selftest_spin_outside_cooperative"), 2, 1, 1, 32, 1, 1, 0, g_stream, nullptr, nullptr) == 0);
        cuStreamSynchronize(g_stream);
    }, 134);
    expect("dynamic shared memory above 48 KiB needs cuFuncSetAttribute, up to the opt-in limit", [] {
        auto data = dalloc(8), state = dalloc(8), out = dalloc(8);
        int barrier = 1;
        void* args[] = {&data, &state, &out, &barrier};
        void* f = fn("selftest_grid_exchange");
        REQUIRE(cuLaunchCooperativeKernel(f, 2, 1, 1, 64, 1, 1, 64 * 1024, g_stream, args) == 1);
        REQUIRE(cuFuncSetAttribute(f, 8, 228 * 1024) == 1);
        REQUIRE(cuFuncSetAttribute(f, 8, 64 * 1024) == 0);
        REQUIRE(cuMemsetD32Async(state, 0, 2, g_stream) == 0);
        REQUIRE(cuLaunchCooperativeKernel(f, 2, 1, 1, 64, 1, 1, 64 * 1024, g_stream, args) == 0);
        REQUIRE(cuStreamSynchronize(g_stream) == 0);
    });
    // Thread-block clusters: cuLaunchKernelEx with CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION (see selftest_cluster_kernels.cu).
    struct Attr { int id; int pad; unsigned x, y, z; char rest[52]; };
    struct Config { unsigned gx, gy, gz, bx, by, bz, shared; void* stream; Attr* attrs; unsigned count; };
    static_assert(sizeof(Attr) == 72 && sizeof(Config) == 56, "cuda.h's layouts");
    // selftest_cluster_exchange on `blocks` blocks in clusters of `cluster`; out[] after the stream, or the launch's error in *r.
    static auto cluster_exchange = [](unsigned blocks, unsigned cluster, int mode, CUresult* r = nullptr) {
        auto out = dalloc(4 * blocks);
        void* args[] = {&out, &mode};
        Attr a{4, 0, cluster, 1, 1, {}};
        Config c{blocks, 1, 1, 64, 1, 1, 64, g_stream, &a, 1};
        CUresult launched = cuLaunchKernelEx(&c, fn("selftest_cluster_exchange"), args, nullptr);
        if (r) *r = launched;
        std::vector<int> host(blocks, -1);
        if (launched == 0)
        {
            REQUIRE(cuStreamSynchronize(g_stream) == 0);
            REQUIRE(cuMemcpyDtoH_v2(host.data(), out, 4 * blocks) == 0);
        }
        return host;
    };
    expect("cluster launch: each block reaches every block of its cluster's shared memory, past a cluster barrier", [] {
        for (unsigned cluster : {1u, 2u, 4u, 8u})
        {
            auto out = cluster_exchange(16, cluster, 0);
            for (unsigned b = 0; b < 16; b++)
            {
                int first = (int)(b / cluster * cluster), want = 0;
                for (unsigned r = 0; r < cluster; r++) want += first + (int)r + 1;
                REQUIRE(out[b] == want);
            }
        }
    });
    expect("cluster launch: above 8 blocks needs the non-portable opt-in, at most 16; the grid a whole number of clusters", [] {
        CUresult r;
        cluster_exchange(16, 16, 0, &r);
        REQUIRE(r == 912);
        REQUIRE(cuFuncSetAttribute(fn("selftest_cluster_exchange"), 14, 1) == 0);
        auto out = cluster_exchange(16, 16, 0, &r);
        REQUIRE(r == 0 && out[3] == 136);
        cluster_exchange(32, 32, 0, &r);
        REQUIRE(r == 912);
        cluster_exchange(12, 8, 0, &r);
        REQUIRE(r == 912);
    });
    expect("cluster occupancy: clusters of 64-thread blocks fit 8 GPCs; 16 without the opt-in is refused", [] {
        Attr a{4, 0, 8, 1, 1, {}};
        Config c{8, 1, 1, 64, 1, 1, 64, nullptr, &a, 1};
        int n = 0;
        REQUIRE(cuOccupancyMaxActiveClusters(&n, fn("selftest_cluster_exchange"), &c) == 0);
        REQUIRE(n == 8 * (32 * 16 / 8));
        a.x = 16;
        REQUIRE(cuOccupancyMaxActiveClusters(&n, fn("selftest_cluster_exchange"), &c) == 912);
    });
    expect("cluster launch: mapping another block before the cluster's first barrier stops the emulator", [] {
        cluster_exchange(8, 4, 1);
    }, 134);
    expect("cluster launch: mapping a block of the cluster that has exited stops the emulator", [] {
        cluster_exchange(8, 4, 2);
    }, 134);
    expect("cluster launch: mapping a rank outside the cluster stops the emulator", [] {
        cluster_exchange(8, 4, 3);
    }, 134);
    expect("cluster launch: CHARRNN_EMULATOR_REFUSE_CLUSTER refuses clusters of that size, and the context stays usable", [] {
        CUresult r;
        cluster_exchange(8, 4, 0, &r);
        REQUIRE(r == 912);
        auto out = cluster_exchange(8, 2, 0, &r);
        REQUIRE(r == 0 && out[1] == 3);
    }, 0, "CHARRNN_EMULATOR_REFUSE_CLUSTER=4");
    printf("selftest: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
