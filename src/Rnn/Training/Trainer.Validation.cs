using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Data;

namespace CharRnn.Rnn.Training;

/// <summary>
/// The trainer's evaluation on the held-out tail: its minibatches on the backend, the perplexity of the weights as they
/// are (measured without disturbing training: the carried state is kept aside and restored, the training loss read
/// first), and what the loop and its saves need to know of it — the value measured here, whether it is the best.
/// </summary>
public sealed partial class Trainer
{
    readonly int[]? _val;
    IndexBuffer? _valX, _valY;
    Tensor[]? _keepH, _keepC;  // the carried training state, kept across a validation inside an epoch

    double? _lastVal;
    long _valAt = -1;   // the run minibatch _lastVal was measured at
    bool _newBest;      // the last evaluation was the lowest so far: a checkpoint folder saves it (Keras' save_best_only)

    /// <summary>The validation perplexity of the weights as they are now, or null: never a value measured on other
    /// weights (a report, a metric or a checkpoint name between evaluations carried the previous one).</summary>
    double? ValHere => _valAt == TotalMinibatches ? _lastVal : null;

    /// <summary>The weights as they are now were just evaluated as the best so far.</summary>
    bool BestHere => _newBest && _valAt == TotalMinibatches;

    /// <summary>Validation perplexity into <see cref="_lastVal"/>; true when patience has run out.</summary>
    bool Evaluate(int epoch, ref double best, ref int sinceBest, int? patience)
    {
        _lastVal = Healthy(epoch, ValidationPerplexity(), "validation");
        _valAt = TotalMinibatches;
        _newBest = _lastVal < best;
        if (_newBest) (best, sinceBest) = (_lastVal!.Value, 0);
        else sinceBest++;
        return patience is int p && sinceBest >= p;
    }

    /// <summary>
    /// Perplexity on the held-out tail: consecutive minibatches, state carried as in training, forward only, no
    /// dropout. The training's carried state and loss are kept aside and put back, so an evaluation inside an epoch
    /// changes nothing that training depends on.
    /// </summary>
    public double ValidationPerplexity()
    {
        if (_val == null) throw new InvalidOperationException("no validation split");
        int count = Samplers.EpochSize(SamplingKind.Consecutive, _val.Length, _o.Batch, _o.Steps);
        if (_valX == null)
        {
            var (xs, ys, _) = Flatten(Samplers.Consecutive(_val, _o.Batch, _o.Steps), count, _o.Batch * _o.Steps);
            _valX = _be.FromArray(MyShare(xs));
            _valY = _be.FromArray(MyShare(ys));
        }
        TakeLoss(); // the training loss not yet read (nothing at an epoch's end), before validation's own
        KeepCarriedState(true);
        Driver.ResetState();
        for (int i = 0; i < count; i++)
        {
            if (i > 0) Driver.CarryState();
            Driver.Forward(_valX.Range(i * Tb, Tb), _valY!.Range(i * Tb, Tb), training: false);
        }
        var (sum, rows) = ReadLoss();
        _be.ResetLoss();
        KeepCarriedState(false);
        return Math.Exp(sum / rows);
    }

    void KeepCarriedState(bool keep)
    {
        _keepH ??= Enumerable.Range(0, _o.Layers).Select(_ => _be.Zeros(_localBatch, _o.Hidden)).ToArray();
        if (Driver.CT(0) != null) _keepC ??= Enumerable.Range(0, _o.Layers).Select(_ => _be.Zeros(_localBatch, _o.Hidden)).ToArray();
        for (int l = 0; l < _o.Layers; l++)
        {
            if (keep) _be.Copy(Driver.HT(l), _keepH[l].All); else _be.Copy(_keepH[l].All, Driver.HT(l));
            if (_keepC != null)
            {
                if (keep) _be.Copy(Driver.CT(l)!.Value, _keepC[l].All); else _be.Copy(_keepC[l].All, Driver.CT(l)!.Value);
            }
        }
    }
}
