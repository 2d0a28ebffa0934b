"""CuPy path of TSSL-BP's neuron: ``tssl.cu``.

Same contracts as :func:`.reference.tssl_forward_reference` and :func:`.parallel.tssl_backward` on
``[T, N]`` sequences, in the storage dtype of ``current`` (the other inputs are converted to it). The forward (a
hard reset: serial in time) runs one thread per lane with the next steps' inputs in flight; the backward, linear in
its carried pair, is a time-chunked scan of 2 x 2 matrix maps (plus the look-back's flag memset where blocks split
the sequence). The launchers are the custom ops ``snn_parallel::tssl_forward`` and ``snn_parallel::tssl_backward``.
"""

from __future__ import annotations

import torch

from .._cuda import CHUNK_WARPS, KernelFile, arg, kernel_op, workspace
from .reference import DT_DU_MIN, FALLBACK_CLAMP, FALLBACK_WIDTH

KERNEL = KernelFile(
    __package__,
    "tssl.cu",
    {"TSSL_DT_DU_MIN": DT_DU_MIN, "TSSL_FALLBACK_WIDTH": FALLBACK_WIDTH, "TSSL_FALLBACK_CLAMP": FALLBACK_CLAMP},
)


def _fake_forward(current, u0, a0, v_threshold, tau_m, tau_s, inclusive=False):
    return (*(torch.empty_like(current) for _ in range(4)), current.new_empty(u0.shape), current.new_empty(u0.shape))


@kernel_op(
    "tssl_forward",
    _fake_forward,
    "(Tensor current, Tensor u0, Tensor a0, float v_threshold, float tau_m, float tau_s, bool inclusive=False) "
    "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
)
def tssl_forward_cupy(current, u0, a0, v_threshold, tau_m, tau_s, inclusive=False):
    """:func:`~.parallel.tssl_forward` over ``current`` ``[T, N]``: ``(psp, spikes, membrane, delta_u, u_last,
    a_last)``."""
    steps, lanes = current.shape
    dtype = current.dtype
    inputs = [arg(t, dtype) for t in (current, u0, a0)]
    sequences = [torch.empty_like(inputs[0]) for _ in range(4)]
    last = [torch.empty_like(inputs[1]) for _ in range(2)]
    KERNEL.launch_items(
        "tssl_fwd", dtype, lanes,
        *inputs, *sequences, *last, v_threshold, tau_m, tau_s, int(inclusive), steps, lanes,
    )  # fmt: skip
    return (*sequences, *last)


def _fake_backward(
    grad_psp, spikes, membrane, delta_u, psp, v_threshold, tau_m, tau_s, dt_du_at_spikes=True, segments_per_block=None
):
    return torch.empty_like(spikes)


@kernel_op(
    "tssl_backward",
    _fake_backward,
    "(Tensor grad_psp, Tensor spikes, Tensor membrane, Tensor delta_u, Tensor psp, float v_threshold, float tau_m, "
    "float tau_s, bool dt_du_at_spikes=True, int? segments_per_block=None) -> Tensor",
)
def tssl_backward_cupy(
    grad_psp, spikes, membrane, delta_u, psp, v_threshold, tau_m, tau_s, dt_du_at_spikes=True, segments_per_block=None
):
    """:func:`~.parallel.tssl_backward` on ``[T, N]`` sequences: :math:`\\partial L/\\partial I` from
    :math:`\\partial L/\\partial a` and the forward's outputs (``segments_per_block`` forces the launch
    configuration)."""
    steps, lanes = spikes.shape
    dtype = spikes.dtype
    saved = [arg(t, dtype) for t in (grad_psp, spikes, membrane, delta_u, psp)]
    grad = torch.empty_like(saved[1])
    grid, per_block, *look_back = workspace(steps, lanes, grad, 2, segments_per_block, decay_floats=4)
    KERNEL.launch("tssl_bwd", dtype, (grid,), (32, CHUNK_WARPS), *saved, grad, *look_back, v_threshold, tau_m, tau_s,
                  int(dt_du_at_spikes), steps, lanes, per_block)  # fmt: skip
    return grad
