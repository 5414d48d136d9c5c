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
    IntPtr _comm;

    NcclRanks(ICollective host, CudaBackend backend, IntPtr comm, int version)
    {
        _host = host;
        _be = backend;
        _comm = comm;
        Description = $"NCCL {version / 10000}.{version / 100 % 100}.{version % 100} on {backend.Name}" +
                      (host.Size > 1 ? $", bootstrapped over {host.Description}" : ", 1 rank");
    }

    public int Rank => _host.Rank;
    public int Size => _host.Size;
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

    /// <summary>Enqueued on the backend's stream after the backward pass (stream order is the wait).</summary>
    public IPendingReduction StartAverage(IBackend backend, IReadOnlyList<Tensor> tensors)
    {
        if (backend != _be) throw new InvalidOperationException("NCCL ranks reduce on their own backend");
        _be.Context.Bind();
        Check(Nccl.ncclGroupStart(), "ncclGroupStart");
        foreach (CudaTensor t in tensors)
            Check(Nccl.ncclAllReduce(t.Buffer.Pointer, t.Buffer.Pointer, (nuint)t.Length, Nccl.ncclFloat32, Nccl.ncclAvg, _comm, _be.Stream.Handle),
                "ncclAllReduce");
        Check(Nccl.ncclGroupEnd(), "ncclGroupEnd");
        return Enqueued.Instance;
    }

    /// <summary>A peer's failure shows as an asynchronous NCCL error: a fault to report, not a hang to wait out.</summary>
    public void CheckAsyncError()
    {
        int e;
        Check(Nccl.ncclCommGetAsyncError(_comm, &e), "ncclCommGetAsyncError");
        Check(e, "an NCCL collective");
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
