"""Detecting NaN and infinite values in training: the loss, the gradients and the weights.

These checks run whatever :func:`snn_parallel.set_validation` says: a training step that goes
non-finite is never silent. The fast path is one reduction and one device synchronisation per
check (a non-finite sum); only then is every tensor inspected, to name the culprit.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["NonFiniteError", "all_finite", "describe_nonfinite", "nonfinite_error"]


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
    # a NaN or inf makes a sum non-finite (inf - inf is NaN); torch.stack promotes the dtypes
    total = torch.stack([t.sum() if t.device == device else t.sum().to(device) for t in tensors]).sum()
    if bool(torch.isfinite(total)):
        return True
    # a non-finite sum may be an overflow of finite values: confirm tensor by tensor
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def describe_nonfinite(named: Iterable[tuple[str, torch.Tensor]], limit: int = 3) -> str | None:
    """``None`` if every tensor is finite (one reduction), else ``"'0.weight' (3 NaN, 1 inf of 128
    values)"`` for the first ``limit`` tensors that hold a NaN or inf, and how many more do. Lazy
    tensors not materialised yet hold no values and are passed over."""
    named = [(name, tensor.detach()) for name, tensor in named if not torch.nn.parameter.is_lazy(tensor)]
    if all_finite(tensor for _, tensor in named):
        return None
    found = []
    for name, tensor in named:
        nan, inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
        if nan or inf:
            found.append(f"{name!r} ({nan} NaN, {inf} inf of {tensor.numel()} values)")
    more = f" and {len(found) - limit} more" if len(found) > limit else ""
    return ", ".join(found[:limit]) + more


def nonfinite_error(who: str, where: str, what: str, hint: str = "") -> NonFiniteError:
    """The error for ``what`` went non-finite at ``where`` (e.g. ``"optimizer step 3 (epoch 1, batch 3)"``)."""
    return NonFiniteError(
        f"{who}: training went non-finite at {where}: {what}. Check the data and the initial weights, or lower "
        f"the learning rate{hint}"
    )
