using CharRnn.Interop;

namespace CharRnn.Cuda;

/// <summary>One kernel argument, stored as 8 bytes (int and float use the low 4, little-endian as CUDA expects).</summary>
public readonly struct KernelArg
{
    readonly ulong _bits;
    KernelArg(ulong bits) => _bits = bits;
    public ulong Bits => _bits;

    public static implicit operator KernelArg(int v) => new((uint)v);
    public static implicit operator KernelArg(float v) => new(BitConverter.SingleToUInt32Bits(v));
    public static implicit operator KernelArg(double v) => new(BitConverter.DoubleToUInt64Bits(v));

    /// <summary>An unsigned 64-bit integer (<c>unsigned long long</c>).</summary>
    public static KernelArg U64(ulong v) => new(v);

    /// <summary>A device pointer (CUdeviceptr); 0 is a null pointer.</summary>
    public static KernelArg Ptr(ulong devicePointer) => new(devicePointer);
}

/// <summary>A loaded module (cubin or PTX image) and its kernels.</summary>
public sealed unsafe class CudaModule : IDisposable
{
    readonly CudaContext _ctx;
    IntPtr _module;

    public CudaModule(CudaContext ctx, byte[] image)
    {
        _ctx = ctx;
        ctx.Bind();
        IntPtr m;
        fixed (byte* p = image) CudaCheck.ThrowIfFailed(CudaDriver.cuModuleLoadData(&m, p));
        _module = m;
    }

    public CudaKernel Function(string name)
    {
        _ctx.Bind();
        IntPtr f;
        var z = CudaContext.Utf8Z(name);
        fixed (byte* p = z)
        {
            var status = CudaDriver.cuModuleGetFunction(&f, _module, p);
            if (status != CUresult.CUDA_SUCCESS)
                throw new CudaException($"Kernel '{name}' not found in its module: {CudaCheck.Describe(status)}") { DriverStatus = status };
        }
        return new CudaKernel(name, f);
    }

    public void Dispose()
    {
        if (_module == IntPtr.Zero) return;
        _ctx.BindForCleanup();
        CudaDriver.cuModuleUnload(_module);
        _module = IntPtr.Zero;
    }
}

/// <summary>A kernel function handle; launches are asynchronous on the given stream.</summary>
public sealed unsafe class CudaKernel(string name, IntPtr handle)
{
    int _dynamicSharedLimit = 48 * 1024;

    public string Name { get; } = name;

    public void Launch(uint grid, uint block, uint sharedBytes, CudaStream stream, params ReadOnlySpan<KernelArg> args) =>
        Launch(grid, 1, block, sharedBytes, stream, cooperative: false, args);

    /// <summary>A launch on a <paramref name="gridX"/> × <paramref name="gridY"/> grid (blockIdx.y: e.g. which tensor of a list).</summary>
    public void Launch2D(uint gridX, uint gridY, uint block, uint sharedBytes, CudaStream stream, params ReadOnlySpan<KernelArg> args) =>
        Launch(gridX, gridY, block, sharedBytes, stream, cooperative: false, args);

    /// <summary>
    /// A cooperative launch (<c>cuLaunchCooperativeKernel</c>): the driver guarantees every block is resident at once,
    /// so blocks may wait for each other (a grid barrier). <paramref name="grid"/> must not exceed
    /// <see cref="MaxActiveBlocksPerMultiprocessor"/> × the multiprocessor count.
    /// </summary>
    public void LaunchCooperative(uint grid, uint block, uint sharedBytes, CudaStream stream, params ReadOnlySpan<KernelArg> args) =>
        Launch(grid, 1, block, sharedBytes, stream, cooperative: true, args);

    void Launch(uint grid, uint gridY, uint block, uint sharedBytes, CudaStream stream, bool cooperative, ReadOnlySpan<KernelArg> args)
    {
        var values = stackalloc ulong[args.Length];
        var pointers = stackalloc void*[args.Length];
        for (int i = 0; i < args.Length; i++)
        {
            values[i] = args[i].Bits;
            pointers[i] = &values[i];
        }
        if (sharedBytes > _dynamicSharedLimit) AllowDynamicShared((int)sharedBytes);
        var status = cooperative
            ? CudaDriver.cuLaunchCooperativeKernel(handle, grid, gridY, 1, block, 1, 1, sharedBytes, stream.Handle, pointers)
            : CudaDriver.cuLaunchKernel(handle, grid, gridY, 1, block, 1, 1, sharedBytes, stream.Handle, pointers, null);
        if (status != CUresult.CUDA_SUCCESS)
            throw new CudaException($"Launching kernel {Name}{(cooperative ? " cooperatively" : "")} (grid {grid}{(gridY > 1 ? $"×{gridY}" : "")}, block {block}, {sharedBytes} bytes of shared memory) failed: {CudaCheck.Describe(status)}") { DriverStatus = status };
    }

    /// <summary>Lets launches use more than the default 48 KiB of dynamic shared memory (up to the device's opt-in limit).</summary>
    public void AllowDynamicShared(int bytes)
    {
        CudaCheck.ThrowIfFailed(CudaDriver.cuFuncSetAttribute(handle, CudaDriver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes));
        _dynamicSharedLimit = bytes;
    }

    /// <summary>How many blocks of <paramref name="block"/> threads with <paramref name="sharedBytes"/> of dynamic shared
    /// memory fit on one multiprocessor at once (0: not even one).</summary>
    public int MaxActiveBlocksPerMultiprocessor(int block, int sharedBytes)
    {
        if (sharedBytes > _dynamicSharedLimit) AllowDynamicShared(sharedBytes);
        int n;
        CudaCheck.ThrowIfFailed(CudaDriver.cuOccupancyMaxActiveBlocksPerMultiprocessor(&n, handle, block, (nuint)sharedBytes));
        return n;
    }
}
