namespace CharRnn.Rnn.Backends.Ops;

// kernels/rnn_persistent.cu: the plain RNN's whole recurrence, one cooperative launch per direction (planned by
// Cuda/PersistentRecurrence: blocks, columns per block, the k split, the staged tile). The CPU's twin is the per-step
// path (RecurrenceSteps), which the Gpu tests compare it with.

/// <summary>The launch shape a plan chose: blocks, threads per block, dynamic shared memory.</summary>
public readonly record struct CooperativeShape(int Blocks, int Threads, int SharedBytes)
{
    /// <summary>The persistent kernels' grid: all blocks resident at once.</summary>
    public Grid Grid => new(GridKind.Cooperative, Blocks, 1, Threads, SharedBytes);
}

// The records carry the layer (a class): Write reads it null-safely because Signature writes a default record.

/// <summary><c>rnn_forward_persistent</c>: H_t = act(pre_t + b1 (+ b2) + H_{t−1}·W_hh) for t = 1 … T into hs.</summary>
public sealed class RnnForwardPersistentOp : KernelOp<RnnForwardPersistentOp.Args>
{
    public static readonly RnnForwardPersistentOp Instance = new();
    public readonly record struct Args(CooperativeShape Shape, PlainRecurrence R, int T, int Cols, int Split, int Kt, DevicePointer State) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(R?.Pre, "pre"); w.Ptr(R?.Bx, "b1"); w.Ptr(R?.Bh, "b2"); w.Ptr(R?.Wh, "wh"); w.Int(R?.Batch ?? 0, "B"); w.Int(R?.Hidden ?? 0, "H");
            w.Int(T); w.Int(R?.Activation == Activation.Relu ? 1 : 0, "act"); w.Int(Cols); w.Int(Split); w.Int(Kt); w.Ptr(State); w.Ptr(R?.Hs, "hs");
        }
    }
    public override string Kernel => "rnn_forward_persistent";
    public override Grid GridFor(in Args a) => a.Shape.Grid;
}

/// <summary><c>rnn_backward_persistent</c>: dpre_t = (dh_t + dpre_{t+1}·W_hhᵀ) ⊙ act'(H_t) for t = T … 1, and dh0 (when
/// not null) = dpre_1·W_hhᵀ.</summary>
public sealed class RnnBackwardPersistentOp : KernelOp<RnnBackwardPersistentOp.Args>
{
    public static readonly RnnBackwardPersistentOp Instance = new();
    public readonly record struct Args(CooperativeShape Shape, PlainRecurrence R, int T, int Cols, int Split, int Kt, DevicePointer State) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(R?.DH, "dh"); w.Ptr(R?.Hs, "hs"); w.Ptr(R?.Wh, "wh"); w.Int(R?.Batch ?? 0, "B"); w.Int(R?.Hidden ?? 0, "H"); w.Int(T);
            w.Int(R?.Activation == Activation.Relu ? 1 : 0, "act"); w.Int(Cols); w.Int(Split); w.Int(Kt); w.Ptr(State);
            w.Ptr(R?.DPre, "dpre"); w.Ptr(R is { WantDH0: true } ? R.DH0 : null, "dh0");
        }
    }
    public override string Kernel => "rnn_backward_persistent";
    public override Grid GridFor(in Args a) => a.Shape.Grid;
}
