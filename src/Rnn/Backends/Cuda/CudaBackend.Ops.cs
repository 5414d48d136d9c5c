using CharRnn.Cuda;
using CharRnn.Interop;
using CharRnn.Rnn.Backends.Ops;

namespace CharRnn.Rnn.Backends.Cuda;

/// <summary>The CUDA backend's ops: each a cuBLAS call or a launch of a kernel from <c>kernels/*.cu</c> on this instance's stream.</summary>
public sealed unsafe partial class CudaBackend
{
    /// <summary>The elementwise and gate ops (<c>Backends/Ops</c>): each its kernel, launched from its declaration.</summary>
    public void Run<TArgs>(HostedOp<TArgs> op, in TArgs args) where TArgs : struct, IKernelArgs => Launch(op, args);

    /// <summary>Two launches: the positions grouped by token in order (one block), then every table element adds its
    /// token's rows in that order — the CPU's additions, O(n·H), no float atomics.</summary>
    public void ScatterAddRows(IdxView tokens, Mat src, Tensor table)
    {
        int n = src.Rows, v = table.Rows;
        var order = new DevicePointer(OrderScratch(2 * v + 1 + n).Pointer);
        Launch(TokenRowOrderOp.Instance, new(tokens, v, order));
        Launch(ScatterAddOrderedOp.Instance, new(order, src, table.All));
    }
    /// <summary>The scatter-add's scratch, one buffer per size and kept until the backend goes: a recorded step holds
    /// its address, so it is never freed or moved under a recording.</summary>
    DeviceBuffer<int> OrderScratch(int length)
    {
        if (_orders.TryGetValue(length, out var b)) return b;
        NotWhileRecording("allocating the scatter-add's scratch");
        return _orders[length] = _ctx.Allocate<int>(length);
    }

    public void Gemm(bool transA, bool transB, float alpha, Mat a, Mat b, float beta, Mat c)
    {
        int m = transA ? a.Cols : a.Rows, k = transA ? a.Rows : a.Cols;
        int kb = transB ? b.Cols : b.Rows, n = transB ? b.Rows : b.Cols;
        if (k != kb || c.Rows != m || c.Cols != n)
            throw new ArgumentException($"GEMM shapes: op(A) {m}×{k}, op(B) {kb}×{n}, C {c.Rows}×{c.Cols}");
        if (m == 0 || n == 0) return;
        using var _ = Op($"Gemm {(transA ? "T" : "N")}{(transB ? "T" : "N")} {m}x{n}x{k}"); // by shape: the small recurrent ones apart from the big ones
        if (k == 0)
        {
            if (beta == 0) Zero(c);
            else throw new NotSupportedException("GEMM with k = 0 and beta ≠ 0");
            return;
        }
        _blas.SgemmRowMajor(transA, transB, m, n, k, alpha, P(a), a.Stride, P(b), b.Stride, beta, P(c), c.Stride);
    }

    public void OutputLayerForward(Mat h, Tensor whq, Tensor bq, IdxView labels, Mat logits, Mat dlogits, float gradScale, Mat rowLoss)
    {
        Gemm(false, false, 1f, h, whq.All, 0f, logits);
        this.SoftmaxCrossEntropy(logits, bq, labels, dlogits, gradScale, rowLoss);
    }

    public void AccumulateLoss(Mat rowLoss) => Launch(LossAccumulateOp.Instance, new(rowLoss, new DevicePointer(_loss.Pointer)));

    public void ArgmaxRows(Mat logits, Tensor bias, IdxView dst) => Launch(ArgmaxRowsOp.Instance, new(logits, bias, dst));

    public void ResetLoss()
    {
        _ctx.Bind();
        CudaCheck.ThrowIfFailed(CudaDriver.cuMemsetD32Async(_loss.Pointer, 0, 4, _stream.Handle));
    }

    public (double Sum, long Rows) ReadLoss()
    {
        var a = new double[2];
        DownloadBytes(_loss.Pointer, System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()));
        return (a[0], (long)a[1]);
    }

    public void ComputeClipScale(IReadOnlyList<Tensor> grads, float theta, Tensor clip)
    {
        int count = grads.Count * SumSquaresOp.Blocks;
        if (_state.Partials.Length < count)
        {
            NotWhileRecording("growing the clipping buffer");
            _ctx.Synchronize(); // both lanes: either may have used the old buffer
            _state.Partials.Dispose();
            _state.Partials = _ctx.Allocate<double>(count);
        }
        var partials = new DevicePointer(_state.Partials.Pointer);
        Launch(SumSquaresOp.Instance, new(Table(grads), grads.Count, partials));
        float t = theta > 0 && float.IsFinite(theta) ? theta : 0f;
        Launch(ClipFinalizeOp.Instance, new(partials, count, t, clip));
    }

    /// <summary>The longest tensor of a multi-tensor update: its grid covers that one (blocks along x, within the cap).</summary>
    static long Longest(IReadOnlyList<Tensor> ps) => ps.Max(p => (long)p.Length);

    public void SgdUpdate(IReadOnlyList<Tensor> ps, IReadOnlyList<Tensor> gs, Tensor scalars, Tensor clip) =>
        Launch(SgdUpdateOp.Instance, new(Table(ps, gs), ps.Count, Longest(ps), scalars, clip));

    public void AdamUpdate(IReadOnlyList<Tensor> ps, IReadOnlyList<Tensor> gs, IReadOnlyList<Tensor> ms, IReadOnlyList<Tensor> vs,
        float beta1, float beta2, float eps, Tensor scalars, Tensor clip) =>
        Launch(AdamUpdateOp.Instance, new(Table(ps, gs, ms, vs), ps.Count, Longest(ps), beta1, beta2, eps, scalars, clip));

    public void SelectMinibatch(IdxView counters, IndexBuffer epochX, IndexBuffer epochY, IndexBuffer x, IndexBuffer y) =>
        Launch(SelectMinibatchOp.Instance, new(counters, epochX.All, epochY.All, x.All, y.All));

    public void AdvanceStep(IdxView counters) => Launch(StepAdvanceOp.Instance, new(counters));
}
