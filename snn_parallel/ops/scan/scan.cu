// Gated linear recurrence h_t = a_t * h_{t-1} + b_t (real: scan_*, complex: cscan_*), chunked in
// three launches (the same reduce / carry / apply algorithm as snn_parallel/ops/scan/parallel.py).
//
// Layout: sequences are time-major [T, N] (index t*N + n), per-lane tensors [N]. a is [T, N] when
// a_varying=1, else [N]. Chunks: L steps each, K = ceil(T/L), chunk k covers t in [k*L, min(k*L+L, T))
// (the last may be shorter; chunk 0 starts at t = 0 in both directions). reverse=1 runs
// h_t = a_t * h_{t+1} + b_t from the end, so "scan order" visits t (and chunks) downwards.
// chunk_a, chunk_h, carry are [K, N] float32 (float2 for complex); h0 is [N].
#include "common.cuh"

// Step j (0-based, in scan order) of the chunk [start, stop).
__device__ __forceinline__ long long chunk_step(long long start, long long stop, long long j, int reverse) {
    return reverse ? stop - 1 - j : start + j;
}

// Reduce chunk k of lane n: total decay prod(a) and end state from a zero start.
template <class In, class Acc>
__device__ __forceinline__ void reduce_chunk(const In* __restrict__ a, const In* __restrict__ b,
                                             Acc* __restrict__ chunk_a, Acc* __restrict__ chunk_h, long long T,
                                             long long N, long long L, int a_varying, int reverse, long long i) {
    const long long k = i / N, n = i % N;
    const long long start = k * L, stop = start + L < T ? start + L : T;
    Acc total, h;
    set_one(total);
    set_zero(h);
    SNN_UNROLL_4
    for (long long j = 0; j < stop - start; ++j) {
        const long long t = chunk_step(start, stop, j, reverse);
        const Acc a_t = load(a + (a_varying ? t * N + n : n));
        total = mul(a_t, total);
        h = add(mul(a_t, h), load(b + t * N + n));
    }
    chunk_a[i] = total;
    chunk_h[i] = h;
}

// Walk the K chunk summaries of lane n in scan order; carry[k] is the state entering chunk k.
template <class Acc>
__device__ __forceinline__ void carry_lane(const Acc* __restrict__ chunk_a, const Acc* __restrict__ chunk_h,
                                           const Acc* __restrict__ h0, Acc* __restrict__ carry, long long K,
                                           long long N, int reverse, long long n) {
    Acc h = h0[n];
    SNN_UNROLL_4
    for (long long j = 0; j < K; ++j) {
        const long long idx = (reverse ? K - 1 - j : j) * N + n;
        carry[idx] = h;
        h = add(mul(chunk_a[idx], h), chunk_h[idx]);
    }
}

// Rerun chunk k of lane n from its carry, writing every state.
template <class In, class Acc>
__device__ __forceinline__ void apply_chunk(const In* __restrict__ a, const In* __restrict__ b,
                                            const Acc* __restrict__ carry, In* __restrict__ out, long long T,
                                            long long N, long long L, int a_varying, int reverse, long long i) {
    const long long k = i / N, n = i % N;
    const long long start = k * L, stop = start + L < T ? start + L : T;
    Acc h = carry[i];
    SNN_UNROLL_4
    for (long long j = 0; j < stop - start; ++j) {
        const long long t = chunk_step(start, stop, j, reverse);
        h = add(mul(load(a + (a_varying ? t * N + n : n)), h), load(b + t * N + n));
        store(out + t * N + n, h);
    }
}

// 1. scan_reduce: chunk_a[k,n] = prod_{t in chunk k} a_t,  chunk_h[k,n] = chunk end state from 0.
//    Items: i in [0, K*N), k = i / N, n = i % N.
extern "C" __global__ void scan_reduce(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                                       float* __restrict__ chunk_a, float* __restrict__ chunk_h, long long T,
                                       long long N, long long L, int a_varying, int reverse) {
    const long long count = (T + L - 1) / L * N;
    for (long long i = item_start(); i < count; i += item_stride())
        reduce_chunk(a, b, chunk_a, chunk_h, T, N, L, a_varying, reverse, i);
}

// 2. scan_carry: carry[k,n] = state entering chunk k: h0[n] for the first chunk in scan order, then
//    carry[next] = chunk_a[k] * carry[k] + chunk_h[k].  Items: lanes n in [0, N).
extern "C" __global__ void scan_carry(const float* __restrict__ chunk_a, const float* __restrict__ chunk_h,
                                      const float* __restrict__ h0, float* __restrict__ carry, long long K, long long N,
                                      int reverse) {
    for (long long n = item_start(); n < N; n += item_stride())
        carry_lane(chunk_a, chunk_h, h0, carry, K, N, reverse, n);
}

// 3. scan_apply: h_t = a_t * h_prev + b_t inside chunk k, starting from carry[k,n].
//    Items: i in [0, K*N), k = i / N, n = i % N.
extern "C" __global__ void scan_apply(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                                      const float* __restrict__ carry, scalar_t* __restrict__ h, long long T,
                                      long long N, long long L, int a_varying, int reverse) {
    const long long count = (T + L - 1) / L * N;
    for (long long i = item_start(); i < count; i += item_stride())
        apply_chunk(a, b, carry, h, T, N, L, a_varying, reverse, i);
}

// Complex versions (complex64 storage as float2, complex multiply), same equations and items.
extern "C" __global__ void cscan_reduce(const float2* __restrict__ a, const float2* __restrict__ b,
                                        float2* __restrict__ chunk_a, float2* __restrict__ chunk_h, long long T,
                                        long long N, long long L, int a_varying, int reverse) {
    const long long count = (T + L - 1) / L * N;
    for (long long i = item_start(); i < count; i += item_stride())
        reduce_chunk(a, b, chunk_a, chunk_h, T, N, L, a_varying, reverse, i);
}

extern "C" __global__ void cscan_carry(const float2* __restrict__ chunk_a, const float2* __restrict__ chunk_h,
                                       const float2* __restrict__ h0, float2* __restrict__ carry, long long K,
                                       long long N, int reverse) {
    for (long long n = item_start(); n < N; n += item_stride())
        carry_lane(chunk_a, chunk_h, h0, carry, K, N, reverse, n);
}

extern "C" __global__ void cscan_apply(const float2* __restrict__ a, const float2* __restrict__ b,
                                       const float2* __restrict__ carry, float2* __restrict__ h, long long T,
                                       long long N, long long L, int a_varying, int reverse) {
    const long long count = (T + L - 1) / L * N;
    for (long long i = item_start(); i < count; i += item_stride())
        apply_chunk(a, b, carry, h, T, N, L, a_varying, reverse, i);
}
