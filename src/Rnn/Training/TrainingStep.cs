using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Training;

/// <summary>
/// One training step on a driver — forward, backward, global-norm clipping (θ ≤ 0: none), the optimizer's update —
/// with the [scale, norm] pair that clipping hands to the update on the backend.
/// </summary>
public sealed class TrainingStep(BpttDriver driver, IOptimizer optimizer, float clipTheta) : IDisposable
{
    readonly Tensor _clip = driver.Model.Backend.Zeros(1, 2);

    public BpttDriver Driver => driver;
    public IOptimizer Optimizer => optimizer;

    public void Run(IdxView x, IdxView y)
    {
        var m = driver.Model;
        driver.Forward(x, y);
        driver.Backward(x);
        m.Backend.ComputeClipScale(m.Grads, clipTheta, _clip);
        optimizer.Step(m, _clip);
    }

    /// <summary>The global gradient norm before clipping of the last step (waits for the backend).</summary>
    public double ReadGradNorm() => driver.Model.Backend.ToArray(_clip)[1];

    public void Dispose() => _clip.Dispose();
}
