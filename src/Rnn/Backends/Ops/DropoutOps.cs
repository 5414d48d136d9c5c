using System.Numerics.Tensors;
using CharRnn.Rnn.Backends.Cpu;
using static CharRnn.Rnn.Backends.HostView;

namespace CharRnn.Rnn.Backends.Ops;

/// <summary>
/// <c>dropout_forward</c> (kernels/dropout.cu): mask = (u ≥ p) / (1 − p) with u = <see cref="CpuKernels.DropoutUniform"/>(seed,
/// c, element index) — the same draw on every backend — where c is the 64-bit count at <see cref="Args.Count"/> (2 ints,
/// low half first: the run's minibatch, which a recorded step advances itself); y = x ⊙ mask. x, y, mask contiguous.
/// </summary>
public sealed class DropoutForwardOp : HostedOp<DropoutForwardOp.Args>
{
    public static readonly DropoutForwardOp Instance = new();

    public readonly record struct Args(Mat X, float P, ulong Seed, IdxView Count, Mat Y, Mat Mask) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(X); w.Int(X.Length, "n"); w.Float(P); w.Float(1f / (1f - P), "scale"); w.U64(Seed); w.Ptr(Count); w.Ptr(Y); w.Ptr(Mask);
        }
    }

    public override string Kernel => "dropout_forward";
    public override Grid GridFor(in Args a) => Grid.Elements(a.X.Length);

    public override void Host(in Args a)
    {
        ulong counter = StepCounters.Load(Ints(a.Count));
        var xs = All(a.X); var ys = All(a.Y); var ms = All(a.Mask);
        float scale = 1f / (1f - a.P);
        for (int i = 0; i < xs.Length; i++)
        {
            float m = CpuKernels.DropoutUniform(a.Seed, counter, (ulong)i) >= a.P ? scale : 0f;
            ms[i] = m;
            ys[i] = xs[i] * m;
        }
    }

    /// <summary>The draw is the op's definition (integer hash), so the reference uses it too; the rest in double.</summary>
    public override void Reference(in Args a, DoubleTensors d)
    {
        ulong counter = StepCounters.Load(d[a.Count]);
        var x = d[a.X]; var y = d.Out(a.Y); var mask = d.Out(a.Mask);
        for (int r = 0, i = 0; r < a.X.Rows; r++)
            for (int c = 0; c < a.X.Cols; c++, i++)
            {
                mask[r, c] = CpuKernels.DropoutUniform(a.Seed, counter, (ulong)i) >= a.P ? 1.0 / (1.0 - a.P) : 0;
                y[r, c] = x[r, c] * mask[r, c];
            }
    }

    /// <summary>Variant 1: a count above 2^32 (its high half read too).</summary>
    public override IReadOnlyList<OpCase> Cases => [new(40, 50), new(40, 50, 1), new(3, 7)];

    public override Args Make(OpOperands o, OpCase c) =>
        new(o.Input(c.Rows, c.Cols), 0.3f, 12345UL, c.Variant == 1 ? o.Ints(77, 1) : o.Ints(77, 0), o.Output(c.Rows, c.Cols), o.Output(c.Rows, c.Cols));

    /// <summary>The mask is 0 or 1/(1 − p) exactly on every backend; y within float rounding.</summary>
    public override double Tolerance => 1e-6;
}

/// <summary><c>dropout_backward</c>: dx = dy ⊙ mask (dx may be dy).</summary>
public sealed class DropoutBackwardOp : HostedOp<DropoutBackwardOp.Args>
{
    public static readonly DropoutBackwardOp Instance = new();

    public readonly record struct Args(Mat Dy, Mat Mask, Mat Dx) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(Dy); w.Ptr(Mask); w.Int(Dy.Length, "n"); w.Ptr(Dx);
        }
    }

    public override string Kernel => "dropout_backward";
    public override Grid GridFor(in Args a) => Grid.Elements(a.Dy.Length);
    public override void Host(in Args a) => TensorPrimitives.Multiply(All(a.Dy), All(a.Mask), All(a.Dx));

    public override void Reference(in Args a, DoubleTensors d)
    {
        var dy = d[a.Dy]; var mask = d[a.Mask]; var dx = d.Out(a.Dx);
        for (int r = 0; r < a.Dy.Rows; r++)
            for (int c = 0; c < a.Dy.Cols; c++) dx[r, c] = dy[r, c] * mask[r, c];
    }

    /// <summary>Variant 1: in place (dx = dy), as the driver uses it.</summary>
    public override IReadOnlyList<OpCase> Cases => [new(5, 21), new(5, 21, 1), new(1, 3, 1)];

    public override Args Make(OpOperands o, OpCase c)
    {
        if (c.Variant == 1)
        {
            var dy = o.InOut(c.Rows, c.Cols);
            return new(dy, o.Input(c.Rows, c.Cols), dy);
        }
        return new(o.Input(c.Rows, c.Cols), o.Input(c.Rows, c.Cols), o.Output(c.Rows, c.Cols));
    }
}

public static partial class BackendOps
{
    /// <summary>See <see cref="DropoutForwardOp"/>.</summary>
    public static void DropoutForward(this IBackend be, Mat x, float p, ulong seed, IdxView count, Mat y, Mat mask) =>
        be.Run(DropoutForwardOp.Instance, new(x, p, seed, count, y, mask));

    /// <summary>See <see cref="DropoutBackwardOp"/>.</summary>
    public static void DropoutBackward(this IBackend be, Mat dy, Mat mask, Mat dx) => be.Run(DropoutBackwardOp.Instance, new(dy, mask, dx));
}
