using CharRnn.Cuda;
using CharRnn.Interop;

namespace CharRnn.Tests;

/// <summary>
/// The row-major → column-major cuBLAS argument mapping, checked without a GPU: the mapped call is evaluated with
/// cuBLAS's documented column-major semantics on host arrays and must give the row-major product.
/// </summary>
public class BlasMappingTests
{
    /// <summary>cublasSgemm semantics: C[i + j·ldc] = Σ_p op1(X)[i, p] · op2(Y)[p, j], column-major storage.</summary>
    static void ColumnMajorSgemm(Blas.ColumnMajorCall g, float[] x, float[] y, float[] c)
    {
        float X(int i, int p) => g.Op1 == Cublas.CUBLAS_OP_N ? x[i + p * g.LdFirst] : x[p + i * g.LdFirst];
        float Y(int p, int j) => g.Op2 == Cublas.CUBLAS_OP_N ? y[p + j * g.LdSecond] : y[j + p * g.LdSecond];
        for (int i = 0; i < g.M; i++)
            for (int j = 0; j < g.N; j++)
            {
                double s = 0;
                for (int p = 0; p < g.K; p++) s += X(i, p) * Y(p, j);
                c[i + j * g.Ldc] = (float)s;
            }
    }

    [Test]
    public void MappedCallComputesTheRowMajorProduct([Values] bool transA, [Values] bool transB)
    {
        int m = 5, n = 7, k = 3;
        var rng = new CharRnn.Rnn.Rng(9);
        int aRows = transA ? k : m, aCols = transA ? m : k, bRows = transB ? n : k, bCols = transB ? k : n;
        var a = Enumerable.Range(0, aRows * aCols).Select(_ => (float)rng.NextNormal()).ToArray();
        var b = Enumerable.Range(0, bRows * bCols).Select(_ => (float)rng.NextNormal()).ToArray();
        var g = Blas.MapRowMajor(transA, transB, m, n, k, lda: aCols, ldb: bCols, ldc: n);
        var c = new float[m * n];
        ColumnMajorSgemm(g, g.FirstIsB ? b : a, g.FirstIsB ? a : b, c);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double want = 0;
                for (int p = 0; p < k; p++)
                    want += (transA ? a[p * aCols + i] : a[i * aCols + p]) * (transB ? b[j * bCols + p] : b[p * bCols + j]);
                Assert.That(c[i * n + j], Is.EqualTo(want).Within(1e-5), $"C[{i},{j}]");
            }
    }
}
