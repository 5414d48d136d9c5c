// probe.cu — GpuProbe's trivial kernel (the `Trivial` source in src/Cuda/GpuProbe.cs), built into the emulator so the
// probe's cuModuleGetFunction("probe") finds a host implementation. Launch: any grid, x[threadIdx.x] = 1.
extern "C" __global__ void probe(float* x) { x[threadIdx.x] = 1.0f; }
