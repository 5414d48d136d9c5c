using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Generation;

/// <summary>
/// The book's <c>predict_rnn</c>: the state starts at zero, is warmed on the prefix, then each next character is the
/// argmax of the output. Runs on the model's backend through a one-row, one-step <see cref="BpttDriver"/> (so every
/// cell and layer count works); the argmax feeds the next step on the device, and the tokens are read back once.
/// </summary>
public sealed class Predictor : IDisposable
{
    readonly RnnModel _m;
    readonly IBackend _be;
    readonly BpttDriver _step;
    readonly Tensor _logits;

    public Predictor(RnnModel model)
    {
        _m = model;
        _be = model.Backend;
        _step = new BpttDriver(model, batch: 1, steps: 1, InputMode.Gather);
        _logits = _be.Zeros(1, model.OutputWidth); // (1 × V'), V' = V padded (the pads' −∞ bias never wins)
    }

    /// <summary>Returns prefix + <paramref name="numChars"/> predicted token ids.</summary>
    public int[] Predict(IReadOnlyList<int> prefix, int numChars)
    {
        if (prefix.Count == 0) throw new CharRnnException("The prefix is empty. Give at least one character with --prefix.");
        int total = prefix.Count + numChars;
        using var tokens = _be.Indices(total);
        var init = new int[total];
        for (int i = 0; i < prefix.Count; i++) init[i] = prefix[i];
        _be.Upload(tokens, init);
        _step.ResetState();
        for (int t = 0; t < total - 1; t++)
        {
            if (t > 0) _step.CarryState();
            _step.Advance(tokens.Range(t, 1));
            if (t >= prefix.Count - 1)
            {
                _be.Gemm(false, false, 1f, _step.StateT, _m.Whq.All, 0f, _logits.All);
                _be.ArgmaxRows(_logits.All, _m.Bq, tokens.Range(t + 1, 1));
            }
        }
        return _be.ToArray(tokens);
    }

    public void Dispose()
    {
        _step.Dispose();
        _logits.Dispose();
    }
}
