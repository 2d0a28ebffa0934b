"""``DecoupledLIF(reset_delay=True)`` and ``SynapticLIF(reset_delay=True)``: the reset subtracted one step after the
spike, undecayed (snnTorch's default ``Leaky``/``Synaptic``), against its equations written out step by step, and
the learners on it."""

from __future__ import annotations

import math

import pytest
import test_lif_variants as lif_variants
import torch
from learner_support import assert_close_dicts, bptt_gradients, digits_like, trainer_gradients, wide
from test_lif_variants import _grads
from torch import nn

from snn_parallel.learners import OTTTTrainer, StepLoss
from snn_parallel.neurons import DecoupledLIF, SynapticLIF
from snn_parallel.ops.linear_fire import linear_fire_reference
from snn_parallel.surrogate import ATan, Sigmoid

F64 = torch.float64


def _delayed_reference(drive, beta, v_threshold, surrogate, alpha=None):
    r"""The delayed-reset LIF, one step at a time: (with ``alpha``, the current :math:`i_t = \alpha i_{t-1} + x_t`
    first) :math:`u_t = \beta u_{t-1} + c_t - V_{th}\,\mathrm{sg}(s_{t-1})`, :math:`s_t = \Theta(u_t - V_{th})`;
    the membrane returned is :math:`u_t`."""
    u = torch.zeros_like(drive[0])
    i = torch.zeros_like(drive[0])
    s = torch.zeros_like(drive[0])
    spikes, membranes = [], []
    for x_t in drive.unbind(0):
        if alpha is not None:
            i = alpha * i + x_t
            x_t = i
        u = beta * u + x_t - v_threshold * s.detach()
        s = surrogate(u - v_threshold)
        spikes.append(s)
        membranes.append(u)
    return torch.stack(spikes), torch.stack(membranes)


def _exact_beta(neuron: DecoupledLIF, *logits: str) -> None:
    """Set the float32-rounded logits so that the decays are those of their tau exactly in float64."""
    for name in logits:
        tau = neuron.tau_syn if name == "syn_decay_logit" else neuron.tau
        getattr(neuron, name).data.fill_(math.log(tau - 1))


@pytest.mark.parametrize("decay_input", [False, True])
def test_spikes_membrane_and_gradients_are_the_delayed_reset_lifs(decay_input):
    """Spikes (exact), membranes and the gradients of the input and of a learned per-channel threshold (through the
    spikes' argument and the reset's undecayed step) of the equations above."""
    torch.manual_seed(0)
    neuron = DecoupledLIF(
        3, tau=3.0, decay_input=decay_input, v_threshold=[0.6, 1.0, 1.4], learn_threshold=True, reset_delay=True
    ).double()
    _exact_beta(neuron, "decay_logit")
    x = (torch.rand(120, 2, 3, dtype=F64) * (2.4 if decay_input else 0.9)).requires_grad_()
    spikes, membrane, _ = neuron(x, return_membrane=True)
    beta, threshold = neuron.beta, neuron.v_threshold
    ref_spikes, ref_membrane = _delayed_reference(x * (1 - beta) if decay_input else x, beta, threshold, ATan())
    assert ref_spikes.sum(0).gt(5).all(), "every channel fires"
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(membrane, ref_membrane)
    got, want = _grads((spikes, membrane), [x, threshold]), _grads((ref_spikes, ref_membrane), [x, threshold])
    assert want[1].abs().min() > 1e-3
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g, r)
    # the other form differs: the reset lands a step earlier there
    other = DecoupledLIF(3, tau=3.0, decay_input=decay_input, v_threshold=[0.6, 1.0, 1.4]).double()
    other.load_state_dict(neuron.state_dict())
    assert not torch.allclose(other(x, return_membrane=True)[1], membrane)


