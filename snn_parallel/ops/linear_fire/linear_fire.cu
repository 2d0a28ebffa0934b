// Linear membrane with a spike readout and an optional threshold-bias soft reset, fused multi-step forward and
// backward (snn_parallel/ops/linear_fire/{reference,fused}.py): PRF (complex filter, lf_*_complex) and the
// decoupled-reset LIF (real filter, lf_*_real).
//
//     h_t = a h_{t-1} + c x_t,   m_t = Re h_t - b_t,   s_t = S(m_t - V_th),   b_{t+1} = rho (b_t + V_th s_t)
//
// Layout: sequences are time-major [T, N] (index t*N + n) in the storage dtype; per-lane tensors [N] are float32,
// and the filter values (a, h0, h_last, checkpoints, grad_decay, grad_h0, grad_last) are float2 in the complex
// kernels. checkpoints is [K, N], K = ceil(T / LF_CHUNK): the filter state entering each chunk of LF_CHUNK steps,
// written by the forward so that the backward reruns the filter one chunk at a time. reset_decay (rho) is [N], or
// null for no reset (b stays at bias0); no gradient flows through b (BPTT with a detached reset).
// Items: one thread per lane n in [0, N); the T-step loop runs in registers, in float32.
#include "common.cuh"

// Steps per checkpoint (-DLF_CHUNK, snn_parallel/ops/linear_fire/cupy.py); the backward keeps one chunk of filter
// states in a per-thread array of this length.
#ifndef LF_CHUNK
#error "LF_CHUNK is passed by the launcher (-D)"
#endif

template <class Acc>
__device__ __forceinline__ Acc lf_drive(float c, float x) {
    Acc z;
    set_real(z, c * x);
    return z;
}

// Forward of lane n (equations above): writes spikes, membrane, checkpoints, h_last and bias_next.
template <class Acc>
__device__ __forceinline__ void lf_forward_lane(const scalar_t* __restrict__ x, const Acc* __restrict__ decay,
                                                const float* __restrict__ scale, const Acc* __restrict__ h0,
                                                const float* __restrict__ bias0, const float* __restrict__ reset_decay,
                                                scalar_t* __restrict__ spikes, scalar_t* __restrict__ membrane,
                                                Acc* __restrict__ checkpoints, Acc* __restrict__ h_last,
                                                float* __restrict__ bias_next, float v_threshold, int kind,
                                                const float* __restrict__ params, int inclusive, long long T,
                                                long long N, long long n) {
    const Acc a = decay[n];
    const float c = scale[n], rho = reset_decay ? reset_decay[n] : 0.0f;
    Acc h = h0[n];
    float bias = bias0[n];
    SNN_UNROLL_4
    for (long long t = 0; t < T; ++t) {
        if (t % LF_CHUNK == 0) checkpoints[(t / LF_CHUNK) * N + n] = h;
        const long long i = t * N + n;
        h = add(mul(a, h), lf_drive<Acc>(c, load(x + i)));
        const float m = real_part(h) - bias;
        const float spike = spike_value(kind, params, inclusive, m - v_threshold);
        store(membrane + i, m);
        store(spikes + i, spike);
        if (reset_decay) bias = rho * (bias + v_threshold * spike);
    }
    h_last[n] = h;
    bias_next[n] = bias;
}

// Backward of lane n. With d_t = dL/dm_t + dL/ds_t g'(m_t - V_th) and the filter gradient G_t = d_t + conj(a) G_{t+1}
// (G_{T-1} = d_{T-1} + grad_last), walking the chunks from the last:
//     grad_x[t] = c Re G_t,   grad_scale = sum_t Re(G_t) x_t,   grad_decay = sum_t G_t conj(h_{t-1}),
//     grad_h0 = conj(a) G_0
// where h_{t-1} is rerun from the chunk's checkpoint into a per-thread array.
template <class Acc>
__device__ __forceinline__ void lf_backward_lane(const scalar_t* __restrict__ grad_spikes,
                                                 const scalar_t* __restrict__ grad_membrane,
                                                 const Acc* __restrict__ grad_last, const scalar_t* __restrict__ x,
                                                 const Acc* __restrict__ decay, const float* __restrict__ scale,
                                                 const scalar_t* __restrict__ membrane,
                                                 const Acc* __restrict__ checkpoints, scalar_t* __restrict__ grad_x,
                                                 Acc* __restrict__ grad_decay, float* __restrict__ grad_scale,
                                                 Acc* __restrict__ grad_h0, float v_threshold, int kind,
                                                 const float* __restrict__ params, long long T, long long N,
                                                 long long n) {
    const Acc a = decay[n], back = conjugate(decay[n]);
    const float c = scale[n];
    Acc carry = grad_last[n], acc_decay;  // carry = conj(a) G_{t+1}, the gradient reaching h_t from later steps
    set_zero(acc_decay);
    float acc_scale = 0.0f;
    Acc prev[LF_CHUNK];  // prev[j] = h_{start + j - 1}
    for (long long k = (T + LF_CHUNK - 1) / LF_CHUNK - 1; k >= 0; --k) {
        const long long start = k * LF_CHUNK, stop = start + LF_CHUNK < T ? start + LF_CHUNK : T;
        const int steps = (int)(stop - start);
        prev[0] = checkpoints[k * N + n];
        SNN_UNROLL_4
        for (int j = 0; j + 1 < steps; ++j)
            prev[j + 1] = add(mul(a, prev[j]), lf_drive<Acc>(c, load(x + (start + j) * N + n)));
        SNN_UNROLL_4
        for (int j = steps - 1; j >= 0; --j) {
            const long long i = (start + j) * N + n;
            const float d = load(grad_spikes + i) * surrogate_grad(kind, params, load(membrane + i) - v_threshold) +
                            load(grad_membrane + i);
            Acc g;
            set_real(g, d);
            g = add(g, carry);
            const float g_re = real_part(g);
            store(grad_x + i, c * g_re);
            acc_scale += g_re * load(x + i);
            acc_decay = add(acc_decay, mul(g, conjugate(prev[j])));
            carry = mul(back, g);
        }
    }
    grad_decay[n] = acc_decay;
    grad_scale[n] = acc_scale;
    grad_h0[n] = carry;
}

