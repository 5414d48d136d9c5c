using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Backends.Ops;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Training;

public enum OptimizerKind { Sgd, Adam, RmsProp }

/// <summary>
/// Applies one update to every parameter, scaled by the clip scale in <c>clip</c>[0] (see <see cref="IBackend.ComputeClipScale"/>).
/// A step is split so that its backend ops can be recorded once and replayed (<see cref="IBackend.Record"/>):
/// <see cref="Prepare"/> (host work, never recorded), <see cref="Enqueue"/> (backend ops only), <see cref="Completed"/>.
/// </summary>
public interface IOptimizer : IDisposable
{
    /// <summary>The learning rate of the next steps (a schedule may change it between epochs).</summary>
    float LearningRate { get; set; }

    /// <summary>Steps taken so far (Adam's bias corrections count them; checkpoints keep the count).</summary>
    int StepCount { get; }

    /// <summary>Before a step: allocates the optimizer's state on first use and hands the learning rate to the backend
    /// when it changed (an upload: outside any recording).</summary>
    void Prepare(RnnModel model);

    /// <summary>The update's backend ops. <paramref name="stepsTaken"/>: one int on the backend holding
    /// <see cref="StepCount"/> as of this step (the step counters' last field), which a recorded step advances itself.</summary>
    void Enqueue(RnnModel model, Tensor clip, IdxView stepsTaken);

    /// <summary>After a step's ops were issued (or replayed): counts it.</summary>
    void Completed();

    /// <summary>The per-parameter state a checkpoint keeps (Adam's two moments, as logical host arrays), or null where
    /// there is none (SGD; Adam before its first step).</summary>
    OptimizerMoments? SaveMoments(RnnModel model);

    /// <summary>Restores what <see cref="SaveMoments"/> saved, with the step count (a resume).</summary>
    void RestoreMoments(RnnModel model, OptimizerMoments moments);
}

/// <summary>An optimizer's per-parameter state: first and second moments, one array per parameter, and the steps taken.</summary>
public sealed record OptimizerMoments(float[][] First, float[][] Second, int Steps);

/// <summary>What the optimizers share: the learning rate and the step count, and [lr, step size, √(1 − β2^t)] on the backend.</summary>
public abstract class OptimizerBase(float lr) : IOptimizer
{
    Tensor? _scalars;
    float _uploaded = float.NaN;

    public float LearningRate { get; set; } = lr;
    public int StepCount { get; protected set; }

    /// <summary>1 × 3 on the backend: [learning rate, Adam's step size, Adam's √(1 − β2^t)].</summary>
    protected Tensor Scalars => _scalars ?? throw new InvalidOperationException("Prepare the optimizer before its first step.");

    public virtual void Prepare(RnnModel model)
    {
        _scalars ??= model.Backend.Zeros(1, 3);
        // Stryker disable once Statement : re-uploading an unchanged rate writes the same value (the other two slots are
        // recomputed by AdamCorrections before each use)
        if (_uploaded.Equals(LearningRate)) return;
        model.Backend.Upload(_scalars, [LearningRate, 0f, 0f]);
        _uploaded = LearningRate;
    }

    public abstract void Enqueue(RnnModel model, Tensor clip, IdxView stepsTaken);

    public void Completed() => StepCount++;

    public virtual OptimizerMoments? SaveMoments(RnnModel model) => null;

    public virtual void RestoreMoments(RnnModel model, OptimizerMoments moments) =>
        throw new CharRnnException("This optimizer keeps no per-parameter state, but the checkpoint holds some; resume with the optimizer that wrote it.");

    public virtual void Dispose() => _scalars?.Dispose();
}

/// <summary>The book's <c>sgd(params, lr, 1)</c>: p −= lr·g.</summary>
public sealed class Sgd(float lr) : OptimizerBase(lr)
{
    public override void Enqueue(RnnModel model, Tensor clip, IdxView stepsTaken) =>
        model.Backend.SgdUpdate(model.Params, model.Grads, Scalars, clip);
}

/// <summary>torch.optim.Adam with its defaults (betas 0.9/0.999, eps 1e-8, no weight decay, no amsgrad).</summary>
public class Adam : OptimizerBase
{
    readonly float _beta1, _beta2, _eps;
    Tensor[]? _m, _v;

