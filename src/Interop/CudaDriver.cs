using System.Runtime.InteropServices;

namespace CharRnn.Interop;

/// <summary>
/// CUDA driver API declarations (cuda.h), only what we call. Names are the exported C symbols, versioned where the
/// header maps a name to a versioned symbol (<c>cuMemAlloc</c> → <c>cuMemAlloc_v2</c>). Handles are opaque pointers;
/// <c>CUdeviceptr</c> is a 64-bit integer; <c>CUdevice</c> an int. Every function returns a <see cref="CUresult"/>.
/// Never bind <c>cuCtxCreate</c>: its ABI changed in CUDA 13 (<c>cuCtxCreate_v4</c>); we use the primary context.
/// </summary>
public static unsafe partial class CudaDriver
{
    const string Lib = NativeLibraries.Cuda;

    // CUdevice_attribute values used.
    public const int CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 1;
    public const int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
    public const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
    public const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
    public const int CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH = 95;
    public const int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
    public const int CU_DEVICE_ATTRIBUTE_CLUSTER_LAUNCH = 120;

    // CUfunction_attribute values used.
    public const int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
    public const int CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED = 14;

    // CUlaunchAttributeID values used.
    public const int CU_LAUNCH_ATTRIBUTE_COOPERATIVE = 2;
    public const int CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION = 4;

    public const uint CU_STREAM_NON_BLOCKING = 1;
    public const uint CU_EVENT_DEFAULT = 0;
    public const uint CU_EVENT_DISABLE_TIMING = 2;
    public const int CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1;

    [LibraryImport(Lib)] public static partial CUresult cuInit(uint flags);
    [LibraryImport(Lib)] public static partial CUresult cuDriverGetVersion(int* driverVersion);
    [LibraryImport(Lib)] public static partial CUresult cuGetErrorName(CUresult error, byte** pStr);
    [LibraryImport(Lib)] public static partial CUresult cuGetErrorString(CUresult error, byte** pStr);

    [LibraryImport(Lib)] public static partial CUresult cuDeviceGetCount(int* count);
    [LibraryImport(Lib)] public static partial CUresult cuDeviceGet(int* device, int ordinal);
    [LibraryImport(Lib)] public static partial CUresult cuDeviceGetName(byte* name, int len, int dev);
    [LibraryImport(Lib)] public static partial CUresult cuDeviceGetAttribute(int* pi, int attrib, int dev);
    [LibraryImport(Lib)] public static partial CUresult cuDeviceTotalMem_v2(nuint* bytes, int dev);

    [LibraryImport(Lib)] public static partial CUresult cuDevicePrimaryCtxRetain(IntPtr* pctx, int dev);
    [LibraryImport(Lib)] public static partial CUresult cuDevicePrimaryCtxRelease_v2(int dev);
    [LibraryImport(Lib)] public static partial CUresult cuCtxSetCurrent(IntPtr ctx);
    [LibraryImport(Lib)] public static partial CUresult cuCtxSynchronize();

    [LibraryImport(Lib)] public static partial CUresult cuMemAlloc_v2(ulong* dptr, nuint bytesize);
    [LibraryImport(Lib)] public static partial CUresult cuMemFree_v2(ulong dptr);
    [LibraryImport(Lib)] public static partial CUresult cuMemGetInfo_v2(nuint* free, nuint* total);
    [LibraryImport(Lib)] public static partial CUresult cuMemAllocHost_v2(void** pp, nuint bytesize);
    [LibraryImport(Lib)] public static partial CUresult cuMemFreeHost(void* p);
    [LibraryImport(Lib)] public static partial CUresult cuMemcpyDtoH_v2(void* dstHost, ulong srcDevice, nuint byteCount);
    [LibraryImport(Lib)] public static partial CUresult cuMemcpyHtoDAsync_v2(ulong dstDevice, void* srcHost, nuint byteCount, IntPtr hStream);
    [LibraryImport(Lib)] public static partial CUresult cuMemcpyDtoDAsync_v2(ulong dstDevice, ulong srcDevice, nuint byteCount, IntPtr hStream);
    [LibraryImport(Lib)] public static partial CUresult cuMemsetD32Async(ulong dstDevice, uint ui, nuint n, IntPtr hStream);

