using CharRnn.Interop;

namespace CharRnn.Cuda;

/// <summary>What the probe found about one GPU.</summary>
public sealed record GpuInfo(int Ordinal, int DeviceCount, int DriverVersion, string Name, int Major, int Minor, int Sms,
    long TotalMemory, int CublasVersion, (int Major, int Minor) NvrtcVersion, string KernelTarget, bool CooperativeLaunch, int SharedPerBlockOptin)
{
    static string Ver(int v) => $"{v / 1000}.{v % 1000 / 10}";

    public IEnumerable<string> Lines()
    {
        yield return $"driver: CUDA {Ver(DriverVersion)} ({DriverVersion}), {DeviceCount} device(s)";
        yield return $"device {Ordinal}: {Name}, compute capability {Major}.{Minor}, {Sms} SMs, {TotalMemory / (1024.0 * 1024 * 1024):F1} GiB";
        yield return $"cuBLAS: {CublasVersion / 10000}.{CublasVersion / 100 % 100}.{CublasVersion % 100}";
        yield return $"NVRTC: {NvrtcVersion.Major}.{NvrtcVersion.Minor}, kernels compiled for {KernelTarget}";
        yield return CooperativeLaunch
            ? $"persistent recurrence: cooperative launch, {SharedPerBlockOptin / 1024} KiB of shared memory per block: the RNN cell's recurrence runs as one kernel per layer and direction where W_hh's slices fit (the run's header says which path runs)"
            : "persistent recurrence: no cooperative launch on this device: the recurrence runs one step at a time";
    }
}

/// <summary>The probe's answer: usable or not, and why. <see cref="DeviceFailed"/>: a device was there and failed
/// (out of memory, a driver error) — a GPU failure, not an absent GPU.</summary>
public sealed record GpuProbeResult(bool Usable, string Reason, GpuInfo? Info)
{
    public bool DeviceFailed { get; init; }
}

/// <summary>
/// Answers once per device, with a reason, whether CharRnn can use the GPU: the driver library loads, cuInit succeeds,
/// the device exists, a cuBLAS handle can be made, and NVRTC compiles and the driver loads a trivial kernel.
/// A missing driver or device is an answer ("not usable because …"), never a crash.
/// </summary>
public static class GpuProbe
{
    static readonly Dictionary<int, GpuProbeResult> Cache = new();
    static readonly Lock Gate = new();

    /// <summary>kernels/probe.cu, embedded in this assembly.</summary>
    static string Trivial()
    {
        using var s = typeof(GpuProbe).Assembly.GetManifestResourceStream("kernels.probe.cu")!;
        return new StreamReader(s).ReadToEnd();
    }

    public static GpuProbeResult Run(int ordinal = 0)
    {
        lock (Gate)
        {
            if (!Cache.TryGetValue(ordinal, out var r)) Cache[ordinal] = r = RunNow(ordinal);
            return r;
        }
    }

    static GpuProbeResult No(string reason) => new(false, reason, null);

    static GpuProbeResult RunNow(int ordinal)
    {
        var driver = NativeLibraries.Load(NativeLibraries.Cuda);
        if (!driver.Ok) return No("the NVIDIA driver library is not installed (" + driver.Describe() + ")");
        var init = CudaDriver.cuInit(0);
        if (init != CUresult.CUDA_SUCCESS) return No("cuInit failed: " + CudaCheck.Describe(init));
        CudaContext? ctx = null;
        try
        {
            int count = CudaContext.DeviceCount();
            if (count == 0) return No("the driver reports no CUDA device");
            ctx = CudaContext.Create(ordinal);
            using var stream = ctx.CreateStream();
            int cublasVersion;
            using (var blas = new Blas(ctx, stream)) cublasVersion = blas.Version;
            if (!KernelCompiler.IsAvailable) return No("NVRTC is not installed (" + KernelCompiler.UnavailableReason + ")");
            var target = KernelCompiler.TargetFor(ctx.ComputeCapability.Major, ctx.ComputeCapability.Minor);
            var image = KernelCompiler.Compile("probe.cu", Trivial(), target, useCache: false);
            using (var module = new CudaModule(ctx, image.Image)) module.Function("probe");
            var info = new GpuInfo(ordinal, count, CudaContext.DriverVersion(), ctx.DeviceName, ctx.ComputeCapability.Major,
                ctx.ComputeCapability.Minor, ctx.MultiprocessorCount, ctx.TotalMemory, cublasVersion, KernelCompiler.Version(), target,
                ctx.CooperativeLaunch, ctx.MaxSharedPerBlockOptin);
            return new GpuProbeResult(true, $"{ctx.DeviceName} ({ctx.Arch})", info);
        }
        catch (CudaException e)
        {
            return No(e.Message) with { DeviceFailed = e.IsDeviceFailure };
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return No(e.Message);
        }
        finally
        {
            ctx?.Dispose();
        }
    }
}
