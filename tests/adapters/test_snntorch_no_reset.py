"""The ``DecoupledLIF`` skin as ``snn.Leaky(reset_mechanism="none")`` (the leaky-integrator readout of snnTorch's
regression tutorials) and as ``snn.Leaky(beta=1.0)`` (no leak, the integrate-and-fire neuron), and ``Synaptic`` with
``beta=1.0``, against snnTorch's own neurons in float64: spikes, membranes and, without a reset (nothing detached),
every gradient."""

from __future__ import annotations

import pytest
import torch
from torch import nn

snn = pytest.importorskip("snntorch")
import snntorch.backprop  # noqa: E402
import snntorch.functional as SF  # noqa: E402
import snntorch.utils  # noqa: E402
from snn_parallel.adapters import snntorch as adapter  # noqa: E402
from snn_parallel.adapters.snntorch import DecoupledLIF, Synaptic  # noqa: E402
from test_snntorch_synaptic import assert_a_trainer_gives_the_steps  # noqa: E402

F64 = torch.float64
C = 6

# snn.Leaky's arguments for each layer of C or 3 neurons: (decay, threshold, learned)
CASES = {
    "scalar": lambda n: {"beta": torch.tensor(0.8, dtype=F64), "threshold": 1.0},
    "per_neuron_learned": lambda n: {
        "beta": torch.linspace(0.5, 0.9, n, dtype=F64),
        "threshold": torch.linspace(0.8, 1.2, n, dtype=F64),
        "learn_beta": True,
        "learn_threshold": True,
    },
    "shared_learned": lambda n: {
        "beta": torch.tensor(0.75, dtype=F64),
        "threshold": torch.tensor(0.9, dtype=F64),
        "learn_beta": True,
        "learn_threshold": True,
    },
    "no_leak": lambda n: {"beta": 1.0, "threshold": torch.linspace(1.5, 2.5, n, dtype=F64), "learn_threshold": True},
}


def _layers(make, seed=0):
    """fc1 -> neuron -> fc2 -> neuron (the regression tutorial's shape, smaller), its weights from ``seed``."""
    torch.manual_seed(seed)
    fc1, fc2 = nn.Linear(5, C), nn.Linear(C, 3)
    with torch.no_grad():  # inputs of both signs: the membranes rise and fall, the layers fire now and then
        fc1.weight.mul_(0.6)
        fc2.weight.mul_(0.5)
    return nn.ModuleList([fc1, make(C), fc2, make(3)]).double()


def _pair(case, reset="none", **ours):
    """The network with ``snn.Leaky`` and with the skin (``ours``: its own options), loaded with the reference's
    state dict, so both hold the same float64 decays and thresholds."""
    ref = _layers(lambda n: snn.Leaky(reset_mechanism=reset, reset_delay=False, **CASES[case](n)))
    mine = _layers(lambda n: DecoupledLIF(n, reset_mechanism=reset, **{**CASES[case](n), **ours}))
    mine.load_state_dict(ref.state_dict())
    return ref, mine


def _step_run(layers, x):
    """Every step through ``forward(input_, mem)`` from rest, the mem passed back (the tutorials' loop): the
    spikes (in float64: snnTorch's default surrogate returns float32 spikes) and membranes of both layers."""
    adapter.reset(layers)
    mems, records = [None, None], []
    for x_t in x.unbind(0):
        out, step = x_t, []
        for i in (0, 1):
            spk, mems[i] = layers[2 * i + 1](layers[2 * i](out), mems[i])
            out = spk.to(F64)
            step.append((out, mems[i]))
        records.append(step)
    return [[torch.stack([r[i][k] for r in records]) for k in (0, 1)] for i in (0, 1)]


def _multistep_run(layers, x):
    adapter.reset(layers)
    spk1, mem1 = layers[1].multistep(layers[0](x))
    return [[spk1, mem1], list(layers[3].multistep(layers[2](spk1)))]


def assert_same_runs(got, expected):
    """The spikes (equal) and membranes (close) of each layer of two runs of :func:`_step_run`'s form."""
    for (g_spk, g_mem), (e_spk, e_mem) in zip(got, expected, strict=True):
        assert torch.equal(g_spk, e_spk)
        torch.testing.assert_close(g_mem, e_mem)


