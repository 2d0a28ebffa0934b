"""Time blocking and per-step constants for the fused CPU ops.

On a CPU every full-size eager op is a pass over main memory (and a fresh allocation that
page-faults in). The fused ops instead take one block of ``L`` steps at a time through all
their stages, with ``L·N`` elements sized to stay in cache. Both constants were tuned on
a 2-core CPU.
"""

from __future__ import annotations

import torch

#: elements per block: a few hundred kB of float32 per block tensor, inside L2
BLOCK_ELEMENTS = 1 << 16
#: at most this many blocks: past it, per-block overhead outweighs cache reuse (long T, few lanes)
MAX_BLOCKS = 32


def block_ranges(num_steps: int, lanes: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each block, in time order, for ``lanes`` parallel lanes."""
    cached = BLOCK_ELEMENTS // max(lanes, 1)
    length = max(1, min(num_steps, max(cached, -(-num_steps // MAX_BLOCKS))))
    return [(start, min(start + length, num_steps)) for start in range(0, num_steps, length)]


def step_constant(value: float, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a 0-dim tensor for a step loop over tensors like ``like``. An op with it gives what
    the op with the Python float gives, bit for bit (the float held in ``like``'s dtype, at least
    float32, as the op's own arithmetic takes a Python scalar), without wrapping the float into a new
    tensor at every call, which costs a step several microseconds per op."""
    return torch.tensor(value, dtype=torch.promote_types(like.dtype, torch.float32), device=like.device)
