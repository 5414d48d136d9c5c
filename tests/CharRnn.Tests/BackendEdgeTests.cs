using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Backends.Cpu;

namespace CharRnn.Tests;

/// <summary>
/// #26: what mutation testing found no fast test pinning, on every backend: argmax ties (the first maximum, as
/// <c>torch.argmax</c> and the book's greedy prediction take it), a GEMM refused for each single mismatched dimension,
/// the CPU's fused output layer over several 64-row blocks and a label view that does not start at 0, the minibatch
/// selection, and <see cref="IBackend.Overlap"/> running the foreground and every block exactly once.
/// </summary>
[TestFixtureSource(typeof(TestBackends), nameof(TestBackends.All))]
public class BackendEdgeTests(string backendName) : BackendFixture(backendName)
{

    [Test]
    public void ArgmaxTakesTheFirstOfTiedMaxima()
    {
        float[][] rows =
        [
            [1, 3, 3, 2], // tie after column 0
            [5, 5, 1, 0], // tie at column 0
            [0, 2, 1, 2], // tie at the last column
            [7, 7, 7, 7], // all equal
            [-1, -4, -1, -9], // negative maxima
        ];
        int cols = rows[0].Length;
        using var logits = _be.FromArray(rows.Length, cols, rows.SelectMany(r => r).ToArray());
        using var bias = _be.FromArray(1, cols, [0f, 0f, 0f, 0f]);
        using var idx = _be.FromArray(Enumerable.Repeat(-1, rows.Length).ToArray());
        _be.ArgmaxRows(logits.All, bias, idx.All);
        Assert.That(_be.ToArray(idx), Is.EqualTo(new[] { 1, 0, 1, 0, 0 }));
        // A tie made by the bias: logits + bias equal in columns 1 and 3.
        using var one = _be.FromArray(1, cols, [0f, 1f, 0f, 0.5f]);
        using var tied = _be.FromArray(1, cols, [0f, 0.5f, 0f, 1f]);
        using var first = _be.FromArray([-1]);
        _be.ArgmaxRows(one.All, tied, first.All);
        Assert.That(_be.ToArray(first), Is.EqualTo(new[] { 1 }));
    }

    [TestCase(5, 4, 3, 4, 3, 3, Description = "inner dimensions differ")]
    [TestCase(5, 4, 4, 3, 6, 3, Description = "C has a row too many")]
    [TestCase(5, 4, 4, 3, 5, 2, Description = "C has a column too few")]
    public void GemmRefusesEachMismatchedDimension(int m, int k, int kb, int n, int cRows, int cCols)
    {
        using var a = _be.Zeros(m, k);
        using var b = _be.Zeros(kb, n);
        using var c = _be.Zeros(cRows, cCols);
        Assert.That(() => _be.Gemm(false, false, 1f, a.All, b.All, 0f, c.All),
            Throws.InstanceOf<ArgumentException>().With.Message.Contains($"op(A) {m}×{k}, op(B) {kb}×{n}, C {cRows}×{cCols}"));
    }

    /// <summary>k = 0: C = β·C (an empty sum), on the CPU for any β; the GPU supports β = 0 only (and says so).</summary>
    [TestCase(0f)]
    [TestCase(0.5f)]
    public void GemmWithAnEmptyInnerDimensionScalesC(float beta)
    {
        using var a = _be.Zeros(3, 0);
        using var b = _be.Zeros(0, 4);
        var c0 = Rand(3 * 4);
        using var c = _be.FromArray(3, 4, c0);
        if (beta != 0 && !_be.RunsOnHost)
        {
            Assert.That(() => _be.Gemm(false, false, 1f, a.All, b.All, beta, c.All), Throws.TypeOf<NotSupportedException>());
            return;
        }
        _be.Gemm(false, false, 1f, a.All, b.All, beta, c.All);
        Assert.That(_be.ToArray(c), Is.EqualTo(c0.Select(x => beta * x).ToArray()));
    }