def _input(steps=40, seed=1):
    torch.manual_seed(seed)
    return torch.rand(steps, 4, 5, dtype=F64)


def _loss(run):
    """A loss on the hidden spikes and on the readout's membrane (the regression tutorial's output)."""
    (spk1, _), (spk2, mem2) = run
    return 0.1 * spk1.sum() + spk2.sum() + ((mem2 - 0.5) ** 2).sum()


@pytest.mark.parametrize("mem", ["leaky", "reset_free"])
@pytest.mark.parametrize("run", [_step_run, _multistep_run], ids=["forward", "multistep"])
@pytest.mark.parametrize("case", list(CASES))
def test_without_a_reset_spikes_membranes_and_every_gradient_are_snn_leakys(case, run, mem):
    """No reset to detach: the spikes and membranes are ``snn.Leaky(reset_mechanism="none")``'s, and so are the
    gradients of the weights, of the learned decays (the core learns :math:`\\beta = \\sigma(w)`: its gradient is
    :math:`\\partial L/\\partial\\beta \\cdot \\beta(1-\\beta)`) and of the learned thresholds, each learned
    parameter in ``snn.Leaky``'s shape (one value for the layer, or one per neuron)."""
    ref, ours = _pair(case, mem=mem)
    x = _input()
    expected = _step_run(ref, x)
    for spk, membrane in expected:
        assert 0.05 < spk.mean() < 0.95  # the layers fire, not always
        assert (membrane > 0).any() and (membrane < 0).any()
    got = run(ours, x)
    assert_same_runs(got, expected)
    _loss(expected).backward()
    _loss(got).backward()
    for i in (0, 2):
        torch.testing.assert_close(ours[i].weight.grad, ref[i].weight.grad)
        torch.testing.assert_close(ours[i].bias.grad, ref[i].bias.grad)
    for i in (1, 3):
        core, neuron = ours[i].core, ref[i]
        assert bool(core.learn_decay) == isinstance(neuron.beta, nn.Parameter)
        if core.learn_decay:
            assert core.decay_logit.shape == neuron.beta.shape
            beta = torch.sigmoid(core.decay_logit.detach())
            torch.testing.assert_close(core.decay_logit.grad / (beta * (1 - beta)), neuron.beta.grad)
        if core.learn_threshold:
            assert core.v_threshold.shape == neuron.threshold.shape and neuron.threshold.grad.abs().sum() > 0
            torch.testing.assert_close(core.v_threshold.grad, neuron.threshold.grad)


@pytest.mark.parametrize("reset", ["subtract", "none"])
@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda r: DecoupledLIF(beta=1.0, reset_mechanism=r), lambda r: snn.Leaky(beta=1.0, reset_mechanism=r)),
        (
            lambda r: Synaptic(alpha=0.5, beta=1.0, reset_mechanism=r),
            lambda r: snn.Synaptic(alpha=0.5, beta=1.0, reset_mechanism=r),
        ),
    ],
    ids=["Leaky", "Synaptic"],
)
def test_beta_one_is_the_integrate_and_fire_neuron_as_in_snntorch(ours, theirs, reset):
    """``beta=1.0``: no leak (the core's ``tau = inf``); the spikes and every state snnTorch returns are those of
    its neuron (both with snnTorch's default delayed reset), step by step and through ``multistep``; ``beta``
    reads back exactly 1."""
    torch.manual_seed(0)
    x = torch.rand(40, 3, 4, dtype=F64) * 0.45 - 0.1
    reference, skin = theirs(reset), ours(reset).double()
    expected = [torch.stack(out) for out in zip(*(reference(x_t) for x_t in x.unbind(0)), strict=True)]
    assert 0.05 < expected[0].mean() < 0.95
    stepped = [torch.stack(out) for out in zip(*(skin(x_t) for x_t in x.unbind(0)), strict=True)]
    adapter.reset(skin)
    for got in (stepped, skin.multistep(x)):
        assert torch.equal(got[0], expected[0].to(F64))
        for g, e in zip(got[1:], expected[1:], strict=True):
            torch.testing.assert_close(g, e)
    assert skin.beta.dim() == 0 and skin.beta.item() == 1.0
    assert skin.core.tau == float("inf") and bool((skin.core.beta == 1).all())


