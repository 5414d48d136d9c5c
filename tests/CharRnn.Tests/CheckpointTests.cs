using System.Security.Cryptography;
using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Checkpoints;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Generation;
using CharRnn.Rnn.Model;
using CharRnn.Rnn.Training;

namespace CharRnn.Tests;

[TestFixtureSource(typeof(TestBackends), nameof(TestBackends.All))]
public class CheckpointTests(string backendName)
{
    IBackend _be = null!;

    [SetUp] public void SetUp() => _be = TestBackends.Create(backendName);
    [TearDown] public void TearDown() => _be?.Dispose();

    static Corpus Small => Corpus.Load(Path.Combine(AppContext.BaseDirectory, "data", "jaychou_lyrics.txt.zip"), 3000);

    /// <summary>Small runs of a preset that train (Adam at 1e-2, SGD at the book's 100: lstm-concise at lr 100 used to
    /// diverge to a perplexity of ∞ in epoch 1, which the bit-exact comparison below could not notice — ∞ equals ∞).</summary>
    static TrainOptions Opts(string preset)
    {
        bool rms = preset.EndsWith("+rmsprop", StringComparison.Ordinal);
        var o = TrainOptions.Preset(rms ? preset[..^8] : preset);
        if (rms) o = o with { Optimizer = OptimizerKind.RmsProp };
        return o with
        {
            Epochs = 6, Hidden = 24, Batch = 8, Steps = 10, PredPeriod = 1, PredLen = 8, Seed = 9, ValFraction = 0.2,
            LearningRate = o.Optimizer == OptimizerKind.Sgd ? 100f : 1e-2f,
        };
    }

    /// <summary>Train 6 epochs straight, and 3 + save + load + 3: every later loss, prediction and parameter equal bit for bit.</summary>
    [Test]
    public void ResumeIsBitExact([Values("scratch-random", "scratch-consecutive", "concise", "gru-scratch", "lstm-concise", "char-rnn", "char-rnn+rmsprop")] string preset,
        [Values(1, 2)] int layers)
    {
        var o = Opts(preset) with { Layers = layers };
        var straight = new List<EpochReport>();
        RnnParameters straightParams;
        using (var t = new Trainer(_be, Small, o))
        {
            t.Train(straight.Add);
            straightParams = t.Model.ToHost();
        }
        using var dir = new TempDir();
        var path = dir.File("ck.ckpt");
        var resumed = new List<EpochReport>();
        using (var t = new Trainer(_be, Small, o with { Epochs = 3 }))
        {
            t.Train(resumed.Add);
            Checkpoint.Capture(t).Save(path);
        }
        Assert.That(Directory.GetFiles(dir.Path), Is.EqualTo(new[] { path }), "no temp file left behind");
        var ck = Checkpoint.Load(path);
        Assert.That(ck.Header.Epoch, Is.EqualTo(3));
        Assert.That((ck.Header.Cell, ck.Header.Layers), Is.EqualTo((o.Cell, layers)), "cell kind and layer count recorded");
        using (var t = new Trainer(_be, Small, ck.Header.Options with { Epochs = 6 }, resume: ck.ToState()))
        {
            Assert.That(t.CompletedEpochs, Is.EqualTo(3));
            t.Train(resumed.Add);
            var p = t.Model.ToHost();
            for (int i = 0; i < p.Values.Length; i++) Assert.That(p.Values[i], Is.EqualTo(straightParams.Values[i]), $"parameter {i}");
        }
        Assert.That(resumed.Select(r => r.Perplexity), Is.EqualTo(straight.Select(r => r.Perplexity)));
        Assert.That(resumed.Select(r => r.ValPerplexity), Is.EqualTo(straight.Select(r => r.ValPerplexity)));
        Assert.That(resumed.SelectMany(r => r.Predictions), Is.EqualTo(straight.SelectMany(r => r.Predictions)));
    }

    [Test]
    public void TemperatureZeroIsGreedyAndTopOneIsGreedy()
    {
        using var t = new Trainer(_be, Small, Opts("scratch-random") with { Epochs = 2 });
        t.Train(_ => { });
        var prefix = Small.Vocab.Encode("分开", "p");
        using var greedy = new Predictor(t.Model);
        using var sampler = new TextSampler(t.Model);
        var want = greedy.Predict(prefix, 20);
        Assert.That(sampler.Sample(prefix, 20, 0, null, new Rng(1)), Is.EqualTo(want));
        Assert.That(sampler.Sample(prefix, 20, 1.0, 1, new Rng(1)), Is.EqualTo(want), "top-k 1 keeps only the argmax");
    }

    [Test]
    public void SamplingIsReproducibleForASeed()
    {
        using var t = new Trainer(_be, Small, Opts("scratch-random") with { Epochs = 1 });
        var prefix = Small.Vocab.Encode("分开", "p");
        using var sampler = new TextSampler(t.Model);
        var a = sampler.Sample(prefix, 30, 1.0, null, new Rng(5));
        var b = sampler.Sample(prefix, 30, 1.0, null, new Rng(5));
        var c = sampler.Sample(prefix, 30, 1.0, null, new Rng(6));
        Assert.That(b, Is.EqualTo(a));
        Assert.That(c, Is.Not.EqualTo(a));
        Assert.That(a[..2], Is.EqualTo(prefix));
        Assert.That(a, Has.Length.EqualTo(32));
    }
}

