"""``surrogate_disable=True``: snnTorch's neurons then spike through a plain comparison (their
``_surrogate_bypass``), so the spikes carry no gradient and only ``mem`` (and a learned graded spikes factor) does.
The skins of ``snn.Leaky`` / ``snn.Synaptic`` / ``snn.Lapicque`` give the same spikes, ``mem`` and gradients (input,
weights, a learned threshold, decay and graded spikes factor) as those neurons built with the option, stepped and in
``multistep`` (float64, side by side); ``from_snntorch`` / ``to_snntorch`` carry the option. The other skins keep
their spikes and ``mem`` and lose the gradient through the spike."""

from __future__ import annotations

import pytest
import torch

snn = pytest.importorskip("snntorch")
from snn_parallel.adapters.snntorch import (  # noqa: E402
    LTC,
    PRF,
    PSPLIF,
    DecoupledLIF,
    DynamicDecay,
    Lapicque,
    Synaptic,
    from_snntorch,
    to_snntorch,
)

# tutorial 5's network, its data and loss, shared with to_snntorch's tests
from test_snntorch_to_snntorch import Net, _input, _loss, _per_neuron, _value  # noqa: E402

F64 = torch.float64
#: each snnTorch neuron and its skin
SKIN_OF = {snn.Leaky: DecoupledLIF, snn.Synaptic: Synaptic, snn.Lapicque: Lapicque}
#: (snnTorch class, options besides surrogate_disable=True)
CASES = {
    "leaky_learned": (snn.Leaky, dict(beta=0.9, threshold=1.0, learn_beta=True, learn_threshold=True)),
    "leaky_learned_per_neuron": (
        snn.Leaky,
        dict(beta=_per_neuron(0.6, 0.95), threshold=_per_neuron(0.7, 1.3), learn_beta=True, learn_threshold=True),
    ),
    "leaky_graded_spikes": (snn.Leaky, dict(beta=0.85, graded_spikes_factor=1.5, learn_graded_spikes_factor=True)),
    # the spike subtracted in the step that fired carries no gradient in snnTorch either: the gradients are the same
    "leaky_undelayed": (
        snn.Leaky,
        dict(beta=0.5, threshold=2.0, learn_beta=True, learn_threshold=True, reset_delay=False),
    ),
    "leaky_no_reset": (snn.Leaky, dict(beta=0.9, threshold=0.8, learn_beta=True, reset_mechanism="none")),
    "synaptic": (
        snn.Synaptic,
        dict(alpha=_per_neuron(0.5, 0.9), beta=0.85, learn_alpha=True, learn_beta=True, learn_threshold=True),
    ),
    "lapicque": (snn.Lapicque, dict(beta=0.9, threshold=0.25, learn_threshold=True)),
}
#: snnTorch's bypass spikes are float32 whatever the input, so its ``reset * threshold`` and ``spk *
#: graded_spikes_factor`` are float32 for a 0-d threshold or factor, whose gradient is then summed in float32 (rounded
#: at ~1e-7): the tolerance for those (the 0-d thresholds below are exact in float32, so the forward is exact)
FLOAT32_RTOL = 1e-6


def _nets(case):
    """Tutorial 5's network written with the snnTorch neuron of ``case`` and with its skin, both with
    ``surrogate_disable=True`` and the same weights (float64)."""
    cls, options = CASES[case]

    def build(neuron_cls):
        return lambda size: neuron_cls(
            **{name: _value(value, size) for name, value in options.items()}, surrogate_disable=True
        )

    synaptic = cls is snn.Synaptic
    nets = Net(build(cls), synaptic).double(), Net(build(SKIN_OF[cls]), synaptic).double()
    for net in nets:  # snnTorch's bypass spikes are float32 whatever the input: fc2 takes them in its dtype
        net.fc2.register_forward_pre_hook(lambda layer, args: (args[0].to(layer.weight.dtype),))
    return nets


