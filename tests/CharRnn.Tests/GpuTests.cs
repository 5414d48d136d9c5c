using CharRnn.Cuda;
using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Backends.Cpu;
using CharRnn.Rnn.Backends.Cuda;
using CharRnn.Rnn.Checkpoints;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Model;
using CharRnn.Rnn.Training;

namespace CharRnn.Tests;

/// <summary>
/// GPU-only checks. Each test Ignores with the probe's reason where no usable GPU exists, and fails instead when
/// CHARRNN_REQUIRE_GPU=1 (the GPU machine's strict run).
/// </summary>
[Category("Gpu")]
public class GpuTests
{
    /// <summary>The CUDA backend, or Ignore (fail under CHARRNN_REQUIRE_GPU=1) with the probe's reason.</summary>
    public static CudaBackend CreateCudaBackend()
    {
        var probe = GpuProbe.Run(0);
        if (!probe.Usable)
        {
            if (TestBackends.RequireGpu) Assert.Fail("CHARRNN_REQUIRE_GPU=1 but no usable GPU: " + probe.Reason);
            Assert.Ignore("No usable GPU: " + probe.Reason);
        }
        return CudaBackend.Create(0, new GpuOptions(TimePlans: false)); // the untimed rule: the same plan on every run
    }

    static Corpus Corpus10k => Corpus.Load(Path.Combine(AppContext.BaseDirectory, "data", "jaychou_lyrics.txt.zip"));
    static Corpus Corpus3k => Corpus.Load(Path.Combine(AppContext.BaseDirectory, "data", "jaychou_lyrics.txt.zip"), 3000);

    /// <summary>Book-sized shapes (V 1027, H 256, B 32, T 35): one whole SGD step and one Adam step, GPU vs CPU.</summary>
    [TestCase(ModelKind.Scratch, OptimizerKind.Sgd, CellKind.Rnn, 1)]
    [TestCase(ModelKind.Concise, OptimizerKind.Adam, CellKind.Rnn, 1)]
    [TestCase(ModelKind.Scratch, OptimizerKind.Sgd, CellKind.Gru, 1)]
    [TestCase(ModelKind.Concise, OptimizerKind.Adam, CellKind.Gru, 2)]
    [TestCase(ModelKind.Scratch, OptimizerKind.Sgd, CellKind.Lstm, 1)]
    [TestCase(ModelKind.Concise, OptimizerKind.Adam, CellKind.Lstm, 2)]
    public void OneTrainingStepMatchesTheCpu(ModelKind kind, OptimizerKind opt, CellKind cell, int layers)
    {
        using var gpu = CreateCudaBackend();
        using var cpu = new CpuBackend();
        var corpus = Corpus10k;
        var spec = new ModelSpec(kind, corpus.Vocab.Count, 256, Activation.Tanh, cell, layers);
        var init = RnnParameters.Initialize(spec, new Rng(3));
        var mb = Samplers.Random(corpus.Indices, 32, 35, new Rng(4)).First();
        var results = new List<(float[][] Grads, RnnParameters After, double Loss)>();
        foreach (IBackend be in new IBackend[] { cpu, gpu })
        {
            using var model = new RnnModel(be, init);
            using var driver = new BpttDriver(model, 32, 35, InputMode.OneHotGemm);
            using var x = be.FromArray(mb.XTimeMajor);
            using var y = be.FromArray(mb.YTimeMajor);
            using IOptimizer o = opt == OptimizerKind.Sgd ? new Sgd(100f) : new Adam(1e-3f);
            be.ResetLoss();
            driver.Forward(x.All, y.All);
            driver.Backward(x.All);
            var grads = model.GradsToHost();
            using var clip = be.Zeros(1, 2);
            be.ComputeClipScale(model.Grads, 0.01f, clip);
            o.Prepare(model);
            using var stepsTaken = be.FromArray([o.StepCount]);
            o.Enqueue(model, clip, stepsTaken.All);
            var (sum, rows) = be.ReadLoss();
            results.Add((grads, model.ToHost(), sum / rows));
        }
        // float32 on both sides, different summation orders (cuBLAS vs OpenBLAS): ~1e-6 relative per op.
        Check.Close(results[0].Loss, results[1].Loss, 1e-6, 1e-5, "loss");
        for (int i = 0; i < spec.Parameters.Count; i++)
        {
            Check.Close(Check.ToDouble(results[0].Grads[i]), results[1].Grads[i], 1e-7, 1e-3, "grad " + spec.Parameters[i].Name);
            Check.Close(Check.ToDouble(results[0].After.Values[i]), results[1].After.Values[i], 1e-5, 1e-3, "param " + spec.Parameters[i].Name);
        }
    }

