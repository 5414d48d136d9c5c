using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Backends.Cpu;
using CharRnn.Rnn.Generation;
using CharRnn.Rnn.Model;
using CharRnn.Rnn.Reference;

namespace CharRnn.Tests;

/// <summary>
/// The sampler against the double reference on a small random model (in process, fast: the mutation run's filter
/// keeps it): what it draws follows softmax((logits + b_q) / T) restricted to the top k, a very low temperature draws
/// the argmax, temperature 0 is the greedy <see cref="Predictor"/> over a long generation, and each bad argument is
/// refused while each edge value (T 0, k 1, length 0) is accepted.
/// </summary>
public class TextSamplerTests
{
    const int V = 12, H = 6;
    CpuBackend _be = null!;
    RnnModel _model = null!;
    ReferenceRnn.Parameters _p = null!;

    [SetUp]
    public void SetUp()
    {
        _be = new CpuBackend(CpuGemm.Engine.Managed);
        _p = ReferenceTests.RandomModel(new Rng(11), CellKind.Rnn, concise: true, layers: 1, V, H);
        _model = new RnnModel(_be, BackendGoldenTests.ToParams(new ModelSpec(ModelKind.Concise, V, H), _p));
    }

    [TearDown]
    public void TearDown()
    {
        _model?.Dispose();
        _be?.Dispose();
    }

    /// <summary>The reference's logits (with b_q) after one step from a zero state on <paramref name="token"/>.</summary>
    double[] Logits(int token) =>
        ReferenceRnn.Forward(_p, [token], [0], [new double[H]], null, 1, 1).Logits;

    static double[] Softmax(double[] s, double temperature, int? topK)
    {
        double cutoff = topK is int k && k < s.Length ? s.OrderByDescending(x => x).ElementAt(k - 1) : double.NegativeInfinity;
        double max = s.Max();
        var p = s.Select(x => x >= cutoff ? Math.Exp((x - max) / temperature) : 0).ToArray();
        double sum = p.Sum();
        return p.Select(x => x / sum).ToArray();
    }

    [TestCase(1.0, null, 3)]
    [TestCase(0.5, null, 7)]
    [TestCase(2.0, 3, 5)]
    public void DrawsFollowTheSoftmaxOfTheLogitsOverTheTemperature(double temperature, int? topK, int token)
    {
        const int n = 6000;
        var want = Softmax(Logits(token), temperature, topK);
        using var sampler = new TextSampler(_model);
        var rng = new Rng(1234);
        var counts = new int[V];
        for (int i = 0; i < n; i++) counts[sampler.Sample([token], 1, temperature, topK, rng)[1]]++;
        for (int c = 0; c < V; c++)
        {
            double p = want[c], got = counts[c] / (double)n;
            if (p == 0) Assert.That(counts[c], Is.Zero, $"token {c} is outside the top {topK}");
            else Assert.That(got, Is.EqualTo(p).Within(5 * Math.Sqrt(p * (1 - p) / n) + 1e-3), $"token {c}: drawn {got:F4}, softmax {p:F4}");
        }
    }

    [Test]
    public void AVeryLowTemperatureDrawsTheArgmax([Range(0, V - 1)] int token)
    {
        var s = Logits(token);
        int argmax = Array.IndexOf(s, s.Max());
        var sorted = s.OrderDescending().ToArray();
        Assume.That(sorted[0] - sorted[1], Is.GreaterThan(0.05), "a clear maximum"); // exp(-50) at T 1e-3
        using var sampler = new TextSampler(_model);
        var rng = new Rng(5);
        for (int i = 0; i < 20; i++)
            Assert.That(sampler.Sample([token], 1, 1e-3, null, rng)[1], Is.EqualTo(argmax));
    }

    [Test]
    public void TemperatureZeroIsThePredictorsGreedyGeneration()
    {
        int[] prefix = [3, 1, 4];
        using var predictor = new Predictor(_model);
        var want = predictor.Predict(prefix, 25);
        using var sampler = new TextSampler(_model);
        var streamed = new List<int>();
        Assert.That(sampler.Sample(prefix, 25, 0, null, new Rng(1), streamed.Add), Is.EqualTo(want));
        Assert.That(streamed, Is.EqualTo(want[prefix.Length..]), "each generated token streamed once, in order");
        Assert.That(sampler.Sample(prefix, 25, 0, null, new Rng(2)), Is.EqualTo(want), "a second run starts from a fresh state");
        Assert.That(sampler.Sample(prefix, 25, 1.0, 1, new Rng(3)), Is.EqualTo(want), "top-k 1 keeps only the argmax");
        Assert.That(want.Skip(prefix.Length).Distinct().Count(), Is.GreaterThan(1), "the generation is not one token repeated");
    }

