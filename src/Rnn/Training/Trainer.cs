using System.Diagnostics;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Generation;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Training;

/// <summary>
/// The book's <c>train_and_predict_rnn</c> / <c>train_and_predict_rnn_pytorch</c> on any backend: per epoch, the
/// minibatches are built on the host and uploaded once; every step runs on the backend; the loss stays on the
/// backend and is read when an epoch is reported (or every epoch when someone asks for per-epoch numbers).
/// A run can be captured at an epoch boundary (<see cref="CaptureState"/>) and continued from there bit for bit.
/// </summary>
public sealed class Trainer : IDisposable
{
    readonly IBackend _be;
    readonly Corpus _corpus;
    readonly TrainOptions _o;
    readonly Rng _dataRng;
    readonly int[][] _prefixes;
    readonly int[] _train;
    readonly int[]? _val;
    IndexBuffer? _epochX, _epochY, _valX, _valY;

    /// <param name="initial">Parameters to start from (a fresh run otherwise draws the book's initialisation).</param>
    /// <param name="resume">The state of this run at an epoch boundary to continue from (parameters, optimizer, RNG and
    /// epoch come from it); its shapes must match the options (<c>Checkpoint.Load</c> checks that).</param>
    public Trainer(IBackend backend, Corpus corpus, TrainOptions options, RnnParameters? initial = null, TrainerState? resume = null)
    {
        options.Validate();
        MemoryBudget.Check(options, corpus.Vocab.Count, backend, corpus.Length); // before anything is allocated
        (_train, _val) = Split(corpus.Indices, options.ValFraction);
        Samplers.CheckFits(options.Sampling, _train.Length, options.Batch, options.Steps);
        if (_val != null && Samplers.EpochSize(SamplingKind.Consecutive, _val.Length, options.Batch, options.Steps) < 1)
            throw new CharRnnException(
                $"The validation split ({_val.Length} characters) is too short for one minibatch of batch {options.Batch} × steps {options.Steps}. " +
                "Use a larger --val-fraction or a longer corpus (--chars all).");
        _prefixes = options.Prefixes.Select(p => corpus.Vocab.Encode(p, "The prefix")).ToArray();
        _be = backend;
        _corpus = corpus;
        _o = options;
        var spec = options.Spec(corpus.Vocab.Count);
        var init = resume?.Parameters ?? initial ?? RnnParameters.Initialize(spec, new Rng(options.Seed));
        _dataRng = resume != null ? new Rng(resume.DataRng) : new Rng(options.Seed ^ 0xD2106030UL);
        Model = new RnnModel(backend, init);
        Driver = new BpttDriver(Model, options.Batch, options.Steps, options.Input);
        Optimizer = options.Optimizer == OptimizerKind.Sgd ? new Sgd(options.LearningRate) : new Adam(options.LearningRate);
        Step = new TrainingStep(Driver, Optimizer, options.Clip ?? 0f);
        EpochSize = Samplers.EpochSize(options.Sampling, _train.Length, options.Batch, options.Steps);
        if (resume != null)
        {
            CompletedEpochs = resume.Epoch;
            if (Optimizer is Adam adam && resume.AdamSteps > 0) adam.Restore(Model, resume.AdamM!, resume.AdamV!, resume.AdamSteps);
            for (int l = 0; l < options.Layers; l++)
            {
                Restore(resume.H[l], Driver.HT(l));
                if (Driver.CT(l) is Mat ct) Restore(resume.C![l], ct);
            }
        }
    }

    void Restore(float[] data, Mat dst)
    {
        using var tmp = _be.FromArray(dst.Rows, dst.Cols, data);
        _be.Copy(tmp.All, dst);
    }

    float[] Save(Mat src)
    {
        using var tmp = _be.Zeros(src.Rows, src.Cols);
        _be.Copy(src, tmp.All);
        return _be.ToArray(tmp);
    }

    public RnnModel Model { get; }
    public BpttDriver Driver { get; }
    public IOptimizer Optimizer { get; }
    public TrainingStep Step { get; }
    public int EpochSize { get; }
    public TrainOptions Options => _o;
    public long TokensPerEpoch => (long)EpochSize * _o.Batch * _o.Steps;

