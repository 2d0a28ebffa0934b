// Test kernels of the harness itself (tests/ops/test_harness.py): block and warp cooperation, a wait
// across blocks, and the failures the harness must report instead of hanging.
#include "common.cuh"

// Inclusive prefix sum of x over each block of blockDim.x threads: a warp scan with __shfl_up_sync, the
// warp totals through shared memory, then every warp adds the totals before it. With SKIP_BARRIER=1 the
// barrier between writing and reading the warp totals is left out (a race).
#ifndef PROBE_SKIP_BARRIER
#define PROBE_SKIP_BARRIER 0
#endif
extern "C" __global__ void probe_block_scan(const float* x, float* out) {
    __shared__ float totals[32];
    const unsigned tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const long long i = (long long)blockIdx.x * blockDim.x + tid;
    float value = x[i];
    for (unsigned delta = 1; delta < 32; delta *= 2) {
        const float other = __shfl_up_sync(0xffffffffu, value, delta);
        if (lane >= delta) value += other;
    }
    if (lane == 31) totals[warp] = value;
#if !PROBE_SKIP_BARRIER
    __syncthreads();
#endif
    for (unsigned w = 0; w < warp; ++w) value += totals[w];
    out[i] = value;
}

// Butterfly sum over the warp with __shfl_xor_sync, and the value of lane 0 with __shfl_sync: every lane writes
// (sum of its warp, x of lane 0 of its warp, x of the lane below it from __shfl_down_sync's mirror).
extern "C" __global__ void probe_warp(const float* x, float* sum, float* first, float* next) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    float value = x[i];
    for (int mask = 16; mask > 0; mask /= 2) value += __shfl_xor_sync(0xffffffffu, value, mask);
    sum[i] = value;
    first[i] = __shfl_sync(0xffffffffu, x[i], 0);
    next[i] = __shfl_down_sync(0xffffffffu, x[i], 1);
}

// Running sum across blocks in the order of their tickets: block k (ticket order) waits for block k-1's flag,
// adds its own value and publishes. flags[0] is the ticket counter, flags[1 + k] block k's flag.
extern "C" __global__ void probe_chain(const float* x, float* prefix, int* flags) {
    __shared__ int ticket;
    if (threadIdx.x == 0) ticket = atomicAdd(flags, 1);
    __syncthreads();
    if (threadIdx.x == 0) {
        float before = 0.0f;
        if (ticket > 0) {
            int waited = 0;
            while (flag_load(flags + ticket) == 0) waited = 1;
            if (waited) SNN_COUNT(SNN_EVENT_LOOKBACK_WAIT);
            before = load_cg(prefix + ticket - 1);
        }
        prefix[ticket] = before + x[ticket];
        flag_store(flags + 1 + ticket, 1);
    }
}

// Failures: the first half-warp waits at the block barrier, the second at a warp barrier (deadlock); the
// first half-warp exits before a barrier the others take; a shuffle with half a warp.
extern "C" __global__ void probe_divergent_barrier(float* out, int mode) {
    if (mode == 0) {
        if (threadIdx.x < 16) __syncthreads();
        else __syncwarp();
    } else if (mode == 1) {
        if (threadIdx.x < 16) return;
        __syncthreads();
    } else {
        out[threadIdx.x] = __shfl_sync(0x0000ffffu, 1.0f, 0);
    }
    out[threadIdx.x] = 1.0f;
}

// A block that waits for a flag nobody sets (the timeout).
extern "C" __global__ void probe_wait_forever(int* flag) {
    while (flag_load(flag) == 0) {
    }
}
