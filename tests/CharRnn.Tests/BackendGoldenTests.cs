using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Model;
using CharRnn.Rnn.Training;

namespace CharRnn.Tests;

/// <summary>
/// A whole float32 training step on each backend against PyTorch's float64 values. Tolerance: 2e-5 absolute plus
/// 2e-4 relative — float32 has a 6e-8 unit roundoff, and the longest chains here (softmax over V, sums over
/// T·B rows, T recurrent steps) amplify it by well under 10³; SGD at lr 100 multiplies the gradient error by 100,
/// so parameter checks after SGD use 1e-4 absolute.
/// </summary>
[TestFixtureSource(typeof(TestBackends), nameof(TestBackends.All))]
public class BackendGoldenTests(string backendName)
{
    const double Atol = 2e-5, Rtol = 2e-4;
    IBackend _be = null!;

    [SetUp] public void SetUp() => _be = TestBackends.Create(backendName);
    [TearDown] public void TearDown() => _be?.Dispose();

    public static RnnParameters ToParams(ModelSpec spec, Rnn.Reference.ReferenceRnn.Parameters p)
    {
        var host = new RnnParameters(spec);
        var all = p.All().ToList();
        Assert.That(all, Has.Count.EqualTo(spec.Parameters.Count));
        for (int i = 0; i < all.Count; i++) host.Values[i] = Check.ToFloat(all[i]);
        return host;
    }

    (RnnModel Model, BpttDriver Driver, IndexBuffer X, IndexBuffer Y) Setup(string file, InputMode mode, out ReferenceTests.Case c)
    {
        c = ReferenceTests.Load(file);
        var model = new RnnModel(_be, ToParams(c.Spec, c.P));
        var driver = new BpttDriver(model, c.B, c.T, mode);
        var mb = new Rnn.Data.Minibatch(c.B, c.T, c.X, c.Y);
        var x = _be.FromArray(mb.XTimeMajor);
        var y = _be.FromArray(mb.YTimeMajor);
        SetState(driver, c.H0, c.C0);
        return (model, driver, x, y);
    }

    void SetState(BpttDriver driver, double[][] h0, double[][]? c0)
    {
        for (int l = 0; l < h0.Length; l++)
        {
            using var h = _be.FromArray(driver.H0(l).Rows, driver.H0(l).Cols, Check.ToFloat(h0[l]));
            _be.Copy(h.All, driver.H0(l));
            if (c0 == null) continue;
            using var c = _be.FromArray(driver.H0(l).Rows, driver.H0(l).Cols, Check.ToFloat(c0[l]));
            _be.Copy(c.All, driver.C0(l)!.Value);
        }
    }

    [Test]
    public void ForwardAndGradients(
        [ValueSource(typeof(ReferenceTests), nameof(ReferenceTests.Files))] string file,
        [Values(InputMode.Gather, InputMode.OneHotGemm)] InputMode mode)
    {
        var (model, driver, x, y) = Setup(file, mode, out var c);
        using (model) using (driver) using (x) using (y)
        {
            _be.ResetLoss();
            driver.Forward(x.All, y.All);
            driver.Backward(x.All, wantDH0: true);
            var g = c.G;
            var (sum, rows) = _be.ReadLoss();
            Assert.That(rows, Is.EqualTo(c.B * c.T));
            Check.Close(g.D("forward/loss"), sum / rows, Atol, Rtol, "loss");
            // Logits on the device exclude b_q (the softmax kernel adds it).
            var logits = driver.LogitsToHost();
            var bq = c.P.Bq;
            var withBias = logits.Select((v, i) => v + bq[i % bq.Length]).ToArray();
            Check.Close(g.T("forward/logits"), withBias.Select(v => (double)v).ToArray(), Atol, Rtol, "logits");
            var hs = _be.ToArray(driver.Hs);
            Check.Close(g.T("forward/hidden_states"), hs.Skip(c.B * c.P.H).ToArray(), Atol, Rtol, "hidden states");
            var names = ReferenceTests.Names(file);
            var grads = model.GradsToHost();
            for (int i = 0; i < names.Length; i++)
                Check.Close(ReferenceTests.Ours(g, "grads/" + names[i].Name, names[i].Transposed), grads[i], Atol, Rtol, "grad " + names[i].Name);
            Check.Close(g.T("grads/H0"), _be.ToArray(driver.DH0), Atol, Rtol, "grad H0");
            if (c.Spec.Cell == CellKind.Lstm) Check.Close(g.T("grads/C0"), _be.ToArray(driver.DLayerC0(0)!), Atol, Rtol, "grad C0");
        }
    }

