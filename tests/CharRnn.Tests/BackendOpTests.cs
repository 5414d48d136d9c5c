using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Model;
using CharRnn.Rnn.Reference;

namespace CharRnn.Tests;

/// <summary>
/// Every backend op against a plain double computation on fresh random inputs, with each output poisoned (NaN)
/// before the op so an op that skips elements fails. Tolerance 1e-5 abs + 1e-5 rel unless stated: float32 inputs,
/// float32 arithmetic, reductions of at most a few hundred terms.
/// </summary>
[TestFixtureSource(typeof(TestBackends), nameof(TestBackends.All))]
public class BackendOpTests(string backendName) : BackendFixture(backendName)
{
    const double Tol = 1e-5;
    Tensor Up(int rows, int cols, float[] data) => _be.FromArray(rows, cols, data);
    Tensor Poisoned(int rows, int cols) => Up(rows, cols, Enumerable.Repeat(float.NaN, rows * cols).ToArray());

    [Test]
    public void GemmAllTransposeCasesWithOffsets([Values] bool transA, [Values] bool transB, [Values(0f, 0.5f, 1f)] float beta,
        [Values(1, 37, 130)] int m)
    {
        int n = 29, k = 53, pad = 3;
        // A is stored (k×m) when transposed, else (m×k); the view starts `pad` rows in.
        int aRows = transA ? k : m, aCols = transA ? m : k, bRows = transB ? n : k, bCols = transB ? k : n;
        var a = Rand((aRows + pad) * aCols); var b = Rand((bRows + pad) * bCols); var c0 = Rand((m + pad) * n);
        using var ta = Up(aRows + pad, aCols, a);
        using var tb = Up(bRows + pad, bCols, b);
        using var tc = Up(m + pad, n, beta == 0 ? Enumerable.Repeat(float.NaN, c0.Length).ToArray() : c0);
        _be.Gemm(transA, transB, 0.75f, ta.RowRange(pad, aRows), tb.RowRange(pad, bRows), beta, tc.RowRange(pad, m));
        var got = _be.ToArray(tc).Skip(pad * n).ToArray();
        var want = new double[m * n];
        for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
        {
            double s = 0;
            for (int p = 0; p < k; p++)
                s += (double)(transA ? a[(pad + p) * aCols + i] : a[(pad + i) * aCols + p]) *
                     (transB ? b[(pad + j) * bCols + p] : b[(pad + p) * bCols + j]);
            want[i * n + j] = 0.75 * s + (beta == 0 ? 0 : beta * c0[(pad + i) * n + j]);
        }
        Check.Close(want, got, 1e-4, 1e-5, "C");
    }

    [Test]
    public void GatherEqualsOneHotGemmAndScatterAddEqualsItsTranspose()
    {
        int v = 11, h = 7, n = 40;
        var tokens = Enumerable.Range(0, n).Select(_ => _rng.NextInt(v)).ToArray();
        var w = Rand(v * h);
        using var ti = _be.FromArray(tokens);
        using var tw = Up(v, h, w);
        using var gathered = Poisoned(n, h);
        using var onehot = Poisoned(n, v);
        using var product = Poisoned(n, h);
        _be.GatherRows(ti.All, tw, gathered.All);
        _be.OneHotScatter(ti.All, onehot.All);
        _be.Gemm(false, false, 1f, onehot.All, tw.All, 0f, product.All);
        var g = _be.ToArray(gathered);
        Assert.That(g, Is.EqualTo(_be.ToArray(product)), "gather == onehot·W exactly");
        for (int r = 0; r < n; r++) Assert.That(g.AsSpan(r * h, h).ToArray(), Is.EqualTo(w.AsSpan(tokens[r] * h, h).ToArray()));
        var oh = _be.ToArray(onehot);
        Assert.That(oh.Sum(), Is.EqualTo(n));
        for (int r = 0; r < n; r++) Assert.That(oh[r * v + tokens[r]], Is.EqualTo(1f));

        var d = Rand(n * h);
        using var td = Up(n, h, d);
        using var scattered = _be.Zeros(v, h);
        using var viaGemm = Poisoned(v, h);
        _be.ScatterAddRows(ti.All, td.All, scattered);
        _be.Gemm(true, false, 1f, onehot.All, td.All, 0f, viaGemm.All);
        var want = new double[v * h];
        for (int r = 0; r < n; r++) for (int j = 0; j < h; j++) want[tokens[r] * h + j] += d[r * h + j];
        Check.Close(want, _be.ToArray(scattered), Tol, Tol, "scatter-add");
        Check.Close(want, _be.ToArray(viaGemm), Tol, Tol, "onehotᵀ·dPre");
    }

