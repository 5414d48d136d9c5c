using System.Numerics.Tensors;

namespace CharRnn.Rnn.Backends.Cpu;

/// <summary>
/// The CPU backend: float32 on host arrays. GEMMs through OpenBLAS (single-threaded, split across cores here) or the
/// managed kernel; elementwise work through fused Vector256 loops (<see cref="CpuKernels"/>) and TensorPrimitives;
/// <see cref="Overlap"/> runs the recurrence on one core while the others do the big independent products.
/// Every op is deterministic: each output element is computed by one thread in a fixed order, and reductions run
/// in row order whatever the thread count.
/// </summary>
public sealed partial class CpuBackend : IBackend
{
    /// <summary>True on a thread that is inside an <see cref="Overlap"/> region: ops there must not fan out again.</summary>
    [ThreadStatic] static bool t_inOverlap;

    readonly CpuGemm.Engine _engine;
    readonly int _vocabularyMultiple;
    double _lossSum;
    long _lossRows;

    /// <param name="engine">The GEMM: OpenBLAS where it loads, else the managed one.</param>
    /// <param name="vocabularyMultiple">Store the output layer's vocabulary dimension padded to a multiple of this (1:
    /// not padded). The GPU pads to 8; the tests run that layout here too, so its pad handling is checked on the CPU.</param>
    public CpuBackend(CpuGemm.Engine? engine = null, int vocabularyMultiple = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabularyMultiple, 1);
        _vocabularyMultiple = vocabularyMultiple;
        _engine = engine ?? (CpuGemm.OpenBlasAvailable ? CpuGemm.Engine.OpenBlas : CpuGemm.Engine.Managed);
        if (_engine == CpuGemm.Engine.OpenBlas && !CpuGemm.OpenBlasAvailable)
            throw new CharRnnException("OpenBLAS was requested but libopenblas.so.0 could not be loaded. Install libopenblas0-pthread, or use --blas managed.");
        // Stryker disable once all : speed only — OpenBLAS's own threads divide C among them; no test here can see it
        if (_engine == CpuGemm.Engine.OpenBlas) CpuGemm.UseSingleThreadedOpenBlas();
    }

    public CpuGemm.Engine Engine => _engine;
    public string Name => "cpu";

    public string Description => _engine == CpuGemm.Engine.OpenBlas
        ? $"cpu ({CpuGemm.OpenBlasConfig()}, {Environment.ProcessorCount} cores)"
        : $"cpu (managed GEMM, Vector256 {(System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "on" : "off")}, {Environment.ProcessorCount} cores)";

    public InputMode DefaultInputMode => InputMode.Gather;
    public int PaddedVocabulary(int vocab) => (vocab + _vocabularyMultiple - 1) / _vocabularyMultiple * _vocabularyMultiple;
    public bool RunsOnHost => true;

    /// <summary>The memory the GC may use (physical memory or the container's limit) less what the process holds.</summary>
    public long? MemoryAvailable => Math.Max(0, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes - Environment.WorkingSet);
    public OpProfiler? Profiler { get; set; }

    /// <summary>Times the calling op when profiling (see <see cref="OpProfiler"/>); free otherwise.</summary>
    OpProfiler.Scope Op([System.Runtime.CompilerServices.CallerMemberName] string op = "") => Profiler?.Begin(op, this) ?? default;

    public Tensor Zeros(int rows, int cols) => new CpuTensor(rows, cols);
    public IndexBuffer Indices(int length) => new CpuIndices(length);

    // Host tensors' values: the same views the declared ops' twins use (HostView).
    static float[] D(Tensor t) => HostView.Array(t);
    static Span<float> S(Mat m) => HostView.All(m);
    static Span<float> Row(Mat m, int r) => HostView.Row(m, r);
    static ReadOnlySpan<int> I(IdxView v) => HostView.Ints(v);

    public void Upload(Tensor dst, ReadOnlySpan<float> src) => src.CopyTo(D(dst));
    public void Download(Tensor src, Span<float> dst) => D(src).AsSpan(0, src.Length).CopyTo(dst);
    public void Upload(IndexBuffer dst, ReadOnlySpan<int> src) => src.CopyTo(((CpuIndices)dst).Data);
    public void Download(IndexBuffer src, Span<int> dst) => ((CpuIndices)src).Data.AsSpan().CopyTo(dst);

    /// <summary>A declared op's host twin, timed under its IBackend name (what <c>bench --profile</c> has always shown).</summary>
    public void Run<TArgs>(HostedOp<TArgs> op, in TArgs args) where TArgs : struct, IKernelArgs
    {
        using var _ = Op(op.Method);
        op.Host(args);
    }

    public void Zero(Mat m)
    {
        using var _ = Op();
        S(m).Clear();
    }

    public void Copy(Mat src, Mat dst)
    {
        using var _ = Op();
        S(src).CopyTo(S(dst));
    }

    public void ScatterAddRows(IdxView tokens, Mat src, Tensor table)
    {
        using var _ = Op();
        var t = I(tokens);
        var w = D(table);
        for (int r = 0; r < src.Rows; r++)
        {
            var dst = w.AsSpan(t[r] * table.Cols, table.Cols);
            TensorPrimitives.Add(dst, Row(src, r), dst);
        }
    }

    public void Gemm(bool transA, bool transB, float alpha, Mat a, Mat b, float beta, Mat c)
    {
        using var _ = Op();
        int m = transA ? a.Cols : a.Rows, k = transA ? a.Rows : a.Cols;
        int kb = transB ? b.Cols : b.Rows, n = transB ? b.Rows : b.Cols;
        if (k != kb || c.Rows != m || c.Cols != n)
            throw new ArgumentException($"GEMM shapes: op(A) {m}×{k}, op(B) {kb}×{n}, C {c.Rows}×{c.Cols}");
        // Stryker disable once Boolean,Logical : threading only — CpuGemm splits C, never k, so every split gives the same C
        CpuGemm.Sgemm(_engine, transA, transB, m, n, k, alpha, D(a.Tensor), a.Offset, a.Stride,
            D(b.Tensor), b.Offset, b.Stride, beta, D(c.Tensor), c.Offset, c.Stride, parallel: !t_inOverlap);
    }

    /// <summary>Rows per block of the fused output layer (<see cref="HostView.BlockRows"/>).</summary>
    public const int OutputBlockRows = HostView.BlockRows;

    public void OutputLayerForward(Mat h, Tensor whq, Tensor bq, IdxView labels, Mat logits, Mat dlogits, float gradScale, Mat rowLoss)
    {
        using var _ = Op();
        int rows = h.Rows;
        int blocks = (rows + OutputBlockRows - 1) / OutputBlockRows;
        // Stryker disable once all : how many threads share the blocks, not what each block computes
        int workers = t_inOverlap || Profiler != null ? 1 : Math.Min(blocks, Environment.ProcessorCount);
        void Work(int w)
        {
            // Contiguous runs of blocks per worker; each block: its GEMM on this thread, then its softmax.
            for (int blk = blocks * w / workers; blk < blocks * (w + 1) / workers; blk++)
            {
                int r0 = blk * OutputBlockRows, n = Math.Min(OutputBlockRows, rows - r0);
                var hb = h.RowRange(r0, n);
                var lg = logits.RowRange(r0, n);
                // Stryker disable once Boolean : threading only (see Gemm)
                CpuGemm.Sgemm(_engine, false, false, n, whq.Cols, h.Cols, 1f, D(h.Tensor), hb.Offset, hb.Stride,
                    D(whq), 0, whq.Cols, 0f, D(lg.Tensor), lg.Offset, lg.Stride, parallel: false);
                using (Op("SoftmaxCrossEntropy"))
                    CpuKernels.SoftmaxXentRows(lg, bq, new IdxView(labels.Buffer, labels.Offset + r0, n), dlogits.RowRange(r0, n),
                        gradScale, rowLoss.RowRange(r0, n));
            }
        }
        if (workers > 1) Parallel.For(0, workers, Work); else Work(0);
    }

    public void AccumulateLoss(Mat rowLoss)
    {
        using var _ = Op();
        double s = 0;
        foreach (var v in S(rowLoss)) s += v;
        _lossSum += s;
        _lossRows += rowLoss.Rows;
    }

    public void ArgmaxRows(Mat logits, Tensor bias, IdxView dst)
    {
        using var _ = Op();
        var o = ((CpuIndices)dst.Buffer).Data;
        var b = D(bias);
        for (int r = 0; r < logits.Rows; r++)
        {
            var z = Row(logits, r);
            int best = 0;
            float bestV = float.NegativeInfinity;
            for (int c = 0; c < z.Length; c++)
            {
                float v = z[c] + b[c];
                if (v > bestV || c == 0) { bestV = v; best = c; }
            }
            o[dst.Offset + r] = best;
        }
    }

    public void ResetLoss() { _lossSum = 0; _lossRows = 0; }
    public (double Sum, long Rows) ReadLoss() => (_lossSum, _lossRows);
    public void ComputeClipScale(IReadOnlyList<Tensor> grads, float theta, Tensor clip)
    {
        using var _ = Op();
        double ss = 0;
        foreach (var g in grads) ss += CpuKernels.SumOfSquares(D(g).AsSpan(0, g.Length));
        double norm = Math.Sqrt(ss);
        var c = D(clip);
        // Stryker disable once Equality : at norm == θ the scale θ/norm is exactly 1, clipped or not
        bool over = norm > theta;
        c[0] = theta > 0 && float.IsFinite(theta) && over ? (float)(theta / norm) : 1f;
        c[1] = (float)norm;
    }

    public void SgdUpdate(IReadOnlyList<Tensor> ps, IReadOnlyList<Tensor> gs, Tensor scalars, Tensor clip)
    {
        using var _ = Op();
        float k = -D(scalars)[0] * D(clip)[0];
        for (int i = 0; i < ps.Count; i++)
        {
            var pd = D(ps[i]).AsSpan(0, ps[i].Length);
            TensorPrimitives.MultiplyAdd(D(gs[i]).AsSpan(0, gs[i].Length), k, pd, pd); // p −= lr·scale·g
        }
    }

    /// <summary>In float32 with MathF.Pow, as the optimizer always computed them here (the CPU's results stay as they were).</summary>
    public void AdamUpdate(IReadOnlyList<Tensor> ps, IReadOnlyList<Tensor> gs, IReadOnlyList<Tensor> ms, IReadOnlyList<Tensor> vs,
        float beta1, float beta2, float eps, Tensor scalars, Tensor clip)
    {
        using var _ = Op();
        var s = D(scalars);
        for (int i = 0; i < ps.Count; i++)
        {
            int n = ps[i].Length;
            CpuKernels.Adam(D(ps[i]).AsSpan(0, n), D(gs[i]).AsSpan(0, n), D(ms[i]).AsSpan(0, n), D(vs[i]).AsSpan(0, n), D(clip)[0],
                beta1, beta2, eps, s[1], s[2]);
        }
    }

    public void SelectMinibatch(IdxView counters, IndexBuffer epochX, IndexBuffer epochY, IndexBuffer x, IndexBuffer y)
    {
        int first = I(counters)[0] * x.Length;
        ((CpuIndices)epochX).Data.AsSpan(first, x.Length).CopyTo(((CpuIndices)x).Data);
        ((CpuIndices)epochY).Data.AsSpan(first, y.Length).CopyTo(((CpuIndices)y).Data);
    }

    public void AdvanceStep(IdxView counters)
    {
        StepCounters.Advance(((CpuIndices)counters.Buffer).Data.AsSpan(counters.Offset, StepCounters.Length));
    }

    public void Overlap(Action foreground, IReadOnlyList<Action<IBackend>> background)
    {
        int next = -1;
        void Drain()
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < background.Count) background[i](this);
        }
        void InRegion(Action a)
        {
            bool outer = t_inOverlap;
            // Stryker disable once Boolean : the flag only keeps nested work on this thread (speed); results are the same
            t_inOverlap = true;
            try { a(); }
            // Stryker disable once Block : as above: a flag left set only makes later ops single-threaded
            finally { t_inOverlap = outer; }
        }
        // Stryker disable once all : sequential or on helper threads, the same blocks run once each (BackendEdgeTests)
        bool sequential = t_inOverlap || Environment.ProcessorCount == 1 || background.Count == 0 || Profiler != null;
        if (sequential)
        {
            InRegion(() => { foreground(); Drain(); });
            return;
        }
        // Stryker disable once Linq : more helpers than blocks find nothing left to drain
        var helpers = new Task[Math.Min(Environment.ProcessorCount - 1, background.Count)];
        for (int i = 0; i < helpers.Length; i++) helpers[i] = Task.Run(() => InRegion(Drain));
        try
        {
            InRegion(() => { foreground(); Drain(); });
        }
        finally
        {
            Task.WaitAll(helpers);
        }
    }

    public void Synchronize() { }
    public void Dispose() { }
}
