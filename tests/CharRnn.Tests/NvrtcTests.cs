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

    [Test]
    public void KernelFilesAreEmbedded()
    {
        Assert.That(Files, Is.EquivalentTo(new[] { "activation.cu", "gates.cu", "onehot.cu", "optim.cu", "reduce.cu", "softmax_xent.cu" }));
        var names = KernelSources.All.Values.SelectMany(CudaBackend.KernelNames).ToList();
        Assert.That(names, Is.EquivalentTo(new[]
        {
            "bias_act_forward", "act_backward", "one_hot_scatter", "gather_rows", "scatter_add_rows", "sumsq_partial",
            "clip_finalize", "sgd_update", "adam_update", "column_sum", "argmax_rows", "softmax_xent", "loss_accumulate",
            "lstm_forward", "lstm_backward", "gru_forward", "gru_backward",
            "gru_reset_gates", "gru_candidate", "gru_candidate_backward", "gru_reset_backward",
        }));
    }

    [Test]
    public void EveryKernelCompilesWithoutWarnings([ValueSource(nameof(Files))] string file, [Values("sm_80", "sm_90")] string arch)
    {
        var image = KernelCompiler.Compile(file, KernelSources.All[file], arch, useCache: false);
        Assert.That(image.IsCubin, Is.True);
        Assert.That(image.Image.Length, Is.GreaterThan(1000));
        Assert.That(image.Image[..4], Is.EqualTo(new byte[] { 0x7F, (byte)'E', (byte)'L', (byte)'F' }), "a CUBIN is an ELF image");
        Assert.That(image.Log, Is.Empty, "NVRTC log (warnings)");
    }

    [Test]
    public void EachFileOpensWithWhatItComputesAndItsLaunchShape([ValueSource(nameof(Files))] string file)
    {
        var head = string.Join("\n", KernelSources.All[file].Split('\n').TakeWhile(l => l.StartsWith("//")));
        Assert.That(head, Does.Contain("Launch"));
        foreach (var name in CudaBackend.KernelNames(KernelSources.All[file])) Assert.That(head, Does.Contain(name));
        Assert.That(KernelSources.All[file], Does.Not.Contain("#include"), "NVRTC 11.8 in CI has no built-in headers");
    }

    [Test]
    public void PtxForAVirtualArch()
    {
        var image = KernelCompiler.Compile("optim.cu", KernelSources.All["optim.cu"], "compute_80", useCache: false);
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
            var a = KernelCompiler.Compile("reduce.cu", KernelSources.All["reduce.cu"], "sm_80");
            var b = KernelCompiler.Compile("reduce.cu", KernelSources.All["reduce.cu"], "sm_80");
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
