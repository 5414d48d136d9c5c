using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Backends.Cpu;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Model;

namespace CharRnn.Tests;

/// <summary>
/// #26: a model's parameter list, PyTorch names, sizes and initialisation, the corpus-size rule and a layer's final
/// state — pinned before only by the PyTorch round trips, the preset logs and the CLI (none of which mutation testing
/// runs). The expected lists are written out from PyTorch's <c>nn.RNN/GRU/LSTM</c> + <c>nn.Linear</c> state_dict and
/// the book's <c>get_params</c>, not computed by the code under test.
/// </summary>
public class ModelShapeTests
{
    [Test]
    public void ConciseLstmParametersAreNamedAndShapedAsPyTorchsStateDict()
    {
        var spec = new ModelSpec(ModelKind.Concise, 7, 5, Activation.Tanh, CellKind.Lstm, 2);
        var want = new (string Name, int Rows, int Cols, string? Torch, int Layer, ParameterRole Role)[]
        {
            ("W_xh", 7, 20, "rnn.weight_ih_l0", 0, ParameterRole.InputWeight),
            ("W_hh", 5, 20, "rnn.weight_hh_l0", 0, ParameterRole.HiddenWeight),
            ("b_ih", 1, 20, "rnn.bias_ih_l0", 0, ParameterRole.InputBias),
            ("b_hh", 1, 20, "rnn.bias_hh_l0", 0, ParameterRole.HiddenBias),
            ("W_xh_l1", 5, 20, "rnn.weight_ih_l1", 1, ParameterRole.InputWeight),
            ("W_hh_l1", 5, 20, "rnn.weight_hh_l1", 1, ParameterRole.HiddenWeight),
            ("b_ih_l1", 1, 20, "rnn.bias_ih_l1", 1, ParameterRole.InputBias),
            ("b_hh_l1", 1, 20, "rnn.bias_hh_l1", 1, ParameterRole.HiddenBias),
            ("W_hq", 5, 7, "dense.weight", -1, ParameterRole.OutputWeight),
            ("b_q", 1, 7, "dense.bias", -1, ParameterRole.OutputBias),
        };
        Assert.That(spec.Parameters.Select(p => (p.Name, p.Rows, p.Cols, p.TorchName, p.Layer, p.Role)), Is.EqualTo(want));
    }

    [Test]
    public void ScratchGruParametersHaveTheBooksNamesAndNoTorchNames()
    {
        var spec = new ModelSpec(ModelKind.Scratch, 7, 5, Activation.Tanh, CellKind.Gru, 2);
        var want = new (string Name, int Rows, int Cols, string? Torch, int Layer, ParameterRole Role)[]
        {
            ("W_xh", 7, 15, null, 0, ParameterRole.InputWeight),
            ("W_hh", 5, 15, null, 0, ParameterRole.HiddenWeight),
            ("b_h", 1, 15, null, 0, ParameterRole.InputBias),
            ("W_xh_l1", 5, 15, null, 1, ParameterRole.InputWeight),
            ("W_hh_l1", 5, 15, null, 1, ParameterRole.HiddenWeight),
            ("b_h_l1", 1, 15, null, 1, ParameterRole.InputBias),
            ("W_hq", 5, 7, null, -1, ParameterRole.OutputWeight),
            ("b_q", 1, 7, null, -1, ParameterRole.OutputBias),
        };
        Assert.That(spec.Parameters.Select(p => (p.Name, p.Rows, p.Cols, p.TorchName, p.Layer, p.Role)), Is.EqualTo(want));
    }

    /// <summary>The size check computed from the fields alone equals the list's, for shapes where each of V·G·H, H·G·H
    /// and H·V is the largest tensor.</summary>
    [Test]
    public void ParameterSizeFromTheFieldsEqualsTheListsSizes([Values] ModelKind kind, [Values] CellKind cell, [Values(1, 3)] int layers,
        [Values(0, 1, 2)] int shape)
    {
        var (v, h) = shape switch { 0 => (50, 5), 1 => (3, 40), _ => (60, 70) };
        var spec = new ModelSpec(kind, v, h, Activation.Tanh, cell, layers);
        var (largest, total) = spec.ParameterSize();
        Assert.That((long)largest, Is.EqualTo(spec.Parameters.Max(p => (long)p.Length)));
        Assert.That((long)total, Is.EqualTo(spec.Parameters.Sum(p => (long)p.Length)));
    }

