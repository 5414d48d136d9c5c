using CharRnn.Cuda;
using CharRnn.Interop;

namespace CharRnn.Rnn.Backends.Cuda;

public sealed class CudaTensor : Tensor
{
    internal CudaTensor(CudaContext ctx, int rows, int cols) : base(rows, cols) => Buffer = ctx.Allocate<float>((long)rows * cols);
    public DeviceBuffer<float> Buffer { get; }
    public override ulong DeviceAddress => Buffer.Pointer;

    /// <summary>Told before the memory goes (the backend drops what it built on this tensor's address).</summary>
    internal Action<CudaTensor>? Disposing { get; set; }

    public override void Dispose()
    {
        if (Buffer.Length > 0 && Disposing is { } d)
        {
            Disposing = null;
            d(this);
        }
        Buffer.Dispose();
    }
}

public sealed class CudaIndices : IndexBuffer
{
    internal CudaIndices(CudaContext ctx, int length) : base(length) => Buffer = ctx.Allocate<int>(length);
    public DeviceBuffer<int> Buffer { get; }
    public override void Dispose() => Buffer.Dispose();
}

/// <summary>
/// The CUDA backend: every op is a cuBLAS call or an NVRTC-compiled kernel from <c>kernels/*.cu</c>, enqueued on one
/// non-blocking stream. Nothing here waits for the device except <see cref="ReadLoss"/>, the downloads and
/// <see cref="Synchronize"/>; uploads go through a ring of pinned staging buffers, so they are asynchronous too (the
/// host waits only if it gets a whole ring ahead of the device). A plain RNN layer's recurrence runs as one persistent
/// kernel per direction where it fits (<see cref="PersistentRecurrence"/>); a training step can be recorded as a CUDA
/// graph (<see cref="Record"/>).
/// </summary>
public sealed unsafe class CudaBackend : IBackend
{
    const int Threads = 256;
    const int ClipBlocks = 64; // blocks of sumsq_multi per gradient tensor: each tensor owns 64 slots of _partials
    const int StagingRing = 4;

    readonly CudaContext _ctx;
    readonly CudaStream _stream;              // the main stream: everything but Overlap's background blocks
    readonly Blas _blas;
    readonly CudaStream _side;                // Overlap's background blocks, ordered against _stream by events
    readonly Blas _sideBlas;
    readonly CudaEvent _fork, _join;
    readonly List<CudaEvent> _stepEvents = new(); // the forward recurrence's published points, reused every forward
    CudaStream _cur;                          // where ops go now: _side while Overlap issues the background blocks
    Blas _curBlas;
    readonly CudaModule _module;              // every kernels/*.cu, compiled as one program
    readonly Dictionary<string, CudaKernel> _k = new();
    readonly DeviceBuffer<double> _loss;      // [sum of row losses, rows] for the current epoch
    DeviceBuffer<double> _partials;           // [ClipBlocks × tensors] pass-1 sums of squares
    readonly PinnedBuffer<byte>?[] _staging = new PinnedBuffer<byte>?[StagingRing];
    readonly CudaEvent[] _stagingDone = new CudaEvent[StagingRing];
    readonly bool[] _stagingUsed = new bool[StagingRing];
    int _nextStaging;
    readonly uint _maxBlocks;
    readonly GpuOptions _options;
    readonly PersistentRecurrence _persistent;
    readonly Dictionary<string, DeviceBuffer<ulong>> _tables = new(); // multi-tensor launch tables, by tensor addresses
    readonly Dictionary<int, DeviceBuffer<int>> _orders = new();      // scatter-add scratch, by length
    readonly Dictionary<ulong, List<string>> _tablesOf = new();       // tensor address → the tables that hold it
    bool _recording;

