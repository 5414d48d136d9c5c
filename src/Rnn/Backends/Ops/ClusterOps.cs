namespace CharRnn.Rnn.Backends.Ops;

// kernels/rnn_cluster.cu: the plain RNN's recurrence in thread-block clusters (sm_90; planned by Cuda/ClusterRecurrence:
// blocks per cluster, batch rows per cluster, the k split).

/// <summary>A cluster plan's launch: <see cref="Clusters"/> clusters of <see cref="Size"/> blocks, each cluster owning
/// <see cref="Rows"/> batch rows; the forward's and the backward's k split (they differ for the gated cells: G·H
/// products of length H forward, H of length G·H backward), threads per block and dynamic shared memory (the larger
/// direction's).</summary>
public readonly record struct ClusterShape(int Clusters, int Size, int Rows, int Split, int BackwardSplit, int Threads, int SharedBytes)
{
    /// <summary>Every cluster kernel's grid: the clusters' blocks, in clusters of <see cref="Size"/>.</summary>
    public Grid Grid => new(GridKind.Cluster, Clusters * Size, Size, Threads, SharedBytes);
}

/// <summary><c>rnn_forward_cluster</c>: H_t = act(pre_t + b1 (+ b2) + H_{t−1}·W_hh) for t = 1 … T into hs.</summary>
public sealed class RnnForwardClusterOp : KernelOp<RnnForwardClusterOp.Args>
{
    public static readonly RnnForwardClusterOp Instance = new();
    public readonly record struct Args(ClusterShape Shape, PlainRecurrence R, int T) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(R?.Pre, "pre"); w.Ptr(R?.Bx, "b1"); w.Ptr(R?.Bh, "b2"); w.Ptr(R?.Wh, "wh"); w.Int(R?.Batch ?? 0, "B"); w.Int(R?.Hidden ?? 0, "H");
            w.Int(T); w.Int(R?.Activation == Activation.Relu ? 1 : 0, "act"); w.Int(Shape.Rows, "rows"); w.Int(Shape.Split, "split"); w.Ptr(R?.Hs, "hs");
        }
    }
    public override string Kernel => "rnn_forward_cluster";
    public override Grid GridFor(in Args a) => a.Shape.Grid;
}

/// <summary><c>rnn_backward_cluster</c>: dpre_t = (dh_t + dpre_{t+1}·W_hhᵀ) ⊙ act'(H_t) for t = T … 1, and dh0 (when
/// not null) = dpre_1·W_hhᵀ.</summary>
public sealed class RnnBackwardClusterOp : KernelOp<RnnBackwardClusterOp.Args>
{
    public static readonly RnnBackwardClusterOp Instance = new();
    public readonly record struct Args(ClusterShape Shape, PlainRecurrence R, int T) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(R?.DH, "dh"); w.Ptr(R?.Hs, "hs"); w.Ptr(R?.Wh, "wh"); w.Int(R?.Batch ?? 0, "B"); w.Int(R?.Hidden ?? 0, "H"); w.Int(T);
            w.Int(R?.Activation == Activation.Relu ? 1 : 0, "act"); w.Int(Shape.Rows, "rows"); w.Int(Shape.BackwardSplit, "split");
            w.Ptr(R?.DPre, "dpre"); w.Ptr(R is { WantDH0: true } ? R.DH0 : null, "dh0");
        }
    }
    public override string Kernel => "rnn_backward_cluster";
    public override Grid GridFor(in Args a) => a.Shape.Grid;
}

// kernels/gated_cluster.cu: the LSTM's and PyTorch GRU's recurrence in thread-block clusters (planned as the plain
// RNN's, with G gates per hidden unit).

