namespace CharRnn.Rnn.Backends;

/// <summary>
/// A declared kernel every backend runs (<see cref="IBackend.Run{TArgs}"/>): besides the kernel, grid and argument
/// record of <see cref="KernelOp{TArgs}"/>, its CPU twin (<see cref="Host"/>), plain double code written from its
/// equations (<see cref="Reference"/>), and the shapes the op harness (<c>OpHarnessTests</c>) runs it at on every
/// backend against that reference. One file holds all of it (<c>Backends/Ops/*.cs</c>), beside the kernel's .cu file.
/// </summary>
public abstract class HostedOp<TArgs> : KernelOp<TArgs>, IHostedOp where TArgs : struct, IKernelArgs
{
    /// <summary>The CPU twin, on host tensors (<see cref="Tensor.HostArray"/>; rows through <see cref="HostView"/>). By
    /// default the double <see cref="Reference"/> rounded to float: a new op runs on the CPU before it has a fast twin.</summary>
    public virtual void Host(in TArgs a)
    {
        var d = new DoubleTensors(HostView.Array, HostView.IntArray);
        Reference(a, d);
        d.WriteBack();
    }

    /// <summary>The op in double from its documented equations: reads operands through <paramref name="d"/>
    /// (<c>d[m]</c>), writes results through <see cref="DoubleTensors.Out"/>. Elements it does not write are expected
    /// untouched (the harness poisons outputs with NaN, so a stray write or a skipped one shows).</summary>
    public abstract void Reference(in TArgs a, DoubleTensors d);

    /// <summary>Builds one harness case's arguments from operands made on the backend under test.</summary>
    public abstract TArgs Make(OpOperands o, OpCase c);

    public void RunCase(IBackend be, OpOperands o, OpCase c, DoubleTensors expected)
    {
        var a = Make(o, c);
        be.Run(this, a);
        Reference(a, expected);
    }

    protected HostedOp() => Method = GetType().Name.EndsWith("Op", StringComparison.Ordinal) ? GetType().Name[..^2] : GetType().Name;

    public string Method { get; } // once: the CPU backend names every op call by it
    public abstract IReadOnlyList<OpCase> Cases { get; }
    public virtual double Tolerance => 1e-5;
}

/// <summary>The harness's view of a <see cref="HostedOp{TArgs}"/>, whatever its argument record.</summary>
public interface IHostedOp
{
    string Kernel { get; }

    /// <summary>The name <c>bench --profile</c> shows for the CPU twin (the IBackend call's name): the class name less "Op".</summary>
    string Method { get; }

    /// <summary>The harness cases: shapes (rows × columns, as the op reads them) and variants (e.g. one bias or two).</summary>
    IReadOnlyList<OpCase> Cases { get; }

    /// <summary>Absolute and relative tolerance against the double reference.</summary>
    double Tolerance { get; }

    /// <summary>Makes case <paramref name="c"/>'s arguments on <paramref name="be"/>, runs the op there and its
    /// reference into <paramref name="expected"/>.</summary>
    void RunCase(IBackend be, OpOperands o, OpCase c, DoubleTensors expected);
}

/// <summary>One harness case: <see cref="Rows"/> × <see cref="Cols"/> (as the op defines them: batch rows and hidden
/// units for the cells) and a <see cref="Variant"/> the op interprets (0 … <c>variants − 1</c>).</summary>
public readonly record struct OpCase(int Rows, int Cols, int Variant = 0)
{
    public override string ToString() => $"{Rows}x{Cols}" + (Variant != 0 ? $" v{Variant}" : "");
}

/// <summary>The operands a harness case is built from, made on the backend under test with a seeded generator.</summary>
public abstract class OpOperands
{
    /// <summary>Values drawn N(0, 1).</summary>
    public abstract Mat Input(int rows, int cols);
    /// <summary>Values uniform in (lo, hi): gate values (0, 1), tanh values (−1, 1), a probability.</summary>
    public abstract Mat Uniform(int rows, int cols, double lo, double hi);
    /// <summary>All NaN: every element the op must write is checked, and every one it must not stays NaN.</summary>
    public abstract Mat Output(int rows, int cols);
    /// <summary>Random values the op updates (accumulated gradients, state carried in place); checked after.</summary>
    public abstract Mat InOut(int rows, int cols);
    /// <summary><paramref name="n"/> token ids in [0, <paramref name="vocab"/>).</summary>
    public abstract IdxView Tokens(int n, int vocab);
    /// <summary>Ints with the given values (a step counter).</summary>
    public abstract IdxView Ints(params int[] values);
}

