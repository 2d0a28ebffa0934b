"""HYPR's neurons (BRF, SE-adLIF): equations, pure steps under torch.func, parameter constraints.

The generic contract (forward == steps, chained forwards, BPTT gradients, input checks) is
covered for them by the parametrised tests in ``test_neurons.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import snn_parallel as sp
from snn_parallel import surrogate as sg
from snn_parallel.neurons import AdLIFState, BRFState

F64 = torch.float64


def _step_fn(x):
    return (x > 0).to(x.dtype)


def brf_reference(x, omega, b_offset, state, dt=0.01, theta=1.0, spike=_step_fn):
    """BRF from the equations, step by step (fires on x > 0; ``spike`` may carry a surrogate)."""
    u, v, q = state
    omega, b_offset = omega.abs(), b_offset.abs()
    p = (-1 + torch.sqrt(1 - (dt * omega) ** 2)) / dt
    spikes, membrane = [], []
    for i in x:
        b = p - b_offset - q
        u, v = u + dt * (b * u - omega * v + i), v + dt * (omega * u + b * v)
        z = spike(u - theta - q)
        q = 0.9 * q + z
        spikes.append(z)
        membrane.append(u)
    return torch.stack(spikes), torch.stack(membrane), (u, v, q)


def adlif_reference(x, tau_u_frac, tau_w_frac, a, b, state, theta=1.0, q=120.0, spike=_step_fn):
    """SE-adLIF (HYPR variant) from the equations, step by step (fires on x > 0; ``spike`` may carry a surrogate)."""
    u, w, z = state
    alpha = torch.exp(-1 / (5 + 20 * tau_u_frac))
    beta = torch.exp(-1 / (60 + 240 * tau_w_frac))
    spikes, membrane = [], []
    for i in x:
        u_new = alpha * u * (1 - z) + (1 - alpha) * (i - w)
        z_new = spike(u_new - theta)
        w = beta * w + (1 - beta) * q * (a * u_new * (1 - z_new) + b * z)
        u, z = u_new, z_new
        spikes.append(z)
        membrane.append(u)
    return torch.stack(spikes), torch.stack(membrane), (u, w, z)


def _brf_params(n):
    return n.omega, n.b_offset


def _adlif_params(n):
    return n.tau_u_frac, n.tau_w_frac, n.a, n.b


# (name, factory, reference, parameters in the reference's order, input scale)
NEURONS = [
    ("brf", lambda c: sp.BRF(c), brf_reference, _brf_params, 200.0),
    ("adlif", lambda c: sp.SEAdLIF(c), adlif_reference, _adlif_params, 10.0),
]
IDS = [n[0] for n in NEURONS]


@pytest.mark.parametrize("name,factory,reference,params,scale", NEURONS, ids=IDS)
@pytest.mark.parametrize("steps", [1, 2, 37, 300])
def test_forward_matches_equations(name, factory, reference, params, scale, steps):
    neuron = factory(6).double()
    x = torch.randn(steps, 4, 6, dtype=F64) * scale + scale / 4
    state = neuron.init_state(x[0])
    state = type(state)(*(torch.rand_like(s) for s in state[:2]), state[2])  # carried, non-resting
    spikes, membrane, end = neuron(x, state, return_membrane=True)
    with torch.no_grad():
        ref_spikes, ref_membrane, ref_end = reference(x, *(p.detach() for p in params(neuron)), tuple(state))
    assert ref_spikes.sum() > 0 or steps < 37
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(membrane, ref_membrane, rtol=1e-12, atol=1e-12)
    for field, a, b in zip(end._fields, end, ref_end, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=f"state.{field}")


@pytest.mark.parametrize("name,factory,reference,params,scale", NEURONS, ids=IDS)
def test_gradients_match_the_equations(name, factory, reference, params, scale):
    """Every gradient (input, parameters, initial state) against a plain autograd loop written
    from the equations, with the neuron's own surrogate as the spike function."""
    neuron = factory(5).double()
    x = (torch.randn(40, 3, 5, dtype=F64) * scale + scale / 4).requires_grad_()
    rest = neuron.init_state(x[0])
    state = type(rest)(*(torch.rand_like(v).requires_grad_() for v in rest[:2]), rest[2])
    weights = torch.randn(40, 3, 5, dtype=F64)
    spikes, membrane, end = neuron(x, state, return_membrane=True)
    inputs = [x, *params(neuron), *state[:2]]
    grads = torch.autograd.grad((spikes * weights).sum() + membrane.sum() + end.u.sum(), inputs)
    ref_spikes, ref_membrane, ref_end = reference(x, *params(neuron), tuple(state), spike=neuron.surrogate)
    assert 0 < ref_spikes.mean() < 1
    ref_grads = torch.autograd.grad((ref_spikes * weights).sum() + ref_membrane.sum() + ref_end[0].sum(), inputs)
    for g, r in zip(grads, ref_grads, strict=True):
        assert g.abs().sum() > 0
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,factory,reference,params,scale", NEURONS, ids=IDS)
def test_parameters_are_per_neuron(name, factory, reference, params, scale):
    """HYPR vmaps the step over neurons: every parameter's first dim is the feature dim."""
    neuron = factory(7)
    assert len(list(neuron.parameters())) == len(params(neuron))
    for pname, p in neuron.named_parameters():
        assert p.shape == (7,), pname
    assert not list(neuron.buffers())


