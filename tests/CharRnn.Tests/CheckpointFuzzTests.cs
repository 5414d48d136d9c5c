using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using CharRnn.Rnn;
using CharRnn.Rnn.Backends.Cpu;
using CharRnn.Rnn.Model;
using CharRnn.Rnn.Checkpoints;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Training;

namespace CharRnn.Tests;

/// <summary>
/// A seeded fuzz of the checkpoint reader: truncations, bit flips and appended bytes (caught by the SHA-256), and hostile
/// mutants whose hash is recomputed (caught by the header's validation): every one refused with a
/// <see cref="CharRnnException"/>, within a time limit and with allocations bounded by the file's size — no crash, no
/// hang, no huge allocation. A control shows that the harness itself produces loadable files.
/// </summary>
public class CheckpointFuzzTests
{
    static byte[]? s_valid;

    /// <summary>A two-layer LSTM trained one epoch with Adam: every kind of tensor (params, moments, H and C state).</summary>
    internal static byte[] Valid()
    {
        if (s_valid != null) return s_valid;
        using var dir = new TempDir();
        using var be = new CpuBackend(CpuGemm.Engine.Managed);
        var corpus = Corpus.Load(Path.Combine(AppContext.BaseDirectory, "data", "jaychou_lyrics.txt.zip"), 800);
        var o = TrainOptions.Preset("lstm-concise") with { Epochs = 1, Hidden = 6, Batch = 3, Steps = 5, PredPeriod = 1, PredLen = 2, Layers = 2 };
        using var t = new Trainer(be, corpus, o);
        t.Train(_ => { });
        Checkpoint.Capture(t).Save(dir.File("ok.ckpt"));
        return s_valid = File.ReadAllBytes(dir.File("ok.ckpt"));
    }

