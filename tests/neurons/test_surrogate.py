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
        (sg.FastSigmoid(slope=4.0), lambda x: x / (1 + 4.0 * x.abs())),  # SuperSpike
        (sg.MultiGaussian(), None),
        (sg.DoubleGaussian(), None),
    ],
)
def test_derivative_formulas(surrogate, primitive):
    params = surrogate.params
    # ATan and Sigmoid integrate to 1; the fast sigmoid to 2/k; the multi-Gaussian to gamma * (1 + h - 2h)
    expected = params["gamma"] * (1 - params["height"]) if "gamma" in params else 2 / params.get("slope", 2)
    if primitive is not None:
        torch.testing.assert_close(surrogate.derivative(X), _antiderivative_grad(primitive))
    area = torch.trapezoid(surrogate.derivative(torch.linspace(-40, 40, 80001, dtype=torch.float64)), dx=0.001)
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


def test_foreign_surrogate_keeps_the_frameworks_rule_and_backward():
    """A framework surrogate that is not one of ours (snnTorch's triangular) is called as it is."""
    surrogate = pytest.importorskip("snntorch.surrogate")
    spike_grad = surrogate.triangular()
    wrapped = sg.resolve(spike_grad)
    assert isinstance(wrapped, sg.ForeignSurrogate) and wrapped.source is spike_grad
    assert wrapped.inclusive is False  # snnTorch fires on x > 0
    x = torch.linspace(-2, 2, 41, dtype=torch.float64)
    assert torch.equal(wrapped.heaviside(x), (x > 0).double())
    y = x.clone().requires_grad_()
    wrapped(y).sum().backward()  # snnTorch's triangular backward: +1 below zero, -1 from zero up
    torch.testing.assert_close(y.grad, torch.where(x >= 0, -1.0, 1.0).double())
    torch.testing.assert_close(wrapped.derivative(x), y.grad)


def _snntorch(name: str, **params: float) -> object:
    return getattr(pytest.importorskip("snntorch.surrogate"), name)(**params)


def _spikingjelly(name: str, **params: float) -> object:
    module = pytest.importorskip("spikingjelly.activation_based.surrogate")
    if not hasattr(module, name):
        pytest.skip(f"this SpikingJelly has no surrogate.{name}")
    return getattr(module, name)(**params)


# framework surrogate -> ours with the same derivative (formulas from the frameworks' sources) and firing rule:
# snnTorch fires on x > 0, SpikingJelly on x >= 0
FRAMEWORK_SURROGATES = {
    "snntorch-atan": (lambda: _snntorch("atan", alpha=3.0), lambda: sg.ATan(3.0, inclusive=False)),
    "snntorch-sigmoid": (lambda: _snntorch("sigmoid", slope=5), lambda: sg.Sigmoid(5.0, inclusive=False)),
    "snntorch-fast_sigmoid": (lambda: _snntorch("fast_sigmoid"), lambda: sg.FastSigmoid(25.0, inclusive=False)),
    "spikingjelly-atan": (lambda: _spikingjelly("ATan", alpha=2.5), lambda: sg.ATan(2.5)),
    "spikingjelly-sigmoid": (lambda: _spikingjelly("Sigmoid"), lambda: sg.Sigmoid(4.0)),
    # SpikingJelly 2.0's Rect(alpha): g'(x) = alpha [|x| < 0.5/alpha], our window of width 1/alpha
    "spikingjelly-rect": (lambda: _spikingjelly("Rect"), lambda: sg.Rect(1.0)),
    "spikingjelly-rect-narrow": (lambda: _spikingjelly("Rect", alpha=2.0), lambda: sg.Rect(0.5)),
}


