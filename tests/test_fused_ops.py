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


@pytest.mark.parametrize("block", [1 << 16, 6, 1])
@pytest.mark.parametrize("steps", [1, 2, 9, 33])
def test_ltc_scan_matches_reference(block, steps, small_blocks):
    small_blocks(block)
    inputs = _ltc_inputs(steps)
    surrogate = MultiGaussian(inclusive=False)
    out = ltc_scan(*inputs, 0.1, 1.8, surrogate)
    ref = ltc_scan_reference(*inputs, 0.1, 1.8, surrogate)
    for o, r in zip(out, ref):
        torch.testing.assert_close(o, r)
    _assert_same_grads(out, ref, inputs)


@pytest.mark.parametrize("block", [1 << 16, 6])
@pytest.mark.parametrize("steps", [1, 3, 7])
def test_ltc_scan_gradcheck(block, steps, smooth, small_blocks):
    small_blocks(block)
    assert gradcheck(lambda *a: ltc_scan(*a, 0.1, 1.8, smooth), _ltc_inputs(steps))


# -- float32 against the float64 reference ------------------------------------------------
@pytest.mark.parametrize("steps", [1, 40])
def test_fused_ops_float32_gradients(steps):
    """Each fused op in float32 gives the float64 reference's values and gradients."""
    cases = [
        (lambda *a: dsn_membrane(*a[:4], 0.25, a[4], ATan(), 1.0), lambda *a: _dsn_reference_with_spikes(*a), _dsn_inputs(steps, 4)),
        (lambda *a: linear_fire(*a, torch.zeros(2, 3, dtype=a[0].dtype), ATan(), 0.5)[:3],
         lambda *a: linear_fire_reference(*a, torch.zeros(2, 3, dtype=a[0].dtype), ATan(), 0.5)[:3], _fire_inputs(steps, True)),
        (lambda *a: ltc_scan(*a, 0.1, 1.8, MultiGaussian()), lambda *a: ltc_scan_reference(*a, 0.1, 1.8, MultiGaussian()), _ltc_inputs(steps)),
    ]
    for fused, reference, inputs in cases:
        low = [t.detach().to(torch.complex64 if t.is_complex() else torch.float32).requires_grad_() for t in inputs]
        out32, ref64 = fused(*low), reference(*inputs)
        weights = [torch.randn_like(o.real if o.is_complex() else o) for o in ref64]
        g32 = _weighted_grads(out32, [w.float() for w in weights], low)
        g64 = _weighted_grads(ref64, weights, inputs)
        for o, r in zip(out32, ref64):
            torch.testing.assert_close(o.to(r.dtype), r, rtol=1e-4, atol=1e-4)
        for g, r in zip(g32, g64):
            torch.testing.assert_close(g.to(r.dtype), r, rtol=1e-3, atol=1e-4)


def _dsn_reference_with_spikes(x, history, weight, bias, h0):
    h, last = dsn_membrane_reference(x, history, weight, bias, 0.25, h0)
    return ATan()(h - 1.0), h, last


# -- argument checks of the public ops -----------------------------------------------------
def test_fused_ops_reject_bad_arguments():
    x, history, weight, bias, h0 = (t.detach() for t in _dsn_inputs(5, 4))
    with pytest.raises(ValueError, match="x must be time-major"):
        dsn_membrane(x[:0], history, weight, bias, 0.25, h0, ATan())
    with pytest.raises(ValueError, match="history has shape"):
        dsn_membrane(x, history[:1], weight, bias, 0.25, h0, ATan())
    with pytest.raises(ValueError, match="bias with shape"):
        dsn_membrane(x, history, weight, torch.zeros(4, dtype=F64), 0.25, h0, ATan())
    with pytest.raises(ValueError, match="x contains NaN"):
        dsn_membrane(x * float("nan"), history, weight, bias, 0.25, h0, ATan())
    with pytest.raises(TypeError, match="spike_fn must be a Surrogate"):
        dsn_membrane(x, history, weight, bias, 0.25, h0, torch.sigmoid)
    with pytest.raises(ValueError, match="tau must be positive"):
        dsn_membrane(x, history, weight, bias, 0.0, h0, ATan())

    x, decay, scale, h0 = (t.detach() for t in _fire_inputs(5, True))
    zeros = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(TypeError, match="h0 must be complex"):
        linear_fire(x, decay, scale, zeros, zeros, ATan(), 1.0)
    with pytest.raises(ValueError, match="bias0 has shape"):
        linear_fire(x, decay, scale, h0, zeros[0], ATan(), 1.0)
    with pytest.raises(ValueError, match="scale with shape"):
        linear_fire(x, decay, torch.ones(4, dtype=F64), h0, zeros, ATan(), 1.0)
    with pytest.raises(ValueError, match="decay is on meta"):
        linear_fire(x, decay.to("meta"), scale, h0, zeros, ATan(), 1.0)
    with pytest.raises(TypeError, match="x must have dtype"):
        linear_fire(x.long(), decay, scale, h0, zeros, ATan(), 1.0)

    current, rate, retention, u0, s0, b_init = (t.detach() for t in _ltc_inputs(4))
    with pytest.raises(ValueError, match="rate has shape"):
        ltc_scan(current, rate[:2], retention, u0, s0, b_init, 0.1, 1.8, ATan())
    with pytest.raises(ValueError, match="b_init has shape"):
        ltc_scan(current, rate, retention, u0, s0, b_init[0], 0.1, 1.8, ATan())
    with pytest.raises(ValueError, match="current must be time-major"):
        ltc_scan(current[:0], rate, retention, u0, s0, b_init, 0.1, 1.8, ATan())
