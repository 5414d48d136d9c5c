// probe.cu — GpuProbe's trivial kernel: compiled by NVRTC and loaded by the driver to show both work (GpuProbe embeds
// this file), and built into the CUDA emulator like every kernels/*.cu. Launch: any grid, x[threadIdx.x] = 1.
extern "C" __global__ void probe(float* x) { x[threadIdx.x] = 1.0f; }
