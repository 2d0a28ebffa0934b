// TSSL-BP's neuron, multi-step forward and its hand-written backward (snn_parallel/ops/tssl/{reference,parallel}.py):
// an SRM-style LIF with a hard reset whose output is its post-synaptic potential (PSP).
//
// Layout: sequences are time-major [T, N] (index t*N + n), per-lane state [N], all in the storage dtype.
// Items: one thread per lane n in [0, N); the T-step loops run in registers, in float32.
#include "common.cuh"

// The clamp of dt/du and the width and clamp of the silent-neuron sigmoid: reference.py's DT_DU_MIN,
// FALLBACK_WIDTH, FALLBACK_CLAMP, passed by the launcher as -DTSSL_<NAME> (snn_parallel/ops/tssl/cupy.py).
#if !defined(TSSL_DT_DU_MIN) || !defined(TSSL_FALLBACK_WIDTH) || !defined(TSSL_FALLBACK_CLAMP)
#error "TSSL_DT_DU_MIN, TSSL_FALLBACK_WIDTH and TSSL_FALLBACK_CLAMP are passed by the launcher (-D)"
#endif

__device__ __forceinline__ float clamp_to(float x, float lo, float hi) { return fminf(fmaxf(x, lo), hi); }

// tssl_fwd: for t = 0..T-1, from (u, a) = (u0, a0), in the reference's order of operations:
//     du_t = I_t - u_{t-1} / tau_m                                              -> delta_u[t]
//     v_t  = u_{t-1} + du_t              (= (1 - 1/tau_m) u_{t-1} + I_t, before the reset) -> membrane[t]
//     o_t  = Theta(v_t - V_th)           (heaviside: inclusive fires on >=, else on >)       -> spikes[t]
//     a_t  = a_{t-1} + (o_t - a_{t-1}) / tau_s   (= (1 - 1/tau_s) a_{t-1} + o_t / tau_s)    -> psp[t]
//     u_t  = v_t (1 - o_t)               (hard reset)
// and the final state (u_{T-1}, a_{T-1}) -> (u_last, a_last).
extern "C" __global__ void tssl_fwd(const scalar_t* __restrict__ current, const scalar_t* __restrict__ u0,
                                    const scalar_t* __restrict__ a0, scalar_t* __restrict__ psp,
                                    scalar_t* __restrict__ spikes, scalar_t* __restrict__ membrane,
                                    scalar_t* __restrict__ delta_u, scalar_t* __restrict__ u_last,
                                    scalar_t* __restrict__ a_last, float v_threshold, float tau_m, float tau_s,
                                    int inclusive, long long T, long long N) {
    for (long long n = item_start(); n < N; n += item_stride()) {
        float u = load(u0 + n), a = load(a0 + n);
        SNN_UNROLL_4
        for (long long t = 0; t < T; ++t) {
            const long long i = t * N + n;
            const float du = load(current + i) - u / tau_m;
            const float v = u + du;
            const float spike = heaviside(inclusive, v - v_threshold);
            a = a + (spike - a) / tau_s;
            store(delta_u + i, du);
            store(membrane + i, v);
            store(spikes + i, spike);
            store(psp + i, a);
            u = v * (1.0f - spike);
        }
        store(u_last + n, u);
        store(a_last + n, a);
    }
}

// tssl_bwd: grad_current = dL/dI_t from g_t = dL/da_t (tssl_backward, parallel.py), walking t = T-1..0 with
// theta_m = 1/tau_m and the PSP kernel eps_k = (1 - 1/tau_s)^k / tau_s:
//     S_t = sum_{k=0}^{T-1-t} eps_k g_{t+k} = g_t / tau_s + (1 - 1/tau_s) S_{t+1}      (S_T = 0)
//     p_t = clamp(-1/du_t, -8, 0) o_t                       (dt/du; a spike on du_t = 0 gets -8; the factor
//                                                            o_t only with dt_du_at_spikes)
//     A_t = -p_t S_t                                        (inter-neuron term)
//     c_t = -theta_m v_t p_t + (1 - theta_m)(1 - o_t)       (what the reset carries back)
//     d_t = A_t + c_t vartheta_{t+1},   vartheta_t = o_t d_t + (1 - o_t)(1 - theta_m) vartheta_{t+1}   (vartheta_T = 0)
//     grad_current[t] = S_t f(v_t) where the neuron is silent (a_t < 1/(4 tau_s)), else d_t
// with the fallback slope f(v) = e / (0.2 (1 + e)^2), e = exp(clamp((V_th - v)/0.2, -8, 8)). vartheta is
// carried with d_t, not with the fallback, as in the reference code.
extern "C" __global__ void tssl_bwd(const scalar_t* __restrict__ grad_psp, const scalar_t* __restrict__ spikes,
                                    const scalar_t* __restrict__ membrane, const scalar_t* __restrict__ delta_u,
                                    const scalar_t* __restrict__ psp, scalar_t* __restrict__ grad_current,
                                    float v_threshold, float tau_m, float tau_s, int dt_du_at_spikes, long long T,
                                    long long N) {
    const float theta_m = 1.0f / tau_m, keep_s = 1.0f - 1.0f / tau_s, silent = 1.0f / (4.0f * tau_s);
    for (long long n = item_start(); n < N; n += item_stride()) {
        float inter_sum = 0.0f, carry = 0.0f;  // S_{t+1}, vartheta_{t+1}
        SNN_UNROLL_4
        for (long long t = T - 1; t >= 0; --t) {
            const long long i = t * N + n;
            const float spike = load(spikes + i), v = load(membrane + i);
            inter_sum = load(grad_psp + i) / tau_s + keep_s * inter_sum;
            const float dt_du =
                clamp_to(-1.0f / load(delta_u + i), TSSL_DT_DU_MIN, 0.0f) * (dt_du_at_spikes ? spike : 1.0f);
            const float carried = -theta_m * v * dt_du + (1.0f - theta_m) * (1.0f - spike);
            const float grad = -dt_du * inter_sum + carried * carry;
            carry = spike * grad + (1.0f - spike) * (1.0f - theta_m) * carry;
            float g = grad;
            if (load(psp + i) < silent) {
                const float e = expf(clamp_to((v_threshold - v) / TSSL_FALLBACK_WIDTH, -TSSL_FALLBACK_CLAMP,
                                              TSSL_FALLBACK_CLAMP));
                g = inter_sum * (e / ((1.0f + e) * (1.0f + e) * TSSL_FALLBACK_WIDTH));
            }
            store(grad_current + i, g);
        }
    }
}
