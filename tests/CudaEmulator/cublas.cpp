// cublas.cpp — libcublas.so.12 of the CUDA emulator: the cuBLAS functions src/Interop/Cublas.cs binds, with cuBLAS's
// column-major semantics and argument rules (CUBLAS_STATUS_INVALID_VALUE for a bad m, n, k, lda, ldb or ldc), every
// operand checked to lie inside one live device allocation, and the GEMM enqueued on the handle's stream like a kernel.
// The arithmetic is OpenBLAS's cblas_sgemm (column-major, the same contract) when libopenblas.so.0 loads, else a plain
// loop. Reduced-precision products are emulated by rounding the operands (to nearest) before an FP32 GEMM: TF32 math
// mode and CUBLAS_COMPUTE_32F_FAST_TF32 to 10-bit mantissas, CUBLAS_COMPUTE_32F_FAST_16BF (cublasGemmEx) to bfloat16's
// 7 — the products a tensor core forms, accumulated in FP32 (in another order than the card's, as always here).
#include "emu.h"

#include <cstdio>
#include <cstring>
#include <vector>
#include <dlfcn.h>
#include <mutex>
#include <set>
#include <string>

typedef int cublasStatus_t;
enum
{
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
};

namespace
{
struct Handle { void* stream = nullptr; int pointer_mode = 0; int math_mode = 0; };
std::set<Handle*> g_handles;

typedef void (*sgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha, const float* a, int lda,
                         const float* b, int ldb, float beta, float* c, int ldc);

sgemm_fn openblas()
{
    static sgemm_fn f = [] {
        void* h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
        if (!h) return (sgemm_fn) nullptr;
        // One thread: OpenBLAS's idle workers spin in sched_yield between the emulator's many small GEMMs.
        if (auto set = (void (*)(int))dlsym(h, "openblas_set_num_threads")) set(1);
        return (sgemm_fn)dlsym(h, "cblas_sgemm");
    }();
    return f;
}

// C (m×n, column-major, ldc) = alpha·op(A)·op(B) + beta·C
void sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
           float beta, float* c, int ldc)
{
    if (auto f = openblas())
    {
        f(102 /* CblasColMajor */, ta ? 112 : 111, tb ? 112 : 111, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++)
        {
            float s = 0;
            for (int p = 0; p < k; p++) s += (ta ? a[p + (long)i * lda] : a[i + (long)p * lda]) * (tb ? b[j + (long)p * ldb] : b[p + (long)j * ldb]);
            float& y = c[i + (long)j * ldc];
            y = beta == 0 ? alpha * s : alpha * s + beta * y; // beta = 0: C is not read (it may hold NaN)
        }
}

// x rounded to nearest (ties to even) with `bits` mantissa bits (0: unchanged); NaN and infinity pass through.
float round_mantissa(float x, int bits)
{
    if (bits == 0 || bits >= 23) return x;
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return x;
    int drop = 23 - bits;
    u += (1u << (drop - 1)) - 1 + ((u >> drop) & 1u);
    u &= ~((1u << drop) - 1);
    memcpy(&x, &u, 4);
    return x;
}

// Bytes spanned by a column-major rows×cols matrix with leading dimension ld.
uint64_t span(int rows, int cols, int ld) { return rows == 0 || cols == 0 ? 0 : ((uint64_t)(cols - 1) * ld + rows) * 4; }

bool overlaps(uint64_t a, uint64_t an, uint64_t b, uint64_t bn) { return an && bn && a < b + bn && b < a + an; }
}

#define API extern "C" __attribute__((visibility("default"))) cublasStatus_t

API cublasCreate_v2(Handle** h)
{
    std::lock_guard<std::recursive_mutex> l(emu::api_mutex());
    if (emu::begin("cublasCreate_v2")) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    *h = new Handle();
    g_handles.insert(*h);
    return CUBLAS_STATUS_SUCCESS;
}

