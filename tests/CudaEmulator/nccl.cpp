// nccl.cpp — libnccl.so.2 of the CUDA emulator, for ONE rank: the functions src/Interop/Nccl.cs binds, with NCCL's
// argument rules (a communicator of nranks 1 and rank 0 only; the id must come from ncclGetUniqueId), and the
// all-reduce enqueued on its stream like a kernel, both buffers checked to lie inside live device allocations. With one
// rank a sum and an average are the input itself: an in-place all-reduce leaves the buffer unchanged, an out-of-place
// one copies it. What this shows is CharRnn's NCCL path end to end (marshalling, the by-value 128-byte id, stream
// order); NCCL between several GPUs, or processes, is not emulated.
#include "emu.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>

typedef int ncclResult_t;
enum { ncclSuccess = 0, ncclInvalidArgument = 4, ncclInvalidUsage = 5, ncclRemoteError = 6 };
struct ncclUniqueId { char internal[128]; };

namespace
{
struct Comm { char id[128]; long reduces = 0; bool aborted = false; };
std::set<Comm*> g_comms;
std::set<std::string> g_ids; // ids ncclGetUniqueId made
int g_group = 0;
// CHARRNN_EMULATOR_NCCL_ASYNC_ERROR_AT=N: from the N-th all-reduce run on (1-based), the communicator reports
// ncclRemoteError through ncclCommGetAsyncError, as a real one does when a peer died mid-collective.
long async_error_at()
{
    static const long at = [] { const char* n = getenv("CHARRNN_EMULATOR_NCCL_ASYNC_ERROR_AT"); return n ? strtol(n, nullptr, 10) : 0L; }();
    return at;
}

size_t type_size(int t) { return t == 7 ? 4 : t == 8 ? 8 : t == 2 || t == 3 ? 4 : t == 4 || t == 5 ? 8 : t == 6 || t == 9 ? 2 : 1; }
}

#define API extern "C" __attribute__((visibility("default")))

API ncclResult_t ncclGetVersion(int* version)
{
    if (!version) return ncclInvalidArgument;
    *version = 22700; // reported as 2.27.0 (the emulator's, not a real NCCL's)
    return ncclSuccess;
}

API const char* ncclGetErrorString(ncclResult_t r)
{
    switch (r)
    {
    case ncclSuccess: return "no error (CUDA emulator's NCCL)";
    case ncclInvalidArgument: return "invalid argument (CUDA emulator's NCCL)";
    case ncclInvalidUsage: return "invalid usage (CUDA emulator's NCCL)";
    case ncclRemoteError: return "remote process exited or there was a network error (CUDA emulator's NCCL, injected)";
    default: return "unknown result (CUDA emulator's NCCL)";
    }
}

API ncclResult_t ncclGetUniqueId(ncclUniqueId* id)
{
    if (!id) return ncclInvalidArgument;
    std::random_device rd;
    for (auto& c : id->internal) c = (char)rd();
    g_ids.insert(std::string(id->internal, 128));
    return ncclSuccess;
}

API ncclResult_t ncclCommInitRank(Comm** comm, int nranks, ncclUniqueId id, int rank)
{
    std::lock_guard<std::recursive_mutex> lock(emu::api_mutex());
    if (!comm || nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
    if (nranks != 1)
    {
        fprintf(stderr, "CUDA emulator: ncclCommInitRank with %d ranks: the emulator's NCCL has one rank only\n", nranks);
        return ncclInvalidUsage;
    }
    if (!g_ids.count(std::string(id.internal, 128)))
    {
        fprintf(stderr, "CUDA emulator: ncclCommInitRank: an id ncclGetUniqueId did not make (passed by value? 128 bytes?)\n");
        return ncclInvalidArgument;
    }
    if (int r = emu::begin("ncclCommInitRank")) return r == 0 ? ncclSuccess : ncclInvalidUsage; // a current context, as NCCL needs
    auto* c = new Comm();
    memcpy(c->id, id.internal, 128);
    g_comms.insert(c);
    *comm = c;
    return ncclSuccess;
}

API ncclResult_t ncclCommDestroy(Comm* comm)
{
    std::lock_guard<std::recursive_mutex> lock(emu::api_mutex());
    if (!g_comms.erase(comm)) return ncclInvalidArgument;
    delete comm;
    return ncclSuccess;
}

API ncclResult_t ncclCommGetAsyncError(Comm* comm, ncclResult_t* error)
{
    std::lock_guard<std::recursive_mutex> lock(emu::api_mutex());
    if (!g_comms.count(comm) || !error) return ncclInvalidArgument;
    *error = async_error_at() > 0 && comm->reduces >= async_error_at() ? ncclRemoteError : ncclSuccess;
    return ncclSuccess;
}

API ncclResult_t ncclCommAbort(Comm* comm)
{
    std::lock_guard<std::recursive_mutex> lock(emu::api_mutex());
    if (!g_comms.erase(comm)) return ncclInvalidArgument;
    delete comm;
    return ncclSuccess;
}

API ncclResult_t ncclGroupStart() { g_group++; return ncclSuccess; }
API ncclResult_t ncclGroupEnd() { return g_group-- > 0 ? ncclSuccess : ncclInvalidUsage; }

API ncclResult_t ncclAllReduce(uint64_t send, uint64_t recv, size_t count, int type, int op, Comm* comm, void* stream)
{
    std::lock_guard<std::recursive_mutex> lock(emu::api_mutex());
    if (!g_comms.count(comm) || type < 0 || type > 9 || op < 0 || op > 4) return ncclInvalidArgument;
    if (int r = emu::begin("ncclAllReduce")) { fprintf(stderr, "CUDA emulator: ncclAllReduce: driver error %d\n", r); return ncclInvalidUsage; }
    size_t bytes = count * type_size(type);
    if (count > 0 && (!emu::device_range(send, bytes) || !emu::device_range(recv, bytes)))
    {
        emu::fail(700, "ncclAllReduce: a buffer is not inside one live device allocation");
        return ncclInvalidArgument;
    }
    if (emu::enqueue(stream, "ncclAllReduce", [=] { if (g_comms.count(comm)) comm->reduces++; if (send != recv) memmove((void*)recv, (const void*)send, bytes); }) != 0)
        return ncclInvalidUsage;
    return ncclSuccess;
}
