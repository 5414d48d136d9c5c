using System.Text.Json.Nodes;
using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Backends.Cuda;
using CharRnn.Rnn.Model;

namespace CharRnn.Tests;

/// <summary>
/// The recurrence planner's machinery (<c>CudaBackend.Plans</c>, <see cref="PlanCache"/>): auto times every eligible
/// plan, runs the fastest, caches the choice, reuses it, times again when the cache is off or names a plan that is no
/// longer a candidate; the forced modes are not timed. On the CUDA emulator the timings mean nothing (which plan wins
/// is not asserted); the machinery is what is tested. Each test has its own cache file (CHARRNN_PLAN_CACHE).
/// </summary>
[Category("Gpu"), NonParallelizable]
public class RecurrencePlanTests
{
    string? _saved;

    [SetUp]
    public void SaveCacheSetting() => _saved = Environment.GetEnvironmentVariable("CHARRNN_PLAN_CACHE");

    [TearDown]
    public void RestoreCacheSetting() => Environment.SetEnvironmentVariable("CHARRNN_PLAN_CACHE", _saved);

    static string Describe(IBackend be, int hidden, int batch, int steps) =>
        GpuPathTests.RecurrenceOf(be, new ModelSpec(ModelKind.Concise, 30, hidden, Activation.Tanh, CellKind.Rnn, 1), batch, steps);

    static JsonObject ReadCache(string path) => (JsonObject)JsonNode.Parse(File.ReadAllText(path))!;

    [Test]
    public void AutoTimesEveryEligiblePlanCachesTheFastestAndReusesIt()
    {
        using var dir = new TempDir();
        var file = dir.File("plans.json");
        Environment.SetEnvironmentVariable("CHARRNN_PLAN_CACHE", file);
        string first;
        using (var gpu = GpuPathTests.Gpu(timed: true))
            first = Describe(gpu, 64, 8, 6);
        Assert.That(first, Does.Contain("; timed steps ").And.Contain(" µs a step").And.Not.Contain("cached"));
        var root = ReadCache(file);
        Assert.That(root, Has.Count.EqualTo(1));
        var (key, entry) = root.First();
        Assert.That(key, Does.Contain("H 64 B 8 T 6").And.Contain("| fp32 | auto |").And.Contain("CharRnn CUDA emulator"));
        var timed = entry!["timings"]!.AsArray().Select(t => t!["plan"]!.GetValue<string>()).ToList();
        // per step, the grid kernels, and each cluster size that divides H 64 (16, 8, 4, 2), 8 clusters of one row each
        Assert.That(timed, Has.Count.EqualTo(6));
        Assert.That(timed[0], Is.EqualTo("steps"));
        Assert.That(timed[1], Does.StartWith("persistent "));
        Assert.That(timed.Skip(2), Is.EqualTo(new[] { "cluster 8x16", "cluster 8x8", "cluster 8x4", "cluster 8x2" }));
        Assert.That(entry["timings"]!.AsArray().All(t => t!["us_per_step"]!.GetValue<double>() > 0), "every plan was timed");
        string chosen = entry["plan"]!.GetValue<string>();
        Assert.That(timed, Does.Contain(chosen));
        Assert.That(first, Does.StartWith(PathPrefix(chosen)), "the run says which plan runs");

        string second;
        using (var gpu = GpuPathTests.Gpu(timed: true))
            second = Describe(gpu, 64, 8, 6);
        Assert.That(second, Does.EndWith(", cached").And.StartWith(PathPrefix(chosen)), "a new backend reuses the cached choice");
        Assert.That(File.ReadAllText(file), Is.EqualTo(root.ToJsonString(new() { WriteIndented = true }) + "\n"), "reuse writes nothing");
    }

