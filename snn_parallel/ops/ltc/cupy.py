"""CuPy path of the LTC recurrence: ``ltc.cu``.

Same contracts as :func:`.fused.ltc_forward` / :func:`.fused.ltc_backward`, in the storage dtype
of ``current`` (the other inputs are converted to it). The forward (a hard reset: serial in time) runs one
thread per lane with the next steps' inputs in flight; the backward, linear in its carried gradients, is a
time-chunked scan of 3 x 3 matrix maps (plus the look-back's flag memset where blocks split the sequence).
The launches are the custom ops ``snn_parallel::ltc_forward`` and ``snn_parallel::ltc_backward``.
"""

from __future__ import annotations

import torch

from .._cuda import CHUNK_WARPS, KernelFile, arg, kernel_op, spike_code, workspace

KERNEL = KernelFile(__package__, "ltc.cu")


def _fake_forward(current, rate, retention, u0, s0, b_init, b0, beta_a, kind, params, inclusive):
    return torch.empty_like(current), torch.empty_like(current), torch.empty_like(current)


@kernel_op(
    "ltc_forward",
    _fake_forward,
    "(Tensor current, Tensor rate, Tensor retention, Tensor u0, Tensor s0, Tensor b_init, float b0, float beta_a, "
    "int kind, float[] params, bool inclusive) -> (Tensor, Tensor, Tensor)",
)
def _forward(current, rate, retention, u0, s0, b_init, b0, beta_a, kind, params, inclusive):
    steps, lanes = current.shape
    dtype = current.dtype
    inputs = [arg(t, dtype) for t in (current, rate, retention, u0, s0, b_init)]
    spikes, membrane, trace = (torch.empty(steps, lanes, dtype=dtype, device=current.device) for _ in range(3))
    KERNEL.launch_items("ltc_fwd", dtype, lanes, *inputs, spikes, membrane, trace, b0, beta_a, kind, *params,
                        int(inclusive), steps, lanes)  # fmt: skip
    return spikes, membrane, trace


def ltc_forward_cupy(current, rate, retention, u0, s0, b_init, b0, beta_a, surrogate):
    """:func:`~snn_parallel.ops.ltc.ltc_scan`'s forward over ``[T, N]`` inputs: ``(spikes, membrane, b)``, each
    ``[T, N]``."""
    kind, params, inclusive = spike_code(surrogate)
    return _forward(
        current, rate, retention, u0, s0, b_init, float(b0), float(beta_a), kind, list(params), bool(inclusive)
    )


def _fake_backward(current, rate, retention, u0, s0, b_init, **_):
    return tuple(torch.empty_like(t) for t in (current, rate, retention, u0, s0, b_init))


@kernel_op(
    "ltc_backward",
    _fake_backward,
    "(Tensor grad_spikes, Tensor grad_membrane, Tensor grad_u_last, Tensor grad_s_last, Tensor grad_b_last, "
    "Tensor current, Tensor rate, Tensor retention, Tensor u0, Tensor s0, Tensor b_init, Tensor spikes, "
    "Tensor membrane, Tensor trace, float b0, float beta_a, int kind, float[] params, int? segments_per_block=None) "
    "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
)
def _backward(grad_spikes, grad_membrane, grad_u_last, grad_s_last, grad_b_last, current, rate, retention, u0, s0,
              b_init, spikes, membrane, trace, b0, beta_a, kind, params, segments_per_block=None):  # fmt: skip
    steps, lanes = current.shape
    saved = (current, rate, retention, u0, s0, b_init, spikes, membrane, trace)
    dtype = current.dtype
    grads_in = [arg(g, dtype) for g in (grad_spikes, grad_membrane, grad_u_last, grad_s_last, grad_b_last)]
    grads_seq = [torch.empty(steps, lanes, dtype=dtype, device=current.device) for _ in range(3)]
    grads_state = [torch.empty(lanes, dtype=dtype, device=current.device) for _ in range(3)]
    grid, per_block, *look_back = workspace(steps, lanes, current, 3, segments_per_block, decay_floats=9)
    KERNEL.launch(
        "ltc_bwd", dtype, (grid,), (32, CHUNK_WARPS),
        *grads_in, *(arg(t, dtype) for t in saved), *grads_seq, *grads_state, *look_back, b0, beta_a, kind, *params,
        steps, lanes, per_block,
    )  # fmt: skip
    # the gradients of current, rate, retention, u0, s0 and b_init: the first six saved tensors
    return tuple(g.to(t.dtype) for g, t in zip(grads_seq + grads_state, saved[:6], strict=True))


def ltc_backward_cupy(grad_spikes, grad_membrane, grad_last, saved, b0, beta_a, surrogate, *, segments_per_block=None):
    """:func:`~snn_parallel.ops.ltc.fused.ltc_backward` on the kernels: the gradients of ``(current, rate,
    retention, u0, s0, b_init)`` from those of the spikes, the membrane and the last state ``(u, s, b)``, and the
    forward's ``saved`` tensors (``segments_per_block`` forces the launch configuration)."""
    kind, params, _ = spike_code(surrogate)
    return _backward(
        grad_spikes, grad_membrane, *grad_last, *saved, float(b0), float(beta_a), kind, list(params), segments_per_block
    )
