"""Private helpers shared by the built-in tasks: argument checks, lazy imports, tensor storage."""

from __future__ import annotations

import importlib
from types import ModuleType

import torch
from torch.utils.data import Dataset

from .._validation import check_bool, check_choice, check_float, check_int, check_seed

__all__ = ["check_bool", "check_choice", "check_int", "check_open_unit", "check_seed", "require", "SequenceDataset"]

_INSTALL_HINT = 'pip install "torch==2.13.0" "snn-parallel[data]"'


def require(module: str, package: str, feature: str) -> ModuleType:
    """Import ``module`` from the optional ``package``, or raise an ImportError that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{feature} needs the optional package '{package}': {_INSTALL_HINT}") from err


def check_open_unit(value: object, name: str, *, include_one: bool = False) -> float:
    """Check that ``value`` is a real number in (0, 1), or in (0, 1] when ``include_one``."""
    return check_float(value, name, minimum=0.0, maximum=1.0, min_open=True, max_open=not include_one)


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