def test_beta_one_reads_back_and_assigns_like_snn_leaky():
    """``beta`` 1 given per neuron, loaded from ``snn.Leaky``'s state dict, assigned: read back as given, and the
    neuron integrates without a leak where it is 1; learning a decay of 1 is refused, naming ``learn_beta``."""
    beta = torch.tensor([0.5, 1.0, 0.75, 1.0])
    x = torch.rand(30, 3, 4) * 0.4
    leaky = snn.Leaky(beta=beta, reset_mechanism="none")
    expected = torch.stack([leaky(x_t)[1] for x_t in x.unbind(0)])
    loaded = DecoupledLIF(4, beta=0.5, reset_mechanism="none")
    loaded.load_state_dict(snn.Leaky(beta=beta, reset_mechanism="none").state_dict())
    assigned = DecoupledLIF(beta=0.5, reset_mechanism="none")
    assigned.beta = beta
    for neuron in (DecoupledLIF(beta=beta, reset_mechanism="none"), loaded, assigned):
        torch.testing.assert_close(neuron.beta, beta)  # sigma(logit(beta)), 1 exactly where beta is 1
        assert bool((neuron.beta[beta == 1] == 1).all())
        torch.testing.assert_close(neuron.multistep(x)[1], expected)
    one = DecoupledLIF(4, beta=0.5)
    one.beta = 1.0
    assert one.beta.item() == 1.0 and one.core.tau == float("inf")
    learned = DecoupledLIF(4, beta=0.5, learn_beta=True)
    with pytest.raises(ValueError, match=r"learn_beta=True needs beta below 1, got beta=\[0.5, 1.0"):
        learned.beta = beta
    with pytest.raises(ValueError, match="learn_beta=True needs beta below 1"):
        learned.load_state_dict(snn.Leaky(beta=1.0).state_dict())
    for bad, match in ((float("nan"), "beta must be a finite number"), (1.5, r"beta must be in \(0, 1\]")):
        with pytest.raises(ValueError, match=match):
            one.beta = bad
        with pytest.raises(ValueError, match=match):
            Synaptic(beta=bad)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\), got 1.0"):  # the current always decays
        Synaptic(alpha=1.0)


def test_reset_mechanism_none_is_fixed_and_loads_only_its_own_state_dict():
    neuron = DecoupledLIF(4, beta=0.9, reset_mechanism="none")
    assert neuron.reset_mechanism_val == snn.Leaky.reset_dict["none"] and "reset_mechanism='none'" in repr(neuron)
    neuron.reset_mechanism = "none"
    with pytest.raises(ValueError, match="cannot change from 'none' to 'subtract'"):
        neuron.reset_mechanism = "subtract"
    neuron.load_state_dict(snn.Leaky(beta=0.7, threshold=0.5, reset_mechanism="none").state_dict())
    assert neuron.beta.item() == pytest.approx(0.7) and neuron.core.v_threshold == 0.5
    with pytest.raises(ValueError, match="reset_mechanism='subtract'.*has reset_mechanism='none'"):
        neuron.load_state_dict(snn.Leaky(beta=0.7).state_dict())
    with pytest.raises(ValueError, match="reset_mechanism='none'.*has reset_mechanism='subtract'"):
        DecoupledLIF(4).load_state_dict(neuron.state_dict())
    assert DecoupledLIF(4, reset_mechanism="none", reset_delay=True).reset_mechanism == "none"  # no reset to delay


