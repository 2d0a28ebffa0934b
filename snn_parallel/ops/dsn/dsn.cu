// DSN membrane on the time-chunked scan family (snn_parallel/ops/dsn/{reference,fused}.py): a causal depthwise conv
// of the input gives the decay in log space, a linear scan the membrane, a spike function the spikes.
//
//     p_t = bias + sum_{j<k} w_j X_{t-k+1+j},   log alpha_t = log sigmoid(p_t) / tau,
//     H_t = alpha_t H_{t-1} + (1 - alpha_t) X_t,   S_t = S(H_t - shift)
//
// (shift: per parameter lane, read from `shifts` [P] float32 like the bias, or the number shift_value where `shifts`
// is null.)
//
// Layout: x, spikes, membrane and their gradients are time-major [T, N] in the storage dtype; history is [k-1, N]
// (the inputs X_{-k+1} .. X_{-1} before x, oldest first) and h0 [N], both in the storage dtype; weight [k, P] (tap j
// of parameter lane p at j*P + p, oldest input first) and bias [P] are float32, read for lane n at
// p = (n / spatial) % P (per channel: P = C, spatial = the product of the spatial dims; per lane: P = N); their
// gradients are float32 per lane ([k, N], [N]; one torch reduction sums them into [k, P], [P]), as are the checkpoints
// [K, N] (H entering each segment of SNN_SEGMENT steps, K = ceil(T / SNN_SEGMENT)), h_last and grad_h0 [N].
// A lane holds its taps right-aligned in DSN_MAX_TAPS registers: slot i meets X_{t - (DSN_MAX_TAPS - 1 - i)}, slots
// below DSN_MAX_TAPS - k hold zero taps. The gate is computed with cheap math (1/tau multiplied, the fast exp and
// log, short series near zero, no division): see gate().
//
// dsn_fwd: the membrane as a forward time-chunked scan (chunked.cuh); each thread reads the k-1 inputs before its
//     steps (the conv's halo: rows the warp above read, or `history` before t = 0), writes spikes, the membrane
//     only when `membrane` is not null, the checkpoints and h_last.
// dsn_bwd: a reverse time-chunked scan of the carried gradient C_t = dL/dH_t through H_{t+1} (C_{T-1} = grad_last):
//         C_{t-1} = alpha_t (C_t + d_t),   d_t = dL/dH_t + dL/dS_t S'(H_t - shift),   G_t = C_t + d_t,
//     after rerunning each segment's membrane from its checkpoint (a forward scan inside the block: the same
//     operations as dsn_fwd, so the same bits). Per step, the pre-activation gradient
//         gp_t = G_t (H_{t-1} - X_t) alpha_t sigmoid(-p_t) / tau
//     goes to shared memory and, after the block's last barrier of the segment, each thread gathers its inputs'
//     gradients grad X_s = G_s (1 - alpha_s) + sum_j w_j gp_{s+k-1-j} over the steps of the same segment. The
//     first k-1 gp of each segment (`head`) and the incomplete sums of the last k-1 steps of every segment but
//     the last (`tail`), both [K*(k-1), N] float32, go to dsn_fixup; per block, the partial sums of
//     grad w_j = sum_t gp_t X_{t-k+1+j} and grad bias = sum_t gp_t go to partials [groups, DSN_MAX_TAPS + 1, N]
//     and (shift_grad = 1) grad shift = -sum_t dL/dS_t S'(H_t - shift) go to partials [groups, DSN_MAX_TAPS + 2, N]
//     (rows: the right-aligned tap slots, the bias, the shift). grad_h0 = C_{-1}. grad_spikes and grad_h are read
//     with their strides (sts, sns) and (stm, snm), or are null; grad_last may be null.
// dsn_fixup: one thread per (segment edge e, lane n): for e >= 1, grad X of the k-1 steps before segment e from
//     `tail` and the head of segment e; for e = 0, grad history from the head of segment 0 and the weight and bias
//     gradients (and the shift's, where grad_shift is not null), summed over the blocks' partials in block order
//     (deterministic: no atomics anywhere).
#include "chunked.cuh"

