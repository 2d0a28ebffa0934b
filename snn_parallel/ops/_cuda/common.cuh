// snn_parallel CUDA kernels: shared definitions (snn_parallel/ops/_cuda, included by every op's .cu).
//
// Compiled once per storage dtype with -DSNN_DTYPE=float|__half|__nv_bfloat16 (default float), and with the
// spike-function kind ids below passed as -DSNN_KIND_<NAME>=<id> by the launcher (snn_parallel/ops/_cuda).
// Every kernel accumulates in float32: values are read with load() and written with store().
// Complex values are float32 pairs (float2: re, im), whatever SNN_DTYPE is.
//
// The sources build with nvcc, with NVRTC (CuPy RawModule), and - for SNN_DTYPE=float - with a
// plain host C++ compiler when tests/kernel_harness/cuda_emu.h is force-included first.
//
// Layout conventions: sequences are time-major [T, N] (index t*N + n), per-lane tensors [N]; sizes are
// long long, flags int. A spike function is passed by value as (int kind, float p0, p1, p2, p3) followed
// by int inclusive (1: fire on x >= 0, 0: on x > 0) where the kernel fires.
#pragma once

#ifndef SNN_DTYPE
#define SNN_DTYPE float
#endif

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#define SNN_HAS_HALF_TYPES 1
#endif

typedef SNN_DTYPE scalar_t;

// SNN_UNROLL: full unrolling of loops over small register arrays (constant trip count), so they stay in
// registers. SNN_UNROLL_4: unrolling of time loops by 4, so that (with __restrict__ pointers) the loads of four
// steps are in flight together. SNN_NO_UNROLL: no unrolling (fewer live registers). All are no-ops on the host.
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define SNN_UNROLL _Pragma("unroll")
#define SNN_UNROLL_4 _Pragma("unroll 4")
#define SNN_NO_UNROLL _Pragma("unroll 1")
#else
#define SNN_UNROLL
#define SNN_UNROLL_4
#define SNN_NO_UNROLL
#endif

#define SNN_PI_F 3.14159265358979323846f
#define SNN_SQRT_2PI_F 2.50662827463100050242f

// ---- entry points of a file built in variants (KernelFile variants, -DSNN_VARIANT=<name>) -------
// SNN_ENTRY(name) is the entry point name_<variant> of each build.
#define SNN_PASTE(a, b) a##_##b
#define SNN_PASTE_EXPANDED(a, b) SNN_PASTE(a, b)
#define SNN_ENTRY(name) SNN_PASTE_EXPANDED(name, SNN_VARIANT)