    public Adam(float lr, float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f) : base(lr)
    {
        (_beta1, _beta2, _eps) = (beta1, beta2, eps);
    }

    // Stryker disable once Logical : _m and _v are set and cleared together
    public override OptimizerMoments? SaveMoments(RnnModel model) => _m == null || _v == null ? null : new(
        _m.Select((t, i) => model.ToLogical(i, model.Backend.ToArray(t))).ToArray(),
        _v.Select((t, i) => model.ToLogical(i, model.Backend.ToArray(t))).ToArray(),
        StepCount);

    public override void RestoreMoments(RnnModel model, OptimizerMoments saved) => Restore(model, saved.First, saved.Second, saved.Steps);

    public override void Prepare(RnnModel model)
    {
        base.Prepare(model);
        var be = model.Backend;
        _m ??= model.Params.Select(p => be.Zeros(p.Rows, p.Cols)).ToArray();
        _v ??= model.Params.Select(p => be.Zeros(p.Rows, p.Cols)).ToArray();
    }

    /// <summary>PyTorch's bias corrections (step size lr / (1 − β1^t), √(1 − β2^t)) on the backend, from its step count,
    /// then the update of every parameter.</summary>
    public override void Enqueue(RnnModel model, Tensor clip, IdxView stepsTaken)
    {
        var be = model.Backend;
        var (c1, c2) = CorrectionBetas;
        be.AdamCorrections(stepsTaken, c1, c2, Scalars);
        be.AdamUpdate(model.Params, model.Grads, _m!, _v!, _beta1, _beta2, _eps, Scalars, clip);
    }

    /// <summary>The betas of the bias corrections (Adam's own; RMSprop has none: zeros make both factors 1).</summary>
    protected virtual (float Beta1, float Beta2) CorrectionBetas => (_beta1, _beta2);

    /// <summary>Restores moments and step count saved from an earlier run (checkpoint resume).</summary>
    public void Restore(RnnModel model, float[][] m, float[][] v, int steps)
    {
        var be = model.Backend;
        // Stryker disable once Statement : a no-op on the CPU backend; the device leak it would be is caught by GpuMemoryTests (emulator), outside the CPU filter
        DisposeMoments();
        _m = model.Params.Select((p, i) => be.FromArray(p.Rows, p.Cols, model.ToStored(i, m[i]))).ToArray();
        _v = model.Params.Select((p, i) => be.FromArray(p.Rows, p.Cols, model.ToStored(i, v[i]))).ToArray();
        StepCount = steps;
    }

    void DisposeMoments()
    {
        // Stryker disable once all : a no-op on the CPU backend; the device leak it would be is caught by GpuMemoryTests (emulator), outside the CPU filter
        foreach (var t in _m ?? []) t.Dispose();
        // Stryker disable once all : as above
        foreach (var t in _v ?? []) t.Dispose();
        (_m, _v) = (null, null);
    }

    public override void Dispose()
    {
        // Stryker disable once Statement : a no-op on the CPU backend; the device leak it would be is caught by GpuMemoryTests (emulator), outside the CPU filter
        DisposeMoments();
        // Stryker disable once Statement : as above
        base.Dispose();
    }
}

/// <summary>
/// char-rnn's optimizer (optim.rmsprop: decay 0.95, epsilon 1e-8), which is torch.optim.RMSprop(alpha=0.95, eps=1e-8):
/// v = α·v + (1 − α)·g², p −= lr·g / (√v + ε). It is Adam's update with β1 = 0 (m is the gradient itself), β2 = α and no
/// bias corrections (their betas 0 make both factors exactly 1), so it runs on Adam's ops on every backend and keeps
/// Adam's moments in checkpoints (the first moment is the last clipped gradient; a resume stays bit-exact).
/// </summary>
public sealed class RmsProp(float lr, float alpha = 0.95f, float eps = 1e-8f) : Adam(lr, 0f, alpha, eps)
{
    protected override (float Beta1, float Beta2) CorrectionBetas => (0f, 0f);
}
