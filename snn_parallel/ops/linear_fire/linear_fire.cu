// Linear membrane with a spike readout and an optional threshold-bias soft reset (snn_parallel/ops/linear_fire/
// {reference,fused}.py): PRF (complex filter, *_complex) and the decoupled-reset LIF (real filter, *_real).
//
//     h_t = a h_{t-1} + c x_t,   m_t = Re h_t - b_t,   s_t = S(m_t - V_th),   b_{t+1} = rho (b_t + V_th sg(s_t))
//
// or, with the delayed reset (delayed = 1), b_{t+1} = rho b_t + V_th sg(s_t), the spike's step not decayed (without
// a reset b_t = bias0 throughout). Layout: x, spikes, membrane and grad_x are time-major [T, N] in the
// storage dtype; a (decay), c (scale), rho (reset_decay) and V_th (threshold; the number threshold_value where it
// is null) are per parameter lane [P], read for lane n at (n / spatial) % P (per channel: P = C, spatial = the
// product of the spatial dims; per lane: P = N, spatial = 1);
// h0, h_last, grad_h0 [N] and the checkpoints [K, N] (the filter state entering each segment of SNN_SEGMENT
// steps, K = ceil(T / SNN_SEGMENT)) are float32 (real) or float2 (complex); bias0, bias_next, grad_bias0,
// grad_bias_next [N] float32.
//
// lf_fwd_*: the filter as a time-chunked scan (chunked.cuh). Without a reset it writes spikes and membrane; with
//     one (filtered != null) it writes Re h_t to the float32 [T, N] `filtered` for lf_chain_*.
// lf_chain_*: the threshold chain, serial by nature: one thread per lane walks t = 0..T-1 with the inputs of the
//     next SNN_STEPS steps in flight, reading Re h_t from `filtered`, or (filtered == null) running the filter
//     itself and writing the checkpoints and h_last (one pass over x for wide layers).
// lf_bwd_*: the backward, a reverse time-chunked scan. Each segment first reruns the filter from its checkpoint
//     (a forward scan inside the block), then, with d_t = dL/dm_t + dL/ds_t S'(m_t - V_th) (m_t read from
//     `membrane` with a reset, recomputed as Re h_t - bias0 without), scans the filter gradient
//         G_t = conj(a) G_{t+1} + d_t   (G_{T-1} = grad_last + d_{T-1})
//     and the threshold-bias gradient (the reset acts through b only, spikes detached in it)
//         beta_t = rho beta_{t+1} - d_t   (beta_T = grad_bias_next; rho = 1 without a reset)
//     and writes grad_x_t = c Re G_t, grad_h0 = conj(a) G_0, grad_bias0 = beta_0 (if not null), and per block the
//     partial sums of grad_a = sum_t G_t conj(h_{t-1}), grad_c = sum_t Re(G_t) x_t, (reset_grad = 1)
//     grad_rho = sum_t beta_{t+1} (b_t + V_th s_t), with b_t = Re h_t - m_t, and (threshold_grad = 1)
//     grad_V = sum_t (rho beta_{t+1} s_t - e_t), e_t = dL/ds_t S'(m_t - V_th) (spikes null without a reset); with
//     the delayed reset (the same beta recursion) grad_rho = sum_t beta_{t+1} b_t and grad_V = sum_t (beta_{t+1} s_t
//     - e_t), the step undecayed. Both into
//     partials [groups, 5, N] (rows: Re grad_a, Im grad_a, grad_c, grad_rho, grad_V). grad_spikes and
//     grad_membrane are read with their strides (sts, sns) and (stm, snm), or are null.
//
// The file is built twice (the launcher's REAL_AND_COMPLEX variants): SNN_COMPLEX=0 gives the real filter's entry
// points lf_*_real, SNN_COMPLEX=1 the complex filter's lf_*_complex (SNN_ENTRY, common.cuh).
#include "chunked.cuh"

#if !defined(SNN_COMPLEX)
#error "SNN_COMPLEX (the build variant) is passed by the launcher (snn_parallel/ops/_cuda)"
#elif SNN_COMPLEX
typedef float2 filter_t;
#else
typedef float filter_t;
#endif

__device__ __forceinline__ filter_t drive(float c, float x) {
    filter_t z;
    set_real(z, c * x);
    return z;
}

