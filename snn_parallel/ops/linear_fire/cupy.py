"""CuPy path of the linear-membrane spiking op: the kernels of ``linear_fire.cu``.

Same contracts as :func:`.fused.linear_fire_forward` / :func:`.fused.linear_fire_backward`, but with the
per-lane parameters in their compact form (``[P]``, read for lane ``n`` at ``(n // spatial) % P``, see
:func:`~snn_parallel.ops._layout.param_layout`) and the checkpoints every
:data:`~snn_parallel.ops._cuda.SEGMENT` steps. Sequences stay in their storage dtype; per-lane values are
passed in float32 (complex64); results come back in the dtypes the torch path gives.

Launches: without a reset, the filter and the spikes in one time-chunked kernel (plus the look-back's flag
memset); with one, the serial threshold chain, which on narrow layers reads the filter from a time-chunked
kernel and on wide ones (at least :data:`CHAIN_FILTER_LANES_PER_SM` lanes a multiprocessor) runs the filter
itself in one pass. The backward is one time-chunked kernel (plus the memset and one reduction of the
parameters' partial sums).
"""

from __future__ import annotations

import math

import torch

from .. import _cuda
from .._cuda import (
    CHUNK_WARPS,
    REAL_AND_COMPLEX,
    SEGMENT,
    KernelFile,
    arg,
    grad_strides,
    kernel_op,
    spike_code,
    workspace,
)
from .._layout import threshold_arguments

KERNEL = KernelFile(__package__, "linear_fire.cu", variants=REAL_AND_COMPLEX)
#: lanes per multiprocessor from which the reset's threshold chain runs the filter itself (one pass over x)
CHAIN_FILTER_LANES_PER_SM = 256


def _filter_dtype(decay: torch.Tensor) -> torch.dtype:
    return torch.complex64 if decay.is_complex() else torch.float32


def _suffix(decay: torch.Tensor) -> str:
    return "complex" if decay.is_complex() else "real"


def _fake_forward(x, decay, bias0, **_):
    steps, lanes = x.shape
    checkpoints = x.new_empty(math.ceil(steps / SEGMENT), lanes, dtype=_filter_dtype(decay))
    return (
        torch.empty_like(x),
        torch.empty_like(x),
        checkpoints,
        x.new_empty(lanes, dtype=decay.dtype),
        torch.empty_like(bias0),
    )


@kernel_op(
    "linear_fire_forward",
    _fake_forward,
    "(Tensor x, Tensor decay, Tensor scale, Tensor h0, Tensor bias0, Tensor? reset_decay, Tensor? threshold, "
    "float threshold_value, int kind, float[] params, bool inclusive, int count, int spatial, bool delayed_reset, "
    "bool? filter_in_chain=None, int? segments_per_block=None) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
)
def _forward(x, decay, scale, h0, bias0, reset_decay, threshold, threshold_value, kind, params, inclusive, count,
             spatial, delayed_reset, filter_in_chain=None, segments_per_block=None):  # fmt: skip
    steps, lanes = x.shape
    acc = _filter_dtype(decay)
    spikes, membrane = torch.empty_like(x), torch.empty_like(x)
    checkpoints = torch.empty(math.ceil(steps / SEGMENT), lanes, dtype=acc, device=x.device)
    h_last = torch.empty(lanes, dtype=acc, device=x.device)
    per_lane = [arg(decay, acc), arg(scale, torch.float32)]
    threshold = (None if threshold is None else arg(threshold, torch.float32), threshold_value)
    h0, bias0_f = arg(h0, acc), arg(bias0, torch.float32)
    spike = (kind, *params, int(inclusive))
    sizes = (steps, lanes, count, spatial)

    def chunked_filter(filtered: torch.Tensor | None) -> None:
        grid, per_block, *look_back = workspace(steps, lanes, x, 2 if decay.is_complex() else 1, segments_per_block)
        KERNEL.launch(f"lf_fwd_{_suffix(decay)}", x.dtype, (grid,), (32, CHUNK_WARPS), x, *per_lane, *threshold,
                      h0, bias0_f, spikes, membrane, filtered, checkpoints, h_last, *look_back, *spike, *sizes,
                      per_block)  # fmt: skip

    if reset_decay is None:
        chunked_filter(None)
        return spikes, membrane, checkpoints, h_last.to(decay.dtype), bias0.clone()
    if filter_in_chain is None:
        filter_in_chain = lanes >= CHAIN_FILTER_LANES_PER_SM * _cuda.processors(x.device)
    filtered = None
    if not filter_in_chain:
        filtered = membrane if x.dtype == torch.float32 else torch.empty(steps, lanes, device=x.device)
        chunked_filter(filtered)
    bias_next = torch.empty(lanes, dtype=torch.float32, device=x.device)
    KERNEL.launch_items(f"lf_chain_{_suffix(decay)}", x.dtype, lanes, x, filtered, *per_lane,
                        arg(reset_decay, torch.float32), *threshold, h0, bias0_f, spikes, membrane, checkpoints, h_last,
                        bias_next, *spike, *sizes, int(delayed_reset))  # fmt: skip
    return spikes, membrane, checkpoints, h_last.to(decay.dtype), bias_next.to(bias0.dtype)


