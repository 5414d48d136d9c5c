using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using CharRnn.Interop;
using CharRnn.Rnn.Backends;

namespace CharRnn.Rnn.Distributed;

/// <summary>
/// Ranks over MPI (MPICH's or Open MPI's ABI, <see cref="MpiAbi"/>): host collectives for CPU ranks, and the bootstrap and scalars of NCCL's GPU ranks.
/// Every collective is nonblocking and polled against <see cref="Timeout"/>: a dead peer becomes an error on the
/// others (then MPI_Abort ends the job), never a hang. MPI is initialised for serialized calls from any thread (the
/// output layer's gradients start reducing from the thread that computed them).
/// </summary>
public sealed unsafe class MpiRanks : ICollective
{
    readonly Lock _gate = new();
    bool _finalized;

    MpiRanks(MpiAbi abi, int rank, int size, string version)
    {
        _mpi = abi;
        Rank = rank;
        Size = size;
        Description = $"MPI ({version}), {size} ranks";
    }

    public int Rank { get; }
    public int Size { get; }
    public string Description { get; }
    public TimeSpan Timeout { get; set; } = TimeSpan.FromMinutes(10);

    readonly MpiAbi _mpi;

    /// <summary>Both MPI libraries' version lines, or why one is missing (charrnn info).</summary>
    public static string LibraryVersion() =>
        $"{MpiAbi.Mpich.Version()}; {MpiAbi.OpenMpi.Version()} — mpiexec/mpirun runs use the launcher's own (--mpi or CHARRNN_MPI to choose)";

    /// <summary>
    /// Initialises MPI in a process a launcher started as one of <paramref name="launched"/> ranks, through
    /// <paramref name="abi"/>. The library must see the job the launcher started: MPICH's library under Open MPI's
    /// mpirun (or the reverse) initialises alone, and N processes would silently train N copies — refused instead, with
    /// one line on every rank, before anything is trained.
    /// </summary>
    public static MpiRanks Init(MpiAbi abi, int launched, string launcher)
    {
        var lib = abi.Library();
        if (!lib.Ok)
            throw new CharRnnException($"This process was started as one of {launched} ranks by {launcher}, but {abi.Family}'s library cannot be loaded ({lib.Describe()}). " +
                                       $"Install it (Debian: apt-get install {abi.Package}), set {abi.LibraryVariable}, " +
                                       "or launch with the other MPI's launcher.");
        // MPICH over UCX: its cross-memory-attach copy turns a dead peer into a fatal error with a native backtrace in the
        // survivors, racing the launcher's clean shutdown. Without it (unless the user chose UCX_TLS), a dead peer ends
        // the job through mpiexec's own report, and a hung one through this class's timeout.
        fixed (byte* name = "UCX_TLS\0"u8, value = "^cma\0"u8) Libc.setenv(name, value, 0);
        int provided;
        Check(abi.InitThread(MpiAbi.ThreadSerialized, &provided), "MPI_Init_thread");
        if (provided < MpiAbi.ThreadSerialized)
        {
            abi.Finalize();
            throw new CharRnnException("The MPI library offers no MPI_THREAD_SERIALIZED support, which CharRnn needs (the output layer's gradients reduce from a worker thread).");
        }
        int rank, size;
        Check(abi.CommRank(&rank), "MPI_Comm_rank");
        Check(abi.CommSize(&size), "MPI_Comm_size");
        var version = abi.Version().Split(" (")[0];
        if (size != launched)
        {
            abi.Finalize();
            throw new AlikeOnEveryRankException(
                $"This process was started as one of {launched} ranks by {launcher}, but {abi.Family}'s library ({version}) sees a job of {size}: " +
                $"the launcher and the library are different MPIs, and the {launched} processes would train {launched} separate copies. " +
                $"Launch with {abi.Launcher}, or choose the library that matches the launcher with --mpi {abi.Other.Choice} (or CHARRNN_MPI).");
        }
        return new MpiRanks(abi, rank, size, version);
    }

    static void Check(int status, string call)
    {
        if (status != 0) throw new CharRnnException($"{call} failed (MPI error {status}).");
    }

