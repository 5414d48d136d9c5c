using CharRnn.Cuda;
using CharRnn.Rnn.Backends.Ops;

namespace CharRnn.Rnn.Backends.Cuda;

/// <summary>
/// The plain RNN's recurrence in thread-block clusters (<c>kernels/rnn_cluster.cu</c>, sm_90): which cluster shapes fit
/// a layer on this card — one per cluster size (2, 4, 8, and 16 with the non-portable opt-in), each with as many
/// clusters (batch row blocks) as the multiprocessors hold — or why none does. The planner
/// (<see cref="RecurrencePlanner"/>) times them against the other paths.
/// </summary>
sealed class ClusterRecurrence(CudaContext ctx, Func<string, CudaKernel> kernel)
{
    const int Threads = 256;
    static readonly int[] Sizes = [16, 8, 4, 2];

    /// <summary>The shapes that fit (largest cluster first), or the reason none does (the largest cluster's: the one
    /// most likely to fit).</summary>
    public (List<ClusterShape> Shapes, string? Reason) ShapesFor(int batch, int hidden)
    {
        if (!ctx.ClusterLaunch) return ([], $"{ctx.Arch} has no thread-block clusters (sm_90 and newer)");
        var shapes = new List<ClusterShape>();
        string? last = null;
        foreach (int size in Sizes)
        {
            if (hidden % size != 0) { last ??= $"H {hidden} is not a multiple of the cluster size"; continue; }
            int cols = hidden / size;
            // As many clusters as the SMs hold at one block each (more row blocks: less work per block and step).
            int clusters = 1;
            for (int n = batch; n >= 1; n--)
                if (batch % n == 0 && n * size <= ctx.MultiprocessorCount) { clusters = n; break; }
            int rows = batch / clusters, outputs = rows * cols;
            int split = 1;
            while (outputs * split * 2 <= Threads && hidden / (split * 2) >= 32) split *= 2;
            int threads = Math.Min(Threads, (outputs * split + 31) / 32 * 32);
            long shared = 4L * ((long)hidden * cols + 2L * rows * hidden + (long)split * outputs);
            if (shared > ctx.MaxSharedPerBlockOptin)
            {
                last ??= $"H {hidden}, B {batch}: {shared / 1024} KiB of shared memory per block in clusters of {size}, over the card's {ctx.MaxSharedPerBlockOptin / 1024} KiB";
                continue;
            }
            int fit = Math.Min(kernel(RnnForwardClusterOp.Instance.Kernel).MaxActiveClusters(size, threads, (int)shared),
                               kernel(RnnBackwardClusterOp.Instance.Kernel).MaxActiveClusters(size, threads, (int)shared));
            if (fit < 1) { last ??= $"no cluster of {size} blocks with {shared / 1024} KiB each fits on the card"; continue; }
            shapes.Add(new ClusterShape(clusters, size, rows, split, threads, (int)shared));
        }
        return (shapes, shapes.Count > 0 ? null : last);
    }

    public static string Describe(ClusterShape s) =>
        $"cluster ({s.Clusters} × {s.Size} blocks, {s.Rows} rows each)";
}
