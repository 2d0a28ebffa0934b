r"""TSSL-BP's neuron step and its hand-written backward, step by step (the specification).

The neuron (Zhang & Li, NeurIPS 2020, code ``stonezwr/TSSL-BP``, ``functions/tsslbp.py``) is an
SRM-style LIF whose output is its post-synaptic potential (PSP). With :math:`\theta_m = 1/\tau_m`,
:math:`\theta_s = 1/\tau_s` and the input current :math:`I_t`:

.. math::

    \Delta u_t &= I_t - \theta_m \hat u_{t-1}, \qquad u_t = \hat u_{t-1} + \Delta u_t \\
    o_t &= \Theta(u_t - V_{th}) \quad (u_t > V_{th}), \qquad \hat u_t = u_t (1 - o_t) \\
    a_t &= a_{t-1} + \theta_s (o_t - a_{t-1})

:math:`u_t` is the membrane before the hard reset, :math:`\hat u_t` after it. The backward pass
maps :math:`g_t = \partial L/\partial a_t` to :math:`\delta_t = \partial L/\partial I_t` with the
PSP kernel :math:`\varepsilon_k = (1-\theta_s)^k/\tau_s` and a reverse loop over :math:`t`:

.. math::

    \partial_u t &= \mathrm{clamp}(-1/\Delta u_t, -8, 0)\; o_t \\
    S_t &= \textstyle\sum_{k=0}^{T-1-t} \varepsilon_k\, g_{t+k} \\
    \delta_t &= -\partial_u t\, S_t + \vartheta_{t+1}\big(-\theta_m u_t\, \partial_u t + (1-\theta_m)(1-o_t)\big) \\
    \vartheta_t &= \delta_t\, o_t + \vartheta_{t+1} (1 - o_t)(1 - \theta_m), \qquad \vartheta_T = 0

(the inter-neuron term, then the intra-neuron term carried by :math:`\vartheta`), and where the
neuron is silent, :math:`a_t < 1/(4\tau_s)`, :math:`\delta_t` is replaced by
:math:`S_t\, f(u_t)` with :math:`f(u) = e^c/(0.2\,(1+e^c)^2)`,
:math:`c = \mathrm{clamp}((V_{th} - u)/0.2, -8, 8)`. :math:`\vartheta` is updated with the
:math:`\delta_t` *before* that replacement, as in the reference code.

The revisions of the reference code differ in one factor: the CUDA-only one multiplies
:math:`\partial_u t` by the spike :math:`o_t` (the timing gradient exists only where the neuron
fires), the one that also runs on the CPU leaves :math:`o_t` out, so that wherever the membrane
rose (:math:`\Delta u_t > 0`) and the neuron is not silent, :math:`-1/\Delta u_t` acts as a
surrogate slope even without a spike. ``dt_du_at_spikes`` picks between them (``True``, the first,
is the default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

#: the clamp of :math:`\partial t / \partial u` and the sigmoid width and clamp of the silent-neuron fallback
DT_DU_MIN = -8.0
FALLBACK_WIDTH = 0.2
FALLBACK_CLAMP = 8.0


class TSSLStepOut(NamedTuple):
    psp: torch.Tensor  #: :math:`a_t`
    spike: torch.Tensor  #: :math:`o_t`
    membrane: torch.Tensor  #: :math:`u_t`, before the reset
    delta_u: torch.Tensor  #: :math:`\Delta u_t`
    u: torch.Tensor  #: :math:`\hat u_t`, after the reset


def tssl_step(
    current: torch.Tensor,
    u: torch.Tensor,
    a: torch.Tensor,
    spike_fn: Callable[[torch.Tensor], torch.Tensor],
    v_threshold: float,
    tau_m: float,
    tau_s: float,
) -> TSSLStepOut:
    """One step from ``(û_{t-1}, a_{t-1})``; ``spike_fn(u_t - V_th)`` gives :math:`o_t` (pure, no in-place updates)."""
    delta_u = current - u / tau_m
    membrane = u + delta_u
    spike = spike_fn(membrane - v_threshold)
    psp = a + (spike - a) / tau_s
    return TSSLStepOut(psp, spike, membrane, delta_u, membrane * (1 - spike))


def heaviside(inclusive: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The spike function without a gradient: ``x > 0`` (the reference's rule) or ``x >= 0``."""
    if inclusive:
        return lambda x: (x >= 0).to(x.dtype)
    return lambda x: (x > 0).to(x.dtype)


