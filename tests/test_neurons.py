"""Neurons: parallel forward == serial steps, carried state, gradients, and input checks."""

from __future__ import annotations

import pytest
import torch

import snn_parallel as sp
from snn_parallel.neurons import AdLIFState, BRFState, DSNState, LIFState, LTCState, PRFState

# (name, factory, input scale) -- the scale puts each neuron in a regime where it spikes
CONFIGS = [
    ("dsn", lambda c: sp.DynamicDecay(c), 2.0),
    ("dsn-integer", lambda c: sp.DynamicDecay(c, spike_mode="integer", kernel_size=3), 3.0),
    ("dsn-k1", lambda c: sp.DynamicDecay(c, kernel_size=1), 2.0),
    ("prf", lambda c: sp.PRF(c, dt_range=(0.3, 1.0)), 3.0),
    ("prf-fft", lambda c: sp.PRF(c, dt_range=(0.3, 1.0), mode="fft"), 3.0),
    ("prf-reset", lambda c: sp.PRF(c, dt_range=(0.3, 1.0), reset=True, learn_decay=True), 3.0),
    ("lif", lambda c: sp.DecoupledLIF(c, learn_decay=True), 1.5),
    ("lif-strict", lambda c: sp.DecoupledLIF(c, surrogate=sp.surrogate.Sigmoid(inclusive=False)), 1.5),
    ("ltc", lambda c: sp.LTC(c), 2.0),
    ("ltc-parallel", lambda c: sp.LTC(c, mode="parallel"), 2.0),
    ("brf", lambda c: sp.BRF(c), 200.0),
    ("adlif", lambda c: sp.SEAdLIF(c), 10.0),
]
IDS = [c[0] for c in CONFIGS]
SPATIAL = [c for c in CONFIGS if c[1](1).max_spatial_dims is None]


def _run_steps(neuron, x_seq, state=None):
    spikes = []
    for x_t in x_seq.unbind(0):
        s, state = neuron.step(x_t, state)
        spikes.append(s)
    return torch.stack(spikes), state


@pytest.mark.parametrize("name,factory,scale", CONFIGS, ids=IDS)
@pytest.mark.parametrize("steps", [1, 2, 37])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_equals_steps(name, factory, scale, steps, dtype):
    neuron = factory(5).to(dtype)
    x = torch.randn(steps, 3, 5, dtype=dtype) * scale
    spikes, state = neuron(x)
    step_spikes, step_state = _run_steps(neuron, x)
    assert spikes.shape == x.shape and spikes.dtype == dtype
    if dtype == torch.float64:
        assert torch.equal(spikes, step_spikes)
    else:  # rounding differs between the parallel and serial forms: allow a rare flip at threshold
        assert (spikes != step_spikes).float().mean() < 0.01
    for field, a, b in zip(state._fields, state, step_state):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"state.{field}")


@pytest.mark.parametrize("name,factory,scale", CONFIGS, ids=IDS)
@pytest.mark.parametrize("split", [1, 2, 20])
def test_chained_forward_equals_one_call(name, factory, scale, split):
    neuron = factory(4).double()
    x = torch.randn(41, 2, 4, dtype=torch.float64) * scale
    spikes, membrane, state = neuron(x, return_membrane=True)
    first, m1, mid = neuron(x[:split], return_membrane=True)
    second, m2, end = neuron(x[split:], mid, return_membrane=True)
    assert torch.equal(torch.cat([first, second]), spikes)
    torch.testing.assert_close(torch.cat([m1, m2]), membrane)
    for a, b in zip(state, end):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name,factory,scale", CONFIGS, ids=IDS)
def test_parallel_gradients_equal_step_loop_bptt(name, factory, scale):
    """Training through ``forward`` gives the gradients of BPTT through ``step``."""
    neuron = factory(4).double()
    x = (torch.randn(23, 3, 4, dtype=torch.float64) * scale).requires_grad_()
    weights = torch.randn(23, 3, 4, dtype=torch.float64)
    params = [p for p in neuron.parameters()]
    spikes, _ = neuron(x)
    grads = torch.autograd.grad((spikes * weights).sum(), [x, *params], allow_unused=True, materialize_grads=True)
    step_spikes, _ = _run_steps(neuron, x)
    ref = torch.autograd.grad((step_spikes * weights).sum(), [x, *params], allow_unused=True, materialize_grads=True)
    assert spikes.sum() > 0
    for g, r in zip(grads, ref):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("name,factory,scale", SPATIAL, ids=[c[0] for c in SPATIAL])
def test_feature_maps(name, factory, scale):
    """``[T, B, C, H, W]`` inputs: per-channel parameters broadcast over H and W."""
    neuron = factory(3).double()
    x = torch.randn(9, 2, 3, 4, 5, dtype=torch.float64) * scale
    spikes, state = neuron(x)
    step_spikes, _ = _run_steps(neuron, x)
    assert spikes.shape == x.shape
    assert torch.equal(spikes, step_spikes)
    # the same lanes laid out as a [T, B*H*W, C] batch give the same spikes
    flat, _ = neuron(x.permute(0, 1, 3, 4, 2).reshape(9, 40, 3))
    assert torch.equal(flat.view(9, 2, 4, 5, 3).permute(0, 1, 4, 2, 3), spikes)


def test_dsn_integer_spikes_are_clipped_rounded_membrane():
    neuron = sp.DynamicDecay(4, spike_mode="integer", levels=3).double()
    spikes, membrane, _ = neuron(torch.rand(20, 2, 4, dtype=torch.float64) * 8, return_membrane=True)
    assert torch.equal(spikes, membrane.round().clamp(0, 3))