// The most taps a lane holds in registers (-DDSN_MAX_TAPS, snn_parallel/ops/dsn/cupy.py).
#ifndef DSN_MAX_TAPS
#error "DSN_MAX_TAPS is passed by the launcher (-D)"
#endif
#define DSN_HALO (DSN_MAX_TAPS - 1)

// log(1 + e) for e in [0, 1]: a series below 1/8 (relative error < 1e-7), the fast log of 1 + e above.
__device__ __forceinline__ float log1p_unit(float e) {
    if (e < 0.125f)
        return e * (1.0f - e * (0.5f - e * (1.0f / 3.0f - e * (0.25f - e * (0.2f - e * (1.0f / 6.0f - e * (1.0f / 7.0f)))))));
    return __logf(1.0f + e);
}

// 1 - exp(y) for y <= 0: a series above -1/8 (relative error < 1e-7), one minus the fast exp below.
__device__ __forceinline__ float one_minus_exp(float y) {
    if (y > -0.125f) return -y * (1.0f + y * (0.5f + y * (1.0f / 6.0f + y * (1.0f / 24.0f + y * (1.0f / 120.0f)))));
    return 1.0f - __expf(y);
}

// What a thread keeps of one step: the input, alpha, 1 - alpha and (backward) dalpha/dp; the backward adds the
// upstream gradients, the membrane and d_t.
struct ForwardStep {
    float x, a, oma;
};
struct BackwardStep {
    float x, a, oma, coef, gs, gm, h, d;
};

// alpha = exp(log sigmoid(p) / tau) and 1 - alpha; with the backward, dalpha/dp = alpha sigmoid(-p) / tau. With
// e = exp(-|p|): log sigmoid(p) = min(p, 0) - log(1 + e) and log sigmoid(-p) = min(-p, 0) - log(1 + e).
__device__ __forceinline__ void gate(float p, float inv_tau, ForwardStep& s) {
    const float log_a = (fminf(p, 0.0f) - log1p_unit(__expf(-fabsf(p)))) * inv_tau;
    s.a = __expf(log_a);
    s.oma = one_minus_exp(log_a);
}
__device__ __forceinline__ void gate(float p, float inv_tau, BackwardStep& s) {
    const float l = log1p_unit(__expf(-fabsf(p)));
    const float log_a = (fminf(p, 0.0f) - l) * inv_tau;
    s.a = __expf(log_a);
    s.oma = one_minus_exp(log_a);
    s.coef = s.a * __expf(fminf(-p, 0.0f) - l) * inv_tau;
}

// The conv of one lane: its taps, bias and the halo of the thread's current steps; and its spike shift.
struct DsnConv {
    const scalar_t* x;
    const scalar_t* history;
    const float* weight;
    const float* bias;
    const float* shifts;
    float shift_value;
    int taps;
    float inv_tau;
    long long T, N, P, spatial;
    float w[DSN_MAX_TAPS]{};  // right-aligned taps (bound to the lane by bind())
    float b = 0.0f, shift = 0.0f;
    float halo[DSN_HALO]{};  // halo[i] = X_{t0 - DSN_HALO + i} of the thread's first step t0 (zero below the taps)

    __device__ void bind(long long n) {
        const long long p = (n / spatial) % P;
        SNN_UNROLL
        for (int i = 0; i < DSN_MAX_TAPS; ++i) {
            const int j = i - (DSN_MAX_TAPS - taps);
            w[i] = j >= 0 ? weight[j * P + p] : 0.0f;
        }
        b = bias[p];
        shift = shifts ? shifts[p] : shift_value;
    }
    // X_{t0 + j - back} (j - back >= -DSN_HALO), from the steps or the halo
    template <class Step>
    __device__ float input(const Step (&steps)[SNN_STEPS], int j, int back) const {
        const int i = j - back;
        return i >= 0 ? steps[i].x : halo[i + DSN_HALO];
    }
    // Read the halo of steps t0.. and the gate of every step.
    template <class Step>
    __device__ void gates(Step (&steps)[SNN_STEPS], long long t0, long long n) {
        SNN_UNROLL
        for (int i = 0; i < DSN_HALO; ++i) {
            const long long s = t0 - DSN_HALO + i;
            float v = 0.0f;
            if (i >= DSN_MAX_TAPS - taps) v = s < 0 ? load(history + (s + taps - 1) * N + n) : load(x + (s < T ? s : T - 1) * N + n);
            halo[i] = v;
        }
        SNN_UNROLL
        for (int j = 0; j < SNN_STEPS; ++j) {
            float p = b;
            SNN_UNROLL
            for (int i = 0; i < DSN_MAX_TAPS; ++i) p = fmaf(w[i], input(steps, j, DSN_HALO - i), p);
            gate(p, inv_tau, steps[j]);
        }
    }
};