/// <summary><c>lstm_forward_cluster</c>: the LSTM's T steps (gates, C_t, H_t) from pre and H_0, C_0.</summary>
public sealed class LstmForwardClusterOp : KernelOp<LstmForwardClusterOp.Args>
{
    public static readonly LstmForwardClusterOp Instance = new();
    public readonly record struct Args(ClusterShape Shape, GatedRecurrence R, int T) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(R?.Pre, "pre"); w.Ptr(R?.Bx, "bx"); w.Ptr(R?.Bh, "bh"); w.Ptr(R?.Wh, "wh"); w.Int(R?.Batch ?? 0, "B"); w.Int(R?.Hidden ?? 0, "H");
            w.Int(T); w.Int(Shape.Rows, "rows"); w.Int(Shape.Split, "split"); w.Ptr(R?.Gates, "gates"); w.Ptr(R?.Cs, "cs"); w.Ptr(R?.Hs, "hs");
        }
    }
    public override string Kernel => "lstm_forward_cluster";
    public override Grid GridFor(in Args a) => a.Shape.Grid;
}

/// <summary><c>lstm_backward_cluster</c>: dPre for T … 1 from dH, the gates and C; dH_0 and dC_0 when wanted.</summary>
public sealed class LstmBackwardClusterOp : KernelOp<LstmBackwardClusterOp.Args>
{
    public static readonly LstmBackwardClusterOp Instance = new();
    public readonly record struct Args(ClusterShape Shape, GatedRecurrence R, int T) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(R?.DH, "dh"); w.Ptr(R?.Gates, "gates"); w.Ptr(R?.Cs, "cs"); w.Ptr(R?.Wh, "wh"); w.Int(R?.Batch ?? 0, "B"); w.Int(R?.Hidden ?? 0, "H");
            w.Int(T); w.Int(Shape.Rows, "rows"); w.Int(Shape.BackwardSplit, "split"); w.Ptr(R?.DPre, "dpre");
            w.Ptr(R is { WantDH0: true } ? R.DH0 : null, "dh0"); w.Ptr(R is { WantDH0: true } ? R.DC0 : null, "dc0");
        }
    }
    public override string Kernel => "lstm_backward_cluster";
    public override Grid GridFor(in Args a) => a.Shape.Grid;
}

/// <summary><c>gru_forward_cluster</c>: the GRU's T steps (h·W_hh, gates, H_t) from the input products and H_0.</summary>
public sealed class GruForwardClusterOp : KernelOp<GruForwardClusterOp.Args>
{
    public static readonly GruForwardClusterOp Instance = new();
    public readonly record struct Args(ClusterShape Shape, GatedRecurrence R, int T) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(R?.Pre, "xpre"); w.Ptr(R?.Bx, "bx"); w.Ptr(R?.Bh, "bh"); w.Ptr(R?.Wh, "wh"); w.Int(R?.Batch ?? 0, "B"); w.Int(R?.Hidden ?? 0, "H");
            w.Int(T); w.Int(Shape.Rows, "rows"); w.Int(Shape.Split, "split"); w.Ptr(R?.HProj, "hproj"); w.Ptr(R?.Gates, "gates"); w.Ptr(R?.Hs, "hs");
        }
    }
    public override string Kernel => "gru_forward_cluster";
    public override Grid GridFor(in Args a) => a.Shape.Grid;
}

/// <summary><c>gru_backward_cluster</c>: d(x·W_x) and d(h·W_hh + b_h) for T … 1; dH_0 when wanted.</summary>
public sealed class GruBackwardClusterOp : KernelOp<GruBackwardClusterOp.Args>
{
    public static readonly GruBackwardClusterOp Instance = new();
    public readonly record struct Args(ClusterShape Shape, GatedRecurrence R, int T) : IKernelArgs
    {
        public void Write(KernelArgWriter w)
        {
            w.Ptr(R?.DH, "dh"); w.Ptr(R?.Gates, "gates"); w.Ptr(R?.HProj, "hproj"); w.Ptr(R?.Bh, "bh"); w.Ptr(R?.Hs, "hs"); w.Ptr(R?.Wh, "wh");
            w.Int(R?.Batch ?? 0, "B"); w.Int(R?.Hidden ?? 0, "H"); w.Int(T); w.Int(Shape.Rows, "rows"); w.Int(Shape.BackwardSplit, "split");
            w.Ptr(R?.DPre, "dxpre"); w.Ptr(R?.DHProj, "dhproj"); w.Ptr(R is { WantDH0: true } ? R.DH0 : null, "dh0");
        }
    }
    public override string Kernel => "gru_backward_cluster";
    public override Grid GridFor(in Args a) => a.Shape.Grid;
}
