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
    public required int Batch { get; init; }
    public required int Steps { get; init; }
    public required int Vocab { get; init; }
    public required long Minibatches { get; init; }
    public required double Seconds { get; init; }
    public required double TokensPerSecond { get; init; }
    /// <summary>FLOPs of the GEMMs one training step executes (see <see cref="Benchmark.StepFlops"/>).</summary>
    public required double FlopsPerStep { get; init; }
    public required string Input { get; init; }
    public double GflopsPerSecond => FlopsPerStep * Minibatches / Seconds / 1e9;
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

    /// <summary>A whole run (every epoch of <paramref name="o"/>), timed from the first epoch to the final sync.</summary>
    public static BenchResult Run(IBackend be, Corpus corpus, TrainOptions o, string config)
    {
        using var t = new Trainer(be, corpus, o);
        var epochSeconds = new List<double>();
        var ppl = new List<double>();
        be.Synchronize();
        var total = Stopwatch.StartNew();
        for (int e = 0; e < o.Epochs; e++)
        {
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
        long steps = (long)t.EpochSize * o.Epochs;
        return Result(be, t, corpus, config, steps, total.Elapsed.TotalSeconds) with
        {
            FinalPerplexity = ppl[^1], EpochSeconds = epochSeconds, EpochPerplexities = ppl,
        };
    }

    /// <summary>The fields every result has: shapes, device, time, tokens/s and the step's GEMM FLOPs.</summary>
    static BenchResult Result(IBackend be, Trainer t, Corpus corpus, string config, long minibatches, double seconds)
    {
        var o = t.Options;
        return new BenchResult
        {
            Device = be.Name, Description = be.Description, Config = config, Hidden = o.Hidden, Batch = o.Batch, Steps = o.Steps,
            Vocab = corpus.Vocab.Count, Minibatches = minibatches, Seconds = seconds,
            TokensPerSecond = (double)minibatches * o.Batch * o.Steps / seconds,
            FlopsPerStep = StepFlops(corpus.Vocab.Count, o.Hidden, o.Batch, o.Steps, t.Driver.Input, t.Model.Spec.Gates, o.Layers),
            Input = t.Driver.Input.ToString(),
        };
    }

    /// <summary><paramref name="steps"/> training steps after <paramref name="warmup"/> untimed ones, cycling an epoch's minibatches.</summary>
    public static BenchResult Steps(IBackend be, Corpus corpus, TrainOptions o, string config, int steps, int warmup = 3)
    {
        o = o with { Epochs = 1 };
        using var t = new Trainer(be, corpus, o);
        var batches = (o.Sampling == SamplingKind.Random
            ? Samplers.Random(corpus.Indices, o.Batch, o.Steps, new Rng(o.Seed))
            : Samplers.Consecutive(corpus.Indices, o.Batch, o.Steps)).ToList();
        int tb = o.Batch * o.Steps;
        var (x, y, count) = Trainer.Flatten(batches, batches.Count, tb);
        using var xs = be.FromArray(x);
        using var ys = be.FromArray(y);
        void Step(int i) => t.TrainMinibatch(i % count, xs.Range(i % count * tb, tb), ys.Range(i % count * tb, tb));
        for (int i = 0; i < warmup; i++) Step(i);
        be.Synchronize();
        be.ResetLoss();
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < steps; i++) Step(warmup + i);
        be.Synchronize();
        double seconds = sw.Elapsed.TotalSeconds;
        var (sum, rows) = be.ReadLoss();
        return Result(be, t, corpus, config, steps, seconds) with { FinalPerplexity = Math.Exp(sum / rows) };
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