    /// <summary>Loads <paramref name="bytes"/> from a file: null when it loads, else the refusal's message. Fails on
    /// any other exception, on taking more than 30 s, or on allocating more than the file's size allows.</summary>
    internal static string? TryLoad(byte[] bytes, string what)
    {
        using var dir = new TempDir();
        var path = dir.File("m.ckpt");
        File.WriteAllBytes(path, bytes);
        string? refusal = null;
        long allocated = 0;
        var task = Task.Run(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            try { Checkpoint.Load(path); }
            catch (CharRnnException e) { refusal = e.Message; }
            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        });
        if (!task.Wait(TimeSpan.FromSeconds(30))) Assert.Fail($"{what}: loading did not finish in 30 s");
        if (task.Exception != null) Assert.Fail($"{what}: {task.Exception.InnerException}");
        Assert.That(allocated, Is.LessThan(4L * bytes.Length + (8L << 20)), $"{what}: allocations bounded by the file's size");
        return refusal;
    }

    internal static string Refused(byte[] bytes, string what)
    {
        var message = TryLoad(bytes, what);
        Assert.That(message, Is.Not.Null, $"{what}: was accepted");
        if (Environment.GetEnvironmentVariable("CHARRNN_FUZZ_VERBOSE") == "1") TestContext.Out.WriteLine($"{what}: {message}");
        Assert.That(message, Does.Not.Contain("\n"), $"{what}: one line");
        Assert.That(message, Does.Match(@"^\S*m\.ckpt "), $"{what}: refused as a damaged checkpoint, naming it first (not rewrapped as an I/O error)");
        return message!;
    }

    [Test]
    public void TruncationsFlipsAndAppendedBytesAreRefused()
    {
        var valid = Valid();
        Assert.That(TryLoad(valid, "the valid file"), Is.Null);
        var rng = new Rng(20261130);
        for (int i = 0; i < 40; i++)
        {
            int keep = rng.NextInt(valid.Length);
            Refused(valid[..keep], $"truncated to {keep} bytes");
        }
        for (int i = 0; i < 60; i++)
        {
            var m = (byte[])valid.Clone();
            int at = rng.NextInt(m.Length), bit = rng.NextInt(8);
            m[at] ^= (byte)(1 << bit);
            Refused(m, $"bit {bit} of byte {at} flipped");
        }
        foreach (int n in new[] { 1, 7, 4096 })
            Refused([.. valid, .. new byte[n]], $"{n} bytes appended");
    }

    /// <summary>The file split into header JSON and each tensor's bytes, to be mutated and reassembled with a valid hash.</summary>
    public sealed class Parts
    {
        public required JsonObject Header;
        public required Dictionary<string, byte[]> Data;

        public static Parts Of(byte[] file)
        {
            int n = BitConverter.ToInt32(file, 12);
            var header = JsonNode.Parse(file.AsSpan(16, n))!.AsObject();
            var data = new Dictionary<string, byte[]>();
            int offset = 16 + n;
            foreach (var t in header["Tensors"]!.AsArray())
            {
                int bytes = t!["Length"]!.GetValue<int>() * 4;
                data[t["Name"]!.GetValue<string>()] = file[offset..(offset + bytes)];
                offset += bytes;
            }
            return new Parts { Header = header, Data = data };
        }

        /// <summary>Magic, version, header, the data of each listed tensor that exists, then a correct SHA-256.</summary>
        public byte[] Assemble(string? rawHeader = null)
        {
            var header = Encoding.UTF8.GetBytes(rawHeader ?? Header.ToJsonString());
            var body = new List<byte>();
            body.AddRange("CHARRNN\0"u8.ToArray());
            body.AddRange(BitConverter.GetBytes(Checkpoint.FormatVersion));
            body.AddRange(BitConverter.GetBytes(header.Length));
            body.AddRange(header);
            if (Header["Tensors"] is JsonArray list)
                foreach (var t in list)
                    if (t?["Name"]?.GetValueKind() == System.Text.Json.JsonValueKind.String && Data.TryGetValue(t["Name"]!.GetValue<string>(), out var d))
                        body.AddRange(d);
            var all = body.ToArray();
            return [.. all, .. SHA256.HashData(all)];
        }
    }

    static IEnumerable<TestCaseData> Mutants()
    {
        static TestCaseData M(string name, Action<Parts> mutate, string reason) => new TestCaseData(mutate, reason).SetName("Hostile_" + name);
        static JsonObject O(Parts p) => p.Header["Options"]!.AsObject();
        static JsonArray T(Parts p) => p.Header["Tensors"]!.AsArray();
        static JsonObject Entry(Parts p, string name) => T(p).First(t => t!["Name"]!.GetValue<string>() == name)!.AsObject();
        yield return M("NullOptions", p => p.Header["Options"] = null, "has no run options");
        foreach (var v in new[] { 0, -1, int.MaxValue })
            yield return M($"Layers{v}", p => { p.Header["Layers"] = v; O(p)["Layers"] = v; }, "--layers must be");
        foreach (var v in new[] { 0, 100_000, int.MaxValue })
            yield return M($"Hidden{v}", p => { p.Header["Hidden"] = v; O(p)["Hidden"] = v; }, v == 0 ? "--hidden must be" : "does not hold the tensors its model needs");
        yield return M("UnknownCellName", p => { p.Header["Cell"] = "Foo"; O(p)["Cell"] = "Foo"; }, "unreadable header");
        yield return M("CellAsInteger", p => { p.Header["Cell"] = 7; O(p)["Cell"] = 7; }, "undefined Cell (7)");
        yield return M("OptionsSayRnnHeaderSaysLstm", p => O(p)["Cell"] = 0 /* Rnn */, "contradicts itself");
        yield return M("HiddenDisagrees", p => p.Header["Hidden"] = 7, "contradicts itself");
        yield return M("EmptyVocabulary", p => p.Header["VocabChars"] = "", "empty vocabulary");
        yield return M("NullVocabulary", p => p.Header["VocabChars"] = null, "empty vocabulary");
        yield return M("DuplicateVocabulary", p => { var v = p.Header["VocabChars"]!.GetValue<string>(); p.Header["VocabChars"] = v[0] + v[..^1]; }, "damaged vocabulary");
        yield return M("UnsortedVocabulary", p => { var v = p.Header["VocabChars"]!.GetValue<string>(); p.Header["VocabChars"] = v[1] + v[0].ToString() + v[2..]; }, "damaged vocabulary");
        yield return M("ZeroRngState", p => p.Header["DataRngState"] = new JsonArray(0, 0, 0, 0), "no valid data generator state");
        yield return M("ShortRngState", p => p.Header["DataRngState"] = new JsonArray(1, 2, 3), "no valid data generator state");
        yield return M("NullRngState", p => p.Header["DataRngState"] = null, "no valid data generator state");
        yield return M("NullTensorList", p => p.Header["Tensors"] = null, "damaged tensor list");
        yield return M("NullTensorEntry", p => T(p).Add(null), "damaged tensor list");
        yield return M("TensorWithoutName", p => Entry(p, "state/H0")["Name"] = null, "damaged tensor list");
        yield return M("NegativeTensorLength", p => Entry(p, "param/b_q")["Length"] = -1, "damaged tensor list");
        yield return M("HugeTensorLength", p => Entry(p, "param/b_q")["Length"] = int.MaxValue, "its tensors do not fit in the file");
        yield return M("MissingStateTensor", p => T(p).Remove(T(p).First(t => t!["Name"]!.GetValue<string>() == "state/C1")), "does not hold the tensors its model needs");
        yield return M("MissingAdamMoment", p => T(p).Remove(T(p).First(t => t!["Name"]!.GetValue<string>() == "adam_m/W_hh")), "does not hold the tensors its model needs");
        yield return M("StateTensorOneValueShort", p =>
        {
            Entry(p, "state/H0")["Length"] = Entry(p, "state/H0")["Length"]!.GetValue<int>() - 1;
            p.Data["state/H0"] = p.Data["state/H0"][..^4];
        }, "does not hold the tensors its model needs");
        yield return M("DuplicateTensorName", p => Entry(p, "state/H1")["Name"] = "state/H0", "lists a tensor twice");
        yield return M("ExtraTensor", p => { T(p).Add(new JsonObject { ["Name"] = "param/extra", ["Length"] = 1 }); p.Data["param/extra"] = new byte[4]; }, "does not hold the tensors its model needs");
        yield return M("AdamStepsWithSgd", p => O(p)["Optimizer"] = 0 /* Sgd: enums are numbers; the name "Sgd" failed to parse instead */, "do not fit its optimizer (Sgd)");
        yield return M("NegativeAdamSteps", p => p.Header["AdamSteps"] = -1, "Adam steps (-1)");
        yield return M("NegativeEpoch", p => p.Header["Epoch"] = -1, "negative epoch count");
        yield return M("NullPrefixes", p => O(p)["Prefixes"] = null, "no prediction prefixes");
        yield return M("NullPrefix", p => O(p)["Prefixes"] = new JsonArray(null, "分开"), "no prediction prefixes");
        yield return M("ZeroBatch", p => O(p)["Batch"] = 0, "--batch must be");
        yield return M("ZeroEpochs", p => O(p)["Epochs"] = 0, "--epochs must be");
        yield return M("BadCorpusFingerprint", p => p.Header["CorpusSha1"] = "zz", "no valid corpus fingerprint");
        yield return M("NoCorpusChars", p => p.Header["CorpusChars"] = 0, "impossible corpus size");
        yield return M("UndefinedSampling", p => O(p)["Sampling"] = "Sideways", "unreadable header");
        // Reliability round two (#23, cases 5 and 6): each of these loaded, then trained or generated on, or crashed.
        static void First(Parts p, string tensor, float value) => BitConverter.GetBytes(value).CopyTo(p.Data[tensor], 0);
        yield return M("NaNWeight", p => First(p, "param/W_hh", float.NaN), "non-finite value (NaN) in param/W_hh");
        yield return M("InfiniteAdamMoment", p => First(p, "adam_m/W_hh", float.PositiveInfinity), "non-finite value (Infinity) in adam_m/W_hh");
        yield return M("NegativeAdamSecondMoment", p => First(p, "adam_v/W_hh", -1f), "negative Adam second moment");
        yield return M("NaNCarriedState", p => First(p, "state/C0", float.NaN), "non-finite value (NaN) in state/C0");
        yield return M("PredLenTooLong", p => O(p)["PredLen"] = int.MaxValue, "--pred-len must be at most");
        yield return M("BackendNameWithANewline", p => p.Header["Backend"] = "cpu\nerror: something else", "control characters");
        yield return M("LossRowsThatDoNotFitTheMinibatches", p => { p.Header["Minibatch"] = 1; p.Header["LossRows"] = 7; p.Header["LossSum"] = 1.0; }, "7 loss rows");
    }

    /// <summary>#23 case 6: a checkpoint whose vocabulary was edited (one character swapped, the count and every size
    /// kept, the hash recomputed) loads, but resuming it on its own corpus is refused: the model's rows would name other
    /// characters. It resumed before, exit 0.</summary>
    [Test]
    public void AResumeWithAnEditedVocabularyIsRefused()
    {
        var parts = Parts.Of(Valid());
        var v = parts.Header["VocabChars"]!.GetValue<string>();
        parts.Header["VocabChars"] = v[..^1] + "\uFFEE"; // above every character of the corpus: still sorted and distinct
        using var dir = new TempDir();
        var path = dir.File("edited.ckpt");
        File.WriteAllBytes(path, parts.Assemble());
        Assert.That(TryLoad(parts.Assemble(), "edited vocabulary"), Is.Null, "it loads: only the corpus tells");
        var (code, _, e) = CliTests.Run("train", "--resume", path, "--device", "cpu", "--epochs", "2");
        Assert.That(code, Is.EqualTo(2), e);
        Assert.That(CliProcess.OneErrorLine(e), Does.Contain("The checkpoint's vocabulary").And.Contain("is not its corpus's"));
    }

    /// <summary>#23 case 5: a history perplexity of 1e308 (finite, so it loads) resumed with --plot: one line or a
    /// plot, never a crash (it ended in exit 70).</summary>
    [Test]
    public void AHugeHistoryPerplexityDoesNotCrashThePlot()
    {
        var parts = Parts.Of(Valid());
        parts.Header["History"] = new JsonArray(new JsonObject
        {
            ["Epoch"] = 1, ["Perplexity"] = 1e308, ["ValPerplexity"] = null, ["Seconds"] = 0.1, ["TokensPerSecond"] = 1000.0,
        });
        using var dir = new TempDir();
        var path = dir.File("huge.ckpt");
        File.WriteAllBytes(path, parts.Assemble());
        var (code, _, e) = CliTests.Run("train", "--resume", path, "--device", "cpu", "--epochs", "2", "--plot", dir.File("p.svg"));
        Assert.That(code, Is.EqualTo(0).Or.EqualTo(2), e);
        if (code == 2) CliProcess.OneErrorLine(e);
        else Assert.That(File.Exists(dir.File("p.svg")), Is.True);
    }

    [TestCaseSource(nameof(Mutants))]
    public void HostileHeaderWithAValidHashIsRefused(Action<Parts> mutate, string reason)
    {
        var parts = Parts.Of(Valid());
        Assert.That(TryLoad(parts.Assemble(), "reassembled unchanged"), Is.Null, "the harness reassembles a loadable file");
        mutate(parts);
        // #26: refused for its own reason, not any (two mutants had been refused as unparsable instead of checked).
        Assert.That(Refused(parts.Assemble(), TestContext.CurrentContext.Test.Name), Does.Contain(reason));
    }

    [TestCase("[]")]
    [TestCase("null")]
    [TestCase("{")]
    [TestCase("\"text\"")]
    public void HeaderThatIsNotAnObjectIsRefused(string raw) => Refused(Parts.Of(Valid()).Assemble(raw), raw);

    [TestCase(0)]
    [TestCase(-5)]
    [TestCase(int.MaxValue)]
    public void HeaderLengthThatLiesIsRefused(int length)
    {
        var m = (byte[])Valid().Clone();
        BitConverter.GetBytes(length).CopyTo(m, 12);
        SHA256.HashData(m.AsSpan(0, m.Length - 32)).CopyTo(m, m.Length - 32);
        Assert.That(Refused(m, $"header length {length}"), Does.Contain("its header does not fit in the file"));
    }
}

