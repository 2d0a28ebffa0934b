r"""Fused linear-membrane spiking op, walked over time in cache-sized blocks.

Forward, per block: the filter :math:`h_t = a h_{t-1} + c x_t` (the chunked scan), the
membrane :math:`m_t = \mathrm{Re}\,h_t - b_t` and the spikes; with a reset the threshold
bias :math:`b` is stepped through the block. Only ``x``, the membrane and the filter state
at each block start are kept for backward, which reruns the filter per block.

Backward, with :math:`d_t = \bar m_t + \bar s_t f'(m_t - V_{th})` and the total filter gradient
:math:`G_t = d_t + \bar a\,G_{t+1}`:

.. math::

    \bar x_t = c\,\mathrm{Re}\,G_t, \quad \bar c = \sum_t \mathrm{Re}(G_t)\,x_t, \quad
    \bar a = \sum_t G_t \bar h_{t-1}, \quad \bar h_0 = \bar a\, G_0

and, where the threshold bias's own inputs need a gradient (spikes detached in it, :math:`\rho = 1`
without a reset), :math:`\beta_t = \rho\,\beta_{t+1} - d_t` from :math:`\beta_T = \bar b_T`:

.. math::

    \bar b_0 = \beta_0, \qquad \bar\rho = \sum_t \beta_{t+1}\,(b_t + V_{th} s_t), \quad
    b_t = \mathrm{Re}\,h_t - m_t
"""

from __future__ import annotations

import torch

from .._blocks import block_ranges
from ..scan.parallel import scan_2d


def _filter(x: torch.Tensor, decay: torch.Tensor, scale: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """The block's filter states from ``state``."""
    return scan_2d(decay, (x * scale).to(decay.dtype), state)


@torch.no_grad()
def linear_fire_forward(x, decay, scale, h0, bias0, spike_fn, v_threshold, reset_decay):
    """``(spikes, membrane, checkpoints, h_last, bias_next)`` for ``x`` ``[T, N]`` and per-lane ``[N]`` parameters
    (the arguments of :func:`~snn_parallel.ops.linear_fire.linear_fire`)."""
    spikes, membrane = torch.empty_like(x), torch.empty_like(x)
    ranges = block_ranges(*x.shape)
    checkpoints = torch.empty(len(ranges), x.shape[1], dtype=h0.dtype, device=x.device)
    state, bias = h0, bias0.clone()
    for k, (start, stop) in enumerate(ranges):
        checkpoints[k] = state
        h = _filter(x[start:stop], decay, scale, state)
        real = h.real if h.is_complex() else h
        if reset_decay is None:  # a constant bias
            m = torch.sub(real, bias, out=membrane[start:stop])
            spikes[start:stop] = spike_fn.heaviside(m - v_threshold)
        else:  # the threshold bias depends on the spikes: step through the block
            for j in range(stop - start):
                m = torch.sub(real[j], bias, out=membrane[start + j])
                s = spikes[start + j]
                s.copy_(spike_fn.heaviside(m - v_threshold))
                bias.add_(s, alpha=v_threshold).mul_(reset_decay)
        state = h[-1]
    return spikes, membrane, checkpoints, state.clone(), bias


@torch.no_grad()
def linear_fire_backward(
    grad_spikes, grad_membrane, grad_last, x, decay, scale, membrane, checkpoints, spike_fn, v_threshold, reset_decay,
    grad_bias_next, needs_bias,
):  # fmt: skip
    """Gradients of ``(x, decay, scale, h0, bias0, reset_decay)`` of :func:`linear_fire_forward` from those of its
    outputs; those of ``bias0`` and ``reset_decay`` only where ``needs_bias`` (two bools) asks (``None`` otherwise),
    through the threshold bias (module doc)."""
    grad_x = torch.empty_like(x)
    grad_decay = torch.zeros_like(decay)
    grad_scale = torch.zeros_like(scale)
    back = decay.conj().resolve_conj()
    carry = grad_last.to(decay.dtype)
    with_bias = needs_bias[0] or (needs_bias[1] and reset_decay is not None)
    rho = torch.ones_like(scale) if reset_decay is None else reset_decay
    beta = torch.zeros_like(scale) if grad_bias_next is None else grad_bias_next.to(scale.dtype)  # dL/db_T
    grad_rho = torch.zeros_like(scale) if needs_bias[1] and reset_decay is not None else None
    for k, (start, stop) in reversed(list(enumerate(block_ranges(*x.shape)))):
        h = _filter(x[start:stop], decay, scale, checkpoints[k])
        m = membrane[start:stop]
        d_real = spike_fn.derivative(m - v_threshold).mul_(grad_spikes[start:stop]).add_(grad_membrane[start:stop])
        d = d_real.to(decay.dtype, copy=True)
        d[-1] += carry
        g = torch.empty_like(d)
        g[-1] = d[-1]
        if stop - start > 1:
            scan_2d(back, d[:-1], d[-1], reverse=True, out=g[:-1])
        carry = back * g[0]
        real = g.real if g.is_complex() else g
        torch.mul(real, scale, out=grad_x[start:stop])
        grad_scale += (real * x[start:stop]).sum(0)
        h_prev = torch.cat([checkpoints[k].unsqueeze(0), h[:-1]])
        grad_decay += (g * h_prev.conj()).sum(0)
        if with_bias:  # beta_t = rho beta_{t+1} - d_t
            betas = scan_2d(rho, d_real.neg_(), beta, reverse=True)
            if grad_rho is not None:  # sum_t beta_{t+1} (b_t + V s_t), b_t = Re h_t - m_t
                following = torch.cat([betas[1:], beta.unsqueeze(0)])
                re_h = h.real if h.is_complex() else h
                grad_rho += (following * (re_h - m + v_threshold * spike_fn.heaviside(m - v_threshold))).sum(0)
            beta = betas[0]
    return grad_x, grad_decay, grad_scale, carry, beta if needs_bias[0] else None, grad_rho
