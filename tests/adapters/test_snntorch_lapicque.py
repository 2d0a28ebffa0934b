"""The ``Lapicque`` skin against ``snn.Lapicque`` (snnTorch tutorial 2's RC neuron) in float64: its update
``mem_t = (1 - dt/(R C)) mem_{t-1} + (dt/C) x_t - threshold * sg(spk_{t-1})``, with ``R`` and ``C`` given or
derived from ``beta`` as snnTorch derives them: spikes, ``mem``, the gradients of the input, the weights and a
learned threshold, step by step and in parallel; state dicts, ``utils.reset``, ``backprop.BPTT``, tutorial 2's
current-injection loop, and the arguments it cannot express."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

snn = pytest.importorskip("snntorch")
import snntorch.backprop  # noqa: E402
import snntorch.functional as SF  # noqa: E402
import snntorch.utils  # noqa: E402
from snn_parallel.adapters import snntorch as adapter  # noqa: E402
from snn_parallel.adapters.snntorch import Lapicque  # noqa: E402
from test_snntorch_no_reset import _multistep_run, _step_run, assert_same_runs  # noqa: E402
from test_snntorch_synaptic import assert_a_trainer_gives_the_steps  # noqa: E402

F64 = torch.float64
C = 6

# snn.Lapicque's arguments for a layer of n neurons, and the input scale at which its layers fire now and then
CASES = {
    "R_and_C": (lambda n: {"R": 5, "C": 5e-3, "time_step": 1e-3}, 2.0),
    "beta": (lambda n: {"beta": 0.9}, 4.0),
    "beta_and_R": (lambda n: {"beta": 0.8, "R": 2.0, "threshold": torch.linspace(0.6, 1.0, n, dtype=F64)}, 1.0),
    "beta_and_C_learned_threshold": (
        lambda n: {"beta": 0.85, "C": 0.5, "time_step": 0.2, "threshold": 0.8, "learn_threshold": True},
        1.0,
    ),
    "per_neuron_learned_threshold": (
        lambda n: {
            "R": 2.0,
            "C": 2.0,
            "threshold": torch.linspace(0.5, 1.0, n, dtype=F64),
            "learn_threshold": True,
        },
        1.0,
    ),
}


def _layers(make, scale, seed=0):
    """fc1 -> neuron -> fc2 -> neuron, the weights from ``seed`` (scaled by ``scale``)."""
    torch.manual_seed(seed)
    fc1, fc2 = nn.Linear(5, C), nn.Linear(C, 3)
    with torch.no_grad():
        fc1.weight.mul_(scale).add_(0.3 * scale)
        fc1.bias.mul_(scale)
        fc2.weight.mul_(scale).add_(0.4 * scale)
        fc2.bias.mul_(scale)
    return nn.ModuleList([fc1, make(C), fc2, make(3)]).double()


def _pair(case, reset="subtract"):
    """The network with ``snn.Lapicque`` and with the skin, built from the same arguments (both float64)."""
    options, scale = CASES[case]
    ref = _layers(lambda n: snn.Lapicque(reset_mechanism=reset, **options(n)), scale)
    ours = _layers(lambda n: Lapicque(reset_mechanism=reset, **options(n)), scale)
    return ref, ours


def _input(steps=40, seed=1):
    torch.manual_seed(seed)
    return torch.rand(steps, 4, 5, dtype=F64, requires_grad=True)


def _loss(run):
    (spk1, mem1), (spk2, mem2) = run
    return 0.1 * spk1.sum() + spk2.sum() + ((mem2 - 0.3) ** 2).sum() + 0.01 * (mem1**2).sum()


@pytest.mark.parametrize("run", [_step_run, _multistep_run], ids=["forward", "multistep"])
@pytest.mark.parametrize("reset", ["subtract", "none"])
@pytest.mark.parametrize("case", list(CASES))
def test_spikes_membranes_and_gradients_are_snn_lapicques(case, reset, run):
    """The spikes and ``mem`` of both layers, and the gradients of the input, the weights and a learned threshold
    (its reset detached, as ``snn.Lapicque``'s is), are ``snn.Lapicque``'s."""
    ref, ours = _pair(case, reset)
    x_ref = _input()
    x_ours = x_ref.detach().clone().requires_grad_()
    expected = _step_run(ref, x_ref)
    for spk, _ in expected:
        assert 0.05 < spk.mean() < 0.95  # the layers fire, not always
    got = run(ours, x_ours)
    assert_same_runs(got, expected)
    _loss(expected).backward()
    _loss(got).backward()
    close = {"rtol": 1e-6, "atol": 1e-6}  # snnTorch's surrogate computes the spike's gradient in float32
    torch.testing.assert_close(x_ours.grad, x_ref.grad, **close)
    for i in (0, 2):
        torch.testing.assert_close(ours[i].weight.grad, ref[i].weight.grad, **close)
        torch.testing.assert_close(ours[i].bias.grad, ref[i].bias.grad, **close)
    for i in (1, 3):
        if isinstance(ref[i].threshold, nn.Parameter):
            assert isinstance(ours[i].threshold, nn.Parameter)
            assert ours[i].threshold.shape == ref[i].threshold.shape
            torch.testing.assert_close(ours[i].threshold.grad, ref[i].threshold.grad, **close)


@pytest.mark.parametrize("case", list(CASES))
def test_beta_R_C_and_time_step_read_back_as_snnTorchs(case):
    """``beta``, ``R``, ``C`` and ``time_step`` are ``snn.Lapicque``'s buffers (``R``/``C`` derived from ``beta``, or
    ``beta`` from them), and the core's decay and gain are :math:`1 - \\Delta t/(RC)` and :math:`\\Delta t/C`."""
    options = CASES[case][0](C)
    ref, ours = snn.Lapicque(**options), Lapicque(**options)
    for name in ("beta", "R", "C", "time_step"):
        assert torch.equal(getattr(ours, name), getattr(ref, name)), name
        assert getattr(ours, name).dtype == getattr(ref, name).dtype
    R, Cap, step = (float(getattr(ref, name)) for name in ("R", "C", "time_step"))  # noqa: N806
    ours.double()(torch.zeros(2, C, dtype=F64))
    torch.testing.assert_close(ours.core.beta, torch.full((C,), 1 - step / (R * Cap), dtype=F64))
    assert ours.core.gain == pytest.approx(step / Cap, rel=1e-15)
    assert isinstance(ours, snn.Lapicque) and not isinstance(ours, snn.Leaky)
    tensors = Lapicque(R=torch.tensor(5.0), C=torch.tensor(5.0), time_step=torch.tensor(0.5))  # as snnTorch takes them
    assert float(tensors.R) == 5.0 and float(tensors.time_step) == 0.5 and tensors.core.gain == 0.1