def _readout_net(make):
    """The regression tutorial's shape with ``init_hidden``: spiking layers and a reset-free readout, ``output``."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 16),
        make(beta=0.9, init_hidden=True),
        nn.Linear(16, 4),
        make(beta=0.8, init_hidden=True, output=True, reset_mechanism="none"),
    )


def test_snntorch_tools_run_a_readout_that_does_not_reset_as_snn_leaky():
    """``init_hidden`` / ``output``, ``utils.reset``, ``backprop.TBPTT`` and ``BPTT``: a network whose readout is
    ``DecoupledLIF(reset_mechanism="none")`` gives ``snn.Leaky``'s losses (nothing is learned
    but the weights, so the same gradients give the same steps), and ``utils.reset`` sets it back to rest."""
    loader = [(torch.rand(16, 8) * 2, torch.arange(16) % 4)]
    losses = {}
    for cls in (snn.Leaky, DecoupledLIF):
        net = _readout_net(cls)
        spk, mem = net(loader[0][0])
        assert spk.shape == mem.shape == (16, 4) and mem.abs().sum() > 0
        snntorch.utils.reset(net)
        assert not net[3].mem.any()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        losses[cls] = [
            torch.as_tensor(
                snntorch.backprop.TBPTT(net, loader, optimizer, SF.ce_rate_loss(), num_steps=6, time_var=False, K=2)
            ),
            torch.as_tensor(
                snntorch.backprop.BPTT(net, loader, optimizer, SF.ce_rate_loss(), num_steps=6, time_var=False)
            ),
        ]
    torch.testing.assert_close(losses[DecoupledLIF], losses[snn.Leaky])


def test_a_readout_that_does_not_reset_trains_under_cpu_autocast():
    net = _readout_net(DecoupledLIF)
    x = torch.rand(5, 2, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spk, mem = net[3].multistep(net[2](net[1].multistep(net[0](x))))
    (mem.float() ** 2).sum().backward()
    assert mem.dtype == torch.float32 and torch.isfinite(mem).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("kwargs", [{"beta": 0.9, "reset_mechanism": "none"}, {"beta": 1.0}], ids=["none", "if"])
def test_nir_export_writes_what_it_writes_for_snn_leaky(kwargs):
    """snnTorch's NIR exporter writes every ``snn.Leaky`` as NIR's ``LIF`` (which resets to ``v_reset`` = 0),
    whatever its ``reset_mechanism``, and ``beta = 1`` as ``tau = inf``: the skin is exported the same."""
    nir = pytest.importorskip("nir")
    pytest.importorskip("nirtorch")
    export_nir = pytest.importorskip("snntorch.export_nir")
    with pytest.warns(RuntimeWarning) if kwargs["beta"] == 1 else torch.no_grad():  # numpy: dt / (1 - beta)
        reference = export_nir._extract_snntorch_module(snn.Leaky(threshold=0.7, **kwargs))
        node = export_nir._extract_snntorch_module(DecoupledLIF(5, threshold=0.7, **kwargs))
    assert isinstance(node, nir.LIF)
    for field in ("tau", "r", "v_leak", "v_threshold", "v_reset"):
        torch.testing.assert_close(torch.as_tensor(getattr(node, field)), torch.as_tensor(getattr(reference, field)))


@pytest.mark.parametrize("cls", [DecoupledLIF, Synaptic])
def test_a_skins_own_state_dict_carries_beta_one(cls):
    """The core holds ``beta = 1`` as an infinite logit: a skin loaded with the state dict reads exactly 1 back
    and runs as the source does."""
    x = torch.rand(6, 2, 3) * 0.6
    source = cls(3, beta=1.0)
    source(x[0])  # the core's tensors built
    copy = cls(3, beta=0.5)
    copy.load_state_dict(source.state_dict())
    assert copy.beta.item() == 1.0 and copy.core.tau == float("inf")
    adapter.reset(source)
    assert torch.equal(copy.multistep(x)[0], source.multistep(x)[0])


@pytest.mark.parametrize("beta", [0.7, 1.0])
def test_a_model_reading_the_readout_mem_sees_under_a_trainer_what_it_sees_stepping_itself(beta):
    """A model that reads the membrane of a ``DecoupledLIF(reset_mechanism="none")`` readout (the regression
    tutorials' output) at every step: a trainer of :mod:`snn_parallel.learners` (the whole sequence in parallel, or
    step by step) gives the outputs and BPTT gradients of the model called one step at a time."""

    class ReadsMem(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 3)
            self.lif = DecoupledLIF(8, beta=0.8, init_hidden=True)
            self.li_out = DecoupledLIF(3, beta=beta, init_hidden=True, output=True, reset_mechanism="none")

        def forward(self, x):
            return self.li_out(self.fc2(self.lif(self.fc1(x))))[1]

    torch.manual_seed(0)
    model = ReadsMem().double()
    nn.init.uniform_(model.fc1.weight, -1, 1)
    x = torch.rand(9, 5, 4, dtype=F64)
    by_hand = torch.stack([model(x_t) for x_t in x])
    assert model.li_out.multistep(model.fc2(model.lif.multistep(model.fc1(x))))[0].sum() > 0  # it fires
    assert_a_trainer_gives_the_steps(model, x, by_hand)
