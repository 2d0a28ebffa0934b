r"""TSSL-BP: the PSP-output LIF of Zhang & Li (NeurIPS 2020) with its hand-written backward.

:func:`tsslbp` runs the neuron over ``T`` steps (a step loop: the hard reset makes the forward
sequential) and, on the way back, replaces autograd's gradient by the reference code's
timing-based one (equations in :mod:`.reference`), computed for all neurons and steps at
once by :func:`~.parallel.tssl_backward` (the forward loop, :func:`~.parallel.tssl_forward`,
writes into preallocated outputs); on CUDA tensors both passes can run as the fused
kernels of ``tssl.cu`` instead (``backend``, see :mod:`snn_parallel.ops._backend`), one thread
per neuron. :func:`psp_filter` is the same first-order PSP filter as a parallel scan, for inputs
and desired spike trains.
"""

from __future__ import annotations

from typing import Any

import torch

from ..._validation import check_bool, check_float, check_like, check_op_sequence
from .._backend import kernel_gap, resolve_backend
from ..scan import linear_scan
from .cupy import tssl_backward_cupy, tssl_forward_cupy
from .parallel import tssl_backward, tssl_forward
from .reference import (
    TSSLStepOut,
    fallback_slope,
    psp_kernel,
    tssl_backward_reference,
    tssl_forward_reference,
    tssl_step,
)

__all__ = [
    "tsslbp",
    "psp_filter",
    "tssl_step",
    "tssl_forward",
    "tssl_forward_reference",
    "tssl_backward",
    "tssl_backward_reference",
    "psp_kernel",
    "fallback_slope",
    "TSSLStepOut",
]


#: backend -> (forward, backward), with the contracts of :func:`tssl_forward_reference` and :func:`tssl_backward`
_IMPLEMENTATIONS = {"torch": (tssl_forward, tssl_backward), "cupy": (tssl_forward_cupy, tssl_backward_cupy)}


class _TSSLBP(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        current,
        u0,
        a0,
        v_threshold: float,
        tau_m: float,
        tau_s: float,
        inclusive: bool,
        dt_du_at_spikes: bool,
        backend: str,
    ):
        forward, ctx.backward_fn = _IMPLEMENTATIONS[backend]
        psp, spikes, membrane, delta_u, u_last, a_last = forward(current, u0, a0, v_threshold, tau_m, tau_s, inclusive)
        ctx.save_for_backward(spikes, membrane, delta_u, psp)
        ctx.constants = (v_threshold, tau_m, tau_s, dt_du_at_spikes)
        ctx.mark_non_differentiable(spikes, membrane, u_last, a_last)
        return psp, spikes, membrane, u_last, a_last

    @staticmethod
    def backward(ctx: Any, grad_psp, *_unused):
        spikes, membrane, delta_u, psp = ctx.saved_tensors
        grad = ctx.backward_fn(grad_psp, spikes, membrane, delta_u, psp, *ctx.constants)
        return grad, None, None, None, None, None, None, None, None


def _check_constants(v_threshold: float, tau_m: float, tau_s: float) -> None:
    check_float(v_threshold, "v_threshold")
    check_float(tau_m, "tau_m", minimum=1.0)  # theta_m = 1/tau_m in (0, 1]
    check_float(tau_s, "tau_s", minimum=1.0)


def tsslbp(
    current: torch.Tensor,
    u0: torch.Tensor | None = None,
    a0: torch.Tensor | None = None,
    *,
    v_threshold: float = 1.0,
    tau_m: float = 5.0,
    tau_s: float = 3.0,
    inclusive: bool = False,
    dt_du_at_spikes: bool = True,
    backend: str = "auto",
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Run the TSSL-BP neuron over ``current`` :math:`I_t` ``[T, *S]`` with the TSSL-BP backward.

    Args:
        current: input current, time-major ``[T, *S]``, ``T >= 1``.
        u0, a0: carried membrane (after reset) and PSP ``[*S]``; zeros if ``None``. They get
            no gradient: TSSL-BP defines one for the current only.
        v_threshold, tau_m, tau_s: :math:`V_{th}`, :math:`\tau_m`, :math:`\tau_s` (defaults of the reference code).
        inclusive: fire on :math:`u_t \ge V_{th}` instead of the reference's :math:`u_t > V_{th}`.
        dt_du_at_spikes: the timing gradient :math:`\partial t/\partial u` only where the neuron
            fires (``True``), or wherever its membrane rose (``False``); the reference code's
            revisions differ here (see :mod:`.reference`).
        backend: ``"auto"``, ``"torch"`` or ``"cupy"`` (see :mod:`snn_parallel.ops._backend`).
        validate: check the arguments (``False`` where the caller already has).

    Returns:
        ``(psp, spikes, membrane, u_last, a_last)``: :math:`a_t`, :math:`o_t` and :math:`u_t`
        (before reset) ``[T, *S]``, and the final state. Only ``psp`` carries a gradient, the
        one of :func:`~.parallel.tssl_backward`.
    """
    if validate:
        current = check_op_sequence(current, "current")
        for value, name in ((u0, "u0"), (a0, "a0")):
            if value is not None:
                check_like(value, name, current.shape[1:], current, "current")
                if value.dtype != current.dtype:
                    raise TypeError(f"{name} has dtype {value.dtype}, expected {current.dtype} to match current")
        _check_constants(v_threshold, tau_m, tau_s)
        check_bool(inclusive, "inclusive")
        check_bool(dt_du_at_spikes, "dt_du_at_spikes")
    u0 = torch.zeros_like(current[0]) if u0 is None else u0.detach()
    a0 = torch.zeros_like(current[0]) if a0 is None else a0.detach()
    backend = resolve_backend(
        backend, current, op="tsslbp", unsupported=lambda: kernel_gap((("current", current), ("u0", u0), ("a0", a0)))
    )
    shape, lanes = current.shape, current[0].numel()
    psp, spikes, membrane, u_last, a_last = _TSSLBP.apply(
        current.reshape(shape[0], lanes), u0.reshape(lanes), a0.reshape(lanes),
        float(v_threshold), float(tau_m), float(tau_s), bool(inclusive), bool(dt_du_at_spikes), backend,
    )  # fmt: skip
    return psp.view(shape), spikes.view(shape), membrane.view(shape), u_last.view(shape[1:]), a_last.view(shape[1:])


def psp_filter(x: torch.Tensor, tau_s: float, a0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The PSP filter :math:`a_t = (1 - 1/\tau_s)\, a_{t-1} + x_t/\tau_s` over ``x`` ``[T, *S]``
    (a parallel scan; differentiable). Returns ``(a [T, *S], a_last [*S])`` in ``x``'s dtype (half
    precision is accumulated in float32), so ``a_last`` can be passed back as the next call's ``a0``."""
    x = check_op_sequence(x, "x")
    tau_s = check_float(tau_s, "tau_s", minimum=1.0)
    if a0 is not None:
        check_like(a0, "a0", x.shape[1:], x, "x")
    decay = torch.full((), 1 - 1 / tau_s, dtype=x.dtype, device=x.device)
    a, a_last = linear_scan(decay, x / tau_s, a0, validate=False)
    return a.to(x.dtype), a_last.to(x.dtype)  # half precision is accumulated in float32
