"""HYPR with the frameworks' own surrogates. Those that compute one of ours (snnTorch's ``atan()``,
SpikingJelly's ``ATan()``, ...) become ours when the neuron is built; any other (a custom callable, a
subclass) is run through its own backward. A neuron given such a surrogate trains with exactly the gradient
HYPR gives with the same derivative written as one of ours (formulas from the frameworks' sources), and with
BPTT's where HYPR is exact (one layer)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snn_parallel.learners import BPTTTrainer, HYPRTrainer, UnsupportedModule
from snn_parallel.surrogate import ATan, FastSigmoid, ForeignSurrogate, Sigmoid

pytestmark = pytest.mark.legacy

snn_surrogate = pytest.importorskip("snntorch.surrogate")
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
from learner_support import trainer_gradients as _grads  # noqa: E402
from snn_parallel.adapters import snntorch as skins  # noqa: E402
from snn_parallel.adapters.spikingjelly import DecoupledLIFNode  # noqa: E402


def _custom(fn):
    """A user's own ``spike_grad`` around snnTorch's: a callable the library does not know, so run as it is."""
    return lambda x: fn(x)


class _ATanSubclass(sj_surrogate.ATan):
    """A user's subclass of SpikingJelly's ``ATan`` (unchanged): not the class the library knows."""


class _SigmoidSubclass(sj_surrogate.Sigmoid):
    """A user's subclass of SpikingJelly's ``Sigmoid`` (unchanged)."""


# (framework, its surrogate, ours with the same derivative and firing rule): snnTorch's atan backward is
# alpha/2 / (1 + (pi/2 alpha x)^2), its sigmoid's slope e^{-kx} / (e^{-kx} + 1)^2, its fast_sigmoid's
# 1 / (k|x| + 1)^2, all firing on x > 0; SpikingJelly's ATan and Sigmoid are ours, firing on x >= 0
CASES = {
    "snntorch-atan": ("snntorch", lambda: _custom(snn_surrogate.atan(alpha=3.0)), lambda: ATan(3.0, inclusive=False)),
    "snntorch-sigmoid": (
        "snntorch",
        lambda: _custom(snn_surrogate.sigmoid(slope=5)),
        lambda: Sigmoid(5.0, inclusive=False),
    ),
    "snntorch-fast_sigmoid": (
        "snntorch",
        lambda: _custom(snn_surrogate.fast_sigmoid(slope=4)),
        lambda: FastSigmoid(4.0, inclusive=False),
    ),
    "spikingjelly-atan": ("spikingjelly", lambda: _ATanSubclass(alpha=2.0), lambda: ATan(2.0)),
    "spikingjelly-sigmoid": ("spikingjelly", lambda: _SigmoidSubclass(alpha=4.0), lambda: Sigmoid(4.0)),
}


def _neuron(framework: str, spike_fn: object) -> nn.Module:
    if framework == "snntorch":
        return skins.DecoupledLIF(8, beta=0.7, learn_beta=True, init_hidden=True, spike_grad=spike_fn)
    return DecoupledLIFNode(8, tau=3.0, learn_decay=True, surrogate_function=spike_fn)


def _model(framework: str, spike_fn, layers: int) -> nn.Module:
    torch.manual_seed(0)
    parts: list[nn.Module] = [nn.Linear(4, 8)]
    for _ in range(layers - 1):
        parts += [_neuron(framework, spike_fn()), nn.Linear(8, 8)]
    model = nn.Sequential(*parts, _neuron(framework, spike_fn()), nn.Linear(8, 3)).double()
    for module in model:
        if isinstance(module, nn.Linear):
            nn.init.uniform_(module.weight, -2, 2)  # spikes in every layer
    return model


@pytest.mark.parametrize("case", CASES)
def test_hypr_gives_a_framework_surrogate_the_gradient_of_ours(case):
    """Two neuron layers (e-prop's approximation in the lower one, the same for both surrogates), learnt
    decays and weights, chunks of 2 of 6 steps: HYPR's gradient with the framework's surrogate equals
    HYPR's with ours to float64 rounding."""
    framework, theirs, ours = CASES[case]
    x, y = torch.rand(6, 5, 4, dtype=torch.float64) * 2, torch.randint(0, 3, (5,))
    model = _model(framework, theirs, 2)
    assert isinstance(model[1].core.surrogate, ForeignSurrogate)  # run through its own backward
    got = _grads(HYPRTrainer, model, x, y, chunk=2)
    expected = _grads(HYPRTrainer, _model(framework, ours, 2), x, y, chunk=2)
    assert got.keys() == expected.keys() and len(got) == 8
    for name, value in expected.items():
        assert value.abs().sum() > 0, name
        torch.testing.assert_close(got[name], value, rtol=1e-12, atol=1e-14, msg=name)


@pytest.mark.parametrize("case", ["snntorch-atan", "spikingjelly-sigmoid"])
def test_hypr_with_a_framework_surrogate_equals_bptt_on_one_layer(case):
    """One neuron layer under a readout, where HYPR is exact: its gradient with the framework's surrogate
    equals BPTT's with the same surrogate (through the framework's own backward)."""
    framework, theirs, _ = CASES[case]
    x, y = torch.rand(6, 5, 4, dtype=torch.float64) * 2, torch.randint(0, 3, (5,))
    model = _model(framework, theirs, 1)
    reference = _grads(BPTTTrainer, model, x, y)
    got = _grads(HYPRTrainer, model, x, y, chunk=4)
    assert got.keys() == reference.keys() and len(got) == 5
    for name, value in reference.items():
        assert value.abs().sum() > 0, name
        torch.testing.assert_close(got[name], value, rtol=1e-10, atol=1e-12, msg=name)


class _NoForwardMode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * ATan().derivative(x)


class _OwnCall(ATan):
    """A surrogate that spikes through its own autograd.Function, which has no forward mode."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _NoForwardMode.apply(x)


def test_hypr_refuses_a_spike_function_without_forward_mode_naming_the_argument():
    model = nn.Sequential(nn.Linear(4, 8), skins.DecoupledLIF(8, init_hidden=True, spike_grad=_OwnCall()))
    with pytest.raises(
        UnsupportedModule,
        match=r"^1 \(DecoupledLIF\): HYPR takes forward-mode Jacobians.*without forward-mode or vmap support "
        r"\(.*\); give the neuron's surrogate argument \(surrogate=, spike_grad=.*surrogate_function=",
    ):
        HYPRTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
