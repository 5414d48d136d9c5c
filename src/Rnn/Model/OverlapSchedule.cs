using CharRnn.Rnn.Backends;

namespace CharRnn.Rnn.Model;

/// <summary>
/// How <see cref="BpttDriver"/> cuts the output layer's work into blocks that run beside the top layer's recurrence
/// (<see cref="IBackend.Overlap"/>): a scheduling choice, made here from what the backend is — not a backend member.
/// On the host the blocks really run beside the recurrence on other cores, so they are small (64 rows of logits, or
/// 128 columns of dW_hq, stay in cache); on a GPU they share the device through a second stream, where one big GEMM
/// beats many small ones.
/// </summary>
public static class OverlapSchedule
{
    /// <summary>
    /// Rows (whole time steps of <paramref name="batch"/> rows) per output block beside the forward recurrence. GPU:
    /// about a quarter of the steps where the recurrence runs step by step (the blocks run on the second stream beside
    /// it); one block where it is one fused launch (nothing to run beside) or where ops are profiled one by one.
    /// </summary>
    public static int ForwardRows(IBackend be, IRecurrence top, int batch) =>
        be.RunsOnHost ? HostView.BlockRows
        : be.Profiler != null || be.FusesRecurrence(top) ? int.MaxValue
        : Math.Max(1, (top.Steps + 3) / 4) * batch;

    /// <summary>Columns per dW_hq block beside the backward recurrence: twice <see cref="HostView.BlockRows"/> on the host, the
    /// whole vocabulary (one product) on a GPU.</summary>
    public static int BackwardColumns(IBackend be, int vocab) => be.RunsOnHost ? (int)Math.Min(2L * HostView.BlockRows, vocab) : vocab;

    /// <summary>
    /// Whether the dW_hq blocks run before the top layer's backward recurrence instead of beside it: on a host with
    /// one core, where <see cref="IBackend.Overlap"/> would run them after it. They do not depend on it, so the output
    /// layer's gradients are final — and their all-reduce under way — while the recurrence computes.
    /// </summary>
    public static bool OutputGradientsFirst(IBackend be) => be.RunsOnHost && Environment.ProcessorCount == 1;
}
