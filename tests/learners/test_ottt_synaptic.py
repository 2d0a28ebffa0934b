r"""OTTT's neuron trace for the synaptic (second-order) LIF, :math:`i_t = \alpha i_{t-1} + x_t`,
:math:`u'_t = \beta u'_{t-1} + g\, i_t`: two eligibilities per synapse (the current's, filtered by :math:`\alpha`, and
the membrane's, filtered by :math:`\beta` and fed by the current's) and the neuron's own for :math:`\alpha`,
:math:`\beta` and the threshold give BPTT's gradients for one layer (resets detached), through the neuron, its snnTorch
skin and its SpikingJelly node; without any one of the eligibilities a gradient differs."""

from __future__ import annotations

import pytest
import torch
from learner_support import assert_close_dicts, bptt_gradients, digits_like, trainer_gradients, wide
from torch import nn

from snn_parallel.learners import BPTTTrainer, OTTTTrainer, StepLoss, rules
from snn_parallel.neurons import SynapticLIF
from snn_parallel.surrogate import Sigmoid

THRESHOLDS = [0.6, 0.8, 1.0, 0.7, 0.9, 1.1]


def _decay_input(neuron: SynapticLIF) -> SynapticLIF:
    neuron.decay_input = True  # u'_t = beta u'_{t-1} + (1 - beta) i_t: the gain is learned with beta
    return neuron


NEURONS = {
    "per-channel": lambda: SynapticLIF(
        6, tau_syn=3.0, tau=2.0, learn_decay=True, v_threshold=THRESHOLDS, learn_threshold=True, surrogate=Sigmoid()
    ),
    "shared": lambda: SynapticLIF(
        6, tau_syn=3.0, tau=2.0, learn_decay="shared", learn_threshold="shared", surrogate=Sigmoid()
    ),
    "alpha-only": lambda: SynapticLIF(6, tau_syn=4.0, learn_syn_decay=True, surrogate=Sigmoid()),
    "no-reset": lambda: SynapticLIF(6, tau_syn=3.0, learn_decay=True, reset=False, surrogate=Sigmoid()),
    "delayed": lambda: SynapticLIF(
        6,
        tau_syn=3.0,
        learn_decay=True,
        v_threshold=THRESHOLDS,
        learn_threshold=True,
        reset_delay=True,
        surrogate=Sigmoid(),
    ),  # fmt: skip
    "delayed-shared": lambda: SynapticLIF(6, learn_decay="shared", reset_delay=True, surrogate=Sigmoid()),
    "decay-input": lambda: _decay_input(SynapticLIF(6, tau_syn=3.0, tau=2.0, learn_decay=True, surrogate=Sigmoid())),
}


def _model(neuron: str) -> nn.Sequential:
    torch.manual_seed(5)
    return nn.Sequential(wide(nn.Linear(4, 6), gain=2.0), NEURONS[neuron](), nn.Linear(6, 3)).double()