    /// <summary>Products big enough to be split across cores (≥ 2^21 multiply-adds: OpenBLAS by C's longer side, the
    /// managed GEMM by 4-row blocks), C both taller than wide and wider than tall, every transpose, views with offsets
    /// and strides: each part must land where it belongs. The op tests' shapes stay below the split.</summary>
    [Test]
    public void GemmSplitAcrossCoresMatchesDoubles([Values] bool transA, [Values] bool transB, [Values(0f, 0.5f)] float beta,
        [Values(0, 1)] int shape)
    {
        var (m, n, k) = shape == 0 ? (258, 129, 70) : (65, 301, 120);
        Assert.That((long)m * n * k, Is.GreaterThanOrEqualTo(Rnn.Backends.Cpu.CpuGemm.ParallelThreshold));
        int pad = 2, aRows = transA ? k : m, aCols = transA ? m : k, bRows = transB ? n : k, bCols = transB ? k : n;
        var a = Rand((aRows + pad) * aCols); var b = Rand((bRows + pad) * bCols); var c0 = Rand((m + pad) * (n + 3));
        using var ta = _be.FromArray(aRows + pad, aCols, a);
        using var tb = _be.FromArray(bRows + pad, bCols, b);
        using var tc = _be.FromArray(m + pad, n + 3, c0); // C is a column range: stride n + 3
        _be.Gemm(transA, transB, 1.5f, ta.RowRange(pad, aRows), tb.RowRange(pad, bRows), beta, tc.RowRange(pad, m).ColumnRange(1, n));
        var got = _be.ToArray(tc);
        var want = new double[m * n];
        var gotC = new float[m * n];
        for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
        {
            double sum = 0;
            for (int p = 0; p < k; p++)
                sum += (double)(transA ? a[(pad + p) * aCols + i] : a[(pad + i) * aCols + p]) *
                       (transB ? b[(pad + j) * bCols + p] : b[(pad + p) * bCols + j]);
            int at = (pad + i) * (n + 3) + 1 + j;
            want[i * n + j] = 1.5 * sum + beta * c0[at];
            gotC[i * n + j] = got[at];
        }
        Check.Close(want, gotC, 1e-4, 1e-5, "C");
        for (int i = 0; i < m + pad; i++)
        {
            int last = i * (n + 3) + n + 1;
            bool inside = i >= pad;
            Assert.That(got[i * (n + 3)], Is.EqualTo(c0[i * (n + 3)]), $"column 0 of row {i} untouched");
            Assert.That(got.AsSpan(last, 2).ToArray(), Is.EqualTo(c0.AsSpan(last, 2).ToArray()), $"the columns right of C, row {i}");
            if (!inside) Assert.That(got.AsSpan(i * (n + 3), n + 3).ToArray(), Is.EqualTo(c0.AsSpan(i * (n + 3), n + 3).ToArray()), $"row {i} above C");
        }
    }

    /// <summary>197 rows: three full 64-row blocks of the CPU's fused output layer and a short fourth, each on its own
    /// worker where there are cores; labels read through a view that starts 3 entries in.</summary>
    [Test]
    public void FusedOutputLayerOverSeveralBlocksMatchesDoubles()
    {
        int rows = 3 * CpuBackend.OutputBlockRows + 5, h = 9, v = 13, pad = 3;
        const float gradScale = 0.25f;
        var hv = Rand(rows * h); var w = Rand(h * v, 0.5); var b = Rand(v, 0.5);
        var labels = Enumerable.Range(0, rows + pad).Select(_ => _rng.NextInt(v)).ToArray();
        using var th = _be.FromArray(rows, h, hv);
        using var tw = _be.FromArray(h, v, w);
        using var tb = _be.FromArray(1, v, b);
        using var tl = _be.FromArray(labels);
        using var logits = _be.FromArray(rows, v, Enumerable.Repeat(float.NaN, rows * v).ToArray());
        using var dlogits = _be.FromArray(rows, v, Enumerable.Repeat(float.NaN, rows * v).ToArray());
        using var loss = _be.FromArray(rows, 1, Enumerable.Repeat(float.NaN, rows).ToArray());
        _be.OutputLayerForward(th.All, tw, tb, tl.Range(pad, rows), logits.All, dlogits.All, gradScale, loss.All);
        var gotLogits = _be.ToArray(logits); var gotD = _be.ToArray(dlogits); var gotLoss = _be.ToArray(loss);
        for (int r = 0; r < rows; r++)
        {
            var z = new double[v];
            for (int c = 0; c < v; c++)
            {
                double s = 0;
                for (int p = 0; p < h; p++) s += (double)hv[r * h + p] * w[p * v + c];
                z[c] = s;
            }
            Check.Close(z, gotLogits.AsSpan(r * v, v).ToArray(), 1e-5, 1e-5, $"logits row {r}");
            double max = z.Select((x, c) => x + b[c]).Max();
            double sum = z.Select((x, c) => Math.Exp(x + b[c] - max)).Sum();
            int label = labels[pad + r];
            Check.Close(new[] { Math.Log(sum) + max - (z[label] + b[label]) }, new[] { gotLoss[r] }, 1e-5, 1e-5, $"loss row {r}");
            var want = z.Select((x, c) => (Math.Exp(x + b[c] - max) / sum - (c == label ? 1 : 0)) * gradScale).ToArray();
            Check.Close(want, gotD.AsSpan(r * v, v).ToArray(), 1e-6, 1e-5, $"dlogits row {r}");
        }
    }

