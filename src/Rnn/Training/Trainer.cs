using System.Diagnostics;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Generation;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Training;

/// <summary>
/// The book's <c>train_and_predict_rnn</c> / <c>train_and_predict_rnn_pytorch</c> on any backend: per epoch, the
/// minibatches are built on the host and uploaded once; every step runs on the backend; the loss stays on the
/// backend and is read when an epoch is reported.
/// </summary>
public sealed class Trainer : IDisposable
{
    readonly IBackend _be;
    readonly Corpus _corpus;
    readonly TrainOptions _o;
    readonly Rng _dataRng;
    readonly int[][] _prefixes;
    IndexBuffer? _epochX, _epochY;

    public Trainer(IBackend backend, Corpus corpus, TrainOptions options, RnnParameters? initial = null)
    {
        options.Validate();
        Samplers.CheckFits(options.Sampling, corpus.Length, options.Batch, options.Steps);
        _prefixes = options.Prefixes.Select(p => corpus.Vocab.Encode(p, "The prefix")).ToArray();
        _be = backend;
        _corpus = corpus;
        _o = options;
        var spec = new ModelSpec(options.Model, corpus.Vocab.Count, options.Hidden, options.Activation);
        var init = initial ?? RnnParameters.Initialize(spec, new Rng(options.Seed));
        _dataRng = new Rng(options.Seed ^ 0xD2106030UL);
        Model = new RnnModel(backend, init);
        Driver = new BpttDriver(Model, options.Batch, options.Steps, options.Input);
        Optimizer = options.Optimizer == OptimizerKind.Sgd ? new Sgd(options.LearningRate) : new Adam(options.LearningRate);
        EpochSize = Samplers.EpochSize(options.Sampling, corpus.Length, options.Batch, options.Steps);
    }

    public RnnModel Model { get; }
    public BpttDriver Driver { get; }
    public IOptimizer Optimizer { get; }
    public int EpochSize { get; }
    public long TokensPerEpoch => (long)EpochSize * _o.Batch * _o.Steps;

    /// <summary>Trains all epochs; <paramref name="report"/> gets the book's lines' data every PredPeriod epochs.</summary>
    public void Train(Action<EpochReport> report, CancellationToken cancel = default)
    {
        for (int epoch = 1; epoch <= _o.Epochs; epoch++)
        {
            cancel.ThrowIfCancellationRequested();
            bool reportNow = epoch % _o.PredPeriod == 0;
            if (reportNow) _be.Synchronize(); // time the reported epoch alone, not work queued before it
            var sw = Stopwatch.StartNew();
            RunEpoch();
            bool readNow = reportNow || _be is Backends.Cpu.CpuBackend;
            if (!readNow) continue;
            var (sum, rows) = _be.ReadLoss();
            sw.Stop();
            double ppl = Math.Exp(sum / rows);
            if (!double.IsFinite(sum))
                throw new CharRnnException(
                    $"Training diverged: the loss became {(double.IsNaN(sum) ? "NaN" : "infinite")} in epoch {epoch}. " +
                    "Use a smaller learning rate (--lr) or turn on gradient clipping (--clip 0.01).");
            if (reportNow) report(new EpochReport(epoch, ppl, sw.Elapsed.TotalSeconds, PredictAll()));
        }
    }

    /// <summary>One epoch: build and upload its minibatches, then train on each.</summary>
    public void RunEpoch()
    {
        int tb = _o.Batch * _o.Steps;
        var batches = _o.Sampling == SamplingKind.Random
            ? Samplers.Random(_corpus.Indices, _o.Batch, _o.Steps, _dataRng)
            : Samplers.Consecutive(_corpus.Indices, _o.Batch, _o.Steps);
        var xs = new int[EpochSize * tb];
        var ys = new int[EpochSize * tb];
        int n = 0;
        foreach (var mb in batches)
        {
            mb.XTimeMajor.CopyTo(xs, n * tb);
            mb.YTimeMajor.CopyTo(ys, n * tb);
            n++;
        }
        _epochX ??= _be.Indices(xs.Length);
        _epochY ??= _be.Indices(ys.Length);
        _be.Upload(_epochX, xs);
        _be.Upload(_epochY, ys);
        _be.ResetLoss();
        if (_o.Sampling == SamplingKind.Consecutive) Driver.ResetState();
        float clip = _o.Clip ?? 0f;
        for (int i = 0; i < n; i++)
        {
            if (_o.Sampling == SamplingKind.Random) Driver.ResetState();
            else if (i > 0) Driver.CarryState();
            Driver.TrainStep(_epochX.Range(i * tb, tb), _epochY.Range(i * tb, tb), clip, Optimizer);
        }
    }

    /// <summary>Greedy predictions for every prefix, as the book prints them.</summary>
    public IReadOnlyList<string> PredictAll()
    {
        using var p = new Predictor(Model);
        return _prefixes.Select(pre => _corpus.Vocab.Decode(p.Predict(pre, _o.PredLen))).ToList();
    }

    public void Dispose()
    {
        _epochX?.Dispose();
        _epochY?.Dispose();
        Optimizer.Dispose();
        Driver.Dispose();
        Model.Dispose();
    }
}
