"""Sequential 8x8 digits from scikit-learn's bundled ``load_digits`` (no download)."""

from __future__ import annotations

import functools

import numpy as np
import torch

from ._base import SequenceDataset, check_choice, check_int, check_open_unit, check_seed, require

_SPLITS = ("train", "valid", "test")
_MODES = ("pixel", "permuted", "row", "static", "image")
_SIDE = 8
_PIXELS = _SIDE * _SIDE
_MAX_PIXEL = 16.0


@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as read-only ``images [N, 64]`` in [0, 1] (float32) and ``labels [N]`` (int64)."""
    datasets = require("sklearn.datasets", "scikit-learn", "SequentialDigits")
    images, labels = datasets.load_digits(return_X_y=True)
    images = (images / _MAX_PIXEL).astype(np.float32)
    labels = labels.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _stratified(
    labels: np.ndarray, rows: np.ndarray, fraction: float, name: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` split into ``(rest, share)`` with ``share`` holding ``fraction`` of them, stratified by label."""
    model_selection = require("sklearn.model_selection", "scikit-learn", "SequentialDigits")
    try:
        rest, share = model_selection.train_test_split(
            rows, test_size=fraction, random_state=seed, stratify=labels[rows]
        )
    except ValueError as err:
        raise ValueError(f"{name}={fraction} cannot give a stratified split of the digits: {err}") from err
    return rest, share


def _split_indices(
    labels: np.ndarray, split: str, test_fraction: float, valid_fraction: float | None, seed: int
) -> np.ndarray:
    """Sorted row indices of ``split``: a stratified train/test split fixed by ``seed``, and with
    ``valid_fraction`` a stratified share of the training rows set apart as ``"valid"``."""
    rows = dict(
        zip(
            ("train", "test"),
            _stratified(labels, np.arange(labels.shape[0]), test_fraction, "test_fraction", seed),
            strict=True,
        )
    )
    if valid_fraction is not None:
        rows["train"], rows["valid"] = _stratified(labels, rows["train"], valid_fraction, "valid_fraction", seed)
    return np.sort(rows[split])


class SequentialDigits(SequenceDataset):
    """The 8x8 handwritten digits (scikit-learn's ``load_digits``) read as sequences.

    Pixels are scaled from 0..16 to [0, 1]. The train/test split is stratified by class and
    fixed by ``seed`` and ``test_fraction``, so a train and a test set built with the same
    arguments are disjoint and together hold all 1797 digits. With ``valid_fraction``, that
    share of the training digits (stratified too) becomes the ``"valid"`` split and leaves
    ``"train"``, for choosing hyper-parameters without looking at the test split; the test
    split does not change.

    Modes (item ``x`` is ``[T, F]`` float32, ``y`` an int64 scalar in 0..9):

    * ``"pixel"``: one pixel per step in row-major order, ``T = 64, F = 1``.
    * ``"permuted"``: as ``"pixel"`` with the 64 pixels in a fixed random order drawn from
      ``seed`` (stored in :attr:`permutation`), ``T = 64, F = 1``.
    * ``"row"``: one image row per step, ``T = 8, F = 8``.
    * ``"static"``: the whole image at every step, ``T = repeat, F = 64``.
    * ``"image"``: the image as a 1-channel picture at every step, item ``x`` ``[T, 1, 8, 8]``
      with ``T = repeat`` (for conv nets, e.g. TSSL-BP at ``T = 5``).

    Args:
        split: ``"train"``, ``"valid"`` (needs ``valid_fraction``) or ``"test"``.
        mode: ``"pixel"``, ``"permuted"``, ``"row"``, ``"static"`` or ``"image"``.
        seed: Seed of the split and of the pixel permutation, an int in ``[0, 2**32 - 1]``.
        test_fraction: Share of the digits in the test split, in (0, 1).
        valid_fraction: Share of the training digits set apart as the ``"valid"`` split, in
            (0, 1); ``None`` (default): no validation split.
        repeat: Steps in ``"static"`` and ``"image"`` modes (checked, but unused, in the other modes).

    Attributes:
        inputs: All inputs ``[N, T, F]`` (``[N, T, 1, 8, 8]`` in ``"image"`` mode).
        targets: All labels ``[N]`` (int64).
        indices: Rows of ``load_digits`` in this split ``[N]`` (int64, sorted).
        permutation: Pixel order ``[64]`` (int64) in ``"permuted"`` mode, else ``None``.
        split: The split given.
        mode: The mode given.
        num_classes: 10.

    Raises:
        ImportError: If scikit-learn is not installed.
    """

    num_classes: int = 10

    def __init__(
        self,
        split: str = "train",
        mode: str = "pixel",
        *,
        seed: int = 0,
        test_fraction: float = 0.2,
        valid_fraction: float | None = None,
        repeat: int = 5,
    ) -> None:
        split = check_choice(split, "split", _SPLITS)
        mode = check_choice(mode, "mode", _MODES)
        seed = check_seed(seed)
        test_fraction = check_open_unit(test_fraction, "test_fraction")
        if valid_fraction is not None:
            valid_fraction = check_open_unit(valid_fraction, "valid_fraction")
        elif split == "valid":
            raise ValueError("split='valid' needs valid_fraction, the share of the training digits to set apart")
        repeat = check_int(repeat, "repeat", minimum=1)

        all_images, all_labels = _load_digits()
        indices = _split_indices(all_labels, split, test_fraction, valid_fraction, seed)
        images = torch.from_numpy(all_images[indices])  # fancy indexing copies, so the result is writable
        self.permutation: torch.Tensor | None = None
        if mode == "pixel":
            inputs = images.unsqueeze(-1)
        elif mode == "permuted":
            self.permutation = torch.from_numpy(np.random.default_rng(seed).permutation(_PIXELS))
            inputs = images[:, self.permutation].unsqueeze(-1)
        elif mode == "row":
            inputs = images.reshape(-1, _SIDE, _SIDE)
        elif mode == "static":
            inputs = images.unsqueeze(1).repeat(1, repeat, 1)
        else:
            inputs = images.reshape(-1, 1, 1, _SIDE, _SIDE).repeat(1, repeat, 1, 1, 1)
        super().__init__(inputs, torch.from_numpy(all_labels[indices]))
        self.indices = torch.from_numpy(indices)
        self.split = split
        self.mode = mode
