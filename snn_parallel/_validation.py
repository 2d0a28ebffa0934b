"""Input checks shared by every public entry point.

Structural checks (type, dtype, rank, shape, device) are always on: they cost nothing.
The data-dependent check (NaN/inf in the input) reads tensor values, which synchronises
a GPU, so it can be switched off for hot loops::

    snn_parallel.set_validation(False)          # globally
    with snn_parallel.validation(False): ...    # for a block
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator, Sequence

import torch

_CHECK_VALUES = True

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def set_validation(enabled: bool) -> None:
    """Turn the data-dependent input checks (NaN/inf) on or off for the whole process."""
    global _CHECK_VALUES
    _CHECK_VALUES = bool(enabled)


def validation_enabled() -> bool:
    """Whether the data-dependent input checks are on."""
    return _CHECK_VALUES


@contextlib.contextmanager
def validation(enabled: bool) -> Iterator[None]:
    """Context manager that sets the data-dependent checks for a block and restores them."""
    previous = _CHECK_VALUES
    set_validation(enabled)
    try:
        yield
    finally:
        set_validation(previous)


def check_tensor(
    x: object,
    name: str,
    *,
    dtypes: Sequence[torch.dtype] = FLOAT_DTYPES,
    finite: bool = True,
) -> torch.Tensor:
    """Check that ``x`` is a tensor of an accepted dtype and, if enabled, free of NaN/inf."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in dtypes:
        accepted = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have dtype in ({accepted}), got {str(x.dtype).replace('torch.', '')}")
    if finite and _CHECK_VALUES and not _all_finite(x):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _all_finite(x: torch.Tensor) -> bool:
    """One reduction pass; a non-finite sum (NaN/inf input, or overflow) is confirmed exactly."""
    if x.numel() == 0 or x.is_meta or bool(torch.isfinite(x.sum())):
        return True
    return bool(torch.isfinite(x).all())


def check_sequence(x: object, name: str, features: int, *, finite: bool = True) -> torch.Tensor:
    """Check a time-major sequence ``[T, B, features, *spatial]`` with ``T >= 1``."""
    x = check_tensor(x, name, finite=finite)
    if x.dim() < 3:
        raise ValueError(
            f"{name} must be time-major [T, B, {features}, ...] (at least 3 dims), got shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty sequence (T = 0); it needs at least one time step")
    if x.shape[2] != features:
        raise ValueError(
            f"{name} must have {features} features in dim 2 ([T, B, {features}, ...]), got shape {tuple(x.shape)}"
        )
    return x


def check_step_input(x: object, name: str, features: int, *, finite: bool = True) -> torch.Tensor:
    """Check a single time step ``[B, features, *spatial]``."""
    x = check_tensor(x, name, finite=finite)
    if x.dim() < 2:
        raise ValueError(f"{name} must be one time step [B, {features}, ...] (at least 2 dims), got shape {tuple(x.shape)}")
    if x.shape[1] != features:
        raise ValueError(f"{name} must have {features} features in dim 1 ([B, {features}, ...]), got shape {tuple(x.shape)}")
    return x


def check_same_device(x: torch.Tensor, name: str, reference: torch.Tensor, reference_name: str) -> None:
    """Check that ``x`` lives on the same device as ``reference``."""
    if x.device != reference.device:
        raise ValueError(f"{name} is on {x.device} but {reference_name} is on {reference.device}; move them to one device")


def check_state_tensor(
    value: object, name: str, shape: Sequence[int], like: torch.Tensor, like_name: str
) -> torch.Tensor:
    """Check one tensor of a carried state against the expected shape, dtype and device."""
    value = check_tensor(value, name)
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(value.shape)}, expected {tuple(shape)} to match {like_name}")
    check_same_device(value, name, like, like_name)
    if value.dtype != like.dtype and not (value.is_complex() or like.is_complex()):
        raise TypeError(f"{name} has dtype {value.dtype}, expected {like.dtype} to match {like_name}")
    return value


def check_op_sequence(x: object, name: str) -> torch.Tensor:
    """A time-major op input ``[T, ...]`` with ``T >= 1``."""
    x = check_tensor(x, name)
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be time-major [T, ...] with T >= 1 and at least 2 dims, got shape {tuple(x.shape)}")
    return x


def check_like(value: object, name: str, shape: Sequence[int], like: torch.Tensor, like_name: str, *, broadcast: bool = False, complex_ok: bool = False) -> torch.Tensor:
    """A tensor of exactly ``shape`` (or, with ``broadcast``, broadcastable to it) on ``like``'s device."""
    dtypes = FLOAT_DTYPES + ((torch.complex64, torch.complex128) if complex_ok else ())
    value = check_tensor(value, name, dtypes=dtypes)
    check_same_device(value, name, like, like_name)
    shape = tuple(shape)
    if broadcast:
        try:
            fits = torch.broadcast_shapes(value.shape, shape) == shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f"{name} with shape {tuple(value.shape)} does not broadcast to {shape} ({like_name}'s per-step shape)")
    elif tuple(value.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(value.shape)}, expected {shape} to match {like_name}")
    return value


# -- constants of constructors ------------------------------------------------------------
def check_real(
    value: object,
    name: str,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
) -> float:
    """A finite real number (not a bool or a string), optionally bounded; returned as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    for bound, holds, relation in (
        (above, lambda b: value > b, ">"),
        (at_least, lambda b: value >= b, ">="),
        (below, lambda b: value < b, "<"),
        (at_most, lambda b: value <= b, "<="),
    ):
        if bound is not None and not holds(bound):
            raise ValueError(f"{name} must be {relation} {bound:g}, got {value:g}")
    return value


def check_bool(value: object, name: str) -> bool:
    """A Python bool (not a truthy string or number)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """One of the strings ``choices``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {tuple(choices)}, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_pair(value: object, name: str, *, above: float | None = None, at_least: float | None = None, at_most: float | None = None) -> tuple[float, float]:
    """A pair ``(low, high)`` of finite reals with ``low <= high``, optionally bounded."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{name} must be a pair (low, high), got {value!r}")
    low, high = (check_real(v, name, above=above, at_least=at_least, at_most=at_most) for v in value)
    if low > high:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {value!r}")
    return low, high


def check_positive_int(value: object, name: str) -> int:
    """A positive Python int (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)
