using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using CharRnn.Interop;

namespace CharRnn.Rnn.Backends.Cpu;

/// <summary>
/// Row-major SGEMM for the CPU backend: C = alpha·op(A)·op(B) + beta·C. OpenBLAS's <c>cblas_sgemm</c> when it loads
/// (as PyTorch does), else a managed kernel: op(A) and op(B) are packed contiguous, then 4-row × 16-column register
/// blocks with Vector256 FMAs, rows split across cores.
/// </summary>
public static unsafe class CpuGemm
{
    public enum Engine { Managed, OpenBlas }

    static readonly Lazy<bool> OpenBlasLoads = new(OpenBlas.IsAvailable);

    public static bool OpenBlasAvailable => OpenBlasLoads.Value;

    /// <summary>"OpenBLAS 0.3.21 ..." or null.</summary>
    public static string? OpenBlasConfig()
    {
        if (!OpenBlasAvailable) return null;
        try { return new string((sbyte*)OpenBlas.openblas_get_config()).Trim(); }
        catch (EntryPointNotFoundException) { return "OpenBLAS"; }
    }

    /// <param name="parallel">false: stay on the calling thread (the caller already splits the work across cores).</param>
    public static void Sgemm(Engine engine, bool transA, bool transB, int m, int n, int k, float alpha,
        float[] a, int aOff, int lda, float[] b, int bOff, int ldb, float beta, float[] c, int cOff, int ldc, bool parallel = true)
    {
        // Stryker disable once Logical : with one of m, n zero and the other not, the rest of the method writes nothing either
        if (m == 0 || n == 0) return;
        if (k == 0)
        {
            for (int i = 0; i < m; i++)
            {
                var row = c.AsSpan(cOff + i * ldc, n);
                if (beta == 0) row.Clear(); else System.Numerics.Tensors.TensorPrimitives.Multiply(row, beta, row);
            }
            return;
        }
        if (engine == Engine.OpenBlas)
        {
            // OpenBLAS runs single-threaded (see UseSingleThreadedOpenBlas); big products are split here, over C's
            // longer side, one block per core. Small ones (the recurrent 32×256×256) stay on the calling thread.
            // Stryker disable once all : how many parts, not what an element is: the split is over C, never k
            int parts = parallel && (long)m * n * k >= ParallelThreshold ? Environment.ProcessorCount : 1;
            // Stryker disable once Equality : as above
            if (parts == 1)
            {
                Blas(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
                return;
            }
            bool splitRows = m >= n;
            int len = splitRows ? m : n;
            Parallel.For(0, parts, part =>
            {
                int s0 = (int)((long)len * part / parts), s1 = (int)((long)len * (part + 1) / parts);
                if (s1 <= s0) return;
                if (splitRows) // rows s0..s1 of C and of op(A)
                    Blas(transA, transB, s1 - s0, n, k, alpha, a, aOff + (transA ? s0 : s0 * lda), lda, b, bOff, ldb,
                        beta, c, cOff + s0 * ldc, ldc);
                else // columns s0..s1 of C and of op(B)
                    Blas(transA, transB, m, s1 - s0, k, alpha, a, aOff, lda, b, bOff + (transB ? s0 * ldb : s0), ldb,
                        beta, c, cOff + s0, ldc);
            });
            return;
        }
        Managed(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc, parallel);
    }

    /// <summary>Products with at least this many multiply-adds are split across cores.</summary>
    public const long ParallelThreshold = 1L << 21;

    static readonly Lazy<bool> SingleThreaded = new(() =>
    {
        try { OpenBlas.openblas_set_num_threads(1); return true; }
        // Stryker disable once Boolean : reached only with an OpenBLAS that lacks openblas_set_num_threads
        catch (EntryPointNotFoundException) { return false; }
    });

    /// <summary>
    /// Puts OpenBLAS in single-threaded mode, once. Its own worker threads spin between calls and, on a 2-core
    /// machine, steal the core that the elementwise ops and the other half of a split GEMM need.
    /// </summary>
    // Stryker disable once Logical : differs only where OpenBLAS does not load, and then nothing calls it
    public static bool UseSingleThreadedOpenBlas() => OpenBlasAvailable && SingleThreaded.Value;

    static void Blas(bool transA, bool transB, int m, int n, int k, float alpha,
        float[] a, int aOff, int lda, float[] b, int bOff, int ldb, float beta, float[] c, int cOff, int ldc)
    {
        fixed (float* pa = a, pb = b, pc = c)
            OpenBlas.cblas_sgemm(OpenBlas.CblasRowMajor, transA ? OpenBlas.CblasTrans : OpenBlas.CblasNoTrans,
                transB ? OpenBlas.CblasTrans : OpenBlas.CblasNoTrans, m, n, k, alpha,
                pa + aOff, lda, pb + bOff, ldb, beta, pc + cOff, ldc);
    }

    static void Managed(bool transA, bool transB, int m, int n, int k, float alpha,
        float[] a, int aOff, int lda, float[] b, int bOff, int ldb, float beta, float[] c, int cOff, int ldc, bool parallel)
    {
        // Pack op(A) as m×k and op(B) as k×n, both contiguous (O(mk + kn) work against O(mnk)).
        var ap = ArrayPool<float>.Shared.Rent(m * k);
        var bp = ArrayPool<float>.Shared.Rent(k * n);
        try
        {
            Pack(transA, m, k, a, aOff, lda, ap);
            Pack(transB, k, n, b, bOff, ldb, bp);
            // Stryker disable once all : the thresholds below choose threads, not values (each row block is computed the same way)
            long work = (long)m * n * k;
            // Stryker disable once all : as above; more row blocks than rows leave the extra chunks empty
            int rowBlocks = (m + 3) / 4;
            // Stryker disable once all : as above
            bool oneThread = !parallel || work < 1 << 18 || rowBlocks == 1 || Environment.ProcessorCount == 1;
            if (oneThread)
            {
                Rows(0, m, n, k, alpha, ap, bp, beta, c, cOff, ldc);
            }
            else
            {
                int chunks = Math.Min(rowBlocks, Environment.ProcessorCount * 4);
                Parallel.For(0, chunks, ch =>
                {
                    int r0 = (int)((long)rowBlocks * ch / chunks) * 4;
                    int r1 = Math.Min(m, (int)((long)rowBlocks * (ch + 1) / chunks) * 4);
                    Rows(r0, r1, n, k, alpha, ap, bp, beta, c, cOff, ldc);
                });
            }
        }
        finally
        {
            // Stryker disable once Statement : an array not returned to the pool is garbage-collected; no value changes
            ArrayPool<float>.Shared.Return(ap);
            // Stryker disable once Statement : as above
            ArrayPool<float>.Shared.Return(bp);
        }
    }

    static void Pack(bool trans, int rows, int cols, float[] src, int off, int ld, float[] dst)
    {
        // dst (rows×cols) = trans ? srcᵀ : src, where src is stored (cols×rows) when trans.
        if (!trans)
        {
            for (int i = 0; i < rows; i++) Array.Copy(src, off + i * ld, dst, i * cols, cols);
            return;
        }
        const int tile = 32;
        // Stryker disable once Equality : a tile starting at the edge is empty (i1 = rows, j1 = cols)
        for (int i0 = 0; i0 < rows; i0 += tile)
        // Stryker disable once Equality : as above
        for (int j0 = 0; j0 < cols; j0 += tile)
        {
            int i1 = Math.Min(rows, i0 + tile), j1 = Math.Min(cols, j0 + tile);
            for (int j = j0; j < j1; j++)
            for (int i = i0; i < i1; i++)
                dst[i * cols + j] = src[off + j * ld + i];
        }
    }

    static void Rows(int r0, int r1, int n, int k, float alpha, float[] ap, float[] bp, float beta, float[] c, int cOff, int ldc)
    {
        int i = r0;
        fixed (float* pa = ap, pb = bp, pc = c)
        {
            if (Vector256.IsHardwareAccelerated)
                // Stryker disable once Equality : where the vector pass stops and the scalar tail starts: the same FMAs in the same order
                for (; i + 4 <= r1; i += 4) Block4(i, n, k, alpha, pa, pb, beta, pc + cOff, ldc);
            for (; i < r1; i++) Block1(i, n, k, alpha, pa, pb, beta, pc + cOff, ldc);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Block4(int i, int n, int k, float alpha, float* a, float* b, float beta, float* c, int ldc)
    {
        float* a0 = a + (long)i * k, a1 = a0 + k, a2 = a1 + k, a3 = a2 + k;
        int j = 0;
        var va = Vector256.Create(alpha);
        var vb = Vector256.Create(beta);
        for (; j + 16 <= n; j += 16)
        {
            Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default;
            Vector256<float> c20 = default, c21 = default, c30 = default, c31 = default;
            float* bj = b + j;
            for (int p = 0; p < k; p++)
            {
                var b0 = Vector256.Load(bj);
                var b1 = Vector256.Load(bj + 8);
                bj += n;
                var x = Vector256.Create(a0[p]); c00 = Vector256.FusedMultiplyAdd(x, b0, c00); c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
                x = Vector256.Create(a1[p]); c10 = Vector256.FusedMultiplyAdd(x, b0, c10); c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
                x = Vector256.Create(a2[p]); c20 = Vector256.FusedMultiplyAdd(x, b0, c20); c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
                x = Vector256.Create(a3[p]); c30 = Vector256.FusedMultiplyAdd(x, b0, c30); c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
            }
            Store(c + (long)i * ldc + j, c00, c01, va, vb, beta);
            Store(c + (long)(i + 1) * ldc + j, c10, c11, va, vb, beta);
            Store(c + (long)(i + 2) * ldc + j, c20, c21, va, vb, beta);
            Store(c + (long)(i + 3) * ldc + j, c30, c31, va, vb, beta);
        }
        for (int r = 0; r < 4; r++) Tail(i + r, j, n, k, alpha, a, b, beta, c, ldc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store(float* dst, Vector256<float> v0, Vector256<float> v1, Vector256<float> va, Vector256<float> vb, float beta)
    {
        if (beta == 0)
        {
            (v0 * va).Store(dst);
            (v1 * va).Store(dst + 8);
        }
        else
        {
            Vector256.FusedMultiplyAdd(v0, va, Vector256.Load(dst) * vb).Store(dst);
            Vector256.FusedMultiplyAdd(v1, va, Vector256.Load(dst + 8) * vb).Store(dst + 8);
        }
    }

    static void Block1(int i, int n, int k, float alpha, float* a, float* b, float beta, float* c, int ldc)
        => Tail(i, 0, n, k, alpha, a, b, beta, c, ldc);

    /// <summary>Row i, columns j0..n: one row of A against B, accumulated as axpy over k (vectorised by 8 where possible).</summary>
    static void Tail(int i, int j0, int n, int k, float alpha, float* a, float* b, float beta, float* c, int ldc)
    {
        // Stryker disable once all : at j0 = n the width is 0 and the loops below do nothing
        if (j0 >= n) return;
        int width = n - j0;
        float* ai = a + (long)i * k;
        float* ci = c + (long)i * ldc + j0;
        // Stryker disable once all : where the scratch lives (stack or heap), not what it holds
        Span<float> acc = width <= 1024 ? stackalloc float[width] : new float[width];
        // Stryker disable once Statement : stackalloc and new both zero the scratch already (no SkipLocalsInit here); kept for clarity
        acc.Clear();
        fixed (float* pacc = acc)
        {
            for (int p = 0; p < k; p++)
            {
                float x = ai[p];
                float* bp = b + (long)p * n + j0;
                int j = 0;
                if (Vector256.IsHardwareAccelerated)
                {
                    var vx = Vector256.Create(x);
                    // Stryker disable once Equality : where the vector pass stops and the scalar tail starts: the same FMAs in the same order
                    for (; j + 8 <= width; j += 8)
                        Vector256.FusedMultiplyAdd(vx, Vector256.Load(bp + j), Vector256.Load(pacc + j)).Store(pacc + j);
                }
                for (; j < width; j++) pacc[j] = MathF.FusedMultiplyAdd(x, bp[j], pacc[j]);
            }
            for (int j = 0; j < width; j++) ci[j] = beta == 0 ? alpha * pacc[j] : MathF.FusedMultiplyAdd(alpha, pacc[j], beta * ci[j]);
        }
    }
}