    /// <summary>Epochs finished so far (0 for a fresh run).</summary>
    public int CompletedEpochs { get; private set; }

    /// <summary>Training and validation index sequences: the validation split is the corpus's tail.</summary>
    public static (int[] Train, int[]? Val) Split(int[] indices, double? valFraction)
    {
        if (valFraction is not double f) return (indices, null);
        int nVal = (int)Math.Round(indices.Length * f);
        return (indices[..^nVal], indices[^nVal..]);
    }

    /// <summary>
    /// Trains from the epoch after <see cref="CompletedEpochs"/> to <see cref="TrainOptions.Epochs"/>.
    /// <paramref name="report"/> gets the book's lines' data every PredPeriod epochs; <paramref name="everyEpoch"/>,
    /// when given, each epoch's numbers (this reads the loss every epoch: one device sync per epoch on a GPU);
    /// <paramref name="afterEpoch"/> runs at each epoch boundary (e.g. to save a checkpoint).
    /// </summary>
    public void Train(Action<EpochReport> report, Action<EpochStats>? everyEpoch = null, Action<int>? afterEpoch = null,
        CancellationToken cancel = default, Func<int, bool>? checkpointAt = null, Action<int, int, int>? minibatchDone = null)
    {
        for (int epoch = CompletedEpochs + 1; epoch <= _o.Epochs; epoch++)
        {
            cancel.ThrowIfCancellationRequested();
            bool reportNow = epoch % _o.PredPeriod == 0;
            // A checkpoint is only written after a healthy epoch: read its loss first (one sync) to know.
            bool readNow = reportNow || everyEpoch != null || _be.RunsOnHost || checkpointAt?.Invoke(epoch) == true;
            if (readNow) _be.Synchronize(); // time this epoch alone, not work queued before it
            var sw = Stopwatch.StartNew();
            int e = epoch;
            RunEpoch(minibatchDone == null ? null : (i, n) => minibatchDone(e, i, n));
            CompletedEpochs = epoch;
            if (readNow)
            {
                var (sum, rows) = _be.ReadLoss();
                sw.Stop();
                double ppl = Healthy(epoch, Math.Exp(sum / rows), "training");
                double? val = reportNow && _val != null ? Healthy(epoch, ValidationPerplexity(), "validation") : null;
                double secs = sw.Elapsed.TotalSeconds;
                everyEpoch?.Invoke(new EpochStats(epoch, ppl, val, secs, TokensPerEpoch / secs));
                if (reportNow) report(new EpochReport(epoch, ppl, secs, PredictAll(), val));
            }
            afterEpoch?.Invoke(epoch);
        }
    }

    /// <summary>A perplexity, or <see cref="DivergedException"/> when it is NaN or infinite (a loss sum that stays
    /// finite can still overflow exp: a mean loss above ~709 nats, where ln V is under 8, is divergence too).</summary>
    static double Healthy(int epoch, double perplexity, string which) => double.IsFinite(perplexity) ? perplexity
        : throw new DivergedException(epoch,
            $"Training diverged in epoch {epoch}: the {which} loss became {(double.IsNaN(perplexity) ? "NaN" : "too large to exponentiate (perplexity ∞)")}. " +
            "Use a smaller learning rate (--lr) or turn on gradient clipping (--clip 0.01).");

    /// <summary>One epoch: build and upload its minibatches, then train on each (<paramref name="minibatchDone"/> gets
    /// (minibatches issued, of how many) after each: progress for long epochs).</summary>
    public void RunEpoch(Action<int, int>? minibatchDone = null)
    {
        int tb = _o.Batch * _o.Steps;
        var batches = _o.Sampling == SamplingKind.Random
            ? Samplers.Random(_train, _o.Batch, _o.Steps, _dataRng)
            : Samplers.Consecutive(_train, _o.Batch, _o.Steps);
        var (xs, ys, n) = Flatten(batches, EpochSize, tb);
        _epochX ??= _be.Indices(xs.Length);
        _epochY ??= _be.Indices(ys.Length);
        _be.Upload(_epochX, xs);
        _be.Upload(_epochY, ys);
        _be.ResetLoss();
        for (int i = 0; i < n; i++)
        {
            TrainMinibatch(i, _epochX.Range(i * tb, tb), _epochY.Range(i * tb, tb));
            minibatchDone?.Invoke(i + 1, n);
        }
    }