def tssl_forward_reference(
    current: torch.Tensor,
    u0: torch.Tensor,
    a0: torch.Tensor,
    v_threshold: float,
    tau_m: float,
    tau_s: float,
    inclusive: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loop :func:`tssl_step` over ``current`` ``[T, ...]``.

    Returns:
        ``(psp, spikes, membrane, delta_u, u_last, a_last)``: the first four ``[T, ...]``.
    """
    u, a, fire = u0, a0, heaviside(inclusive)
    steps: list[TSSLStepOut] = []
    for i_t in current.unbind(0):
        out = tssl_step(i_t, u, a, fire, v_threshold, tau_m, tau_s)
        steps.append(out)
        u, a = out.u, out.psp
    psp, spikes, membrane, delta_u = (
        torch.stack([getattr(s, f) for s in steps]) for f in ("psp", "spike", "membrane", "delta_u")
    )
    return psp, spikes, membrane, delta_u, u, a


def psp_kernel(num_steps: int, tau_s: float, like: torch.Tensor) -> torch.Tensor:
    r""":math:`\varepsilon_k = (1 - 1/\tau_s)^k / \tau_s`, ``k = 0..T-1``, built as the reference builds it."""
    kernel = [1.0]
    for _ in range(num_steps - 1):
        kernel.append(kernel[-1] - kernel[-1] / tau_s)
    return torch.tensor(kernel, dtype=like.dtype, device=like.device) / tau_s


def fallback_slope(membrane: torch.Tensor, v_threshold: float) -> torch.Tensor:
    r"""The silent-neuron surrogate :math:`f(u) = e^c / (0.2 (1 + e^c)^2)`,
    :math:`c = \mathrm{clamp}((V_{th} - u)/0.2, -8, 8)`."""
    e = ((v_threshold - membrane) / FALLBACK_WIDTH).clamp_(-FALLBACK_CLAMP, FALLBACK_CLAMP).exp_()
    denominator = e + 1
    return e.div_(denominator.mul_(denominator).mul_(FALLBACK_WIDTH))  # e / ((1 + e)^2 w), in place


def tssl_backward_reference(
    grad_psp: torch.Tensor,
    spikes: torch.Tensor,
    membrane: torch.Tensor,
    delta_u: torch.Tensor,
    psp: torch.Tensor,
    v_threshold: float,
    tau_m: float,
    tau_s: float,
    dt_du_at_spikes: bool = True,
) -> torch.Tensor:
    """:math:`\\partial L/\\partial I` from :math:`\\partial L/\\partial a` ``[T, ...]``: the reference
    code's reverse loop, one step at a time (see the module docstring; ``dt_du_at_spikes``: keep
    the factor :math:`o_t` of :math:`\\partial_u t`)."""
    num_steps = grad_psp.shape[0]
    theta_m = 1 / tau_m
    silent = 1 / (4 * tau_s)
    kernel = psp_kernel(num_steps, tau_s, grad_psp)
    partial_a = kernel / (-tau_s)
    trailing = (1,) * (grad_psp.dim() - 1)
    grad = torch.zeros_like(grad_psp)
    theta = torch.zeros_like(grad_psp[0])
    for t in range(num_steps - 1, -1, -1):
        length = num_steps - t
        out = spikes[t]
        window = grad_psp[t:]
        partial_u = torch.clamp(-1 / delta_u[t], DT_DU_MIN, 0)
        if dt_du_at_spikes:
            partial_u = partial_u * out
        grad_t = torch.sum(partial_u * partial_a[:length].view(length, *trailing) * window * tau_s, dim=0)
        if t != num_steps - 1:
            grad_t = grad_t + theta * membrane[t] * (-1) * theta_m * partial_u
            grad_t = grad_t + theta * (1 - theta_m) * (1 - out)
        theta = grad_t * out + theta * (1 - out) * (1 - theta_m)
        grad_a = torch.sum(kernel[:length].view(length, *trailing) * window, dim=0) * fallback_slope(
            membrane[t], v_threshold
        )
        grad[t] = torch.where(psp[t] < silent, grad_a, grad_t)
    return grad
