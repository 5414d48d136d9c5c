using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Backends.Cpu;
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
    public void GatedClusterRecurrenceMatchesPerStepAndCpu(CellKind cell, int layers, int hidden, int batch, int steps)
    {
        using var cluster = GpuPathTests.Gpu(RecurrenceMode.Cluster);
        using var perStep = GpuPathTests.Gpu(RecurrenceMode.Steps);
        using var cpu = new CpuBackend();
        var spec = new ModelSpec(ModelKind.Concise, GpuPathTests.Small.Vocab.Count, hidden, Activation.Tanh, cell, layers);
        using (var probe = new RnnModel(cluster, RnnParameters.Initialize(spec, new Rng(1))))
        using (var d = new BpttDriver(probe, batch, steps))
            Assert.That(d.DescribeRecurrence(), Does.StartWith("cluster ("), "the shape this test is about runs the cluster kernels");
        var k = GpuPathTests.OneStep(cluster, spec, batch, steps, 11);
        var s = GpuPathTests.OneStep(perStep, spec, batch, steps, 11);
        var c = GpuPathTests.OneStep(cpu, spec, batch, steps, 11);
        // float32 everywhere, different summation orders (split-k partials vs cuBLAS vs OpenBLAS), compounded over the steps.
        foreach (var (other, name) in new[] { (s, "per-step"), (c, "cpu") })
        {
            Check.Close(other.Loss, k.Loss, 1e-6, 1e-5, $"loss vs {name}");
            Check.Close(Check.ToDouble(other.TopHs), k.TopHs, 1e-5, 1e-4, $"top layer's H vs {name}");
            for (int i = 0; i < spec.Parameters.Count; i++)
                Check.Close(Check.ToDouble(other.Grads[i]), k.Grads[i], 1e-6, 1e-3, $"grad {spec.Parameters[i].Name} vs {name}");
            for (int l = 0; l < layers; l++)
                Check.Close(Check.ToDouble(other.DH0[l]), k.DH0[l], 1e-6, 1e-3, $"dH_0 of layer {l + 1} vs {name}");
        }
    }

    [TestCase(CellKind.Lstm)]
    [TestCase(CellKind.Gru)]
    public void GatedClusterRecurrenceIsBitIdenticalOnRepeat(CellKind cell)
    {
        using var gpu = GpuPathTests.Gpu(RecurrenceMode.Cluster);
        var spec = new ModelSpec(ModelKind.Concise, GpuPathTests.Small.Vocab.Count, 96, Activation.Tanh, cell, 1);
        var a = GpuPathTests.OneStep(gpu, spec, 6, 10, 3);
        var b = GpuPathTests.OneStep(gpu, spec, 6, 10, 3);
        Assert.That(b.TopHs, Is.EqualTo(a.TopHs));
        for (int i = 0; i < a.Grads.Length; i++) Assert.That(b.Grads[i], Is.EqualTo(a.Grads[i]), spec.Parameters[i].Name);
        Assert.That(b.DH0[0], Is.EqualTo(a.DH0[0]));
    }

    /// <summary>Which path each cell takes, and why: the book's GRU has no fused kernels; the char-rnn-sized LSTM
    /// (H 512) does not fit FP32 clusters; auto untimed keeps the gated cells per step.</summary>
    [Test]
    public void TheGatedPlansSayWhichPathRunsAndWhy()
    {
        using var cluster = GpuPathTests.Gpu(RecurrenceMode.Cluster);
        using var auto = GpuPathTests.Gpu();
        string Describe(Rnn.Backends.Cuda.CudaBackend be, CellKind cell, ModelKind kind, int hidden, int batch)
        {
            var spec = new ModelSpec(kind, 30, hidden, Activation.Tanh, cell, 1);
            using var model = new RnnModel(be, RnnParameters.Initialize(spec, new Rng(1)));
            using var d = new BpttDriver(model, batch, 2);
            return d.DescribeRecurrence();
        }
        Assert.That(Describe(cluster, CellKind.Lstm, ModelKind.Concise, 256, 32), Is.EqualTo("cluster (16 × 8 blocks, 2 rows each)"), "the book's lstm-concise shape");
        Assert.That(Describe(cluster, CellKind.Gru, ModelKind.Concise, 256, 32), Is.EqualTo("cluster (16 × 8 blocks, 2 rows each)"), "the book's gru-concise shape");
        Assert.That(Describe(cluster, CellKind.Gru, ModelKind.Scratch, 256, 32), Is.EqualTo("per-step (the book's GRU, reset before the product, has no fused kernels)"));
        Assert.That(Describe(cluster, CellKind.Lstm, ModelKind.Concise, 512, 64), Does.StartWith("per-step (H 512, B 64:").And.Contain("in clusters of 16, over the card's 227 KiB; --recurrence cluster)"));
        Assert.That(Describe(auto, CellKind.Lstm, ModelKind.Concise, 256, 32), Does.StartWith("per-step (the gated cells' cluster kernels run where timed faster"));
    }
}
