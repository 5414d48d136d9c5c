using CharRnn.Rnn.Backends.Cpu;
using static CharRnn.Rnn.Backends.HostView;

namespace CharRnn.Rnn.Backends.Ops;

/// <summary>
/// <c>gru_forward</c> (PyTorch's GRU; kernels/gates.cu): xpre = x·W_x and hproj = h·W_h (n × 3H, no biases);
/// r = σ(x_r + b_xr + h_r + b_hr), z = σ(x_z + b_xz + h_z + b_hz), n = tanh(x_n + b_xn + r ⊙ (h_n + b_hn));
/// h = (1 − z) ⊙ n + z ⊙ hPrev; gates (n × 3H) ← r, z, n.
/// </summary>
public sealed class GruForwardOp : HostedOp<GruForwardOp.Args>
{
    public static readonly GruForwardOp Instance = new();

    public readonly record struct Args(Mat Xpre, Mat Hproj, Tensor Bx, Tensor? Bh, Mat HPrev, Mat Gates, Mat H) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(Xpre); w.Ptr(Hproj); w.Ptr(Bx); w.Ptr(Bh); w.Ptr(HPrev); w.Int(H.Rows, "n"); w.Int(H.Cols, "H");
            w.Ptr(Gates); w.Ptr(H);
        }
    }

    public override string Kernel => "gru_forward";
    public override Grid GridFor(in Args a) => Grid.Elements(a.H.Length);

    public override void Host(in Args a)
    {
        var b1 = Array(a.Bx).AsSpan(0, a.Bx.Length);
        Span<float> b2 = a.Bh != null ? Array(a.Bh).AsSpan(0, a.Bh.Length) : new float[a.Bx.Length]; // zeros: no bias_hh
        for (int r = 0; r < a.H.Rows; r++)
            CpuKernels.GruForwardRow(Row(a.Xpre, r), Row(a.Hproj, r), b1, b2, Row(a.HPrev, r), Row(a.Gates, r), Row(a.H, r));
    }

    public override void Reference(in Args a, DoubleTensors d)
    {
        int n = a.H.Rows, h = a.H.Cols;
        var x = d[a.Xpre]; var u = d[a.Hproj]; var bx = d[a.Bx]; var bh = d.OrZeros(a.Bh, 1, 3 * h); var hp = d[a.HPrev];
        var g = d.Out(a.Gates); var hh = d.Out(a.H);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < h; j++)
            {
                double rg = GateMath.Sigmoid(x[r, j] + bx[0, j] + u[r, j] + bh[0, j]);
                double z = GateMath.Sigmoid(x[r, h + j] + bx[0, h + j] + u[r, h + j] + bh[0, h + j]);
                double nn = Math.Tanh(x[r, 2 * h + j] + bx[0, 2 * h + j] + rg * (u[r, 2 * h + j] + bh[0, 2 * h + j]));
                (g[r, j], g[r, h + j], g[r, 2 * h + j]) = (rg, z, nn);
                hh[r, j] = (1 - z) * nn + z * hp[r, j];
            }
    }

    public override IReadOnlyList<OpCase> Cases => GateMath.WithBiasVariants;

    public override Args Make(OpOperands o, OpCase c) =>
        new(o.Input(c.Rows, 3 * c.Cols), o.Input(c.Rows, 3 * c.Cols), o.Input(1, 3 * c.Cols).Tensor,
            c.Variant == 1 ? o.Input(1, 3 * c.Cols).Tensor : null, o.Input(c.Rows, c.Cols), o.Output(c.Rows, 3 * c.Cols), o.Output(c.Rows, c.Cols));
}

/// <summary>
/// <c>gru_backward</c>: from dh (n × H) = d loss / d h_t: dxpre (n × 3H) ← d loss / d (x·W_x + b_x),
/// dhproj (n × 3H) ← d loss / d (h·W_h + b_h), and dhPrev (n × H) += z ⊙ dh (the direct path to h_{t−1}).
/// </summary>
public sealed class GruBackwardOp : HostedOp<GruBackwardOp.Args>
{
    public static readonly GruBackwardOp Instance = new();