    CudaBackend(CudaContext ctx, string target, GpuOptions options)
    {
        _ctx = ctx;
        _options = options;
        var math = options.Precision switch { Precision.Tf32 => GemmMath.Tf32, Precision.Bf16 => GemmMath.Bf16, _ => GemmMath.Fp32 };
        _stream = ctx.Own(ctx.CreateStream());
        _blas = ctx.Own(new Blas(ctx, _stream, math));
        _side = ctx.Own(ctx.CreateStream());
        _sideBlas = ctx.Own(new Blas(ctx, _side, math));
        _fork = ctx.Own(ctx.CreateEvent());
        _join = ctx.Own(ctx.CreateEvent());
        (_cur, _curBlas) = (_stream, _blas);
        var image = KernelCompiler.Compile("charrnn_kernels.cu", KernelSources.Program, target, KernelSources.ProgramHeaders);
        _module = ctx.Own(new CudaModule(ctx, image.Image));
        _loss = ctx.Own(ctx.Allocate<double>(2));
        _partials = ctx.Allocate<double>(ClipBlocks * 8);
        for (int i = 0; i < StagingRing; i++) _stagingDone[i] = ctx.Own(ctx.CreateEvent());
        _maxBlocks = (uint)Math.Max(1, ctx.MultiprocessorCount * 16);
        _persistent = new PersistentRecurrence(ctx, _stream, Kernel, options.PersistentColumns);
        Name = $"cuda:{ctx.Device}";
        Description = $"{Name} ({ctx.DeviceName}, {target}, cuBLAS {_blas.Version / 10000}.{_blas.Version / 100 % 100}.{_blas.Version % 100}{math switch { GemmMath.Tf32 => ", TF32 GEMMs", GemmMath.Bf16 => ", BF16 GEMMs with FP32 accumulation", _ => "" }})";
        ResetLoss();
    }

    /// <summary>
    /// Creates the backend on device <paramref name="ordinal"/>: context, stream, cuBLAS, compiled kernels.
    /// <paramref name="options"/>: the GEMMs' precision (TF32 tensor cores: faster on sm_80+, 10-bit mantissa products;
    /// FP32 by default, as in PyTorch's matmuls), the recurrence path, graphs.
    /// </summary>
    public static CudaBackend Create(int ordinal = 0, GpuOptions? options = null)
    {
        var ctx = CudaContext.Create(ordinal);
        try
        {
            var target = KernelCompiler.TargetFor(ctx.ComputeCapability.Major, ctx.ComputeCapability.Minor);
            return new CudaBackend(ctx, target, options ?? GpuOptions.Default);
        }
        catch
        {
            ctx.Dispose();
            throw;
        }
    }

    public CudaContext Context => _ctx;
    /// <summary>The stream ops are issued to now (the side stream while Overlap issues background blocks).</summary>
    public CudaStream Stream => _cur;
    /// <summary>The main stream, whatever Overlap is issuing: the one every step's work ends on (Overlap joins it).</summary>
    public CudaStream MainStream => _stream;
    public string Name { get; }
    public string Description { get; }
    public int OverlapBlock => int.MaxValue;
    public GpuOptions Options => _options;
    public InputMode DefaultInputMode => InputMode.Gather; // a row gather and a deterministic scatter-add: no one-hot GEMMs
    public bool RunsOnHost => false;
    public long? MemoryAvailable => _ctx.MemoryInfo().Free;
    public OpProfiler? Profiler { get; set; }

    /// <summary>Times one op when profiling (kernels by name, GEMMs by shape); free otherwise.</summary>
    OpProfiler.Scope Op(string op) => Profiler?.Begin(op, this) ?? default;

    /// <summary>Allocations, uploads and waits would be wrong inside a recording (and the driver refuses them).</summary>
    void NotWhileRecording(string what)
    {
        if (_recording) throw new InvalidOperationException($"{what} while a step is being recorded: issue the step once before recording it");
    }

    public Tensor Zeros(int rows, int cols)
    {
        NotWhileRecording("allocating a tensor");
        var t = new CudaTensor(_ctx, rows, cols) { Disposing = ForgetTables };
        if (t.Length > 0) CudaCheck.ThrowIfFailed(CudaDriver.cuMemsetD32Async(t.Buffer.Pointer, 0, (nuint)t.Length, _stream.Handle));
        return t;
    }

