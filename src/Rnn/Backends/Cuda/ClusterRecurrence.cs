using CharRnn.Cuda;
using CharRnn.Rnn.Backends.Ops;

namespace CharRnn.Rnn.Backends.Cuda;

/// <summary>
/// The recurrence in thread-block clusters (<c>kernels/rnn_cluster.cu</c> for the plain RNN,
/// <c>kernels/gated_cluster.cu</c> for the LSTM and GRU; sm_90): which cluster shapes fit a layer on this card — one per
/// cluster size (16 with the non-portable opt-in, 8, 4, 2), each with as many clusters (batch row blocks) as the
/// multiprocessors hold at one block each — or why none does. The planner (<c>CudaBackend.Plans</c>) times them
/// against the other paths.
/// </summary>
sealed class ClusterRecurrence(CudaContext ctx, Func<string, CudaKernel> kernel)
{
    const int Threads = 256;
    static readonly int[] Sizes = [16, 8, 4, 2];
    const int OutputsPerThread = 4; // CLUSTER_OUTS in kernels/cluster.cuh

    /// <summary>The shapes that fit (largest cluster first), or the reason none does (the largest cluster's: the one
    /// most likely to fit). <paramref name="gates"/>: 1 (plain RNN), 3 (GRU), 4 (LSTM); <paramref name="forward"/> and
    /// <paramref name="backward"/>: the cell's two kernels.</summary>
    public (List<ClusterShape> Shapes, string? Reason) ShapesFor(int batch, int hidden, int gates, string forward, string backward)
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
            int rows = batch / clusters;
            // Forward: rows × G·cols products of length H; backward: rows × cols of length G·H.
            int outF = rows * gates * cols, outB = rows * cols;
            int splitF = PersistentRecurrence.Split(outF, hidden, Threads), splitB = PersistentRecurrence.Split(outB, gates * hidden, Threads);
            int threads = Math.Min(Threads, (Math.Max(outF * splitF, outB * splitB) + 31) / 32 * 32);
            long weights = (long)gates * hidden * cols;
            long fwd = weights + 2L * rows * hidden + (long)splitF * outF;
            long bwd = weights + 2L * rows * gates * hidden + (long)splitB * outB + (gates > 1 ? outB : 0);
            long shared = 4 * Math.Max(fwd, bwd);
            if (shared > ctx.MaxSharedPerBlockOptin)
            {
                last ??= $"H {hidden}, B {batch}: {shared / 1024} KiB of shared memory per block in clusters of {size}, over the card's {ctx.MaxSharedPerBlockOptin / 1024} KiB";
                continue;
            }
            if (outB > OutputsPerThread * threads) // the kernels keep each thread's outputs in registers (cluster.cuh)
            {
                last ??= $"H {hidden}, B {batch}: {outB} outputs per block in clusters of {size}, over the kernels' {OutputsPerThread} per thread";
                continue;
            }
            int fit = Math.Min(kernel(forward).MaxActiveClusters(size, threads, (int)shared),
                               kernel(backward).MaxActiveClusters(size, threads, (int)shared));
            if (fit < 1) { last ??= $"no cluster of {size} blocks with {shared / 1024} KiB each fits on the card"; continue; }
            shapes.Add(new ClusterShape(clusters, size, rows, splitF, splitB, threads, (int)shared));
        }
        return (shapes, shapes.Count > 0 ? null : last);
    }

    public static string Describe(ClusterShape s) =>
        $"cluster ({s.Clusters} × {s.Size} blocks, {s.Rows} rows each)";
}
