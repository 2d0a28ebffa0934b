r"""Linear membrane with a spike readout and an optional soft reset: PRF and decoupled LIF.

.. math::

    h_t = a \odot h_{t-1} + c \odot x_t, \qquad m_t = \mathrm{Re}\,h_t - b_t, \qquad
    s_t = f(m_t - V_{th}), \qquad b_{t+1} = \rho\,(b_t + V_{th} s_t)
    \quad\text{or, delayed,}\quad b_{t+1} = \rho\,b_t + V_{th} s_t

The filter :math:`h` is linear (real, or complex for PRF) and is solved by the parallel
scan; spikes never feed back into it. With a reset, the threshold bias :math:`b` makes
:math:`m` equal to a soft-reset neuron's potential (the PRF paper's decoupled reset, whose
spikes are exactly the sequential soft-reset LIF's, :func:`soft_reset_lif_reference`). The delayed reset
(``delayed_reset=True``) adds the spike's step undecayed, so the neuron's potential becomes
:math:`u_t = \rho\,u_{t-1} + x_t - V_{th} s_{t-1}` for :math:`a = \rho`: the reset lands one step after the spike,
undecayed, as in snnTorch's default ``Leaky`` (``reset_delay=True``) and its ``Lapicque``. The spikes
enter :math:`b` detached, so the input's gradient is BPTT with a detached reset; a gradient still
flows through :math:`b` into :math:`\rho` (and :math:`b_0`) when they require one, as in the PRF
paper's code, where the bias decays with :math:`\mathrm{Re}\,A` (see :class:`~snn_parallel.neurons.PRF`'s
``reset_gradient``). Without a reset, :math:`b` keeps its initial value (zero in PRF).
"""

from __future__ import annotations

from typing import Any

import torch

from ..._validation import check_float, check_like, check_op_sequence
from ...surrogate import Surrogate, check_surrogate
from .._backend import kernel_gap, resolve_backend
from .._layout import compact, compact_threshold, param_layout, per_lane, threshold_per_lane, to_params
from .cupy import linear_fire_backward_cupy, linear_fire_forward_cupy
from .fused import linear_fire_backward, linear_fire_forward
from .reference import linear_fire_reference, linear_fire_step, soft_reset_lif_reference

__all__ = ["linear_fire", "linear_fire_reference", "linear_fire_step", "soft_reset_lif_reference"]


def _forward_torch(x, decay, scale, h0, bias0, spike_fn, threshold, reset_decay, layout, delayed_reset):
    lanes = x.shape[1]
    decay, scale = per_lane(decay, lanes, layout), per_lane(scale, lanes, layout)
    rho = None if reset_decay is None else per_lane(reset_decay, lanes, layout)
    threshold = threshold_per_lane(threshold, lanes, layout)
    return linear_fire_forward(x, decay, scale, h0, bias0, spike_fn, threshold, rho, delayed_reset)


def _backward_torch(
    grad_spikes,
    grad_membrane,
    grad_last,
    grad_bias_next,
    x,
    decay,
    scale,
    reset_decay,
    threshold,
    h0,
    bias0,
    membrane,
    spikes,
    checkpoints,
    spike_fn,
    layout,
    delayed_reset,
    needs,
):
    lanes = x.shape[1]
    grad_spikes = torch.zeros_like(x) if grad_spikes is None else grad_spikes
    grad_membrane = torch.zeros_like(x) if grad_membrane is None else grad_membrane
    grad_last = torch.zeros_like(h0) if grad_last is None else grad_last
    rho = None if reset_decay is None else per_lane(reset_decay, lanes, layout)
    grad_x, grad_decay, grad_scale, grad_h0, grad_bias0, grad_rho, grad_threshold = linear_fire_backward(
        grad_spikes, grad_membrane, grad_last, x, per_lane(decay, lanes, layout), per_lane(scale, lanes, layout),
        membrane, spikes, checkpoints, spike_fn, threshold_per_lane(threshold, lanes, layout), rho, grad_bias_next,
        needs, delayed_reset,
    )  # fmt: skip
    grad_rho = None if grad_rho is None else to_params(grad_rho, layout)
    grad_threshold = None if grad_threshold is None else to_params(grad_threshold, layout)
    return (grad_x, to_params(grad_decay, layout), to_params(grad_scale, layout), grad_h0, grad_bias0, grad_rho,
            grad_threshold)  # fmt: skip


#: backend -> (forward, backward) on flattened tensors with ``[P]`` parameters (see :class:`_LinearFire`)
_IMPLEMENTATIONS = {
    "torch": (_forward_torch, _backward_torch),
    "cupy": (linear_fire_forward_cupy, linear_fire_backward_cupy),
}