def test_a_snn_lapicque_state_dict_loads_and_retunes_the_core():
    """A ``snn.Lapicque`` state dict (other ``R``, ``C``, ``time_step``, threshold) loads into a skin built lazily, and
    the skin then runs as that neuron; assigning ``R`` retunes the core as ``snn.Lapicque`` reads it at every step;
    the skin's own state dict loads back into ``snn.Lapicque``."""
    ref = snn.Lapicque(R=4.0, C=2.0, time_step=0.5, threshold=torch.linspace(0.2, 0.5, C)).double()
    ours = Lapicque(R=1.0, C=3.0, time_step=1.0, threshold=torch.linspace(1.0, 2.0, C)).double()
    ours.load_state_dict(ref.state_dict())
    torch.manual_seed(0)
    x = torch.rand(25, 2, C, dtype=F64)

    def run(neuron):
        neuron.reset_mem()
        out = [neuron(x_t) for x_t in x.unbind(0)]
        return torch.stack([s.to(F64) for s, _ in out]), torch.stack([m for _, m in out])

    for got, expected in zip(run(ours), run(ref), strict=True):
        torch.testing.assert_close(got, expected)
    ref.R = torch.tensor(8.0, dtype=F64)
    ours.R = torch.tensor(8.0, dtype=F64)
    for got, expected in zip(run(ours), run(ref), strict=True):
        torch.testing.assert_close(got, expected)
    back = snn.Lapicque(R=1.0, C=3.0, time_step=1.0, threshold=torch.ones(C)).double()
    back.load_state_dict({k: v for k, v in ours.state_dict().items() if not k.startswith("core.")})
    for got, expected in zip(run(back), run(ref), strict=True):
        torch.testing.assert_close(got, expected)


