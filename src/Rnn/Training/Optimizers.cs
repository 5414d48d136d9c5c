using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Training;

public enum OptimizerKind { Sgd, Adam }

/// <summary>Applies one update to every parameter, scaled by the clip scale in <c>clip</c>[0] (see <see cref="IBackend.ComputeClipScale"/>).</summary>
public interface IOptimizer : IDisposable
{
    /// <summary>The learning rate of the next steps (a schedule may change it between epochs).</summary>
    float LearningRate { get; set; }

    void Step(RnnModel model, Tensor clip);
}

/// <summary>The book's <c>sgd(params, lr, 1)</c>: p −= lr·g.</summary>
public sealed class Sgd(float lr) : IOptimizer
{
    public float LearningRate { get; set; } = lr;

    public void Step(RnnModel model, Tensor clip)
    {
        for (int i = 0; i < model.Params.Length; i++) model.Backend.SgdUpdate(model.Params[i], model.Grads[i], LearningRate, clip);
    }

    public void Dispose() { }
}

/// <summary>torch.optim.Adam with its defaults (betas 0.9/0.999, eps 1e-8, no weight decay, no amsgrad).</summary>
public sealed class Adam : IOptimizer
{
    readonly float _beta1, _beta2, _eps;
    Tensor[]? _m, _v;

    public Adam(float lr, float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f)
    {
        (LearningRate, _beta1, _beta2, _eps) = (lr, beta1, beta2, eps);
    }

    public float LearningRate { get; set; }

    /// <summary>Steps taken so far (PyTorch's per-parameter <c>step</c>, the same for all here).</summary>
    public int StepCount { get; private set; }

    public Tensor[]? FirstMoments => _m;
    public Tensor[]? SecondMoments => _v;

    /// <summary>
    /// PyTorch's bias corrections for step t, in float32, computed here once per step for every parameter and backend:
    /// step size lr / (1 − β1^t) and √(1 − β2^t).
    /// </summary>
    public (float StepSize, float Bc2Sqrt) BiasCorrections(int step) =>
        (LearningRate / (1f - MathF.Pow(_beta1, step)), MathF.Sqrt(1f - MathF.Pow(_beta2, step)));

    public void Step(RnnModel model, Tensor clip)
    {
        var be = model.Backend;
        _m ??= model.Params.Select(p => be.Zeros(p.Rows, p.Cols)).ToArray();
        _v ??= model.Params.Select(p => be.Zeros(p.Rows, p.Cols)).ToArray();
        StepCount++;
        var (stepSize, bc2Sqrt) = BiasCorrections(StepCount);
        for (int i = 0; i < model.Params.Length; i++)
            be.AdamUpdate(model.Params[i], model.Grads[i], _m[i], _v[i], clip, _beta1, _beta2, _eps, stepSize, bc2Sqrt);
    }

    /// <summary>Restores moments and step count saved from an earlier run (checkpoint resume).</summary>
    public void Restore(RnnModel model, float[][] m, float[][] v, int steps)
    {
        var be = model.Backend;
        Dispose();
        _m = model.Params.Select((p, i) => be.FromArray(p.Rows, p.Cols, m[i])).ToArray();
        _v = model.Params.Select((p, i) => be.FromArray(p.Rows, p.Cols, v[i])).ToArray();
        StepCount = steps;
    }

    public void Dispose()
    {
        foreach (var t in _m ?? []) t.Dispose();
        foreach (var t in _v ?? []) t.Dispose();
    }
}
