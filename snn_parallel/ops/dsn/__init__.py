r"""DSN as one fused op: causal depthwise decay convolution, gated linear scan, spikes.

:func:`dsn_membrane` returns the spikes and the membrane :math:`H` of the dynamic-decay
neuron (equations in :mod:`.reference`).
"""

from __future__ import annotations

from typing import Any

import torch

from ..._validation import check_bool, check_float, check_like, check_op_sequence, check_positive, check_tensor
from ...surrogate import Surrogate, check_surrogate
from .._backend import kernel_gap, resolve_backend
from .._layout import compact, compact_threshold, param_layout, per_lane, threshold_per_lane, to_params
from .cupy import MAX_TAPS, dsn_backward_cupy, dsn_forward_cupy
from .fused import dsn_backward, dsn_forward
from .reference import dsn_membrane_reference, dsn_step

__all__ = ["dsn_membrane", "dsn_membrane_reference", "dsn_step"]


def _taps_per_lane(weight: torch.Tensor, lanes: int, layout: tuple[int, int]) -> torch.Tensor:
    """``[k, P]`` taps for every lane, ``[k, N]``."""
    return torch.stack([per_lane(w, lanes, layout) for w in weight.unbind(0)])


def _forward_torch(x, history, weight, bias, tau, h0, spike_fn, shift, membrane, layout):
    lanes = x.shape[1]
    spikes, h = dsn_forward(x, history, _taps_per_lane(weight, lanes, layout), per_lane(bias, lanes, layout), tau, h0,
                            spike_fn, threshold_per_lane(shift, lanes, layout))  # fmt: skip
    return spikes, h if membrane else None, h[-1].clone(), h


def _backward_torch(grad_spikes, grad_h, grad_last, x, history, weight, bias, tau, h0, h, spike_fn, shift, layout,
                    needs_shift):  # fmt: skip
    lanes = x.shape[1]
    grad_spikes = torch.zeros_like(x) if grad_spikes is None else grad_spikes
    grad_h = torch.zeros_like(x) if grad_h is None else grad_h
    grad_last = torch.zeros_like(h0) if grad_last is None else grad_last
    return dsn_backward(grad_spikes, grad_h, grad_last, x, history, _taps_per_lane(weight, lanes, layout),
                        per_lane(bias, lanes, layout), tau, h0, h, spike_fn, threshold_per_lane(shift, lanes, layout),
                        needs_shift)  # fmt: skip


#: backend -> (forward, backward) on flattened tensors (see :class:`_DSNMembrane`): the forward returns
#: ``(spikes, h or None, h_last, saved)``, the backward takes ``saved`` (the torch path's membrane, the kernels'
#: checkpoints) in place of the membrane and returns the weight, bias and shift gradients per lane (``[k, N]``,
#: ``[N]``, ``[N]`` or ``None``)
_IMPLEMENTATIONS = {"torch": (_forward_torch, _backward_torch), "cupy": (dsn_forward_cupy, dsn_backward_cupy)}


class _DSNMembrane(torch.autograd.Function):
    """Flattened: ``x`` ``[T, N]``, ``history`` ``[k-1, N]``, ``weight`` ``[k, P]``, ``bias`` ``[P]`` (see
    :func:`~snn_parallel.ops._layout.param_layout`), ``h0`` ``[N]``, ``shift`` ``[P]`` or a number."""

    @staticmethod
    def forward(
        ctx: Any,
        x,
        history,
        weight,
        bias,
        h0,
        shift,
        tau: float,
        spike_fn: Surrogate,
        backend: str,
        membrane: bool,
        layout: tuple[int, int],
    ):
        forward, ctx.backward_fn = _IMPLEMENTATIONS[backend]
        spikes, h, last, saved = forward(x, history, weight, bias, tau, h0, spike_fn, shift, membrane, layout)
        tensor = isinstance(shift, torch.Tensor)
        ctx.save_for_backward(x, history, weight, bias, h0, saved, shift if tensor else None)
        ctx.constants = (tau, spike_fn, None if tensor else shift, layout)
        ctx.set_materialize_grads(False)
        return spikes, h, last

    @staticmethod
    def backward(ctx: Any, grad_spikes, grad_h, grad_last):
        x, history, weight, bias, h0, saved, shift = ctx.saved_tensors
        tau, spike_fn, shift_value, layout = ctx.constants
        grad_x, grad_history, grad_weight, grad_bias, grad_h0, grad_shift = ctx.backward_fn(
            grad_spikes, grad_h, grad_last, x, history, weight, bias, tau, h0, saved, spike_fn,
            shift_value if shift is None else shift, layout, ctx.needs_input_grad[5],
        )  # fmt: skip
        count, spatial = layout  # the per-lane sums into [k, P] and [P], one reduction each
        grad_weight = grad_weight.reshape(weight.shape[0], -1, count, spatial).sum((1, 3))
        grad_shift = None if grad_shift is None else to_params(grad_shift, layout)
        return (grad_x, grad_history, grad_weight, to_params(grad_bias, layout), grad_h0, grad_shift, *[None] * 5)


