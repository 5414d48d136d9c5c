using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Backends.Cpu;
using CharRnn.Rnn.Backends.Cuda;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Model;
using CharRnn.Rnn.Training;

namespace CharRnn.Tests;

/// <summary>
/// The GPU's fast paths against its plain ones: the persistent recurrence kernels against the per-step ops (and the
/// CPU), the training step replayed as a CUDA graph against the same step issued op by op (bit for bit, every preset),
/// the gather input against the one-hot GEMMs. On the CUDA emulator the cooperative launches really wait at their grid
/// barriers with all blocks resident (tests/CudaEmulator/README.md); timing is measured only on a card (gpu-check.sh).
/// </summary>
[Category("Gpu")]
public class GpuPathTests
{
    internal static Corpus Small => Corpus.Load(Path.Combine(AppContext.BaseDirectory, "data", "jaychou_lyrics.txt.zip"), 3000);

    internal static CudaBackend Gpu(RecurrenceMode rec = RecurrenceMode.Auto, bool graphs = true, bool timed = false)
    {
        GpuTests.CreateCudaBackend().Dispose(); // Ignore (or fail under CHARRNN_REQUIRE_GPU=1) without a usable GPU
        return CudaBackend.Create(0, new GpuOptions(Precision.Fp32, rec, graphs, TimePlans: timed));
    }

    internal sealed record StepResult(double Loss, float[][] Grads, float[] TopHs, float[][] DH0);

    /// <summary>One forward and backward pass of a fresh model on <paramref name="be"/>, from a random H_0 (so the
    /// recurrence's first step matters), asking for dH_0.</summary>
    internal static StepResult OneStep(IBackend be, ModelSpec spec, int batch, int steps, ulong seed)
    {
        var corpus = Small;
        var init = RnnParameters.Initialize(spec, new Rng(seed));
        var mb = Samplers.Random(corpus.Indices, batch, steps, new Rng(seed + 1)).First();
        using var model = new RnnModel(be, init);
        using var driver = new BpttDriver(model, batch, steps, InputMode.Gather);
        var rng = new Rng(seed + 2);
        for (int l = 0; l < spec.Layers; l++)
        {
            var h0 = Enumerable.Range(0, batch * spec.Hidden).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
            using var t = be.FromArray(batch, spec.Hidden, h0);
            be.Copy(t.All, driver.H0(l));
        }
        using var x = be.FromArray(mb.XTimeMajor);
        using var y = be.FromArray(mb.YTimeMajor);
        be.ResetLoss();
        driver.Forward(x.All, y.All);
        driver.Backward(x.All, wantDH0: true);
        var (sum, rows) = be.ReadLoss();
        var dh0 = Enumerable.Range(0, spec.Layers).Select(l => be.ToArray(driver.DLayerH0(l))).ToArray();
        return new StepResult(sum / rows, model.GradsToHost(), be.ToArray(driver.Hs), dh0);
    }

    /// <summary>The plain RNN shapes both fused paths (grid, cluster) are held to: both activations, one and two layers,
    /// sizes that are not powers of two.</summary>
    static readonly object[] PlainShapes =
    [
        new object[] { Activation.Tanh, 1, 64, 8, 12 },
        new object[] { Activation.Relu, 1, 64, 8, 12 },
        new object[] { Activation.Tanh, 2, 48, 5, 9 },
        new object[] { Activation.Relu, 2, 32, 3, 7 },
    ];

    [TestCaseSource(nameof(PlainShapes))]
    public void PersistentRecurrenceMatchesPerStepAndCpu(Activation act, int layers, int hidden, int batch, int steps) =>
        FusedMatchesPerStepAndCpu(RecurrenceMode.Auto, "persistent", new ModelSpec(ModelKind.Concise, Small.Vocab.Count, hidden, act, CellKind.Rnn, layers), batch, steps, 7);

