using System.Numerics.Tensors;
using CharRnn.Rnn.Model;

namespace CharRnn.Rnn.Backends.Cpu;

/// <summary>Host-memory tensor of the CPU backend.</summary>
public sealed class CpuTensor(int rows, int cols) : Tensor(rows, cols)
{
    public float[] Data { get; } = new float[rows * cols];
    public override void Dispose() { }
}

public sealed class CpuIndices(int length) : IndexBuffer(length)
{
    public int[] Data { get; } = new int[length];
    public override void Dispose() { }
}

/// <summary>
/// The CPU backend: float32 on host arrays. GEMMs through OpenBLAS (or the managed kernel), elementwise work through
/// <see cref="TensorPrimitives"/>, the big row-parallel ops (softmax cross-entropy) across all cores. Every op is
/// deterministic: reductions run in a fixed order whatever the thread count.
/// </summary>
public sealed class CpuBackend : IBackend
{
    readonly CpuGemm.Engine _engine;
    double _lossSum;
    long _lossRows;
    double _gradNorm;
    float _scale = 1f;
    float[] _rowLoss = [];

    public CpuBackend(CpuGemm.Engine? engine = null)
    {
        _engine = engine ?? (CpuGemm.OpenBlasAvailable ? CpuGemm.Engine.OpenBlas : CpuGemm.Engine.Managed);
        if (_engine == CpuGemm.Engine.OpenBlas && !CpuGemm.OpenBlasAvailable)
            throw new CharRnnException("OpenBLAS was requested but libopenblas.so.0 could not be loaded. Install libopenblas0-pthread, or use --blas managed.");
    }

    public CpuGemm.Engine Engine => _engine;
    public string Name => "cpu";

    public string Description => _engine == CpuGemm.Engine.OpenBlas
        ? $"cpu ({CpuGemm.OpenBlasConfig()}, {Environment.ProcessorCount} cores)"
        : $"cpu (managed GEMM, Vector256 {(System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "on" : "off")}, {Environment.ProcessorCount} cores)";

    public InputMode DefaultInputMode => InputMode.Gather;

    public Tensor Zeros(int rows, int cols) => new CpuTensor(rows, cols);
    public IndexBuffer Indices(int length) => new CpuIndices(length);

    static float[] D(Tensor t) => ((CpuTensor)t).Data;
    static Span<float> S(Mat m) => ((CpuTensor)m.Tensor).Data.AsSpan(m.Offset, m.Length);
    static Span<float> Row(Mat m, int r) => ((CpuTensor)m.Tensor).Data.AsSpan(m.Offset + r * m.Cols, m.Cols);
    static ReadOnlySpan<int> I(IdxView v) => ((CpuIndices)v.Buffer).Data.AsSpan(v.Offset, v.Length);

    public void Upload(Tensor dst, ReadOnlySpan<float> src) => src.CopyTo(D(dst));
    public void Download(Tensor src, Span<float> dst) => D(src).AsSpan(0, src.Length).CopyTo(dst);
    public void Upload(IndexBuffer dst, ReadOnlySpan<int> src) => src.CopyTo(((CpuIndices)dst).Data);
    public void Download(IndexBuffer src, Span<int> dst) => ((CpuIndices)src).Data.AsSpan().CopyTo(dst);

    public void Zero(Mat m) => S(m).Clear();
    public void Copy(Mat src, Mat dst) => S(src).CopyTo(S(dst));

    public void OneHotScatter(IdxView tokens, Mat dst)
    {
        S(dst).Clear();
        var t = I(tokens);
        for (int r = 0; r < dst.Rows; r++) Row(dst, r)[t[r]] = 1f;
    }

    public void GatherRows(IdxView tokens, Tensor table, Mat dst)
    {
        var t = I(tokens);
        var w = D(table);
        for (int r = 0; r < dst.Rows; r++) w.AsSpan(t[r] * table.Cols, table.Cols).CopyTo(Row(dst, r));
    }

    public void ScatterAddRows(IdxView tokens, Mat src, Tensor table)
    {
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
        int m = transA ? a.Cols : a.Rows, k = transA ? a.Rows : a.Cols;
        int kb = transB ? b.Cols : b.Rows, n = transB ? b.Rows : b.Cols;
        if (k != kb || c.Rows != m || c.Cols != n)
            throw new ArgumentException($"GEMM shapes: op(A) {m}×{k}, op(B) {kb}×{n}, C {c.Rows}×{c.Cols}");
        CpuGemm.Sgemm(_engine, transA, transB, m, n, k, alpha, D(a.Tensor), a.Offset, a.Cols,
            D(b.Tensor), b.Offset, b.Cols, beta, D(c.Tensor), c.Offset, c.Cols);
    }