def _assert_same_gradients(theirs, ours, decays=True):
    """Gradients of the same names (the Linears', a learned graded spikes factor), the thresholds' and (``decays``),
    by the chain rule, the decays' (snnTorch learns :math:`\\beta`, the skin :math:`w` with :math:`\\beta =
    \\sigma(w)`)."""
    ours_parameters = dict(ours.named_parameters())
    for name, parameter in theirs.named_parameters():
        neuron_name, _, attribute = name.rpartition(".")
        skin = ours.get_submodule(neuron_name)
        if name in ours_parameters or attribute == "threshold":
            grad = (ours_parameters[name] if name in ours_parameters else skin.threshold).grad
            rtol = FLOAT32_RTOL if attribute in ("threshold", "graded_spikes_factor") and parameter.dim() == 0 else 1e-9
            torch.testing.assert_close(grad.reshape(-1), parameter.grad.reshape(-1), rtol=rtol, atol=1e-10)
        elif decays:
            logit = {"beta": "decay_logit", "alpha": "syn_decay_logit"}[attribute]
            chained = parameter.grad * parameter.detach() * (1 - parameter.detach())
            grad = getattr(skin.core, logit).grad
            torch.testing.assert_close(grad.reshape(-1), chained.reshape(-1), rtol=1e-9, atol=1e-12)


def _run(net, seed=2):
    net.zero_grad(set_to_none=True)
    x = _input(seed, True)
    spikes, mems = net(x)
    _loss(spikes.to(F64), mems).backward()  # snnTorch's spikes carry no graph: the loss reaches them through mem
    return x, spikes.to(F64), mems.detach()


@pytest.mark.parametrize("case", list(CASES))
def test_the_skin_steps_as_the_snntorch_neuron_with_surrogate_disable(case, float64):
    theirs, ours = _nets(case)
    (x_theirs, spikes_theirs, mems_theirs), (x_ours, spikes_ours, mems_ours) = _run(theirs), _run(ours)
    assert spikes_theirs.any()  # the case fires
    torch.testing.assert_close(spikes_ours, spikes_theirs, rtol=0, atol=0)
    torch.testing.assert_close(mems_ours, mems_theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-9, atol=1e-10)
    assert x_ours.grad.abs().sum() > 0
    _assert_same_gradients(theirs, ours)


@pytest.mark.parametrize("case", ["leaky_learned", "leaky_undelayed", "synaptic", "lapicque"])
def test_multistep_is_the_snntorch_neuron_with_surrogate_disable_stepped(case, float64):
    """One neuron on a whole sequence: ``multistep``'s spikes, states and gradients are snnTorch's stepping."""
    cls, options = CASES[case]
    options = {name: _value(value, 4) for name, value in options.items()}
    theirs = cls(**options, surrogate_disable=True).double()
    ours = SKIN_OF[cls](**options, surrogate_disable=True).double()
    x = torch.rand(12, 3, 4, dtype=F64) * 1.5  # (for the undelayed reset, one subtraction is enough)
    weights = torch.linspace(-1, 1, 12, dtype=F64).view(-1, 1, 1)
    x_theirs, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = [torch.stack(values) for values in zip(*[theirs(x_t) for x_t in x_theirs.unbind(0)], strict=True)]
    got = ours.multistep(x_ours)
    assert expected[0].any() and not expected[0].all()
    for mine, reference in zip(got, expected, strict=True):
        torch.testing.assert_close(mine, reference.to(F64), rtol=1e-12, atol=1e-12)
    for spikes, *_, mem in (expected, got):  # snnTorch's spikes carry no graph: a loss reaches them through mem only
        (weights * (spikes.to(F64) + mem**2)).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-9, atol=1e-10)
    # with the reset in the step, multistep gives a learned decay its gradient through the reset-free membrane
    # (DecoupledLIF's learn_beta): the decays' compared with the delayed reset only
    _assert_same_gradients(theirs, ours, decays=options.get("reset_delay", True))


