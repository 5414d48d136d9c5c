using CharRnn.Cuda;
using CharRnn.Interop;

namespace CharRnn.Tests;

/// <summary>
/// The no-GPU path against the real driver library (Debian's libcuda1 on a machine without a GPU, as in CI, where
/// cuInit returns CUDA_ERROR_NO_DEVICE). Ignored where a GPU works (the path cannot be shown there) or where no
/// libcuda is installed (then the "not installed" message is what is checked).
/// </summary>
public class NoGpuTests
{
    static GpuProbeResult Probe()
    {
        var p = GpuProbe.Run(0);
        if (p.Usable) Assert.Ignore("A GPU is usable here; the no-GPU path cannot be exercised.");
        return p;
    }

    [Test]
    public void ProbeSaysWhyThereIsNoGpu()
    {
        var p = Probe();
        Assert.That(p.Reason, Is.Not.Empty);
        if (NativeLibraries.Load(NativeLibraries.Cuda).Ok)
            Assert.That(p.Reason, Does.Contain("CUDA_ERROR_NO_DEVICE").Or.Contain("no CUDA device").Or.Contain("CUDA_ERROR"));
        else
            Assert.That(p.Reason, Does.Contain("libcuda.so.1"), "lists what it tried");
    }

    [Test]
    public void RealDriverLibraryIsPresentInCi()
    {
        if (Environment.GetEnvironmentVariable("CHARRNN_REQUIRE_NVRTC") != "1")
            Assert.Ignore("Only required in CI (CHARRNN_REQUIRE_NVRTC=1), where .ci/run installs libcuda1.");
        Assert.That(NativeLibraries.Load(NativeLibraries.Cuda).Ok, Is.True, NativeLibraries.Load(NativeLibraries.Cuda).Describe());
        Assert.That(Probe().Reason, Does.Contain("CUDA_ERROR_NO_DEVICE"));
    }

    [Test]
    public void DeviceCudaFailsClearlyAndAutoFallsBack()
    {
        var reason = Probe().Reason;
        var o = new StringWriter();
        var e = new StringWriter();
        int code = CharRnn.Cli.Program.Run(["train", "--device", "cuda", "--epochs", "1"], o, e);
        Assert.That(code, Is.EqualTo(2), "no GPU is an input the user can fix, not a GPU failure");
        Assert.That(e.ToString(), Does.StartWith("error: --device cuda: no usable GPU: " + reason).And.Contain("--device cpu"));
        Assert.That(e.ToString(), Does.Not.Contain("   at "));

        e = new StringWriter();
        code = CharRnn.Cli.Program.Run(["train", "--device", "auto", "--epochs", "1", "--pred-period", "1", "--hidden", "8", "--pred-len", "2"], o, e);
        Assert.That(code, Is.EqualTo(0), e.ToString());
        Assert.That(e.ToString(), Does.Contain("no usable GPU (" + reason + "); training on the CPU."));
    }

    [Test]
    public void InfoReportsTheReason()
    {
        var reason = Probe().Reason;
        var o = new StringWriter();
        int code = CharRnn.Cli.Program.Run(["info"], o, new StringWriter());
        Assert.That(code, Is.EqualTo(0));
        Assert.That(o.ToString(), Does.Contain("gpu: none usable: " + reason));
    }

    [Test]
    public void MissingLibraryListsEverythingTried()
    {
        var r = NativeLibraries.Load(NativeLibraries.Cublas);
        if (r.Ok) Assert.Ignore("cuBLAS is installed here: " + r.LoadedFrom);
        Assert.That(r.Describe(), Does.Contain("libcublas.so.13").And.Contain("libcublas.so.12").And.Contain("libcublas.so.11")
            .And.Contain("/usr/local/cuda/lib64"));
    }
}
