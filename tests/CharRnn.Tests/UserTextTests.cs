using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using CharRnn.Rnn.Checkpoints;
using CharRnn.Rnn.Data;

namespace CharRnn.Tests;

/// <summary>
/// charrnn as a char-rnn user uses it: their own text, stop and resume, fine-tune, dropout, a decaying learning rate,
/// minibatch intervals, early stopping, sampling that samples, and command-line mistakes answered in one line.
/// </summary>
public class UserTextTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliTests.Run(args);

    /// <summary>A 12 000-character text of short lines (more than the book's 10 000-character cut).</summary>
    internal static string Poems(TempDir dir, string name = "poems.txt", string title = "Ode to rivers", int length = 12_000)
    {
        var rng = new Rnn.Rng(7);
        var words = "the quick brown fox jumps over a lazy dog while rain falls on quiet hills and rivers run to the sea".Split(' ');
        var sb = new StringBuilder(title + "\n");
        while (sb.Length < length)
            sb.Append(string.Join(' ', Enumerable.Range(0, 3 + rng.NextInt(6)).Select(_ => words[rng.NextInt(words.Length)]))).Append('\n');
        var path = dir.File(name);
        File.WriteAllText(path, sb.ToString());
        return path;
    }

    static readonly string[] Small = ["--device", "cpu", "--hidden", "24", "--batch", "8", "--steps", "16", "--pred-len", "12"];

    [Test]
    public void OwnTextTrainsWholeKeepsItsLinesAndPredictsFromItsOwnStart()
    {
        using var dir = new TempDir();
        var text = Poems(dir);
        var (code, o, e) = Run(["train", "--corpus", text, "--epochs", "2", "--checkpoint-dir", dir.File("ck"), .. Small]);
        Assert.That(code, Is.EqualTo(0), e);
        int chars = File.ReadAllText(text).Length;
        Assert.That(e, Does.Contain($"corpus {chars} chars"), "--chars defaults to all for a user's text");
        Assert.That(o, Does.Contain(" - Ode to r"), "the default prefix is the text's own first characters");
        var ck = Checkpoint.Load(Path.Combine(dir.File("ck"), "latest.ckpt"));
        Assert.That(ck.Header.Newlines, Is.EqualTo(NewlineMode.Keep));
        Assert.That(ck.Header.VocabChars, Does.Contain("\n"), "line breaks are characters of the model");
        Assert.That(ck.Header.CorpusLimit, Is.Null);

        int vocab = ck.Header.VocabChars.EnumerateRunes().Count();
        (code, _, e) = Run(["train", "--corpus", text, "--epochs", "1", "--newlines", "space", .. Small]);
        Assert.That(code, Is.EqualTo(0), e);
        Assert.That(e, Does.Contain($"vocab {vocab - 1},"), "--newlines space: the book's rule, one character fewer");

        // A prefix outside the text: the advice does not suggest --chars all, which the whole text already is.
        (code, _, e) = Run(["train", "--corpus", text, "--epochs", "1", "--prefix", "分开", .. Small]);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(CliProcess.OneErrorLine(e), Does.Contain("'分'").And.Not.Contain("--chars all"));
    }

    /// <summary>The walk-through of the README, as written there (with --epochs 4 and the CPU, to be short): train on
    /// your text with the defaults (char-rnn's recipe), Ctrl+C, follow the hint (--resume with the folder alone),
    /// generate.</summary>
    [Test]
    public void ReadmeWalkThroughWorksAsWritten()
    {
        using var dir = new TempDir();
        var text = Poems(dir, "my.txt", length: 60_000); // char-rnn's 5 % of it holds one 50 × 50 minibatch
        var ck = dir.File("runs/my");
        using var cts = new CancellationTokenSource();
        var stdout = new CliOutputTests.CancelOn("epoch 2, validation perplexity", cts); // validation lines are on stdout
        var stderr = new StringWriter();
        int code = Cli.Program.Run(["train", "--corpus", text, "--checkpoint-dir", ck, "--epochs", "4", "--device", "cpu"], stdout, stderr, cts.Token);
        Assert.That(code, Is.EqualTo(130), stderr.ToString());
        Assert.That(stderr.ToString(), Does.Contain("char-rnn recipe (--preset char-rnn): concise LSTM ×2 layers, consecutive sampling, adam lr 0.002, clip 5, H 128, B 50, T 50"));
        Assert.That(stderr.ToString(), Does.Contain("5 % held out for validation"));
        Assert.That(stdout.ToString(), Does.Match(@"epoch 1, perplexity \d+\.\d{6} \(\d+\.\d{3} bits/char\), time \d+\.\d\d sec, \d+ tokens/s, elapsed 0:00:\d\d\n"));
        var hint = Regex.Match(stderr.ToString(), @"continue with: (charrnn train --resume \S+)\)").Groups[1].Value;
        Assert.That(hint, Is.EqualTo($"charrnn train --resume {ck}"));
        var (rc, resumed, re) = Run("train", "--resume", ck, "--device", "cpu"); // the hint, as printed (plus the device)
        Assert.That(rc, Is.EqualTo(0), re);
        Assert.That(resumed, Does.StartWith("epoch 3, perplexity"));
        Assert.That(resumed, Does.Contain("epoch 4, perplexity").And.Contain("epoch 4, validation perplexity"));
        var (gc, gen, ge) = Run("generate", "--checkpoint", ck, "--device", "cpu", "--length", "80");
        Assert.That(gc, Is.EqualTo(0), ge);
        Assert.That(gen, Does.StartWith("Ode to r"), "generate starts from the run's own prefix");
        Assert.That(gen.EnumerateRunes().Count(), Is.EqualTo(8 + 80 + 1));
    }

    [Test]
    public void RestatingTheSameCommandToResumeIsAcceptedARealChangeIsNamed()
    {
        using var dir = new TempDir();
        string[] command = ["train", "--preset", "gru-concise", "--corpus", Poems(dir), "--val-fraction", "0.1", "--checkpoint-dir", dir.File("ck"),
            "--lr", "0.01", "--clip", "0.5", .. Small];
        var (code, first, e) = Run([.. command, "--epochs", "2", "--pred-period", "1"]);
        Assert.That(code, Is.EqualTo(0), e);
        var (c2, resumed, e2) = Run([.. command, "--epochs", "3", "--pred-period", "1", "--resume", dir.File("ck")]);
        Assert.That(c2, Is.EqualTo(0), e2);
        Assert.That(resumed, Does.StartWith("epoch 3, perplexity"));
        var changed = command.Select(a => a == "24" ? "25" : a == "0.01" ? "0.02" : a).ToArray(); // --hidden 25, --lr 0.02
        var (c3, _, e3) = Run([.. changed, "--epochs", "4", "--resume", dir.File("ck")]);
        Assert.That(c3, Is.EqualTo(2));
        Assert.That(CliProcess.OneErrorLine(e3), Does.Contain("--hidden (checkpoint 24, given 25)").And.Contain("--lr (checkpoint 0.01, given 0.02)"));
    }

    [Test]
    public void MetricsAndPlotContinueAcrossAResumeAndEveryEpochIsEvaluated()
    {
        using var dir = new TempDir();
        var text = Poems(dir);
        string[] outs = ["--metrics", dir.File("m.jsonl"), "--plot", dir.File("p.svg"), "--checkpoint-dir", dir.File("ck")];
        var (code, _, e) = Run(["train", "--preset", "scratch-random", "--corpus", text, "--val-fraction", "0.1", "--epochs", "2", "--pred-period", "5", .. outs, .. Small]);
        Assert.That(code, Is.EqualTo(0), e);
        (code, _, e) = Run(["train", "--resume", dir.File("ck"), "--epochs", "4", .. outs, "--device", "cpu"]);
        Assert.That(code, Is.EqualTo(0), e);
        var lines = File.ReadAllLines(dir.File("m.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.That(lines.Select(l => l.GetProperty("epoch").GetInt32()), Is.EqualTo(new[] { 1, 2, 3, 4 }), "one history");
        Assert.That(lines.All(l => l.GetProperty("val_perplexity").ValueKind == JsonValueKind.Number), "evaluated every epoch");
        Assert.That(lines.All(l => l.GetProperty("learning_rate").GetDouble() == 100 && l.GetProperty("grad_norm").GetDouble() > 0));
        var svg = File.ReadAllText(dir.File("p.svg"));
        Assert.That(svg, Does.Contain("scratch RNN"), "the title names the cell");
    }

    [Test]
    public void AShortRunStillReportsItsLastEpoch()
    {
        var (code, o, e) = Run(CliTests.With(["--epochs", "3", "--pred-period", "50"]));
        Assert.That(code, Is.EqualTo(0), e);
        Assert.That(o, Does.Match(@"^epoch 3, perplexity \d+\.\d{6}, time"));
    }

    /// <summary>Reports, saves and a resume inside an epoch: the resumed run prints what the uninterrupted one
    /// printed, bit for bit — random and consecutive sampling, and dropout between two LSTM layers.</summary>
    [TestCase("scratch-random", 1, "0")]
    [TestCase("scratch-consecutive", 1, "0")]
    [TestCase("lstm-concise", 2, "0.3")]
    public void MinibatchIntervalsAndAMidEpochResumeAreBitExact(string preset, int layers, string dropout)
    {
        using var dir = new TempDir();
        string[] run = ["train", "--preset", preset, "--layers", layers.ToString(), "--dropout", dropout, "--corpus", Poems(dir), "--lr",
            preset.Contains("concise") ? "0.01" : "100", "--epochs", "3", "--print-every", "20it", "--checkpoint-dir", dir.File("ck"),
            "--save-every", "30it", .. Small];
        var (code, straight, e) = Run(run);
        Assert.That(code, Is.EqualTo(0), e);
        Assert.That(straight, Does.Match(@"epoch 1, minibatch 20/\d+, perplexity \d+\.\d{6}, time"));
        var mid = Directory.GetFiles(dir.File("ck"), "epoch-00002-mb-*.ckpt").Order().First();
        int mb = Checkpoint.Load(mid).Header.Minibatch;
        Assert.That(mb, Is.GreaterThan(0));
        var (c2, resumed, e2) = Run("train", "--resume", mid, "--device", "cpu", "--print-every", "20it", "--checkpoint-dir", dir.File("ck2"));
        Assert.That(c2, Is.EqualTo(0), e2);
        var r = CliTests.WithoutTimes(resumed).Split('\n');
        var s = CliTests.WithoutTimes(straight).Split('\n');
        int at = Array.IndexOf(s, r[0]);
        Assert.That(r[0], Does.StartWith("epoch 2, minibatch"), "the resumed run's first report, inside epoch 2");
        Assert.That(at, Is.GreaterThan(0), "the uninterrupted run printed it too");
        Assert.That(r, Is.EqualTo(s[at..]), "from there on, the same log, perplexities and predictions");
    }

    [Test]
    public void DropoutIsSeededAndChangesTraining()
    {
        string[] two = [.. CliTests.With(["--layers", "2", "--epochs", "2", "--pred-period", "1"])];
        var a = Run([.. two, "--dropout", "0.4"]);
        var b = Run([.. two, "--dropout", "0.4"]);
        var none = Run(two);
        Assert.That(a.Code + b.Code + none.Code, Is.EqualTo(0), a.Err);
        Assert.That(CliTests.WithoutTimes(a.Out), Is.EqualTo(CliTests.WithoutTimes(b.Out)), "the same seed, the same masks");
        Assert.That(CliTests.WithoutTimes(a.Out), Is.Not.EqualTo(CliTests.WithoutTimes(none.Out)));
        var c = Run([.. two, "--dropout", "0.4", "--seed", "1"]);
        Assert.That(CliTests.WithoutTimes(c.Out), Is.Not.EqualTo(CliTests.WithoutTimes(a.Out)), "another seed, other masks");
        var one = Run(CliTests.With(["--dropout", "0.4"]));
        Assert.That(one.Code, Is.EqualTo(2));
        Assert.That(CliProcess.OneErrorLine(one.Err), Does.Contain("--layers 2"));
    }

    [Test]
    public void LearningRateDecaysAfterTheGivenEpoch()
    {
        using var dir = new TempDir();
        var (code, _, e) = Run([.. CliTests.With(["--epochs", "4", "--lr-decay", "0.5", "--lr-decay-after", "2"]), "--metrics", dir.File("m.jsonl")]);
        Assert.That(code, Is.EqualTo(0), e);
        var lrs = File.ReadAllLines(dir.File("m.jsonl")).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("learning_rate").GetDouble());
        Assert.That(lrs, Is.EqualTo(new[] { 100.0, 100.0, 50.0, 25.0 }));
    }

    [Test]
    public void PatienceStopsWhenValidationStopsImprovingAndKeepsTheBest()
    {
        using var dir = new TempDir();
        var (code, o, e) = Run(["train", "--preset", "scratch-random", "--corpus", Poems(dir), "--epochs", "40", "--hidden", "64", "--batch", "8", "--steps", "16",
            "--val-fraction", "0.2", "--patience", "2", "--lr", "300", "--pred-period", "100", "--checkpoint-dir", dir.File("ck"), "--device", "cpu"]);
        Assert.That(code, Is.EqualTo(0), e);
        var m = Regex.Match(e, @"stopped early after epoch (\d+): the validation perplexity has not improved for 2 evaluations; the best model is (\S+)");
        Assert.That(m.Success, e);
        int stopped = int.Parse(m.Groups[1].Value);
        Assert.That(stopped, Is.LessThan(40));
        Assert.That(o, Does.Contain($"epoch {stopped}, perplexity"), "the last epoch reports");
        var best = Checkpoint.Load(m.Groups[2].Value);
        var vals = Regex.Matches(o, @"validation perplexity (\d+\.\d+)").Select(x => double.Parse(x.Groups[1].Value)).ToList();
        Assert.That(best.Header.ValPerplexity!.Value, Is.EqualTo(vals.Min()).Within(1e-6));
        Assert.That(Run(["train", "--preset", "scratch-random", "--corpus", Poems(dir), "--patience", "2", .. Small]).Err, Does.Contain("give --val-fraction too"));
    }

    [Test]
    public void FineTuningStartsFromTheWeightsWithNewOptimizerSettings()
    {
        using var dir = new TempDir();
        var (code, _, e) = Run(["train", "--corpus", Poems(dir), "--epochs", "2", "--checkpoint-dir", dir.File("base"), .. Small]);
        Assert.That(code, Is.EqualTo(0), e);
        var other = Poems(dir, "other.txt", "hills and rain");
        (code, var o, e) = Run(["train", "--init-from", dir.File("base"), "--corpus", other, "--optimizer", "adam", "--lr", "0.003", "--epochs", "1",
            "--pred-len", "10", "--device", "cpu", "--batch", "8", "--steps", "16"]);
        Assert.That(code, Is.EqualTo(0), e);
        Assert.That(e, Does.Contain("starting from the weights").And.Contain("adam lr 0.003").And.Contain("H 24"));
        Assert.That(o, Does.Contain(" - hills an"), "the new text's own prefix");
        var clash = Run(["train", "--init-from", dir.File("base"), "--corpus", other, "--hidden", "32", "--device", "cpu"]);
        Assert.That(clash.Code, Is.EqualTo(2));
        Assert.That(CliProcess.OneErrorLine(clash.Err), Does.Contain("--hidden (the model has 24, given 32)"));
        var foreign = dir.File("foreign.txt");
        File.WriteAllText(foreign, string.Concat(Enumerable.Repeat("分开 我想要\n", 400)));
        var bad = Run(["train", "--init-from", dir.File("base"), "--corpus", foreign, .. Small]);
        Assert.That(bad.Code, Is.EqualTo(2));
        Assert.That(CliProcess.OneErrorLine(bad.Err), Does.Contain("'分'").And.Contain("vocabulary lacks"));
    }

    [Test]
    public void GenerateSamplesByDefaultAndRefusesSettingsThatCannotMeanAnything()
    {
        using var dir = new TempDir();
        var (code, _, e) = Run(CliTests.With(["--epochs", "2", "--checkpoint-dir", dir.Path]));
        Assert.That(code, Is.EqualTo(0), e);
        var (gc, gen, ge) = Run("generate", "--checkpoint", dir.Path, "--device", "cpu", "--count", "3", "--length", "30", "--seed", "5");
        Assert.That(gc, Is.EqualTo(0), ge);
        var samples = gen.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(samples, Has.Length.EqualTo(3));
        Assert.That(samples.All(s => s.StartsWith("分开")), "the run's first prefix by default");
        Assert.That(samples.Distinct().Count(), Is.GreaterThan(1), "temperature 1 samples");
        Assert.That(samples.All(s => s.EnumerateRunes().Count() == 32));
        var (dc, def, _) = Run("generate", "--checkpoint", dir.Path, "--device", "cpu");
        Assert.That(dc, Is.EqualTo(0));
        Assert.That(def.TrimEnd('\n').EnumerateRunes().Count(), Is.EqualTo(2 + 500), "500 characters by default");
        foreach (var (args, expected) in new (string[], string)[]
                 {
                     (["--temperature", "0", "--top-k", "5"], "--top-k"), (["--temperature", "0", "--count", "3"], "would be the same"),
                 })
        {
            var (bc, _, be) = Run(["generate", "--checkpoint", dir.Path, "--device", "cpu", .. args]);
            Assert.That(bc, Is.EqualTo(2));
            Assert.That(CliProcess.OneErrorLine(be), Does.Contain(expected));
        }
    }

    /// <summary>The plot's log axis is labelled at round perplexities, enough of them, inside the data's range.</summary>
    [TestCase(2.2, 7.1)]
    [TestCase(100, 700)]
    [TestCase(1.02, 1.3)]
    [TestCase(1.2, 1100)]
    public void PlotTicksAreRoundPerplexities(double lo, double hi)
    {
        var (major, minor) = Cli.PlotWriter.LogTicks(lo, hi);
        Assert.That(major, Has.Count.InRange(4, 12), string.Join(", ", major));
        Assert.That(major.All(v => v.ToString("G4", System.Globalization.CultureInfo.InvariantCulture).Length <= 5), string.Join(", ", major));
        Assert.That(major.All(v => v >= lo * 0.75 && v <= hi * 1.33));
        Assert.That(minor.Intersect(major), Is.Empty);
    }

    [TestCase(new[] { "train", "--epoch", "1" }, "unknown option '--epoch'; did you mean --epochs?")]
    [TestCase(new[] { "train", "--preset", "scratch-randon" }, "did you mean scratch-random?")]
    [TestCase(new[] { "train", "--epochs", "abc" }, "--epochs expects a whole number (got 'abc')")]
    [TestCase(new[] { "trian" }, "unknown command 'trian'; did you mean train?")]
    [TestCase(new[] { "train", "--save-every", "5x" }, "--save-every must be a number of epochs")]
    [TestCase(new[] { "generate" }, "--checkpoint FILE|DIR (charrnn train's) or --model FILE.safetensors")]
    [TestCase(new[] { "export", "m.safetensors" }, "--checkpoint is required")]
    [TestCase(new[] { "export", "--checkpoint", "my" }, "export needs OUT")] // #24: "Required argument missing for command: 'export'."
    public void CommandLineMistakesAreOneLineWithoutTheHelp(string[] args, string expected)
    {
        var (code, o, e) = Run(args);
        Assert.That(code, Is.EqualTo(2), e);
        Assert.That(CliProcess.OneErrorLine(e), Does.Contain(expected));
        Assert.That(o + e, Does.Not.Contain("Description:").And.Not.Contain("Usage:").And.Not.Contain("System."));
    }
}
