using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Checkpoints;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Generation;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Training;

/// <summary>
/// The book's <c>train_and_predict_rnn</c> / <c>train_and_predict_rnn_pytorch</c> on any backend: per epoch, the
/// minibatches are built on the host and uploaded once; every step runs on the backend; the loss stays on the
/// backend and is read when an epoch is reported (or every epoch when someone asks for per-epoch numbers).
/// A run can be saved at an epoch boundary (<see cref="ToCheckpoint"/>) and continued from there bit for bit.
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

    /// <param name="resume">A checkpoint of this run to continue (parameters, optimizer, RNG and epoch come from it).</param>
    public Trainer(IBackend backend, Corpus corpus, TrainOptions options, RnnParameters? initial = null, Checkpoint? resume = null)
    {
        options.Validate();
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
        var spec = new ModelSpec(options.Model, corpus.Vocab.Count, options.Hidden, options.Activation, options.Cell, options.Layers);
        var init = resume?.Parameters() ?? initial ?? RnnParameters.Initialize(spec, new Rng(options.Seed));
        _dataRng = resume != null ? new Rng(resume.Header.DataRngState) : new Rng(options.Seed ^ 0xD2106030UL);
        Model = new RnnModel(backend, init);
        Driver = new BpttDriver(Model, options.Batch, options.Steps, options.Input);
        Optimizer = options.Optimizer == OptimizerKind.Sgd ? new Sgd(options.LearningRate) : new Adam(options.LearningRate);
        EpochSize = Samplers.EpochSize(options.Sampling, _train.Length, options.Batch, options.Steps);
        if (resume != null)
        {
            CompletedEpochs = resume.Header.Epoch;
            if (Optimizer is Adam adam && resume.Header.AdamSteps > 0)
                adam.Restore(Model,
                    spec.Parameters.Select(p => resume.Tensors["adam_m/" + p.Name]).ToArray(),
                    spec.Parameters.Select(p => resume.Tensors["adam_v/" + p.Name]).ToArray(),
                    resume.Header.AdamSteps);
            for (int l = 0; l < options.Layers; l++)
            {
                Restore(resume, $"state/H{l}", Driver.HT(l));
                if (Driver.CT(l) is Mat ct) Restore(resume, $"state/C{l}", ct);
            }
        }
    }

    void Restore(Checkpoint ck, string name, Mat dst)
    {
        if (!ck.Tensors.TryGetValue(name, out var data) || data.Length != dst.Length) return;
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
        CancellationToken cancel = default)
    {
        for (int epoch = CompletedEpochs + 1; epoch <= _o.Epochs; epoch++)
        {
            cancel.ThrowIfCancellationRequested();
            bool reportNow = epoch % _o.PredPeriod == 0;
            bool readNow = reportNow || everyEpoch != null || _be is Backends.Cpu.CpuBackend;
            if (readNow) _be.Synchronize(); // time this epoch alone, not work queued before it
            var sw = Stopwatch.StartNew();
            RunEpoch();
            CompletedEpochs = epoch;
            if (readNow)
            {
                var (sum, rows) = _be.ReadLoss();
                sw.Stop();
                if (!double.IsFinite(sum))
                    throw new CharRnnException(
                        $"Training diverged: the loss became {(double.IsNaN(sum) ? "NaN" : "infinite")} in epoch {epoch}. " +
                        "Use a smaller learning rate (--lr) or turn on gradient clipping (--clip 0.01).");
                double ppl = Math.Exp(sum / rows);
                double? val = reportNow && _val != null ? ValidationPerplexity() : null;
                double secs = sw.Elapsed.TotalSeconds;
                everyEpoch?.Invoke(new EpochStats(epoch, ppl, val, secs, TokensPerEpoch / secs));
                if (reportNow) report(new EpochReport(epoch, ppl, secs, PredictAll(), val));
            }
            afterEpoch?.Invoke(epoch);
        }
    }

    /// <summary>One epoch: build and upload its minibatches, then train on each.</summary>
    public void RunEpoch()
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
        for (int i = 0; i < n; i++) TrainMinibatch(i, _epochX.Range(i * tb, tb), _epochY.Range(i * tb, tb));
    }

    /// <summary>
    /// Minibatch <paramref name="i"/> of an epoch: the book's state rule (random sampling: zeros for every minibatch;
    /// consecutive: zeros for the epoch's first, then the previous minibatch's final state, detached), then one step.
    /// </summary>
    public void TrainMinibatch(int i, IdxView x, IdxView y)
    {
        if (_o.Sampling == SamplingKind.Random || i == 0) Driver.ResetState();
        else Driver.CarryState();
        Driver.TrainStep(x, y, _o.Clip ?? 0f, Optimizer);
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

    /// <summary>The run at its current epoch boundary, ready to save.</summary>
    public Checkpoint ToCheckpoint(int? corpusLimit)
    {
        var spec = Model.Spec;
        var tensors = new Dictionary<string, float[]>();
        var host = Model.ToHost();
        for (int i = 0; i < spec.Parameters.Count; i++) tensors["param/" + spec.Parameters[i].Name] = host.Values[i];
        int adamSteps = 0;
        if (Optimizer is Adam { FirstMoments: not null } adam)
        {
            adamSteps = adam.StepCount;
            for (int i = 0; i < spec.Parameters.Count; i++)
            {
                tensors["adam_m/" + spec.Parameters[i].Name] = _be.ToArray(adam.FirstMoments[i]);
                tensors["adam_v/" + spec.Parameters[i].Name] = _be.ToArray(adam.SecondMoments![i]);
            }
        }
        for (int l = 0; l < _o.Layers; l++)
        {
            tensors[$"state/H{l}"] = Save(Driver.HT(l));
            if (Driver.CT(l) is Mat ct) tensors[$"state/C{l}"] = Save(ct);
        }
        return new Checkpoint
        {
            Header = new CheckpointHeader
            {
                Model = spec.Kind, Cell = spec.Cell, Layers = spec.Layers, Hidden = spec.Hidden, Activation = spec.Activation,
                VocabChars = _corpus.Vocab.ToString(),
                Options = _o, Epoch = CompletedEpochs, Minibatch = 0, DataRngState = _dataRng.State, AdamSteps = adamSteps,
                CorpusSha1 = CorpusFingerprint(_corpus), CorpusChars = _corpus.Length, CorpusLimit = corpusLimit,
                WrittenBy = "charrnn " + (typeof(Trainer).Assembly.GetName().Version?.ToString() ?? "?"),
                Backend = _be.Description, Created = DateTime.UtcNow,
            },
            Tensors = tensors,
        };
    }

    public static string CorpusFingerprint(Corpus c) => Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes(c.Text)));

    public void Dispose()
    {
        _epochX?.Dispose();
        _epochY?.Dispose();
        _valX?.Dispose();
        _valY?.Dispose();
        Optimizer.Dispose();
        Driver.Dispose();
        Model.Dispose();
    }
}
