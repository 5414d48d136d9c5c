using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Generation;

/// <summary>
/// The book's <c>predict_rnn</c>: the state starts at zero, is warmed on the prefix, then each next character is the
/// argmax of the output. Runs on the model's backend; the argmax feeds the next step on the device, and the tokens are
/// read back once at the end.
/// </summary>
public sealed class Predictor : IDisposable
{
    readonly RnnModel _m;
    readonly IBackend _be;
    readonly Tensor _pre, _h0, _h1, _logits;

    public Predictor(RnnModel model)
    {
        _m = model;
        _be = model.Backend;
        int h = model.Spec.Hidden;
        _pre = _be.Zeros(1, h);                     // (1 × H)
        _h0 = _be.Zeros(1, h);                      // (1 × H)
        _h1 = _be.Zeros(1, h);                      // (1 × H)
        _logits = _be.Zeros(1, model.Spec.Vocab);   // (1 × V)
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
        _be.Zero(_h0.All);
        Tensor h = _h0, hNext = _h1;
        for (int t = 0; t < total - 1; t++)
        {
            _be.GatherRows(tokens.Range(t, 1), _m.Wxh, _pre.All);
            _be.Gemm(false, false, 1f, h.All, _m.Whh.All, 1f, _pre.All);
            _be.BiasActivationForward(_m.Spec.Activation, _pre.All, _m.Bh, _m.Bh2, hNext.All);
            (h, hNext) = (hNext, h);
            if (t >= prefix.Count - 1)
            {
                _be.Gemm(false, false, 1f, h.All, _m.Whq.All, 0f, _logits.All);
                _be.ArgmaxRows(_logits.All, _m.Bq, tokens.Range(t + 1, 1));
            }
        }
        return _be.ToArray(tokens);
    }

    public void Dispose()
    {
        _pre.Dispose(); _h0.Dispose(); _h1.Dispose(); _logits.Dispose();
    }
}
