using System.Diagnostics;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Training;

/// <summary>Timing of a training run or of a fixed number of training steps, without start-up or generation.</summary>
public sealed record BenchResult
{
    public required string Device { get; init; }
    public required string Description { get; init; }
    public required string Config { get; init; }
    public required int Hidden { get; init; }
    /// <summary>The cell (rnn, gru, lstm) and the stacked layers, so a row of a table says what it timed.</summary>
    public string? Cell { get; init; }
    public int Layers { get; init; } = 1;
    public required int Batch { get; init; }
    public required int Steps { get; init; }
    public required int Vocab { get; init; }
    public required long Minibatches { get; init; }
    public required double Seconds { get; init; }
    public required double TokensPerSecond { get; init; }
    /// <summary>FLOPs of the GEMMs one training step executes (see <see cref="Benchmark.StepFlops"/>).</summary>
    public required double FlopsPerStep { get; init; }
    /// <summary>FLOPs of the GEMMs the model needs (the gather input's: no one-hot products), whatever the input mode.</summary>
    public required double UsefulFlopsPerStep { get; init; }
    public required string Input { get; init; }
    public double GflopsPerSecond => FlopsPerStep * Minibatches / Seconds / 1e9;
    public double UsefulGflopsPerSecond => UsefulFlopsPerStep * Minibatches / Seconds / 1e9;
    /// <summary>The untimed start: a run's first epoch (compilation, the graph's recording, warm-up), or the warm-up steps
    /// of a fixed-step benchmark. <see cref="Seconds"/>, <see cref="Minibatches"/> and the rates leave it out.</summary>
    public double? FirstSeconds { get; init; }
    /// <summary>How the backend ran the recurrence and the step ("persistent (…)", "per-step (…)"; graph "on"/"off (…)").</summary>
    public required string Recurrence { get; init; }
    public required string Graph { get; init; }
    /// <summary>Peak device memory in the backend's buffers over the whole benchmark (null on the CPU).</summary>
    public long? PeakDeviceBytes { get; init; }
    /// <summary>Device time per time step of the first layer's recurrence, forward and backward (events around repeated
    /// launches after the run; null on the CPU).</summary>
    public double? RecurrenceForwardMicrosPerStep { get; init; }
    public double? RecurrenceBackwardMicrosPerStep { get; init; }
    public double? FinalPerplexity { get; init; }
    public IReadOnlyList<double>? EpochSeconds { get; init; }
    public IReadOnlyList<double>? EpochPerplexities { get; init; }
    public double? SgemmGflopsPerSecond { get; init; }
    public int? SgemmSize { get; init; }
}

public static class Benchmark
{
    /// <summary>
    /// GEMM FLOPs of one minibatch step, N = T·B rows, G gates, L layers. Output layer: 3 products of 2N·H·V (logits,
    /// dW_hq, dH). Per layer: the recurrent h·W_hh, dW_hh and recurrent dH, 3 × 2N·H·GH; input products: layer 0 with
    /// one-hot GEMMs 2 × 2N·V·GH (x·W_xh, dW_xh; the gather path skips both), layers above 3 × 2N·H·GH (x·W_xh, dW_xh,
    /// dH below). For a one-layer RNN with one-hot GEMMs that is 2N(5VH + 3H²), what PyTorch's nn.RNN executes.
    /// </summary>
    public static double StepFlops(int vocab, int hidden, int batch, int steps, InputMode input, int gates = 1, int layers = 1)
    {
        double n = (double)steps * batch, gh = (double)gates * hidden;
        double f = 3 * 2 * n * hidden * vocab;
        f += layers * 3 * 2 * n * hidden * gh;
        if (input == InputMode.OneHotGemm) f += 2 * 2 * n * vocab * gh;
        f += (layers - 1) * 3 * 2 * n * hidden * gh;
        return f;
    }

    /// <summary>A whole run (every epoch of <paramref name="o"/>): the first epoch timed apart, the rest (at least one
    /// more) timed together up to the final sync.</summary>
    public static BenchResult Run(IBackend be, Corpus corpus, TrainOptions o, string config, CancellationToken cancel = default)
    {
        if (o.Epochs < 2) throw new CharRnnException("A benchmarked run needs at least 2 epochs: the first (compilation, warm-up) is timed apart.");
        be.ResetMemoryPeak();
        using var t = new Trainer(be, corpus, o);
        var epochSeconds = new List<double>();
        var ppl = new List<double>();
        be.Synchronize();
        var first = Stopwatch.StartNew();
        var rest = new Stopwatch();
        for (int e = 0; e < o.Epochs; e++)
        {
            if (e == 1)
            {
                be.Synchronize();
                first.Stop();
                rest.Start();
            }
            cancel.ThrowIfCancellationRequested(); // a signal stops the benchmark between epochs
            var sw = Stopwatch.StartNew();
            t.RunEpoch();
            if (be.RunsOnHost || e == o.Epochs - 1)
            {
                var (sum, rows) = be.ReadLoss();
                ppl.Add(Math.Exp(sum / rows));
            }
            epochSeconds.Add(sw.Elapsed.TotalSeconds);
        }
        be.Synchronize();
        long steps = (long)t.EpochSize * (o.Epochs - 1);
        return Result(be, t, corpus, config, steps, rest.Elapsed.TotalSeconds) with
        {
            FirstSeconds = first.Elapsed.TotalSeconds, FinalPerplexity = ppl[^1], EpochSeconds = epochSeconds, EpochPerplexities = ppl,
        };
    }

