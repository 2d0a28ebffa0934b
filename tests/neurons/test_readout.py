"""The leaky-integrator readout: its equation, its parametrisations, and every trainer with it.

Its input checks (shapes, dtypes, NaN, empty sequences, states) and lazy feature count are covered
with the other neurons' by the parametrised tests in ``test_neurons.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
from learner_support import assert_close_dicts, bptt_gradients, cut_readout_bptt, digits_like, trainer_gradients, wide
from torch import nn

from snn_parallel.learners import BPTTTrainer, FPTTTrainer, HYPRTrainer, OTTTTrainer, StepLoss, TSSLBPTrainer
from snn_parallel.neurons import PSPLIF, DecoupledLIF, LeakyIntegrator, LeakyIntegratorState
from snn_parallel.surrogate import Sigmoid
from snn_parallel.tasks import SequentialDigits, make_loader

F64 = torch.float64


def leaky_integrator_reference(x: torch.Tensor, tau: torch.Tensor, u0: torch.Tensor) -> torch.Tensor:
    r"""The HYPR readout's equation, one step at a time: :math:`y_t = e^{-1/\tau} y_{t-1} + (1 - e^{-1/\tau}) I_t`
    (``tau`` per channel, dim 1 of ``[B, C, *spatial]``)."""
    alpha = torch.exp(-1 / tau).view(-1, *[1] * (x.dim() - 3))
    u, out = u0, []
    for current in x:
        u = alpha * u + (1 - alpha) * current
        out.append(u)
    return torch.stack(out)


# -- the equation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape", [(37, 3, 5), (9, 2, 5, 4, 3), (1, 4, 5)], ids=["sequence", "feature-maps", "one-step"]
)
def test_forward_and_step_follow_the_equation(shape):
    readout = LeakyIntegrator(5).double()
    x = torch.randn(*shape, dtype=F64) * 3
    u0 = torch.randn(*shape[1:], dtype=F64)
    expected = leaky_integrator_reference(x, readout.tau.detach(), u0)
    out, membrane, state = readout(x, LeakyIntegratorState(u0), return_membrane=True)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(membrane, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state.u, expected[-1], rtol=1e-12, atol=1e-12)
    stepped, step_state = [], LeakyIntegratorState(u0)
    for x_t in x:
        y_t, step_state = readout.step(x_t, step_state)
        stepped.append(y_t)
    torch.testing.assert_close(torch.stack(stepped), expected, rtol=1e-12, atol=1e-12)
    if shape[0] > 1:  # two chained calls equal one
        first, middle = readout(x[:4], LeakyIntegratorState(u0))
        second, _ = readout(x[4:], middle)
        torch.testing.assert_close(torch.cat([first, second]), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_follows_the_equation(dtype):
    """The scan accumulates in float32 and hands back the input's dtype."""
    readout = LeakyIntegrator(5).to(dtype)
    x = torch.randn(40, 3, 5).to(dtype)
    out, state = readout(x)
    assert out.dtype == state.u.dtype == dtype
    expected = leaky_integrator_reference(x.double(), readout.tau.detach().double(), torch.zeros(3, 5, dtype=F64))
    torch.testing.assert_close(out.double(), expected, rtol=2e-2, atol=2e-2)


def test_hand_computed_steps():
    """tau = 1/ln 2: alpha = 1/2, so y = 0.5 y + 0.5 I from rest: 1, 1.5, 0.75."""
    readout = LeakyIntegrator(1, tau_range=(1 / math.log(2), 1 / math.log(2))).double()
    out, _ = readout(torch.tensor([2.0, 2.0, 0.0], dtype=F64).view(3, 1, 1))
    torch.testing.assert_close(out.flatten(), torch.tensor([1.0, 1.5, 0.75], dtype=F64))


