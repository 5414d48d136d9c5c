using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace CharRnn.Rnn.Backends.Cpu;

/// <summary>The gated cells' per-row kernels (LSTM, PyTorch's GRU, the book's GRU in two halves), forward and backward:
/// the CPU twins of <c>kernels/gates.cu</c>, built from the shared vector <see cref="Sigmoid"/> and <see cref="Tanh"/>.</summary>
public static unsafe partial class CpuKernels
{
    /// <summary>
    /// LSTM step for one row (see <c>Ops.LstmForwardOp</c>): pre and gates are 4H (i, f, g, o blocks),
    /// bias the summed biases (4H), cPrev, c, h are H.
    /// </summary>
    public static void LstmForwardRow(ReadOnlySpan<float> pre, ReadOnlySpan<float> bias, ReadOnlySpan<float> cPrev,
        Span<float> gates, Span<float> c, Span<float> h)
    {
        int hd = h.Length, j = 0;
        fixed (float* p = pre, b = bias, cp = cPrev, g = gates, pc = c, ph = h)
        {
            // Stryker disable once Equality : where the 8-lane pass stops and the scalar tail starts; both compute the same values (to an ulp)
            for (; j + 8 <= hd; j += 8)
            {
                var i = Sigmoid(Vector256.Load(p + j) + Vector256.Load(b + j));
                var f = Sigmoid(Vector256.Load(p + hd + j) + Vector256.Load(b + hd + j));
                var gg = Tanh(Vector256.Load(p + 2 * hd + j) + Vector256.Load(b + 2 * hd + j));
                var o = Sigmoid(Vector256.Load(p + 3 * hd + j) + Vector256.Load(b + 3 * hd + j));
                var cv = Vector256.FusedMultiplyAdd(f, Vector256.Load(cp + j), i * gg);
                cv.Store(pc + j);
                (o * Tanh(cv)).Store(ph + j);
                i.Store(g + j); f.Store(g + hd + j); gg.Store(g + 2 * hd + j); o.Store(g + 3 * hd + j);
            }
            for (; j < hd; j++)
            {
                float i = SigmoidScalar(p[j] + b[j]), f = SigmoidScalar(p[hd + j] + b[hd + j]);
                float gg = MathF.Tanh(p[2 * hd + j] + b[2 * hd + j]), o = SigmoidScalar(p[3 * hd + j] + b[3 * hd + j]);
                float cv = f * cp[j] + i * gg;
                pc[j] = cv;
                ph[j] = o * MathF.Tanh(cv);
                g[j] = i; g[hd + j] = f; g[2 * hd + j] = gg; g[3 * hd + j] = o;
            }
        }
    }

    /// <summary>LSTM backward for one row (see <c>Ops.LstmBackwardOp</c>); dc is updated in place.</summary>
    public static void LstmBackwardRow(ReadOnlySpan<float> dh, Span<float> dc, ReadOnlySpan<float> gates, ReadOnlySpan<float> cPrev,
        ReadOnlySpan<float> c, Span<float> dpre)
    {
        int hd = dh.Length, j = 0;
        fixed (float* pdh = dh, pdc = dc, g = gates, cp = cPrev, pc = c, d = dpre)
        {
            var one = Vector256<float>.One;
            // Stryker disable once Equality : where the 8-lane pass stops and the scalar tail starts; both compute the same values (to an ulp)
            for (; j + 8 <= hd; j += 8)
            {
                var i = Vector256.Load(g + j); var f = Vector256.Load(g + hd + j);
                var gg = Vector256.Load(g + 2 * hd + j); var o = Vector256.Load(g + 3 * hd + j);
                var tc = Tanh(Vector256.Load(pc + j));
                var dhv = Vector256.Load(pdh + j);
                var dct = Vector256.Load(pdc + j) + dhv * o * (one - tc * tc);
                (dct * gg * i * (one - i)).Store(d + j);
                (dct * Vector256.Load(cp + j) * f * (one - f)).Store(d + hd + j);
                (dct * i * (one - gg * gg)).Store(d + 2 * hd + j);
                (dhv * tc * o * (one - o)).Store(d + 3 * hd + j);
                (dct * f).Store(pdc + j);
            }
            for (; j < hd; j++)
            {
                float i = g[j], f = g[hd + j], gg = g[2 * hd + j], o = g[3 * hd + j];
                float tc = MathF.Tanh(pc[j]);
                float dct = pdc[j] + pdh[j] * o * (1f - tc * tc);
                d[j] = dct * gg * i * (1f - i);
                d[hd + j] = dct * cp[j] * f * (1f - f);
                d[2 * hd + j] = dct * i * (1f - gg * gg);
                d[3 * hd + j] = pdh[j] * tc * o * (1f - o);
                pdc[j] = dct * f;
            }
        }
    }

