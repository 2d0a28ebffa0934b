"""CuPy path of the linear-membrane spiking op: ``linear_fire.cu``, one thread per lane.

Same contracts as :func:`.fused.linear_fire_forward` / :func:`.fused.linear_fire_backward`; the
checkpoints are the filter states every :data:`CHECKPOINT_STEPS` steps.
Sequences stay in their storage dtype; per-lane values are passed in float32 (complex64) and the
results are returned in the dtypes the torch path gives.
"""

from __future__ import annotations

import torch

from ...surrogate import Surrogate
from .._cuda import KernelFile, arg, spike_code

#: steps per filter checkpoint of ``linear_fire.cu`` (its ``LF_CHUNK``)
CHECKPOINT_STEPS = 32
KERNEL = KernelFile(__package__, "linear_fire.cu", {"LF_CHUNK": CHECKPOINT_STEPS})


def _filter_dtype(decay: torch.Tensor) -> torch.dtype:
    return torch.complex64 if decay.is_complex() else torch.float32


def _kernel(direction: str, decay: torch.Tensor) -> str:
    return f"lf_{direction}_{'complex' if decay.is_complex() else 'real'}"


def linear_fire_forward_cupy(
    x: torch.Tensor,
    decay: torch.Tensor,
    scale: torch.Tensor,
    h0: torch.Tensor,
    bias0: torch.Tensor,
    spike_fn: Surrogate,
    v_threshold: float,
    reset_decay: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns ``(spikes, membrane, checkpoints, h_last, bias_next)`` for ``x`` ``[T, N]``."""
    steps, lanes = x.shape
    acc = _filter_dtype(decay)
    kind, params, inclusive = spike_code(spike_fn)
    x = x.contiguous()
    spikes, membrane = torch.empty_like(x), torch.empty_like(x)
    checkpoints = torch.empty(-(-steps // CHECKPOINT_STEPS), lanes, dtype=acc, device=x.device)
    h_last = torch.empty(lanes, dtype=acc, device=x.device)
    bias_next = torch.empty(lanes, dtype=torch.float32, device=x.device)
    rho = None if reset_decay is None else arg(reset_decay, torch.float32)
    KERNEL.launch_items(
        _kernel("fwd", decay), x.dtype, lanes,
        x, arg(decay, acc), arg(scale, torch.float32), arg(h0, acc), arg(bias0, torch.float32), rho,
        spikes, membrane, checkpoints, h_last, bias_next, v_threshold, kind, *params, inclusive, steps, lanes,
    )  # fmt: skip
    return spikes, membrane, checkpoints, h_last.to(decay.dtype), bias_next.to(bias0.dtype)


def linear_fire_backward_cupy(
    grad_spikes: torch.Tensor,
    grad_membrane: torch.Tensor,
    grad_last: torch.Tensor,
    x: torch.Tensor,
    decay: torch.Tensor,
    scale: torch.Tensor,
    membrane: torch.Tensor,
    checkpoints: torch.Tensor,
    spike_fn: Surrogate,
    v_threshold: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``(x, decay, scale, h0)``."""
    steps, lanes = x.shape
    acc = _filter_dtype(decay)
    kind, params, _ = spike_code(spike_fn)
    grad_x = torch.empty_like(x)
    grad_decay, grad_h0 = (torch.empty(lanes, dtype=acc, device=x.device) for _ in range(2))
    grad_scale = torch.empty(lanes, dtype=torch.float32, device=x.device)
    KERNEL.launch_items(
        _kernel("bwd", decay), x.dtype, lanes,
        arg(grad_spikes, x.dtype), arg(grad_membrane, x.dtype), arg(grad_last, acc), x, arg(decay, acc),
        arg(scale, torch.float32), membrane, checkpoints, grad_x, grad_decay, grad_scale, grad_h0,
        v_threshold, kind, *params, steps, lanes,
    )  # fmt: skip
    return grad_x, grad_decay.to(decay.dtype), grad_scale.to(scale.dtype), grad_h0.to(decay.dtype)