    /// <summary>Polls a request until it completes or the timeout passes.</summary>
    void Wait(nint request, string what)
    {
        var sw = Stopwatch.StartNew();
        var spin = new SpinWait();
        while (true)
        {
            int flag;
            lock (_gate) Check(_mpi.Test(&request, &flag), "MPI_Test");
            if (flag != 0) return;
            if (sw.Elapsed > Timeout)
                throw new RankTimeoutException(
                    $"Rank {Rank} waited {Timeout.TotalSeconds:F0} s for the other ranks in {what}: one of them died or hangs. " +
                    "The run stops; continue from its last checkpoint (--resume) once every rank can run.");
            // MPI progresses a nonblocking collective only inside MPI calls: poll without sleeping (a 1 ms sleep per
            // poll made a 2.4 MB average take 20 ms); SpinOnce still yields the core now and then.
            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    void SumInPlace(void* data, int count, MpiType type, string what)
    {
        nint request;
        lock (_gate) Check(_mpi.SumInPlace(data, count, type, &request), "MPI_Iallreduce");
        Wait(request, what);
    }

    public void Sum(double[] values)
    {
        fixed (double* p = values) SumInPlace(p, values.Length, MpiType.Double, "a loss sum");
    }

    public void Sum(float[] values)
    {
        fixed (float* p = values) SumInPlace(p, values.Length, MpiType.Float, "a state gather");
    }

    public void Broadcast(byte[] data, int root)
    {
        nint request;
        fixed (byte* p = data)
        {
            lock (_gate) Check(_mpi.BroadcastBytes(p, data.Length, root, &request), "MPI_Ibcast");
            Wait(request, "a broadcast");
        }
    }

    /// <summary>CPU tensors: one nonblocking sum per tensor (their arrays pinned until it completes), then ÷ size.</summary>
    public IPendingReduction StartAverage(IBackend backend, IReadOnlyList<Tensor> tensors)
    {
        if (tensors.Any(t => t.HostArray == null))
            throw new CharRnnException("GPU ranks reduce their gradients with NCCL (libnccl.so.2), which was not found. Install NCCL, or train on the CPU (--device cpu).");
        var pending = new Pending(this);
        foreach (var t in tensors)
        {
            var handle = GCHandle.Alloc(t.HostArray!, GCHandleType.Pinned);
            nint request;
            lock (_gate) Check(_mpi.SumInPlace((void*)handle.AddrOfPinnedObject(), t.Length, MpiType.Float, &request), "MPI_Iallreduce");
            pending.Add(request, handle, t);
        }
        return pending;
    }

    sealed class Pending(MpiRanks owner) : IPendingReduction
    {
        readonly List<(nint Request, GCHandle Handle, Tensor Tensor)> _items = [];
        int _done; // the requests before this one were seen complete

        public void Add(nint request, GCHandle handle, Tensor t) => _items.Add((request, handle, t));

        /// <summary>One MPI_Test on the first request not yet seen complete: any MPI call drives the progress engine,
        /// which advances every pending collective; no spin. A completed request's handle becomes MPI_REQUEST_NULL,
        /// which <see cref="Wait"/> then tests as done at once.</summary>
        public void Progress()
        {
            if (_done == _items.Count) return;
            var (request, handle, t) = _items[_done];
            int flag;
            lock (owner._gate) Check(owner._mpi.Test(&request, &flag), "MPI_Test");
            _items[_done] = (request, handle, t);
            if (flag != 0) _done++;
        }

        public void Wait()
        {
            float scale = 1f / owner.Size;
            try
            {
                foreach (var (request, _, t) in _items)
                {
                    owner.Wait(request, "the gradient average");
                    var data = t.HostArray!.AsSpan(0, t.Length);
                    System.Numerics.Tensors.TensorPrimitives.Multiply(data, scale, data);
                }
            }
            finally
            {
                foreach (var (_, h, _) in _items) h.Free();
                _items.Clear();
            }
        }
    }

    /// <summary>Ends the job on every rank at once (a rank that failed must not leave the others waiting).</summary>
    public void Abort(int code)
    {
        lock (_gate) _mpi.Abort(code);
    }

    public void Dispose()
    {
        if (_finalized) return;
        _finalized = true;
        lock (_gate) _mpi.Finalize();
    }
}

/// <summary>A collective that did not complete in time: a peer died or hangs.</summary>
public sealed class RankTimeoutException(string message) : CharRnnException(message);
