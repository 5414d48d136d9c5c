using System.Security.Cryptography;
using System.Text.Json.Nodes;
using CharRnn.Rnn;
using CharRnn.Rnn.Backends.Cpu;
using CharRnn.Rnn.Checkpoints;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Model;
using CharRnn.Rnn.Training;
using static CharRnn.Tests.CheckpointFuzzTests;

namespace CharRnn.Tests;

/// <summary>
/// #26: the header checks of <c>CheckpointValidation</c> at their edges. The fuzz tests refuse damaged files; these
/// pin each rule to its boundary: the last value a run can write loads, the first impossible one is refused for its
/// own reason. Mutation testing showed every one of these boundaries movable (<c>&lt;</c> for <c>&lt;=</c>, <c>||</c>
/// for <c>&amp;&amp;</c>, a rule removed) without a fast test noticing. The file is the fuzz tests' two-layer LSTM
/// trained one epoch with Adam (batch 3, 5 steps, epoch 1 complete, one rank).
/// </summary>
public class CheckpointEdgeTests
{
    static JsonObject O(Parts p) => p.Header["Options"]!.AsObject();
    static JsonArray T(Parts p) => p.Header["Tensors"]!.AsArray();
    static JsonObject Entry(Parts p, string name) => T(p).First(t => t!["Name"]!.GetValue<string>() == name)!.AsObject();
    static JsonObject History(int epoch, double perplexity) => new()
    {
        ["Epoch"] = epoch, ["Perplexity"] = perplexity, ["ValPerplexity"] = null, ["Seconds"] = 0.1, ["TokensPerSecond"] = 1000.0,
    };

    /// <summary>Drops Adam's moments: a checkpoint taken before Adam's first step holds only parameters and state.</summary>
    static void NoAdamSteps(Parts p)
    {
        p.Header["AdamSteps"] = 0;
        foreach (var t in T(p).Where(t => t!["Name"]!.GetValue<string>().StartsWith("adam_")).ToList()) T(p).Remove(t);
    }

    static IEnumerable<TestCaseData> Loadable()
    {
        static TestCaseData L(string name, Action<Parts> edit) => new TestCaseData(edit).SetName("Loads_" + name);
        yield return L("EpochZeroInsideTheFirstEpoch", p => { p.Header["Epoch"] = 0; p.Header["Minibatch"] = 1; p.Header["LossRows"] = 15; p.Header["LossSum"] = 2.5; });
        yield return L("OneMinibatchIntoTheEpoch", p => { p.Header["Minibatch"] = 1; p.Header["LossRows"] = 3 * 5; p.Header["LossSum"] = 40.0; });
        yield return L("TwoMinibatchesIntoTheEpoch", p => { p.Header["Minibatch"] = 2; p.Header["LossRows"] = 2 * 3 * 5; p.Header["LossSum"] = 80.0; });
        yield return L("AsManyRanksAsRows", p => p.Header["Ranks"] = 3);
        yield return L("ValidationPerplexityOne", p => p.Header["ValPerplexity"] = 1.0);
        yield return L("ValidationPerplexityFive", p => p.Header["ValPerplexity"] = 5.0);
        yield return L("HistoryFromEpochOne", p => p.Header["History"] = new JsonArray(History(1, 30.0), History(2, 20.0)));
        yield return L("NoHistory", p => p.Header["History"] = null);
        yield return L("AdamBeforeItsFirstStep", NoAdamSteps);
        yield return L("SgdNeverStepsAdam", p => { NoAdamSteps(p); O(p)["Optimizer"] = 0; /* Sgd */ });
        yield return L("OneCharacterCorpus", p => { p.Header["CorpusChars"] = 1; p.Header["CorpusLimit"] = 1; });
        yield return L("NoCharacterLimit", p => p.Header["CorpusLimit"] = null);
        yield return L("UppercaseFingerprint", p => p.Header["CorpusSha1"] = p.Header["CorpusSha1"]!.GetValue<string>().ToUpperInvariant());
        yield return L("VocabularyFromU0000", p => { var v = p.Header["VocabChars"]!.GetValue<string>(); p.Header["VocabChars"] = "\u0000" + v[1..]; });
        yield return L("VocabularyFromU0001", p => { var v = p.Header["VocabChars"]!.GetValue<string>(); p.Header["VocabChars"] = "\u0001" + v[1..]; });
    }

    [TestCaseSource(nameof(Loadable))]
    public void TheLastPossibleValueLoads(Action<Parts> edit)
    {
        var parts = Parts.Of(Valid());
        edit(parts);
        Assert.That(TryLoad(parts.Assemble(), TestContext.CurrentContext.Test.Name), Is.Null);
    }