def dsn_membrane(
    x: torch.Tensor,
    history: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    tau: float,
    h0: torch.Tensor,
    spike_fn: Surrogate,
    shift: float | torch.Tensor = 0.0,
    *,
    backend: str = "auto",
    validate: bool = True,
    membrane: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    r"""DSN spikes :math:`S_t = f(H_t - \mathrm{shift})` and membrane :math:`H` for all steps.

    Args:
        x: inputs ``[T, *S]`` (``S = (B, C, *spatial)``).
        history: the ``k - 1`` inputs before ``x``, ``[k - 1, *S]``.
        weight: taps ``[k, *S']``, broadcastable to ``S`` (e.g. ``[k, C]``, or
            ``[k, C, 1, 1]`` for feature maps), oldest input first.
        bias: ``[*S']``, broadcastable to ``S``.
        tau: decay exponent :math:`1/\tau`.
        h0: membrane before the first step, ``[*S]``.
        spike_fn: spike function with its surrogate derivative (a
            :class:`~snn_parallel.surrogate.Surrogate`, e.g. ``ATan()`` or ``IntegerSpike(4)``).
        shift: subtracted from :math:`H` before ``spike_fn`` (the threshold in binary mode): a number, or a
            real tensor broadcastable to ``S`` (e.g. per channel ``[C]``), which gets a gradient,
            :math:`-\sum_t \bar S_t f'(H_t - \mathrm{shift})`, where it requires one.
        backend: ``"auto"``, ``"torch"`` or ``"cupy"`` (see :mod:`snn_parallel.ops._backend`);
            the kernel holds at most :data:`~snn_parallel.ops.dsn.cupy.MAX_TAPS` taps.
        validate: check the arguments (``False`` where the caller already has, as
            :class:`~snn_parallel.neurons.DynamicDecay` does).
        membrane: return the membrane ``h``; with ``False`` it is ``None`` and the kernels do not
            write it (their backward recomputes it from checkpoints either way).

    Returns:
        ``(spikes, h, h_last)``, ``[T, *S]``, ``[T, *S]`` (or ``None``) and ``[*S]``.
    """
    if validate:
        _check(x, history, weight, bias, tau, h0, spike_fn, shift)
        check_bool(membrane, "membrane")
    shift_tensor = shift if isinstance(shift, torch.Tensor) else None

    def gap() -> str | None:
        if weight.shape[0] > MAX_TAPS:
            return f"weight has {weight.shape[0]} taps (the kernel holds at most {MAX_TAPS})"
        storage = [("x", x), ("history", history), ("h0", h0)]
        per_lane = [("weight", weight), ("bias", bias), ("shift", shift_tensor)]
        return kernel_gap(storage, float32=[(n, t) for n, t in per_lane if t is not None], spike_fn=spike_fn)

    backend = resolve_backend(backend, x, op="dsn_membrane", unsupported=gap)
    steps, shape = x.shape[0], x.shape[1:]
    lanes = shape.numel()
    lo, hi, count, spatial = param_layout(shape, weight[0], bias, shift_tensor)
    spikes, h, last = _DSNMembrane.apply(
        x.reshape(steps, lanes).contiguous(),
        history.reshape(history.shape[0], lanes).contiguous(),
        torch.stack([compact(w, shape, lo, hi) for w in weight.unbind(0)]),
        compact(bias, shape, lo, hi),
        h0.reshape(lanes).contiguous(),
        compact_threshold(shift, shape, lo, hi, x.dtype),
        tau,
        spike_fn,
        backend,
        membrane,
        (count, spatial),
    )
    return spikes.view(x.shape), None if h is None else h.view(x.shape), last.view(shape)


def _check(x, history, weight, bias, tau, h0, spike_fn, shift) -> None:
    """Argument checks of :func:`dsn_membrane`."""
    x = check_op_sequence(x, "x")
    shape = tuple(x.shape[1:])
    weight = check_tensor(weight, "weight")
    if weight.dim() < 1 or weight.shape[0] < 1:
        raise ValueError(f"weight must be [k, ...] with k >= 1 taps, got shape {tuple(weight.shape)}")
    check_like(weight[0], "weight[j]", shape, x, "x", broadcast=True)
    check_like(
        history,
        "history",
        (weight.shape[0] - 1, *shape),
        x,
        f"x and the {weight.shape[0]} taps of weight (k - 1 steps)",
    )
    check_like(bias, "bias", shape, x, "x", broadcast=True)
    check_like(h0, "h0", shape, x, "x")
    check_positive(tau, "tau")
    check_surrogate(spike_fn, "spike_fn")
    if isinstance(shift, torch.Tensor):
        check_like(shift, "shift", shape, x, "x", broadcast=True)
    else:
        check_float(shift, "shift")