def _net(make):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 16),
        make(R=2.0, C=2.0, init_hidden=True),
        nn.Linear(16, 4),
        make(beta=0.5, threshold=0.1, init_hidden=True, output=True),
    )


def test_snntorch_tools_run_it_as_snn_lapicque():
    """``init_hidden`` / ``output``, ``utils.reset`` and ``backprop.BPTT`` (which resets the network with
    ``utils.reset``) give ``snn.Lapicque``'s outputs and losses, and ``utils.reset`` and our :func:`reset` put it
    back at rest."""
    loader = [(torch.rand(16, 8) * 3, torch.arange(16) % 4)]
    results = {}
    for cls in (snn.Lapicque, Lapicque):
        net = _net(cls)
        out = [net(loader[0][0]) for _ in range(3)]
        assert isinstance(out[-1], tuple) and out[-1][1].abs().sum() > 0
        snntorch.utils.reset(net)
        assert not net[3].mem.any()
        net(loader[0][0])
        adapter.reset(net)
        assert not net[3].mem.any()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
        losses = [
            snntorch.backprop.BPTT(net, loader, optimizer, SF.ce_rate_loss(), num_steps=8, time_var=False)
            for _ in range(3)
        ]
        results[cls] = (torch.stack([torch.stack([s, m]) for s, m in out]), torch.tensor([float(v) for v in losses]))
    torch.testing.assert_close(results[Lapicque][0], results[snn.Lapicque][0])
    torch.testing.assert_close(results[Lapicque][1], results[snn.Lapicque][1])
    assert len(set(results[Lapicque][1].tolist())) > 1  # the steps changed the weights


def _tutorial_2(cls):
    """snnTorch tutorial 2's loops: a Lapicque neuron from rest under a step current, ``mem`` recorded, then one that
    fires under a larger current (with a lower threshold), spikes recorded."""
    num_steps = 200
    lif1 = cls(R=5, C=1e-3, time_step=1e-3)
    cur_in = torch.cat((torch.zeros(10, 1), torch.ones(190, 1) * 0.1), 0)
    mem = torch.ones(1) * 0.9  # the tutorial's initial membrane potential
    mem_rec = [mem]
    for step in range(num_steps):
        spk_out, mem = lif1(cur_in[step], mem)
        mem_rec.append(mem)
    lif2 = cls(R=5.1, C=5e-3, time_step=1e-3, threshold=0.5)
    cur_in = torch.cat((torch.zeros(10, 1), torch.ones(190, 1) * 0.3), 0)
    mem, spk_rec, mem_rec2 = torch.zeros(1), [], []
    for step in range(num_steps):
        spk_out, mem = lif2(cur_in[step], mem)
        spk_rec.append(spk_out)
        mem_rec2.append(mem)
    return torch.stack(mem_rec), torch.stack(spk_rec), torch.stack(mem_rec2)


def test_tutorial_2s_current_injection_with_the_class_swapped():
    """Tutorial 2 with ``snn.Lapicque`` replaced by the skin: the recorded membranes and spikes are snnTorch's."""
    expected, got = _tutorial_2(snn.Lapicque), _tutorial_2(Lapicque)
    assert 0 < expected[1].sum() < len(expected[1])  # the second neuron fires, now and then
    torch.testing.assert_close(got[0], expected[0])
    assert torch.equal(got[1].float(), expected[1].float())
    torch.testing.assert_close(got[2], expected[2])


