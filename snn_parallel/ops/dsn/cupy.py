"""CuPy path of the DSN membrane: the time-chunked kernels of ``dsn.cu``.

Same contracts as :func:`.fused.dsn_forward` / :func:`.fused.dsn_backward`, except that the taps and bias come in
their compact form (``[k, P]`` and ``[P]``, read for lane ``n`` at ``(n // spatial) % P``, see
:func:`~snn_parallel.ops._layout.param_layout`), the forward writes the membrane only when asked and returns
checkpoints (``H`` entering every :data:`~snn_parallel.ops._cuda.SEGMENT` steps, float32) from which the backward
recomputes it. ``x``, ``history``, ``h0`` and the sequences run in the storage dtype of ``x``; ``weight`` and
``bias`` in float32; gradients come back in the dtypes of their inputs.

Launches: the forward is one time-chunked kernel (plus the look-back's flag memset where blocks split the
sequence); the backward one time-chunked kernel and one fix-up kernel, which finishes the input gradients at the
segment edges and sums the weight and bias gradients over the blocks in a fixed order (deterministic). They are
the custom ops ``snn_parallel::dsn_forward`` and ``snn_parallel::dsn_backward``.
"""

from __future__ import annotations

import math

import torch

from .._cuda import CHUNK_WARPS, SEGMENT, KernelFile, arg, grad_strides, kernel_op, spike_code, workspace
from .._layout import threshold_arguments

#: the most conv taps ``dsn.cu`` holds in registers (its ``DSN_MAX_TAPS``)
MAX_TAPS = 8
KERNEL = KernelFile(__package__, "dsn.cu", {"DSN_MAX_TAPS": MAX_TAPS})


def _fake_forward(x, history, weight, bias, h0, tau, shift, shift_value, kind, params, inclusive, membrane, count,
                  spatial, segments_per_block=None):  # fmt: skip
    steps, lanes = x.shape
    return (
        torch.empty_like(x),
        x.new_empty(x.shape if membrane else (0,)),
        x.new_empty(math.ceil(steps / SEGMENT), lanes, dtype=torch.float32),
        x.new_empty(lanes, dtype=torch.float32),
    )


@kernel_op(
    "dsn_forward",
    _fake_forward,
    "(Tensor x, Tensor history, Tensor weight, Tensor bias, Tensor h0, float tau, Tensor? shift, float shift_value, "
    "int kind, float[] params, bool inclusive, bool membrane, int count, int spatial, int? segments_per_block=None) "
    "-> (Tensor, Tensor, Tensor, Tensor)",
)
def _forward(x, history, weight, bias, h0, tau, shift, shift_value, kind, params, inclusive, membrane, count, spatial,
             segments_per_block=None):  # fmt: skip
    steps, lanes = x.shape
    x = x.contiguous()
    spikes = torch.empty_like(x)
    h = torch.empty_like(x) if membrane else x.new_empty(0)
    checkpoints = torch.empty(math.ceil(steps / SEGMENT), lanes, device=x.device)
    h_last = torch.empty(lanes, device=x.device)
    grid, per_block, *look_back = workspace(steps, lanes, x, 1, segments_per_block)
    KERNEL.launch(
        "dsn_fwd", x.dtype, (grid,), (32, CHUNK_WARPS),
        x, arg(history, x.dtype), arg(weight, torch.float32), arg(bias, torch.float32),
        None if shift is None else arg(shift, torch.float32), shift_value, arg(h0, x.dtype), spikes,
        h if membrane else None, checkpoints, h_last, *look_back, 1.0 / tau, kind, *params, int(inclusive),
        weight.shape[0], steps, lanes, count, spatial, per_block,
    )  # fmt: skip
    return spikes, h, checkpoints, h_last


def dsn_forward_cupy(x, history, weight, bias, tau, h0, spike_fn, shift, membrane, layout, *, segments_per_block=None):
    """:func:`~snn_parallel.ops.dsn.dsn_membrane`'s forward on the kernels: ``(spikes, h, h_last, checkpoints)`` for
    ``x`` ``[T, N]`` (``h`` ``None`` unless ``membrane``); ``weight`` is
    ``[k, P]``, ``bias`` and ``shift`` ``[P]`` (``shift`` may be a number) with ``layout = (P, spatial)``;
    ``segments_per_block`` forces the launch configuration."""
    kind, params, inclusive = spike_code(spike_fn)
    spikes, h, checkpoints, h_last = _forward(x, history, weight, bias, h0, float(tau), *threshold_arguments(shift),
                                              kind, list(params), bool(inclusive), membrane, *layout,
                                              segments_per_block)  # fmt: skip
    return spikes, h if membrane else None, h_last.to(x.dtype), checkpoints


