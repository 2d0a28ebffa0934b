// Gated linear recurrence h_t = a_t * h_{t-1} + b_t (real: scan_*_real, complex: scan_*_complex), forward and
// backward, as time-chunked scans (chunked.cuh: one read of the inputs, a decoupled look-back across blocks).
//
// Layout: sequences are time-major [T, N] (index t*N + n). a is [T, N] when a_varying=1, else [P], read for lane n
// at (n / spatial) % P (per channel: P = C, spatial = the product of the dims after it). Real
// kernels read a and b in the storage dtype and write h in float32 (the op accumulates half precision in
// float32 and returns it so); complex kernels read and write complex64 (float2). h0, h_last, grad_last and
// grad_h0 are [N] float32 / complex64.
//
// Backward (bars: complex conjugates), with G_t the total gradient of h_t and d_t = dL/dh_t:
//     G_t = conj(a_{t+1}) G_{t+1} + d_t   (G_{T-1} = grad_last + d_{T-1}),
//     grad_b_t = G_t,  grad_a_t = G_t conj(h_{t-1})  (h_{-1} = h0),  grad_h0 = conj(a_0) G_0,
// a reverse scan whose map at step t reads a_{t+1}. grad_h is read with strides (st, sn) (so an expanded
// gradient of stride 0 is read as it is) or is null (no gradient reached h). A time-invariant a gets its
// gradient as per-block partial sums per lane, grad_a_partial [groups, N] (the caller sums them into [P]).
// Launch (both): grid (groups * tiles), block (32, SNN_WARPS); flags, agg_d, agg_b, inclusive as in chunked.cuh.
// The file is built twice (the launcher's REAL_AND_COMPLEX variants, SNN_COMPLEX=0 and 1; SNN_ENTRY, common.cuh).
#include "chunked.cuh"

#if !defined(SNN_COMPLEX)
#error "SNN_COMPLEX (the build variant) is passed by the launcher (snn_parallel/ops/_cuda)"
#elif SNN_COMPLEX
typedef float2 state_t;
typedef float2 input_t;  // a, b and their gradients
#else
typedef float state_t;
typedef scalar_t input_t;
#endif

template <class In, class Acc>
struct ScanForward {
    typedef Acc State;
    struct Step {
        Acc a, b;
    };
    typedef NoPartial Partial;
    const In* a;
    const In* b;
    const Acc* h0;
    Acc* h;
    Acc* h_last;
    long long T, N, P, spatial;
    int a_varying;

    __device__ void bind(long long) const {}
    __device__ void fetch(Step& s, long long t, long long n) const {
        s.a = load(a + (a_varying ? t * N + n : n / spatial % P));
        s.b = load(b + t * N + n);
    }
    __device__ void prepare(Step (&)[SNN_STEPS], long long, long long, long long, bool, long long) const {}
    __device__ void map(const Step& s, long long, Acc& d, Acc& b_out) const {
        d = s.a;
        b_out = s.b;
    }
    __device__ void emit(Step (&)[SNN_STEPS], int, long long t, long long n, const Acc&, const Acc& after, NoPartial&) {
        h[t * N + n] = after;
        if (t == T - 1) h_last[n] = after;
    }
    __device__ Acc initial(long long n) const { return h0[n]; }
    __device__ void enter(long long, long long, const Acc&) const {}
    __device__ void store_partial(long long, long long, const NoPartial&) const {}
};

template <class In, class Acc>
struct ScanBackward {
    typedef Acc State;
    struct Step {
        Acc alpha, d, h_prev;
    };
    typedef Acc Partial;  // sum of grad_a over the steps (time-invariant a)
    const In* a;
    const Acc* grad_h;
    const Acc* grad_last;
    const Acc* h;
    const Acc* h0;
    In* grad_a;           // [T, N], or partials [groups, N] of type Acc (grad_a_partial) when a is invariant
    Acc* grad_a_partial;
    In* grad_b;
    Acc* grad_h0;
    long long T, N, P, spatial, st, sn;
    int a_varying;