    /// <summary>One step of a fresh model with the recurrence <paramref name="mode"/> runs (its description must start
    /// with <paramref name="path"/>: the shape is one the test is about) against the per-step path and the CPU, from a
    /// random H_0, asking for dH_0: float32 everywhere, different summation orders (split-k partials vs cuBLAS vs
    /// OpenBLAS), ~1e-6 relative per op compounded over the steps of the recurrence.</summary>
    internal static void FusedMatchesPerStepAndCpu(RecurrenceMode mode, string path, ModelSpec spec, int batch, int steps, ulong seed)
    {
        using var fused = Gpu(mode);
        using var perStep = Gpu(RecurrenceMode.Steps);
        using var cpu = new CpuBackend();
        Assert.That(RecurrenceOf(fused, spec, batch, steps), Does.StartWith(path), "the shape this test is about runs the fused kernels");
        var p = OneStep(fused, spec, batch, steps, seed);
        var s = OneStep(perStep, spec, batch, steps, seed);
        var c = OneStep(cpu, spec, batch, steps, seed);
        foreach (var (other, name) in new[] { (s, "per-step"), (c, "cpu") })
        {
            Check.Close(other.Loss, p.Loss, 1e-6, 1e-5, $"loss vs {name}");
            Check.Close(Check.ToDouble(other.TopHs), p.TopHs, 1e-5, 1e-4, $"top layer's H vs {name}");
            for (int i = 0; i < spec.Parameters.Count; i++)
                Check.Close(Check.ToDouble(other.Grads[i]), p.Grads[i], 1e-6, 1e-3, $"grad {spec.Parameters[i].Name} vs {name}");
            for (int l = 0; l < spec.Layers; l++)
                Check.Close(Check.ToDouble(other.DH0[l]), p.DH0[l], 1e-6, 1e-3, $"dH_0 of layer {l + 1} vs {name}");
        }
    }

    /// <summary>What <paramref name="be"/> says it runs for a fresh model of <paramref name="spec"/> at B × T (the run
    /// header's recurrence line).</summary>
    internal static string RecurrenceOf(IBackend be, ModelSpec spec, int batch, int steps)
    {
        using var model = new RnnModel(be, RnnParameters.Initialize(spec, new Rng(1)));
        using var d = new BpttDriver(model, batch, steps);
        return d.DescribeRecurrence();
    }

    /// <summary>The same step twice on one backend gives the same bits (no atomics whose order varies).</summary>
    internal static void RepeatIsBitIdentical(RecurrenceMode mode, ModelSpec spec, int batch, int steps)
    {
        using var gpu = Gpu(mode);
        var a = OneStep(gpu, spec, batch, steps, 3);
        var b = OneStep(gpu, spec, batch, steps, 3);
        Assert.That(b.TopHs, Is.EqualTo(a.TopHs));
        for (int i = 0; i < a.Grads.Length; i++) Assert.That(b.Grads[i], Is.EqualTo(a.Grads[i]), spec.Parameters[i].Name);
        Assert.That(b.DH0[0], Is.EqualTo(a.DH0[0]));
    }

    /// <summary>The cluster kernels (thread-block clusters, distributed shared memory: on the emulator each cluster's
    /// blocks run together and really wait at barrier.cluster) against the per-step path and the CPU, both activations,
    /// one and two layers, several clusters of batch rows.</summary>
    [TestCaseSource(nameof(PlainShapes))]
    public void ClusterRecurrenceMatchesPerStepAndCpu(Activation act, int layers, int hidden, int batch, int steps) =>
        FusedMatchesPerStepAndCpu(RecurrenceMode.Cluster, "cluster (", new ModelSpec(ModelKind.Concise, Small.Vocab.Count, hidden, act, CellKind.Rnn, layers), batch, steps, 7);

    /// <summary>The cluster kernels sum in a fixed order (no atomics): the same step twice gives the same bits, at a
    /// small shape and at the book's (16 clusters of 8 blocks, 2 batch rows each, split products).</summary>
    [TestCase(96, 6, 10)]
    [TestCase(256, 32, 35)]
    public void ClusterRecurrenceIsBitIdenticalOnRepeat(int hidden, int batch, int steps) =>
        RepeatIsBitIdentical(RecurrenceMode.Cluster, new ModelSpec(ModelKind.Scratch, Small.Vocab.Count, hidden, Activation.Tanh, CellKind.Rnn, 1), batch, steps);

    /// <summary>The persistent kernels use no atomics whose order varies: the same step twice gives the same bits.</summary>
    [TestCase(96, 6, 10)]
    [TestCase(256, 32, 35)] // the book's: 64 blocks, split products
    public void PersistentRecurrenceIsBitIdenticalOnRepeat(int hidden, int batch, int steps) =>
        RepeatIsBitIdentical(RecurrenceMode.Auto, new ModelSpec(ModelKind.Scratch, Small.Vocab.Count, hidden, Activation.Tanh, CellKind.Rnn, 1), batch, steps);