static Handle* valid(Handle* h)
{
    std::lock_guard<std::recursive_mutex> l(emu::api_mutex());
    return g_handles.count(h) ? h : nullptr;
}

API cublasDestroy_v2(Handle* h)
{
    if (!valid(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    std::lock_guard<std::recursive_mutex> l(emu::api_mutex());
    g_handles.erase(h);
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

API cublasGetVersion_v2(Handle* h, int* v)
{
    if (!valid(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!v) return CUBLAS_STATUS_INVALID_VALUE;
    *v = 120000;
    return CUBLAS_STATUS_SUCCESS;
}

API cublasSetStream_v2(Handle* h, void* stream)
{
    if (!valid(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

API cublasSetWorkspace_v2(Handle* h, uint64_t workspace, size_t bytes)
{
    if (!valid(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (bytes > 0 && !emu::device_range(workspace, bytes))
    {
        fprintf(stderr, "CUDA emulator: cublasSetWorkspace_v2: the workspace is not inside one device allocation\n");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

API cublasSetMathMode(Handle* h, int mode)
{
    if (!valid(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    int base = mode & 0xf;
    if (base != 0 && base != 2 && base != 3) return CUBLAS_STATUS_INVALID_VALUE;
    h->math_mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

API cublasSetPointerMode_v2(Handle* h, int mode)
{
    if (!valid(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode != 0 && mode != 1) return CUBLAS_STATUS_INVALID_VALUE;
    h->pointer_mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" __attribute__((visibility("default"))) const char* cublasGetStatusName(cublasStatus_t s)
{
    switch (s)
    {
    case 0: return "CUBLAS_STATUS_SUCCESS";
    case 1: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
    }
}

extern "C" __attribute__((visibility("default"))) const char* cublasGetStatusString(cublasStatus_t s)
{
    return cublasGetStatusName(s);
}

static cublasStatus_t gemm(Handle* h, const char* api, int ta, int tb, int m, int n, int k, const float* alpha,
                           uint64_t a, int lda, long long sa, uint64_t b, int ldb, long long sb, const float* beta,
                           uint64_t c, int ldc, long long sc, int batch, int mantissa = -1)
{
    std::lock_guard<std::recursive_mutex> l(emu::api_mutex());
    if (!valid(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (emu::begin(api)) return CUBLAS_STATUS_EXECUTION_FAILED;
    bool tA = ta != 0, tB = tb != 0;
    int rowsA = tA ? k : m, colsA = tA ? m : k, rowsB = tB ? n : k, colsB = tB ? k : n;
    // cuBLAS's rules (cublas<t>gemm: "the parameters m, n, k < 0 or lda, ldb, ldc too small" → INVALID_VALUE).
    if ((ta != 0 && ta != 1) || (tb != 0 && tb != 1) || m < 0 || n < 0 || k < 0 || batch < 0 ||
        lda < (rowsA > 1 ? rowsA : 1) || ldb < (rowsB > 1 ? rowsB : 1) || ldc < (m > 1 ? m : 1) || !alpha || !beta)
    {
        fprintf(stderr, "CUDA emulator: %s(transa %d, transb %d, m %d, n %d, k %d, lda %d, ldb %d, ldc %d): invalid arguments\n",
                api, ta, tb, m, n, k, lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
    for (int i = 0; i < batch; i++)
    {
        uint64_t pa = a + (uint64_t)(i * sa * 4), pb = b + (uint64_t)(i * sb * 4), pc = c + (uint64_t)(i * sc * 4);
        uint64_t na = k ? span(rowsA, colsA, lda) : 0, nb = k ? span(rowsB, colsB, ldb) : 0, nc = span(m, n, ldc);
        const char* bad = !emu::device_range(pa, na) ? "A" : !emu::device_range(pb, nb) ? "B" : !emu::device_range(pc, nc) ? "C" : nullptr;
        if (bad)
        {
            emu::fail(700, std::string(api) + ": operand " + bad + " (batch " + std::to_string(i) + ") is not inside one live device allocation");
            return CUBLAS_STATUS_EXECUTION_FAILED;
        }
        if (overlaps(pc, nc, pa, na) || overlaps(pc, nc, pb, nb))
        {
            fprintf(stderr, "CUDA emulator: %s: the output C overlaps an input (undefined in cuBLAS)\n", api);
            return CUBLAS_STATUS_INVALID_VALUE;
        }
    }
    bool device_scalars = h->pointer_mode == 1;
    float al = device_scalars ? 0 : *alpha, be = device_scalars ? 0 : *beta; // host mode: read at the call
    const float* pal = alpha;
    const float* pbe = beta;
    if (mantissa < 0) mantissa = (h->math_mode & 0xf) == 3 ? 10 : 0; // CUBLAS_TF32_TENSOR_OP_MATH
    uint64_t na = k ? span(rowsA, colsA, lda) / 4 : 0, nb = k ? span(rowsB, colsB, ldb) / 4 : 0;
    emu::enqueue(h->stream, api, [=] {
        float x = device_scalars ? *pal : al, y = device_scalars ? *pbe : be;
        std::vector<float> ra, rb;
        for (int i = 0; i < batch; i++)
        {
            auto pa = (const float*)(a + (uint64_t)(i * sa * 4));
            auto pb = (const float*)(b + (uint64_t)(i * sb * 4));
            if (mantissa)
            {
                ra.assign(pa, pa + na);
                rb.assign(pb, pb + nb);
                for (auto& v : ra) v = round_mantissa(v, mantissa);
                for (auto& v : rb) v = round_mantissa(v, mantissa);
                pa = ra.data();
                pb = rb.data();
            }
            sgemm(tA, tB, m, n, k, x, pa, lda, pb, ldb, y, (float*)(c + (uint64_t)(i * sc * 4)), ldc);
        }
    });
    return CUBLAS_STATUS_SUCCESS;
}

API cublasSgemm_v2(Handle* h, int ta, int tb, int m, int n, int k, const float* alpha, uint64_t a, int lda, uint64_t b,
                   int ldb, const float* beta, uint64_t c, int ldc)
{
    return gemm(h, "cublasSgemm_v2", ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
}

// cublasGemmEx with FP32 storage only (what CharRnn binds it for): CUBLAS_COMPUTE_32F follows the math mode,
// _FAST_TF32 and _FAST_16BF round the operands as above; other types and compute types are NOT_SUPPORTED here.
API cublasGemmEx(Handle* h, int ta, int tb, int m, int n, int k, const float* alpha, uint64_t a, int aType, int lda,
                 uint64_t b, int bType, int ldb, const float* beta, uint64_t c, int cType, int ldc, int computeType, int algo)
{
    const int CUDA_R_32F = 0;
    if (aType != CUDA_R_32F || bType != CUDA_R_32F || cType != CUDA_R_32F)
    {
        fprintf(stderr, "CUDA emulator: cublasGemmEx: only CUDA_R_32F operands are emulated (got %d, %d, %d)\n", aType, bType, cType);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    int mantissa;
    switch (computeType)
    {
    case 68: mantissa = -1; break; // CUBLAS_COMPUTE_32F
    case 75: mantissa = 7; break;  // CUBLAS_COMPUTE_32F_FAST_16BF
    case 77: mantissa = 10; break; // CUBLAS_COMPUTE_32F_FAST_TF32
    default:
        fprintf(stderr, "CUDA emulator: cublasGemmEx: compute type %d is not emulated\n", computeType);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (algo != -1 && algo != 99) return CUBLAS_STATUS_INVALID_VALUE; // CUBLAS_GEMM_DEFAULT(_TENSOR_OP)
    return gemm(h, "cublasGemmEx", ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1, mantissa);
}
