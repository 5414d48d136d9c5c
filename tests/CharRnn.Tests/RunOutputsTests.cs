using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using CharRnn.Rnn.Checkpoints;
using CharRnn.Rnn.Training;

namespace CharRnn.Tests;

/// <summary>
/// #24 round two, what a run keeps and prints: outputs that continue across a plain --resume (bug 6), --keep-last,
/// --print-every Nit as the metrics/TensorBoard cadence, validation lines and bits per character on stdout, the
/// char-rnn recipe as --corpus's default with sampled predictions that a rerun reproduces, throughput in its report
/// lines while the book's lines stay exact, and --init-from training on its checkpoint's own text.
/// </summary>
public class RunOutputsTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliTests.Run(args);

    static string Text(TempDir dir, int length = 12_000) => UserTextTests.Poems(dir, "text.txt", "Songs", length);

    static readonly string[] Small = ["--device", "cpu", "--preset", "scratch-random", "--hidden", "24", "--batch", "8", "--steps", "16", "--pred-len", "8"];

    static List<JsonElement> Metrics(string path) => File.ReadAllLines(path).Select(l => JsonDocument.Parse(l).RootElement).ToList();

    /// <summary>Bug 6: `charrnn train --resume ck`, as printed, silently stopped --metrics, --tensorboard and --plot;
    /// restating them later left TensorBoard with a gap. The checkpoint now remembers them, and a TensorBoard folder
    /// the run did not write before gets the history first.</summary>
    [Test]
    public void APlainResumeContinuesMetricsTensorBoardAndPlotWithoutAGap()
    {
        using var dir = new TempDir();
        string[] outs = ["--metrics", dir.File("m.jsonl"), "--tensorboard", dir.File("tb"), "--plot", dir.File("p.svg"), "--checkpoint-dir", dir.File("ck")];
        var (code, _, e) = Run(["train", "--corpus", Text(dir), "--val-fraction", "0.1", "--epochs", "2", .. outs, .. Small]);
        Assert.That(code, Is.EqualTo(0), e);
        File.Delete(dir.File("p.svg"));
        (code, _, e) = Run("train", "--resume", dir.File("ck"), "--epochs", "4", "--device", "cpu");
        Assert.That(code, Is.EqualTo(0), e);
        Assert.That(e, Does.Contain($"continuing the run's --metrics {dir.File("m.jsonl")}, --plot {dir.File("p.svg")}, --tensorboard {dir.File("tb")}"));
        Assert.That(Metrics(dir.File("m.jsonl")).Select(l => l.GetProperty("epoch").GetInt32()), Is.EqualTo(new[] { 1, 2, 3, 4 }), "one metrics history");
        Assert.That(File.Exists(dir.File("p.svg")), "the plot is drawn again");
        Assert.That(TensorBoardTests.Events(dir.File("tb")).Select(ev => ev.Step), Is.EqualTo(new ulong[] { 1, 2, 3, 4 }), "one TensorBoard run, no gap");

        // A new folder on a later resume: the history first, then the new epochs.
        (code, _, e) = Run("train", "--resume", dir.File("ck"), "--epochs", "5", "--tensorboard", dir.File("tb2"), "--device", "cpu");
        Assert.That(code, Is.EqualTo(0), e);
        var events = TensorBoardTests.Events(dir.File("tb2"));
        Assert.That(events.Select(ev => ev.Step), Is.EqualTo(new ulong[] { 1, 2, 3, 4, 5 }));
        var metrics = Metrics(dir.File("m.jsonl"));
        Assert.That(events.Select(ev => ev.Scalars["train/perplexity"]), Is.EqualTo(metrics.Select(m => (float)m.GetProperty("perplexity").GetDouble())));
        // and the checkpoint now remembers tb2
        Assert.That(Checkpoint.Load(Path.Combine(dir.File("ck"), "latest.ckpt")).Header.Outputs!.TensorBoard, Is.EqualTo(dir.File("tb2")));
    }

    [Test]
    public void KeepLastKeepsTheNewestAndTheBestAndIsRemembered()
    {
        using var dir = new TempDir();
        var ck = dir.File("ck");
        // lr 300 makes validation worse after a few epochs, so the best falls behind the newest two.
        var (code, o, e) = Run(["train", "--corpus", Text(dir), "--val-fraction", "0.2", "--epochs", "8", "--checkpoint-dir", ck, "--save-every", "1", "--keep-last", "2",
            "--lr", "300", .. Small]);
        Assert.That(code, Is.EqualTo(0), e);
        var vals = Regex.Matches(o, @"epoch (\d+), validation perplexity (\d+\.\d+)").ToDictionary(m => int.Parse(m.Groups[1].Value), m => double.Parse(m.Groups[2].Value));
        Assert.That(vals.Keys, Is.EqualTo(Enumerable.Range(1, 8)), "a validation line per epoch, on stdout");
        int bestEpoch = vals.MinBy(kv => kv.Value).Key;
        var files = Directory.GetFiles(ck, "epoch-*.ckpt").Select(Path.GetFileName).Order().ToList();
        var expected = new[] { 7, 8, bestEpoch }.Distinct().Order().Select(ep => $"epoch-{ep:D5}-val-{vals[ep]:F6}.ckpt").ToList();
        Assert.That(files, Is.EqualTo(expected), "the newest two and best.ckpt's target");
        Assert.That(File.ResolveLinkTarget(Path.Combine(ck, "best.ckpt"), false)!.Name, Does.StartWith($"epoch-{bestEpoch:D5}-"));
        Assert.That(e, Does.Contain("--keep-last 2: deleted"));

        (code, _, e) = Run("train", "--resume", ck, "--epochs", "10", "--device", "cpu");
        Assert.That(code, Is.EqualTo(0), e);
        Assert.That(Directory.GetFiles(ck, "epoch-*.ckpt").Count(f => !f.Contains($"epoch-{bestEpoch:D5}-")), Is.EqualTo(2), "a resume keeps --keep-last");
        Assert.That(Run(["train", "--corpus", Text(dir), "--keep-last", "0", "--checkpoint-dir", dir.File("c2"), .. Small]).Err, Does.Contain("--keep-last must be a positive"));
        Assert.That(Run(["train", "--corpus", Text(dir), "--keep-last", "3", .. Small]).Err, Does.Contain("--keep-last prunes a checkpoint folder: give --checkpoint-dir"));
    }

    /// <summary>--print-every Nit changed only the text log; now each report is a metrics and TensorBoard point whose
    /// step is the run's minibatch, beside the epoch's own point.</summary>
    [Test]
    public void PrintEveryMinibatchesIsTheMetricsAndTensorBoardCadence()
    {
        using var dir = new TempDir();
        var (code, o, e) = Run(["train", "--corpus", Text(dir), "--epochs", "2", "--print-every", "30it", "--metrics", dir.File("m.jsonl"),
            "--tensorboard", dir.File("tb"), "--val-fraction", "0.1", .. Small]);
        Assert.That(code, Is.EqualTo(0), e);
        int epochSize = int.Parse(Regex.Match(e, @"(\d+) minibatches/epoch").Groups[1].Value);
        var m = Metrics(dir.File("m.jsonl"));
        var steps = m.Select(l => l.GetProperty("step").GetInt64()).ToList();
        var expected = Enumerable.Range(1, 2 * epochSize / 30).Select(k => 30L * k).Where(s => s % epochSize != 0)
            .Concat([epochSize, 2L * epochSize]).Order().ToList();
        Assert.That(steps, Is.EqualTo(expected), "a point per report and per epoch end");
        foreach (var l in m.Where(l => l.TryGetProperty("minibatch", out _)))
            Assert.That(l.GetProperty("step").GetInt64(), Is.EqualTo((l.GetProperty("epoch").GetInt32() - 1L) * epochSize + l.GetProperty("minibatch").GetInt32()));
        Assert.That(m.Select(l => l.GetProperty("bits_per_char").GetDouble()), Is.EqualTo(m.Select(l => Math.Log2(l.GetProperty("perplexity").GetDouble()))));
        Assert.That(TensorBoardTests.Events(dir.File("tb")).Select(ev => (long)ev.Step), Is.EqualTo(expected), "TensorBoard steps are minibatches");
        Assert.That(Regex.Matches(o, @"^epoch \d+, minibatch \d+/\d+, perplexity", RegexOptions.Multiline), Has.Count.EqualTo(expected.Count - 2));
    }

    /// <summary>--corpus alone trains char-rnn's recipe, names it, samples its predictions (reproducibly: a rerun prints
    /// the same) and reports throughput; the book's presets keep the book's exact lines.</summary>
    [Test]
    public void OwnTextDefaultsToCharRnnsRecipeWithSampledPredictions()
    {
        using var dir = new TempDir();
        var text = Text(dir, 55_000);
        string[] args = ["train", "--corpus", text, "--epochs", "1", "--device", "cpu", "--checkpoint-dir", dir.File("ck"), "--force"];
        var (code, o, e) = Run(args);
        Assert.That(code, Is.EqualTo(0), e);
        Assert.That(e, Does.Contain("charrnn: char-rnn recipe (--preset char-rnn): concise LSTM ×2 layers, consecutive sampling, adam lr 0.002, clip 5, H 128, B 50, T 50, 1 epochs"));
        var opts = Checkpoint.Load(Path.Combine(dir.File("ck"), "latest.ckpt")).Header.Options;
        Assert.That((opts.ValFraction!.Value, opts.LrDecay, opts.LrDecayAfter, opts.LrDecayEvery, opts.PredTemperature, opts.PredLen), Is.EqualTo((0.05, 0.5f, 5, 5, 1.0, 200)));
        var report = Regex.Match(o, @"^epoch 1, perplexity (\d+\.\d{6}) \((\d+\.\d{3}) bits/char\), time \d+\.\d\d sec, \d+ tokens/s, elapsed 0:00:\d\d$", RegexOptions.Multiline);
        Assert.That(report.Success, o);
        Assert.That(double.Parse(report.Groups[2].Value), Is.EqualTo(Math.Log2(double.Parse(report.Groups[1].Value))).Within(6e-4));
        Assert.That(o, Does.Match(@"epoch 1, validation perplexity \d+\.\d{6} \(\d+\.\d{3} bits/char\)"));
        var sample = Regex.Match(o, "^ - (.*)$", RegexOptions.Multiline).Groups[1].Value;
        Assert.That(sample, Does.StartWith("Songs"), "from the text's own first line");
        Assert.That(sample.EnumerateRunes().Count(), Is.EqualTo(5 + 200));
        var (_, again, _) = Run(args);
        Assert.That(Regex.Match(again, "^ - (.*)$", RegexOptions.Multiline).Groups[1].Value, Is.EqualTo(sample), "the same seed samples the same");
        var (_, greedy, _) = Run([.. args, "--pred-temperature", "0"]);
        Assert.That(Regex.Match(greedy, "^ - (.*)$", RegexOptions.Multiline).Groups[1].Value, Is.Not.EqualTo(sample), "temperature 0 is greedy, not the sample");

        // The book's presets (also on one's own text) print the book's lines and nothing more.
        var (c2, book, e2) = Run(["train", "--corpus", text, "--epochs", "1", .. Small]);
        Assert.That(c2, Is.EqualTo(0), e2);
        Assert.That(book, Does.Match(@"^epoch 1, perplexity \d+\.\d{6}, time \d+\.\d\d sec\n"));
    }

    [Test]
    public void RmsPropAndTorchRnnDecayAreOptions()
    {
        using var dir = new TempDir();
        var (code, _, e) = Run(["train", "--corpus", Text(dir), "--epochs", "4", "--optimizer", "rmsprop", "--lr", "0.01", "--lr-decay", "0.5",
            "--lr-decay-after", "1", "--lr-decay-every", "2", "--metrics", dir.File("m.jsonl"), .. Small]);
        Assert.That(code, Is.EqualTo(0), e);
        Assert.That(e, Does.Contain("rmsprop lr 0.01"));
        // Decays at the end of epoch 1 and then every 2 epochs: epochs 2–3 at half, 4 at a quarter.
        Assert.That(Metrics(dir.File("m.jsonl")).Select(l => (float)l.GetProperty("learning_rate").GetDouble()), Is.EqualTo(new[] { 0.01f, 0.005f, 0.005f, 0.0025f }));
        var o = TrainOptions.Preset("char-rnn");
        Assert.That(Enumerable.Range(1, 12).Select(o.LearningRateAt), Is.EqualTo(new[] { 1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25 }.Select(f => 2e-3f * (float)f)),
            "torch-rnn: ×0.5 every 5 epochs");
        var charRnn = o with { LrDecay = 0.97f, LrDecayAfter = 10, LrDecayEvery = 1 };
        Assert.That(charRnn.LearningRateAt(12), Is.EqualTo(2e-3f * MathF.Pow(0.97f, 2)), "char-rnn: every epoch after the 10th");
        Assert.That(Run(["train", "--corpus", Text(dir), "--lr-decay-every", "0", .. Small]).Err, Does.Contain("--lr-decay-every must be a positive"));
        Assert.That(Run(["train", "--corpus", Text(dir), "--pred-temperature", "-1", .. Small]).Err, Does.Contain("--pred-temperature must be 0"));
    }

    /// <summary>--init-from without --corpus trained on the Jay Chou lyrics instead of the checkpoint's own text.</summary>
    [Test]
    public void InitFromTrainsOnTheCheckpointsOwnTextUnlessGivenAnother()
    {
        using var dir = new TempDir();
        var text = Text(dir);
        var (code, _, e) = Run(["train", "--corpus", text, "--epochs", "1", "--checkpoint-dir", dir.File("ck"), .. Small]);
        Assert.That(code, Is.EqualTo(0), e);
        (code, var o, e) = Run("train", "--init-from", dir.File("ck"), "--epochs", "1", "--device", "cpu", "--lr", "1");
        Assert.That(code, Is.EqualTo(0), e);
        Assert.That(e, Does.Contain($"corpus {File.ReadAllText(text).Length} chars"), "the checkpoint's text, whole");
        Assert.That(o, Does.Contain(" - Songs"), "its prefix");
        File.Move(text, dir.File("moved.txt"));
        (code, _, e) = Run("train", "--init-from", dir.File("ck"), "--epochs", "1", "--device", "cpu");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(CliProcess.OneErrorLine(e), Does.Contain($"the checkpoint was trained on {text}, which is gone").And.Contain("--corpus FILE"));
        (code, _, e) = Run("train", "--init-from", dir.File("ck"), "--corpus", dir.File("moved.txt"), "--epochs", "1", "--device", "cpu");
        Assert.That(code, Is.EqualTo(0), e);
    }
}

