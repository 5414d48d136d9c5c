using CharRnn.Interop;

namespace CharRnn.Cuda;

/// <summary>The arithmetic of a <see cref="Blas"/> handle's GEMMs.</summary>
/// <remarks>The GEMMs' arithmetic: FP32; TF32 (math mode <c>CUBLAS_TF32_TENSOR_OP_MATH</c>: products of operands rounded
/// to 10-bit mantissas, FP32 accumulation); or BF16 (<c>cublasGemmEx</c> with FP32 operands and
/// <c>CUBLAS_COMPUTE_32F_FAST_16BF</c>: operands rounded to bfloat16 inside cuBLAS, FP32 accumulation and output — what
/// PyTorch's <c>set_float32_matmul_precision("medium")</c> asks for). Storage stays FP32 in every mode.</remarks>
public enum GemmMath { Fp32, Tf32, Bf16 }

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

    readonly GemmMath _math;

    public Blas(CudaContext ctx, CudaStream stream, GemmMath math = GemmMath.Fp32)
    {
        _ctx = ctx;
        _math = math;
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
        CudaCheck.ThrowIfFailed(Cublas.cublasSetMathMode(h, math == GemmMath.Tf32 ? Cublas.CUBLAS_TF32_TENSOR_OP_MATH : Cublas.CUBLAS_DEFAULT_MATH));
        int v;
        CudaCheck.ThrowIfFailed(Cublas.cublasGetVersion_v2(h, &v));
        Version = v;
    }

    /// <summary>cuBLAS version as major·10000 + minor·100 + patch (e.g. 130100).</summary>
    public int Version { get; }

    /// <summary>The arguments of one column-major cuBLAS GEMM call: C = op1(First)·op2(Second), M×N, inner K.</summary>
    public readonly record struct ColumnMajorCall(int Op1, int Op2, int M, int N, int K, bool FirstIsB, int LdFirst, int LdSecond, int Ldc);

    /// <summary>
    /// The row-major ↔ column-major mapping, written once. Row-major C (m×n) = op(A)·op(B), op(A) m×k, op(B) k×n,
    /// lda/ldb/ldc the row-major leading dimensions (columns of each stored matrix). A row-major matrix X with leading
    /// dimension ld is, to column-major cuBLAS, Xᵀ with the same ld. So we ask for Cᵀ = op(B)ᵀ·op(A)ᵀ: B's stored
    /// memory first, A's second, M = n, N = m, each transpose flag staying with its own matrix.
    /// </summary>
    public static ColumnMajorCall MapRowMajor(bool transA, bool transB, int m, int n, int k, int lda, int ldb, int ldc) =>
        new(transB ? Cublas.CUBLAS_OP_T : Cublas.CUBLAS_OP_N, transA ? Cublas.CUBLAS_OP_T : Cublas.CUBLAS_OP_N,
            n, m, k, FirstIsB: true, LdFirst: ldb, LdSecond: lda, Ldc: ldc);

    /// <summary>Row-major C (m×n) = alpha·op(A)·op(B) + beta·C through <c>cublasSgemm_v2</c>, or <c>cublasGemmEx</c> in
    /// BF16 math (see <see cref="MapRowMajor"/>).</summary>
    public void SgemmRowMajor(bool transA, bool transB, int m, int n, int k, float alpha,
        ulong a, int lda, ulong b, int ldb, float beta, ulong c, int ldc)
    {
        _ctx.Bind();
        var g = MapRowMajor(transA, transB, m, n, k, lda, ldb, ldc);
        ulong first = g.FirstIsB ? b : a, second = g.FirstIsB ? a : b;
        if (_math == GemmMath.Bf16)
            CudaCheck.ThrowIfFailed(Cublas.cublasGemmEx(_handle, g.Op1, g.Op2, g.M, g.N, g.K, &alpha, first, Cublas.CUDA_R_32F, g.LdFirst,
                second, Cublas.CUDA_R_32F, g.LdSecond, &beta, c, Cublas.CUDA_R_32F, g.Ldc, Cublas.CUBLAS_COMPUTE_32F_FAST_16BF, Cublas.CUBLAS_GEMM_DEFAULT));
        else
            CudaCheck.ThrowIfFailed(Cublas.cublasSgemm_v2(_handle, g.Op1, g.Op2, g.M, g.N, g.K, &alpha, first, g.LdFirst, second, g.LdSecond, &beta, c, g.Ldc));
    }

    public void Dispose()
    {
        if (_handle == IntPtr.Zero) return;
        _ctx.BindForCleanup();
        Cublas.cublasDestroy_v2(_handle);
        _handle = IntPtr.Zero;
        _workspace.Dispose();
    }
}
