// ctypes entry points run_<kernel>(grid, block, args...) for the host-emulated kernels.
// Build (see tests/test_kernels.py):
//   g++ -std=c++17 -O2 -shared -fPIC -Wall -Wextra -I<kernels> -I<harness> -include cuda_emu.h -x c++ launch.cpp -o libsnn_kernels_emu.so
// The kernel sources are included here (not copied), so every wrapper is type-checked against the
// real kernel signature.
#include "scan.cu"
#include "ltc.cu"
#include "linear_fire.cu"
#include "dsn.cu"
#include "tssl.cu"

#define LL long long
#define EXPORT extern "C" __attribute__((visibility("default")))

EXPORT void run_scan_reduce(unsigned g, unsigned b, const float* a, const float* x, float* chunk_a, float* chunk_h,
                            LL T, LL N, LL L, int a_varying, int reverse) {
    emu_launch(g, b, scan_reduce, a, x, chunk_a, chunk_h, T, N, L, a_varying, reverse);
}
EXPORT void run_scan_carry(unsigned g, unsigned b, const float* chunk_a, const float* chunk_h, const float* h0,
                           float* carry, LL K, LL N, int reverse) {
    emu_launch(g, b, scan_carry, chunk_a, chunk_h, h0, carry, K, N, reverse);
}
EXPORT void run_scan_apply(unsigned g, unsigned b, const float* a, const float* x, const float* carry, float* h,
                           LL T, LL N, LL L, int a_varying, int reverse) {
    emu_launch(g, b, scan_apply, a, x, carry, h, T, N, L, a_varying, reverse);
}
EXPORT void run_cscan_reduce(unsigned g, unsigned b, const float2* a, const float2* x, float2* chunk_a,
                             float2* chunk_h, LL T, LL N, LL L, int a_varying, int reverse) {
    emu_launch(g, b, cscan_reduce, a, x, chunk_a, chunk_h, T, N, L, a_varying, reverse);
}
EXPORT void run_cscan_carry(unsigned g, unsigned b, const float2* chunk_a, const float2* chunk_h, const float2* h0,
                            float2* carry, LL K, LL N, int reverse) {
    emu_launch(g, b, cscan_carry, chunk_a, chunk_h, h0, carry, K, N, reverse);
}
EXPORT void run_cscan_apply(unsigned g, unsigned b, const float2* a, const float2* x, const float2* carry,
                            float2* h, LL T, LL N, LL L, int a_varying, int reverse) {
    emu_launch(g, b, cscan_apply, a, x, carry, h, T, N, L, a_varying, reverse);
}
EXPORT void run_ltc_fwd(unsigned g, unsigned b, const float* current, const float* rate, const float* retention,
                        const float* u0, const float* s0, const float* b_init, float* spikes, float* membrane,
                        float* trace, float b0, float beta_a, int kind, float p0, float p1, float p2, float p3,
                        int inclusive, LL T, LL N) {
    emu_launch(g, b, ltc_fwd, current, rate, retention, u0, s0, b_init, spikes, membrane, trace, b0, beta_a, kind, p0,
               p1, p2, p3, inclusive, T, N);
}
EXPORT void run_ltc_bwd(unsigned g, unsigned b, const float* grad_spikes, const float* grad_membrane,
                        const float* grad_u_last, const float* grad_s_last, const float* grad_b_last,
                        const float* current, const float* rate, const float* retention, const float* u0,
                        const float* s0, const float* b_init, const float* spikes, const float* membrane,
                        const float* trace, float* grad_current, float* grad_rate, float* grad_retention,
                        float* grad_u0, float* grad_s0, float* grad_b_init, float b0, float beta_a, int kind, float p0,
                        float p1, float p2, float p3, LL T, LL N) {
    emu_launch(g, b, ltc_bwd, grad_spikes, grad_membrane, grad_u_last, grad_s_last, grad_b_last, current, rate,
               retention, u0, s0, b_init, spikes, membrane, trace, grad_current, grad_rate, grad_retention, grad_u0,
               grad_s0, grad_b_init, b0, beta_a, kind, p0, p1, p2, p3, T, N);
}

