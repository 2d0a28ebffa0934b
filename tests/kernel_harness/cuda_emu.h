// Host emulation of the CUDA built-ins used by the kernels of snn_parallel/ops/*/*.cu, for SNN_DTYPE=float.
//
// Force-included (g++ -include cuda_emu.h) before the kernel sources so that they compile as plain
// C++: __global__ kernels become ordinary functions and a launch becomes a serial loop over
// (block, thread) that sets blockIdx/threadIdx before each call. The kernels use one thread per
// work item with no shared memory and no inter-thread communication, so the loop is an exact
// emulation of the launch (up to float rounding of the host compiler, which does not contract FMAs
// at -O2 on x86-64 without -mfma).
#pragma once

#include <math.h>  // expf, fabsf, sqrtf, ... in the global namespace, as in device code

#include <cstddef>
#include <type_traits>
#include <utility>

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

// A launch as the harness library receives it from Python (tests/kernel_harness/__init__.py).
struct emu_config {
    unsigned int grid[3], block[3];
};

// kernel<<<grid, block>>>(args...) as a serial loop over every (block, thread); args as cuLaunchKernel takes
// them: args[i] points at the value of parameter i.
template <class... P, std::size_t... I>
inline void emu_call(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_reference_t<P>*>(args[I])...);
}

template <class... P>
inline int emu_run(const emu_config& cfg, void (*kernel)(P...), void** args) {
    gridDim = dim3(cfg.grid[0], cfg.grid[1], cfg.grid[2]);
    blockDim = dim3(cfg.block[0], cfg.block[1], cfg.block[2]);
    for (unsigned int bz = 0; bz < gridDim.z; ++bz)
        for (unsigned int by = 0; by < gridDim.y; ++by)
            for (unsigned int bx = 0; bx < gridDim.x; ++bx)
                for (unsigned int tz = 0; tz < blockDim.z; ++tz)
                    for (unsigned int ty = 0; ty < blockDim.y; ++ty)
                        for (unsigned int tx = 0; tx < blockDim.x; ++tx) {
                            blockIdx = dim3(bx, by, bz);
                            threadIdx = dim3(tx, ty, tz);
                            emu_call(kernel, args, std::index_sequence_for<P...>{});
                        }
    return 0;
}