def linear_fire_forward_cupy(x, decay, scale, h0, bias0, spike_fn, threshold, reset_decay, layout, delayed_reset, *,
                             filter_in_chain=None, segments_per_block=None):  # fmt: skip
    """:func:`~snn_parallel.ops.linear_fire.linear_fire`'s forward on the kernels (arguments as there, flattened;
    ``threshold`` ``[P]`` or a number): ``(spikes, membrane, checkpoints, h_last, bias_next)`` for ``x`` ``[T, N]``
    (``filter_in_chain`` and ``segments_per_block`` force a launch configuration). The launches are the custom op
    ``snn_parallel::linear_fire_forward``."""
    kind, params, inclusive = spike_code(spike_fn)
    return _forward(x, decay, scale, h0, bias0, reset_decay, *threshold_arguments(threshold), kind, list(params),
                    bool(inclusive), *layout, delayed_reset, filter_in_chain, segments_per_block)  # fmt: skip


def _fake_backward(x, decay, bias0, count, needs_bias0, **_):
    return (
        torch.empty_like(x),
        x.new_empty(5, count, dtype=torch.float32),
        x.new_empty(x.shape[1], dtype=_filter_dtype(decay)),
        x.new_empty(bias0.shape[0] if needs_bias0 else 0, dtype=torch.float32),
    )


