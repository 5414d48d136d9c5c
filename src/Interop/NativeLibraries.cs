using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace CharRnn.Interop;

/// <summary>
/// The one DllImport resolver of this assembly. Every <c>[LibraryImport]</c> here names one of the
/// logical library names below; the resolver maps it to an ordered list of versioned sonames and
/// folders, loads the first that works and remembers the result (or the failure, with everything it tried).
/// </summary>
public static class NativeLibraries
{
    public const string Cuda = "charrnn-cuda";
    public const string Cublas = "charrnn-cublas";
    public const string Nvrtc = "charrnn-nvrtc";
    public const string OpenBlas = "charrnn-openblas";
    public const string Mpi = "charrnn-mpi";
    public const string OpenMpi = "charrnn-openmpi";
    public const string Nccl = "charrnn-nccl";

    /// <summary>Override for the MPI library (a full path), e.g. another MPICH-ABI implementation.</summary>
    public const string MpiLibraryVariable = "CHARRNN_MPI_LIBRARY";

    /// <summary>Override for Open MPI's library (a full path to its libmpi.so.40).</summary>
    public const string OpenMpiLibraryVariable = "CHARRNN_OPENMPI_LIBRARY";

    /// <summary>Override folder(s), colon-separated, searched first for the CUDA libraries.</summary>
    public const string LibDirVariable = "CHARRNN_CUDA_LIB_DIR";

