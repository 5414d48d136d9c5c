// driver.cpp — libcuda.so.1 of the CUDA emulator: the CUDA driver API functions CharRnn binds (src/Interop/CudaDriver.cs),
// implemented on the CPU so the CUDA backend's host code and the kernels/*.cu sources can be tested without a GPU.
//
// It is a test tool, not a GPU: one device named "CharRnn CUDA emulator (CPU, not a GPU)", compute capability 9.0.
// What it checks that a plain CPU reimplementation would not:
//   * the driver's rules: cuInit first, a current context for every call, valid handles and launch shapes
//     (block ≤ the kernel's __launch_bounds__ read from the CUBIN), kernel names present in the loaded image;
//   * asynchrony: work on a stream runs only when the host synchronises (stream/event/context sync, a synchronous copy,
//     cuMemFree), so reading a pinned buffer before waiting, or reusing a staging buffer too early, gives wrong data;
//     a pageable-memory upload takes its copy at the call, as the real driver does;
//   * memory: every device allocation ends at a PROT_NONE guard page, its tail slack holds a canary checked after
//     each operation, fresh memory is filled with 0xFF (NaN), and every pointer argument of a launch, copy, memset or
//     GEMM must lie inside a live allocation; a violation becomes a sticky CUDA_ERROR_ILLEGAL_ADDRESS, as on a GPU;
//   * graph capture: operations are recorded, synchronising calls during a capture fail and invalidate it.
// What it cannot check: timing, races between streams or threads of a block beyond barrier order, warp-level
// behaviour, float results bit-for-bit as the GPU computes them (host libm and OpenBLAS instead of CUDA's math).
#include "emu.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

typedef int CUresult;
enum
{
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_NO_BINARY_FOR_GPU = 209,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_NOT_READY = 600,
    CUDA_ERROR_ILLEGAL_ADDRESS = 700,
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
    CUDA_ERROR_LAUNCH_FAILED = 719,
    CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE = 720,
    CUDA_ERROR_INVALID_CLUSTER_SIZE = 912,
    CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900,
    CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901,
    CUDA_ERROR_STREAM_CAPTURE_UNJOINED = 904,
    CUDA_ERROR_ILLEGAL_STATE = 401,
};

static const char* error_name(int e)
{
    switch (e)
    {
    case 0: return "CUDA_SUCCESS";
    case 1: return "CUDA_ERROR_INVALID_VALUE";
    case 2: return "CUDA_ERROR_OUT_OF_MEMORY";
    case 3: return "CUDA_ERROR_NOT_INITIALIZED";
    case 101: return "CUDA_ERROR_INVALID_DEVICE";
    case 200: return "CUDA_ERROR_INVALID_IMAGE";
    case 201: return "CUDA_ERROR_INVALID_CONTEXT";
    case 209: return "CUDA_ERROR_NO_BINARY_FOR_GPU";
    case 400: return "CUDA_ERROR_INVALID_HANDLE";
    case 401: return "CUDA_ERROR_ILLEGAL_STATE";
    case 500: return "CUDA_ERROR_NOT_FOUND";
    case 600: return "CUDA_ERROR_NOT_READY";
    case 700: return "CUDA_ERROR_ILLEGAL_ADDRESS";
    case 701: return "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES";
    case 719: return "CUDA_ERROR_LAUNCH_FAILED";
    case 720: return "CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE";
    case 900: return "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED";
    case 901: return "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED";
    case 904: return "CUDA_ERROR_STREAM_CAPTURE_UNJOINED";
    case 912: return "CUDA_ERROR_INVALID_CLUSTER_SIZE";
    default: return nullptr;
    }
}

