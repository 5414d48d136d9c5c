using System.Diagnostics;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Distributed;
using CharRnn.Rnn.Generation;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Training;

/// <summary>
/// The book's <c>train_and_predict_rnn</c> / <c>train_and_predict_rnn_pytorch</c> on any backend: per epoch, the
/// minibatches are built on the host and uploaded once; every step runs on the backend; the loss stays on the
/// backend and is read only when something needs it (a report, an evaluation, a save, a per-epoch hook). Reports,
/// evaluations and saves follow a <see cref="TrainSchedule"/>, in epochs or minibatches; a run can be captured at
/// any minibatch boundary (<see cref="CaptureState"/>) and continued from there bit for bit.
/// </summary>
public sealed partial class Trainer : IDisposable
{
    readonly IBackend _be;
    readonly Corpus _corpus;
    readonly TrainOptions _o;
    readonly ICollective _ranks;
    readonly int _localBatch;  // this rank's rows of each global minibatch (all of them for one rank)
    readonly Rng _dataRng;
    readonly int[][] _prefixes;
    readonly int[] _train;
    IndexBuffer? _epochX, _epochY;

    /// <summary>Where the run is: the data generator's state at the start of the current epoch, minibatches done in
    /// it, and the loss of those minibatches already read from the backend (so a mid-epoch read or resume keeps the
    /// epoch's perplexity whole).</summary>
    ulong[] _epochRng;
    int _minibatch;
    double _lossSum;
    long _lossRows;

    /// <param name="initial">Parameters to start from (a fresh run otherwise draws the book's initialisation).</param>
    /// <param name="resume">The state of this run to continue from (parameters, optimizer, RNG and position come from
    /// it); its shapes must match the options (<c>Checkpoint.Load</c> checks that).</param>
    /// <param name="ranks">The data-parallel ranks (default: this process alone): each trains on its share of the rows
    /// of every global minibatch (<see cref="TrainOptions.Batch"/> is the global batch), gradients are averaged before
    /// clipping and loss sums added, so every rank takes the book's step and reports the whole batch's perplexity.</param>
    public Trainer(IBackend backend, Corpus corpus, TrainOptions options, RnnParameters? initial = null, TrainerState? resume = null,
        ICollective? ranks = null)
    {
        options.Validate();
        _ranks = ranks ?? SingleRank.Instance;
        RunRules.CheckBatchSplits(options.Batch, _ranks.Size);
        _localBatch = options.Batch / _ranks.Size;
        MemoryBudget.Check(options with { Batch = _localBatch }, corpus.Vocab.Count, backend, corpus.Length); // before anything is allocated
        (_train, _val) = Split(corpus.Indices, options.ValFraction);
        Samplers.CheckFits(options.Sampling, _train.Length, options.Batch, options.Steps);
        if (_val != null && Samplers.EpochSize(SamplingKind.Consecutive, _val.Length, options.Batch, options.Steps) < 1)
            throw new CharRnnException(
                $"The validation split ({_val.Length} characters) is too short for one minibatch of batch {options.Batch} × steps {options.Steps}. " +
                $"Use a larger --val-fraction, a smaller --batch or --steps, or a longer corpus (at {options.ValFraction:P0}, batch {options.Batch} × steps {options.Steps} needs about {(long)Math.Ceiling((options.Batch * options.Steps + 1) / options.ValFraction!.Value):N0} characters).");
        // The advice names --chars all only where the corpus was cut (a whole text has no more characters to offer).
        var fix = corpus.Limit == null ? $"Use a --prefix made of characters that occur in the training text (vocabulary of {corpus.Vocab.Count})." : null;
        _prefixes = options.Prefixes.Select(p => corpus.Vocab.Encode(p, "The prefix", fix)).ToArray();
        _be = backend;
        _corpus = corpus;
        _o = options;
        var spec = options.Spec(corpus.Vocab.Count);
        var init = resume?.Parameters ?? initial ?? RnnParameters.Initialize(spec, new Rng(options.Seed));
        _dataRng = resume != null ? new Rng(resume.DataRng) : new Rng(options.Seed ^ 0xD2106030UL);
        _epochRng = _dataRng.State;
        Model = new RnnModel(backend, init);
        // Each rank draws its own dropout masks (its rows are other rows).
        Driver = new BpttDriver(Model, _localBatch, options.Steps, options.Input, options.Dropout, options.Seed ^ ((ulong)_ranks.Rank * 0x9E3779B97F4A7C15UL));
        Optimizer = options.Optimizer switch
        {
            OptimizerKind.Sgd => new Sgd(options.LearningRate),
            OptimizerKind.RmsProp => new RmsProp(options.LearningRate),
            _ => new Adam(options.LearningRate),
        };
        Step = new TrainingStep(Driver, Optimizer, options.Clip ?? 0f, _ranks);
        EpochSize = Samplers.EpochSize(options.Sampling, _train.Length, options.Batch, options.Steps);
        if (resume != null)
        {
            if (resume.Minibatch < 0 || resume.Minibatch >= EpochSize)
                throw new CharRnnException($"The checkpoint stops after minibatch {resume.Minibatch} of an epoch, but this run's epochs have {EpochSize}. Resume it on the same corpus.");
            CompletedEpochs = resume.Epoch;
            (_minibatch, _lossSum, _lossRows) = (resume.Minibatch, resume.LossSum, resume.LossRows);
            if (resume.AdamSteps > 0) Optimizer.RestoreMoments(Model, new OptimizerMoments(resume.AdamM!, resume.AdamV!, resume.AdamSteps));
            for (int l = 0; l < options.Layers; l++)
            {
                Restore(MyRows(resume.H[l]), Driver.HT(l));
                if (Driver.CT(l) is Mat ct) Restore(MyRows(resume.C![l]), ct);
            }
        }
    }

