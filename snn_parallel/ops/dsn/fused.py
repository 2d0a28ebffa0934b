r"""Fused DSN membrane: convolution, decay and scan walked over time in cache-sized blocks.

Eager torch spends one pass over device memory per elementwise op; DSN's gate and spike
function are a dozen or more. Here each block of ``L`` steps (``L·N`` elements, sized to
stay in cache) is taken through the gate, the scan and the spike function before the next,
and the backward pass recomputes the gate per block instead of storing it: only ``x`` and
``H`` are saved.

Spikes are :math:`S_t = f(H_t - V)` for a spike function :math:`f` with surrogate
derivative :math:`f'`. Backward, per block in reverse, with :math:`G_t` the total gradient
of :math:`H_t`:

.. math::

    G_t &= \bar H_t + \bar S_t f'(H_t - V) + \alpha_{t+1} G_{t+1} \\
    \bar X_t &\mathrel{+}= G_t (1 - \alpha_t), \qquad
    \overline{\log\alpha}_t = G_t (H_{t-1} - X_t)\,\alpha_t \\
    \bar p_t &= \overline{\log\alpha}_t\, \sigma(-p_t) / \tau, \qquad
    \bar w_j \mathrel{+}= \textstyle\sum_t \bar p_t X_{t-k+1+j}, \qquad
    \bar X_{t-k+1+j} \mathrel{+}= w_j \bar p_t

and, where the shift :math:`V` (per lane, or one number) needs one, :math:`\bar V = -\sum_t \bar S_t f'(H_t - V)`.
"""

from __future__ import annotations

import torch
from torch.nn.functional import logsigmoid

from .._blocks import block_ranges
from ..scan.parallel import scan_2d


def _window(x: torch.Tensor, history: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Inputs ``X_{start-k+1} .. X_{stop-1}`` (``[stop - start + k - 1, N]``), from ``history`` where before 0."""
    lead = history.shape[0]
    if start >= lead:
        return x[start - lead : stop]
    return torch.cat([history[start:], x[:stop]])


def _gate(window: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, tau: float):
    """Pre-activation ``p`` and ``log alpha`` of a block."""
    steps = window.shape[0] - weight.shape[0] + 1
    pre = torch.mul(window[:steps], weight[0]).add_(bias)
    for j in range(1, weight.shape[0]):
        pre.addcmul_(window[j : j + steps], weight[j])
    return pre, logsigmoid(pre).div_(tau)


def dsn_forward(x, history, weight, bias, tau, h0, spike_fn, shift):
    """Spikes and membrane ``H`` ``[T, N]`` for ``x`` ``[T, N]``, ``weight`` ``[k, N]``, ``bias`` ``[N]`` and ``shift``
    ``[N]`` or a number (the arguments of :func:`~snn_parallel.ops.dsn.dsn_membrane`, per lane)."""
    h = torch.empty_like(x)
    spikes = torch.empty_like(x)
    state = h0
    for start, stop in block_ranges(*x.shape):
        _, log_a = _gate(_window(x, history, start, stop), weight, bias, tau)
        drive = torch.expm1(log_a).neg_().mul_(x[start:stop])
        block = scan_2d(log_a.exp(), drive, state, log_a=log_a, out=h[start:stop])
        spikes[start:stop] = spike_fn.heaviside(block - shift)
        state = h[stop - 1]
    return spikes, h


def dsn_backward(grad_spikes, grad_h, grad_last, x, history, weight, bias, tau, h0, h, spike_fn, shift, needs_shift):
    """Gradients of ``(x, history, weight, bias, h0, shift)`` of :func:`dsn_forward` from those of its spikes, its
    membrane ``h`` and the last membrane (the shift's ``None`` unless ``needs_shift``)."""
    lead = history.shape[0]
    grad_x = torch.empty_like(x)
    grad_weight = torch.zeros_like(weight)
    grad_bias = torch.zeros_like(bias)
    grad_shift = torch.zeros_like(bias) if needs_shift else None
    carry = grad_last  # dL/dH_{stop-1} arriving from the block after
    # dL/dX for the `lead` steps before the block after; the conv reaches that far back
    spill = torch.zeros_like(history)
    for start, stop in reversed(block_ranges(*x.shape)):
        steps = stop - start
        window = _window(x, history, start, stop)
        pre, log_a = _gate(window, weight, bias, tau)
        alpha = log_a.exp()
        d = spike_fn.derivative(h[start:stop] - shift).mul_(grad_spikes[start:stop])
        if grad_shift is not None:
            grad_shift -= d.sum(0)
        d.add_(grad_h[start:stop])
        d[-1] += carry
        g = torch.empty_like(d)
        g[-1] = d[-1]
        if steps > 1:
            scan_2d(alpha[1:], d[:-1], d[-1], log_a=log_a[1:], reverse=True, out=g[:-1])
        carry = alpha[0] * g[0]
        h_prev = torch.cat([(h0 if start == 0 else h[start - 1]).unsqueeze(0), h[start : stop - 1]])
        # gradient of this block's window, rows X_{start-lead} .. X_{stop-1}
        grad_window = torch.zeros_like(window)
        grad_window[steps:] += spill
        grad_window[lead:].addcmul_(g, torch.expm1(log_a).neg_())  # direct input path: (1 - alpha) X
        grad_pre = h_prev.sub_(x[start:stop]).mul_(g).mul_(alpha).mul_(torch.sigmoid(pre.neg_())).div_(tau)
        grad_bias += grad_pre.sum(0)
        for j in range(weight.shape[0]):
            grad_weight[j] += (grad_pre * window[j : j + steps]).sum(0)
            grad_window[j : j + steps].addcmul_(grad_pre, weight[j])
        grad_x[start:stop] = grad_window[lead:]  # no earlier block reaches these steps
        spill = grad_window[:lead]
    return grad_x, spill, grad_weight, grad_bias, carry, grad_shift
