using CharRnn.Rnn;
using CharRnn.Rnn.Backends.Cpu;

namespace CharRnn.Tests;

/// <summary>
/// #26: the CPU kernels called directly on rows cut from larger arrays, guard values on both sides: widths below, at
/// and past the 8-lane vector width (5, 8, 21: no vector pass; one; two and a scalar tail) against doubles, and the
/// guards must be neither read (they are huge, so reading one changes the result) nor written. Mutation testing showed
/// a tail loop running one element past its row (<c>i &lt;= n</c>) unseen by every backend test, whose rows are
/// followed by the next row's data. And the dropout hash pinned to values computed outside C# (Python's integers).
/// </summary>
public class CpuKernelBoundsTests
{
    const float Guard = 1e30f;

    [TearDown] public void TearDown() => TestSeed.ReportIfFailed();

    /// <summary>An array of n values with <see cref="Guard"/> before and after: (array, the row as a span).</summary>
    static (float[] All, Memory<float> Row) Guarded(float[] values)
    {
        var all = new float[values.Length + 4];
        Array.Fill(all, Guard);
        values.CopyTo(all, 2);
        return (all, all.AsMemory(2, values.Length));
    }

    static void GuardsIntact(float[] all, int n, string what)
    {
        Assert.That(new[] { all[0], all[1], all[n + 2], all[n + 3] }, Is.All.EqualTo(Guard), $"{what}: guards written");
    }

    static float[] Rand(Rng rng, int n, double scale = 1) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextNormal() * scale)).ToArray();

    [TestCase(0UL, 0UL, 0UL, 0)]
    [TestCase(12345UL, 77UL, 0UL, 2193521)]
    [TestCase(12345UL, 77UL, 1UL, 12080247)]
    [TestCase(12345UL, 4294967373UL, 5UL, 6010857)]
    [TestCase(15352504042506813441UL, 3UL, 1000UL, 7043498)]
    [TestCase(18446744073709551615UL, 1099511627785UL, 123456789UL, 1878441)]
    public void DropoutHashMatchesValuesComputedElsewhere(ulong seed, ulong counter, ulong i, int numerator) =>
        Assert.That(CpuKernels.DropoutUniform(seed, counter, i) * 16777216f, Is.EqualTo((float)numerator));

    [Test]
    public void RowKernelsStayInsideTheirRows([Values(5, 8, 21)] int n)
    {
        var rng = TestSeed.Rng();
        // Softmax cross-entropy of one row.
        var z = Rand(rng, n); var b = Rand(rng, n);
        var (za, zr) = Guarded(z); var (ba, br) = Guarded(b); var (da, dr) = Guarded(new float[n]);
        int label = n / 2;
        float loss = CpuKernels.SoftmaxXentRow(zr.Span, br.Span, label, 0.5f, dr.Span);
        var s = z.Select((x, i) => (double)x + b[i]).ToArray();
        double max = s.Max(), sum = s.Sum(x => Math.Exp(x - max));
        Check.Close(new[] { Math.Log(sum) + max - s[label] }, new[] { loss }, 1e-5, 1e-5, "loss");
        Check.Close(s.Select((x, i) => (Math.Exp(x - max) / sum - (i == label ? 1 : 0)) * 0.5).ToArray(), dr.ToArray(), 1e-6, 1e-5, "dlogits");
        GuardsIntact(da, n, "dlogits");
        GuardsIntact(za, n, "logits");

        // tanh(pre + bias) and its backward.
        var pre = Rand(rng, n); var bias = Rand(rng, n);
        var (_, pr) = Guarded(pre); var (_, bsr) = Guarded(bias); var (ha, hr) = Guarded(new float[n]);
        CpuKernels.BiasTanh(pr.Span, bsr.Span, hr.Span);
        Check.Close(pre.Select((x, i) => Math.Tanh(x + bias[i])).ToArray(), hr.ToArray(), 1e-6, 1e-5, "tanh");
        GuardsIntact(ha, n, "tanh");
        var dh = Rand(rng, n);
        var (_, dhr) = Guarded(dh); var (dpa, dpr) = Guarded(new float[n]);
        CpuKernels.TanhBackward(dhr.Span, hr.Span, dpr.Span);
        var hv = hr.ToArray();
        Check.Close(dh.Select((g, i) => g * (1 - (double)hv[i] * hv[i])).ToArray(), dpr.ToArray(), 1e-6, 1e-5, "tanh backward");
        GuardsIntact(dpa, n, "tanh backward");

        // Σ x² (a guard read would add 1e60).
        var x2 = Rand(rng, n);
        var (_, xr) = Guarded(x2);
        Check.Close(new[] { x2.Sum(x => (double)x * x) }, new[] { (float)CpuKernels.SumOfSquares(xr.Span) }, 1e-6, 1e-6, "sum of squares");

        // One Adam step.
        var p = Rand(rng, n); var g2 = Rand(rng, n); var m = Rand(rng, n, 0.1); var v = Rand(rng, n, 0.1).Select(Math.Abs).ToArray();
        var (pa, par) = Guarded(p); var (_, gr) = Guarded(g2); var (ma, mr) = Guarded(m); var (va, vr) = Guarded(v);
        CpuKernels.Adam(par.Span, gr.Span, mr.Span, vr.Span, 0.8f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.5f);
        for (int i = 0; i < n; i++)
        {
            double gi = g2[i] * 0.8, mi = 0.9 * m[i] + 0.1 * gi, vi = 0.999 * v[i] + (1 - 0.999) * gi * gi;
            Check.Close(new[] { p[i] - 0.01 * mi / (Math.Sqrt(vi) / 0.5 + 1e-8) }, new[] { par.Span[i] }, 1e-6, 1e-4, $"adam p[{i}]");
        }
        GuardsIntact(pa, n, "adam p");
        GuardsIntact(ma, n, "adam m");
        GuardsIntact(va, n, "adam v");
    }

    /// <summary>Logits far apart, the largest in the vector part or in the tail: the row's true maximum must be the
    /// shift (exp of anything above it overflows float at 89), whichever pass found it.</summary>
    [TestCase(3, 21)]
    [TestCase(18, 21)]
    [TestCase(7, 8)]
    [TestCase(2, 5)]
    public void SoftmaxShiftsByTheRowsTrueMaximum(int at, int n)
    {
        var z = Enumerable.Range(0, n).Select(i => (float)(i % 3) - 1f).ToArray();
        var b = Enumerable.Range(0, n).Select(i => i % 2 == 0 ? 0.5f : -0.5f).ToArray();
        z[at] = 140f; b[at] = 60f; // s = 200 there; subtracting the bias instead would leave 80, any other shift ≥ 111
        var d = new float[n];
        int label = (at + 1) % n;
        float loss = CpuKernels.SoftmaxXentRow(z, b, label, 1f, d);
        var s = z.Select((x, i) => (double)x + b[i]).ToArray();
        double max = s.Max(), sum = s.Sum(x => Math.Exp(x - max));
        Check.Close(new[] { Math.Log(sum) + max - s[label] }, new[] { loss }, 1e-4, 1e-5, "loss");
        Check.Close(s.Select((x, i) => Math.Exp(x - max) / sum - (i == label ? 1 : 0)).ToArray(), d, 1e-6, 1e-5, "dlogits");
    }
}
