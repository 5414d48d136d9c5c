using CharRnn.Interop;

namespace CharRnn.Cuda;

/// <summary>
/// A cuBLAS handle bound to one stream, with its own workspace so its calls can be captured in a CUDA graph
/// (<c>cublasSetWorkspace</c> is called after <c>cublasSetStream</c>, which resets it). FP32 math (no TF32) unless
/// asked, host pointer mode.
/// </summary>
public sealed unsafe class Blas : IDisposable
{
    public const long WorkspaceBytes = 32L << 20;
    readonly CudaContext _ctx;
    readonly DeviceBuffer<byte> _workspace;
    IntPtr _handle;

    public Blas(CudaContext ctx, CudaStream stream, bool allowTf32 = false)
    {
        _ctx = ctx;
        ctx.Bind();
        var lib = NativeLibraries.Load(NativeLibraries.Cublas);
        if (!lib.Ok) throw new CudaException("cuBLAS is not installed: " + lib.Describe() + $". Install CUDA's libcublas or set {NativeLibraries.LibDirVariable}.");
        IntPtr h;
        CudaCheck.ThrowIfFailed(Cublas.cublasCreate_v2(&h));
        _handle = h;
        _workspace = ctx.Allocate<byte>(WorkspaceBytes);
        CudaCheck.ThrowIfFailed(Cublas.cublasSetStream_v2(h, stream.Handle));
        CudaCheck.ThrowIfFailed(Cublas.cublasSetWorkspace_v2(h, _workspace.Pointer, (nuint)WorkspaceBytes));
        CudaCheck.ThrowIfFailed(Cublas.cublasSetPointerMode_v2(h, Cublas.CUBLAS_POINTER_MODE_HOST));
        CudaCheck.ThrowIfFailed(Cublas.cublasSetMathMode(h, allowTf32 ? Cublas.CUBLAS_TF32_TENSOR_OP_MATH : Cublas.CUBLAS_DEFAULT_MATH));
        int v;
        CudaCheck.ThrowIfFailed(Cublas.cublasGetVersion_v2(h, &v));
        Version = v;
    }

    /// <summary>cuBLAS version as major·10000 + minor·100 + patch (e.g. 130100).</summary>
    public int Version { get; }

    /// <summary>
    /// Row-major C (m×n) = alpha·op(A)·op(B) + beta·C, with op(A) m×k and op(B) k×n; lda/ldb/ldc are row-major
    /// leading dimensions (columns of the stored matrix).
    /// The mapping, written once: a row-major matrix X with leading dimension ld is, to column-major cuBLAS, Xᵀ with
    /// the same ld. Cᵀ = op(B)ᵀ·op(A)ᵀ, so we ask cuBLAS for (op(B) as stored)·(op(A) as stored) with the operands
    /// swapped and m, n swapped; the transpose flags stay attached to their own matrix.
    /// </summary>
    public void SgemmRowMajor(bool transA, bool transB, int m, int n, int k, float alpha,
        ulong a, int lda, ulong b, int ldb, float beta, ulong c, int ldc)
    {
        _ctx.Bind();
        CudaCheck.ThrowIfFailed(Cublas.cublasSgemm_v2(_handle,
            transB ? Cublas.CUBLAS_OP_T : Cublas.CUBLAS_OP_N, transA ? Cublas.CUBLAS_OP_T : Cublas.CUBLAS_OP_N,
            n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc));
    }

    /// <summary>The same product through cublasGemmEx with FP32 compute (used by the benchmark's peak measurement).</summary>
    public void GemmExRowMajor(bool transA, bool transB, int m, int n, int k, float alpha,
        ulong a, int lda, ulong b, int ldb, float beta, ulong c, int ldc)
    {
        _ctx.Bind();
        CudaCheck.ThrowIfFailed(Cublas.cublasGemmEx(_handle,
            transB ? Cublas.CUBLAS_OP_T : Cublas.CUBLAS_OP_N, transA ? Cublas.CUBLAS_OP_T : Cublas.CUBLAS_OP_N,
            n, m, k, &alpha, b, Cublas.CUDA_R_32F, ldb, a, Cublas.CUDA_R_32F, lda, &beta, c, Cublas.CUDA_R_32F, ldc,
            Cublas.CUBLAS_COMPUTE_32F, Cublas.CUBLAS_GEMM_DEFAULT));
    }

    /// <summary>Batched row-major SGEMM with constant strides between the matrices of each operand.</summary>
    public void SgemmStridedBatchedRowMajor(bool transA, bool transB, int m, int n, int k, float alpha,
        ulong a, int lda, long strideA, ulong b, int ldb, long strideB, float beta, ulong c, int ldc, long strideC, int batch)
    {
        _ctx.Bind();
        CudaCheck.ThrowIfFailed(Cublas.cublasSgemmStridedBatched(_handle,
            transB ? Cublas.CUBLAS_OP_T : Cublas.CUBLAS_OP_N, transA ? Cublas.CUBLAS_OP_T : Cublas.CUBLAS_OP_N,
            n, m, k, &alpha, b, ldb, strideB, a, lda, strideA, &beta, c, ldc, strideC, batch));
    }

    public void Dispose()
    {
        if (_handle == IntPtr.Zero) return;
        _ctx.Bind();
        Cublas.cublasDestroy_v2(_handle);
        _handle = IntPtr.Zero;
        _workspace.Dispose();
    }
}
