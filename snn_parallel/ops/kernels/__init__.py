r"""CUDA sources of the multi-step ops, compiled at first use by CuPy (``RawModule``/NVRTC, :mod:`snn_parallel.ops._cupy`).

Each ``.cu`` file is compiled once per storage dtype with ``-DSNN_DTYPE=<float|__half|__nv_bfloat16>``,
so kernel names carry no dtype suffix. ``common.cuh`` defines ``scalar_t``, ``load``/``store``
(storage dtype <-> float32; all arithmetic accumulates in float32), the spike functions and
surrogate derivatives by kind id (:data:`SPIKE_KINDS`) and the firing rule. Sequences are
time-major ``[T, N]`` (index ``t * N + n``), per-lane tensors ``[N]``, integers ``long long``
(sizes) or ``int`` (flags); launches are 1-D, one thread per work item (grid-stride, so any grid
covers all items), with no shared memory and no inter-thread communication. Complex values are
float32 pairs (``float2``, complex64 storage) whatever ``SNN_DTYPE`` is. A spike function is
passed by value as ``kind, p0, p1, p2, p3`` (its parameters, see :func:`spike_code`), followed
by ``inclusive`` (1: fire on ``x >= 0``, 0: on ``x > 0``) where the kernel fires. :data:`ABI`
lists every kernel's parameter kinds; the launcher packs arguments by it and the tests check the
compiled PTX against it.

``scan.cu`` — :math:`h_t = a_t h_{t-1} + b_t` (``reverse``: :math:`h_t = a_t h_{t+1} + b_t`), in
chunks of ``L`` steps, ``K = ceil(T / L)``:

- ``scan_reduce(a, b, chunk_a, chunk_h, T, N, L, a_varying, reverse)``: per (chunk, lane), the
  chunk's total decay and its end state from zero;
- ``scan_carry(chunk_a, chunk_h, h0, carry, K, N, reverse)``: per lane, the state entering each chunk;
- ``scan_apply(a, b, carry, h, T, N, L, a_varying, reverse)``: per (chunk, lane), rerun from the carry;
- ``cscan_reduce`` / ``cscan_carry`` / ``cscan_apply``: the same on ``float2`` (complex64).

The backward of :func:`snn_parallel.ops.linear_scan` is a reverse scan with the conjugated decay
shifted by one step, composed in Python from these kernels.

``linear_fire.cu`` — the linear membrane with spike readout and threshold-bias soft reset
(:mod:`snn_parallel.ops.linear_fire`), one thread per lane; ``_real`` kernels for a real filter
(decoupled LIF), ``_complex`` for a complex one (PRF, ``float2`` filter values); ``reset_decay``
may be null (no reset); ``checkpoints`` ``[ceil(T / LINEAR_FIRE_CHUNK), N]``:

- ``lf_fwd_{real,complex}(x, decay, scale, h0, bias0, reset_decay, spikes, membrane, checkpoints,
  h_last, bias_next, v_threshold, kind, p0, p1, p2, p3, inclusive, T, N)``;
- ``lf_bwd_{real,complex}(grad_spikes, grad_membrane, grad_last, x, decay, scale, membrane,
  checkpoints, grad_x, grad_decay, grad_scale, grad_h0, v_threshold, kind, p0, p1, p2, p3, T, N)``.

``dsn.cu`` — the DSN membrane (:mod:`snn_parallel.ops.dsn`), one thread per lane, ``taps = k <=``
:data:`DSN_MAX_TAPS`; ``weight`` ``[k, N]`` and ``bias`` ``[N]`` float32, ``history`` ``[k - 1, N]``:

- ``dsn_fwd(x, history, weight, bias, h0, spikes, h, tau, shift, kind, p0, p1, p2, p3, inclusive, taps, T, N)``;
- ``dsn_bwd(grad_spikes, grad_h, grad_last, x, history, weight, bias, h0, h, grad_x, grad_history,
  grad_weight, grad_bias, grad_h0, tau, shift, kind, p0, p1, p2, p3, taps, T, N)``.

``ltc.cu`` — the LTC neuron (:mod:`snn_parallel.ops.ltc`), one thread per lane:

- ``ltc_fwd(current, rate, retention, u0, s0, b_init, spikes, membrane, trace, b0, beta_a, kind,
  p0, p1, p2, p3, inclusive, T, N)``;
- ``ltc_bwd(grad_spikes, grad_membrane, grad_u_last, grad_s_last, grad_b_last, current, rate,
  retention, u0, s0, b_init, spikes, membrane, trace, grad_current, grad_rate, grad_retention,
  grad_u0, grad_s0, grad_b_init, b0, beta_a, kind, p0, p1, p2, p3, T, N)``.

``tssl.cu`` — TSSL-BP's neuron and its hand-written backward (:mod:`snn_parallel.ops.tssl`), one thread
per lane; it fires by the step function alone, taking ``inclusive`` but no spike-function kind (TSSL-BP's
backward uses no surrogate):

- ``tssl_fwd(current, u0, a0, psp, spikes, membrane, delta_u, u_last, a_last, v_threshold, tau_m, tau_s,
  inclusive, T, N)``;
- ``tssl_bwd(grad_psp, spikes, membrane, delta_u, psp, grad_current, v_threshold, tau_m, tau_s,
  dt_du_at_spikes, T, N)``.

Each kernel file states its equations and per-tensor dtypes at the top. The kernels are checked
without a GPU: ``tests/test_kernels.py`` compiles every file for every dtype with ``nvcc`` (and
with NVRTC where CuPy is installed) and runs the float32 build on the CPU
(``tests/kernel_harness/cuda_emu.h``) against the torch references.
"""

