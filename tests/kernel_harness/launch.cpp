// ctypes entry points run_<kernel>(grid, block, args...) for the host-emulated kernels.
// Build (see tests/test_kernels.py):
//   g++ -std=c++17 -O2 -shared -fPIC -Wall -Wextra -I<kernels> -I<harness> -include cuda_emu.h -x c++ launch.cpp -o libsnn_kernels_emu.so
// The kernel sources are included here (not copied), so every wrapper is type-checked against the
// real kernel signature.
#include "scan.cu"
#include "ltc.cu"

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
                        float* trace, float b0, float beta_a, int inclusive, LL T, LL N) {
    emu_launch(g, b, ltc_fwd, current, rate, retention, u0, s0, b_init, spikes, membrane, trace, b0, beta_a,
               inclusive, T, N);
}
EXPORT void run_ltc_bwd(unsigned g, unsigned b, const float* grad_spikes, const float* grad_membrane,
                        const float* grad_u_last, const float* grad_s_last, const float* grad_b_last,
                        const float* current, const float* rate, const float* retention, const float* u0,
                        const float* s0, const float* b_init, const float* spikes, const float* membrane,
                        const float* trace, float* grad_current, float* grad_rate, float* grad_retention,
                        float* grad_u0, float* grad_s0, float* grad_b_init, int kind, const float* params, float b0,
                        float beta_a, LL T, LL N) {
    emu_launch(g, b, ltc_bwd, grad_spikes, grad_membrane, grad_u_last, grad_s_last, grad_b_last, current, rate,
               retention, u0, s0, b_init, spikes, membrane, trace, grad_current, grad_rate, grad_retention, grad_u0,
               grad_s0, grad_b_init, kind, params, b0, beta_a, T, N);
}
