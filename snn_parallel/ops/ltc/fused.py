"""Fused multi-step LTC recurrence: a graph-free forward loop and a hand-derived reverse loop.

With :math:`v_t = u_t - \\theta_t`, :math:`g_t = \\sigma'(v_t)` (the surrogate derivative),
and carried gradients :math:`(G^u, G^s, G^b)` of :math:`(\\hat u_t, s_t, b_t)`, the reverse
step is

.. math::

    \\bar s &= G^s + \\partial_s L_t - G^u u_t, \\quad \\bar v = \\bar s\\, g_t \\\\
    \\bar u &= \\partial_u L_t + G^u (1 - s_t) + \\bar v, \\quad \\bar b = G^b - \\beta_a \\bar v \\\\
    G^u &\\leftarrow \\bar u (1 - m_t), \\quad G^b \\leftarrow \\bar b \\rho_t, \\quad
    G^s \\leftarrow \\bar b (1 - \\rho_t)

and the input gradients are :math:`\\bar I_t = \\bar u\\, m_t`,
:math:`\\bar m_t = \\bar u (I_t - \\hat u_{t-1})`, :math:`\\bar\\rho_t = \\bar b (b_{t-1} - s_{t-1})`.
"""

from __future__ import annotations

import torch

from ...surrogate import Surrogate


@torch.no_grad()
def ltc_forward(
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
    """Forward loop over ``[T, N]`` inputs; returns ``(spikes, membrane, b)``, each ``[T, N]``."""
    spikes = torch.empty_like(current)
    membrane = torch.empty_like(current)
    trace = torch.empty_like(current)
    u, s, b = u0, s0, b_init
    for t in range(current.shape[0]):
        b = torch.addcmul(s, retention[t], b - s, out=trace[t])
        v = torch.addcmul(u, rate[t], current[t] - u, out=membrane[t])
        s = spikes[t]
        s.copy_(surrogate.heaviside(v - (b0 + beta_a * b)))
        u = v * (1 - s)
    return spikes, membrane, trace


@torch.no_grad()
def ltc_backward(
    grad_spikes: torch.Tensor,
    grad_membrane: torch.Tensor,
    grad_last: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    saved: tuple[torch.Tensor, ...],
    b0: float,
    beta_a: float,
    surrogate: Surrogate,
) -> tuple[torch.Tensor, ...]:
    """Reverse loop; returns gradients of ``(current, rate, retention, u0, s0, b_init)``."""
    current, rate, retention, u0, s0, b_init, spikes, membrane, trace = saved
    # previous-step tensors, t - 1, with the initial state at t = 0
    s_prev = torch.cat([s0.unsqueeze(0), spikes[:-1]])
    u_prev = torch.cat([u0.unsqueeze(0), membrane[:-1] * (1 - spikes[:-1])])
    b_prev = torch.cat([b_init.unsqueeze(0), trace[:-1]])
    sg = surrogate.derivative(membrane - (b0 + beta_a * trace))
    keep, leak = 1 - spikes, 1 - rate

    grad_u = torch.empty_like(current)
    grad_b = torch.empty_like(current)
    carry_u, carry_s, carry_b = grad_last
    for t in range(current.shape[0] - 1, -1, -1):
        gv = (carry_s + grad_spikes[t] - carry_u * membrane[t]) * sg[t]
        gu = grad_membrane[t] + carry_u * keep[t] + gv
        gb = torch.sub(carry_b, gv, alpha=beta_a, out=grad_b[t])
        grad_u[t] = gu
        carry_u = gu * leak[t]
        carry_b = gb * retention[t]
        carry_s = gb - carry_b  # gb * (1 - retention)
    return (
        grad_u * rate,
        grad_u * (current - u_prev),
        grad_b * (b_prev - s_prev),
        carry_u,
        carry_s,
        carry_b,
    )