// The parameters of one lane, bound by bind(n): a (decay), c (scale), rho (reset_decay; 1 where it is null,
// without a reset) and V_th (threshold; threshold_value where it is null) of its parameter lane (n / spatial) % P,
// and its threshold bias b_0; delayed (the same for every lane): the reset's step enters b undecayed.
struct FireLane {
    const filter_t* decay;
    const float* scale;
    const float* reset_decay;
    const float* threshold;
    float threshold_value;
    const float* bias0;
    long long P, spatial;
    int delayed;
    filter_t a{};
    float c = 0.0f, rho = 1.0f, v_threshold = 0.0f, bias = 0.0f;

    __device__ void bind(long long n) {
        const long long p = (n / spatial) % P;
        a = decay[p];
        c = scale[p];
        rho = reset_decay ? reset_decay[p] : 1.0f;
        v_threshold = threshold ? threshold[p] : threshold_value;
        bias = bias0[n];
    }
};

// The arguments of the forward kernels, lf_fwd_* and lf_chain_* (filtered: written by the one, read by the other).
struct FireForwardArgs : FireLane {
    const scalar_t* x;
    const filter_t* h0;
    scalar_t* spikes;
    scalar_t* membrane;
    float* filtered;
    filter_t* checkpoints;
    filter_t* h_last;
    int kind, inclusive;
    float params[4];
    long long T, N;
};

struct FireForward : FireForwardArgs {
    typedef filter_t State;
    struct Step {
        float x;
    };
    typedef NoPartial Partial;

    __device__ void fetch(Step& s, long long t, long long n) const { s.x = load(x + t * N + n); }
    __device__ void prepare(Step (&)[SNN_STEPS], long long, long long, long long, bool, long long) {}
    __device__ void map(const Step& s, long long, filter_t& d, filter_t& b) const {
        d = a;
        b = drive(c, s.x);
    }
    __device__ void emit(Step (&)[SNN_STEPS], int, long long t, long long n, const filter_t&, const filter_t& h,
                         NoPartial&) {
        const long long i = t * N + n;
        if (filtered) {
            filtered[i] = real_part(h);
        } else {
            const float m = real_part(h) - bias;
            store(membrane + i, m);
            store(spikes + i, spike_value(kind, params, inclusive, m - v_threshold));
        }
        if (t == T - 1) h_last[n] = h;
    }
    __device__ filter_t initial(long long n) const { return h0[n]; }
    __device__ void enter(long long k, long long n, const filter_t& carry) { checkpoints[k * N + n] = carry; }
    __device__ void store_partial(long long, long long, const NoPartial&) const {}
};

struct FirePartial {
    filter_t decay;
    float scale, rho, threshold;
};
__device__ __forceinline__ void set_zero(FirePartial& p) {
    set_zero(p.decay);
    p.scale = 0.0f;
    p.rho = 0.0f;
    p.threshold = 0.0f;
}
__device__ __forceinline__ FirePartial add(const FirePartial& a, const FirePartial& b) {
    return {add(a.decay, b.decay), a.scale + b.scale, a.rho + b.rho, a.threshold + b.threshold};
}
__device__ __forceinline__ float imag_part(float) { return 0.0f; }
__device__ __forceinline__ float imag_part(float2 z) { return z.y; }

struct FireBackward : FireLane {
    typedef WithBias<filter_t> State;
    struct Step {
        float x, grad_s, grad_m, m, spike, d, e, bias_step;  // e, bias_step: set by prepare
        filter_t h;
    };
    typedef FirePartial Partial;
    const scalar_t* grad_spikes;
    const scalar_t* grad_membrane;
    const filter_t* grad_last;
    const float* grad_bias_next;
    const scalar_t* x;
    const scalar_t* membrane;
    const scalar_t* spikes;
    const filter_t* checkpoints;
    scalar_t* grad_x;
    filter_t* grad_h0;
    float* grad_bias0;
    float* partials;
    int kind, reset_grad, threshold_grad;
    float params[4];
    long long T, N, sts, sns, stm, snm;
    filter_t back{}, h_enter{};  // bound to the lane by bind(); h_enter: the filter state entering this thread's steps