    [Test]
    public void TheSmallestModelIsValidAndEachZeroIsRefused()
    {
        Assert.DoesNotThrow(() => new ModelSpec(ModelKind.Scratch, 1, 1).Validate());
        Assert.DoesNotThrow(() => new ModelSpec(ModelKind.Concise, 1, 1, Activation.Relu, CellKind.Rnn).Validate());
        Assert.That(() => new ModelSpec(ModelKind.Scratch, 0, 1).Validate(), Throws.TypeOf<CharRnnException>().With.Message.Contains("at least one character (got 0)"));
        Assert.That(() => new ModelSpec(ModelKind.Scratch, 1, 0).Validate(), Throws.TypeOf<CharRnnException>().With.Message.Contains("--hidden must be at least 1 (got 0)"));
        Assert.That(() => new ModelSpec(ModelKind.Scratch, 1, 1, Layers: 0).Validate(), Throws.TypeOf<CharRnnException>().With.Message.Contains("--layers must be at least 1 (got 0)"));
        foreach (var cell in new[] { CellKind.Gru, CellKind.Lstm })
            Assert.That(() => new ModelSpec(ModelKind.Concise, 3, 2, Activation.Relu, cell).Validate(),
                Throws.TypeOf<CharRnnException>().With.Message.Contains("--activation relu applies to the plain RNN cell only"), cell.ToString());
        Assert.That(() => RnnParameters.Initialize(new ModelSpec(ModelKind.Scratch, 3, 0), new Rng(1)), Throws.TypeOf<CharRnnException>());
    }

    /// <summary>The book's <c>get_params</c>: weights N(0, 0.01) drawn in parameter order, biases zero and drawing
    /// nothing; PyTorch's: every tensor, biases too, U(−1/√H, 1/√H).</summary>
    [Test]
    public void InitialisationDrawsWhatTheBookAndPyTorchDraw([Values] ModelKind kind, [Values] CellKind cell)
    {
        var spec = new ModelSpec(kind, 6, 9, Activation.Tanh, cell, 2);
        var p = RnnParameters.Initialize(spec, new Rng(77));
        var rng = new Rng(77);
        double bound = 1 / Math.Sqrt(9);
        for (int i = 0; i < spec.Parameters.Count; i++)
        {
            var info = spec.Parameters[i];
            var want = new float[info.Length];
            if (kind == ModelKind.Concise)
                for (int j = 0; j < want.Length; j++) want[j] = (float)((rng.NextDouble() * 2 - 1) * bound);
            else if (info.Rows > 1)
                for (int j = 0; j < want.Length; j++) want[j] = (float)(rng.NextNormal() * 0.01);
            Assert.That(p.Values[i], Is.EqualTo(want), info.Name);
            Assert.That(p[info.Name], Is.SameAs(p.Values[i]), $"p[\"{info.Name}\"]");
        }
        var all = p.Values.SelectMany(a => a).Select(x => (double)x).ToArray();
        if (kind == ModelKind.Concise)
            Assert.That(all.Max() > 0.9 * bound && all.Min() < -0.9 * bound && all.All(x => Math.Abs(x) <= bound), Is.True, "U(−1/√H, 1/√H) filled");
        else
        {
            var weights = spec.Parameters.Select((info, i) => (info, i)).Where(t => t.info.Rows > 1).SelectMany(t => p.Values[t.i]).ToArray();
            double sd = Math.Sqrt(weights.Average(x => (double)x * x));
            Assert.That(sd, Is.InRange(0.008, 0.012), "N(0, 0.01) weights");
        }
        Assert.That(() => p["nope"], Throws.TypeOf<KeyNotFoundException>());
    }

