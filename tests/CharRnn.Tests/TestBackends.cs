using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Backends.Cpu;

namespace CharRnn.Tests;

/// <summary>
/// The backends every backend test runs on. A backend that cannot be made here is Ignored with the reason —
/// except the GPU when CHARRNN_REQUIRE_GPU=1, where its absence fails the test. The cuda fixtures carry the
/// "Gpu" category.
/// </summary>
public static class TestBackends
{
    public static IEnumerable<TestFixtureData> All()
    {
        yield return new TestFixtureData("cpu-openblas");
        yield return new TestFixtureData("cpu-managed");
        var cuda = new TestFixtureData("cuda");
        cuda.Properties.Add(NUnit.Framework.Internal.PropertyNames.Category, "Gpu");
        yield return cuda;
    }

    public static bool RequireGpu => Environment.GetEnvironmentVariable("CHARRNN_REQUIRE_GPU") == "1";

    public static IBackend Create(string name)
    {
        switch (name)
        {
            case "cpu-managed":
                return new CpuBackend(CpuGemm.Engine.Managed);
            case "cpu-openblas":
                if (!CpuGemm.OpenBlasAvailable)
                {
                    if (Environment.GetEnvironmentVariable("CHARRNN_REQUIRE_OPENBLAS") == "1")
                        Assert.Fail("CHARRNN_REQUIRE_OPENBLAS=1 but libopenblas.so.0 does not load");
                    Assert.Ignore("libopenblas.so.0 is not installed (apt-get install libopenblas0-pthread)");
                }
                return new CpuBackend(CpuGemm.Engine.OpenBlas);
            case "cuda":
                return GpuTests.CreateCudaBackend();
            default:
                throw new ArgumentException(name);
        }
    }
}
