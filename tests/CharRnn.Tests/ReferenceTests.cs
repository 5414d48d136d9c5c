using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Model;
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

    /// <summary>The original four (H 5, below the 8-lane vector width) and their *_wide twins (V 11, H 13, B 5, T 6:
    /// make_wide.py), where every vectorised kernel and its tail run against PyTorch (#26).</summary>
    public static readonly string[] Files = ["rnn_scratch.json", "rnn_torch.json", "gru_torch.json", "lstm_torch.json",
        "rnn_scratch_wide.json", "rnn_torch_wide.json", "gru_torch_wide.json", "lstm_torch_wide.json"];

    /// <summary>A golden case in the reference's layout (weights transposed from PyTorch's, gate blocks as columns).</summary>
    public sealed record Case(ReferenceRnn.Parameters P, int[] X, int[] Y, double[][] H0, double[][]? C0, int B, int T, Golden G, ModelSpec Spec);

    public static Case Load(string file)
    {
        var g = Golden.Load(file);
        int v = g.I("config/vocab"), h = g.I("config/hidden"), b = g.I("config/batch"), t = g.I("config/steps");
        bool scratch = file.StartsWith("rnn_scratch", StringComparison.Ordinal);
        var cell = file.StartsWith("gru", StringComparison.Ordinal) ? CellKind.Gru : file.StartsWith("lstm", StringComparison.Ordinal) ? CellKind.Lstm : CellKind.Rnn;
        int gates = cell switch { CellKind.Gru => 3, CellKind.Lstm => 4, _ => 1 };
        var layer = scratch
            ? new ReferenceRnn.Layer { Wx = g.T("params/W_xh"), Wh = g.T("params/W_hh"), Bx = g.T("params/b_h"), In = v }
            : new ReferenceRnn.Layer
            {
                Wx = Golden.Transpose(g.T("params/rnn.weight_ih_l0"), gates * h, v),
                Wh = Golden.Transpose(g.T("params/rnn.weight_hh_l0"), gates * h, h),
                Bx = g.T("params/rnn.bias_ih_l0"), Bh = g.T("params/rnn.bias_hh_l0"), In = v,
            };
        var p = new ReferenceRnn.Parameters
        {
            Layers = [layer], V = v, H = h, Cell = cell,
            Whq = scratch ? g.T("params/W_hq") : Golden.Transpose(g.T("params/dense.weight"), v, h),
            Bq = scratch ? g.T("params/b_q") : g.T("params/dense.bias"),
        };
        var spec = new ModelSpec(scratch ? ModelKind.Scratch : ModelKind.Concise, v, h, Activation.Tanh, cell, 1);
        var c0 = cell == CellKind.Lstm ? new[] { g.T("inputs/C0") } : null;
        return new Case(p, g.Ints("inputs/X"), g.Ints("inputs/Y"), [g.T("inputs/H0")], c0, b, t, g, spec);
    }

    /// <summary>Golden names of the parameters in <see cref="ModelSpec.Parameters"/> order, and whether PyTorch stores them transposed.</summary>
    public static (string Name, bool Transposed)[] Names(string file) => file.StartsWith("rnn_scratch", StringComparison.Ordinal)
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

    [TestCaseSource(nameof(Files))]
    public void ForwardMatchesPyTorch(string file)
    {
        var c = Load(file);
        var f = ReferenceRnn.Forward(c.P, c.X, c.Y, c.H0, c.C0, c.B, c.T);
        Check.Close(c.G.T("forward/logits"), f.Logits, Tol, Tol, "logits");
        Check.Close(c.G.T("forward/hidden_states"), f.Hidden.SelectMany(a => a).ToArray(), Tol, Tol, "hidden states");
        Check.Close(c.G.T("forward/H_final"), f.Hidden[^1], Tol, Tol, "H_final");
        if (c.Spec.Cell == CellKind.Lstm) Check.Close(c.G.T("forward/C_final"), f.C![0][^1], Tol, Tol, "C_final");
        Check.Close(c.G.D("forward/loss"), f.Loss, Tol, Tol, "loss");
        Check.Close(c.G.D("forward/perplexity"), Math.Exp(f.Loss), Tol, Tol, "perplexity");
    }

    [TestCaseSource(nameof(Files))]
    public void GradientsMatchPyTorch(string file)
    {
        var c = Load(file);
        var grads = ReferenceRnn.Backward(c.P, c.X, c.Y, c.H0, c.C0, c.B, c.T, ReferenceRnn.Forward(c.P, c.X, c.Y, c.H0, c.C0, c.B, c.T));
        var names = Names(file);
        for (int i = 0; i < names.Length; i++)
            Check.Close(Ours(c.G, "grads/" + names[i].Name, names[i].Transposed), grads.Params[i], Tol, Tol, "grad " + names[i].Name);
        Check.Close(c.G.T("grads/H0"), grads.H0[0], Tol, Tol, "grad H0");
        if (c.Spec.Cell == CellKind.Lstm) Check.Close(c.G.T("grads/C0"), grads.C0![0], Tol, Tol, "grad C0");
    }

    [TestCaseSource(nameof(Files))]
    public void ClippingAndSgdMatchPyTorch(string file)
    {
        var c = Load(file);
        var grads = ReferenceRnn.Backward(c.P, c.X, c.Y, c.H0, c.C0, c.B, c.T, ReferenceRnn.Forward(c.P, c.X, c.Y, c.H0, c.C0, c.B, c.T));
        double norm = ReferenceRnn.Clip(grads.Params, c.G.D("config/clip_theta"));
        Check.Close(c.G.D("clip/norm"), norm, Tol, Tol, "norm");
        Assert.That(c.G.Get("clip/clipped").GetBoolean(), Is.True);
        var names = Names(file);
        var ps = c.P.All().ToList();
        for (int i = 0; i < names.Length; i++)
        {
            Check.Close(Ours(c.G, "clip/grads/" + names[i].Name, names[i].Transposed), grads.Params[i], Tol, Tol, "clipped " + names[i].Name);
            ReferenceRnn.Sgd(ps[i], grads.Params[i], c.G.D("config/sgd_lr"));
            Check.Close(Ours(c.G, "sgd_step/" + names[i].Name, names[i].Transposed), ps[i], Tol, Tol, "sgd " + names[i].Name);
        }
    }

    static IEnumerable<TestCaseData> AdamCases() =>
        Files.SelectMany(f => new[] { "adam_unclipped", "adam_clipped" }.Select(v => new TestCaseData(f, v)));

    [TestCaseSource(nameof(AdamCases))]
    public void TwoAdamStepsMatchPyTorch(string file, string variant)
    {
        var c = Load(file);
        var names = Names(file);
        var ms = c.P.All().Select(a => new double[a.Length]).ToList();
        var vs = c.P.All().Select(a => new double[a.Length]).ToList();
        for (int k = 1; k <= 2; k++)
        {
            string s = $"{variant}/step{k}/";
            var f = ReferenceRnn.Forward(c.P, c.X, c.Y, c.H0, c.C0, c.B, c.T);
            Check.Close(c.G.D(s + "loss_before_step"), f.Loss, Tol, Tol, s + "loss");
            var grads = ReferenceRnn.Backward(c.P, c.X, c.Y, c.H0, c.C0, c.B, c.T, f);
            if (variant == "adam_clipped") ReferenceRnn.Clip(grads.Params, c.G.D("config/clip_theta"));
            var ps = c.P.All().ToList();
            for (int i = 0; i < names.Length; i++)
            {
                var n = names[i];
                Check.Close(Ours(c.G, s + "grads_used/" + n.Name, n.Transposed), grads.Params[i], Tol, Tol, s + "grad " + n.Name);
                ReferenceRnn.Adam(ps[i], grads.Params[i], ms[i], vs[i], c.G.D("config/adam/lr"), k);
                Check.Close(Ours(c.G, s + "params_after/" + n.Name, n.Transposed), ps[i], Tol, Tol, s + "param " + n.Name);
                Check.Close(Ours(c.G, s + "exp_avg/" + n.Name, n.Transposed), ms[i], Tol, Tol, s + "exp_avg " + n.Name);
                Check.Close(Ours(c.G, s + "exp_avg_sq/" + n.Name, n.Transposed), vs[i], Tol, Tol, s + "exp_avg_sq " + n.Name);
            }
        }
    }

    /// <summary>A random model of the given shape in the reference's layout (fresh values, not the book's init).</summary>
    public static ReferenceRnn.Parameters RandomModel(CharRnn.Rnn.Rng rng, CellKind cell, bool concise, int layers, int v, int h, bool relu = false)
    {
        int g = cell switch { CellKind.Gru => 3, CellKind.Lstm => 4, _ => 1 };
        double[] R(int n, double s) => Enumerable.Range(0, n).Select(_ => rng.NextNormal() * s).ToArray();
        return new ReferenceRnn.Parameters
        {
            Layers = Enumerable.Range(0, layers).Select(l => new ReferenceRnn.Layer
            {
                Wx = R((l == 0 ? v : h) * g * h, 0.5), Wh = R(h * g * h, 0.5), Bx = R(g * h, 0.3), Bh = concise ? R(g * h, 0.3) : null,
                In = l == 0 ? v : h,
            }).ToList(),
            Whq = R(h * v, 0.5), Bq = R(v, 0.1), V = v, H = h, Cell = cell, Relu = relu,
            ResetBeforeMatmul = cell == CellKind.Gru && !concise, // the book's scratch GRU, as ModelSpec.GruResetBeforeMatmul
        };
    }

    /// <summary>
    /// Every gradient (parameters, H_0 and C_0 of every layer) against central finite differences of the double
    /// reference, on fresh random values, for each cell, one and two layers, with and without PyTorch's second bias
    /// (step 1e-6: truncation ~h² and rounding ~1e-16/h both stay below 1e-8; tolerance 1e-6 abs + 1e-5 rel).
    /// </summary>
    [Test]
    public void GradientsMatchFiniteDifferences([Values] CellKind cell, [Values] bool concise, [Values(1, 2)] int layers)
    {
        var rng = new CharRnn.Rnn.Rng((ulong)(7 + (int)cell * 10 + layers + (concise ? 100 : 0)));
        int v = 6, h = 4, b = 2, t = 3;
        var p = RandomModel(rng, cell, concise, layers, v, h);
        var x = Enumerable.Range(0, b * t).Select(_ => rng.NextInt(v)).ToArray();
        var y = Enumerable.Range(0, b * t).Select(_ => rng.NextInt(v)).ToArray();
        var h0 = Enumerable.Range(0, layers).Select(_ => Enumerable.Range(0, b * h).Select(_ => rng.NextNormal() * 0.5).ToArray()).ToArray();
        var c0 = cell == CellKind.Lstm ? Enumerable.Range(0, layers).Select(_ => Enumerable.Range(0, b * h).Select(_ => rng.NextNormal() * 0.5).ToArray()).ToArray() : null;
        var grads = ReferenceRnn.Backward(p, x, y, h0, c0, b, t, ReferenceRnn.Forward(p, x, y, h0, c0, b, t));
        var arrays = p.All().Concat(h0).Concat(c0 ?? []).ToList();
        var gradArrays = grads.Params.Concat(grads.H0).Concat(grads.C0 ?? []).ToList();
        Assert.That(gradArrays, Has.Count.EqualTo(arrays.Count));
        const double eps = 1e-6;
        for (int a = 0; a < arrays.Count; a++)
        {
            var numeric = new double[arrays[a].Length];
            for (int i = 0; i < numeric.Length; i++)
            {
                double keep = arrays[a][i];
                arrays[a][i] = keep + eps;
                double lp = ReferenceRnn.Forward(p, x, y, h0, c0, b, t).Loss;
                arrays[a][i] = keep - eps;
                double lm = ReferenceRnn.Forward(p, x, y, h0, c0, b, t).Loss;
                arrays[a][i] = keep;
                numeric[i] = (lp - lm) / (2 * eps);
            }
            Check.Close(numeric, gradArrays[a], 1e-6, 1e-5, $"array {a}");
        }
    }

    [Test]
    public void ReluGradientsMatchFiniteDifferences()
    {
        var rng = new CharRnn.Rnn.Rng(3);
        int v = 6, h = 4, b = 2, t = 3;
        var p = RandomModel(rng, CellKind.Rnn, false, 1, v, h, relu: true);
        var x = Enumerable.Range(0, b * t).Select(_ => rng.NextInt(v)).ToArray();
        var y = Enumerable.Range(0, b * t).Select(_ => rng.NextInt(v)).ToArray();
        double[][] h0 = [Enumerable.Range(0, b * h).Select(_ => rng.NextNormal() * 0.5).ToArray()];
        var grads = ReferenceRnn.Backward(p, x, y, h0, null, b, t, ReferenceRnn.Forward(p, x, y, h0, null, b, t));
        var w = p.Layers[0].Wh;
        var numeric = new double[w.Length];
        for (int i = 0; i < w.Length; i++)
        {
            double keep = w[i];
            w[i] = keep + 1e-6; double lp = ReferenceRnn.Forward(p, x, y, h0, null, b, t).Loss;
            w[i] = keep - 1e-6; double lm = ReferenceRnn.Forward(p, x, y, h0, null, b, t).Loss;
            w[i] = keep;
            numeric[i] = (lp - lm) / 2e-6;
        }
        Check.Close(numeric, grads.Params[1], 1e-6, 1e-5, "dW_hh (relu)");
    }
}
