namespace CharRnn.Rnn.Backends.Ops;

// kernels/optim.cu: clipping and the updates over every parameter tensor in one launch. A multi-tensor kernel's first
// parameter is its table (per tensor: its tensors' addresses, then its length, as 64-bit words); blockIdx.y picks
// the tensor (Grid.Y = the tensor count). The CPU twins are CpuBackend's ComputeClipScale/SgdUpdate/AdamUpdate.

/// <summary><c>sumsq_multi</c>: per tensor, <see cref="Blocks"/> partial sums of squares in double.</summary>
public sealed class SumSquaresOp : KernelOp<SumSquaresOp.Args>
{
    public static readonly SumSquaresOp Instance = new();
    /// <summary>Blocks per tensor: each tensor owns this many slots of the partials.</summary>
    public const int Blocks = 64;
    public readonly record struct Args(DevicePointer Table, int Count, DevicePointer Partials) : IKernelArgs
    {
        public void Write(KernelArgWriter w) { w.Ptr(Table); w.Ptr(Partials); }
    }
    public override string Kernel => "sumsq_multi";
    public override Grid GridFor(in Args a) => new(GridKind.Blocks, Blocks, a.Count);
}

/// <summary><c>clip_finalize</c>: clip = [θ/norm when norm &gt; θ &gt; 0 else 1, norm] from the partials. One block.</summary>
public sealed class ClipFinalizeOp : KernelOp<ClipFinalizeOp.Args>
{
    public static readonly ClipFinalizeOp Instance = new();
    public readonly record struct Args(DevicePointer Partials, int Count, float Theta, Tensor Clip) : IKernelArgs
    {
        public void Write(KernelArgWriter w) { w.Ptr(Partials); w.Int(Count); w.Float(Theta); w.Ptr(Clip); }
    }
    public override string Kernel => "clip_finalize";
    public override Grid GridFor(in Args a) => Grid.Single;
}

/// <summary><c>sgd_update_multi</c>: p −= scalars[0] · clip[0] · g for every tensor of the table (p, g, length).</summary>
public sealed class SgdUpdateOp : KernelOp<SgdUpdateOp.Args>
{
    public static readonly SgdUpdateOp Instance = new();
    public readonly record struct Args(DevicePointer Table, int Count, long Longest, Tensor Scalars, Tensor Clip) : IKernelArgs
    {
        public void Write(KernelArgWriter w) { w.Ptr(Table); w.Ptr(Scalars); w.Ptr(Clip); }
    }
    public override string Kernel => "sgd_update_multi";
    public override Grid GridFor(in Args a) => new(GridKind.Elements, a.Longest, a.Count);
}

/// <summary><c>adam_corrections</c> (one thread): PyTorch's bias corrections for step t = steps[0] + 1 from the learning
/// rate in scalars[0]: scalars[1] = lr / (1 − β1^t), scalars[2] = √(1 − β2^t). On the backend, so a recorded step
/// replays with the right t.</summary>
public sealed class AdamCorrectionsOp : HostedOp<AdamCorrectionsOp.Args>
{
    public static readonly AdamCorrectionsOp Instance = new();
    public readonly record struct Args(IdxView Steps, float Beta1, float Beta2, Tensor Scalars) : IKernelArgs
    {
        public void Write(KernelArgWriter w) { w.Ptr(Steps); w.Float(Beta1); w.Float(Beta2); w.Ptr(Scalars); }
    }
    public override string Kernel => "adam_corrections";
    public override Grid GridFor(in Args a) => Grid.Single;

    public override void Host(in Args a)
    {
        int t = HostView.Ints(a.Steps)[0] + 1;
        var s = HostView.Array(a.Scalars);
        s[1] = s[0] / (1f - MathF.Pow(a.Beta1, t));
        s[2] = MathF.Sqrt(1f - MathF.Pow(a.Beta2, t));
    }

    public override void Reference(in Args a, DoubleTensors d)
    {
        double t = d[a.Steps][0] + 1;
        var s = d.Out(a.Scalars.All);
        s[0, 1] = s[0, 0] / (1 - Math.Pow(a.Beta1, t));
        s[0, 2] = Math.Sqrt(1 - Math.Pow(a.Beta2, t));
    }

    /// <summary>Variant = steps taken before: 0, 9, 999 (t = 1 divides by 1 − β1 itself).</summary>
    public override IReadOnlyList<OpCase> Cases => [new(1, 3, 0), new(1, 3, 9), new(1, 3, 999)];
    public override Args Make(OpOperands o, OpCase c) => new(o.Ints(c.Variant), 0.9f, 0.999f, o.InOut(1, 3).Tensor);
}

/// <summary><c>adam_update_multi</c>: PyTorch's Adam for every tensor of the table (p, g, m, v, length).</summary>
public sealed class AdamUpdateOp : KernelOp<AdamUpdateOp.Args>
{
    public static readonly AdamUpdateOp Instance = new();
    public readonly record struct Args(DevicePointer Table, int Count, long Longest, float Beta1, float Beta2, float Eps, Tensor Scalars, Tensor Clip) : IKernelArgs
    {
        public void Write(KernelArgWriter w) { w.Ptr(Table); w.Float(Beta1); w.Float(Beta2); w.Float(Eps); w.Ptr(Scalars); w.Ptr(Clip); }
    }
    public override string Kernel => "adam_update_multi";
    public override Grid GridFor(in Args a) => new(GridKind.Elements, a.Longest, a.Count);
}

public static partial class BackendOps
{
    /// <summary>See <see cref="AdamCorrectionsOp"/>.</summary>
    public static void AdamCorrections(this IBackend be, IdxView stepsTaken, float beta1, float beta2, Tensor scalars) =>
        be.Run(AdamCorrectionsOp.Instance, new(stepsTaken, beta1, beta2, scalars));
}
