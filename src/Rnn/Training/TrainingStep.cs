using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Distributed;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Training;

/// <summary>How a step starts from the state the last one left (the book's two sampling rules).</summary>
public enum StateRule
{
    /// <summary>H_0 = 0 (random sampling: every minibatch; consecutive: an epoch's first).</summary>
    Reset,
    /// <summary>H_0 = the previous minibatch's H_T, detached (consecutive sampling).</summary>
    Carry,
}

/// <summary>
/// One training step on a driver — forward, backward, global-norm clipping (θ ≤ 0: none), the optimizer's update —
/// with the [scale, norm] pair that clipping hands to the update on the backend.
/// <para>
/// Where the backend can record ops (a CUDA graph), the step is issued eagerly once, then recorded and replayed for
/// every later minibatch: one launch per minibatch instead of one per op. Everything that changes from one
/// minibatch to the next lives on the backend, so the recording never goes stale: the minibatch is selected there
/// from the epoch's uploaded tokens (<see cref="IBackend.SelectMinibatch"/>), and the step counters (minibatch in the
/// epoch, run minibatch for the dropout masks, optimizer steps for Adam) advance there (<see cref="IBackend.AdvanceStep"/>).
/// The host keeps a mirror of the counters and uploads them only when they differ from what it expects (an epoch's
/// start, a resume). Replaying issues exactly the ops an eager step issues, so both give the same bits.
/// </para>
/// </summary>
public sealed class TrainingStep : IDisposable
{
    readonly BpttDriver driver;
    readonly IOptimizer optimizer;
    readonly float clipTheta;
    readonly ICollective _ranks;
    readonly IBackend _be;
    readonly Tensor _clip;
    readonly Tensor[] _outputGrads, _otherGrads;
    readonly IndexBuffer _counters;       // the StepCounters on the backend
    readonly int[] _mirror = new int[StepCounters.Length]; // what the backend holds once the queued work has run
    readonly IndexBuffer _x, _y;          // the selected minibatch: the fixed addresses a recording reads
    readonly Dictionary<(StateRule, IndexBuffer, IndexBuffer), IRecording> _recordings = new();
    readonly HashSet<(StateRule, IndexBuffer, IndexBuffer)> _issued = new(); // step kinds issued eagerly once already
    IPendingReduction? _outputReduction;
    bool _recordingFailed;

    /// <param name="ranks">Data-parallel ranks: the gradients are averaged across them before clipping — the output
    /// layer's as soon as they are ready (while the backward recurrence still runs, as DDP's buckets do), the rest after.</param>
    public TrainingStep(BpttDriver driver, IOptimizer optimizer, float clipTheta, ICollective? ranks = null)
    {
        (this.driver, this.optimizer, this.clipTheta) = (driver, optimizer, clipTheta);
        _ranks = ranks ?? SingleRank.Instance;
        _be = driver.Model.Backend;
        _clip = _be.Zeros(1, 2);
        _counters = _be.Indices(StepCounters.Length);
        int tb = driver.Steps * driver.Batch;
        _x = _be.Indices(tb);
        _y = _be.Indices(tb);
        driver.DropoutCount = _counters.Range(StepCounters.RunLow, 2);
        var m = driver.Model;
        _outputGrads = [m.DWhq, m.DBq];
        _otherGrads = m.Grads.Except(_outputGrads).ToArray();
        if (_ranks.Averages)
        {
            driver.OutputGradientsReady = be => _outputReduction = _ranks.StartAverage(be, _outputGrads); // on the stream that computed them
            driver.BackwardStepDone = () => _outputReduction?.Progress();
        }
    }

    public BpttDriver Driver => driver;
    public IOptimizer Optimizer => optimizer;

    /// <summary>Time the steps spent after the backward pass finishing the gradient average (what overlap did not hide), and how many.</summary>
    public double ReductionSeconds { get; private set; }
    public long Reductions { get; private set; }

    /// <summary>Steps run by replaying a recording (a test proves a replay happened where it claims replay = eager).</summary>
    public long Replays { get; private set; }