def test_synaptic_lif_is_the_delayed_reset_synaptic_neuron():
    torch.manual_seed(1)
    neuron = SynapticLIF(3, tau_syn=2.5, tau=4.0, v_threshold=[0.8, 1.0, 1.3], learn_threshold=True, reset_delay=True)
    neuron = neuron.double()
    _exact_beta(neuron, "decay_logit", "syn_decay_logit")
    x = (torch.rand(100, 2, 3, dtype=F64) * 0.6).requires_grad_()
    spikes, membrane, _ = neuron(x, return_membrane=True)
    ref_spikes, ref_membrane = _delayed_reference(x, neuron.beta, neuron.v_threshold, ATan(), alpha=neuron.alpha)
    assert ref_spikes.sum(0).gt(5).all()
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(membrane, ref_membrane)
    params = [x, neuron.v_threshold]
    for g, r in zip(_grads((spikes, membrane), params), _grads((ref_spikes, ref_membrane), params), strict=True):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("shared", [False, True], ids=["per_channel", "shared"])
def test_a_learned_decay_gets_the_sequential_neurons_gradient(shared):
    r"""With the delayed reset the bias decays with :math:`\beta` itself, so a learned decay's gradient is the
    sequential neuron's full autograd (through the resets already subtracted too, as snnTorch's default
    ``Leaky``), and the op's step-by-step spec with ``reset_decay=beta``; with ``reset_decay=beta.detach()`` (the
    in-step reset's convention) it would not be."""
    torch.manual_seed(2)
    neuron = DecoupledLIF(3, tau=2.5, learn_decay="shared" if shared else True, reset_delay=True).double()
    x = (torch.rand(60, 2, 3, dtype=F64) * 1.2).requires_grad_()
    spikes, membrane, _ = neuron(x, return_membrane=True)
    beta = neuron.beta
    params = [x, neuron.decay_logit]
    got = _grads((spikes, membrane), params)
    full = _delayed_reference(x, beta, 1.0, ATan())
    assert spikes.sum() > 20 and torch.equal(spikes, full[0])
    for g, r in zip(got, _grads(full, params), strict=True):
        torch.testing.assert_close(g, r)
    zeros = torch.zeros(2, 3, dtype=F64)
    for reset_decay, same in ((beta, True), (beta.detach(), False)):
        ref = linear_fire_reference(
            x, beta, torch.ones_like(beta), zeros, zeros, ATan(), 1.0, reset_decay, delayed_reset=True
        )
        assert torch.allclose(_grads(ref[:2], params)[1], got[1]) is same


