using System.Numerics.Tensors;
using CharRnn.Rnn.Backends.Cpu;
using static CharRnn.Rnn.Backends.HostView;

namespace CharRnn.Rnn.Backends.Ops;

/// <summary>
/// <c>softmax_xent</c> (kernels/softmax_xent.cu), one block per row: for each row r, p = softmax(logits[r] + bias);
/// dlogits[r] = (p − onehot(labels[r]))·gradScale; rowLoss[r] = −log p[labels[r]] (rowLoss is rows × 1), which
/// <see cref="IBackend.AccumulateLoss"/> adds up. The CPU backend's fused output layer runs the same twin by blocks.
/// </summary>
public sealed class SoftmaxCrossEntropyOp : HostedOp<SoftmaxCrossEntropyOp.Args>
{
    public static readonly SoftmaxCrossEntropyOp Instance = new();

    public readonly record struct Args(Mat Logits, Tensor Bias, IdxView Labels, Mat Dlogits, float GradScale, Mat RowLoss) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(Logits); w.Ptr(Bias); w.Ptr(Labels); w.Int(Logits.Rows, "rows"); w.Int(Logits.Cols, "V"); w.Float(GradScale);
            w.Ptr(Dlogits); w.Ptr(RowLoss);
        }
    }

    public override string Kernel => "softmax_xent";
    public override Grid GridFor(in Args a) => Grid.Blocks(a.Logits.Rows);
    public override void Host(in Args a) => CpuKernels.SoftmaxXentRows(a.Logits, a.Bias, a.Labels, a.Dlogits, a.GradScale, a.RowLoss);

    public override void Reference(in Args a, DoubleTensors d)
    {
        var z = d[a.Logits]; var b = d[a.Bias]; var lab = d[a.Labels]; var dz = d.Out(a.Dlogits); var loss = d.Out(a.RowLoss);
        int v = a.Logits.Cols;
        for (int r = 0; r < a.Logits.Rows; r++)
        {
            double max = double.NegativeInfinity, sum = 0;
            for (int c = 0; c < v; c++) max = Math.Max(max, z[r, c] + b[0, c]);
            for (int c = 0; c < v; c++) sum += Math.Exp(z[r, c] + b[0, c] - max);
            for (int c = 0; c < v; c++) dz[r, c] = (Math.Exp(z[r, c] + b[0, c] - max) / sum - (c == lab[r] ? 1 : 0)) * a.GradScale;
            loss[r, 0] = Math.Log(sum) + max - (z[r, lab[r]] + b[0, lab[r]]);
        }
    }

    /// <summary>Rows × V: a vocabulary under one 8-lane pass, one with a tail, one wider than a block's 256 threads.</summary>
    public override IReadOnlyList<OpCase> Cases => [new(33, 5), new(4, 29), new(3, 1027)];

    public override Args Make(OpOperands o, OpCase c) =>
        new(o.Input(c.Rows, c.Cols), o.Input(1, c.Cols).Tensor, o.Tokens(c.Rows, c.Cols), o.Output(c.Rows, c.Cols), 1f / c.Rows, o.Output(c.Rows, 1));
}

/// <summary><c>column_sum</c> (kernels/reduce.cu), one block per 32 columns: dst[0, c] = Σ_r src[r, c], rows in order;
/// src and dst may be column ranges (the kernel takes src's leading dimension).</summary>
public sealed class ColumnSumOp : HostedOp<ColumnSumOp.Args>
{
    public static readonly ColumnSumOp Instance = new();

    public readonly record struct Args(Mat Src, Mat Dst) : IKernelArgs
    {
        public void Write(KernelArgWriter w) { w.Strided(Src); w.Int(Src.Rows, "rows"); w.Int(Src.Cols, "cols"); w.Int(Src.Stride, "ld"); w.Strided(Dst); }
    }

    public override string Kernel => "column_sum";
    public override Grid GridFor(in Args a) => Grid.Blocks((a.Src.Cols + 31) / 32);

    public override void Host(in Args a)
    {
        var d = Row(a.Dst, 0);
        d.Clear();
        for (int r = 0; r < a.Src.Rows; r++) TensorPrimitives.Add(d, Row(a.Src, r), d);
    }

    public override void Reference(in Args a, DoubleTensors d)
    {
        var src = d[a.Src]; var dst = d.Out(a.Dst);
        for (int c = 0; c < a.Src.Cols; c++)
        {
            double s = 0;
            for (int r = 0; r < a.Src.Rows; r++) s += src[r, c];
            dst[0, c] = s;
        }
    }

    /// <summary>Variant 1: the sum of columns 3 … cols−1 of a wider tensor into columns 1 … of a wider row (the driver's
    /// column blocks of db_q); the columns outside stay NaN.</summary>
    public override IReadOnlyList<OpCase> Cases => [new(70, 45), new(70, 45, 1), new(1, 3), new(5, 1, 1)];

    public override Args Make(OpOperands o, OpCase c) => c.Variant == 0
        ? new(o.Input(c.Rows, c.Cols), o.Output(1, c.Cols))
        : new(o.Input(c.Rows, c.Cols + 3).ColumnRange(3, c.Cols), o.Output(1, c.Cols + 2).ColumnRange(1, c.Cols));

    public override double Tolerance => 1e-5;
}

public static partial class BackendOps
{
    /// <summary>See <see cref="SoftmaxCrossEntropyOp"/>.</summary>
    public static void SoftmaxCrossEntropy(this IBackend be, Mat logits, Tensor bias, IdxView labels, Mat dlogits, float gradScale, Mat rowLoss) =>
        be.Run(SoftmaxCrossEntropyOp.Instance, new(logits, bias, labels, dlogits, gradScale, rowLoss));

    /// <summary>See <see cref="ColumnSumOp"/>.</summary>
    public static void ColumnSum(this IBackend be, Mat src, Mat dst) => be.Run(ColumnSumOp.Instance, new(src, dst));
}