    [Test]
    public void SoftmaxCrossEntropyLossAndGradient([Values(5, 1027)] int v)
    {
        int rows = 33;
        var z = Rand(rows * v, 3); var bias = Rand(v); var labels = Enumerable.Range(0, rows).Select(_ => _rng.NextInt(v)).ToArray();
        z[0] = 80f; // large logits must not overflow
        using var tz = Up(rows, v, z); using var tbias = Up(1, v, bias); using var tl = _be.FromArray(labels);
        using var td = Poisoned(rows, v);
        using var rowLoss = Poisoned(rows, 1);
        _be.ResetLoss();
        _be.SoftmaxCrossEntropy(tz.All, tbias, tl.All, td.All, 1f / rows, rowLoss.All);
        _be.AccumulateLoss(rowLoss.All);
        _be.AccumulateLoss(rowLoss.All); // the loss accumulates
        double lossSum = 0;
        var wantD = new double[rows * v];
        for (int r = 0; r < rows; r++)
        {
            var s = Enumerable.Range(0, v).Select(c => (double)z[r * v + c] + bias[c]).ToArray();
            double max = s.Max(), sum = s.Sum(x => Math.Exp(x - max));
            lossSum += Math.Log(sum) + max - s[labels[r]];
            for (int c = 0; c < v; c++) wantD[r * v + c] = (Math.Exp(s[c] - max) / sum - (c == labels[r] ? 1 : 0)) / rows;
        }
        var (got, count) = _be.ReadLoss();
        Assert.That(count, Is.EqualTo(2 * rows));
        Check.Close(2 * lossSum, got, 1e-4, 1e-6, "loss sum");
        Check.Close(wantD, _be.ToArray(td), 1e-7, 1e-4, "dlogits");
    }

    /// <summary>Dropout's masks are the same bits on every backend (a hash, no generator): exactly 0 or 1/(1−p), about a
    /// fraction p of zeros, a different draw for another counter or seed; backward multiplies by the mask.</summary>
    [Test]
    public void DropoutMasksAreTheSameDrawEverywhere()
    {
        int rows = 37, cols = 53;
        const float p = 0.3f;
        var x = Rand(rows * cols);
        using var tx = Up(rows, cols, x);
        using var y = Poisoned(rows, cols);
        using var mask = Poisoned(rows, cols);
        using var count = _be.FromArray([77, 0]); // the 64-bit count 77 as [low, high], where the step counters keep it
        _be.DropoutForward(tx.All, p, 12345UL, count.All, y.All, mask.All);
        var m = _be.ToArray(mask);
        float scale = 1f / (1f - p);
        for (int i = 0; i < m.Length; i++)
        {
            float want = Rnn.Backends.Cpu.CpuKernels.DropoutUniform(12345UL, 77UL, (ulong)i) >= p ? scale : 0f;
            Assert.That(m[i], Is.EqualTo(want), $"mask {i}");
        }
        Assert.That(_be.ToArray(y), Is.EqualTo(x.Select((v, i) => v * m[i]).ToArray()));
        double zeros = m.Count(v => v == 0) / (double)m.Length;
        Assert.That(zeros, Is.EqualTo(p).Within(0.05), "about a fraction p dropped");
        using var other = Poisoned(rows, cols);
        _be.Upload(count, [78, 0]);
        _be.DropoutForward(tx.All, p, 12345UL, count.All, y.All, other.All);
        Assert.That(_be.ToArray(other), Is.Not.EqualTo(m), "another minibatch, another mask");
        _be.Upload(count, [77, 1]); // the high half counts: minibatch 2^32 + 77 is not minibatch 77
        _be.DropoutForward(tx.All, p, 12345UL, count.All, y.All, other.All);
        var high = _be.ToArray(other);
        Assert.That(high, Is.Not.EqualTo(m));
        for (int i = 0; i < high.Length; i++)
            Assert.That(high[i], Is.EqualTo(Rnn.Backends.Cpu.CpuKernels.DropoutUniform(12345UL, (1UL << 32) + 77, (ulong)i) >= p ? scale : 0f));
        var dy = Rand(rows * cols);
        using var tdy = Up(rows, cols, dy);
        _be.DropoutBackward(tdy.All, mask.All, tdy.All); // in place, as the driver uses it
        Assert.That(_be.ToArray(tdy), Is.EqualTo(dy.Select((v, i) => v * m[i]).ToArray()));
    }

