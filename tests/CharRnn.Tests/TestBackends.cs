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

/// <summary>
/// A fixture run once per backend (<see cref="TestBackends.All"/>): the backend, made fresh for each test, and a
/// generator seeded from the test's name (<see cref="TestSeed"/>), whose seed a failing test prints.
/// </summary>
public abstract class BackendFixture(string backendName)
{
    protected IBackend _be = null!;
    protected CharRnn.Rnn.Rng _rng = null!;

    [SetUp]
    public void SetUpBackend()
    {
        _be = TestBackends.Create(backendName);
        _rng = TestSeed.Rng();
    }

    [TearDown]
    public void TearDownBackend()
    {
        TestSeed.ReportIfFailed();
        _be?.Dispose();
    }

    /// <summary>n values drawn N(0, scale²), as float.</summary>
    protected float[] Rand(int n, double scale = 1) => Enumerable.Range(0, n).Select(_ => (float)(_rng.NextNormal() * scale)).ToArray();
}
