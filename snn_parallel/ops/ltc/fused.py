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
from .._blocks import block_ranges, step_constant


def _fire(surrogate, membrane, threshold, out):
    """:math:`\\Theta(v - \\theta)` into ``out``, as ``surrogate.heaviside(v - threshold)``. For the plain step
    it is one comparison, as :math:`v - \\theta > 0 \\iff v > \\theta` (and with ``>=``) in IEEE arithmetic with
    subnormals; the two differ only at :math:`v = \\theta = \\pm\\infty` with the inclusive rule."""
    if type(surrogate).heaviside is Surrogate.heaviside:
        (torch.ge if surrogate.inclusive else torch.gt)(membrane, threshold, out=out)
    else:
        out.copy_(surrogate.heaviside(membrane - threshold))


@torch.no_grad()
def ltc_forward(current, rate, retention, u0, s0, b_init, b0, beta_a, surrogate):
    """Forward loop over ``[T, N]`` inputs (the arguments of :func:`~snn_parallel.ops.ltc.ltc_scan`); returns
    ``(spikes, membrane, b)``, each ``[T, N]``.

    Every step writes into preallocated rows and scratch vectors (no per-step allocation) and
    walks rows unbound once (no per-step indexing).
    """
    spikes = torch.empty_like(current)
    membrane = torch.empty_like(current)
    trace = torch.empty_like(current)
    diff, threshold, u_next = (torch.empty_like(u0) for _ in range(3))
    beta_a, b0 = step_constant(beta_a, current), step_constant(b0, current)
    u, s, b = u0, s0, b_init
    rows = zip(*(x.unbind(0) for x in (current, rate, retention, spikes, membrane, trace)), strict=True)
    for current_t, rate_t, retention_t, s_t, v, b_t in rows:
        b = torch.addcmul(s, retention_t, torch.sub(b, s, out=diff), out=b_t)
        torch.addcmul(u, rate_t, torch.sub(current_t, u, out=diff), out=v)
        _fire(surrogate, v, torch.mul(b, beta_a, out=threshold).add_(b0), s_t)
        s = s_t
        u = torch.addcmul(v, v, s, value=-1, out=u_next)  # (1 - s) v, exact for s in {0, 1}
    return spikes, membrane, trace


@torch.no_grad()
def ltc_backward(grad_spikes, grad_membrane, grad_last, saved, b0, beta_a, surrogate):
    """Reverse loop; returns gradients of ``(current, rate, retention, u0, s0, b_init)`` from those of the spikes,
    the membrane and ``grad_last``, the final state's ``(u, s, b)``; ``saved`` is ``(current, rate, retention, u0,
    s0, b_init, spikes, membrane, b)``.

    Walks time backwards in cache-sized blocks; per block it prepares the step-independent
    factors (surrogate derivative, previous-step state) before the sequential part.
    """
    current, rate, retention, u0, s0, b_init, spikes, membrane, trace = saved
    grad_current, grad_rate, grad_retention = (torch.empty_like(current) for _ in range(3))
    carry_u, carry_s, carry_b = grad_last
    for start, stop in reversed(block_ranges(*current.shape)):
        block = slice(start, stop)
        # previous-step tensors, t - 1, with the initial state before t = 0
        if start == 0:
            s_prev = torch.cat([s0.unsqueeze(0), spikes[: stop - 1]])
            u_prev = torch.cat([u0.unsqueeze(0), membrane[: stop - 1] * (1 - spikes[: stop - 1])])
            b_prev = torch.cat([b_init.unsqueeze(0), trace[: stop - 1]])
        else:
            s_prev, b_prev = spikes[start - 1 : stop - 1], trace[start - 1 : stop - 1]
            u_prev = membrane[start - 1 : stop - 1] * (1 - s_prev)
        m = membrane[block]
        sg = surrogate.derivative(m - (b0 + beta_a * trace[block]))
        keep, leak, hold = 1 - spikes[block], 1 - rate[block], retention[block]
        grad_u, grad_b = grad_rate[block], grad_retention[block]  # scratch rows, overwritten below
        for j in range(stop - start - 1, -1, -1):
            gv = torch.addcmul(grad_spikes[start + j], carry_u, m[j], value=-1).add_(carry_s).mul_(sg[j])
            gu = torch.addcmul(grad_membrane[start + j], carry_u, keep[j], out=grad_u[j]).add_(gv)
            gb = torch.sub(carry_b, gv, alpha=beta_a, out=grad_b[j])
            carry_u = gu * leak[j]
            carry_b = gb * hold[j]
            carry_s = gb - carry_b  # gb * (1 - retention)
        torch.mul(grad_u, rate[block], out=grad_current[block])
        grad_u.mul_(current[block] - u_prev)  # now the rate gradient, in place
        grad_b.mul_(b_prev - s_prev)  # now the retention gradient, in place
    return grad_current, grad_rate, grad_retention, carry_u, carry_s, carry_b