    /// <summary>Where the persistent kernels cannot run, the per-step path does, and the run says why.</summary>
    [Test]
    public void ThePlanSaysWhichPathRunsAndWhy()
    {
        using var gpu = Gpu();
        using var steps = Gpu(RecurrenceMode.Steps);
        string Describe(IBackend be, CellKind cell, int hidden, int batch) =>
            RecurrenceOf(be, new ModelSpec(ModelKind.Concise, 30, hidden, Activation.Tanh, cell, 1), batch, 2);
        Assert.That(Describe(gpu, CellKind.Rnn, 256, 32), Is.EqualTo("persistent (64 blocks × 4 columns)"), "the book's shape on a 132-SM card");
        Assert.That(Describe(steps, CellKind.Rnn, 256, 32), Is.EqualTo("per-step (--recurrence steps)"));
        Assert.That(Describe(gpu, CellKind.Lstm, 64, 4), Does.StartWith("per-step (the gated cells"));
        Assert.That(Describe(gpu, CellKind.Rnn, 4096, 256), Does.StartWith("per-step (H 4096, B 256:").And.Contain("KiB of shared memory per block"));
        Assert.That(Describe(gpu, CellKind.Rnn, 1024, 256), Does.StartWith("per-step (B·H² = 268,435,456 multiply-adds a step"), "the large config: cuBLAS per step");
        using var forced = Gpu(RecurrenceMode.Persistent);
        Assert.That(Describe(forced, CellKind.Rnn, 1024, 256), Is.EqualTo("persistent (64 blocks × 16 columns)"));
        Assert.That(Describe(forced, CellKind.Rnn, 4096, 256), Does.StartWith("per-step (H 4096, B 256:"), "forcing does not make it fit");
        using var cluster = Gpu(RecurrenceMode.Cluster);
        Assert.That(Describe(cluster, CellKind.Rnn, 256, 32), Is.EqualTo("cluster (16 × 8 blocks, 2 rows each)"), "the book's shape: portable clusters of 8, as many as 132 SMs hold");
        Assert.That(Describe(cluster, CellKind.Rnn, 1024, 256), Is.EqualTo("per-step (H 1024, B 256: 520 KiB of shared memory per block in clusters of 16, over the card's 227 KiB; --recurrence cluster)"),
            "the large config: an FP32 W_hh (4 MiB) does not fit even 16 blocks' shared memory");
        Assert.That(Describe(cluster, CellKind.Rnn, 512, 64), Is.EqualTo("cluster (16 × 8 blocks, 4 rows each)"), "H 512 fits clusters of 8 (128 KiB of W_hh each)");
        Assert.That(Describe(gpu, CellKind.Rnn, 256, 32), Does.Not.Contain("cluster"), "untimed, auto never picks the unmeasured cluster kernels");
    }

    /// <summary>A recording must not allocate, wait or copy from the host: each of those throws, and the backend works after.</summary>
    [Test]
    public void RecordingRefusesWhatAGraphCannotReplay()
    {
        using var gpu = Gpu();
        using var t = gpu.FromArray(1, 3, [1f, 2f, 3f]);
        using var a = gpu.FromArray(1, 1, [2f]);
        using var b = gpu.FromArray(1, 1, [3f]);
        using var c = gpu.Zeros(1, 1);
        Assert.That(() => gpu.Record(() => gpu.Zeros(2, 2).Dispose()), Throws.InvalidOperationException.With.Message.Contain("while a step is being recorded"));
        Assert.That(() => gpu.Record(() => gpu.Upload(t, new[] { 4f, 5f, 6f })), Throws.InvalidOperationException);
        Assert.That(() => gpu.Record(() => gpu.Synchronize()), Throws.InvalidOperationException);
        using var r = gpu.Record(() => gpu.Gemm(false, false, 1f, a.All, b.All, 1f, c.All)); // c += a·b
        Assert.That(gpu.ToArray(c), Is.EqualTo(new[] { 0f }), "recording does not run the ops");
        r.Replay();
        r.Replay();
        Assert.That(gpu.ToArray(c), Is.EqualTo(new[] { 12f }));
        Assert.That(gpu.ToArray(t), Is.EqualTo(new[] { 1f, 2f, 3f }));
    }

