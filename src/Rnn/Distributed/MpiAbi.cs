using System.Text;
using CharRnn.Interop;

namespace CharRnn.Rnn.Distributed;

/// <summary>The predefined datatypes CharRnn uses.</summary>
public enum MpiType { Byte, Float, Double }

/// <summary>
/// The two MPI ABIs a launcher may bring: MPICH's (<c>libmpich.so.12</c>: MPICH, Intel MPI, MVAPICH; integer handles)
/// and Open MPI's (<c>libmpi.so.40</c>: pointer handles). The one that runs must be the launcher's own: MPICH's library
/// under Open MPI's mpirun initialises as a lone singleton, and N processes would train N separate copies
/// (<see cref="MpiRanks.Init"/> refuses that). Requests travel as nint (MPICH's int widened).
/// </summary>
public abstract unsafe class MpiAbi
{
    /// <summary>"MPICH" or "Open MPI": the family, as users know it.</summary>
    public abstract string Family { get; }

    /// <summary>The launcher that goes with this library, for messages.</summary>
    public abstract string Launcher { get; }

    /// <summary>Its --mpi value, its Debian package and the variable that names its library file.</summary>
    public abstract string Choice { get; }
    public abstract string Package { get; }
    public abstract string LibraryVariable { get; }

    public abstract NativeLibraries.LoadResult Library();
    public abstract int InitThread(int required, int* provided);
    public abstract int Finalize();
    public abstract int CommRank(int* rank);
    public abstract int CommSize(int* size);
    /// <summary>MPI_Iallreduce(MPI_IN_PLACE, data, count, type, MPI_SUM, MPI_COMM_WORLD).</summary>
    public abstract int SumInPlace(void* data, int count, MpiType type, nint* request);
    public abstract int BroadcastBytes(void* data, int count, int root, nint* request);
    public abstract int Test(nint* request, int* flag);
    public abstract int Abort(int code);
    protected abstract int GetLibraryVersion(byte* version, int* length);

    public const int ThreadSerialized = 2; // MPI_THREAD_SERIALIZED in both ABIs

    /// <summary>The library's version line ("MPICH 4.0.2", "Open MPI v4.1.4"), with the file it came from.</summary>
    public string Version()
    {
        var lib = Library();
        if (!lib.Ok) return $"{Family}: not found ({lib.Describe()})";
        var buf = new byte[Interop.Mpi.MPI_MAX_LIBRARY_VERSION_STRING];
        int len;
        fixed (byte* p = buf) GetLibraryVersion(p, &len);
        var first = Encoding.ASCII.GetString(buf, 0, Math.Clamp(len, 0, buf.Length)).Split('\n')[0].Split(',')[0];
        var name = System.Text.RegularExpressions.Regex.Replace(first.Replace("Version:", ""), @"\s+", " ").Trim();
        return $"{name} ({lib.LoadedFrom})";
    }

    public static readonly MpiAbi Mpich = new MpichAbi();
    public static readonly MpiAbi OpenMpi = new OpenMpiAbi();

    /// <summary>The other family (what a mismatched launch should ask for).</summary>
    public MpiAbi Other => ReferenceEquals(this, Mpich) ? OpenMpi : Mpich;

    sealed class MpichAbi : MpiAbi
    {
        public override string Family => "MPICH";
        public override string Launcher => "MPICH's mpiexec (mpiexec.mpich on Debian)";
        public override string Choice => "mpich";
        public override string Package => "mpich";
        public override string LibraryVariable => NativeLibraries.MpiLibraryVariable;
        public override NativeLibraries.LoadResult Library() => NativeLibraries.Load(NativeLibraries.Mpi);
        public override int InitThread(int required, int* provided) => Interop.Mpi.MPI_Init_thread(null, null, required, provided);
        public override int Finalize() => Interop.Mpi.MPI_Finalize();
        public override int CommRank(int* rank) => Interop.Mpi.MPI_Comm_rank(Interop.Mpi.MPI_COMM_WORLD, rank);
        public override int CommSize(int* size) => Interop.Mpi.MPI_Comm_size(Interop.Mpi.MPI_COMM_WORLD, size);