@pytest.mark.parametrize("name,factory,reference,params,scale", NEURONS, ids=IDS)
def test_neurons_are_elementwise_over_channels(name, factory, reference, params, scale):
    neuron = factory(5).double()
    x = torch.randn(40, 3, 5, dtype=F64) * scale
    spikes, _ = neuron(x)
    x2 = x.clone()
    x2[:, :, 2] = torch.randn(40, 3, dtype=F64) * scale  # only channel 2 changes
    spikes2, _ = neuron(x2)
    keep = [0, 1, 3, 4]
    assert torch.equal(spikes[:, :, keep], spikes2[:, :, keep])


@pytest.mark.parametrize("name,factory,reference,params,scale", NEURONS, ids=IDS)
def test_gradients_finite_over_long_sequences(name, factory, reference, params, scale):
    neuron = factory(8).double()
    x = (torch.randn(1000, 2, 8, dtype=F64) * scale).requires_grad_()
    spikes, membrane, _ = neuron(x, return_membrane=True)
    assert spikes.mean() > 0.005
    grads = torch.autograd.grad((spikes * torch.randn_like(spikes)).sum() + membrane.sum(), [x, *neuron.parameters()])
    for g in grads:
        assert torch.isfinite(g).all() and g.abs().sum() > 0


# -- the step as a pure function under torch.func ---------------------------------------


class _Step(nn.Module):
    """Calls the step hook ``neuron.update``, so ``functional_call`` can swap the neuron's parameters."""

    def __init__(self, neuron: sp.neurons.Neuron) -> None:
        super().__init__()
        self.neuron = neuron

    def forward(self, x_t, state):
        spike, _, new_state = self.neuron.update(x_t, state)
        return spike, new_state


def _pure_step(neuron):
    """``(params, state, x_t) -> (spike, *new_state)`` with plain tuples, for torch.func."""
    module, state_type = _Step(neuron), neuron.state_type

    def step(params, state, x_t):
        named = {f"neuron.{k}": v for k, v in params.items()}
        spike, new = torch.func.functional_call(module, named, (x_t, state_type(*state)))
        return (spike, *new)

    return step


def _inputs(neuron, scale, batch=3):
    params = {k: v.detach() for k, v in neuron.named_parameters()}
    x = torch.randn(batch, neuron.features, dtype=F64) * scale
    state = tuple(torch.randn(batch, neuron.features, dtype=F64) for _ in neuron.state_type._fields)
    return params, state, x


@pytest.mark.parametrize("name,factory,reference,params,scale", NEURONS, ids=IDS)
def test_step_jvp_and_jacrev_match_finite_differences(name, factory, reference, params, scale, smooth):
    """With a smooth spike function, forward- and reverse-mode derivatives of the step equal
    central differences with respect to parameters, state and input."""
    neuron = factory(4).double()
    neuron.surrogate = smooth
    step = _pure_step(neuron)
    primals = _inputs(neuron, scale / 50)
    tangents = torch.utils._pytree.tree_map(torch.randn_like, primals)
    _, jvp_out = torch.func.jvp(step, primals, tangents)
    eps = 1e-6
    shift = lambda sign: torch.utils._pytree.tree_map(lambda p, t: p + sign * eps * t, primals, tangents)  # noqa: E731
    for got, plus, minus in zip(jvp_out, step(*shift(1)), step(*shift(-1)), strict=True):
        torch.testing.assert_close(got, (plus - minus) / (2 * eps), rtol=1e-6, atol=1e-7)
    # reverse mode gives the same Jacobian as forward mode
    jac_rev = torch.func.jacrev(step, argnums=(0, 1, 2))(*primals)
    jac_fwd = torch.func.jacfwd(step, argnums=(0, 1, 2))(*primals)
    torch.testing.assert_close(jac_rev, jac_fwd)