    static (List<EpochReport> Reports, float[][] Weights, string Graph, long Replays, long Steps) TrainRun(CudaBackend gpu, Corpus corpus, TrainOptions o)
    {
        using var t = new Trainer(gpu, corpus, o);
        var reports = new List<EpochReport>();
        t.Train(reports.Add);
        return (reports, t.Model.ToHost().Values, t.Step.GraphStatus, t.Step.Replays, t.TotalMinibatches);
    }

    static IEnumerable<TestCaseData> GraphCases()
    {
        foreach (var p in TrainOptions.PresetNames) yield return new TestCaseData(p, 1, 0f).SetArgDisplayNames(p);
        yield return new TestCaseData("concise", 2, 0.3f).SetArgDisplayNames("concise, 2 layers, dropout 0.3");
        yield return new TestCaseData("scratch-random", 2, 0.2f).SetArgDisplayNames("scratch-random, 2 layers, dropout 0.2");
    }

    /// <summary>Replaying the recorded step gives the bits the op-by-op step gives, for every preset: perplexities,
    /// predictions and final weights equal (small shapes, 3 epochs: the graph is recorded in the first and replayed
    /// from its second minibatch on; consecutive sampling records its two kinds of step).</summary>
    [TestCaseSource(nameof(GraphCases))]
    public void GraphReplayEqualsEagerBitForBit(string preset, int layers, float dropout)
    {
        var o = TrainOptions.Preset(preset) with
        {
            Epochs = 3, PredPeriod = 1, PredLen = 8, Hidden = 32, Batch = 8, Steps = 6, Layers = layers, Dropout = dropout, Seed = 9,
        };
        var corpus = Corpus.Load(Path.Combine(AppContext.BaseDirectory, "data", "jaychou_lyrics.txt.zip"), 1500); // ~30 minibatches an epoch
        using var eagerGpu = Gpu(graphs: false);
        using var graphGpu = Gpu(graphs: true);
        var eager = TrainRun(eagerGpu, corpus, o);
        var graph = TrainRun(graphGpu, corpus, o);
        Assert.That(eager.Graph, Is.EqualTo("off (turned off by --graph off)"));
        Assert.That(graph.Graph, Is.EqualTo("on"));
        // #26: the status comes from configuration; an always-eager bug would compare eager with eager. All but the
        // first step of each kind (random sampling: one kind; consecutive: reset and carry) replay.
        Assert.That(eager.Replays, Is.Zero);
        Assert.That(graph.Replays, Is.InRange(graph.Steps - 2, graph.Steps - 1), $"{graph.Steps} steps");
        Assert.That(graph.Reports.Select(r => r.Perplexity), Is.EqualTo(eager.Reports.Select(r => r.Perplexity)));
        Assert.That(graph.Reports.SelectMany(r => r.Predictions), Is.EqualTo(eager.Reports.SelectMany(r => r.Predictions)));
        for (int i = 0; i < eager.Weights.Length; i++) Assert.That(graph.Weights[i], Is.EqualTo(eager.Weights[i]), $"weight {i}");
    }

    /// <summary>The book's run at its real shapes on the fast path (persistent + graph) tracks the plain path over three
    /// epochs (of 2 minibatches: 3 000 characters): same sampling, same updates, float-close perplexity.</summary>
    [Test]
    public void BookRunOnTheFastPathTracksThePlainPath()
    {
        var o = TrainOptions.Preset("scratch-random") with { Epochs = 3, PredPeriod = 1, Seed = 4 };
        using var fast = Gpu();
        using var plain = Gpu(RecurrenceMode.Steps, graphs: false);
        var corpus = Small; // 2 minibatches an epoch at the book's shapes
        var runs = new List<double[]>();
        foreach (var be in new[] { fast, plain })
        {
            using var t = new Trainer(be, corpus, o);
            Assert.That(t.Step.GraphStatus, Is.EqualTo(be == fast ? "on" : "off (turned off by --graph off)"));
            var reports = new List<EpochReport>();
            t.Train(reports.Add);
            runs.Add(reports.Select(r => r.Perplexity).ToArray());
        }
        Check.Close(runs[1], runs[0], 0, 1e-4, "perplexity per epoch, fast vs plain");
    }

