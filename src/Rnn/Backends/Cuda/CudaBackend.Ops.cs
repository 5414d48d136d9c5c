using CharRnn.Cuda;
using CharRnn.Interop;

namespace CharRnn.Rnn.Backends.Cuda;

/// <summary>The CUDA backend's ops: each a cuBLAS call or a launch of a kernel from <c>kernels/*.cu</c> on this instance's stream.</summary>
public sealed unsafe partial class CudaBackend
{
    public void OneHotScatter(IdxView tokens, Mat dst) =>
        Launch("one_hot_scatter", Blocks((long)dst.Rows * dst.Cols), Ptr(P(tokens)), dst.Rows, dst.Cols, Ptr(PC(dst)));

    public void GatherRows(IdxView tokens, Tensor table, Mat dst) =>
        Launch("gather_rows", Blocks((long)dst.Rows * dst.Cols), Ptr(P(tokens)), dst.Rows, dst.Cols, Ptr(P(table)), Ptr(PC(dst)));

    /// <summary>Two launches: the positions grouped by token in order (one block), then every table element adds its
    /// token's rows in that order — the CPU's additions, O(n·H), no float atomics.</summary>
    public void ScatterAddRows(IdxView tokens, Mat src, Tensor table)
    {
        int n = src.Rows, v = table.Rows;
        var order = OrderScratch(2 * v + 1 + n);
        Launch("token_row_order", 1, Ptr(P(tokens)), n, v, Ptr(order.Pointer));
        Launch("scatter_add_ordered", Blocks((long)v * src.Cols), Ptr(order.Pointer), n, v, src.Cols, Ptr(PC(src)), Ptr(P(table)));
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

    public void BiasActivationForward(Activation act, Mat pre, Tensor bias, Tensor? bias2, Mat h) =>
        Launch("bias_act_forward", Blocks(pre.Length), Ptr(PC(pre)), Ptr(P(bias)), Ptr(bias2 == null ? 0 : P(bias2)),
            pre.Rows, pre.Cols, act == Activation.Tanh ? 0 : 1, Ptr(PC(h)));

    public void ActivationBackward(Activation act, Mat dh, Mat h, Mat dpre) =>
        Launch("act_backward", Blocks(dh.Length), Ptr(PC(dh)), Ptr(PC(h)), dh.Length, act == Activation.Tanh ? 0 : 1, Ptr(PC(dpre)));

    public void DropoutForward(Mat x, float p, ulong seed, IdxView count, Mat y, Mat mask) =>
        Launch("dropout_forward", Blocks(x.Length), Ptr(PC(x)), x.Length, p, 1f / (1f - p), KernelArg.U64(seed), Ptr(P(count)),
            Ptr(PC(y)), Ptr(PC(mask)));

    public void DropoutBackward(Mat dy, Mat mask, Mat dx) =>
        Launch("dropout_backward", Blocks(dy.Length), Ptr(PC(dy)), Ptr(PC(mask)), dy.Length, Ptr(PC(dx)));

    public void LstmForward(Mat pre, Tensor bx, Tensor? bh, Mat cPrev, Mat gates, Mat c, Mat h) =>
        Launch("lstm_forward", Blocks(h.Length), Ptr(PC(pre)), Ptr(P(bx)), Ptr(bh == null ? 0 : P(bh)), Ptr(PC(cPrev)),
            h.Rows, h.Cols, Ptr(PC(gates)), Ptr(PC(c)), Ptr(PC(h)));

    public void LstmBackward(Mat dh, Mat dc, Mat gates, Mat cPrev, Mat c, Mat dpre) =>
        Launch("lstm_backward", Blocks(dh.Length), Ptr(PC(dh)), Ptr(PC(dc)), Ptr(PC(gates)), Ptr(PC(cPrev)), Ptr(PC(c)),
            dh.Rows, dh.Cols, Ptr(PC(dpre)));

    public void GruForward(Mat xpre, Mat hproj, Tensor bx, Tensor? bh, Mat hPrev, Mat gates, Mat h) =>
        Launch("gru_forward", Blocks(h.Length), Ptr(PC(xpre)), Ptr(PC(hproj)), Ptr(P(bx)), Ptr(bh == null ? 0 : P(bh)),
            Ptr(PC(hPrev)), h.Rows, h.Cols, Ptr(PC(gates)), Ptr(PC(h)));

    public void GruBackward(Mat dh, Mat gates, Mat hproj, Tensor? bh, Mat hPrev, Mat dxpre, Mat dhproj, Mat dhPrev) =>
        Launch("gru_backward", Blocks(dh.Length), Ptr(PC(dh)), Ptr(PC(gates)), Ptr(PC(hproj)), Ptr(bh == null ? 0 : P(bh)),
            Ptr(PC(hPrev)), dh.Rows, dh.Cols, Ptr(PC(dxpre)), Ptr(PC(dhproj)), Ptr(PC(dhPrev)));

    public void GruResetGates(Mat xpre, Mat hproj, Tensor bx, Mat hPrev, Mat gates, Mat rh) =>
        Launch("gru_reset_gates", Blocks(hPrev.Length), Ptr(PC(xpre)), Ptr(PC(hproj)), Ptr(P(bx)), Ptr(PC(hPrev)),
            hPrev.Rows, hPrev.Cols, Ptr(PC(gates)), Ptr(PC(rh)));

    public void GruCandidate(Mat xpre, Mat hproj, Tensor bx, Mat hPrev, Mat gates, Mat h) =>
        Launch("gru_candidate", Blocks(h.Length), Ptr(PC(xpre)), Ptr(PC(hproj)), Ptr(P(bx)), Ptr(PC(hPrev)),
            h.Rows, h.Cols, Ptr(PC(gates)), Ptr(PC(h)));

    public void GruCandidateBackward(Mat dh, Mat gates, Mat hPrev, Mat dxpre, Mat dhproj, Mat dhPrev) =>
        Launch("gru_candidate_backward", Blocks(dh.Length), Ptr(PC(dh)), Ptr(PC(gates)), Ptr(PC(hPrev)), dh.Rows, dh.Cols,
            Ptr(PC(dxpre)), Ptr(PC(dhproj)), Ptr(PC(dhPrev)));

    public void GruResetBackward(Mat drh, Mat gates, Mat hPrev, Mat dxpre, Mat dhproj, Mat dhPrev) =>
        Launch("gru_reset_backward", Blocks(drh.Length), Ptr(PC(drh)), Ptr(PC(gates)), Ptr(PC(hPrev)), drh.Rows, drh.Cols,
            Ptr(PC(dxpre)), Ptr(PC(dhproj)), Ptr(PC(dhPrev)));

    public void SoftmaxCrossEntropy(Mat logits, Tensor bias, IdxView labels, Mat dlogits, float gradScale, Mat rowLoss) =>
        Launch("softmax_xent", (uint)logits.Rows, Ptr(PC(logits)), Ptr(P(bias)), Ptr(P(labels)), logits.Rows, logits.Cols,
            gradScale, Ptr(PC(dlogits)), Ptr(PC(rowLoss)));

    public void OutputLayerForward(Mat h, Tensor whq, Tensor bq, IdxView labels, Mat logits, Mat dlogits, float gradScale, Mat rowLoss)
    {
        Gemm(false, false, 1f, h, whq.All, 0f, logits);
        SoftmaxCrossEntropy(logits, bq, labels, dlogits, gradScale, rowLoss);
    }

    public void AccumulateLoss(Mat rowLoss) =>
        Launch("loss_accumulate", 1, Ptr(PC(rowLoss)), rowLoss.Rows, Ptr(_loss.Pointer));

    public void ColumnSum(Mat src, Mat dst) =>
        Launch("column_sum", (uint)((src.Cols + 31) / 32), Ptr(P(src)), src.Rows, src.Cols, src.Stride, Ptr(P(dst)));

    public void ArgmaxRows(Mat logits, Tensor bias, IdxView dst) =>
        Launch("argmax_rows", (uint)logits.Rows, Ptr(PC(logits)), Ptr(P(bias)), logits.Rows, logits.Cols, Ptr(P(dst)));

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
        int count = grads.Count * ClipBlocks;
        if (_state.Partials.Length < count)
        {
            NotWhileRecording("growing the clipping buffer");
            _ctx.Synchronize(); // both lanes: either may have used the old buffer
            _state.Partials.Dispose();
            _state.Partials = _ctx.Allocate<double>(count);
        }
        var partials = _state.Partials.Pointer;
        LaunchMulti("sumsq_multi", ClipBlocks, Table(grads), grads.Count, Ptr(partials));
        float t = theta > 0 && float.IsFinite(theta) ? theta : 0f;
        Launch("clip_finalize", 1, Ptr(partials), count, t, Ptr(P(clip)));
    }