    public IndexBuffer Indices(int length)
    {
        NotWhileRecording("allocating an index buffer");
        var t = new CudaIndices(_ctx, length);
        if (length > 0) CudaCheck.ThrowIfFailed(CudaDriver.cuMemsetD32Async(t.Buffer.Pointer, 0, (nuint)length, _stream.Handle));
        return t;
    }

    static ulong P(Mat m) => ((CudaTensor)m.Tensor).Buffer.At(m.Offset);
    static ulong PC(Mat m, [System.Runtime.CompilerServices.CallerMemberName] string op = "") => P(m.Contiguous(op)); // kernels index rows as r·cols
    static ulong P(Tensor t) => ((CudaTensor)t).Buffer.Pointer;
    static ulong P(IdxView v) => ((CudaIndices)v.Buffer).Buffer.At(v.Offset);

    uint Blocks(long n) => (uint)Math.Clamp((n + Threads - 1) / Threads, 1, _maxBlocks);

    CudaKernel Kernel(string name)
    {
        if (!_k.TryGetValue(name, out var k)) _k[name] = k = _module.Function(name);
        return k;
    }

    void Launch(string kernel, uint grid, params ReadOnlySpan<KernelArg> args)
    {
        using var _ = Op(kernel);
        _ctx.Bind();
        Kernel(kernel).Launch(grid, Threads, 0, _cur, args);
    }

    /// <summary>One launch over a list of tensors: blockIdx.y picks the tensor (its row of <paramref name="table"/>).</summary>
    void LaunchMulti(string kernel, uint gridX, DeviceBuffer<ulong> table, int count, params ReadOnlySpan<KernelArg> args)
    {
        using var _ = Op(kernel);
        _ctx.Bind();
        Span<KernelArg> all = stackalloc KernelArg[args.Length + 1];
        all[0] = Ptr(table.Pointer);
        args.CopyTo(all[1..]);
        Kernel(kernel).Launch2D(gridX, (uint)count, Threads, 0, _cur, all);
    }

    /// <summary>
    /// The device table a multi-tensor kernel reads: per tensor, the addresses of its tensors in <paramref name="lists"/>
    /// then its length, as 64-bit words. Built once per list of tensors (the first step, eagerly) and kept: tensors are
    /// never moved, so the table stays right for every later (and every recorded) step.
    /// </summary>
    DeviceBuffer<ulong> Table(params IReadOnlyList<Tensor>[] lists)
    {
        int count = lists[0].Count, width = lists.Length + 1;
        var words = new ulong[count * width];
        for (int i = 0; i < count; i++)
        {
            for (int j = 0; j < lists.Length; j++) words[i * width + j] = P(lists[j][i]);
            words[i * width + lists.Length] = (ulong)lists[0][i].Length;
        }
        var key = string.Join(",", words);
        if (_tables.TryGetValue(key, out var table)) return table;
        NotWhileRecording("building a tensor table");
        table = _ctx.Allocate<ulong>(words.Length);
        UploadBytes(table.Pointer, System.Runtime.InteropServices.MemoryMarshal.AsBytes(words.AsSpan()));
        foreach (var list in lists)
            foreach (var t in list)
            {
                if (!_tablesOf.TryGetValue(P(t), out var keys)) _tablesOf[P(t)] = keys = [];
                keys.Add(key);
            }
        return _tables[key] = table;
    }

    /// <summary>A tensor is going: the tables that hold its address go too (nothing may launch on them any more).</summary>
    void ForgetTables(CudaTensor t)
    {
        if (!_tablesOf.Remove(t.Buffer.Pointer, out var keys)) return;
        foreach (var key in keys)
            if (_tables.Remove(key, out var table)) table.Dispose();
    }

