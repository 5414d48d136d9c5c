using CharRnn.Cuda;
using CharRnn.Interop;

namespace CharRnn.Rnn.Backends.Cuda;

public sealed class CudaTensor : Tensor
{
    internal CudaTensor(CudaContext ctx, int rows, int cols) : base(rows, cols) => Buffer = ctx.Allocate<float>((long)rows * cols);
    public DeviceBuffer<float> Buffer { get; }
    public override void Dispose() => Buffer.Dispose();
}

public sealed class CudaIndices : IndexBuffer
{
    internal CudaIndices(CudaContext ctx, int length) : base(length) => Buffer = ctx.Allocate<int>(length);
    public DeviceBuffer<int> Buffer { get; }
    public override void Dispose() => Buffer.Dispose();
}

/// <summary>
/// The CUDA backend: every op is a cuBLAS call or an NVRTC-compiled kernel from <c>kernels/*.cu</c>, enqueued on one
/// non-blocking stream. Nothing here waits for the device except <see cref="ReadLoss"/>, <see cref="ReadGradNorm"/>,
/// the downloads and <see cref="Synchronize"/>; uploads go through a ring of pinned staging buffers, so they are
/// asynchronous too (the host waits only if it gets a whole ring ahead of the device).
/// </summary>
public sealed unsafe class CudaBackend : IBackend
{
    const int Threads = 256;
    const int ClipBlocks = 64; // blocks of sumsq_partial per gradient tensor: each tensor owns 64 slots of _partials
    const int StagingRing = 4;

    readonly CudaContext _ctx;
    readonly CudaStream _stream;
    readonly Blas _blas;
    readonly CudaModule _module;              // every kernels/*.cu, compiled as one program
    readonly Dictionary<string, CudaKernel> _k = new();
    readonly DeviceBuffer<double> _loss;      // [sum of row losses, rows] for the current epoch
    DeviceBuffer<double> _partials;           // [ClipBlocks × tensors] pass-1 sums of squares
    readonly PinnedBuffer<byte>?[] _staging = new PinnedBuffer<byte>?[StagingRing];
    readonly CudaEvent[] _stagingDone = new CudaEvent[StagingRing];
    readonly bool[] _stagingUsed = new bool[StagingRing];
    int _nextStaging;
    readonly uint _maxBlocks;

    CudaBackend(CudaContext ctx, string target, bool allowTf32)
    {
        _ctx = ctx;
        _stream = ctx.Own(ctx.CreateStream());
        _blas = ctx.Own(new Blas(ctx, _stream, allowTf32));
        var image = KernelCompiler.Compile("charrnn_kernels.cu", KernelSources.Program, target, KernelSources.ProgramHeaders);
        _module = ctx.Own(new CudaModule(ctx, image.Image));
        _loss = ctx.Own(ctx.Allocate<double>(2));
        _partials = ctx.Allocate<double>(ClipBlocks * 8);
        for (int i = 0; i < StagingRing; i++) _stagingDone[i] = ctx.Own(ctx.CreateEvent());
        _maxBlocks = (uint)Math.Max(1, ctx.MultiprocessorCount * 16);
        Name = $"cuda:{ctx.Device}";
        Description = $"{Name} ({ctx.DeviceName}, {target}, cuBLAS {_blas.Version / 10000}.{_blas.Version / 100 % 100}.{_blas.Version % 100}{(allowTf32 ? ", TF32 GEMMs" : "")})";
        ResetLoss();
    }

    /// <summary>
    /// Creates the backend on device <paramref name="ordinal"/>: context, stream, cuBLAS, compiled kernels.
    /// <paramref name="allowTf32"/>: let cuBLAS use TF32 tensor cores for the FP32 GEMMs (faster on sm_80+, 10-bit
    /// mantissa products; off by default, as in PyTorch's matmuls).
    /// </summary>
    public static CudaBackend Create(int ordinal = 0, bool allowTf32 = false)
    {
        var ctx = CudaContext.Create(ordinal);
        try
        {
            var target = KernelCompiler.TargetFor(ctx.ComputeCapability.Major, ctx.ComputeCapability.Minor);
            return new CudaBackend(ctx, target, allowTf32);
        }
        catch
        {
            ctx.Dispose();
            throw;
        }
    }