@pytest.mark.parametrize("interpolate", [False, True])
def test_gradients_match_autograd_through_the_equation(interpolate):
    readout = LeakyIntegrator(4, tau_range=(3.0, 9.0), interpolate_tau=interpolate).double()
    x = torch.randn(23, 3, 4, dtype=F64, requires_grad=True)
    u0 = torch.randn(3, 4, dtype=F64, requires_grad=True)
    weights = torch.randn(23, 3, 4, dtype=F64)
    parameter = readout.tau_frac if interpolate else readout.tau
    out, state = readout(x, LeakyIntegratorState(u0))
    grads = torch.autograd.grad((out * weights).sum() + state.u.square().sum(), [x, u0, parameter])
    tau = 3.0 + 6.0 * parameter if interpolate else parameter
    expected = leaky_integrator_reference(x, tau, u0)
    reference = torch.autograd.grad((expected * weights).sum() + expected[-1].square().sum(), [x, u0, parameter])
    for got, want in zip(grads, reference, strict=True):
        assert want.abs().sum() > 0
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_parametrisations_initial_ranges_and_constraints():
    """tau ~ U(range) used directly (clamped), or r ~ U(0, 1) interpolated; the stored value is projected
    back after a step, as the reference's apply_parameter_constraints; learn_tau=False keeps a buffer."""
    direct = LeakyIntegrator(1000)
    assert direct.tau.requires_grad and 15 <= direct.tau.min() < 16 and 24 < direct.tau.max() <= 25
    interpolated = LeakyIntegrator(1000, tau_range=(15.0, 15.0), interpolate_tau=True)
    assert 0 <= interpolated.tau_frac.min() < 0.01 and 0.99 < interpolated.tau_frac.max() <= 1
    torch.testing.assert_close(interpolated.time_constant, torch.full((1000,), 15.0))  # the SE-adLIF configs' fixed tau
    with torch.no_grad():
        direct.tau[:2] = torch.tensor([3.0, 40.0])
        interpolated.tau_frac[:2] = torch.tensor([-0.5, 2.0])
    assert direct.time_constant[:2].tolist() == [15.0, 25.0]  # clamped where used
    direct.apply_parameter_constraints()
    interpolated.apply_parameter_constraints()
    assert direct.tau[:2].tolist() == [15.0, 25.0] and interpolated.tau_frac[:2].tolist() == [0.0, 1.0]
    fixed = LeakyIntegrator(3, learn_tau=False)
    assert not list(fixed.parameters()) and fixed.tau.shape == (3,) and "tau" in dict(fixed.named_buffers())
    alpha, gain = direct.linear_response()
    torch.testing.assert_close(alpha, torch.exp(-1 / direct.time_constant))
    torch.testing.assert_close(gain, 1 - alpha)


@pytest.mark.parametrize(
    "build,error,match",
    [
        (lambda: LeakyIntegrator(3, tau_range=(0.0, 5.0)), ValueError, "tau_range must be positive"),
        (lambda: LeakyIntegrator(3, tau_range=(-1.0, 5.0)), ValueError, "tau_range must be positive"),
        (lambda: LeakyIntegrator(3, tau_range=(25.0, 15.0)), ValueError, "tau_range must be .low, high. with low <="),
        (lambda: LeakyIntegrator(3, tau_range=(15.0, float("inf"))), ValueError, "tau_range must be a finite number"),
        (lambda: LeakyIntegrator(3, tau_range=(float("nan"), 5.0)), ValueError, "tau_range must be a finite number"),
        (lambda: LeakyIntegrator(3, tau_range=15.0), TypeError, "tau_range must be a pair"),
        (lambda: LeakyIntegrator(3, tau_range=(15.0,)), ValueError, "tau_range must be a pair"),
        (lambda: LeakyIntegrator(3, learn_tau="yes"), TypeError, "learn_tau must be a bool"),
        (lambda: LeakyIntegrator(3, interpolate_tau=1), TypeError, "interpolate_tau must be a bool"),
        (lambda: LeakyIntegrator(0), ValueError, "features must be a positive int"),
        (lambda: LeakyIntegrator(True), TypeError, "features must be a positive int"),
        (lambda: LeakyIntegrator(3, backend="jax"), ValueError, "backend must be one of"),
    ],
)
def test_bad_constants_are_refused_naming_them(build, error, match):
    with pytest.raises(error, match=match):
        build()


# -- HYPR with a stateful readout ---------------------------------------------------------------------
def test_hypr_with_the_readout_alone_equals_bptt_for_every_chunk():
    """The readout is one layer of per-channel linear neurons: HYPR's gradient is BPTT's, every lambda."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), LeakyIntegrator(3, tau_range=(2.0, 6.0))).double()
    x, y = digits_like(steps=12)
    reference = bptt_gradients(model, x, y, StepLoss("ce", "all"))
    for chunk in (1, 5, 12):
        assert_close_dicts(trainer_gradients(HYPRTrainer, model, x, y, chunk=chunk), reference)


@pytest.mark.parametrize("neuron", ["lif", "brf"])
def test_hypr_with_a_hidden_layer_and_the_readout(neuron):
    """One neuron layer under the readout: the readout's parameters get BPTT's gradient; the hidden layer's
    is BPTT's with the readout's temporal path cut (the learning signal of the readout's own step, as in
    the official code), not BPTT's; and neither depends on lambda."""
    from snn_parallel.neurons import BRF

    torch.manual_seed(1)
    hidden = DecoupledLIF(6, learn_decay=True, surrogate=Sigmoid()) if neuron == "lif" else BRF(6)
    model = nn.Sequential(wide(nn.Linear(4, 6)), hidden, nn.Linear(6, 3), LeakyIntegrator(3)).double()
    x, y = digits_like(steps=12)
    x = x * (200 if neuron == "brf" else 1)
    loss = StepLoss("ce", "all")
    full = bptt_gradients(model, x, y, loss)
    cut = cut_readout_bptt(model, x, y, loss)
    below = set(cut)
    for chunk in (1, 5, 12):
        got = trainer_gradients(HYPRTrainer, model, x, y, chunk=chunk)
        above = {n: g for n, g in got.items() if n not in below}
        assert_close_dicts(above, {n: g for n, g in full.items() if n not in below})
        assert_close_dicts({n: g for n, g in got.items() if n in below}, cut)
    difference = (got["0.weight"] - full["0.weight"]).norm() / full["0.weight"].norm()
    assert difference > 0.5  # tau in [15, 25]: the readout's memory carries most of BPTT's gradient


