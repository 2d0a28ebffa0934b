r"""Fused linear-membrane spiking op, walked over time in cache-sized blocks.

Forward, per block: the filter :math:`h_t = a h_{t-1} + c x_t` (the chunked scan), the
membrane :math:`m_t = \mathrm{Re}\,h_t - b_t` and the spikes; with a reset the threshold
bias :math:`b` is stepped through the block. Only ``x``, the membrane and the filter state
at each block start are kept for backward, which reruns the filter per block.

The threshold :math:`V_{th}` is per lane (``[N]``) or one number. Backward, with
:math:`e_t = \bar s_t f'(m_t - V_{th})`, :math:`d_t = \bar m_t + e_t` and the total filter gradient
:math:`G_t = d_t + \bar a\,G_{t+1}`:

.. math::

    \bar x_t = c\,\mathrm{Re}\,G_t, \quad \bar c = \sum_t \mathrm{Re}(G_t)\,x_t, \quad
    \bar a = \sum_t G_t \bar h_{t-1}, \quad \bar h_0 = \bar a\, G_0

and, where the threshold bias's own inputs need a gradient (spikes detached in it, :math:`\rho = 1`
without a reset), :math:`\beta_t = \rho\,\beta_{t+1} - d_t` from :math:`\beta_T = \bar b_T`:

.. math::

    \bar b_0 = \beta_0, \qquad \bar\rho = \sum_t \beta_{t+1}\,(b_t + V_{th} s_t), \quad
    b_t = \mathrm{Re}\,h_t - m_t

and, where the threshold needs a gradient (through the spikes' argument and the reset's step),
:math:`\bar V_{th} = \sum_t (\rho\,\beta_{t+1} s_t - e_t)`, the first term only with a reset. With the
delayed reset, :math:`b_{t+1} = \rho\,b_t + V_{th} s_t`, the recursion of :math:`\beta` is the same and the
step is not decayed: :math:`\bar\rho = \sum_t \beta_{t+1} b_t` and :math:`\bar V_{th} = \sum_t (\beta_{t+1} s_t
- e_t)`.
"""

from __future__ import annotations

import torch

from .._blocks import block_ranges
from ..scan.parallel import scan_2d


def _filter(x: torch.Tensor, decay: torch.Tensor, scale: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """The block's filter states from ``state``."""
    return scan_2d(decay, (x * scale).to(decay.dtype), state)


@torch.no_grad()
def linear_fire_forward(x, decay, scale, h0, bias0, spike_fn, threshold, reset_decay, delayed_reset=False):
    """``(spikes, membrane, checkpoints, h_last, bias_next)`` for ``x`` ``[T, N]`` and per-lane ``[N]`` parameters
    (the arguments of :func:`~snn_parallel.ops.linear_fire.linear_fire`, ``threshold`` its ``v_threshold``: ``[N]``
    or a number)."""
    spikes, membrane = torch.empty_like(x), torch.empty_like(x)
    ranges = block_ranges(*x.shape)
    checkpoints = torch.empty(len(ranges), x.shape[1], dtype=h0.dtype, device=x.device)
    state, bias = h0, bias0.clone()
    if reset_decay is not None and not isinstance(threshold, torch.Tensor):  # for addcmul_ in the step loop
        threshold = torch.full_like(bias, threshold, dtype=torch.promote_types(bias.dtype, torch.float32))
    for k, (start, stop) in enumerate(ranges):
        checkpoints[k] = state
        h = _filter(x[start:stop], decay, scale, state)
        real = h.real if h.is_complex() else h
        if reset_decay is None:  # a constant bias
            m = torch.sub(real, bias, out=membrane[start:stop])
            spikes[start:stop] = spike_fn.heaviside(m - threshold)
        else:  # the threshold bias depends on the spikes: step through the block
            for j in range(stop - start):
                m = torch.sub(real[j], bias, out=membrane[start + j])
                s = spikes[start + j]
                s.copy_(spike_fn.heaviside(m - threshold))
                if delayed_reset:
                    bias.mul_(reset_decay).addcmul_(s, threshold)
                else:
                    bias.addcmul_(s, threshold).mul_(reset_decay)
        state = h[-1]
    # bias_next as a copy of the tensor stepped in place: torch <= 2.11's AOT autograd lost its gradient otherwise
    return spikes, membrane, checkpoints, state.clone(), bias.clone()


@torch.no_grad()
def linear_fire_backward(
    grad_spikes, grad_membrane, grad_last, x, decay, scale, membrane, spikes, checkpoints, spike_fn, threshold,
    reset_decay, grad_bias_next, needs, delayed_reset=False,
):  # fmt: skip
    """Gradients of ``(x, decay, scale, h0, bias0, reset_decay, threshold)`` of :func:`linear_fire_forward` from
    those of its outputs; the last three only where ``needs`` (three bools) asks (``None`` otherwise), through the
    threshold bias and the spikes' argument (module doc)."""
    grad_x = torch.empty_like(x)
    grad_decay = torch.zeros_like(decay)
    grad_scale = torch.zeros_like(scale)
    back = decay.conj().resolve_conj()
    carry = grad_last.to(decay.dtype)
    reset = reset_decay is not None
    with_bias = needs[0] or (reset and (needs[1] or needs[2]))
    rho = torch.ones_like(scale) if reset_decay is None else reset_decay
    beta = torch.zeros_like(scale) if grad_bias_next is None else grad_bias_next.to(scale.dtype)  # dL/db_T
    grad_rho = torch.zeros_like(scale) if needs[1] and reset else None
    grad_threshold = torch.zeros_like(scale) if needs[2] else None
    for k, (start, stop) in reversed(list(enumerate(block_ranges(*x.shape)))):
        h = _filter(x[start:stop], decay, scale, checkpoints[k])
        m = membrane[start:stop]
        e = spike_fn.derivative(m - threshold).mul_(grad_spikes[start:stop])
        if grad_threshold is not None:
            grad_threshold -= e.sum(0)
        d_real = e.add_(grad_membrane[start:stop])
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
            following = torch.cat([betas[1:], beta.unsqueeze(0)])
            s = spikes[start:stop]
            if grad_rho is not None:  # sum_t beta_{t+1} (b_t + V s_t), b_t = Re h_t - m_t (delayed: without V s_t)
                re_h = h.real if h.is_complex() else h
                decayed = re_h - m if delayed_reset else re_h - m + threshold * s
                grad_rho += (following * decayed).sum(0)
            if grad_threshold is not None and reset:  # sum_t rho beta_{t+1} s_t (delayed: without rho)
                step = (following * s).sum(0)
                grad_threshold += step if delayed_reset else rho * step
            beta = betas[0]
    return grad_x, grad_decay, grad_scale, carry, beta if needs[0] else None, grad_rho, grad_threshold
