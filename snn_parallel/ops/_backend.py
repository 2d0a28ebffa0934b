"""Backend resolution for the ops: one place decides between the torch path and GPU kernels.

``backend`` is ``"auto"``, ``"torch"`` or ``"cupy"``. The torch path always works, on any
device. CuPy kernels are not part of this release: ``"auto"`` resolves to ``"torch"`` (and
says so once in the log when it sees a CUDA tensor), while an explicit ``"cupy"`` raises.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger("snn_parallel")

BACKENDS = ("auto", "torch", "cupy")
_announced: set[str] = set()


def resolve_backend(backend: str, like: torch.Tensor, *, op: str) -> str:
    """Return the backend that will run ``op`` for tensors like ``like``.

    Raises:
        ValueError: unknown backend name.
        RuntimeError: ``"cupy"`` requested but not available.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cupy":
        raise RuntimeError(
            f"backend='cupy' is not available for {op} in this version of snn_parallel; use 'torch' or 'auto'"
        )
    if backend == "auto" and like.is_cuda and op not in _announced:
        _announced.add(op)
        logger.info("%s: using the torch backend (no CuPy kernel for it in this version)", op)
    return "torch"