/// <summary>#24 scope 4: `generate --count 3` could not be split when samples held line breaks.</summary>
public class GenerateSeparatorTests
{
    [Test]
    public void SamplesAreSeparatedUnambiguouslyWithSeparatorOrJson()
    {
        using var dir = new TempDir();
        var text = dir.File("lines.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Repeat("ab\ncd\nef ab\n", 400)));
        var (code, _, e) = CliTests.Run("train", "--preset", "scratch-random", "--corpus", text, "--epochs", "2", "--hidden", "16", "--batch", "4", "--steps", "8",
            "--device", "cpu", "--checkpoint-dir", dir.File("ck"));
        Assert.That(code, Is.EqualTo(0), e);
        string[] gen = ["generate", "--checkpoint", dir.File("ck"), "--device", "cpu", "--length", "40", "--count", "3", "--seed", "5", "--prefix", "ab"];
        var (c1, plain, e1) = CliTests.Run(gen);
        Assert.That(c1, Is.EqualTo(0), e1);
        var (c2, json, e2) = CliTests.Run([.. gen, "--json"]);
        Assert.That(c2, Is.EqualTo(0), e2);
        var samples = json.TrimEnd('\n').Split('\n').Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.That(samples.Select(s => s.GetProperty("sample").GetInt32()), Is.EqualTo(new[] { 1, 2, 3 }));
        var texts = samples.Select(s => s.GetProperty("text").GetString()!).ToList();
        Assert.That(texts.All(t => t.StartsWith("ab", StringComparison.Ordinal) && t.Length == 42));
        Assert.That(texts.Any(t => t.Contains('\n')), "the corpus makes samples with line breaks: the case --json is for");
        Assert.That(plain, Is.EqualTo(string.Join("\n", texts) + "\n"), "the same samples as plain text, one after another");
        var (c3, sep, e3) = CliTests.Run([.. gen, "--separator", @"\n---\n"]);
        Assert.That(c3, Is.EqualTo(0), e3);
        Assert.That(sep, Is.EqualTo(string.Join("\n---\n", texts) + "\n"));
        Assert.That(CliProcess.OneErrorLine(CliTests.Run([.. gen, "--json", "--separator", "x"]).Err), Does.Contain("Give one of them"));
    }
}
