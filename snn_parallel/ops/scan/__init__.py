r"""Gated linear recurrence :math:`h_t = a_t \odot h_{t-1} + b_t`, real or complex.

This one op serves DSN (input-dependent decay), PRF (complex per-channel decay) and the
decoupled-reset LIF filter. :func:`linear_scan` is the public entry point; its backward is
a hand-written reverse scan, so training stores ``a`` and ``h`` once instead of a per-step
graph:

.. math::

    G_t = \frac{\partial L}{\partial h_t} + \bar a_{t+1} G_{t+1}, \qquad
    \frac{\partial L}{\partial b_t} = G_t, \qquad
    \frac{\partial L}{\partial a_t} = G_t\,\bar h_{t-1}, \qquad
    \frac{\partial L}{\partial h_0} = \bar a_0 G_0

(bars are complex conjugates, following PyTorch's convention for complex gradients).
"""

from __future__ import annotations

from typing import Any

import torch

from ..._validation import check_bool, check_int, check_same_device, check_tensor
from .._backend import resolve_backend
from .._layout import compact, param_layout, per_lane, to_params
from .cupy import scan_backward_cupy, scan_forward_cupy
from .parallel import default_chunk, scan_2d
from .reference import linear_scan_reference

__all__ = ["linear_scan", "linear_scan_reference", "default_chunk"]

_SCAN_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128)


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """Common dtype of the inputs, with half precision accumulated in float32."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class _LinearScan(torch.autograd.Function):
    """Flattened scan: ``a`` is ``[T, N]`` or ``[P]`` (``layout``, see :func:`~snn_parallel.ops._layout.param_layout`),
    ``b`` is ``[T, N]``, ``h0`` is ``[N]``. On the CuPy path ``a`` and ``b`` may be float16/bfloat16 (read as they
    are, accumulated in float32)."""

    @staticmethod
    def forward(ctx: Any, a, b, h0, log_decay: bool, chunk: int | None, backend: str, layout: tuple[int, int]):
        decay = a.exp() if log_decay else a
        if backend == "cupy":
            h, last = scan_forward_cupy(decay, b, h0, layout)
        else:
            lanes = decay if decay.dim() == 2 else per_lane(decay, b.shape[1], layout)
            log_lanes = None if not log_decay else a if a.dim() == 2 else per_lane(a, b.shape[1], layout)
            h = scan_2d(lanes, b, h0, log_a=log_lanes, chunk=chunk)
            last = h[-1].clone()
        ctx.save_for_backward(decay, h, h0)
        ctx.log_decay, ctx.chunk, ctx.backend, ctx.layout = log_decay, chunk, backend, layout
        ctx.set_materialize_grads(False)
        return h, last

    @staticmethod
    def backward(ctx: Any, grad_h: torch.Tensor | None, grad_last: torch.Tensor | None):
        decay, h, h0 = ctx.saved_tensors
        if grad_h is None and grad_last is None:
            return (None,) * 7
        if ctx.backend == "cupy":
            grad_a, g, grad_h0 = scan_backward_cupy(decay, grad_h, grad_last, h, h0, ctx.layout)
        else:
            lanes = decay if decay.dim() == 2 else per_lane(decay, h.shape[1], ctx.layout)
            grad_a, g, grad_h0 = _backward_torch(lanes, h, h0, grad_h, grad_last, ctx.chunk, ctx.needs_input_grad[0])
            if grad_a is not None and decay.dim() == 1:
                grad_a = to_params(grad_a, ctx.layout)
        if grad_a is not None and ctx.log_decay:
            grad_a = grad_a * decay
        needs = ctx.needs_input_grad
        return (
            grad_a if needs[0] else None,
            g if needs[1] else None,
            grad_h0 if needs[2] else None,
            None,
            None,
            None,
            None,
        )


def _backward_torch(decay, h, h0, grad_h, grad_last, chunk, needs_a):
    r"""Gradients ``(a, b, h0)`` on the torch path: :math:`G_t = d_t + \bar a_{t+1} G_{t+1}`, a reverse scan of
    length ``T - 1`` started from :math:`G_{T-1} = d_{T-1}`."""
    varying = decay.dim() == 2
    d = torch.zeros_like(h) if grad_h is None else grad_h.clone(memory_format=torch.contiguous_format)
    if grad_last is not None:
        d[-1] += grad_last
    g = torch.empty_like(d)
    g[-1] = d[-1]
    if d.shape[0] > 1:
        reverse_decay = (decay[1:] if varying else decay).conj().resolve_conj()
        scan_2d(reverse_decay, d[:-1], d[-1], reverse=True, chunk=chunk, out=g[:-1])
    grad_h0 = (decay[0] if varying else decay).conj() * g[0]
    grad_a = None
    if needs_a:
        if varying:
            grad_a = torch.empty_like(g)
            torch.mul(g[0], h0.conj(), out=grad_a[0])
            torch.mul(g[1:], h[:-1].conj(), out=grad_a[1:])
        else:
            grad_a = (g[1:] * h[:-1].conj()).sum(0) + g[0] * h0.conj()
    return grad_a, g, grad_h0


def linear_scan(
    a: torch.Tensor,
    b: torch.Tensor,
    h0: torch.Tensor | None = None,
    *,
    log_decay: bool = False,
    chunk: int | None = None,
    backend: str = "auto",
    validate: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Solve :math:`h_t = a_t \odot h_{t-1} + b_t` for all ``t`` in parallel.

    Args:
        a: decays. Either time-varying, with exactly the shape of ``b``, or time-invariant,
            with fewer dims than ``b`` and broadcastable to ``b.shape[1:]`` (e.g. ``[C]`` or
            ``[C, 1, 1]`` for per-channel decays). Real or complex.
        b: inputs ``[T, *S]``, time-major, ``T >= 1``. Real or complex.
        h0: initial state ``[*S]``; zeros if ``None``.
        log_decay: ``a`` holds :math:`\log a_t` (real); chunk totals are then sums of logs.
        chunk: chunk length of the parallel scan (tuning knob; the result does not depend on it).
        backend: ``"auto"``, ``"torch"`` or ``"cupy"`` (see :mod:`snn_parallel.ops._backend`); the
            kernels read float32, float16, bfloat16 (``a`` and ``b`` alike) and complex64, and compute in
            float32 (complex64), as the torch path does.
        validate: check the arguments (set ``False`` only where the caller already has).

    Returns:
        ``(h, h_last)``: all states ``[T, *S]`` and the final state ``[*S]``, in the promoted
        dtype of the inputs (half precision is accumulated in float32 and returned as such).

    Raises:
        TypeError: non-tensor inputs, unsupported dtypes, or complex ``a`` with ``log_decay``.
        ValueError: mismatched shapes or devices, ``T = 0``, non-finite values.
    """
    if validate:
        _check_scan_args(a, b, h0, log_decay, chunk)
    dtype = _compute_dtype(a, b, *(() if h0 is None else (h0,)))

    def gap() -> str | None:
        return (
            None
            if dtype in (torch.float32, torch.complex64)
            else f"the scan computes in {dtype} (the kernels: float32, complex64)"
        )

    backend = resolve_backend(backend, b, op="linear_scan", unsupported=gap)
    num_steps, state_shape = b.shape[0], b.shape[1:]
    # the kernels read float16 and bfloat16 as they are (a and b in the same one) and accumulate in float32
    half = b.dtype in (torch.float16, torch.bfloat16) and a.dtype == b.dtype and not log_decay
    storage = b.dtype if backend == "cupy" and half else dtype
    b2 = b.to(storage).reshape(num_steps, -1).contiguous()
    layout = (1, 1)
    if a.dim() == b.dim():
        a2 = a.to(storage).reshape(num_steps, -1).contiguous()
    else:  # per channel (or any broadcast) as [P], not expanded to every lane
        lo, hi, *layout = param_layout(state_shape, a)
        a2 = compact(a.to(storage), state_shape, lo, hi)
    lanes = b2.shape[1]
    h02 = torch.zeros(lanes, dtype=dtype, device=b.device) if h0 is None else h0.to(dtype).reshape(-1).contiguous()
    h, last = _LinearScan.apply(a2, b2, h02, log_decay, chunk, backend, tuple(layout))
    return h.view(b.shape), last.view(state_shape)


