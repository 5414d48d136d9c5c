namespace CharRnn.Rnn.Reference;

/// <summary>
/// The readable double-precision reference for one char-RNN minibatch, written straight from the book's equations
/// with plain loops and no cleverness. The tests hold it against PyTorch's float64 values (golden files) and hold
/// every backend against it. Layouts: W_xh (V×H), W_hh (H×H), b (H), W_hq (H×V), b_q (V); row-major arrays.
/// </summary>
public static class ReferenceRnn
{
    public sealed class Parameters
    {
        public required double[] Wxh, Whh, Bh, Whq, Bq;
        public double[]? Bh2;      // nn.RNN's second bias (concise); null for the scratch model
        public required int V, H;
        public bool Relu;

        public IEnumerable<double[]> All()
        {
            yield return Wxh; yield return Whh; yield return Bh;
            if (Bh2 != null) yield return Bh2;
            yield return Whq; yield return Bq;
        }

        public Parameters Clone() => new()
        {
            Wxh = (double[])Wxh.Clone(), Whh = (double[])Whh.Clone(), Bh = (double[])Bh.Clone(),
            Bh2 = (double[]?)Bh2?.Clone(), Whq = (double[])Whq.Clone(), Bq = (double[])Bq.Clone(), V = V, H = H, Relu = Relu,
        };
    }

    public sealed class ForwardResult
    {
        public required double[][] Hidden;   // T arrays of (B×H): H_1 .. H_T
        public required double[] Logits;     // (T·B × V) time-major, with b_q
        public required double Loss;         // mean cross-entropy
    }

    public sealed class Gradients
    {
        public required double[] Wxh, Whh, Bh, Whq, Bq, H0;
        public double[]? Bh2;

        public IEnumerable<double[]> Params()
        {
            yield return Wxh; yield return Whh; yield return Bh;
            if (Bh2 != null) yield return Bh2;
            yield return Whq; yield return Bq;
        }
    }

    /// <summary>X, Y are (B×T) batch-major as the book's iterators yield them; H0 is (B×H).</summary>
    public static ForwardResult Forward(Parameters p, int[] x, int[] y, double[] h0, int batch, int steps)
    {
        int V = p.V, H = p.H;
        var hidden = new double[steps][];
        var logits = new double[steps * batch * V];
        var hPrev = h0;
        double lossSum = 0;
        for (int t = 0; t < steps; t++)
        {
            var h = new double[batch * H];
            for (int b = 0; b < batch; b++)
            {
                int xt = x[b * steps + t];
                for (int j = 0; j < H; j++)
                {
                    double s = p.Wxh[xt * H + j] + p.Bh[j] + (p.Bh2?[j] ?? 0.0); // one-hot row times W_xh
                    for (int i = 0; i < H; i++) s += hPrev[b * H + i] * p.Whh[i * H + j];
                    h[b * H + j] = p.Relu ? Math.Max(0, s) : Math.Tanh(s);
                }
                int row = t * batch + b;
                for (int k = 0; k < V; k++)
                {
                    double o = p.Bq[k];
                    for (int j = 0; j < H; j++) o += h[b * H + j] * p.Whq[j * V + k];
                    logits[row * V + k] = o;
                }
                lossSum += CrossEntropy(logits.AsSpan(row * V, V), y[b * steps + t]);
            }
            hidden[t] = h;
            hPrev = h;
        }
        return new ForwardResult { Hidden = hidden, Logits = logits, Loss = lossSum / (steps * batch) };
    }

    static double CrossEntropy(ReadOnlySpan<double> z, int label)
    {
        double max = double.NegativeInfinity;
        foreach (var v in z) max = Math.Max(max, v);
        double sum = 0;
        foreach (var v in z) sum += Math.Exp(v - max);
        return Math.Log(sum) + max - z[label];
    }

    /// <summary>Gradients of the mean loss by backpropagation through time.</summary>
    public static Gradients Backward(Parameters p, int[] x, int[] y, double[] h0, int batch, int steps, ForwardResult f)
    {
        int V = p.V, H = p.H, n = steps * batch;
        var g = new Gradients
        {
            Wxh = new double[V * H], Whh = new double[H * H], Bh = new double[H], Whq = new double[H * V],
            Bq = new double[V], H0 = new double[batch * H], Bh2 = p.Bh2 == null ? null : new double[H],
        };
        var dNext = new double[batch * H]; // d loss / d H_t arriving from step t+1
        for (int t = steps - 1; t >= 0; t--)
        {
            var h = f.Hidden[t];
            var hPrev = t == 0 ? h0 : f.Hidden[t - 1];
            var dh = (double[])dNext.Clone();
            for (int b = 0; b < batch; b++)
            {
                int row = t * batch + b;
                // d loss / d logits = (softmax - onehot) / n
                var z = f.Logits.AsSpan(row * V, V);
                double max = double.NegativeInfinity;
                foreach (var v in z) max = Math.Max(max, v);
                double sum = 0;
                foreach (var v in z) sum += Math.Exp(v - max);
                for (int k = 0; k < V; k++)
                {
                    double d = (Math.Exp(z[k] - max) / sum - (k == y[b * steps + t] ? 1 : 0)) / n;
                    g.Bq[k] += d;
                    for (int j = 0; j < H; j++)
                    {
                        g.Whq[j * V + k] += h[b * H + j] * d;
                        dh[b * H + j] += p.Whq[j * V + k] * d;
                    }
                }
            }
            Array.Clear(dNext);
            for (int b = 0; b < batch; b++)
            {
                int xt = x[b * steps + t];
                for (int j = 0; j < H; j++)
                {
                    double hv = h[b * H + j];
                    double dpre = dh[b * H + j] * (p.Relu ? (hv > 0 ? 1 : 0) : 1 - hv * hv);
                    g.Bh[j] += dpre;
                    if (g.Bh2 != null) g.Bh2[j] += dpre;
                    g.Wxh[xt * H + j] += dpre;
                    for (int i = 0; i < H; i++)
                    {
                        g.Whh[i * H + j] += hPrev[b * H + i] * dpre;
                        dNext[b * H + i] += p.Whh[i * H + j] * dpre;
                    }
                }
            }
        }
        Array.Copy(dNext, g.H0, dNext.Length);
        return g;
    }

    /// <summary>The book's <c>grad_clipping</c>: scale all gradients by θ/norm when norm &gt; θ. Returns the norm.</summary>
    public static double Clip(IEnumerable<double[]> grads, double theta)
    {
        var list = grads.ToList();
        double ss = 0;
        foreach (var a in list) foreach (var v in a) ss += v * v;
        double norm = Math.Sqrt(ss);
        if (norm > theta)
            foreach (var a in list)
                for (int i = 0; i < a.Length; i++) a[i] *= theta / norm;
        return norm;
    }

    /// <summary>The book's <c>sgd(params, lr, 1)</c>.</summary>
    public static void Sgd(double[] p, double[] g, double lr)
    {
        for (int i = 0; i < p.Length; i++) p[i] -= lr * g[i];
    }

    /// <summary>torch.optim.Adam (1.13) for one tensor, step k ≥ 1.</summary>
    public static void Adam(double[] p, double[] g, double[] m, double[] v, double lr, int k,
        double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8)
    {
        double bc1 = 1 - Math.Pow(beta1, k), bc2 = 1 - Math.Pow(beta2, k);
        for (int i = 0; i < p.Length; i++)
        {
            m[i] = beta1 * m[i] + (1 - beta1) * g[i];
            v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
            p[i] -= lr / bc1 * m[i] / (Math.Sqrt(v[i]) / Math.Sqrt(bc2) + eps);
        }
    }
}
