"""Fused ops (DSN membrane, linear-membrane spiking, LTC) against their step references."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from snn_parallel.ops import (
    dsn_membrane,
    dsn_membrane_reference,
    linear_fire,
    linear_fire_reference,
    ltc_scan,
    ltc_scan_reference,
    soft_reset_lif_reference,
)
from snn_parallel.surrogate import ATan, IntegerSpike, MultiGaussian

F64 = torch.float64


def _weighted_grads(outputs, weights, inputs):
    loss = sum(((o.real if o.is_complex() else o) * w).sum() for o, w in zip(outputs, weights))
    return torch.autograd.grad(loss, inputs, allow_unused=True, materialize_grads=True)


def _assert_same_grads(outputs, reference, inputs, **tol):
    weights = [torch.randn_like(o.real if o.is_complex() else o) for o in outputs]
    for g, r in zip(_weighted_grads(outputs, weights, inputs), _weighted_grads(reference, weights, inputs)):
        torch.testing.assert_close(g, r, **tol)


# -- DSN ---------------------------------------------------------------------------------
def _dsn_inputs(steps, taps, dtype=F64):
    return (
        torch.randn(steps, 2, 3, dtype=dtype, requires_grad=True),
        torch.randn(taps - 1, 2, 3, dtype=dtype, requires_grad=True),
        torch.randn(taps, 3, dtype=dtype, requires_grad=True),
        torch.randn(3, dtype=dtype, requires_grad=True),
        torch.randn(2, 3, dtype=dtype, requires_grad=True),
    )


@pytest.mark.parametrize("block", [1 << 16, 6, 13])
@pytest.mark.parametrize("steps", [1, 2, 5, 17])
@pytest.mark.parametrize("taps", [1, 2, 4])
def test_dsn_membrane_matches_reference(block, steps, taps, small_blocks):
    small_blocks(block)
    x, history, weight, bias, h0 = inputs = _dsn_inputs(steps, taps)
    spike_fn = ATan()
    spikes, h, last = dsn_membrane(x, history, weight, bias, 0.25, h0, spike_fn, 1.0)
    ref_h, ref_last = dsn_membrane_reference(x, history, weight, bias, 0.25, h0)
    ref_spikes = spike_fn(ref_h - 1.0)
    torch.testing.assert_close(h, ref_h)
    torch.testing.assert_close(last, ref_last)
    torch.testing.assert_close(spikes, ref_spikes)
    _assert_same_grads((spikes, h, last), (ref_spikes, ref_h, ref_last), inputs)


@pytest.mark.parametrize("block", [1 << 16, 6])
@pytest.mark.parametrize("steps", [1, 4, 9])
def test_dsn_membrane_gradcheck(block, steps, small_blocks, smooth):
    small_blocks(block)
    assert gradcheck(lambda x, hi, w, b, h0: dsn_membrane(x, hi, w, b, 0.25, h0, smooth, 0.3), _dsn_inputs(steps, 4))


def test_dsn_integer_spikes_and_spatial_weights():
    x = torch.rand(6, 2, 3, 4, 4, dtype=F64) * 6
    history = torch.zeros(3, 2, 3, 4, 4, dtype=F64)
    weight, bias = torch.randn(4, 3, 1, 1, dtype=F64), torch.randn(3, 1, 1, dtype=F64)
    spikes, h, _ = dsn_membrane(x, history, weight, bias, 0.25, torch.zeros(2, 3, 4, 4, dtype=F64), IntegerSpike(4))
    ref_h, _ = dsn_membrane_reference(x, history, weight, bias, 0.25, torch.zeros(2, 3, 4, 4, dtype=F64))
    torch.testing.assert_close(h, ref_h)
    torch.testing.assert_close(spikes, ref_h.round().clamp(0, 4))


def test_dsn_long_sequence_float32_matches_float64():
    """T = 30 000 in float32 stays finite and within 1e-4 (relative) of the float64 loop."""
    steps = 30_000
    x, history, weight, bias, h0 = (t.detach() for t in _dsn_inputs(steps, 4))
    bias = bias - 2.0  # fast decays, where a cumulative-product form would overflow
    _, h32, _ = dsn_membrane(x.float(), history.float(), weight.float(), bias.float(), 0.25, h0.float(), ATan(), 1.0)
    ref, _ = dsn_membrane_reference(x, history, weight, bias, 0.25, h0)
    assert torch.isfinite(h32).all()
    assert ((h32.double() - ref).norm() / ref.norm()).item() < 1e-4


# -- linear membrane (PRF, decoupled LIF) --------------------------------------------------
def _fire_inputs(steps, complex_decay):
    decay = torch.rand(3, dtype=F64)
    if complex_decay:
        decay = decay * torch.exp(1j * torch.rand(3, dtype=F64) * 2)
    return (
        torch.randn(steps, 2, 3, dtype=F64, requires_grad=True),
        decay.requires_grad_(),
        torch.rand(3, dtype=F64, requires_grad=True),
        torch.randn(2, 3, dtype=decay.dtype, requires_grad=True),
    )


@pytest.mark.parametrize("block", [1 << 16, 6, 1])
@pytest.mark.parametrize("steps", [1, 2, 7, 30])
@pytest.mark.parametrize("complex_decay", [False, True])
@pytest.mark.parametrize("reset", [False, True])
def test_linear_fire_matches_reference(block, steps, complex_decay, reset, small_blocks):
    small_blocks(block)
    inputs = _fire_inputs(steps, complex_decay)
    bias0 = torch.rand(2, 3, dtype=F64)
    rho = torch.rand(3, dtype=F64) if reset else None
    out = linear_fire(*inputs, bias0, ATan(), 0.5, rho)
    ref = linear_fire_reference(*inputs, bias0, ATan(), 0.5, rho)
    for o, r in zip(out, ref):
        torch.testing.assert_close(o, r)
    _assert_same_grads(out[:3], ref[:3], inputs)


@pytest.mark.parametrize("block", [1 << 16, 6])
@pytest.mark.parametrize("steps", [1, 5, 11])
@pytest.mark.parametrize("complex_decay", [False, True])
def test_linear_fire_gradcheck(block, steps, complex_decay, small_blocks, smooth):
    small_blocks(block)
    bias0 = torch.zeros(2, 3, dtype=F64)
    assert gradcheck(lambda *a: linear_fire(*a, bias0, smooth, 0.5)[:3], _fire_inputs(steps, complex_decay))


@pytest.mark.parametrize("inclusive", [True, False])
def test_decoupled_reset_spikes_equal_sequential_soft_reset_lif(inclusive):
    """The PRF paper's decoupled reset: bit-identical spikes over 2 000 steps."""
    steps, beta = 2000, torch.tensor([0.5, 0.8, 0.95], dtype=F64)
    current = torch.rand(steps, 4, 3, dtype=F64) * 0.9
    surrogate = ATan(inclusive=inclusive)
    zeros = torch.zeros(4, 3, dtype=F64)
    spikes, membrane, _, _ = linear_fire(current, beta, torch.ones(3, dtype=F64), zeros, zeros, surrogate, 1.0, beta)
    ref_spikes, ref_membrane, _, _ = soft_reset_lif_reference(current, beta, 1.0, surrogate)
    assert ref_spikes.sum() > 100
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(membrane, ref_membrane)


