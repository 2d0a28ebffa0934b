"""One learned value for every channel (``learn_decay="shared"``, ``learn_threshold="shared"``): the neuron is the
per-channel one with every channel's value equal, and the shared parameter's gradient is the sum of the
per-channel ones (what a framework's scalar ``beta``/``threshold`` parameter gets)."""

from __future__ import annotations

import copy

import pytest
import torch
from learner_support import assert_close_dicts, bptt_gradients, digits_like, trainer_gradients, wide
from torch import nn

from snn_parallel.learners import FPTTTrainer, HYPRTrainer, OTTTTrainer, StepLoss
from snn_parallel.neurons import PRF, DecoupledLIF, DynamicDecay, SynapticLIF
from snn_parallel.surrogate import Sigmoid

F64 = torch.float64

#: name -> (shared neuron, the same with per-channel parameters, the shared names, input scale)
CASES = {
    "lif": (
        lambda **k: DecoupledLIF(4, tau=3.0, learn_decay="shared", learn_threshold="shared", v_threshold=0.8, **k),
        lambda **k: DecoupledLIF(4, tau=3.0, learn_decay=True, learn_threshold=True, v_threshold=0.8, **k),
        ("decay_logit", "v_threshold"),
        1.5,
    ),
    "lif-decay-input": (
        lambda **k: DecoupledLIF(4, tau=3.0, learn_decay="shared", decay_input=True, **k),
        lambda **k: DecoupledLIF(4, tau=3.0, learn_decay=True, decay_input=True, **k),
        ("decay_logit",),
        4.0,
    ),
    "synaptic": (
        lambda **k: SynapticLIF(4, tau_syn=3.0, learn_decay="shared", learn_threshold="shared", **k),
        lambda **k: SynapticLIF(4, tau_syn=3.0, learn_decay=True, learn_threshold=True, **k),
        ("syn_decay_logit", "decay_logit", "v_threshold"),
        1.0,
    ),
    "prf-reset": (
        lambda **k: PRF(4, reset=True, learn_threshold="shared", v_threshold=0.5, **k),
        lambda **k: PRF(4, reset=True, learn_threshold=True, v_threshold=0.5, **k),
        ("v_threshold",),
        3.0,
    ),
    "dsn": (
        lambda **k: DynamicDecay(4, learn_threshold="shared", v_threshold=0.6, **k),
        lambda **k: DynamicDecay(4, learn_threshold=True, v_threshold=0.6, **k),
        ("v_threshold",),
        2.0,
    ),
}


def _per_channel_copy(shared: nn.Module, per_channel: nn.Module) -> nn.Module:
    """``per_channel`` with ``shared``'s parameters, a shared one repeated in every channel."""
    values = {
        name: value.expand(per_channel.features) if value.dim() == 0 else value
        for name, value in shared.state_dict().items()
    }
    per_channel.load_state_dict(values)
    return per_channel


@pytest.mark.parametrize("case", sorted(CASES))
def test_shared_is_per_channel_with_equal_values_and_the_summed_gradient(case):
    make_shared, make_per_channel, names, scale = CASES[case]
    torch.manual_seed(0)
    shared = make_shared().double()
    for name in names:
        assert getattr(shared, name).dim() == 0 and isinstance(getattr(shared, name), nn.Parameter)
    per_channel = _per_channel_copy(shared, make_per_channel().double())
    x = (torch.rand(30, 2, 4, dtype=F64) * scale).requires_grad_()
    spikes, membrane, _ = shared(x, return_membrane=True)
    ref_spikes, ref_membrane, _ = per_channel(x, return_membrane=True)
    assert 10 < spikes.sum() < spikes.numel() - 10
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(membrane, ref_membrane)
    weights = torch.randn(spikes.shape, dtype=F64, generator=torch.Generator().manual_seed(1))
    ((spikes + membrane) * weights).sum().backward()
    ((ref_spikes + ref_membrane) * weights).sum().backward()
    grads = dict(per_channel.named_parameters())
    for name, param in shared.named_parameters():
        expected = grads[name].grad.sum() if name in names else grads[name].grad
        assert expected.abs().max() > 1e-6, f"{name} must matter for the check"
        torch.testing.assert_close(param.grad, expected, msg=name)


