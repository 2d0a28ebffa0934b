r"""Linear membrane with a spike readout and an optional soft reset: PRF and decoupled LIF.

.. math::

    h_t = a \odot h_{t-1} + c \odot x_t, \qquad m_t = \mathrm{Re}\,h_t - b_t, \qquad
    s_t = f(m_t - V_{th}), \qquad b_{t+1} = \rho\,(b_t + V_{th} s_t)

The filter :math:`h` is linear (real, or complex for PRF) and is solved by the parallel
scan; spikes never feed back into it. With a reset, the threshold bias :math:`b` makes
:math:`m` equal to a soft-reset neuron's potential (the PRF paper's decoupled reset, whose
spikes are exactly the sequential soft-reset LIF's, :func:`soft_reset_lif_reference`); it
carries no gradient, which is BPTT with a detached reset. Without a reset, :math:`b` keeps its initial value (zero in PRF).
"""

from __future__ import annotations

from typing import Any

import torch

from ..._validation import check_float, check_like, check_op_sequence
from ...surrogate import Surrogate
from .._backend import kernel_gap, resolve_backend
from .cupy import linear_fire_backward_cupy, linear_fire_forward_cupy
from .fused import linear_fire_backward, linear_fire_forward
from .reference import linear_fire_reference, linear_fire_step, soft_reset_lif_reference

__all__ = ["linear_fire", "linear_fire_reference", "linear_fire_step", "soft_reset_lif_reference"]


#: backend -> (forward, backward), with the contracts of :mod:`.fused`
_IMPLEMENTATIONS = {
    "torch": (linear_fire_forward, linear_fire_backward),
    "cupy": (linear_fire_forward_cupy, linear_fire_backward_cupy),
}


class _LinearFire(torch.autograd.Function):
    """Flattened: ``x`` ``[T, N]``; ``decay``, ``scale``, ``h0``, ``bias0`` ``[N]``."""

    @staticmethod
    def forward(ctx: Any, x, decay, scale, h0, bias0, spike_fn: Surrogate, v_threshold: float, reset_decay, backend: str):
        forward, ctx.backward_fn = _IMPLEMENTATIONS[backend]
        spikes, membrane, checkpoints, h_last, bias_next = forward(
            x, decay, scale, h0, bias0, spike_fn, v_threshold, reset_decay
        )
        ctx.save_for_backward(x, decay, scale, membrane, checkpoints)
        ctx.constants = (spike_fn, v_threshold)
        ctx.mark_non_differentiable(bias_next)
        return spikes, membrane, h_last, bias_next

    @staticmethod
    def backward(ctx: Any, grad_spikes, grad_membrane, grad_last, _grad_bias):
        x, decay, scale, membrane, checkpoints = ctx.saved_tensors
        grads = ctx.backward_fn(grad_spikes, grad_membrane, grad_last, x, decay, scale, membrane, checkpoints, *ctx.constants)
        return (*grads, None, None, None, None, None)


def linear_fire(
    x: torch.Tensor,
    decay: torch.Tensor,
    scale: torch.Tensor,
    h0: torch.Tensor,
    bias0: torch.Tensor,
    spike_fn: Surrogate,
    v_threshold: float,
    reset_decay: torch.Tensor | None = None,
    *,
    backend: str = "auto",
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Spikes of a linear membrane over all ``T`` steps (equations in the module doc).

    Args:
        x: real input ``[T, *S]``.
        decay: :math:`a`, real or complex, broadcastable to ``S`` (e.g. per channel ``[C]``).
        scale: :math:`c`, real, broadcastable to ``S``.
        h0: filter state before the first step ``[*S]`` (complex when ``decay`` is).
        bias0: threshold bias for the first step ``[*S]`` (kept constant without reset).
        spike_fn: spike function and surrogate derivative.
        v_threshold: :math:`V_{th}`.
        reset_decay: :math:`\rho`, real, broadcastable to ``S``; ``None`` for no reset.
        backend: ``"auto"``, ``"torch"`` or ``"cupy"`` (see :mod:`snn_parallel.ops._backend`).
        validate: check the arguments (``False`` where the caller already has, as the
            neuron modules do).

    Returns:
        ``(spikes, membrane, h_last, bias_next)``; no gradient reaches ``bias0`` or
        ``reset_decay``.
    """
    if validate:
        _check(x, decay, scale, h0, bias0, spike_fn, reset_decay)
        check_float(v_threshold, "v_threshold")
    def gap() -> str | None:
        per_lane = [("decay", decay), ("scale", scale), ("h0", h0), ("bias0", bias0), ("reset_decay", reset_decay)]
        return kernel_gap([("x", x)], float32=[(n, t) for n, t in per_lane if t is not None], spike_fn=spike_fn)

    backend = resolve_backend(backend, x, op="linear_fire", unsupported=gap)
    steps, shape = x.shape[0], x.shape[1:]

    def lanes(t: torch.Tensor) -> torch.Tensor:
        return t.expand(shape).reshape(-1).contiguous()

    spikes, membrane, h_last, bias_next = _LinearFire.apply(
        x.reshape(steps, -1).contiguous(),
        lanes(decay),
        lanes(scale.to(x.dtype)),
        lanes(h0.to(decay.dtype)),
        lanes(bias0.detach()),
        spike_fn,
        v_threshold,
        None if reset_decay is None else lanes(reset_decay.detach()),
        backend,
    )
    return spikes.view(x.shape), membrane.view(x.shape), h_last.view(shape), bias_next.view(shape)


def _check(x, decay, scale, h0, bias0, spike_fn, reset_decay) -> None:
    """Argument checks of :func:`linear_fire`."""
    x = check_op_sequence(x, "x")
    shape = tuple(x.shape[1:])
    decay = check_like(decay, "decay", shape, x, "x", broadcast=True, complex_ok=True)
    check_like(scale, "scale", shape, x, "x", broadcast=True)
    h0 = check_like(h0, "h0", shape, x, "x", complex_ok=True)
    if h0.is_complex() != decay.is_complex():
        raise TypeError(f"h0 must be {'complex' if decay.is_complex() else 'real'} like decay, got {h0.dtype}")
    check_like(bias0, "bias0", shape, x, "x")
    if reset_decay is not None:
        check_like(reset_decay, "reset_decay", shape, x, "x", broadcast=True)
    if not isinstance(spike_fn, Surrogate):
        raise TypeError(f"spike_fn must be a Surrogate (see snn_parallel.surrogate.resolve), got {type(spike_fn).__name__}")
