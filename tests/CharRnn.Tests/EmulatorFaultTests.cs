using CharRnn.Rnn.Checkpoints;

namespace CharRnn.Tests;

/// <summary>
/// GPU failures, injected by the CUDA emulator (which a real GPU cannot be asked to produce): an out-of-memory at any
/// allocation, an NVRTC that cannot compile the kernels, a kernel that faults mid-run. Each ends in one error line
/// naming the cause and the way out, never a trace, and the last checkpoint stays intact. Child processes, because
/// the emulator reads its fault settings when the driver initialises. Needs the emulator built (the Test task builds
/// it; required under CHARRNN_REQUIRE_EMULATOR=1), not a GPU.
/// </summary>
[Category("Emulator")]
public class EmulatorFaultTests
{
    static string Emulator()
    {
        var dir = InteropTests.RepoRoot() is string root ? Path.Combine(root, "artifacts", "cuda-emulator") : null;
        if (dir != null && File.Exists(Path.Combine(dir, "libcuda.so.1"))) return dir;
        if (Environment.GetEnvironmentVariable("CHARRNN_REQUIRE_EMULATOR") == "1")
            Assert.Fail("CHARRNN_REQUIRE_EMULATOR=1 but the CUDA emulator is not built (./build.sh --target=Emulator)");
        Assert.Ignore("the CUDA emulator is not built here (./build.sh --target=Emulator builds it)");
        return "";
    }

    static readonly string[] Tiny = ["train", "--device", "cuda", "--hidden", "16", "--batch", "4", "--steps", "8", "--chars", "1000",
        "--pred-len", "4", "--epochs", "4"];

    static (int Code, string Out, string Err) Run(string[] args, params (string, string)[] env)
    {
        var vars = new Dictionary<string, string> { ["CHARRNN_CUDA_LIB_DIR"] = Emulator() };
        foreach (var (k, v) in env) vars[k] = v;
        return CliProcess.Run(args, vars);
    }

    /// <summary>Allocation N fails: during setup (the probe, the backend, the model), at the first epoch's upload, or
    /// at a later report (the predictor allocates). The error names the GPU's memory and the fixes; where a checkpoint
    /// was saved before, it is named and loads.</summary>
    [TestCase(1)]
    [TestCase(4)]
    [TestCase(12)]
    [TestCase(40)]
    [TestCase(60)]
    public void OutOfMemoryAtAnyAllocation(int n)
    {
        using var dir = new TempDir();
        var (code, o, e) = Run([.. Tiny, "--pred-period", "1", "--checkpoint-dir", dir.Path, "--save-every", "1"], ("CHARRNN_EMULATOR_FAIL_ALLOC_AT", n.ToString()));
        var line = CliProcess.OneErrorLine(e);
        Assert.That(code, Is.EqualTo(3), e); // a GPU failure, wherever it lands (#26: allocations 1 and 4 exited 2)
        Assert.That(line, Does.Contain("CUDA_ERROR_OUT_OF_MEMORY"));
        Assert.That(line, Does.Contain("--device cpu"), "the way out");
        Assert.That(o, Does.Not.Contain("total training time"));
        foreach (var ck in Directory.GetFiles(dir.Path, "epoch-*.ckpt")) Assert.DoesNotThrow(() => Checkpoint.Load(ck));
        var saved = Directory.GetFiles(dir.Path, "epoch-*.ckpt");
        if (saved.Length > 0) Assert.That(line, Does.Contain("is intact").And.Contain(saved.Order().Last()));
    }

    [Test]
    public void KernelsThatDoNotCompileAreOneLine()
    {
        var faults = Path.Combine(Emulator(), "nvrtc-faults");
        var vars = new Dictionary<string, string>
        {
            ["CHARRNN_CUDA_LIB_DIR"] = faults + ":" + Emulator(),
            ["CHARRNN_EMULATOR_FAIL_COMPILE"] = "charrnn_kernels.cu",
        };
        var (code, o, e) = CliProcess.Run([.. Tiny, "--pred-period", "1"], vars);
        Assert.That(code, Is.EqualTo(2), e);
        var line = CliProcess.OneErrorLine(e);
        Assert.That(line, Does.Contain("NVRTC could not compile charrnn_kernels.cu").And.Contain("injected by CHARRNN_EMULATOR_FAIL_COMPILE"));
        Assert.That(line, Does.Contain("all in").And.Contain("--device cpu"), "where the whole log is, and the way out");
        Assert.That(o, Is.Empty);
        // The probe's own program failing: auto falls back to the CPU, saying why in one line.
        vars["CHARRNN_EMULATOR_FAIL_COMPILE"] = "probe.cu";
        (code, o, e) = CliProcess.Run(["train", "--device", "auto", "--hidden", "8", "--epochs", "1", "--pred-period", "1", "--pred-len", "2", "--chars", "1000", "--batch", "4", "--steps", "8"], vars);
        Assert.That(code, Is.EqualTo(0), e);
        Assert.That(e, Does.Match(@"charrnn: no usable GPU \(NVRTC could not compile probe\.cu[^\n]*\); training on the CPU\."));
    }

    /// <summary>A kernel faults in epoch 3 (after the epoch-2 checkpoint): one line naming the fault and the intact
    /// checkpoint, which loads and resumes on the CPU.</summary>
    [Test]
    public void AKernelFaultMidRunKeepsTheLastCheckpoint()
    {
        using var dir = new TempDir();
        var (code, o, e) = Run([.. Tiny, "--pred-period", "100", "--checkpoint-dir", dir.Path, "--save-every", "1"],
            ("CHARRNN_EMULATOR_FAULT_LAUNCH_AT", "1000")); // kernel runs, graph replays included: ~450 an epoch here
        Assert.That(code, Is.EqualTo(3), e);
        var line = CliProcess.OneErrorLine(e);
        Assert.That(line, Does.Contain("the GPU failed").And.Contain("CUDA_ERROR_ILLEGAL_ADDRESS"));
        var saved = Directory.GetFiles(dir.Path, "epoch-*.ckpt").Order().ToList();
        Assert.That(saved, Is.Not.Empty, "the fault came after a checkpoint");
        Assert.That(line, Does.Contain($"The last checkpoint, {saved[^1]}, is intact"));
        var (rc, _, re) = CliTests.Run("train", "--device", "cpu", "--resume", saved[^1], "--epochs", "4", "--chars", "1000", "--pred-len", "4");
        Assert.That(rc, Is.EqualTo(0), re);
    }

    /// <summary>A peer dies mid-run: NCCL reports it as an asynchronous error, which the trainer polls for before it
    /// waits on the device (instead of hanging in a sync). One error line naming it, the communicator aborted, the
    /// checkpoint before it intact.</summary>
    [Test]
    public void AnNcclPeerFailureEndsTheRunWithOneLine()
    {
        using var dir = new TempDir();
        var (code, _, e) = Run([.. Tiny, "--nccl", "--pred-period", "100", "--checkpoint-dir", dir.Path, "--save-every", "1"],
            ("CHARRNN_EMULATOR_NCCL_ASYNC_ERROR_AT", "200")); // one all-reduce a tensor, 5 a step, ~31 steps an epoch here
        Assert.That(code, Is.EqualTo(CliErrorsUsage), e);
        var line = CliProcess.OneErrorLine(e);
        Assert.That(line, Does.Contain("an NCCL all-reduce failed").And.Contain("NCCL error 6"));
        Assert.That(Directory.GetFiles(dir.Path, "epoch-*.ckpt"), Is.Not.Empty, "the failure came after a checkpoint");
    }

    const int CliErrorsUsage = 2;
}