def _spikes_and_grads(neuron: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A float64 neuron's spikes on ``x`` and the gradients of a fixed weighting of them (input, parameters)."""
    x = x.clone().requires_grad_()
    spikes = neuron(x)
    spikes = spikes[0] if isinstance(spikes, tuple) else spikes
    weights = torch.randn(spikes.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    leaves = [x, *(p for p in neuron.parameters() if p.requires_grad)]
    return spikes.detach().double(), list(torch.autograd.grad((spikes * weights).sum(), leaves))


@pytest.mark.parametrize("case", FRAMEWORK_SURROGATES)
def test_a_framework_surrogate_that_is_ours_runs_the_kernels(case):
    """snnTorch's and SpikingJelly's surrogates that compute one of ours become ours (so the CUDA kernels take
    them), with the framework object kept as the source; a neuron built with one gives the spikes and
    gradients (float64) of the same neuron spiking through the framework's own function and autograd."""
    from snn_parallel.neurons import DecoupledLIF
    from snn_parallel.ops._backend import kernel_gap
    from snn_parallel.ops._cuda import spike_code

    theirs, ours = FRAMEWORK_SURROGATES[case]
    framework, expected = theirs(), ours()
    resolved = sg.resolve(framework)
    assert isinstance(resolved, type(expected)) and resolved.source is framework
    assert resolved.inclusive is expected.inclusive and resolved.params == expected.params
    assert spike_code(resolved) == spike_code(expected) is not None
    assert kernel_gap(spike_fn=resolved) is None
    neuron = DecoupledLIF(6, tau=2.0, learn_decay=True, surrogate=framework).double()
    assert spike_code(neuron.surrogate) is not None
    through_framework = DecoupledLIF(
        6, tau=2.0, learn_decay=True, surrogate=sg.ForeignSurrogate(framework, inclusive=expected.inclusive)
    ).double()
    x = torch.rand(12, 3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    spikes, grads = _spikes_and_grads(neuron, x)
    reference, reference_grads = _spikes_and_grads(through_framework, x)
    assert torch.equal(spikes, reference) and 0 < spikes.mean() < 1
    for grad, expected_grad in zip(grads, reference_grads, strict=True):
        assert expected_grad.abs().sum() > 0
        torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", FRAMEWORK_SURROGATES)
def test_framework_skins_keep_the_surrogate_passed(case):
    """The snnTorch skin's ``spike_grad`` and the SpikingJelly node's ``surrogate_function`` stay the object
    passed, while the core neuron spikes through ours."""
    from snn_parallel.ops._cuda import spike_code

    theirs, ours = FRAMEWORK_SURROGATES[case]
    framework = theirs()
    if case.startswith("snntorch"):
        from snn_parallel.adapters.snntorch import DecoupledLIF

        skin = DecoupledLIF(4, beta=0.7, spike_grad=framework)
        assert skin.spike_grad is framework
    else:
        from snn_parallel.adapters.spikingjelly import DecoupledLIFNode

        skin = DecoupledLIFNode(4, surrogate_function=framework)
        assert skin.surrogate_function is framework
    assert type(skin.core.surrogate) is type(sg.resolve(framework)) and spike_code(skin.core.surrogate) is not None


def test_tuning_a_spikingjelly_alpha_acts_on_ours():
    """SpikingJelly's nodes read their surrogate's ``alpha`` at each call (spike_dhs tunes it during training):
    ours, standing for the object, reads it too, in the torch path and in what the kernels are given."""
    from snn_parallel.ops._cuda import spike_code

    framework = _spikingjelly("ATan", alpha=2.0)
    resolved = sg.resolve(framework)
    x = torch.linspace(-1, 1, 21, dtype=torch.float64)
    torch.testing.assert_close(resolved.derivative(x), sg.ATan(2.0).derivative(x), rtol=1e-15, atol=0)
    framework.alpha = 5.0
    torch.testing.assert_close(resolved.derivative(x), sg.ATan(5.0).derivative(x), rtol=1e-15, atol=0)
    assert resolved.params == {"alpha": 5.0} and spike_code(resolved)[1][0] == 5.0
    y = x.clone().requires_grad_()
    resolved(y).sum().backward()
    torch.testing.assert_close(y.grad, sg.ATan(5.0).derivative(x), rtol=1e-15, atol=0)


def test_tuning_a_spikingjelly_rects_alpha_moves_our_window():
    """SpikingJelly's ``Rect`` read at each use as ours: its ``alpha`` tuned after the node is built narrows the
    window, ``1/alpha`` wide, in the torch path and in what the kernels are given."""
    from snn_parallel.ops._cuda import spike_code

    framework = _spikingjelly("Rect", alpha=1.0)
    resolved = sg.resolve(framework)
    framework.alpha = 4.0
    x = torch.linspace(-1, 1, 41, dtype=torch.float64)
    expected = torch.where(x.abs() < 0.125, 4.0, 0.0).double()
    torch.testing.assert_close(resolved.derivative(x), expected, rtol=0, atol=0)
    assert resolved.params == {"width": 0.25} and spike_code(resolved)[1][0] == 0.25


def test_look_alikes_stay_foreign(monkeypatch):
    """Only the frameworks' own classes and closures become ours, and only when they compute ours: a subclass
    (even one computing the same), a callable of one's own around snnTorch's function, an object whose
    spike function was replaced, or a closure whose module's function was replaced stay foreign."""
    sj = pytest.importorskip("spikingjelly.activation_based.surrogate")
    snn = pytest.importorskip("snntorch.surrogate")

    class Same(sj.ATan):
        pass

    class Steeper(sj.ATan):
        @staticmethod
        def spiking_function(x, alpha):
            return sj.atan.apply(x, 2 * alpha)

    def atan(alpha=2.0):  # written like snnTorch's, in another module
        def inner(x):
            return snn.ATan.apply(x, alpha)

        return inner

    replaced = sj.ATan()
    replaced.spiking_function = lambda x, alpha: sj.sigmoid.apply(x, alpha)  # the same class, another derivative
    for obj in (Same(), Steeper(), atan(), replaced):
        resolved = sg.resolve(obj)
        assert isinstance(resolved, sg.ForeignSurrogate) and resolved.source is obj, obj
    monkeypatch.setattr(snn, "ATan", snn.Sigmoid)  # atan()'s closure now calls the sigmoid
    assert isinstance(sg.resolve(snn.atan()), sg.ForeignSurrogate)


def test_fast_sigmoid_is_snntorchs():
    """snnTorch's ``FastSigmoid.backward``, ``grad / (slope |x| + 1)^2`` (SuperSpike), at any slope; by name."""
    snn = pytest.importorskip("snntorch.surrogate")
    for slope in (1.0, 25.0, 100.0):
        x = (X / 4).clone().requires_grad_()
        snn.fast_sigmoid(slope=slope)(x).sum().backward()
        torch.testing.assert_close(sg.FastSigmoid(slope).derivative(X / 4), x.grad, rtol=1e-14, atol=0)
    assert isinstance(sg.resolve("fast_sigmoid"), sg.FastSigmoid) and sg.FastSigmoid().slope == 25.0
    with pytest.raises(ValueError, match="slope"):
        sg.FastSigmoid(slope=-1.0)


def test_snntorch_sigmoid_overflow_is_not_ours():
    """snnTorch's sigmoid backward is NaN where exp(-k x) overflows (float32, k x < -88); ours is finite there."""
    snn = pytest.importorskip("snntorch.surrogate")
    x = torch.tensor([-5.0, -0.01, 0.01, 5.0], requires_grad=True)
    snn.sigmoid(slope=25)(x).sum().backward()
    assert x.grad[0].isnan()  # snnTorch's own function
    y = x.detach().clone().requires_grad_()
    sg.resolve(snn.sigmoid(slope=25))(y).sum().backward()
    assert y.grad.isfinite().all()
    torch.testing.assert_close(y.grad[1:], x.grad[1:])


def test_foreign_tape_gives_a_framework_surrogate_forward_mode_under_vmap():
    """A function calling SpikingJelly's ATan twice (as a neuron step may) has, under ``vmap`` of ``jvp``,
    the tangent ``x_dot * g'(x)`` of our ATan at each call once the calls are recorded on plain tensors;
    without the tape the framework's function refuses the transforms."""
    surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
    wrapped = sg.ForeignSurrogate(surrogate.ATan(alpha=2.0), inclusive=True)  # resolve() would make it ours
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
    for spike_fn in (sg.ForeignSurrogate(surrogate.atan(alpha=2.0), inclusive=False), sg.ATan(2.0, inclusive=False)):
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


@pytest.mark.parametrize("case", [case for case in FRAMEWORK_SURROGATES if case.startswith("spikingjelly")])
def test_spikingjelly_equivalent_is_the_inverse_of_resolving_a_spikingjelly_surrogate(case):
    """Ours that a SpikingJelly surrogate computes maps back to that class and ``alpha`` (``Rect``: ``1/width``); a
    subclass of ours, another class and a stand-in reading an object do not (they may compute otherwise, or have
    their object)."""
    theirs, ours = FRAMEWORK_SURROGATES[case]
    framework, expected = theirs(), ours()
    assert sg.spikingjelly_equivalent(expected) == (type(framework).__name__, pytest.approx(framework.alpha))
    assert sg.spikingjelly_equivalent(type("Mine", (type(expected),), {})(*expected.params.values())) is None
    assert sg.spikingjelly_equivalent(sg.resolve(framework)) is None
    assert sg.spikingjelly_equivalent(sg.FastSigmoid()) is None
