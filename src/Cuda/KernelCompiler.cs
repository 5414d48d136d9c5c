using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using CharRnn.Interop;

namespace CharRnn.Cuda;

/// <summary>
/// NVRTC rejected a program: carries the program name, the options and NVRTC's whole log. The message is one line —
/// the log's first error, and where the whole log was written — since it ends up in an <c>error:</c> line.
/// </summary>
public sealed class NvrtcCompileException(string program, IReadOnlyList<string> options, string log, NvrtcResult status)
    : CudaException($"NVRTC could not compile {program} ({status}) with options [{string.Join(" ", options)}]: {Summary(program, log)}")
{
    public string Program { get; } = program;
    public IReadOnlyList<string> Options { get; } = options;
    public string Log { get; } = log;

    static string Summary(string program, string log)
    {
        var lines = log.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var first = lines.FirstOrDefault(l => l.Contains("error", StringComparison.OrdinalIgnoreCase)) ?? lines.FirstOrDefault() ?? "(no log)";
        if (lines.Length <= 1) return first;
        try
        {
            var path = Path.Combine(Path.GetTempPath(), $"charrnn-nvrtc-{Path.GetFileNameWithoutExtension(program)}-{Environment.ProcessId}.log");
            File.WriteAllText(path, log + "\n");
            return $"{first} ({lines.Length} log lines; all in {path})";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"{first} ({lines.Length} log lines)";
        }
    }
}

/// <summary>The output of one compilation: a CUBIN for a real arch (sm_XY) or PTX for a virtual one (compute_XY).</summary>
public sealed record CompiledImage(string Program, string Arch, byte[] Image, bool IsCubin, string Log, bool FromCache);

/// <summary>
/// Compiles CUDA C++ with NVRTC at run time for the device's own architecture and caches images on disk, keyed by
/// SHA-256 of (source, options, arch, NVRTC version). The cache folder is <c>$CHARRNN_KERNEL_CACHE</c>, else
/// <c>$XDG_CACHE_HOME/charrnn/kernels</c> or <c>~/.cache/charrnn/kernels</c>; <c>CHARRNN_KERNEL_CACHE=off</c> disables it.
/// </summary>
public static unsafe class KernelCompiler
{
    /// <summary>Options for every compilation besides the arch. No <c>--std</c>: the kernels are plain C-like CUDA that
    /// every NVRTC dialect default (C++14 in 11.x, C++17 later) accepts, so nothing breaks when a dialect is retired.</summary>
    public static readonly string[] BaseOptions = ["-default-device"];

    public static bool IsAvailable => NativeLibraries.Load(NativeLibraries.Nvrtc).Ok;

    public static string UnavailableReason => NativeLibraries.Load(NativeLibraries.Nvrtc).Describe();

    public static (int Major, int Minor) Version()
    {
        int major, minor;
        CudaCheck.ThrowIfFailed(Nvrtc.nvrtcVersion(&major, &minor));
        return (major, minor);
    }

    /// <summary>The real architectures this NVRTC can compile for, e.g. [50, 52, …, 90].</summary>
    public static int[] SupportedArchs()
    {
        int n;
        CudaCheck.ThrowIfFailed(Nvrtc.nvrtcGetNumSupportedArchs(&n));
        var a = new int[n];
        fixed (int* p = a) CudaCheck.ThrowIfFailed(Nvrtc.nvrtcGetSupportedArchs(p));
        return a;
    }

    /// <summary>
    /// The target for a device of compute capability major.minor: "sm_XY" when this NVRTC knows it (a CUBIN, no JIT),
    /// else PTX for the newest virtual arch it knows that is not newer than the device (the driver JIT-compiles it).
    /// </summary>
    public static string TargetFor(int major, int minor)
    {
        int cc = major * 10 + minor;
        var archs = SupportedArchs();
        if (archs.Contains(cc)) return $"sm_{cc}";
        var lower = archs.Where(a => a <= cc).DefaultIfEmpty(archs.Min()).Max();
        return $"compute_{lower}";
    }