    /// <summary>Blocks along x of a multi-tensor update: enough for the largest tensor, within the grid-stride cap.</summary>
    uint UpdateBlocks(IReadOnlyList<Tensor> ps) => Blocks(ps.Max(p => (long)p.Length));

    public void SgdUpdate(IReadOnlyList<Tensor> ps, IReadOnlyList<Tensor> gs, Tensor scalars, Tensor clip) =>
        LaunchMulti("sgd_update_multi", UpdateBlocks(ps), Table(ps, gs), ps.Count, Ptr(P(scalars)), Ptr(P(clip)));

    public void AdamCorrections(IdxView stepsTaken, float beta1, float beta2, Tensor scalars) =>
        Launch("adam_corrections", 1, Ptr(P(stepsTaken)), beta1, beta2, Ptr(P(scalars)));

    public void AdamUpdate(IReadOnlyList<Tensor> ps, IReadOnlyList<Tensor> gs, IReadOnlyList<Tensor> ms, IReadOnlyList<Tensor> vs,
        float beta1, float beta2, float eps, Tensor scalars, Tensor clip) =>
        LaunchMulti("adam_update_multi", UpdateBlocks(ps), Table(ps, gs, ms, vs), ps.Count, beta1, beta2, eps, Ptr(P(scalars)), Ptr(P(clip)));

    public void SelectMinibatch(IdxView counters, IndexBuffer epochX, IndexBuffer epochY, IndexBuffer x, IndexBuffer y) =>
        Launch("select_minibatch", Blocks(x.Length), Ptr(P(counters)), Ptr(((CudaIndices)epochX).Buffer.Pointer),
            Ptr(((CudaIndices)epochY).Buffer.Pointer), x.Length, Ptr(((CudaIndices)x).Buffer.Pointer), Ptr(((CudaIndices)y).Buffer.Pointer));

    public void AdvanceStep(IdxView counters) => Launch("step_advance", 1, Ptr(P(counters)));
}
