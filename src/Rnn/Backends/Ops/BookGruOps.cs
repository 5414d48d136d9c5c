using CharRnn.Rnn.Backends.Cpu;
using static CharRnn.Rnn.Backends.HostView;

namespace CharRnn.Rnn.Backends.Ops;

/// <summary>
/// The book's scratch GRU (d2l 6.7), first half of a step, <c>gru_reset_gates</c> (kernels/gates.cu): with xpre = x·W_x
/// and hproj[:, 0:2H] = h·W_h[:, 0:2H] (no biases), r = σ(x_r + b_r + h_r), z = σ(x_z + b_z + h_z) into gates' r, z
/// blocks, and rh = r ⊙ hPrev (n × H), whose product with U_n is the candidate's hidden part.
/// </summary>
public sealed class GruResetGatesOp : HostedOp<GruResetGatesOp.Args>
{
    public static readonly GruResetGatesOp Instance = new();

    public readonly record struct Args(Mat Xpre, Mat Hproj, Tensor Bx, Mat HPrev, Mat Gates, Mat Rh) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(Xpre); w.Ptr(Hproj); w.Ptr(Bx); w.Ptr(HPrev); w.Int(HPrev.Rows, "n"); w.Int(HPrev.Cols, "H"); w.Ptr(Gates); w.Ptr(Rh);
        }
    }

    public override string Kernel => "gru_reset_gates";
    public override Grid GridFor(in Args a) => Grid.Elements(a.HPrev.Length);

    public override void Host(in Args a)
    {
        var b = Array(a.Bx).AsSpan(0, a.Bx.Length);
        for (int r = 0; r < a.HPrev.Rows; r++)
            CpuKernels.GruResetGatesRow(Row(a.Xpre, r), Row(a.Hproj, r), b, Row(a.HPrev, r), Row(a.Gates, r), Row(a.Rh, r));
    }

    public override void Reference(in Args a, DoubleTensors d)
    {
        int n = a.HPrev.Rows, h = a.HPrev.Cols;
        var x = d[a.Xpre]; var u = d[a.Hproj]; var bx = d[a.Bx]; var hp = d[a.HPrev];
        var g = d.Out(a.Gates); var rh = d.Out(a.Rh);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < h; j++)
            {
                g[r, j] = GateMath.Sigmoid(x[r, j] + bx[0, j] + u[r, j]);
                g[r, h + j] = GateMath.Sigmoid(x[r, h + j] + bx[0, h + j] + u[r, h + j]);
                rh[r, j] = g[r, j] * hp[r, j];
            }
    }

    public override IReadOnlyList<OpCase> Cases => GateMath.Shapes;

    public override Args Make(OpOperands o, OpCase c) =>
        new(o.Input(c.Rows, 3 * c.Cols), o.Input(c.Rows, 3 * c.Cols), o.Input(1, 3 * c.Cols).Tensor, o.Input(c.Rows, c.Cols),
            o.Output(c.Rows, 3 * c.Cols), o.Output(c.Rows, c.Cols));
}

/// <summary>
/// Second half, <c>gru_candidate</c>: with hproj[:, 2H:3H] = rh·U_n, n = tanh(x_n + b_n + hproj_n) into gates' n
/// block and h = z ⊙ hPrev + (1 − z) ⊙ n (z from <see cref="GruResetGatesOp"/>).
/// </summary>
public sealed class GruCandidateOp : HostedOp<GruCandidateOp.Args>
{
    public static readonly GruCandidateOp Instance = new();