// ---- loads and stores: storage dtype <-> float32 -------------------------------------------
__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ void store(float* p, float x) { *p = x; }
__device__ __forceinline__ float2 load(const float2* p) { return *p; }
__device__ __forceinline__ void store(float2* p, float2 x) { *p = x; }
#ifdef SNN_HAS_HALF_TYPES
__device__ __forceinline__ float load(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ void store(__half* p, float x) { *p = __float2half(x); }
__device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void store(__nv_bfloat16* p, float x) { *p = __float2bfloat16(x); }
#endif

// ---- real / complex arithmetic with one spelling, so the scan templates serve both ---------
__device__ __forceinline__ float mul(float a, float b) { return a * b; }
__device__ __forceinline__ float2 mul(float2 a, float2 b) {
    return make_float2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}
__device__ __forceinline__ float add(float a, float b) { return a + b; }
__device__ __forceinline__ float2 add(float2 a, float2 b) { return make_float2(a.x + b.x, a.y + b.y); }
__device__ __forceinline__ void set_zero(float& x) { x = 0.0f; }
__device__ __forceinline__ void set_zero(float2& x) { x = make_float2(0.0f, 0.0f); }
__device__ __forceinline__ void set_one(float& x) { x = 1.0f; }
__device__ __forceinline__ void set_one(float2& x) { x = make_float2(1.0f, 0.0f); }
__device__ __forceinline__ void set_real(float& z, float x) { z = x; }
__device__ __forceinline__ void set_real(float2& z, float x) { z = make_float2(x, 0.0f); }
__device__ __forceinline__ float real_part(float z) { return z; }
__device__ __forceinline__ float real_part(float2 z) { return z.x; }
__device__ __forceinline__ float conjugate(float z) { return z; }
__device__ __forceinline__ float2 conjugate(float2 z) { return make_float2(z.x, -z.y); }

// ---- flags and data shared across blocks (a decoupled look-back) ----------------------------
// flag_store publishes: every store before it is visible to a block that has read the flag with flag_load;
// load_cg reads such data from L2 (not a stale L1 line). The CPU harness (cuda_emu.h) defines host versions
// with acquire/release atomics, and SNN_COUNT(event) to count events (SNN_EVENT_* ids, -D from Python).
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
__device__ __forceinline__ int flag_load(const int* p) {
    const int value = *(const volatile int*)p;
    __threadfence();
    return value;
}
__device__ __forceinline__ void flag_store(int* p, int value) {
    __threadfence();
    *(volatile int*)p = value;
}
__device__ __forceinline__ float load_cg(const float* p) { return __ldcg(p); }
__device__ __forceinline__ float2 load_cg(const float2* p) { return __ldcg(p); }
#define SNN_COUNT(event) ((void)0)
#endif

// ---- 1-D grid-stride loop over work items: any grid size covers all `count` items ----------
__device__ __forceinline__ long long item_start() {
    return (long long)blockIdx.x * (long long)blockDim.x + (long long)threadIdx.x;
}
__device__ __forceinline__ long long item_stride() { return (long long)blockDim.x * (long long)gridDim.x; }

// ---- a serial walk over the steps of one lane (a hard reset: one thread per lane) --------------
// step(t, input(t)) for t = 0..T-1, with the inputs of the next SNN_STEPS steps in flight while the current ones
// run (input is called with t < T only).
template <class Input, class Step>
__device__ __forceinline__ void serial_walk(long long T, Input input, Step step) {
    typedef decltype(input(0LL)) Value;
    Value now[SNN_STEPS], next[SNN_STEPS];
    SNN_UNROLL
    for (int j = 0; j < SNN_STEPS; ++j) now[j] = input(j < T ? j : T - 1);
    for (long long t0 = 0; t0 < T; t0 += SNN_STEPS) {
        SNN_UNROLL
        for (int j = 0; j < SNN_STEPS; ++j) {
            const long long t = t0 + SNN_STEPS + j;
            next[j] = input(t < T ? t : T - 1);
        }
        SNN_UNROLL
        for (int j = 0; j < SNN_STEPS; ++j) {
            if (t0 + j >= T) break;
            step(t0 + j, now[j]);
        }
        SNN_UNROLL
        for (int j = 0; j < SNN_STEPS; ++j) now[j] = next[j];
    }
}

// ---- spike function and surrogate derivatives (snn_parallel/surrogate.py) ------------------
// Firing rule: inclusive=1 fires on x >= 0 (SpikingJelly), inclusive=0 on x > 0 (snnTorch).
__device__ __forceinline__ float heaviside(int inclusive, float x) {
    return (inclusive ? (x >= 0.0f) : (x > 0.0f)) ? 1.0f : 0.0f;
}

__device__ __forceinline__ float gaussian(float x, float mu, float sigma) {
    const float d = x - mu;
    return expf(-(d * d) / (2.0f * sigma * sigma)) / (SNN_SQRT_2PI_F * sigma);
}

// Spike functions by kind id. Kernels take them as (int kind, float p0, float p1, float p2, float p3[, int inclusive])
// and pack the four parameters into `const float params[4]` (passed by value: no device buffer per call).
#if !defined(SNN_KIND_ATAN) || !defined(SNN_KIND_SIGMOID) || !defined(SNN_KIND_RECT) || !defined(SNN_KIND_GAUSSIANS) || \
    !defined(SNN_KIND_INTEGER) || !defined(SNN_KIND_FAST_SIGMOID)
#error "the spike-function kind ids SNN_KIND_* are passed by the launcher (-D, snn_parallel/ops/_cuda)"
#endif

// Forward spike S(x): every kind but INTEGER fires Theta(x) under the firing rule; kind 4 (integer spikes, levels = params[0])
// gives clamp(rint(x), 0, levels) (rint rounds half to even, as torch.round).
__device__ __forceinline__ float spike_value(int kind, const float* params, int inclusive, float x) {
    if (kind == SNN_KIND_INTEGER) return fminf(fmaxf(rintf(x), 0.0f), params[0]);
    return heaviside(inclusive, x);
}

// Surrogate derivative g'(x) by kind id; params is an array of 4 floats (unused ones ignored):
//   ATAN atan(alpha):        (alpha/2) / (1 + (pi*alpha*x/2)^2)
//   SIGMOID sigmoid(alpha):  alpha * s * (1 - s),  s = 1 / (1 + exp(-alpha*x))
//   RECT rect(width):        [|x| < width/2] / width
//   GAUSSIANS multi_gaussian(sigma, scale, height, gamma):
//       gamma * ((1+h) N(x; 0, sigma) - h N(x; sigma, scale*sigma) - h N(x; -sigma, scale*sigma))
//   INTEGER integer(levels): [0 <= x <= levels]  (straight-through inside the clamp range)
//   FAST_SIGMOID fast_sigmoid(slope): 1 / (slope*|x| + 1)^2  (SuperSpike)
// An unknown kind gives 0 (the Python dispatcher only passes the six kinds above).
__device__ __forceinline__ float surrogate_grad(int kind, const float* params, float x) {
    switch (kind) {
    case SNN_KIND_ATAN: {
        const float alpha = params[0];
        const float z = (SNN_PI_F / 2.0f) * alpha * x;
        return (alpha / 2.0f) / (1.0f + z * z);
    }
    case SNN_KIND_SIGMOID: {
        const float alpha = params[0];
        const float s = 1.0f / (1.0f + expf(-alpha * x));
        return alpha * s * (1.0f - s);
    }
    case SNN_KIND_RECT: {
        const float width = params[0];
        return fabsf(x) < width / 2.0f ? 1.0f / width : 0.0f;
    }
    case SNN_KIND_GAUSSIANS: {
        const float sigma = params[0], scale = params[1], height = params[2], gamma = params[3];
        const float wide = scale * sigma;
        return gamma * ((1.0f + height) * gaussian(x, 0.0f, sigma) - height * gaussian(x, sigma, wide) -
                        height * gaussian(x, -sigma, wide));
    }
    case SNN_KIND_INTEGER:
        return x >= 0.0f && x <= params[0] ? 1.0f : 0.0f;
    case SNN_KIND_FAST_SIGMOID: {
        const float d = params[0] * fabsf(x) + 1.0f;
        return 1.0f / (d * d);
    }
    default:
        return 0.0f;
    }
}