    public CudaContext Context => _ctx;
    public CudaStream Stream => _stream;
    public Blas Blas => _blas;
    public string Name { get; }
    public string Description { get; }
    public int OverlapBlock => int.MaxValue;
    public InputMode DefaultInputMode => InputMode.OneHotGemm;
    public bool RunsOnHost => false;
    public long? MemoryAvailable => _ctx.MemoryInfo().Free;
    public OpProfiler? Profiler { get; set; }

    /// <summary>Times one op when profiling (kernels by name, GEMMs by shape); free otherwise.</summary>
    OpProfiler.Scope Op(string op) => Profiler?.Begin(op, this) ?? default;

    public Tensor Zeros(int rows, int cols)
    {
        var t = new CudaTensor(_ctx, rows, cols);
        if (t.Length > 0) CudaCheck.ThrowIfFailed(CudaDriver.cuMemsetD32Async(t.Buffer.Pointer, 0, (nuint)t.Length, _stream.Handle));
        return t;
    }

    public IndexBuffer Indices(int length)
    {
        var t = new CudaIndices(_ctx, length);
        if (length > 0) CudaCheck.ThrowIfFailed(CudaDriver.cuMemsetD32Async(t.Buffer.Pointer, 0, (nuint)length, _stream.Handle));
        return t;
    }

    static ulong P(Mat m) => ((CudaTensor)m.Tensor).Buffer.At(m.Offset);
    static ulong PC(Mat m, [System.Runtime.CompilerServices.CallerMemberName] string op = "") => P(m.Contiguous(op)); // kernels index rows as r·cols
    static ulong P(Tensor t) => ((CudaTensor)t).Buffer.Pointer;
    static ulong P(IdxView v) => ((CudaIndices)v.Buffer).Buffer.At(v.Offset);

    uint Blocks(long n) => (uint)Math.Clamp((n + Threads - 1) / Threads, 1, _maxBlocks);

    void Launch(string kernel, uint grid, params ReadOnlySpan<KernelArg> args)
    {
        using var _ = Op(kernel);
        _ctx.Bind();
        if (!_k.TryGetValue(kernel, out var k)) _k[kernel] = k = _module.Function(kernel);
        k.Launch(grid, Threads, 0, _stream, args);
    }

    static KernelArg Ptr(ulong p) => KernelArg.Ptr(p);

    // ---- transfers -------------------------------------------------------------------------------------------

    void UploadBytes(ulong dst, ReadOnlySpan<byte> src)
    {
        if (src.Length == 0) return;
        _ctx.Bind();
        int slot = _nextStaging;
        _nextStaging = (_nextStaging + 1) % StagingRing;
        if (_stagingUsed[slot]) _stagingDone[slot].Synchronize(); // the copy that last used this buffer is done
        var buf = _staging[slot];
        if (buf == null || buf.Length < src.Length)
        {
            buf?.Dispose();
            buf = _staging[slot] = _ctx.AllocatePinned<byte>(Math.Max(src.Length, 1 << 16));
        }
        src.CopyTo(buf.Span);
        CudaCheck.ThrowIfFailed(CudaDriver.cuMemcpyHtoDAsync_v2(dst, buf.Pointer, (nuint)src.Length, _stream.Handle));
        _stagingDone[slot].Record(_stream);
        _stagingUsed[slot] = true;
    }

    void DownloadBytes(ulong src, Span<byte> dst)
    {
        if (dst.Length == 0) return;
        _stream.Synchronize();
        fixed (byte* p = dst) CudaCheck.ThrowIfFailed(CudaDriver.cuMemcpyDtoH_v2(p, src, (nuint)dst.Length));
    }

    public void Upload(Tensor dst, ReadOnlySpan<float> src) =>
        UploadBytes(P(dst), System.Runtime.InteropServices.MemoryMarshal.AsBytes(src[..dst.Length]));

    public void Download(Tensor src, Span<float> dst) =>
        DownloadBytes(P(src), System.Runtime.InteropServices.MemoryMarshal.AsBytes(dst[..src.Length]));

    public void Upload(IndexBuffer dst, ReadOnlySpan<int> src) =>
        UploadBytes(((CudaIndices)dst).Buffer.Pointer, System.Runtime.InteropServices.MemoryMarshal.AsBytes(src[..dst.Length]));