    [Test]
    public void ACloneIsAnIndependentCopy()
    {
        var spec = new ModelSpec(ModelKind.Concise, 4, 3, Activation.Tanh, CellKind.Gru, 2);
        var p = RnnParameters.Initialize(spec, new Rng(5));
        var c = p.Clone();
        Assert.That(c.Spec, Is.SameAs(spec));
        for (int i = 0; i < p.Values.Length; i++)
        {
            Assert.That(c.Values[i], Is.EqualTo(p.Values[i]).And.Not.SameAs(p.Values[i]), spec.Parameters[i].Name);
            Assert.That(c.Values[i].Any(x => x != 0), Is.True);
        }
        c.Values[^1][0] += 1;
        Assert.That(p.Values[^1][0], Is.Not.EqualTo(c.Values[^1][0]));
    }

    /// <summary>The book's iterators need (len − 1)/T/B ≥ 1 (random) and (len/B − 1)/T ≥ 1 (consecutive): the message
    /// names the exact length that gives one minibatch, and that length fits.</summary>
    [TestCase(SamplingKind.Random, 2, 3, 7)]
    [TestCase(SamplingKind.Random, 4, 5, 21)]
    [TestCase(SamplingKind.Consecutive, 2, 3, 8)]
    [TestCase(SamplingKind.Consecutive, 4, 5, 24)]
    public void TheCorpusSizeRuleNamesTheExactLengthNeeded(SamplingKind kind, int batch, int steps, int need)
    {
        Assert.DoesNotThrow(() => Samplers.CheckFits(kind, need, batch, steps));
        Assert.That(Samplers.EpochSize(kind, need, batch, steps), Is.EqualTo(1));
        Assert.That(() => Samplers.CheckFits(kind, need - 1, batch, steps),
            Throws.TypeOf<CharRnnException>().With.Message.Contains($"has {need - 1} characters").And.Message.Contains($"(needs at least {need})"));
    }

    /// <summary>H_T and C_T are the rows after the last of T steps of B rows ([T·B, T·B + B) of the (T+1)·B buffers):
    /// what a consecutive run carries into its next minibatch.</summary>
    [Test]
    public void AFinalStateIsTheRowsOfTheLastStep([Values] CellKind cell)
    {
        using var be = new CpuBackend(CpuGemm.Engine.Managed);
        var spec = new ModelSpec(ModelKind.Concise, 5, 4, Activation.Tanh, cell, 1);
        int batch = 2, steps = 3, gh = spec.Gates * spec.Hidden;
        var tensors = new[] { be.Zeros(5, gh), be.Zeros(4, gh), be.Zeros(1, gh), be.Zeros(5, gh), be.Zeros(4, gh), be.Zeros(1, gh), be.Zeros(1, gh), be.Zeros(1, gh) };
        var lt = new LayerTensors { Wx = tensors[0], Wh = tensors[1], Bx = tensors[2], DWx = tensors[3], DWh = tensors[4], DBx = tensors[5], Bh = tensors[6], DBh = tensors[7] };
        using var layer = spec.CellType.CreateLayer(be, lt, batch, steps);
        Assert.That((layer.HT.Tensor, layer.HT.Offset, layer.HT.Rows, layer.HT.Cols), Is.EqualTo((layer.Hs, steps * batch * 4, batch, 4)));
        Assert.That((layer.H0.Tensor, layer.H0.Offset, layer.H0.Rows), Is.EqualTo((layer.Hs, 0, batch)));
        if (cell == CellKind.Lstm)
            Assert.That((layer.CT!.Value.Tensor, layer.CT.Value.Offset, layer.CT.Value.Rows), Is.EqualTo((layer.Cs, steps * batch * 4, batch)));
        else Assert.That(layer.CT, Is.Null);
        foreach (var t in tensors) t.Dispose();
    }

    /// <summary>The run header's recurrence line: one description for one layer, "in every layer" when all agree.</summary>
    [TestCase(1, "per-step")]
    [TestCase(3, "per-step in every layer")]
    public void TheRecurrenceIsDescribedOncePerDistinctPath(int layers, string want)
    {
        using var be = new CpuBackend(CpuGemm.Engine.Managed);
        var spec = new ModelSpec(ModelKind.Concise, 5, 4, Activation.Tanh, CellKind.Gru, layers);
        using var model = new RnnModel(be, RnnParameters.Initialize(spec, new Rng(2)));
        using var driver = new BpttDriver(model, 2, 3);
        Assert.That(driver.DescribeRecurrence(), Is.EqualTo(want));
    }
}
