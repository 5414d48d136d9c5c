using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using CharRnn.Interop;

namespace CharRnn.Tests;

/// <summary>
/// The bindings in <c>src/Interop</c> are exactly what CharRnn calls, and the CUDA emulator implements exactly the
/// driver and cuBLAS functions bound there (and its fault-injecting NVRTC exactly the NVRTC ones) — no more (it would
/// test functions nobody calls), no less (a binding it lacks would fail only when first called).
/// </summary>
public class InteropTests
{
    /// <summary>The repository root (the folder holding CharRnn.sln), or null when run from the GPU bundle.</summary>
    internal static string? RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "CharRnn.sln"))) return d.FullName;
        return null;
    }

    /// <summary>The repository root, or Ignore where the sources are not here (the tests that read them).</summary>
    internal static string Root() => RepoRoot() ?? Ignore<string>("the sources are not here (the GPU bundle carries binaries only)");

    static T Ignore<T>(string why)
    {
        Assert.Ignore(why);
        return default!;
    }

    /// <summary>The C functions a class binds: its [LibraryImport] methods, by (entry point) name.</summary>
    static SortedSet<string> Bound(Type t) => new(t.GetMethods(BindingFlags.Public | BindingFlags.Static)
        .Select(m => (m, a: m.GetCustomAttribute<LibraryImportAttribute>())).Where(x => x.a != null)
        .Select(x => x.a!.EntryPoint ?? x.m.Name), StringComparer.Ordinal);

    [Test]
    public void EveryBindingIsCalled([Values(typeof(CudaDriver), typeof(Cublas), typeof(Nvrtc), typeof(OpenBlas), typeof(Libc), typeof(Mpi), typeof(Nccl))] Type binding)
    {
        var root = Root();
        var callers = Directory.EnumerateFiles(Path.Combine(root, "src"), "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}Interop{Path.DirectorySeparatorChar}") && !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}"))
            .Select(File.ReadAllText).ToList();
        var bound = Bound(binding);
        Assert.That(bound, Is.Not.Empty);
        var unused = bound.Where(name => !callers.Any(src => Regex.IsMatch(src, $@"\b{binding.Name}\.{name}\s*\("))).ToList();
        Assert.That(unused, Is.Empty, $"bound in src/Interop/{binding.Name}.cs but called nowhere in src/: bind only what is called");
    }

    /// <summary>The global functions an ELF shared object defines (its dynamic symbol table).</summary>
    static SortedSet<string> ExportedFunctions(string path)
    {
        var b = File.ReadAllBytes(path);
        Assert.That(b.AsSpan(0, 4).ToArray(), Is.EqualTo(new byte[] { 0x7F, (byte)'E', (byte)'L', (byte)'F' }), path);
        Assert.That(b[4], Is.EqualTo(2), "ELF64");
        long shoff = BitConverter.ToInt64(b, 0x28);
        int shentsize = BitConverter.ToUInt16(b, 0x3A), shnum = BitConverter.ToUInt16(b, 0x3C);
        var result = new SortedSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < shnum; i++)
        {
            long sh = shoff + (long)i * shentsize;
            if (BitConverter.ToUInt32(b, (int)sh + 4) != 11) continue; // SHT_DYNSYM
            long off = BitConverter.ToInt64(b, (int)sh + 0x18), size = BitConverter.ToInt64(b, (int)sh + 0x20);
            int link = (int)BitConverter.ToUInt32(b, (int)sh + 0x28);
            long strOff = BitConverter.ToInt64(b, (int)(shoff + (long)link * shentsize) + 0x18);
            for (long s = off; s < off + size; s += 24)
            {
                int name = (int)BitConverter.ToUInt32(b, (int)s);
                byte info = b[s + 4];
                ushort shndx = BitConverter.ToUInt16(b, (int)s + 6);
                if (shndx == 0 || (info & 0xF) != 2 || (info >> 4) == 0) continue; // defined, STT_FUNC, not STB_LOCAL
                int start = (int)(strOff + name), end = Array.IndexOf(b, (byte)0, start);
                result.Add(Encoding.ASCII.GetString(b, start, end - start));
            }
        }
        return result;
    }

    [TestCase("libcuda.so.1", typeof(CudaDriver), "^cu[A-Z]")]
    [TestCase("libcublas.so.12", typeof(Cublas), "^cublas")]
    [TestCase("nvrtc-faults/libnvrtc.so.13", typeof(Nvrtc), "^nvrtc")]
    [TestCase("libnccl.so.2", typeof(Nccl), "^nccl")]
    public void TheEmulatorImplementsExactlyWhatIsBound(string library, Type binding, string prefix)
    {
        var path = Path.Combine(Root(), "artifacts", "cuda-emulator", library);
        if (!File.Exists(path))
        {
            if (Environment.GetEnvironmentVariable("CHARRNN_REQUIRE_EMULATOR") == "1")
                Assert.Fail($"CHARRNN_REQUIRE_EMULATOR=1 but {path} is not built");
            Assert.Ignore($"the CUDA emulator is not built ({path}); ./build.sh --target=Emulator builds it");
        }
        var exported = ExportedFunctions(path).Where(n => Regex.IsMatch(n, prefix)).ToList();
        Assert.That(exported, Is.EqualTo(Bound(binding).ToList()), $"{library}'s API functions vs src/Interop/{binding.Name}.cs");
    }
}
