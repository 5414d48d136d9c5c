using CharRnn.Interop;

namespace CharRnn.Cuda;

/// <summary>
/// <paramref name="length"/> elements of <typeparamref name="T"/> in device memory, owned by a <see cref="CudaContext"/>.
/// Freed by <see cref="Dispose"/> only: there is no finalizer (freeing device memory from the finalizer thread, possibly
/// after the context is gone, is undefined).
/// </summary>
public sealed unsafe class DeviceBuffer<T> : IDisposable where T : unmanaged
{
    readonly CudaContext _ctx;
    ulong _ptr;

    internal DeviceBuffer(CudaContext ctx, long length)
    {
        _ctx = ctx;
        Length = length;
        if (length == 0) return;
        ctx.Bind();
        ulong p;
        var status = CudaDriver.cuMemAlloc_v2(&p, (nuint)(length * sizeof(T)));
        if (status == CUresult.CUDA_ERROR_OUT_OF_MEMORY)
            throw new CudaException($"the GPU ran out of memory (CUDA_ERROR_OUT_OF_MEMORY) allocating {Size(length * sizeof(T))} on {ctx.DeviceName}. " +
                "Use a smaller --hidden, --batch or --steps, or --device cpu") { DriverStatus = status };
        CudaCheck.ThrowIfFailed(status);
        _ptr = p;
        ctx.TrackAllocation(SizeInBytes);
    }

    static string Size(long bytes) => bytes >= 1 << 20 ? $"{bytes / 1048576.0:F1} MiB" : $"{bytes} bytes";

    public long Length { get; }
    public long SizeInBytes => Length * sizeof(T);

    /// <summary>The device address (CUdeviceptr).</summary>
    public ulong Pointer => _ptr != 0 || Length == 0 ? _ptr : throw new ObjectDisposedException(nameof(DeviceBuffer<T>));

    /// <summary>Address of element <paramref name="index"/>.</summary>
    public ulong At(long index) => Pointer + (ulong)(index * sizeof(T));

    public void Dispose()
    {
        if (_ptr == 0) return;
        _ctx.BindForCleanup(); // also after the context object is disposed: the primary context is kept alive
        CudaDriver.cuMemFree_v2(_ptr);
        _ctx.TrackAllocation(-SizeInBytes);
        _ptr = 0;
    }
}

/// <summary>Page-locked host memory for truly asynchronous copies. Freed by Dispose only.</summary>
public sealed unsafe class PinnedBuffer<T> : IDisposable where T : unmanaged
{
    readonly CudaContext _ctx;
    void* _p;

    internal PinnedBuffer(CudaContext ctx, int length)
    {
        _ctx = ctx;
        Length = length;
        ctx.Bind();
        void* p;
        CudaCheck.ThrowIfFailed(CudaDriver.cuMemAllocHost_v2(&p, (nuint)(Math.Max(1, length) * sizeof(T))));
        _p = p;
    }

    public int Length { get; }
    public Span<T> Span => new(_p, Length);
    public void* Pointer => _p;

    public void Dispose()
    {
        if (_p == null) return;
        _ctx.BindForCleanup();
        CudaDriver.cuMemFreeHost(_p);
        _p = null;
    }
}
