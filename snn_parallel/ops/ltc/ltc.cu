// LTC spiking neuron, fused multi-step forward and backward (snn_parallel/ops/ltc/{reference,fused}.py).
//
// Layout: sequences are time-major [T, N] (index t*N + n), per-lane state [N].
// Items: one thread per lane n in [0, N); the T-step loop runs in registers, in float32.
#include "common.cuh"

// ltc_fwd: for t = 0..T-1, from (u, s, b) = (u0, s0, b_init):
//     b_t = s_{t-1} + rho_t (b_{t-1} - s_{t-1})        (= rho b + (1 - rho) s)     -> trace[t]
//     v_t = u_{t-1} + m_t (I_t - u_{t-1})              (membrane before reset)     -> membrane[t]
//     s_t = S(v_t - (b0 + beta_a b_t))                 (spike_value: kind, params, inclusive) -> spikes[t]
//     u_t = v_t (1 - s_t)                              (hard reset)
// The final state is (membrane[T-1] (1 - spikes[T-1]), spikes[T-1], trace[T-1]).
extern "C" __global__ void ltc_fwd(const scalar_t* __restrict__ current, const scalar_t* __restrict__ rate,
                                   const scalar_t* __restrict__ retention, const scalar_t* __restrict__ u0,
                                   const scalar_t* __restrict__ s0, const scalar_t* __restrict__ b_init,
                                   scalar_t* __restrict__ spikes, scalar_t* __restrict__ membrane,
                                   scalar_t* __restrict__ trace, float b0, float beta_a, int kind, float p0, float p1,
                                   float p2, float p3, int inclusive, long long T, long long N) {
    const float params[4] = {p0, p1, p2, p3};
    for (long long n = item_start(); n < N; n += item_stride()) {
        float u = load(u0 + n), s = load(s0 + n), b = load(b_init + n);
        SNN_UNROLL_4
        for (long long t = 0; t < T; ++t) {
            const long long i = t * N + n;
            b = s + load(retention + i) * (b - s);
            const float v = u + load(rate + i) * (load(current + i) - u);
            const float spike = spike_value(kind, params, inclusive, v - (b0 + beta_a * b));
            store(trace + i, b);
            store(membrane + i, v);
            store(spikes + i, spike);
            u = v * (1.0f - spike);
            s = spike;
        }
    }
}

// ltc_bwd: reverse loop of ltc_backward (fused.py). With carried gradients (Gu, Gs, Gb) of
// (u_t after reset, s_t, b_t), started from grad_{u,s,b}_last, for t = T-1..0:
//     gv = (Gs + dL/ds_t - Gu v_t) g'(v_t - (b0 + beta_a b_t))
//     gu = dL/dv_t + Gu (1 - s_t) + gv,        gb = Gb - beta_a gv
//     grad_current[t] = gu m_t,  grad_rate[t] = gu (I_t - u_{t-1}),  grad_retention[t] = gb (b_{t-1} - s_{t-1})
//     Gu <- gu (1 - m_t),  Gb <- gb rho_t,  Gs <- gb - Gb  (= gb (1 - rho_t))
// with (u_{-1}, s_{-1}, b_{-1}) = (u0, s0, b_init) and u_{t-1} = membrane[t-1] (1 - spikes[t-1]);
// finally grad_u0, grad_s0, grad_b_init = Gu, Gs, Gb. Surrogate kinds: see common.cuh.
extern "C" __global__ void ltc_bwd(const scalar_t* __restrict__ grad_spikes, const scalar_t* __restrict__ grad_membrane,
                                   const scalar_t* __restrict__ grad_u_last, const scalar_t* __restrict__ grad_s_last,
                                   const scalar_t* __restrict__ grad_b_last, const scalar_t* __restrict__ current,
                                   const scalar_t* __restrict__ rate, const scalar_t* __restrict__ retention,
                                   const scalar_t* __restrict__ u0, const scalar_t* __restrict__ s0,
                                   const scalar_t* __restrict__ b_init, const scalar_t* __restrict__ spikes,
                                   const scalar_t* __restrict__ membrane, const scalar_t* __restrict__ trace,
                                   scalar_t* __restrict__ grad_current, scalar_t* __restrict__ grad_rate,
                                   scalar_t* __restrict__ grad_retention, scalar_t* __restrict__ grad_u0,
                                   scalar_t* __restrict__ grad_s0, scalar_t* __restrict__ grad_b_init, float b0,
                                   float beta_a, int kind, float p0, float p1, float p2, float p3, long long T,
                                   long long N) {
    const float params[4] = {p0, p1, p2, p3};
    for (long long n = item_start(); n < N; n += item_stride()) {
        float carry_u = load(grad_u_last + n), carry_s = load(grad_s_last + n), carry_b = load(grad_b_last + n);
        SNN_UNROLL_4
        for (long long t = T - 1; t >= 0; --t) {
            const long long i = t * N + n;
            const float v = load(membrane + i), spike = load(spikes + i), b = load(trace + i);
            const float m = load(rate + i), rho = load(retention + i);
            // state entering step t
            float u_prev, s_prev, b_prev;
            if (t > 0) {
                s_prev = load(spikes + i - N);
                u_prev = load(membrane + i - N) * (1.0f - s_prev);
                b_prev = load(trace + i - N);
            } else {
                u_prev = load(u0 + n);
                s_prev = load(s0 + n);
                b_prev = load(b_init + n);
            }
            const float sg = surrogate_grad(kind, params, v - (b0 + beta_a * b));
            const float gv = (carry_s + load(grad_spikes + i) - carry_u * v) * sg;
            const float gu = load(grad_membrane + i) + carry_u * (1.0f - spike) + gv;
            const float gb = carry_b - beta_a * gv;
            store(grad_current + i, gu * m);
            store(grad_rate + i, gu * (load(current + i) - u_prev));
            store(grad_retention + i, gb * (b_prev - s_prev));
            carry_u = gu * (1.0f - m);
            carry_b = gb * rho;
            carry_s = gb - carry_b;
        }
        store(grad_u0 + n, carry_u);
        store(grad_s0 + n, carry_s);
        store(grad_b_init + n, carry_b);
    }
}