    /// <summary>
    /// PyTorch GRU step for one row (see <c>Ops.GruForwardOp</c>): xpre, hproj, gates 3H (r, z, n);
    /// bx the input biases, bh the hidden biases (zeros when the model has none).
    /// </summary>
    public static void GruForwardRow(ReadOnlySpan<float> xpre, ReadOnlySpan<float> hproj, ReadOnlySpan<float> bx, ReadOnlySpan<float> bh,
        ReadOnlySpan<float> hPrev, Span<float> gates, Span<float> h)
    {
        int hd = h.Length, j = 0;
        fixed (float* x = xpre, u = hproj, b1 = bx, b2 = bh, hp = hPrev, g = gates, ph = h)
        {
            // Stryker disable once Equality : where the 8-lane pass stops and the scalar tail starts; both compute the same values (to an ulp)
            for (; j + 8 <= hd; j += 8)
            {
                var r = Sigmoid(Vector256.Load(x + j) + Vector256.Load(b1 + j) + Vector256.Load(u + j) + Vector256.Load(b2 + j));
                var z = Sigmoid(Vector256.Load(x + hd + j) + Vector256.Load(b1 + hd + j) + Vector256.Load(u + hd + j) + Vector256.Load(b2 + hd + j));
                var n = Tanh(Vector256.Load(x + 2 * hd + j) + Vector256.Load(b1 + 2 * hd + j)
                             + r * (Vector256.Load(u + 2 * hd + j) + Vector256.Load(b2 + 2 * hd + j)));
                ((Vector256<float>.One - z) * n + z * Vector256.Load(hp + j)).Store(ph + j);
                r.Store(g + j); z.Store(g + hd + j); n.Store(g + 2 * hd + j);
            }
            for (; j < hd; j++)
            {
                float r = SigmoidScalar(x[j] + b1[j] + u[j] + b2[j]);
                float z = SigmoidScalar(x[hd + j] + b1[hd + j] + u[hd + j] + b2[hd + j]);
                float n = MathF.Tanh(x[2 * hd + j] + b1[2 * hd + j] + r * (u[2 * hd + j] + b2[2 * hd + j]));
                ph[j] = (1f - z) * n + z * hp[j];
                g[j] = r; g[hd + j] = z; g[2 * hd + j] = n;
            }
        }
    }

    /// <summary>The book's GRU, first half of a step for one row (see <c>Ops.GruResetGatesOp</c>).</summary>
    public static void GruResetGatesRow(ReadOnlySpan<float> xpre, ReadOnlySpan<float> hproj, ReadOnlySpan<float> bx,
        ReadOnlySpan<float> hPrev, Span<float> gates, Span<float> rh)
    {
        int hd = hPrev.Length, j = 0;
        fixed (float* x = xpre, u = hproj, b = bx, hp = hPrev, g = gates, o = rh)
        {
            // Stryker disable once Equality : where the 8-lane pass stops and the scalar tail starts; both compute the same values (to an ulp)
            for (; j + 8 <= hd; j += 8)
            {
                var r = Sigmoid(Vector256.Load(x + j) + Vector256.Load(b + j) + Vector256.Load(u + j));
                r.Store(g + j);
                Sigmoid(Vector256.Load(x + hd + j) + Vector256.Load(b + hd + j) + Vector256.Load(u + hd + j)).Store(g + hd + j);
                (r * Vector256.Load(hp + j)).Store(o + j);
            }
            for (; j < hd; j++)
            {
                float r = SigmoidScalar(x[j] + b[j] + u[j]);
                g[j] = r;
                g[hd + j] = SigmoidScalar(x[hd + j] + b[hd + j] + u[hd + j]);
                o[j] = r * hp[j];
            }
        }
    }

    /// <summary>The book's GRU, second half of a step for one row (see <c>Ops.GruCandidateOp</c>).</summary>
    public static void GruCandidateRow(ReadOnlySpan<float> xpre, ReadOnlySpan<float> hproj, ReadOnlySpan<float> bx,
        ReadOnlySpan<float> hPrev, Span<float> gates, Span<float> h)
    {
        int hd = h.Length, j = 0;
        fixed (float* x = xpre, u = hproj, b = bx, hp = hPrev, g = gates, ph = h)
        {
            // Stryker disable once Equality : where the 8-lane pass stops and the scalar tail starts; both compute the same values (to an ulp)
            for (; j + 8 <= hd; j += 8)
            {
                var n = Tanh(Vector256.Load(x + 2 * hd + j) + Vector256.Load(b + 2 * hd + j) + Vector256.Load(u + 2 * hd + j));
                var z = Vector256.Load(g + hd + j);
                n.Store(g + 2 * hd + j);
                (z * Vector256.Load(hp + j) + (Vector256<float>.One - z) * n).Store(ph + j);
            }
            for (; j < hd; j++)
            {
                float n = MathF.Tanh(x[2 * hd + j] + b[2 * hd + j] + u[2 * hd + j]), z = g[hd + j];
                g[2 * hd + j] = n;
                ph[j] = z * hp[j] + (1f - z) * n;
            }
        }
    }
}
