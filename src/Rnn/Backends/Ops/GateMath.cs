using System.Numerics.Tensors;

namespace CharRnn.Rnn.Backends.Ops;

/// <summary>What the cell ops' declarations share: the harness shapes, the bias sum of the CPU twins, σ in double.</summary>
static class GateMath
{
    /// <summary>H = 21: two passes of the CPU's 8-lane loops (the second at offset 8, which H = 13 never reached: #26's
    /// flipped pointer offset survived it) and a 5-wide scalar tail; H = 3: the tail alone; one row.</summary>
    public static readonly OpCase[] Shapes = [new(5, 21), new(3, 3), new(1, 8)];

    /// <summary><see cref="Shapes"/>, each with one bias (variant 0) and with both (variant 1).</summary>
    public static readonly OpCase[] WithBiasVariants = [.. Shapes, .. Shapes.Select(s => s with { Variant = 1 })];

    public static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    /// <summary>dst = bx + bh (or bx alone): the one bias the CPU twins add where the cell sums both.</summary>
    public static void BiasSum(Tensor bx, Tensor? bh, Span<float> dst)
    {
        var b = HostView.Array(bx).AsSpan(0, bx.Length);
        if (bh != null) TensorPrimitives.Add(b, HostView.Array(bh).AsSpan(0, bh.Length), dst); else b.CopyTo(dst);
    }
}