    static KernelArg Ptr(ulong p) => KernelArg.Ptr(p);

    // ---- transfers -------------------------------------------------------------------------------------------

    void UploadBytes(ulong dst, ReadOnlySpan<byte> src)
    {
        if (src.Length == 0) return;
        NotWhileRecording("uploading");
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
        NotWhileRecording("reading back");
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
        if (m.Length > 0) CudaCheck.ThrowIfFailed(CudaDriver.cuMemsetD32Async(PC(m), 0, (nuint)m.Length, _cur.Handle));
    }

    public void Copy(Mat src, Mat dst)
    {
        if (src.Length != dst.Length) throw new ArgumentException("Copy: sizes differ");
        using var _ = Op("memcpy");
        _ctx.Bind();
        if (src.Length > 0)
            CudaCheck.ThrowIfFailed(CudaDriver.cuMemcpyDtoDAsync_v2(PC(dst), PC(src), (nuint)(src.Length * sizeof(float)), _cur.Handle));
    }

    // ---- ops -------------------------------------------------------------------------------------------------

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
        _curBlas.SgemmRowMajor(transA, transB, m, n, k, alpha, P(a), a.Stride, P(b), b.Stride, beta, P(c), c.Stride);
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

    /// <summary>One stream: the foreground's ops, then each background block's, in order (spin-waits in the blocks
    /// are already satisfied by then).</summary>
    public void Overlap(Action foreground, IReadOnlyList<Action> background)
    {
        if (Profiler != null || background.Count == 0) // the profiler times op by op on the main stream
        {
            foreground();
            foreach (var b in background) b();
            return;
        }
        _ctx.Bind();
        _fork.Record(_stream); // the blocks may read what the main stream wrote before the foreground
        foreground();
        (_cur, _curBlas) = (_side, _sideBlas);
        try
        {
            _side.Wait(_fork);
            foreach (var b in background) b(); // a block's WaitFor becomes a wait for the foreground's event (RecurrenceForward)
            _join.Record(_side);
        }
        finally
        {
            (_cur, _curBlas) = (_stream, _blas);
        }
        _stream.Wait(_join); // what follows on the main stream sees the blocks' outputs
    }

    /// <summary>Output blocks of about a quarter of the steps where the forward recurrence runs step by step (the blocks
    /// then run on the second stream beside it); one block where it is one persistent launch (nothing to run beside) or
    /// where ops are profiled one by one.</summary>
    public int OverlapRows(IRecurrence layer, int batch) =>
        Profiler != null || Persistent(layer) != null ? int.MaxValue : Math.Max(1, (layer.Steps + 3) / 4) * batch;

    /// <summary>Whole 32-byte rows for W_hq, b_q and the logits (cuBLAS's fast paths want aligned leading dimensions).</summary>
    public int PaddedVocabulary(int vocab) => (vocab + 7) / 8 * 8;

    /// <summary>One dW_hq product: beside the backward recurrence on the second stream, a big GEMM beats many small.</summary>
    public int OverlapColumns(int vocab) => vocab;

    /// <summary>Marks each step the forward recurrence publishes with an event on the main stream, and turns a
    /// background block's wait for steps into its stream waiting for the first such event that covers them.</summary>
    void TrackProgress(StepProgress progress)
    {
        var published = new List<(int Steps, CudaEvent Event)>();
        progress.Published = n =>
        {
            if (published.Count == _stepEvents.Count) _stepEvents.Add(_ctx.Own(_ctx.CreateEvent()));
            var e = _stepEvents[published.Count];
            e.Record(_cur);
            published.Add((n, e));
        };
        progress.Waiting = k =>
        {
            foreach (var (n, e) in published)
                if (n >= k)
                {
                    _cur.Wait(e);
                    return;
                }
            throw new InvalidOperationException($"a block waits for {k} steps, but the recurrence published only {published.Count}");
        };
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
            NotWhileRecording("growing the clipping buffer");
            _stream.Synchronize();
            _partials.Dispose();
            _partials = _ctx.Allocate<double>(count);
        }
        LaunchMulti("sumsq_multi", ClipBlocks, Table(grads), grads.Count, Ptr(_partials.Pointer));
        float t = theta > 0 && float.IsFinite(theta) ? theta : 0f;
        Launch("clip_finalize", 1, Ptr(_partials.Pointer), count, t, Ptr(P(clip)));
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

