"""Private helpers shared by the built-in tasks: argument checks, lazy imports, tensor storage."""

from __future__ import annotations

import importlib
import numbers
from types import ModuleType

import torch
from torch.utils.data import Dataset

from .._validation import check_bool, check_choice  # noqa: F401 (the tasks' checks, re-exported)

_INSTALL_HINT = 'pip install "torch==2.13.0" "snn-parallel[data]"'


_MAX_SEED = 2**32 - 1  # numpy's legacy seeding and scikit-learn's random_state accept [0, 2**32 - 1]


def require(module: str, package: str, feature: str) -> ModuleType:
    """Import ``module`` from the optional ``package``, or raise an ImportError that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{feature} needs the optional package '{package}': {_INSTALL_HINT}") from err


def check_int(value: object, name: str, *, minimum: int, maximum: int | None = None) -> int:
    """Check that ``value`` is an integer (not a bool) in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def check_seed(value: object) -> int:
    """Check a random seed: an int in ``[0, 2**32 - 1]``."""
    return check_int(value, "seed", minimum=0, maximum=_MAX_SEED)


def check_open_unit(value: object, name: str, *, include_one: bool = False) -> float:
    """Check that ``value`` is a real number in (0, 1), or in (0, 1] when ``include_one``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    value = float(value)
    if not (0.0 < value < 1.0 or (include_one and value == 1.0)):
        interval = "(0, 1]" if include_one else "(0, 1)"
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return value


class SequenceDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Dataset over pre-built tensors: ``inputs [N, T, F]`` (float32) and ``targets [N, ...]``.

    Item ``i`` is ``(inputs[i] [T, F], targets[i])``.
    """

    inputs: torch.Tensor
    targets: torch.Tensor

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.inputs = inputs
        self.targets = targets

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[index], self.targets[index]

    @property
    def num_steps(self) -> int:
        """Sequence length ``T``."""
        return self.inputs.shape[1]

    @property
    def num_inputs(self) -> int:
        """Input features per time step ``F``."""
        return self.inputs.shape[2]