    public readonly record struct Args(Mat Dh, Mat Gates, Mat Hproj, Tensor? Bh, Mat HPrev, Mat Dxpre, Mat Dhproj, Mat DhPrev) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(Dh); w.Ptr(Gates); w.Ptr(Hproj); w.Ptr(Bh); w.Ptr(HPrev); w.Int(Dh.Rows, "n"); w.Int(Dh.Cols, "H");
            w.Ptr(Dxpre); w.Ptr(Dhproj); w.Ptr(DhPrev);
        }
    }

    public override string Kernel => "gru_backward";
    public override Grid GridFor(in Args a) => Grid.Elements(a.Dh.Length);

    public override void Host(in Args a)
    {
        int hd = a.Dh.Cols;
        var b2 = a.Bh != null ? Array(a.Bh) : null;
        for (int r = 0; r < a.Dh.Rows; r++)
        {
            var dhr = Row(a.Dh, r); var g = Row(a.Gates, r); var u = Row(a.Hproj, r); var hp = Row(a.HPrev, r);
            var dx = Row(a.Dxpre, r); var du = Row(a.Dhproj, r); var dprev = Row(a.DhPrev, r);
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

    public override void Reference(in Args a, DoubleTensors d)
    {
        int n = a.Dh.Rows, h = a.Dh.Cols;
        var dh = d[a.Dh]; var g = d[a.Gates]; var u = d[a.Hproj]; var bh = d.OrZeros(a.Bh, 1, 3 * h); var hp = d[a.HPrev];
        var dx = d.Out(a.Dxpre); var du = d.Out(a.Dhproj); var dp = d.Out(a.DhPrev);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < h; j++)
            {
                double rg = g[r, j], z = g[r, h + j], nn = g[r, 2 * h + j], e = dh[r, j];
                double hn = u[r, 2 * h + j] + bh[0, 2 * h + j];
                double dn = e * (1 - z) * (1 - nn * nn), dz = e * (hp[r, j] - nn) * z * (1 - z), dr = dn * hn * rg * (1 - rg);
                (dx[r, j], dx[r, h + j], dx[r, 2 * h + j]) = (dr, dz, dn);
                (du[r, j], du[r, h + j], du[r, 2 * h + j]) = (dr, dz, dn * rg);
                dp[r, j] += e * z;
            }
    }

    public override IReadOnlyList<OpCase> Cases => GateMath.WithBiasVariants;

    public override Args Make(OpOperands o, OpCase c) =>
        new(o.Input(c.Rows, c.Cols), o.Uniform(c.Rows, 3 * c.Cols, 0.05, 0.95), o.Input(c.Rows, 3 * c.Cols),
            c.Variant == 1 ? o.Input(1, 3 * c.Cols).Tensor : null, o.Input(c.Rows, c.Cols),
            o.Output(c.Rows, 3 * c.Cols), o.Output(c.Rows, 3 * c.Cols), o.InOut(c.Rows, c.Cols));
}

public static partial class BackendOps
{
    /// <summary>See <see cref="GruForwardOp"/>.</summary>
    public static void GruForward(this IBackend be, Mat xpre, Mat hproj, Tensor bx, Tensor? bh, Mat hPrev, Mat gates, Mat h) =>
        be.Run(GruForwardOp.Instance, new(xpre, hproj, bx, bh, hPrev, gates, h));

    /// <summary>See <see cref="GruBackwardOp"/>.</summary>
    public static void GruBackward(this IBackend be, Mat dh, Mat gates, Mat hproj, Tensor? bh, Mat hPrev, Mat dxpre, Mat dhproj, Mat dhPrev) =>
        be.Run(GruBackwardOp.Instance, new(dh, gates, hproj, bh, hPrev, dxpre, dhproj, dhPrev));
}