def test_sequence_equals_steps_and_chained_calls_continue_exactly():
    """The parallel forward is the step loop (spikes, membranes, final state), and a sequence cut in two continues
    from the state in between (the reset pending at the cut is carried in the bias)."""
    torch.manual_seed(3)
    for neuron in (
        DecoupledLIF(4, tau=3.0, reset_delay=True).double(),
        SynapticLIF(4, tau_syn=2.0, tau=3.0, reset_delay=True).double(),
    ):
        x = torch.rand(50, 2, 4, dtype=F64) * 0.9
        spikes, membrane, state = neuron(x, return_membrane=True)
        step_state, step_spikes = None, []
        for x_t in x.unbind(0):
            spike, step_state = neuron.step(x_t, step_state)
            step_spikes.append(spike)
        assert spikes.sum() > 10 and torch.equal(torch.stack(step_spikes), spikes)
        for a, b in zip(step_state, state, strict=True):
            torch.testing.assert_close(a, b)
        cut = None
        for k in range(1, 49):  # a cut right after a spike: its reset is still pending
            if spikes[k - 1].any():
                cut = k
                break
        first, m1, middle = neuron(x[:cut], return_membrane=True)
        assert middle.bias.abs().sum() > 0
        second, m2, last = neuron(x[cut:], middle, return_membrane=True)
        assert torch.equal(torch.cat([first, second]), spikes)
        torch.testing.assert_close(torch.cat([m1, m2]), membrane)
        for a, b in zip(last, state, strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_without_a_reset_the_delay_changes_nothing(backend):
    x = torch.rand(30, 2, 3) * 0.8
    plain = DecoupledLIF(3, reset=False, backend=backend)
    delayed = DecoupledLIF(3, reset=False, reset_delay=True, backend=backend)
    for a, b in zip(plain(x, return_membrane=True)[:2], delayed(x, return_membrane=True)[:2], strict=True):
        assert torch.equal(a, b)


def test_repr_and_state_dict():
    neuron = DecoupledLIF(3, reset_delay=True)
    assert repr(neuron) == "DecoupledLIF(features=3, tau=2.0, v_threshold=1.0, reset_delay=True)"
    assert "reset_delay=True" in repr(SynapticLIF(3, reset_delay=True))
    assert "reset_delay" not in repr(DecoupledLIF(3))
    clone = DecoupledLIF(3, reset_delay=True)
    clone.load_state_dict(neuron.state_dict())
    x = torch.rand(20, 2, 3) * 2
    assert torch.equal(clone(x)[0], neuron(x)[0])


@pytest.mark.parametrize("cls", [DecoupledLIF, SynapticLIF])
@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_bad_reset_delay_is_named(cls, value):
    with pytest.raises(TypeError, match="reset_delay must be a bool"):
        cls(3, reset_delay=value)


VARIANTS = {
    "threshold": lambda: DecoupledLIF(6, tau=2.5, learn_threshold=True, reset_delay=True, surrogate=Sigmoid()),
    "decay": lambda: DecoupledLIF(6, tau=2.0, learn_decay=True, reset_delay=True, surrogate=Sigmoid()),
    "if": lambda: DecoupledLIF(6, tau=math.inf, learn_threshold=True, reset_delay=True, surrogate=Sigmoid()),
}


@pytest.mark.parametrize("variant", ["threshold", "decay", "if"])
def test_hypr_fptt_and_ottts_neuron_trace_give_bptts_gradients_for_one_layer(variant, monkeypatch):
    """One delayed-reset layer: HYPR, FPTT and OTTT's neuron trace hand the optimizer BPTT's gradients. With a learned
    threshold, OTTT's carried-threshold term (db_t/dV = b_t/V from rest) holds for b_{t+1} = beta b_t + V s_t as well;
    with a learned decay the bias decays with beta itself, and OTTT traces that part too
    (db_{t+1}/dbeta = beta db_t/dbeta + b_t)."""
    monkeypatch.setitem(lif_variants.VARIANTS, variant, VARIANTS[variant])
    lif_variants.test_hypr_fptt_and_ottts_neuron_trace_give_bptts_gradients_for_one_layer(variant)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("decay_input", [False, True])
def test_ottts_neuron_trace_carries_the_pending_resets_into_a_learned_decays_gradient(shared, decay_input, monkeypatch):
    """A learned decay with the delayed reset, per channel or shared, with or without the input gain 1 - beta: OTTT's
    neuron trace gives BPTT's decay gradient; without the pending resets' eligibility it would not (the term bites)."""
    torch.manual_seed(5)
    learn = "shared" if shared else True
    neuron = DecoupledLIF(6, tau=2.0, learn_decay=learn, decay_input=decay_input, reset_delay=True, surrogate=Sigmoid())
    model = nn.Sequential(wide(nn.Linear(4, 6), gain=6.0 if decay_input else 3.0), neuron, nn.Linear(6, 3)).double()
    x, y = digits_like(steps=12)
    assert model[1](model[0](x))[0].sum() > 10
    reference = bptt_gradients(model, x, y, StepLoss("ce", "all"))
    assert_close_dicts(trainer_gradients(OTTTTrainer, model, x, y, trace_input=True, trace="neuron"), reference)
    monkeypatch.setattr(OTTTTrainer, "_pending_resets", staticmethod(lambda driver, rho: None))
    without = trainer_gradients(OTTTTrainer, model, x, y, trace_input=True, trace="neuron")
    assert not torch.allclose(without["1.decay_logit"], reference["1.decay_logit"])