@pytest.mark.parametrize("case", sorted(CASES))
def test_steps_equal_the_parallel_forward(case):
    make_shared, _, _, scale = CASES[case]
    neuron = make_shared().double()
    x = torch.rand(25, 3, 4, dtype=F64) * scale
    spikes, _ = neuron(x)
    state, steps = None, []
    for x_t in x.unbind(0):
        s, state = neuron.step(x_t, state)
        steps.append(s)
    assert torch.equal(torch.stack(steps), spikes)


def test_a_lazy_neuron_holds_its_shared_values_before_the_first_input_and_state_dicts_round_trip():
    neuron = DecoupledLIF(tau=3.0, learn_decay="shared", learn_threshold="shared")
    assert neuron.has_uninitialized_params() and neuron.v_threshold.shape == ()
    torch.testing.assert_close(neuron.beta, torch.tensor(2 / 3))  # one value before the channel count is known
    optimizer = torch.optim.SGD(neuron.parameters(), lr=0.1)  # built before the first input, as with any module
    x = torch.rand(10, 2, 5) * 2
    neuron(x)[0].sum().backward()
    optimizer.step()
    assert neuron.beta.shape == (5,) and neuron.features == 5
    state = neuron.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {"decay_logit": (), "v_threshold": ()}
    clone = DecoupledLIF(tau=3.0, learn_decay="shared", learn_threshold="shared")
    clone.load_state_dict(state)
    assert torch.equal(clone(x)[0], neuron(x)[0])
    assert torch.equal(copy.deepcopy(neuron)(x)[0], neuron(x)[0])


@pytest.mark.parametrize("case", ["lif", "synaptic"])
def test_half_precision_keeps_the_shared_parameters(case):
    neuron = CASES[case][0]().to(torch.bfloat16)
    spikes, _ = neuron(torch.rand(12, 2, 4, dtype=torch.bfloat16) * 2)
    assert spikes.dtype == torch.bfloat16
    spikes.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.bfloat16 for p in neuron.parameters())


def _model(shared: str) -> nn.Sequential:
    torch.manual_seed(2)
    neuron = DecoupledLIF(6, learn_decay=shared, learn_threshold=shared, v_threshold=0.8, surrogate=Sigmoid())
    return nn.Sequential(wide(nn.Linear(4, 6)), neuron, nn.Linear(6, 3)).double()


def test_the_learners_give_bptts_gradients_to_shared_parameters():
    model = _model("shared")
    x, y = digits_like(steps=12)
    reference = bptt_gradients(model, x, y, StepLoss("ce", "all"))
    assert reference["1.v_threshold"].shape == () and reference["1.v_threshold"].abs() > 0
    assert_close_dicts(trainer_gradients(HYPRTrainer, model, x, y, chunk=5), reference)
    assert_close_dicts(trainer_gradients(FPTTTrainer, model, x, y, parts=1), reference)
    got = trainer_gradients(OTTTTrainer, model, x, y, trace_input=True, trace="neuron")
    assert_close_dicts(got, reference)


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: DecoupledLIF(3, learn_decay="per-layer"), TypeError, r"learn_decay must be a bool or 'shared'"),
        (lambda: DecoupledLIF(3, learn_threshold=1), TypeError, r"learn_threshold must be a bool or 'shared'"),
        (
            lambda: DecoupledLIF(3, learn_threshold="shared", v_threshold=[0.5, 1.0, 1.5]),
            ValueError,
            r"learn_threshold='shared' learns one threshold for every channel: v_threshold must be one number",
        ),
        (lambda: SynapticLIF(3, learn_syn_decay="all"), TypeError, r"learn_syn_decay must be a bool or 'shared'"),
        (
            lambda: DynamicDecay(3, spike_mode="integer", learn_threshold="shared"),
            ValueError,
            r"a per-channel or learned v_threshold is binary mode's",
        ),
        (lambda: PRF(3, learn_decay="shared"), TypeError, r"learn_decay must be a bool"),
    ],
)
def test_bad_sharing_arguments_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()
