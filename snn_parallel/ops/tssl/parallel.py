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

from .._blocks import block_ranges, step_constant
from ..scan.parallel import SEQUENTIAL_LANES, scan_2d
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
    per step, written into the ``[T, ...]`` outputs and scratch vectors in place (no per-step tensors
    to stack or free), over rows unbound once, with the constants as 0-dim tensors. The reset factor
    :math:`1 - o_t` is the complementary comparison, which equals it wherever :math:`u_t` is a number
    (and where it is NaN, so is :math:`u_t (1 - o_t)` either way)."""
    psp, spikes, membrane, delta_u = (torch.empty_like(current) for _ in range(4))
    scratch, keep, u_next = (torch.empty_like(u0) for _ in range(3))
    fire, stay = (torch.ge, torch.lt) if inclusive else (torch.gt, torch.le)
    tau_m, tau_s, v_threshold = (step_constant(value, current) for value in (tau_m, tau_s, v_threshold))
    u, a = u0, a0
    for current_t, psp_t, s_t, v, du in zip(
        *(x.unbind(0) for x in (current, psp, spikes, membrane, delta_u)), strict=True
    ):
        torch.sub(current_t, torch.div(u, tau_m, out=scratch), out=du)
        torch.add(u, du, out=v)
        fire(v, v_threshold, out=s_t)
        torch.add(a, torch.sub(s_t, a, out=scratch).div_(tau_s), out=psp_t)
        u, a = torch.mul(v, stay(v, v_threshold, out=keep), out=u_next), psp_t
    return psp, spikes, membrane, delta_u, u, psp[-1]  # a plain view: callers may modify it in place


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
    :func:`~.reference.tssl_backward_reference`.

    With many lanes the two reverse scans are plain step loops, so it walks time backwards in
    cache-sized blocks (:mod:`.._blocks`), each scan carried into the next block, which leaves every
    result bit as the whole-sequence passes give it; with few lanes the scans are chunked over the
    whole sequence, one block."""
    flat = (grad_psp.shape[0], -1)
    grad_a, spike, u, du, a = (t.reshape(flat) for t in (grad_psp, spikes, membrane, delta_u, psp))
    num_steps, lanes = grad_a.shape
    theta_m = 1 / tau_m
    zeros = grad_a.new_zeros(lanes)
    psp_decay = torch.full_like(zeros, 1 - 1 / tau_s)
    grad = torch.empty_like(u)
    inter_carry, theta_carry = zeros, zeros  # S and vartheta entering from the later block
    blocks = block_ranges(num_steps, lanes) if lanes >= SEQUENTIAL_LANES else [(0, num_steps)]
    for start, stop in reversed(blocks):
        block = slice(start, stop)
        spike_b, u_b = spike[block], u[block]
        inter_sum = scan_2d(psp_decay, (grad_a[block] / tau_s).contiguous(), inter_carry, reverse=True)
        # in-place steps into buffers that are fresh or no longer needed: on the CPU a new full-size buffer
        # costs about as much as a pass over it
        slope = torch.reciprocal(du[block]).clamp_(0, -DT_DU_MIN)  # -dt/du
        if dt_du_at_spikes:
            slope.mul_(spike_b)
        inter = torch.mul(slope, inter_sum, out=grad[block])  # A_t
        leak = spike_b * (theta_m - 1) + (1 - theta_m)  # (1 - theta_m)(1 - o_t)
        carried = torch.addcmul(leak, u_b, slope, value=theta_m)  # c_t
        if dt_du_at_spikes:
            decay, source = carried, inter
        else:  # vartheta only takes delta_t where o_t = 1
            decay, source = leak.addcmul_(u_b, slope * spike_b, value=theta_m), inter * spike_b
        theta = scan_2d(decay.contiguous(), source.contiguous(), theta_carry, reverse=True)
        inter[:-1].addcmul_(carried[:-1], theta[1:])  # now delta_t
        if stop < num_steps:  # the block's last step takes the later block's first vartheta
            inter[-1].addcmul_(carried[-1], theta_carry)
        inter_carry, theta_carry = inter_sum[0], theta[0]
        fallback = fallback_slope(u_b, v_threshold).mul_(inter_sum)
        torch.where(a[block] < 1 / (4 * tau_s), fallback, inter, out=inter)
    return grad.reshape(grad_psp.shape)
