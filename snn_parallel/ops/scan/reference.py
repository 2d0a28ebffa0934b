"""Step-by-step reference of the gated linear recurrence: the specification the fast paths follow."""

from __future__ import annotations

import torch


def linear_scan_reference(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Compute :math:`h_t = a_t \odot h_{t-1} + b_t` one step at a time.

    Args:
        a: decays, ``[T, *S]`` (time-varying) or broadcastable to ``S`` (time-invariant).
        b: inputs ``[T, *S]``.
        h0: initial state ``[*S]`` (zeros if ``None``).

    Returns:
        ``(h, h_last)``: all states ``[T, *S]`` and the final state ``[*S]``.
    """
    h = torch.zeros_like(b[0]) if h0 is None else h0
    decays = a.unbind(0) if a.dim() == b.dim() else [a] * b.shape[0]
    states = []
    for a_t, b_t in zip(decays, b.unbind(0), strict=True):
        h = a_t * h + b_t
        states.append(h)
    return torch.stack(states), h
