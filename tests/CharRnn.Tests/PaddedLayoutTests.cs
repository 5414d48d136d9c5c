using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Backends.Cpu;
using CharRnn.Rnn.Data;
using CharRnn.Rnn.Model;
using CharRnn.Rnn.Training;

namespace CharRnn.Tests;

/// <summary>
/// #26: the GPU's padded output layer (V stored rounded up to 8 columns: W_hq's pads 0, b_q's −∞) run on the CPU,
/// where mutation testing found its handling unreached by any fast test: a model with V = 9 stored 16 wide trains as
/// the same model stored 9 wide — loss, every gradient, an Adam step — its pads stay inert (gradients 0, b_q −∞), and
/// host copies drop them.
/// </summary>
public class PaddedLayoutTests
{
    [Test]
    public void APaddedModelTrainsAsTheUnpaddedOne([Values] CellKind cell, [Values(1, 2)] int layers)
    {
        int v = 9, h = 6, b = 3, t = 4;
        var spec = new ModelSpec(ModelKind.Concise, v, h, Activation.Tanh, cell, layers);
        var host = RnnParameters.Initialize(spec, new Rng(9));
        using var plainBe = new CpuBackend(CpuGemm.Engine.Managed);
        using var paddedBe = new CpuBackend(CpuGemm.Engine.Managed, vocabularyMultiple: 8);
        using var plain = new RnnModel(plainBe, host);
        using var padded = new RnnModel(paddedBe, host);
        Assert.That((plain.OutputWidth, padded.OutputWidth), Is.EqualTo((9, 16)));
        Assert.That(padded.Whq.Cols, Is.EqualTo(16));
        var bq = paddedBe.ToArray(padded.Bq);
        Assert.That(bq[..v], Is.EqualTo(host["b_q"]));
        Assert.That(bq[v..], Is.All.EqualTo(float.NegativeInfinity), "b_q's pads are −∞: their logits never win or weigh");
        var whq = paddedBe.ToArray(padded.Whq);
        for (int r = 0; r < h; r++)
        {
            Assert.That(whq.AsSpan(r * 16, v).ToArray(), Is.EqualTo(host["W_hq"].AsSpan(r * v, v).ToArray()), $"W_hq row {r}");
            Assert.That(whq.AsSpan(r * 16 + v, 16 - v).ToArray(), Is.All.Zero, $"W_hq row {r} pads");
        }
        Assert.That(padded.ToHost().Values, Is.EqualTo(host.Values), "the host copy drops the pads");

        var rng = new Rng(3);
        var x = Enumerable.Range(0, b * t).Select(_ => rng.NextInt(v)).ToArray();
        var y = Enumerable.Range(0, b * t).Select(_ => rng.NextInt(v)).ToArray();
        var mb = new Minibatch(b, t, x, y);
        (double Loss, float[][] Grads, float[] Logits) Step(RnnModel m)
        {
            var be = m.Backend;
            using var driver = new BpttDriver(m, b, t);
            using var tx = be.FromArray(mb.XTimeMajor);
            using var ty = be.FromArray(mb.YTimeMajor);
            driver.ResetState();
            be.ResetLoss();
            driver.Forward(tx.All, ty.All);
            driver.Backward(tx.All);
            var (sum, rows) = be.ReadLoss();
            var stored = be.ToArray(m.DWhq);
            if (m.OutputWidth != v)
                for (int r = 0; r < h; r++) Assert.That(stored.AsSpan(r * m.OutputWidth + v, m.OutputWidth - v).ToArray(), Is.All.Zero, "dW_hq pads");
            return (sum / rows, m.GradsToHost(), driver.LogitsToHost());
        }
        var a = Step(plain);
        var p = Step(padded);
        Check.Close(new[] { a.Loss }, new[] { (float)p.Loss }, 1e-6, 1e-6, "loss");
        Check.Close(Check.ToDouble(a.Logits), p.Logits, 1e-6, 1e-6, "logits (pads dropped)");
        for (int i = 0; i < a.Grads.Length; i++) Check.Close(Check.ToDouble(a.Grads[i]), p.Grads[i], 1e-7, 1e-5, "grad " + spec.Parameters[i].Name);

        // One Adam step with its moments: the pads stay 0 and −∞, the rest moves as unpadded.
        foreach (var (m, be) in new[] { (plain, (IBackend)plainBe), (padded, paddedBe) })
        {
            using var adam = new Adam(0.01f);
            adam.Prepare(m);
            using var clip = be.FromArray(1, 2, [1f, 0f]);
            using var steps = be.FromArray([0]);
            adam.Enqueue(m, clip, steps.All);
            var moments = adam.SaveMoments(m)!;
            Assert.That(moments.First.Select(f => f.Length), Is.EqualTo(spec.Parameters.Select(q => q.Length)), "moments saved without pads");
        }
        var after = padded.ToHost();
        Check.Close(plain.ToHost().Values.SelectMany(f => f).Select(f => (double)f).ToArray(), after.Values.SelectMany(f => f).ToArray(), 1e-6, 1e-5, "parameters after Adam");
        var bqAfter = paddedBe.ToArray(padded.Bq);
        Assert.That(bqAfter[v..], Is.All.EqualTo(float.NegativeInfinity), "b_q's pads after the step");
    }

    [Test]
    public void AMultipleBelowOneIsRefused() =>
        Assert.That(() => new CpuBackend(CpuGemm.Engine.Managed, vocabularyMultiple: 0), Throws.TypeOf<ArgumentOutOfRangeException>());
}