    // ---- the recurrence and recordings ------------------------------------------------------------------------

    /// <summary>The persistent kernels' launch for this layer, or null where the per-step ops run.</summary>
    PersistentRecurrence.Plan? Persistent(IRecurrence layer)
    {
        if (_options.Recurrence == RecurrenceMode.Steps || layer.Plain is not PlainRecurrence r) return null;
        var plan = PlanOf(r);
        return plan.Runs ? plan : null;
    }

    PersistentRecurrence.Plan PlanOf(PlainRecurrence r) => _persistent.PlanFor(r.Batch, r.Hidden, _options.Recurrence == RecurrenceMode.Persistent);

    public void RecurrenceForward(IRecurrence layer, StepProgress? progress)
    {
        if (progress != null && Profiler == null) TrackProgress(progress);
        if (Persistent(layer) is not { } plan)
        {
            RecurrenceSteps.Forward(this, layer, progress);
            return;
        }
        using (Op("rnn_forward_persistent")) _persistent.Forward(layer.Plain!, layer.Steps, plan, _cur, P);
        progress?.Publish(layer.Steps); // the blocks waiting on it are issued after it on this one stream anyway
    }

    public void RecurrenceBackward(IRecurrence layer)
    {
        if (Persistent(layer) is not { } plan)
        {
            RecurrenceSteps.Backward(this, layer);
            return;
        }
        using (Op("rnn_backward_persistent")) _persistent.Backward(layer.Plain!, layer.Steps, plan, _cur, P);
    }

    public string DescribeRecurrence(IRecurrence layer) =>
        _options.Recurrence == RecurrenceMode.Steps ? "per-step (--recurrence steps)"
        : layer.Plain is PlainRecurrence r ? PlanOf(r).ToString()
        : "per-step (the gated cells have no persistent kernels yet)";

    public double? DeviceSeconds(Action ops, int repeats)
    {
        using var start = _ctx.CreateEvent(timing: true);
        using var end = _ctx.CreateEvent(timing: true);
        start.Record(_stream);
        for (int i = 0; i < repeats; i++) ops();
        end.Record(_stream);
        end.Synchronize();
        return end.ElapsedSince(start) / 1e3 / repeats;
    }

    public long? MemoryPeakBytes => _ctx.PeakAllocatedBytes;
    public void ResetMemoryPeak() => _ctx.ResetPeak();

    public string? RecordingUnavailable => _options.Graphs ? null : "turned off by --graph off";

    public IRecording Record(Action ops)
    {
        if (!_options.Graphs) throw new NotSupportedException("recording is " + RecordingUnavailable);
        _recording = true;
        try
        {
            return new GraphRecording(CudaGraph.Capture(_ctx, _stream, ops), _stream);
        }
        finally
        {
            _recording = false;
        }
    }

    sealed class GraphRecording(CudaGraph graph, CudaStream stream) : IRecording
    {
        public void Replay() => graph.Launch(stream);
        public void Dispose() => graph.Dispose();
    }

    public void Synchronize()
    {
        NotWhileRecording("waiting for the device");
        _stream.Synchronize();
    }

    public void Dispose()
    {
        try { _stream.Synchronize(); _side.Synchronize(); } catch (CudaException) { /* report the original error, not this one */ }
        _partials.Dispose();
        foreach (var t in _tables.Values) t.Dispose();
        foreach (var o in _orders.Values) o.Dispose();
        foreach (var s in _staging) s?.Dispose();
        _ctx.Dispose();
    }
}