@pytest.mark.parametrize("name,factory,reference,params,scale", NEURONS, ids=IDS)
def test_step_surrogate_derivative_under_torch_func(name, factory, reference, params, scale):
    """With the real spike function, jacfwd (the spike's custom jvp) equals jacrev (its backward)."""
    neuron = factory(4).double()
    step = _pure_step(neuron)
    params_, state, x = _inputs(neuron, scale)
    jac_fwd = torch.func.jacfwd(step, argnums=(0, 1, 2))(params_, state, x)
    jac_rev = torch.func.jacrev(step, argnums=(0, 1, 2))(params_, state, x)
    torch.testing.assert_close(jac_fwd, jac_rev)
    assert jac_fwd[0][2].abs().sum() > 0  # d spike / d x is the surrogate's, not zero


@pytest.mark.parametrize("name,factory,reference,params,scale", NEURONS, ids=IDS)
def test_per_neuron_jacobians_under_vmap(name, factory, reference, params, scale):
    """HYPR's local Jacobians: jacfwd of the step for one neuron and one sample, vmapped over
    neurons and batch, equals the diagonal blocks of the full Jacobian."""
    neuron = factory(5).double()
    step = _pure_step(neuron)
    params_, state, x = _inputs(neuron, scale / 50, batch=2)

    def state_jacobian(p, s, x_t):  # scalars in, d x d out
        return torch.stack([torch.stack(row) for row in torch.func.jacfwd(lambda s_: step(p, s_, x_t)[1:])(s)])

    over_batch = torch.func.vmap(state_jacobian, in_dims=(None, 0, 0))
    per_neuron = torch.func.vmap(over_batch, in_dims=(0, 1, 1), out_dims=1)(params_, state, x)  # [B, C, d, d]
    full = torch.func.jacrev(lambda s: step(params_, s, x)[1:])(state)  # [i][j]: [B, C, B, C]
    d = len(state)
    assert per_neuron.shape == (2, 5, d, d)
    b, c = torch.meshgrid(torch.arange(2), torch.arange(5), indexing="ij")
    for i in range(d):
        for j in range(d):
            expected = torch.zeros_like(full[i][j])
            expected[b, c, b, c] = per_neuron[:, :, i, j]  # nothing off the (sample, neuron) diagonal
            torch.testing.assert_close(full[i][j], expected)


@pytest.mark.parametrize("name,factory,reference,params,scale", NEURONS, ids=IDS)
def test_public_step_under_jvp(name, factory, reference, params, scale):
    neuron = factory(3).double()
    x = torch.randn(2, 3, dtype=F64) * scale
    state = neuron.init_state(x)
    _, tangent = torch.func.jvp(lambda x_t: neuron.step(x_t, state)[1].u, (x,), (torch.ones_like(x),))
    expected = torch.func.jacrev(lambda x_t: neuron.step(x_t, state)[1].u)(x).sum((2, 3))
    torch.testing.assert_close(tangent, expected)


# -- BRF specifics ------------------------------------------------------------------------


def test_brf_uses_absolute_parameters():
    neuron = sp.BRF(4).double()
    x = torch.randn(60, 2, 4, dtype=F64) * 200
    spikes, membrane, _ = neuron(x, return_membrane=True)
    with torch.no_grad():
        neuron.omega.neg_()
        neuron.b_offset.neg_()
    flipped, flipped_membrane, _ = neuron(x, return_membrane=True)
    assert spikes.sum() > 0 and torch.equal(spikes, flipped)
    torch.testing.assert_close(membrane, flipped_membrane, rtol=0, atol=0)