    /// <summary>--precision tf32|bf16 (tensor-core products of rounded operands, FP32 accumulation) stays close to FP32
    /// over a few epochs: within 1 % (TF32) and 3 % (BF16) in perplexity, where one minibatch's loss is within 1e-3 and
    /// 1e-2 relative (operands with 10 and 7 mantissa bits: 2^-11 and 2^-8 relative rounding each).</summary>
    [TestCase(Precision.Tf32, "TF32 GEMMs", 1e-2)]
    [TestCase(Precision.Bf16, "BF16 GEMMs with FP32 accumulation", 3e-2)]
    public void ReducedPrecisionGemmsStayClose(Precision precision, string described, double tolerance)
    {
        CreateCudaBackend().Dispose();
        // Small shapes: the CUDA emulator runs the persistent recurrence one fiber per thread (tests/CudaEmulator).
        var o = TrainOptions.Preset("scratch-random") with { Epochs = 3, PredPeriod = 1, Seed = 3, Hidden = 64, Batch = 8 };
        var runs = new List<double[]>();
        foreach (var p in new[] { Precision.Fp32, precision })
        {
            using var gpu = CudaBackend.Create(0, new GpuOptions(p, TimePlans: false));
            Assert.That(gpu.Description.Contains(described), Is.EqualTo(p != Precision.Fp32));
            using var t = new Trainer(gpu, Corpus3k, o);
            var reports = new List<EpochReport>();
            t.Train(reports.Add);
            runs.Add(reports.Select(r => r.Perplexity).ToArray());
        }
        Check.Close(runs[0], runs[1], 0, tolerance, $"perplexity per epoch, {precision} vs FP32");
    }

    /// <summary>A BF16 GEMM is the FP32 product of the operands rounded to bfloat16: equal to that to FP32 rounding, and
    /// measurably away from the FP32 product (the rounding really happens).</summary>
    [Test]
    public void Bf16GemmMultipliesRoundedOperands()
    {
        CreateCudaBackend().Dispose();
        using var gpu = CudaBackend.Create(0, new GpuOptions(Precision.Bf16, TimePlans: false));
        int m = 128, k = 256, n = 64; // tensor-core-friendly shapes (cuBLAS may keep FP32 where they do not pay)
        var rng = new Rng(8);
        var a = Enumerable.Range(0, m * k).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var b = Enumerable.Range(0, k * n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        using var ta = gpu.FromArray(m, k, a);
        using var tb = gpu.FromArray(k, n, b);
        using var tc = gpu.Zeros(m, n);
        gpu.Gemm(false, false, 1f, ta.All, tb.All, 0f, tc.All);
        var got = gpu.ToArray(tc);
        static double Bf16(float x) => BitConverter.Int32BitsToSingle((int)((BitConverter.SingleToUInt32Bits(x) + 0x7FFF + ((BitConverter.SingleToUInt32Bits(x) >> 16) & 1)) & 0xFFFF0000));
        double maxFromRounded = 0, maxFromFp32 = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double rounded = 0, exact = 0;
                for (int p = 0; p < k; p++)
                {
                    rounded += Bf16(a[i * k + p]) * Bf16(b[p * n + j]);
                    exact += (double)a[i * k + p] * b[p * n + j];
                }
                maxFromRounded = Math.Max(maxFromRounded, Math.Abs(got[i * n + j] - rounded));
                maxFromFp32 = Math.Max(maxFromFp32, Math.Abs(got[i * n + j] - exact));
            }
        Assert.That(maxFromRounded, Is.LessThan(1e-4), "vs the product of bfloat16-rounded operands (FP32 accumulation of 256 terms)");
        Assert.That(maxFromFp32, Is.GreaterThan(1e-3), "vs the FP32 product: bfloat16's 8-bit significands leave ~1e-2 relative per term");
    }

