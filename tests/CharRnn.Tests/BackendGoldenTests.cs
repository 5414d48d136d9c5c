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

    static RnnParameters ToParams(string file, ReferenceTests.Case c)
    {
        var spec = new ModelSpec(file == "rnn_scratch.json" ? ModelKind.Scratch : ModelKind.Concise, c.P.V, c.P.H);
        var host = new RnnParameters(spec);
        var all = c.P.All().ToList();
        for (int i = 0; i < all.Count; i++) host.Values[i] = Check.ToFloat(all[i]);
        return host;
    }

    (RnnModel Model, BpttDriver Driver, IndexBuffer X, IndexBuffer Y) Setup(string file, InputMode mode, out ReferenceTests.Case c)
    {
        c = ReferenceTests.Load(file);
        var model = new RnnModel(_be, ToParams(file, c));
        var driver = new BpttDriver(model, c.B, c.T, mode);
        var mb = new Rnn.Data.Minibatch(c.B, c.T, c.X, c.Y);
        var x = _be.FromArray(mb.XTimeMajor);
        var y = _be.FromArray(mb.YTimeMajor);
        var h0 = _be.FromArray(c.B, c.P.H, Check.ToFloat(c.H0));
        _be.Copy(h0.All, driver.State0);
        h0.Dispose();
        return (model, driver, x, y);
    }

    [Test]
    public void ForwardAndGradients(
        [Values("rnn_scratch.json", "rnn_torch.json")] string file,
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
            var logits = _be.ToArray(driver.Logits);
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
        }
    }

    [TestCase("rnn_scratch.json")]
    [TestCase("rnn_torch.json")]
    public void ClippedSgdStep(string file)
    {
        var (model, driver, x, y) = Setup(file, _be.DefaultInputMode, out var c);
        using (model) using (driver) using (x) using (y)
        {
            using var sgd = new Sgd((float)c.G.D("config/sgd_lr"));
            driver.TrainStep(x.All, y.All, (float)c.G.D("config/clip_theta"), sgd);
            Check.Close(c.G.D("clip/norm"), _be.ReadGradNorm(), Atol, Rtol, "norm");
            var names = ReferenceTests.Names(file);
            var after = model.ToHost();
            for (int i = 0; i < names.Length; i++)
                Check.Close(ReferenceTests.Ours(c.G, "sgd_step/" + names[i].Name, names[i].Transposed), after.Values[i], 1e-4, Rtol, "sgd " + names[i].Name);
        }
    }

    [Test]
    public void TwoAdamSteps([Values("rnn_scratch.json", "rnn_torch.json")] string file, [Values("adam_unclipped", "adam_clipped")] string variant)
    {
        var (model, driver, x, y) = Setup(file, _be.DefaultInputMode, out var c);
        using (model) using (driver) using (x) using (y)
        {
            using var h0 = _be.Zeros(c.B, c.P.H);
            _be.Copy(driver.State0, h0.All);
            using var adam = new Adam((float)c.G.D("config/adam/lr"));
            float clip = variant == "adam_clipped" ? (float)c.G.D("config/clip_theta") : 0f;
            var names = ReferenceTests.Names(file);
            for (int k = 1; k <= 2; k++)
            {
                _be.Copy(h0.All, driver.State0); // the same H0 for both steps
                driver.TrainStep(x.All, y.All, clip, adam);
                string s = $"{variant}/step{k}/";
                var after = model.ToHost();
                for (int i = 0; i < names.Length; i++)
                {
                    Check.Close(ReferenceTests.Ours(c.G, s + "params_after/" + names[i].Name, names[i].Transposed), after.Values[i], Atol, Rtol, s + names[i].Name);
                    Check.Close(ReferenceTests.Ours(c.G, s + "exp_avg/" + names[i].Name, names[i].Transposed), _be.ToArray(adam.FirstMoments![i]), 1e-7, 1e-3, s + "exp_avg " + names[i].Name);
                    Check.Close(ReferenceTests.Ours(c.G, s + "exp_avg_sq/" + names[i].Name, names[i].Transposed), _be.ToArray(adam.SecondMoments![i]), 1e-10, 1e-3, s + "exp_avg_sq " + names[i].Name);
                }
            }
        }
    }
}
