"""Surrogates: our derivatives, firing rules, and foreign (snnTorch, SpikingJelly) surrogates."""

from __future__ import annotations

import math

import pytest
import torch

from snn_parallel import surrogate as sg

X = torch.linspace(-3, 3, 601, dtype=torch.float64)


def _antiderivative_grad(fn):
    x = X.clone().requires_grad_()
    (g,) = torch.autograd.grad(fn(x).sum(), x)
    return g


@pytest.mark.parametrize(
    "surrogate,primitive",
    [
        (sg.ATan(alpha=2.0), lambda x: torch.atan(math.pi / 2 * 2.0 * x) / math.pi),
        (sg.Sigmoid(alpha=4.0), lambda x: torch.sigmoid(4.0 * x)),
        (sg.MultiGaussian(), None),
        (sg.DoubleGaussian(), None),
    ],
)
def test_derivative_formulas(surrogate, primitive):
    if primitive is not None:
        torch.testing.assert_close(surrogate.derivative(X), _antiderivative_grad(primitive))
    # ATan and Sigmoid integrate to 1; the multi-Gaussian to gamma * (1 + h - 2h)
    area = torch.trapezoid(surrogate.derivative(torch.linspace(-40, 40, 80001, dtype=torch.float64)), dx=0.001)
    params = surrogate.params
    expected = params["gamma"] * (1 - params["height"]) if "gamma" in params else 1.0
    assert abs(area.item() - expected) < 1e-2


def test_multi_gaussian_matches_ltc_reference_formula():
    """LTC-SNN code: gaussian(x, 0, s)(1+h) - h gaussian(x, s, 6s) - h gaussian(x, -s, 6s), times 0.5."""

    def gaussian(x, mu, sigma):
        return torch.exp(-((x - mu) ** 2) / (2 * sigma**2)) / math.sqrt(2 * math.pi) / sigma

    s, h = 0.3, 0.15
    expected = 0.5 * (gaussian(X, 0, s) * (1 + h) - gaussian(X, s, 6 * s) * h - gaussian(X, -s, 6 * s) * h)
    torch.testing.assert_close(sg.MultiGaussian().derivative(X), expected)
    assert sg.DoubleGaussian().sigma == 0.5


def test_centered_double_gaussian_matches_brf_reference_formula():
    """BRF / HYPR code: ((1+p) gaussian(x, 0, s) - 2p gaussian(x, 0, 6s)) * 0.5 with s = 0.5, p = 0.15."""

    def gaussian(x, sigma):
        return torch.exp(-(x**2) / (2 * sigma**2)) / math.sqrt(2 * math.pi) / sigma

    surrogate = sg.CenteredDoubleGaussian()
    expected = 0.5 * (1.15 * gaussian(X, 0.5) - 0.3 * gaussian(X, 3.0))
    torch.testing.assert_close(surrogate.derivative(X), expected)
    assert surrogate.params == {"sigma": 0.5, "scale": 6.0, "height": 0.15, "gamma": 0.5}
    area = torch.trapezoid(surrogate.derivative(torch.linspace(-40, 40, 80001, dtype=torch.float64)), dx=0.001)
    assert abs(area.item() - 0.5 * 0.85) < 1e-3
    # DoubleGaussian centres the wide terms at +-sigma instead
    assert not torch.allclose(surrogate.derivative(X), sg.DoubleGaussian().derivative(X))


@pytest.mark.parametrize("alpha,scale", [(5.0, 0.2), (5.0, 0.4), (1.0, 0.4)])
def test_slayer_matches_hypr_formula_and_integrates_to_scale(alpha, scale):
    """HYPR ``spike_slayer_FGI`` / SE-adLIF ``SLAYER``: scale * alpha / (2 exp(alpha |x|))."""
    surrogate = sg.Slayer(alpha=alpha, scale=scale)
    torch.testing.assert_close(surrogate.derivative(X), scale * alpha / (2 * torch.exp(alpha * X.abs())))

    def primitive(x):
        return torch.where(x >= 0, scale * (1 - torch.exp(-alpha * x) / 2), scale * torch.exp(alpha * x) / 2)

    torch.testing.assert_close(surrogate.derivative(X), _antiderivative_grad(primitive))
    area = torch.trapezoid(surrogate.derivative(torch.linspace(-40, 40, 80001, dtype=torch.float64)), dx=0.001)
    assert abs(area.item() - scale) < 1e-4
    assert surrogate.params == {"alpha": alpha, "scale": scale}