def test_decoupled_reset_gradient_is_detached_reset_bptt():
    beta = torch.tensor([0.6, 0.9], dtype=F64)
    current = (torch.rand(40, 3, 2, dtype=F64) * 0.8).requires_grad_()
    zeros = torch.zeros(3, 2, dtype=F64)
    spikes, *_ = linear_fire(current, beta, torch.ones(2, dtype=F64), zeros, zeros, ATan(), 1.0, beta)
    ref_spikes, *_ = soft_reset_lif_reference(current, beta, 1.0, ATan())
    weights = torch.randn_like(spikes)
    (g,) = torch.autograd.grad((spikes * weights).sum(), current)
    (r,) = torch.autograd.grad((ref_spikes * weights).sum(), current)
    torch.testing.assert_close(g, r)


# -- LTC -----------------------------------------------------------------------------------
def _ltc_inputs(steps):
    shape = (steps, 2, 3)
    return (
        torch.randn(shape, dtype=F64, requires_grad=True),
        torch.rand(shape, dtype=F64).requires_grad_(),
        torch.rand(shape, dtype=F64).requires_grad_(),
        torch.randn(2, 3, dtype=F64, requires_grad=True),
        torch.rand(2, 3, dtype=F64).round().requires_grad_(),
        torch.rand(2, 3, dtype=F64, requires_grad=True),
    )


@pytest.mark.parametrize("steps", [1, 2, 9, 33])
def test_ltc_scan_matches_reference(steps):
    inputs = _ltc_inputs(steps)
    surrogate = MultiGaussian(inclusive=False)
    out = ltc_scan(*inputs, 0.1, 1.8, surrogate)
    ref = ltc_scan_reference(*inputs, 0.1, 1.8, surrogate)
    for o, r in zip(out, ref):
        torch.testing.assert_close(o, r)
    _assert_same_grads(out, ref, inputs)


@pytest.mark.parametrize("steps", [1, 3, 7])
def test_ltc_scan_gradcheck(steps, smooth):
    assert gradcheck(lambda *a: ltc_scan(*a, 0.1, 1.8, smooth), _ltc_inputs(steps))
