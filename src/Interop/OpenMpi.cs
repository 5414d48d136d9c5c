using System.Runtime.InteropServices;

namespace CharRnn.Interop;

/// <summary>
/// MPI through Open MPI's ABI (<c>libmpi.so.40</c>: Open MPI 3.x–5.x, Debian's openmpi-bin). Its handles are pointers:
/// MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM … are the addresses of exported objects (<c>ompi_mpi_comm_world</c>,
/// <c>ompi_mpi_float</c>, <c>ompi_mpi_op_sum</c>), looked up once; requests are pointers too. MPI_IN_PLACE is
/// <c>(void*)1</c> and MPI_STATUS_IGNORE <c>NULL</c> here (MPICH: -1 and 1). Only the calls <see cref="Mpi"/> binds.
/// </summary>
public static unsafe partial class OpenMpi
{
    const string Lib = NativeLibraries.OpenMpi;

    public static readonly void* MPI_IN_PLACE = (void*)1;
    public static readonly void* MPI_STATUS_IGNORE = null;

    [LibraryImport(Lib)] public static partial int MPI_Get_library_version(byte* version, int* resultlen);
    [LibraryImport(Lib)] public static partial int MPI_Init_thread(int* argc, byte*** argv, int required, int* provided);
    [LibraryImport(Lib)] public static partial int MPI_Finalize();
    [LibraryImport(Lib)] public static partial int MPI_Comm_rank(nint comm, int* rank);
    [LibraryImport(Lib)] public static partial int MPI_Comm_size(nint comm, int* size);
    [LibraryImport(Lib)] public static partial int MPI_Iallreduce(void* sendbuf, void* recvbuf, int count, nint datatype, nint op, nint comm, nint* request);
    [LibraryImport(Lib)] public static partial int MPI_Ibcast(void* buffer, int count, nint datatype, int root, nint comm, nint* request);
    [LibraryImport(Lib)] public static partial int MPI_Test(nint* request, int* flag, void* status);
    [LibraryImport(Lib)] public static partial int MPI_Abort(nint comm, int errorcode);

    /// <summary>The address of one of the library's predefined objects (a handle), e.g. "ompi_mpi_comm_world".</summary>
    public static nint Predefined(string symbol) => NativeLibrary.GetExport(NativeLibraries.Load(NativeLibraries.OpenMpi).Handle, symbol);
}
