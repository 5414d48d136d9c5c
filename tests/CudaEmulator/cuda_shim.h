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