def _check_scan_args(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, log_decay: bool, chunk: int | None
) -> None:
    b = check_tensor(b, "b", dtypes=_SCAN_DTYPES)
    a = check_tensor(a, "a", dtypes=_SCAN_DTYPES)
    if b.dim() < 1 or b.shape[0] == 0:
        raise ValueError(f"b must be time-major [T, ...] with T >= 1, got shape {tuple(b.shape)}")
    check_same_device(a, "a", b, "b")
    if check_bool(log_decay, "log_decay") and a.is_complex():
        raise TypeError("a must be real when log_decay=True (log of a complex decay is ambiguous)")
    state_shape = b.shape[1:]
    varying = a.dim() == b.dim()
    if varying and a.shape != b.shape:
        raise ValueError(f"a has shape {tuple(a.shape)}; a time-varying decay must match b's shape {tuple(b.shape)}")
    if not varying:
        try:
            torch.broadcast_shapes(a.shape, state_shape)
        except RuntimeError:
            raise ValueError(
                f"a has shape {tuple(a.shape)}; a time-invariant decay must broadcast to "
                f"b.shape[1:] = {tuple(state_shape)}"
            ) from None
        if torch.broadcast_shapes(a.shape, state_shape) != state_shape:
            raise ValueError(
                f"a with shape {tuple(a.shape)} would broadcast b.shape[1:] = {tuple(state_shape)} to a larger shape"
            )
    if h0 is not None:
        h0 = check_tensor(h0, "h0", dtypes=_SCAN_DTYPES)
        if h0.shape != state_shape:
            raise ValueError(f"h0 has shape {tuple(h0.shape)}, expected b.shape[1:] = {tuple(state_shape)}")
        check_same_device(h0, "h0", b, "b")
    if chunk is not None:
        check_int(chunk, "chunk", minimum=1)
