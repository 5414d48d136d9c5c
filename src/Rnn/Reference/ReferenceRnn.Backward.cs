using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Reference;

/// <summary>The reference's backpropagation through time (the forward pass, clipping and the optimizers: ReferenceRnn.cs).</summary>
public static partial class ReferenceRnn
{
    /// <summary>Gradients of the mean loss by backpropagation through time, top layer first.</summary>
    public static Gradients Backward(Parameters p, int[] x, int[] y, double[][] h0, double[][]? c0, int batch, int steps, ForwardResult f)
    {
        int V = p.V, H = p.H, G = p.Gates, L = p.Layers.Count, n = steps * batch;
        var grads = p.All().Select(a => new double[a.Length]).ToList();
        int gi = 0;
        var layerGrads = new List<(double[] Wx, double[] Wh, double[] Bx, double[]? Bh)>();
        foreach (var ly in p.Layers)
        {
            var wx = grads[gi++]; var wh = grads[gi++]; var bx = grads[gi++];
            var bh = ly.Bh != null ? grads[gi++] : null;
            layerGrads.Add((wx, wh, bx, bh));
        }
        var dWhq = grads[gi++];
        var dBq = grads[gi];

        // Output layer: dO = (softmax − onehot)/n; dH_top[t] = dO·W_hqᵀ.
        var dOut = new double[L][][];  // [layer][t] (B×H): gradient arriving at H_t from above (output or next layer)
        for (int l = 0; l < L; l++) dOut[l] = Enumerable.Range(0, steps).Select(_ => new double[batch * H]).ToArray();
        for (int t = 0; t < steps; t++)
            for (int b = 0; b < batch; b++)
            {
                int row = t * batch + b;
                var z = f.Logits.AsSpan(row * V, V);
                double max = double.NegativeInfinity;
                foreach (var v in z) max = Math.Max(max, v);
                double sum = 0;
                foreach (var v in z) sum += Math.Exp(v - max);
                for (int k = 0; k < V; k++)
                {
                    double d = (Math.Exp(z[k] - max) / sum - (k == y[b * steps + t] ? 1 : 0)) / n;
                    dBq[k] += d;
                    for (int j = 0; j < H; j++)
                    {
                        dWhq[j * V + k] += f.H[L - 1][t][b * H + j] * d;
                        dOut[L - 1][t][b * H + j] += p.Whq[j * V + k] * d;
                    }
                }
            }

        var dH0 = new double[L][];
        var dC0 = p.Cell == CellKind.Lstm ? new double[L][] : null;
        for (int l = L - 1; l >= 0; l--)
        {
            var ly = p.Layers[l];
            var (dWx, dWh, dBx, dBh) = layerGrads[l];
            var dhNext = new double[batch * H]; // recurrent gradient into H_t from step t+1
            var dcNext = new double[batch * H];
            for (int t = steps - 1; t >= 0; t--)
            {
                var hPrev = t == 0 ? h0[l] : f.H[l][t - 1];
                var cPrev = p.Cell == CellKind.Lstm ? (t == 0 ? c0![l] : f.C![l][t - 1]) : null;
                var gt = f.Gates[l][t];
                var dhPrev = new double[batch * H];
                var dcPrev = new double[batch * H];
                for (int b = 0; b < batch; b++)
                {
                    var dA = new double[G * H]; // d loss / d (x·Wx + bx) per gate column
                    var dU = new double[G * H]; // d loss / d (h·Wh [+ bh]) per gate column
                    if (p.Cell == CellKind.Gru && p.ResetBeforeMatmul)
                    {
                        BookGruStep(p, ly, l, t, b, f, hPrev, dOut[l][t], dhNext, dA, dhPrev, dWh);
                        AccumulateLayerGrads(p, ly, l, t, b, f, x, steps, hPrev, dA, dA, dWx, dBx, null, dWh, dOut, dhPrev, rzOnly: true);
                        continue;
                    }
                    for (int j = 0; j < H; j++)
                    {
                        int o = b * H + j, og = b * G * H;
                        double dh = dOut[l][t][o] + dhNext[o];
                        switch (p.Cell)
                        {
                            case CellKind.Rnn:
                            {
                                double hv = gt[og + j];
                                double d = dh * (p.Relu ? (hv > 0 ? 1 : 0) : 1 - hv * hv);
                                dA[j] = d; dU[j] = d;
                                break;
                            }
                            case CellKind.Gru:
                            {
                                double r = gt[og + j], z = gt[og + H + j], nn = gt[og + 2 * H + j];
                                double hn = f.HProj[l][t][og + 2 * H + j] + (ly.Bh?[2 * H + j] ?? 0);
                                double dn = dh * (1 - z) * (1 - nn * nn);
                                double dz = dh * (hPrev[o] - nn) * z * (1 - z);
                                double dr = dn * hn * r * (1 - r);
                                dA[j] = dr; dA[H + j] = dz; dA[2 * H + j] = dn;
                                dU[j] = dr; dU[H + j] = dz; dU[2 * H + j] = dn * r;
                                dhPrev[o] += dh * z;
                                break;
                            }
                            default:
                            {
                                double i = gt[og + j], fg = gt[og + H + j], g = gt[og + 2 * H + j], oo = gt[og + 3 * H + j];
                                double c = f.C![l][t][o], tc = Math.Tanh(c);
                                double dc = dcNext[o] + dh * oo * (1 - tc * tc);
                                double di = dc * g * i * (1 - i), df = dc * cPrev![o] * fg * (1 - fg);
                                double dg = dc * i * (1 - g * g), dO = dh * tc * oo * (1 - oo);
                                dA[j] = di; dA[H + j] = df; dA[2 * H + j] = dg; dA[3 * H + j] = dO;
                                dU[j] = di; dU[H + j] = df; dU[2 * H + j] = dg; dU[3 * H + j] = dO;
                                dcPrev[o] = dc * fg;
                                break;
                            }
                        }
                    }
                    AccumulateLayerGrads(p, ly, l, t, b, f, x, steps, hPrev, dA, dU, dWx, dBx, dBh, dWh, dOut, dhPrev, rzOnly: false);
                }
                dhNext = dhPrev;
                dcNext = dcPrev;
            }
            dH0[l] = dhNext;
            if (dC0 != null) dC0[l] = dcNext;
        }
        return new Gradients { Params = grads, H0 = dH0, C0 = dC0 };
    }