struct DsnForward {
    typedef float State;
    typedef ForwardStep Step;
    typedef NoPartial Partial;
    DsnConv conv;
    const scalar_t* h0;
    scalar_t* spikes;
    scalar_t* membrane;
    float* checkpoints;
    float* h_last;
    int kind, inclusive;
    float params[4];

    __device__ void bind(long long n) { conv.bind(n); }
    __device__ void fetch(Step& s, long long t, long long n) const { s.x = load(conv.x + t * conv.N + n); }
    __device__ void prepare(Step (&steps)[SNN_STEPS], long long, long long t0, long long n, bool, long long) {
        conv.gates(steps, t0, n);
    }
    __device__ void map(const Step& s, long long, float& d, float& b) const {
        d = s.a;
        b = s.oma * s.x;
    }
    __device__ void emit(Step (&)[SNN_STEPS], int, long long t, long long n, const float&, const float& h, NoPartial&) {
        const long long i = t * conv.N + n;
        store(spikes + i, spike_value(kind, params, inclusive, h - conv.shift));
        if (membrane) store(membrane + i, h);
        if (t == conv.T - 1) h_last[n] = h;
    }
    __device__ float initial(long long n) const { return load(h0 + n); }
    __device__ void enter(long long k, long long n, const float& carry) { checkpoints[k * conv.N + n] = carry; }
    __device__ void store_partial(long long, long long, const NoPartial&) const {}
};

struct DsnPartial {
    float w[DSN_MAX_TAPS];
    float b, shift;
};
__device__ __forceinline__ void set_zero(DsnPartial& p) {
    SNN_UNROLL
    for (int i = 0; i < DSN_MAX_TAPS; ++i) p.w[i] = 0.0f;
    p.b = 0.0f;
    p.shift = 0.0f;
}
__device__ __forceinline__ DsnPartial add(const DsnPartial& a, const DsnPartial& b) {
    DsnPartial sum;
    SNN_UNROLL
    for (int i = 0; i < DSN_MAX_TAPS; ++i) sum.w[i] = a.w[i] + b.w[i];
    sum.b = a.b + b.b;
    sum.shift = a.shift + b.shift;
    return sum;
}

// The pre-activation gradients of one segment, by step within it and lane.
__device__ __forceinline__ float (&segment_gp())[SNN_SEGMENT][32] {
    __shared__ float rows[SNN_SEGMENT][32];
    return rows;
}

struct DsnBackward {
    typedef float State;
    typedef BackwardStep Step;
    typedef DsnPartial Partial;
    DsnConv conv;
    const scalar_t* grad_spikes;
    const scalar_t* grad_h;
    const float* grad_last;
    const float* checkpoints;
    scalar_t* grad_x;
    float* grad_h0;
    float* head;
    float* tail;
    float* partials;
    int kind, shift_grad;
    float params[4];
    long long sts, sns, stm, snm;
    float h_enter = 0.0f;  // H entering this thread's steps