    public void Download(IndexBuffer src, Span<int> dst) =>
        DownloadBytes(((CudaIndices)src).Buffer.Pointer, System.Runtime.InteropServices.MemoryMarshal.AsBytes(dst[..src.Length]));

    public void Zero(Mat m)
    {
        using var _ = Op("memset");
        _ctx.Bind();
        if (m.Length > 0) CudaCheck.ThrowIfFailed(CudaDriver.cuMemsetD32Async(PC(m), 0, (nuint)m.Length, _stream.Handle));
    }

    public void Copy(Mat src, Mat dst)
    {
        if (src.Length != dst.Length) throw new ArgumentException("Copy: sizes differ");
        using var _ = Op("memcpy");
        _ctx.Bind();
        if (src.Length > 0)
            CudaCheck.ThrowIfFailed(CudaDriver.cuMemcpyDtoDAsync_v2(PC(dst), PC(src), (nuint)(src.Length * sizeof(float)), _stream.Handle));
    }

    // ---- ops -------------------------------------------------------------------------------------------------

    public void OneHotScatter(IdxView tokens, Mat dst) =>
        Launch("one_hot_scatter", Blocks((long)dst.Rows * dst.Cols), Ptr(P(tokens)), dst.Rows, dst.Cols, Ptr(PC(dst)));

    public void GatherRows(IdxView tokens, Tensor table, Mat dst) =>
        Launch("gather_rows", Blocks((long)dst.Rows * dst.Cols), Ptr(P(tokens)), dst.Rows, dst.Cols, Ptr(P(table)), Ptr(PC(dst)));

    public void ScatterAddRows(IdxView tokens, Mat src, Tensor table) =>
        Launch("scatter_add_rows", (uint)((src.Cols + Threads - 1) / Threads), Ptr(P(tokens)), src.Rows, src.Cols, Ptr(PC(src)), Ptr(P(table)));

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

    public void DropoutForward(Mat x, float p, ulong seed, ulong counter, Mat y, Mat mask) =>
        Launch("dropout_forward", Blocks(x.Length), Ptr(PC(x)), x.Length, p, 1f / (1f - p), KernelArg.U64(seed), KernelArg.U64(counter),
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
        Launch("column_sum", (uint)((src.Cols + Threads - 1) / Threads), Ptr(P(src)), src.Rows, src.Cols, src.Stride, Ptr(P(dst)));

    /// <summary>One stream: the foreground's ops, then each background block's, in order (spin-waits in the blocks
    /// are already satisfied by then).</summary>
    public void Overlap(Action foreground, IReadOnlyList<Action> background)
    {
        foreground();
        foreach (var b in background) b();
    }

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
        if (_partials.Length < count)
        {
            _stream.Synchronize();
            _partials.Dispose();
            _partials = _ctx.Allocate<double>(count);
        }
        for (int i = 0; i < grads.Count; i++)
            Launch("sumsq_partial", ClipBlocks, Ptr(P(grads[i])), grads[i].Length, Ptr(_partials.At(i * ClipBlocks)));
        float t = theta > 0 && float.IsFinite(theta) ? theta : 0f;
        Launch("clip_finalize", 1, Ptr(_partials.Pointer), count, t, Ptr(P(clip)));
    }

    public void SgdUpdate(Tensor p, Tensor g, float lr, Tensor clip) =>
        Launch("sgd_update", Blocks(p.Length), Ptr(P(p)), Ptr(P(g)), p.Length, lr, Ptr(P(clip)));

    public void AdamUpdate(Tensor p, Tensor g, Tensor m, Tensor v, Tensor clip, float beta1, float beta2, float eps, float stepSize, float bc2Sqrt) =>
        Launch("adam_update", Blocks(p.Length), Ptr(P(p)), Ptr(P(g)), Ptr(P(m)), Ptr(P(v)), p.Length, beta1, beta2, eps,
            stepSize, bc2Sqrt, Ptr(P(clip)));

    public void Synchronize() => _stream.Synchronize();

    public void Dispose()
    {
        try { _stream.Synchronize(); } catch (CudaException) { /* report the original error, not this one */ }
        _partials.Dispose();
        foreach (var s in _staging) s?.Dispose();
        _ctx.Dispose();
    }
}
