using CharRnn.Rnn.Backends;

namespace CharRnn.Rnn.Distributed;

/// <summary>
/// The ranks of a data-parallel run and what they do together. Every rank trains on its share of each global
/// minibatch's rows; gradients are averaged across ranks before clipping, loss sums are added up, so every rank takes
/// the same step and reports the same perplexity. A collective that does not complete within <see cref="Timeout"/>
/// (a rank died or hangs) fails with a <see cref="CharRnnException"/> naming it, instead of waiting forever.
/// </summary>
public interface ICollective : IDisposable
{
    int Rank { get; }
    int Size { get; }

    /// <summary>How the ranks talk ("1 rank", "MPI: MPICH 4.0.2, 2 ranks", "NCCL 2.27 over MPI …").</summary>
    string Description { get; }

    TimeSpan Timeout { get; set; }

    /// <summary>Adds <paramref name="values"/> (host doubles: loss sums, row counts, flags) across ranks, in place.</summary>
    void Sum(double[] values);

    /// <summary>Adds host floats across ranks, in place (a state gathered from each rank's rows, zeros elsewhere: exact).</summary>
    void Sum(float[] values);

    /// <summary>Rank <paramref name="root"/>'s bytes to every rank.</summary>
    void Broadcast(byte[] data, int root);

    /// <summary>Starts averaging these tensors (gradients) across ranks, in place; the caller waits on the result.</summary>
    IPendingReduction StartAverage(IBackend backend, IReadOnlyList<Tensor> tensors);

    /// <summary>Whether the training step averages across these ranks: several ranks, or one that still runs its
    /// collectives (NCCL with <c>--nccl</c>: the data-parallel path end to end on one GPU).</summary>
    bool Averages => Size > 1;

    /// <summary>Called before the host blocks on <paramref name="backend"/>'s device (a loss read, a sync). Collectives
    /// that run on the device (NCCL) can hang there when a peer dies: this returns once the queued work is done, or
    /// fails — on the collective's asynchronous error or after <see cref="Timeout"/> — instead of blocking forever.
    /// Host-side collectives (MPI) are polled where they run, so by default there is nothing to do.</summary>
    void BeforeDeviceWait(IBackend backend) { }
}

/// <summary>A reduction under way.</summary>
public interface IPendingReduction
{
    void Wait();

    /// <summary>Lets the reduction advance without waiting for it (MPI moves a nonblocking collective only inside MPI
    /// calls): called between backward steps while it runs beside them. Nothing to do where it progresses by itself.</summary>
    void Progress() { }
}

/// <summary>One rank (no MPI): every collective is the identity.</summary>
public sealed class SingleRank : ICollective
{
    public static readonly SingleRank Instance = new();
    public int Rank => 0;
    public int Size => 1;
    public string Description => "1 rank";
    public TimeSpan Timeout { get; set; } = TimeSpan.FromMinutes(10);
    public void Sum(double[] values) { }
    public void Sum(float[] values) { }
    public void Broadcast(byte[] data, int root) { }
    public IPendingReduction StartAverage(IBackend backend, IReadOnlyList<Tensor> tensors) => Done.Instance;
    public void Dispose() { }

    sealed class Done : IPendingReduction
    {
        public static readonly Done Instance = new();
        public void Wait() { }
    }
}