    [Test]
    public void ColumnSumAndArgmax()
    {
        int rows = 70, cols = 45;
        var a = Rand(rows * cols);
        using var ta = Up(rows, cols, a);
        using var s = Poisoned(1, cols);
        _be.ColumnSum(ta.All, s.All);
        var want = Enumerable.Range(0, cols).Select(c => Enumerable.Range(0, rows).Sum(r => (double)a[r * cols + c])).ToArray();
        Check.Close(want, _be.ToArray(s), Tol, Tol, "column sums");
        // A column range (stride > cols) into a column range of the destination.
        using var s2 = Poisoned(1, cols);
        _be.ColumnSum(ta.All.ColumnRange(10, 20), s2.All.ColumnRange(5, 20));
        var got2 = _be.ToArray(s2);
        Check.Close(want.Skip(10).Take(20).ToArray(), got2.Skip(5).Take(20).ToArray(), Tol, Tol, "column-range sums");
        Assert.That(float.IsNaN(got2[4]) && float.IsNaN(got2[25]), Is.True, "outside the range untouched");

        var bias = Rand(cols);
        using var tb = Up(1, cols, bias);
        using var idx = _be.FromArray(Enumerable.Repeat(-1, rows + 2).ToArray());
        _be.ArgmaxRows(ta.RowRange(0, rows), tb, idx.Range(2, rows));
        var got = _be.ToArray(idx);
        Assert.That(got[..2], Is.EqualTo(new[] { -1, -1 }));
        for (int r = 0; r < rows; r++)
        {
            int best = 0;
            for (int c = 1; c < cols; c++) if (a[r * cols + c] + bias[c] > a[r * cols + best] + bias[best]) best = c;
            Assert.That(got[r + 2], Is.EqualTo(best), $"row {r}");
        }
    }

    /// <summary>#26: clipping that compared the squared norm with θ survived every clipping test, whose θ put norm and
    /// norm² on the same side. θ = norm^1.5 lies strictly between them: above the norm when it is over 1 (no clipping),
    /// below it when under 1 (clipping) — a squared comparison gets both wrong.</summary>
    [Test]
    public void ClipComparesTheNormNotItsSquare([Values(0.1, 0.004)] double gradScale)
    {
        var shapes = new[] { (17, 9), (1, 9), (9, 300) };
        var gs = shapes.Select(s => Rand(s.Item1 * s.Item2, gradScale)).ToArray();
        var tg = shapes.Select((s, i) => Up(s.Item1, s.Item2, gs[i])).ToArray();
        using var clip = Poisoned(1, 2);
        try
        {
            double norm = Math.Sqrt(gs.Sum(a => a.Sum(x => (double)x * x)));
            Assert.That(Math.Abs(norm - 1), Is.GreaterThan(0.2), "norm and norm² must differ enough");
            float theta = (float)Math.Pow(norm, 1.5);
            _be.ComputeClipScale(tg, theta, clip);
            var got = _be.ToArray(clip);
            if (norm > 1) Assert.That(got[0], Is.EqualTo(1f), $"norm {norm} ≤ θ {theta}: no clipping (norm² {norm * norm} is above θ)");
            else Check.Close(theta / norm, got[0], 1e-6, 1e-6, $"norm {norm} > θ {theta}: clipped (norm² {norm * norm} is below θ)");
            Assert.That(got[0], norm > 1 ? Is.EqualTo(1f) : Is.LessThan(1f));
        }
        finally
        {
            foreach (var t in tg) t.Dispose();
        }
    }

