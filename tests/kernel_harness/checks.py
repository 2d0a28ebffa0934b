"""Test support: comparisons of an op's results with its float64 reference, shared by the op tests."""

from __future__ import annotations

import torch

from snn_parallel.ops._cuda import SPIKE_KINDS
from snn_parallel.surrogate import IntegerSpike, Rect, Surrogate

F64 = torch.float64
#: our surrogates by name whose spikes are a Heaviside step (the kernels implement each)
SURROGATES = {cls.name: cls for cls in SPIKE_KINDS if cls is not IntegerSpike}


def wide_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.complex128 if t.is_complex() else torch.float64


def leaves(
    *tensors: torch.Tensor, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> list[torch.Tensor]:
    """Fresh leaves requiring grad (``dtype``: widen to float64/complex128 when ``torch.float64``)."""
    out = []
    for t in tensors:
        to = wide_dtype(t) if dtype == torch.float64 else (dtype or t.dtype)
        out.append(t.detach().to(device=device or t.device, dtype=to).requires_grad_())
    return out


def assert_close(actual, expected, rtol=1e-5, atol=1e-5, what=""):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


def compare(got, expected, names, rtol=2e-5):
    """``got`` (a float32 path) against ``expected`` (float64), relative to each tensor's size."""
    for name, x, y in zip(names, got, expected, strict=True):
        y = y.detach().cpu()
        scale = y.abs().max().item() if y.numel() else 0.0
        assert_close(x.detach().cpu().to(y.dtype), y, rtol=rtol, atol=rtol * max(scale, 1e-3), what=name)


def grads(outputs, inputs, seed=0):
    """Gradients of a random weighting of ``outputs`` (real or complex) with respect to ``inputs``."""
    gen = torch.Generator().manual_seed(seed)
    weights = [
        torch.randn(o.shape, dtype=wide_dtype(o), generator=gen).to(device=o.device, dtype=o.dtype) for o in outputs
    ]
    return torch.autograd.grad(outputs, inputs, weights)


def weighted_grads(outputs, weights, inputs):
    loss = sum(((o.real if o.is_complex() else o) * w).sum() for o, w in zip(outputs, weights, strict=True))
    return torch.autograd.grad(loss, inputs, allow_unused=True, materialize_grads=True)


def assert_same_grads(outputs, reference, inputs, **tol):
    weights = [torch.randn_like(o.real if o.is_complex() else o) for o in outputs]
    for g, r in zip(weighted_grads(outputs, weights, inputs), weighted_grads(reference, weights, inputs), strict=True):
        torch.testing.assert_close(g, r, **tol)


def discontinuities(spike_fn: Surrogate) -> list[float]:
    """Where ``spike_fn``'s forward or surrogate derivative jumps (inputs are kept away from these)."""
    if isinstance(spike_fn, IntegerSpike):
        return [k + 0.5 for k in range(spike_fn.levels)] + [0.0, float(spike_fn.levels)]
    return [0.0] + ([spike_fn.width / 2, -spike_fn.width / 2] if isinstance(spike_fn, Rect) else [])


def clear_of(x: torch.Tensor, spike_fn: Surrogate, margin: float = 1e-4) -> bool:
    """Whether every value of ``x`` (the spike function's argument, float64) is ``margin`` away from a jump,
    so that float32 kernels take the same branch as the float64 reference."""
    return all(bool(((x - point).abs() > margin).all()) for point in discontinuities(spike_fn))


def assert_float32_matches(fast, reference, inputs) -> None:
    """``fast`` on float32 (complex64) copies of the float64 ``inputs`` gives ``reference``'s values and gradients."""
    low = [t.detach().to(torch.complex64 if t.is_complex() else torch.float32).requires_grad_() for t in inputs]
    out32, ref64 = fast(*low), reference(*inputs)
    weights = [torch.randn_like(o.real if o.is_complex() else o) for o in ref64]
    g32 = weighted_grads(out32, [w.float() for w in weights], low)
    g64 = weighted_grads(ref64, weights, inputs)
    for o, r in zip(out32, ref64, strict=True):
        torch.testing.assert_close(o.to(r.dtype), r, rtol=1e-4, atol=1e-4)
    for g, r in zip(g32, g64, strict=True):
        torch.testing.assert_close(g.to(r.dtype), r, rtol=1e-3, atol=1e-4)
