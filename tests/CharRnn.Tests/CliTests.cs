using CharRnn.Rnn.Backends.Cuda;
using System.Text;
using System.Text.RegularExpressions;

namespace CharRnn.Tests;

public class CliTests
{
    internal static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = CharRnn.Cli.Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    /// <summary>
    /// A log with every wall-clock figure removed (", time 0.12 sec" on each epoch line, the total time line), so two
    /// runs' logs can be compared: no test may compare timing text, which differs between runs on a loaded machine.
    /// </summary>
    internal static string WithoutTimes(string log) =>
        Regex.Replace(Regex.Replace(log, @", time \d+\.\d+ sec", ""), @"^total training time .*$\n?", "", RegexOptions.Multiline);

    internal const int TinyTokens = 4 * 8; // Tiny's --batch × --steps

    static readonly string[] Tiny = ["train", "--device", "cpu", "--epochs", "4", "--pred-period", "2", "--hidden", "16",
        "--batch", "4", "--steps", "8", "--chars", "1000", "--pred-len", "6"];

    [Test]
    public void TrainPrintsTheBooksLines()
    {
        var (code, o, e) = Run(Tiny);
        Assert.That(code, Is.EqualTo(0), e);
        var lines = o.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines[0], Does.Match(@"^epoch 2, perplexity \d+\.\d{6}, time \d+\.\d{2} sec$"));
        Assert.That(lines[1], Does.Match(@"^ - 分开.{6}$"));
        Assert.That(lines[2], Does.Match(@"^ - 不分开.{6}$"));
        Assert.That(lines[3], Does.StartWith("epoch 4, perplexity "));
        Assert.That(lines[^1], Does.Match(@"^total training time \d+\.\d{2} sec$"));
        Assert.That(e, Does.Contain("vocab"));
    }

    [Test]
    public void EveryPresetAndOverrideRuns([Values("scratch-random", "scratch-consecutive", "concise")] string preset)
    {
        var (code, o, e) = Run([.. Tiny, "--preset", preset, "--prefix", "想要", "--seed", "3", "--clip", "none", "--input", "onehot", "--blas", "managed"]);
        Assert.That(code, Is.EqualTo(0), e);
        Assert.That(Regex.Matches(o, "^ - 想要", RegexOptions.Multiline), Has.Count.EqualTo(2));
    }

    static IEnumerable<TestCaseData> BadInputs()
    {
        yield return new TestCaseData(new[] { "--corpus", "/nonexistent/x.zip" }, "not found").SetName("MissingCorpus");
        yield return new TestCaseData(new[] { "--epochs", "0" }, "--epochs must be a positive").SetName("ZeroEpochs");
        yield return new TestCaseData(new[] { "--hidden", "-3" }, "--hidden must be a positive").SetName("NegativeHidden");
        yield return new TestCaseData(new[] { "--lr", "NaN" }, "--lr must be a positive finite").SetName("NaNLearningRate");
        yield return new TestCaseData(new[] { "--lr", "-1" }, "--lr must be a positive finite").SetName("NegativeLearningRate");
        yield return new TestCaseData(new[] { "--clip", "nan" }, "--clip must be a positive number or 'none'").SetName("NaNClip");
        yield return new TestCaseData(new[] { "--chars", "0" }, "--chars must be").SetName("ZeroChars");
        yield return new TestCaseData(new[] { "--chars", "20" }, "too few for one minibatch").SetName("TooShortCorpus");
        yield return new TestCaseData(new[] { "--prefix", "分开Q" }, "'Q' (U+0051)").SetName("PrefixOutsideVocabulary");
        yield return new TestCaseData(new[] { "--device", "tpu" }, "--device must be").SetName("UnknownDevice");
        yield return new TestCaseData(new[] { "--lr", "3e38", "--clip", "none", "--epochs", "6" }, "diverged").SetName("DivergingLoss");
        yield return new TestCaseData(new[] { "--layers", "0" }, "--layers must be a positive").SetName("ZeroLayers");
        yield return new TestCaseData(new[] { "--cell", "lstm", "--activation", "relu" }, "relu applies to the plain RNN cell only").SetName("ReluLstm");
    }

    /// <summary>Tiny with options replaced or added (System.CommandLine rejects a repeated single-value option).</summary>
    internal static string[] With(string[] extra)
    {
        var args = Tiny.ToList();
        for (int i = 0; i < extra.Length; i += 2)
        {
            int at = args.IndexOf(extra[i]);
            if (at >= 0) args[at + 1] = extra[i + 1];
            else args.AddRange([extra[i], extra[i + 1]]);
        }
        return args.ToArray();
    }

    [TestCaseSource(nameof(BadInputs))]
    public void BadInputGetsOneClearMessage(string[] extra, string expected)
    {
        var (code, o, e) = Run(With(extra));
        Assert.That(code, Is.EqualTo(2));
        Assert.That(e, Does.Contain(expected));
        Assert.That(e, Does.Not.Contain("   at "), "no stack trace");
        Assert.That(e.Trim().Split('\n').Count(l => l.StartsWith("error:")), Is.EqualTo(1));
        Assert.That(o, Does.Not.Contain("total training time"));
    }

    [Test]
    public void CorruptZipAndNonUtf8TextAreClearErrors()
    {
        using var dir = new TempDir();
        var zip = dir.File("bad.zip");
        File.WriteAllBytes(zip, [(byte)'P', (byte)'K', 3, 4, 1, 2, 3, 4, 5, 6]);
        var (code, _, e) = Run(With(["--corpus", zip]));
        Assert.That(code, Is.EqualTo(2));
        Assert.That(e, Does.Contain("not a readable zip"));

        var gbk = dir.File("gbk.txt");
        File.WriteAllBytes(gbk, [0xB7, 0xD6, 0xBF, 0xAA, 0x0A]); // 分开 in GBK
        (code, _, e) = Run(With(["--corpus", gbk]));
        Assert.That(code, Is.EqualTo(2));
        Assert.That(e, Does.Contain("not valid UTF-8").And.Contain("iconv"));
    }

    [Test]
    public void GatedCellsAndLayersFromTheCommandLine([Values("gru-scratch", "lstm-concise")] string preset)
    {
        var (code, o, e) = Run(With(["--preset", preset, "--layers", "2"]));
        Assert.That(code, Is.EqualTo(0), e);
        Assert.That(e, Does.Contain(preset.StartsWith("gru") ? "GRU ×2 layers" : "LSTM ×2 layers"));
        Assert.That(o, Does.Contain("epoch 4, perplexity"));
    }

    [Test]
    public void UnknownOptionIsRejected()
    {
        var (code, _, e) = Run("train", "--epoch", "3");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(e, Does.Contain("--epoch"));
    }

    /// <summary>The log comparison the resume tests rely on ignores every epoch's time (the old one stripped only the
    /// first, so it passed only when two epochs happened to print the same time) and nothing else.</summary>
    [Test]
    public void LogComparisonIgnoresEveryTimeAndNothingElse()
    {
        const string a = "epoch 2, perplexity 9.000000, time 0.01 sec\n - 分开 x\nepoch 4, perplexity 8.000000, time 0.02 sec\ntotal training time 0.05 sec\n";
        const string b = "epoch 2, perplexity 9.000000, time 1.37 sec\n - 分开 x\nepoch 4, perplexity 8.000000, time 0.01 sec\ntotal training time 12.50 sec\n";
        Assert.That(WithoutTimes(a), Is.EqualTo(WithoutTimes(b)));
        Assert.That(WithoutTimes(a), Is.EqualTo("epoch 2, perplexity 9.000000\n - 分开 x\nepoch 4, perplexity 8.000000\n"));
        Assert.That(WithoutTimes(a.Replace("8.000000", "8.000001")), Is.Not.EqualTo(WithoutTimes(b)));
    }

    [Test]
    public void HelpExplainsTheConcisePresetDoesNotClip()
    {
        var (code, o, _) = Run("train", "--help");
        Assert.That(code, Is.EqualTo(0));
        Assert.That(o, Does.Contain("never clip"));
    }

    [Test]
    public void InfoNamesTheCpuEngine()
    {
        var (code, o, _) = Run("info");
        Assert.That(code, Is.EqualTo(0));
        Assert.That(o, Does.Contain("cpu:"));
    }

    /// <summary><c>info --plans</c> lists what <c>--recurrence auto</c> timed (the plan cache), says when there is
    /// none, and when the cache is off; a cache file it cannot parse is reported as empty, not an error.</summary>
    [Test]
    public void InfoPlansListsTheTimedPlans()
    {
        using var dir = new TempDir();
        var file = dir.File("plans.json");
        var env = new Dictionary<string, string> { ["CHARRNN_PLAN_CACHE"] = file };
        var (code, o, _) = CliProcess.Run(["info", "--plans"], env);
        Assert.That(code, Is.EqualTo(0));
        Assert.That(o, Does.Contain($"recurrence plans: 0 in {file} (none timed yet"));
        var saved = Environment.GetEnvironmentVariable("CHARRNN_PLAN_CACHE");
        try
        {
            Environment.SetEnvironmentVariable("CHARRNN_PLAN_CACHE", file);
            Assert.That(PlanCache.Store("H100 | rnn tanh H 256 B 32 T 35", new PlanCache.Entry("cluster 16x8", [("steps", 20.5), ("cluster 16x8", 3.27)], "2026-12-03T10:00:00Z")), Is.True);
        }
        finally { Environment.SetEnvironmentVariable("CHARRNN_PLAN_CACHE", saved); }
        (code, o, _) = CliProcess.Run(["info", "--plans"], env);
        Assert.That(o, Does.Contain($"recurrence plans: 1 in {file}\n").And.Contain("  H100 | rnn tanh H 256 B 32 T 35\n")
            .And.Contain("    runs cluster 16x8 (timed 2026-12-03T10:00:00Z): steps 20.5 µs, cluster 16x8 3.3 µs a step"));
        File.WriteAllText(file, "[1, 2");
        (code, o, _) = CliProcess.Run(["info", "--plans"], env);
        Assert.That(code, Is.EqualTo(0));
        Assert.That(o, Does.Contain("recurrence plans: 0 in"));
        (code, o, _) = CliProcess.Run(["info", "--plans"], new Dictionary<string, string> { ["CHARRNN_PLAN_CACHE"] = "off" });
        Assert.That(o, Does.Contain("recurrence plans: not cached (CHARRNN_PLAN_CACHE=off)"));
    }
}

