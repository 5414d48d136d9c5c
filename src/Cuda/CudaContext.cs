using System.Runtime.InteropServices;
using System.Text;
using CharRnn.Interop;

namespace CharRnn.Cuda;

/// <summary>
/// One device's primary context (<c>cuDevicePrimaryCtxRetain</c> + <c>cuCtxSetCurrent</c>; never <c>cuCtxCreate</c>),
/// which is also the context cuBLAS uses. Owns what is registered with <see cref="Own{T}"/> and disposes it in reverse
/// order before releasing the context. <see cref="Bind"/> makes it current on the calling thread (cheaply: it remembers
/// per thread what it set).
/// </summary>
public sealed unsafe class CudaContext : IDisposable
{
    [ThreadStatic] static IntPtr t_current;
    static readonly HashSet<int> s_keptAlive = [];
    readonly List<IDisposable> _owned = [];
    long _allocated, _peak;
    bool _disposed;

    CudaContext(int device, IntPtr handle)
    {
        Device = device;
        Handle = handle;
        DeviceName = GetName(device);
        ComputeCapability = (Attribute(CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device),
                             Attribute(CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device));
        MultiprocessorCount = Attribute(CudaDriver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device);
        CooperativeLaunch = Attribute(CudaDriver.CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH, device) != 0;
        ClusterLaunch = OptionalAttribute(CudaDriver.CU_DEVICE_ATTRIBUTE_CLUSTER_LAUNCH, device) > 0;
        MaxSharedPerBlockOptin = Attribute(CudaDriver.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, device);
        nuint total;
        CudaCheck.ThrowIfFailed(CudaDriver.cuDeviceTotalMem_v2(&total, device));
        TotalMemory = (long)total;
    }

    public int Device { get; }
    public IntPtr Handle { get; }
    public string DeviceName { get; }
    public (int Major, int Minor) ComputeCapability { get; }
    public int MultiprocessorCount { get; }

    /// <summary>The device supports <c>cuLaunchCooperativeKernel</c> (all blocks resident at once; grid barriers).</summary>
    public bool CooperativeLaunch { get; }

    /// <summary>The device launches thread-block clusters (<see cref="CudaKernel.LaunchCluster"/>; sm_90 and newer).</summary>
    public bool ClusterLaunch { get; }

    /// <summary>Dynamic shared memory one block may use after opting in (<see cref="CudaKernel.AllowDynamicShared"/>).</summary>
    public int MaxSharedPerBlockOptin { get; }
    public long TotalMemory { get; }

    /// <summary>"sm_90" for compute capability 9.0.</summary>
    public string Arch => $"sm_{ComputeCapability.Major}{ComputeCapability.Minor}";

    /// <summary>Bytes currently allocated through this context's <see cref="DeviceBuffer{T}"/>s.</summary>
    public long AllocatedBytes => Interlocked.Read(ref _allocated);

    /// <summary>The most <see cref="AllocatedBytes"/> has been since the context was made or <see cref="ResetPeak"/>
    /// (CharRnn's own buffers; cuBLAS's workspace and the driver's graph memory are not counted).</summary>
    public long PeakAllocatedBytes => Interlocked.Read(ref _peak);

    public void ResetPeak() => Interlocked.Exchange(ref _peak, AllocatedBytes);

    internal void TrackAllocation(long bytes)
    {
        long now = Interlocked.Add(ref _allocated, bytes);
        for (long seen = Interlocked.Read(ref _peak); now > seen; seen = Interlocked.Read(ref _peak))
            if (Interlocked.CompareExchange(ref _peak, now, seen) == seen) break;
    }

