"""CuPy path of the scan: the reduce / carry / apply launches of ``scan.cu`` on flattened tensors."""

from __future__ import annotations

import torch

from .._cuda import KernelFile

KERNEL = KernelFile(__package__, "scan.cu")

# Chunking on a GPU; first guesses, not yet tuned on a device.
#: lanes per multiprocessor from which one apply pass over the whole sequence (the fewest bytes moved) is used
SINGLE_PASS_LANES_PER_SM = 256
#: (chunk, lane) items per multiprocessor that a chunked scan aims for below that
CHUNKED_ITEMS_PER_SM = 1024


def gpu_chunk(num_steps: int, lanes: int, processors: int) -> int:
    """Chunk length on a GPU with ``processors`` multiprocessors: ``T`` (no chunks) for wide scans,
    else short enough that the (chunk, lane) items fill the device (see the constants above)."""
    if lanes >= processors * SINGLE_PASS_LANES_PER_SM:
        return num_steps
    chunks = min(num_steps, -(-processors * CHUNKED_ITEMS_PER_SM // lanes))
    return -(-num_steps // chunks)


def _processors(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def scan_cupy(
    a: torch.Tensor,
    b: torch.Tensor,
    h0: torch.Tensor,
    *,
    reverse: bool = False,
    chunk: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    r""":math:`h_t = a_t h_{t-1} + b_t` (``reverse``: from the end) with the kernels; the contract
    of :func:`~snn_parallel.ops.scan.parallel.scan_2d` on contiguous float32 or complex64 CUDA
    tensors (``a`` ``[T, N]`` or ``[N]``, ``b`` ``[T, N]``, ``h0`` ``[N]``, ``out`` contiguous)."""
    num_steps, lanes = b.shape
    h = torch.empty_like(b) if out is None else out
    length = chunk or gpu_chunk(num_steps, lanes, _processors(b.device))
    chunks = -(-num_steps // length)
    prefix = "cscan" if b.is_complex() else "scan"
    sizes = (num_steps, lanes, length, int(a.dim() == 2), int(reverse))
    if chunks == 1:
        carry = h0.contiguous()
    else:
        chunk_a, chunk_h, carry = (torch.empty(chunks, lanes, dtype=b.dtype, device=b.device) for _ in range(3))
        KERNEL.launch_items(f"{prefix}_reduce", torch.float32, chunks * lanes, a, b, chunk_a, chunk_h, *sizes)
        KERNEL.launch_items(f"{prefix}_carry", torch.float32, lanes, chunk_a, chunk_h, h0.contiguous(), carry, chunks, lanes, int(reverse))
    KERNEL.launch_items(f"{prefix}_apply", torch.float32, chunks * lanes, a, b, carry, h, *sizes)
    return h