// lf_fwd_real / lf_fwd_complex: the forward of every lane. Items: lanes n in [0, N).
extern "C" __global__ void lf_fwd_real(const scalar_t* __restrict__ x, const float* __restrict__ decay,
                                       const float* __restrict__ scale, const float* __restrict__ h0,
                                       const float* __restrict__ bias0, const float* __restrict__ reset_decay,
                                       scalar_t* __restrict__ spikes, scalar_t* __restrict__ membrane,
                                       float* __restrict__ checkpoints, float* __restrict__ h_last,
                                       float* __restrict__ bias_next, float v_threshold, int kind, float p0, float p1,
                                       float p2, float p3, int inclusive, long long T, long long N) {
    const float params[4] = {p0, p1, p2, p3};
    for (long long n = item_start(); n < N; n += item_stride())
        lf_forward_lane(x, decay, scale, h0, bias0, reset_decay, spikes, membrane, checkpoints, h_last, bias_next,
                        v_threshold, kind, params, inclusive, T, N, n);
}

extern "C" __global__ void lf_fwd_complex(const scalar_t* __restrict__ x, const float2* __restrict__ decay,
                                          const float* __restrict__ scale, const float2* __restrict__ h0,
                                          const float* __restrict__ bias0, const float* __restrict__ reset_decay,
                                          scalar_t* __restrict__ spikes, scalar_t* __restrict__ membrane,
                                          float2* __restrict__ checkpoints, float2* __restrict__ h_last,
                                          float* __restrict__ bias_next, float v_threshold, int kind, float p0,
                                          float p1, float p2, float p3, int inclusive, long long T, long long N) {
    const float params[4] = {p0, p1, p2, p3};
    for (long long n = item_start(); n < N; n += item_stride())
        lf_forward_lane(x, decay, scale, h0, bias0, reset_decay, spikes, membrane, checkpoints, h_last, bias_next,
                        v_threshold, kind, params, inclusive, T, N, n);
}

// lf_bwd_real / lf_bwd_complex: gradients of (x, decay, scale, h0) per lane. Items: lanes n in [0, N).
extern "C" __global__ void lf_bwd_real(const scalar_t* __restrict__ grad_spikes,
                                       const scalar_t* __restrict__ grad_membrane, const float* __restrict__ grad_last,
                                       const scalar_t* __restrict__ x, const float* __restrict__ decay,
                                       const float* __restrict__ scale, const scalar_t* __restrict__ membrane,
                                       const float* __restrict__ checkpoints, scalar_t* __restrict__ grad_x,
                                       float* __restrict__ grad_decay, float* __restrict__ grad_scale,
                                       float* __restrict__ grad_h0, float v_threshold, int kind, float p0, float p1,
                                       float p2, float p3, long long T, long long N) {
    const float params[4] = {p0, p1, p2, p3};
    for (long long n = item_start(); n < N; n += item_stride())
        lf_backward_lane(grad_spikes, grad_membrane, grad_last, x, decay, scale, membrane, checkpoints, grad_x,
                         grad_decay, grad_scale, grad_h0, v_threshold, kind, params, T, N, n);
}

extern "C" __global__ void lf_bwd_complex(const scalar_t* __restrict__ grad_spikes,
                                          const scalar_t* __restrict__ grad_membrane,
                                          const float2* __restrict__ grad_last, const scalar_t* __restrict__ x,
                                          const float2* __restrict__ decay, const float* __restrict__ scale,
                                          const scalar_t* __restrict__ membrane, const float2* __restrict__ checkpoints,
                                          scalar_t* __restrict__ grad_x, float2* __restrict__ grad_decay,
                                          float* __restrict__ grad_scale, float2* __restrict__ grad_h0,
                                          float v_threshold, int kind, float p0, float p1, float p2, float p3,
                                          long long T, long long N) {
    const float params[4] = {p0, p1, p2, p3};
    for (long long n = item_start(); n < N; n += item_stride())
        lf_backward_lane(grad_spikes, grad_membrane, grad_last, x, decay, scale, membrane, checkpoints, grad_x,
                         grad_decay, grad_scale, grad_h0, v_threshold, kind, params, T, N, n);
}