@kernel_op(
    "linear_fire_backward",
    _fake_backward,
    "(Tensor? grad_spikes, Tensor? grad_membrane, Tensor? grad_last, Tensor? grad_bias_next, Tensor x, Tensor decay, "
    "Tensor scale, Tensor? reset_decay, Tensor? threshold, float threshold_value, Tensor bias0, Tensor? membrane, "
    "Tensor? spikes, Tensor checkpoints, int kind, float[] params, int count, int spatial, bool needs_bias0, "
    "bool needs_rho, bool needs_threshold, bool delayed_reset, int? segments_per_block=None) -> "
    "(Tensor, Tensor, Tensor, Tensor)",
)
def _backward(grad_spikes, grad_membrane, grad_last, grad_bias_next, x, decay, scale, reset_decay, threshold,
              threshold_value, bias0, membrane, spikes, checkpoints, kind, params, count, spatial, needs_bias0,
              needs_rho, needs_threshold, delayed_reset, segments_per_block=None):  # fmt: skip
    """``(grad_x, sums, grad_h0, grad_bias0)``: ``sums`` ``[5, P]`` holds the parameters' gradients (rows: Re and
    Im of decay's, scale's, reset_decay's, threshold's); ``grad_bias0`` is empty unless ``needs_bias0``."""
    steps, lanes = x.shape
    acc = _filter_dtype(decay)
    reset_grad = reset_decay is not None and needs_rho
    read_spikes = reset_decay is not None and (needs_rho or needs_threshold)
    grad_x = torch.empty_like(x)
    grad_h0 = torch.empty(lanes, dtype=acc, device=x.device)
    grad_bias0 = torch.empty(lanes if needs_bias0 else 0, device=x.device)
    grid, per_block, *look_back = workspace(steps, lanes, x, 4 if decay.is_complex() else 2, segments_per_block)
    groups = grid // math.ceil(lanes / 32)
    partials = torch.empty(groups, 5, lanes, device=x.device)
    KERNEL.launch(
        f"lf_bwd_{_suffix(decay)}", x.dtype, (grid,), (32, CHUNK_WARPS),
        grad_spikes, grad_membrane, None if grad_last is None else arg(grad_last, acc),
        None if grad_bias_next is None else arg(grad_bias_next, torch.float32), x, arg(decay, acc),
        arg(scale, torch.float32), None if reset_decay is None else arg(reset_decay, torch.float32),
        None if threshold is None else arg(threshold, torch.float32), threshold_value, arg(bias0, torch.float32),
        membrane if reset_decay is not None else None, spikes if read_spikes else None, checkpoints, grad_x, grad_h0,
        grad_bias0 if needs_bias0 else None, partials, *look_back, kind, *params, int(reset_grad),
        int(needs_threshold), steps, lanes, count, spatial, *grad_strides(grad_spikes), *grad_strides(grad_membrane),
        per_block, int(delayed_reset),
    )  # fmt: skip
    sums = partials.view(groups, 5, -1, count, spatial).sum((0, 2, 4))  # one reduction over blocks and lanes
    return grad_x, sums, grad_h0, grad_bias0


def linear_fire_backward_cupy(grad_spikes, grad_membrane, grad_last, grad_bias_next, x, decay, scale, reset_decay,
                              threshold, h0, bias0, membrane, spikes, checkpoints, spike_fn, layout, delayed_reset,
                              needs, *, segments_per_block=None):  # fmt: skip
    """:func:`~snn_parallel.ops.linear_fire.linear_fire`'s backward on the kernels: the gradients of ``(x, decay,
    scale, h0, bias0, reset_decay, threshold)`` from those of ``(spikes, membrane, h_last, bias_next)`` (each
    ``None`` when none reached it; ``[T, N]`` gradients with any strides). ``needs``: whether ``bias0``,
    ``reset_decay`` and ``threshold`` need theirs (``None`` is returned otherwise); ``membrane`` is read with a
    reset, ``spikes`` when, with a reset, ``reset_decay`` or ``threshold`` needs its gradient. The launches are the
    custom op ``snn_parallel::linear_fire_backward``. ``delayed_reset``: the bias's step undecayed (``linear_fire``).
    """
    kind, params, _ = spike_code(spike_fn)
    grad_x, sums, grad_h0, grad_bias0 = _backward(
        grad_spikes, grad_membrane, grad_last, grad_bias_next, x, decay, scale, reset_decay,
        *threshold_arguments(threshold), bias0, membrane, spikes, checkpoints, kind, list(params), *layout, *needs,
        delayed_reset, segments_per_block,
    )  # fmt: skip
    grad_decay = torch.complex(sums[0], sums[1]) if decay.is_complex() else sums[0]
    return (
        grad_x,
        grad_decay.to(decay.dtype),
        sums[2].to(scale.dtype),
        grad_h0.to(h0.dtype),
        grad_bias0.to(bias0.dtype) if needs[0] else None,
        sums[3].to(reset_decay.dtype) if needs[1] and reset_decay is not None else None,
        sums[4].to(threshold.dtype) if needs[2] else None,
    )
