r"""Step-by-step references of the linear-membrane spiking op.

:func:`linear_fire_reference` is the op itself, one :func:`linear_fire_step` at a time;
it is the spec for the fused op. :func:`soft_reset_lif_reference` is the ordinary sequential soft-reset LIF,
whose spikes the decoupled form reproduces exactly.
"""

from __future__ import annotations

import torch

from ...surrogate import Surrogate


def linear_fire_step(
    x_t: torch.Tensor,
    decay: torch.Tensor,
    scale: torch.Tensor,
    h: torch.Tensor,
    bias: torch.Tensor,
    spike_fn: Surrogate,
    v_threshold: float,
    reset_decay: torch.Tensor | None = None,
    *,
    delayed_reset: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step; returns ``(spike, membrane, h, bias_next)`` (equations in :func:`linear_fire_reference`)."""
    h = decay * h + scale * x_t
    membrane = (h.real if h.is_complex() else h) - bias
    spike = spike_fn(membrane - v_threshold)
    if reset_decay is not None:
        step = v_threshold * spike.detach()
        bias = reset_decay * bias + step if delayed_reset else reset_decay * (bias + step)
    return spike, membrane, h, bias


def linear_fire_reference(
    x: torch.Tensor,
    decay: torch.Tensor,
    scale: torch.Tensor,
    h0: torch.Tensor,
    bias0: torch.Tensor,
    spike_fn: Surrogate,
    v_threshold: float,
    reset_decay: torch.Tensor | None = None,
    *,
    delayed_reset: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""One step at a time:

    .. math::

        h_t = a \odot h_{t-1} + c \odot x_t, \quad m_t = \mathrm{Re}\,h_t - b_t, \quad
        s_t = f(m_t - V_{th}), \quad b_{t+1} = \rho\,(b_t + V_{th}\,\mathrm{sg}(s_t))

    or, with ``delayed_reset``, :math:`b_{t+1} = \rho\,b_t + V_{th}\,\mathrm{sg}(s_t)` (the spike's step not
    decayed: the reset lands one step later, undecayed, as in snnTorch's ``Leaky(reset_delay=True)``); :math:`b`
    is fixed at ``bias0`` when ``reset_decay`` (:math:`\rho`) is ``None``.

    Returns:
        ``(spikes, membrane, h_last, bias_next)``.
    """
    h, bias = h0, bias0
    spikes, membrane = [], []
    for x_t in x.unbind(0):
        s, m, h, bias = linear_fire_step(
            x_t, decay, scale, h, bias, spike_fn, v_threshold, reset_decay, delayed_reset=delayed_reset
        )
        spikes.append(s)
        membrane.append(m)
    return torch.stack(spikes), torch.stack(membrane), h, bias


def soft_reset_lif_reference(
    c: torch.Tensor,
    beta: torch.Tensor,
    v_threshold: float,
    surrogate: Surrogate,
    u0: torch.Tensor | None = None,
    s0: torch.Tensor | None = None,
    *,
    delayed_reset: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Soft-reset LIF, one step at a time:

    .. math::

        u_t = \beta\,(u_{t-1} - V_{th}\,\mathrm{sg}(s_{t-1})) + c_t, \qquad
        s_t = \Theta(u_t - V_{th})

    or, with ``delayed_reset``, :math:`u_t = \beta\,u_{t-1} + c_t - V_{th}\,\mathrm{sg}(s_{t-1})` (the reset
    subtracted one step later, undecayed: snnTorch's default ``Leaky``), where :math:`\mathrm{sg}` stops the
    gradient (the reset is detached).

    Returns:
        ``(spikes, membrane, u_last, s_last)``; ``membrane`` is :math:`u_t` before reset.
    """
    u = torch.zeros_like(c[0]) if u0 is None else u0
    s = torch.zeros_like(c[0]) if s0 is None else s0
    spikes, membrane = [], []
    for c_t in c.unbind(0):
        reset = v_threshold * s.detach()
        u = beta * u - reset + c_t if delayed_reset else beta * (u - reset) + c_t
        s = surrogate(u - v_threshold)
        spikes.append(s)
        membrane.append(u)
    return torch.stack(spikes), torch.stack(membrane), u, s
