// TSSL-BP's neuron, multi-step forward and its hand-written backward (snn_parallel/ops/tssl/{reference,parallel}.py):
// an SRM-style LIF with a hard reset whose output is its post-synaptic potential (PSP).
//
// Layout: sequences are time-major [T, N] (index t*N + n), per-lane state [N], all in the storage dtype; arithmetic
// in float32.
#include "chunked.cuh"

// The clamp of dt/du and the width and clamp of the silent-neuron sigmoid: reference.py's DT_DU_MIN,
// FALLBACK_WIDTH, FALLBACK_CLAMP, passed by the launcher as -DTSSL_<NAME> (snn_parallel/ops/tssl/cupy.py).
#if !defined(TSSL_DT_DU_MIN) || !defined(TSSL_FALLBACK_WIDTH) || !defined(TSSL_FALLBACK_CLAMP)
#error "TSSL_DT_DU_MIN, TSSL_FALLBACK_WIDTH and TSSL_FALLBACK_CLAMP are passed by the launcher (-D)"
#endif

__device__ __forceinline__ float clamp_to(float x, float lo, float hi) { return fminf(fmaxf(x, lo), hi); }

// tssl_fwd: one thread per lane n in [0, N) (the hard reset makes it serial), with the next SNN_STEPS steps' inputs in
// flight while the current ones run. For t = 0..T-1, from (u, a) = (u0, a0), in the reference's order of operations:
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
        serial_walk(
            T, [&](long long t) { return load(current + t * N + n); },
            [&](long long t, float input) {
                const long long i = t * N + n;
                const float du = input - u / tau_m;
                const float v = u + du;
                const float spike = heaviside(inclusive, v - v_threshold);
                a = a + (spike - a) / tau_s;
                store(delta_u + i, du);
                store(membrane + i, v);
                store(spikes + i, spike);
                store(psp + i, a);
                u = v * (1.0f - spike);
            });
        store(u_last + n, u);
        store(a_last + n, a);
    }
}

// tssl_bwd: grad_current = dL/dI_t from g_t = dL/da_t (tssl_backward, parallel.py), with theta_m = 1/tau_m and the
// PSP kernel eps_k = (1 - 1/tau_s)^k / tau_s:
//     S_t = sum_{k=0}^{T-1-t} eps_k g_{t+k} = g_t / tau_s + (1 - 1/tau_s) S_{t+1}      (S_T = 0)
//     p_t = clamp(-1/du_t, -8, 0) o_t                       (dt/du; a spike on du_t = 0 gets -8; the factor
//                                                            o_t only with dt_du_at_spikes)
//     A_t = -p_t S_t                                        (inter-neuron term)
//     c_t = -theta_m v_t p_t + (1 - theta_m)(1 - o_t)       (what the reset carries back)
//     d_t = A_t + c_t vartheta_{t+1},   vartheta_t = o_t d_t + (1 - o_t)(1 - theta_m) vartheta_{t+1}   (vartheta_T = 0)
//     grad_current[t] = S_t f(v_t) where the neuron is silent (a_t < 1/(4 tau_s)), else d_t
// with the fallback slope f(v) = e / (0.2 (1 + e)^2), e = exp(clamp((V_th - v)/0.2, -8, 8)). vartheta is
// carried with d_t, not with the fallback, as in the reference code. (S, vartheta) is linear in (S, vartheta) of the
// step after, a 2 x 2 matrix map per step: a reverse time-chunked scan (chunked.cuh), each thread then rerunning
// its steps from the pair entering them.
struct TsslStep {
    float g, spike, v, du, psp;  // du is replaced by p_t in prepare()
    float carried;               // c_t
};

struct TsslBackward {
    typedef Vec<2> State;
    typedef Mat<2> Decay;
    typedef TsslStep Step;
    typedef NoPartial Partial;
    const scalar_t* grad_psp;
    const scalar_t* spikes;
    const scalar_t* membrane;
    const scalar_t* delta_u;
    const scalar_t* psp;
    scalar_t* grad_current;
    float v_threshold, tau_m, tau_s;
    int dt_du_at_spikes;
    long long T, N;

    __device__ void bind(long long) {}
    __device__ void fetch(Step& s, long long t, long long n) const {
        const long long i = t * N + n;
        s = {load(grad_psp + i), load(spikes + i), load(membrane + i), load(delta_u + i), load(psp + i), 0.0f};
    }
    __device__ void prepare(Step (&steps)[SNN_STEPS], long long, long long, long long, bool, long long) {
        const float theta_m = 1.0f / tau_m;
        SNN_UNROLL
        for (int j = 0; j < SNN_STEPS; ++j) {
            Step& s = steps[j];
            s.du = clamp_to(-1.0f / s.du, TSSL_DT_DU_MIN, 0.0f) * (dt_du_at_spikes ? s.spike : 1.0f);
            s.carried = -theta_m * s.v * s.du + (1.0f - theta_m) * (1.0f - s.spike);
        }
    }
    __device__ void map(const Step& s, long long, Decay& d, State& b) const {
        const float keep_s = 1.0f - 1.0f / tau_s, drive = s.g / tau_s, fire = -s.spike * s.du;
        d.m[0][0] = keep_s;
        d.m[0][1] = 0.0f;
        d.m[1][0] = fire * keep_s;
        d.m[1][1] = s.spike * s.carried + (1.0f - s.spike) * (1.0f - 1.0f / tau_m);
        b.v[0] = drive;
        b.v[1] = fire * drive;
    }
    __device__ void emit(Step (&steps)[SNN_STEPS], int j, long long t, long long n, const State& before,
                         const State& after, NoPartial&) {
        const Step& s = steps[j];
        const float inter_sum = after.v[0];
        float g = -s.du * inter_sum + s.carried * before.v[1];
        if (s.psp < 1.0f / (4.0f * tau_s)) {
            const float e = expf(clamp_to((v_threshold - s.v) / TSSL_FALLBACK_WIDTH, -TSSL_FALLBACK_CLAMP, TSSL_FALLBACK_CLAMP));
            g = inter_sum * (e / ((1.0f + e) * (1.0f + e) * TSSL_FALLBACK_WIDTH));
        }
        store(grad_current + t * N + n, g);
    }
    __device__ State initial(long long) const { return {{0.0f, 0.0f}}; }
    __device__ void enter(long long, long long, const State&) const {}
    __device__ void store_partial(long long, long long, const NoPartial&) const {}
};

extern "C" __global__ void __launch_bounds__(32 * SNN_WARPS, 1)
    tssl_bwd(const scalar_t* __restrict__ grad_psp, const scalar_t* __restrict__ spikes,
             const scalar_t* __restrict__ membrane, const scalar_t* __restrict__ delta_u,
             const scalar_t* __restrict__ psp, scalar_t* __restrict__ grad_current, int* __restrict__ flags,
             Mat<2>* __restrict__ agg_d, Vec<2>* __restrict__ agg_b, Vec<2>* __restrict__ inclusive_states,
             float v_threshold, float tau_m, float tau_s, int dt_du_at_spikes, long long T, long long N, long long G) {
    TsslBackward op = {grad_psp, spikes, membrane, delta_u, psp, grad_current, v_threshold, tau_m, tau_s,
                       dt_du_at_spikes, T, N};
    chunked_scan(op, chunking<Vec<2>>(T, N, G, 1, flags, agg_d, agg_b, inclusive_states));
}