def test_brf_coefficients_and_divergence_boundary():
    neuron = sp.BRF(4, dt=0.01).double()
    with torch.no_grad():
        neuron.omega.copy_(torch.tensor([5.0, -60.0, 100.0, 250.0]))
        neuron.b_offset.copy_(torch.tensor([2.0, -0.5, 0.0, 1.0]))
    omega, damping = neuron.coefficients()
    assert torch.equal(omega, torch.tensor([5.0, 60.0, 100.0, 250.0], dtype=F64))
    p_inside = (-1 + math.sqrt(1 - 0.05**2)) / 0.01, (-1 + math.sqrt(1 - 0.6**2)) / 0.01
    torch.testing.assert_close(damping[:2], torch.tensor([p_inside[0] - 2.0, p_inside[1] - 0.5], dtype=F64))
    # at and beyond 1/dt p(omega) saturates just above -1/dt: real, finite, and with a finite gradient
    boundary = (math.sqrt(torch.finfo(F64).eps) - 1) / 0.01
    torch.testing.assert_close(damping[2:], torch.tensor([boundary, boundary - 1.0], dtype=F64))
    (grad,) = torch.autograd.grad(damping.sum(), neuron.omega)
    assert torch.isfinite(grad).all() and grad[3] == 0
    spikes, state = neuron(torch.randn(100, 2, 4, dtype=F64) * 200)
    assert all(torch.isfinite(s).all() for s in state)


def test_brf_refractory_trace_raises_threshold():
    """q jumps by one per spike, decays by 0.9, and the next spike needs u > 1 + q."""
    neuron = sp.BRF(1).double()
    x = torch.full((30, 1, 1), 400.0, dtype=F64)
    spikes, membrane, _ = neuron(x, return_membrane=True)
    q = torch.zeros(1, 1, dtype=F64)
    for z, u in zip(spikes, membrane, strict=True):
        assert bool(z) == bool(u > 1 + q)
        q = 0.9 * q + z
    assert spikes.sum() >= 2


def test_brf_defaults_follow_hypr():
    neuron = sp.BRF(1000)
    assert neuron.dt == 0.01 and neuron.v_threshold == 1.0
    assert 5 <= neuron.omega.min() and neuron.omega.max() <= 10
    assert 2 <= neuron.b_offset.min() and neuron.b_offset.max() <= 3
    assert isinstance(neuron.surrogate, sg.CenteredDoubleGaussian) and not neuron.surrogate.inclusive
    assert neuron.surrogate.params == {"sigma": 0.5, "scale": 6.0, "height": 0.15, "gamma": 0.5}


# -- SE-adLIF specifics -------------------------------------------------------------------


def test_adlif_reset_and_adaptation_act_one_step_late():
    """HYPR's timing: a spike at t resets u at t + 1, and its b-jump of w lands at t + 1."""
    neuron = sp.SEAdLIF(1).double()
    with torch.no_grad():
        neuron.tau_u_frac.fill_(0.5)
        neuron.tau_w_frac.fill_(0.5)
        neuron.a.fill_(0.3)
        neuron.b.fill_(0.7)
    x = torch.tensor([50.0, 0.0, 0.0], dtype=F64).view(3, 1, 1)
    spikes, membrane, state = neuron(x, return_membrane=True)
    alpha, beta = math.exp(-1 / 15), math.exp(-1 / 180)
    assert spikes.flatten().tolist() == [1.0, 0.0, 0.0]
    assert membrane[0].item() == pytest.approx((1 - alpha) * 50)
    assert membrane[1].item() == 0.0  # reset through (1 - z_0); w_0 = 0 since a u_0 (1 - z_0) = 0
    w1 = (1 - beta) * 120 * 0.7  # b z_0
    u2 = -(1 - alpha) * w1
    w2 = beta * w1 + (1 - beta) * 120 * 0.3 * u2
    assert membrane[2].item() == pytest.approx(u2)
    assert state.w.item() == pytest.approx(w2)


