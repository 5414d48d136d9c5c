using System.Runtime.Intrinsics;
using CharRnn.Rnn.Backends.Cpu;

namespace CharRnn.Tests;

/// <summary>
/// #23: a NaN must stay NaN through the CPU's vectorised activations, as it does through the scalar ones (MathF.Tanh,
/// 1/(1 + e^−x)): the vectorised tanh and σ clamped it into the exp and returned ±1 or a finite σ, so a diverged
/// model reported a finite perplexity instead of stopping. Every lane position, and the 8-lane loop and its tail.
/// </summary>
public class NonFiniteTests
{
    [Test]
    public void NaNStaysNaNThroughTheVectorisedActivations([Range(0, 7)] int lane)
    {
        var x = new float[8];
        for (int i = 0; i < 8; i++) x[i] = 0.3f * (i - 4);
        x[lane] = float.NaN;
        var v = Vector256.Create(x);
        var t = CpuKernels.Tanh(v);
        var s = CpuKernels.Sigmoid(v);
        for (int i = 0; i < 8; i++)
        {
            Assert.That(float.IsNaN(t[i]), Is.EqualTo(i == lane), $"tanh lane {i}");
            Assert.That(float.IsNaN(s[i]), Is.EqualTo(i == lane), $"sigmoid lane {i}");
            if (i != lane) Assert.That(t[i], Is.EqualTo(MathF.Tanh(x[i])).Within(1e-6f));
        }
    }

    [Test]
    public void BiasTanhPropagatesNaNInTheLoopAndTheTail([Values(3, 11)] int at)
    {
        var pre = Enumerable.Range(0, 13).Select(i => 0.1f * i).ToArray();
        pre[at] = float.NaN;
        var h = new float[13];
        CpuKernels.BiasTanh(pre, new float[13], h);
        Assert.That(Enumerable.Range(0, 13).Where(i => float.IsNaN(h[i])), Is.EqualTo(new[] { at }));
    }
}
