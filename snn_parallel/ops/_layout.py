"""Per-lane parameters in their compact form, shared by the ops whose kernels read them in-kernel.

A parameter broadcastable to the lane shape ``S`` (e.g. per channel ``[C]`` of ``[B, C, *spatial]``) reaches the
kernels as ``[P]``, read for lane ``n`` (row-major over ``S``) at ``(n // spatial) % P`` instead of being
expanded to every lane.
"""

from __future__ import annotations

import math

import torch


def param_layout(shape: torch.Size, *params: torch.Tensor | None) -> tuple[int, int, int, int]:
    """Where per-lane parameters broadcastable to the lane shape ``shape`` vary: ``(lo, hi, P, spatial)`` with
    dims ``[lo, hi)`` of ``shape`` spanning every dim along which some parameter has more than one value,
    ``P`` their product and ``spatial`` the product of the dims after them. Lane ``n`` (row-major over
    ``shape``) then reads parameter ``(n // spatial) % P``: per channel ``[C]`` of ``[B, C, *spatial]`` gives
    ``P = C``; a scalar ``P = 1``."""
    varying = set()
    for param in params:
        if param is not None:
            aligned = (1,) * (len(shape) - param.dim()) + tuple(param.shape)
            varying |= {i for i, size in enumerate(aligned) if size != 1}
    lo, hi = (min(varying), max(varying) + 1) if varying else (0, 0)
    return lo, hi, math.prod(shape[lo:hi]), math.prod(shape[hi:])


def compact(param: torch.Tensor, shape: torch.Size, lo: int, hi: int) -> torch.Tensor:
    """``param`` (broadcastable to ``shape``) as ``[P]``, contiguous as the kernels read it: its values along dims
    ``[lo, hi)`` (differentiable; the tensor itself when ``param`` already spans them contiguously, as a per-channel
    ``[C]`` does; a copy of an expanded one, e.g. a shared value spread to the channels, whose stride is 0)."""
    aligned = (1,) * (len(shape) - param.dim()) + tuple(param.shape)
    if aligned[lo:hi] == tuple(shape[lo:hi]):
        return param.reshape(-1).contiguous()
    full = param.reshape(aligned).expand(shape)
    return full[(0,) * lo + (Ellipsis,) + (0,) * (len(shape) - hi)].reshape(-1).contiguous()


def per_lane(param: torch.Tensor, lanes: int, layout: tuple[int, int]) -> torch.Tensor:
    """A ``[P]`` parameter for every lane, ``[N]``."""
    count, spatial = layout
    return param.view(1, count, 1).expand(lanes // (count * spatial), count, spatial).reshape(lanes)


# -- a threshold: one number for every lane, or a tensor with a gradient ---------------------------------
def compact_threshold(
    value: float | torch.Tensor, shape: torch.Size, lo: int, hi: int, dtype: torch.dtype
) -> float | torch.Tensor:
    """A threshold-like parameter (``linear_fire``'s ``v_threshold``, ``dsn_membrane``'s ``shift``) as the ops pass
    it on: a number as a float (the kernels take it by value, no launch), a tensor as ``[P]`` (:func:`compact`) in
    ``dtype``, at least float32 (a threshold is not rounded to half precision)."""
    if not isinstance(value, torch.Tensor):
        return float(value)
    return compact(value.to(torch.promote_types(dtype, torch.float32)), shape, lo, hi)


def threshold_per_lane(value: float | torch.Tensor, lanes: int, layout: tuple[int, int]) -> float | torch.Tensor:
    """:func:`per_lane` of a ``[P]`` threshold; a number as it is."""
    return per_lane(value, lanes, layout) if isinstance(value, torch.Tensor) else value


def threshold_arguments(value: float | torch.Tensor) -> tuple[torch.Tensor | None, float]:
    """A threshold as the kernels take it: ``(pointer, number)``, the ``[P]`` tensor and 0, or ``None`` and the
    number (read where the pointer is null)."""
    return (value, 0.0) if isinstance(value, torch.Tensor) else (None, float(value))


def to_params(lanes: torch.Tensor, layout: tuple[int, int], *, groups: bool = False) -> torch.Tensor:
    """Sum per-lane values ``[N]`` (e.g. a gradient) into their ``[P]`` parameters, in one reduction; ``groups``:
    the values are ``[G, N]`` partial sums, summed over ``G`` too."""
    count, spatial = layout
    if groups:
        return lanes.reshape(lanes.shape[0], -1, count, spatial).sum((0, 1, 3))
    return lanes.reshape(-1, count, spatial).sum((0, 2))