def test_adlif_parameters_are_clamped_in_the_step_and_projected():
    neuron = sp.SEAdLIF(4, a_range=(0.0, 1.0), b_range=(0.0, 0.5)).double()
    x = torch.randn(50, 2, 4, dtype=F64) * 10
    with torch.no_grad():
        neuron.tau_u_frac.copy_(torch.tensor([-0.5, 0.0, 1.0, 1.7]))
        neuron.tau_w_frac.copy_(torch.tensor([2.0, 0.25, -1.0, 1.0]))
        neuron.a.copy_(torch.tensor([-0.2, 0.5, 1.5, 1.0]))
        neuron.b.copy_(torch.tensor([0.9, -0.1, 0.125, 0.5]))
    torch.testing.assert_close(neuron.tau_u, torch.tensor([5.0, 5.0, 25.0, 25.0], dtype=F64))
    torch.testing.assert_close(neuron.tau_w, torch.tensor([300.0, 120.0, 60.0, 300.0], dtype=F64))
    alpha, beta, a, b = neuron.coefficients()
    torch.testing.assert_close(alpha, torch.exp(-1 / neuron.tau_u))
    torch.testing.assert_close(beta, torch.exp(-1 / neuron.tau_w))
    torch.testing.assert_close(a, 120 * torch.tensor([0.0, 0.5, 1.0, 1.0], dtype=F64))
    torch.testing.assert_close(b, 120 * torch.tensor([0.5, 0.0, 0.125, 0.5], dtype=F64))
    before, _ = neuron(x)
    neuron.apply_parameter_constraints()
    assert neuron.tau_u_frac.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert neuron.tau_w_frac.tolist() == [1.0, 0.25, 0.0, 1.0]
    assert neuron.a.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert neuron.b.tolist() == [0.5, 0.0, 0.125, 0.5]
    after, _ = neuron(x)
    assert torch.equal(before, after)  # projecting changes nothing the step did not already see
    assert all(p.requires_grad for p in neuron.parameters())


def test_adlif_defaults_follow_hypr():
    neuron = sp.SEAdLIF(1000)
    assert neuron.adapt_coeff == 120.0 and neuron.v_threshold == 1.0
    assert neuron.tau_u_range == (5.0, 25.0) and neuron.tau_w_range == (60.0, 300.0)
    for p in neuron.parameters():
        assert 0 <= p.min() and p.max() <= 1
    assert isinstance(neuron.surrogate, sg.Slayer) and not neuron.surrogate.inclusive
    assert neuron.surrogate.params == {"alpha": 5.0, "scale": 0.2}


# -- input and constructor checks ---------------------------------------------------------


@pytest.mark.parametrize("name,factory,reference,params,scale", NEURONS, ids=IDS)
def test_only_flat_inputs_and_own_state(name, factory, reference, params, scale):
    neuron = factory(3)
    with pytest.raises(ValueError, match=r"x_seq has 1 dims after the feature dim.*\[T, B, 3\]"):
        neuron(torch.randn(4, 2, 3, 5))
    with pytest.raises(ValueError, match=r"x_t has 2 dims after the feature dim"):
        neuron.step(torch.randn(2, 3, 4, 4))
    other = AdLIFState if neuron.state_type is BRFState else BRFState
    zeros = torch.zeros(2, 3)
    with pytest.raises(TypeError, match=f"state must be a {neuron.state_type.__name__}"):
        neuron.step(zeros, other(zeros, zeros, zeros))


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: sp.BRF(0), "features must be a positive int"),
        (lambda: sp.BRF(3, dt=0.0), "dt must be positive"),
        (lambda: sp.BRF(3, omega_range=(10.0, 5.0)), "omega_range"),
        (lambda: sp.BRF(3, omega_range=(5.0, 150.0)), r"omega_range must be in \[0, 100\]"),
        (lambda: sp.BRF(3, b_offset_range=(-1.0, 1.0)), "b_offset_range"),
        (lambda: sp.BRF(3, omega_range=5.0), "omega_range must be a pair"),
        (lambda: sp.BRF(3, surrogate="nope"), "unknown surrogate"),
        (lambda: sp.SEAdLIF(3, tau_u_range=(0.0, 25.0)), "tau_u_range"),
        (lambda: sp.SEAdLIF(3, tau_w_range=(300.0, 60.0)), "tau_w_range"),
        (lambda: sp.SEAdLIF(3, a_range=(0.0, float("nan"))), "a_range"),
        (lambda: sp.SEAdLIF(3, b_range=(1.0, 0.0)), "b_range"),
        (lambda: sp.SEAdLIF(3, a_range=(0.0, 0.5, 1.0)), "a_range must be a pair"),
        (lambda: sp.SEAdLIF(3, surrogate=lambda x: (x > 0).float()), "no derivative"),
    ],
)
def test_bad_constructor_arguments(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_surrogate_by_name():
    assert isinstance(sp.BRF(2, surrogate="slayer").surrogate, sg.Slayer)
    assert isinstance(sp.SEAdLIF(2, surrogate="double_gaussian").surrogate, sg.DoubleGaussian)
