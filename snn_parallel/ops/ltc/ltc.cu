// LTC spiking neuron, fused multi-step forward and backward (snn_parallel/ops/ltc/{reference,fused}.py).
//
// Layout: sequences are time-major [T, N] (index t*N + n), per-lane state [N], in the storage dtype; arithmetic in
// float32.
#include "chunked.cuh"

// ltc_fwd: one thread per lane n in [0, N) (the hard reset makes the recurrence serial), with the inputs of the next
// SNN_STEPS steps in flight while the current ones run. For t = 0..T-1, from (u, s, b) = (u0, s0, b_init):
//     b_t = s_{t-1} + rho_t (b_{t-1} - s_{t-1})        (= rho b + (1 - rho) s)     -> trace[t]
//     v_t = u_{t-1} + m_t (I_t - u_{t-1})              (membrane before reset)     -> membrane[t]
//     s_t = S(v_t - (b0 + beta_a b_t))                 (spike_value: kind, params, inclusive) -> spikes[t]
//     u_t = v_t (1 - s_t)                              (hard reset)
// The final state is (membrane[T-1] (1 - spikes[T-1]), spikes[T-1], trace[T-1]).
struct LtcInput {
    float current, rate, retention;
};

extern "C" __global__ void ltc_fwd(const scalar_t* __restrict__ current, const scalar_t* __restrict__ rate,
                                   const scalar_t* __restrict__ retention, const scalar_t* __restrict__ u0,
                                   const scalar_t* __restrict__ s0, const scalar_t* __restrict__ b_init,
                                   scalar_t* __restrict__ spikes, scalar_t* __restrict__ membrane,
                                   scalar_t* __restrict__ trace, float b0, float beta_a, int kind, float p0, float p1,
                                   float p2, float p3, int inclusive, long long T, long long N) {
    const float params[4] = {p0, p1, p2, p3};
    for (long long n = item_start(); n < N; n += item_stride()) {
        float u = load(u0 + n), s = load(s0 + n), b = load(b_init + n);
        serial_walk(
            T,
            [&](long long t) {
                const long long i = t * N + n;
                return LtcInput{load(current + i), load(rate + i), load(retention + i)};
            },
            [&](long long t, const LtcInput& input) {
                const long long i = t * N + n;
                b = s + input.retention * (b - s);
                const float v = u + input.rate * (input.current - u);
                const float spike = spike_value(kind, params, inclusive, v - (b0 + beta_a * b));
                store(trace + i, b);
                store(membrane + i, v);
                store(spikes + i, spike);
                u = v * (1.0f - spike);
                s = spike;
            });
    }
}

// ltc_bwd: the backward of ltc_backward (fused.py) as a reverse time-chunked scan (chunked.cuh). The gradients
// carried into step t from step t + 1, C = (Gu, Gs, Gb) of (u_t after the reset, s_t, b_t) (from grad_{u,s,b}_last
// at t = T-1), are linear in C: with g' = S'(v_t - (b0 + beta_a b_t)),
//     gv = (Gs + dL/ds_t - Gu v_t) g',   gu = dL/dv_t + Gu (1 - s_t) + gv,   gb = Gb - beta_a gv
//     C_{t-1} = (gu (1 - m_t), gb (1 - rho_t), gb rho_t)
// a 3 x 3 matrix map per step (ltc_map). Each thread then reruns its steps from the carry entering them:
//     grad_current[t] = gu m_t,  grad_rate[t] = gu (I_t - u_{t-1}),  grad_retention[t] = gb (b_{t-1} - s_{t-1})
// with (u_{-1}, s_{-1}, b_{-1}) = (u0, s0, b_init) and u_{t-1} = membrane[t-1] (1 - spikes[t-1]);
// and C_{-1} -> (grad_u0, grad_s0, grad_b_init). Surrogate kinds: see common.cuh.
struct LtcStep {
    float current, rate, retention, v, spike, b, gs, gm;
};

struct LtcBackward {
    typedef Vec<3> State;
    typedef Mat<3> Decay;
    typedef LtcStep Step;
    typedef NoPartial Partial;
    const scalar_t* grad_spikes;
    const scalar_t* grad_membrane;
    const scalar_t* grad_u_last;
    const scalar_t* grad_s_last;
    const scalar_t* grad_b_last;
    const scalar_t* current;
    const scalar_t* rate;
    const scalar_t* retention;
    const scalar_t* u0;
    const scalar_t* s0;
    const scalar_t* b_init;
    const scalar_t* spikes;
    const scalar_t* membrane;
    const scalar_t* trace;
    scalar_t* grad_current;
    scalar_t* grad_rate;
    scalar_t* grad_retention;
    scalar_t* grad_u0;
    scalar_t* grad_s0;
    scalar_t* grad_b_init;
    float b0, beta_a;
    int kind;
    float params[4];
    long long T, N;
    float u_enter = 0.0f, s_enter = 0.0f, b_enter = 0.0f;  // the state before this thread's first step

