r"""The LTC spiking neuron's elementwise step, and a step loop over it (the specification).

One step, given the input current :math:`I_t`, the membrane update rate :math:`m_t` and the
adaptation retention :math:`\rho_t` (both gates in :math:`(0, 1)`), and the carried state
:math:`(\hat u_{t-1}, s_{t-1}, b_{t-1})`:

.. math::

    b_t &= \rho_t\, b_{t-1} + (1 - \rho_t)\, s_{t-1} \\
    \theta_t &= b_0 + \beta_a\, b_t \\
    u_t &= (1 - m_t)\, \hat u_{t-1} + m_t\, I_t \\
    s_t &= \Theta(u_t - \theta_t) \\
    \hat u_t &= (1 - s_t)\, u_t

as in the reference code of Yin, Corradi and Bohté (``mem_update_adp``): the adaptation
uses the *previous* spike, the reset is hard (to 0) and not detached, :math:`b_0 = 0.1`,
:math:`\beta_a = 1.8`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ...surrogate import Surrogate


class LTCStepOut(NamedTuple):
    spike: torch.Tensor
    membrane: torch.Tensor  #: :math:`u_t` before the reset
    u: torch.Tensor  #: :math:`\hat u_t` after the reset
    b: torch.Tensor


def ltc_step(
    current: torch.Tensor,
    rate: torch.Tensor,
    retention: torch.Tensor,
    u: torch.Tensor,
    s: torch.Tensor,
    b: torch.Tensor,
    b0: float,
    beta_a: float,
    surrogate: Surrogate,
) -> LTCStepOut:
    """One LTC step (pure function of its inputs, no in-place updates)."""
    b = retention * b + (1 - retention) * s
    theta = b0 + beta_a * b
    membrane = (1 - rate) * u + rate * current
    spike = surrogate(membrane - theta)
    return LTCStepOut(spike, membrane, (1 - spike) * membrane, b)


def ltc_scan_reference(
    current: torch.Tensor,
    rate: torch.Tensor,
    retention: torch.Tensor,
    u0: torch.Tensor,
    s0: torch.Tensor,
    b_init: torch.Tensor,
    b0: float,
    beta_a: float,
    surrogate: Surrogate,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loop :func:`ltc_step` over ``[T, ...]`` inputs.

    Returns:
        ``(spikes, membrane, u_last, s_last, b_last)``.
    """
    u, s, b = u0, s0, b_init
    spikes, membrane = [], []
    for i_t, m_t, r_t in zip(current.unbind(0), rate.unbind(0), retention.unbind(0), strict=True):
        s, v, u, b = ltc_step(i_t, m_t, r_t, u, s, b, b0, beta_a, surrogate)
        spikes.append(s)
        membrane.append(v)
    return torch.stack(spikes), torch.stack(membrane), u, s, b