    /// <summary>10 minibatches of the book's scratch-random run: per-step loss on the GPU tracks the CPU.</summary>
    [Test]
    public void TenStepLossParity()
    {
        using var gpu = CreateCudaBackend();
        using var cpu = new CpuBackend();
        var o = TrainOptions.Preset("scratch-random") with { Epochs = 1, Seed = 11 };
        var corpus = Corpus10k;
        var losses = new List<double[]>();
        foreach (IBackend be in new IBackend[] { cpu, gpu })
        {
            using var t = new Trainer(be, corpus, o with { Input = InputMode.OneHotGemm });
            var perStep = new List<double>();
            var batches = Samplers.Random(corpus.Indices, 32, 35, new Rng(12)).ToList();
            for (int step = 0; step < 10; step++)
            {
                var mb = batches[step % batches.Count];
                using var x = be.FromArray(mb.XTimeMajor);
                using var y = be.FromArray(mb.YTimeMajor);
                be.ResetLoss();
                t.Driver.ResetState();
                t.Step.Run(x.All, y.All); // SGD lr 100, clip 0.01
                var (sum, rows) = be.ReadLoss();
                perStep.Add(sum / rows);
            }
            losses.Add(perStep.ToArray());
        }
        Check.Close(losses[0], losses[1], 1e-4, 1e-3, "per-step loss");
        Assert.That(losses[1][^1], Is.LessThan(losses[1][0] - 0.05), "ten SGD steps at lr 100 lower the loss by a clear margin");
    }

    [Test]
    public void RepeatedRunIsBitIdentical([Values("scratch-random", "lstm-concise")] string preset)
    {
        // The book's shapes on 3 000 characters (2 minibatches an epoch for scratch-random): the persistent kernels'
        // plan at full size (64 blocks), few steps, as the emulator runs them one fiber per thread.
        var o = TrainOptions.Preset(preset) with { Epochs = 4, PredPeriod = 2, Seed = 2, Layers = preset == "lstm-concise" ? 2 : 1 };
        var runs = new List<List<EpochReport>>();
        for (int i = 0; i < 2; i++)
        {
            using var gpu = CreateCudaBackend();
            using var t = new Trainer(gpu, preset == "lstm-concise" ? Corpus10k : Corpus3k, o);
            var reports = new List<EpochReport>();
            t.Train(reports.Add);
            runs.Add(reports);
        }
        Assert.That(runs[1].Select(r => r.Perplexity), Is.EqualTo(runs[0].Select(r => r.Perplexity)));
        Assert.That(runs[1].SelectMany(r => r.Predictions), Is.EqualTo(runs[0].SelectMany(r => r.Predictions)));
    }

    [Test]
    public void NoDeviceMemoryGrowthOver200Steps()
    {
        using var gpu = CreateCudaBackend();
        // H 32, B 4 on 3 000 characters: 21 minibatches × 10 epochs = 210 steps, cheap on the emulator.
        var o = TrainOptions.Preset("concise") with { Epochs = 10, PredPeriod = 10, Seed = 1, Hidden = 32, Batch = 4 };
        using var t = new Trainer(gpu, Corpus3k, o);
        t.RunEpoch();
        gpu.Synchronize();
        long allocated = gpu.Context.AllocatedBytes;
        var (free, _) = gpu.Context.MemoryInfo();
        t.Train(_ => { });
        gpu.Synchronize();
        Assert.That(gpu.Context.AllocatedBytes, Is.EqualTo(allocated), "bytes held in DeviceBuffers");
        var (freeAfter, _) = gpu.Context.MemoryInfo();
        Assert.That(free - freeAfter, Is.LessThan(8L << 20), "driver-reported free memory shrank by more than 8 MiB");
    }

