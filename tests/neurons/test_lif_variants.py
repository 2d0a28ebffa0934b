"""``DecoupledLIF``'s variants: the IF neuron (``tau=math.inf``, :math:`\\beta = 1`), the input scaled by
:math:`1 - \\beta` (``decay_input=True``, SpikingJelly's ``LIFNode`` charge) and no reset (``reset=False``),
each against its equations written out step by step, and the learners on them."""

from __future__ import annotations

import math

import pytest
import torch
from learner_support import assert_close_dicts, bptt_gradients, digits_like, trainer_gradients, wide
from torch import nn

from snn_parallel.learners import FPTTTrainer, HYPRTrainer, OTTTTrainer, StepLoss
from snn_parallel.neurons import DecoupledLIF, SynapticLIF
from snn_parallel.ops.linear_fire import linear_fire_reference, soft_reset_lif_reference
from snn_parallel.surrogate import ATan, Sigmoid

F64 = torch.float64


def _grads(outputs: tuple[torch.Tensor, ...], inputs: list[torch.Tensor], seed: int = 0) -> list[torch.Tensor]:
    """Gradients of a fixed random weighting of ``outputs`` (the same for every run)."""
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outputs)
    return list(torch.autograd.grad(loss, inputs, retain_graph=True))


def _charge_reference(x, tau, v_threshold, surrogate, reset=True):
    r"""SpikingJelly's ``LIFNode(decay_input=True, v_reset=None, detach_reset=True)`` from its equations:
    :math:`h_t = v_{t-1} + (x_t - v_{t-1})/\tau`, :math:`s_t = \Theta(h_t - V_{th})`,
    :math:`v_t = h_t - V_{th}\,\mathrm{sg}(s_t)` (no subtraction without a reset)."""
    v = torch.zeros_like(x[0])
    spikes, membranes = [], []
    for x_t in x.unbind(0):
        h = v + (x_t - v) / tau
        s = surrogate(h - v_threshold)
        v = h - v_threshold * s.detach() if reset else h
        spikes.append(s)
        membranes.append(h)
    return torch.stack(spikes), torch.stack(membranes)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_tau_inf_is_the_if_neuron_with_beta_exactly_one(dtype):
    neuron = DecoupledLIF(3, tau=math.inf).to(dtype)
    assert torch.equal(neuron.beta, torch.ones(3, dtype=dtype))
    # an IF neuron holds its charge: 5/16 a step (exact in every dtype) crosses 1 at the 4th step (1.25), from the
    # 0.25 kept at the 7th (1.1875), from the 0.1875 kept at the 10th (1.125)
    spikes, _ = neuron(torch.full((10, 1, 3), 0.3125, dtype=dtype))
    assert spikes[:, 0, 0].nonzero().flatten().tolist() == [3, 6, 9]


def test_if_neuron_matches_the_soft_reset_integrate_and_fire_equations():
    torch.manual_seed(0)
    neuron = DecoupledLIF(3, tau=math.inf, v_threshold=[0.5, 1.0, 1.5]).double()
    x = (torch.randn(80, 2, 3, 4, dtype=F64) * 0.5 + 0.1).requires_grad_()
    spikes, membrane, _ = neuron(x, return_membrane=True)
    ref_spikes, ref_membrane, _, _ = soft_reset_lif_reference(
        x, torch.ones(3, 1, dtype=F64), neuron.v_threshold.view(3, 1), neuron.surrogate
    )
    assert ref_spikes.sum((0, 1, 3)).gt(10).all()
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(membrane, ref_membrane)
    for g, r in zip(_grads((spikes, membrane), [x]), _grads((ref_spikes, ref_membrane), [x]), strict=True):
        torch.testing.assert_close(g, r)


def test_decay_input_is_spikingjellys_lif_charge():
    """Spikes, membranes and the input gradient of the LIF charging :math:`(x_t - v_{t-1})/\\tau`."""
    torch.manual_seed(1)
    neuron = DecoupledLIF(4, tau=3.0, decay_input=True).double()
    neuron.decay_logit.fill_(math.log(2.0))  # the float32-rounded logit made exact: beta = 2/3
    x = (torch.rand(60, 3, 4, dtype=F64) * 3.0).requires_grad_()
    spikes, membrane, _ = neuron(x, return_membrane=True)
    ref_spikes, ref_membrane = _charge_reference(x, 3.0, 1.0, neuron.surrogate)
    assert ref_spikes.sum() > 50
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(membrane, ref_membrane)
    torch.testing.assert_close(_grads((spikes, membrane), [x])[0], _grads((ref_spikes, ref_membrane), [x])[0])


def test_learned_decay_with_decay_input_gets_the_gain_s_gradient_too():
    r"""The decay's gradient flows through :math:`\beta` and the input gain :math:`1 - \beta` (the op's step-by-step
    spec, the reset's decay detached as documented)."""
    torch.manual_seed(2)
    neuron = DecoupledLIF(3, tau=2.5, learn_decay=True, decay_input=True, learn_threshold=True).double()
    x = (torch.rand(40, 2, 3, dtype=F64) * 3.0).requires_grad_()
    spikes, membrane, _ = neuron(x, return_membrane=True)
    beta = neuron.beta
    zeros = torch.zeros(2, 3, dtype=F64)
    ref = linear_fire_reference(x, beta, 1 - beta, zeros, zeros, ATan(), neuron.v_threshold, beta.detach())
    assert spikes.sum() > 20 and torch.equal(spikes, ref[0])
    params = [x, neuron.decay_logit, neuron.v_threshold]
    got, want = _grads((spikes, membrane), params), _grads(ref[:2], params)
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g, r)
    # the gain's part is there: without it the decay's gradient would differ
    without_gain = linear_fire_reference(
        x, beta, (1 - beta).detach(), zeros, zeros, ATan(), neuron.v_threshold, beta.detach()
    )
    assert not torch.allclose(got[1], _grads(without_gain[:2], params)[1])


