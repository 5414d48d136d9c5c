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
    public string Name { get; } = name;

    public void Launch(uint grid, uint block, uint sharedBytes, CudaStream stream, params ReadOnlySpan<KernelArg> args)
    {
        var values = stackalloc ulong[args.Length];
        var pointers = stackalloc void*[args.Length];
        for (int i = 0; i < args.Length; i++)
        {
            values[i] = args[i].Bits;
            pointers[i] = &values[i];
        }
        var status = CudaDriver.cuLaunchKernel(handle, grid, 1, 1, block, 1, 1, sharedBytes, stream.Handle, pointers, null);
        if (status != CUresult.CUDA_SUCCESS)
            throw new CudaException($"Launching kernel {Name} (grid {grid}, block {block}) failed: {CudaCheck.Describe(status)}") { DriverStatus = status };
    }
}