    /// <summary>cuInit(0), then the primary context of device <paramref name="ordinal"/>, made current.</summary>
    public static CudaContext Create(int ordinal)
    {
        CudaCheck.ThrowIfFailed(CudaDriver.cuInit(0));
        int count = DeviceCount();
        if (ordinal < 0 || ordinal >= count)
            throw new CudaException($"CUDA device {ordinal} does not exist: this machine has {count} device(s) (use cuda:0{(count > 1 ? $"…cuda:{count - 1}" : "")}).");
        int dev;
        CudaCheck.ThrowIfFailed(CudaDriver.cuDeviceGet(&dev, ordinal));
        IntPtr ctx;
        CudaCheck.ThrowIfFailed(CudaDriver.cuDevicePrimaryCtxRetain(&ctx, dev));
        lock (s_keptAlive)
        {
            // One extra retain per device for the life of the process: releasing the last reference destroys the primary
            // context (and creating it again costs ~0.1–0.5 s), which a test suite or a probe-then-train would pay each
            // time. The driver tears it down at exit.
            if (s_keptAlive.Add(dev))
            {
                IntPtr extra;
                CudaCheck.ThrowIfFailed(CudaDriver.cuDevicePrimaryCtxRetain(&extra, dev));
            }
        }
        CudaCheck.ThrowIfFailed(CudaDriver.cuCtxSetCurrent(ctx));
        t_current = ctx;
        return new CudaContext(dev, ctx);
    }

    public static int DeviceCount()
    {
        int n;
        CudaCheck.ThrowIfFailed(CudaDriver.cuDeviceGetCount(&n));
        return n;
    }

    /// <summary>Driver API version, e.g. 13000 for CUDA 13.0.</summary>
    public static int DriverVersion()
    {
        int v;
        CudaCheck.ThrowIfFailed(CudaDriver.cuDriverGetVersion(&v));
        return v;
    }

    /// <summary>True after <see cref="Dispose"/>. The primary context itself lives on (it is kept alive for the process),
    /// so buffers disposed later can still be freed through <see cref="BindForCleanup"/>.</summary>
    public bool IsDisposed => _disposed;

    /// <summary>Makes the (kept-alive) primary context current even after <see cref="Dispose"/>, to free memory.</summary>
    internal void BindForCleanup()
    {
        if (t_current == Handle) return;
        if (CudaDriver.cuCtxSetCurrent(Handle) == CUresult.CUDA_SUCCESS) t_current = Handle;
    }

    public void Bind()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (t_current == Handle) return;
        CudaCheck.ThrowIfFailed(CudaDriver.cuCtxSetCurrent(Handle));
        t_current = Handle;
    }

    public void Synchronize()
    {
        Bind();
        CudaCheck.ThrowIfFailed(CudaDriver.cuCtxSynchronize());
    }

    /// <summary>Free and total device memory (bytes), as the driver sees it.</summary>
    public (long Free, long Total) MemoryInfo()
    {
        Bind();
        nuint free, total;
        CudaCheck.ThrowIfFailed(CudaDriver.cuMemGetInfo_v2(&free, &total));
        return ((long)free, (long)total);
    }

    public DeviceBuffer<T> Allocate<T>(long length) where T : unmanaged => new(this, length);
    public PinnedBuffer<T> AllocatePinned<T>(int length) where T : unmanaged => new(this, length);
    public CudaStream CreateStream() => new(this);
    public CudaEvent CreateEvent(bool timing = false) => new(this, timing);

    /// <summary>Registers a resource to be disposed (in reverse order) with the context.</summary>
    public T Own<T>(T resource) where T : IDisposable
    {
        _owned.Add(resource);
        return resource;
    }

    /// <summary>An attribute a driver older than the attribute may not know: −1 then (CUDA_ERROR_INVALID_VALUE).</summary>
    static int OptionalAttribute(int attribute, int device)
    {
        int v;
        return CudaDriver.cuDeviceGetAttribute(&v, attribute, device) == CUresult.CUDA_SUCCESS ? v : -1;
    }

    static int Attribute(int attribute, int device)
    {
        int v;
        CudaCheck.ThrowIfFailed(CudaDriver.cuDeviceGetAttribute(&v, attribute, device));
        return v;
    }

    static string GetName(int device)
    {
        var buf = stackalloc byte[256];
        CudaCheck.ThrowIfFailed(CudaDriver.cuDeviceGetName(buf, 256, device));
        return Marshal.PtrToStringUTF8((IntPtr)buf) ?? "?";
    }

    public void Dispose()
    {
        if (_disposed) return;
        Bind();
        for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
        _owned.Clear();
        _disposed = true;
        CudaDriver.cuDevicePrimaryCtxRelease_v2(Device);
        if (t_current == Handle) t_current = IntPtr.Zero;
    }

    internal static byte[] Utf8Z(string s)
    {
        var b = new byte[Encoding.UTF8.GetByteCount(s) + 1];
        Encoding.UTF8.GetBytes(s, b);
        return b;
    }
}