    /// <summary>Told once when recording a step failed and steps run op by op from then on (the reason).</summary>
    public Action<string>? Notice { get; set; }

    /// <summary>Whether steps are recorded and replayed, or why not (for the run's header line).</summary>
    public string GraphStatus
    {
        get
        {
            if (_recordingFailed) return "off (recording failed)";
            if (WhyNotRecorded() is string why) return $"off ({why})";
            return "on";
        }
    }

    string? WhyNotRecorded()
    {
        if (_ranks.Averages) return "the step averages gradients across ranks (they wait for each other inside it)";
        if (_be.Profiler != null) return "profiling times each op";
        return _be.RecordingUnavailable;
    }

    /// <summary>
    /// One step on minibatch <paramref name="index"/> of the epoch held in <paramref name="epochX"/>/<paramref name="epochY"/>
    /// (T·B tokens per minibatch, laid end to end), <paramref name="runMinibatch"/> being its number in the whole run
    /// (it seeds the dropout masks), from the state <paramref name="state"/> says.
    /// </summary>
    public void Run(StateRule state, int index, long runMinibatch, IndexBuffer epochX, IndexBuffer epochY)
    {
        SyncCounters(index, runMinibatch);
        optimizer.Prepare(driver.Model);
        var kind = (state, epochX, epochY);
        void Ops()
        {
            if (state == StateRule.Reset) driver.ResetState();
            else driver.CarryState();
            _be.SelectMinibatch(_counters.All, epochX, epochY, _x, _y);
            StepOps(_x.All, _y.All);
        }
        if (_recordings.TryGetValue(kind, out var recording))
        {
            recording.Replay();
            Replays++;
        }
        else if (_issued.Contains(kind) && !_recordingFailed && WhyNotRecorded() == null && Record(Ops) is IRecording r)
        {
            _recordings[kind] = r;
            r.Replay();
            Replays++;
        }
        else
        {
            Ops(); // the first step of a kind runs eagerly: it allocates what the ops allocate lazily, outside any recording
            _issued.Add(kind);
        }
        Advanced();
    }

    /// <summary>One step on token views the caller prepared, op by op (the caller sets the state first).</summary>
    public void Run(IdxView x, IdxView y)
    {
        SyncCounters(_mirror[StepCounters.Minibatch], StepCounters.RunMinibatch(_mirror));
        optimizer.Prepare(driver.Model);
        StepOps(x, y);
        Advanced();
    }

    IRecording? Record(Action ops)
    {
        try
        {
            return _be.Record(ops);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _recordingFailed = true; // not again every minibatch
            Notice?.Invoke($"recording the training step as a CUDA graph failed ({e.Message.TrimEnd('.')}); steps run op by op from here");
            return null;
        }
    }

    void SyncCounters(int index, long runMinibatch)
    {
        int[] want = StepCounters.Of(index, runMinibatch, optimizer.StepCount);
        if (want.AsSpan().SequenceEqual(_mirror)) return;
        _be.Upload(_counters, want);
        want.CopyTo(_mirror, 0);
    }

    void Advanced()
    {
        StepCounters.Advance(_mirror);
        optimizer.Completed();
    }

    void StepOps(IdxView x, IdxView y)
    {
        var m = driver.Model;
        driver.Forward(x, y);
        driver.Backward(x);
        if (_ranks.Averages)
        {
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            var rest = _ranks.StartAverage(m.Backend, _otherGrads);
            _outputReduction!.Wait();
            rest.Wait();
            _outputReduction = null;
            ReductionSeconds += System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds;
            Reductions++;
        }
        _be.ComputeClipScale(m.Grads, clipTheta, _clip);
        optimizer.Enqueue(m, _clip, _counters.Range(StepCounters.OptimizerSteps, 1));
        _be.AdvanceStep(_counters.All);
    }

    /// <summary>The global gradient norm before clipping of the last step (waits for the backend).</summary>
    public double ReadGradNorm() => _be.ToArray(_clip)[1];

    public void Dispose()
    {
        foreach (var r in _recordings.Values) r.Dispose();
        _clip.Dispose();
        _counters.Dispose();
        _x.Dispose();
        _y.Dispose();
    }
}