    public void BiasActivationForward(Activation act, Mat pre, Tensor bias, Tensor? bias2, Mat h)
    {
        var b = D(bias).AsSpan(0, bias.Length);
        Span<float> sum = pre.Cols <= 4096 ? stackalloc float[pre.Cols] : new float[pre.Cols];
        if (bias2 != null) TensorPrimitives.Add(b, D(bias2).AsSpan(0, bias2.Length), sum); else b.CopyTo(sum);
        for (int r = 0; r < pre.Rows; r++)
        {
            var hr = Row(h, r);
            TensorPrimitives.Add(Row(pre, r), sum, hr);
            if (act == Activation.Tanh) TensorPrimitives.Tanh(hr, hr);
            else TensorPrimitives.Max(hr, 0f, hr);
        }
    }

    public void ActivationBackward(Activation act, Mat dh, Mat h, Mat dpre)
    {
        var g = S(dh);
        var y = S(h);
        var d = S(dpre);
        if (act == Activation.Tanh)
        {
            // dpre = dh * (1 - h^2) = dh - dh*h*h
            for (int i = 0; i < d.Length; i++) d[i] = g[i] * (1f - y[i] * y[i]);
        }
        else
        {
            for (int i = 0; i < d.Length; i++) d[i] = y[i] > 0f ? g[i] : 0f;
        }
    }

    public void SoftmaxCrossEntropy(Mat logits, Tensor bias, IdxView labels, Mat dlogits, float gradScale)
    {
        int rows = logits.Rows;
        if (_rowLoss.Length < rows) _rowLoss = new float[rows];
        var rowLoss = _rowLoss;
        var lab = ((CpuIndices)labels.Buffer).Data;
        int labOff = labels.Offset;
        var b = D(bias);
        void DoRow(int r)
        {
            var z = Row(logits, r);
            var d = Row(dlogits, r);
            var bb = b.AsSpan(0, z.Length);
            TensorPrimitives.Add(z, bb, d);
            float max = TensorPrimitives.Max(d);
            TensorPrimitives.Subtract(d, max, d);
            float picked = d[lab[labOff + r]];
            TensorPrimitives.Exp(d, d);
            float sum = TensorPrimitives.Sum(d);
            // loss = log(sum) - (z_y - max)
            rowLoss[r] = MathF.Log(sum) - picked;
            TensorPrimitives.Multiply(d, gradScale / sum, d);
            d[lab[labOff + r]] -= gradScale;
        }
        if ((long)rows * logits.Cols >= 1 << 16 && Environment.ProcessorCount > 1)
            Parallel.For(0, Environment.ProcessorCount, ch =>
            {
                int p = Environment.ProcessorCount;
                for (int r = rows * ch / p; r < rows * (ch + 1) / p; r++) DoRow(r);
            });
        else
            for (int r = 0; r < rows; r++) DoRow(r);
        double s = 0;
        for (int r = 0; r < rows; r++) s += rowLoss[r];
        _lossSum += s;
        _lossRows += rows;
    }

    public void ColumnSum(Mat src, Tensor dst)
    {
        var d = D(dst).AsSpan(0, dst.Length);
        d.Clear();
        for (int r = 0; r < src.Rows; r++) TensorPrimitives.Add(d, Row(src, r), d);
    }

    public void ArgmaxRows(Mat logits, Tensor bias, IdxView dst)
    {
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
                if (v > bestV || (c == 0)) { bestV = v; best = c; }
            }
            o[dst.Offset + r] = best;
        }
    }

    public void ResetLoss() { _lossSum = 0; _lossRows = 0; }
    public (double Sum, long Rows) ReadLoss() => (_lossSum, _lossRows);

    public void ComputeClipScale(IReadOnlyList<Tensor> grads, float theta)
    {
        double ss = 0;
        foreach (var g in grads)
        {
            var d = D(g);
            double part = 0;
            for (int i = 0; i < g.Length; i++) part += (double)d[i] * d[i];
            ss += part;
        }
        _gradNorm = Math.Sqrt(ss);
        _scale = theta > 0 && float.IsFinite(theta) && _gradNorm > theta ? (float)(theta / _gradNorm) : 1f;
    }

    public double ReadGradNorm() => _gradNorm;

    public void SgdUpdate(Tensor p, Tensor g, float lr)
    {
        var pd = D(p).AsSpan(0, p.Length);
        // p -= lr * scale * g
        TensorPrimitives.MultiplyAdd(D(g).AsSpan(0, g.Length), -lr * _scale, pd, pd);
    }

    public void AdamUpdate(Tensor p, Tensor g, Tensor m, Tensor v, float lr, float beta1, float beta2, float eps, int step)
    {
        var pd = D(p); var gd = D(g); var md = D(m); var vd = D(v);
        float bc1 = 1f - MathF.Pow(beta1, step);
        float bc2Sqrt = MathF.Sqrt(1f - MathF.Pow(beta2, step));
        float stepSize = lr / bc1;
        float s = _scale;
        for (int i = 0; i < p.Length; i++)
        {
            float gi = gd[i] * s;
            float mi = md[i] = beta1 * md[i] + (1f - beta1) * gi;
            float vi = vd[i] = beta2 * vd[i] + (1f - beta2) * gi * gi;
            pd[i] -= stepSize * mi / (MathF.Sqrt(vi) / bc2Sqrt + eps);
        }
    }

    public void Synchronize() { }
    public void Dispose() { }
}
