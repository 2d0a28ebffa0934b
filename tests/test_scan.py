"""The gated linear scan against its step-by-step reference."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from snn_parallel.ops import linear_scan, linear_scan_reference

STEPS = [1, 2, 7, 64, 257]


def _decay(shape, dtype, kind):
    if kind == "real":
        return torch.rand(shape, dtype=dtype) * 0.98
    if kind == "log":
        return -torch.rand(shape, dtype=dtype) * 3
    return (torch.rand(shape, dtype=torch.float64) * 0.98 * torch.exp(1j * torch.rand(shape, dtype=torch.float64) * 3)).to(dtype)


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("chunk", [None, 1, 3, 16])
@pytest.mark.parametrize("kind", ["real", "log", "complex"])
@pytest.mark.parametrize("varying", [True, False])
def test_forward_matches_reference(steps, chunk, kind, varying):
    dtype = torch.complex128 if kind == "complex" else torch.float64
    shape = (steps, 3, 5) if varying else (5,)
    a = _decay(shape, dtype, kind)
    b = torch.randn(steps, 3, 5, dtype=dtype)
    h0 = torch.randn(3, 5, dtype=dtype)
    h, last = linear_scan(a, b, h0, log_decay=kind == "log", chunk=chunk)
    ref, ref_last = linear_scan_reference(a.exp() if kind == "log" else a, b, h0)
    torch.testing.assert_close(h, ref)
    torch.testing.assert_close(last, ref_last)
    torch.testing.assert_close(last, h[-1])


@pytest.mark.parametrize("steps", [1, 2, 6, 13])
@pytest.mark.parametrize("chunk", [None, 2, 4])
@pytest.mark.parametrize("kind", ["real", "log", "complex"])
@pytest.mark.parametrize("varying", [True, False])
def test_gradcheck(steps, chunk, kind, varying):
    dtype = torch.complex128 if kind == "complex" else torch.float64
    a = _decay((steps, 2, 3) if varying else (3,), dtype, kind).requires_grad_()
    b = torch.randn(steps, 2, 3, dtype=dtype, requires_grad=True)
    h0 = torch.randn(2, 3, dtype=dtype, requires_grad=True)
    assert gradcheck(lambda a, b, h0: linear_scan(a, b, h0, log_decay=kind == "log", chunk=chunk), (a, b, h0))


@pytest.mark.parametrize("steps", [1, 9, 300])
def test_gradients_match_reference_float32(steps):
    a = torch.rand(steps, 4, 6, requires_grad=True)
    b = torch.randn(steps, 4, 6, requires_grad=True)
    h0 = torch.randn(4, 6, requires_grad=True)
    weights = torch.randn(steps, 4, 6), torch.randn(4, 6)
    out = linear_scan(a, b, h0)
    ref = linear_scan_reference(a, b, h0)
    grads = torch.autograd.grad(sum((o * w).sum() for o, w in zip(out, weights)), (a, b, h0))
    ref_grads = torch.autograd.grad(sum((o * w).sum() for o, w in zip(ref, weights)), (a, b, h0))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)


def test_state_carried_between_calls():
    a, b = torch.rand(50, 2, 3), torch.randn(50, 2, 3)
    whole, last = linear_scan(a, b)
    first, mid = linear_scan(a[:23], b[:23])
    second, end = linear_scan(a[23:], b[23:], mid)
    torch.testing.assert_close(torch.cat([first, second]), whole)
    torch.testing.assert_close(end, last)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_accumulates_in_float32(dtype):
    a, b = torch.rand(100, 8).to(dtype), torch.randn(100, 8).to(dtype)
    h, _ = linear_scan(a, b)
    assert h.dtype == torch.float32
    ref, _ = linear_scan_reference(a.float(), b.float())
    torch.testing.assert_close(h, ref)


def test_long_sequence_log_space_is_stable():
    """T = 30 000 with fast decays: a cumulative-product form would overflow; the scan stays exact."""
    steps = 30_000
    log_a = -torch.rand(steps, 2, 4, dtype=torch.float64) * 4
    b = torch.randn(steps, 2, 4, dtype=torch.float64)
    h32, _ = linear_scan(log_a.float(), b.float(), log_decay=True)
    ref, _ = linear_scan_reference(log_a.exp(), b)
    assert torch.isfinite(h32).all()
    torch.testing.assert_close(h32.double(), ref, rtol=1e-4, atol=1e-5)


def test_bad_inputs_name_the_argument():
    b = torch.randn(5, 2, 3)
    with pytest.raises(TypeError, match="a must be a torch.Tensor"):
        linear_scan([0.5], b)
    with pytest.raises(TypeError, match="b must have dtype"):
        linear_scan(torch.rand(5, 2, 3), torch.ones(5, 2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="T >= 1"):
        linear_scan(torch.rand(3), torch.randn(0, 2, 3))
    with pytest.raises(ValueError, match="time-varying decay must match"):
        linear_scan(torch.rand(4, 2, 3), b)
    with pytest.raises(ValueError, match="time-invariant decay must broadcast"):
        linear_scan(torch.rand(4), b)
    with pytest.raises(ValueError, match="larger shape"):
        linear_scan(torch.rand(7, 1, 1, 1), b)
    with pytest.raises(ValueError, match="h0 has shape"):
        linear_scan(torch.rand(3), b, torch.zeros(3))
    with pytest.raises(ValueError, match="b contains NaN"):
        linear_scan(torch.rand(3), torch.full((5, 2, 3), float("nan")))
    with pytest.raises(TypeError, match="log_decay=True"):
        linear_scan(torch.rand(3, dtype=torch.complex64), b, log_decay=True)
    with pytest.raises(ValueError, match="chunk must be"):
        linear_scan(torch.rand(3), b, chunk=0)
    with pytest.raises(ValueError, match="a is on meta"):
        linear_scan(torch.rand(3, device="meta"), b)
    with pytest.raises(ValueError, match="backend must be one of"):
        linear_scan(torch.rand(3), b, backend="triton")
    with pytest.raises(RuntimeError, match="linear_scan: backend='cupy' cannot run: the inputs are on cpu"):
        linear_scan(torch.rand(3), b, backend="cupy")
