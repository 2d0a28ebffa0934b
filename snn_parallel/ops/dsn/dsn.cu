// DSN membrane, fused multi-step forward and backward (snn_parallel/ops/dsn/{reference,fused}.py): a causal
// depthwise conv of the input gives the decay in log space, a linear scan the membrane, a spike function the spikes.
//
//     p_t = bias + sum_{j<k} w_j X_{t-k+1+j},   log alpha_t = log sigmoid(p_t) / tau,
//     H_t = alpha_t H_{t-1} + (1 - alpha_t) X_t,   S_t = S(H_t - shift)
//
// Layout: x, spikes, h and their gradients are time-major [T, N] in the storage dtype; history is [k-1, N] (the
// inputs X_{-k+1} .. X_{-1} before x, oldest first) and h0 [N], both in the storage dtype; weight [k, N] (tap j of
// lane n at j*N + n, oldest input first) and bias [N] are float32, as are their gradients.
// Items: one thread per lane n in [0, N); the T-step loop runs in registers, in float32, with the window of the
// last k inputs in a register array of DSN_MAX_TAPS slots (so k <= DSN_MAX_TAPS).
#include "common.cuh"

// The most taps a lane holds in registers (-DDSN_MAX_TAPS, snn_parallel/ops/dsn/cupy.py).
#ifndef DSN_MAX_TAPS
#error "DSN_MAX_TAPS is passed by the launcher (-D)"
#endif

// log sigmoid(p) = min(p, 0) - log1p(exp(-|p|)), finite for any p.
__device__ __forceinline__ float log_sigmoid(float p) { return fminf(p, 0.0f) - log1pf(expf(-fabsf(p))); }

// X_s for s in [-(k-1), T): history row s + k - 1 before the sequence, else x row s.
__device__ __forceinline__ float dsn_input(const scalar_t* x, const scalar_t* history, int taps, long long s,
                                           long long N, long long n) {
    return s < 0 ? load(history + (s + taps - 1) * N + n) : load(x + s * N + n);
}

// dsn_fwd: H and S for every step (equations above), from H_{-1} = h0. The window is right-aligned: after X_t is
// shifted in, slot i holds X_{t - (DSN_MAX_TAPS - 1 - i)} and the taps use slots DSN_MAX_TAPS - k .. DSN_MAX_TAPS - 1.
extern "C" __global__ void dsn_fwd(const scalar_t* __restrict__ x, const scalar_t* __restrict__ history,
                                   const float* __restrict__ weight, const float* __restrict__ bias,
                                   const scalar_t* __restrict__ h0, scalar_t* __restrict__ spikes,
                                   scalar_t* __restrict__ h, float tau, float shift, int kind, float p0, float p1,
                                   float p2, float p3, int inclusive, int taps, long long T, long long N) {
    const float params[4] = {p0, p1, p2, p3};
    const int lo = DSN_MAX_TAPS - taps;
    for (long long n = item_start(); n < N; n += item_stride()) {
        float w[DSN_MAX_TAPS], window[DSN_MAX_TAPS];
        SNN_UNROLL
        for (int i = 0; i < DSN_MAX_TAPS; ++i) {  // before step 0, slot i holds X_{i - DSN_MAX_TAPS}
            w[i] = i >= lo ? weight[(i - lo) * N + n] : 0.0f;
            window[i] = i > lo ? dsn_input(x, history, taps, i - DSN_MAX_TAPS, N, n) : 0.0f;
        }
        const float b = bias[n];
        float state = load(h0 + n);
        SNN_UNROLL_4
        for (long long t = 0; t < T; ++t) {
            const long long idx = t * N + n;
            SNN_UNROLL
            for (int i = 0; i + 1 < DSN_MAX_TAPS; ++i) window[i] = window[i + 1];
            window[DSN_MAX_TAPS - 1] = load(x + idx);
            float pre = b;
            SNN_UNROLL
            for (int i = 0; i < DSN_MAX_TAPS; ++i)
                if (i >= lo) pre += w[i] * window[i];
            const float log_a = log_sigmoid(pre) / tau;
            state = expf(log_a) * state + (-expm1f(log_a)) * window[DSN_MAX_TAPS - 1];
            store(h + idx, state);
            store(spikes + idx, spike_value(kind, params, inclusive, state - shift));
        }
    }
}