    static readonly Lock Gate = new();
    static readonly Dictionary<string, LoadResult> Results = new();

#pragma warning disable CA2255 // registering the DllImport resolver before any P/Invoke is exactly this attribute's use
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register() =>
        NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve);

    static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        var r = Load(name);
        return r.Handle; // IntPtr.Zero lets the runtime throw DllNotFoundException; callers check Load first.
    }

    /// <summary>Outcome of loading one logical library.</summary>
    public sealed record LoadResult(string Name, IntPtr Handle, string? LoadedFrom, IReadOnlyList<string> Tried)
    {
        public bool Ok => Handle != IntPtr.Zero;

        /// <summary>A one-paragraph explanation listing every name and folder tried.</summary>
        public string Describe() => Ok
            ? $"{Name}: loaded {LoadedFrom}"
            : $"{Name}: could not be loaded; tried {string.Join(", ", Tried)}";
    }

    /// <summary>Loads (once) and returns the outcome for a logical library name.</summary>
    public static LoadResult Load(string name)
    {
        lock (Gate)
        {
            if (Results.TryGetValue(name, out var cached)) return cached;
            var result = name switch
            {
                Cuda => LoadFirst(name, ["libcuda.so.1", "libcuda.so"], CudaFolders(), preload: null),
                Cublas => LoadCublas(),
                Nvrtc => LoadFirst(name, ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"],
                    CudaFolders(), preload: "libnvrtc-builtins"),
                OpenBlas => LoadFirst(name, ["libopenblas.so.0", "libopenblas.so"], OpenBlasFolders(), preload: null),
                Mpi => LoadFirst(name, Environment.GetEnvironmentVariable(MpiLibraryVariable) is { Length: > 0 } mpi ? [mpi] : ["libmpich.so.12", "libmpi.so.12"],
                    ["", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"], preload: null),
                Nccl => LoadFirst(name, ["libnccl.so.2", "libnccl.so"], CudaFolders(), preload: null),
                OpenMpi => LoadFirst(name, Environment.GetEnvironmentVariable(OpenMpiLibraryVariable) is { Length: > 0 } ompi ? [ompi] : ["libmpi.so.40"],
                    ["", "/usr/lib/x86_64-linux-gnu", "/usr/lib64/openmpi/lib", "/usr/lib64", "/usr/lib"], preload: null),
                _ => new LoadResult(name, IntPtr.Zero, null, ["(unknown logical library)"]),
            };
            Results[name] = result;
            return result;
        }
    }

    static LoadResult LoadCublas()
    {
        // cuBLAS needs its Lt companion of the same major version; load it first from the same folder.
        var tried = new List<string>();
        foreach (var major in new[] { "13", "12", "11" })
        {
            foreach (var folder in CudaFolders())
            {
                var lt = Combine(folder, $"libcublasLt.so.{major}");
                var main = Combine(folder, $"libcublas.so.{major}");
                tried.Add(main);
                if (!NativeLibrary.TryLoad(lt, out _)) { tried[^1] += " (no " + Path.GetFileName(lt) + ")"; continue; }
                if (NativeLibrary.TryLoad(main, out var h)) return new LoadResult(Cublas, h, main, tried);
            }
        }
        return new LoadResult(Cublas, IntPtr.Zero, null, tried);
    }

    static LoadResult LoadFirst(string name, string[] sonames, IReadOnlyList<string> folders, string? preload)
    {
        var tried = new List<string>();
        foreach (var so in sonames)
        {
            foreach (var folder in folders)
            {
                var candidate = Combine(folder, so);
                tried.Add(candidate);
                if (!NativeLibrary.TryLoad(candidate, out var handle)) continue;
                if (preload != null) PreloadCompanion(handle, preload, so);
                return new LoadResult(name, handle, candidate, tried);
            }
        }
        return new LoadResult(name, IntPtr.Zero, null, tried);
    }

    /// <summary>Loads e.g. libnvrtc-builtins.so.* from the folder the main library came from.</summary>
    static void PreloadCompanion(IntPtr handle, string prefix, string soname)
    {
        var folder = LoadedFolder(handle, soname);
        if (folder == null || !Directory.Exists(folder)) return;
        foreach (var f in Directory.GetFiles(folder, prefix + ".so*").OrderByDescending(f => f.Length))
            if (NativeLibrary.TryLoad(f, out _)) return;
    }

    static string? LoadedFolder(IntPtr handle, string soname)
    {
        // /proc/self/maps names every mapped file; find the one we just loaded.
        try
        {
            foreach (var line in File.ReadLines("/proc/self/maps"))
            {
                var i = line.IndexOf('/');
                if (i < 0) continue;
                var p = line[i..];
                if (Path.GetFileName(p).StartsWith(soname.Split(".so")[0] + ".so", StringComparison.Ordinal))
                    return Path.GetDirectoryName(p);
            }
        }
        catch (IOException) { }
        return null;
    }

    static string Combine(string folder, string file) => folder.Length == 0 ? file : Path.Combine(folder, file);

    /// <summary>Folders for the CUDA libraries, in search order ("" = the default loader path).</summary>
    public static IReadOnlyList<string> CudaFolders()
    {
        var list = new List<string>();
        var over = Environment.GetEnvironmentVariable(LibDirVariable);
        if (!string.IsNullOrEmpty(over)) list.AddRange(over.Split(':', StringSplitOptions.RemoveEmptyEntries));
        list.Add("");
        var cudaPath = Environment.GetEnvironmentVariable("CUDA_PATH");
        if (!string.IsNullOrEmpty(cudaPath)) list.Add(Path.Combine(cudaPath, "lib64"));
        list.Add("/usr/local/cuda/lib64");
        foreach (var sp in SitePackages())
        {
            list.Add(Path.Combine(sp, "nvidia", "cu13", "lib"));
            list.Add(Path.Combine(sp, "nvidia", "cublas", "lib"));
            list.Add(Path.Combine(sp, "nvidia", "cuda_nvrtc", "lib"));
            list.Add(Path.Combine(sp, "nvidia", "nccl", "lib"));
        }
        return list.Distinct().ToList();
    }

    static IReadOnlyList<string> OpenBlasFolders() =>
        ["", "/usr/lib/x86_64-linux-gnu/openblas-pthread", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"];

    /// <summary>Python site-packages folders where pip wheels put nvidia/*/lib.</summary>
    static IEnumerable<string> SitePackages()
    {
        var roots = new List<string>();
        foreach (var baseDir in new[] { "/usr/local/lib", "/usr/lib", "/opt/conda/lib",
                     Path.Combine(Environment.GetEnvironmentVariable("HOME") ?? "/root", ".local", "lib") })
        {
            if (!Directory.Exists(baseDir)) continue;
            try
            {
                foreach (var py in Directory.GetDirectories(baseDir, "python3*"))
                {
                    foreach (var sub in new[] { "site-packages", "dist-packages" })
                    {
                        var sp = Path.Combine(py, sub);
                        if (Directory.Exists(Path.Combine(sp, "nvidia"))) roots.Add(sp);
                    }
                }
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        var venv = Environment.GetEnvironmentVariable("VIRTUAL_ENV");
        if (!string.IsNullOrEmpty(venv) && Directory.Exists(Path.Combine(venv, "lib")))
            foreach (var py in Directory.GetDirectories(Path.Combine(venv, "lib"), "python3*"))
                roots.Add(Path.Combine(py, "site-packages"));
        return roots;
    }
}