public class CliOutputTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliTests.Run(args);

    static readonly string[] Tiny = [.. CliTests.With(["--chars", "1500"])];

    [Test]
    public void CheckpointsMetricsPlotResumeAndGenerate()
    {
        using var dir = new TempDir();
        var ck = dir.File("ck");
        var (code, first, e) = Run([.. Tiny, "--checkpoint-dir", ck, "--save-every", "2", "--metrics", dir.File("m.jsonl"),
            "--plot", dir.File("p.png"), "--val-fraction", "0.25"]);
        Assert.That(code, Is.EqualTo(0), e);
        // Every 2 epochs, and whenever a new best validation perplexity is evaluated (#24: best.ckpt is always the best).
        var saved = Directory.GetFiles(ck, "epoch-*.ckpt").Select(f => Path.GetFileName(f)).Order().ToList();
        Assert.That(saved, Has.Some.Match(@"^epoch-00002-val-\d+\.\d{6}\.ckpt$"), "the validation perplexity in the name");
        Assert.That(saved, Has.Some.Match(@"^epoch-00004-val-\d+\.\d{6}\.ckpt$"));
        Assert.That(saved, Has.All.Match(@"-val-\d+\.\d{6}\.ckpt$"), "every epoch here is evaluated");
        Assert.That(File.ResolveLinkTarget(Path.Combine(ck, "latest.ckpt"), false)!.Name, Is.EqualTo(saved[^1]));
        var bestName = File.ResolveLinkTarget(Path.Combine(ck, "best.ckpt"), false)!.Name;
        var bestVals = File.ReadAllLines(dir.File("m.jsonl")).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("val_perplexity").GetDouble()).ToList();
        Assert.That(bestName, Does.StartWith($"epoch-{bestVals.IndexOf(bestVals.Min()) + 1:D5}-val-"), "best.ckpt is the lowest validation perplexity evaluated");
        Assert.That(e, Does.Contain("validation perplexity"));

        var lines = File.ReadAllLines(dir.File("m.jsonl"));
        Assert.That(lines, Has.Length.EqualTo(4));
        using (var doc = System.Text.Json.JsonDocument.Parse(lines[1]))
        {
            var r = doc.RootElement;
            Assert.That(r.GetProperty("epoch").GetInt32(), Is.EqualTo(2));
            Assert.That(r.GetProperty("perplexity").GetDouble(), Is.GreaterThan(1));
            Assert.That(r.GetProperty("val_perplexity").GetDouble(), Is.GreaterThan(1));
            // tokens/s is the epoch's tokens over its seconds: B × T × minibatches, from the header line, not from itself.
            int perEpoch = int.Parse(System.Text.RegularExpressions.Regex.Match(e, @"(\d+) minibatches/epoch").Groups[1].Value);
            double seconds = r.GetProperty("seconds").GetDouble();
            Assert.That(seconds, Is.GreaterThan(0));
            Assert.That(r.GetProperty("tokens_per_s").GetDouble() * seconds, Is.EqualTo(perEpoch * CliTests.TinyTokens).Within(1e-6).Percent);
            Assert.That(r.GetProperty("device").GetString(), Is.EqualTo("cpu"));
        }
        var png = File.ReadAllBytes(dir.File("p.png"));
        Assert.That(png[..8], Is.EqualTo(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }), "PNG signature");
        Assert.That(png.Length, Is.GreaterThan(10_000));

        // Resume from epoch 2: epochs 3 and 4 print exactly what the straight run printed.
        var (code2, resumed, e2) = Run("train", "--device", "cpu", "--resume", Path.Combine(ck, saved.First(n => n.StartsWith("epoch-00002"))), "--epochs", "4",
            "--pred-period", "2", "--pred-len", "6", "--plot", dir.File("p.svg"));
        Assert.That(code2, Is.EqualTo(0), e2);
        string Epoch4(string log) => string.Join("\n", CliTests.WithoutTimes(log).Split('\n').SkipWhile(l => !l.StartsWith("epoch 4")).Take(3));
        Assert.That(Epoch4(resumed), Is.EqualTo(Epoch4(first)));
        var svg = File.ReadAllText(dir.File("p.svg"));
        Assert.That(svg, Does.Contain("<svg"));
        Assert.That(svg.Length, Is.GreaterThan(5_000));

        var (code3, gen, e3) = Run("generate", "--checkpoint", ck, "--device", "cpu",
            "--prefix", "分开", "--length", "12", "--temperature", "0.7", "--seed", "3", "--count", "2");
        Assert.That(code3, Is.EqualTo(0), e3);
        var samples = gen.Split('\n')[..^1];
        Assert.That(samples, Has.Length.EqualTo(2));
        Assert.That(samples.All(s => s.StartsWith("分开") && s.EnumerateRunes().Count() == 14), Is.True, gen);
        Assert.That(Run("generate", "--checkpoint", Path.Combine(ck, saved[^1]), "--device", "cpu",
            "--prefix", "分开", "--length", "12", "--temperature", "0.7", "--seed", "3", "--count", "2").Out, Is.EqualTo(gen));

        var bad = Run("generate", "--checkpoint", Path.Combine(ck, saved[^1]), "--device", "cpu", "--prefix", "分Ω");
        Assert.That(bad.Code, Is.EqualTo(2));
        Assert.That(bad.Err, Does.Contain("'Ω'"));

        var change = Run("train", "--device", "cpu", "--resume", Path.Combine(ck, saved.First(n => n.StartsWith("epoch-00002"))), "--epochs", "4", "--lr", "3");
        Assert.That(change.Code, Is.EqualTo(2));
        Assert.That(change.Err, Does.Contain("--lr (checkpoint 100, given 3): this cannot change when resuming"));

        var done = Run("train", "--device", "cpu", "--resume", Path.Combine(ck, saved[^1]), "--epochs", "4");
        Assert.That(done.Err, Does.Contain("already trained 4 epochs"));
    }

    /// <summary>Writes through, and cancels a token once a given text has been written (a deterministic "Ctrl+C").</summary>
    internal sealed class CancelOn(string trigger, CancellationTokenSource cts) : StringWriter
    {
        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            if (value != null && value.StartsWith(trigger, StringComparison.Ordinal)) cts.Cancel();
        }
    }

    [Test]
    public void InterruptSavesACheckpointAndResumeFinishesTheRun()
    {
        using var dir = new TempDir();
        using var cts = new CancellationTokenSource();
        var o = new CancelOn("epoch 2,", cts);
        var e = new StringWriter();
        int code = CharRnn.Cli.Program.Run([.. CliTests.With(["--pred-period", "1", "--epochs", "5", "--checkpoint-dir", dir.Path, "--save-every", "10"])],
            o, e, cts.Token);
        Assert.That(code, Is.EqualTo(130));
        var path = Path.Combine(dir.Path, "epoch-00002.ckpt");
        Assert.That(e.ToString(), Does.Contain($"interrupted after epoch 2; checkpoint {path}"));
        Assert.That(Directory.GetFiles(dir.Path, "epoch-*.ckpt"), Is.EqualTo(new[] { path }));
        var (code2, resumed, e2) = Run("train", "--device", "cpu", "--resume", path, "--epochs", "5", "--pred-period", "1", "--pred-len", "6");
        Assert.That(code2, Is.EqualTo(0), e2);
        Assert.That(resumed, Does.StartWith("epoch 3, perplexity"));
        Assert.That(resumed, Does.Contain("epoch 5, perplexity"));
    }

    [Test]
    public void BadPlotAndCheckpointPaths()
    {
        var (code, _, e) = Run([.. Tiny, "--plot", "/tmp/x.jpg"]);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(e, Does.Contain("--plot must name a .png or .svg"));
        (code, _, e) = Run("generate", "--checkpoint", "/nonexistent.ckpt");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(e, Does.Contain("Checkpoint not found"));
    }

    /// <summary>
    /// <c>charrnn bench</c>, which the one GPU run depends on: both configs run and write JSON whose numbers hang together
    /// (tokens = minibatches · B · T, the shapes asked for, a sane perplexity). Also run on the GPU by a Gpu test.
    /// </summary>
    internal static void CheckBench(string device)
    {
        using var dir = new TempDir();
        var book = dir.File("book.json");
        var (code, o, e) = Run("bench", "--device", device, "--config", "book", "--epochs", "2", "--hidden", "32", "--sgemm", "64", "--json", book);
        Assert.That(code, Is.EqualTo(0), e);
        Assert.That(o, Does.Match(@"time \d+\.\d{3} s, \d+ tokens/s, \d+\.\d GFLOP/s"));
        Assert.That(o, Does.Contain("sgemm 64³: "));
        Assert.That(o, Does.Match(@"first epoch \d+\.\d{3} s \(compilation"));
        if (device != "cpu")
        {
            Assert.That(o, Does.Contain("recurrence persistent (").And.Contain("training step as a CUDA graph: on"));
            Assert.That(o, Does.Match(@"peak device memory \d+\.\d MiB"));
        }
        using (var j = System.Text.Json.JsonDocument.Parse(File.ReadAllText(book)))
        {
            var r = j.RootElement;
            Assert.That(r.GetProperty("Device").GetString(), Does.StartWith(device));
            Assert.That(r.GetProperty("Minibatches").GetInt64(), Is.EqualTo(8), "the second epoch's 8 minibatches of the book's 10 000 characters (the first is timed apart)");
            Assert.That(r.GetProperty("FirstSeconds").GetDouble(), Is.GreaterThan(0));
            Assert.That(r.GetProperty("EpochSeconds").GetArrayLength(), Is.EqualTo(2));
            Assert.That(r.GetProperty("UsefulFlopsPerStep").GetDouble(), Is.LessThanOrEqualTo(r.GetProperty("FlopsPerStep").GetDouble()));
            Assert.That((r.GetProperty("Hidden").GetInt32(), r.GetProperty("Batch").GetInt32(), r.GetProperty("Steps").GetInt32(), r.GetProperty("Vocab").GetInt32()),
                Is.EqualTo((32, 32, 35, 1027)));
            Assert.That(r.GetProperty("TokensPerSecond").GetDouble() * r.GetProperty("Seconds").GetDouble(), Is.EqualTo(8 * 32 * 35).Within(1e-6).Percent);
            Assert.That(r.GetProperty("FinalPerplexity").GetDouble(), Is.GreaterThan(1).And.LessThan(1027));
            Assert.That(r.GetProperty("SgemmGflopsPerSecond").GetDouble(), Is.GreaterThan(0));
        }
        var large = dir.File("large.json");
        (code, o, e) = Run("bench", "--device", device, "--config", "large", "--minibatches", "2", "--hidden", "16", "--batch", "4", "--sgemm", "0", "--json", large);
        Assert.That(code, Is.EqualTo(0), e);
        Assert.That(o, Does.Not.Contain("sgemm"));
        using (var j = System.Text.Json.JsonDocument.Parse(File.ReadAllText(large)))
        {
            var r = j.RootElement;
            Assert.That(r.GetProperty("Config").GetString(), Is.EqualTo("large"));
            Assert.That((r.GetProperty("Minibatches").GetInt64(), r.GetProperty("Hidden").GetInt32(), r.GetProperty("Batch").GetInt32(), r.GetProperty("Steps").GetInt32()),
                Is.EqualTo((2L, 16, 4, 35)));
            Assert.That(r.GetProperty("Vocab").GetInt32(), Is.EqualTo(2582), "the large config trains on the full corpus");
            Assert.That(r.GetProperty("FinalPerplexity").GetDouble(), Is.GreaterThan(1).And.LessThan(2582));
            Assert.That(r.GetProperty("SgemmGflopsPerSecond").ValueKind, Is.EqualTo(System.Text.Json.JsonValueKind.Null));
        }
    }

    [Test]
    public void BenchWritesConsistentResults() => CheckBench("cpu");

    /// <summary>--profile names the ops with their time, and profiling does not turn the CPU into a GPU: its default
    /// SGEMM stays 2048³ (it used to be 8192³, minutes on 2 cores).</summary>
    [Test]
    public void BenchProfileOnTheCpu()
    {
        var (code, o, e) = Run("bench", "--device", "cpu", "--config", "book", "--epochs", "2", "--hidden", "8", "--profile");
        Assert.That(code, Is.EqualTo(0), e);
        Assert.That(o, Does.Contain("sgemm 2048³: "));
        Assert.That(o, Does.Match(@"profile \(\d+\.\d{3} s in ops of \d+\.\d{3} s\):"));
        foreach (var op in new[] { "Gemm", "BiasActivationForward", "OutputLayerForward", "ComputeClipScale", "SgdUpdate" })
            Assert.That(o, Does.Match($@"\n  {op}\s+\d+\.\d{{3}} s"), op);
    }

    [Test]
    public void BenchRejectsBadInput()
    {
        using var dir = new TempDir();
        var json = dir.File("r.json");
        var (code, _, e) = Run("bench", "--device", "cpu", "--config", "large", "--minibatches", "0", "--json", json);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(e, Does.Contain("--minibatches must be a positive whole number"));
        Assert.That(File.Exists(json), Is.False);
        (code, _, e) = Run("bench", "--device", "cpu", "--epochs", "1");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(e.Trim(), Does.StartWith("error: --epochs must be at least 2").And.Not.Contain("\n"));
        (code, _, e) = Run("bench", "--device", "cpu", "--config", "huge");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(e, Does.Contain("huge"));
    }
}