    __device__ void bind(long long) const {}
    __device__ Acc decay(long long t, long long n) const {
        return conjugate(Acc(load(a + (a_varying ? t * N + n : n / spatial % P))));
    }
    __device__ void fetch(Step& s, long long t, long long n) const {
        if (t + 1 < T) s.alpha = decay(t + 1, n);
        else set_one(s.alpha);
        s.h_prev = t > 0 ? h[(t - 1) * N + n] : h0[n];
        if (grad_h) s.d = load(grad_h + t * st + n * sn);
        else set_zero(s.d);
    }
    __device__ void prepare(Step (&)[SNN_STEPS], long long, long long, long long, bool, long long) const {}
    __device__ void map(const Step& s, long long, Acc& d, Acc& b) const {
        d = s.alpha;
        b = s.d;
    }
    __device__ void emit(Step (&steps)[SNN_STEPS], int j, long long t, long long n, const Acc&, const Acc& g, Acc& partial) {
        const Acc ga = mul(g, conjugate(steps[j].h_prev));
        store(grad_b + t * N + n, g);
        if (a_varying) store(grad_a + t * N + n, ga);
        else partial = add(partial, ga);
        if (t == 0) grad_h0[n] = mul(decay(0, n), g);
    }
    __device__ Acc initial(long long n) const {
        Acc g;
        if (grad_last) g = grad_last[n];
        else set_zero(g);
        return g;
    }
    __device__ void enter(long long, long long, const Acc&) const {}
    __device__ void store_partial(long long group, long long n, const Acc& total) const {
        if (!a_varying) grad_a_partial[group * N + n] = total;
    }
};

// scan_fwd_*: h_t for every step, and h_last.
extern "C" __global__ void __launch_bounds__(32 * SNN_WARPS, 1)
    SNN_ENTRY(scan_fwd)(const input_t* __restrict__ a, const input_t* __restrict__ b, const state_t* __restrict__ h0,
                        state_t* __restrict__ h, state_t* __restrict__ h_last, int* __restrict__ flags,
                        state_t* __restrict__ agg_d, state_t* __restrict__ agg_b, state_t* __restrict__ inclusive,
                        int a_varying, long long T, long long N, long long P, long long spatial, long long G) {
    ScanForward<input_t, state_t> op = {a, b, h0, h, h_last, T, N, P, spatial, a_varying};
    chunked_scan(op, chunking<state_t>(T, N, G, 0, flags, agg_d, agg_b, inclusive));
}

// scan_bwd_*: grad_b, grad_a (or its partials) and grad_h0 from grad_h (strided, or null) and grad_last (or null),
// with the forward's h and h0.
extern "C" __global__ void __launch_bounds__(32 * SNN_WARPS, 1)
    SNN_ENTRY(scan_bwd)(const input_t* __restrict__ a, const state_t* __restrict__ grad_h,
                        const state_t* __restrict__ grad_last, const state_t* __restrict__ h,
                        const state_t* __restrict__ h0, input_t* __restrict__ grad_a,
                        state_t* __restrict__ grad_a_partial, input_t* __restrict__ grad_b,
                        state_t* __restrict__ grad_h0, int* __restrict__ flags, state_t* __restrict__ agg_d,
                        state_t* __restrict__ agg_b, state_t* __restrict__ inclusive, int a_varying, long long T,
                        long long N, long long P, long long spatial, long long st, long long sn, long long G) {
    ScanBackward<input_t, state_t> op = {a,      grad_h,  grad_last, h, h0, grad_a, grad_a_partial,
                                         grad_b, grad_h0, T,         N, P,  spatial, st, sn, a_varying};
    chunked_scan(op, chunking<state_t>(T, N, G, 1, flags, agg_d, agg_b, inclusive));
}
