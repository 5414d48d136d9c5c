using System.Runtime.InteropServices;

namespace CharRnn.Interop;

/// <summary>NCCL (nccl.h), the calls CharRnn makes: one communicator per rank, averaging all-reduces on its stream.</summary>
public static unsafe partial class Nccl
{
    const string Lib = NativeLibraries.Nccl;

    public const int ncclSuccess = 0;
    public const int ncclFloat32 = 7;
    public const int ncclFloat64 = 8;
    public const int ncclSum = 0;
    public const int ncclAvg = 4; // NCCL ≥ 2.10

    [LibraryImport(Lib)] public static partial int ncclGetVersion(int* version);
    [LibraryImport(Lib)] public static partial int ncclGetUniqueId(NcclUniqueId* uniqueId);
    /// <summary>The id is passed by value (a 128-byte struct), as nccl.h declares it.</summary>
    [LibraryImport(Lib)] public static partial int ncclCommInitRank(IntPtr* comm, int nranks, NcclUniqueId commId, int rank);
    [LibraryImport(Lib)] public static partial int ncclCommDestroy(IntPtr comm);
    [LibraryImport(Lib)] public static partial int ncclCommGetAsyncError(IntPtr comm, int* asyncError);
    /// <summary>Ends the communicator's pending operations (a failed or timed-out peer) and frees it.</summary>
    [LibraryImport(Lib)] public static partial int ncclCommAbort(IntPtr comm);
    [LibraryImport(Lib)] public static partial int ncclGroupStart();
    [LibraryImport(Lib)] public static partial int ncclGroupEnd();
    [LibraryImport(Lib)]
    public static partial int ncclAllReduce(ulong sendbuff, ulong recvbuff, nuint count, int datatype, int op, IntPtr comm, IntPtr stream);
    [LibraryImport(Lib)] public static partial byte* ncclGetErrorString(int result);
}

/// <summary>ncclUniqueId: 128 opaque bytes that rank 0 makes and every rank receives (over MPI).</summary>
[StructLayout(LayoutKind.Sequential, Size = 128)]
public unsafe struct NcclUniqueId
{
    public fixed byte Internal[128];
}
