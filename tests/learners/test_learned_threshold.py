"""The learners with a learned per-channel threshold (``learn_threshold=True``): HYPR, FPTT and OTTT's neuron
trace give BPTT's threshold gradient for one layer, with and without a reset (which carries the threshold to
later steps through the threshold bias)."""

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


@pytest.mark.parametrize("neuron", ["lif", "prf-reset"])
def test_ottt_neuron_trace_gives_bptts_threshold_gradient_with_a_reset(neuron):
    r"""With a reset, :math:`V_{th}` also acts on later steps through the threshold bias, which OTTT detaches
    between steps; the neuron trace adds that part from the bias itself (:math:`\partial b_t/\partial V = b_t/V`
    from rest): every gradient, the threshold's included, is BPTT's. The part within each step alone
    (:math:`-\sum_t \delta_t f'(m_t - V_{th})`) is not."""
    torch.manual_seed(4)
    if neuron == "lif":
        core = DecoupledLIF(6, tau=2.0, v_threshold=THRESHOLDS, learn_threshold=True, surrogate=Sigmoid())
    else:  # the bias's decay Re A detached: OTTT does not trace the official gradient through it into A
        core = NEURONS[neuron]()
        core.reset_gradient = "detached"
    model = nn.Sequential(wide(nn.Linear(4, 6, bias=False)), core, nn.Linear(6, 3)).double()
    x, y = digits_like()
    reference = trainer_gradients(BPTTTrainer, model, x, y)
    got = trainer_gradients(OTTTTrainer, model, x, y, trace_input=True, trace="neuron")
    assert_close_dicts(got, reference)
    spikes, membrane, _ = core(model[0](x), return_membrane=True)
    spikes.retain_grad()
    StepLoss("ce", "all").sequence_loss(model[2](spikes), y).backward()
    instantaneous = -(spikes.grad * core.surrogate.derivative(membrane - core.v_threshold)).sum((0, 1))
    assert spikes.sum() > 10
    assert not torch.allclose(instantaneous.detach(), reference["1.v_threshold"], atol=1e-6)