    /// <summary>Over 1 000 minibatches with everything a run does between them (reports, predictions, validation,
    /// checkpoint captures), device memory does not grow: every temporary buffer is freed.</summary>
    [Test]
    public void NoDeviceMemoryGrowthOver1000Minibatches()
    {
        using var gpu = CreateCudaBackend();
        var corpus = Corpus.Load(Path.Combine(AppContext.BaseDirectory, "data", "jaychou_lyrics.txt.zip"), 3000);
        var o = TrainOptions.Preset("lstm-concise") with { Epochs = 13, Hidden = 32, Batch = 4, Steps = 8, PredPeriod = 1, PredLen = 5, ValFraction = 0.1, Seed = 1 };
        using var t = new Trainer(gpu, corpus, o with { Epochs = 1 });
        t.Train(_ => { });
        _ = Checkpoint.Capture(t);
        gpu.Synchronize();
        long allocated = gpu.Context.AllocatedBytes;
        var (free, _) = gpu.Context.MemoryInfo();
        var rest = new Trainer(gpu, corpus, o, resume: t.CaptureState());
        long steps = 0, saves = 0;
        rest.Train(TrainSchedule.Book(o) with { Save = Interval.Epochs(1) }, new TrainHooks
        {
            Save = _ => { Checkpoint.Capture(rest); saves++; },
            Minibatch = (_, _, _) => steps++,
        });
        // Counted as they ran (#26: this was computed from the options, so it held whatever ran).
        Assert.That(steps, Is.GreaterThanOrEqualTo(1000), "minibatches run");
        Assert.That(saves, Is.EqualTo(o.Epochs - 1), "a capture per epoch");
        rest.Dispose();
        gpu.Synchronize();
        Assert.That(gpu.Context.AllocatedBytes, Is.EqualTo(allocated), "bytes held in DeviceBuffers, after the second trainer is gone");
        var (freeAfter, _) = gpu.Context.MemoryInfo();
        Assert.That(free - freeAfter, Is.LessThan(8L << 20), "driver-reported free memory shrank by more than 8 MiB");
    }

    /// <summary>NCCL end to end with one rank: the gradient "average" over one GPU leaves every step as it was, bit for
    /// bit, through the real call sequence (unique id by value, communicator, grouped all-reduces on the stream). On the
    /// CUDA emulator its one-rank NCCL (tests/CudaEmulator/nccl.cpp); on a GPU machine, the NCCL PyTorch's wheels ship.</summary>
    [Test]
    public void NcclWithOneRankTrainsExactlyAsWithout()
    {
        using var gpu = CreateCudaBackend();
        var nccl = Rnn.Distributed.NcclRanks.Version();
        if (nccl.StartsWith("not found"))
        {
            if (TestBackends.RequireGpu) Assert.Fail("CHARRNN_REQUIRE_GPU=1 but NCCL is " + nccl);
            Assert.Ignore("NCCL is " + nccl);
        }
        var o = TrainOptions.Preset("lstm-concise") with { Epochs = 2, Hidden = 32, Batch = 8, Steps = 10, PredPeriod = 1, Seed = 5 };
        var corpus = Corpus.Load(Path.Combine(AppContext.BaseDirectory, "data", "jaychou_lyrics.txt.zip"), 3000);
        var runs = new List<List<EpochReport>>();
        foreach (bool withNccl in new[] { false, true })
        {
            using var ranks = withNccl ? Rnn.Distributed.NcclRanks.Create(Rnn.Distributed.SingleRank.Instance, gpu) : null;
            using var t = new Trainer(gpu, corpus, o, ranks: ranks);
            var reports = new List<EpochReport>();
            t.Train(reports.Add);
            runs.Add(reports);
        }
        Assert.That(runs[1].Select(r => r.Perplexity), Is.EqualTo(runs[0].Select(r => r.Perplexity)));
        Assert.That(runs[1].SelectMany(r => r.Predictions), Is.EqualTo(runs[0].SelectMany(r => r.Predictions)));
    }