    public readonly record struct Args(Mat Xpre, Mat Hproj, Tensor Bx, Mat HPrev, Mat Gates, Mat H) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(Xpre); w.Ptr(Hproj); w.Ptr(Bx); w.Ptr(HPrev); w.Int(H.Rows, "n"); w.Int(H.Cols, "H"); w.Ptr(Gates); w.Ptr(H);
        }
    }

    public override string Kernel => "gru_candidate";
    public override Grid GridFor(in Args a) => Grid.Elements(a.H.Length);

    public override void Host(in Args a)
    {
        var b = Array(a.Bx).AsSpan(0, a.Bx.Length);
        for (int r = 0; r < a.H.Rows; r++)
            CpuKernels.GruCandidateRow(Row(a.Xpre, r), Row(a.Hproj, r), b, Row(a.HPrev, r), Row(a.Gates, r), Row(a.H, r));
    }

    public override void Reference(in Args a, DoubleTensors d)
    {
        int n = a.H.Rows, h = a.H.Cols;
        var x = d[a.Xpre]; var u = d[a.Hproj]; var bx = d[a.Bx]; var hp = d[a.HPrev];
        var g = d.Out(a.Gates); var hh = d.Out(a.H);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < h; j++)
            {
                double nn = Math.Tanh(x[r, 2 * h + j] + bx[0, 2 * h + j] + u[r, 2 * h + j]), z = g[r, h + j];
                g[r, 2 * h + j] = nn;
                hh[r, j] = z * hp[r, j] + (1 - z) * nn;
            }
    }

    public override IReadOnlyList<OpCase> Cases => GateMath.Shapes;

    /// <summary>The gates hold r, z (from <see cref="GruResetGatesOp"/>): z is read, n written, r and z checked untouched.</summary>
    public override Args Make(OpOperands o, OpCase c) =>
        new(o.Input(c.Rows, 3 * c.Cols), o.Input(c.Rows, 3 * c.Cols), o.Input(1, 3 * c.Cols).Tensor, o.Input(c.Rows, c.Cols),
            o.InOut(c.Rows, 3 * c.Cols), o.Output(c.Rows, c.Cols));
}

/// <summary>
/// <c>gru_candidate_backward</c>: from dh, the n and z columns of dxpre and dhproj (dn_pre = dh(1−z)(1−n²);
/// dz_pre = dh(hPrev − n)z(1−z)), and dhPrev += z ⊙ dh. The r columns are <see cref="GruResetBackwardOp"/>'s.
/// </summary>
public sealed class GruCandidateBackwardOp : HostedOp<GruCandidateBackwardOp.Args>
{
    public static readonly GruCandidateBackwardOp Instance = new();

    public readonly record struct Args(Mat Dh, Mat Gates, Mat HPrev, Mat Dxpre, Mat Dhproj, Mat DhPrev) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(Dh); w.Ptr(Gates); w.Ptr(HPrev); w.Int(Dh.Rows, "n"); w.Int(Dh.Cols, "H"); w.Ptr(Dxpre); w.Ptr(Dhproj); w.Ptr(DhPrev);
        }
    }

    public override string Kernel => "gru_candidate_backward";
    public override Grid GridFor(in Args a) => Grid.Elements(a.Dh.Length);

    public override void Host(in Args a)
    {
        int hd = a.Dh.Cols;
        for (int r = 0; r < a.Dh.Rows; r++)
        {
            var d = Row(a.Dh, r); var g = Row(a.Gates, r); var hp = Row(a.HPrev, r); var dx = Row(a.Dxpre, r); var du = Row(a.Dhproj, r); var dp = Row(a.DhPrev, r);
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

    public override void Reference(in Args a, DoubleTensors d)
    {
        int n = a.Dh.Rows, h = a.Dh.Cols;
        var dh = d[a.Dh]; var g = d[a.Gates]; var hp = d[a.HPrev];
        var dx = d.Out(a.Dxpre); var du = d.Out(a.Dhproj); var dp = d.Out(a.DhPrev);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < h; j++)
            {
                double z = g[r, h + j], nn = g[r, 2 * h + j];
                dx[r, h + j] = du[r, h + j] = dh[r, j] * (hp[r, j] - nn) * z * (1 - z);
                dx[r, 2 * h + j] = du[r, 2 * h + j] = dh[r, j] * (1 - z) * (1 - nn * nn);
                dp[r, j] += dh[r, j] * z;
            }
    }

    public override IReadOnlyList<OpCase> Cases => GateMath.Shapes;

    public override Args Make(OpOperands o, OpCase c) =>
        new(o.Input(c.Rows, c.Cols), o.Uniform(c.Rows, 3 * c.Cols, 0.05, 0.95), o.Input(c.Rows, c.Cols),
            o.Output(c.Rows, 3 * c.Cols), o.Output(c.Rows, 3 * c.Cols), o.InOut(c.Rows, c.Cols));
}

