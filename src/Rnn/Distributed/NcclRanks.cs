using System.Runtime.InteropServices;
using CharRnn.Interop;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Backends.Cuda;

namespace CharRnn.Rnn.Distributed;

/// <summary>
/// GPU ranks: gradients are averaged by NCCL on the backend's stream (ncclAvg, in place, one group per step), so no
/// host round trip; scalars and the bootstrap (rank 0's ncclUniqueId, broadcast) go over <paramref name="host"/>
/// (MPI, or nothing for a single rank).
/// </summary>
public sealed unsafe class NcclRanks : ICollective
{
    readonly ICollective _host;
    readonly CudaBackend _be;
    readonly Cuda.CudaEvent _queued; // recorded after the queued work, polled by BeforeDeviceWait
    IntPtr _comm;

    NcclRanks(ICollective host, CudaBackend backend, IntPtr comm, int version)
    {
        _host = host;
        _be = backend;
        _comm = comm;
        _queued = backend.Context.Own(backend.Context.CreateEvent());
        Description = $"NCCL {version / 10000}.{version / 100 % 100}.{version % 100} on {backend.Name}" +
                      (host.Size > 1 ? $", bootstrapped over {host.Description}" : ", 1 rank");
    }

    public int Rank => _host.Rank;
    public int Size => _host.Size;
    public bool Averages => true; // one rank too (--nccl): the all-reduce runs, so the path is exercised end to end
    public string Description { get; }
    public TimeSpan Timeout { get => _host.Timeout; set => _host.Timeout = value; }

    /// <summary>NCCL's version, or why it is not usable.</summary>
    public static string Version()
    {
        var lib = NativeLibraries.Load(NativeLibraries.Nccl);
        if (!lib.Ok) return "not found (" + lib.Describe() + ")";
        int v;
        return Nccl.ncclGetVersion(&v) == Nccl.ncclSuccess ? $"{v / 10000}.{v / 100 % 100}.{v % 100} ({lib.LoadedFrom})" : "present but ncclGetVersion failed";
    }

    static void Check(int status, string call)
    {
        if (status != Nccl.ncclSuccess)
            throw new CharRnnException($"{call} failed: {Marshal.PtrToStringUTF8((IntPtr)Nccl.ncclGetErrorString(status))} (NCCL error {status}).");
    }

    /// <summary>One communicator of <paramref name="host"/>.Size ranks, this process's rank on <paramref name="backend"/>'s GPU.</summary>
    public static NcclRanks Create(ICollective host, CudaBackend backend)
    {
        var lib = NativeLibraries.Load(NativeLibraries.Nccl);
        if (!lib.Ok)
            throw new CharRnnException($"GPU ranks need NCCL, which was not found ({lib.Describe()}). Install it (pip's nvidia-nccl-cu12 ships libnccl.so.2) or set {NativeLibraries.LibDirVariable}.");
        int version;
        Check(Nccl.ncclGetVersion(&version), "ncclGetVersion");
        var id = new NcclUniqueId();
        var bytes = new byte[sizeof(NcclUniqueId)];
        if (host.Rank == 0)
        {
            Check(Nccl.ncclGetUniqueId(&id), "ncclGetUniqueId");
            new ReadOnlySpan<byte>(id.Internal, bytes.Length).CopyTo(bytes);
        }
        host.Broadcast(bytes, 0);
        bytes.CopyTo(new Span<byte>(id.Internal, bytes.Length));
        backend.Context.Bind();
        IntPtr comm;
        Check(Nccl.ncclCommInitRank(&comm, host.Size, id, host.Rank), "ncclCommInitRank");
        return new NcclRanks(host, backend, comm, version);
    }

    public void Sum(double[] values) => _host.Sum(values);
    public void Sum(float[] values) => _host.Sum(values);
    public void Broadcast(byte[] data, int root) => _host.Broadcast(data, root);

    /// <summary>Enqueued on the stream of <paramref name="backend"/> — the one that computed the tensors (this rank's
    /// backend, or its side lane for the output layer's gradients) — so stream order is the wait; the main stream joins
    /// the lane before clipping reads them.</summary>
    public IPendingReduction StartAverage(IBackend backend, IReadOnlyList<Tensor> tensors)
    {
        var stream = _be.StreamOf(backend) ?? throw new InvalidOperationException("NCCL ranks reduce on their own backend");
        _be.Context.Bind();
        Check(Nccl.ncclGroupStart(), "ncclGroupStart");
        foreach (var t in tensors)
            Check(Nccl.ncclAllReduce(t.DeviceAddress, t.DeviceAddress, (nuint)t.Length, Nccl.ncclFloat32, Nccl.ncclAvg, _comm, stream.Handle),
                "ncclAllReduce");
        Check(Nccl.ncclGroupEnd(), "ncclGroupEnd");
        return Enqueued.Instance;
    }

    /// <summary>Polls the work queued so far (all-reduces included) instead of blocking on it: a peer's failure shows
    /// as an asynchronous NCCL error, a hung peer as work that never completes; either aborts the communicator (which
    /// ends its pending collectives) and fails naming it, within --rank-timeout.</summary>
    public void BeforeDeviceWait(IBackend backend)
    {
        if (backend != _be || _comm == IntPtr.Zero) return;
        _be.Context.Bind();
        _queued.Record(_be.Stream); // the main stream: every lane joins it
        DeviceWait.Until(_queued.IsDone, AsyncError, Timeout, Abort, "an NCCL all-reduce");
    }

    string? AsyncError()
    {
        int e;
        Check(Nccl.ncclCommGetAsyncError(_comm, &e), "ncclCommGetAsyncError");
        return e == Nccl.ncclSuccess ? null : $"{Marshal.PtrToStringUTF8((IntPtr)Nccl.ncclGetErrorString(e))} (NCCL error {e})";
    }

    void Abort()
    {
        if (_comm != IntPtr.Zero) Nccl.ncclCommAbort(_comm); // its status cannot help: the run fails either way
        _comm = IntPtr.Zero;
    }

    sealed class Enqueued : IPendingReduction
    {
        public static readonly Enqueued Instance = new();
        public void Wait() { }
    }

    public void Dispose()
    {
        if (_comm != IntPtr.Zero) Nccl.ncclCommDestroy(_comm);
        _comm = IntPtr.Zero;
    }
}
