using CharRnn.Cuda;
using CharRnn.Interop;
using CharRnn.Rnn.Backends;
using CharRnn.Rnn.Backends.Cpu;
using CharRnn.Rnn.Backends.Cuda;

namespace CharRnn.Rnn.Devices;

/// <summary>Turns <c>--device auto|cpu|cuda[:N]</c> (and <c>--blas</c>) into a backend. Apart from Backends, which it
/// depends on with both of its implementations, so that Backends never refers to Backends.Cpu or Backends.Cuda.</summary>
public static class BackendFactory
{
    /// <param name="gpu">GPU only: precision, recurrence path, graphs (see <see cref="CudaBackend.Create"/>).</param>
    /// <param name="activity">What the fallback line says runs on the CPU ("training", "generating").</param>
    public static IBackend Create(string device, string? blas, TextWriter log, GpuOptions? gpu = null, string activity = "training")
    {
        CpuGemm.Engine? engine = blas switch
        {
            null => null,
            "openblas" => CpuGemm.Engine.OpenBlas,
            "managed" => CpuGemm.Engine.Managed,
            _ => throw new CharRnnException($"--blas must be openblas or managed (got '{blas}')."),
        };
        var d = device.Trim().ToLowerInvariant();
        IBackend Cpu()
        {
            if (gpu != null && gpu.Precision != Precision.Fp32)
                log.WriteLine($"charrnn: --precision {gpu.Precision.ToString().ToLowerInvariant()} is for GPU GEMMs; the CPU computes in FP32.");
            return new CpuBackend(engine);
        }
        if (d == "cpu") return Cpu();
        if (d == "auto")
        {
            var probe = GpuProbe.Run(0);
            if (probe.Usable) return CreateCuda(0, gpu);
            log.WriteLine($"charrnn: no usable GPU ({probe.Reason.TrimEnd('.')}); {activity} on the CPU.");
            return Cpu();
        }
        if (d == "cuda" || d.StartsWith("cuda:", StringComparison.Ordinal))
        {
            int ordinal = 0;
            if (d.Length > 4 && (!int.TryParse(d[5..], out ordinal) || ordinal < 0))
                throw new CharRnnException($"--device {device}: the GPU number must be a whole number, e.g. cuda:0.");
            var probe = GpuProbe.Run(ordinal);
            if (!probe.Usable)
            {
                var message = $"--device {device}: no usable GPU: {probe.Reason.TrimEnd('.')}. Use --device cpu (or auto, which falls back to the CPU).";
                throw probe.DeviceFailed ? new GpuFailedException(message) : new CharRnnException(message);
            }
            return CreateCuda(ordinal, gpu);
        }
        throw new CharRnnException($"--device must be auto, cpu, cuda or cuda:N (got '{device}').");
    }

    static IBackend CreateCuda(int ordinal, GpuOptions? gpu)
    {
        try
        {
            return CudaBackend.Create(ordinal, gpu);
        }
        catch (CudaException e)
        {
            var message = $"The GPU could not be set up: {e.Message.TrimEnd('.')}. --device cpu trains without it.";
            // The device failing (the driver's or cuBLAS's error) is a GPU failure (exit 3); a kernel NVRTC cannot
            // compile stays an error of the setup (2).
            throw e.IsDeviceFailure ? new GpuFailedException(message, e) : new CharRnnException(message, e);
        }
    }

    /// <summary>Lines for <c>charrnn info</c> about the devices (the CLI adds MPI and NCCL).</summary>
    /// <summary>
    /// The collective that averages gradients on the device itself: NCCL where <paramref name="backend"/> is a GPU and
    /// there are several ranks (or <paramref name="force"/>, <c>--nccl</c> with one); null where the host's
    /// <paramref name="host"/> averages them. Here, where the backends are named, so no caller tests a backend's type.
    /// </summary>
    public static Distributed.NcclRanks? DeviceCollective(IBackend backend, Distributed.ICollective host, bool force) =>
        backend is CudaBackend cuda && (host.Size > 1 || force) ? Distributed.NcclRanks.Create(host, cuda) : null;

    public static IEnumerable<string> Info()
    {
        yield return $"cpu: {new CpuBackend().Description}";
        yield return CpuGemm.OpenBlasAvailable
            ? $"openblas: {NativeLibraries.Load(NativeLibraries.OpenBlas).LoadedFrom}"
            : "openblas: not found, using the managed GEMM (apt-get install libopenblas0-pthread for speed)";
        var probe = GpuProbe.Run(0);
        if (probe.Usable)
            foreach (var line in probe.Info!.Lines()) yield return line;
        else
        {
            yield return $"gpu: none usable: {probe.Reason}";
            yield return KernelCompiler.IsAvailable
                ? $"NVRTC: {KernelCompiler.Version().Major}.{KernelCompiler.Version().Minor} (kernels can be compiled; no device to run them)"
                : "NVRTC: " + KernelCompiler.UnavailableReason;
        }
    }
}