    [Test]
    public void BadArgumentsAreRefusedAndEdgeValuesAccepted()
    {
        using var sampler = new TextSampler(_model);
        int[] prefix = [2];
        Assert.Throws<CharRnnException>(() => sampler.Sample(prefix, 3, -0.1, null, new Rng(1)));
        Assert.Throws<CharRnnException>(() => sampler.Sample(prefix, 3, double.NaN, null, new Rng(1)));
        Assert.Throws<CharRnnException>(() => sampler.Sample(prefix, 3, 1, 0, new Rng(1)));
        Assert.Throws<CharRnnException>(() => sampler.Sample(prefix, -1, 1, null, new Rng(1)));
        Assert.Throws<CharRnnException>(() => sampler.Sample([], 3, 1, null, new Rng(1)));
        Assert.That(sampler.Sample(prefix, 0, 1, null, new Rng(1)), Is.EqualTo(prefix), "length 0: the prefix alone");
        Assert.That(sampler.Sample(prefix, 3, 0, 1, new Rng(1)), Has.Length.EqualTo(4), "temperature 0 and top-k 1");
        Assert.That(sampler.Sample(prefix, 3, 1, 2, new Rng(1)), Has.Length.EqualTo(4), "top-k 2");
    }
}

/// <summary>#26: the greedy choice decided by b_q alone (W_hq = 0, so every logit is its bias): the first of tied maxima,
/// and token 0 winning through its own bias — both survived mutation before (no test had a tie, none a token-0 win).</summary>
public class GreedyChoiceTests
{
    static int Greedy(float[] bq)
    {
        using var be = new CpuBackend(CpuGemm.Engine.Managed);
        var spec = new ModelSpec(ModelKind.Concise, bq.Length, 4);
        var p = RnnParameters.Initialize(spec, new Rng(5));
        Array.Clear(p["W_hq"]);
        bq.CopyTo(p["b_q"], 0);
        using var model = new RnnModel(be, p);
        using var sampler = new TextSampler(model);
        using var predictor = new Predictor(model);
        int sampled = sampler.Sample([1], 1, 0, null, new Rng(1))[1];
        Assert.That(predictor.Predict([1], 1)[1], Is.EqualTo(sampled), "the sampler's greedy choice is the predictor's");
        return sampled;
    }

    [TestCase(new[] { 0f, 3f, 3f, 1f, 0f }, 1, Description = "tie between 1 and 2")]
    [TestCase(new[] { 2f, 0f, 2f, 2f, 0f }, 0, Description = "tie with token 0")]
    [TestCase(new[] { 2f, 1f, 0f, 1.5f, -1f }, 0, Description = "token 0 by its bias alone")]
    [TestCase(new[] { -3f, -5f, -4f, -3.5f, -9f }, 0, Description = "all negative")]
    [TestCase(new[] { 0f, 0f, 0f, 0f, 5f }, 4, Description = "the last token")]
    public void GreedyTakesTheFirstMaximumOfTheBiasedLogits(float[] bq, int want) => Assert.That(Greedy(bq), Is.EqualTo(want));
}

/// <summary>What an optimizer saves for a checkpoint before and after its state exists.</summary>
public class OptimizerMomentsTests
{
    [Test]
    public void AnAdamSavesNoMomentsBeforeItsFirstPreparationAndZerosRightAfter()
    {
        using var be = new CpuBackend(CpuGemm.Engine.Managed);
        var p = ReferenceTests.RandomModel(new Rng(3), CellKind.Rnn, concise: true, layers: 1, 5, 4);
        using var model = new RnnModel(be, BackendGoldenTests.ToParams(new ModelSpec(ModelKind.Concise, 5, 4), p));
        using var adam = new Rnn.Training.Adam(0.01f);
        Assert.That(adam.SaveMoments(model), Is.Null, "no step taken: nothing to save");
        adam.Prepare(model);
        var m = adam.SaveMoments(model)!;
        Assert.That(m.Steps, Is.Zero);
        Assert.That(m.First.Select(a => a.Length), Is.EqualTo(model.Params.Select((t, i) => model.ToLogical(i, be.ToArray(t)).Length)));
        Assert.That(m.First.Concat(m.Second).SelectMany(a => a), Is.All.Zero);
        using var sgd = new Rnn.Training.Sgd(0.1f);
        Assert.That(sgd.SaveMoments(model), Is.Null, "SGD keeps no per-parameter state");
    }
}
