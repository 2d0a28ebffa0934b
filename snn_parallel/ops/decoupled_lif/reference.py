"""Sequential soft-reset LIF with a detached reset: the specification of the decoupled op."""

from __future__ import annotations

import torch

from ...surrogate import Surrogate


def soft_reset_lif_reference(
    c: torch.Tensor,
    beta: torch.Tensor,
    v_threshold: float,
    surrogate: Surrogate,
    u0: torch.Tensor | None = None,
    s0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Soft-reset LIF, one step at a time:

    .. math::

        u_t = \beta\,(u_{t-1} - V_{th}\,\mathrm{sg}(s_{t-1})) + c_t, \qquad
        s_t = \Theta(u_t - V_{th})

    where :math:`\mathrm{sg}` stops the gradient (the reset is detached).

    Returns:
        ``(spikes, membrane, u_last, s_last)``; ``membrane`` is :math:`u_t` before reset.
    """
    u = torch.zeros_like(c[0]) if u0 is None else u0
    s = torch.zeros_like(c[0]) if s0 is None else s0
    spikes, membrane = [], []
    for c_t in c.unbind(0):
        u = beta * (u - v_threshold * s.detach()) + c_t
        s = surrogate(u - v_threshold)
        spikes.append(s)
        membrane.append(u)
    return torch.stack(spikes), torch.stack(membrane), u, s
