using CharRnn.Cuda;
using CharRnn.Rnn.Backends.Cuda;

namespace CharRnn.Tests;

/// <summary>
/// Every kernel compiles with NVRTC for sm_80 and sm_90, with an empty log (no warnings). Needs only libnvrtc, not a
/// GPU: Ignored with the reason where libnvrtc is absent, and failed then when CHARRNN_REQUIRE_NVRTC=1 (CI).
/// </summary>
[Category("Nvrtc")]
public class NvrtcTests
{
    [SetUp]
    public void RequireNvrtc()
    {
        if (KernelCompiler.IsAvailable) return;
        if (Environment.GetEnvironmentVariable("CHARRNN_REQUIRE_NVRTC") == "1")
            Assert.Fail("CHARRNN_REQUIRE_NVRTC=1 but NVRTC does not load: " + KernelCompiler.UnavailableReason);
        Assert.Ignore("NVRTC is not installed: " + KernelCompiler.UnavailableReason);
    }

    public static IEnumerable<string> Files => KernelSources.All.Keys;

    /// <summary>The kernels a compiled file defines, read from its PTX (<c>.entry</c> lines), not guessed from the source.</summary>
    static List<string> Entries(string file, string source, IReadOnlyDictionary<string, string> headers)
    {
        var ptx = System.Text.Encoding.ASCII.GetString(KernelCompiler.Compile(file, source, "compute_80", headers, useCache: false).Image);
        return System.Text.RegularExpressions.Regex.Matches(ptx, @"\.entry\s+(\w+)").Select(m => m.Groups[1].Value).ToList();
    }

    /// <summary>Every kernels/*.cu (but GpuProbe's probe.cu, which CharRnn.Cuda embeds) is embedded, and the one program
    /// the CUDA backend compiles defines every kernel of every file: nothing to list by hand when an op is added.</summary>
    [Test]
    public void KernelFilesAreEmbeddedAndTheProgramHoldsEveryKernel()
    {
        Assert.That(KernelSources.Headers.Keys, Is.EquivalentTo(new[] { "cluster.cuh", "common.cuh" }));
        if (InteropTests.RepoRoot() is string root)
            Assert.That(Files, Is.EquivalentTo(Directory.GetFiles(Path.Combine(root, "kernels"), "*.cu").Select(Path.GetFileName)
                .Where(f => f != "probe.cu")));
        var perFile = Files.SelectMany(f => Entries(f, KernelSources.All[f], KernelSources.Headers)).ToList();
        Assert.That(perFile, Has.Count.GreaterThanOrEqualTo(21));
        Assert.That(perFile, Is.Unique, "kernel names are unique across files");
        Assert.That(Entries("charrnn_kernels.cu", KernelSources.Program, KernelSources.ProgramHeaders), Is.EquivalentTo(perFile));
    }

    [Test]
    public void EveryKernelCompilesWithoutWarnings([ValueSource(nameof(Files))] string file, [Values("sm_80", "sm_90")] string arch)
    {
        var image = KernelCompiler.Compile(file, KernelSources.All[file], arch, KernelSources.Headers, useCache: false);
        Assert.That(image.IsCubin, Is.True);
        Assert.That(image.Image.Length, Is.GreaterThan(1000));
        Assert.That(image.Image[..4], Is.EqualTo(new byte[] { 0x7F, (byte)'E', (byte)'L', (byte)'F' }), "a CUBIN is an ELF image");
        Assert.That(image.Log, Is.Empty, "NVRTC log (warnings)");
    }

    [Test]
    public void TheWholeProgramCompilesWithoutWarnings([Values("sm_80", "sm_90")] string arch)
    {
        var image = KernelCompiler.Compile("charrnn_kernels.cu", KernelSources.Program, arch, KernelSources.ProgramHeaders, useCache: false);
        Assert.That(image.IsCubin, Is.True);
        Assert.That(image.Log, Is.Empty, "NVRTC log (warnings)");
    }

