using System.Runtime.InteropServices;

namespace CharRnn.Interop;

/// <summary>cuBLAS declarations (cublas_api.h), the <c>_v2</c> symbols the header maps the plain names to.</summary>
public static unsafe partial class Cublas
{
    const string Lib = NativeLibraries.Cublas;

    public const int CUBLAS_OP_N = 0;
    public const int CUBLAS_OP_T = 1;
    public const int CUBLAS_DEFAULT_MATH = 0;
    public const int CUBLAS_TF32_TENSOR_OP_MATH = 3;
    public const int CUBLAS_POINTER_MODE_HOST = 0;
    public const int CUDA_R_32F = 0;                        // cudaDataType_t (library_types.h)
    public const int CUBLAS_COMPUTE_32F_FAST_16BF = 75;     // FP32 in and out, products of inputs rounded to bfloat16
    public const int CUBLAS_GEMM_DEFAULT = -1;              // cublasGemmAlgo_t

    [LibraryImport(Lib)] public static partial CublasStatus cublasCreate_v2(IntPtr* handle);
    [LibraryImport(Lib)] public static partial CublasStatus cublasDestroy_v2(IntPtr handle);
    [LibraryImport(Lib)] public static partial CublasStatus cublasGetVersion_v2(IntPtr handle, int* version);
    [LibraryImport(Lib)] public static partial CublasStatus cublasSetStream_v2(IntPtr handle, IntPtr streamId);
    [LibraryImport(Lib)] public static partial CublasStatus cublasSetWorkspace_v2(IntPtr handle, ulong workspace, nuint workspaceSizeInBytes);
    [LibraryImport(Lib)] public static partial CublasStatus cublasSetMathMode(IntPtr handle, int mode);
    [LibraryImport(Lib)] public static partial CublasStatus cublasSetPointerMode_v2(IntPtr handle, int mode);
    [LibraryImport(Lib)] public static partial byte* cublasGetStatusName(CublasStatus status);
    [LibraryImport(Lib)] public static partial byte* cublasGetStatusString(CublasStatus status);

    [LibraryImport(Lib)]
    public static partial CublasStatus cublasSgemm_v2(IntPtr handle, int transa, int transb, int m, int n, int k,
        float* alpha, ulong a, int lda, ulong b, int ldb, float* beta, ulong c, int ldc);

    [LibraryImport(Lib)]
    public static partial CublasStatus cublasGemmEx(IntPtr handle, int transa, int transb, int m, int n, int k,
        float* alpha, ulong a, int aType, int lda, ulong b, int bType, int ldb, float* beta, ulong c, int cType, int ldc,
        int computeType, int algo);
}

public enum CublasStatus
{
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
    CUBLAS_STATUS_LICENSE_ERROR = 16,
}
