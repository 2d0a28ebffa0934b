// Time-chunked affine scans: one kernel family for every op that is, per lane, a chain of affine maps
// state_t = d_t * state_{t-1} + b_t (real, complex, or a pair of them), forward or reverse in time.
//
// Geometry (SNN_WARPS = W and SNN_STEPS = L are passed by the launcher, -D from snn_parallel/ops/_cuda):
// a block is dim3(32, W); it owns a tile of 32 lanes and walks G consecutive segments of S = W*L steps.
// Thread (lane l, warp w) owns lane n = tile*32 + l and the L steps [k*S + w*L, +L) of segment k, so every
// warp access is one coalesced row of the time-major [T, N] layout. Per segment:
//   1. each thread loads its L steps (all loads issued before any is used: indices are clamped into range
//      instead of predicated, and the out-of-range steps become identity maps) and reduces them to one map;
//   2. the W maps of a lane are combined through shared memory (each thread composes the maps before its
//      own in scan order, so the order of every combination is fixed);
//   3. the state entering the segment (the carry) comes from the previous segment of the block (shared
//      memory), from the op's initial state, or - for the first segment of a block that is not first in
//      time - from the blocks before it by a decoupled look-back (below);
//   4. each thread reruns its L steps from the state entering them and the op writes its outputs.
//
// Look-back across blocks (groups > 1). A block takes a ticket from an atomic counter (flags[groups*tiles]):
// ticket = group * tiles + tile, so every block waits only for blocks that took earlier tickets and are
// therefore running or done. A block of one segment publishes its aggregate map (status 1), then walks back
// over its predecessors' status flags until one has published its inclusive state (status 2), and applies the
// aggregates between them to that state; then it publishes its own inclusive state (status 2). A block of
// several segments only publishes its inclusive state, when it has walked them all. The value is the same
// wherever the walk stops: every published state is the fixed chain c_{g+1} = D_g c_g + B_g (fmaf spelled
// out, no contraction left to the compiler) from the op's initial state, so results do not depend on timing
// (bit for bit, with any schedule).
//
// An op is a struct with (see scan.cu and linear_fire.cu):
//   typedef ... State;   the scanned state (float, float2 or a struct with the functions below)
//   typedef ... Step;    what a thread keeps of one step between loading and rerunning it
//   typedef ... Partial; a per-lane sum over the steps (reduced over the block, written per block), or NoPartial
//   void bind(long long n)                                      read the lane's own parameters (n clamped into range)
//   void fetch(Step&, long long t, long long n) const        read step t of lane n (t, n clamped into range)
//   void prepare(Step (&)[L], long long k, long long t0, long long n, bool lane_ok, long long T)   before mapping
//   void map(const Step&, long long t, State& d, State& b) const
//   void emit(Step (&)[L], int j, long long t, long long n, const State& before, const State& after, Partial&)
//   State initial(long long n) const
//   void enter(long long k, long long n, const State& carry)  the state entering segment k (scan order)
//   void store_partial(long long group, long long n, const Partial&)
#pragma once

#include "common.cuh"

#if !defined(SNN_WARPS) || !defined(SNN_STEPS)
#error "SNN_WARPS and SNN_STEPS are passed by the launcher (-D, snn_parallel/ops/_cuda)"
#endif
#define SNN_SEGMENT (SNN_WARPS * SNN_STEPS)

#define SNN_STATUS_AGGREGATE 1
#define SNN_STATUS_INCLUSIVE 2

// ---- affine maps with a fixed rounding: d * h + b ----------------------------------------------
__device__ __forceinline__ float affine(float d, float h, float b) { return fmaf(d, h, b); }
__device__ __forceinline__ float2 affine(float2 d, float2 h, float2 b) {
    return make_float2(fmaf(d.x, h.x, fmaf(-d.y, h.y, b.x)), fmaf(d.x, h.y, fmaf(d.y, h.x, b.y)));
}

// A filter gradient together with a real threshold-bias gradient (linear_fire's backward with the reset's
// gradient): both scanned at once, element by element.
template <class Acc>
struct WithBias {
    Acc g;
    float beta;
};
template <class Acc>
__device__ __forceinline__ WithBias<Acc> affine(const WithBias<Acc>& d, const WithBias<Acc>& h, const WithBias<Acc>& b) {
    return {affine(d.g, h.g, b.g), fmaf(d.beta, h.beta, b.beta)};
}
template <class Acc>
__device__ __forceinline__ WithBias<Acc> mul(const WithBias<Acc>& a, const WithBias<Acc>& b) {
    return {mul(a.g, b.g), a.beta * b.beta};
}
template <class Acc>
__device__ __forceinline__ void set_one(WithBias<Acc>& x) {
    set_one(x.g);
    x.beta = 1.0f;
}
template <class Acc>
__device__ __forceinline__ void set_zero(WithBias<Acc>& x) {
    set_zero(x.g);
    x.beta = 0.0f;
}
template <class Acc>
__device__ __forceinline__ WithBias<Acc> load_cg(const WithBias<Acc>* p) {
    return {load_cg(&p->g), load_cg(&p->beta)};
}

