using CharRnn.Rnn.Reference;

namespace CharRnn.Tests;

/// <summary>
/// The double-precision reference against PyTorch float64 autograd. Tolerance 1e-10 (absolute, plus 1e-10 relative):
/// both sides compute the same float64 sums in different orders, which the golden README bounds at ~3e-15 relative;
/// 1e-10 leaves room for exp/log/tanh differences between libm and PyTorch while still catching any real error.
/// </summary>
public class ReferenceTests
{
    const double Tol = 1e-10;

    public sealed record Case(ReferenceRnn.Parameters P, int[] X, int[] Y, double[] H0, int B, int T, Golden G);

    public static Case Load(string file)
    {
        var (p, x, y, h0, b, t, g) = LoadCase(file);
        return new Case(p, x, y, h0, b, t, g);
    }

    /// <summary>Loads params and inputs of rnn_scratch.json or rnn_torch.json into the reference's layout.</summary>
    public static (ReferenceRnn.Parameters P, int[] X, int[] Y, double[] H0, int B, int T, Golden G) LoadCase(string file)
    {
        var g = Golden.Load(file);
        int v = g.I("config/vocab"), h = g.I("config/hidden"), b = g.I("config/batch"), t = g.I("config/steps");
        ReferenceRnn.Parameters p = file == "rnn_scratch.json"
            ? new() { Wxh = g.T("params/W_xh"), Whh = g.T("params/W_hh"), Bh = g.T("params/b_h"), Whq = g.T("params/W_hq"), Bq = g.T("params/b_q"), V = v, H = h }
            : new()
            {
                Wxh = Golden.Transpose(g.T("params/rnn.weight_ih_l0"), h, v), Whh = Golden.Transpose(g.T("params/rnn.weight_hh_l0"), h, h),
                Bh = g.T("params/rnn.bias_ih_l0"), Bh2 = g.T("params/rnn.bias_hh_l0"),
                Whq = Golden.Transpose(g.T("params/dense.weight"), v, h), Bq = g.T("params/dense.bias"), V = v, H = h,
            };
        return (p, g.Ints("inputs/X"), g.Ints("inputs/Y"), g.T("inputs/H0"), b, t, g);
    }

    /// <summary>Golden names of the parameters in reference order, with whether they are stored transposed.</summary>
    public static (string Name, bool Transposed)[] Names(string file) => file == "rnn_scratch.json"
        ? [("W_xh", false), ("W_hh", false), ("b_h", false), ("W_hq", false), ("b_q", false)]
        : [("rnn.weight_ih_l0", true), ("rnn.weight_hh_l0", true), ("rnn.bias_ih_l0", false), ("rnn.bias_hh_l0", false), ("dense.weight", true), ("dense.bias", false)];

    /// <summary>A golden parameter-shaped tensor converted to our layout.</summary>
    public static double[] Ours(Golden g, string path, bool transposed)
    {
        var data = g.T(path);
        if (!transposed) return data;
        var shape = g.Shape(path);
        return Golden.Transpose(data, shape[0], shape[1]);
    }

    [TestCase("rnn_scratch.json")]
    [TestCase("rnn_torch.json")]
    public void ForwardMatchesPyTorch(string file)
    {
        var (p, x, y, h0, b, t, g) = LoadCase(file);
        var f = ReferenceRnn.Forward(p, x, y, h0, b, t);
        Check.Close(g.T("forward/logits"), f.Logits, Tol, Tol, "logits");
        Check.Close(g.T("forward/hidden_states"), f.Hidden.SelectMany(a => a).ToArray(), Tol, Tol, "hidden states");
        Check.Close(g.T("forward/H_final"), f.Hidden[^1], Tol, Tol, "H_final");
        Check.Close(g.D("forward/loss"), f.Loss, Tol, Tol, "loss");
        Check.Close(g.D("forward/perplexity"), Math.Exp(f.Loss), Tol, Tol, "perplexity");
    }

    [TestCase("rnn_scratch.json")]
    [TestCase("rnn_torch.json")]
    public void GradientsMatchPyTorch(string file)
    {
        var (p, x, y, h0, b, t, g) = LoadCase(file);
        var grads = ReferenceRnn.Backward(p, x, y, h0, b, t, ReferenceRnn.Forward(p, x, y, h0, b, t));
        var names = Names(file);
        var ours = grads.Params().ToList();
        for (int i = 0; i < names.Length; i++)
            Check.Close(Ours(g, "grads/" + names[i].Name, names[i].Transposed), ours[i], Tol, Tol, "grad " + names[i].Name);
        Check.Close(g.T("grads/H0"), grads.H0, Tol, Tol, "grad H0");
    }