@pytest.mark.parametrize("case", ["leaky_learned", "synaptic", "lapicque"])
def test_from_snntorch_and_to_snntorch_carry_the_option(case, float64):
    theirs, _ = _nets(case)
    ours = from_snntorch(theirs)
    assert ours.lif1.surrogate_disable is True and type(ours.lif1) is SKIN_OF[type(theirs.lif1)]
    (x_theirs, spikes_theirs, mems_theirs), (x_ours, spikes_ours, mems_ours) = _run(theirs), _run(ours)
    torch.testing.assert_close(spikes_ours, spikes_theirs, rtol=0, atol=0)
    torch.testing.assert_close(mems_ours, mems_theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-9, atol=1e-10)
    _assert_same_gradients(theirs, ours)
    back = to_snntorch(ours)
    assert back.lif1.surrogate_disable is True and back.lif1.spike_grad == back.lif1._surrogate_bypass
    back.load_state_dict(theirs.state_dict(), strict=True)
    x_back, spikes_back, _ = _run(back)
    torch.testing.assert_close(spikes_back, spikes_theirs, rtol=0, atol=0)
    torch.testing.assert_close(x_back.grad, x_theirs.grad, rtol=1e-12, atol=1e-12)


# -- the skins with no snnTorch twin: the same spikes and mem, no gradient through the spike -------------------------
OTHERS = [
    pytest.param(DynamicDecay, {}, 3.0, id="dsn"),
    pytest.param(PRF, {"tau": 0.5, "dt_range": (0.5, 1.0), "threshold": 0.25}, 3.0, id="prf"),
    pytest.param(LTC, {}, 1.0, id="ltc"),
    pytest.param(PSPLIF, {}, 3.0, id="psplif"),
]


@pytest.mark.parametrize("cls, options, scale", OTHERS)
def test_the_other_skins_keep_their_spikes_and_lose_the_gradient_through_them(cls, options, scale):
    """As snnTorch's comparison: a loss on the spikes reaches neither the input nor a parameter; ``mem`` is the
    neuron's own (for the DSN, whose membrane does not depend on its spikes, with its gradient too)."""
    torch.manual_seed(0)
    plain = cls(8, **options).double()
    torch.manual_seed(0)
    disabled = cls(8, **options, surrogate_disable=True).double()
    disabled.load_state_dict(plain.state_dict())
    assert disabled.surrogate_disable and disabled.spike_grad == disabled._surrogate_bypass
    x = torch.rand(16, 3, 8, dtype=F64) * scale
    x_plain, x_disabled = x.clone().requires_grad_(), x.clone().requires_grad_()
    spikes, mem = plain.multistep(x_plain)
    spikes_disabled, mem_disabled = disabled.multistep(x_disabled)
    assert spikes.any() and not spikes.all()
    torch.testing.assert_close(spikes_disabled, spikes, rtol=0, atol=0)
    torch.testing.assert_close(mem_disabled, mem, rtol=0, atol=0)
    inputs = [x_disabled, *(p for p in disabled.parameters() if p.requires_grad)]
    for grad in torch.autograd.grad(spikes_disabled.sum(), inputs, allow_unused=True, retain_graph=True):
        assert grad is None or not grad.any()
    assert torch.autograd.grad(spikes.sum(), x_plain, retain_graph=True)[0].any()  # (the plain one's does)
    if cls is DynamicDecay:
        (expected,) = torch.autograd.grad(mem.square().sum(), x_plain)
        (got,) = torch.autograd.grad(mem_disabled.square().sum(), x_disabled)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
    plain.reset_mem()
    disabled.reset_mem()
    for x_t in x[:4].unbind(0):  # forward, one step at a time, too
        x_t = x_t.clone().requires_grad_()
        spk, _ = plain(x_t)
        spk_disabled, _ = disabled(x_t)
        torch.testing.assert_close(spk_disabled, spk, rtol=0, atol=0)
        (grad,) = torch.autograd.grad(spk_disabled.sum(), x_t, allow_unused=True)
        assert grad is None or not grad.any()
