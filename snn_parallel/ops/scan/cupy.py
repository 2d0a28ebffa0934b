"""CuPy path of the scan: the time-chunked kernels of ``scan.cu``, one launch each way (plus the look-back's flag
memset, see :func:`~snn_parallel.ops._cuda.workspace`)."""

from __future__ import annotations

import torch

from .._cuda import CHUNK_WARPS, REAL_AND_COMPLEX, KernelFile, grad_strides, kernel_op, workspace
from .._layout import to_params

KERNEL = KernelFile(__package__, "scan.cu", variants=REAL_AND_COMPLEX)


def _kernels(b: torch.Tensor) -> tuple[str, torch.dtype, torch.dtype]:
    """(build variant, build dtype, state dtype) for inputs like ``b``."""
    if b.is_complex():
        return "complex", torch.float32, torch.complex64
    return "real", b.dtype, torch.float32


def _fake_forward(a, b, h0, count, spatial, segments_per_block=None):
    state = torch.complex64 if b.is_complex() else torch.float32
    return b.new_empty(b.shape, dtype=state), b.new_empty(b.shape[1], dtype=state)


@kernel_op(
    "scan_forward",
    _fake_forward,
    "(Tensor a, Tensor b, Tensor h0, int count, int spatial, int? segments_per_block=None) -> (Tensor, Tensor)",
)
def _forward(a, b, h0, count, spatial, segments_per_block=None):
    steps, lanes = b.shape
    variant, build, state = _kernels(b)
    h = torch.empty(steps, lanes, dtype=state, device=b.device)
    h_last = torch.empty(lanes, dtype=state, device=b.device)
    grid, per_block, *look_back = workspace(steps, lanes, b, 2 if b.is_complex() else 1, segments_per_block)
    KERNEL.launch(f"scan_fwd_{variant}", build, (grid,), (32, CHUNK_WARPS), a, b, h0, h, h_last, *look_back,
                  int(a.dim() == 2), steps, lanes, count, spatial, per_block)  # fmt: skip
    return h, h_last


def scan_forward_cupy(a, b, h0, layout=(1, 1), *, segments_per_block=None):
    r"""``(h, h_last)`` of :math:`h_t = a_t h_{t-1} + b_t` for contiguous CUDA tensors ``a`` ``[T, N]`` or ``[P]``
    (``layout = (P, spatial)``, see :func:`~snn_parallel.ops._layout.param_layout`) and ``b`` ``[T, N]`` (float32,
    float16 or bfloat16, the same for both; or complex64) and ``h0`` ``[N]``; ``h`` and ``h_last`` in float32
    (complex64). The launch is the custom op ``snn_parallel::scan_forward``."""
    return _forward(a, b, h0, *layout, segments_per_block)


def _fake_backward(a, grad_h, grad_last, h, h0, count, spatial, segments_per_block=None):
    return (
        torch.empty_like(a) if a.dim() == 2 else a.new_empty(count),
        h.new_empty(h.shape, dtype=a.dtype),
        torch.empty_like(h0),
    )


@kernel_op(
    "scan_backward",
    _fake_backward,
    "(Tensor a, Tensor? grad_h, Tensor? grad_last, Tensor h, Tensor h0, int count, int spatial, "
    "int? segments_per_block=None) -> (Tensor, Tensor, Tensor)",
)
def _backward(a, grad_h, grad_last, h, h0, count, spatial, segments_per_block=None):
    steps, lanes = h.shape
    # grad_h is read with its strides; grad_last ([N], e.g. the stride-0 ones of a sum's backward) as a copy
    grad_last = None if grad_last is None else grad_last.contiguous()
    variant, _, state = _kernels(h)
    build = torch.float32 if h.is_complex() else a.dtype  # the storage dtype of a (and of the gradients written)
    varying = a.dim() == 2
    grad_b = torch.empty(steps, lanes, dtype=a.dtype, device=h.device)
    grad_h0 = torch.empty(lanes, dtype=state, device=h.device)
    grid, per_block, *look_back = workspace(steps, lanes, h, 2 if h.is_complex() else 1, segments_per_block)
    groups = max(1, grid // -(-lanes // 32))
    grad_a = torch.empty_like(grad_b) if varying else None
    partial = None if varying else torch.empty(groups, lanes, dtype=state, device=h.device)
    KERNEL.launch(f"scan_bwd_{variant}", build, (grid,), (32, CHUNK_WARPS), a, grad_h, grad_last, h, h0, grad_a,
                  partial, grad_b, grad_h0, *look_back, int(varying), steps, lanes, count, spatial,
                  *grad_strides(grad_h), per_block)  # fmt: skip
    if not varying:
        grad_a = to_params(partial, (count, spatial), groups=True).to(a.dtype)
    return grad_a, grad_b, grad_h0


def scan_backward_cupy(a, grad_h, grad_last, h, h0, layout=(1, 1), *, segments_per_block=None):
    """Gradients ``(a, b, h0)`` from those of ``h`` (``[T, N]`` with any strides, or ``None``) and ``h_last``
    (or ``None``); ``a``'s and ``b``'s in the dtype of ``a``, ``h0``'s in ``h``'s. The launch is the custom op
    ``snn_parallel::scan_backward``."""
    return _backward(a, grad_h, grad_last, h, h0, *layout, segments_per_block)