        public override int SumInPlace(void* data, int count, MpiType type, nint* request)
        {
            int r;
            int status = Interop.Mpi.MPI_Iallreduce(Interop.Mpi.MPI_IN_PLACE, data, count, Type(type), Interop.Mpi.MPI_SUM, Interop.Mpi.MPI_COMM_WORLD, &r);
            *request = r;
            return status;
        }

        public override int BroadcastBytes(void* data, int count, int root, nint* request)
        {
            int r;
            int status = Interop.Mpi.MPI_Ibcast(data, count, Interop.Mpi.MPI_BYTE, root, Interop.Mpi.MPI_COMM_WORLD, &r);
            *request = r;
            return status;
        }

        public override int Test(nint* request, int* flag)
        {
            int r = (int)*request;
            int status = Interop.Mpi.MPI_Test(&r, flag, Interop.Mpi.MPI_STATUS_IGNORE);
            *request = r;
            return status;
        }

        public override int Abort(int code) => Interop.Mpi.MPI_Abort(Interop.Mpi.MPI_COMM_WORLD, code);
        protected override int GetLibraryVersion(byte* version, int* length) => Interop.Mpi.MPI_Get_library_version(version, length);

        static int Type(MpiType t) => t switch { MpiType.Byte => Interop.Mpi.MPI_BYTE, MpiType.Float => Interop.Mpi.MPI_FLOAT, _ => Interop.Mpi.MPI_DOUBLE };
    }

    sealed class OpenMpiAbi : MpiAbi
    {
        nint _world, _byte, _float, _double, _sum;

        public override string Family => "Open MPI";
        public override string Launcher => "Open MPI's mpirun (mpirun.openmpi on Debian)";
        public override string Choice => "openmpi";
        public override string Package => "openmpi-bin";
        public override string LibraryVariable => NativeLibraries.OpenMpiLibraryVariable;
        public override NativeLibraries.LoadResult Library() => NativeLibraries.Load(NativeLibraries.OpenMpi);

        /// <summary>The predefined handles: addresses of the library's exported objects, looked up once.</summary>
        nint World => _world != 0 ? _world : _world = Interop.OpenMpi.Predefined("ompi_mpi_comm_world");

        nint Type(MpiType t) => t switch
        {
            MpiType.Byte => _byte != 0 ? _byte : _byte = Interop.OpenMpi.Predefined("ompi_mpi_byte"),
            MpiType.Float => _float != 0 ? _float : _float = Interop.OpenMpi.Predefined("ompi_mpi_float"),
            _ => _double != 0 ? _double : _double = Interop.OpenMpi.Predefined("ompi_mpi_double"),
        };

        nint Sum => _sum != 0 ? _sum : _sum = Interop.OpenMpi.Predefined("ompi_mpi_op_sum");

        public override int InitThread(int required, int* provided) => Interop.OpenMpi.MPI_Init_thread(null, null, required, provided);
        public override int Finalize() => Interop.OpenMpi.MPI_Finalize();
        public override int CommRank(int* rank) => Interop.OpenMpi.MPI_Comm_rank(World, rank);
        public override int CommSize(int* size) => Interop.OpenMpi.MPI_Comm_size(World, size);
        public override int SumInPlace(void* data, int count, MpiType type, nint* request) =>
            Interop.OpenMpi.MPI_Iallreduce(Interop.OpenMpi.MPI_IN_PLACE, data, count, Type(type), Sum, World, request);
        public override int BroadcastBytes(void* data, int count, int root, nint* request) =>
            Interop.OpenMpi.MPI_Ibcast(data, count, Type(MpiType.Byte), root, World, request);
        public override int Test(nint* request, int* flag) => Interop.OpenMpi.MPI_Test(request, flag, Interop.OpenMpi.MPI_STATUS_IGNORE);
        public override int Abort(int code) => Interop.OpenMpi.MPI_Abort(World, code);
        protected override int GetLibraryVersion(byte* version, int* length) => Interop.OpenMpi.MPI_Get_library_version(version, length);
    }
}