/// <summary>
/// Tensors as double arrays, for the references: read with <c>d[m]</c> (the values the tensor holds — on the host, or as
/// the harness made them), written through <see cref="Out"/>, which marks the block as a result. The same array serves
/// both, so an op that updates a tensor in place reads and writes one array.
/// </summary>
public sealed class DoubleTensors(Func<Tensor, float[]> values, Func<IndexBuffer, int[]> indices)
{
    readonly Dictionary<Tensor, double[]> _arrays = new(ReferenceEqualityComparer.Instance);
    readonly List<Mat> _written = [];

    double[] Array(Tensor t)
    {
        if (_arrays.TryGetValue(t, out var a)) return a;
        var f = values(t);
        a = new double[t.Length];
        for (int i = 0; i < a.Length; i++) a[i] = f[i];
        return _arrays[t] = a;
    }

    public DoubleMat this[Mat m] => new(Array(m.Tensor), m.Offset, m.Stride, m.Rows, m.Cols);
    public DoubleMat this[Tensor t] => this[t.All];
    /// <summary>An optional operand: its values, or zeros of <paramref name="rows"/> × <paramref name="cols"/> when absent.</summary>
    public DoubleMat OrZeros(Tensor? t, int rows, int cols) => t != null ? this[t] : new(new double[rows * cols], 0, cols, rows, cols);
    public int[] this[IdxView v] => indices(v.Buffer).AsSpan(v.Offset, v.Length).ToArray();

    /// <summary>The block the op writes (<paramref name="m"/>), as doubles holding its current values.</summary>
    public DoubleMat Out(Mat m)
    {
        _written.Add(m);
        return this[m];
    }

    /// <summary>The expected values of tensor <paramref name="t"/> after the op (its values before, where not written).</summary>
    public double[] Expected(Tensor t) => Array(t);

    /// <summary>Writes the written blocks back to host tensors, rounded to float (<see cref="HostedOp{TArgs}.Host"/>).</summary>
    public void WriteBack()
    {
        foreach (var m in _written)
        {
            var src = Array(m.Tensor);
            var dst = values(m.Tensor);
            for (int r = 0; r < m.Rows; r++)
                for (int c = 0; c < m.Cols; c++) dst[m.Offset + r * m.Stride + c] = (float)src[m.Offset + r * m.Stride + c];
        }
    }
}

/// <summary>A block of a double array, indexed [row, column] like the tensor block it mirrors.</summary>
public readonly record struct DoubleMat(double[] Data, int Offset, int Stride, int Rows, int Cols)
{
    public ref double this[int r, int c] => ref Data[Offset + r * Stride + c];
}

/// <summary>Rows and spans of host tensors, for the CPU twins.</summary>
public static class HostView
{
    /// <summary>Rows per block of host work over logits: a block of 64 × V floats stays in L2 between its GEMM and its
    /// softmax. The CPU backend's fused output layer and the scheduler's blocks beside the recurrence
    /// (<c>Model/OverlapSchedule</c>) both cut by it.</summary>
    public const int BlockRows = 64;

    public static Span<float> Row(Mat m, int r) => Array(m.Tensor).AsSpan(m.Offset + r * m.Stride, m.Cols);
    /// <summary>A contiguous block as one span.</summary>
    public static Span<float> All(Mat m) => Array(m.Tensor).AsSpan(m.Offset, m.Contiguous().Length);
    public static float[] Array(Tensor t) => t.HostArray ?? throw new InvalidOperationException("a tensor not in host memory");
    public static ReadOnlySpan<int> Ints(IdxView v) => IntArray(v.Buffer).AsSpan(v.Offset, v.Length);
    public static int[] IntArray(IndexBuffer b) => b.HostArray ?? throw new InvalidOperationException("an index buffer not in host memory");
}