    [Test]
    public void SelectMinibatchCopiesTheCountersMinibatch()
    {
        int len = 6, minibatches = 4;
        var ex = Enumerable.Range(0, len * minibatches).Select(i => 100 + i).ToArray();
        var ey = Enumerable.Range(0, len * minibatches).Select(i => 500 + i).ToArray();
        using var epochX = _be.FromArray(ex);
        using var epochY = _be.FromArray(ey);
        using var x = _be.FromArray(Enumerable.Repeat(-1, len).ToArray());
        using var y = _be.FromArray(Enumerable.Repeat(-1, len).ToArray());
        using var counters = _be.FromArray([9, 9, 2, 0, 0, 0]); // the four step counters start 2 in: minibatch 2
        _be.SelectMinibatch(counters.Range(2, 4), epochX, epochY, x, y);
        Assert.That(_be.ToArray(x), Is.EqualTo(ex[(2 * len)..(3 * len)]));
        Assert.That(_be.ToArray(y), Is.EqualTo(ey[(2 * len)..(3 * len)]));
    }

    /// <summary>A draw exactly equal to p keeps its element (PyTorch's <c>bernoulli(1 − p)</c> keeps u ≥ p): p is set to
    /// element 5's own draw, so a strict comparison would drop it.</summary>
    [Test]
    public void DropoutKeepsADrawEqualToP()
    {
        int rows = 3, cols = 4;
        float p = Rnn.Backends.Cpu.CpuKernels.DropoutUniform(99UL, 7UL, 5UL);
        Assert.That(p, Is.GreaterThan(0f).And.LessThan(1f));
        using var x = _be.FromArray(rows, cols, Enumerable.Repeat(1f, rows * cols).ToArray());
        using var y = _be.Zeros(rows, cols);
        using var mask = _be.Zeros(rows, cols);
        using var count = _be.FromArray([7, 0]);
        _be.DropoutForward(x.All, p, 99UL, count.All, y.All, mask.All);
        Assert.That(_be.ToArray(mask)[5], Is.EqualTo(1f / (1f - p)), "u == p is kept");
    }

    /// <summary>The foreground and each block run once, each block's ops issued on the backend it is handed; a nested
    /// Overlap inside a block runs too. (Whether blocks run on helper threads is a speed choice: results are equal.)</summary>
    [Test]
    public void OverlapRunsTheForegroundAndEveryBlockOnce([Values(0, 1, 5)] int blocks)
    {
        using var fg = _be.Zeros(1, 4);
        using var fgValue = _be.FromArray(1, 4, [2f, 2f, 2f, 2f]);
        using var nestedValue = _be.FromArray(1, 4, [10f, 10f, 10f, 10f]);
        var values = Enumerable.Range(0, blocks).Select(i => _be.FromArray(1, 4, Enumerable.Repeat(i + 1f, 4).ToArray())).ToArray();
        var outs = Enumerable.Range(0, blocks + 1).Select(_ => _be.Zeros(1, 4)).ToArray();
        try
        {
            int fgRuns = 0;
            var ran = new int[blocks];
            var background = Enumerable.Range(0, blocks).Select(i => (Action<IBackend>)(b =>
            {
                Interlocked.Increment(ref ran[i]);
                b.Copy(values[i].All, outs[i].All);
                if (i == 0) b.Overlap(() => { }, [inner => inner.Copy(nestedValue.All, outs[blocks].All)]);
            })).ToList();
            _be.Overlap(() => { fgRuns++; _be.Copy(fgValue.All, fg.All); }, background);
            _be.Synchronize();
            Assert.That(fgRuns, Is.EqualTo(1));
            Assert.That(ran, Is.All.EqualTo(1));
            Assert.That(_be.ToArray(fg), Is.EqualTo(new[] { 2f, 2f, 2f, 2f }));
            for (int i = 0; i < blocks; i++) Assert.That(_be.ToArray(outs[i]), Is.All.EqualTo(i + 1f), $"block {i}");
            Assert.That(_be.ToArray(outs[blocks]), Is.All.EqualTo(blocks > 0 ? 10f : 0f), "the nested block");
        }
        finally
        {
            foreach (var t in outs.Concat(values)) t.Dispose();
        }
    }
}