    [TestCaseSource(typeof(ReferenceTests), nameof(ReferenceTests.Files))]
    public void ClippedSgdStep(string file)
    {
        var (model, driver, x, y) = Setup(file, _be.DefaultInputMode, out var c);
        using (model) using (driver) using (x) using (y)
        {
            using var sgd = new Sgd((float)c.G.D("config/sgd_lr"));
            using var step = new TrainingStep(driver, sgd, (float)c.G.D("config/clip_theta"));
            step.Run(x.All, y.All);
            Check.Close(c.G.D("clip/norm"), step.ReadGradNorm(), Atol, Rtol, "norm");
            var names = ReferenceTests.Names(file);
            var after = model.ToHost();
            for (int i = 0; i < names.Length; i++)
                Check.Close(ReferenceTests.Ours(c.G, "sgd_step/" + names[i].Name, names[i].Transposed), after.Values[i], 1e-4, Rtol, "sgd " + names[i].Name);
        }
    }

    /// <summary>RMSprop (char-rnn's: α 0.95, ε 1e-8) runs on Adam's ops with β1 = 0 and no bias corrections: two steps
    /// against torch.optim.RMSprop's equations in double, v = α·v + (1 − α)·g², p −= lr·g / (√v + ε), from the
    /// gradient each step computed (its first moment: with β1 = 0 it is g itself).</summary>
    [Test]
    public void TwoRmsPropStepsAreTorchsRmsProp([Values("rnn_scratch.json", "lstm_torch.json", "lstm_torch_wide.json")] string file)
    {
        var (model, driver, x, y) = Setup(file, _be.DefaultInputMode, out var c);
        using (model) using (driver) using (x) using (y)
        {
            const float lr = 2e-3f;
            const double alpha = 0.95, eps = 1e-8;
            using var rms = new RmsProp(lr);
            using var step = new TrainingStep(driver, rms, 0f);
            var p = model.ToHost().Values.Select(a => a.Select(v => (double)v).ToArray()).ToArray();
            var sq = p.Select(a => new double[a.Length]).ToArray();
            for (int k = 1; k <= 2; k++)
            {
                SetState(driver, c.H0, c.C0);
                step.Run(x.All, y.All);
                var moments = rms.SaveMoments(model)!;
                var after = model.ToHost();
                Assert.That(moments.Steps, Is.EqualTo(k));
                for (int i = 0; i < p.Length; i++)
                {
                    Assert.That(moments.First[i].Any(g => g != 0), $"step {k}: parameter {i} has a gradient");
                    for (int j = 0; j < p[i].Length; j++)
                    {
                        double g = moments.First[i][j];
                        sq[i][j] = alpha * sq[i][j] + (1 - alpha) * g * g;
                        p[i][j] -= lr * g / (Math.Sqrt(sq[i][j]) + eps);
                    }
                    Check.Close(sq[i], moments.Second[i], 1e-12, 1e-5, $"step {k}: square average {i}");
                    Check.Close(p[i], after.Values[i], 1e-6, 1e-5, $"step {k}: parameter {i}");
                }
            }
        }
    }

    [Test]
    public void TwoAdamSteps([ValueSource(typeof(ReferenceTests), nameof(ReferenceTests.Files))] string file,
        [Values("adam_unclipped", "adam_clipped")] string variant)
    {
        var (model, driver, x, y) = Setup(file, _be.DefaultInputMode, out var c);
        using (model) using (driver) using (x) using (y)
        {
            using var adam = new Adam((float)c.G.D("config/adam/lr"));
            float clip = variant == "adam_clipped" ? (float)c.G.D("config/clip_theta") : 0f;
            using var step = new TrainingStep(driver, adam, clip);
            var names = ReferenceTests.Names(file);
            for (int k = 1; k <= 2; k++)
            {
                SetState(driver, c.H0, c.C0); // the same H0 (C0) for both steps
                step.Run(x.All, y.All);
                string s = $"{variant}/step{k}/";
                var after = model.ToHost();
                var moments = adam.SaveMoments(model)!;
                Assert.That(moments.Steps, Is.EqualTo(k));
                for (int i = 0; i < names.Length; i++)
                {
                    Check.Close(ReferenceTests.Ours(c.G, s + "params_after/" + names[i].Name, names[i].Transposed), after.Values[i], Atol, Rtol, s + names[i].Name);
                    Check.Close(ReferenceTests.Ours(c.G, s + "exp_avg/" + names[i].Name, names[i].Transposed), moments.First[i], 1e-7, 1e-3, s + "exp_avg " + names[i].Name);
                    Check.Close(ReferenceTests.Ours(c.G, s + "exp_avg_sq/" + names[i].Name, names[i].Transposed), moments.Second[i], 1e-10, 1e-3, s + "exp_avg_sq " + names[i].Name);
                }
            }
        }
    }
}

