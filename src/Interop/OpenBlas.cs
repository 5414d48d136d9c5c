using System.Runtime.InteropServices;

namespace CharRnn.Interop;

/// <summary>CBLAS declarations (cblas.h) for the one routine we call, plus OpenBLAS's thread/config queries.</summary>
public static unsafe partial class OpenBlas
{
    public const int CblasRowMajor = 101;
    public const int CblasNoTrans = 111;
    public const int CblasTrans = 112;

    [LibraryImport(NativeLibraries.OpenBlas)]
    public static partial void cblas_sgemm(int order, int transA, int transB, int m, int n, int k,
        float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc);

    [LibraryImport(NativeLibraries.OpenBlas)]
    public static partial void openblas_set_num_threads(int numThreads);

    [LibraryImport(NativeLibraries.OpenBlas)]
    public static partial byte* openblas_get_config();

    /// <summary>True when libopenblas loads and exports cblas_sgemm.</summary>
    public static bool IsAvailable()
    {
        var r = NativeLibraries.Load(NativeLibraries.OpenBlas);
        return r.Ok && NativeLibrary.TryGetExport(r.Handle, "cblas_sgemm", out _);
    }
}