@pytest.mark.parametrize("decay_input", [False, True])
def test_without_a_reset_every_gradient_is_the_leaky_integrators(decay_input):
    """No reset, nothing detached: spikes, membranes and every gradient (input, decay, threshold) of plain
    autograd through :math:`u_t = \\beta u_{t-1} + g x_t`, :math:`s_t = \\Theta(u_t - V_{th})`."""
    torch.manual_seed(3)
    neuron = DecoupledLIF(3, learn_decay=True, decay_input=decay_input, learn_threshold=True, reset=False).double()
    x = (torch.rand(50, 2, 3, dtype=F64) * (1.6 if decay_input else 0.8)).requires_grad_()
    spikes, membrane, state = neuron(x, return_membrane=True)
    beta, threshold = neuron.beta, neuron.v_threshold
    u, ref_spikes, ref_membrane = torch.zeros(2, 3, dtype=F64), [], []
    for x_t in x.unbind(0):
        u = beta * u + ((1 - beta) if decay_input else 1) * x_t
        ref_spikes.append(neuron.surrogate(u - threshold))
        ref_membrane.append(u)
    ref_spikes, ref_membrane = torch.stack(ref_spikes), torch.stack(ref_membrane)
    assert ref_spikes.sum() > 20 and torch.equal(spikes, ref_spikes)
    assert torch.equal(state.bias, torch.zeros_like(state.bias))
    torch.testing.assert_close(membrane, ref_membrane)
    params = [x, neuron.decay_logit, threshold]
    for g, r in zip(_grads((spikes, membrane), params), _grads((ref_spikes, ref_membrane), params), strict=True):
        torch.testing.assert_close(g, r)


VARIANTS = {
    "if": lambda: DecoupledLIF(6, tau=math.inf, learn_threshold=True, surrogate=Sigmoid()),
    "decay-input": lambda: DecoupledLIF(6, tau=1.5, learn_decay=True, decay_input=True, surrogate=Sigmoid()),
    "no-reset": lambda: DecoupledLIF(6, learn_decay=True, reset=False, learn_threshold=True, surrogate=Sigmoid()),
}


def _model(variant: str) -> nn.Sequential:
    torch.manual_seed(5)
    return nn.Sequential(wide(nn.Linear(4, 6)), VARIANTS[variant](), nn.Linear(6, 3)).double()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_hypr_fptt_and_ottts_neuron_trace_give_bptts_gradients_for_one_layer(variant):
    model = _model(variant)
    x, y = digits_like(steps=12)
    reference = bptt_gradients(model, x, y, StepLoss("ce", "all"))
    spikes, _ = model[1](model[0](x))
    assert spikes.sum() > 10, "the layer must fire for the check to mean something"
    assert_close_dicts(trainer_gradients(HYPRTrainer, model, x, y, chunk=5), reference)
    assert_close_dicts(trainer_gradients(FPTTTrainer, model, x, y, parts=1), reference)
    got = trainer_gradients(OTTTTrainer, model, x, y, trace_input=True, trace="neuron")
    assert_close_dicts(got, reference)


def test_state_dicts_and_repr_keep_the_variant():
    neuron = DecoupledLIF(3, tau=math.inf, reset=False)
    assert repr(neuron) == "DecoupledLIF(features=3, tau=inf, v_threshold=1.0, reset=False)"
    assert "decay_input=True" in repr(DecoupledLIF(3, decay_input=True))
    clone = DecoupledLIF(3, tau=math.inf, reset=False)
    clone.load_state_dict(neuron.state_dict())
    assert torch.equal(clone.beta, torch.ones(3))
    x = torch.rand(20, 2, 3) * 3
    assert torch.equal(clone(x)[0], neuron(x)[0])


def test_synaptic_lif_keeps_its_reset_option():
    x = torch.rand(30, 2, 3) * 2
    _, membrane, state = SynapticLIF(3, reset=False)(x, return_membrane=True)
    assert torch.equal(state.bias, torch.zeros_like(state.bias))
    assert (membrane > 1).sum() > 5  # the membrane stays above the threshold after a spike


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: DecoupledLIF(3, tau=math.inf, learn_decay=True), ValueError, r"learn_decay=True needs a finite tau"),
        (lambda: DecoupledLIF(3, tau=math.inf, decay_input=True), ValueError, r"decay_input=True needs a finite tau"),
        (lambda: DecoupledLIF(3, tau=math.nan), ValueError, r"tau must be a finite number"),
        (lambda: DecoupledLIF(3, tau=-math.inf), ValueError, r"tau must be > 1"),
        (lambda: DecoupledLIF(3, decay_input="yes"), TypeError, r"decay_input must be a bool"),
        (lambda: DecoupledLIF(3, reset=1), TypeError, r"reset must be a bool"),
    ],
)
def test_bad_variant_arguments_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()