/// <summary>
/// Whole models the golden files do not cover — GRU and LSTM with one bias (the scratch variants), two layers, ReLU —
/// on each backend against the double reference on fresh random values: loss, every gradient, dH_0 and dC_0 of every
/// layer. Same float32 tolerances as <see cref="BackendGoldenTests"/>.
/// </summary>
[TestFixtureSource(typeof(TestBackends), nameof(TestBackends.All))]
public class BackendReferenceTests(string backendName)
{
    IBackend _be = null!;

    [SetUp] public void SetUp() => _be = TestBackends.Create(backendName);
    [TearDown] public void TearDown() => _be?.Dispose();

    [Test]
    public void WholeModelMatchesTheReference([Values] CellKind cell, [Values] bool concise, [Values(1, 2)] int layers,
        [Values(InputMode.Gather, InputMode.OneHotGemm)] InputMode mode, [Values(6, 13)] int h)
    {
        // H = 13 runs the 8-lane vector loops of the CPU kernels and their scalar tails; H = 6 the tails alone.
        var rng = new Rnn.Rng((ulong)(31 + (int)cell * 7 + layers * 3 + (concise ? 1 : 0) + h));
        int v = 9, b = 3, t = 5;
        var p = ReferenceTests.RandomModel(rng, cell, concise, layers, v, h);
        var spec = new ModelSpec(concise ? ModelKind.Concise : ModelKind.Scratch, v, h, Activation.Tanh, cell, layers);
        var x = Enumerable.Range(0, b * t).Select(_ => rng.NextInt(v)).ToArray();
        var y = Enumerable.Range(0, b * t).Select(_ => rng.NextInt(v)).ToArray();
        var h0 = Enumerable.Range(0, layers).Select(_ => Enumerable.Range(0, b * h).Select(_ => rng.NextNormal() * 0.5).ToArray()).ToArray();
        var c0 = cell == CellKind.Lstm ? Enumerable.Range(0, layers).Select(_ => Enumerable.Range(0, b * h).Select(_ => rng.NextNormal() * 0.5).ToArray()).ToArray() : null;
        var f = Rnn.Reference.ReferenceRnn.Forward(p, x, y, h0, c0, b, t);
        var want = Rnn.Reference.ReferenceRnn.Backward(p, x, y, h0, c0, b, t, f);

        using var model = new RnnModel(_be, BackendGoldenTests.ToParams(spec, p));
        using var driver = new BpttDriver(model, b, t, mode);
        var mb = new Rnn.Data.Minibatch(b, t, x, y);
        using var tx = _be.FromArray(mb.XTimeMajor);
        using var ty = _be.FromArray(mb.YTimeMajor);
        for (int l = 0; l < layers; l++)
        {
            using var hh = _be.FromArray(b, h, Check.ToFloat(h0[l]));
            _be.Copy(hh.All, driver.H0(l));
            if (c0 == null) continue;
            using var cc = _be.FromArray(b, h, Check.ToFloat(c0[l]));
            _be.Copy(cc.All, driver.C0(l)!.Value);
        }
        _be.ResetLoss();
        driver.Forward(tx.All, ty.All);
        driver.Backward(tx.All, wantDH0: true);
        var (sum, rows) = _be.ReadLoss();
        const double Atol = 2e-5, Rtol = 2e-4;
        Check.Close(f.Loss, sum / rows, Atol, Rtol, "loss");
        Check.Close(f.Hidden.SelectMany(a => a).ToArray(), _be.ToArray(driver.Hs).Skip(b * h).ToArray(), Atol, Rtol, "top hidden states");
        var grads = model.GradsToHost();
        for (int i = 0; i < grads.Length; i++)
            Check.Close(want.Params[i], grads[i], Atol, Rtol, "grad " + spec.Parameters[i].Name);
        for (int l = 0; l < layers; l++)
        {
            Check.Close(want.H0[l], _be.ToArray(driver.DLayerH0(l)), Atol, Rtol, $"dH0 layer {l}");
            if (c0 != null) Check.Close(want.C0![l], _be.ToArray(driver.DLayerC0(l)!), Atol, Rtol, $"dC0 layer {l}");
        }
    }

