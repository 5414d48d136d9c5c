using CharRnn.Cuda;
using CharRnn.Interop;
using CharRnn.Rnn.Backends.Ops;

namespace CharRnn.Rnn.Backends.Cuda;

/// <summary>
/// The CUDA backend: every op is a cuBLAS call or an NVRTC-compiled kernel from <c>kernels/*.cu</c> (the ops:
/// CudaBackend.Ops.cs), enqueued on this instance's non-blocking stream. Nothing here waits for the device except <see cref="ReadLoss"/>, the downloads and
/// <see cref="Synchronize"/>; uploads go through a ring of pinned staging buffers, so they are asynchronous too (the
/// host waits only if it gets a whole ring ahead of the device). A plain RNN layer's recurrence runs as one persistent
/// kernel per direction where it fits (<see cref="PersistentRecurrence"/>); a training step can be recorded as a CUDA
/// graph (<see cref="Record"/>). There is no hidden current stream: <see cref="Overlap"/> hands its background blocks
/// the side lane, a second instance on the same device whose ops go to a second stream (CudaBackend.Streams.cs).
/// </summary>
public sealed unsafe partial class CudaBackend : IBackend
{
    const int Threads = 256;
    const int StagingRing = 4;

    readonly CudaContext _ctx;
    readonly CudaStream _stream;              // this instance's stream: the main one, or the side lane's
    readonly Blas _blas;                      // a cuBLAS handle bound to _stream
    readonly CudaBackend? _lane;              // the main instance's side lane (Overlap's background blocks); null on the lane
    readonly CudaEvent? _fork, _join;         // main instance: orders the lane against _stream
    readonly List<CudaEvent> _stepEvents = new(); // the forward recurrence's published points, reused every forward
    readonly CudaModule _module;              // every kernels/*.cu, compiled as one program
    readonly Dictionary<string, CudaKernel> _k;
    readonly DeviceBuffer<double> _loss;      // [sum of row losses, rows] for the current epoch
    readonly DeviceState _state;              // what both instances change: the recording flag, staging ring, clip partials
    readonly uint _maxBlocks;
    readonly GpuOptions _options;
    readonly PersistentRecurrence _persistent;
    readonly ClusterRecurrence _clusters;
    readonly Dictionary<(string Cell, int B, int H, int T, bool Bh), RecurrencePlan> _plans; // chosen per layer shape
    readonly Dictionary<string, DeviceBuffer<ulong>> _tables;    // multi-tensor launch tables, by tensor addresses
    readonly Dictionary<int, DeviceBuffer<int>> _orders;         // scatter-add scratch, by length
    readonly Dictionary<ulong, List<string>> _tablesOf;          // tensor address → the tables that hold it

    /// <summary>The device-wide state the main instance and its lane share (one copy, changed through either).</summary>
    sealed class DeviceState(CudaContext ctx)
    {
        public bool Recording;
        public DeviceBuffer<double> Partials = ctx.Allocate<double>(SumSquaresOp.Blocks * 8); // [blocks × tensors] pass-1 sums of squares
        public readonly PinnedBuffer<byte>?[] Staging = new PinnedBuffer<byte>?[StagingRing];
        public readonly CudaEvent[] StagingDone = new CudaEvent[StagingRing];
        public readonly bool[] StagingUsed = new bool[StagingRing];
        public int NextStaging;
    }

    CudaBackend(CudaContext ctx, string target, GpuOptions options)
    {
        _ctx = ctx;
        _options = options;
        var math = options.Precision switch { Precision.Tf32 => GemmMath.Tf32, Precision.Bf16 => GemmMath.Bf16, _ => GemmMath.Fp32 };
        _stream = ctx.Own(ctx.CreateStream());
        _blas = ctx.Own(new Blas(ctx, _stream, math));
        _fork = ctx.Own(ctx.CreateEvent());
        _join = ctx.Own(ctx.CreateEvent());
        var image = KernelCompiler.Compile("charrnn_kernels.cu", KernelSources.Program, target, KernelSources.ProgramHeaders);
        _module = ctx.Own(new CudaModule(ctx, image.Image));
        _k = new();
        _loss = ctx.Own(ctx.Allocate<double>(2));
        _state = new DeviceState(ctx);
        for (int i = 0; i < StagingRing; i++) _state.StagingDone[i] = ctx.Own(ctx.CreateEvent());
        (_tables, _orders, _tablesOf) = (new(), new(), new());
        _maxBlocks = (uint)Math.Max(1, ctx.MultiprocessorCount * 16);
        _persistent = new PersistentRecurrence(ctx, _stream, Kernel, options.PersistentColumns);
        _clusters = new ClusterRecurrence(ctx, Kernel);
        _plans = new();
        Name = $"cuda:{ctx.Device}";
        Description = $"{Name} ({ctx.DeviceName}, {target}, cuBLAS {_blas.Version / 10000}.{_blas.Version / 100 % 100}.{_blas.Version % 100}{math switch { GemmMath.Tf32 => ", TF32 GEMMs", GemmMath.Bf16 => ", BF16 GEMMs with FP32 accumulation", _ => "" }})";
        var side = ctx.Own(ctx.CreateStream());
        _lane = new CudaBackend(this, side, ctx.Own(new Blas(ctx, side, math)));
        ResetLoss();
    }

