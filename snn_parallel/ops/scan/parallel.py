r"""Parallel (chunked) torch implementation of :math:`h_t = a_t \odot h_{t-1} + b_t`.

The sequence is cut into ``n`` chunks of ``L`` steps (reduce-then-scan):

1. *reduce*: every chunk's total decay :math:`A_k = \prod_j a_j` and its end state from a
   zero start, all chunks at once (a loop of ``L`` steps over ``[n, N]`` tensors);
2. *carry*: the true state entering each chunk, a scan over the ``n`` chunk summaries;
3. *scan*: each chunk rerun from its carry, all chunks at once, writing the output.

No step divides by a cumulative product, so the result is as stable as the sequential loop
at any length; with decays given as logs, chunk totals are sums of logs. The Python-level
work is ``O(L + n)`` operations instead of ``O(T)``, each over ``T·N / L`` elements.
"""

from __future__ import annotations

import math

import torch

# Above this many parallel lanes a plain step loop already amortises the per-step overhead,
# and it moves half the bytes of the chunked scan (measured on a 2-core CPU).
SEQUENTIAL_LANES = 4096


def default_chunk(num_steps: int, lanes: int = 0) -> int:
    """Chunk length: ``T`` (a plain loop) for wide scans, else ``sqrt(T/2)``, which balances
    the ``2L`` in-chunk steps against the ``T/L`` carry steps."""
    if lanes >= SEQUENTIAL_LANES:
        return num_steps
    return max(1, round(math.sqrt(num_steps / 2)))


def scan_2d(
    a: torch.Tensor,
    b: torch.Tensor,
    h0: torch.Tensor,
    *,
    log_a: torch.Tensor | None = None,
    reverse: bool = False,
    chunk: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Scan over flattened tensors.

    Forward: :math:`h_t = a_t h_{t-1} + b_t` from :math:`h_{-1} = h_0`; reverse:
    :math:`h_t = a_t h_{t+1} + b_t` from :math:`h_T = h_0`.

    Args:
        a: decays ``[T, N]`` or ``[N]`` (time-invariant), contiguous.
        b: inputs ``[T, N]``, contiguous.
        h0: starting state ``[N]``.
        log_a: ``log(a)`` when known (real decays), used for chunk totals.
        reverse: run from the last step to the first.
        chunk: chunk length (default :func:`default_chunk`).
        out: buffer ``[T, N]`` for the result (may be a non-contiguous view).
    """
    num_steps = b.shape[0]
    h = torch.empty_like(b) if out is None else out
    varying = a.dim() == 2
    length = chunk or default_chunk(num_steps, b.shape[1])
    n = num_steps // length
    if n < 2:  # too short to gain from chunking
        _sequential(a, b, h0, h, range(num_steps)[::-1] if reverse else range(num_steps))
        return h

    rem = num_steps - n * length
    start = rem if reverse else 0  # the remainder sits at the end the scan reaches last
    span = slice(start, start + n * length)
    bc = b[span].view(n, length, -1)
    hc = h[span].view(n, length, -1)
    ac = a[span].view(n, length, -1) if varying else a
    inner = range(length - 1, -1, -1) if reverse else range(length)
    first, rest = inner[0], inner[1:]

    # 1. reduce: per-chunk total decay and end state from a zero start
    if not varying:
        total = a**length
    elif log_a is not None:
        total = log_a[span].view(n, length, -1).sum(1).exp()
    else:
        total = ac[:, first].clone()
        for j in rest:
            total.mul_(ac[:, j])
    local = bc[:, first].clone()
    for j in rest:
        local = torch.addcmul(bc[:, j], ac[:, j] if varying else a, local)

    # 2. carry: the state entering each chunk
    carries = torch.empty_like(local)
    state = h0
    for k in range(n - 1, -1, -1) if reverse else range(n):
        carries[k] = state
        state = torch.addcmul(local[k], total[k] if varying else total, state)

    # 3. scan inside every chunk from its carry
    prev = carries
    for j in inner:  # hc[:, j] is a strided view: assign (torch.compile refuses out= into it)
        prev = torch.addcmul(bc[:, j], ac[:, j] if varying else a, prev)
        hc[:, j] = prev

    tail = range(rem - 1, -1, -1) if reverse else range(n * length, num_steps)
    _sequential(a, b, state, h, tail)
    return h


def _sequential(a: torch.Tensor, b: torch.Tensor, state: torch.Tensor, h: torch.Tensor, steps: range) -> None:
    """Plain loop over ``steps`` writing into ``h``."""
    varying = a.dim() == 2
    for t in steps:
        torch.addcmul(b[t], a[t] if varying else a, state, out=h[t])
        state = h[t]
