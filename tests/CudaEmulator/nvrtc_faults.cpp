// nvrtc_faults.cpp — a libnvrtc.so.13 that forwards every call to a real NVRTC (CHARRNN_FAULT_NVRTC_REAL, default
// Debian's libnvrtc.so.11.2) except one: compiling the program named by CHARRNN_EMULATOR_FAIL_COMPILE fails with
// NVRTC_ERROR_COMPILATION and a two-line log, as an NVRTC that cannot compile CharRnn's kernels would. Built by build.sh
// into OUT/nvrtc-faults/; tests put that folder first in CHARRNN_CUDA_LIB_DIR to reach CharRnn's compile-error path.
// Exports exactly the functions src/Interop/Nvrtc.cs binds.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <map>
#include <mutex>
#include <string>

typedef int nvrtcResult;
typedef void* nvrtcProgram;
#define API extern "C" __attribute__((visibility("default")))

namespace
{
std::mutex g_mutex;
std::map<nvrtcProgram, std::string> g_names;  // program → its name
std::map<nvrtcProgram, std::string> g_failed; // program → the injected log

void* real(const char* symbol)
{
    static void* lib = [] {
        const char* path = getenv("CHARRNN_FAULT_NVRTC_REAL");
        void* h = dlopen(path ? path : "libnvrtc.so.11.2", RTLD_NOW | RTLD_LOCAL);
        if (!h) { fprintf(stderr, "nvrtc_faults: cannot load the real NVRTC: %s\n", dlerror()); abort(); }
        return h;
    }();
    void* f = dlsym(lib, symbol);
    if (!f) { fprintf(stderr, "nvrtc_faults: the real NVRTC has no %s\n", symbol); abort(); }
    return f;
}
}

#define FORWARD(ret, name, params, args) \
    API ret name params { return ((ret(*) params)real(#name)) args; }

FORWARD(nvrtcResult, nvrtcVersion, (int* major, int* minor), (major, minor))
FORWARD(nvrtcResult, nvrtcGetNumSupportedArchs, (int* n), (n))
FORWARD(nvrtcResult, nvrtcGetSupportedArchs, (int* a), (a))
FORWARD(const char*, nvrtcGetErrorString, (nvrtcResult r), (r))
FORWARD(nvrtcResult, nvrtcGetPTXSize, (nvrtcProgram p, size_t* n), (p, n))
FORWARD(nvrtcResult, nvrtcGetPTX, (nvrtcProgram p, char* ptx), (p, ptx))
FORWARD(nvrtcResult, nvrtcGetCUBINSize, (nvrtcProgram p, size_t* n), (p, n))
FORWARD(nvrtcResult, nvrtcGetCUBIN, (nvrtcProgram p, char* cubin), (p, cubin))

API nvrtcResult nvrtcCreateProgram(nvrtcProgram* p, const char* src, const char* name, int n, const char* const* headers,
                                   const char* const* names)
{
    auto f = (nvrtcResult(*)(nvrtcProgram*, const char*, const char*, int, const char* const*, const char* const*))real("nvrtcCreateProgram");
    nvrtcResult r = f(p, src, name, n, headers, names);
    std::lock_guard<std::mutex> lock(g_mutex);
    if (r == 0) g_names[*p] = name ? name : "";
    return r;
}

API nvrtcResult nvrtcDestroyProgram(nvrtcProgram* p)
{
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        g_names.erase(*p);
        g_failed.erase(*p);
    }
    return ((nvrtcResult(*)(nvrtcProgram*))real("nvrtcDestroyProgram"))(p);
}

API nvrtcResult nvrtcCompileProgram(nvrtcProgram p, int n, const char* const* options)
{
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        const char* fail = getenv("CHARRNN_EMULATOR_FAIL_COMPILE");
        if (fail && g_names[p] == fail)
        {
            g_failed[p] = g_names[p] + "(1): error: injected by CHARRNN_EMULATOR_FAIL_COMPILE\n1 error detected in the compilation of \"" + g_names[p] + "\".";
            return 6; // NVRTC_ERROR_COMPILATION
        }
    }
    return ((nvrtcResult(*)(nvrtcProgram, int, const char* const*))real("nvrtcCompileProgram"))(p, n, options);
}

API nvrtcResult nvrtcGetProgramLogSize(nvrtcProgram p, size_t* n)
{
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        if (auto it = g_failed.find(p); it != g_failed.end()) { *n = it->second.size() + 1; return 0; }
    }
    return ((nvrtcResult(*)(nvrtcProgram, size_t*))real("nvrtcGetProgramLogSize"))(p, n);
}

API nvrtcResult nvrtcGetProgramLog(nvrtcProgram p, char* log)
{
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        if (auto it = g_failed.find(p); it != g_failed.end()) { memcpy(log, it->second.c_str(), it->second.size() + 1); return 0; }
    }
    return ((nvrtcResult(*)(nvrtcProgram, char*))real("nvrtcGetProgramLog"))(p, log);
}