    /// <summary>The side lane of <paramref name="main"/>: the same device, kernels, tables and state; its own stream.</summary>
    CudaBackend(CudaBackend main, CudaStream stream, Blas blas)
    {
        (_ctx, _stream, _blas, _options, _module, _k, _loss, _state) = (main._ctx, stream, blas, main._options, main._module, main._k, main._loss, main._state);
        (_maxBlocks, _persistent, _tables, _orders, _tablesOf) = (main._maxBlocks, main._persistent, main._tables, main._orders, main._tablesOf);
        (_clusters, _plans) = (main._clusters, main._plans);
        (Name, Description) = (main.Name + " side lane", main.Description);
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
    /// <summary>The stream this instance's ops go to: the main stream, or the side lane's.</summary>
    public CudaStream Stream => _stream;
    /// <summary>The stream of <paramref name="other"/> where it is this backend or its side lane (work issued through
    /// either is this device's, ordered by <see cref="Overlap"/>'s join); null for any other backend.</summary>
    public CudaStream? StreamOf(IBackend other) => other == this ? _stream : other != null && other == _lane ? _lane._stream : null;
    public string Name { get; }
    public string Description { get; }
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
        if (_state.Recording) throw new InvalidOperationException($"{what} while a step is being recorded: issue the step once before recording it");
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
    readonly DeviceArgs _args = new(); // this instance's: the side lane has its own

    uint Blocks(long n) => (uint)Math.Clamp((n + Threads - 1) / Threads, 1, _maxBlocks);

    CudaKernel Kernel(string name)
    {
        if (!_k.TryGetValue(name, out var k)) _k[name] = k = _module.Function(name);
        return k;
    }

    /// <summary>A declared kernel (<c>Backends/Ops</c>) on this instance's stream: the grid its declaration gives, the
    /// arguments its record writes (<see cref="DeviceArgs"/>). Launches are not re-entered (one host thread issues them).</summary>
    internal void Launch<TArgs>(KernelOp<TArgs> op, in TArgs args) where TArgs : struct, IKernelArgs
    {
        using var _ = Op(op.Kernel);
        _ctx.Bind();
        _args.Start(op.Kernel);
        args.Write(_args);
        var g = op.GridFor(args);
        var k = Kernel(op.Kernel);
        switch (g.Kind)
        {
            case GridKind.Cooperative:
                k.LaunchCooperative((uint)g.X, (uint)g.Threads, (uint)g.SharedBytes, _stream, _args.Written);
                break;
            case GridKind.Cluster:
                k.LaunchCluster((uint)g.X, (uint)g.Y, (uint)g.Threads, (uint)g.SharedBytes, _stream, _args.Written);
                break;
            default:
                uint x = g.Kind == GridKind.Elements ? Blocks(g.X) : (uint)g.X;
                if (g.Y == 1) k.Launch(x, Threads, 0, _stream, _args.Written);
                else k.Launch2D(x, (uint)g.Y, Threads, 0, _stream, _args.Written);
                break;
        }
    }

    /// <summary>A declaration's arguments as launch arguments: device addresses of CUDA tensors (a block the kernel
    /// indexes as r·cols must be contiguous), values as they are.</summary>
    sealed class DeviceArgs : KernelArgWriter
    {
        readonly KernelArg[] _a = new KernelArg[16];
        int _n;
        string _kernel = "";

        public void Start(string kernel) => (_kernel, _n) = (kernel, 0);
        public ReadOnlySpan<KernelArg> Written => _a.AsSpan(0, _n);
        void Add(KernelArg a) => _a[_n++] = a;

        public override void Ptr(Mat m, string name = "") => Add(KernelArg.Ptr(P(m.Contiguous($"{_kernel} ({name})"))));
        public override void Strided(Mat m, string name = "") => Add(KernelArg.Ptr(P(m)));
        public override void Ptr(Tensor? t, string name = "") => Add(KernelArg.Ptr(t == null ? 0 : P(t)));
        public override void Ptr(IdxView v, string name = "") => Add(KernelArg.Ptr(P(v)));
        public override void Ptr(DevicePointer p, string name = "") => Add(KernelArg.Ptr(p.Address));
        public override void Int(int v, string name = "") => Add(v);
        public override void Float(float v, string name = "") => Add(v);
        public override void U64(ulong v, string name = "") => Add(KernelArg.U64(v));
    }

    /// <summary>
    /// The device table a multi-tensor kernel reads: per tensor, the addresses of its tensors in <paramref name="lists"/>
    /// then its length, as 64-bit words. Built once per list of tensors (the first step, eagerly) and kept: tensors are
    /// never moved, so the table stays right for every later (and every recorded) step.
    /// </summary>
    DevicePointer Table(params IReadOnlyList<Tensor>[] lists)
    {
        int count = lists[0].Count, width = lists.Length + 1;
        var words = new ulong[count * width];
        for (int i = 0; i < count; i++)
        {
            for (int j = 0; j < lists.Length; j++) words[i * width + j] = P(lists[j][i]);
            words[i * width + lists.Length] = (ulong)lists[0][i].Length;
        }
        var key = string.Join(",", words);
        if (_tables.TryGetValue(key, out var table)) return new DevicePointer(table.Pointer);
        NotWhileRecording("building a tensor table");
        table = _ctx.Allocate<ulong>(words.Length);
        UploadBytes(table.Pointer, System.Runtime.InteropServices.MemoryMarshal.AsBytes(words.AsSpan()));
        foreach (var list in lists)
            foreach (var t in list)
            {
                if (!_tablesOf.TryGetValue(P(t), out var keys)) _tablesOf[P(t)] = keys = [];
                keys.Add(key);
            }
        _tables[key] = table;
        return new DevicePointer(table.Pointer);
    }

    /// <summary>A tensor is going: the tables that hold its address go too (nothing may launch on them any more).</summary>
    void ForgetTables(CudaTensor t)
    {
        if (!_tablesOf.Remove(t.Buffer.Pointer, out var keys)) return;
        foreach (var key in keys)
            if (_tables.Remove(key, out var table)) table.Dispose();
    }


    // ---- transfers -------------------------------------------------------------------------------------------

    void UploadBytes(ulong dst, ReadOnlySpan<byte> src)
    {
        if (src.Length == 0) return;
        NotWhileRecording("uploading");
        _ctx.Bind();
        var st = _state;
        int slot = st.NextStaging;
        st.NextStaging = (st.NextStaging + 1) % StagingRing;
        if (st.StagingUsed[slot]) st.StagingDone[slot].Synchronize(); // the copy that last used this buffer is done
        var buf = st.Staging[slot];
        if (buf == null || buf.Length < src.Length)
        {
            buf?.Dispose();
            buf = st.Staging[slot] = _ctx.AllocatePinned<byte>(Math.Max(src.Length, 1 << 16));
        }
        src.CopyTo(buf.Span);
        CudaCheck.ThrowIfFailed(CudaDriver.cuMemcpyHtoDAsync_v2(dst, buf.Pointer, (nuint)src.Length, _stream.Handle));
        st.StagingDone[slot].Record(_stream);
        st.StagingUsed[slot] = true;
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

    public void Synchronize()
    {
        NotWhileRecording("waiting for the device");
        _stream.Synchronize();
    }

    public void Dispose()
    {
        if (_lane == null) return; // the lane owns nothing: its main instance frees it all
        try { _ctx.Synchronize(); } catch (CudaException) { /* report the original error, not this one */ }
        _state.Partials.Dispose();
        foreach (var t in _tables.Values) t.Dispose();
        foreach (var o in _orders.Values) o.Dispose();
        foreach (var s in _state.Staging) s?.Dispose();
        _ctx.Dispose();
    }
}
