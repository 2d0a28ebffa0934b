"""The snnTorch skins' per-neuron and learned ``threshold`` (``DecoupledLIF``, ``PRF``, ``DynamicDecay``): one tensor
shared with the core, retuned by assignment, state dicts to and from ``snn.Leaky``, every entry point, against
``snn.Leaky``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

snn = pytest.importorskip("snntorch")
from snn_parallel.adapters.snntorch import PRF, DecoupledLIF, DynamicDecay  # noqa: E402

from snn_parallel.surrogate import FastSigmoid  # noqa: E402

F64 = torch.float64
CHANNELS = 5


def _thresholds() -> torch.Tensor:
    return torch.tensor([0.4, 0.6, 0.8, 1.0, 1.2])


@pytest.mark.parametrize("cls", [DecoupledLIF, PRF, DynamicDecay])
def test_the_learned_threshold_is_one_parameter_shared_with_the_core(cls):
    neuron = cls(CHANNELS, threshold=_thresholds(), learn_threshold=True)
    assert isinstance(neuron.threshold, nn.Parameter) and neuron.threshold is neuron.core.v_threshold
    assert sum(p is neuron.threshold for p in neuron.parameters()) == 1
    assert "threshold=learned per channel" in repr(neuron)
    fixed = cls(CHANNELS, threshold=_thresholds())  # per neuron, not learned: the core's buffer
    assert fixed.threshold is fixed.core.v_threshold and not fixed.threshold.requires_grad
    assert not any(p is fixed.threshold for p in fixed.parameters())
    one = cls(CHANNELS, threshold=torch.full((CHANNELS,), 0.5))  # equal values: one value, as before
    assert isinstance(one.core.v_threshold, float) and one.threshold.shape == (CHANNELS,)
    assert "threshold" in dict(one.named_buffers())


def test_a_lazy_learned_threshold_trains_under_an_optimizer_built_before_the_first_step():
    neuron = DecoupledLIF(beta=0.8, threshold=torch.full((CHANNELS,), 0.5), learn_threshold=True)
    optimizer = torch.optim.SGD(neuron.parameters(), lr=0.5)
    spk, mem = neuron(torch.rand(3, CHANNELS) * 2)
    assert neuron.threshold.shape == (CHANNELS,) and torch.equal(neuron.threshold.detach(), torch.full((5,), 0.5))
    (spk.sum() + mem.sum()).backward()
    optimizer.step()
    assert not torch.equal(neuron.threshold.detach(), torch.full((5,), 0.5))
    assert neuron.threshold is neuron.core.v_threshold


def test_assigning_the_threshold_retunes_the_core_in_place():
    neuron = DecoupledLIF(CHANNELS, threshold=_thresholds(), learn_threshold=True)
    parameter = neuron.threshold
    neuron.threshold = torch.full((CHANNELS,), 0.3)
    assert neuron.threshold is parameter and torch.equal(parameter.detach(), torch.full((CHANNELS,), 0.3))
    neuron.threshold = torch.tensor(0.7)  # one value for every channel
    assert torch.equal(parameter.detach(), torch.full((CHANNELS,), 0.7))
    neuron.threshold = 0.9
    assert neuron.threshold is parameter and torch.equal(parameter.detach(), torch.full((CHANNELS,), 0.9))
    with pytest.raises(TypeError, match="threshold must be a real number"):
        neuron.threshold = "high"
    with pytest.raises(ValueError, match="threshold has 3 values for 5 features"):
        neuron.threshold = torch.rand(3)
    with pytest.raises(ValueError, match="threshold must hold finite values"):
        neuron.threshold = torch.tensor([0.5, float("nan"), 0.5, 0.5, 0.5])
    lazy = PRF(threshold=torch.full((CHANNELS,), 0.2), learn_threshold=True)
    lazy.threshold = _thresholds()  # before the first input: the values it is built from
    lazy(torch.rand(2, CHANNELS))
    torch.testing.assert_close(lazy.threshold.detach(), _thresholds())


def test_state_dicts_go_to_and_from_snn_leaky_with_a_learned_threshold():
    leaky = snn.Leaky(beta=0.8, threshold=torch.rand(CHANNELS) + 0.5, learn_threshold=True)
    ours = DecoupledLIF(CHANNELS, beta=0.5, threshold=torch.ones(CHANNELS) * 2, learn_threshold=True)
    ours.load_state_dict(leaky.state_dict(), strict=False)
    assert torch.equal(ours.threshold, leaky.threshold) and ours.threshold is ours.core.v_threshold
    assert ours.beta.item() == pytest.approx(0.8)
    back = snn.Leaky(beta=0.8, threshold=torch.zeros(CHANNELS), learn_threshold=True)
    back.load_state_dict(ours.state_dict(), strict=False)
    assert torch.equal(back.threshold, ours.threshold)
    copy = DecoupledLIF(beta=0.5, threshold=torch.ones(CHANNELS), learn_threshold=True)  # lazy, per neuron
    copy.load_state_dict(ours.state_dict())
    assert torch.equal(copy.threshold, ours.threshold) and copy.threshold is copy.core.v_threshold
    shared = snn.Leaky(beta=0.8, threshold=0.9, learn_threshold=True)  # one learned value: every channel's
    ours.load_state_dict(shared.state_dict(), strict=False)
    assert torch.equal(ours.threshold.detach(), torch.full((CHANNELS,), 0.9))
    with pytest.raises(ValueError, match="threshold has 3 values for 5 features"):
        ours.load_state_dict(snn.Leaky(beta=0.8, threshold=torch.rand(3), learn_threshold=True).state_dict(), False)


@pytest.mark.parametrize("spatial", [False, True], ids=["flat", "feature-maps"])
def test_per_neuron_thresholds_fire_as_snn_leaky_and_multistep_equals_the_steps(spatial):
    """Over feature maps ``snn.Leaky`` takes the per-channel threshold as ``[C, 1, 1]`` (elementwise
    broadcasting), which the skin accepts too; ``multistep`` gives the steps' spikes, membranes and threshold
    gradient, which is ``snn.Leaky(learn_threshold=True)``'s (both with snnTorch's default delayed reset)."""
    torch.manual_seed(0)
    shape = (3, CHANNELS, 2, 2) if spatial else (3, CHANNELS)
    threshold = _thresholds().double().view(-1, *([1] * (len(shape) - 2)))
    grad = FastSigmoid(inclusive=False)
    leaky = snn.Leaky(beta=0.7, threshold=threshold.clone(), spike_grad=grad, learn_threshold=True)
    ours = DecoupledLIF(beta=0.7, threshold=threshold, learn_threshold=True, spike_grad=grad).double()
    x = torch.rand(20, *shape, dtype=F64) * 0.5
    mem_leaky = leaky.init_leaky()
    steps, leaky_steps = [], []
    for x_t in x:
        spk_leaky, mem_leaky = leaky(x_t, mem_leaky)
        spk, mem = ours(x_t)
        assert torch.equal(spk, spk_leaky)
        torch.testing.assert_close(mem, mem_leaky)
        steps.append((spk, mem))
        leaky_steps.append((spk_leaky, mem_leaky))
    assert sum(s.sum() for s, _ in steps) > 20
    stepped_grad = torch.autograd.grad(sum((s + m).sum() for s, m in steps), ours.threshold)[0]
    leaky_grad = torch.autograd.grad(sum((s + m).sum() for s, m in leaky_steps), leaky.threshold)[0]
    torch.testing.assert_close(stepped_grad.view(leaky_grad.shape), leaky_grad)
    ours.reset_mem()
    spk_seq, mem_seq = ours.multistep(x)
    assert torch.equal(spk_seq, torch.stack([s for s, _ in steps]))
    torch.testing.assert_close(mem_seq, torch.stack([m for _, m in steps]))
    torch.testing.assert_close(torch.autograd.grad((spk_seq + mem_seq).sum(), ours.threshold)[0], stepped_grad)
    assert stepped_grad.abs().min() > 0


#: skins other than DecoupledLIF (tested against snn.Leaky above): (factory of a learned per-channel threshold, input)
MULTISTEP_SKINS = {
    "prf": (lambda t: PRF(CHANNELS, threshold=t / 4, learn_threshold=True), lambda: torch.randn(16, 3, CHANNELS)),
    "prf-subtract": (
        lambda t: PRF(CHANNELS, threshold=t / 4, learn_threshold=True, reset_mechanism="subtract"),
        lambda: torch.randn(16, 3, CHANNELS),
    ),
    "dsn": (
        lambda t: DynamicDecay(CHANNELS, threshold=t / 2, learn_threshold=True),
        lambda: torch.rand(20, 3, CHANNELS) * 1.5,
    ),
}


@pytest.mark.parametrize("name", MULTISTEP_SKINS)
def test_multistep_equals_the_steps_with_a_learned_threshold(name):
    """``multistep`` (the kernels' path on a GPU) gives the steps' spikes and threshold gradient."""
    make, draw = MULTISTEP_SKINS[name]
    torch.manual_seed(1)
    neuron = make(_thresholds()).double()
    x = draw().double()
    stepped = torch.stack([neuron(x_t)[0] for x_t in x])
    stepped_grad = torch.autograd.grad(stepped.sum(), neuron.threshold)[0]
    neuron.reset_mem()
    spk_seq, _ = neuron.multistep(x)
    assert torch.equal(spk_seq, stepped) and stepped.sum() > 10
    torch.testing.assert_close(torch.autograd.grad(spk_seq.sum(), neuron.threshold)[0], stepped_grad)
    assert stepped_grad.abs().max() > 0


def test_dsn_skin_with_integer_spikes_refuses_a_learned_threshold():
    with pytest.raises(ValueError, match="binary mode's"):
        DynamicDecay(CHANNELS, spike_mode="integer", learn_threshold=True)


def test_nir_export_writes_the_learned_per_neuron_thresholds():
    nir = pytest.importorskip("nir")
    pytest.importorskip("nirtorch")
    export_nir = pytest.importorskip("snntorch.export_nir")
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(12, CHANNELS),
        DecoupledLIF(beta=0.9 * torch.ones(CHANNELS), threshold=_thresholds(), learn_threshold=True, init_hidden=True),
    )
    graph = export_nir.export_to_nir(net, torch.rand(2, 12), ignore_dims=[0])
    (lif,) = [node for node in graph.nodes.values() if isinstance(node, nir.LIF)]
    torch.testing.assert_close(torch.as_tensor(lif.v_threshold), _thresholds())
