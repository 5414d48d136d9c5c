// emu.h — what the emulator's driver (driver.cpp), cuBLAS (cublas.cpp) and kernel registry share.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

struct emu_dim3 { unsigned x, y, z; };
struct emu_thread_ctx { emu_dim3 threadIdx, blockIdx, blockDim, gridDim; };
extern emu_thread_ctx* emu_tc; // the running CUDA thread's indices, set by the scheduler before each resume
void emu_syncthreads();

namespace emu
{
// ---- kernel registry: every kernels/*.cu function, compiled for the host, with its C signature ----------------------
struct Kernel
{
    const char* name;
    int max_threads;                 // __launch_bounds__ (1024 if none)
    std::vector<size_t> sizes;       // sizeof each parameter, in order
    std::vector<bool> is_pointer;    // parameter is a pointer (checked against the live allocations at launch)
    void* fn;
    void (*invoke)(void* fn, const unsigned char* packed, const size_t* offsets);
};

void register_kernel(Kernel k);

template <typename T> T load(const unsigned char* p) { T v; std::memcpy(&v, p, sizeof(T)); return v; }

template <typename... A, size_t... I>
void call(void (*f)(A...), const unsigned char* packed, const size_t* offsets, std::index_sequence<I...>)
{
    f(load<A>(packed + offsets[I])...);
}

template <typename... A> int add(const char* name, void (*f)(A...), int max_threads)
{
    Kernel k{name, max_threads, {sizeof(A)...}, {std::is_pointer<A>::value...}, (void*)f,
             [](void* fn, const unsigned char* packed, const size_t* offsets)
             { call((void (*)(A...))fn, packed, offsets, std::index_sequence_for<A...>{}); }};
    register_kernel(std::move(k));
    return 0;
}

// ---- shared with cublas.cpp ----------------------------------------------------------------------------------------
using Result = int; // CUresult
std::recursive_mutex& api_mutex();          // held by every API call, and while queued work runs
Result begin(const char* api);                 // initialised, a current live context, no sticky error
Result fail(int code, const std::string& why); // prints once, makes `code` sticky (like an illegal address on a GPU)
bool device_range(uint64_t p, uint64_t bytes); // [p, p + bytes) inside one live device allocation
Result enqueue(void* stream, const std::string& what, std::function<void()> op); // in stream order, or into a capture
}

#define EMU_REGISTER(name, max_threads) static int emu_reg_##name = emu::add(#name, &name, max_threads);