    float[] Rows(Mat m) => _be.ToArray(m.Tensor).AsSpan(m.Offset, m.Rows * m.Cols).ToArray(); // whole rows: stride = cols

    /// <summary>
    /// #26: shapes that cut the output layer into several blocks on the CPU (T·B = 160 rows: 16-step blocks beside the
    /// forward recurrence, the last one short; V = 300: three dW_hq column blocks beside the backward one) and a second
    /// minibatch that starts from the first one's final state (consecutive sampling's carry, C too for the LSTM):
    /// loss and every gradient of both minibatches against the reference, and the output-gradients-ready signal given
    /// exactly once per backward pass.
    /// </summary>
    [Test]
    public void SeveralBlocksAWideVocabularyAndACarriedState([Values] CellKind cell)
    {
        var rng = new Rnn.Rng((ulong)(77 + (int)cell));
        int v = 300, h = 13, b = 4, t = 40, layers = 2;
        var p = ReferenceTests.RandomModel(rng, cell, true, layers, v, h);
        var spec = new ModelSpec(ModelKind.Concise, v, h, Activation.Tanh, cell, layers);
        using var model = new RnnModel(_be, BackendGoldenTests.ToParams(spec, p));
        using var driver = new BpttDriver(model, b, t, InputMode.Gather);
        int ready = 0;
        driver.OutputGradientsReady = _ => ready++;
        var h0 = Enumerable.Range(0, layers).Select(_ => new double[b * h]).ToArray();
        var c0 = cell == CellKind.Lstm ? Enumerable.Range(0, layers).Select(_ => new double[b * h]).ToArray() : null;
        driver.ResetState();
        for (int minibatch = 0; minibatch < 2; minibatch++)
        {
            var x = Enumerable.Range(0, b * t).Select(_ => rng.NextInt(v)).ToArray();
            var y = Enumerable.Range(0, b * t).Select(_ => rng.NextInt(v)).ToArray();
            var f = Rnn.Reference.ReferenceRnn.Forward(p, x, y, h0, c0, b, t);
            var want = Rnn.Reference.ReferenceRnn.Backward(p, x, y, h0, c0, b, t, f);
            var mb = new Rnn.Data.Minibatch(b, t, x, y);
            using var tx = _be.FromArray(mb.XTimeMajor);
            using var ty = _be.FromArray(mb.YTimeMajor);
            if (minibatch > 0) driver.CarryState();
            _be.ResetLoss();
            driver.Forward(tx.All, ty.All);
            driver.Backward(tx.All);
            Assert.That(ready, Is.EqualTo(minibatch + 1), "output gradients ready once per backward pass");
            var (sum, rows) = _be.ReadLoss();
            const double Atol = 2e-5, Rtol = 2e-4;
            Check.Close(f.Loss, sum / rows, Atol, Rtol, $"loss, minibatch {minibatch}");
            var grads = model.GradsToHost();
            for (int i = 0; i < grads.Length; i++)
                Check.Close(want.Params[i], grads[i], Atol, Rtol, $"grad {spec.Parameters[i].Name}, minibatch {minibatch}");
            // The next minibatch starts where this one ended (detached).
            h0 = Enumerable.Range(0, layers).Select(l => Check.ToDouble(Rows(driver.HT(l)))).ToArray();
            if (c0 != null) c0 = Enumerable.Range(0, layers).Select(l => Check.ToDouble(Rows(driver.CT(l)!.Value))).ToArray();
            Check.Close(f.Hidden[^1], Rows(driver.StateT), Atol, Rtol, $"final state, minibatch {minibatch}");
        }
        driver.ResetState();
        Assert.That(Rows(driver.H0(0)), Is.All.Zero, "reset: H_0 zero");
        if (cell == CellKind.Lstm) Assert.That(Rows(driver.C0(1)!.Value), Is.All.Zero, "reset: C_0 zero");
    }
}
