r"""The dynamic-threshold scan of the decoupled-reset LIF (PRF paper, official code).

The reset-free filter :math:`u'_t = \sum_{i \le t} \beta^{t-i} c_i` is computed by the
linear scan. The soft resets are then a threshold that rises by :math:`V_{th}` at every
spike and decays with :math:`\beta`:

.. math::

    d_t = V_{th} + b_t, \quad s_t = [u'_t \ge d_t], \quad b_{t+1} = \beta\,(b_t + V_{th} s_t)

so :math:`u'_t - b_t` equals the soft-reset LIF membrane and the spikes are identical. The
scan is elementwise and sequential but carries no autograd graph.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def threshold_scan(
    u: torch.Tensor, beta: torch.Tensor, v_threshold: float, bias0: torch.Tensor, *, inclusive: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Threshold bias :math:`b_t` for every step of the filtered membrane ``u`` ``[T, N]``.

    Args:
        u: reset-free membrane ``[T, N]``.
        beta: decay ``[N]``.
        v_threshold: firing threshold :math:`V_{th}`.
        bias0: bias entering the first step ``[N]``.
        inclusive: fire on ``u' >= d`` (``True``) or ``u' > d``.

    Returns:
        ``(bias, bias_next)``: the bias in effect at each step ``[T, N]`` and the bias
        entering the step after the last.
    """
    bias = torch.empty_like(u)
    spike = torch.empty_like(bias0)
    current = bias0.clone()
    compare = torch.ge if inclusive else torch.gt
    for t in range(u.shape[0]):
        bias[t] = current
        spike.copy_(compare(u[t] - current, v_threshold))
        current.add_(spike, alpha=v_threshold).mul_(beta)
    return bias, current
