using System.Runtime.InteropServices;

namespace CharRnn.Interop;

/// <summary>
/// MPI through MPICH's ABI (<c>libmpich.so.12</c>, Debian's mpich; also Intel MPI and others of the MPICH ABI
/// initiative): handles are integer constants (MPI_COMM_WORLD = 0x44000000, …), bound here as plain ints. Open MPI's
/// ABI is <see cref="OpenMpi"/>. Only the calls CharRnn makes: the nonblocking collectives, so a wait can time out
/// instead of hanging on a dead rank.
/// </summary>
public static unsafe partial class Mpi
{
    const string Lib = NativeLibraries.Mpi;

    public const int MPI_SUCCESS = 0;
    public const int MPI_COMM_WORLD = 0x44000000;
    public const int MPI_BYTE = 0x4c00010d;
    public const int MPI_FLOAT = 0x4c00040a;
    public const int MPI_DOUBLE = 0x4c00080b;
    public const int MPI_SUM = 0x58000003;
    public const int MPI_MAX = 0x58000001;
    public const int MPI_THREAD_SERIALIZED = 2;
    public static readonly void* MPI_IN_PLACE = (void*)-1;
    public static readonly void* MPI_STATUS_IGNORE = (void*)1;
    public const int MPI_MAX_LIBRARY_VERSION_STRING = 8192;

    [LibraryImport(Lib)] public static partial int MPI_Get_library_version(byte* version, int* resultlen);
    [LibraryImport(Lib)] public static partial int MPI_Init_thread(int* argc, byte*** argv, int required, int* provided);
    [LibraryImport(Lib)] public static partial int MPI_Finalize();
    [LibraryImport(Lib)] public static partial int MPI_Comm_rank(int comm, int* rank);
    [LibraryImport(Lib)] public static partial int MPI_Comm_size(int comm, int* size);
    [LibraryImport(Lib)] public static partial int MPI_Iallreduce(void* sendbuf, void* recvbuf, int count, int datatype, int op, int comm, int* request);
    [LibraryImport(Lib)] public static partial int MPI_Ibcast(void* buffer, int count, int datatype, int root, int comm, int* request);
    [LibraryImport(Lib)] public static partial int MPI_Test(int* request, int* flag, void* status);
    [LibraryImport(Lib)] public static partial int MPI_Abort(int comm, int errorcode);
}