/// <summary>Damaged, foreign and newer files: each gets a clear error naming what is wrong.</summary>
public class CheckpointFileTests
{
    static string Saved(TempDir dir)
    {
        using var be = new Rnn.Backends.Cpu.CpuBackend();
        var corpus = Corpus.Load(Path.Combine(AppContext.BaseDirectory, "data", "jaychou_lyrics.txt.zip"), 2000);
        using var t = new Trainer(be, corpus, TrainOptions.Preset("concise") with { Epochs = 1, Hidden = 8, Batch = 4, Steps = 5, PredPeriod = 1 });
        t.Train(_ => { });
        var path = dir.File("ok.ckpt");
        Checkpoint.Capture(t).Save(path);
        return path;
    }

    static string LoadError(string path) => Assert.Throws<CharRnnException>(() => Checkpoint.Load(path))!.Message;

    [Test]
    public void ValidFileRoundTrips()
    {
        using var dir = new TempDir();
        var ck = Checkpoint.Load(Saved(dir));
        Assert.That(ck.Header.Model, Is.EqualTo(ModelKind.Concise));
        Assert.That(ck.Header.AdamSteps, Is.GreaterThan(0));
        Assert.That(ck.Tensors.Keys, Does.Contain("adam_m/W_xh").And.Contain("state/H0").And.Contain("param/b_hh"));
        Assert.That(ck.Header.VocabChars.EnumerateRunes().Count(), Is.EqualTo(ck.Spec.Vocab));
    }

    [Test]
    public void FlippedByteIsCorrupt()
    {
        using var dir = new TempDir();
        var path = Saved(dir);
        var bytes = File.ReadAllBytes(path);
        bytes[bytes.Length / 2] ^= 0x40;
        File.WriteAllBytes(path, bytes);
        Assert.That(LoadError(path), Does.Contain("corrupt").And.Contain("checksum"));
    }

    [TestCase(100)]
    [TestCase(20)]
    [TestCase(0)]
    public void TruncatedFileIsNamed(int keepPercent)
    {
        using var dir = new TempDir();
        var path = Saved(dir);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(keepPercent == 100 ? bytes.Length - 1 : Math.Max(10, bytes.Length * keepPercent / 100))]);
        Assert.That(LoadError(path), Does.Contain("truncated").Or.Contain("corrupt"));
    }

    [Test]
    public void ForeignFileIsNamed()
    {
        using var dir = new TempDir();
        var path = dir.File("x.ckpt");
        File.WriteAllText(path, "{\"model\": \"pytorch\"}");
        Assert.That(LoadError(path), Does.Contain("not a CharRnn checkpoint"));
    }

    [Test]
    public void NewerFormatIsNamed()
    {
        using var dir = new TempDir();
        var path = Saved(dir);
        var bytes = File.ReadAllBytes(path);
        BitConverter.GetBytes(Checkpoint.FormatVersion + 1).CopyTo(bytes, 8);
        SHA256.HashData(bytes.AsSpan(0, bytes.Length - 32)).CopyTo(bytes, bytes.Length - 32); // a well-formed file of a newer format
        File.WriteAllBytes(path, bytes);
        Assert.That(LoadError(path), Does.Contain("newer").And.Contain("Update charrnn"));
    }

    /// <summary>A checkpoint written with one CPU GEMM engine continues on the other with the same losses to float
    /// tolerance (their summation orders differ, so not bit for bit).</summary>
    [Test]
    public void CheckpointMovesBetweenCpuEngines()
    {
        if (!Rnn.Backends.Cpu.CpuGemm.OpenBlasAvailable) Assert.Ignore("libopenblas.so.0 is not installed");
        var corpus = Corpus.Load(Path.Combine(AppContext.BaseDirectory, "data", "jaychou_lyrics.txt.zip"), 2000);
        var o = TrainOptions.Preset("lstm-concise") with { Epochs = 2, Hidden = 16, Batch = 4, Steps = 8, PredPeriod = 1 };
        using var dir = new TempDir();
        using var blas = new Rnn.Backends.Cpu.CpuBackend(Rnn.Backends.Cpu.CpuGemm.Engine.OpenBlas);
        using var managed = new Rnn.Backends.Cpu.CpuBackend(Rnn.Backends.Cpu.CpuGemm.Engine.Managed);
        using (var t = new Trainer(blas, corpus, o)) { t.Train(_ => { }); Checkpoint.Capture(t).Save(dir.File("a.ckpt")); }
        var ck = Checkpoint.Load(dir.File("a.ckpt"));
        var a = new List<EpochReport>();
        var b = new List<EpochReport>();
        using (var t = new Trainer(blas, corpus, o with { Epochs = 4 }, resume: ck.ToState())) t.Train(a.Add);
        using (var t = new Trainer(managed, corpus, o with { Epochs = 4 }, resume: ck.ToState())) t.Train(b.Add);
        Check.Close(a.Select(r => r.Perplexity).ToArray(), b.Select(r => r.Perplexity).ToArray(), 0, 1e-4, "openblas → managed");
    }

    [Test]
    public void MissingFileIsNamed()
    {
        Assert.That(LoadError("/nonexistent/a.ckpt"), Does.Contain("not found"));
    }
}
