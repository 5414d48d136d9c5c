using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Model;

namespace CharRnn.Tests;

/// <summary>
/// The LSTM's and PyTorch GRU's cluster kernels (<c>kernels/gated_cluster.cu</c>) against the per-step path and the
/// CPU: one forward and backward pass from random H_0 (and C_0), asking for dH_0 (and dC_0), one and two layers,
/// several clusters of batch rows, and a repeat that must give the same bits. On the CUDA emulator each cluster's
/// blocks run together and really wait at barrier.cluster; whether the kernels are fast is for a card (gpu-check.sh).
/// </summary>
[Category("Gpu")]
public class GatedClusterTests
{
    [TestCase(CellKind.Lstm, 1, 64, 8, 12)]
    [TestCase(CellKind.Lstm, 2, 48, 5, 9)]
    [TestCase(CellKind.Gru, 1, 64, 8, 12)]
    [TestCase(CellKind.Gru, 2, 32, 3, 7)]
    public void GatedClusterRecurrenceMatchesPerStepAndCpu(CellKind cell, int layers, int hidden, int batch, int steps) =>
        GpuPathTests.FusedMatchesPerStepAndCpu(RecurrenceMode.Cluster, "cluster (",
            new ModelSpec(ModelKind.Concise, GpuPathTests.Small.Vocab.Count, hidden, Activation.Tanh, cell, layers), batch, steps, 11);

    [TestCase(CellKind.Lstm)]
    [TestCase(CellKind.Gru)]
    public void GatedClusterRecurrenceIsBitIdenticalOnRepeat(CellKind cell) =>
        GpuPathTests.RepeatIsBitIdentical(RecurrenceMode.Cluster, new ModelSpec(ModelKind.Concise, GpuPathTests.Small.Vocab.Count, 96, Activation.Tanh, cell, 1), 6, 10);

    /// <summary>Which path each cell takes, and why: the book's GRU has no fused kernels; the char-rnn-sized LSTM
    /// (H 512) does not fit FP32 clusters; auto untimed keeps the gated cells per step.</summary>
    [Test]
    public void TheGatedPlansSayWhichPathRunsAndWhy()
    {
        using var cluster = GpuPathTests.Gpu(RecurrenceMode.Cluster);
        using var auto = GpuPathTests.Gpu();
        string Describe(IBackend be, CellKind cell, ModelKind kind, int hidden, int batch) =>
            GpuPathTests.RecurrenceOf(be, new ModelSpec(kind, 30, hidden, Activation.Tanh, cell, 1), batch, 2);
        Assert.That(Describe(cluster, CellKind.Lstm, ModelKind.Concise, 256, 32), Is.EqualTo("cluster (16 × 8 blocks, 2 rows each)"), "the book's lstm-concise shape");
        Assert.That(Describe(cluster, CellKind.Gru, ModelKind.Concise, 256, 32), Is.EqualTo("cluster (16 × 8 blocks, 2 rows each)"), "the book's gru-concise shape");
        Assert.That(Describe(cluster, CellKind.Gru, ModelKind.Scratch, 256, 32), Is.EqualTo("per-step (the book's GRU, reset before the product, has no fused kernels)"));
        Assert.That(Describe(cluster, CellKind.Lstm, ModelKind.Concise, 512, 64), Does.StartWith("per-step (H 512, B 64:").And.Contain("in clusters of 16, over the card's 227 KiB; --recurrence cluster)"));
        Assert.That(Describe(auto, CellKind.Lstm, ModelKind.Concise, 256, 32), Does.StartWith("per-step (the gated cells' cluster kernels run where timed faster"));
    }
}
