using static CharRnn.Rnn.Backends.HostView;

namespace CharRnn.Rnn.Backends.Ops;

/// <summary><c>one_hot_scatter</c> (kernels/onehot.cu): out (n × V) = 0, then out[r, tokens[r]] = 1.</summary>
public sealed class OneHotScatterOp : HostedOp<OneHotScatterOp.Args>
{
    public static readonly OneHotScatterOp Instance = new();

    public readonly record struct Args(IdxView Tokens, Mat Out) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(Tokens); w.Int(Out.Rows, "n"); w.Int(Out.Cols, "V"); w.Ptr(Out);
        }
    }

    public override string Kernel => "one_hot_scatter";
    public override Grid GridFor(in Args a) => Grid.Elements((long)a.Out.Rows * a.Out.Cols);

    public override void Host(in Args a)
    {
        All(a.Out).Clear();
        var t = Ints(a.Tokens);
        for (int r = 0; r < a.Out.Rows; r++) Row(a.Out, r)[t[r]] = 1f;
    }

    public override void Reference(in Args a, DoubleTensors d)
    {
        var t = d[a.Tokens]; var o = d.Out(a.Out);
        for (int r = 0; r < a.Out.Rows; r++)
            for (int c = 0; c < a.Out.Cols; c++) o[r, c] = t[r] == c ? 1 : 0;
    }

    public override IReadOnlyList<OpCase> Cases => [new(6, 11), new(1, 3), new(40, 29)];
    public override Args Make(OpOperands o, OpCase c) => new(o.Tokens(c.Rows, c.Cols), o.Output(c.Rows, c.Cols));
}

/// <summary><c>gather_rows</c>: out[r, :] = table[tokens[r], :] (= onehot(tokens)·table).</summary>
public sealed class GatherRowsOp : HostedOp<GatherRowsOp.Args>
{
    public static readonly GatherRowsOp Instance = new();
    const int Vocabulary = 7; // the harness's table height

    public readonly record struct Args(IdxView Tokens, Tensor Table, Mat Out) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(Tokens); w.Int(Out.Rows, "n"); w.Int(Out.Cols, "H"); w.Ptr(Table); w.Ptr(Out);
        }
    }

    public override string Kernel => "gather_rows";
    public override Grid GridFor(in Args a) => Grid.Elements((long)a.Out.Rows * a.Out.Cols);

    public override void Host(in Args a)
    {
        var t = Ints(a.Tokens);
        var w = Array(a.Table);
        for (int r = 0; r < a.Out.Rows; r++) w.AsSpan(t[r] * a.Table.Cols, a.Table.Cols).CopyTo(Row(a.Out, r));
    }

    public override void Reference(in Args a, DoubleTensors d)
    {
        var t = d[a.Tokens]; var table = d[a.Table]; var o = d.Out(a.Out);
        for (int r = 0; r < a.Out.Rows; r++)
            for (int c = 0; c < a.Out.Cols; c++) o[r, c] = table[t[r], c];
    }

    public override IReadOnlyList<OpCase> Cases => [new(6, 21), new(1, 3), new(40, 8)];
    public override Args Make(OpOperands o, OpCase c) => new(o.Tokens(c.Rows, Vocabulary), o.Input(Vocabulary, c.Cols).Tensor, o.Output(c.Rows, c.Cols));
}

public static partial class BackendOps
{
    /// <summary>See <see cref="OneHotScatterOp"/>.</summary>
    public static void OneHotScatter(this IBackend be, IdxView tokens, Mat dst) => be.Run(OneHotScatterOp.Instance, new(tokens, dst));

    /// <summary>See <see cref="GatherRowsOp"/>.</summary>
    public static void GatherRows(this IBackend be, IdxView tokens, Tensor table, Mat dst) => be.Run(GatherRowsOp.Instance, new(tokens, table, dst));
}
