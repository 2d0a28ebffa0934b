"""LTC spiking neuron recurrence as one fused multi-step op with its own backward.

:func:`ltc_scan` takes precomputed gates for every step (the parallel-gates mode of
:class:`~snn_parallel.neurons.LTC`); :func:`ltc_step` is the single step that the paper
mode and streaming inference use. The equations are in :mod:`.reference`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..._validation import check_float, check_like, check_op_sequence
from ...surrogate import Surrogate, check_surrogate
from .._backend import kernel_gap, resolve_backend
from .cupy import ltc_backward_cupy, ltc_forward_cupy
from .fused import ltc_backward, ltc_forward
from .reference import LTCStepOut, ltc_scan_reference, ltc_step

__all__ = ["ltc_scan", "ltc_scan_reference", "ltc_step", "LTCStepOut"]


#: backend -> (forward, backward), with the contracts of :mod:`.fused`
_IMPLEMENTATIONS = {"torch": (ltc_forward, ltc_backward), "cupy": (ltc_forward_cupy, ltc_backward_cupy)}


class _LTCScan(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, current, rate, retention, u0, s0, b_init, b0: float, beta_a: float, surrogate: Surrogate, backend: str
    ):
        forward, ctx.backward_fn = _IMPLEMENTATIONS[backend]
        spikes, membrane, trace = forward(current, rate, retention, u0, s0, b_init, b0, beta_a, surrogate)
        ctx.save_for_backward(current, rate, retention, u0, s0, b_init, spikes, membrane, trace)
        ctx.constants = (b0, beta_a, surrogate)
        u_last = membrane[-1] * (1 - spikes[-1])
        return spikes, membrane, u_last, spikes[-1].clone(), trace[-1].clone()

    @staticmethod
    def backward(ctx: Any, grad_spikes, grad_membrane, grad_u_last, grad_s_last, grad_b_last):
        grads = ctx.backward_fn(
            grad_spikes, grad_membrane, (grad_u_last, grad_s_last, grad_b_last), ctx.saved_tensors, *ctx.constants
        )
        return (*grads, None, None, None, None)


def ltc_scan(
    current: torch.Tensor,
    rate: torch.Tensor,
    retention: torch.Tensor,
    u0: torch.Tensor,
    s0: torch.Tensor,
    b_init: torch.Tensor,
    b0: float,
    beta_a: float,
    surrogate: Surrogate,
    *,
    backend: str = "auto",
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Run the LTC recurrence over ``T`` steps with precomputed gates.

    Args:
        current: input current :math:`I_t`, ``[T, *S]``.
        rate: membrane update rate :math:`m_t \in (0, 1)`, ``[T, *S]``.
        retention: adaptation retention :math:`\rho_t \in (0, 1)`, ``[T, *S]``.
        u0, s0, b_init: carried state ``[*S]`` (membrane after reset, spike, adaptation).
        b0, beta_a: threshold :math:`\theta_t = b_0 + \beta_a b_t`.
        surrogate: spike function; its derivative is used in the hand-written backward.
        backend: ``"auto"``, ``"torch"`` or ``"cupy"`` (see :mod:`snn_parallel.ops._backend`).
        validate: check the arguments (``False`` where the caller already has, as
            :class:`~snn_parallel.neurons.LTC` does).

    Returns:
        ``(spikes, membrane, u_last, s_last, b_last)``: spikes and pre-reset membrane
        ``[T, *S]`` and the final state.
    """
    if validate:
        current = check_op_sequence(current, "current")
        check_like(rate, "rate", current.shape, current, "current")
        check_like(retention, "retention", current.shape, current, "current")
        for value, name in ((u0, "u0"), (s0, "s0"), (b_init, "b_init")):
            check_like(value, name, current.shape[1:], current, "current")
        check_surrogate(surrogate, "surrogate")
        check_float(b0, "b0")
        check_float(beta_a, "beta_a")

    def gap() -> str | None:
        named = {"current": current, "rate": rate, "retention": retention, "u0": u0, "s0": s0, "b_init": b_init}
        return kernel_gap(named.items(), spike_fn=surrogate)

    backend = resolve_backend(backend, current, op="ltc_scan", unsupported=gap)
    shape = current.shape
    flat = [t.reshape(shape[0], -1).contiguous() for t in (current, rate, retention)]
    state = [t.reshape(-1) for t in (u0, s0, b_init)]
    spikes, membrane, u_last, s_last, b_last = _LTCScan.apply(*flat, *state, b0, beta_a, surrogate, backend)
    return (
        spikes.view(shape),
        membrane.view(shape),
        u_last.view(shape[1:]),
        s_last.view(shape[1:]),
        b_last.view(shape[1:]),
    )