    __device__ void bind(long long n) {
        FireLane::bind(n);
        back = conjugate(a);
    }
    __device__ void fetch(Step& s, long long t, long long n) const {
        const long long i = t * N + n;
        s.x = load(x + i);
        s.grad_s = grad_spikes ? load(grad_spikes + t * sts + n * sns) : 0.0f;
        s.grad_m = grad_membrane ? load(grad_membrane + t * stm + n * snm) : 0.0f;
        s.m = reset_decay ? load(membrane + i) : 0.0f;
        s.spike = spikes ? load(spikes + i) : 0.0f;
    }
    // Rerun the filter over the segment from its checkpoint, then e_t, d_t and b_t + V s_t of every step.
    __device__ void prepare(Step (&steps)[SNN_STEPS], long long k, long long t0, long long n, bool, long long T_) {
        filter_t d, b;
        set_one(d);
        set_zero(b);
        SNN_UNROLL
        for (int j = 0; j < SNN_STEPS; ++j)
            if (t0 + j < T_) compose(d, b, a, drive(c, steps[j].x));
        filter_t pre_d, pre_b, tot_d, tot_b;
        block_prefix(d, b, 0, pre_d, pre_b, tot_d, tot_b);
        filter_t h = affine(pre_d, checkpoints[k * N + n], pre_b);
        h_enter = h;
        SNN_UNROLL
        for (int j = 0; j < SNN_STEPS; ++j) {
            Step& s = steps[j];
            h = affine(a, h, drive(c, s.x));
            s.h = h;
            const float m = reset_decay ? s.m : real_part(h) - bias;
            s.e = s.grad_s * surrogate_grad(kind, params, m - v_threshold);
            s.d = s.grad_m + s.e;
            // what rho multiplies in b_{t+1}: b_t + V s_t, or b_t (delayed); used with reset_grad only
            s.bias_step = delayed ? real_part(h) - m : real_part(h) - m + v_threshold * s.spike;
        }
    }
    __device__ void map(const Step& s, long long t, State& d, State& b) const {
        if (t < T - 1) d.g = back;
        else set_one(d.g);
        d.beta = rho;
        set_real(b.g, s.d);
        b.beta = -s.d;
    }
    __device__ void emit(Step (&steps)[SNN_STEPS], int j, long long t, long long n, const State& before,
                         const State& after, Partial& partial) {
        const filter_t G = after.g;
        const float g_re = real_part(G);
        store(grad_x + t * N + n, c * g_re);
        partial.scale += g_re * steps[j].x;
        partial.decay = add(partial.decay, mul(G, conjugate(j > 0 ? steps[j - 1].h : h_enter)));
        if (reset_grad) partial.rho += before.beta * steps[j].bias_step;
        if (threshold_grad) partial.threshold += (delayed ? 1.0f : rho) * before.beta * steps[j].spike - steps[j].e;
        if (t == 0) {
            grad_h0[n] = mul(back, G);
            if (grad_bias0) grad_bias0[n] = after.beta;
        }
    }
    __device__ State initial(long long n) const {
        State s;
        if (grad_last) s.g = grad_last[n];
        else set_zero(s.g);
        s.beta = grad_bias_next ? grad_bias_next[n] : 0.0f;
        return s;
    }
    __device__ void enter(long long, long long, const State&) const {}
    __device__ void store_partial(long long group, long long n, const Partial& total) const {
        float* rows = partials + group * 5 * N + n;
        rows[0] = real_part(total.decay);
        rows[N] = imag_part(total.decay);
        rows[2 * N] = total.scale;
        rows[3 * N] = total.rho;
        rows[4 * N] = total.threshold;
    }
};

// The threshold chain (see the top of this file): run(n) walks lane n.
struct FireChain : FireForwardArgs {
    float* bias_next;

    __device__ void run(long long n) {
        bind(n);
        filter_t h = h0[n];
        float b = bias;
        serial_walk(
            T, [&](long long t) { return filtered ? filtered[t * N + n] : load(x + t * N + n); },
            [&](long long t, float input) {
                float re = input;
                if (!filtered) {
                    if (t % SNN_SEGMENT == 0) checkpoints[(t / SNN_SEGMENT) * N + n] = h;
                    h = affine(a, h, drive(c, input));
                    re = real_part(h);
                }
                const float m = re - b;
                const float spike = spike_value(kind, params, inclusive, m - v_threshold);
                store(membrane + t * N + n, m);
                store(spikes + t * N + n, spike);
                b = delayed ? rho * b + v_threshold * spike : rho * (b + v_threshold * spike);
            });
        if (!filtered) h_last[n] = h;
        bias_next[n] = b;
    }
};

