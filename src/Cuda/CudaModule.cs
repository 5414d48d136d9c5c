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
        Launch(grid, 1, block, sharedBytes, stream, null, args);

    /// <summary>A launch on a <paramref name="gridX"/> × <paramref name="gridY"/> grid (blockIdx.y: e.g. which tensor of a list).</summary>
    public void Launch2D(uint gridX, uint gridY, uint block, uint sharedBytes, CudaStream stream, params ReadOnlySpan<KernelArg> args) =>
        Launch(gridX, gridY, block, sharedBytes, stream, null, args);

    /// <summary>
    /// A cooperative launch: the driver guarantees every block is resident at once, so blocks may wait for each other
    /// (a grid barrier). <paramref name="grid"/> must not exceed <see cref="MaxActiveBlocksPerMultiprocessor"/> × the
    /// multiprocessor count. Issued as <c>cuLaunchKernelEx</c> with <c>CU_LAUNCH_ATTRIBUTE_COOPERATIVE</c>, which a
    /// stream capture records as a cooperative kernel node (CUDA 12+), and as <c>cuLaunchCooperativeKernel</c> on a
    /// driver without <c>cuLaunchKernelEx</c>.
    /// </summary>
    public void LaunchCooperative(uint grid, uint block, uint sharedBytes, CudaStream stream, params ReadOnlySpan<KernelArg> args)
    {
        if (s_launchEx)
            try
            {
                Launch(grid, 1, block, sharedBytes, stream, new CUlaunchAttribute { id = CudaDriver.CU_LAUNCH_ATTRIBUTE_COOPERATIVE, cooperative = 1 }, args);
                return;
            }
            catch (EntryPointNotFoundException)
            {
                s_launchEx = false; // a CUDA 11 driver: the classic call
            }
        Launch(grid, 1, block, sharedBytes, stream, null, args, classicCooperative: true);
    }

    static bool s_launchEx = true;

    /// <summary>
    /// A launch in thread-block clusters of <paramref name="clusterSize"/> blocks along x (<c>cuLaunchKernelEx</c> with
    /// <c>CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION</c>, sm_90+): the blocks of a cluster are resident at once on one GPC,
    /// may wait for each other (<c>barrier.cluster</c>) and read and write each other's shared memory.
    /// <paramref name="grid"/> must be a multiple of the cluster size; above 8 needs <see cref="AllowNonPortableClusters"/>
    /// (done here).
    /// </summary>
    public void LaunchCluster(uint grid, uint clusterSize, uint block, uint sharedBytes, CudaStream stream, params ReadOnlySpan<KernelArg> args)
    {
        if (clusterSize > 8) AllowNonPortableClusters();
        Launch(grid, 1, block, sharedBytes, stream, ClusterAttribute(clusterSize), args);
    }

    /// <summary>Every launch: the arguments packed as the driver wants them (an array of pointers to the values), then
    /// <c>cuLaunchKernel</c> without an attribute, <c>cuLaunchKernelEx</c> with one, except a cooperative launch on a
    /// driver without it (<c>cuLaunchCooperativeKernel</c>).</summary>
    void Launch(uint grid, uint gridY, uint block, uint sharedBytes, CudaStream stream, CUlaunchAttribute? attribute,
                ReadOnlySpan<KernelArg> args, bool classicCooperative = false)
    {
        var values = stackalloc ulong[args.Length];
        var pointers = stackalloc void*[args.Length];
        for (int i = 0; i < args.Length; i++)
        {
            values[i] = args[i].Bits;
            pointers[i] = &values[i];
        }
        if (sharedBytes > _dynamicSharedLimit) AllowDynamicShared((int)sharedBytes);
        CUresult status;
        string how;
        if (attribute is { } a)
        {
            var config = Config(grid, block, sharedBytes, stream.Handle, &a);
            config.gridDimY = gridY;
            status = CudaDriver.cuLaunchKernelEx(&config, handle, pointers, null);
            how = a.id == CudaDriver.CU_LAUNCH_ATTRIBUTE_COOPERATIVE ? " cooperatively" : $" in clusters of {a.clusterDimX}";
        }
        else if (classicCooperative)
        {
            status = CudaDriver.cuLaunchCooperativeKernel(handle, grid, gridY, 1, block, 1, 1, sharedBytes, stream.Handle, pointers);
            how = " cooperatively";
        }
        else
        {
            status = CudaDriver.cuLaunchKernel(handle, grid, gridY, 1, block, 1, 1, sharedBytes, stream.Handle, pointers, null);
            how = "";
        }
        if (status != CUresult.CUDA_SUCCESS)
            throw new CudaException($"Launching kernel {Name}{how} (grid {grid}{(gridY > 1 ? $"×{gridY}" : "")}, block {block}, {sharedBytes} bytes of shared memory) failed: {CudaCheck.Describe(status)}") { DriverStatus = status };
    }

    /// <summary>How many clusters of <paramref name="clusterSize"/> blocks (<paramref name="block"/> threads,
    /// <paramref name="sharedBytes"/> of dynamic shared memory each) fit on the device at once (0: not even one).</summary>
    public int MaxActiveClusters(int clusterSize, int block, int sharedBytes)
    {
        if (sharedBytes > _dynamicSharedLimit) AllowDynamicShared(sharedBytes);
        if (clusterSize > 8) AllowNonPortableClusters();
        var attr = ClusterAttribute((uint)clusterSize);
        var config = Config((uint)clusterSize, (uint)block, (uint)sharedBytes, IntPtr.Zero, &attr);
        int n;
        var status = CudaDriver.cuOccupancyMaxActiveClusters(&n, handle, &config);
        // A cluster size the device can never hold is reported as an error rather than 0 clusters.
        return status == CUresult.CUDA_SUCCESS ? n : status is CUresult.CUDA_ERROR_INVALID_CLUSTER_SIZE or CUresult.CUDA_ERROR_INVALID_VALUE ? 0 : Throw(status);
    }

    static int Throw(CUresult status) { CudaCheck.ThrowIfFailed(status); return 0; }

    bool _nonPortable;

    /// <summary>Lets this kernel launch in clusters of more than the portable 8 blocks (16 on an H100/H200).</summary>
    public void AllowNonPortableClusters()
    {
        if (_nonPortable) return;
        CudaCheck.ThrowIfFailed(CudaDriver.cuFuncSetAttribute(handle, CudaDriver.CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED, 1));
        _nonPortable = true;
    }

    static CUlaunchAttribute ClusterAttribute(uint size) =>
        new() { id = CudaDriver.CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION, clusterDimX = size, clusterDimY = 1, clusterDimZ = 1 };

    static CUlaunchConfig Config(uint grid, uint block, uint sharedBytes, IntPtr stream, CUlaunchAttribute* attr) => new()
    {
        gridDimX = grid, gridDimY = 1, gridDimZ = 1, blockDimX = block, blockDimY = 1, blockDimZ = 1,
        sharedMemBytes = sharedBytes, hStream = stream, attrs = attr, numAttrs = 1,
    };

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
