"""CuPy path of the LTC recurrence: ``ltc.cu``, one thread per lane.

Same contracts as :func:`.fused.ltc_forward` / :func:`.fused.ltc_backward`, in the storage dtype
of ``current`` (the other inputs are converted to it).
"""

from __future__ import annotations

import torch

from ...surrogate import Surrogate
from .._cuda import KernelFile, arg, spike_code

KERNEL = KernelFile(__package__, "ltc.cu")


def ltc_forward_cupy(
    current: torch.Tensor,
    rate: torch.Tensor,
    retention: torch.Tensor,
    u0: torch.Tensor,
    s0: torch.Tensor,
    b_init: torch.Tensor,
    b0: float,
    beta_a: float,
    surrogate: Surrogate,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward over ``[T, N]`` inputs; returns ``(spikes, membrane, b)``, each ``[T, N]``."""
    steps, lanes = current.shape
    dtype = current.dtype
    kind, params, inclusive = spike_code(surrogate)
    inputs = [arg(t, dtype) for t in (current, rate, retention, u0, s0, b_init)]
    spikes, membrane, trace = (torch.empty_like(inputs[0]) for _ in range(3))
    KERNEL.launch_items("ltc_fwd", dtype, lanes, *inputs, spikes, membrane, trace, b0, beta_a, kind, *params, inclusive, steps, lanes)
    return spikes, membrane, trace


def ltc_backward_cupy(
    grad_spikes: torch.Tensor,
    grad_membrane: torch.Tensor,
    grad_last: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    saved: tuple[torch.Tensor, ...],
    b0: float,
    beta_a: float,
    surrogate: Surrogate,
) -> tuple[torch.Tensor, ...]:
    """Gradients of ``(current, rate, retention, u0, s0, b_init)``."""
    current = saved[0]
    steps, lanes = current.shape
    dtype = current.dtype
    kind, params, _ = spike_code(surrogate)
    grads_in = [arg(g, dtype) for g in (grad_spikes, grad_membrane, *grad_last)]
    grads_seq = [torch.empty(steps, lanes, dtype=dtype, device=current.device) for _ in range(3)]
    grads_state = [torch.empty(lanes, dtype=dtype, device=current.device) for _ in range(3)]
    KERNEL.launch_items(
        "ltc_bwd", dtype, lanes,
        *grads_in, *(arg(t, dtype) for t in saved), *grads_seq, *grads_state, b0, beta_a, kind, *params, steps, lanes,
    )  # fmt: skip
    return tuple(g.to(t.dtype) for g, t in zip(grads_seq + grads_state, saved))
