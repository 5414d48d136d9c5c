using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Distributed;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Training;

/// <summary>
/// One training step on a driver — forward, backward, global-norm clipping (θ ≤ 0: none), the optimizer's update —
/// with the [scale, norm] pair that clipping hands to the update on the backend.
/// </summary>
public sealed class TrainingStep : IDisposable
{
    readonly BpttDriver driver;
    readonly IOptimizer optimizer;
    readonly float clipTheta;
    readonly ICollective _ranks;
    readonly Tensor _clip;
    readonly Tensor[] _outputGrads, _otherGrads;
    IPendingReduction? _outputReduction;

    /// <param name="ranks">Data-parallel ranks: the gradients are averaged across them before clipping — the output
    /// layer's as soon as they are ready (while the backward recurrence still runs, as DDP's buckets do), the rest after.</param>
    public TrainingStep(BpttDriver driver, IOptimizer optimizer, float clipTheta, ICollective? ranks = null)
    {
        (this.driver, this.optimizer, this.clipTheta) = (driver, optimizer, clipTheta);
        _ranks = ranks ?? SingleRank.Instance;
        _clip = driver.Model.Backend.Zeros(1, 2);
        var m = driver.Model;
        _outputGrads = [m.DWhq, m.DBq];
        _otherGrads = m.Grads.Except(_outputGrads).ToArray();
        if (_ranks.Size > 1)
            driver.OutputGradientsReady = () => _outputReduction = _ranks.StartAverage(m.Backend, _outputGrads);
    }

    public BpttDriver Driver => driver;

    /// <summary>Time the steps spent after the backward pass finishing the gradient average (what overlap did not hide), and how many.</summary>
    public double ReductionSeconds { get; private set; }
    public long Reductions { get; private set; }
    public IOptimizer Optimizer => optimizer;

    public void Run(IdxView x, IdxView y)
    {
        var m = driver.Model;
        driver.Forward(x, y);
        driver.Backward(x);
        if (_ranks.Size > 1)
        {
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            var rest = _ranks.StartAverage(m.Backend, _otherGrads);
            _outputReduction!.Wait();
            rest.Wait();
            _outputReduction = null;
            ReductionSeconds += System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds;
            Reductions++;
        }
        m.Backend.ComputeClipScale(m.Grads, clipTheta, _clip);
        optimizer.Step(m, _clip);
    }

    /// <summary>The global gradient norm before clipping of the last step (waits for the backend).</summary>
    public double ReadGradNorm() => driver.Model.Backend.ToArray(_clip)[1];

    public void Dispose() => _clip.Dispose();
}