    static IEnumerable<TestCaseData> Impossible()
    {
        static TestCaseData R(string name, Action<Parts> edit, string reason) => new TestCaseData(edit, reason).SetName("Refused_" + name);
        foreach (var field in new[] { "Model", "Cell", "Activation" })
            yield return R($"Undefined{field}", p => { p.Header[field] = 99; O(p)[field] = 99; }, $"undefined {field} (99)");
        foreach (var field in new[] { "Model", "Cell", "Activation", "Sampling", "Optimizer", "Input" })
            yield return R($"UndefinedOptions{field}", p => O(p)[field] = 99, $"undefined Options.{field} (99)");
        yield return R("UndefinedNewlines", p => p.Header["Newlines"] = 99, "undefined newline rule (99)");
        yield return R("HeaderAndOptionsDisagree", p => p.Header["Hidden"] = 7,
            "its header describes a Concise Lstm ×2, H 7, Tanh but its options a Concise Lstm ×2, H 6, Tanh");
        yield return R("NegativeMinibatch", p => p.Header["Minibatch"] = -1, "impossible position in its epoch (minibatch -1, 0 loss rows)");
        yield return R("NegativeLossRows", p => { p.Header["Minibatch"] = 1; p.Header["LossRows"] = -1; }, "impossible position in its epoch (minibatch 1, -1 loss rows)");
        yield return R("NegativeLossSum", p => { p.Header["Minibatch"] = 1; p.Header["LossRows"] = 15; p.Header["LossSum"] = -1.0; }, "impossible position in its epoch");
        yield return R("LossRowsAtAnEpochBoundary", p => p.Header["LossRows"] = 15, "impossible position in its epoch (minibatch 0, 15 loss rows)");
        yield return R("LossRowsOfAnotherBatch", p => { p.Header["Minibatch"] = 2; p.Header["LossRows"] = 2 * 5; }, "has 10 loss rows for 2 minibatches of 3 × 5");
        yield return R("ZeroRanks", p => p.Header["Ranks"] = 0, "impossible rank count (0 for batch 3)");
        yield return R("RanksThatDoNotDivideTheBatch", p => p.Header["Ranks"] = 2, "impossible rank count (2 for batch 3)");
        yield return R("ValidationPerplexityBelowOne", p => p.Header["ValPerplexity"] = 0.999, "impossible validation perplexity (0.999)");
        yield return R("HistoryFromEpochZero", p => p.Header["History"] = new JsonArray(History(1, 30.0), History(0, 20.0)), "damaged run history");
        yield return R("NullHistoryEntry", p => p.Header["History"] = new JsonArray(History(1, 30.0), null), "damaged run history");
        yield return R("AFingerprintWithOneNonHexDigit", p => p.Header["CorpusSha1"] = "g" + p.Header["CorpusSha1"]!.GetValue<string>()[1..], "no valid corpus fingerprint");
        yield return R("ZeroCharacterLimit", p => p.Header["CorpusLimit"] = 0, "impossible corpus size");
        yield return R("TrailingData", p => Entry(p, "state/H0")["Length"] = Entry(p, "state/H0")["Length"]!.GetValue<int>() - 1, "has trailing data after its tensors");
        yield return R("ARenamedTensor", p => { Entry(p, "state/H1")["Name"] = "state/H9"; p.Data["state/H9"] = p.Data["state/H1"]; }, "lacks the tensor state/H1");
        yield return R("TwoTensorsResized", p =>
        {
            // One value moved from state/H0 to state/H1: every total still adds up; only the per-tensor check sees it.
            int n = Entry(p, "state/H0")["Length"]!.GetValue<int>();
            Entry(p, "state/H0")["Length"] = n - 1;
            Entry(p, "state/H1")["Length"] = n + 1;
        }, "has 17 values in state/H0 where the model needs 18");
        yield return R("AnEmptyExtraTensor", p => { T(p).Add(new JsonObject { ["Name"] = "param/extra", ["Length"] = 0 }); p.Data["param/extra"] = []; },
            "has an unexpected tensor param/extra");
        yield return R("AdamMomentsWithoutAdamSteps", p => p.Header["AdamSteps"] = 0, "does not hold the tensors its model needs");
    }

    [TestCaseSource(nameof(Impossible))]
    public void TheFirstImpossibleValueIsRefusedForItsReason(Action<Parts> edit, string reason)
    {
        var parts = Parts.Of(Valid());
        edit(parts);
        Assert.That(Refused(parts.Assemble(), TestContext.CurrentContext.Test.Name), Does.Contain(reason));
    }

    static Corpus SmallCorpus => Corpus.Load(Path.Combine(AppContext.BaseDirectory, "data", "jaychou_lyrics.txt.zip"), 800);

