using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Reference;

/// <summary>
/// The readable double-precision reference for one minibatch of a (stacked) RNN/GRU/LSTM char model, written straight
/// from the equations with plain loops. The tests hold it against PyTorch's float64 values (golden files) and finite
/// differences, and hold every backend against it. Layouts as <see cref="ModelSpec.Parameters"/>: input-major weights
/// with gate blocks side by side (GRU r, z, n; LSTM i, f, g, o); row-major arrays; X, Y batch-major (B×T).
/// <code>
///   RNN : h' = tanh(x Wx + bx + h Wh + bh)                      (relu instead of tanh if asked)
///   GRU : r = σ(x Wr + bxr + h Ur + bhr), z = σ(x Wz + bxz + h Uz + bhz),
///         n = tanh(x Wn + bxn + r ⊙ (h Un + bhn)),  h' = (1 − z) ⊙ n + z ⊙ h          (PyTorch's nn.GRU)
///         the book's scratch GRU (6.7): n = tanh(x Wn + bn + (r ⊙ h) Un)           (ResetBeforeMatmul)
///   LSTM: i, f, o = σ(x W· + bx· + h U· + bh·), g = tanh(…),  c' = f ⊙ c + i ⊙ g,  h' = o ⊙ tanh(c')
/// </code>
/// (bh is absent — zero — for the scratch models, which have one bias per gate.)
/// </summary>
public static partial class ReferenceRnn
{
    public sealed class Layer
    {
        public required double[] Wx, Wh, Bx;
        public double[]? Bh;
        public required int In;
    }

    public sealed class Parameters
    {
        public required List<Layer> Layers;
        public required double[] Whq, Bq;
        public required int V, H;
        public CellKind Cell = CellKind.Rnn;
        public bool Relu;
        /// <summary>GRU only: the book's scratch cell, whose candidate multiplies (r ⊙ h) by U_n.</summary>
        public bool ResetBeforeMatmul;

        public int Gates => Cell switch { CellKind.Gru => 3, CellKind.Lstm => 4, _ => 1 };

        /// <summary>All parameter arrays in <see cref="ModelSpec.Parameters"/> order.</summary>
        public IEnumerable<double[]> All()
        {
            foreach (var l in Layers)
            {
                yield return l.Wx; yield return l.Wh; yield return l.Bx;
                if (l.Bh != null) yield return l.Bh;
            }
            yield return Whq; yield return Bq;
        }
    }

    public sealed class ForwardResult
    {
        public required double[][][] H;      // [layer][t] (B×H): H_1 … H_T
        public required double[][][]? C;     // [layer][t] (B×H), LSTM only
        public required double[][][] Gates;  // [layer][t] (B×G·H) activated gates (RNN: h itself)
        public required double[][][] HProj;  // [layer][t] (B×G·H) h_{t-1}·Wh (no bias)
        public required double[] Logits;     // (T·B × V) time-major, with b_q
        public required double Loss;         // mean cross-entropy
        public double[][] Hidden => H[^1];   // top layer
    }

    public sealed class Gradients
    {
        public required List<double[]> Params;  // in ModelSpec.Parameters order
        public required double[][] H0;          // [layer] (B×H)
        public double[][]? C0;                  // [layer] (B×H), LSTM only
    }

    static double Sig(double x) => 1 / (1 + Math.Exp(-x));

