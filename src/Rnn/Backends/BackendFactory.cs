using CharRnn.Rnn.Backends.Cpu;

namespace CharRnn.Rnn.Backends;

/// <summary>Turns <c>--device</c> into a backend.</summary>
public static class BackendFactory
{
    public static IBackend Create(string device, string? blas, TextWriter log)
    {
        CpuGemm.Engine? engine = blas switch
        {
            null => null,
            "openblas" => CpuGemm.Engine.OpenBlas,
            "managed" => CpuGemm.Engine.Managed,
            _ => throw new CharRnnException($"--blas must be openblas or managed (got '{blas}')."),
        };
        var d = device.Trim().ToLowerInvariant();
        if (d == "cpu") return new CpuBackend(engine);
        if (d == "auto")
        {
            log.WriteLine("charrnn: no CUDA backend in this build yet; using the CPU.");
            return new CpuBackend(engine);
        }
        if (d == "cuda" || d.StartsWith("cuda:", StringComparison.Ordinal))
            throw new CharRnnException("The CUDA backend is not available in this build. Use --device cpu.");
        throw new CharRnnException($"--device must be auto, cpu, cuda or cuda:N (got '{device}').");
    }

    public static IEnumerable<string> Info()
    {
        yield return $"cpu: {new CpuBackend().Description}";
        yield return CpuGemm.OpenBlasAvailable ? $"openblas: {Interop.NativeLibraries.Load(Interop.NativeLibraries.OpenBlas).LoadedFrom}" : "openblas: not found (managed GEMM in use); install libopenblas0-pthread";
    }
}