// dsn_bwd: gradients of (x, history, weight, bias, h0). Walking t = T-1 .. 0 with G_t, the total gradient of H_t:
//     G_t = dL/dH_t + dL/dS_t g'(H_t - shift) + alpha_{t+1} G_{t+1}    (G_{T-1} gets grad_last)
//     dp_t = G_t (H_{t-1} - X_t) alpha_t sigmoid(-p_t) / tau
//     dX_t += G_t (1 - alpha_t),  dX_{t-k+1+j} += w_j dp_t,  dw_j += dp_t X_{t-k+1+j},  dbias += dp_t
// and grad_h0 = alpha_0 G_0. The window is left-aligned: slot j holds X_{t-k+1+j}, and `pending` slot j the
// gradient of that input gathered so far; X_t's is complete after step t (every step that reads it is done).
extern "C" __global__ void dsn_bwd(const scalar_t* __restrict__ grad_spikes, const scalar_t* __restrict__ grad_h,
                                   const scalar_t* __restrict__ grad_last, const scalar_t* __restrict__ x,
                                   const scalar_t* __restrict__ history, const float* __restrict__ weight,
                                   const float* __restrict__ bias, const scalar_t* __restrict__ h0,
                                   const scalar_t* __restrict__ h, scalar_t* __restrict__ grad_x,
                                   scalar_t* __restrict__ grad_history, float* __restrict__ grad_weight,
                                   float* __restrict__ grad_bias, scalar_t* __restrict__ grad_h0, float tau,
                                   float shift, int kind, float p0, float p1, float p2, float p3, int taps, long long T,
                                   long long N) {
    const float params[4] = {p0, p1, p2, p3};
    for (long long n = item_start(); n < N; n += item_stride()) {
        float w[DSN_MAX_TAPS], window[DSN_MAX_TAPS], pending[DSN_MAX_TAPS], acc_w[DSN_MAX_TAPS];
        SNN_UNROLL
        for (int j = 0; j < DSN_MAX_TAPS; ++j) {
            w[j] = j < taps ? weight[j * N + n] : 0.0f;
            window[j] = j < taps ? dsn_input(x, history, taps, T - taps + j, N, n) : 0.0f;
            pending[j] = 0.0f;
            acc_w[j] = 0.0f;
        }
        const float b = bias[n];
        float acc_b = 0.0f, carry = load(grad_last + n);  // carry = alpha_{t+1} G_{t+1}
        float h_t = load(h + (T - 1) * N + n);
        for (long long t = T - 1; t >= 0; --t) {
            const long long idx = t * N + n;
            float pre = b, x_t = 0.0f;
            SNN_UNROLL
            for (int j = 0; j < DSN_MAX_TAPS; ++j) {
                if (j < taps) pre += w[j] * window[j];
                if (j == taps - 1) x_t = window[j];
            }
            const float log_a = log_sigmoid(pre) / tau, alpha = expf(log_a);
            const float h_prev = t > 0 ? load(h + idx - N) : load(h0 + n);
            const float g = load(grad_spikes + idx) * surrogate_grad(kind, params, h_t - shift) +
                            load(grad_h + idx) + carry;
            const float grad_pre = (h_prev - x_t) * g * alpha / (1.0f + expf(pre)) / tau;
            acc_b += grad_pre;
            float grad_x_t = 0.0f;
            SNN_UNROLL
            for (int j = 0; j < DSN_MAX_TAPS; ++j) {
                if (j == taps - 1) pending[j] += g * (-expm1f(log_a));  // the direct input path (1 - alpha) X_t
                if (j < taps) {
                    acc_w[j] += grad_pre * window[j];
                    pending[j] += w[j] * grad_pre;
                }
                if (j == taps - 1) grad_x_t = pending[j];
            }
            store(grad_x + idx, grad_x_t);
            carry = alpha * g;
            h_t = h_prev;
            // slide back one step: slot j now holds X_{t-k+j}, and the oldest input enters at slot 0
            SNN_UNROLL
            for (int j = DSN_MAX_TAPS - 1; j > 0; --j) {
                window[j] = window[j - 1];
                pending[j] = pending[j - 1];
            }
            window[0] = t > 0 ? dsn_input(x, history, taps, t - taps, N, n) : 0.0f;
            pending[0] = 0.0f;
        }
        // after the slide past t = 0, slot j holds X_{j-k}: history row j - 1
        SNN_UNROLL
        for (int j = 1; j < DSN_MAX_TAPS; ++j)
            if (j < taps) store(grad_history + (j - 1) * N + n, pending[j]);
        SNN_UNROLL
        for (int j = 0; j < DSN_MAX_TAPS; ++j)
            if (j < taps) grad_weight[j * N + n] = acc_w[j];
        grad_bias[n] = acc_b;
        store(grad_h0 + n, carry);
    }
}