    /// <summary>x_t per layer: one-hot tokens for layer 0 (as a row index), the layer below's H_t above.</summary>
    public static ForwardResult Forward(Parameters p, int[] x, int[] y, double[][] h0, double[][]? c0, int batch, int steps)
    {
        int V = p.V, H = p.H, G = p.Gates, L = p.Layers.Count;
        var hs = new double[L][][];
        var cs = p.Cell == CellKind.Lstm ? new double[L][][] : null;
        var gates = new double[L][][];
        var hproj = new double[L][][];
        for (int l = 0; l < L; l++)
        {
            var ly = p.Layers[l];
            hs[l] = new double[steps][];
            gates[l] = new double[steps][];
            hproj[l] = new double[steps][];
            if (cs != null) cs[l] = new double[steps][];
            var hPrev = h0[l];
            var cPrev = c0?[l];
            for (int t = 0; t < steps; t++)
            {
                var h = new double[batch * H];
                var c = new double[batch * H];
                var gt = new double[batch * G * H];
                var hp = new double[batch * G * H];
                for (int b = 0; b < batch; b++)
                {
                    // a = x·Wx + bx (input part) and u = h·Wh (hidden part) for every gate column.
                    var a = new double[G * H];
                    var u = new double[G * H];
                    for (int k = 0; k < G * H; k++)
                    {
                        double s = ly.Bx[k];
                        if (l == 0) s += ly.Wx[x[b * steps + t] * G * H + k];
                        else for (int i = 0; i < H; i++) s += hs[l - 1][t][b * H + i] * ly.Wx[i * G * H + k];
                        a[k] = s;
                        double v = 0;
                        for (int i = 0; i < H; i++) v += hPrev[b * H + i] * ly.Wh[i * G * H + k];
                        u[k] = v;
                        hp[b * G * H + k] = v;
                    }
                    double Bh(int k) => ly.Bh?[k] ?? 0.0;
                    if (p.Cell == CellKind.Gru && p.ResetBeforeMatmul)
                    {
                        // r and z first; then the candidate's hidden part is (r ⊙ h)·U_n.
                        int og = b * G * H;
                        var rh = new double[H];
                        for (int j = 0; j < H; j++)
                        {
                            gt[og + j] = Sig(a[j] + u[j]);
                            gt[og + H + j] = Sig(a[H + j] + u[H + j]);
                            rh[j] = gt[og + j] * hPrev[b * H + j];
                        }
                        for (int j = 0; j < H; j++)
                        {
                            double un = 0;
                            for (int i = 0; i < H; i++) un += rh[i] * ly.Wh[i * G * H + 2 * H + j];
                            hp[og + 2 * H + j] = un;
                            double n = Math.Tanh(a[2 * H + j] + un), z = gt[og + H + j];
                            gt[og + 2 * H + j] = n;
                            h[b * H + j] = (1 - z) * n + z * hPrev[b * H + j];
                        }
                        continue;
                    }
                    for (int j = 0; j < H; j++)
                    {
                        int o = b * H + j, og = b * G * H;
                        switch (p.Cell)
                        {
                            case CellKind.Rnn:
                            {
                                double s = a[j] + u[j] + Bh(j);
                                h[o] = p.Relu ? Math.Max(0, s) : Math.Tanh(s);
                                gt[og + j] = h[o];
                                break;
                            }
                            case CellKind.Gru:
                            {
                                double r = Sig(a[j] + u[j] + Bh(j));
                                double z = Sig(a[H + j] + u[H + j] + Bh(H + j));
                                double n = Math.Tanh(a[2 * H + j] + r * (u[2 * H + j] + Bh(2 * H + j)));
                                h[o] = (1 - z) * n + z * hPrev[o];
                                gt[og + j] = r; gt[og + H + j] = z; gt[og + 2 * H + j] = n;
                                break;
                            }
                            default:
                            {
                                double i = Sig(a[j] + u[j] + Bh(j));
                                double f = Sig(a[H + j] + u[H + j] + Bh(H + j));
                                double g = Math.Tanh(a[2 * H + j] + u[2 * H + j] + Bh(2 * H + j));
                                double oo = Sig(a[3 * H + j] + u[3 * H + j] + Bh(3 * H + j));
                                c[o] = f * cPrev![o] + i * g;
                                h[o] = oo * Math.Tanh(c[o]);
                                gt[og + j] = i; gt[og + H + j] = f; gt[og + 2 * H + j] = g; gt[og + 3 * H + j] = oo;
                                break;
                            }
                        }
                    }
                }
                hs[l][t] = h;
                gates[l][t] = gt;
                hproj[l][t] = hp;
                if (cs != null) cs[l][t] = c;
                hPrev = h;
                cPrev = c;
            }
        }
        var logits = new double[steps * batch * V];
        double lossSum = 0;
        for (int t = 0; t < steps; t++)
            for (int b = 0; b < batch; b++)
            {
                int row = t * batch + b;
                for (int k = 0; k < V; k++)
                {
                    double o = p.Bq[k];
                    for (int j = 0; j < H; j++) o += hs[L - 1][t][b * H + j] * p.Whq[j * V + k];
                    logits[row * V + k] = o;
                }
                lossSum += CrossEntropy(logits.AsSpan(row * V, V), y[b * steps + t]);
            }
        return new ForwardResult { H = hs, C = cs, Gates = gates, HProj = hproj, Logits = logits, Loss = lossSum / (steps * batch) };
    }

    static double CrossEntropy(ReadOnlySpan<double> z, int label)
    {
        double max = double.NegativeInfinity;
        foreach (var v in z) max = Math.Max(max, v);
        double sum = 0;
        foreach (var v in z) sum += Math.Exp(v - max);
        return Math.Log(sum) + max - z[label];
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