    /// <summary>#22, explicit streams: Overlap hands its background blocks the side lane (another stream), and the
    /// output layer's gradients, computed there beside the backward recurrence, are averaged on that stream; the other
    /// gradients on the main one. The steps are recorded as graphs, and a capture fails on a lane not joined back into
    /// the main stream after its last op (the emulator applies that rule), so what the lane issued is ordered before
    /// clipping. (The emulator runs all streams' work in issue order: a missing wait between streams shows only there.)</summary>
    [Test]
    public void GradientsAreAveragedOnTheStreamThatComputedThem()
    {
        using var gpu = CreateCudaBackend();
        IBackend? handed = null;
        gpu.Overlap(() => { }, [be => handed = be]);
        var lane = gpu.StreamOf(handed!);
        Assert.That(lane, Is.Not.Null.And.Not.SameAs(gpu.Stream), "Overlap's blocks get the side lane, not the main stream");
        var spy = new StreamSpy(gpu);
        var o = TrainOptions.Preset("concise") with { Epochs = 2, Hidden = 32, Batch = 8, Steps = 10, PredPeriod = 1, Seed = 3 };
        using (var t = new Trainer(gpu, Corpus3k, o, ranks: spy))
        {
            t.Train(_ => { });
            Assert.That(t.Model.Grads.Count, Is.GreaterThan(2));
        }
        string Named(CudaStream? s) => s == gpu.Stream ? "main stream" : s == lane ? "side lane" : "another stream";
        Assert.That(spy.Calls.Where(c => c.Tensors == 2).Select(c => Named(c.Stream)).Distinct(), Is.EqualTo(new[] { "side lane" }),
            "dW_hq and db_q: averaged where they were computed");
        Assert.That(spy.Calls.Where(c => c.Tensors != 2).Select(c => Named(c.Stream)).Distinct(), Is.EqualTo(new[] { "main stream" }),
            "the other gradients");
        Assert.That(spy.Calls.Count(c => c.Tensors == 2), Is.GreaterThan(0));
    }

    /// <summary>One rank that still averages (the NCCL path's call sequence without NCCL): records the stream of each
    /// StartAverage; the average of one rank is the identity.</summary>
    sealed class StreamSpy(CudaBackend gpu) : Rnn.Distributed.ICollective
    {
        public readonly List<(int Tensors, CudaStream? Stream)> Calls = [];
        public int Rank => 0;
        public int Size => 1;
        public bool Averages => true;
        public string Description => "stream spy";
        public TimeSpan Timeout { get; set; } = TimeSpan.FromMinutes(1);
        public void Sum(double[] values) { }
        public void Sum(float[] values) { }
        public void Broadcast(byte[] data, int root) { }
        public Rnn.Distributed.IPendingReduction StartAverage(IBackend backend, IReadOnlyList<Tensor> tensors)
        {
            Calls.Add((tensors.Count, gpu.StreamOf(backend)));
            return Rnn.Distributed.SingleRank.Instance.StartAverage(backend, tensors);
        }
        public void Dispose() { }
    }

    [Test]
    public void CapturedGraphReplaysTheSameWork()
    {
        using var gpu = CreateCudaBackend();
        var p0 = Enumerable.Range(0, 1000).Select(i => (float)Math.Sin(i)).ToArray();
        using var p = gpu.FromArray(10, 100, p0);
        using var w = gpu.FromArray(100, 100, Enumerable.Range(0, 10000).Select(i => (i % 7) * 0.01f).ToArray());
        using var outEager = gpu.Zeros(10, 100);
        using var outGraph = gpu.Zeros(10, 100);
        gpu.Gemm(false, false, 1f, p.All, w.All, 0f, outEager.All);
        gpu.Synchronize();
        using var graph = CudaGraph.Capture(gpu.Context, gpu.Stream, () => gpu.Gemm(false, false, 1f, p.All, w.All, 0f, outGraph.All));
        graph.Launch(gpu.Stream);
        Assert.That(gpu.ToArray(outGraph), Is.EqualTo(gpu.ToArray(outEager)));
    }

