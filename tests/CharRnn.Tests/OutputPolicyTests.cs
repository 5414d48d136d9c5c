using System.Diagnostics;
using CharRnn.Rnn;
using CharRnn.Rnn.Checkpoints;

namespace CharRnn.Tests;

/// <summary>
/// Reliability round two (#23), cases 1–4: outputs never replace what they do not own (a pipe, a device, the run's own
/// inputs, compared by file identity), a checkpoint folder that cannot be written is found before training, inputs
/// that would block are refused before they are opened, and generate and bench stop on the first signal. Each case
/// here failed before: the output was renamed over the pipe or the input (exit 0), the folder was found read-only
/// after every epoch had run, the FIFO blocked forever, the signal was ignored.
/// </summary>
public class OutputPolicyTests
{
    static readonly string[] Tiny = ["train", "--device", "cpu", "--batch", "2", "--steps", "5", "--chars", "1000"];
    static readonly string[] Small = [.. Tiny, "--hidden", "8", "--pred-len", "2"];

    static string Corpus(TempDir d)
    {
        var path = d.File("my.txt");
        File.WriteAllText(path, string.Concat(Enumerable.Repeat("the quick brown fox jumps over the lazy dog\n", 20)));
        return path;
    }

    static void MakeFifo(string path)
    {
        using var p = Process.Start(new ProcessStartInfo("mkfifo", path) { UseShellExecute = false })!;
        p.WaitForExit();
        Assert.That(AtomicFile.Stat(path)?.Kind, Is.EqualTo(FileKind.Pipe), "mkfifo made a pipe");
    }

    [Test]
    public void AnOutputThatIsAPipeIsRefusedAndStaysAPipe([Values("--metrics", "--plot")] string flag)
    {
        using var d = new TempDir();
        var fifo = d.File(flag == "--plot" ? "p.png" : "m.jsonl");
        MakeFifo(fifo);
        var (code, _, e) = CliTests.Run([.. Small, "--epochs", "1", flag, fifo]);
        Assert.That(code, Is.EqualTo(2), e);
        Assert.That(CliProcess.OneErrorLine(e), Does.Contain($"{flag} {fifo} is a named pipe (FIFO), not a regular file"));
        Assert.That(AtomicFile.Stat(fifo)?.Kind, Is.EqualTo(FileKind.Pipe));
    }

    /// <summary>The corpus named again as --metrics — by its own name, or through a symbolic link — is refused, intact.</summary>
    [Test]
    public void AnOutputThatIsTheCorpusIsRefusedAndTheCorpusKept([Values] bool throughALink)
    {
        using var d = new TempDir();
        var corpus = Corpus(d);
        var before = File.ReadAllBytes(corpus);
        var target = corpus;
        if (throughALink)
        {
            target = d.File("link.jsonl");
            File.CreateSymbolicLink(target, corpus);
        }
        var (code, _, e) = CliTests.Run([.. Small, "--epochs", "1", "--corpus", corpus, "--metrics", target]);
        Assert.That(code, Is.EqualTo(2), e);
        Assert.That(CliProcess.OneErrorLine(e), Does.Contain("is the same file as --corpus"));
        Assert.That(File.ReadAllBytes(corpus), Is.EqualTo(before));
    }

    [Test]
    public void TheResumedCheckpointAndTheExportedOneAreNeverOverwritten()
    {
        using var d = new TempDir();
        var (code0, _, e0) = CliTests.Run([.. Small, "--epochs", "1", "--checkpoint-dir", d.File("ck")]);
        Assert.That(code0, Is.EqualTo(0), e0);
        var ck = Directory.GetFiles(d.File("ck"), "epoch-*.ckpt").Single();
        var bytes = File.ReadAllBytes(ck);

        var (code1, _, e1) = CliTests.Run([.. Small, "--epochs", "2", "--resume", ck, "--metrics", ck]);
        Assert.That(code1, Is.EqualTo(2), e1);
        Assert.That(CliProcess.OneErrorLine(e1), Does.Contain("is the same file as --resume"));

        var (code2, _, e2) = CliTests.Run("export", "--checkpoint", ck, ck);
        Assert.That(code2, Is.EqualTo(2), e2);
        Assert.That(CliProcess.OneErrorLine(e2), Does.Contain("OUT " + ck + " is the same file as --checkpoint"));
        Assert.That(File.ReadAllBytes(ck), Is.EqualTo(bytes));
        Assert.That(Checkpoint.Load(ck).Header.Epoch, Is.EqualTo(1));
    }

