using CharRnn.Cuda;
using CharRnn.Interop;
using CharRnn.Rnn.Backends.Ops;

namespace CharRnn.Rnn.Backends.Cuda;

/// <summary>
/// The plain RNN's whole recurrence as one cooperative launch per direction (<c>kernels/rnn_persistent.cu</c>):
/// planning (how many blocks, how many hidden columns each, how the products are split), the launches, and the reason
/// when the per-step path has to run instead.
/// </summary>
sealed class PersistentRecurrence
{
    const int Threads = 256;
    const int MaxBlocks = 64; // more blocks means shorter products per thread but a costlier grid barrier
    // Above this many multiply-adds a step (B·H²), one cuBLAS GEMM per step — all SMs, tensor cores in TF32/BF16 —
    // should beat one kernel doing FP32 FMAs on at most 64 SMs, and the launches it saves no longer matter inside a
    // graph: auto picks the per-step path (the book's 32·256² is 2^21; the large config's 256·1024² is 2^28). A guess
    // until gpu-check times both (--recurrence persistent forces the kernels where they fit).
    const long LargeProduct = 1L << 26;
    const int TileFloats = 8192; // the staged tile of H_t (B × kt floats): 32 KiB, the whole state at the book's B 32, H 256

    readonly CudaContext _ctx;
    readonly Func<string, CudaKernel> _kernel;
    readonly DeviceBuffer<uint> _barrier; // grid_barrier's counter (and a spare word), zero before the first launch
    readonly int? _colsOverride;
    readonly Dictionary<(int B, int H, bool Force), Plan> _plans = new();

    /// <summary>One shape's launch: <see cref="Cols"/> hidden columns per block, <see cref="Split"/> k ranges per
    /// product, <see cref="SharedBytes"/> of dynamic shared memory; or <see cref="Reason"/> why it cannot run.</summary>
    public sealed record Plan(int Blocks, int Cols, int Split, int SharedBytes, string? Reason, int Tile = 0, int Threads = 0)
    {
        public bool Runs => Reason == null;
        public override string ToString() => Runs ? $"persistent ({Blocks} blocks × {Cols} columns)" : $"per-step ({Reason})";
    }

    public PersistentRecurrence(CudaContext ctx, CudaStream stream, Func<string, CudaKernel> kernel, int? columns)
    {
        _ctx = ctx;
        _kernel = kernel;
        _barrier = ctx.Own(ctx.Allocate<uint>(2));
        CudaCheck.ThrowIfFailed(CudaDriver.cuMemsetD32Async(_barrier.Pointer, 0, 2, stream.Handle));
        _colsOverride = columns is > 0 ? columns : null; // GpuOptions.PersistentColumns: gpu-check times a few tilings
    }

    /// <param name="force">Run the kernels wherever they fit, large products included (<c>--recurrence persistent</c>).</param>
    public Plan PlanFor(int batch, int hidden, bool force = false)
    {
        if (_plans.TryGetValue((batch, hidden, force), out var p)) return p;
        return _plans[(batch, hidden, force)] = MakePlan(batch, hidden, force);
    }

    Plan MakePlan(int batch, int hidden, bool force)
    {
        if (!_ctx.CooperativeLaunch) return new Plan(0, 0, 0, 0, "the device has no cooperative launch");
        int sms = _ctx.MultiprocessorCount;
        // The fewest columns per block that keep the blocks within MaxBlocks and the SMs (one block per SM: each holds its
        // slice of W_hh), and give each block at least a warp's worth of outputs.
        int cols = _colsOverride ?? 1;
        if (_colsOverride == null)
            while (cols < hidden && (hidden % cols != 0 || hidden / cols > Math.Min(sms, MaxBlocks) || batch * cols < 32)) cols++;
        if (hidden % cols != 0) return new Plan(0, cols, 0, 0, $"H {hidden} is not a multiple of {cols} columns per block");
        int blocks = hidden / cols, outputs = batch * cols;
        // Each output's product split into k ranges of at least 32 terms, as many as the threads allow; a block gets
        // the threads its outputs × ranges need (whole warps, at most 256), not more: small shapes take small blocks.
        int split = Split(outputs, hidden, Threads);
        int threads = Math.Min(Threads, (outputs * split + 31) / 32 * 32);
        int tile = Math.Min(hidden, Math.Max(1, TileFloats / batch));
        long shared = 4L * ((long)hidden * cols + (long)batch * (tile + 1) + (long)split * outputs);
        if (shared > _ctx.MaxSharedPerBlockOptin)
            return new Plan(blocks, cols, split, 0, $"H {hidden}, B {batch}: {shared / 1024} KiB of shared memory per block, over the card's {_ctx.MaxSharedPerBlockOptin / 1024} KiB");
        int fit = Math.Min(_kernel(RnnForwardPersistentOp.Instance.Kernel).MaxActiveBlocksPerMultiprocessor(threads, (int)shared),
                           _kernel(RnnBackwardPersistentOp.Instance.Kernel).MaxActiveBlocksPerMultiprocessor(threads, (int)shared)) * sms;
        if (blocks > fit) return new Plan(blocks, cols, split, (int)shared, $"H {hidden}: {blocks} blocks, but only {fit} fit on the card at once");
        if (!force && (long)batch * hidden * hidden > LargeProduct)
            return new Plan(blocks, cols, split, (int)shared, $"B·H² = {((long)batch * hidden * hidden).ToString("N0", System.Globalization.CultureInfo.InvariantCulture)} multiply-adds a step: a cuBLAS GEMM per step is faster; --recurrence persistent runs the kernels anyway", tile, threads);
        return new Plan(blocks, cols, split, (int)shared, null, tile, threads);
    }

    /// <summary>How many contiguous k ranges each of <paramref name="outputs"/> products of <paramref name="length"/>
    /// terms is cut into, one thread each: as many as <paramref name="threads"/> allow, each at least 32 terms (the cluster
    /// kernels' planner cuts theirs the same way).</summary>
    internal static int Split(int outputs, int length, int threads)
    {
        int split = 1;
        while (outputs * split * 2 <= threads && length / (split * 2) >= 32) split *= 2;
        return split;
    }

    /// <summary>The forward kernel's arguments for <paramref name="r"/> under <paramref name="plan"/>.</summary>
    public RnnForwardPersistentOp.Args Forward(PlainRecurrence r, int steps, Plan plan) =>
        new(new CooperativeShape(plan.Blocks, plan.Threads, plan.SharedBytes), r, steps, plan.Cols, plan.Split, plan.Tile, new DevicePointer(_barrier.Pointer));

    /// <summary>The backward kernel's arguments (dH_0 too where the layer wants it).</summary>
    public RnnBackwardPersistentOp.Args Backward(PlainRecurrence r, int steps, Plan plan) =>
        new(new CooperativeShape(plan.Blocks, plan.Threads, plan.SharedBytes), r, steps, plan.Cols, plan.Split, plan.Tile, new DevicePointer(_barrier.Pointer));
}