    /// <summary>
    /// Compiles <paramref name="source"/> for <paramref name="arch"/>. <paramref name="headers"/> (name → text) are what
    /// its <c>#include "name"</c> lines find: NVRTC gets them in memory, there is no include path at run time.
    /// </summary>
    public static CompiledImage Compile(string program, string source, string arch,
        IReadOnlyDictionary<string, string>? headers = null, bool useCache = true)
    {
        var options = BaseOptions.Append($"--gpu-architecture={arch}").ToArray();
        var (major, minor) = Version();
        headers ??= new Dictionary<string, string>();
        string? cachePath = null;
        if (useCache && CacheFolder() is string folder)
        {
            var included = string.Concat(headers.OrderBy(h => h.Key, StringComparer.Ordinal).Select(h => $"\n--{h.Key}\n{h.Value}"));
            var key = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(
                $"{source}\n--\n{string.Join(" ", options)}\n--\nnvrtc {major}.{minor}{included}")));
            cachePath = Path.Combine(folder, $"{program}-{arch}-{key[..24]}.{(arch.StartsWith("sm_") ? "cubin" : "ptx")}");
            if (File.Exists(cachePath))
            {
                try { return new CompiledImage(program, arch, File.ReadAllBytes(cachePath), arch.StartsWith("sm_"), "", true); }
                catch (IOException) { }
            }
        }
        var image = CompileNow(program, source, headers, options, out var log, out bool isCubin);
        if (cachePath != null) TryWriteAtomically(cachePath, image);
        return new CompiledImage(program, arch, image, isCubin, log, false);
    }

    /// <summary>Pins UTF-8 copies of <paramref name="strings"/> for a native call taking <c>const char**</c>.</summary>
    sealed class PinnedStrings : IDisposable
    {
        readonly GCHandle[] _handles;
        readonly GCHandle _array;

        public PinnedStrings(IEnumerable<string> strings)
        {
            _handles = strings.Select(s => GCHandle.Alloc(CudaContext.Utf8Z(s), GCHandleType.Pinned)).ToArray();
            _array = GCHandle.Alloc(_handles.Select(h => h.AddrOfPinnedObject()).ToArray(), GCHandleType.Pinned);
        }

        public int Count => _handles.Length;
        public byte** Pointers => Count == 0 ? null : (byte**)_array.AddrOfPinnedObject();

        public void Dispose()
        {
            foreach (var h in _handles) h.Free();
            _array.Free();
        }
    }

    static byte[] CompileNow(string program, string source, IReadOnlyDictionary<string, string> headers, string[] options,
        out string log, out bool isCubin)
    {
        var src = CudaContext.Utf8Z(source);
        var name = CudaContext.Utf8Z(program);
        IntPtr prog;
        // Kept pinned until the compilation is done (NVRTC's documentation does not say when it stops reading them).
        using var contents = new PinnedStrings(headers.Values);
        using var includeNames = new PinnedStrings(headers.Keys);
        fixed (byte* ps = src, pn = name)
            CudaCheck.ThrowIfFailed(Nvrtc.nvrtcCreateProgram(&prog, ps, pn, contents.Count, contents.Pointers, includeNames.Pointers));
        try
        {
            NvrtcResult status;
            using (var opts = new PinnedStrings(options)) status = Nvrtc.nvrtcCompileProgram(prog, opts.Count, opts.Pointers);
            log = ReadLog(prog);
            if (status != NvrtcResult.NVRTC_SUCCESS) throw new NvrtcCompileException(program, options, log, status);
            isCubin = options.Any(o => o.StartsWith("--gpu-architecture=sm_", StringComparison.Ordinal));
            nuint size;
            if (isCubin)
            {
                CudaCheck.ThrowIfFailed(Nvrtc.nvrtcGetCUBINSize(prog, &size));
                var image = new byte[(int)size];
                fixed (byte* p = image) CudaCheck.ThrowIfFailed(Nvrtc.nvrtcGetCUBIN(prog, p));
                return image;
            }
            CudaCheck.ThrowIfFailed(Nvrtc.nvrtcGetPTXSize(prog, &size));
            var ptx = new byte[(int)size];
            fixed (byte* p = ptx) CudaCheck.ThrowIfFailed(Nvrtc.nvrtcGetPTX(prog, p));
            return ptx;
        }
        finally
        {
            Nvrtc.nvrtcDestroyProgram(&prog);
        }
    }

    static string ReadLog(IntPtr prog)
    {
        nuint size;
        if (Nvrtc.nvrtcGetProgramLogSize(prog, &size) != NvrtcResult.NVRTC_SUCCESS || size <= 1) return "";
        var buf = new byte[(int)size];
        fixed (byte* p = buf) Nvrtc.nvrtcGetProgramLog(prog, p);
        return Encoding.UTF8.GetString(buf, 0, buf.Length - 1).Trim();
    }

    /// <summary>CharRnn's folder of caches: <c>$XDG_CACHE_HOME/charrnn</c>, else <c>~/.cache/charrnn</c> (the kernels
    /// here, the recurrence plans beside them).</summary>
    public static string CacheHome() =>
        Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } x ? x
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "charrnn");

    static string? CacheFolder()
    {
        var env = Environment.GetEnvironmentVariable("CHARRNN_KERNEL_CACHE");
        if (env is "off" or "0") return null;
        var folder = !string.IsNullOrEmpty(env) ? env : Path.Combine(CacheHome(), "kernels");
        try
        {
            Directory.CreateDirectory(folder);
            return folder;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    static void TryWriteAtomically(string path, byte[] data)
    {
        var tmp = path + "." + Environment.ProcessId + ".tmp";
        try
        {
            File.WriteAllBytes(tmp, data);
            File.Move(tmp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(tmp); } catch (IOException) { }
        }
    }
}