    /// <summary>A checkpoint captured before any step (Adam with no moments yet; a plain RNN with no cell state) is
    /// written, loaded and turned back into a trainer state with exactly what it holds; the header names the writer
    /// and the checkpoint folder as a full path.</summary>
    [TestCase("concise", CellKind.Lstm)]
    [TestCase("concise", CellKind.Rnn)]
    [TestCase("scratch-random", CellKind.Gru)]
    public void ACheckpointBeforeTheFirstStepRoundTrips(string preset, CellKind cell)
    {
        using var dir = new TempDir();
        using var be = new CpuBackend(CpuGemm.Engine.Managed);
        var o = TrainOptions.Preset(preset) with { Cell = cell, Epochs = 1, Hidden = 6, Batch = 3, Steps = 5, PredLen = 2 };
        using var t = new Trainer(be, SmallCorpus, o);
        var ck = Checkpoint.Capture(t, checkpointDir: "some/dir");
        Assert.That(ck.Header.AdamSteps, Is.Zero);
        Assert.That(ck.Header.CheckpointDir, Is.EqualTo(Path.GetFullPath("some/dir")));
        Assert.That(ck.Header.WrittenBy, Is.EqualTo("charrnn " + typeof(Checkpoint).Assembly.GetName().Version));
        Assert.That(ck.Tensors.Keys.Where(k => k.StartsWith("adam_")), Is.Empty, "no moments before Adam's first step");
        ck.Save(dir.File("a.ckpt"));
        var state = Checkpoint.Load(dir.File("a.ckpt")).ToState();
        Assert.That(state.AdamM, Is.Null);
        Assert.That(state.AdamV, Is.Null);
        Assert.That(state.C, cell == CellKind.Lstm ? Is.Not.Null : Is.Null);
        Assert.That(state.Parameters.Values, Is.EqualTo(t.CaptureState().Parameters.Values));
    }

    /// <summary>A tensor longer than the 1 Mi-float chunk the writer and the reader copy at a time (W_hh of H 1 030).</summary>
    [Test]
    public void ATensorLongerThanOneChunkRoundTrips()
    {
        var o = TrainOptions.Preset("scratch-random") with { Hidden = 1030 };
        var spec = o.Spec(2);
        var p = RnnParameters.Initialize(spec, new Rng(4));
        var tensors = new Dictionary<string, float[]>();
        for (int i = 0; i < spec.Parameters.Count; i++) tensors["param/" + spec.Parameters[i].Name] = p.Values[i];
        tensors["state/H0"] = Enumerable.Range(0, o.Batch * o.Hidden).Select(i => i * 1e-3f).ToArray();
        Assert.That(tensors["param/W_hh"].Length, Is.GreaterThan(1 << 20));
        var ck = LargeCheckpointTests.OfTensors(o, spec, tensors);
        using var dir = new TempDir();
        ck.Save(dir.File("big.ckpt"));
        var back = Checkpoint.Load(dir.File("big.ckpt"));
        foreach (var (name, data) in tensors) Assert.That(back.Tensors[name], Is.EqualTo(data), name);
    }

    static byte[] WithHash(byte[] m)
    {
        SHA256.HashData(m.AsSpan(0, m.Length - 32)).CopyTo(m, m.Length - 32);
        return m;
    }

    static IEnumerable<TestCaseData> DamagedFrames()
    {
        static TestCaseData F(string name, Func<byte[], byte[]> make, string reason) => new TestCaseData(make, reason).SetName("Frame_" + name);
        var magic = "CHARRNN\0"u8.ToArray();
        yield return F("OnlyTheSignature", _ => magic, "is truncated (8 bytes)");
        yield return F("SevenBytesOfTheSignature", _ => magic[..7], "is not a CharRnn checkpoint");
        yield return F("SignatureAnd39Bytes", _ => [.. magic, .. new byte[39]], "is truncated (47 bytes)");
        yield return F("SignatureAnd40ZeroBytes", _ => [.. magic, .. new byte[40]], "has an invalid format version (0)");
        yield return F("VersionZero", v => { var m = (byte[])v.Clone(); BitConverter.GetBytes(0).CopyTo(m, 8); return m; }, "has an invalid format version (0)");
        yield return F("VersionTwo", v => { var m = (byte[])v.Clone(); BitConverter.GetBytes(2).CopyTo(m, 8); return m; }, "has format version 2, newer than this charrnn understands (1)");
        yield return F("HeaderOneBytePastTheData", v =>
        {
            var m = (byte[])v.Clone();
            BitConverter.GetBytes(m.Length - 16 - 32 + 1).CopyTo(m, 12);
            return WithHash(m);
        }, "its header does not fit in the file");
        yield return F("HeaderFillingTheDataExactly", v =>
        {
            // Fits by length, so the header is read: every tensor byte becomes header text, and the JSON parser says so.
            var m = (byte[])v.Clone();
            BitConverter.GetBytes(m.Length - 16 - 32).CopyTo(m, 12);
            return WithHash(m);
        }, "has an unreadable header");
    }

    [TestCaseSource(nameof(DamagedFrames))]
    public void ADamagedFrameIsRefusedForItsReason(Func<byte[], byte[]> make, string reason)
    {
        var message = Refused(make(Valid()), TestContext.CurrentContext.Test.Name);
        Assert.That(message, Does.Contain(reason));
    }
}