    /// <summary>A folder that refuses new files is found at the start: no epoch runs (the work would be lost). As root,
    /// permission bits do not stop writes, so a read-only sysfs folder stands in where one is available.</summary>
    [Test, System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void ACheckpointFolderThatCannotBeWrittenIsRefusedBeforeTraining()
    {
        using var d = new TempDir();
        var folder = d.File("ro");
        Directory.CreateDirectory(folder);
        File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        if (Writable(folder))
            folder = new[] { "/sys/kernel", "/proc/sys" }.FirstOrDefault(f => Directory.Exists(f) && !Writable(f))
                     ?? Ignore("no folder here refuses new files (root, and no read-only sysfs)");
        var (code, o, e) = CliTests.Run([.. Small, "--epochs", "50", "--checkpoint-dir", folder]);
        File.SetUnixFileMode(d.File("ro"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        Assert.That(code, Is.EqualTo(2), e);
        Assert.That(CliProcess.OneErrorLine(e), Does.Contain("--checkpoint-dir: cannot write in"));
        Assert.That(o, Does.Not.Contain("epoch 1,"), "refused before any training");
    }

    static bool Writable(string folder)
    {
        try
        {
            var probe = Path.Combine(folder, ".charrnn-test-probe");
            using (File.Create(probe)) { }
            File.Delete(probe);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    static string Ignore(string why)
    {
        Assert.Ignore(why);
        return "";
    }

    /// <summary>A FIFO as the corpus or the model to start from is refused before it is opened (opening one blocks
    /// until a writer comes). Child processes, so a regression fails on the timeout instead of hanging the suite.</summary>
    [Test]
    public void InputsThatWouldBlockAreRefusedBeforeTheyAreOpened([Values("--corpus", "--init-from")] string flag)
    {
        using var d = new TempDir();
        var fifo = d.File("in");
        MakeFifo(fifo);
        var (code, _, e) = CliProcess.Run([.. Small, "--epochs", "1", flag, fifo], timeoutSeconds: 60);
        Assert.That(code, Is.EqualTo(2), e);
        Assert.That(CliProcess.OneErrorLine(e), Does.Contain($"{fifo} is a named pipe (FIFO): reading it could block or never end"));
    }

    /// <summary>generate streams (greedy too) and stops on the first SIGINT at the next character: exit 130 within
    /// seconds of a run that would otherwise print a hundred million characters.</summary>
    [Test]
    public void GenerateStopsOnTheFirstSignal([Values("0", "1")] string temperature)
    {
        using var d = new TempDir();
        var (code0, _, e0) = CliTests.Run([.. Small, "--epochs", "1", "--checkpoint-dir", d.Path]);
        Assert.That(code0, Is.EqualTo(0), e0);
        using var p = CliProcess.Start(["generate", "--checkpoint", d.Path, "--length", "100000000", "--temperature", temperature, "--device", "cpu"]);
        var err = p.StandardError.ReadToEndAsync();
        var first = new char[64];
        var read = p.StandardOutput.ReadAsync(first, 0, first.Length); // streaming: characters come before the end
        if (!read.Wait(30_000))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail("no text within 30 s: generate does not stream");
        }
        Assert.That(read.Result, Is.GreaterThan(0), "generate streams its text");
        CliProcess.Signal(p, 2);
        var drain = p.StandardOutput.ReadToEndAsync();
        bool ended = CliProcess.Ended(p, 20);
        Assert.That(ended, Is.True, "stopped within 20 s of SIGINT");
        Assert.That(p.ExitCode, Is.EqualTo(130), err.Result);
        Assert.That(err.Result, Does.Contain("interrupted"));
        Assert.That(drain.Result.Length, Is.LessThan(50_000_000), "stopped long before the end");
    }

    [Test]
    public void BenchStopsOnTheFirstSignal()
    {
        using var p = CliProcess.Start(["bench", "--device", "cpu", "--epochs", "100000", "--sgemm", "0", "--hidden", "16"]);
        var line = p.StandardError.ReadLine(); // "charrnn bench: …": the run has started
        Assert.That(line, Does.StartWith("charrnn bench:"));
        Thread.Sleep(500);
        CliProcess.Signal(p, 2);
        var err = p.StandardError.ReadToEndAsync();
        bool ended = CliProcess.Ended(p, 20);
        Assert.That(ended, Is.True, "stopped within 20 s of SIGINT");
        Assert.That(p.ExitCode, Is.EqualTo(130), err.Result);
    }

    /// <summary>Case 7: a new run in a folder that holds another run's checkpoints would overwrite some and leave
    /// latest.ckpt and best.ckpt in different runs: refused, nothing touched; --resume continues there; --force deletes
    /// the old run's checkpoints and starts over.</summary>
    [Test]
    public void AFreshRunInAnotherRunsFolderIsRefusedUnlessForced()
    {
        using var d = new TempDir();
        var (c0, _, e0) = CliTests.Run([.. Small, "--epochs", "2", "--checkpoint-dir", d.Path]);
        Assert.That(c0, Is.EqualTo(0), e0);
        var before = Directory.GetFiles(d.Path).ToDictionary(f => f, File.ReadAllBytes);

        var (c1, o1, e1) = CliTests.Run([.. Tiny, "--pred-len", "2", "--epochs", "1", "--hidden", "12", "--checkpoint-dir", d.Path]);
        Assert.That(c1, Is.EqualTo(2), e1);
        Assert.That(CliProcess.OneErrorLine(e1), Does.Contain("holds another run's checkpoints").And.Contain("--force"));
        Assert.That(o1, Does.Not.Contain("epoch 1,"));
        Assert.That(Directory.GetFiles(d.Path).ToDictionary(f => f, File.ReadAllBytes), Is.EqualTo(before), "nothing touched");

        var (c2, _, e2) = CliTests.Run("train", "--resume", d.Path, "--epochs", "3");
        Assert.That(c2, Is.EqualTo(0), "a resume continues in its own folder: " + e2);

        var (c3, _, e3) = CliTests.Run([.. Tiny, "--pred-len", "2", "--epochs", "1", "--hidden", "12", "--checkpoint-dir", d.Path, "--force"]);
        Assert.That(c3, Is.EqualTo(0), e3);
        Assert.That(e3, Does.Contain("--force: deleted"));
        var left = Directory.GetFiles(d.Path, "epoch-*.ckpt");
        Assert.That(left, Has.Length.EqualTo(1), "only the new run's checkpoint");
        Assert.That(Checkpoint.Load(left[0]).Header.Hidden, Is.EqualTo(12));
    }

    /// <summary>Case 5: values that overflowed into exit 70 are refused in one line (exit 2).</summary>
    [TestCase("--rank-timeout", "1e300", "--rank-timeout must be a positive number of seconds, at most")]
    [TestCase("--pred-len", "2147483647", "--pred-len must be at most")]
    public void OverflowingValuesAreRefusedInOneLine(string flag, string value, string message)
    {
        var (code, _, e) = CliTests.Run([.. Tiny, "--epochs", "1", flag, value]); // Tiny names neither flag
        Assert.That(code, Is.EqualTo(2), e);
        Assert.That(CliProcess.OneErrorLine(e), Does.Contain(message));
    }

    /// <summary>Case 5: a file named like a checkpoint with an epoch no int holds is not taken for one (it overflowed).</summary>
    [Test]
    public void AnEpochNumberTooLongForACheckpointNameIsNotOne()
    {
        using var d = new TempDir();
        File.WriteAllText(d.File("epoch-99999999999999999999.ckpt"), "not ours");
        var (code, _, e) = CliTests.Run("train", "--resume", d.Path);
        Assert.That(code, Is.EqualTo(2), e);
        Assert.That(CliProcess.OneErrorLine(e), Does.Contain("the folder holds no checkpoint"));
    }

    /// <summary>Case 4: start-up grew with the square of --layers (the parameter list rebuilt for every parameter: 3 000
    /// layers took 87 s); the most layers a run may have, 1 000, now start in seconds — a child process with a bound
    /// many times what it needs — and 100 000 are refused at once instead of running for minutes.</summary>
    [Test]
    public void TheMostLayersStartInSecondsAndMoreAreRefused()
    {
        string[] run = ["train", "--device", "cpu", "--hidden", "2", "--batch", "1", "--steps", "2", "--chars", "1000", "--epochs", "1", "--pred-len", "1"];
        var (code, o, e) = CliProcess.Run([.. run, "--layers", "1000"], timeoutSeconds: 60);
        Assert.That(code, Is.EqualTo(0), e);
        Assert.That(o, Does.Contain("epoch 1, perplexity"));
        var (code2, _, e2) = CliProcess.Run([.. run, "--layers", "100000"], timeoutSeconds: 30);
        Assert.That(code2, Is.EqualTo(2), e2);
        Assert.That(CliProcess.OneErrorLine(e2), Does.Contain("--layers must be at most 1,000"));
    }

    /// <summary>#24 bug 4: a resume saves in the folder it was resumed from — a moved folder is not recreated at its old
    /// path, and resuming a copy leaves the original's checkpoints and links alone.</summary>
    [Test]
    public void AResumeSavesWhereItWasResumedFrom()
    {
        using var d = new TempDir();
        var (c0, _, e0) = CliTests.Run([.. Small, "--epochs", "2", "--checkpoint-dir", d.File("A")]);
        Assert.That(c0, Is.EqualTo(0), e0);
        Directory.Move(d.File("A"), d.File("B"));
        var (c1, _, e1) = CliTests.Run("train", "--resume", d.File("B"), "--epochs", "3");
        Assert.That(c1, Is.EqualTo(0), e1);
        Assert.That(e1, Does.Contain($"this run saves in {d.File("B")}, where it was resumed from"));
        Assert.That(Directory.Exists(d.File("A")), Is.False, "the old folder is not recreated");
        Assert.That(File.Exists(Path.Combine(d.File("B"), "epoch-00003.ckpt")), Is.True);

        CopyFolder(d.File("B"), d.File("C"));
        var originals = Directory.GetFiles(d.File("B")).ToDictionary(f => Path.GetFileName(f)!, f => File.ResolveLinkTarget(f, false)?.FullName ?? f);
        var (c2, _, e2) = CliTests.Run("train", "--resume", d.File("C"), "--epochs", "4");
        Assert.That(c2, Is.EqualTo(0), e2);
        Assert.That(File.Exists(Path.Combine(d.File("C"), "epoch-00004.ckpt")), Is.True);
        Assert.That(Directory.GetFiles(d.File("B")).ToDictionary(f => Path.GetFileName(f)!, f => File.ResolveLinkTarget(f, false)?.FullName ?? f),
            Is.EqualTo(originals), "the original folder is untouched");
    }

    static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from))
        {
            var target = Path.Combine(to, Path.GetFileName(f));
            if (File.ResolveLinkTarget(f, false) is { } link) File.CreateSymbolicLink(target, Path.GetFileName(link.FullName)); // links stay relative, as charrnn makes them
            else File.Copy(f, target);
        }
    }

    /// <summary>#24 bug 7: generate's fallback line spoke of training; a second Ctrl+C ended silently.</summary>
    [Test]
    public void GenerateSaysWhatRunsOnTheCpuAndASecondCtrlCSaysItStopped()
    {
        using var d = new TempDir();
        var (c0, _, e0) = CliTests.Run([.. Small, "--epochs", "1", "--checkpoint-dir", d.Path]);
        Assert.That(c0, Is.EqualTo(0), e0);
        var (c1, _, e1) = CliTests.Run("generate", "--checkpoint", d.Path, "--device", "auto", "--length", "5");
        Assert.That(c1, Is.EqualTo(0), e1);
        if (e1.Contains("no usable GPU")) Assert.That(e1, Does.Contain("; generating on the CPU.").And.Not.Contain("training"));

        // Epochs of the whole corpus (thousands of minibatches): the second Ctrl+C comes while the first waits for the epoch's end.
        using var p = CliProcess.Start(["train", "--device", "cpu", "--batch", "2", "--steps", "5", "--chars", "all", "--hidden", "64", "--pred-len", "2", "--pred-period", "1", "--epochs", "100000"]);
        var err = p.StandardError.ReadToEndAsync();
        Assert.That(p.StandardOutput.ReadLine(), Does.StartWith("epoch 1,"));
        CliProcess.Signal(p, 2);
        Thread.Sleep(200);
        CliProcess.Signal(p, 2);
        bool ended = CliProcess.Ended(p, 20);
        Assert.That(ended, Is.True);
        Assert.That(err.Result, Does.Contain("stopped at once (a second Ctrl+C)"));
    }

    /// <summary>#24 bug 3: a Ctrl+C save between reports kept no validation value although the epoch had one: the file
    /// had no -val- and no best.ckpt was made.</summary>
    [Test]
    public void ACtrlCSaveKeepsTheValidationValueOfItsEpoch()
    {
        using var d = new TempDir();
        var metrics = d.File("m.jsonl");
        using var p = CliProcess.Start([.. Small, "--epochs", "100000", "--val-fraction", "0.2", "--pred-period", "100000",
            "--checkpoint-dir", d.File("ck"), "--save-every", "100000", "--metrics", metrics]);
        var err = p.StandardError.ReadToEndAsync();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while ((!File.Exists(metrics) || File.ReadAllLines(metrics).Length < 2) && clock.Elapsed < TimeSpan.FromSeconds(60)) Thread.Sleep(50);
        CliProcess.Signal(p, 2);
        bool ended = CliProcess.Ended(p, 60);
        Assert.That(ended, Is.True);
        Assert.That(p.ExitCode, Is.EqualTo(130), err.Result);
        // The interrupted boundary's save (or, when that epoch was a new best, the save that made it best) names its value.
        var saved = Directory.GetFiles(d.File("ck"), "epoch-*.ckpt").Order().Last();
        Assert.That(Path.GetFileName(saved), Does.Match(@"^epoch-\d{5}-val-[0-9.]+\.ckpt$"));
        Assert.That(File.Exists(Path.Combine(d.File("ck"), "best.ckpt")), Is.True);
        Assert.That(Checkpoint.Load(saved).Header.ValPerplexity, Is.Not.Null);
    }

    /// <summary>#24 bugs 1 and 2: best.ckpt is always the lowest validation perplexity evaluated in the run (a new best
    /// is saved when it is evaluated, not only on the save schedule), and a save between evaluations carries no
    /// validation value in its name (it carried the previous evaluation's, and could become "the best so far").</summary>
    [Test]
    public void BestIsTheLowestEvaluatedAndNamesCarryOnlyMeasuredValues()
    {
        using var d = new TempDir();
        var metrics = d.File("m.jsonl");
        var (code, _, e) = CliTests.Run(["train", "--device", "cpu", "--chars", "1500", "--val-fraction", "0.3", "--hidden", "64",
            "--batch", "4", "--steps", "8", "--optimizer", "adam", "--lr", "0.02", "--epochs", "40", "--patience", "3",
            "--pred-period", "1000", "--pred-len", "2", "--checkpoint-dir", d.File("ck"), "--save-every", "1000", "--metrics", metrics]);
        Assert.That(code, Is.EqualTo(0), e);
        var vals = File.ReadAllLines(metrics).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("val_perplexity").GetDouble()).ToList();
        var best = Checkpoint.Load(Path.Combine(d.File("ck"), "best.ckpt"));
        Assert.That(best.Header.ValPerplexity, Is.EqualTo(vals.Min()), "best.ckpt holds the lowest value evaluated");
        Assert.That(best.Header.Epoch, Is.EqualTo(vals.IndexOf(vals.Min()) + 1));

        using var d2 = new TempDir();
        var (c2, _, e2) = CliTests.Run([.. Small, "--epochs", "2", "--val-fraction", "0.2", "--print-every", "10it", "--save-every", "10it",
            "--checkpoint-dir", d2.Path]);
        Assert.That(c2, Is.EqualTo(0), e2);
        var names = Directory.GetFiles(d2.Path, "epoch-*.ckpt").Select(Path.GetFileName).ToList();
        Assert.That(names, Has.Some.Match(@"-mb-\d+\.ckpt$"), "saves inside an epoch");
        Assert.That(names.Where(n => n!.Contains("-mb-")), Has.None.Contains("-val-"), "not evaluated there: no value in the name");
        Assert.That(names.Where(n => !n!.Contains("-mb-")), Has.All.Contains("-val-"), "evaluated at each epoch's end");
    }
}
