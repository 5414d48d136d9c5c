using System.Text.Json;
using CharRnn.Rnn;
using CharRnn.Rnn.Data;

namespace CharRnn.Tests;

public class SamplerTests
{
    static readonly Golden G = Golden.Load("data_iter.json");

    static int[] Flat(JsonElement nested) =>
        nested.EnumerateArray().SelectMany(r => r.EnumerateArray().Select(x => x.GetInt32())).ToArray();

    static int[] Corpus30 => G.Get("corpus").EnumerateArray().Select(x => x.GetInt32()).ToArray();

    [Test]
    public void ConsecutiveMatchesTheBook()
    {
        var batches = Samplers.Consecutive(Corpus30, G.I("batch_size"), G.I("num_steps")).ToList();
        var expected = G.Get("consecutive").EnumerateArray().ToList();
        Assert.That(batches, Has.Count.EqualTo(expected.Count).And.Count.EqualTo(2));
        for (int i = 0; i < batches.Count; i++)
        {
            Assert.That(batches[i].X, Is.EqualTo(Flat(expected[i].GetProperty("X"))), $"X of minibatch {i}");
            Assert.That(batches[i].Y, Is.EqualTo(Flat(expected[i].GetProperty("Y"))), $"Y of minibatch {i}");
        }
    }

    [Test]
    public void RandomWithInjectedPermutationMatchesTheBook()
    {
        var perm = G.Get("random/example_indices_after_shuffle").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        var batches = Samplers.Random(Corpus30, G.I("batch_size"), G.I("num_steps"), null, perm).ToList();
        var expected = G.Get("random/batches").EnumerateArray().ToList();
        Assert.That(batches, Has.Count.EqualTo(expected.Count));
        for (int i = 0; i < batches.Count; i++)
        {
            Assert.That(batches[i].X, Is.EqualTo(Flat(expected[i].GetProperty("X"))), $"X of minibatch {i}");
            Assert.That(batches[i].Y, Is.EqualTo(Flat(expected[i].GetProperty("Y"))), $"Y of minibatch {i}");
        }
    }

    [TestCase("first10000_b32_s35")]
    [TestCase("first10000_b256_s35")]
    [TestCase("full_b32_s35")]
    [TestCase("full_b256_s35")]
    public void EpochSizesOfTheBookConfigs(string name)
    {
        var c = G.Get("book_configs/" + name);
        int len = c.GetProperty("corpus_len").GetInt32();
        int b = name.Contains("b256") ? 256 : 32;
        Assert.That(Samplers.EpochSize(SamplingKind.Random, len, b, 35), Is.EqualTo(c.GetProperty("random_minibatches").GetInt32()));
        Assert.That(Samplers.EpochSize(SamplingKind.Consecutive, len, b, 35), Is.EqualTo(c.GetProperty("consecutive_minibatches").GetInt32()));
    }

    [Test]
    public void RandomIsReproducibleForASeedAndCoversEachExampleOnce()
    {
        var corpus = Enumerable.Range(0, 1000).ToArray();
        var a = Samplers.Random(corpus, 4, 7, new Rng(42)).ToList();
        var b = Samplers.Random(corpus, 4, 7, new Rng(42)).ToList();
        var c = Samplers.Random(corpus, 4, 7, new Rng(43)).ToList();
        Assert.That(a.Select(m => m.X), Is.EqualTo(b.Select(m => m.X)));
        Assert.That(a.Select(m => m.X), Is.Not.EqualTo(c.Select(m => m.X)));
        var starts = a.SelectMany(m => Enumerable.Range(0, 4).Select(r => m.X[r * 7])).ToList();
        Assert.That(starts, Is.Unique);
        Assert.That(starts.All(s => s % 7 == 0), Is.True);
        foreach (var m in a) Assert.That(Enumerable.Range(0, m.X.Length).All(i => m.Y[i] == m.X[i] + 1), Is.True);
    }

    [Test]
    public void TimeMajorLayout()
    {
        var m = new Minibatch(2, 3, [1, 2, 3, 4, 5, 6], [2, 3, 4, 5, 6, 7]);
        Assert.That(m.XTimeMajor, Is.EqualTo(new[] { 1, 4, 2, 5, 3, 6 }));
        Assert.That(m.YTimeMajor, Is.EqualTo(new[] { 2, 5, 3, 6, 4, 7 }));
    }

    [Test]
    public void TooShortCorpusIsAClearError()
    {
        var e = Assert.Throws<CharRnnException>(() => Samplers.CheckFits(SamplingKind.Random, 30, 32, 35))!;
        Assert.That(e.Message, Does.Contain("30 characters").And.Contain("--batch"));
        Assert.DoesNotThrow(() => Samplers.CheckFits(SamplingKind.Random, 32 * 35 + 1, 32, 35));
        Assert.Throws<CharRnnException>(() => Samplers.CheckFits(SamplingKind.Random, 32 * 35, 32, 35));
    }
}