/// <summary>
/// A checkpoint over 2 GiB (one tensor of 2.2 GB: W_hh of H 23 200) is written and read back exactly — the reader used
/// to take the whole file as one array, whose 2 GiB limit made such checkpoints unreadable. Its own category: it writes
/// 2.2 GB and holds two copies in memory (about 20 s and 5 GB here).
/// </summary>
[Category("Large")]
public class LargeCheckpointTests
{
    /// <summary>A one-layer checkpoint of a two-character vocabulary after one epoch, SGD, holding these tensors.</summary>
    internal static Checkpoint OfTensors(TrainOptions o, ModelSpec spec, Dictionary<string, float[]> tensors) => new()
    {
        Header = new CheckpointHeader
        {
            Model = spec.Kind, Cell = spec.Cell, Layers = 1, Hidden = spec.Hidden, Activation = spec.Activation, VocabChars = "ab",
            Options = o, Epoch = 1, DataRngState = [1, 2, 3, 4], AdamSteps = 0, CorpusSha1 = new string('0', 40), CorpusChars = 2,
            WrittenBy = "test", Backend = "test", Created = DateTime.UtcNow,
        },
        Tensors = tensors,
    };

    [Test]
    public void CheckpointOver2GiBRoundTrips()
    {
        var o = TrainOptions.Preset("scratch-random") with { Hidden = 23_200 };
        var spec = o.Spec(2);
        var p = new RnnParameters(spec);
        for (int i = 0; i < p.Values.Length; i++)
            for (int j = 0; j < p.Values[i].Length; j += 4099) p.Values[i][j] = i + j * 1e-6f; // sparse marks, cheap to set
        var tensors = new Dictionary<string, float[]>();
        for (int i = 0; i < spec.Parameters.Count; i++) tensors["param/" + spec.Parameters[i].Name] = p.Values[i];
        tensors["state/H0"] = new float[o.Batch * o.Hidden];
        var ck = OfTensors(o, spec, tensors);
        using var dir = new TempDir();
        var path = dir.File("big.ckpt");
        ck.Save(path);
        Assert.That(new FileInfo(path).Length, Is.GreaterThan(2L << 30));
        var back = Checkpoint.Load(path);
        foreach (var (name, data) in tensors)
            Assert.That(back.Tensors[name].AsSpan().SequenceEqual(data), Is.True, name);
    }
}