def test_dsn_init_decay_sets_resting_decay():
    neuron = sp.DynamicDecay(3, init_decay=0.8, tau=0.25)
    with torch.no_grad():
        neuron.weight.zero_()
        _, membrane, _ = neuron(torch.ones(2, 1, 3), return_membrane=True)
    # H_0 = (1 - a) * 1, H_1 = a * H_0 + (1 - a)
    torch.testing.assert_close(membrane[0], torch.full((1, 3), 0.2))
    torch.testing.assert_close(membrane[1], torch.full((1, 3), 0.8 * 0.2 + 0.2))


def test_prf_resonates_at_theta():
    """A PRF channel with zero decay rotates by dt*theta per step (the two-state form)."""
    neuron = sp.PRF(1, tau=1e9).double()
    with torch.no_grad():
        neuron.log_dt.fill_(0.0)
        neuron.theta_log.fill_(torch.log(torch.tensor(0.5)).item())
    x = torch.zeros(8, 1, 1, dtype=torch.float64)
    x[0] = 1.0
    _, membrane, _ = neuron(x, return_membrane=True)
    expected = torch.cos(0.5 * torch.arange(8, dtype=torch.float64))
    torch.testing.assert_close(membrane.flatten(), expected, rtol=1e-6, atol=1e-8)


def test_ltc_parallel_mode_gates_see_input_only():
    neuron = sp.LTC(3, mode="parallel")
    assert neuron.rate_gate.in_features == 3
    assert sp.LTC(3).rate_gate.in_features == 6


@pytest.mark.parametrize(
    "neuron,state_type",
    [
        (sp.DynamicDecay(3), DSNState),
        (sp.PRF(3), PRFState),
        (sp.DecoupledLIF(3), LIFState),
        (sp.LTC(3), LTCState),
        (sp.BRF(3), BRFState),
        (sp.SEAdLIF(3), AdLIFState),
    ],
)
def test_bad_inputs_raise_clear_errors(neuron, state_type):
    x = torch.randn(4, 2, 3)
    with pytest.raises(TypeError, match="x_seq must be a torch.Tensor"):
        neuron([[1.0]])
    with pytest.raises(TypeError, match="x_seq must have dtype"):
        neuron(torch.ones(4, 2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"x_seq must be time-major"):
        neuron(torch.randn(2, 3))
    with pytest.raises(ValueError, match="x_seq must have 3 features"):
        neuron(torch.randn(4, 2, 5))
    with pytest.raises(ValueError, match="empty sequence"):
        neuron(torch.randn(0, 2, 3))
    with pytest.raises(ValueError, match="x_seq contains NaN"):
        neuron(torch.full((4, 2, 3), float("nan")))
    with pytest.raises(ValueError, match="x_seq is on meta"):
        neuron(torch.randn(4, 2, 3, device="meta"))
    with pytest.raises(TypeError, match="x_seq must have dtype .* to match"):
        neuron(x.double())
    with pytest.raises(ValueError, match="x_t must have 3 features"):
        neuron.step(torch.randn(2, 4))
    with pytest.raises(ValueError, match="x_t must be one time step"):
        neuron.step(torch.randn(3))
    with pytest.raises(TypeError, match=f"state must be a {state_type.__name__}"):
        neuron(x, (torch.zeros(2, 3),))
    _, state = neuron(x)
    wrong = state._replace(**{state._fields[0]: torch.zeros(5, 3)})
    with pytest.raises(ValueError, match=f"state.{state._fields[0]} has shape"):
        neuron(x, wrong)
    with pytest.raises(ValueError, match=f"state.{state._fields[0]} contains NaN"):
        neuron(x, state._replace(**{state._fields[0]: torch.full_like(state[0], float("nan"))}))


def test_validation_switch_skips_only_the_value_check():
    neuron = sp.DecoupledLIF(3)
    nan = torch.full((4, 2, 3), float("nan"))
    with sp.validation(False):
        assert not sp.validation_enabled()
        neuron(nan)  # no data-dependent check
        with pytest.raises(ValueError, match="features"):
            neuron(torch.randn(4, 2, 5))
    assert sp.validation_enabled()
    with pytest.raises(ValueError, match="NaN"):
        neuron(nan)


def test_ltc_rejects_feature_maps():
    with pytest.raises(ValueError, match="accepts \\[T, B, 3\\] sequences"):
        sp.LTC(3)(torch.randn(4, 2, 3, 5))


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: sp.DynamicDecay(0), "features must be a positive int"),
        (lambda: sp.DynamicDecay(3, kernel_size=0), "kernel_size"),
        (lambda: sp.DynamicDecay(3, tau=0), "tau must be > 0"),
        (lambda: sp.DynamicDecay(3, init_decay=1.0), "init_decay"),
        (lambda: sp.DynamicDecay(3, spike_mode="ternary"), "spike_mode"),
        (lambda: sp.DynamicDecay(3, spike_mode="integer", levels=0), "levels"),
        (lambda: sp.PRF(3, dt_range=(0.1, 0.01)), "dt_range"),
        (lambda: sp.PRF(3, mode="conv"), "mode must be"),
        (lambda: sp.PRF(3, mode="fft", reset=True), "reset=True needs mode='scan'"),
        (lambda: sp.PRF(3, surrogate="nope"), "unknown surrogate"),
        (lambda: sp.DecoupledLIF(3, tau=1.0), "tau must be > 1"),
        (lambda: sp.LTC(3, mode="fast"), "mode must be"),
        (lambda: sp.LTC(3, surrogate=lambda x: (x > 0).float()), "no derivative"),
    ],
)
def test_bad_constructor_arguments(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()
