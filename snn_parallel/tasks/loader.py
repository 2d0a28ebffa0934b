"""Time-major batching: collate ``[T, F]`` items into ``[T, B, F]`` and a seeded DataLoader."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from ._base import check_bool, check_int, check_seed


def time_major_collate(
    batch: Sequence[tuple[torch.Tensor, object]], *, item_dims: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(x [T, F], y)`` items into a time-major batch.

    Args:
        batch: Non-empty sequence of ``(x, y)`` pairs; every ``x`` is a ``[T, F]`` tensor of one
            shape, every ``y`` a tensor (or number) of one shape.
        item_dims: Dims of each ``x``: 2 for ``[T, F]``, more for ``[T, C, H, W]`` pictures.

    Returns:
        ``(x [T, B, F], y [B, ...])`` (``x [T, B, C, H, W]`` for pictures).
    """
    if len(batch) == 0:
        raise ValueError("batch must hold at least one (x, y) item, got an empty batch")
    xs, ys = zip(*batch, strict=True)
    for x in xs:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"batch inputs must be torch.Tensor, got {type(x).__name__}")
        if x.dim() != item_dims:
            layout = "[T, F] (2 dims)" if item_dims == 2 else f"[T, ...] with {item_dims} dims"
            raise ValueError(f"batch inputs must be {layout}, got shape {tuple(x.shape)}")
    return torch.stack(xs, dim=1), torch.stack([torch.as_tensor(y) for y in ys])


def _item_dims(dataset: Dataset) -> int:
    """Dims of one item's ``x``, from a built-in task's ``inputs`` ``[N, T, ...]`` (else ``[T, F]``)."""
    inputs = getattr(dataset, "inputs", None)
    return inputs.dim() - 1 if isinstance(inputs, torch.Tensor) and inputs.dim() > 3 else 2


def make_loader(
    dataset: Dataset[tuple[torch.Tensor, torch.Tensor]],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
    """A DataLoader that yields time-major batches ``(x [T, B, F], y [B, ...])``.

    Shuffling draws from a ``torch.Generator`` seeded with ``seed``, so two loaders built
    with the same arguments give the same batches epoch after epoch.

    Args:
        dataset: A dataset whose items are ``(x [T, F], y)``, or ``(x [T, C, H, W], y)``
            (pictures are recognised from a task's ``inputs`` ``[N, T, C, H, W]``).
        batch_size: Items per batch ``B``, at least 1.
        shuffle: Reshuffle the items at every epoch.
        seed: Seed of the shuffling generator, an int in ``[0, 2**32 - 1]``.
        drop_last: Drop the last batch if it is smaller than ``batch_size``.

    Returns:
        A ``torch.utils.data.DataLoader`` using :func:`time_major_collate`.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a torch.utils.data.Dataset, got {type(dataset).__name__}")
    generator = torch.Generator().manual_seed(check_seed(seed))
    return DataLoader(
        dataset,
        batch_size=check_int(batch_size, "batch_size", minimum=1),
        shuffle=check_bool(shuffle, "shuffle"),
        drop_last=check_bool(drop_last, "drop_last"),
        collate_fn=functools.partial(time_major_collate, item_dims=_item_dims(dataset)),
        generator=generator,
    )
