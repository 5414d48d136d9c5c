using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using CharRnn.Interop;

namespace CharRnn.Cuda;

/// <summary>A failed CUDA driver, cuBLAS or NVRTC call: which call, which status, and the library's own words.</summary>
public class CudaException(string message) : Exception(message)
{
    public CUresult? DriverStatus { get; init; }

    /// <summary>The device itself failed (a driver status, a cuBLAS allocation), not NVRTC: a GPU failure.</summary>
    public bool IsDeviceFailure => DriverStatus != null || Message.Contains("ALLOC_FAILED", StringComparison.Ordinal);
}

/// <summary><c>ThrowIfFailed</c> per library, naming the failing expression (ILGPU style).</summary>
public static unsafe class CudaCheck
{
    public static void ThrowIfFailed(CUresult status, [CallerArgumentExpression(nameof(status))] string call = "")
    {
        if (status != CUresult.CUDA_SUCCESS)
            throw new CudaException($"{CallName(call)} failed: {Describe(status)}") { DriverStatus = status };
    }

    public static void ThrowIfFailed(CublasStatus status, [CallerArgumentExpression(nameof(status))] string call = "")
    {
        if (status != CublasStatus.CUBLAS_STATUS_SUCCESS)
            throw new CudaException($"{CallName(call)} failed: {Describe(status)}");
    }

    public static void ThrowIfFailed(NvrtcResult status, [CallerArgumentExpression(nameof(status))] string call = "")
    {
        if (status != NvrtcResult.NVRTC_SUCCESS)
            throw new CudaException($"{CallName(call)} failed: {Describe(status)}");
    }

    /// <summary>"CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)".</summary>
    public static string Describe(CUresult status)
    {
        byte* name = null, text = null;
        try
        {
            CudaDriver.cuGetErrorName(status, &name);
            CudaDriver.cuGetErrorString(status, &text);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
        var n = name != null ? Marshal.PtrToStringUTF8((IntPtr)name) : status.ToString();
        var t = text != null ? Marshal.PtrToStringUTF8((IntPtr)text) : null;
        return t != null ? $"{n} ({t})" : $"{n} ({(int)status})";
    }

    public static string Describe(CublasStatus status)
    {
        try
        {
            var n = Marshal.PtrToStringUTF8((IntPtr)Cublas.cublasGetStatusName(status));
            var t = Marshal.PtrToStringUTF8((IntPtr)Cublas.cublasGetStatusString(status));
            return $"{n} ({t})";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return $"{status} ({(int)status})";
        }
    }

    public static string Describe(NvrtcResult status)
    {
        try { return Marshal.PtrToStringUTF8((IntPtr)Nvrtc.nvrtcGetErrorString(status)) ?? status.ToString(); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return status.ToString(); }
    }

    /// <summary>"CudaDriver.cuMemAlloc_v2(&amp;p, bytes)" → "cuMemAlloc_v2".</summary>
    static string CallName(string call)
    {
        int paren = call.IndexOf('(');
        var head = paren > 0 ? call[..paren] : call;
        int dot = head.LastIndexOf('.');
        return dot >= 0 ? head[(dot + 1)..] : head;
    }
}