def test_slayer_and_centered_double_gaussian_by_name():
    assert isinstance(sg.resolve("slayer"), sg.Slayer)
    assert isinstance(sg.resolve("centered_double_gaussian", inclusive=False), sg.CenteredDoubleGaussian)
    assert repr(sg.Slayer(inclusive=False)) == "Slayer(alpha=5.0, scale=0.2, inclusive=False)"
    with pytest.raises(ValueError, match="alpha must be positive"):
        sg.Slayer(alpha=0.0)


def test_rect_is_a_box():
    d = sg.Rect(width=1.0).derivative(X)
    assert torch.equal(d, (X.abs() < 0.5).double())


def test_spike_function_forward_and_backward():
    x = torch.tensor([-1.0, 0.0, 0.5], requires_grad=True)
    spikes = sg.ATan()(x)
    assert spikes.tolist() == [0.0, 1.0, 1.0]
    spikes.sum().backward()
    torch.testing.assert_close(x.grad, sg.ATan().derivative(x.detach()))


@pytest.mark.parametrize("inclusive,at_zero", [(True, 1.0), (False, 0.0)])
def test_firing_rule_at_zero(inclusive, at_zero):
    assert sg.Sigmoid(inclusive=inclusive)(torch.zeros(1)).item() == at_zero
    assert sg.resolve("atan", inclusive=inclusive).heaviside(torch.zeros(1)).item() == at_zero


def test_integer_spike():
    h = torch.tensor([-0.7, 0.4, 1.6, 3.9, 7.2], requires_grad=True)
    spikes = sg.IntegerSpike(4)(h)
    assert spikes.tolist() == [0.0, 0.0, 2.0, 4.0, 4.0]
    spikes.sum().backward()
    assert h.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_spike_function_under_torch_func():
    """Neuron steps must work under torch.func transforms (used by HYPR)."""
    x = torch.tensor([-0.5, 0.2, 1.0])
    jac = torch.func.jacrev(sg.ATan())(x)
    torch.testing.assert_close(jac, torch.diag(sg.ATan().derivative(x)))
    jac_fwd = torch.func.jacfwd(sg.ATan())(x)
    torch.testing.assert_close(jac_fwd, jac)
    batched = torch.func.vmap(sg.ATan())(x.view(3, 1))
    assert batched.flatten().tolist() == [0.0, 1.0, 1.0]


def test_spike_function_under_forward_mode_ad():
    """Dual tensors (torch.autograd.forward_ad, no torch.func transform) get the surrogate's derivative too."""
    x = torch.tensor([-0.5, 0.0, 0.2, 1.0], dtype=torch.float64)
    tangent = torch.tensor([1.0, -2.0, 3.0, 0.5], dtype=torch.float64)
    with torch.autograd.forward_ad.dual_level():
        spikes = sg.Sigmoid(alpha=3.0)(torch.autograd.forward_ad.make_dual(x, tangent))
        primal, out_tangent = torch.autograd.forward_ad.unpack_dual(spikes)
    assert primal.tolist() == [0.0, 1.0, 1.0, 1.0]
    sigma = torch.sigmoid(3.0 * x)
    torch.testing.assert_close(out_tangent, tangent * 3.0 * sigma * (1 - sigma), rtol=1e-14, atol=0)


def test_resolve_names_and_objects():
    assert isinstance(sg.resolve(None), sg.ATan)
    assert isinstance(sg.resolve("straight_through"), sg.Rect)
    mg = sg.MultiGaussian()
    assert sg.resolve(mg) is mg
    with pytest.raises(ValueError, match="surrogate: unknown surrogate 'erf'"):
        sg.resolve("erf")
    with pytest.raises(TypeError, match="must be a surrogate name"):
        sg.resolve(3.0)


def test_foreign_callables_are_checked():
    with pytest.raises(TypeError, match="spike_grad: the surrogate has no derivative"):
        sg.resolve(lambda x: (x > 0).float(), name="spike_grad")
    with pytest.raises(TypeError, match="Heaviside step"):
        sg.resolve(torch.sigmoid)
    with pytest.raises(TypeError, match="calling the surrogate on a tensor failed"):
        sg.resolve(lambda x: x.unknown_method())