    [TestCase("rnn_scratch.json")]
    [TestCase("rnn_torch.json")]
    public void ClippingAndSgdMatchPyTorch(string file)
    {
        var (p, x, y, h0, b, t, g) = LoadCase(file);
        var grads = ReferenceRnn.Backward(p, x, y, h0, b, t, ReferenceRnn.Forward(p, x, y, h0, b, t));
        double norm = ReferenceRnn.Clip(grads.Params(), g.D("config/clip_theta"));
        Check.Close(g.D("clip/norm"), norm, Tol, Tol, "norm");
        Assert.That(g.Get("clip/clipped").GetBoolean(), Is.True);
        var names = Names(file);
        var ours = grads.Params().ToList();
        var ps = p.All().ToList();
        for (int i = 0; i < names.Length; i++)
        {
            Check.Close(Ours(g, "clip/grads/" + names[i].Name, names[i].Transposed), ours[i], Tol, Tol, "clipped " + names[i].Name);
            ReferenceRnn.Sgd(ps[i], ours[i], g.D("config/sgd_lr"));
            Check.Close(Ours(g, "sgd_step/" + names[i].Name, names[i].Transposed), ps[i], Tol, Tol, "sgd " + names[i].Name);
        }
    }

    [TestCase("rnn_scratch.json", "adam_unclipped")]
    [TestCase("rnn_scratch.json", "adam_clipped")]
    [TestCase("rnn_torch.json", "adam_unclipped")]
    [TestCase("rnn_torch.json", "adam_clipped")]
    public void TwoAdamStepsMatchPyTorch(string file, string variant)
    {
        var (p, x, y, h0, b, t, g) = LoadCase(file);
        var names = Names(file);
        var ms = p.All().Select(a => new double[a.Length]).ToList();
        var vs = p.All().Select(a => new double[a.Length]).ToList();
        for (int k = 1; k <= 2; k++)
        {
            string s = $"{variant}/step{k}/";
            var f = ReferenceRnn.Forward(p, x, y, h0, b, t);
            Check.Close(g.D(s + "loss_before_step"), f.Loss, Tol, Tol, s + "loss");
            var grads = ReferenceRnn.Backward(p, x, y, h0, b, t, f);
            if (variant == "adam_clipped") ReferenceRnn.Clip(grads.Params(), g.D("config/clip_theta"));
            var gs = grads.Params().ToList();
            var ps = p.All().ToList();
            for (int i = 0; i < names.Length; i++)
            {
                var n = names[i];
                Check.Close(Ours(g, s + "grads_used/" + n.Name, n.Transposed), gs[i], Tol, Tol, s + "grad " + n.Name);
                ReferenceRnn.Adam(ps[i], gs[i], ms[i], vs[i], g.D("config/adam/lr"), k);
                Check.Close(Ours(g, s + "params_after/" + n.Name, n.Transposed), ps[i], Tol, Tol, s + "param " + n.Name);
                Check.Close(Ours(g, s + "exp_avg/" + n.Name, n.Transposed), ms[i], Tol, Tol, s + "exp_avg " + n.Name);
                Check.Close(Ours(g, s + "exp_avg_sq/" + n.Name, n.Transposed), vs[i], Tol, Tol, s + "exp_avg_sq " + n.Name);
            }
        }
    }

    /// <summary>
    /// Every gradient against central finite differences of the double reference, on fresh random values
    /// (step 1e-6: truncation error ~h² and rounding ~1e-16/h both stay below 1e-8 here; tolerance 1e-6 abs + 1e-5 rel).
    /// </summary>
    [TestCase(false, false)]
    [TestCase(true, false)]
    [TestCase(false, true)]
    public void GradientsMatchFiniteDifferences(bool concise, bool relu)
    {
        var rng = new CharRnn.Rnn.Rng(7);
        int v = 6, h = 4, b = 2, t = 3;
        double[] R(int n, double s) => Enumerable.Range(0, n).Select(_ => rng.NextNormal() * s).ToArray();
        var p = new ReferenceRnn.Parameters
        {
            Wxh = R(v * h, 0.5), Whh = R(h * h, 0.5), Bh = R(h, 0.3), Bh2 = concise ? R(h, 0.3) : null,
            Whq = R(h * v, 0.5), Bq = R(v, 0.1), V = v, H = h, Relu = relu,
        };
        var x = Enumerable.Range(0, b * t).Select(_ => rng.NextInt(v)).ToArray();
        var y = Enumerable.Range(0, b * t).Select(_ => rng.NextInt(v)).ToArray();
        var h0 = R(b * h, 0.5);
        var grads = ReferenceRnn.Backward(p, x, y, h0, b, t, ReferenceRnn.Forward(p, x, y, h0, b, t));
        var arrays = p.All().Append(h0).ToList();
        var gradArrays = grads.Params().Append(grads.H0).ToList();
        const double eps = 1e-6;
        for (int a = 0; a < arrays.Count; a++)
        {
            var numeric = new double[arrays[a].Length];
            for (int i = 0; i < numeric.Length; i++)
            {
                double keep = arrays[a][i];
                arrays[a][i] = keep + eps;
                double lp = ReferenceRnn.Forward(p, x, y, h0, b, t).Loss;
                arrays[a][i] = keep - eps;
                double lm = ReferenceRnn.Forward(p, x, y, h0, b, t).Loss;
                arrays[a][i] = keep;
                numeric[i] = (lp - lm) / (2 * eps);
            }
            Check.Close(numeric, gradArrays[a], 1e-6, 1e-5, $"array {a}");
        }
    }
}