    __device__ void bind(long long) {}
    __device__ void fetch(Step& s, long long t, long long n) const {
        const long long i = t * N + n;
        s = {load(current + i), load(rate + i), load(retention + i), load(membrane + i), load(spikes + i),
             load(trace + i), load(grad_spikes + i), load(grad_membrane + i)};
    }
    __device__ void prepare(Step (&)[SNN_STEPS], long long, long long t0, long long n, bool, long long) {
        const long long t = (t0 < T ? t0 : T) - 1, i = t * N + n;
        if (t >= 0) {
            s_enter = load(spikes + i);
            u_enter = load(membrane + i) * (1.0f - s_enter);
            b_enter = load(trace + i);
        } else {
            u_enter = load(u0 + n);
            s_enter = load(s0 + n);
            b_enter = load(b_init + n);
        }
    }
    __device__ float slope(const Step& s) const { return surrogate_grad(kind, params, s.v - (b0 + beta_a * s.b)); }
    // The rows of gu and gb as maps of C (the factors of Gu, Gs, Gb, then the constant term).
    __device__ void map(const Step& s, long long, Decay& d, State& b) const {
        const float sg = slope(s);
        const float gu[4] = {1.0f - s.spike - sg * s.v, sg, 0.0f, s.gm + sg * s.gs};
        const float gb[4] = {beta_a * sg * s.v, -beta_a * sg, 1.0f, -beta_a * sg * s.gs};
        const float keep[3] = {1.0f - s.rate, 1.0f - s.retention, s.retention};
        SNN_UNROLL
        for (int j = 0; j < 3; ++j) {
            d.m[0][j] = keep[0] * gu[j];
            d.m[1][j] = keep[1] * gb[j];
            d.m[2][j] = keep[2] * gb[j];
        }
        b.v[0] = keep[0] * gu[3];
        b.v[1] = keep[1] * gb[3];
        b.v[2] = keep[2] * gb[3];
    }
    __device__ void emit(Step (&steps)[SNN_STEPS], int j, long long t, long long n, const State& carry,
                         const State& after, NoPartial&) {
        const Step& s = steps[j];
        const float gv = (carry.v[1] + s.gs - carry.v[0] * s.v) * slope(s);
        const float gu = s.gm + carry.v[0] * (1.0f - s.spike) + gv, gb = carry.v[2] - beta_a * gv;
        const float s_prev = j > 0 ? steps[j - 1].spike : s_enter;
        const float u_prev = j > 0 ? steps[j - 1].v * (1.0f - s_prev) : u_enter;
        const float b_prev = j > 0 ? steps[j - 1].b : b_enter;
        const long long i = t * N + n;
        store(grad_current + i, gu * s.rate);
        store(grad_rate + i, gu * (s.current - u_prev));
        store(grad_retention + i, gb * (b_prev - s_prev));
        if (t == 0) {
            store(grad_u0 + n, after.v[0]);
            store(grad_s0 + n, after.v[1]);
            store(grad_b_init + n, after.v[2]);
        }
    }
    __device__ State initial(long long n) const { return {{load(grad_u_last + n), load(grad_s_last + n), load(grad_b_last + n)}}; }
    __device__ void enter(long long, long long, const State&) const {}
    __device__ void store_partial(long long, long long, const NoPartial&) const {}
};

extern "C" __global__ void __launch_bounds__(32 * SNN_WARPS, 1)
    ltc_bwd(const scalar_t* __restrict__ grad_spikes, const scalar_t* __restrict__ grad_membrane,
            const scalar_t* __restrict__ grad_u_last, const scalar_t* __restrict__ grad_s_last,
            const scalar_t* __restrict__ grad_b_last, const scalar_t* __restrict__ current,
            const scalar_t* __restrict__ rate, const scalar_t* __restrict__ retention, const scalar_t* __restrict__ u0,
            const scalar_t* __restrict__ s0, const scalar_t* __restrict__ b_init, const scalar_t* __restrict__ spikes,
            const scalar_t* __restrict__ membrane, const scalar_t* __restrict__ trace,
            scalar_t* __restrict__ grad_current, scalar_t* __restrict__ grad_rate,
            scalar_t* __restrict__ grad_retention, scalar_t* __restrict__ grad_u0, scalar_t* __restrict__ grad_s0,
            scalar_t* __restrict__ grad_b_init, int* __restrict__ flags, Mat<3>* __restrict__ agg_d,
            Vec<3>* __restrict__ agg_b, Vec<3>* __restrict__ inclusive_states, float b0, float beta_a, int kind,
            float p0, float p1, float p2, float p3, long long T, long long N, long long G) {
    LtcBackward op = {grad_spikes, grad_membrane, grad_u_last, grad_s_last, grad_b_last, current, rate, retention,
                      u0, s0, b_init, spikes, membrane, trace, grad_current, grad_rate, grad_retention, grad_u0,
                      grad_s0, grad_b_init, b0, beta_a, kind, {p0, p1, p2, p3}, T, N};
    chunked_scan(op, chunking<Vec<3>>(T, N, G, 1, flags, agg_d, agg_b, inclusive_states));
}
