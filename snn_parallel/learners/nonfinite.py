"""Detecting NaN and infinite values in training: the loss, the gradients and the weights.

These checks run whatever :func:`snn_parallel.set_validation` says: a training step that goes
non-finite is never silent. The fast path is one reduction and one device synchronisation per
check (a non-finite sum); only then is every tensor inspected, to name the culprit.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["NonFiniteError", "all_finite", "describe_nonfinite"]


class NonFiniteError(FloatingPointError):
    """Training produced a NaN or infinite loss, gradient or weight.

    The message names the optimizer step, the epoch and batch, and the tensor that went
    non-finite, with how many of its values are NaN and infinite.
    """


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every value of every tensor is finite: the sum of their sums is, or each tensor is."""
    tensors = [t.detach() for t in tensors]
    if not tensors:
        return True
    device = tensors[0].device
    total = torch.stack([t.sum().abs().to(device=device, dtype=torch.float64) for t in tensors]).sum()
    if bool(torch.isfinite(total)):
        return True
    # a non-finite sum may be an overflow of finite values: confirm tensor by tensor
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def describe_nonfinite(named: Iterable[tuple[str, torch.Tensor]], limit: int = 3) -> str | None:
    """``"'0.weight' (3 NaN, 1 inf of 128 values)"`` for the first ``limit`` tensors that hold a
    NaN or inf (and how many more do), or ``None`` if none does."""
    found = []
    for name, tensor in named:
        tensor = tensor.detach()
        nan = int(torch.isnan(tensor).sum())
        inf = int(torch.isinf(tensor).sum())
        if nan or inf:
            found.append(f"{name!r} ({nan} NaN, {inf} inf of {tensor.numel()} values)")
    if not found:
        return None
    more = f" and {len(found) - limit} more" if len(found) > limit else ""
    return ", ".join(found[:limit]) + more
