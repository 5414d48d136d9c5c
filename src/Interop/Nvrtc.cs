using System.Runtime.InteropServices;

namespace CharRnn.Interop;

/// <summary>NVRTC declarations (nvrtc.h). <c>nvrtcGetCUBIN*</c> needs NVRTC ≥ 11.1.</summary>
public static unsafe partial class Nvrtc
{
    const string Lib = NativeLibraries.Nvrtc;

    [LibraryImport(Lib)] public static partial NvrtcResult nvrtcVersion(int* major, int* minor);
    [LibraryImport(Lib)] public static partial NvrtcResult nvrtcGetNumSupportedArchs(int* numArchs);
    [LibraryImport(Lib)] public static partial NvrtcResult nvrtcGetSupportedArchs(int* supportedArchs);
    [LibraryImport(Lib)] public static partial byte* nvrtcGetErrorString(NvrtcResult result);

    [LibraryImport(Lib)]
    public static partial NvrtcResult nvrtcCreateProgram(IntPtr* prog, byte* src, byte* name, int numHeaders, byte** headers, byte** includeNames);
    [LibraryImport(Lib)] public static partial NvrtcResult nvrtcDestroyProgram(IntPtr* prog);
    [LibraryImport(Lib)] public static partial NvrtcResult nvrtcCompileProgram(IntPtr prog, int numOptions, byte** options);
    [LibraryImport(Lib)] public static partial NvrtcResult nvrtcGetProgramLogSize(IntPtr prog, nuint* logSizeRet);
    [LibraryImport(Lib)] public static partial NvrtcResult nvrtcGetProgramLog(IntPtr prog, byte* log);
    [LibraryImport(Lib)] public static partial NvrtcResult nvrtcGetPTXSize(IntPtr prog, nuint* ptxSizeRet);
    [LibraryImport(Lib)] public static partial NvrtcResult nvrtcGetPTX(IntPtr prog, byte* ptx);
    [LibraryImport(Lib)] public static partial NvrtcResult nvrtcGetCUBINSize(IntPtr prog, nuint* cubinSizeRet);
    [LibraryImport(Lib)] public static partial NvrtcResult nvrtcGetCUBIN(IntPtr prog, byte* cubin);
}

public enum NvrtcResult
{
    NVRTC_SUCCESS = 0,
    NVRTC_ERROR_OUT_OF_MEMORY = 1,
    NVRTC_ERROR_PROGRAM_CREATION_FAILURE = 2,
    NVRTC_ERROR_INVALID_INPUT = 3,
    NVRTC_ERROR_INVALID_PROGRAM = 4,
    NVRTC_ERROR_INVALID_OPTION = 5,
    NVRTC_ERROR_COMPILATION = 6,
    NVRTC_ERROR_BUILTIN_OPERATION_FAILURE = 7,
    NVRTC_ERROR_INTERNAL_ERROR = 11,
}
