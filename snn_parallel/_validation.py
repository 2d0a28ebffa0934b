"""Input checks shared by every public entry point.

Structural checks (type, dtype, rank, shape, device) are always on: they cost nothing.
The data-dependent check (NaN/inf in the input) reads tensor values, which synchronises
a GPU, so it can be switched off for hot loops::

    snn_parallel.set_validation(False)          # globally
    with snn_parallel.validation(False): ...    # for a block

Scalar arguments (counts, constants, options, seeds) are checked by :func:`check_int`,
:func:`check_float`, :func:`check_positive`, :func:`check_pair`, :func:`check_bool` and
:func:`check_choice`, always: a wrong type raises ``TypeError``, a value out of range ``ValueError``.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

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
    """Check that ``x`` is a tensor of an accepted dtype and, if enabled, free of NaN/inf (not while
    ``torch.compile`` traces: the value check reads the data, which a compiled graph cannot)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in dtypes:
        accepted = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have dtype in ({accepted}), got {str(x.dtype).replace('torch.', '')}")
    if finite and _CHECK_VALUES and not torch.compiler.is_compiling() and not _all_finite(x):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _all_finite(x: torch.Tensor) -> bool:
    """One reduction pass; a non-finite sum (NaN/inf input, or overflow) is confirmed exactly. The sum is
    tested as a Python number (``abs`` of NaN or inf, real or complex, is not below inf): a step loop makes
    several of these checks a step, and a tensor op on the sum would cost more than the sum."""
    if x.numel() == 0 or x.is_meta or abs(x.sum().item()) < math.inf:
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
        raise ValueError(
            f"{name} must be one time step [B, {features}, ...] (at least 2 dims), got shape {tuple(x.shape)}"
        )
    if x.shape[1] != features:
        raise ValueError(
            f"{name} must have {features} features in dim 1 ([B, {features}, ...]), got shape {tuple(x.shape)}"
        )
    return x


def check_same_device(x: torch.Tensor, name: str, reference: torch.Tensor, reference_name: str) -> None:
    """Check that ``x`` lives on the same device as ``reference``."""
    if x.device != reference.device:
        raise ValueError(
            f"{name} is on {x.device} but {reference_name} is on {reference.device}; move them to one device"
        )


def check_state_tensor(
    value: object, name: str, shape: Sequence[int], like: torch.Tensor, like_name: str, *, finite: bool = True
) -> torch.Tensor:
    """Check one tensor of a carried state against the expected shape, dtype and device (and, with
    ``finite``, that it is free of NaN/inf)."""
    value = check_tensor(value, name, finite=finite)
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
        raise ValueError(
            f"{name} must be time-major [T, ...] with T >= 1 and at least 2 dims, got shape {tuple(x.shape)}"
        )
    return x


def check_like(
    value: object,
    name: str,
    shape: Sequence[int],
    like: torch.Tensor,
    like_name: str,
    *,
    broadcast: bool = False,
    complex_ok: bool = False,
) -> torch.Tensor:
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
            raise ValueError(
                f"{name} with shape {tuple(value.shape)} does not broadcast to {shape} ({like_name}'s per-step shape)"
            )
    elif tuple(value.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(value.shape)}, expected {shape} to match {like_name}")
    return value


# -- scalar arguments: one exception type per kind of mistake --------------------------------------
# A value of the wrong type (a str, None, a bool where a number is due) raises TypeError; a value of
# the right type outside its range (NaN, inf, a negative count) raises ValueError. Both name the
# argument and say what it accepts.


def check_bool(value: object, name: str) -> bool:
    """``value`` if it is a bool (``0``/``1`` and other truthy objects are refused: TypeError)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def check_learn(value: object, name: str) -> bool | str:
    """How a neuron learns a per-channel quantity: ``False`` (not at all), ``True`` (one value per channel) or
    ``"shared"`` (one value for every channel, as a framework's scalar parameter)."""
    if isinstance(value, bool) or value == "shared":
        return value
    raise TypeError(f"{name} must be a bool or 'shared' (one value for every channel), got {value!r}")


def _interval(minimum: float | None, maximum: float | None, min_open: bool, max_open: bool) -> str:
    """``"positive"``, ``">= 1"``, ``"in (0, 1]"``: how a range reads in a message."""
    if maximum is None:
        if minimum == 0 and min_open:
            return "positive"
        return f"{'>' if min_open else '>='} {minimum:g}"
    if minimum is None:
        return f"{'<' if max_open else '<='} {maximum:g}"
    return f"in {'(' if min_open else '['}{minimum:g}, {maximum:g}{')' if max_open else ']'}"


def _check_range(
    value: float, name: str, minimum: float | None, maximum: float | None, min_open: bool, max_open: bool
) -> None:
    below = minimum is not None and (value <= minimum if min_open else value < minimum)
    above = maximum is not None and (value >= maximum if max_open else value > maximum)
    if below or above:
        raise ValueError(f"{name} must be {_interval(minimum, maximum, min_open, max_open)}, got {value!r}")


def check_int(value: object, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer (a bool is not) in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    _check_range(value, name, minimum, maximum, False, False)
    return value


def check_float(
    value: object,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    min_open: bool = False,
    max_open: bool = False,
    finite: bool = True,
) -> float:
    """``value`` as a ``float`` if it is a real number (a bool is not) in the given range.

    NaN is always refused; ``inf`` unless ``finite=False`` (then the range still applies).
    ``min_open``/``max_open`` exclude the bound itself.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or (finite and math.isinf(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    _check_range(value, name, minimum, maximum, min_open, max_open)
    return value


def check_positive(value: object, name: str, *, finite: bool = True) -> float:
    """``value`` as a ``float`` if it is a real number > 0 (finite unless ``finite=False``)."""
    return check_float(value, name, minimum=0.0, min_open=True, finite=finite)


def check_seed(value: object, name: str = "seed") -> int:
    """A random seed: an int in ``[0, 2**32 - 1]`` (what NumPy's legacy seeding and scikit-learn's
    ``random_state`` accept)."""
    return check_int(value, name, minimum=0, maximum=2**32 - 1)


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of the strings in ``choices``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {tuple(choices)}; got {type(value).__name__}")
    if value not in choices:
        accepted = " or ".join(map(repr, choices)) if len(choices) == 2 else f"one of {tuple(choices)}"
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return value


def check_pair(value: object, name: str, **bounds: Any) -> tuple[float, float]:
    """A pair ``(low, high)`` of reals with ``low <= high``, each checked by :func:`check_float` with ``bounds``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a pair (low, high), got {type(value).__name__}")
    if len(value) != 2:
        raise ValueError(f"{name} must be a pair (low, high), got {len(value)} values: {value!r}")
    low, high = (check_float(v, name, **bounds) for v in value)
    if low > high:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {value!r}")
    return low, high