def _reference(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """BPTT's gradients, with every parameter of the neuron mattering for the check."""
    spikes, _ = model[1](model[0](x))
    assert spikes.sum() > 10, "the layer must fire for the check to mean something"
    reference = bptt_gradients(model, x, y, StepLoss("ce", "all"))
    assert all(g.abs().min() > 0 for name, g in reference.items() if name.startswith("1.")), reference
    return reference


def _neuron_trace(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    return trainer_gradients(OTTTTrainer, model, x, y, trace_input=True, trace="neuron")


@pytest.mark.parametrize("neuron", list(NEURONS))
def test_the_neuron_trace_gives_bptts_gradients_for_one_synaptic_layer(neuron):
    """Weights, bias, learned alpha and beta (per channel or shared), the learned threshold, with the reset within the
    step, the delayed one and none: every gradient is BPTT's."""
    model = _model(neuron)
    x, y = digits_like(steps=12)
    reference = _reference(model, x, y)
    assert_close_dicts(_neuron_trace(model, x, y), reference)


def _zeroing(path: tuple) -> object:
    """An ``_Eligibility`` builder that zeroes the part at ``path`` (a field, then indices) at every step."""
    eligibility_type = rules._Eligibility

    def zero(part: object, rest: tuple) -> object:
        if not rest:
            return torch.zeros_like(part)
        return tuple(zero(p, rest[1:]) if i == rest[0] else p for i, p in enumerate(part))

    def build(*fields: object) -> object:
        eligibility = eligibility_type(*fields)
        field = eligibility._fields.index(path[0])
        return eligibility._replace(**{path[0]: zero(eligibility[field], path[1:])})

    return build


@pytest.mark.parametrize(
    "neuron, path, parameter",
    [
        ("per-channel", ("weights", 0, 0), "0.weight"),  # e^I_ij, the current's eligibility of a weight
        ("per-channel", ("bias", 0), "0.bias"),  # e^I_i, the bias's
        ("per-channel", ("d_rho", 0, 0), "1.syn_decay_logit"),  # di_t/dalpha
        ("per-channel", ("d_rho", 0, 1), "1.syn_decay_logit"),  # du'_t/dalpha, through the current
        ("per-channel", ("d_rho", 1, 0), "1.decay_logit"),  # du'_t/dbeta
        ("decay-input", ("d_gain", 1, 0), "1.decay_logit"),  # du'_t/dg, g = 1 - beta
        ("delayed", ("d_reset",), "1.decay_logit"),  # db_t/dbeta, the pending resets'
    ],
)
def test_each_eligibility_of_the_synaptic_trace_is_needed(neuron, path, parameter, monkeypatch):
    model = _model(neuron)
    x, y = digits_like(steps=12)
    reference = _reference(model, x, y)
    monkeypatch.setattr(rules, "_Eligibility", _zeroing(path))
    without = _neuron_trace(model, x, y)
    assert not torch.allclose(without[parameter], reference[parameter], rtol=1e-6, atol=1e-9)


def test_the_carried_threshold_is_needed_for_the_synaptic_neuron(monkeypatch):
    model = _model("per-channel")
    x, y = digits_like(steps=12)
    reference = _reference(model, x, y)
    monkeypatch.setattr(OTTTTrainer, "_carried_threshold", staticmethod(lambda driver: None))
    without = _neuron_trace(model, x, y)
    assert not torch.allclose(without["1.v_threshold"], reference["1.v_threshold"], rtol=1e-6, atol=1e-9)


def test_a_first_order_trace_misses_the_current(monkeypatch):
    """Told the membrane's stage alone, :math:`u'_t = \\beta u'_{t-1} + g x_t` (the neuron itself unchanged), the
    trace gets the weights' gradients wrong: the current's filter is a stage of its own."""
    model = _model("per-channel")
    x, y = digits_like(steps=12)
    reference = _reference(model, x, y)
    stages = model[1].linear_stages
    monkeypatch.setattr(model[1], "linear_stages", lambda: stages()[1:])
    first_order = _neuron_trace(model, x, y)
    assert not torch.allclose(first_order["0.weight"], reference["0.weight"], rtol=1e-6, atol=1e-9)


@pytest.mark.legacy
@pytest.mark.parametrize("reset", ["subtract", "none"])
@pytest.mark.parametrize("reset_delay", [True, False])
def test_the_neuron_trace_is_exact_through_the_snntorch_synaptic_skin(reset, reset_delay):
    """snnTorch's ``Synaptic`` (its default delayed reset, the reset within the step and none) with per-neuron learned
    alpha, beta and threshold: OTTT's neuron trace gives BPTT's gradients."""
    pytest.importorskip("snntorch")
    from snn_parallel.adapters.snntorch import Synaptic

    torch.manual_seed(5)
    skin = Synaptic(
        6,
        alpha=torch.linspace(0.6, 0.8, 6),
        beta=torch.linspace(0.5, 0.7, 6),
        threshold=torch.tensor(THRESHOLDS),
        learn_alpha=True,
        learn_beta=True,
        learn_threshold=True,
        reset_mechanism=reset,
        reset_delay=reset_delay,
        spike_grad=Sigmoid(),
        init_hidden=True,
    )
    model = nn.Sequential(wide(nn.Linear(4, 6), gain=2.0), skin, nn.Linear(6, 3)).double()
    x, y = digits_like(steps=12)
    reference = trainer_gradients(BPTTTrainer, model, x, y)
    assert len(reference) == 7 and all(g.abs().sum() > 0 for g in reference.values())
    assert_close_dicts(_neuron_trace(model, x, y), reference)


@pytest.mark.legacy
def test_the_neuron_trace_is_exact_through_the_spikingjelly_cuba_node():
    """SpikingJelly's current-based LIF (``CUBALIFNode`` with a soft, detached reset) as our node: the synapses'
    gradients are BPTT's, which the presynaptic trace's are not."""
    pytest.importorskip("spikingjelly")
    from snn_parallel.adapters.spikingjelly import DecoupledCUBALIFNode

    torch.manual_seed(5)
    node = DecoupledCUBALIFNode(6, c_decay=0.6, v_decay=0.7, v_threshold=0.5, surrogate_function=Sigmoid())
    model = nn.Sequential(wide(nn.Linear(4, 6), gain=2.0), node, nn.Linear(6, 3)).double()
    x, y = digits_like(steps=12)
    reference = trainer_gradients(BPTTTrainer, model, x, y)
    assert reference["0.weight"].abs().sum() > 0
    assert_close_dicts(_neuron_trace(model, x, y), reference)
    presynaptic = trainer_gradients(OTTTTrainer, model, x, y, trace_input=True, trace_decay=0.7, readout="instant")
    assert not torch.allclose(presynaptic["0.weight"], reference["0.weight"], atol=1e-6)
