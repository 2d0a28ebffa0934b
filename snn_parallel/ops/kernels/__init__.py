"""CUDA sources of the multi-step ops, to be compiled at first use by CuPy (``RawModule``/NVRTC).

Status: the sources and their CPU checks are in place; the CuPy launch path (``backend="cupy"``)
is not part of this release, so no op calls these kernels yet and ``backend="auto"`` uses torch.

Each ``.cu`` file is compiled once per storage dtype with ``-DSNN_DTYPE=<float|__half|__nv_bfloat16>``,
so kernel names carry no dtype suffix. ``common.cuh`` defines ``scalar_t``, ``load``/``store``
(storage dtype <-> float32; all arithmetic accumulates in float32), the surrogate derivatives by
kind id (0 atan, 1 sigmoid, 2 rect, 3 multi_gaussian; 4 float parameters) and the firing rule.
Sequences are time-major ``[T, N]`` (index ``t * N + n``), per-lane tensors ``[N]``, integers
``long long``; launches are 1-D, one thread per work item (grid-stride, so any grid covers all
items), with no shared memory and no inter-thread communication. Complex values are float32
pairs (``float2``, complex64 storage) whatever ``SNN_DTYPE`` is.

``scan.cu`` — :math:`h_t = a_t h_{t-1} + b_t` (``reverse``: :math:`h_t = a_t h_{t+1} + b_t`), in
chunks of ``L`` steps, ``K = ceil(T / L)``:

- ``scan_reduce(a, b, chunk_a, chunk_h, T, N, L, a_varying, reverse)``: per (chunk, lane), the
  chunk's total decay and its end state from zero;
- ``scan_carry(chunk_a, chunk_h, h0, carry, K, N, reverse)``: per lane, the state entering each chunk;
- ``scan_apply(a, b, carry, h, T, N, L, a_varying, reverse)``: per (chunk, lane), rerun from the carry;
- ``cscan_reduce`` / ``cscan_carry`` / ``cscan_apply``: the same on ``float2`` (complex64).

The backward of :func:`snn_parallel.ops.linear_scan` is a reverse scan with the conjugated decay
shifted by one step, composed in Python from these kernels.

``ltc.cu`` — the LTC neuron (:mod:`snn_parallel.ops.ltc`), one thread per lane:

- ``ltc_fwd(current, rate, retention, u0, s0, b_init, spikes, membrane, trace, b0, beta_a, inclusive, T, N)``;
- ``ltc_bwd(grad_spikes, grad_membrane, grad_u_last, grad_s_last, grad_b_last, current, rate,
  retention, u0, s0, b_init, spikes, membrane, trace, grad_current, grad_rate, grad_retention,
  grad_u0, grad_s0, grad_b_init, kind, params, b0, beta_a, T, N)``.

The kernels are checked without a GPU: ``tests/test_kernels.py`` compiles every file for every dtype
with ``nvcc`` and runs the float32 build on the CPU (``tests/kernel_harness/cuda_emu.h``) against
the torch references.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["KERNEL_FILES", "HEADER_FILES", "source"]

#: Kernel sources, one CuPy module each.
KERNEL_FILES = ("scan.cu", "ltc.cu")
#: Headers the kernel sources include.
HEADER_FILES = ("common.cuh",)


def source(name: str) -> str:
    """Text of the kernel file ``name`` (one of :data:`KERNEL_FILES` or :data:`HEADER_FILES`)."""
    if name not in KERNEL_FILES + HEADER_FILES:
        raise ValueError(f"unknown kernel file {name!r}; choose one of {KERNEL_FILES + HEADER_FILES}")
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