class _LinearFire(torch.autograd.Function):
    """Flattened: ``x`` ``[T, N]``; ``decay``, ``scale``, ``reset_decay`` ``[P]``
    (see :func:`~snn_parallel.ops._layout.param_layout`), ``threshold`` ``[P]`` or a number, ``h0``, ``bias0``
    ``[N]``."""

    @staticmethod
    def forward(
        ctx: Any,
        x,
        decay,
        scale,
        h0,
        bias0,
        reset_decay,
        threshold,
        spike_fn: Surrogate,
        layout: tuple[int, int],
        delayed_reset: bool,
        backend: str,
    ):
        forward, ctx.backward_fn = _IMPLEMENTATIONS[backend]
        spikes, membrane, checkpoints, h_last, bias_next = forward(
            x, decay, scale, h0, bias0, spike_fn, threshold, reset_decay, layout, delayed_reset
        )
        tensor = isinstance(threshold, torch.Tensor)
        ctx.save_for_backward(
            x, decay, scale, reset_decay, threshold if tensor else None, h0, bias0, membrane, spikes, checkpoints
        )
        ctx.threshold = None if tensor else threshold
        ctx.constants = (spike_fn, layout, delayed_reset)
        ctx.set_materialize_grads(False)
        return spikes, membrane, h_last, bias_next

    @staticmethod
    def backward(ctx: Any, grad_spikes, grad_membrane, grad_last, grad_bias_next):
        if grad_spikes is None and grad_membrane is None and grad_last is None and grad_bias_next is None:
            return (None,) * 11
        needs = tuple(ctx.needs_input_grad[4:7])  # bias0, reset_decay, threshold
        saved = list(ctx.saved_tensors)
        if ctx.threshold is not None:
            saved[4] = ctx.threshold
        grads = ctx.backward_fn(grad_spikes, grad_membrane, grad_last, grad_bias_next, *saved, *ctx.constants, needs)
        return (*grads, None, None, None, None)


def linear_fire(
    x: torch.Tensor,
    decay: torch.Tensor,
    scale: torch.Tensor,
    h0: torch.Tensor,
    bias0: torch.Tensor,
    spike_fn: Surrogate,
    v_threshold: float | torch.Tensor,
    reset_decay: torch.Tensor | None = None,
    *,
    delayed_reset: bool = False,
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
        v_threshold: :math:`V_{th}`: a number, or a real tensor broadcastable to ``S`` (e.g. per channel
            ``[C]``), which gets a gradient where it requires one.
        reset_decay: :math:`\rho`, real, broadcastable to ``S``; ``None`` for no reset.
        delayed_reset: step the threshold bias as :math:`b_{t+1} = \rho\,b_t + V_{th} s_t` (the spike's step
            not decayed) instead of :math:`\rho\,(b_t + V_{th} s_t)`; no effect without a reset.
        backend: ``"auto"``, ``"torch"`` or ``"cupy"`` (see :mod:`snn_parallel.ops._backend`).
        validate: check the arguments (``False`` where the caller already has, as the
            neuron modules do).

    Returns:
        ``(spikes, membrane, h_last, bias_next)``. Gradients reach ``bias0`` and ``reset_decay``
        through the threshold bias (spikes detached in it) where they require one, as in
        :func:`linear_fire_reference`; detach ``reset_decay`` for BPTT with a fully detached
        reset. A threshold tensor's gradient comes through the spikes' argument and, with a reset,
        through the bias's step :math:`V_{th} s_t`, as a soft-reset LIF's subtraction gives it.
    """
    if validate:
        _check(x, decay, scale, h0, bias0, spike_fn, reset_decay, v_threshold, delayed_reset)

    threshold = v_threshold if isinstance(v_threshold, torch.Tensor) else None

    def gap() -> str | None:
        per_lane = [("decay", decay), ("scale", scale), ("h0", h0), ("bias0", bias0), ("reset_decay", reset_decay),
                    ("v_threshold", threshold)]  # fmt: skip
        return kernel_gap([("x", x)], float32=[(n, t) for n, t in per_lane if t is not None], spike_fn=spike_fn)

    backend = resolve_backend(backend, x, op="linear_fire", unsupported=gap)
    steps, shape = x.shape[0], x.shape[1:]
    lo, hi, count, spatial = param_layout(shape, decay, scale, reset_decay, threshold)

    spikes, membrane, h_last, bias_next = _LinearFire.apply(
        x.reshape(steps, -1).contiguous(),
        compact(decay, shape, lo, hi),
        compact(scale.to(x.dtype), shape, lo, hi),
        h0.to(decay.dtype).reshape(-1).contiguous(),
        bias0.reshape(-1).contiguous(),
        None if reset_decay is None else compact(reset_decay, shape, lo, hi),
        compact_threshold(v_threshold, shape, lo, hi, x.dtype),
        spike_fn,
        (count, spatial),
        delayed_reset,
        backend,
    )
    return spikes.view(x.shape), membrane.view(x.shape), h_last.view(shape), bias_next.view(shape)


def _check(x, decay, scale, h0, bias0, spike_fn, reset_decay, v_threshold, delayed_reset) -> None:
    """Argument checks of :func:`linear_fire`."""
    if not isinstance(delayed_reset, bool):
        raise TypeError(f"delayed_reset must be a bool, got {type(delayed_reset).__name__}")
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
    check_surrogate(spike_fn, "spike_fn")
    if isinstance(v_threshold, torch.Tensor):
        check_like(v_threshold, "v_threshold", shape, x, "x", broadcast=True)
    else:
        check_float(v_threshold, "v_threshold")