/// <summary>#26: the CPU backend's engine choice and what <c>charrnn info</c> prints of it (pinned before only by the
/// CLI tests, which mutation testing does not run).</summary>
public class CpuBackendChoiceTests
{
    [Test]
    public void OpenBlasWhenItLoadsElseManaged()
    {
        using var be = new CpuBackend();
        Assert.That(be.Engine, Is.EqualTo(CpuGemm.OpenBlasAvailable ? CpuGemm.Engine.OpenBlas : CpuGemm.Engine.Managed));
        Assert.That(be.Name, Is.EqualTo("cpu"));
        Assert.That(be.RunsOnHost, Is.True);
        long? free = be.MemoryAvailable;
        Assert.That(free, Is.GreaterThan(0).And.LessThanOrEqualTo(GC.GetGCMemoryInfo().TotalAvailableMemoryBytes));
    }

    [Test]
    public void DescriptionNamesTheEngine()
    {
        using var managed = new CpuBackend(CpuGemm.Engine.Managed);
        string vector = System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "on" : "off";
        Assert.That(managed.Description, Is.EqualTo($"cpu (managed GEMM, Vector256 {vector}, {Environment.ProcessorCount} cores)"));
        if (!CpuGemm.OpenBlasAvailable) Assert.Ignore("libopenblas.so.0 is not installed");
        using var blas = new CpuBackend(CpuGemm.Engine.OpenBlas);
        Assert.That(blas.Description, Is.EqualTo($"cpu ({CpuGemm.OpenBlasConfig()}, {Environment.ProcessorCount} cores)"));
        Assert.That(CpuGemm.OpenBlasConfig(), Does.Contain("OpenBLAS"));
    }

    /// <summary>A profiler times each outermost op once: the fused output layer counts as itself, not as the softmax
    /// it calls; two GEMMs are two calls.</summary>
    [Test]
    public void AProfilerCountsEachOutermostOp()
    {
        using var be = new CpuBackend(CpuGemm.Engine.Managed);
        var profiler = new OpProfiler();
        be.Profiler = profiler;
        using var a = be.FromArray(2, 3, [1f, 2f, 3f, 4f, 5f, 6f]);
        using var b = be.FromArray(3, 2, [1f, 0f, 0f, 1f, 1f, 1f]);
        using var c = be.Zeros(2, 2);
        be.Gemm(false, false, 1f, a.All, b.All, 0f, c.All);
        be.Gemm(false, false, 1f, a.All, b.All, 0f, c.All);
        using var bias = be.Zeros(1, 2);
        using var labels = be.FromArray([0, 1]);
        using var logits = be.Zeros(2, 2);
        using var dlogits = be.Zeros(2, 2);
        using var loss = be.Zeros(2, 1);
        be.OutputLayerForward(a.All, b, bias, labels.All, logits.All, dlogits.All, 1f, loss.All);
        var times = profiler.Times;
        Assert.That(times.Keys, Is.EquivalentTo(new[] { "Gemm", "OutputLayerForward" }));
        Assert.That(times["Gemm"].Calls, Is.EqualTo(2));
        Assert.That(times["OutputLayerForward"].Calls, Is.EqualTo(1));
    }
}