/// <summary>
/// <c>gru_reset_backward</c>: from drh = d loss / d (r ⊙ hPrev) (n × H), the r columns of dxpre and dhproj
/// (drh ⊙ hPrev ⊙ r(1−r)), and dhPrev += drh ⊙ r.
/// </summary>
public sealed class GruResetBackwardOp : HostedOp<GruResetBackwardOp.Args>
{
    public static readonly GruResetBackwardOp Instance = new();

    public readonly record struct Args(Mat Drh, Mat Gates, Mat HPrev, Mat Dxpre, Mat Dhproj, Mat DhPrev) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(Drh); w.Ptr(Gates); w.Ptr(HPrev); w.Int(Drh.Rows, "n"); w.Int(Drh.Cols, "H"); w.Ptr(Dxpre); w.Ptr(Dhproj); w.Ptr(DhPrev);
        }
    }

    public override string Kernel => "gru_reset_backward";
    public override Grid GridFor(in Args a) => Grid.Elements(a.Drh.Length);

    public override void Host(in Args a)
    {
        int hd = a.Drh.Cols;
        for (int r = 0; r < a.Drh.Rows; r++)
        {
            var d = Row(a.Drh, r); var g = Row(a.Gates, r); var hp = Row(a.HPrev, r); var dx = Row(a.Dxpre, r); var du = Row(a.Dhproj, r); var dp = Row(a.DhPrev, r);
            for (int j = 0; j < hd; j++)
            {
                float rg = g[j];
                dx[j] = du[j] = d[j] * hp[j] * rg * (1f - rg);
                dp[j] += d[j] * rg;
            }
        }
    }

    public override void Reference(in Args a, DoubleTensors d)
    {
        int n = a.Drh.Rows, h = a.Drh.Cols;
        var drh = d[a.Drh]; var g = d[a.Gates]; var hp = d[a.HPrev];
        var dx = d.Out(a.Dxpre); var du = d.Out(a.Dhproj); var dp = d.Out(a.DhPrev);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < h; j++)
            {
                double rg = g[r, j];
                dx[r, j] = du[r, j] = drh[r, j] * hp[r, j] * rg * (1 - rg);
                dp[r, j] += drh[r, j] * rg;
            }
    }

    public override IReadOnlyList<OpCase> Cases => GateMath.Shapes;

    public override Args Make(OpOperands o, OpCase c) =>
        new(o.Input(c.Rows, c.Cols), o.Uniform(c.Rows, 3 * c.Cols, 0.05, 0.95), o.Input(c.Rows, c.Cols),
            o.Output(c.Rows, 3 * c.Cols), o.Output(c.Rows, 3 * c.Cols), o.InOut(c.Rows, c.Cols));
}

public static partial class BackendOps
{
    public static void GruResetGates(this IBackend be, Mat xpre, Mat hproj, Tensor bx, Mat hPrev, Mat gates, Mat rh) =>
        be.Run(GruResetGatesOp.Instance, new(xpre, hproj, bx, hPrev, gates, rh));

    public static void GruCandidate(this IBackend be, Mat xpre, Mat hproj, Tensor bx, Mat hPrev, Mat gates, Mat h) =>
        be.Run(GruCandidateOp.Instance, new(xpre, hproj, bx, hPrev, gates, h));

    public static void GruCandidateBackward(this IBackend be, Mat dh, Mat gates, Mat hPrev, Mat dxpre, Mat dhproj, Mat dhPrev) =>
        be.Run(GruCandidateBackwardOp.Instance, new(dh, gates, hPrev, dxpre, dhproj, dhPrev));

    public static void GruResetBackward(this IBackend be, Mat drh, Mat gates, Mat hPrev, Mat dxpre, Mat dhproj, Mat dhPrev) =>
        be.Run(GruResetBackwardOp.Instance, new(drh, gates, hPrev, dxpre, dhproj, dhPrev));
}
