"""The learners with a learned per-channel threshold (``learn_threshold=True``): HYPR and FPTT give BPTT's
threshold gradient; OTTT gives it where the threshold acts within the step (no reset), and only its
instantaneous part where a reset carries it across steps (its state is detached after every step)."""

from __future__ import annotations

import pytest
import torch
from learner_support import assert_close_dicts, bptt_gradients, digits_like, trainer_gradients, wide
from torch import nn

from snn_parallel.learners import BPTTTrainer, FPTTTrainer, HYPRTrainer, OTTTTrainer, StepLoss
from snn_parallel.neurons import PRF, DecoupledLIF
from snn_parallel.surrogate import Sigmoid

THRESHOLDS = [0.6, 0.8, 1.0, 0.7, 0.9, 1.1]
NEURONS = {
    "lif": lambda: DecoupledLIF(6, learn_decay=True, v_threshold=0.8, learn_threshold=True, surrogate=Sigmoid()),
    "prf": lambda: PRF(6, dt_range=(0.1, 1.0), v_threshold=0.3, learn_threshold=True, surrogate=Sigmoid()),
    "prf-reset": lambda: PRF(
        6,
        dt_range=(0.1, 1.0),
        reset=True,
        v_threshold=[t / 2 for t in THRESHOLDS],
        learn_threshold=True,
        surrogate=Sigmoid(),
    ),  # fmt: skip
}


def _model(neuron: str, seed: int = 1) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(wide(nn.Linear(4, 6)), NEURONS[neuron](), nn.Linear(6, 3)).double()


@pytest.mark.parametrize("neuron", sorted(NEURONS))
def test_hypr_and_fptt_give_bptts_threshold_gradient(neuron):
    """HYPR is exact for one layer at every chunk length, FPTT over one part is BPTT (its regulariser pulls
    nothing at the first step)."""
    model = _model(neuron)
    x, y = digits_like(steps=12)
    reference = bptt_gradients(model, x, y, StepLoss("ce", "all"))
    assert reference["1.v_threshold"].abs().min() > 0, "every neuron's threshold must matter for the check"
    for chunk in (1, 5, 12):
        assert_close_dicts(trainer_gradients(HYPRTrainer, model, x, y, chunk=chunk), reference)
    assert_close_dicts(trainer_gradients(FPTTTrainer, model, x, y, parts=1), reference)


def test_ottt_neuron_trace_gives_bptts_threshold_gradient_without_a_reset():
    model = _model("prf")
    x, y = digits_like()
    reference = trainer_gradients(BPTTTrainer, model, x, y)
    assert reference["1.v_threshold"].abs().min() > 0
    assert_close_dicts(trainer_gradients(OTTTTrainer, model, x, y, trace_input=True, trace="neuron"), reference)


def test_ottt_gives_a_reset_neurons_threshold_its_instantaneous_gradient_only():
    r"""With a reset, :math:`V_{th}` also acts through the threshold bias carried to later steps, which OTTT
    detaches: its threshold gradient is :math:`-\sum_t \delta_t f'(m_t - V_{th})`, the part within each step;
    every other gradient is BPTT's."""
    torch.manual_seed(4)
    neuron = DecoupledLIF(6, tau=2.0, v_threshold=THRESHOLDS, learn_threshold=True, surrogate=Sigmoid())
    model = nn.Sequential(wide(nn.Linear(4, 6, bias=False)), neuron, nn.Linear(6, 3)).double()
    x, y = digits_like()
    reference = trainer_gradients(BPTTTrainer, model, x, y)
    got = trainer_gradients(OTTTTrainer, model, x, y, trace_input=True, trace="neuron")
    assert_close_dicts({n: g for n, g in got.items() if n != "1.v_threshold"},
                       {n: g for n, g in reference.items() if n != "1.v_threshold"})  # fmt: skip
    spikes, membrane, _ = neuron(model[0](x), return_membrane=True)
    spikes.retain_grad()
    StepLoss("ce", "all").sequence_loss(model[2](spikes), y).backward()
    instantaneous = -(spikes.grad * neuron.surrogate.derivative(membrane - neuron.v_threshold)).sum((0, 1))
    torch.testing.assert_close(got["1.v_threshold"], instantaneous.detach())
    assert not torch.allclose(got["1.v_threshold"], reference["1.v_threshold"], atol=1e-6)