    __device__ void bind(long long n) { conv.bind(n); }
    __device__ void fetch(Step& s, long long t, long long n) const {
        s.x = load(conv.x + t * conv.N + n);
        s.gs = grad_spikes ? load(grad_spikes + t * sts + n * sns) : 0.0f;
        s.gm = grad_h ? load(grad_h + t * stm + n * snm) : 0.0f;
    }
    // The gates, the membrane rerun from the segment's checkpoint, and d_t of every step.
    __device__ void prepare(Step (&steps)[SNN_STEPS], long long k, long long t0, long long n, bool, long long T) {
        conv.gates(steps, t0, n);
        float d = 1.0f, b = 0.0f;
        SNN_UNROLL
        for (int j = 0; j < SNN_STEPS; ++j)
            if (t0 + j < T) compose(d, b, steps[j].a, steps[j].oma * steps[j].x);
        float pre_d, pre_b, tot_d, tot_b;
        block_prefix(d, b, 0, pre_d, pre_b, tot_d, tot_b);
        float h = affine(pre_d, checkpoints[k * conv.N + n], pre_b);
        h_enter = h;
        SNN_UNROLL
        for (int j = 0; j < SNN_STEPS; ++j) {
            Step& s = steps[j];
            h = affine(s.a, h, s.oma * s.x);
            s.h = h;
            s.d = s.gm + s.gs * surrogate_grad(kind, params, h - conv.shift);
        }
    }
    __device__ void map(const Step& s, long long, float& d, float& b) const {
        d = s.a;
        b = s.a * s.d;
    }
    // G_t = C_t + d_t; gp_t to shared memory, the direct path G_t (1 - alpha_t) kept in the step for finish().
    __device__ void emit(Step (&steps)[SNN_STEPS], int j, long long t, long long n, const float& before, const float& after,
                         Partial& partial) {
        Step& s = steps[j];
        const float G = before + s.d;
        const float gp = G * ((j > 0 ? steps[j - 1].h : h_enter) - s.x) * s.coef;
        s.d = G * s.oma;
        partial.b += gp;
        if (shift_grad) partial.shift -= s.gs * surrogate_grad(kind, params, s.h - conv.shift);
        SNN_UNROLL
        for (int i = 0; i < DSN_MAX_TAPS; ++i) partial.w[i] = fmaf(gp, conv.input(steps, j, DSN_HALO - i), partial.w[i]);
        segment_gp()[t % SNN_SEGMENT][threadIdx.x] = gp;
        if (t == 0) grad_h0[n] = after;
    }
    __device__ float initial(long long n) const { return grad_last ? grad_last[n] : 0.0f; }
    __device__ void enter(long long, long long, const float&) const {}
    // The transposed conv within segment k (every emit of the block is done; the next segment's writes to
    // segment_gp come after the barriers of its prepare()).
    __device__ void finish(Step (&steps)[SNN_STEPS], long long k, long long t0, long long n, bool lane_ok, long long T) {
        if (!lane_ok) return;
        const float(&gp)[SNN_SEGMENT][32] = segment_gp();
        const long long first = k * SNN_SEGMENT, end = first + SNN_SEGMENT, N = conv.N;
        const int edge = conv.taps - 1, lo = DSN_MAX_TAPS - conv.taps;
        SNN_UNROLL
        for (int j = 0; j < SNN_STEPS; ++j) {
            const long long s = t0 + j;
            if (s >= T) break;
            float acc = steps[j].d;
            SNN_UNROLL
            for (int i = 0; i < DSN_MAX_TAPS; ++i) {
                const long long u = s + DSN_HALO - i;  // gp_u reaches X_s through slot i
                if (i >= lo && u < end && u < T) acc = fmaf(conv.w[i], gp[u - first][threadIdx.x], acc);
            }
            if (end < T && s >= end - edge) tail[(k * edge + s - (end - edge)) * N + n] = acc;
            else store(grad_x + s * N + n, acc);
            if (s - first < edge) head[(k * edge + s - first) * N + n] = gp[s - first][threadIdx.x];
        }
    }
    __device__ void store_partial(long long group, long long n, const Partial& total) const {
        float* rows = partials + group * (DSN_MAX_TAPS + 2) * conv.N + n;
        SNN_UNROLL
        for (int i = 0; i < DSN_MAX_TAPS; ++i) rows[i * conv.N] = total.w[i];
        rows[DSN_MAX_TAPS * conv.N] = total.b;
        rows[(DSN_MAX_TAPS + 1) * conv.N] = total.shift;
    }
};

