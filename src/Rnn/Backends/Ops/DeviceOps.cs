namespace CharRnn.Rnn.Backends.Ops;

// The kernels the CUDA backend launches for IBackend members that hold backend state (the loss accumulator, the
// clipping partials, tensor tables, the scatter-add's scratch) or run in a fused plan: declared here with their
// argument records and grids, so their launches are typed and checked like every other; their CPU twins are the
// CpuBackend members of the same names (not harnessed here: BackendOpTests and BackendEdgeTests check them).

/// <summary><c>token_row_order</c> (kernels/onehot.cu): the positions of <c>tokens</c> grouped by token, in order, into
/// the scratch <c>order</c> (V + 1 starts, V cursors, n positions). One block.</summary>
public sealed class TokenRowOrderOp : KernelOp<TokenRowOrderOp.Args>
{
    public static readonly TokenRowOrderOp Instance = new();
    public readonly record struct Args(IdxView Tokens, int V, DevicePointer Order) : IKernelArgs
    {
        public void Write(KernelArgWriter w) { w.Ptr(Tokens); w.Int(Tokens.Length, "n"); w.Int(V); w.Ptr(Order); }
    }
    public override string Kernel => "token_row_order";
    public override Grid GridFor(in Args a) => Grid.Single;
}

/// <summary><c>scatter_add_ordered</c>: table[token, :] += src[r, :] for the token's rows in <c>order</c>'s order.</summary>
public sealed class ScatterAddOrderedOp : KernelOp<ScatterAddOrderedOp.Args>
{
    public static readonly ScatterAddOrderedOp Instance = new();
    public readonly record struct Args(DevicePointer Order, Mat Src, Mat Table) : IKernelArgs
    {
        public void Write(KernelArgWriter w) { w.Ptr(Order); w.Int(Src.Rows, "n"); w.Int(Table.Rows, "V"); w.Int(Src.Cols, "H"); w.Ptr(Src); w.Ptr(Table); }
    }
    public override string Kernel => "scatter_add_ordered";
    public override Grid GridFor(in Args a) => Grid.Elements((long)a.Table.Rows * a.Src.Cols);
}

/// <summary><c>loss_accumulate</c> (kernels/reduce.cu): acc += [Σ row_loss in row order, rows]. One block.</summary>
public sealed class LossAccumulateOp : KernelOp<LossAccumulateOp.Args>
{
    public static readonly LossAccumulateOp Instance = new();
    public readonly record struct Args(Mat RowLoss, DevicePointer Acc) : IKernelArgs
    {
        public void Write(KernelArgWriter w) { w.Ptr(RowLoss); w.Int(RowLoss.Rows, "rows"); w.Ptr(Acc); }
    }
    public override string Kernel => "loss_accumulate";
    public override Grid GridFor(in Args a) => Grid.Single;
}

/// <summary><c>argmax_rows</c>: out[r] = argmax_c(logits[r, c] + bias[c]) (first maximum). One block per row.</summary>
public sealed class ArgmaxRowsOp : KernelOp<ArgmaxRowsOp.Args>
{
    public static readonly ArgmaxRowsOp Instance = new();
    public readonly record struct Args(Mat Logits, Tensor Bias, IdxView Out) : IKernelArgs
    {
        public void Write(KernelArgWriter w) { w.Ptr(Logits); w.Ptr(Bias); w.Int(Logits.Rows, "rows"); w.Int(Logits.Cols, "cols"); w.Ptr(Out); }
    }
    public override string Kernel => "argmax_rows";
    public override Grid GridFor(in Args a) => Grid.Blocks(a.Logits.Rows);
}

/// <summary><c>select_minibatch</c> (kernels/step.cu): x, y ← minibatch counters[0] of the epoch's inputs and labels.</summary>
public sealed class SelectMinibatchOp : KernelOp<SelectMinibatchOp.Args>
{
    public static readonly SelectMinibatchOp Instance = new();
    public readonly record struct Args(IdxView Counters, IdxView EpochX, IdxView EpochY, IdxView X, IdxView Y) : IKernelArgs
    {
        public void Write(KernelArgWriter w) { w.Ptr(Counters); w.Ptr(EpochX); w.Ptr(EpochY); w.Int(X.Length, "n"); w.Ptr(X); w.Ptr(Y); }
    }
    public override string Kernel => "select_minibatch";
    public override Grid GridFor(in Args a) => Grid.Elements(a.X.Length);
}

/// <summary><c>step_advance</c>: every step counter + 1 (<see cref="StepCounters.Advance"/> on the host). One thread.</summary>
public sealed class StepAdvanceOp : KernelOp<StepAdvanceOp.Args>
{
    public static readonly StepAdvanceOp Instance = new();
    public readonly record struct Args(IdxView Counters) : IKernelArgs
    {
        public void Write(KernelArgWriter w) => w.Ptr(Counters);
    }
    public override string Kernel => "step_advance";
    public override Grid GridFor(in Args a) => Grid.Single;
}