    [LibraryImport(Lib)] public static partial CUresult cuModuleLoadData(IntPtr* module, void* image);
    [LibraryImport(Lib)] public static partial CUresult cuModuleUnload(IntPtr hmod);
    [LibraryImport(Lib)] public static partial CUresult cuModuleGetFunction(IntPtr* hfunc, IntPtr hmod, byte* name);
    [LibraryImport(Lib)]
    public static partial CUresult cuLaunchKernel(IntPtr f, uint gridDimX, uint gridDimY, uint gridDimZ,
        uint blockDimX, uint blockDimY, uint blockDimZ, uint sharedMemBytes, IntPtr hStream, void** kernelParams, void** extra);
    [LibraryImport(Lib)]
    public static partial CUresult cuLaunchCooperativeKernel(IntPtr f, uint gridDimX, uint gridDimY, uint gridDimZ,
        uint blockDimX, uint blockDimY, uint blockDimZ, uint sharedMemBytes, IntPtr hStream, void** kernelParams);
    /// <summary><c>cuLaunchKernelEx(const CUlaunchConfig*, CUfunction, void** kernelParams, void** extra)</c> (CUDA 12.0+).</summary>
    [LibraryImport(Lib)] public static partial CUresult cuLaunchKernelEx(CUlaunchConfig* config, IntPtr f, void** kernelParams, void** extra);
    /// <summary><c>cuOccupancyMaxActiveClusters(int*, CUfunction, const CUlaunchConfig*)</c>: how many clusters of the
    /// config's cluster dimension can be resident at once.</summary>
    [LibraryImport(Lib)] public static partial CUresult cuOccupancyMaxActiveClusters(int* numClusters, IntPtr func, CUlaunchConfig* config);
    [LibraryImport(Lib)] public static partial CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int* numBlocks, IntPtr func, int blockSize, nuint dynamicSMemSize);
    [LibraryImport(Lib)] public static partial CUresult cuFuncSetAttribute(IntPtr hfunc, int attrib, int value);

    [LibraryImport(Lib)] public static partial CUresult cuStreamCreate(IntPtr* phStream, uint flags);
    [LibraryImport(Lib)] public static partial CUresult cuStreamDestroy_v2(IntPtr hStream);
    [LibraryImport(Lib)] public static partial CUresult cuStreamSynchronize(IntPtr hStream);

    [LibraryImport(Lib)] public static partial CUresult cuEventCreate(IntPtr* phEvent, uint flags);
    [LibraryImport(Lib)] public static partial CUresult cuEventDestroy_v2(IntPtr hEvent);
    [LibraryImport(Lib)] public static partial CUresult cuEventRecord(IntPtr hEvent, IntPtr hStream);
    [LibraryImport(Lib)] public static partial CUresult cuStreamWaitEvent(IntPtr hStream, IntPtr hEvent, uint flags);
    [LibraryImport(Lib)] public static partial CUresult cuEventSynchronize(IntPtr hEvent);
    /// <summary>CUDA_SUCCESS once the event's work is done, CUDA_ERROR_NOT_READY before.</summary>
    [LibraryImport(Lib)] public static partial CUresult cuEventQuery(IntPtr hEvent);
    [LibraryImport(Lib)] public static partial CUresult cuEventElapsedTime(float* pMilliseconds, IntPtr hStart, IntPtr hEnd);

    [LibraryImport(Lib)] public static partial CUresult cuStreamBeginCapture_v2(IntPtr hStream, int mode);
    [LibraryImport(Lib)] public static partial CUresult cuStreamEndCapture(IntPtr hStream, IntPtr* phGraph);
    [LibraryImport(Lib)] public static partial CUresult cuGraphInstantiateWithFlags(IntPtr* phGraphExec, IntPtr hGraph, ulong flags);
    [LibraryImport(Lib)] public static partial CUresult cuGraphLaunch(IntPtr hGraphExec, IntPtr hStream);
    [LibraryImport(Lib)] public static partial CUresult cuGraphExecDestroy(IntPtr hGraphExec);
    [LibraryImport(Lib)] public static partial CUresult cuGraphDestroy(IntPtr hGraph);
}

/// <summary>CUresult values (cuda.h); only the ones we name in messages are listed, others print as numbers.</summary>
public enum CUresult
{
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_DEINITIALIZED = 4,
    CUDA_ERROR_NO_DEVICE = 100,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_NO_BINARY_FOR_GPU = 209,
    CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_NOT_READY = 600,
    CUDA_ERROR_ILLEGAL_ADDRESS = 700,
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
    CUDA_ERROR_LAUNCH_FAILED = 719,
    CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE = 720,
    CUDA_ERROR_NOT_SUPPORTED = 801,
    CUDA_ERROR_SYSTEM_DRIVER_MISMATCH = 803,
    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900,
    CUDA_ERROR_INVALID_CLUSTER_SIZE = 912,
    CUDA_ERROR_UNKNOWN = 999,
}

/// <summary><c>CUlaunchAttribute</c>: the id, 4 bytes of padding, then <c>CUlaunchAttributeValue</c>, a 64-byte union
/// (72 bytes). Only the members we set are named: <c>clusterDim</c> {x, y, z} and <c>cooperative</c> (both at offset 8).</summary>
[StructLayout(LayoutKind.Explicit, Size = 72)]
public struct CUlaunchAttribute
{
    [FieldOffset(0)] public int id;
    [FieldOffset(8)] public uint clusterDimX;
    [FieldOffset(12)] public uint clusterDimY;
    [FieldOffset(16)] public uint clusterDimZ;
    [FieldOffset(8)] public int cooperative;
}

/// <summary><c>CUlaunchConfig</c> (cuda.h, CUDA 12.0+): grid, block, dynamic shared bytes, stream, attribute list
/// (56 bytes on 64-bit).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct CUlaunchConfig
{
    public uint gridDimX, gridDimY, gridDimZ;
    public uint blockDimX, blockDimY, blockDimZ;
    public uint sharedMemBytes;
    public IntPtr hStream;
    public CUlaunchAttribute* attrs;
    public uint numAttrs;
}
