using System.Reflection;

namespace CharRnn.Rnn.Backends.Cuda;

/// <summary>The <c>kernels/*.cu</c> files, embedded in this assembly as resources named <c>kernels.NAME.cu</c>.</summary>
public static class KernelSources
{
    public static IReadOnlyDictionary<string, string> All { get; } = Load();

    static Dictionary<string, string> Load()
    {
        var asm = typeof(KernelSources).Assembly;
        var result = new Dictionary<string, string>();
        foreach (var name in asm.GetManifestResourceNames().Where(n => n.StartsWith("kernels.", StringComparison.Ordinal) && n.EndsWith(".cu", StringComparison.Ordinal)).Order())
        {
            using var s = asm.GetManifestResourceStream(name)!;
            using var r = new StreamReader(s);
            result[name["kernels.".Length..]] = r.ReadToEnd();
        }
        return result;
    }
}