    [Test]
    public void EachFileOpensWithWhatItComputesAndItsLaunchShape([ValueSource(nameof(Files))] string file)
    {
        var source = KernelSources.All[file];
        var head = string.Join("\n", source.Split('\n').TakeWhile(l => l.StartsWith("//")));
        Assert.That(head, Does.Contain("Launch"));
        var entries = Entries(file, source, KernelSources.Headers);
        Assert.That(entries, Is.Not.Empty);
        foreach (var name in entries) Assert.That(head, Does.Contain(name));
        var includes = source.Split('\n').Where(l => l.TrimStart().StartsWith("#include")).Select(l => l.Trim()).ToList();
        // One of the project's own headers (common.cuh, or cluster.cuh, which includes it), nothing else: NVRTC 11.8 in
        // CI has no built-in headers.
        Assert.That(includes, Has.Count.EqualTo(1));
        Assert.That(KernelSources.Headers.Keys.Select(h => $"#include \"{h}\""), Does.Contain(includes[0]));
    }

    /// <summary>A header changes the cached image's key: editing common.cuh must not reuse a stale kernel.</summary>
    [Test]
    public void HeadersArePartOfTheCacheKey()
    {
        using var dir = new TempDir();
        var old = Environment.GetEnvironmentVariable("CHARRNN_KERNEL_CACHE");
        Environment.SetEnvironmentVariable("CHARRNN_KERNEL_CACHE", dir.Path);
        try
        {
            const string src = "#include \"k.cuh\"\nextern \"C\" __global__ void k(float* x) { x[0] = K; }";
            var a = KernelCompiler.Compile("k.cu", src, "sm_80", new Dictionary<string, string> { ["k.cuh"] = "#define K 1.0f" });
            var b = KernelCompiler.Compile("k.cu", src, "sm_80", new Dictionary<string, string> { ["k.cuh"] = "#define K 2.0f" });
            Assert.That(b.FromCache, Is.False);
            Assert.That(b.Image, Is.Not.EqualTo(a.Image));
            Assert.That(Directory.GetFiles(dir.Path, "*.cubin"), Has.Length.EqualTo(2));
        }
        finally
        {
            Environment.SetEnvironmentVariable("CHARRNN_KERNEL_CACHE", old);
        }
    }

    [Test]
    public void PtxForAVirtualArch()
    {
        var image = KernelCompiler.Compile("optim.cu", KernelSources.All["optim.cu"], "compute_80", KernelSources.Headers, useCache: false);
        Assert.That(image.IsCubin, Is.False);
        Assert.That(System.Text.Encoding.ASCII.GetString(image.Image), Does.Contain(".visible .entry adam_update"));
    }

    [Test]
    public void CompileErrorCarriesProgramOptionsAndLog()
    {
        var e = Assert.Throws<NvrtcCompileException>(() =>
            KernelCompiler.Compile("broken.cu", "extern \"C\" __global__ void k(float* x) { x[0] = undefined_thing; }", "sm_80", useCache: false))!;
        Assert.That(e.Program, Is.EqualTo("broken.cu"));
        Assert.That(e.Options, Does.Contain("--gpu-architecture=sm_80"));
        Assert.That(e.Log, Does.Contain("undefined_thing"));
        Assert.That(e.Message, Does.Contain("broken.cu").And.Contain("undefined_thing"));
    }

    [Test]
    public void DiskCacheReturnsTheSameImage()
    {
        using var dir = new TempDir();
        var old = Environment.GetEnvironmentVariable("CHARRNN_KERNEL_CACHE");
        Environment.SetEnvironmentVariable("CHARRNN_KERNEL_CACHE", dir.Path);
        try
        {
            var a = KernelCompiler.Compile("reduce.cu", KernelSources.All["reduce.cu"], "sm_80", KernelSources.Headers);
            var b = KernelCompiler.Compile("reduce.cu", KernelSources.All["reduce.cu"], "sm_80", KernelSources.Headers);
            Assert.That(a.FromCache, Is.False);
            Assert.That(b.FromCache, Is.True);
            Assert.That(b.Image, Is.EqualTo(a.Image));
            Assert.That(Directory.GetFiles(dir.Path, "*.cubin"), Has.Length.EqualTo(1));
        }
        finally
        {
            Environment.SetEnvironmentVariable("CHARRNN_KERNEL_CACHE", old);
        }
    }

    [Test]
    public void VersionAndArchsAreReported()
    {
        var (major, _) = KernelCompiler.Version();
        Assert.That(major, Is.GreaterThanOrEqualTo(11));
        Assert.That(KernelCompiler.SupportedArchs(), Does.Contain(80));
        Assert.That(KernelCompiler.TargetFor(8, 0), Is.EqualTo("sm_80"));
        Assert.That(KernelCompiler.TargetFor(99, 9), Does.StartWith("compute_"));
    }
}
