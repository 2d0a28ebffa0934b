r"""Per-step losses over time-major outputs, shared by every trainer.

A :class:`StepLoss` says *which* steps of the output sequence ``o`` (``[T, B, K]``) carry a
loss and *what* the loss is. With :math:`\mathcal{S}` the chosen steps,

.. math::

    L = \frac{1}{|\mathcal{S}|} \sum_{t \in \mathcal{S}} \ell(o_t, y_t),

so the sequence loss is the sum of per-step terms :math:`\ell(o_t, y_t)/|\mathcal{S}|`, which
the online rules take one step (or one part) at a time. :math:`\ell` is

- ``"ce"``: cross-entropy on the logits :math:`o_t`, plus
  :math:`\gamma\,\mathrm{MSE}(o_t, \mathrm{onehot}(y))` with ``mse_weight`` :math:`\gamma`
  (OTTT's mixed loss is :math:`(1 - \gamma)\,\mathrm{CE} + \gamma\,\mathrm{MSE}`);
- ``"mse"``: mean squared error against a regression target.

Targets are one per sequence (``[B]`` class indices or ``[B, K]`` values, the same at every
chosen step) or one per step (``[T, B]`` or ``[T, B, K]``). Classification predicts the
class of the mean logits over the chosen steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._validation import _all_finite, validation_enabled

__all__ = ["StepLoss", "resolve_loss"]

_KINDS = ("ce", "mse")


@dataclass(frozen=True)
class StepLoss:
    """Which steps carry a loss, and which loss.

    Args:
        kind: ``"ce"`` (classification) or ``"mse"`` (regression).
        steps: ``"last"`` (the final step only), ``"all"`` (every step) or a window
            ``(start, stop)`` of step indices, Python-slice style (negative counts from the end,
            ``stop=None`` runs to the end).
        mse_weight: :math:`\\gamma`, mixes an MSE on one-hot targets into ``"ce"`` as
            :math:`(1-\\gamma)\\,\\mathrm{CE} + \\gamma\\,\\mathrm{MSE}`.
    """

    kind: str = "ce"
    steps: str | tuple[int, int | None] = "last"
    mse_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"loss kind must be one of {_KINDS}, got {self.kind!r}")
        if isinstance(self.steps, str):
            if self.steps not in ("last", "all"):
                raise ValueError(f"loss steps must be 'last', 'all' or (start, stop), got {self.steps!r}")
        elif not (
            isinstance(self.steps, tuple)
            and len(self.steps) == 2
            and isinstance(self.steps[0], int)
            and (self.steps[1] is None or isinstance(self.steps[1], int))
        ):
            raise ValueError(f"loss steps must be 'last', 'all' or (start, stop) ints, got {self.steps!r}")
        if not 0.0 <= self.mse_weight <= 1.0:
            raise ValueError(f"mse_weight must be in [0, 1], got {self.mse_weight!r}")
        if self.mse_weight and self.kind != "ce":
            raise ValueError("mse_weight mixes an MSE into 'ce'; for regression use kind='mse'")

    # -- which steps --------------------------------------------------------------------
    def mask(self, num_steps: int) -> torch.Tensor:
        """Boolean ``[T]``: the steps that carry a loss. Raises if none does."""
        mask = torch.zeros(num_steps, dtype=torch.bool)
        if self.steps == "last":
            mask[-1] = True
        elif self.steps == "all":
            mask[:] = True
        else:
            mask[slice(*self.steps)] = True
        if not mask.any():
            raise ValueError(f"the loss window {self.steps} selects no step of a {num_steps}-step sequence")
        return mask

    # -- targets ------------------------------------------------------------------------
    def check_target(self, target: object, num_steps: int, batch: int, out_features: int) -> torch.Tensor:
        """Validate ``target`` for an output of ``num_steps`` steps, ``batch`` samples and
        ``out_features`` values per step; returns it unchanged."""
        if not isinstance(target, torch.Tensor):
            raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
        if self.kind == "ce":
            if target.dtype != torch.long:
                raise TypeError(f"target of a 'ce' loss must hold int64 class indices, got {target.dtype}")
            if tuple(target.shape) not in ((batch,), (num_steps, batch)):
                raise ValueError(
                    f"target of a 'ce' loss must be [B] = [{batch}] (one class per sequence) or "
                    f"[T, B] = [{num_steps}, {batch}] (one per step), got {list(target.shape)}"
                )
            if target.numel() and (int(target.min()) < 0 or int(target.max()) >= out_features):
                raise ValueError(
                    f"target holds class indices outside [0, {out_features - 1}] for the model's {out_features} outputs"
                )
            return target
        if not target.is_floating_point():
            raise TypeError(f"target of an 'mse' loss must be floating point, got {target.dtype}")
        if tuple(target.shape) not in ((batch, out_features), (num_steps, batch, out_features)):
            raise ValueError(
                f"target of an 'mse' loss must be [B, K] = [{batch}, {out_features}] or [T, B, K] = "
                f"[{num_steps}, {batch}, {out_features}], got {list(target.shape)}"
            )
        if validation_enabled() and not _all_finite(target):
            raise ValueError("target contains NaN or infinite values")
        return target

    @property
    def sequence_target_dims(self) -> int:
        """Dims of a one-per-sequence target: ``[B]`` for ``"ce"``, ``[B, K]`` for ``"mse"``
        (a per-step target has one more, ``T``, in front)."""
        return 1 if self.kind == "ce" else 2

    # -- losses -------------------------------------------------------------------------
    def term(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """:math:`\\ell(o_t, y_t)` for one step: ``output`` ``[B, K]``, ``target`` ``[B]``/``[B, K]``."""
        if self.kind == "mse":
            return F.mse_loss(output, target)
        loss = F.cross_entropy(output, target)
        if self.mse_weight:
            onehot = F.one_hot(target, output.shape[-1]).to(output.dtype)
            loss = (1 - self.mse_weight) * loss + self.mse_weight * F.mse_loss(output, onehot)
        return loss

    def sequence_loss(
        self, outputs: torch.Tensor, target: torch.Tensor, offset: int = 0, num_steps: int | None = None
    ) -> torch.Tensor | None:
        """Sum of the step shares over ``outputs`` ``[T', B, K]``, steps ``offset .. offset+T'-1``
        of a ``num_steps``-step sequence (default: ``outputs`` is the whole sequence).

        Returns ``None`` if none of these steps carries a loss.
        """
        total = outputs.shape[0] if num_steps is None else num_steps
        mask = self.mask(total)
        chosen = mask[offset : offset + outputs.shape[0]].nonzero().flatten()
        if chosen.numel() == 0:
            return None
        out = outputs[chosen]
        if target.dim() > self.sequence_target_dims:
            step_target = target[chosen + offset]
        else:
            step_target = target.expand(len(chosen), *target.shape)
        # one batched term over the chosen steps: mean over (steps, batch) = average of per-step means
        return self.term(out.flatten(0, 1), step_target.flatten(0, 1)) * len(chosen) / int(mask.sum())

    # -- evaluation ---------------------------------------------------------------------
    def score(self, outputs: torch.Tensor, target: torch.Tensor) -> tuple[float, int]:
        """``(sum, count)`` of the metric over a batch: correct predictions for ``"ce"``,
        squared errors for ``"mse"`` (over the chosen steps)."""
        mask = self.mask(outputs.shape[0])
        out = outputs[mask]
        per_step = target.dim() > self.sequence_target_dims
        if self.kind == "mse":
            step_target = target[mask] if per_step else target.expand_as(out)
            return float(((out - step_target) ** 2).sum()), out.numel()
        if per_step:
            return float((out.argmax(-1) == target[mask]).sum()), target[mask].numel()
        return float((out.mean(0).argmax(-1) == target).sum()), target.numel()

    @property
    def metric(self) -> str:
        """Name of :meth:`score`'s metric: ``"accuracy"`` or ``"mse"``."""
        return "accuracy" if self.kind == "ce" else "mse"


_NAMED = {
    "ce": StepLoss("ce", "last"),
    "ce_last": StepLoss("ce", "last"),
    "ce_all": StepLoss("ce", "all"),
    "mse": StepLoss("mse", "last"),
    "mse_last": StepLoss("mse", "last"),
    "mse_all": StepLoss("mse", "all"),
}


def resolve_loss(loss: str | StepLoss) -> StepLoss:
    """A :class:`StepLoss` from itself or a name (``"ce"``/``"ce_last"``, ``"ce_all"``,
    ``"mse"``/``"mse_last"``, ``"mse_all"``)."""
    if isinstance(loss, StepLoss):
        return loss
    if isinstance(loss, str) and loss in _NAMED:
        return _NAMED[loss]
    raise ValueError(f"loss must be a StepLoss or one of {sorted(_NAMED)}, got {loss!r}")