extern "C" __global__ void __launch_bounds__(32 * SNN_WARPS, 1)
    SNN_ENTRY(lf_fwd)(const scalar_t* __restrict__ x, const filter_t* __restrict__ decay,
                      const float* __restrict__ scale, const float* __restrict__ threshold, float threshold_value,
                      const filter_t* __restrict__ h0, const float* __restrict__ bias0,
                      scalar_t* __restrict__ spikes, scalar_t* __restrict__ membrane, float* __restrict__ filtered,
                      filter_t* __restrict__ checkpoints, filter_t* __restrict__ h_last, int* __restrict__ flags,
                      filter_t* __restrict__ agg_d, filter_t* __restrict__ agg_b,
                      filter_t* __restrict__ inclusive_states, int kind, float p0, float p1, float p2, float p3,
                      int inclusive, long long T, long long N, long long P, long long spatial, long long G) {
    FireForward op = {{{decay, scale, nullptr, threshold, threshold_value, bias0, P, spatial, 0}, x, h0, spikes, membrane, filtered,
                       checkpoints, h_last, kind, inclusive, {p0, p1, p2, p3}, T, N}};
    chunked_scan(op, chunking<filter_t>(T, N, G, 0, flags, agg_d, agg_b, inclusive_states));
}

extern "C" __global__ void SNN_ENTRY(lf_chain)(const scalar_t* __restrict__ x, float* filtered,
                                               const filter_t* __restrict__ decay, const float* __restrict__ scale,
                                               const float* __restrict__ reset_decay,
                                               const float* __restrict__ threshold, float threshold_value,
                                               const filter_t* __restrict__ h0, const float* __restrict__ bias0,
                                               scalar_t* __restrict__ spikes, scalar_t* membrane,
                                               filter_t* __restrict__ checkpoints, filter_t* __restrict__ h_last,
                                               float* __restrict__ bias_next, int kind, float p0, float p1, float p2,
                                               float p3, int inclusive, long long T, long long N, long long P,
                                               long long spatial, int delayed) {
    FireChain chain = {{{decay, scale, reset_decay, threshold, threshold_value, bias0, P, spatial, delayed}, x, h0, spikes, membrane, filtered,
                        checkpoints, h_last, kind, inclusive, {p0, p1, p2, p3}, T, N},
                       bias_next};
    for (long long n = item_start(); n < N; n += item_stride()) chain.run(n);
}

extern "C" __global__ void __launch_bounds__(32 * SNN_WARPS, 1)
    SNN_ENTRY(lf_bwd)(const scalar_t* __restrict__ grad_spikes, const scalar_t* __restrict__ grad_membrane,
                      const filter_t* __restrict__ grad_last, const float* __restrict__ grad_bias_next,
                      const scalar_t* __restrict__ x, const filter_t* __restrict__ decay,
                      const float* __restrict__ scale, const float* __restrict__ reset_decay,
                      const float* __restrict__ threshold, float threshold_value, const float* __restrict__ bias0,
                      const scalar_t* __restrict__ membrane,
                      const scalar_t* __restrict__ spikes, const filter_t* __restrict__ checkpoints,
                      scalar_t* __restrict__ grad_x, filter_t* __restrict__ grad_h0, float* __restrict__ grad_bias0,
                      float* __restrict__ partials, int* __restrict__ flags, WithBias<filter_t>* __restrict__ agg_d,
                      WithBias<filter_t>* __restrict__ agg_b, WithBias<filter_t>* __restrict__ inclusive_states,
                      int kind, float p0, float p1, float p2, float p3, int reset_grad, int threshold_grad,
                      long long T, long long N, long long P, long long spatial, long long sts, long long sns,
                      long long stm, long long snm, long long G, int delayed) {
    FireBackward op = {{decay, scale, reset_decay, threshold, threshold_value, bias0, P, spatial, delayed}, grad_spikes, grad_membrane,
                       grad_last, grad_bias_next, x, membrane, spikes, checkpoints, grad_x, grad_h0, grad_bias0,
                       partials, kind, reset_grad, threshold_grad, {p0, p1, p2, p3}, T, N, sts, sns, stm, snm};
    chunked_scan(op, chunking<WithBias<filter_t>>(T, N, G, 1, flags, agg_d, agg_b, inclusive_states));
}
