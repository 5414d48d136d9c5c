using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace CharRnn.Rnn.Backends.Cpu;

/// <summary>
/// Fused Vector256 loops for the CPU backend's elementwise ops (one pass over memory where the naive version takes
/// several). Each has a scalar tail and an exact scalar equivalent in <see cref="Reference.ReferenceRnn"/>'s terms;
/// the backend op tests hold them to the double reference.
/// </summary>
public static unsafe partial class CpuKernels
{
    /// <summary>Below this, exp(x) is taken as 0: e^-80 ≈ 1.8e-35, so every product the softmax gradient forms with it
    /// stays a normal float (denormals cost ~100× on x86) and the sum it joins (≥ 1) cannot notice it.</summary>
    public const float ExpCutoff = -80f;

    static readonly Vector256<float> Log2E = Vector256.Create(1.44269504088896341f);
    static readonly Vector256<float> C1 = Vector256.Create(0.693359375f);
    static readonly Vector256<float> C2 = Vector256.Create(-2.12194440e-4f);
    static readonly Vector256<float> P0 = Vector256.Create(1.9875691500e-4f);
    static readonly Vector256<float> P1 = Vector256.Create(1.3981999507e-3f);
    static readonly Vector256<float> P2 = Vector256.Create(8.3334519073e-3f);
    static readonly Vector256<float> P3 = Vector256.Create(4.1665795894e-2f);
    static readonly Vector256<float> P4 = Vector256.Create(1.6666665459e-1f);
    static readonly Vector256<float> P5 = Vector256.Create(5.0000001201e-1f);

    /// <summary>exp(x) for x ≤ 0 (Cephes expf: range reduction by ln 2, degree-5 polynomial; ~1 ulp), 0 below the cutoff.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> ExpNonPositive(Vector256<float> x)
    {
        var keep = Vector256.GreaterThanOrEqual(x, Vector256.Create(ExpCutoff));
        x = Vector256.Max(x, Vector256.Create(ExpCutoff));
        var fx = Vector256.Floor(Vector256.FusedMultiplyAdd(x, Log2E, Vector256.Create(0.5f)));
        x = Vector256.FusedMultiplyAdd(fx, -C1, x);
        x = Vector256.FusedMultiplyAdd(fx, -C2, x);
        var z = x * x;
        var y = Vector256.FusedMultiplyAdd(P0, x, P1);
        y = Vector256.FusedMultiplyAdd(y, x, P2);
        y = Vector256.FusedMultiplyAdd(y, x, P3);
        y = Vector256.FusedMultiplyAdd(y, x, P4);
        y = Vector256.FusedMultiplyAdd(y, x, P5);
        y = Vector256.FusedMultiplyAdd(y, z, x) + Vector256<float>.One;
        var pow2 = Vector256.ShiftLeft(Vector256.ConvertToInt32(fx) + Vector256.Create(127), 23).AsSingle();
        return (y * pow2) & keep.AsSingle();
    }

    /// <summary>
    /// Dropout's uniform draw for element i of minibatch <paramref name="counter"/>: the top 24 bits of
    /// splitmix64(seed + counter·φ + i·K) over 2^24, in [0, 1) and exact in float — <c>dropout_uniform</c> in
    /// kernels/dropout.cu computes the same bits.
    /// </summary>
    public static float DropoutUniform(ulong seed, ulong counter, ulong i)
    {
        unchecked
        {
            ulong z = seed + counter * 0x9E3779B97F4A7C15UL + i * 0xD1B54A32D192ED03UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            z ^= z >> 31;
            return (z >> 40) * (1f / 16777216f);
        }
    }

    // Stryker disable once Equality,Conditional : below the cut-off e^x < 1.8e-35: 0 or e^x moves a gradient by less than that and the sum (≥ 1) not at all
    static float ExpScalar(float x) => x < ExpCutoff ? 0f : MathF.Exp(x);

    /// <summary><c>softmax_xent</c>'s CPU twin over a block of rows (<see cref="SoftmaxXentRow"/> each): sequential — one
    /// row's three passes stay in L1, and the op is memory-bound; threads measured no faster.</summary>
    public static void SoftmaxXentRows(Mat logits, Tensor bias, IdxView labels, Mat dlogits, float gradScale, Mat rowLoss)
    {
        var lab = HostView.Ints(labels);
        var b = HostView.Array(bias).AsSpan(0, logits.Cols);
        var loss = HostView.All(rowLoss);
        for (int r = 0; r < logits.Rows; r++)
            loss[r] = SoftmaxXentRow(HostView.Row(logits, r), b, lab[r], gradScale, HostView.Row(dlogits, r));
    }