    /// <summary>A checkpoint written on the CPU continues on the GPU (and the reverse) with the same losses, to float tolerance.</summary>
    [Test]
    public void CheckpointsMoveBetweenBackends()
    {
        using var gpu = CreateCudaBackend();
        using var cpu = new CpuBackend();
        var corpus = Corpus.Load(Path.Combine(AppContext.BaseDirectory, "data", "jaychou_lyrics.txt.zip"), 3000);
        var o = TrainOptions.Preset("concise") with { Epochs = 2, Hidden = 64, Batch = 8, Steps = 10, PredPeriod = 1, Seed = 4 };
        using var dir = new TempDir();
        foreach (var (from, to) in new[] { ((IBackend)cpu, (IBackend)gpu), (gpu, cpu) })
        {
            var path = dir.File($"{from.Name}.ckpt");
            using (var t = new Trainer(from, corpus, o)) { t.Train(_ => { }); Checkpoint.Capture(t).Save(path); }
            var ck = Checkpoint.Load(path);
            var a = new List<EpochReport>();
            var b = new List<EpochReport>();
            using (var t = new Trainer(from, corpus, o with { Epochs = 4 }, resume: ck.ToState())) t.Train(a.Add);
            using (var t = new Trainer(to, corpus, o with { Epochs = 4 }, resume: ck.ToState())) t.Train(b.Add);
            Check.Close(a.Select(r => r.Perplexity).ToArray(), b.Select(r => r.Perplexity).ToArray(), 0, 1e-3, $"{from.Name} → {to.Name}");
        }
    }

    [Test]
    public void BenchRunsOnTheGpu()
    {
        CreateCudaBackend().Dispose();
        CliOutputTests.CheckBench("cuda");
    }

    [Test]
    public void CliTrainsOnTheGpu()
    {
        CreateCudaBackend().Dispose();
        var o = new StringWriter();
        var e = new StringWriter();
        int code = CharRnn.Cli.Program.Run(["train", "--device", "cuda", "--epochs", "2", "--pred-period", "1", "--pred-len", "5", "--chars", "2300"], o, e);
        Assert.That(code, Is.EqualTo(0), e.ToString());
        Assert.That(e.ToString(), Does.Contain("cuda:0"));
        Assert.That(e.ToString(), Does.Contain("charrnn: recurrence persistent (64 blocks × 4 columns); training step as a CUDA graph: on"));
        Assert.That(o.ToString(), Does.Contain("epoch 2, perplexity"));
        foreach (var (args, line) in new[]
                 {
                     (new[] { "--graph", "off" }, "training step as a CUDA graph: off (turned off by --graph off)"),
                     (["--recurrence", "steps"], "charrnn: recurrence per-step (--recurrence steps);"),
                     (["--preset", "lstm-concise", "--layers", "2"], "recurrence per-step (the gated cells' cluster kernels run where timed faster, or with --recurrence cluster) in every layer;"),
                     (["--preset", "lstm-concise", "--recurrence", "cluster"], "charrnn: recurrence cluster (16 × 8 blocks, 2 rows each);"),
                 })
        {
            e = new StringWriter();
            code = CharRnn.Cli.Program.Run(["train", "--device", "cuda", "--epochs", "1", "--pred-len", "5", "--hidden", "32", .. args], new StringWriter(), e);
            Assert.That(code, Is.EqualTo(0), e.ToString());
            Assert.That(e.ToString(), Does.Contain(line));
        }
    }
}