    /// <summary>This rank's rows of a global (B × H) state.</summary>
    float[] MyRows(float[] global) => global.AsSpan(_ranks.Rank * _localBatch * _o.Hidden, _localBatch * _o.Hidden).ToArray();

    /// <summary>A global (B × H) state from every rank's rows (zeros elsewhere, summed: exact).</summary>
    float[] Gathered(float[] mine)
    {
        if (_ranks.Size == 1) return mine;
        var global = new float[_o.Batch * _o.Hidden];
        mine.CopyTo(global, _ranks.Rank * mine.Length);
        _ranks.Sum(global);
        return global;
    }

    /// <summary>The loss summed over every rank's rows since the accumulator was last cleared.</summary>
    (double Sum, long Rows) ReadLoss()
    {
        _ranks.BeforeDeviceWait(_be);
        var (sum, rows) = _be.ReadLoss();
        if (_ranks.Size == 1) return (sum, rows);
        var v = new[] { sum, rows };
        _ranks.Sum(v);
        return (v[0], (long)v[1]);
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

    /// <summary>Minibatches the run has trained since it began (resumes included): what minibatch intervals count.</summary>
    public long TotalMinibatches => (long)CompletedEpochs * EpochSize + _minibatch;

    /// <summary>Training and validation index sequences: the validation split is the corpus's tail.</summary>
    public static (int[] Train, int[]? Val) Split(int[] indices, double? valFraction)
    {
        if (valFraction is not double f) return (indices, null);
        int nVal = (int)Math.Round(indices.Length * f);
        return (indices[..^nVal], indices[^nVal..]);
    }

    /// <summary>The book's loop with its report every PredPeriod epochs (tests, benchmarks).</summary>
    public TrainOutcome Train(Action<EpochReport> report, CancellationToken cancel = default) =>
        Train(TrainSchedule.Book(_o), new TrainHooks { Report = report }, cancel);

    /// <summary>
    /// Trains from where the run stands to <see cref="TrainOptions.Epochs"/>, reporting, evaluating and asking for
    /// saves on <paramref name="schedule"/>'s intervals and at the end. A NaN or infinite loss (training or validation)
    /// stops it with <see cref="DivergedException"/> before anything is saved.
    /// </summary>
    public TrainOutcome Train(TrainSchedule schedule, TrainHooks hooks, CancellationToken cancel = default)
    {
        double bestVal = double.PositiveInfinity;
        int sinceBest = 0;
        while (CompletedEpochs < _o.Epochs)
        {
            StopIfAsked(cancel);
            int epoch = CompletedEpochs + 1;
            bool last = epoch == _o.Epochs;
            bool epochEvents = hooks.Epoch != null || _be.RunsOnHost || last || _ranks.Size > 1 // ranks keep the same steps
                               
                               || Due(schedule.Print, epoch, EpochSize) || (_val != null && Due(schedule.Eval, epoch, EpochSize))
                               || (schedule.Save is Interval sv && Due(sv, epoch, EpochSize));
            if (epochEvents) // time this epoch alone, not work queued before it
            {
                _ranks.BeforeDeviceWait(_be);
                _be.Synchronize();
            }
            var sw = Stopwatch.StartNew();
            (double waited, long reductions) = (Step.ReductionSeconds, Step.Reductions);
            Optimizer.LearningRate = _o.LearningRateAt(epoch);
            int first = _minibatch;
            StartEpoch(first);
            for (int i = first; i < EpochSize; i++)
            {
                TrainMinibatch(i);
                _minibatch = i + 1;
                hooks.Minibatch?.Invoke(epoch, i + 1, EpochSize);
                bool end = i + 1 == EpochSize;
                if (end) break; // the epoch's own events follow, after the boundary moves
                bool print = schedule.Print.Minibatches && schedule.Print.Due(epoch, TotalMinibatches, false);
                bool eval = _val != null && schedule.Eval.Minibatches && schedule.Eval.Due(epoch, TotalMinibatches, false);
                bool save = schedule.Save is { Minibatches: true } s2 && s2.Due(epoch, TotalMinibatches, false);
                if (!(print || eval || save)) continue;
                double ppl = ReadEpochPerplexity(epoch);
                if (eval && Evaluate(epoch, ref bestVal, ref sinceBest, schedule.Patience)) return Stop(hooks, epoch, schedule);
                if (print) hooks.Report?.Invoke(new EpochReport(epoch, ppl, sw.Elapsed.TotalSeconds, PredictAll(), ValHere) { Minibatch = i + 1, EpochSize = EpochSize });
                if (save || (BestHere && schedule.Save != null)) hooks.Save?.Invoke(new SavePoint(epoch, _minibatch, EpochSize, ValHere));
            }
            CompletedEpochs = epoch;
            _minibatch = 0;
            _epochRng = _dataRng.State;
            double epochPpl = epochEvents ? ReadEpochPerplexity(epoch) : double.NaN;
            (_lossSum, _lossRows) = (0, 0); // what mid-epoch reads took belongs to this epoch only
            if (epochEvents)
            {
                double ppl = epochPpl;
                sw.Stop();
                bool stop = _val != null && (Due(schedule.Eval, epoch, EpochSize) || last) && Evaluate(epoch, ref bestVal, ref sinceBest, schedule.Patience);
                double secs = sw.Elapsed.TotalSeconds;
                hooks.Epoch?.Invoke(new EpochStats(epoch, ppl, ValHere, secs, TokensPerEpoch / secs)
                    {
                        LearningRate = Optimizer.LearningRate, GradNorm = Step.ReadGradNorm(),
                        CommWaitMs = Step.Reductions > reductions ? 1e3 * (Step.ReductionSeconds - waited) / (Step.Reductions - reductions) : null,
                    });
                if (Due(schedule.Print, epoch, EpochSize) || last || stop)
                    hooks.Report?.Invoke(new EpochReport(epoch, ppl, secs, PredictAll(), ValHere) { EpochSize = EpochSize });
                if ((schedule.Save is Interval sv2 && Due(sv2, epoch, EpochSize)) || last || stop || (BestHere && schedule.Save != null))
                    hooks.Save?.Invoke(new SavePoint(epoch, EpochSize, EpochSize, ValHere));
                if (stop) return TrainOutcome.EarlyStopped;
            }
        }
        return TrainOutcome.Completed;
    }

    TrainOutcome Stop(TrainHooks hooks, int epoch, TrainSchedule schedule)
    {
        double ppl = ReadEpochPerplexity(epoch);
        hooks.Report?.Invoke(new EpochReport(epoch, ppl, 0, PredictAll(), ValHere) { Minibatch = _minibatch, EpochSize = EpochSize });
        if (schedule.Save != null) hooks.Save?.Invoke(new SavePoint(epoch, _minibatch, EpochSize, ValHere));
        return TrainOutcome.EarlyStopped;
    }

    int Tb => _localBatch * _o.Steps;

    /// <summary>Ctrl+C or SIGTERM reaches ranks at different moments: they agree at each epoch boundary to stop together.</summary>
    void StopIfAsked(CancellationToken cancel)
    {
        if (_ranks.Size == 1) { cancel.ThrowIfCancellationRequested(); return; }
        var stop = new[] { cancel.IsCancellationRequested ? 1.0 : 0.0 };
        _ranks.Sum(stop);
        if (stop[0] > 0) throw new OperationCanceledException();
    }

    /// <summary>An epoch-counted interval at the end of epoch <paramref name="epoch"/>, or a minibatch-counted one
    /// that falls on the epoch's last minibatch.</summary>
    bool Due(Interval interval, int epoch, int epochSize) =>
        interval.Due(epoch, (long)(epoch - 1) * epochSize + epochSize, epochEnd: true);

    /// <summary>The perplexity of the current epoch so far: the backend's accumulator (then cleared) plus what earlier
    /// reads (and a resumed checkpoint) took from it.</summary>
    double ReadEpochPerplexity(int epoch)
    {
        TakeLoss();
        return Healthy(epoch, Math.Exp(_lossSum / _lossRows), "training");
    }

    /// <summary>Moves what the backend's loss accumulator holds (every rank's) into this epoch's running sums and clears
    /// it: the one place the training loss is read, before a perplexity, a checkpoint or a validation pass.</summary>
    void TakeLoss()
    {
        var (sum, rows) = ReadLoss();
        _lossSum += sum;
        _lossRows += rows;
        _be.ResetLoss();
    }

    /// <summary>A perplexity, or <see cref="DivergedException"/> when it is NaN or infinite (a loss sum that stays
    /// finite can still overflow exp: a mean loss above ~709 nats, where ln V is under 8, is divergence too).</summary>
    static double Healthy(int epoch, double perplexity, string which) => double.IsFinite(perplexity) ? perplexity
        : throw new DivergedException(epoch,
            $"Training diverged in epoch {epoch}: the {which} loss became {(double.IsNaN(perplexity) ? "NaN" : "too large to exponentiate (perplexity ∞)")}. " +
            "Use a smaller learning rate (--lr) or turn on gradient clipping (--clip 0.01).");

    /// <summary>Predictions for every prefix (rank 0's job: the others print nothing): greedy, as the book prints them,
    /// or sampled at <see cref="TrainOptions.PredTemperature"/> from a generator seeded by the run's seed and the
    /// minibatch it stands at, so a report reads the same on a rerun and on a resume, and training's own random
    /// streams are untouched.</summary>
    public IReadOnlyList<string> PredictAll()
    {
        if (_ranks.Rank != 0) return [];
        if (_o.PredTemperature > 0)
        {
            using var s = new TextSampler(Model);
            var rng = new Rng(_o.Seed ^ 0x5DEECE66DUL ^ ((ulong)TotalMinibatches * 0x9E3779B97F4A7C15UL));
            return _prefixes.Select(pre => _corpus.Vocab.Decode(s.Sample(pre, _o.PredLen, _o.PredTemperature, null, rng))).ToList();
        }
        using var p = new Predictor(Model);
        return _prefixes.Select(pre => _corpus.Vocab.Decode(p.Predict(pre, _o.PredLen))).ToList();
    }

    /// <summary>The run where it stands (what a checkpoint stores): at an epoch boundary, or inside an epoch.</summary>
    public TrainerState CaptureState()
    {
        if (_minibatch > 0) TakeLoss(); // the loss of this epoch so far must travel with the state
        var moments = Optimizer.SaveMoments(Model);
        return new TrainerState
        {
            Epoch = CompletedEpochs,
            Minibatch = _minibatch,
            LossSum = _minibatch > 0 ? _lossSum : 0,
            LossRows = _minibatch > 0 ? _lossRows : 0,
            DataRng = _epochRng,
            Parameters = Model.ToHost(),
            AdamSteps = moments?.Steps ?? 0,
            AdamM = moments?.First,
            AdamV = moments?.Second,
            H = Enumerable.Range(0, _o.Layers).Select(l => Gathered(Save(Driver.HT(l)))).ToArray(),
            C = Driver.CT(0) != null ? Enumerable.Range(0, _o.Layers).Select(l => Gathered(Save(Driver.CT(l)!.Value))).ToArray() : null,
            Ranks = _ranks.Size,
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
        foreach (var t in (_keepH ?? []).Concat(_keepC ?? [])) t.Dispose();
        Step.Dispose();
        Optimizer.Dispose();
        Driver.Dispose();
        Model.Dispose();
    }
}
