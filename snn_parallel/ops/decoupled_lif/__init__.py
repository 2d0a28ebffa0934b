r"""Decoupled-reset LIF (PRF paper): a soft-reset LIF trained through a parallel filter.

Forward spikes equal the sequential soft-reset LIF's (:func:`soft_reset_lif_reference`);
gradients flow through the reset-free filter only, which is BPTT with a detached reset.
"""

from __future__ import annotations

import torch

from ...surrogate import Surrogate
from ..scan import linear_scan
from .parallel import threshold_scan
from .reference import soft_reset_lif_reference

__all__ = ["decoupled_lif", "threshold_scan", "soft_reset_lif_reference"]


def decoupled_lif(
    c: torch.Tensor,
    beta: torch.Tensor,
    v_threshold: float,
    surrogate: Surrogate,
    u0: torch.Tensor | None = None,
    bias0: torch.Tensor | None = None,
    *,
    chunk: int | None = None,
    backend: str = "auto",
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Run a soft-reset LIF over a whole sequence in parallel.

    .. math::

        u'_t = \beta u'_{t-1} + c_t, \quad s_t = \Theta(u'_t - V_{th} - b_t), \quad
        b_{t+1} = \beta (b_t + V_{th} s_t)

    Args:
        c: input current ``[T, B, C, *spatial]``.
        beta: per-channel decay broadcastable to ``c.shape[1:]`` (e.g. ``[C]``).
        v_threshold: firing threshold.
        surrogate: spike function (its firing rule is used for the threshold too).
        u0, bias0: carried filter state and threshold bias ``[B, C, *spatial]``.
        chunk, backend, validate: passed to :func:`~snn_parallel.ops.linear_scan`.

    Returns:
        ``(spikes, membrane, u_last, bias_next)`` where ``membrane`` is :math:`u'_t - b_t`,
        the soft-reset LIF potential before its reset.
    """
    filtered, u_last = linear_scan(beta, c, u0, chunk=chunk, backend=backend, validate=validate)
    num_steps = c.shape[0]
    beta_flat = beta.detach().to(filtered.dtype).expand(c.shape[1:]).reshape(-1)
    start = torch.zeros_like(filtered[0]).reshape(-1) if bias0 is None else bias0.detach().reshape(-1).to(filtered.dtype)
    bias, bias_next = threshold_scan(
        filtered.detach().reshape(num_steps, -1), beta_flat, v_threshold, start, inclusive=surrogate.inclusive
    )
    membrane = filtered - bias.view(filtered.shape)
    spikes = surrogate(membrane - v_threshold)
    return spikes, membrane, u_last, bias_next.view(c.shape[1:])
