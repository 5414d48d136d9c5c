using System.Reflection;

namespace CharRnn.Rnn.Backends.Cuda;

/// <summary>
/// The <c>kernels/*.cu</c> files and their shared header(s) <c>kernels/*.cuh</c>, embedded in this assembly as
/// resources named <c>kernels.NAME</c>. The CUDA backend compiles them as one NVRTC program (<see cref="Program"/>),
/// so one module holds every kernel and a launch finds its kernel by name.
/// </summary>
public static class KernelSources
{
    /// <summary>The .cu files, by file name.</summary>
    public static IReadOnlyDictionary<string, string> All { get; } = Load(".cu");

    /// <summary>The headers the .cu files include (common.cuh), by file name.</summary>
    public static IReadOnlyDictionary<string, string> Headers { get; } = Load(".cuh");

    /// <summary>The one program: every .cu file included once.</summary>
    public static string Program { get; } = string.Concat(All.Keys.Select(f => $"#include \"{f}\"\n"));

    /// <summary>What <see cref="Program"/> includes: the .cu files and the headers.</summary>
    public static IReadOnlyDictionary<string, string> ProgramHeaders { get; } =
        All.Concat(Headers).ToDictionary(kv => kv.Key, kv => kv.Value);

    static Dictionary<string, string> Load(string extension)
    {
        var asm = typeof(KernelSources).Assembly;
        var result = new Dictionary<string, string>();
        foreach (var name in asm.GetManifestResourceNames().Where(n => n.StartsWith("kernels.", StringComparison.Ordinal) && n.EndsWith(extension, StringComparison.Ordinal)).Order())
        {
            using var s = asm.GetManifestResourceStream(name)!;
            using var r = new StreamReader(s);
            result[name["kernels.".Length..]] = r.ReadToEnd();
        }
        return result;
    }
}
