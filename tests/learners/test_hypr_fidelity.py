"""HYPR against the official JAX code's computation: the three places where it departs from the exact
per-neuron Jacobians that ``HYPRTrainer`` takes, each shown to change the gradient, and only where it should.

The reference (``hypr_official.py``) is written from the official code's update order; with every
departure off it is the exact computation, checked here against ``HYPRTrainer`` and, for one
feed-forward layer, against an autograd loop written from the neurons' equations (BPTT with the
readout's state entering each step detached: the learning signal of the readout's own step).
"""

from __future__ import annotations

import pytest
import torch
from hypr_official import hypr_network, official_hypr_gradients
from learner_support import assert_close_dicts, cut_readout_bptt, relative_difference, trainer_gradients
from torch import nn

from snn_parallel.learners import HYPRTrainer, StepLoss

LOSS = StepLoss("ce", "all")
#: the hidden synapse's gain that makes each layer fire on these inputs (checked in _setup)
GAIN = {("BRF", False): 100.0, ("BRF", True): 120.0, ("SEAdLIF", False): 20.0, ("SEAdLIF", True): 20.0}


def _setup(kind: str, recurrent: bool, seed: int = 0):
    model = hypr_network(kind, recurrent, 3, 6, 4, GAIN[kind, recurrent], seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(24, 4, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (4,), generator=gen)
    with torch.no_grad():
        spikes = model[0](x) if recurrent else model[1](model[0](x))[0]
    assert 0.02 < float(spikes.mean()) < 0.6, float(spikes.mean())  # the layer fires, but not always
    return model, x, y, (lambda out: LOSS.sequence_loss(out, y))


def _hidden(grads: dict, model: nn.Sequential) -> torch.Tensor:
    """The hidden layer's gradient (synapse and neuron parameters), flattened."""
    readout = {f"{len(model) - 2}.weight", f"{len(model) - 2}.bias", f"{len(model) - 1}.tau"}
    return torch.cat([g.flatten() for n, g in sorted(grads.items()) if n not in readout])


@pytest.mark.parametrize("recurrent", [False, True], ids=["feed-forward", "recurrent"])
@pytest.mark.parametrize("kind", ["BRF", "SEAdLIF"])
def test_the_reference_without_departures_is_hypr_trainer(kind, recurrent):
    model, x, y, loss = _setup(kind, recurrent)
    ours = trainer_gradients(HYPRTrainer, model, x, y, chunk=8)
    assert_close_dicts(official_hypr_gradients(model, x, loss), ours, tol=1e-9)


@pytest.mark.parametrize("kind", ["BRF", "SEAdLIF"])
def test_feed_forward_hypr_trainer_is_exact_and_the_official_departure_is_not(kind):
    """One layer: ours equals autograd through the equations; the official code's departure for this neuron
    (BRF: the spike derivative one step late; SE-adLIF: A_t without the previous spike) moves it by over 5 %
    (measured here: 26 % and 21 %); the departures that concern the other neuron and recurrence change nothing."""
    model, x, y, loss = _setup(kind, False)
    exact = cut_readout_bptt(model, x, y, LOSS)
    ours = trainer_gradients(HYPRTrainer, model, x, y, chunk=8)
    assert_close_dicts({n: g for n, g in ours.items() if n in exact}, exact, tol=1e-9)
    own, other = ("late_spike_derivative", "drop_previous_spike")
    if kind == "SEAdLIF":
        own, other = other, own
    departed = official_hypr_gradients(model, x, loss, **{own: True})
    assert relative_difference(_hidden(departed, model), _hidden(ours, model)) > 0.05
    untouched = official_hypr_gradients(model, x, loss, **{other: True, "current_spike_recurrence": True})
    assert_close_dicts(untouched, ours, tol=1e-9)


@pytest.mark.parametrize("kind", ["BRF", "SEAdLIF"])
def test_recurrence_with_the_current_spike_moves_the_gradient(kind):
    """The forward feeds back z_{t-1}; taking the Jacobians at W_in x_t + W_rec z_t + b and z_t as the recurrent
    weights' input moves the hidden layer's gradient by over 5 % (measured here: 12 % for BRF, 79 % for SE-adLIF).
    With W_rec = 0 the Jacobians agree, so only the recurrent weights' columns of the gradient change."""
    model, x, y, loss = _setup(kind, True)
    ours = official_hypr_gradients(model, x, loss)
    current = official_hypr_gradients(model, x, loss, current_spike_recurrence=True)
    assert relative_difference(_hidden(current, model), _hidden(ours, model)) > 0.05
    with torch.no_grad():
        model[0].synapse.weight[:, 3:] = 0
    ours = official_hypr_gradients(model, x, loss)
    current = official_hypr_gradients(model, x, loss, current_spike_recurrence=True)
    for name in ours:
        if name == "0.synapse.weight":
            torch.testing.assert_close(current[name][:, :3], ours[name][:, :3], rtol=1e-10, atol=1e-12)
            assert relative_difference(current[name][:, 3:], ours[name][:, 3:]) > 0.01
        else:
            torch.testing.assert_close(current[name], ours[name], rtol=1e-10, atol=1e-12, msg=name)
