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


def dsn_membrane_reference(
    x: torch.Tensor,
    history: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    tau: float,
    h0: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step loop over ``x`` ``[T, *S]``.

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
    taps = weight.unbind(0)
    window = list(history.unbind(0))
    h, states = h0, []
    for x_t in x.unbind(0):
        window = (window + [x_t])[-len(taps) :]  # the last k inputs, oldest first
        pre = bias + sum(w_j * v for w_j, v in zip(taps, window))
        alpha = torch.exp(logsigmoid(pre) / tau)
        h = alpha * h + (1 - alpha) * x_t
        states.append(h)
    return torch.stack(states), h
