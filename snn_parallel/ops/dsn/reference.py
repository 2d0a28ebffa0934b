r"""DSN membrane, one step at a time: the specification of the fused op.

Per lane (one batch element, channel and spatial position), with the ``k`` taps :math:`w`
and bias of its channel, and the window of the last ``k`` inputs:

.. math::

    \log\alpha_t = \tfrac{1}{\tau}\log\sigma\Big(\mathrm{bias} + \sum_{j<k} w_j X_{t-k+1+j}\Big),
    \qquad H_t = \alpha_t H_{t-1} + (1 - \alpha_t) X_t
"""

from __future__ import annotations

import torch
from torch.nn.functional import logsigmoid


def dsn_step(
    window: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, tau: float, h: torch.Tensor
) -> torch.Tensor:
    """One step: the membrane after ``window[-1]``.

    Args:
        window: the last ``k`` inputs, oldest first, ``[k, *S]``.
        weight: taps ``[k, *S']`` with ``S'`` broadcastable to ``S``.
        bias: ``[*S']``.
        tau: decay exponent.
        h: the membrane before this step ``[*S]``.
    """
    # the taps lined up with the window's trailing dims and summed over dim 0 (a Python sum over unbound taps
    # got a wrong weight gradient from torch.compile's default backend in step loops)
    taps = weight.reshape(weight.shape[0], *([1] * (window.dim() - weight.dim())), *weight.shape[1:])
    pre = bias + (taps * window).sum(0)
    log_a = logsigmoid(pre) / tau
    return torch.addcmul(-torch.expm1(log_a) * window[-1], log_a.exp(), h)  # alpha h + (1 - alpha) x


def dsn_membrane_reference(
    x: torch.Tensor,
    history: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    tau: float,
    h0: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step loop of :func:`dsn_step` over ``x`` ``[T, *S]``.

    Args:
        x: inputs ``[T, *S]``.
        history: the ``k - 1`` inputs before ``x``, ``[k - 1, *S]``.
        weight: taps ``[k, *S']`` broadcastable to ``S`` (oldest input first).
        bias: ``[*S']`` broadcastable to ``S``.
        tau: decay exponent.
        h0: membrane before the first step ``[*S]``.

    Returns:
        ``(h, h_last)``.
    """
    h, states = h0, []
    for x_t in x.unbind(0):
        window = torch.cat([history, x_t.unsqueeze(0)])  # the last k inputs
        h = dsn_step(window, weight, bias, tau, h)
        history = window[1:]
        states.append(h)
    return torch.stack(states), h
