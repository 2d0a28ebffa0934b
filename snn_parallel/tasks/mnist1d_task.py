"""MNIST-1D generated locally with the ``mnist1d`` package (never downloaded)."""

from __future__ import annotations

import functools
import random

import numpy as np
import torch

from ._base import SequenceDataset, check_bool, check_choice, check_int, check_seed, require

_SPLITS = ("train", "test")
_NUM_CLASSES = 10


@functools.lru_cache(maxsize=8)
def _generate(seed: int, num_samples: int, final_seq_length: int, shuffle_seq: bool) -> dict[str, torch.Tensor]:
    """Generate MNIST-1D once per argument set: ``x`` ``[N, T, 1]`` float32 and ``y`` ``[N]`` int64 per split."""
    data = require("mnist1d.data", "mnist1d", "MNIST1D")
    args = data.get_dataset_args()
    args.seed = seed
    args.num_samples = num_samples
    args.final_seq_length = final_seq_length
    args.shuffle_seq = shuffle_seq
    # make_dataset reseeds the global `random` and `numpy.random` generators; leave them as they were.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        dataset = data.make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {
        "x_train": torch.from_numpy(dataset["x"].astype(np.float32)).unsqueeze(-1),
        "y_train": torch.from_numpy(dataset["y"].astype(np.int64)),
        "x_test": torch.from_numpy(dataset["x_test"].astype(np.float32)).unsqueeze(-1),
        "y_test": torch.from_numpy(dataset["y_test"].astype(np.int64)),
    }


class MNIST1D(SequenceDataset):
    """MNIST-1D (Greydanus, 2020): ten 1-D digit templates, randomly transformed, as sequences.

    The data are generated locally with ``mnist1d.data.make_dataset`` (nothing is
    downloaded) and cached per argument set, so a train and a test set built with the same
    arguments share one generation. ``num_samples`` is rounded down to a multiple of 10
    (equal classes); mnist1d puts 80% of them in the train split and the rest in the test
    split. Item ``x`` is ``[T, 1]`` float32 with ``T = final_seq_length``; ``y`` is an int64
    scalar in 0..9. The global ``random``/``numpy.random`` states are left untouched.

    Args:
        split: ``"train"`` or ``"test"``.
        seed: Seed of the generation, an int in ``[0, 2**32 - 1]`` (42 gives the standard set).
        shuffle_seq: Apply one fixed random permutation to the time steps of every sequence.
        num_samples: Train plus test sequences, at least 10.
        final_seq_length: Sequence length ``T``, at least 1.

    Attributes:
        inputs: All inputs ``[N, T, 1]``.
        targets: All labels ``[N]`` (int64).
        split: The split given.
        num_classes: 10.

    Raises:
        ImportError: If mnist1d is not installed.
    """

    num_classes: int = _NUM_CLASSES

    def __init__(
        self,
        split: str = "train",
        *,
        seed: int = 42,
        shuffle_seq: bool = False,
        num_samples: int = 5000,
        final_seq_length: int = 40,
    ) -> None:
        split = check_choice(split, "split", _SPLITS)
        data = _generate(
            check_seed(seed),
            check_int(num_samples, "num_samples", minimum=_NUM_CLASSES),
            check_int(final_seq_length, "final_seq_length", minimum=1),
            check_bool(shuffle_seq, "shuffle_seq"),
        )
        # Clone so that editing one dataset in place cannot alter the cache or the other split.
        super().__init__(data[f"x_{split}"].clone(), data[f"y_{split}"].clone())
        self.split = split
