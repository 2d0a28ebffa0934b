r"""TSSL-BP's backward for all neurons and steps at once (no loop over neurons or steps).

The reference's reverse loop (:func:`~.reference.tssl_backward_reference`) is rewritten as

- the inter-neuron sums :math:`S_t = \sum_k \varepsilon_k g_{t+k}` for every ``t``: as the PSP
  kernel is geometric, :math:`\varepsilon_k = (1 - 1/\tau_s)^k/\tau_s`, they obey
  :math:`S_t = g_t/\tau_s + (1 - 1/\tau_s) S_{t+1}`, a reverse scan (:math:`O(T)` per neuron
  where the reference's double loop is :math:`O(T^2)`);
- the carried intra-neuron term, a linear recurrence run backwards in time,
  :math:`\vartheta_t = d_t \vartheta_{t+1} + o_t A_t` with :math:`A_t = -\partial_u t\, S_t`,
  :math:`d_t = o_t c_t + (1 - o_t)(1 - \theta_m)` and
  :math:`c_t = -\theta_m u_t\, \partial_u t + (1 - \theta_m)(1 - o_t)`, solved by the shared
  reverse scan;
- :math:`\delta_t = A_t + c_t \vartheta_{t+1}`, replaced by :math:`S_t f(u_t)` where
  :math:`a_t < 1/(4\tau_s)`.

The recurrence is the reference's update :math:`\vartheta_t = \delta_t o_t + \vartheta_{t+1}(1-o_t)(1-\theta_m)`
with :math:`\delta_t = A_t + c_t \vartheta_{t+1}` expanded. With ``dt_du_at_spikes``
(:math:`\partial_u t` carries the factor :math:`o_t`, which is 0 or 1), :math:`A_t` and
:math:`\theta_m u_t \partial_u t` vanish where :math:`o_t = 0`, so :math:`d_t = c_t` and
:math:`o_t A_t = A_t`.
"""

from __future__ import annotations

import torch

from ..scan.parallel import scan_2d
from .reference import DT_DU_MIN, fallback_slope


def tssl_forward(
    current: torch.Tensor,
    u0: torch.Tensor,
    a0: torch.Tensor,
    v_threshold: float,
    tau_m: float,
    tau_s: float,
    inclusive: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`~.reference.tssl_forward_reference` without autograd, bit for bit: the same operations
    per step, written into the ``[T, ...]`` outputs in place (no per-step tensors to stack)."""
    psp, spikes, membrane, delta_u = (torch.empty_like(current) for _ in range(4))
    fire = torch.ge if inclusive else torch.gt
    u, a = u0, a0
    for t in range(current.shape[0]):
        torch.sub(current[t], u / tau_m, out=delta_u[t])
        torch.add(u, delta_u[t], out=membrane[t])
        spikes[t] = fire(membrane[t], v_threshold)
        torch.add(a, (spikes[t] - a) / tau_s, out=psp[t])
        u, a = membrane[t] * (1 - spikes[t]), psp[t]
    return psp, spikes, membrane, delta_u, u, a


def tssl_backward(
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
    """:math:`\\partial L/\\partial I` from :math:`\\partial L/\\partial a`, all ``[T, ...]``; equals
    :func:`~.reference.tssl_backward_reference`."""
    flat = (grad_psp.shape[0], -1)
    grad_a, spike, u, du, a = (t.reshape(flat) for t in (grad_psp, spikes, membrane, delta_u, psp))
    theta_m = 1 / tau_m
    zeros = grad_a.new_zeros(grad_a.shape[1])
    inter_sum = scan_2d(torch.full_like(zeros, 1 - 1 / tau_s), (grad_a / tau_s).contiguous(), zeros, reverse=True)
    # in-place steps into buffers that are fresh or no longer needed: on the CPU a new full-size buffer costs
    # about as much as a pass over it
    slope = torch.reciprocal(du).clamp_(0, -DT_DU_MIN)  # -dt/du
    if dt_du_at_spikes:
        slope.mul_(spike)
    inter = slope * inter_sum  # A_t
    leak = spike * (theta_m - 1) + (1 - theta_m)  # (1 - theta_m)(1 - o_t)
    carried = torch.addcmul(leak, u, slope, value=theta_m)  # c_t
    if dt_du_at_spikes:
        decay, source = carried, inter
    else:  # vartheta only takes delta_t where o_t = 1
        decay, source = leak.addcmul_(u, slope * spike, value=theta_m), inter * spike
    theta = scan_2d(decay.contiguous(), source.contiguous(), zeros, reverse=True)
    grad = inter
    grad[:-1].addcmul_(carried[:-1], theta[1:])
    fallback = fallback_slope(u, v_threshold).mul_(inter_sum)
    return torch.where(a < 1 / (4 * tau_s), fallback, grad, out=grad).reshape(grad_psp.shape)
