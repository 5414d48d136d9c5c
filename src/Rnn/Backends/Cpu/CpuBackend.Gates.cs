using System.Numerics.Tensors;

namespace CharRnn.Rnn.Backends.Cpu;

/// <summary>The CPU backend's gate ops (LSTM, GRU): one fused Vector256 row kernel of <see cref="CpuKernels"/> per batch row, in row order.</summary>
public sealed partial class CpuBackend
{
    /// <summary>dst = bx + bh (or bx alone): the one bias the kernels add where the cell sums both.</summary>
    static void BiasSum(Tensor bx, Tensor? bh, Span<float> dst)
    {
        var b = D(bx).AsSpan(0, bx.Length);
        if (bh != null) TensorPrimitives.Add(b, D(bh).AsSpan(0, bh.Length), dst); else b.CopyTo(dst);
    }

    public void LstmForward(Mat pre, Tensor bx, Tensor? bh, Mat cPrev, Mat gates, Mat c, Mat h)
    {
        using var _ = Op();
        // Stryker disable once all : where the scratch lives (stack or heap), not what it holds
        Span<float> b = bx.Length <= 16384 ? stackalloc float[bx.Length] : new float[bx.Length];
        BiasSum(bx, bh, b);
        for (int r = 0; r < h.Rows; r++)
            CpuKernels.LstmForwardRow(Row(pre, r), b, Row(cPrev, r), Row(gates, r), Row(c, r), Row(h, r));
    }

    public void LstmBackward(Mat dh, Mat dc, Mat gates, Mat cPrev, Mat c, Mat dpre)
    {
        using var _ = Op();
        for (int r = 0; r < dh.Rows; r++)
            CpuKernels.LstmBackwardRow(Row(dh, r), Row(dc, r), Row(gates, r), Row(cPrev, r), Row(c, r), Row(dpre, r));
    }

    public void GruForward(Mat xpre, Mat hproj, Tensor bx, Tensor? bh, Mat hPrev, Mat gates, Mat h)
    {
        using var _ = Op();
        var b1 = D(bx).AsSpan(0, bx.Length);
        Span<float> b2 = bh != null ? D(bh).AsSpan(0, bh.Length) : new float[bx.Length]; // zeros: no bias_hh
        for (int r = 0; r < h.Rows; r++)
            CpuKernels.GruForwardRow(Row(xpre, r), Row(hproj, r), b1, b2, Row(hPrev, r), Row(gates, r), Row(h, r));
    }

    public void GruBackward(Mat dh, Mat gates, Mat hproj, Tensor? bh, Mat hPrev, Mat dxpre, Mat dhproj, Mat dhPrev)
    {
        using var _ = Op();
        int hd = dh.Cols;
        var b2 = bh != null ? D(bh) : null;
        for (int r = 0; r < dh.Rows; r++)
        {
            var dhr = Row(dh, r); var g = Row(gates, r); var u = Row(hproj, r); var hp = Row(hPrev, r);
            var dx = Row(dxpre, r); var du = Row(dhproj, r); var dprev = Row(dhPrev, r);
            for (int j = 0; j < hd; j++)
            {
                float rg = g[j], z = g[hd + j], n = g[2 * hd + j], d = dhr[j];
                float hn = u[2 * hd + j] + (b2 != null ? b2[2 * hd + j] : 0f);
                float dn = d * (1f - z) * (1f - n * n);
                float dz = d * (hp[j] - n) * z * (1f - z);
                float dr = dn * hn * rg * (1f - rg);
                dx[j] = dr; dx[hd + j] = dz; dx[2 * hd + j] = dn;
                du[j] = dr; du[hd + j] = dz; du[2 * hd + j] = dn * rg;
                dprev[j] += d * z;
            }
        }
    }

    public void GruResetGates(Mat xpre, Mat hproj, Tensor bx, Mat hPrev, Mat gates, Mat rh)
    {
        using var _ = Op();
        var b = D(bx).AsSpan(0, bx.Length);
        for (int r = 0; r < hPrev.Rows; r++)
            CpuKernels.GruResetGatesRow(Row(xpre, r), Row(hproj, r), b, Row(hPrev, r), Row(gates, r), Row(rh, r));
    }

    public void GruCandidate(Mat xpre, Mat hproj, Tensor bx, Mat hPrev, Mat gates, Mat h)
    {
        using var _ = Op();
        var b = D(bx).AsSpan(0, bx.Length);
        for (int r = 0; r < h.Rows; r++)
            CpuKernels.GruCandidateRow(Row(xpre, r), Row(hproj, r), b, Row(hPrev, r), Row(gates, r), Row(h, r));
    }

    public void GruCandidateBackward(Mat dh, Mat gates, Mat hPrev, Mat dxpre, Mat dhproj, Mat dhPrev)
    {
        using var _ = Op();
        int hd = dh.Cols;
        for (int r = 0; r < dh.Rows; r++)
        {
            var d = Row(dh, r); var g = Row(gates, r); var hp = Row(hPrev, r); var dx = Row(dxpre, r); var du = Row(dhproj, r); var dp = Row(dhPrev, r);
            for (int j = 0; j < hd; j++)
            {
                float z = g[hd + j], n = g[2 * hd + j];
                float dn = d[j] * (1f - z) * (1f - n * n);
                float dz = d[j] * (hp[j] - n) * z * (1f - z);
                dx[hd + j] = du[hd + j] = dz;
                dx[2 * hd + j] = du[2 * hd + j] = dn;
                dp[j] += d[j] * z;
            }
        }
    }

    public void GruResetBackward(Mat drh, Mat gates, Mat hPrev, Mat dxpre, Mat dhproj, Mat dhPrev)
    {
        using var _ = Op();
        int hd = drh.Cols;
        for (int r = 0; r < drh.Rows; r++)
        {
            var d = Row(drh, r); var g = Row(gates, r); var hp = Row(hPrev, r); var dx = Row(dxpre, r); var du = Row(dhproj, r); var dp = Row(dhPrev, r);
            for (int j = 0; j < hd; j++)
            {
                float rg = g[j];
                dx[j] = du[j] = d[j] * hp[j] * rg * (1f - rg);
                dp[j] += d[j] * rg;
            }
        }
    }
}