def test_snntorch_surrogate():
    surrogate = pytest.importorskip("snntorch.surrogate")
    wrapped = sg.resolve(surrogate.atan(alpha=2.0))
    assert isinstance(wrapped, sg.ForeignSurrogate)
    assert wrapped.inclusive is False  # snnTorch fires on x > 0
    x = torch.linspace(-2, 2, 41, dtype=torch.float64)
    torch.testing.assert_close(wrapped.derivative(x), sg.ATan(alpha=2.0).derivative(x))
    assert torch.equal(wrapped.heaviside(x), (x > 0).double())


def test_spikingjelly_surrogate():
    surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
    wrapped = sg.resolve(surrogate.Sigmoid(alpha=4.0))
    assert wrapped.inclusive is True  # SpikingJelly fires on x >= 0
    x = torch.linspace(-2, 2, 41, dtype=torch.float64)
    torch.testing.assert_close(wrapped.derivative(x), sg.Sigmoid(alpha=4.0).derivative(x))
    y = x.clone().requires_grad_()
    wrapped(y).sum().backward()  # the forward pass is SpikingJelly's own
    torch.testing.assert_close(y.grad, sg.Sigmoid(alpha=4.0).derivative(x))


def test_foreign_tape_gives_a_framework_surrogate_forward_mode_under_vmap():
    """A function calling SpikingJelly's ATan twice (as a neuron step may) has, under ``vmap`` of ``jvp``,
    the tangent ``x_dot * g'(x)`` of our ATan at each call once the calls are recorded on plain tensors;
    without the tape the framework's function refuses the transforms."""
    surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
    wrapped = sg.resolve(surrogate.ATan(alpha=2.0))
    ours = sg.ATan(alpha=2.0)

    def f(x: torch.Tensor) -> torch.Tensor:
        return wrapped(x) + 2 * wrapped(3 * x - 1)

    x = torch.linspace(-1, 1, 9, dtype=torch.float64)
    tangents = torch.randn(4, 9, dtype=torch.float64)
    tape = sg.ForeignTape()
    with tape.record():
        assert torch.equal(f(x), (x >= 0).double() + 2 * (3 * x - 1 >= 0).double())
    assert len(tape) == 2
    with tape.replay():
        primal, out = torch.func.vmap(lambda t: torch.func.jvp(f, (x,), (t,)))(tangents)
    torch.testing.assert_close(primal[0], f(x))
    expected = tangents * ours.derivative(x) + 2 * 3 * tangents * ours.derivative(3 * x - 1)
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=0)
    with pytest.raises(RuntimeError, match="setup_context|vmap"):
        torch.func.vmap(lambda t: torch.func.jvp(f, (x,), (t,)))(tangents)


def test_foreign_tape_names_what_it_cannot_replay():
    wrapped = sg.resolve(lambda v: sg.ATan()(v) * (v < 1))  # a Heaviside step near 0 only
    tape = sg.ForeignTape()
    with pytest.raises(sg.ForeignTape.Missing, match="no derivative recorded"), tape.replay():
        wrapped(torch.zeros(3))
    with tape.record():
        wrapped(torch.zeros(3))
    with pytest.raises(RuntimeError, match="replayed call 0 takes shape \\[4\\], the recorded one \\[3\\]"):
        with tape.replay():
            wrapped(torch.zeros(4))
    with pytest.raises(ValueError, match="not the Heaviside step \\(x >= 0\\) at every input"), tape.record():
        wrapped(torch.tensor([0.5, 2.0]))


def test_a_float32_foreign_spike_keeps_a_float64_steps_gradient():
    """snnTorch's spike functions return float32 spikes; in a float64 neuron's step the gradient through
    them is the float64 one of the same derivative written as ours, not one rounded to float32."""
    surrogate = pytest.importorskip("snntorch.surrogate")
    from snn_parallel.neurons import DecoupledLIF

    x = torch.randn(5, 6, dtype=torch.float64) * 2
    grads = []
    for spike_fn in (surrogate.atan(alpha=2.0), sg.ATan(alpha=2.0, inclusive=False)):
        neuron = DecoupledLIF(6, surrogate=spike_fn).double()
        current = x.clone().requires_grad_()
        spikes, _ = neuron.step(current, neuron.init_state(current))
        assert spikes.dtype == torch.float64
        (grad,) = torch.autograd.grad(
            spikes, current, torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        )
        grads.append(grad)
    assert grads[1].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-15, atol=1e-16)


def test_spike_function_backward_gradcheck(smooth):
    """The spike autograd.Function's backward is ``grad * derivative``: exact for a smooth step."""
    x = torch.randn(20, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(smooth, (x,))
