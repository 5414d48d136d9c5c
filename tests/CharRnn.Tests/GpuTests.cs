using CharRnn.Rnn.Backends;

namespace CharRnn.Tests;

public static class GpuTests
{
    /// <summary>The CUDA backend, or Ignore (fail under CHARRNN_REQUIRE_GPU=1) with the probe's reason.</summary>
    public static IBackend CreateCudaBackend()
    {
        const string reason = "the CUDA backend is not part of this build yet";
        if (TestBackends.RequireGpu) Assert.Fail("CHARRNN_REQUIRE_GPU=1 but no usable GPU: " + reason);
        Assert.Ignore("No usable GPU: " + reason);
        return null!;
    }
}