extern "C" __global__ void __launch_bounds__(32 * SNN_WARPS, 1)
    dsn_fwd(const scalar_t* __restrict__ x, const scalar_t* __restrict__ history, const float* __restrict__ weight,
            const float* __restrict__ bias, const float* __restrict__ shifts, float shift_value,
            const scalar_t* __restrict__ h0, scalar_t* __restrict__ spikes, scalar_t* __restrict__ membrane,
            float* __restrict__ checkpoints, float* __restrict__ h_last, int* __restrict__ flags,
            float* __restrict__ agg_d, float* __restrict__ agg_b, float* __restrict__ inclusive_states, float inv_tau,
            int kind, float p0, float p1, float p2, float p3, int inclusive, int taps, long long T, long long N,
            long long P, long long spatial, long long G) {
    DsnForward op = {{x, history, weight, bias, shifts, shift_value, taps, inv_tau, T, N, P, spatial}, h0, spikes, membrane,
                     checkpoints, h_last, kind, inclusive, {p0, p1, p2, p3}};
    chunked_scan(op, chunking<float>(T, N, G, 0, flags, agg_d, agg_b, inclusive_states));
}

extern "C" __global__ void __launch_bounds__(32 * SNN_WARPS, 1)
    dsn_bwd(const scalar_t* __restrict__ grad_spikes, const scalar_t* __restrict__ grad_h,
            const float* __restrict__ grad_last, const scalar_t* __restrict__ x, const scalar_t* __restrict__ history,
            const float* __restrict__ weight, const float* __restrict__ bias, const float* __restrict__ shifts,
            float shift_value, const float* __restrict__ checkpoints, scalar_t* __restrict__ grad_x,
            float* __restrict__ grad_h0, float* __restrict__ head, float* __restrict__ tail,
            float* __restrict__ partials, int* __restrict__ flags, float* __restrict__ agg_d,
            float* __restrict__ agg_b, float* __restrict__ inclusive_states, float inv_tau, int kind, int shift_grad,
            float p0, float p1, float p2, float p3, int taps, long long T, long long N, long long P, long long spatial,
            long long sts, long long sns, long long stm, long long snm, long long G) {
    DsnBackward op = {{x, history, weight, bias, shifts, shift_value, taps, inv_tau, T, N, P, spatial}, grad_spikes, grad_h,
                      grad_last, checkpoints, grad_x, grad_h0, head, tail, partials, kind, shift_grad, {p0, p1, p2, p3},
                      sts, sns, stm, snm};
    chunked_scan(op, chunking<float>(T, N, G, 1, flags, agg_d, agg_b, inclusive_states));
}

extern "C" __global__ void dsn_fixup(const float* __restrict__ weight, const float* __restrict__ head,
                                     const float* __restrict__ tail, const float* __restrict__ partials,
                                     scalar_t* __restrict__ grad_x, scalar_t* __restrict__ grad_history,
                                     float* __restrict__ grad_weight, float* __restrict__ grad_bias,
                                     float* __restrict__ grad_shift, int taps, long long T, long long N, long long P,
                                     long long spatial, long long groups) {
    const long long K = (T + SNN_SEGMENT - 1) / SNN_SEGMENT, edge = taps - 1;
    for (long long item = item_start(); item < K * N; item += item_stride()) {
        const long long e = item / N, n = item % N, start = e * SNN_SEGMENT, p = (n / spatial) % P;
        // grad X_s for the k-1 steps s before segment e (history rows when e = 0): the taps reaching segment e
        for (long long s = start - edge; s < start; ++s) {
            if (s < 0 && e > 0) continue;
            float acc = e > 0 ? tail[((e - 1) * edge + s - (start - edge)) * N + n] : 0.0f;
            for (int j = 0; j < taps; ++j) {
                const long long u = s + edge - j;
                if (u >= start && u < T) acc = fmaf(weight[j * P + p], head[(e * edge + u - start) * N + n], acc);
            }
            if (e > 0) store(grad_x + s * N + n, acc);
            else store(grad_history + (s + edge) * N + n, acc);
        }
        if (e == 0) {
            const long long lo = DSN_MAX_TAPS - taps;
            const long long rows = grad_shift ? DSN_MAX_TAPS + 2 : DSN_MAX_TAPS + 1;
            for (long long row = lo; row < rows; ++row) {
                float sum = 0.0f;
                for (long long g = 0; g < groups; ++g) sum += partials[(g * (DSN_MAX_TAPS + 2) + row) * N + n];
                if (row < DSN_MAX_TAPS) grad_weight[(row - lo) * N + n] = sum;
                else if (row == DSN_MAX_TAPS) grad_bias[n] = sum;
                else grad_shift[n] = sum;
            }
        }
    }
}