def _fake_backward(x, history, weight, needs_shift, **_):
    lanes = x.shape[1]
    return (
        torch.empty_like(x),
        x.new_empty(history.shape),
        x.new_empty(weight.shape[0], lanes, dtype=torch.float32),
        x.new_empty(lanes, dtype=torch.float32),
        x.new_empty(lanes, dtype=torch.float32),
        x.new_empty(lanes if needs_shift else 0, dtype=torch.float32),
    )


@kernel_op(
    "dsn_backward",
    _fake_backward,
    "(Tensor? grad_spikes, Tensor? grad_h, Tensor? grad_last, Tensor x, Tensor history, Tensor weight, Tensor bias, "
    "Tensor checkpoints, float tau, Tensor? shift, float shift_value, int kind, float[] params, int count, "
    "int spatial, bool needs_shift, int? segments_per_block=None) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
)
def _backward(grad_spikes, grad_h, grad_last, x, history, weight, bias, checkpoints, tau, shift, shift_value, kind,
              params, count, spatial, needs_shift, segments_per_block=None):  # fmt: skip
    """``(grad_x, grad_history, grad_weight, grad_bias, grad_h0, grad_shift)``, the parameters' per lane
    (``grad_shift`` empty unless ``needs_shift``)."""
    steps, lanes = x.shape
    taps = weight.shape[0]
    grad_x = torch.empty_like(x)
    grad_history = x.new_empty(history.shape)
    grad_weight = torch.empty(taps, lanes, device=x.device)
    grad_bias, grad_h0 = (torch.empty(lanes, device=x.device) for _ in range(2))
    grad_shift = torch.empty(lanes if needs_shift else 0, device=x.device)
    segments = math.ceil(steps / SEGMENT)
    head, tail = (torch.empty(segments * (taps - 1), lanes, device=x.device) for _ in range(2))
    grid, per_block, *look_back = workspace(steps, lanes, x, 1, segments_per_block)
    groups = grid // math.ceil(lanes / 32)
    partials = torch.empty(groups, MAX_TAPS + 2, lanes, device=x.device)
    weight = arg(weight, torch.float32)
    grad_spikes, grad_h = (None if g is None else g.to(x.dtype) for g in (grad_spikes, grad_h))
    KERNEL.launch(
        "dsn_bwd", x.dtype, (grid,), (32, CHUNK_WARPS),
        grad_spikes, grad_h, None if grad_last is None else arg(grad_last, torch.float32), x, arg(history, x.dtype),
        weight, arg(bias, torch.float32), None if shift is None else arg(shift, torch.float32), shift_value,
        checkpoints, grad_x, grad_h0, head, tail, partials, *look_back, 1.0 / tau, kind, int(needs_shift), *params,
        taps, steps, lanes, count, spatial, *grad_strides(grad_spikes), *grad_strides(grad_h), per_block,
    )  # fmt: skip
    KERNEL.launch_items("dsn_fixup", x.dtype, segments * lanes, weight, head, tail, partials, grad_x, grad_history,
                        grad_weight, grad_bias, grad_shift if needs_shift else None, taps, steps, lanes, count,
                        spatial, groups)  # fmt: skip
    return grad_x, grad_history, grad_weight, grad_bias, grad_h0, grad_shift


def dsn_backward_cupy(grad_spikes, grad_h, grad_last, x, history, weight, bias, tau, h0, checkpoints, spike_fn, shift,
                      layout, needs_shift, *, segments_per_block=None):  # fmt: skip
    """:func:`~snn_parallel.ops.dsn.dsn_membrane`'s backward on the kernels: the gradients of ``(x, history, weight,
    bias, h0, shift)`` from those of ``(spikes, h, h_last)`` (each ``None`` when none
    reached it; ``[T, N]`` gradients with any strides) and the forward's ``checkpoints``; the weight's, bias's and
    shift's per lane, ``[k, N]``, ``[N]`` and ``[N]`` (the shift's ``None`` unless ``needs_shift``)."""
    kind, params, _ = spike_code(spike_fn)
    grad_x, grad_history, grad_weight, grad_bias, grad_h0, grad_shift = _backward(
        grad_spikes, grad_h, grad_last, x, history, weight, bias, checkpoints, float(tau),
        *threshold_arguments(shift), kind, list(params), *layout, needs_shift, segments_per_block,
    )  # fmt: skip
    return (
        grad_x,
        grad_history.to(history.dtype),
        grad_weight.to(weight.dtype),
        grad_bias.to(bias.dtype),
        grad_h0.to(h0.dtype),
        grad_shift.to(shift.dtype) if needs_shift else None,
    )