# -- every trainer trains a network with it --------------------------------------------------------------
RULES = {
    "bptt": (BPTTTrainer, {}),
    "fptt": (FPTTTrainer, {"parts": 2}),
    "ottt": (OTTTTrainer, {}),
    "ottt-neuron": (OTTTTrainer, {"trace": "neuron"}),
    "hypr": (HYPRTrainer, {"chunk": 4}),
}


def _digits_network(hidden: int = 32) -> nn.Sequential:
    torch.manual_seed(0)
    synapse = wide(nn.Linear(8, hidden), 1.5)
    return nn.Sequential(synapse, DecoupledLIF(hidden, surrogate=Sigmoid()), nn.Linear(hidden, 10), LeakyIntegrator(10))


def test_ottt_neuron_trace_with_the_readout_alone_equals_bptt():
    """OTTT's per-synapse traces from the readout's linear response, (alpha, 1 - alpha): exact for its synapse and tau
    (the synapse is fed by the raw input, so it is traced only with ``trace_input=True``)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), LeakyIntegrator(3, tau_range=(2.0, 6.0))).double()
    x, y = digits_like(steps=10)
    reference = bptt_gradients(model, x, y, StepLoss("ce", "all"))
    assert_close_dicts(trainer_gradients(OTTTTrainer, model, x, y, trace="neuron", trace_input=True), reference)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_trains_through_the_readout(rule):
    """One epoch on 256 row-serial digits: a finite loss that falls, and every parameter moves (tau included)."""
    model = _digits_network()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer_cls, options = RULES[rule]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    trainer = trainer_cls(model, optimizer, loss=StepLoss("ce", "all"), progress=False, **options)
    data = SequentialDigits("train", "row")
    data.inputs, data.targets = data.inputs[:256], data.targets[:256]
    start = trainer.evaluate(make_loader(data, 256))["loss"]
    history = trainer.fit(make_loader(data, 32, shuffle=True), 1)
    assert math.isfinite(history[-1]["train_loss"])
    assert trainer.evaluate(make_loader(data, 256))["loss"] < start
    still = [name for name, p in model.named_parameters() if torch.equal(p, before[name])]
    assert not still, f"{rule} left {still} unchanged"
    assert 15 <= model[3].tau.min() and model[3].tau.max() <= 25  # projected back after every step


def _tsslbp_network(hidden: int = 32) -> nn.Sequential:
    torch.manual_seed(0)
    synapse = wide(nn.Linear(8, hidden, bias=False), 1.5)
    return nn.Sequential(synapse, PSPLIF(hidden), nn.Linear(hidden, 10), LeakyIntegrator(10, tau_range=(3.0, 5.0)))


def test_tsslbp_trains_psplif_layers_under_the_readout():
    model = _tsslbp_network()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    trainer = TSSLBPTrainer(model, optimizer, loss=StepLoss("ce", "all"), progress=False)
    data = SequentialDigits("train", "row")
    data.inputs, data.targets = data.inputs[:128], data.targets[:128]
    history = trainer.fit(make_loader(data, 32, shuffle=True), 1)
    assert math.isfinite(history[-1]["train_loss"])
    assert all(not torch.equal(p, before[name]) for name, p in model.named_parameters())


@pytest.mark.parametrize("loss", ["kernel", "count"])
def test_tsslbp_refuses_a_spike_train_loss_on_the_readout(loss):
    model = _tsslbp_network()
    with pytest.raises(ValueError, match="loss: 3 is a LeakyIntegrator readout"):
        TSSLBPTrainer(model, torch.optim.AdamW(model.parameters(), lr=5e-3), loss=loss, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("rule", [*sorted(RULES), "tsslbp"])
def test_every_rule_learns_digit_rows_through_the_readout(rule):
    """Ten epochs on the row-serial digits (T = 8, 64 hidden neurons): test accuracy over 55 %, chance 10 %
    (measured: 68-69 % for BPTT, FPTT, OTTT and HYPR, 61 % for TSSL-BP)."""
    if rule == "tsslbp":
        model, trainer_cls, options = _tsslbp_network(64), TSSLBPTrainer, {}
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    else:
        model, (trainer_cls, options) = _digits_network(64), RULES[rule]
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    trainer = trainer_cls(model, optimizer, loss=StepLoss("ce", "all"), progress=False, **options)
    trainer.fit(make_loader(SequentialDigits("train", "row"), 32, shuffle=True), 10)
    accuracy = trainer.evaluate(make_loader(SequentialDigits("test", "row"), 256))["accuracy"]
    assert accuracy > 0.55, accuracy
