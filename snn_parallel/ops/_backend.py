"""Backend resolution for the ops: one place decides between the torch path and the CuPy kernels.

``backend`` is ``"auto"``, ``"torch"`` or ``"cupy"``. The torch path always works, on any device.
The CuPy path (:mod:`snn_parallel.ops._cuda`) runs each op's CUDA kernels; it needs CUDA tensors,
an importable CuPy that can compile and load a kernel on their device (checked once per device), and
inputs the kernels implement (storage dtypes float32, float16, bfloat16; our own spike functions).
``"auto"`` takes the CuPy path whenever it can run and the torch path otherwise, and logs its choice
for CUDA tensors once per op and reason; an explicit ``"cupy"`` that cannot run raises
``RuntimeError`` naming the op and the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import torch

from ..surrogate import Surrogate
from . import _cuda
from ._cuda import SPIKE_KINDS, spike_code

logger = logging.getLogger("snn_parallel")

BACKENDS = ("auto", "torch", "cupy")
_announced: set[tuple[str, str]] = set()


class CupyUnavailableError(RuntimeError):
    """``backend="cupy"`` asked of ``op`` where its kernels cannot run, for ``reason``."""

    def __init__(self, op: str, reason: str) -> None:
        super().__init__(f"{op}: backend='cupy' cannot run: {reason}; use backend='torch' or 'auto'")
        self.op, self.reason = op, reason


def _no_gap() -> None:
    return None


def resolve_backend(
    backend: str, like: torch.Tensor, *, op: str, unsupported: Callable[[], str | None] = _no_gap
) -> str:
    """Return the backend (``"torch"`` or ``"cupy"``) that runs ``op`` for tensors like ``like``.

    Args:
        backend: the requested backend.
        like: an input of the op (its device decides).
        op: the op's name, for messages.
        unsupported: returns why the kernels cannot take the op's inputs (see :func:`kernel_gap`), or
            ``None``; called only when the CuPy path is considered.

    Raises:
        ValueError: unknown backend name.
        CupyUnavailableError: ``"cupy"`` requested but it cannot run these inputs (a ``RuntimeError``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch" or (backend == "auto" and not like.is_cuda):
        return "torch"
    reason = _cupy_gap(like, unsupported)
    if backend == "cupy":
        if reason is not None:
            raise CupyUnavailableError(op, reason)
        return "cupy"
    chosen = "torch" if reason else "cupy"
    if (op, reason or "") not in _announced:
        _announced.add((op, reason or ""))
        why = f"the CuPy kernels cannot run: {reason}" if reason else "CuPy kernels for CUDA tensors"
        logger.info("%s: backend='auto' uses %s (%s)", op, chosen, why)
    return chosen


def _cupy_gap(like: torch.Tensor, unsupported: Callable[[], str | None]) -> str | None:
    """Why the CuPy path cannot run for ``like``, or ``None``."""
    if not like.is_cuda:
        return f"the inputs are on {like.device}; the CuPy kernels need CUDA tensors"
    gap = unsupported()
    if gap is not None:
        return gap
    index = torch.cuda.current_device() if like.device.index is None else like.device.index
    return _cuda.unavailable_reason(index)


def kernel_gap(
    storage: Iterable[tuple[str, torch.Tensor]] = (),
    *,
    float32: Iterable[tuple[str, torch.Tensor]] = (),
    spike_fn: Surrogate | None = None,
) -> str | None:
    """Why the kernels cannot take these inputs, or ``None``.

    Args:
        storage: ``(name, tensor)`` pairs the kernels read in a storage dtype (float32, float16,
            bfloat16).
        float32: ``(name, tensor)`` pairs the kernels read in float32 or complex64 (per-lane
            parameters; half precision is widened, double precision is not narrowed).
        spike_fn: the op's spike function, if any.
    """
    for name, tensor in storage:
        if tensor.dtype not in _cuda.KERNEL_DTYPES:
            return f"{name} has dtype {tensor.dtype} (the kernels take float32, float16 and bfloat16)"
    for name, tensor in float32:
        if tensor.dtype in (torch.float64, torch.complex128):
            return f"{name} has dtype {tensor.dtype} (the kernels compute in float32 and complex64)"
    if spike_fn is not None and spike_code(spike_fn) is None:
        ours = ", ".join(cls.__name__ for cls in SPIKE_KINDS)
        return f"the spike function {spike_fn!r} has no kernel (these have: {ours})"
    return None
