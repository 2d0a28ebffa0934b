// Host emulation of the CUDA built-ins used by snn_parallel/ops/kernels/*.cu, for SNN_DTYPE=float.
//
// Force-included (g++ -include cuda_emu.h) before the kernel sources so that they compile as plain
// C++: __global__ kernels become ordinary functions and a launch becomes a serial loop over
// (block, thread) that sets blockIdx/threadIdx before each call. The kernels use one thread per
// work item with no shared memory and no inter-thread communication, so the loop is an exact
// emulation of the launch (up to float rounding of the host compiler, which does not contract FMAs
// at -O2 on x86-64 without -mfma).
#pragma once

#include <math.h>  // expf, fabsf, sqrtf, ... in the global namespace, as in device code

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

#define SNN_DTYPE float

struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

// One set per host thread, as CUDA gives one per device thread.
inline thread_local dim3 threadIdx(0, 0, 0), blockIdx(0, 0, 0), blockDim(1, 1, 1), gridDim(1, 1, 1);

struct alignas(8) float2 {
    float x, y;
};
inline float2 make_float2(float x, float y) {
    float2 r;
    r.x = x;
    r.y = y;
    return r;
}

// kernel<<<grid, block>>>(args...) as a serial loop over every (block, thread).
template <class Kernel, class... Args>
inline void emu_launch(unsigned int grid, unsigned int block, Kernel kernel, Args... args) {
    gridDim = dim3(grid);
    blockDim = dim3(block);
    for (unsigned int bx = 0; bx < grid; ++bx) {
        for (unsigned int tx = 0; tx < block; ++tx) {
            blockIdx = dim3(bx);
            threadIdx = dim3(tx);
            kernel(args...);
        }
    }
}