namespace
{
const char* kDeviceName = "CharRnn CUDA emulator (CPU, not a GPU)";
const size_t kTotalMemory = 16ull << 30;
const size_t kPage = 4096;
// An H100 SXM's limits, for launches and the occupancy calculator.
const int kSMs = 132;
const int kDefaultShared = 48 * 1024;         // dynamic shared memory a launch may use without cuFuncSetAttribute
const int kOptinShared = 227 * 1024;          // CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
const int kSharedPerSM = 228 * 1024;          // of which 1 KiB per resident block is reserved
const int kThreadsPerSM = 2048, kBlocksPerSM = 32;
// Thread-block clusters (sm_90): 8 blocks portable, 16 with CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED; a
// cluster's blocks share one GPC (modelled as 8 GPCs of 16 SMs: an H100 SXM has 8, of 16 to 18 SMs).
const int kPortableCluster = 8, kMaxCluster = 16, kGPCs = 8, kSMsPerGPC = 16;

std::recursive_mutex g_mutex;
bool g_init = false;
int g_sticky = 0;
std::string g_current_op; // what is executing, for messages
bool g_in_work = false;    // executing queued work (kernels, copies, GEMMs)
// Fault injection (tests of CharRnn's error paths): the Nth device allocation fails with CUDA_ERROR_OUT_OF_MEMORY, the
// Nth kernel launch faults when it runs (a sticky CUDA_ERROR_ILLEGAL_ADDRESS, as a bad kernel would on a GPU), a
// cluster launch of the given size is refused (CUDA_ERROR_INVALID_CLUSTER_SIZE, not sticky: a card whose occupancy
// query allowed a cluster shape its launch then refuses).
long g_fail_alloc_at = 0, g_allocs_made = 0, g_fault_launch_at = 0, g_launches_made = 0;
unsigned g_refuse_cluster = 0;

struct Context { int refs = 0; bool live = false; };
Context g_primary;
thread_local Context* t_ctx = nullptr;

struct Alloc { uint64_t base; size_t size, rounded; char* map; size_t maplen; };
std::map<uint64_t, Alloc> g_allocs;
size_t g_allocated = 0;
std::map<uintptr_t, size_t> g_pinned;

struct Op { void* stream; std::string what; std::function<void()> run; };
std::vector<Op> g_pending;

struct Graph { std::vector<Op> ops; };
// A capture begun on an origin stream; other streams join it by waiting on an event recorded in it (a fork) and must
// be joined back (the origin waits on an event recorded after their last captured op) before it ends.
struct Capture { Graph* graph; bool invalid; void* origin; };
std::map<void*, Capture> g_capturing; // stream → capture in progress (this emulator has one capture mode: per thread)
std::map<void*, size_t> g_joined_last; // a joined stream → how many ops the graph held after its last one
std::map<void*, bool> g_joined_back;   // a joined stream → whether the origin has waited for all of it

struct Stream { unsigned flags; };
std::set<Stream*> g_streams;
struct Event
{
    bool timing; bool recorded = false; bool done = false; double ms = 0;
    void* captured_on = nullptr; size_t captured_at = 0; // recorded inside a capture: on which stream, after how many ops
};
std::set<std::shared_ptr<Event>*> g_events;
struct Function;
// functions: the handles cuModuleGetFunction gave out, one per name (as the driver's: attributes set through one
// handle hold for every later lookup of the same kernel).
struct Module { std::set<std::string> names; std::map<std::string, int> max_threads; bool cubin; std::map<std::string, Function*> functions; };
std::set<Module*> g_modules;
struct Function { Module* module; const emu::Kernel* kernel; int max_threads; int max_dynamic_shared = kDefaultShared; bool non_portable_cluster = false; };
std::set<Function*> g_functions;

std::vector<emu::Kernel>& registry()
{
    static std::vector<emu::Kernel> r;
    return r;
}

const unsigned char kCanary = 0xCD;

bool in_capture() { return !g_capturing.empty(); }

double now_ms()
{
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

const Alloc* find_alloc(uint64_t p)
{
    auto it = g_allocs.upper_bound(p);
    if (it == g_allocs.begin()) return nullptr;
    --it;
    const Alloc& a = it->second;
    return p <= a.base + a.size ? &a : nullptr;
}

bool pinned_range(const void* p, size_t n)
{
    auto it = g_pinned.upper_bound((uintptr_t)p);
    if (it == g_pinned.begin()) return false;
    --it;
    return (uintptr_t)p + n <= it->first + it->second;
}

std::string hex(uint64_t p)
{
    char b[32];
    snprintf(b, sizeof b, "0x%llx", (unsigned long long)p);
    return b;
}

bool check_canaries()
{
    for (auto& [base, a] : g_allocs)
    {
        for (size_t i = a.size; i < a.rounded; i++)
        {
            if ((unsigned char)a.map[(a.base - (uint64_t)a.map) + i] != kCanary)
            {
                emu::fail(CUDA_ERROR_ILLEGAL_ADDRESS, g_current_op + " wrote " + std::to_string(i - a.size) +
                          " byte(s) past the end of the " + std::to_string(a.size) + "-byte allocation at " + hex(a.base));
                return false;
            }
        }
    }
    return true;
}

// CHARRNN_EMULATOR_PROFILE=1: time per operation name, printed at exit (to see what the emulator spends time on).
std::map<std::string, std::pair<double, long>>* g_profile = nullptr;

void print_profile()
{
    std::vector<std::pair<double, std::string>> rows;
    double total = 0;
    for (auto& [k, v] : *g_profile) { rows.push_back({v.first, k + " ×" + std::to_string(v.second)}); total += v.first; }
    std::sort(rows.rbegin(), rows.rend());
    fprintf(stderr, "CUDA emulator profile: %.2f s in queued work\n", total / 1000);
    for (size_t i = 0; i < rows.size() && i < 20; i++) fprintf(stderr, "  %9.1f ms  %s\n", rows[i].first, rows[i].second.c_str());
}

// Runs everything enqueued, in order. Synchronising calls come through here.
CUresult flush()
{
    std::vector<Op> ops;
    ops.swap(g_pending);
    for (auto& op : ops)
    {
        if (g_sticky) break;
        g_current_op = op.what;
        double t0 = g_profile ? now_ms() : 0;
        g_in_work = true;
        op.run();
        g_in_work = false;
        if (!g_sticky) check_canaries();
        if (g_profile)
        {
            auto& e = (*g_profile)[op.what];
            e.first += now_ms() - t0;
            e.second++;
        }
    }
    g_current_op.clear();
    return g_sticky;
}

struct sigaction g_previous_segv; // the host's handler (.NET turns faults in managed code into NullReferenceException)
const size_t kStack = 16 * 1024;  // per fiber, above a PROT_NONE page
const size_t kMaxCooperativeThreads = 24576; // fibers of one cooperative launch (see launch)
std::vector<char*> g_stacks;       // each points at the usable stack, just above its guard page

bool in_dynamic_shared_guard(const void* p);

void segv_handler(int sig, siginfo_t* info, void* uc)
{
    if (!g_in_work)
    {
        // Not ours: hand the fault to whoever handled SIGSEGV before the emulator loaded.
        if (g_previous_segv.sa_flags & SA_SIGINFO) { g_previous_segv.sa_sigaction(sig, info, uc); return; }
        if (g_previous_segv.sa_handler != SIG_DFL && g_previous_segv.sa_handler != SIG_IGN) { g_previous_segv.sa_handler(sig); return; }
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    const char* what = "outside every device allocation (a guard page or unmapped memory); on a GPU this is CUDA_ERROR_ILLEGAL_ADDRESS";
    for (char* st : g_stacks)
        if ((char*)info->si_addr >= st - kPage && (char*)info->si_addr < st) what = "its fiber's stack guard page: a CUDA thread used more than 16 KiB of stack";
    if (in_dynamic_shared_guard(info->si_addr)) what = "the page after its block's dynamic shared memory: it used more than the launch's sharedMemBytes";
    char msg[640];
    int n = snprintf(msg, sizeof msg, "\nCUDA emulator: %s touched %p, %s. Aborting.\n",
                     g_current_op.empty() ? "queued work" : g_current_op.c_str(), info->si_addr, what);
    if (n > 0) (void)!write(2, msg, (size_t)n);
    _exit(134);
}

// ---- fibers: the threads of one block (or, in a cooperative launch, of every block) ------------------------------
struct Fiber { void* sp; emu_thread_ctx ctx; Fiber* next; Fiber* prev; unsigned block; };
Fiber* g_fiber = nullptr;
void* g_sched_sp = nullptr;
const emu::Kernel* g_kernel = nullptr;
bool g_direct = false;            // running a block's threads as plain calls (kernels seen never to reach a barrier)
bool g_synced = false;            // a barrier was reached in this launch
std::set<const emu::Kernel*> g_sync_free; // kernels whose first launch reached no barrier
const unsigned char* g_args = nullptr;
const size_t* g_offsets = nullptr;

// Cooperative launches (cuLaunchCooperativeKernel): every block is resident at once, as the driver guarantees, so a
// block may wait for another (a grid barrier). The runnable threads of all blocks are fibers in one ring: a thread
// that reaches __syncthreads() leaves the ring until the last live thread of its block arrives and puts them all back;
// a spinning thread (__nanosleep) yields to the next fiber. A launch in which no thread can go on (all blocked, or only
// spinning for a long while: a barrier that can never complete) is stopped as a deadlock.
struct Fiber;
struct BlockSync { size_t live, arrived; std::vector<Fiber*> waiting; };
bool g_coop = false;       // the running launch's blocks are resident together (a cooperative launch, or one cluster)
bool g_spin_ok = false;    // ... and may spin-wait for each other (a cooperative launch: every block of the grid)
std::vector<BlockSync> g_bsync;
// Thread-block clusters (cuLaunchKernelEx with CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION): the blocks of one cluster run as
// one ring, like a cooperative launch of just those blocks, one cluster after another in a shuffled order.
// barrier.cluster (cluster_sync in common.cuh) waits for every live thread of every block of the cluster.
unsigned g_cluster = 1;    // blocks per cluster of the running launch (1: not a cluster launch)
BlockSync g_csync{0, 0, {}};
size_t g_cluster_barriers = 0; // cluster barriers the running cluster has completed
size_t g_stall = 0, g_stall_limit = 0; // yields since a barrier last completed or a thread finished

// Dynamic shared memory (the launch's sharedMemBytes; kernels reach it through DYNAMIC_SHARED): each block gets its own
// region, filled with 0xFF (so nothing relies on it being zero), ending right at a PROT_NONE page.
char* g_dyn_map = nullptr;
size_t g_dyn_maplen = 0, g_dyn_bytes = 0, g_dyn_stride = 0;
unsigned g_dyn_block = 0; // the block being run, outside cooperative launches

bool in_dynamic_shared_guard(const void* p)
{
    if (!g_dyn_map) return false;
    auto a = (const char*)p;
    if (a < g_dyn_map || a >= g_dyn_map + g_dyn_maplen) return false;
    return (size_t)(a - g_dyn_map) % g_dyn_stride >= g_dyn_stride - kPage;
}

void dynamic_shared_setup(size_t bytes, size_t blocks)
{
    if (g_dyn_map) munmap(g_dyn_map, g_dyn_maplen);
    g_dyn_map = nullptr;
    g_dyn_bytes = bytes;
    if (bytes == 0) return;
    size_t body = (bytes + kPage - 1) & ~(kPage - 1);
    g_dyn_stride = body + kPage;
    g_dyn_maplen = g_dyn_stride * blocks;
    g_dyn_map = (char*)mmap(nullptr, g_dyn_maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g_dyn_map == (char*)MAP_FAILED) { perror("CUDA emulator: dynamic shared memory"); abort(); }
    for (size_t b = 0; b < blocks; b++) mprotect(g_dyn_map + b * g_dyn_stride + body, kPage, PROT_NONE);
}

char* dynamic_shared_of(unsigned block)
{
    size_t body = g_dyn_stride - kPage;
    return g_dyn_map + (size_t)block * g_dyn_stride + body - ((g_dyn_bytes + 15) & ~(size_t)15);
}

// Execution order. A GPU promises no order between the threads of a block (between barriers) or between blocks, so
// by default every launch runs its blocks, and each block's threads, in a fresh pseudo-random order (one random
// stream seeded by CHARRNN_EMULATOR_SEED, default 1: deterministic for a given program). Race-free kernels give
// the same bits in any order, so the suite's bit-identical-repeat tests double as an order-independence check.
// CHARRNN_EMULATOR_ORDER=sequential runs everything in index order instead.
bool g_shuffle = true;
uint64_t g_rng = 1;
std::vector<unsigned> g_thread_order; // of the block being run

uint64_t next_random()
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 2685821657736338717ull;
}

// out = 0..n-1, shuffled unless ordering is sequential.
void order(size_t n, std::vector<unsigned>& out)
{
    out.resize(n);
    for (size_t i = 0; i < n; i++) out[i] = (unsigned)i;
    if (!g_shuffle) return;
    for (size_t i = n - 1; i > 0; i--) std::swap(out[i], out[next_random() % (i + 1)]);
}

// The (x, y, z) of linear index i within a block or grid of shape d (x fastest, as CUDA numbers threads).
emu_dim3 unflatten(size_t i, emu_dim3 d)
{
    return {(unsigned)(i % d.x), (unsigned)(i / d.x % d.y), (unsigned)(i / ((size_t)d.x * d.y))};
}

void run_block(std::vector<Fiber>& fibers, emu_dim3 block, emu_dim3 grid, emu_dim3 bidx);
}

emu_thread_ctx* emu_tc = nullptr;

extern "C" void emu_fiber_switch(void** save_sp, void* to_sp);
extern "C" void emu_fiber_start();

// The live fibers of a block form a ring, in the block's (shuffled) thread order: a fiber that reaches __syncthreads switches straight
// to the next one, so by the time the ring comes round again every live thread has reached the barrier.
static void switch_to_next(Fiber* from, bool finished)
{
    Fiber* next = from->next;
    if (finished)
    {
        from->prev->next = from->next;
        from->next->prev = from->prev;
        if (next == from) { g_fiber = nullptr; emu_fiber_switch(&from->sp, g_sched_sp); return; } // the last one
    }
    else if (next == from) return; // the only live thread: the barrier is already complete
    g_fiber = next;
    emu_tc = &next->ctx;
    emu_fiber_switch(&from->sp, next->sp);
}

// Cooperative launches: stop a launch that cannot go on (on a GPU it would hang until a watchdog, or forever).
[[noreturn]] static void coop_deadlock(Fiber* current)
{
    emu::fail(CUDA_ERROR_LAUNCH_FAILED, "kernel " + std::string(g_kernel->name) +
              ": no thread of the cooperative launch can go on (a barrier or grid barrier that never completes); "
              "the launch is stopped");
    g_fiber = nullptr;
    emu_fiber_switch(&current->sp, g_sched_sp); // abandon the launch: its fibers are never resumed
    __builtin_trap();
}

// Hand the host thread to the next fiber of the ring (a spin-wait).
static void coop_yield()
{
    Fiber* from = g_fiber;
    if (++g_stall > g_stall_limit) coop_deadlock(from);
    Fiber* next = from->next;
    if (next == from) return;
    g_fiber = next;
    emu_tc = &next->ctx;
    emu_fiber_switch(&from->sp, next->sp);
}

// The block's waiting threads go back into the ring, right after the running fiber.
static void coop_release(BlockSync& b)
{
    for (Fiber* f : b.waiting)
    {
        f->prev = g_fiber;
        f->next = g_fiber->next;
        g_fiber->next->prev = f;
        g_fiber->next = f;
    }
    b.waiting.clear();
    b.arrived = 0;
    g_stall = 0;
}

// The running fiber waits at its block's barrier (or its cluster's): out of the ring until released.
static void coop_block(BlockSync* at = nullptr)
{
    Fiber* from = g_fiber;
    Fiber* next = from->next;
    if (next == from) coop_deadlock(from); // every other live thread is waiting too
    from->prev->next = next;
    next->prev = from->prev;
    (at ? *at : g_bsync[from->block]).waiting.push_back(from);
    g_fiber = next;
    emu_tc = &next->ctx;
    emu_fiber_switch(&from->sp, next->sp);
}

extern "C" __attribute__((visibility("default"))) void emu_fiber_main()
{
    g_kernel->invoke(g_kernel->fn, g_args, g_offsets);
    if (g_coop)
    {
        BlockSync& b = g_bsync[g_fiber->block];
        b.live--;
        if (b.arrived > 0 && b.arrived == b.live) coop_release(b); // the exited thread was the last one awaited
        if (g_cluster > 1)
        {
            g_csync.live--;
            if (g_csync.arrived > 0 && g_csync.arrived == g_csync.live) { g_cluster_barriers++; coop_release(g_csync); }
        }
        g_stall = 0;
    }
    switch_to_next(g_fiber, true);
    __builtin_trap();
}

void emu_syncthreads()
{
    if (g_direct)
    {
        fprintf(stderr, "CUDA emulator: kernel %s reached __syncthreads although its first launch never did; "
                        "set CHARRNN_EMULATOR_FIBERS=1 to run every launch with fibers\n", g_kernel->name);
        abort();
    }
    g_synced = true;
    if (g_coop)
    {
        BlockSync& b = g_bsync[g_fiber->block];
        if (++b.arrived == b.live) coop_release(b); // the last one arriving lets the others go, and goes on
        else coop_block();
        return;
    }
    switch_to_next(g_fiber, false);
}

// __trap(): the kernel gave up (a grid barrier that waited too long); on a GPU the launch fails.
void emu_trap()
{
    fprintf(stderr, "CUDA emulator: kernel %s executed __trap()\n", g_kernel->name);
    abort();
}

// __nanosleep in a spin-wait: only a cooperative launch may wait for other blocks (elsewhere they may never run).
void emu_spin_wait()
{
    if (g_spin_ok) { coop_yield(); return; }
    fprintf(stderr, "CUDA emulator: kernel %s spin-waits (__nanosleep) outside a cooperative launch: the blocks it waits "
                    "for may never be resident at the same time; launch it with cuLaunchCooperativeKernel\n", g_kernel->name);
    abort();
}

void* emu_dynamic_shared()
{
    if (g_dyn_bytes == 0)
    {
        fprintf(stderr, "CUDA emulator: kernel %s uses dynamic shared memory but was launched with sharedMemBytes = 0\n",
                g_kernel->name);
        abort();
    }
    return dynamic_shared_of(g_coop ? g_fiber->block : g_dyn_block);
}

// %cluster_ctarank / %cluster_nctarank: a launch without clusters is one cluster of one block (as on a card).
unsigned emu_cluster_rank() { return g_cluster > 1 ? g_fiber->block % g_cluster : 0; }
unsigned emu_cluster_size() { return g_cluster; }

// barrier.cluster.arrive + wait: every live thread of every block of the cluster (a block's barrier without clusters).
void emu_cluster_sync()
{
    if (g_cluster <= 1) { emu_syncthreads(); return; }
    g_synced = true;
    if (++g_csync.arrived == g_csync.live) { g_cluster_barriers++; coop_release(g_csync); }
    else coop_block(&g_csync);
}

// mapa: the address of the same byte of dynamic shared memory in block `rank` of this cluster. Refused (an illegal
// address, as a card's fault) for a rank outside the cluster, an address outside this block's dynamic shared memory
// (the emulator keeps static __shared__ per kernel, not per block), and a block of the cluster that has exited: its
// shared memory is gone, so a kernel must wait at a cluster barrier before any block exits.
void* emu_cluster_map(const void* p, unsigned rank)
{
    unsigned self = g_coop ? g_fiber->block : g_dyn_block;
    std::string why;
    const char* mine = g_dyn_bytes ? dynamic_shared_of(self) : nullptr;
    size_t off = (const char*)p - mine;
    if (rank >= g_cluster)
        why = "maps shared memory of cluster rank " + std::to_string(rank) + " in a cluster of " + std::to_string(g_cluster);
    else if (!mine || (const char*)p < mine || off >= g_dyn_bytes)
        why = "maps an address that is not in its block's dynamic shared memory";
    else if (g_cluster > 1 && rank != self % g_cluster && g_cluster_barriers == 0)
        why = "maps shared memory of cluster rank " + std::to_string(rank) + " before the cluster's first barrier (that block may not have started: cluster_sync first)";
    else if (g_cluster > 1 && g_bsync[self - self % g_cluster + rank].live == 0)
        why = "maps shared memory of cluster rank " + std::to_string(rank) + ", which has exited (wait at a cluster barrier before any block exits)";
    if (!why.empty())
    {
        fprintf(stderr, "CUDA emulator: kernel %s %s\n", g_kernel->name, why.c_str());
        abort();
    }
    return dynamic_shared_of(self - self % g_cluster + rank) + off;
}

namespace
{
void run_block(std::vector<Fiber>& fibers, emu_dim3 block, emu_dim3 grid, emu_dim3 bidx)
{
    size_t n = fibers.size();
    const std::vector<unsigned>& ord = g_thread_order;
    order(n, g_thread_order);
    if (g_dyn_bytes) memset(dynamic_shared_of(g_dyn_block), 0xFF, g_dyn_bytes);
    if (g_direct)
    {
        // No barrier in this kernel: the threads of a block may run one after another.
        Fiber& f = fibers[0];
        f.ctx.blockIdx = bidx;
        f.ctx.blockDim = block;
        f.ctx.gridDim = grid;
        emu_tc = &f.ctx;
        for (size_t i = 0; i < n; i++)
        {
            f.ctx.threadIdx = unflatten(ord[i], block);
            g_kernel->invoke(g_kernel->fn, g_args, g_offsets);
        }
        return;
    }
    for (size_t i = 0; i < n; i++)
    {
        size_t t = ord[i];
        Fiber& f = fibers[t];
        f.next = &fibers[ord[(i + 1) % n]];
        f.prev = &fibers[ord[(i + n - 1) % n]];
        f.ctx.threadIdx = unflatten(t, block);
        f.ctx.blockIdx = bidx;
        f.ctx.blockDim = block;
        f.ctx.gridDim = grid;
        f.block = 0;
        auto* words = (void**)(g_stacks[t] + kStack - 64);
        for (int i = 0; i < 6; i++) words[i] = nullptr;
        words[6] = (void*)&emu_fiber_start;
        f.sp = words;
    }
    Fiber& first = fibers[ord[0]];
    g_fiber = &first;
    emu_tc = &first.ctx;
    emu_fiber_switch(&g_sched_sp, first.sp); // returns when the last thread of the block has finished
}

void ensure_stacks(size_t n)
{
    while (g_stacks.size() < n)
    {
        auto* m = (char*)mmap(nullptr, kPage + kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == (char*)MAP_FAILED) { perror("CUDA emulator: fiber stack"); abort(); } // launch keeps n below the map limit
        mprotect(m, kPage, PROT_NONE); // stacks grow down into this page
        g_stacks.push_back(m + kPage);
    }
}

// Blocks [first, first + count) resident together: every thread of them in one ring, in a shuffled order across the
// blocks (a cooperative launch: the whole grid; a cluster launch: one cluster at a time).
void run_resident(emu_dim3 grid, emu_dim3 block, size_t first, size_t count)
{
    size_t per = (size_t)block.x * block.y * block.z, n = per * count;
    ensure_stacks(n);
    std::vector<Fiber> fibers(n);
    for (size_t b = first; b < first + count; b++) g_bsync[b] = BlockSync{per, 0, {}};
    g_csync = BlockSync{n, 0, {}};
    g_cluster_barriers = 0;
    std::vector<unsigned> ord;
    order(n, ord);
    for (size_t i = 0; i < n; i++)
    {
        size_t t = ord[i];
        Fiber& f = fibers[t];
        f.next = &fibers[ord[(i + 1) % n]];
        f.prev = &fibers[ord[(i + n - 1) % n]];
        f.block = (unsigned)(first + t / per);
        f.ctx.threadIdx = unflatten(t % per, block);
        f.ctx.blockIdx = unflatten(f.block, grid);
        f.ctx.blockDim = block;
        f.ctx.gridDim = grid;
        auto* words = (void**)(g_stacks[t] + kStack - 64);
        for (int w = 0; w < 6; w++) words[w] = nullptr;
        words[6] = (void*)&emu_fiber_start;
        f.sp = words;
    }
    for (size_t b = first; b < first + count && g_dyn_bytes; b++) memset(dynamic_shared_of((unsigned)b), 0xFF, g_dyn_bytes);
    g_coop = true;
    g_stall = 0;
    g_stall_limit = 64 * n + 1000000;
    g_fiber = &fibers[ord[0]];
    emu_tc = &g_fiber->ctx;
    emu_fiber_switch(&g_sched_sp, g_fiber->sp); // returns when the ring is empty (or on a deadlock)
    g_coop = false;
    size_t unfinished = 0;
    for (size_t b = first; b < first + count; b++) unfinished += g_bsync[b].live;
    if (unfinished > 0 && !g_sticky) // the last runnable thread finished while others still waited at a barrier
        emu::fail(CUDA_ERROR_LAUNCH_FAILED, "kernel " + std::string(g_kernel->name) + ": " + std::to_string(unfinished) +
                  " threads of the " + (g_cluster > 1 ? "cluster" : "cooperative launch") + " wait at a barrier that can never complete; the launch is stopped");
}

void run_cooperative(emu_dim3 grid, emu_dim3 block)
{
    size_t blocks = (size_t)grid.x * grid.y * grid.z;
    g_bsync.assign(blocks, BlockSync{0, 0, {}});
    g_spin_ok = true;
    run_resident(grid, block, 0, blocks);
    g_spin_ok = false;
}

// A cluster launch: each cluster's blocks resident together, the clusters one after another in a shuffled order
// (a card promises no order, nor co-residency, between clusters).
void run_clusters(emu_dim3 grid, emu_dim3 block, unsigned cluster)
{
    size_t blocks = (size_t)grid.x * grid.y * grid.z;
    g_bsync.assign(blocks, BlockSync{0, 0, {}});
    g_cluster = cluster;
    std::vector<unsigned> ord;
    order(blocks / cluster, ord);
    for (unsigned c : ord)
    {
        run_resident(grid, block, (size_t)c * cluster, cluster);
        if (g_sticky) break;
    }
    g_cluster = 1;
}

void run_kernel(const emu::Kernel* k, emu_dim3 grid, emu_dim3 block, const std::vector<unsigned char>& args,
                const std::vector<size_t>& offsets, unsigned shared, bool cooperative, unsigned cluster)
{
    size_t n = (size_t)block.x * block.y * block.z;
    g_kernel = k;
    g_args = args.data();
    g_offsets = offsets.data();
    dynamic_shared_setup(shared, cooperative || cluster > 1 ? (size_t)grid.x * grid.y * grid.z : 1);
    g_dyn_block = 0;
    if (cooperative)
    {
        run_cooperative(grid, block);
        emu_tc = nullptr;
        return;
    }
    if (cluster > 1)
    {
        run_clusters(grid, block, cluster);
        emu_tc = nullptr;
        return;
    }
    ensure_stacks(n);
    std::vector<Fiber> fibers(n);
    static const bool always_fibers = getenv("CHARRNN_EMULATOR_FIBERS") != nullptr;
    g_direct = !always_fibers && g_sync_free.count(k) > 0;
    g_synced = false;
    std::vector<unsigned> block_order;
    order((size_t)grid.x * grid.y * grid.z, block_order);
    for (unsigned b : block_order) run_block(fibers, block, grid, unflatten(b, grid));
    if (!g_direct && !g_synced) g_sync_free.insert(k);
    g_direct = false;
    emu_tc = nullptr;
}

// ---- image parsing: kernel names (and launch bounds) from a CUBIN (ELF) or PTX -------------------------------------
bool parse_cubin(const unsigned char* d, Module& m, std::string& why)
{
    auto u16 = [&](size_t o) { uint16_t v; memcpy(&v, d + o, 2); return v; };
    auto u32 = [&](size_t o) { uint32_t v; memcpy(&v, d + o, 4); return v; };
    auto u64 = [&](size_t o) { uint64_t v; memcpy(&v, d + o, 8); return v; };
    if (d[4] != 2) { why = "not a 64-bit ELF"; return false; }
    if (u16(0x12) != 190) { why = "ELF machine is not EM_CUDA (190)"; return false; }
    unsigned sm = u32(0x30) & 0xff;
    if (sm > 90) { why = "CUBIN for sm_" + std::to_string(sm) + ", newer than this device (sm_90)"; return false; }
    uint64_t shoff = u64(0x28);
    unsigned shnum = u16(0x3c), shstrndx = u16(0x3e);
    auto sec = [&](unsigned i) { return shoff + (uint64_t)i * 64; };
    uint64_t shstr = u64(sec(shstrndx) + 24);
    std::map<std::string, unsigned> by_name;
    for (unsigned i = 0; i < shnum; i++) by_name[(const char*)d + shstr + u32(sec(i))] = i;
    for (unsigned i = 0; i < shnum; i++)
    {
        if (u32(sec(i) + 4) != 2) continue; // SHT_SYMTAB
        uint64_t off = u64(sec(i) + 24), size = u64(sec(i) + 32), ent = u64(sec(i) + 56);
        uint64_t strtab = u64(sec(u32(sec(i) + 40)) + 24);
        for (uint64_t s = off; s + ent <= off + size; s += ent)
        {
            unsigned char info = d[s + 4], other = d[s + 5];
            if ((info & 0xf) != 2 || (other & 0x10) == 0) continue; // STT_FUNC with STO_CUDA_ENTRY: a __global__
            std::string name = (const char*)d + strtab + u32(s);
            m.names.insert(name);
            m.max_threads[name] = 1024;
            auto ni = by_name.find(".nv.info." + name);
            if (ni == by_name.end()) continue;
            uint64_t io = u64(sec(ni->second) + 24), isz = u64(sec(ni->second) + 32);
            for (uint64_t p = io; p < io + isz;)
            {
                unsigned fmt = d[p], attr = d[p + 1];
                if (fmt == 4)
                {
                    unsigned len = u16(p + 2);
                    if (attr == 0x05 && len >= 12) m.max_threads[name] = (int)(u32(p + 4) * u32(p + 8) * u32(p + 12)); // EIATTR_MAX_THREADS
                    p += 4 + len;
                }
                else p += fmt == 1 ? 2 : 4;
            }
        }
    }
    m.cubin = true;
    return true;
}

bool parse_ptx(const char* s, Module& m, std::string& why)
{
    std::string text(s);
    size_t t = text.find(".target sm_");
    if (t != std::string::npos && atoi(text.c_str() + t + 11) > 90) { why = "PTX targets an arch newer than sm_90"; return false; }
    for (size_t p = text.find(".entry "); p != std::string::npos; p = text.find(".entry ", p + 1))
    {
        size_t a = p + 7, b = text.find_first_of("( \n", a);
        std::string name = text.substr(a, b - a);
        m.names.insert(name);
        size_t body = text.find('{', b), maxn = text.find(".maxntid", b);
        m.max_threads[name] = maxn != std::string::npos && maxn < body ? atoi(text.c_str() + maxn + 8) : 1024;
    }
    m.cubin = false;
    return !m.names.empty() || (why = "no .entry in the PTX", false);
}

CUresult capture_guard(const char* api)
{
    if (!in_capture()) return CUDA_SUCCESS;
    for (auto& [s, c] : g_capturing) c.invalid = true;
    fprintf(stderr, "CUDA emulator: %s is not allowed while a stream is being captured (the capture is invalidated)\n", api);
    return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
}

CUresult device_check(const char* api, uint64_t p, uint64_t bytes, const char* what)
{
    if (bytes == 0) return CUDA_SUCCESS;
    if (emu::device_range(p, bytes)) return CUDA_SUCCESS;
    fprintf(stderr, "CUDA emulator: %s: %s [%s, +%llu bytes) is not inside one live device allocation\n", api, what,
            hex(p).c_str(), (unsigned long long)bytes);
    return CUDA_ERROR_INVALID_VALUE;
}
} // namespace

// ---- shared with cublas.cpp and the kernel TUs --------------------------------------------------------------------
namespace emu
{
void register_kernel(Kernel k) { registry().push_back(std::move(k)); }

std::recursive_mutex& api_mutex() { return g_mutex; }

Result begin(const char*)
{
    if (!g_init) return CUDA_ERROR_NOT_INITIALIZED;
    if (t_ctx == nullptr || !t_ctx->live) return CUDA_ERROR_INVALID_CONTEXT;
    return g_sticky;
}

Result fail(int code, const std::string& why)
{
    if (!g_sticky) fprintf(stderr, "CUDA emulator: %s → %s (sticky, as on a GPU)\n", why.c_str(), error_name(code));
    g_sticky = code;
    return code;
}

bool device_range(uint64_t p, uint64_t bytes)
{
    const Alloc* a = find_alloc(p);
    return a != nullptr && p + bytes <= a->base + a->size && p + bytes >= p;
}

Result enqueue(void* stream, const std::string& what, std::function<void()> op)
{
    auto c = g_capturing.find(stream);
    if (c != g_capturing.end())
    {
        c->second.graph->ops.push_back({stream, what, std::move(op)});
        if (stream != c->second.origin)
        {
            g_joined_last[stream] = c->second.graph->ops.size();
            g_joined_back[stream] = false;
        }
    }
    else g_pending.push_back({stream, what, std::move(op)});
    return CUDA_SUCCESS;
}
} // namespace emu

#define API extern "C" __attribute__((visibility("default"))) CUresult
#define LOCK std::lock_guard<std::recursive_mutex> lock_(g_mutex)
#define BEGIN(name) LOCK; if (CUresult r_ = emu::begin(name)) return r_

// ---- initialisation, versions, errors ---------------------------------------------------------------------------
API cuInit(unsigned flags)
{
    LOCK;
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
    if (!g_init)
    {
        struct sigaction sa = {};
        sa.sa_sigaction = segv_handler;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        if (getenv("CHARRNN_EMULATOR_NO_SEGV_HANDLER") == nullptr) sigaction(SIGSEGV, &sa, &g_previous_segv);
        if (const char* o = getenv("CHARRNN_EMULATOR_ORDER")) g_shuffle = strcmp(o, "sequential") != 0;
        if (const char* seed = getenv("CHARRNN_EMULATOR_SEED")) g_rng = strtoull(seed, nullptr, 10) * 0x9E3779B97F4A7C15ull | 1;
        if (const char* n = getenv("CHARRNN_EMULATOR_FAIL_ALLOC_AT")) g_fail_alloc_at = strtol(n, nullptr, 10);
        if (const char* n = getenv("CHARRNN_EMULATOR_FAULT_LAUNCH_AT")) g_fault_launch_at = strtol(n, nullptr, 10);
        if (const char* n = getenv("CHARRNN_EMULATOR_REFUSE_CLUSTER")) g_refuse_cluster = (unsigned)strtoul(n, nullptr, 10);
        if (const char* p = getenv("CHARRNN_EMULATOR_PROFILE"); p && *p == '1')
        {
            g_profile = new std::map<std::string, std::pair<double, long>>();
            atexit(print_profile);
        }
    }
    g_init = true;
    return CUDA_SUCCESS;
}

API cuDriverGetVersion(int* v)
{
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    *v = 13000;
    return CUDA_SUCCESS;
}

API cuGetErrorName(CUresult e, const char** s)
{
    const char* n = error_name(e);
    if (!s) return CUDA_ERROR_INVALID_VALUE;
    *s = n;
    return n ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

API cuGetErrorString(CUresult e, const char** s)
{
    if (!s) return CUDA_ERROR_INVALID_VALUE;
    *s = error_name(e) ? "(CUDA emulator) see the error name" : nullptr;
    return *s ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

// ---- device -------------------------------------------------------------------------------------------------------
API cuDeviceGetCount(int* n)
{
    LOCK;
    if (!g_init) return CUDA_ERROR_NOT_INITIALIZED;
    if (!n) return CUDA_ERROR_INVALID_VALUE;
    *n = 1;
    return CUDA_SUCCESS;
}

API cuDeviceGet(int* dev, int ordinal)
{
    LOCK;
    if (!g_init) return CUDA_ERROR_NOT_INITIALIZED;
    if (!dev) return CUDA_ERROR_INVALID_VALUE;
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *dev = 0;
    return CUDA_SUCCESS;
}

API cuDeviceGetName(char* name, int len, int dev)
{
    LOCK;
    if (!g_init) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    snprintf(name, (size_t)len, "%s", kDeviceName);
    return CUDA_SUCCESS;
}

API cuDeviceGetAttribute(int* v, int attr, int dev)
{
    LOCK;
    if (!g_init) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    switch (attr)
    {
    case 1: *v = 1024; return CUDA_SUCCESS;  // MAX_THREADS_PER_BLOCK
    case 8: *v = kDefaultShared; return CUDA_SUCCESS; // MAX_SHARED_MEMORY_PER_BLOCK
    case 16: *v = kSMs; return CUDA_SUCCESS;  // MULTIPROCESSOR_COUNT (an H100 SXM's)
    case 75: *v = 9; return CUDA_SUCCESS;    // COMPUTE_CAPABILITY_MAJOR
    case 76: *v = 0; return CUDA_SUCCESS;    // COMPUTE_CAPABILITY_MINOR
    case 95: *v = 1; return CUDA_SUCCESS;    // COOPERATIVE_LAUNCH
    case 97: *v = kOptinShared; return CUDA_SUCCESS; // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
    case 120: *v = 1; return CUDA_SUCCESS;   // CLUSTER_LAUNCH
    default:
        fprintf(stderr, "CUDA emulator: cuDeviceGetAttribute(%d) is not emulated\n", attr);
        return CUDA_ERROR_INVALID_VALUE;
    }
}

API cuDeviceTotalMem_v2(size_t* bytes, int dev)
{
    LOCK;
    if (!g_init) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!bytes) return CUDA_ERROR_INVALID_VALUE;
    *bytes = kTotalMemory;
    return CUDA_SUCCESS;
}

// ---- primary context ----------------------------------------------------------------------------------------------
API cuDevicePrimaryCtxRetain(void** ctx, int dev)
{
    LOCK;
    if (!g_init) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!ctx) return CUDA_ERROR_INVALID_VALUE;
    g_primary.refs++;
    g_primary.live = true;
    *ctx = &g_primary;
    return CUDA_SUCCESS;
}

API cuDevicePrimaryCtxRelease_v2(int dev)
{
    LOCK;
    if (!g_init) return CUDA_ERROR_NOT_INITIALIZED;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (g_primary.refs <= 0) return CUDA_ERROR_INVALID_CONTEXT;
    if (--g_primary.refs == 0)
    {
        // The last reference destroys the context and everything in it.
        flush();
        g_pending.clear();
        for (auto& [b, a] : g_allocs) munmap(a.map, a.maplen);
        g_allocs.clear();
        g_allocated = 0;
        g_primary.live = false;
        g_sticky = 0;
    }
    return CUDA_SUCCESS;
}

API cuCtxSetCurrent(void* ctx)
{
    LOCK;
    if (!g_init) return CUDA_ERROR_NOT_INITIALIZED;
    if (ctx != nullptr && ctx != &g_primary) return CUDA_ERROR_INVALID_CONTEXT;
    t_ctx = (Context*)ctx;
    return CUDA_SUCCESS;
}

API cuCtxSynchronize()
{
    BEGIN("cuCtxSynchronize");
    if (CUresult r = capture_guard("cuCtxSynchronize")) return r;
    return flush();
}

// ---- memory -------------------------------------------------------------------------------------------------------
API cuMemAlloc_v2(uint64_t* dptr, size_t bytes)
{
    BEGIN("cuMemAlloc_v2");
    if (CUresult r = capture_guard("cuMemAlloc_v2")) return r;
    if (!dptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    size_t rounded = (bytes + 255) & ~(size_t)255;
    if (g_allocated + rounded > kTotalMemory) return CUDA_ERROR_OUT_OF_MEMORY;
    if (++g_allocs_made == g_fail_alloc_at)
    {
        fprintf(stderr, "CUDA emulator: allocation %ld (%zu bytes) fails: CUDA_ERROR_OUT_OF_MEMORY injected by CHARRNN_EMULATOR_FAIL_ALLOC_AT\n",
                g_allocs_made, bytes);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    size_t body = (rounded + kPage - 1) & ~(kPage - 1);
    size_t maplen = body + kPage;
    void* m = mmap(nullptr, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
    char* map = (char*)m;
    mprotect(map + body, kPage, PROT_NONE); // the guard page right after the allocation's rounded end
    uint64_t base = (uint64_t)(map + body - rounded);
    memset((void*)base, 0xFF, bytes);                 // uninitialised device memory reads as NaN / −1
    memset((void*)(base + bytes), kCanary, rounded - bytes);
    g_allocs[base] = Alloc{base, bytes, rounded, map, maplen};
    g_allocated += rounded;
    *dptr = base;
    return CUDA_SUCCESS;
}

API cuMemFree_v2(uint64_t dptr)
{
    BEGIN("cuMemFree_v2");
    if (CUresult r = capture_guard("cuMemFree_v2")) return r;
    if (CUresult r = flush()) return r; // cuMemFree waits for the work that may still use the memory
    auto it = g_allocs.find(dptr);
    if (it == g_allocs.end())
    {
        fprintf(stderr, "CUDA emulator: cuMemFree_v2(%s) is not the start of a live allocation\n", hex(dptr).c_str());
        return CUDA_ERROR_INVALID_VALUE;
    }
    g_allocated -= it->second.rounded;
    munmap(it->second.map, it->second.maplen); // later use of the memory faults
    g_allocs.erase(it);
    return CUDA_SUCCESS;
}

API cuMemGetInfo_v2(size_t* free_, size_t* total)
{
    BEGIN("cuMemGetInfo_v2");
    if (!free_ || !total) return CUDA_ERROR_INVALID_VALUE;
    *total = kTotalMemory;
    *free_ = kTotalMemory - g_allocated;
    return CUDA_SUCCESS;
}

API cuMemAllocHost_v2(void** pp, size_t bytes)
{
    BEGIN("cuMemAllocHost_v2");
    if (CUresult r = capture_guard("cuMemAllocHost_v2")) return r;
    if (!pp || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    void* p = aligned_alloc(4096, (bytes + 4095) & ~(size_t)4095);
    if (!p) return CUDA_ERROR_OUT_OF_MEMORY;
    g_pinned[(uintptr_t)p] = bytes;
    *pp = p;
    return CUDA_SUCCESS;
}

API cuMemFreeHost(void* p)
{
    BEGIN("cuMemFreeHost");
    if (CUresult r = flush()) return r;
    auto it = g_pinned.find((uintptr_t)p);
    if (it == g_pinned.end()) return CUDA_ERROR_INVALID_VALUE;
    g_pinned.erase(it);
    free(p);
    return CUDA_SUCCESS;
}

API cuMemcpyDtoH_v2(void* dst, uint64_t src, size_t n)
{
    BEGIN("cuMemcpyDtoH_v2");
    if (CUresult r = capture_guard("cuMemcpyDtoH_v2")) return r;
    if (CUresult r = device_check("cuMemcpyDtoH_v2", src, n, "source")) return r;
    if (CUresult r = flush()) return r;
    memcpy(dst, (const void*)src, n);
    return CUDA_SUCCESS;
}

API cuMemcpyHtoDAsync_v2(uint64_t dst, const void* src, size_t n, void* stream)
{
    BEGIN("cuMemcpyHtoDAsync_v2");
    if (CUresult r = device_check("cuMemcpyHtoDAsync_v2", dst, n, "destination")) return r;
    if (n == 0) return CUDA_SUCCESS;
    if (pinned_range(src, n))
        return emu::enqueue(stream, "cuMemcpyHtoDAsync_v2", [=] { memcpy((void*)dst, src, n); }); // reads src later
    if (g_capturing.count(stream)) return capture_guard("cuMemcpyHtoDAsync_v2 from pageable memory");
    auto copy = std::make_shared<std::vector<char>>((const char*)src, (const char*)src + n); // pageable: staged now
    return emu::enqueue(stream, "cuMemcpyHtoDAsync_v2", [=] { memcpy((void*)dst, copy->data(), n); });
}

API cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t n, void* stream)
{
    BEGIN("cuMemcpyDtoDAsync_v2");
    if (CUresult r = device_check("cuMemcpyDtoDAsync_v2", dst, n, "destination")) return r;
    if (CUresult r = device_check("cuMemcpyDtoDAsync_v2", src, n, "source")) return r;
    return emu::enqueue(stream, "cuMemcpyDtoDAsync_v2", [=] { memmove((void*)dst, (const void*)src, n); });
}

API cuMemsetD32Async(uint64_t dst, unsigned v, size_t n, void* stream)
{
    BEGIN("cuMemsetD32Async");
    if (dst % 4 != 0) return CUDA_ERROR_INVALID_VALUE;
    if (CUresult r = device_check("cuMemsetD32Async", dst, n * 4, "destination")) return r;
    return emu::enqueue(stream, "cuMemsetD32Async", [=] {
        auto* p = (unsigned*)dst;
        for (size_t i = 0; i < n; i++) p[i] = v;
    });
}

// ---- modules and launches -----------------------------------------------------------------------------------------
API cuModuleLoadData(void** module, const void* image)
{
    BEGIN("cuModuleLoadData");
    if (!module || !image) return CUDA_ERROR_INVALID_VALUE;
    auto* m = new Module();
    std::string why;
    const auto* d = (const unsigned char*)image;
    bool ok = memcmp(d, "\x7f" "ELF", 4) == 0 ? parse_cubin(d, *m, why) : parse_ptx((const char*)image, *m, why);
    if (!ok)
    {
        fprintf(stderr, "CUDA emulator: cuModuleLoadData: %s\n", why.c_str());
        delete m;
        return why.find("newer") != std::string::npos ? CUDA_ERROR_NO_BINARY_FOR_GPU : CUDA_ERROR_INVALID_IMAGE;
    }
    g_modules.insert(m);
    *module = m;
    return CUDA_SUCCESS;
}

API cuModuleUnload(void* module)
{
    BEGIN("cuModuleUnload");
    auto* m = (Module*)module;
    if (!g_modules.count(m)) return CUDA_ERROR_INVALID_HANDLE;
    if (CUresult r = flush()) return r;
    for (auto it = g_functions.begin(); it != g_functions.end();)
    {
        if ((*it)->module == m) { delete *it; it = g_functions.erase(it); }
        else ++it;
    }
    g_modules.erase(m);
    delete m;
    return CUDA_SUCCESS;
}

API cuModuleGetFunction(void** fn, void* module, const char* name)
{
    BEGIN("cuModuleGetFunction");
    auto* m = (Module*)module;
    if (!fn || !name || !g_modules.count(m)) return CUDA_ERROR_INVALID_VALUE;
    if (!m->names.count(name)) return CUDA_ERROR_NOT_FOUND;
    if (auto known = m->functions.find(name); known != m->functions.end()) { *fn = known->second; return CUDA_SUCCESS; }
    for (auto& k : registry())
    {
        if (strcmp(k.name, name) != 0) continue;
        int bound = m->max_threads[name];
        if (k.max_threads != bound)
        {
            fprintf(stderr, "CUDA emulator: %s: launch bound %d in the image but %d in the host build of the source\n",
                    name, bound, k.max_threads);
            return CUDA_ERROR_INVALID_IMAGE;
        }
        auto* f = new Function{m, &k, bound};
        g_functions.insert(f);
        m->functions[name] = f;
        *fn = f;
        return CUDA_SUCCESS;
    }
    fprintf(stderr, "CUDA emulator: kernel %s is in the image but the emulator was not built with its source "
                    "(rebuild it: tests/CudaEmulator/build.sh)\n", name);
    return CUDA_ERROR_NOT_FOUND;
}

// Blocks of `threads` threads with `shared` bytes of dynamic shared memory that fit on one SM at once (an H100's
// limits; registers are not modelled).
static int blocks_per_sm(int threads, size_t shared)
{
    int by_threads = kThreadsPerSM / std::max(threads, 1);
    int by_shared = (int)(kSharedPerSM / (shared + 1024));
    return std::max(0, std::min({by_threads, kBlocksPerSM, by_shared}));
}

// Why clusters of `cluster` blocks of `f` can never launch (empty: they can, as far as their size goes): at most 8
// without the non-portable opt-in, 16 with it. Checked by the launch and by the occupancy query alike.
static std::string cluster_size_refusal(const Function* f, unsigned cluster)
{
    if (cluster > (unsigned)kMaxCluster) return "clusters of " + std::to_string(cluster) + " blocks, over the device's 16";
    if (cluster > (unsigned)kPortableCluster && !f->non_portable_cluster)
        return "clusters of " + std::to_string(cluster) + " blocks need CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED (the portable limit is 8)";
    return "";
}

static CUresult launch(const char* api, void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                       unsigned bz, unsigned shared, void* stream, void** params, void** extra, bool cooperative,
                       unsigned cluster = 1)
{
    auto* f = (Function*)fn;
    if (!g_functions.count(f)) return CUDA_ERROR_INVALID_HANDLE;
    const emu::Kernel* k = f->kernel;
    std::string what = std::string(cooperative ? "cooperative kernel " : "kernel ") + k->name;
    if (extra != nullptr || gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0 || gy > 65535 || gz > 65535 ||
        bz > 64 || (!k->sizes.empty() && params == nullptr))
    {
        fprintf(stderr, "CUDA emulator: %s(%s): invalid grid (%u,%u,%u), block (%u,%u,%u) or parameters\n", api,
                k->name, gx, gy, gz, bx, by, bz);
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (shared > (unsigned)f->max_dynamic_shared)
    {
        fprintf(stderr, "CUDA emulator: %s(%s): %u bytes of dynamic shared memory, over the function's limit of %d "
                        "(above 48 KiB needs cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES))\n",
                api, k->name, shared, f->max_dynamic_shared);
        return CUDA_ERROR_INVALID_VALUE;
    }
    unsigned long threads = (unsigned long)bx * by * bz;
    if (threads > 1024 || threads > (unsigned long)f->max_threads)
    {
        fprintf(stderr, "CUDA emulator: %s(%s): %lu threads per block, over its limit of %d\n", api, k->name,
                threads, std::min(1024, f->max_threads));
        return CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES;
    }
    if (cluster > 1)
    {
        // cuLaunchKernelEx's cluster rules (CUDA_ERROR_INVALID_CLUSTER_SIZE on a card): the grid a whole number of
        // clusters, at most 8 blocks without the non-portable opt-in and 16 with it, and one cluster's blocks must fit
        // on one GPC at once.
        std::string why;
        int per_sm = blocks_per_sm((int)threads, shared);
        if (gx % cluster != 0) why = "grid " + std::to_string(gx) + " is not a multiple of the cluster size " + std::to_string(cluster);
        if (why.empty()) why = cluster_size_refusal(f, cluster);
        if (why.empty() && (int)cluster > per_sm * kSMsPerGPC)
            why = "a cluster of " + std::to_string(cluster) + " blocks of " + std::to_string(threads) + " threads and " + std::to_string(shared) +
                  " bytes of shared memory does not fit on one GPC (" + std::to_string(per_sm) + " blocks per SM, " + std::to_string(kSMsPerGPC) + " SMs)";
        if (why.empty() && cluster == g_refuse_cluster) why = "clusters of " + std::to_string(cluster) + " refused: injected by CHARRNN_EMULATOR_REFUSE_CLUSTER";
        if (!why.empty())
        {
            fprintf(stderr, "CUDA emulator: %s(%s): %s\n", api, k->name, why.c_str());
            return CUDA_ERROR_INVALID_CLUSTER_SIZE;
        }
        if ((size_t)cluster * threads > kMaxCooperativeThreads) // the emulator's own fiber limit, as for cooperative launches
        {
            fprintf(stderr, "CUDA emulator: %s(%s): a cluster of %lu threads, more than the emulator's %zu fibers (a limit of the emulator, not of a GPU)\n",
                    api, k->name, cluster * threads, kMaxCooperativeThreads);
            return CUDA_ERROR_INVALID_CLUSTER_SIZE;
        }
    }
    if (cooperative)
    {
        unsigned long long blocks = (unsigned long long)gx * gy * gz, fit = (unsigned long long)blocks_per_sm((int)threads, shared) * kSMs;
        if (blocks > fit)
        {
            fprintf(stderr, "CUDA emulator: %s(%s): %llu blocks, but only %llu can be resident at once\n", api, k->name, blocks, fit);
            return CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE;
        }
        // The emulator's own limit, not a GPU's: every thread of a cooperative grid is a fiber with its own stack, and
        // the kernel's mappings are capped (vm.max_map_count, ~65 000: two per stack). Refused like a launch a device
        // cannot hold, rather than aborting the process when the stacks run out.
        if (blocks * threads > kMaxCooperativeThreads)
        {
            fprintf(stderr, "CUDA emulator: %s(%s): %llu threads at once, more than the emulator's %zu fibers (a limit of the emulator, not of a GPU)\n",
                    api, k->name, blocks * threads, kMaxCooperativeThreads);
            return CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE;
        }
    }
    std::vector<size_t> offsets;
    std::vector<unsigned char> args;
    for (size_t i = 0; i < k->sizes.size(); i++)
    {
        size_t align = k->sizes[i] >= 8 ? 8 : k->sizes[i];
        size_t off = (args.size() + align - 1) / align * align;
        args.resize(off + k->sizes[i]);
        memcpy(args.data() + off, params[i], k->sizes[i]); // parameters are copied at the launch, as by the driver
        offsets.push_back(off);
        if (k->is_pointer[i])
        {
            uint64_t p;
            memcpy(&p, args.data() + off, 8);
            if (p != 0 && find_alloc(p) == nullptr)
                return emu::fail(CUDA_ERROR_ILLEGAL_ADDRESS, std::string(api) + "(" + k->name + "): pointer parameter " +
                                 std::to_string(i) + " = " + hex(p) + " is not inside any live device allocation");
        }
    }
    emu_dim3 grid{gx, gy, gz}, block{bx, by, bz};
    // Counted as the kernel runs, so a launch replayed from a CUDA graph counts (and can fault) each time.
    return emu::enqueue(stream, what, [=] {
        if (++g_launches_made == g_fault_launch_at)
            emu::fail(CUDA_ERROR_ILLEGAL_ADDRESS, "kernel " + std::string(k->name) + " faults: injected by CHARRNN_EMULATOR_FAULT_LAUNCH_AT");
        else
            run_kernel(k, grid, block, args, offsets, shared, cooperative, cluster);
    });
}

API cuLaunchKernel(void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned shared, void* stream, void** params, void** extra)
{
    BEGIN("cuLaunchKernel");
    return launch("cuLaunchKernel", fn, gx, gy, gz, bx, by, bz, shared, stream, params, extra, false);
}

API cuLaunchCooperativeKernel(void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                              unsigned shared, void* stream, void** params)
{
    BEGIN("cuLaunchCooperativeKernel");
    return launch("cuLaunchCooperativeKernel", fn, gx, gy, gz, bx, by, bz, shared, stream, params, nullptr, true);
}

// CUlaunchConfig / CUlaunchAttribute (cuda.h, CUDA 12): only the attributes CharRnn sets are emulated.
struct LaunchAttribute { int id; int pad; union { struct { unsigned x, y, z; } cluster; int cooperative; char bytes[64]; } value; };
struct LaunchConfig { unsigned gx, gy, gz, bx, by, bz, shared; void* stream; LaunchAttribute* attrs; unsigned count; };
static_assert(sizeof(LaunchAttribute) == 72 && sizeof(LaunchConfig) == 56, "cuda.h's layouts");

// The config's cluster size (1 without one) and cooperative flag; false for an attribute that is not emulated.
static bool read_attributes(const char* api, const LaunchConfig* c, unsigned& cluster, bool& cooperative)
{
    cluster = 1;
    cooperative = false;
    if (c->count > 0 && c->attrs == nullptr) return false;
    for (unsigned i = 0; i < c->count; i++)
    {
        const LaunchAttribute& a = c->attrs[i];
        if (a.id == 0) continue; // CU_LAUNCH_ATTRIBUTE_IGNORE
        if (a.id == 2) { cooperative = a.value.cooperative != 0; continue; }
        if (a.id == 4 && a.value.cluster.x >= 1 && a.value.cluster.y == 1 && a.value.cluster.z == 1) { cluster = a.value.cluster.x; continue; }
        fprintf(stderr, "CUDA emulator: %s: launch attribute %d (or a cluster shape other than x × 1 × 1) is not emulated\n", api, a.id);
        return false;
    }
    return true;
}

API cuLaunchKernelEx(const LaunchConfig* c, void* fn, void** params, void** extra)
{
    BEGIN("cuLaunchKernelEx");
    unsigned cluster;
    bool cooperative;
    if (!c || !read_attributes("cuLaunchKernelEx", c, cluster, cooperative)) return CUDA_ERROR_INVALID_VALUE;
    if (cooperative && cluster > 1)
    {
        fprintf(stderr, "CUDA emulator: cuLaunchKernelEx: a cooperative cluster launch is not emulated\n");
        return CUDA_ERROR_INVALID_VALUE;
    }
    return launch("cuLaunchKernelEx", fn, c->gx, c->gy, c->gz, c->bx, c->by, c->bz, c->shared, c->stream, params, extra,
                  cooperative, cluster);
}

// How many clusters fit at once: per GPC, the blocks per SM times its SMs, in whole clusters.
API cuOccupancyMaxActiveClusters(int* clusters, void* fn, const LaunchConfig* c)
{
    BEGIN("cuOccupancyMaxActiveClusters");
    auto* f = (Function*)fn;
    if (!g_functions.count(f)) return CUDA_ERROR_INVALID_HANDLE;
    unsigned cluster;
    bool cooperative;
    if (!clusters || !c || !read_attributes("cuOccupancyMaxActiveClusters", c, cluster, cooperative)) return CUDA_ERROR_INVALID_VALUE;
    if (!cluster_size_refusal(f, cluster).empty()) return CUDA_ERROR_INVALID_CLUSTER_SIZE;
    int threads = (int)(c->bx * c->by * c->bz);
    int per_sm = threads > f->max_threads || c->shared > (unsigned)f->max_dynamic_shared ? 0 : blocks_per_sm(threads, c->shared);
    *clusters = kGPCs * (per_sm * kSMsPerGPC / (int)cluster);
    return CUDA_SUCCESS;
}

API cuOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, void* fn, int threads, size_t shared)
{
    BEGIN("cuOccupancyMaxActiveBlocksPerMultiprocessor");
    auto* f = (Function*)fn;
    if (!g_functions.count(f)) return CUDA_ERROR_INVALID_HANDLE;
    if (!blocks || threads <= 0) return CUDA_ERROR_INVALID_VALUE;
    *blocks = threads > f->max_threads || shared > (size_t)f->max_dynamic_shared ? 0 : blocks_per_sm(threads, shared);
    return CUDA_SUCCESS;
}

API cuFuncSetAttribute(void* fn, int attr, int value)
{
    BEGIN("cuFuncSetAttribute");
    auto* f = (Function*)fn;
    if (!g_functions.count(f)) return CUDA_ERROR_INVALID_HANDLE;
    if (attr == 14) // CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED
    {
        if (value != 0 && value != 1) return CUDA_ERROR_INVALID_VALUE;
        f->non_portable_cluster = value == 1;
        return CUDA_SUCCESS;
    }
    if (attr != 8) // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES and the one above are the ones emulated
    {
        fprintf(stderr, "CUDA emulator: cuFuncSetAttribute(%d) is not emulated\n", attr);
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (value < 0 || value > kOptinShared) return CUDA_ERROR_INVALID_VALUE;
    f->max_dynamic_shared = value;
    return CUDA_SUCCESS;
}

// ---- streams and events -------------------------------------------------------------------------------------------
API cuStreamCreate(void** s, unsigned flags)
{
    BEGIN("cuStreamCreate");
    if (!s || flags > 1) return CUDA_ERROR_INVALID_VALUE;
    auto* st = new Stream{flags};
    g_streams.insert(st);
    *s = st;
    return CUDA_SUCCESS;
}

API cuStreamDestroy_v2(void* s)
{
    BEGIN("cuStreamDestroy_v2");
    if (!g_streams.count((Stream*)s)) return CUDA_ERROR_INVALID_HANDLE;
    g_streams.erase((Stream*)s);
    delete (Stream*)s; // queued work still runs (at the next synchronisation), as the driver guarantees
    return CUDA_SUCCESS;
}

API cuStreamSynchronize(void* s)
{
    BEGIN("cuStreamSynchronize");
    if (s != nullptr && !g_streams.count((Stream*)s)) return CUDA_ERROR_INVALID_HANDLE;
    if (CUresult r = capture_guard("cuStreamSynchronize")) return r;
    return flush();
}

static std::shared_ptr<Event>* event_of(void* e)
{
    auto* p = (std::shared_ptr<Event>*)e;
    return g_events.count(p) ? p : nullptr;
}

API cuEventCreate(void** e, unsigned flags)
{
    BEGIN("cuEventCreate");
    if (!e || (flags & ~3u)) return CUDA_ERROR_INVALID_VALUE;
    auto* p = new std::shared_ptr<Event>(std::make_shared<Event>());
    (*p)->timing = (flags & 2) == 0;
    g_events.insert(p);
    *e = p;
    return CUDA_SUCCESS;
}

API cuEventDestroy_v2(void* e)
{
    BEGIN("cuEventDestroy_v2");
    auto* p = event_of(e);
    if (!p) return CUDA_ERROR_INVALID_HANDLE;
    g_events.erase(p);
    delete p;
    return CUDA_SUCCESS;
}

API cuEventRecord(void* e, void* stream)
{
    BEGIN("cuEventRecord");
    auto* p = event_of(e);
    if (!p) return CUDA_ERROR_INVALID_HANDLE;
    std::shared_ptr<Event> ev = *p;
    ev->recorded = true;
    ev->done = false;
    auto c = g_capturing.find(stream);
    ev->captured_on = c == g_capturing.end() ? nullptr : stream;
    ev->captured_at = c == g_capturing.end() ? 0 : c->second.graph->ops.size();
    if (c != g_capturing.end()) return CUDA_SUCCESS; // a graph's ordering edge, not an op
    return emu::enqueue(stream, "cuEventRecord", [ev] { ev->done = true; ev->ms = now_ms(); });
}

// Queued work runs in the order it was issued, whatever its stream, so a wait adds no op here: what it orders is
// already in order. Inside a capture it matters: waiting on an event recorded in a capturing stream joins the waiter
// to that capture (a fork), and the origin waiting on an event recorded in a joined stream after its last op joins it
// back; cuStreamEndCapture fails with CUDA_ERROR_STREAM_CAPTURE_UNJOINED while a joined stream is not joined back.
API cuStreamWaitEvent(void* stream, void* e, unsigned flags)
{
    BEGIN("cuStreamWaitEvent");
    auto* p = event_of(e);
    if (!p) return CUDA_ERROR_INVALID_HANDLE;
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
    if (stream != nullptr && !g_streams.count((Stream*)stream)) return CUDA_ERROR_INVALID_HANDLE;
    std::shared_ptr<Event> ev = *p;
    if (!ev->captured_on) return CUDA_SUCCESS;
    auto from = g_capturing.find(ev->captured_on);
    if (from == g_capturing.end()) return CUDA_SUCCESS; // that capture has ended
    auto to = g_capturing.find(stream);
    if (to == g_capturing.end())
    {
        g_capturing[stream] = Capture{from->second.graph, false, from->second.origin};
        g_joined_last[stream] = ev->captured_at;
        g_joined_back[stream] = false;
    }
    else if (stream == to->second.origin && ev->captured_on != stream && ev->captured_at >= g_joined_last[ev->captured_on])
        g_joined_back[ev->captured_on] = true;
    return CUDA_SUCCESS;
}

API cuEventSynchronize(void* e)
{
    BEGIN("cuEventSynchronize");
    auto* p = event_of(e);
    if (!p) return CUDA_ERROR_INVALID_HANDLE;
    if (!(*p)->recorded || (*p)->done) return CUDA_SUCCESS;
    if (CUresult r = capture_guard("cuEventSynchronize")) return r;
    return flush();
}

// The emulator runs queued work when something waits for it; a query is such a moment (a real device progresses on its
// own), so it flushes and reports the event done, unless the work faulted.
API cuEventQuery(void* e)
{
    BEGIN("cuEventQuery");
    auto* p = event_of(e);
    if (!p) return CUDA_ERROR_INVALID_HANDLE;
    if (!(*p)->recorded || (*p)->done) return CUDA_SUCCESS;
    if (CUresult r = capture_guard("cuEventQuery")) return r;
    if (CUresult r = flush()) return r;
    return (*p)->done ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY;
}

API cuEventElapsedTime(float* ms, void* a, void* b)
{
    BEGIN("cuEventElapsedTime");
    auto *pa = event_of(a), *pb = event_of(b);
    if (!ms || !pa || !pb) return CUDA_ERROR_INVALID_HANDLE;
    if (!(*pa)->timing || !(*pb)->timing) return CUDA_ERROR_INVALID_HANDLE;
    if (!(*pa)->recorded || !(*pb)->recorded) return CUDA_ERROR_INVALID_HANDLE;
    if (!(*pa)->done || !(*pb)->done) return CUDA_ERROR_NOT_READY;
    *ms = (float)((*pb)->ms - (*pa)->ms);
    return CUDA_SUCCESS;
}

// ---- graphs -------------------------------------------------------------------------------------------------------
struct GraphExec { std::vector<Op> ops; };
static std::set<Graph*> g_graphs;
static std::set<GraphExec*> g_execs;

API cuStreamBeginCapture_v2(void* s, int mode)
{
    BEGIN("cuStreamBeginCapture_v2");
    if (s == nullptr) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED; // the legacy stream cannot be captured
    if (!g_streams.count((Stream*)s) || mode < 0 || mode > 2) return CUDA_ERROR_INVALID_VALUE;
    if (g_capturing.count(s)) return CUDA_ERROR_ILLEGAL_STATE;
    g_capturing[s] = Capture{new Graph(), false, s};
    return CUDA_SUCCESS;
}

API cuStreamEndCapture(void* s, void** graph)
{
    BEGIN("cuStreamEndCapture");
    auto it = g_capturing.find(s);
    if (it == g_capturing.end() || !graph) return CUDA_ERROR_ILLEGAL_STATE;
    if (it->second.origin != s) return CUDA_ERROR_ILLEGAL_STATE; // only the stream that began it ends a capture
    Capture c = it->second;
    bool unjoined = false;
    for (auto j = g_capturing.begin(); j != g_capturing.end();)
        if (j->first != s && j->second.graph == c.graph)
        {
            unjoined |= !g_joined_back[j->first];
            g_joined_last.erase(j->first);
            g_joined_back.erase(j->first);
            c.invalid |= j->second.invalid;
            j = g_capturing.erase(j);
        }
        else ++j;
    g_capturing.erase(s);
    if (unjoined)
    {
        delete c.graph;
        *graph = nullptr;
        fprintf(stderr, "CUDA emulator: cuStreamEndCapture: a stream that joined the capture was not joined back to it\n");
        return CUDA_ERROR_STREAM_CAPTURE_UNJOINED;
    }
    if (c.invalid)
    {
        delete c.graph;
        *graph = nullptr;
        return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    }
    g_graphs.insert(c.graph);
    *graph = c.graph;
    return CUDA_SUCCESS;
}

API cuGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long flags)
{
    BEGIN("cuGraphInstantiateWithFlags");
    if (!exec || !g_graphs.count((Graph*)graph) || flags != 0) return CUDA_ERROR_INVALID_VALUE;
    auto* e = new GraphExec{((Graph*)graph)->ops};
    g_execs.insert(e);
    *exec = e;
    return CUDA_SUCCESS;
}

API cuGraphLaunch(void* exec, void* stream)
{
    BEGIN("cuGraphLaunch");
    auto* e = (GraphExec*)exec;
    if (!g_execs.count(e)) return CUDA_ERROR_INVALID_HANDLE;
    for (auto& op : e->ops) emu::enqueue(stream, "graph node: " + op.what, op.run);
    return CUDA_SUCCESS;
}

API cuGraphExecDestroy(void* exec)
{
    BEGIN("cuGraphExecDestroy");
    auto* e = (GraphExec*)exec;
    if (!g_execs.count(e)) return CUDA_ERROR_INVALID_HANDLE;
    g_execs.erase(e);
    delete e; // launched copies of its nodes stay queued
    return CUDA_SUCCESS;
}

API cuGraphDestroy(void* graph)
{
    BEGIN("cuGraphDestroy");
    auto* g = (Graph*)graph;
    if (!g_graphs.count(g)) return CUDA_ERROR_INVALID_HANDLE;
    g_graphs.erase(g);
    delete g;
    return CUDA_SUCCESS;
}