    /// <summary>
    /// One row of softmax cross-entropy: s = z + b; d = (softmax(s) − onehot(label))·gradScale; returns −log softmax(s)[label].
    /// Two passes over the row: max, then exp + sum (written to d), then the scale.
    /// </summary>
    public static float SoftmaxXentRow(ReadOnlySpan<float> z, ReadOnlySpan<float> b, int label, float gradScale, Span<float> d)
    {
        int n = z.Length;
        fixed (float* pz = z, pb = b, pd = d)
        {
            int i = 0;
            float max = float.NegativeInfinity;
            if (n >= 8)
            {
                var vm = Vector256.Create(float.NegativeInfinity);
                // Stryker disable once Equality : where the 8-lane pass stops and the scalar tail starts; both compute the same values (to an ulp)
                for (; i + 8 <= n; i += 8) vm = Vector256.Max(vm, Vector256.Load(pz + i) + Vector256.Load(pb + i));
                for (int k = 0; k < 8; k++) max = Math.Max(max, vm[k]);
            }
            for (; i < n; i++) max = Math.Max(max, pz[i] + pb[i]);

            i = 0;
            float sum = 0;
            if (n >= 8)
            {
                var vmax = Vector256.Create(max);
                var vs = Vector256<float>.Zero;
                // Stryker disable once Equality : where the 8-lane pass stops and the scalar tail starts; both compute the same values (to an ulp)
                for (; i + 8 <= n; i += 8)
                {
                    var e = ExpNonPositive(Vector256.Load(pz + i) + Vector256.Load(pb + i) - vmax);
                    e.Store(pd + i);
                    vs += e;
                }
                sum = Vector256.Sum(vs);
            }
            for (; i < n; i++) sum += pd[i] = ExpScalar(pz[i] + pb[i] - max);

            float scale = gradScale / sum;
            i = 0;
            var vscale = Vector256.Create(scale);
            // Stryker disable once Equality : where the 8-lane pass stops and the scalar tail starts; both compute the same values (to an ulp)
            for (; i + 8 <= n; i += 8) (Vector256.Load(pd + i) * vscale).Store(pd + i);
            for (; i < n; i++) pd[i] *= scale;
            pd[label] -= gradScale;
            return MathF.Log(sum) - (pz[label] + pb[label] - max);
        }
    }

    static readonly Vector256<float> T0 = Vector256.Create(-5.70498872745e-3f);
    static readonly Vector256<float> T1 = Vector256.Create(2.06390887954e-2f);
    static readonly Vector256<float> T2 = Vector256.Create(-5.37397155531e-2f);
    static readonly Vector256<float> T3 = Vector256.Create(1.33314422036e-1f);
    static readonly Vector256<float> T4 = Vector256.Create(-3.33332819422e-1f);

    /// <summary>
    /// h = tanh(pre + bias) (Cephes tanhf): |s| &lt; 0.625 by the odd polynomial s + s³·P(s²); above, by
    /// (1 − e)/(1 + e) with e = exp(−2|s|) and the sign put back. ~2 ulp.
    /// </summary>
    public static void BiasTanh(ReadOnlySpan<float> pre, ReadOnlySpan<float> bias, Span<float> h)
    {
        int n = h.Length, i = 0;
        fixed (float* pp = pre, pb = bias, ph = h)
        {
            // Stryker disable once Equality : where the 8-lane pass stops and the scalar tail starts; both compute the same values (to an ulp)
            for (; i + 8 <= n; i += 8) Tanh(Vector256.Load(pp + i) + Vector256.Load(pb + i)).Store(ph + i);
            for (; i < n; i++) ph[i] = MathF.Tanh(pp[i] + pb[i]);
        }
    }

    /// <summary>tanh, 8 lanes (see <see cref="BiasTanh"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Tanh(Vector256<float> s)
    {
        var signMask = Vector256.Create(-0.0f);
        var a = Vector256.AndNot(s, signMask); // |s|
        var z = s * s;
        var poly = Vector256.FusedMultiplyAdd(T0, z, T1);
        poly = Vector256.FusedMultiplyAdd(poly, z, T2);
        poly = Vector256.FusedMultiplyAdd(poly, z, T3);
        poly = Vector256.FusedMultiplyAdd(poly, z, T4);
        var small = Vector256.FusedMultiplyAdd(poly * z, s, s);
        var e = ExpNonPositive(Vector256.Create(-2f) * a);
        var large = ((Vector256<float>.One - e) / (Vector256<float>.One + e)) | (s & signMask);
        var t = Vector256.ConditionalSelect(Vector256.LessThan(a, Vector256.Create(0.625f)), small, large);
        return Vector256.ConditionalSelect(Vector256.Equals(s, s), t, s); // NaN stays NaN, as MathF.Tanh keeps it (the exp clamps it away)
    }