from __future__ import annotations

from importlib import resources

from ...surrogate import ATan, DoubleGaussian, IntegerSpike, MultiGaussian, Rect, Sigmoid, Surrogate

__all__ = [
    "KERNEL_FILES",
    "HEADER_FILES",
    "ABI",
    "SPIKE_KINDS",
    "LINEAR_FIRE_CHUNK",
    "DSN_MAX_TAPS",
    "source",
    "spike_code",
]

#: Kernel sources, one CuPy module each.
KERNEL_FILES = ("scan.cu", "ltc.cu", "linear_fire.cu", "dsn.cu", "tssl.cu")
#: Headers the kernel sources include.
HEADER_FILES = ("common.cuh",)

# Parameter kinds: P pointer, L long long, I int, F float.
_SPIKE = "IFFFF"  # kind, p0, p1, p2, p3
_SCAN, _CARRY = "PPPPLLLII", "PPPPLLI"
#: kernel file -> kernel name -> parameter kinds, in order.
ABI: dict[str, dict[str, str]] = {
    "scan.cu": {
        "scan_reduce": _SCAN,
        "scan_carry": _CARRY,
        "scan_apply": _SCAN,
        "cscan_reduce": _SCAN,
        "cscan_carry": _CARRY,
        "cscan_apply": _SCAN,
    },
    "ltc.cu": {
        "ltc_fwd": "P" * 9 + "FF" + _SPIKE + "ILL",
        "ltc_bwd": "P" * 20 + "FF" + _SPIKE + "LL",
    },
    "linear_fire.cu": {
        f"lf_{pass_}_{kind}": signature
        for pass_, signature in (("fwd", "P" * 11 + "F" + _SPIKE + "ILL"), ("bwd", "P" * 12 + "F" + _SPIKE + "LL"))
        for kind in ("real", "complex")
    },
    "dsn.cu": {
        "dsn_fwd": "P" * 7 + "FF" + _SPIKE + "IILL",
        "dsn_bwd": "P" * 14 + "FF" + _SPIKE + "ILL",
    },
    "tssl.cu": {
        "tssl_fwd": "P" * 9 + "FFF" + "ILL",
        "tssl_bwd": "P" * 6 + "FFF" + "ILL",
    },
}

#: Spike-function kind ids of ``common.cuh``, by surrogate class (exact classes: a subclass may
#: change the derivative, so it has no kernel).
SPIKE_KINDS: dict[type[Surrogate], int] = {
    ATan: 0,
    Sigmoid: 1,
    Rect: 2,
    MultiGaussian: 3,
    DoubleGaussian: 3,
    IntegerSpike: 4,
}
#: Steps per filter checkpoint of ``linear_fire.cu`` (its ``LF_CHUNK``).
LINEAR_FIRE_CHUNK = 32
#: Most conv taps ``dsn.cu`` holds in registers (its ``DSN_MAX_TAPS``).
DSN_MAX_TAPS = 8


def source(name: str) -> str:
    """Text of the kernel file ``name`` (one of :data:`KERNEL_FILES` or :data:`HEADER_FILES`)."""
    if name not in KERNEL_FILES + HEADER_FILES:
        raise ValueError(f"unknown kernel file {name!r}; choose one of {KERNEL_FILES + HEADER_FILES}")
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def spike_code(spike_fn: Surrogate) -> tuple[int, tuple[float, float, float, float], int] | None:
    """``(kind, (p0, p1, p2, p3), inclusive)`` of ``spike_fn`` for the kernels, or ``None`` when no
    kernel implements it (a wrapped framework surrogate, or a subclass of ours)."""
    kind = SPIKE_KINDS.get(type(spike_fn))
    if kind is None:
        return None
    values = [float(v) for v in spike_fn.params.values()]
    return kind, (*values, *[0.0] * (4 - len(values))), int(spike_fn.inclusive)
