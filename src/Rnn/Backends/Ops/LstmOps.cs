using CharRnn.Rnn.Backends.Cpu;
using static CharRnn.Rnn.Backends.HostView;

namespace CharRnn.Rnn.Backends.Ops;

/// <summary>
/// <c>lstm_forward</c> (kernels/gates.cu): pre (n × 4H) = x·W_x + h·W_h for the gate blocks i, f, g, o, biases not yet
/// added. i, f, o = σ(pre + bx (+ bh)), g = tanh(…); c = f ⊙ cPrev + i ⊙ g; h = o ⊙ tanh(c). gates (n × 4H) ← i, f, g, o.
/// </summary>
public sealed class LstmForwardOp : HostedOp<LstmForwardOp.Args>
{
    public static readonly LstmForwardOp Instance = new();

    public readonly record struct Args(Mat Pre, Tensor Bx, Tensor? Bh, Mat CPrev, Mat Gates, Mat C, Mat H) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(Pre); w.Ptr(Bx); w.Ptr(Bh); w.Ptr(CPrev); w.Int(H.Rows, "n"); w.Int(H.Cols, "H");
            w.Ptr(Gates); w.Ptr(C); w.Ptr(H);
        }
    }

    public override string Kernel => "lstm_forward";
    public override Grid GridFor(in Args a) => Grid.Elements(a.H.Length);

    /// <summary>One fused Vector256 row kernel (<see cref="CpuKernels.LstmForwardRow"/>) per batch row, in row order.</summary>
    public override void Host(in Args a)
    {
        // Stryker disable once all : where the scratch lives (stack or heap), not what it holds
        Span<float> b = a.Bx.Length <= 16384 ? stackalloc float[a.Bx.Length] : new float[a.Bx.Length];
        GateMath.BiasSum(a.Bx, a.Bh, b);
        for (int r = 0; r < a.H.Rows; r++)
            CpuKernels.LstmForwardRow(Row(a.Pre, r), b, Row(a.CPrev, r), Row(a.Gates, r), Row(a.C, r), Row(a.H, r));
    }

    public override void Reference(in Args a, DoubleTensors d)
    {
        int n = a.H.Rows, h = a.H.Cols;
        var pre = d[a.Pre]; var bx = d[a.Bx]; var bh = d.OrZeros(a.Bh, 1, 4 * h); var cp = d[a.CPrev];
        var g = d.Out(a.Gates); var c = d.Out(a.C); var hh = d.Out(a.H);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < h; j++)
            {
                double P(int k) => pre[r, k * h + j] + bx[0, k * h + j] + bh[0, k * h + j];
                double i = GateMath.Sigmoid(P(0)), f = GateMath.Sigmoid(P(1)), gg = Math.Tanh(P(2)), o = GateMath.Sigmoid(P(3));
                (g[r, j], g[r, h + j], g[r, 2 * h + j], g[r, 3 * h + j]) = (i, f, gg, o);
                c[r, j] = f * cp[r, j] + i * gg;
                hh[r, j] = o * Math.Tanh(c[r, j]);
            }
    }

    public override IReadOnlyList<OpCase> Cases => GateMath.WithBiasVariants;

    public override Args Make(OpOperands o, OpCase c) =>
        new(o.Input(c.Rows, 4 * c.Cols), o.Input(1, 4 * c.Cols).Tensor, c.Variant == 1 ? o.Input(1, 4 * c.Cols).Tensor : null,
            o.Input(c.Rows, c.Cols), o.Output(c.Rows, 4 * c.Cols), o.Output(c.Rows, c.Cols), o.Output(c.Rows, c.Cols));
}

/// <summary>
/// <c>lstm_backward</c>: dh (n × H) is d loss / d h_t (all of it); dc (n × H) holds d loss / d c_t arriving from step
/// t+1 and is replaced by d loss / d c_{t−1}; dpre (n × 4H) ← d loss / d pre-activations of i, f, g, o.
/// </summary>
public sealed class LstmBackwardOp : HostedOp<LstmBackwardOp.Args>
{
    public static readonly LstmBackwardOp Instance = new();

    public readonly record struct Args(Mat Dh, Mat Dc, Mat Gates, Mat CPrev, Mat C, Mat Dpre) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(Dh); w.Ptr(Dc); w.Ptr(Gates); w.Ptr(CPrev); w.Ptr(C); w.Int(Dh.Rows, "n"); w.Int(Dh.Cols, "H"); w.Ptr(Dpre);
        }
    }

    public override string Kernel => "lstm_backward";
    public override Grid GridFor(in Args a) => Grid.Elements(a.Dh.Length);

    public override void Host(in Args a)
    {
        for (int r = 0; r < a.Dh.Rows; r++)
            CpuKernels.LstmBackwardRow(Row(a.Dh, r), Row(a.Dc, r), Row(a.Gates, r), Row(a.CPrev, r), Row(a.C, r), Row(a.Dpre, r));
    }

    public override void Reference(in Args a, DoubleTensors d)
    {
        int n = a.Dh.Rows, h = a.Dh.Cols;
        var dh = d[a.Dh]; var g = d[a.Gates]; var cp = d[a.CPrev]; var c = d[a.C];
        var dc = d.Out(a.Dc); var dp = d.Out(a.Dpre);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < h; j++)
            {
                double i = g[r, j], f = g[r, h + j], gg = g[r, 2 * h + j], o = g[r, 3 * h + j];
                double tc = Math.Tanh(c[r, j]), dct = dc[r, j] + dh[r, j] * o * (1 - tc * tc);
                dp[r, j] = dct * gg * i * (1 - i);
                dp[r, h + j] = dct * cp[r, j] * f * (1 - f);
                dp[r, 2 * h + j] = dct * i * (1 - gg * gg);
                dp[r, 3 * h + j] = dh[r, j] * tc * o * (1 - o);
                dc[r, j] = dct * f;
            }
    }

    public override IReadOnlyList<OpCase> Cases => GateMath.Shapes;

    /// <summary>Gate values as the forward pass leaves them: i, f, o in (0, 1); g = tanh(·) in (−1, 1).</summary>
    public override Args Make(OpOperands o, OpCase c)
    {
        var gates = o.Uniform(c.Rows, 4 * c.Cols, 0.05, 0.95);
        return new(o.Input(c.Rows, c.Cols), o.InOut(c.Rows, c.Cols), gates, o.Input(c.Rows, c.Cols), o.Input(c.Rows, c.Cols),
            o.Output(c.Rows, 4 * c.Cols));
    }
}

public static partial class BackendOps
{
    /// <summary>See <see cref="LstmForwardOp"/>.</summary>
    public static void LstmForward(this IBackend be, Mat pre, Tensor bx, Tensor? bh, Mat cPrev, Mat gates, Mat c, Mat h) =>
        be.Run(LstmForwardOp.Instance, new(pre, bx, bh, cPrev, gates, c, h));

    /// <summary>See <see cref="LstmBackwardOp"/>.</summary>
    public static void LstmBackward(this IBackend be, Mat dh, Mat dc, Mat gates, Mat cPrev, Mat c, Mat dpre) =>
        be.Run(LstmBackwardOp.Instance, new(dh, dc, gates, cPrev, c, dpre));
}