    /// <summary>
    /// Adds one batch row's contributions: dW_x, db_x (and db_h) from dA, dU; the layer below's dH from dA·W_xᵀ;
    /// dW_h and dH_{t−1} from dU through h_{t−1} (for the book's GRU only the r, z columns go through h_{t−1}).
    /// </summary>
    static void AccumulateLayerGrads(Parameters p, Layer ly, int l, int t, int b, ForwardResult f, int[] x, int steps,
        double[] hPrev, double[] dA, double[] dU, double[] dWx, double[] dBx, double[]? dBh, double[] dWh, double[][][] dOut,
        double[] dhPrev, bool rzOnly)
    {
        int H = p.H, G = p.Gates;
        for (int k = 0; k < G * H; k++)
        {
            dBx[k] += dA[k];
            if (dBh != null) dBh[k] += dU[k];
            if (l == 0) dWx[x[b * steps + t] * G * H + k] += dA[k];
            else
                for (int i = 0; i < H; i++)
                {
                    dWx[i * G * H + k] += f.H[l - 1][t][b * H + i] * dA[k];
                    dOut[l - 1][t][b * H + i] += ly.Wx[i * G * H + k] * dA[k];
                }
            if (rzOnly && k >= 2 * H) continue;
            for (int i = 0; i < H; i++)
            {
                dWh[i * G * H + k] += hPrev[b * H + i] * dU[k];
                dhPrev[b * H + i] += ly.Wh[i * G * H + k] * dU[k];
            }
        }
    }

    /// <summary>
    /// One batch row of the book's GRU backward: dA ← (dr, dz, dn) pre-activation gradients; the candidate's path
    /// through (r ⊙ h)·U_n goes into dW_h's n columns and into dH_{t−1} here; z's direct path too.
    /// </summary>
    static void BookGruStep(Parameters p, Layer ly, int l, int t, int b, ForwardResult f, double[] hPrev, double[] dFromAbove,
        double[] dhNext, double[] dA, double[] dhPrev, double[] dWh)
    {
        int H = p.H, G = p.Gates, og = b * G * H;
        var gt = f.Gates[l][t];
        var dnPre = new double[H];
        for (int j = 0; j < H; j++)
        {
            int o = b * H + j;
            double dh = dFromAbove[o] + dhNext[o];
            double z = gt[og + H + j], n = gt[og + 2 * H + j];
            dnPre[j] = dh * (1 - z) * (1 - n * n);
            dA[H + j] = dh * (hPrev[o] - n) * z * (1 - z);
            dA[2 * H + j] = dnPre[j];
            dhPrev[o] += dh * z;
        }
        for (int i = 0; i < H; i++)
        {
            double r = gt[og + i], rh = r * hPrev[b * H + i], drh = 0;
            for (int j = 0; j < H; j++)
            {
                dWh[i * G * H + 2 * H + j] += rh * dnPre[j];
                drh += ly.Wh[i * G * H + 2 * H + j] * dnPre[j];
            }
            dA[i] = drh * hPrev[b * H + i] * r * (1 - r);
            dhPrev[b * H + i] += drh * r;
        }
    }
}
