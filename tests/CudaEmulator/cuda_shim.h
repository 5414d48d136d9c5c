// cuda_shim.h — lets g++ compile the kernels/*.cu sources unchanged, as host C++, for the CUDA emulator.
//
// Each CUDA thread of a block runs as a fiber on one host thread (fiber.S); __syncthreads() switches back to the
// block scheduler, which resumes every fiber of the block in turn, so a barrier is reached by all before any goes on.
// __shared__ variables become function-local statics, shared by the fibers of the block being run (the emulator runs
// one block at a time, under its API lock). Only what kernels/*.cu uses is provided.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "emu.h"

#define threadIdx (emu_tc->threadIdx)
#define blockIdx (emu_tc->blockIdx)
#define blockDim (emu_tc->blockDim)
#define gridDim (emu_tc->gridDim)
#define __syncthreads() emu_syncthreads()
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }

// Dynamic shared memory (a launch's sharedMemBytes), one region per block: kernels declare it with DYNAMIC_SHARED
// (common.cuh), which becomes this call here. Static __shared__ variables above are one per kernel, not per block:
// right only while one block runs at a time, so cooperative kernels must use dynamic shared memory alone (build.sh
// checks that kernels which call grid_barrier declare no __shared__).
void* emu_dynamic_shared();
#define DYNAMIC_SHARED(type, name) type* name = (type*)emu_dynamic_shared()

// Atomics, fences and spin-waits. Fibers run one at a time on one host thread, so a plain read-modify-write is atomic;
// __nanosleep (used only in spin-waits) hands the thread to the next fiber, which is allowed only in a cooperative
// launch (elsewhere the emulator stops: blocks that wait for each other may deadlock on a GPU).
void emu_spin_wait();
#define __nanosleep(ns) emu_spin_wait()
#define __threadfence() ((void)0)
static inline unsigned atomicAdd(unsigned* p, unsigned v) { unsigned o = *p; *p = o + v; return o; }
static inline int atomicAdd(int* p, int v) { int o = *p; *p = o + v; return o; }
static inline unsigned atomicExch(unsigned* p, unsigned v) { unsigned o = *p; *p = v; return o; }
template <typename T> static inline T __ldcg(const T* p) { return *(const volatile T*)p; }
// Thread-block clusters (common.cuh's cluster_rank, cluster_size, cluster_sync, cluster_map): the blocks of a cluster
// run together as one ring of fibers; a mapped address is the same offset in the other block's dynamic shared memory.
unsigned emu_cluster_rank();
unsigned emu_cluster_size();
void emu_cluster_sync();
void* emu_cluster_map(const void* p, unsigned rank);
#define CLUSTER_SHIM
#define cluster_rank() emu_cluster_rank()
#define cluster_size() emu_cluster_size()
#define cluster_sync() emu_cluster_sync()
template <typename T> static inline T* cluster_map(T* p, unsigned rank) { return (T*)emu_cluster_map(p, rank); }
void emu_trap();
#define __trap() emu_trap()