    [Test]
    public void ClipScaleSgdAndAdamMatchTheReference([Values(0f, 0.5f, 1e6f)] float theta)
    {
        var shapes = new[] { (17, 9), (1, 9), (9, 300) };
        var ps = shapes.Select(s => Rand(s.Item1 * s.Item2)).ToArray();
        var gs = shapes.Select(s => Rand(s.Item1 * s.Item2, 0.1)).ToArray();
        var tp = shapes.Select((s, i) => Up(s.Item1, s.Item2, ps[i])).ToArray();
        var tg = shapes.Select((s, i) => Up(s.Item1, s.Item2, gs[i])).ToArray();
        using var clip = Poisoned(1, 2);
        try
        {
            _be.ComputeClipScale(tg, theta, clip);
            var gd = gs.Select(Check.ToDouble).ToArray();
            double norm = Math.Sqrt(gd.Sum(a => a.Sum(x => x * x)));
            var scaleAndNorm = _be.ToArray(clip);
            Check.Close(norm, scaleAndNorm[1], 1e-6, 1e-6, "norm");
            Check.Close(theta > 0 && norm > theta ? theta / norm : 1.0, scaleAndNorm[0], 1e-6, 1e-6, "scale");
            if (theta > 0) ReferenceRnn.Clip(gd, theta);
            using var scalars = _be.FromArray(1, 3, [2f, float.NaN, float.NaN]); // lr 2
            _be.SgdUpdate(tp, tg, scalars, clip); // every tensor at once
            for (int i = 0; i < ps.Length; i++)
            {
                var want = Check.ToDouble(ps[i]);
                ReferenceRnn.Sgd(want, gd[i], 2.0);
                Check.Close(want, _be.ToArray(tp[i]), Tol, Tol, $"sgd {i}");
            }
            // Adam, three steps on the same (clipped) gradient, from the SGD result.
            var pd = tp.Select(t => Check.ToDouble(_be.ToArray(t))).ToArray();
            var m = shapes.Select(s => _be.Zeros(s.Item1, s.Item2)).ToArray();
            var v = shapes.Select(s => _be.Zeros(s.Item1, s.Item2)).ToArray();
            var md = pd.Select(a => new double[a.Length]).ToArray();
            var vd = pd.Select(a => new double[a.Length]).ToArray();
            _be.Upload(scalars, [1e-2f, float.NaN, float.NaN]); // lr 0.01
            using var stepsTaken = _be.Indices(1);
            for (int k = 1; k <= 3; k++)
            {
                _be.Upload(stepsTaken, [k - 1]);
                _be.AdamCorrections(stepsTaken.All, 0.9f, 0.999f, scalars);
                var sc = _be.ToArray(scalars);
                Check.Close(1e-2 / (1 - Math.Pow(0.9, k)), sc[1], 0, 1e-6, $"step size, step {k}");
                Check.Close(Math.Sqrt(1 - Math.Pow(0.999, k)), sc[2], 0, 1e-5, $"√(1 − β2^t), step {k}");
                _be.AdamUpdate(tp, tg, m, v, 0.9f, 0.999f, 1e-8f, scalars, clip);
                for (int i = 0; i < ps.Length; i++) ReferenceRnn.Adam(pd[i], gd[i], md[i], vd[i], 1e-2, k);
            }
            for (int i = 0; i < ps.Length; i++)
            {
                Check.Close(pd[i], _be.ToArray(tp[i]), Tol, Tol, $"adam p {i}");
                Check.Close(md[i], _be.ToArray(m[i]), 1e-7, 1e-5, $"adam m {i}");
                // 1e-4 relative: float32 (1 - 0.999f) is itself 1.3e-5 away from 0.001.
                Check.Close(vd[i], _be.ToArray(v[i]), 1e-9, 1e-4, $"adam v {i}");
            }
            foreach (var t in m.Concat(v)) t.Dispose();
        }
        finally
        {
            foreach (var t in tp.Concat(tg)) t.Dispose();
        }
    }
}