    /// <summary>The fields every result has: shapes, device, time, tokens/s and the step's GEMM FLOPs.</summary>
    static BenchResult Result(IBackend be, Trainer t, Corpus corpus, string config, long minibatches, double seconds)
    {
        var o = t.Options;
        long? peak = be.MemoryPeakBytes;
        // Last, as it leaves the trainer's buffers garbage: the recurrence alone, 20 launches a direction.
        double? PerStep(bool backward) => be.DeviceSeconds(() => t.Driver.RunRecurrenceOnly(0, backward), 20) * 1e6 / o.Steps;
        var profiler = be.Profiler;
        be.Profiler = null; // its per-op syncs would be in the events' span
        double? fwd = PerStep(false), bwd = PerStep(true);
        be.Profiler = profiler;
        return new BenchResult
        {
            Device = be.Name, Description = be.Description, Config = config, Hidden = o.Hidden, Cell = o.Cell.ToString().ToLowerInvariant(), Layers = o.Layers, Batch = o.Batch, Steps = o.Steps,
            Vocab = corpus.Vocab.Count, Minibatches = minibatches, Seconds = seconds,
            TokensPerSecond = (double)minibatches * o.Batch * o.Steps / seconds,
            FlopsPerStep = StepFlops(corpus.Vocab.Count, o.Hidden, o.Batch, o.Steps, t.Driver.Input, t.Model.Spec.Gates, o.Layers),
            UsefulFlopsPerStep = StepFlops(corpus.Vocab.Count, o.Hidden, o.Batch, o.Steps, InputMode.Gather, t.Model.Spec.Gates, o.Layers),
            Input = t.Driver.Input.ToString(),
            Recurrence = t.Driver.DescribeRecurrence(), Graph = t.Step.GraphStatus, PeakDeviceBytes = peak,
            RecurrenceForwardMicrosPerStep = fwd, RecurrenceBackwardMicrosPerStep = bwd,
        };
    }

    /// <summary><paramref name="steps"/> training steps after <paramref name="warmup"/> untimed ones, cycling an epoch's minibatches.</summary>
    public static BenchResult Steps(IBackend be, Corpus corpus, TrainOptions o, string config, int steps, int warmup = 3, CancellationToken cancel = default)
    {
        o = o with { Epochs = 1 };
        be.ResetMemoryPeak();
        using var t = new Trainer(be, corpus, o);
        t.StartEpoch(0);
        void Step(int i)
        {
            cancel.ThrowIfCancellationRequested(); // a signal stops the benchmark at the next minibatch
            t.TrainMinibatch(i % t.EpochSize);
        }
        be.Synchronize();
        var first = Stopwatch.StartNew();
        for (int i = 0; i < warmup; i++) Step(i);
        be.Synchronize();
        first.Stop();
        be.ResetLoss();
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < steps; i++) Step(warmup + i);
        be.Synchronize();
        double seconds = sw.Elapsed.TotalSeconds;
        var (sum, rows) = be.ReadLoss();
        return Result(be, t, corpus, config, steps, seconds) with { FirstSeconds = first.Elapsed.TotalSeconds, FinalPerplexity = Math.Exp(sum / rows) };
    }

    /// <summary>GFLOP/s of a square SGEMM (n×n×n) on the backend, best of <paramref name="reps"/> after one warm-up.</summary>
    public static double SgemmRate(IBackend be, int n, int reps = 5)
    {
        var rng = new Rng(1);
        var data = new float[n * n];
        for (int i = 0; i < data.Length; i++) data[i] = (float)(rng.NextDouble() - 0.5);
        using var a = be.FromArray(n, n, data);
        using var b = be.FromArray(n, n, data);
        using var c = be.Zeros(n, n);
        be.Gemm(false, false, 1f, a.All, b.All, 0f, c.All);
        be.Synchronize();
        double best = double.MaxValue;
        for (int r = 0; r < reps; r++)
        {
            var sw = Stopwatch.StartNew();
            be.Gemm(false, false, 1f, a.All, b.All, 0f, c.All);
            be.Synchronize();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return 2.0 * n * n * n / best / 1e9;
    }
}