    /// <summary>
    /// Minibatch <paramref name="i"/> of an epoch: the book's state rule (random sampling: zeros for every minibatch;
    /// consecutive: zeros for the epoch's first, then the previous minibatch's final state, detached), then one step.
    /// </summary>
    public void TrainMinibatch(int i, IdxView x, IdxView y)
    {
        if (_o.Sampling == SamplingKind.Random || i == 0) Driver.ResetState();
        else Driver.CarryState();
        Step.Run(x, y);
    }

    /// <summary>Minibatches laid end to end as time-major token arrays (X and Y), <paramref name="tb"/> = T·B each.</summary>
    public static (int[] X, int[] Y, int Count) Flatten(IEnumerable<Minibatch> batches, int count, int tb)
    {
        var xs = new int[count * tb];
        var ys = new int[count * tb];
        int n = 0;
        foreach (var mb in batches)
        {
            mb.XTimeMajor.CopyTo(xs, n * tb);
            mb.YTimeMajor.CopyTo(ys, n * tb);
            n++;
        }
        return (xs, ys, n);
    }

    /// <summary>
    /// Perplexity on the held-out tail: consecutive minibatches, state carried as in training, forward only.
    /// Leaves nothing behind that training depends on (the next epoch resets the loss and the state).
    /// </summary>
    public double ValidationPerplexity()
    {
        if (_val == null) throw new InvalidOperationException("no validation split");
        int tb = _o.Batch * _o.Steps;
        int count = Samplers.EpochSize(SamplingKind.Consecutive, _val.Length, _o.Batch, _o.Steps);
        if (_valX == null)
        {
            var (xs, ys, _) = Flatten(Samplers.Consecutive(_val, _o.Batch, _o.Steps), count, tb);
            _valX = _be.FromArray(xs);
            _valY = _be.FromArray(ys);
        }
        _be.ResetLoss();
        Driver.ResetState();
        for (int i = 0; i < count; i++)
        {
            if (i > 0) Driver.CarryState();
            Driver.Forward(_valX.Range(i * tb, tb), _valY!.Range(i * tb, tb));
        }
        var (sum, rows) = _be.ReadLoss();
        return Math.Exp(sum / rows);
    }

    /// <summary>Greedy predictions for every prefix, as the book prints them.</summary>
    public IReadOnlyList<string> PredictAll()
    {
        using var p = new Predictor(Model);
        return _prefixes.Select(pre => _corpus.Vocab.Decode(p.Predict(pre, _o.PredLen))).ToList();
    }

    /// <summary>The run at its current epoch boundary (what a checkpoint stores).</summary>
    public TrainerState CaptureState()
    {
        var adam = Optimizer as Adam;
        bool moments = adam is { FirstMoments: not null };
        return new TrainerState
        {
            Epoch = CompletedEpochs,
            DataRng = _dataRng.State,
            Parameters = Model.ToHost(),
            AdamSteps = moments ? adam!.StepCount : 0,
            AdamM = moments ? adam!.FirstMoments!.Select(_be.ToArray).ToArray() : null,
            AdamV = moments ? adam!.SecondMoments!.Select(_be.ToArray).ToArray() : null,
            H = Enumerable.Range(0, _o.Layers).Select(l => Save(Driver.HT(l))).ToArray(),
            C = Model.Spec.Cell == CellKind.Lstm ? Enumerable.Range(0, _o.Layers).Select(l => Save(Driver.CT(l)!.Value)).ToArray() : null,
        };
    }

    /// <summary>The corpus this trainer trains on (its text identifies the run's data in a checkpoint).</summary>
    public Corpus Corpus => _corpus;

    public void Dispose()
    {
        _epochX?.Dispose();
        _epochY?.Dispose();
        _valX?.Dispose();
        _valY?.Dispose();
        Step.Dispose();
        Optimizer.Dispose();
        Driver.Dispose();
        Model.Dispose();
    }
}