// linear_fire.cu: Acc is float (real) or float2 (complex)
#define LF_WRAPPERS(suffix, Acc)                                                                                      \
    EXPORT void run_lf_fwd_##suffix(unsigned g, unsigned b, const float* x, const Acc* decay, const float* scale,     \
                                    const Acc* h0, const float* bias0, const float* reset_decay, float* spikes,       \
                                    float* membrane, Acc* checkpoints, Acc* h_last, float* bias_next,                 \
                                    float v_threshold, int kind, float p0, float p1, float p2, float p3,              \
                                    int inclusive, LL T, LL N) {                                                      \
        emu_launch(g, b, lf_fwd_##suffix, x, decay, scale, h0, bias0, reset_decay, spikes, membrane, checkpoints,     \
                   h_last, bias_next, v_threshold, kind, p0, p1, p2, p3, inclusive, T, N);                            \
    }                                                                                                                 \
    EXPORT void run_lf_bwd_##suffix(unsigned g, unsigned b, const float* grad_spikes, const float* grad_membrane,     \
                                    const Acc* grad_last, const float* x, const Acc* decay, const float* scale,       \
                                    const float* membrane, const Acc* checkpoints, float* grad_x, Acc* grad_decay,    \
                                    float* grad_scale, Acc* grad_h0, float v_threshold, int kind, float p0, float p1, \
                                    float p2, float p3, LL T, LL N) {                                                 \
        emu_launch(g, b, lf_bwd_##suffix, grad_spikes, grad_membrane, grad_last, x, decay, scale, membrane,           \
                   checkpoints, grad_x, grad_decay, grad_scale, grad_h0, v_threshold, kind, p0, p1, p2, p3, T, N);    \
    }
LF_WRAPPERS(real, float)
LF_WRAPPERS(complex, float2)

EXPORT void run_dsn_fwd(unsigned g, unsigned b, const float* x, const float* history, const float* weight,
                        const float* bias, const float* h0, float* spikes, float* h, float tau, float shift, int kind,
                        float p0, float p1, float p2, float p3, int inclusive, int taps, LL T, LL N) {
    emu_launch(g, b, dsn_fwd, x, history, weight, bias, h0, spikes, h, tau, shift, kind, p0, p1, p2, p3, inclusive,
               taps, T, N);
}
EXPORT void run_dsn_bwd(unsigned g, unsigned b, const float* grad_spikes, const float* grad_h, const float* grad_last,
                        const float* x, const float* history, const float* weight, const float* bias, const float* h0,
                        const float* h, float* grad_x, float* grad_history, float* grad_weight, float* grad_bias,
                        float* grad_h0, float tau, float shift, int kind, float p0, float p1, float p2, float p3,
                        int taps, LL T, LL N) {
    emu_launch(g, b, dsn_bwd, grad_spikes, grad_h, grad_last, x, history, weight, bias, h0, h, grad_x, grad_history,
               grad_weight, grad_bias, grad_h0, tau, shift, kind, p0, p1, p2, p3, taps, T, N);
}

EXPORT void run_tssl_fwd(unsigned g, unsigned b, const float* current, const float* u0, const float* a0, float* psp,
                         float* spikes, float* membrane, float* delta_u, float* u_last, float* a_last,
                         float v_threshold, float tau_m, float tau_s, int inclusive, LL T, LL N) {
    emu_launch(g, b, tssl_fwd, current, u0, a0, psp, spikes, membrane, delta_u, u_last, a_last, v_threshold, tau_m,
               tau_s, inclusive, T, N);
}
EXPORT void run_tssl_bwd(unsigned g, unsigned b, const float* grad_psp, const float* spikes, const float* membrane,
                         const float* delta_u, const float* psp, float* grad_current, float v_threshold, float tau_m,
                         float tau_s, int dt_du_at_spikes, LL T, LL N) {
    emu_launch(g, b, tssl_bwd, grad_psp, spikes, membrane, delta_u, psp, grad_current, v_threshold, tau_m, tau_s,
               dt_du_at_spikes, T, N);
}