    /// <summary>The gated cells' candidates: per step and each cluster shape (no grid kernels); the book's GRU has none.</summary>
    [Test]
    public void GatedCellsTimeTheStepsAgainstTheClusters()
    {
        using var dir = new TempDir();
        var file = dir.File("plans.json");
        Environment.SetEnvironmentVariable("CHARRNN_PLAN_CACHE", file);
        using var gpu = GpuPathTests.Gpu(timed: true);
        foreach (var cell in new[] { CellKind.Lstm, CellKind.Gru })
            Assert.That(GpuPathTests.RecurrenceOf(gpu, new ModelSpec(ModelKind.Concise, 30, 32, Activation.Tanh, cell, 1), 4, 5),
                Does.Contain("; timed steps "), cell.ToString());
        var root = ReadCache(file);
        Assert.That(root.Select(kv => kv.Key.Split(" | ")[1]), Is.EquivalentTo(new[] { "lstm 2 biases H 32 B 4 T 5", "gru 2 biases H 32 B 4 T 5" }));
        foreach (var (_, entry) in root)
            Assert.That(entry!["timings"]!.AsArray().Select(t => t!["plan"]!.GetValue<string>()),
                Is.EqualTo(new[] { "steps", "cluster 4x16", "cluster 4x8", "cluster 4x4", "cluster 4x2" }));
        Assert.That(GpuPathTests.RecurrenceOf(gpu, new ModelSpec(ModelKind.Scratch, 30, 32, Activation.Tanh, CellKind.Gru, 1), 4, 5),
            Does.StartWith("per-step (the book's GRU"));
        // The char-rnn-sized LSTM: no cluster fits an FP32 W_hh of H 512, so there is nothing to time and nothing cached.
        Assert.That(GpuPathTests.RecurrenceOf(gpu, new ModelSpec(ModelKind.Concise, 30, 512, Activation.Tanh, CellKind.Lstm, 1), 64, 5), Does.StartWith("per-step (H 512, B 64:").And.EndWith(": the only plan that fits, so nothing to time)"));
        Assert.That(ReadCache(file), Has.Count.EqualTo(2));
    }

    /// <summary>A checkpoint records the plan its run trained with; a resume with auto runs it again (the same kernels,
    /// so the run continues as it would have), a forced --recurrence wins, and the CPU records none.</summary>
    [Test]
    public void AResumeRunsThePlanItsCheckpointRecorded()
    {
        GpuPathTests.Gpu().Dispose(); // Ignore (or fail under CHARRNN_REQUIRE_GPU=1) without a usable GPU
        using var dir = new TempDir();
        var ck = dir.File("ck");
        string[] common = ["--device", "cuda", "--hidden", "32", "--pred-len", "5", "--chars", "3000", "--checkpoint-dir", ck];
        var e = new StringWriter();
        Assert.That(CharRnn.Cli.Program.Run(["train", "--epochs", "1", "--recurrence", "cluster", .. common], new StringWriter(), e), Is.EqualTo(0), e.ToString());
        var saved = Directory.GetFiles(ck, "*.ckpt").Order().Last(); // the latest (a final one may sit beside the epoch's)
        Assert.That(Rnn.Checkpoints.Checkpoint.Load(saved).Header.Recurrence, Is.EqualTo("cluster 16x8"));
        e = new StringWriter();
        Assert.That(CharRnn.Cli.Program.Run(["train", "--device", "cuda", "--resume", ck, "--epochs", "2", "--pred-len", "5"], new StringWriter(), e), Is.EqualTo(0), e.ToString());
        Assert.That(e.ToString(), Does.Contain("charrnn: recurrence cluster (16 × 8 blocks, 2 rows each); as the resumed checkpoint ran;"));
        e = new StringWriter();
        Assert.That(CharRnn.Cli.Program.Run(["train", "--device", "cuda", "--resume", ck, "--epochs", "3", "--pred-len", "5", "--recurrence", "steps"], new StringWriter(), e), Is.EqualTo(0), e.ToString());
        Assert.That(e.ToString(), Does.Contain("charrnn: recurrence per-step (--recurrence steps);"));
        var cpu = dir.File("cpu");
        Assert.That(CharRnn.Cli.Program.Run(["train", "--device", "cpu", "--hidden", "16", "--epochs", "1", "--pred-len", "5", "--chars", "3000", "--checkpoint-dir", cpu], new StringWriter(), new StringWriter()), Is.EqualTo(0));
        Assert.That(Rnn.Checkpoints.Checkpoint.Load(Directory.GetFiles(cpu, "*.ckpt").Order().Last()).Header.Recurrence, Is.Null);
    }

