using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Generation;

/// <summary>
/// Generation with sampling: the state is warmed on the prefix as in <see cref="Predictor"/>, then each next character
/// is drawn from softmax(logits / temperature), optionally restricted to the top-k logits, with a seeded
/// <see cref="Rng"/> (reproducible). Temperature 0 is the book's greedy prediction. The recurrence runs on the model's
/// backend; each step's V logits are read back to draw from them.
/// </summary>
public sealed class TextSampler : IDisposable
{
    readonly RnnModel _m;
    readonly IBackend _be;
    readonly BpttDriver _step;
    readonly Tensor _logits;
    readonly float[] _bq;

    public TextSampler(RnnModel model)
    {
        _m = model;
        _be = model.Backend;
        _step = new BpttDriver(model, batch: 1, steps: 1, InputMode.Gather);
        _logits = _be.Zeros(1, model.OutputWidth);
        _bq = model.DropPads(_be.ToArray(model.Bq), 1); // b_q without the pads
    }

    /// <summary>Returns prefix + <paramref name="length"/> token ids; <paramref name="onToken"/> gets each generated
    /// one as it is drawn (a caller can stream the text).</summary>
    public int[] Sample(IReadOnlyList<int> prefix, int length, double temperature, int? topK, Rng rng, Action<int>? onToken = null)
    {
        var output = new List<int>(prefix);
        Stream(prefix, length, temperature, topK, rng, t => { output.Add(t); onToken?.Invoke(t); });
        return output.ToArray();
    }

    /// <summary>
    /// Draws <paramref name="length"/> tokens after <paramref name="prefix"/>, handing each to <paramref name="onToken"/>
    /// as it comes (which may throw to stop: a signal), keeping none: memory does not grow with the length. Temperature 0
    /// is greedy — the first maximum of the float logits + b_q, exactly what <see cref="Predictor"/> picks on the
    /// device — and streams as sampling does.
    /// </summary>
    public void Stream(IReadOnlyList<int> prefix, long length, double temperature, int? topK, Rng rng, Action<int> onToken)
    {
        if (temperature < 0 || double.IsNaN(temperature)) throw new CharRnnException($"--temperature must be 0 or more (got {temperature}).");
        if (topK is < 1) throw new CharRnnException($"--top-k must be at least 1 (got {topK}).");
        if (length < 0) throw new CharRnnException($"--length must be zero or more (got {length}).");
        if (prefix.Count == 0) throw new CharRnnException("The prefix is empty. Give at least one character with --prefix.");
        using var token = _be.Indices(1);
        int v = _m.Spec.Vocab;
        var stored = new float[_m.OutputWidth];
        var z = new float[v];
        var p = new double[v];
        _step.ResetState();
        int next = prefix[0];
        for (long t = 0; t < prefix.Count + length - 1; t++)
        {
            if (t > 0) _step.CarryState();
            _be.Upload(token, [next]);
            _step.Advance(token.All);
            if (t < prefix.Count - 1)
            {
                next = prefix[(int)t + 1];
                continue;
            }
            _be.Gemm(false, false, 1f, _step.StateT, _m.Whq.All, 0f, _logits.All);
            _be.Download(_logits, stored);
            stored.AsSpan(0, v).CopyTo(z); // the real columns
            next = temperature == 0 ? Argmax(z) : Draw(z, p, temperature, topK, rng);
            onToken(next);
        }
    }

    /// <summary>The greedy choice: the first maximum of z + b_q in float, as <c>argmax_rows</c> computes it.</summary>
    int Argmax(float[] z)
    {
        int best = 0;
        float max = z[0] + _bq[0];
        for (int i = 1; i < z.Length; i++)
        {
            float s = z[i] + _bq[i];
            if (s > max) (max, best) = (s, i);
        }
        return best;
    }

    int Draw(float[] z, double[] p, double temperature, int? topK, Rng rng)
    {
        int v = z.Length;
        // Logits as the greedy path sees them: float z + b_q (then widened), so top-1 picks exactly its argmax.
        var s = new double[v];
        for (int i = 0; i < v; i++) s[i] = z[i] + _bq[i];
        double cutoff = double.NegativeInfinity;
        // Stryker disable once Equality : at k = V the cut-off is the smallest logit, which keeps every token anyway
        if (topK is int k && k < v) cutoff = s.OrderByDescending(x => x).ElementAt(k - 1);
        double max = s.Max();
        double sum = 0;
        for (int i = 0; i < v; i++)
        {
            p[i] = s[i] >= cutoff ? Math.Exp((s[i] - max) / temperature) : 0;
            sum += p[i];
        }
        double u = rng.NextDouble() * sum;
        int last = 0;
        // Stryker disable once Equality : the draw returns inside the loop or after it, never at i = v
        for (int i = 0; i < v; i++)
        {
            // Stryker disable once all : a zero weight leaves u unchanged: it could only become `last`, returned when rounding
            // leaves u ≥ 0 after every weight — no test can make that happen
            if (p[i] <= 0) continue;
            last = i;
            u -= p[i];
            // Stryker disable once Equality : u = 0 exactly after a subtraction has probability ~2^-53; either token is then a valid draw
            if (u < 0) return i;
        }
        return last;
    }

    public void Dispose()
    {
        // Stryker disable once Statement : a no-op on the CPU backend; the device leak it would be is caught by GpuMemoryTests (emulator), outside the CPU filter
        _step.Dispose();
        // Stryker disable once Statement : as above
        _logits.Dispose();
    }
}
