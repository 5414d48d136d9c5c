namespace CharRnn.Rnn.Backends;

/// <summary>
/// The training step's counters as they live on a backend: four ints, <c>[minibatch in the epoch, run minibatch (low 32
/// bits), run minibatch (high 32 bits), optimizer steps taken]</c>. The run minibatch is one 64-bit number stored as two
/// ints (index buffers hold ints), and this type is the one place on the host that packs and unpacks it; the kernels'
/// twin is <c>load_u64</c>/<c>store_u64</c> in kernels/common.cuh (step.cu advances it, dropout.cu reads it).
/// </summary>
public static class StepCounters
{
    public const int Length = 4;
    public const int Minibatch = 0, RunLow = 1, RunHigh = 2, OptimizerSteps = 3;

    /// <summary>The 64-bit value stored little end first in <paramref name="pair"/>[0..2].</summary>
    public static ulong Load(ReadOnlySpan<int> pair) => (ulong)(uint)pair[1] << 32 | (uint)pair[0];

    public static void Store(Span<int> pair, ulong value) => (pair[0], pair[1]) = ((int)(uint)value, (int)(uint)(value >> 32));

    /// <summary>The run minibatch of a whole counter block.</summary>
    public static long RunMinibatch(ReadOnlySpan<int> counters) => (long)Load(counters[RunLow..]);

    /// <summary>A counter block holding these values.</summary>
    public static int[] Of(int minibatch, long runMinibatch, int optimizerSteps)
    {
        var c = new int[Length];
        c[Minibatch] = minibatch;
        Store(c.AsSpan(RunLow), (ulong)runMinibatch);
        c[OptimizerSteps] = optimizerSteps;
        return c;
    }

    /// <summary>Every counter + 1, as step.cu's step_advance does on the device.</summary>
    public static void Advance(Span<int> counters)
    {
        counters[Minibatch]++;
        Store(counters[RunLow..], Load(counters[RunLow..]) + 1);
        counters[OptimizerSteps]++;
    }
}