    /// <summary>σ(x) = 1/(1 + e^{−x}), 8 lanes, from e = exp(−|x|) ≤ 1 (no overflow): x ≥ 0: 1/(1+e), else e/(1+e).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Sigmoid(Vector256<float> x)
    {
        var e = ExpNonPositive(-Vector256.AndNot(x, Vector256.Create(-0.0f)));
        var inv = Vector256<float>.One / (Vector256<float>.One + e);
        var y = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(x, Vector256<float>.Zero), inv, e * inv);
        return Vector256.ConditionalSelect(Vector256.Equals(x, x), y, x); // NaN stays NaN, as the scalar σ keeps it
    }

    static float SigmoidScalar(float x) => 1f / (1f + MathF.Exp(-x));

    /// <summary>dpre = dh ⊙ (1 − h²).</summary>
    public static void TanhBackward(ReadOnlySpan<float> dh, ReadOnlySpan<float> h, Span<float> dpre)
    {
        int n = dpre.Length, i = 0;
        fixed (float* g = dh, y = h, d = dpre)
        {
            // Stryker disable once Equality : where the 8-lane pass stops and the scalar tail starts; both compute the same values (to an ulp)
            for (; i + 8 <= n; i += 8)
            {
                var vy = Vector256.Load(y + i);
                var vg = Vector256.Load(g + i);
                Vector256.FusedMultiplyAdd(-vg * vy, vy, vg).Store(d + i); // g − g·y·y
            }
            for (; i < n; i++) d[i] = g[i] * (1f - y[i] * y[i]);
        }
    }

    /// <summary>Σ x² accumulated in double (pairs of float lanes widened), so the norm does not lose bits on 10⁶ terms.</summary>
    public static double SumOfSquares(ReadOnlySpan<float> x)
    {
        int n = x.Length, i = 0;
        double s = 0;
        fixed (float* p = x)
        {
            var acc0 = Vector256<double>.Zero;
            var acc1 = Vector256<double>.Zero;
            // Stryker disable once Equality : where the 8-lane pass stops and the scalar tail starts; both compute the same values (to an ulp)
            for (; i + 8 <= n; i += 8)
            {
                var v = Vector256.Load(p + i);
                var (lo, hi) = Vector256.Widen(v);
                acc0 = Vector256.FusedMultiplyAdd(lo, lo, acc0);
                acc1 = Vector256.FusedMultiplyAdd(hi, hi, acc1);
            }
            s = Vector256.Sum(acc0 + acc1);
            for (; i < n; i++) s += (double)p[i] * p[i];
        }
        return s;
    }

    /// <summary>PyTorch's Adam step for one tensor (see <see cref="IBackend.AdamUpdate"/>), with the clip scale applied to g.</summary>
    public static void Adam(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, float scale,
        float beta1, float beta2, float eps, float stepSize, float bc2Sqrt)
    {
        int n = p.Length, i = 0;
        float ob1 = 1f - beta1, ob2 = 1f - beta2, invBc2 = 1f / bc2Sqrt;
        fixed (float* pp = p, pg = g, pm = m, pv = v)
        {
            var vs = Vector256.Create(scale);
            var vb1 = Vector256.Create(beta1); var vob1 = Vector256.Create(ob1);
            var vb2 = Vector256.Create(beta2); var vob2 = Vector256.Create(ob2);
            var veps = Vector256.Create(eps); var vstep = Vector256.Create(stepSize); var vinv = Vector256.Create(invBc2);
            // Stryker disable once Equality : where the 8-lane pass stops and the scalar tail starts; both compute the same values (to an ulp)
            for (; i + 8 <= n; i += 8)
            {
                var gi = Vector256.Load(pg + i) * vs;
                var mi = vb1 * Vector256.Load(pm + i) + vob1 * gi;
                var vi = vb2 * Vector256.Load(pv + i) + vob2 * gi * gi;
                mi.Store(pm + i);
                vi.Store(pv + i);
                (Vector256.Load(pp + i) - vstep * mi / (Vector256.Sqrt(vi) * vinv + veps)).Store(pp + i);
            }
            for (; i < n; i++)
            {
                float gi = pg[i] * scale;
                float mi = pm[i] = beta1 * pm[i] + ob1 * gi;
                float vi = pv[i] = beta2 * pv[i] + ob2 * gi * gi;
                pp[i] -= stepSize * mi / (MathF.Sqrt(vi) * invBc2 + eps);
            }
        }
    }
}
