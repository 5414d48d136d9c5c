using System.Numerics.Tensors;
using CharRnn.Rnn.Backends.Cpu;
using static CharRnn.Rnn.Backends.HostView;

namespace CharRnn.Rnn.Backends.Ops;

/// <summary><c>bias_act_forward</c> (kernels/activation.cu): h = act(pre + b1 (+ b2)), biases broadcast over rows
/// (b2 is nn.RNN's second bias, b_hh; absent for the scratch model).</summary>
public sealed class BiasActivationForwardOp : HostedOp<BiasActivationForwardOp.Args>
{
    public static readonly BiasActivationForwardOp Instance = new();

    public readonly record struct Args(Activation Act, Mat Pre, Tensor B1, Tensor? B2, Mat H) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(Pre); w.Ptr(B1); w.Ptr(B2); w.Int(Pre.Rows, "rows"); w.Int(Pre.Cols, "cols"); w.Int(ActivationCode.Of(Act), "act"); w.Ptr(H);
        }
    }

    public override string Kernel => "bias_act_forward";
    public override Grid GridFor(in Args a) => Grid.Elements(a.Pre.Length);

    public override void Host(in Args a)
    {
        // Stryker disable once all : where the scratch lives (stack or heap), not what it holds
        Span<float> sum = a.Pre.Cols <= 4096 ? stackalloc float[a.Pre.Cols] : new float[a.Pre.Cols];
        GateMath.BiasSum(a.B1, a.B2, sum);
        for (int r = 0; r < a.Pre.Rows; r++)
        {
            if (a.Act == Activation.Tanh) CpuKernels.BiasTanh(Row(a.Pre, r), sum, Row(a.H, r));
            else
            {
                var hr = Row(a.H, r);
                TensorPrimitives.Add(Row(a.Pre, r), sum, hr);
                TensorPrimitives.Max(hr, 0f, hr);
            }
        }
    }

    public override void Reference(in Args a, DoubleTensors d)
    {
        var pre = d[a.Pre]; var b1 = d[a.B1]; var b2 = d.OrZeros(a.B2, 1, a.Pre.Cols); var h = d.Out(a.H);
        for (int r = 0; r < a.Pre.Rows; r++)
            for (int c = 0; c < a.Pre.Cols; c++)
            {
                double s = pre[r, c] + b1[0, c] + b2[0, c];
                h[r, c] = a.Act == Activation.Tanh ? Math.Tanh(s) : Math.Max(0, s);
            }
    }

    /// <summary>Variant bit 0: ReLU (else tanh); bit 1: two biases.</summary>
    public override IReadOnlyList<OpCase> Cases =>
        [.. new OpCase[] { new(5, 21), new(2, 3), new(9, 300) }.SelectMany(s => Enumerable.Range(0, 4).Select(v => s with { Variant = v }))];

    public override Args Make(OpOperands o, OpCase c) =>
        new((c.Variant & 1) != 0 ? Activation.Relu : Activation.Tanh, o.Input(c.Rows, c.Cols), o.Input(1, c.Cols).Tensor,
            (c.Variant & 2) != 0 ? o.Input(1, c.Cols).Tensor : null, o.Output(c.Rows, c.Cols));
}

/// <summary><c>act_backward</c>: dpre = dh ⊙ act'(·) written in terms of the output h: tanh → 1 − h², relu → [h &gt; 0].</summary>
public sealed class ActivationBackwardOp : HostedOp<ActivationBackwardOp.Args>
{
    public static readonly ActivationBackwardOp Instance = new();

    public readonly record struct Args(Activation Act, Mat Dh, Mat H, Mat Dpre) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(Dh); w.Ptr(H); w.Int(Dh.Length, "n"); w.Int(ActivationCode.Of(Act), "act"); w.Ptr(Dpre);
        }
    }

    public override string Kernel => "act_backward";
    public override Grid GridFor(in Args a) => Grid.Elements(a.Dh.Length);

    public override void Host(in Args a)
    {
        var g = All(a.Dh); var y = All(a.H); var d = All(a.Dpre);
        if (a.Act == Activation.Tanh) CpuKernels.TanhBackward(g, y, d);
        else
            for (int i = 0; i < d.Length; i++) d[i] = y[i] > 0f ? g[i] : 0f;
    }

    public override void Reference(in Args a, DoubleTensors d)
    {
        var dh = d[a.Dh]; var h = d[a.H]; var dp = d.Out(a.Dpre);
        for (int r = 0; r < a.Dh.Rows; r++)
            for (int c = 0; c < a.Dh.Cols; c++)
                dp[r, c] = dh[r, c] * (a.Act == Activation.Tanh ? 1 - h[r, c] * h[r, c] : h[r, c] > 0 ? 1 : 0);
    }

    /// <summary>Variant 1: ReLU. h in (−1, 1) as tanh leaves it (for ReLU half of it is "off").</summary>
    public override IReadOnlyList<OpCase> Cases => [new(5, 21), new(5, 21, 1), new(1, 3), new(1, 3, 1)];

    public override Args Make(OpOperands o, OpCase c) =>
        new(c.Variant == 1 ? Activation.Relu : Activation.Tanh, o.Input(c.Rows, c.Cols), o.Uniform(c.Rows, c.Cols, -0.99, 0.99),
            o.Output(c.Rows, c.Cols));
}

/// <summary>The kernels' code for an <see cref="Activation"/>: 0 tanh, 1 relu.</summary>
static class ActivationCode
{
    public static int Of(Activation a) => a == Activation.Tanh ? 0 : 1;
}

public static partial class BackendOps
{
    /// <summary>See <see cref="BiasActivationForwardOp"/>.</summary>
    public static void BiasActivationForward(this IBackend be, Activation act, Mat pre, Tensor bias, Tensor? bias2, Mat h) =>
        be.Run(BiasActivationForwardOp.Instance, new(act, pre, bias, bias2, h));

    /// <summary>See <see cref="ActivationBackwardOp"/>.</summary>
    public static void ActivationBackward(this IBackend be, Activation act, Mat dh, Mat h, Mat dpre) =>
        be.Run(ActivationBackwardOp.Instance, new(act, dh, h, dpre));
}
