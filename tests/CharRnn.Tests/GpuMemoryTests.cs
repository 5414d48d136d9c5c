using CharRnn.Rnn;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Generation;
using CharRnn.Rnn.Model;
using CharRnn.Rnn.Training;

namespace CharRnn.Tests;

/// <summary>
/// #26: what each disposable frees, where a leak can be seen. The CPU backend's tensors hold managed arrays and their
/// Dispose is a no-op, so a missing Dispose is invisible to every CPU test (mutation testing lists those mutants as
/// surviving); on the device (or the emulator) it is bytes that never come back. Each owner below is made, used and
/// disposed, and the device must hold exactly what it held before.
/// </summary>
[Category("Gpu")]
public class GpuMemoryTests
{
    static (IBackend Gpu, RnnModel Model, long Before) Setup()
    {
        var gpu = GpuTests.CreateCudaBackend();
        var spec = new ModelSpec(ModelKind.Concise, 6, 8, Activation.Tanh, CellKind.Lstm, 2);
        var model = new RnnModel(gpu, RnnParameters.Initialize(spec, new Rng(3)));
        gpu.Synchronize();
        return (gpu, model, gpu.Context.AllocatedBytes);
    }

    static void AssertNothingHeld(Rnn.Backends.Cuda.CudaBackend gpu, long before, string what)
    {
        gpu.Synchronize();
        Assert.That(gpu.Context.AllocatedBytes, Is.EqualTo(before), what);
    }

    [Test]
    public void SamplingAndPredictingFreeTheirBuffers()
    {
        var (be, model, before) = Setup();
        var gpu = (Rnn.Backends.Cuda.CudaBackend)be;
        try
        {
            using (var s = new TextSampler(model)) Assert.That(s.Sample([1, 2], 4, 1.0, null, new Rng(1)), Has.Length.EqualTo(6));
            AssertNothingHeld(gpu, before, "after a TextSampler");
            using (var p = new Predictor(model)) Assert.That(p.Predict([1, 2], 4), Has.Length.EqualTo(6));
            AssertNothingHeld(gpu, before, "after a Predictor");
        }
        finally
        {
            model.Dispose();
            gpu.Dispose();
        }
    }

    [Test]
    public void AdamFreesItsMomentsOnRestoreAndDispose()
    {
        var (be, model, before) = Setup();
        var gpu = (Rnn.Backends.Cuda.CudaBackend)be;
        try
        {
            var zeros = model.Spec.Parameters.Select(p => new float[p.Length]).ToArray();
            var adam = new Adam(0.01f);
            adam.Prepare(model);
            gpu.Synchronize();
            long prepared = gpu.Context.AllocatedBytes;
            Assert.That(prepared, Is.GreaterThan(before), "the moments and scalars live on the device");
            adam.Restore(model, zeros, zeros, 3); // replaces the moments: the old ones must be freed
            AssertNothingHeld(gpu, prepared, "after a restore");
            adam.Dispose();
            AssertNothingHeld(gpu, before, "after Dispose");
        }
        finally
        {
            model.Dispose();
            gpu.Dispose();
        }
    }
}