def test_register_exposes_it():
    adapter.register()
    try:
        assert snn.LapicqueLIF is Lapicque
        assert snn.Lapicque is not Lapicque  # snnTorch's own is left alone
        assert "snntorch.LapicqueLIF" in adapter.registration()["added"]
    finally:
        adapter.unregister()
    assert not hasattr(snn, "LapicqueLIF")


@pytest.mark.parametrize(
    ("options", "error", "named"),
    [
        ({}, ValueError, "beta, or R and C"),
        ({"R": 5.0}, ValueError, "beta, or R and C"),
        ({"beta": 0.9, "R": 1.0, "C": 1.0}, ValueError, "not all three"),
        ({"beta": 0.3}, ValueError, "time_step / (R * C)"),
        ({"beta": 1.5}, ValueError, "beta"),
        ({"R": 1.0, "C": 0.5}, ValueError, "time_step / (R * C)"),
        ({"R": -1.0, "C": 5.0}, ValueError, "R must be positive"),
        ({"R": 5.0, "C": 5.0, "time_step": 0}, ValueError, "time_step"),
        ({"R": 5.0, "C": 5.0, "time_step": float("nan")}, ValueError, "time_step"),
        ({"beta": torch.tensor([0.8, 0.9])}, ValueError, "beta"),
        ({"beta": 0.9, "learn_beta": True}, ValueError, "learn_beta"),
        ({"beta": 0.9, "reset_mechanism": "zero"}, ValueError, "reset_mechanism='zero'"),
        ({"beta": 0.9, "inhibition": True}, ValueError, "inhibition"),
        ({"beta": 0.9, "state_quant": True}, ValueError, "state_quant"),
        ({"beta": 0.9, "surrogate_disable": 1}, TypeError, "surrogate_disable"),
        ({"beta": 0.9, "threshold": float("nan")}, ValueError, "threshold"),
        ({"beta": 0.9, "init_hidden": "yes"}, TypeError, "init_hidden"),
        ({"beta": 0.9, "reset_delay": False}, TypeError, "reset_delay"),
        ({"features": 0.9}, TypeError, "features"),
    ],
)
def test_bad_arguments_are_refused_naming_them(options, error, named):
    before = len(snn.SpikingNeuron.instances)
    with pytest.raises(error, match=named.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        Lapicque(**options)
    assert len(snn.SpikingNeuron.instances) == before  # refused before snnTorch registers the neuron


def test_bad_values_after_construction_are_refused():
    neuron = Lapicque(R=5.0, C=5.0)
    with pytest.raises(ValueError, match="time_step / "):
        neuron.C = torch.tensor(0.1)
    assert float(neuron.C) == 5.0  # unchanged
    with pytest.raises(ValueError, match="time_step / "):
        neuron.load_state_dict({**neuron.state_dict(), "R": torch.tensor(0.01)})
    with pytest.raises(ValueError, match="input_"):
        neuron(torch.full((2, 3), math.nan))
    with pytest.raises(TypeError, match="x_seq"):
        neuron.multistep([1.0, 2.0])


@pytest.mark.parametrize("output", [True, False], ids=["spk_and_mem", "spk"])
def test_a_trainer_gives_the_steps(output):
    """A trainer of :mod:`snn_parallel.learners` (whole sequence in parallel, or step by step, through the core where
    nothing reads ``mem``) gives the model's outputs called one step at a time, the input gain included."""

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 3)
            self.lif = Lapicque(8, R=2.0, C=2.0, threshold=0.5, init_hidden=True, output=output)

        def forward(self, x):
            out = self.lif(self.fc1(x))
            return self.fc2(out[0]) + out[1][:, :3] if output else self.fc2(out)

    torch.manual_seed(0)
    model = Model().double()
    nn.init.uniform_(model.fc1.weight, -1, 1)
    x = torch.rand(9, 5, 4, dtype=F64)
    spikes = model.lif.multistep(model.fc1(x))
    assert (spikes[0] if output else spikes).sum() > 10  # it fires
    model.lif.reset_mem()
    by_hand = torch.stack([model(x_t) for x_t in x])
    assert_a_trainer_gives_the_steps(model, x, by_hand)