struct NoPartial {};
__device__ __forceinline__ void set_zero(NoPartial&) {}
__device__ __forceinline__ NoPartial add(NoPartial a, NoPartial) { return a; }

// (d2, b2) after (d1, b1): state -> d2 (d1 state + b1) + b2.
template <class State>
__device__ __forceinline__ void compose(State& d, State& b, const State& d_next, const State& b_next) {
    b = affine(d_next, b, b_next);
    d = mul(d_next, d);
}

// Combine the per-thread maps (d, b) of one lane over the W warps, in scan order (reverse: the last warp
// first). Returns in (pre_d, pre_b) the map from the segment's entry to this thread's first step and in
// (tot_d, tot_b) the map of the whole segment. Every thread of the block must call it.
template <class State>
__device__ __forceinline__ void block_prefix(const State& d, const State& b, int reverse, State& pre_d, State& pre_b,
                                             State& tot_d, State& tot_b) {
    __shared__ State shared_d[SNN_WARPS][32], shared_b[SNN_WARPS][32];
    const int lane = threadIdx.x, warp = threadIdx.y;
    shared_d[warp][lane] = d;
    shared_b[warp][lane] = b;
    __syncthreads();
    set_one(tot_d);
    set_zero(tot_b);
    pre_d = tot_d;
    pre_b = tot_b;
    SNN_NO_UNROLL  // one composition at a time: unrolled, the shared loads would all be hoisted into registers
    for (int i = 0; i < SNN_WARPS; ++i) {
        const int w = reverse ? SNN_WARPS - 1 - i : i;
        if (w == warp) {
            pre_d = tot_d;
            pre_b = tot_b;
        }
        compose(tot_d, tot_b, shared_d[w][lane], shared_b[w][lane]);
    }
    __syncthreads();  // the buffers are reused by the next call
}

// Publish per-lane values of one warp, then its status flag: every lane's stores are fenced before lane 0
// stores the flag (the other blocks read the flag with flag_load, then the values with load_cg).
__device__ __forceinline__ void publish_flag(int* flag, int status) {
    __threadfence();
    __syncwarp();
    if (threadIdx.x == 0) flag_store(flag, status);
}

// The state entering group g of a tile (warp 0, every lane; lanes past N read flags only): walk back to the
// nearest predecessor with an inclusive state, then apply the aggregates after it in time order.
template <class State>
__device__ State look_back(const int* status, const State* agg_d, const State* agg_b, const State* inclusive,
                           long long g, long long tiles, long long tile, long long N, long long n, bool lane_ok) {
    long long j = g - 1;
    bool waited = false;
    for (;;) {
        int flag;
        while ((flag = flag_load(status + j * tiles + tile)) == 0) waited = true;
        if (flag == SNN_STATUS_INCLUSIVE) break;
        --j;  // an aggregate: look further back (the first group publishes an inclusive state only)
    }
    if (threadIdx.x == 0) {
        if (waited) SNN_COUNT(SNN_EVENT_LOOKBACK_WAIT);
        if (j < g - 1) SNN_COUNT(SNN_EVENT_LOOKBACK_AGGREGATE);
        SNN_COUNT(SNN_EVENT_LOOKBACK_INCLUSIVE);
    }
    State carry;
    set_zero(carry);
    if (!lane_ok) return carry;
    carry = load_cg(inclusive + j * N + n);
    for (long long i = j + 1; i < g; ++i) carry = affine(load_cg(agg_d + i * N + n), carry, load_cg(agg_b + i * N + n));
    return carry;
}

// Cross-block bookkeeping of a launch: the segments a block walks and where the look-back state lives.
template <class State>
struct Chunking {
    long long T, N, K, G, groups, tiles;  // steps, lanes, segments, segments a block, blocks along time, lane tiles
    int reverse;
    int* flags;                           // [groups * tiles] status + 1 ticket counter; null when groups == 1
    State *agg_d, *agg_b, *inclusive;     // [groups, N] each; unused when groups == 1
};

// The bookkeeping of a launch over [T, N] with G segments a block (the flags and state buffers as launched).
template <class State>
__device__ __forceinline__ Chunking<State> chunking(long long T, long long N, long long G, int reverse, int* flags,
                                                    State* agg_d, State* agg_b, State* inclusive) {
    const long long K = (T + SNN_SEGMENT - 1) / SNN_SEGMENT;
    return {T, N, K, G, (K + G - 1) / G, (N + 31) / 32, reverse, flags, agg_d, agg_b, inclusive};
}