    /// <summary>A plan the card refuses at launch although the occupancy query allowed it drops out with its reason (the
    /// emulator refuses clusters of 8 here, CHARRNN_EMULATOR_REFUSE_CLUSTER); the run goes on with the fastest of the
    /// rest, and nothing is cached, so the next run times again.</summary>
    [Test]
    public void APlanTheCardRefusesDropsOutAndTheRunGoesOn()
    {
        GpuPathTests.Gpu().Dispose(); // Ignore (or fail under CHARRNN_REQUIRE_GPU=1) without a usable GPU
        using var dir = new TempDir();
        var file = dir.File("plans.json");
        var env = new Dictionary<string, string>
        {
            ["CHARRNN_PLAN_TIMING"] = "on", ["CHARRNN_PLAN_CACHE"] = file, ["CHARRNN_EMULATOR_REFUSE_CLUSTER"] = "8",
        };
        var (code, _, err) = CliProcess.Run(["train", "--device", "cuda", "--epochs", "1", "--hidden", "32", "--chars", "3000", "--pred-len", "5"], env);
        Assert.That(code, Is.EqualTo(0), err);
        Assert.That(err, Does.Contain("; timed steps ").And.Contain("; cluster 16x8 refused: CUDA_ERROR_INVALID_CLUSTER_SIZE"));
        Assert.That(File.Exists(file), Is.False, "a timing with a refusal is not cached");
    }

    static string PathPrefix(string id) => id == "steps" ? "per-step" : id.Split(' ')[0];

    [Test]
    public void AStaleChoiceIsTimedAgainAndOffKeepsNothing()
    {
        using var dir = new TempDir();
        var file = dir.File("plans.json");
        Environment.SetEnvironmentVariable("CHARRNN_PLAN_CACHE", file);
        using (var gpu = GpuPathTests.Gpu(timed: true)) Describe(gpu, 32, 4, 5);
        var root = ReadCache(file);
        var key = root.First().Key;
        root[key]!["plan"] = "cluster 99x99"; // a plan this build no longer offers (a kernel or planner change)
        File.WriteAllText(file, root.ToJsonString());
        using (var gpu = GpuPathTests.Gpu(timed: true))
            Assert.That(Describe(gpu, 32, 4, 5), Does.Not.Contain("cached"), "timed again");
        Assert.That(ReadCache(file)[key]!["plan"]!.GetValue<string>(), Is.Not.EqualTo("cluster 99x99"), "and the entry replaced");

        File.WriteAllText(file, "{ not json");
        using (var gpu = GpuPathTests.Gpu(timed: true))
            Assert.That(Describe(gpu, 32, 4, 5), Does.Contain("; timed "), "a broken cache file is ignored, not an error");

        var off = dir.File("never.json");
        Environment.SetEnvironmentVariable("CHARRNN_PLAN_CACHE", "off");
        using (var gpu = GpuPathTests.Gpu(timed: true))
            Assert.That(Describe(gpu, 32, 4, 5), Does.Contain("; timed ").And.Not.Contain("cached"));
        using (var gpu = GpuPathTests.Gpu(timed: true))
            Assert.That(Describe(gpu, 32, 4, 5), Does.Not.Contain("cached"), "off: every backend times again");
        Assert.That(PlanCache.FilePath(), Is.Null);
    }

    [Test]
    public void ForcedPathsAreNotTimedAndTheChoiceIsBitStable()
    {
        using var dir = new TempDir();
        Environment.SetEnvironmentVariable("CHARRNN_PLAN_CACHE", dir.File("plans.json"));
        using (var steps = GpuPathTests.Gpu(RecurrenceMode.Steps, timed: true))
            Assert.That(Describe(steps, 64, 8, 6), Is.EqualTo("per-step (--recurrence steps)"));
        using (var grid = GpuPathTests.Gpu(RecurrenceMode.Persistent, timed: true))
            Assert.That(Describe(grid, 64, 8, 6), Does.StartWith("persistent (").And.Not.Contain("timed"));
        Assert.That(File.Exists(dir.File("plans.json")), Is.False, "nothing timed, nothing cached");
        // A timed auto run repeats bit for bit: the plan is chosen once per backend and shape.
        using var gpu = GpuPathTests.Gpu(timed: true);
        var spec = new ModelSpec(ModelKind.Concise, GpuPathTests.Small.Vocab.Count, 64, Activation.Tanh, CellKind.Rnn, 1);
        var a = GpuPathTests.OneStep(gpu, spec, 8, 6, 5);
        var b = GpuPathTests.OneStep(gpu, spec, 8, 6, 5);
        Assert.That(b.TopHs, Is.EqualTo(a.TopHs));
        for (int i = 0; i < a.Grads.Length; i++) Assert.That(b.Grads[i], Is.EqualTo(a.Grads[i]));
    }
}
