"""CuPy path of the scan: the time-chunked kernels of ``scan.cu``, one launch each way.

Launch configuration (cached per shape and device): a block covers 32 lanes and, per segment,
:data:`~snn_parallel.ops._cuda.SEGMENT` steps. Wide scans (at least :data:`ONE_PASS_TILES_PER_SM` lane tiles a
multiprocessor) give each block the whole sequence of its lanes, so no block waits for another; narrower ones
give each block one segment and pass the state across blocks by a decoupled look-back (``chunked.cuh``), whose
status flags are one memset per call.
"""

from __future__ import annotations

import functools
import math

import torch

from .._cuda import CHUNK_WARPS, SEGMENT, KernelFile

KERNEL = KernelFile(__package__, "scan.cu")
#: lane tiles (32 lanes) per multiprocessor from which a block walks the whole sequence of its tile
ONE_PASS_TILES_PER_SM = 4


@functools.cache
def chunking(steps: int, lanes: int, processors: int, segments_per_block: int | None = None) -> tuple[int, int, int]:
    """``(segments per block G, blocks along time, lane tiles)`` of a launch over ``[steps, lanes]`` on a device
    with ``processors`` multiprocessors (``segments_per_block`` forces G)."""
    segments, tiles = math.ceil(steps / SEGMENT), math.ceil(lanes / 32)
    if segments_per_block is None:
        segments_per_block = segments if tiles >= ONE_PASS_TILES_PER_SM * processors else 1
    per_block = max(1, min(segments_per_block, segments))
    return per_block, math.ceil(segments / per_block), tiles


def _processors(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def workspace(steps: int, lanes: int, like: torch.Tensor, dtype: torch.dtype, segments_per_block: int | None = None):
    """``(grid, G, flags, agg_d, agg_b, inclusive)``: the launch's grid size, segments per block and look-back
    buffers (``None`` when no block waits for another), for states of ``dtype`` on ``like``'s device."""
    per_block, groups, tiles = chunking(steps, lanes, _processors(like.device), segments_per_block)
    if groups == 1:
        return tiles, per_block, None, None, None, None
    flags = torch.zeros(groups * tiles + 1, dtype=torch.int32, device=like.device)
    agg_d, agg_b, inclusive = (torch.empty(groups, lanes, dtype=dtype, device=like.device) for _ in range(3))
    return groups * tiles, per_block, flags, agg_d, agg_b, inclusive


def _kernels(b: torch.Tensor) -> tuple[str, torch.dtype, torch.dtype]:
    """(kernel prefix, build dtype, state dtype) for inputs like ``b``."""
    if b.is_complex():
        return "cscan", torch.float32, torch.complex64
    return "scan", b.dtype, torch.float32


def scan_forward_cupy(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor, *, segments_per_block: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(h, h_last)`` of :math:`h_t = a_t h_{t-1} + b_t` for contiguous CUDA tensors ``a`` ``[T, N]`` or ``[N]``
    and ``b`` ``[T, N]`` (float32, float16 or bfloat16, the same for both; or complex64) and ``h0`` ``[N]``;
    ``h`` and ``h_last`` in float32 (complex64)."""
    steps, lanes = b.shape
    prefix, build, state = _kernels(b)
    h = torch.empty(steps, lanes, dtype=state, device=b.device)
    h_last = torch.empty(lanes, dtype=state, device=b.device)
    grid, per_block, *look_back = workspace(steps, lanes, b, state, segments_per_block)
    KERNEL.launch(f"{prefix}_fwd", build, (grid,), (32, CHUNK_WARPS), a, b, h0, h, h_last, *look_back,
                  int(a.dim() == 2), steps, lanes, per_block)  # fmt: skip
    return h, h_last


def scan_backward_cupy(
    a: torch.Tensor,
    grad_h: torch.Tensor | None,
    grad_last: torch.Tensor | None,
    h: torch.Tensor,
    h0: torch.Tensor,
    *,
    segments_per_block: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients ``(a, b, h0)`` from those of ``h`` (``[T, N]`` with any strides, or ``None``) and ``h_last``
    (or ``None``); ``a``'s and ``b``'s in the dtype of ``a``, ``h0``'s in ``h``'s."""
    steps, lanes = h.shape
    prefix, build, state = _kernels(h)
    varying = a.dim() == 2
    grad_b = torch.empty(steps, lanes, dtype=a.dtype, device=h.device)
    grad_h0 = torch.empty(lanes, dtype=state, device=h.device)
    grid, per_block, *look_back = workspace(steps, lanes, h, state, segments_per_block)
    groups = max(1, grid // math.ceil(lanes / 32))
    grad_a = torch.empty_like(grad_b) if varying else None
    partial = None if varying else torch.empty(groups, lanes, dtype=state, device=h.device)
    strides = grad_h.stride() if grad_h is not None else (0, 0)
    KERNEL.launch(f"{prefix}_bwd", build, (grid,), (32, CHUNK_WARPS), a, grad_h, grad_last, h, h0, grad_a, partial,
                  grad_b, grad_h0, *look_back, int(varying), steps, lanes, *strides, per_block)  # fmt: skip
    if not varying:
        grad_a = partial.sum(0).to(a.dtype)
    return grad_a, grad_b, grad_h0