    /// <summary>The GPU's scatter-add (the gather input's gradient) adds each table row's contributions in token order,
    /// as the CPU does: equal bits, duplicates included.</summary>
    [Test]
    public void ScatterAddRowsIsBitEqualToTheCpu()
    {
        using var gpu = Gpu();
        using var cpu = new CpuBackend();
        var rng = new Rng(5);
        int v = 37, h = 70, n = 500;
        var tokens = Enumerable.Range(0, n).Select(i => i % 5 == 0 ? 3 : rng.NextInt(v)).ToArray();
        var d = Enumerable.Range(0, n * h).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var start = Enumerable.Range(0, v * h).Select(_ => (float)rng.NextDouble()).ToArray();
        var got = new List<float[]>();
        foreach (IBackend be in new IBackend[] { cpu, gpu })
        {
            using var ti = be.FromArray(tokens);
            using var td = be.FromArray(n, h, d);
            using var table = be.FromArray(v, h, start);
            be.ScatterAddRows(ti.All, td.All, table);
            got.Add(be.ToArray(table));
        }
        Assert.That(got[1], Is.EqualTo(got[0]));
    }

    /// <summary>The GPU stores the vocabulary dimension of W_hq, b_q and the logits padded to whole 32-byte rows; the
    /// pads stay inert through training (W_hq's 0, b_q's −∞, their gradients 0) with SGD and Adam, and nothing that
    /// leaves the backend shows them. The CPU does not pad.</summary>
    [TestCase("scratch-random")]
    [TestCase("concise")]
    public void TheVocabularyIsPaddedAndThePadsStayInert(string preset)
    {
        using var gpu = Gpu();
        var corpus = Small;
        int v = corpus.Vocab.Count, w = (v + 7) / 8 * 8;
        Assert.That(v % 8, Is.Not.Zero, "a vocabulary that needs padding");
        var o = TrainOptions.Preset(preset) with { Epochs = 2, PredPeriod = 1, PredLen = 8, Hidden = 32, Batch = 8, Steps = 6, Seed = 3 };
        using var t = new Trainer(gpu, corpus, o);
        var reports = new List<EpochReport>();
        t.Train(reports.Add);
        var m = t.Model;
        Assert.That(m.OutputWidth, Is.EqualTo(w));
        Assert.That((m.Whq.Cols, m.Bq.Cols, t.Driver.Logits.Cols), Is.EqualTo((w, w, w)));
        var whq = gpu.ToArray(m.Whq);
        var dwhq = gpu.ToArray(m.DWhq);
        for (int r = 0; r < o.Hidden; r++)
            for (int c = v; c < w; c++)
            {
                Assert.That(whq[r * w + c], Is.EqualTo(0f), $"W_hq[{r}, {c}]");
                Assert.That(dwhq[r * w + c], Is.EqualTo(0f), $"dW_hq[{r}, {c}]");
            }
        Assert.That(gpu.ToArray(m.Bq)[v..], Is.All.EqualTo(float.NegativeInfinity));
        Assert.That(gpu.ToArray(m.DBq)[v..], Is.All.EqualTo(0f));
        Assert.That(m.ToHost().Values[^1], Has.Length.EqualTo(v).And.All.Not.EqualTo(float.NegativeInfinity));
        Assert.That(m.GradsToHost()[^2], Has.Length.EqualTo(o.Hidden * v));
        Assert.That(reports.SelectMany(r => r.Predictions).All(s => !s.Contains('\uFFFD')), "predictions are real characters");
        Assert.That(double.IsFinite(reports[^1].Perplexity) && reports[^1].Perplexity < v, "perplexity over the V real characters");
        using var cpu = new CpuBackend();
        using var cpuModel = new RnnModel(cpu, m.ToHost());
        Assert.That(cpuModel.OutputWidth, Is.EqualTo(v), "the CPU stores V");
    }

    [Test]
    public void TheGpuGathersByDefault()
    {
        using var gpu = Gpu();
        Assert.That(gpu.DefaultInputMode, Is.EqualTo(InputMode.Gather));
        var o = TrainOptions.Preset("concise") with { Epochs = 1, Hidden = 32, Batch = 4, Steps = 6, Seed = 2 };
        using var t = new Trainer(gpu, Small, o);
        Assert.That(t.Driver.Input, Is.EqualTo(InputMode.Gather));
        Assert.That(t.Driver.OneHot, Is.Null, "no T·B × V one-hot buffer");
    }
}