// Block-wide sum of a per-thread Partial over the W warps (lane by lane); the result is valid in warp 0.
template <class Partial>
__device__ __forceinline__ Partial block_sum(const Partial& mine) {
    __shared__ Partial shared[SNN_WARPS][32];
    shared[threadIdx.y][threadIdx.x] = mine;
    __syncthreads();
    Partial total = shared[0][threadIdx.x];
    SNN_UNROLL
    for (int w = 1; w < SNN_WARPS; ++w) total = add(total, shared[w][threadIdx.x]);
    __syncthreads();
    return total;
}

// The kernel body of an op (see the top of this file). Launch: grid (groups * tiles), block (32, W).
template <class Op>
__device__ void chunked_scan(Op& op, const Chunking<typename Op::State>& c) {
    typedef typename Op::State State;
    __shared__ long long shared_ticket;
    __shared__ State shared_carry[32];
    const int lane = threadIdx.x, warp = threadIdx.y;
    long long group = 0, tile = blockIdx.x;
    if (c.groups > 1) {
        if (lane == 0 && warp == 0) shared_ticket = atomicAdd(c.flags + c.groups * c.tiles, 1);
        __syncthreads();
        group = shared_ticket / c.tiles;
        tile = shared_ticket % c.tiles;
    }
    const long long n = tile * 32 + lane;
    const bool lane_ok = n < c.N;
    const long long n_read = lane_ok ? n : c.N - 1;
    op.bind(n_read);
    const long long first = group * c.G, last = first + c.G < c.K ? first + c.G : c.K;
    typename Op::Partial partial;
    set_zero(partial);
    for (long long s = first; s < last; ++s) {
        const long long k = c.reverse ? c.K - 1 - s : s;  // segment in time
        const long long t0 = k * SNN_SEGMENT + (long long)warp * SNN_STEPS;
        typename Op::Step steps[SNN_STEPS];
        SNN_UNROLL
        for (int j = 0; j < SNN_STEPS; ++j) op.fetch(steps[j], t0 + j < c.T ? t0 + j : c.T - 1, n_read);
        op.prepare(steps, k, t0, n_read, lane_ok, c.T);
        // this thread's map over its steps, in scan order
        State d, b;
        set_one(d);
        set_zero(b);
        SNN_UNROLL
        for (int i = 0; i < SNN_STEPS; ++i) {
            const int j = c.reverse ? SNN_STEPS - 1 - i : i;
            State dj, bj;
            op.map(steps[j], t0 + j, dj, bj);
            if (t0 + j < c.T) compose(d, b, dj, bj);
        }
        State pre_d, pre_b, tot_d, tot_b;
        block_prefix(d, b, c.reverse, pre_d, pre_b, tot_d, tot_b);
        // the state entering the segment
        if (s == first) {
            if (group == 0) {
                if (warp == 0) shared_carry[lane] = op.initial(n_read);
            } else if (warp == 0) {
                int* status = c.flags + group * c.tiles + tile;
                if (c.G == 1) {
                    if (lane_ok) {
                        c.agg_d[group * c.N + n] = tot_d;
                        c.agg_b[group * c.N + n] = tot_b;
                    }
                    publish_flag(status, SNN_STATUS_AGGREGATE);
                }
                shared_carry[lane] = look_back(c.flags, c.agg_d, c.agg_b, c.inclusive, group, c.tiles, tile, c.N, n, lane_ok);
            }
            if (c.groups > 1 && c.G == 1 && warp == 0) {  // this block's inclusive state, before its own outputs
                if (lane_ok) c.inclusive[group * c.N + n] = affine(tot_d, shared_carry[lane], tot_b);
                publish_flag(c.flags + group * c.tiles + tile, SNN_STATUS_INCLUSIVE);
            }
            __syncthreads();
        }
        const State carry = shared_carry[lane];
        if (warp == 0 && lane_ok) op.enter(k, n, carry);
        // rerun this thread's steps from the state entering them
        State h = affine(pre_d, carry, pre_b);
        SNN_UNROLL
        for (int i = 0; i < SNN_STEPS; ++i) {
            const int j = c.reverse ? SNN_STEPS - 1 - i : i;
            if (t0 + j >= c.T) continue;
            State dj, bj;
            op.map(steps[j], t0 + j, dj, bj);
            const State before = h;
            h = affine(dj, h, bj);
            if (lane_ok) op.emit(steps, j, t0 + j, n, before, h, partial);
        }
        __syncthreads();  // every thread has read shared_carry
        const int final_warp = c.reverse ? 0 : SNN_WARPS - 1;
        if (warp == final_warp) {
            shared_carry[lane] = h;
            if (s == last - 1 && c.groups > 1 && c.G > 1) {
                if (lane_ok) c.inclusive[group * c.N + n] = h;
                publish_flag(c.flags + group * c.tiles + tile, SNN_STATUS_INCLUSIVE);
            }
        }
        __syncthreads();
    }
    const typename Op::Partial total = block_sum(partial);
    if (warp == 0 && lane_ok) op.store_partial(group, n, total);
}
