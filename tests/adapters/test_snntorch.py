"""snnTorch drop-ins (adapters/snntorch.py): Leaky's contract on top of the core neurons."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

snn = pytest.importorskip("snntorch")
import snntorch.functional as SF  # noqa: E402
import snntorch.surrogate  # noqa: E402
import snntorch.utils  # noqa: E402
from snn_parallel.adapters import snntorch as adapter  # noqa: E402
from snn_parallel.adapters.snntorch import LTC, PRF, PSPLIF, DecoupledLIF, DynamicDecay  # noqa: E402

import snn_parallel as sp  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# (class, constructor kwargs, input scale that makes some but not all neurons fire)
CASES = [
    pytest.param(DynamicDecay, {}, 3.0, id="dsn"),
    pytest.param(DynamicDecay, {"spike_mode": "integer"}, 3.0, id="dsn-integer"),
    pytest.param(PRF, {"tau": 0.5, "dt_range": (0.5, 1.0)}, 3.0, id="prf"),
    pytest.param(PRF, {"tau": 0.5, "dt_range": (0.5, 1.0), "reset_mechanism": "subtract"}, 3.0, id="prf-reset"),
    pytest.param(DecoupledLIF, {"beta": 0.8}, 1.0, id="lif"),
    pytest.param(LTC, {}, 1.0, id="ltc"),
    pytest.param(LTC, {"mode": "parallel"}, 1.0, id="ltc-parallel"),
]
CLASSES = [DynamicDecay, PRF, DecoupledLIF, LTC]
# features, constructor kwargs to fire on rand inputs, per class (for the swap checks)
SWAP_KWARGS = {
    DynamicDecay: {"threshold": 0.25},
    PRF: {"tau": 0.5, "dt_range": (0.5, 1.0), "threshold": 0.25},
    DecoupledLIF: {"beta": 0.8},
    LTC: {},
}


def _sequence(scale: float, steps: int = 24, batch: int = 3, features: int = 8) -> torch.Tensor:
    return torch.rand(steps, batch, features, dtype=torch.float64) * scale


# -- one step vs many -----------------------------------------------------------------------
@pytest.mark.parametrize("cls, kwargs, scale", CASES)
def test_forward_loop_equals_multistep_and_core_step(cls, kwargs, scale):
    neuron = cls(8, **kwargs).double()
    x = _sequence(scale)
    stepped = torch.stack([neuron(x_t)[0] for x_t in x.unbind(0)])
    end_state = neuron._state()

    adapter.reset(neuron)
    spk_seq, mem_seq = neuron.multistep(x)
    assert torch.equal(stepped, spk_seq)
    assert 0 < spk_seq.count_nonzero() < spk_seq.numel()  # the case is not trivial
    assert mem_seq.shape == x.shape
    for carried, parallel in zip(end_state, neuron._state(), strict=True):  # multistep leaves the end state
        torch.testing.assert_close(carried, parallel)

    state, core_spikes = None, []
    for x_t in x.unbind(0):
        spike, state = neuron.core.step(x_t, state)
        core_spikes.append(spike)
    assert torch.equal(stepped, torch.stack(core_spikes))


@pytest.mark.parametrize("cls, kwargs, scale", CASES)
def test_streaming_continues_after_multistep(cls, kwargs, scale):
    neuron = cls(8, **kwargs).double()
    x = _sequence(scale)
    whole, _ = neuron.multistep(x)
    adapter.reset(neuron)
    head, _ = neuron.multistep(x[:10])
    tail = torch.stack([neuron(x_t)[0] for x_t in x[10:].unbind(0)])
    assert torch.equal(whole, torch.cat([head, tail]))


def test_decoupled_lif_fires_like_leaky_without_reset_delay():
    x = _sequence(0.8, steps=100, features=16)
    leaky = snn.Leaky(beta=0.8, reset_delay=False)
    ours = DecoupledLIF(16, beta=0.8, reset_delay=False).double()
    expected = torch.stack([leaky(x_t)[0] for x_t in x.unbind(0)])
    assert torch.equal(ours.multistep(x)[0], expected.double())


# -- Leaky's call contract ------------------------------------------------------------------
@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize(
    "init_hidden, output, pair", [(False, False, True), (True, False, False), (True, True, True), (False, True, True)]
)
def test_return_rules(cls, init_hidden, output, pair):
    neuron = cls(8, init_hidden=init_hidden, output=output)
    x = torch.rand(5, 2, 8)
    for out in (neuron(x[0]), neuron.multistep(x)):
        assert isinstance(out, tuple) == pair
        if pair:
            spk, mem = out
            assert spk.shape == mem.shape
    assert neuron.mem.shape == (2, 8)  # the state is kept either way, as Leaky does


@pytest.mark.parametrize("cls", CLASSES)
def test_mem_with_init_hidden_raises(cls):
    neuron = cls(8, init_hidden=True)
    x = torch.rand(2, 8)
    with pytest.raises(TypeError, match="mem"):
        neuron(x, torch.zeros(2, 8))
    with pytest.raises(TypeError, match="mem"):
        neuron.multistep(x.unsqueeze(0), torch.zeros(2, 8))


@pytest.mark.parametrize("cls, kwargs, scale", CASES)
def test_passed_mem_replaces_the_first_state_field_only(cls, kwargs, scale):
    kwargs = (
        {**kwargs, "mem": "reset_free"} if cls is DecoupledLIF else kwargs
    )  # "leaky": see test_decoupled_lif_leaky_mem
    neuron = cls(8, **kwargs).double()
    x = _sequence(scale, steps=4)
    for x_t in x[:3].unbind(0):
        neuron(x_t)
    before = neuron._state()
    mem = torch.rand(3, 8, dtype=torch.float64)
    spk, returned = neuron(x[3], mem)
    expected_spk, expected = neuron.core.step(x[3], before._replace(**{before._fields[0]: mem}))
    assert torch.equal(spk, expected_spk)
    assert torch.equal(returned, expected[0]) and torch.equal(neuron.mem, expected[0])


@pytest.mark.parametrize("cls", CLASSES)
def test_state_is_recreated_when_the_input_shape_changes(cls):
    neuron = cls(8).double()
    neuron(torch.rand(3, 8, dtype=torch.float64))
    x = torch.rand(5, 8, dtype=torch.float64)
    spk, mem = neuron(x)
    fresh_spk, fresh = neuron.core.step(x)
    assert torch.equal(spk, fresh_spk) and torch.equal(mem, fresh[0])


@pytest.mark.parametrize("cls", [DynamicDecay, PRF, DecoupledLIF])
def test_fires_on_strictly_greater_than_threshold(cls):
    """A membrane exactly at the threshold does not fire (snnTorch's rule)."""
    probe = cls(4, **({"mem": "reset_free"} if cls is DecoupledLIF else {})).double()
    x = torch.rand(1, 4, dtype=torch.float64) + 0.5
    _, mem = probe(x)  # first step: mem is the potential compared with the threshold
    level = float(mem[0, 0].detach())
    at = cls(4, threshold=level).double()
    below = cls(4, threshold=level - 1e-9).double()
    for neuron in (at, below):
        neuron.core.load_state_dict(probe.core.state_dict())  # the same dynamics
    spk_at, mem_at = at(x)
    assert torch.equal(mem_at, mem)
    assert spk_at[0, 0] == 0 and below(x)[0][0, 0] == 1


# -- surrogates -----------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CLASSES)
def test_snntorch_fast_sigmoid_trains(cls):
    kwargs = {**SWAP_KWARGS[cls], **({"learn_beta": True} if cls is DecoupledLIF else {})}
    scale = 1.0 if cls in (DecoupledLIF, LTC) else 3.0
    neuron = cls(8, spike_grad=snntorch.surrogate.fast_sigmoid(), **kwargs)
    x = (torch.rand(12, 3, 8) * scale).requires_grad_(True)
    spk, _ = neuron.multistep(x)
    spk.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in neuron.parameters())


@pytest.mark.parametrize("cls", CLASSES)
def test_surrogate_without_derivative_is_refused(cls):
    with pytest.raises(TypeError, match="spike_grad"):
        cls(8, spike_grad=lambda x: (x > 0).float())


def test_our_surrogate_factories_fire_like_snntorch():
    for factory in (adapter.multi_gaussian, adapter.double_gaussian):
        neuron = LTC(4, spike_grad=factory())
        assert neuron.core.surrogate.inclusive is False
        assert factory()(torch.zeros(3)).sum() == 0


# -- what cannot be expressed ---------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, kwargs, error, name",
    [
        (LTC, {"learn_threshold": True}, ValueError, "learn_threshold"),
        (DynamicDecay, {"spike_mode": "integer", "learn_threshold": True}, ValueError, "binary mode's"),
        (PRF, {"inhibition": True}, ValueError, "inhibition"),
        (LTC, {"state_quant": lambda m: m}, ValueError, "state_quant"),
        (DynamicDecay, {"spike_mode": "integer", "surrogate_disable": True}, ValueError, "integer spikes"),
        (PSPLIF, {"gradient": "tsslbp", "surrogate_disable": True}, ValueError, "TSSL-BP's rule"),
        (DecoupledLIF, {"surrogate_disable": "yes"}, TypeError, "surrogate_disable"),
        (DynamicDecay, {"spike_mode": "integer", "surrogate_disable": "yes"}, TypeError, "surrogate_disable must be"),
        (PSPLIF, {"gradient": "tsslbp", "surrogate_disable": 1}, TypeError, "surrogate_disable must be a bool"),
        (DynamicDecay, {"reset_mechanism": "zero"}, ValueError, "reset_mechanism"),
        (DynamicDecay, {"reset_mechanism": "subtract"}, ValueError, "reset_mechanism"),
        (PRF, {"reset_mechanism": "zero"}, ValueError, "reset_mechanism"),
        (DecoupledLIF, {"reset_mechanism": "zero"}, ValueError, "reset_mechanism"),
        (LTC, {"reset_mechanism": "subtract"}, ValueError, "reset_mechanism"),
        (PRF, {"reset_mechanism": "subtract", "reset_delay": True}, ValueError, "reset_delay=True is not supported"),
        (LTC, {"reset_delay": True}, ValueError, "reset_delay=True is not supported by LTC"),
        (DecoupledLIF, {"reset_delay": 1}, TypeError, "reset_delay must be a bool"),
        (DecoupledLIF, {"beta": 1.5}, ValueError, r"beta must be in \(0, 1\], got 1.5"),
        (DecoupledLIF, {"beta": 0.0}, ValueError, r"beta must be in \(0, 1\], got 0.0"),
        (DecoupledLIF, {"beta": torch.tensor([0.5, 1.5] * 4)}, ValueError, r"beta must be in \(0, 1\], got \[0.5"),
        (DecoupledLIF, {"beta": 1.0, "learn_beta": True}, ValueError, "learn_beta=True needs beta below 1"),
        (DecoupledLIF, {"learn_beta": 1}, TypeError, "learn_beta must be a bool"),
        (DecoupledLIF, {"beta": torch.tensor([0.5, 0.6])}, ValueError, "beta has 2 values for 8 features"),
        (PSPLIF, {"threshold": torch.linspace(0.5, 1, 8)}, ValueError, "threshold must be one value for all"),
        (PRF, {"threshold": torch.linspace(0.5, 1.0, 4)}, ValueError, "v_threshold has 4 values, one per channel"),
        (DecoupledLIF, {"threshold": torch.rand(8, 2)}, ValueError, r"threshold must be one number or one per channel"),
        (PRF, {"learn_threshold": "yes"}, TypeError, "learn_threshold must be a bool"),
        (LTC, {"threshold": "high"}, TypeError, "threshold"),
        (DynamicDecay, {"learn_beta": True}, TypeError, "learn_beta"),
        (LTC, {"beta": 0.9}, TypeError, "beta"),
        (DynamicDecay, {"threshold": float("nan")}, ValueError, "threshold must be a finite number"),
        (DecoupledLIF, {"threshold": torch.tensor(float("inf"))}, ValueError, "threshold must be a finite number"),
        (DecoupledLIF, {"beta": float("nan")}, ValueError, "beta must be a finite number"),
        (PSPLIF, {"tau_s": float("inf")}, ValueError, "tau_s must be a finite number"),
        (PRF, {"dt_range": (1,)}, ValueError, "dt_range must be a pair"),
        (LTC, {"init_hidden": "yes"}, TypeError, "init_hidden must be a bool"),
        (PRF, {"graded_spikes_factor": float("nan")}, ValueError, "graded_spikes_factor must be a finite number"),
    ],
)
def test_unsupported_arguments_raise_naming_them(cls, kwargs, error, name):
    with pytest.raises(error, match=name):
        cls(8, **kwargs)


def _parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_supported_mappings():
    assert DynamicDecay(4, reset_delay=True).core.v_threshold == 0.25  # no reset: reset_delay is moot
    x = _sequence(3.0)
    for reset_mechanism, has_bias in (("none", False), ("subtract", True)):
        prf = PRF(8, tau=0.5, dt_range=(0.5, 1.0), reset_mechanism=reset_mechanism).double()
        prf.multistep(x)
        assert bool(prf.state_bias.abs().sum() > 0) == has_bias  # the soft reset's threshold bias
    assert _parameter_count(PRF(4, learn_beta=True)) == _parameter_count(PRF(4)) + 4
    lif = DecoupledLIF(4, beta=torch.tensor(0.75), threshold=torch.tensor(2.0), learn_beta=True)
    torch.testing.assert_close(lif.core.beta, torch.full((4,), 0.75))
    assert lif.core.v_threshold == 2.0 and _parameter_count(lif) == 1  # one learned beta, as snn.Leaky's
    assert LTC(4, threshold=0.3).core.b0 == 0.3
    assert float(LTC(4, threshold=0.3).threshold) == pytest.approx(0.3)


# -- swap into a tutorial-style snnTorch network --------------------------------------------
def _data(batch: int = 32, steps: int = 10, inputs: int = 16, classes: int = 4, dtype=torch.float32):
    gen = torch.Generator().manual_seed(1)
    labels = torch.arange(batch) % classes
    prototypes = torch.rand(classes, inputs, generator=gen)
    rates = (prototypes[labels] * 0.8 + 0.1).expand(steps, batch, inputs)
    return torch.bernoulli(rates, generator=gen).to(dtype), labels


def _net(neuron: type, kwargs: dict, hidden: int = 32, classes: int = 4) -> nn.Sequential:
    """Linear -> neuron -> Linear -> neuron, as in the snnTorch tutorials."""
    if neuron is snn.Leaky:
        first, last = snn.Leaky(beta=0.9, init_hidden=True), snn.Leaky(beta=0.9, init_hidden=True, output=True)
    else:
        first = neuron(hidden, init_hidden=True, **kwargs)
        last = neuron(classes, init_hidden=True, output=True, **kwargs)
    return nn.Sequential(nn.Linear(16, hidden), first, nn.Linear(hidden, classes), last)


def _run(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    snntorch.utils.reset(net)
    return torch.stack([net(x_t)[0] for x_t in x.unbind(0)])


@pytest.mark.parametrize("neuron", [snn.Leaky, *CLASSES], ids=lambda c: c.__name__)
def test_swap_trains_with_snntorch_loss(neuron):
    torch.manual_seed(0)
    x, y = _data()
    net = _net(neuron, SWAP_KWARGS.get(neuron, {}))
    loss_fn = SF.ce_rate_loss()
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    losses = []
    for _ in range(25):
        loss = loss_fn(_run(net, x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses
    accuracy = SF.accuracy_rate(_run(net, x), y)
    assert accuracy >= 0.5  # 4 classes: chance is 0.25


@pytest.mark.parametrize("cls", CLASSES)
def test_snntorch_reset_and_ours_give_the_same_repeatable_outputs(cls):
    x, _ = _data(batch=4)
    net = _net(cls, SWAP_KWARGS[cls])
    hidden = []
    net[1].register_forward_hook(lambda module, args, out: hidden.append(out))

    def run() -> torch.Tensor:
        hidden.clear()
        out = torch.stack([net(x_t)[0] for x_t in x.unbind(0)])
        return torch.cat([torch.stack(hidden), out], dim=-1)

    with torch.no_grad():
        snntorch.utils.reset(net)
        first = run()
        snntorch.utils.reset(net)
        again = run()
        adapter.reset(net)
        ours = run()
    assert torch.equal(first, again) and torch.equal(first, ours)
    assert first.count_nonzero() > 0


def test_our_reset_is_deep_and_local_unlike_snntorch():
    x = torch.rand(3, 8) + 1.0
    nested = nn.Sequential(nn.Sequential(nn.Identity(), DecoupledLIF(8, init_hidden=True)))
    other = nn.Sequential(nn.Identity(), DecoupledLIF(8, init_hidden=True))
    inner, outer_neuron = nested[0][1], other[1]

    def run_both():
        nested(x), other(x)
        assert inner.mem.abs().sum() > 0 and outer_neuron.mem.abs().sum() > 0

    run_both()
    snntorch.utils.reset(nested)  # shallow: the nested neuron keeps its state
    assert inner.mem.abs().sum() > 0
    snntorch.utils.reset(other)  # global: resets `nested`'s neuron too
    assert inner.mem.abs().sum() == 0

    run_both()
    adapter.reset(nested)  # ours: deep and local
    assert inner.mem.abs().sum() == 0 and inner.state_bias.abs().sum() == 0
    assert outer_neuron.mem.abs().sum() > 0


def test_reset_restores_every_state_field_to_rest():
    neuron = LTC(8)
    neuron(torch.rand(2, 8) + 1)
    snn.Leaky.reset_hidden()  # snnTorch's global reset assigns `mem` only
    rest = neuron.core.init_state(torch.zeros(2, 8))
    for field, value in zip(rest, neuron._state(), strict=True):
        assert torch.equal(field, value)  # b back at b0, s at 0
    assert neuron.init_leaky().shape == (2, 8)


def test_detach_hidden_detaches_every_field():
    neuron = PRF(8, init_hidden=True)
    neuron.multistep(torch.rand(4, 2, 8, requires_grad=True))
    assert neuron.mem.requires_grad and neuron.state_r.requires_grad
    PRF.detach_hidden()
    assert not any(value.requires_grad for value in neuron._state())


class _SeqNet(nn.Module):
    """The same weights run step by step (``forward``) or over the whole sequence (``multistep``)."""

    def __init__(self, cls: type, kwargs: dict) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 4)
        self.lif1, self.lif2 = cls(32, init_hidden=True, **kwargs), cls(4, init_hidden=True, output=True, **kwargs)

    def forward(self, x_t: torch.Tensor) -> torch.Tensor:
        hidden = self.lif1(self.fc1(x_t))
        return torch.cat([hidden, self.lif2(self.fc2(hidden))[0]], dim=-1)

    def multistep(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.lif1.multistep(self.fc1(x))
        return torch.cat([hidden, self.lif2.multistep(self.fc2(hidden))[0]], dim=-1)


@pytest.mark.parametrize("cls", CLASSES)
def test_trained_with_multistep_runs_step_by_step(cls):
    torch.manual_seed(0)
    x, y = _data(dtype=torch.float64)
    net = _SeqNet(cls, SWAP_KWARGS[cls]).double()
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    loss_fn = SF.ce_rate_loss()
    for _ in range(5):
        adapter.reset(net)
        loss = loss_fn(net.multistep(x)[..., 32:], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        adapter.reset(net)
        parallel = net.multistep(x)
        adapter.reset(net)
        stepped = torch.stack([net(x_t) for x_t in x.unbind(0)])
    assert torch.equal(parallel, stepped)
    assert parallel.count_nonzero() > 0


def test_spikeplot_raster_accepts_the_output():
    pytest.importorskip("pandas")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import snntorch.spikeplot as splt

    spk = DynamicDecay(8).multistep(torch.rand(20, 1, 8) * 3)[0]
    fig, ax = plt.subplots()
    splt.raster(spk[:, 0], ax, s=2)
    plt.close(fig)


# -- torch.compile and state_dict -----------------------------------------------------------
@pytest.mark.parametrize("cls", CLASSES)
def test_step_path_compiles_with_fullgraph(cls):
    torch._dynamo.reset()
    x, _ = _data(batch=4, steps=4)
    net = _net(cls, SWAP_KWARGS[cls])
    compiled = torch.compile(net, fullgraph=True, backend="eager")
    with torch.no_grad(), sp.validation(False):  # the NaN check reads data (a graph break)
        eager = _run(net, x)
        adapter.reset(net)
        out = torch.stack([compiled(x_t)[0] for x_t in x.unbind(0)])
    assert torch.equal(eager, out)


@pytest.mark.parametrize("cls", CLASSES)
def test_state_dict_round_trip(cls, tmp_path):
    x, _ = _data(batch=4)
    net = _net(cls, SWAP_KWARGS[cls])
    net(x[0])  # fill the state buffers: they must not be saved
    assert not any(key.split(".")[-1].startswith("state_") for key in net.state_dict())
    torch.save(net.state_dict(), tmp_path / "net.pt")
    fresh = _net(cls, SWAP_KWARGS[cls])
    fresh.load_state_dict(torch.load(tmp_path / "net.pt"))
    with torch.no_grad():
        assert torch.equal(_run(net, x), _run(fresh, x))


# -- registration ---------------------------------------------------------------------------
NAMES = [
    "snntorch.DecoupledLIF",
    "snntorch.DynamicDecay",
    "snntorch.LTC",
    "snntorch.LapicqueLIF",
    "snntorch.PRF",
    "snntorch.PSPLIF",
    "snntorch.SynapticLIF",
    "snntorch.surrogate.DoubleGaussian",
    "snntorch.surrogate.MultiGaussian",
]


@pytest.fixture
def clean_registry():
    adapter.unregister()
    yield
    adapter.unregister()


def test_register_is_idempotent_and_reversible(clean_registry):
    adapter.register()
    adapter.register()
    assert adapter.registration() == {"added": NAMES, "skipped": []}
    assert snn.DynamicDecay is DynamicDecay and snn.LTC is LTC
    net = nn.Sequential(nn.Linear(4, 8), snn.PRF(8, spike_grad=snntorch.surrogate.MultiGaussian(), init_hidden=True))
    assert net(torch.rand(2, 4)).shape == (2, 8)
    adapter.unregister()
    assert not any(hasattr(snn, name) for name in ("DynamicDecay", "PRF", "DecoupledLIF", "LTC"))
    assert not hasattr(snntorch.surrogate, "MultiGaussian")
    assert adapter.registration() == {"added": [], "skipped": []}


def test_register_never_overwrites(clean_registry, monkeypatch):
    existing = object()
    monkeypatch.setattr(snn, "PRF", existing, raising=False)
    adapter.register()
    assert snn.PRF is existing
    assert adapter.registration()["skipped"] == ["snntorch.PRF"]
    adapter.unregister()
    assert snn.PRF is existing


def test_import_does_not_register():
    code = (
        "import snntorch, snn_parallel, snn_parallel.adapters.snntorch as a; "
        "assert not any(hasattr(snntorch, n) for n in ('DynamicDecay', 'PRF', 'DecoupledLIF', 'LTC')); "
        "assert a.registration() == {'added': [], 'skipped': []}"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_docs_snippet_runs():
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs_snippets" / "snntorch_swap.py")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loss" in done.stdout


def test_a_skin_passes_the_leaky_arguments_to_its_base_by_name_or_by_position():
    """The built-in skins pass them by position; a skin written by name (as before) runs the same."""

    class ByName(adapter.LeakyAdapter):
        _core_type = sp.DynamicDecay
        _resets = ("none",)

        def __init__(self, features, *, threshold=0.25, spike_grad=None, reset_mechanism="none", **leaky_options):
            super().__init__(
                lambda surrogate, v_threshold: sp.DynamicDecay(features, v_threshold=v_threshold, surrogate=surrogate),
                threshold=threshold,
                spike_grad=spike_grad,
                init_hidden=False,
                output=False,
                reset_mechanism=reset_mechanism,
                **leaky_options,
            )

    x_seq = torch.rand(12, 2, 4) * 3
    torch.manual_seed(0)
    spk_name, mem_name = ByName(4).multistep(x_seq)
    torch.manual_seed(0)
    spk_position, mem_position = DynamicDecay(4).multistep(x_seq)
    assert 0 < spk_name.sum() < spk_name.numel()
    assert torch.equal(spk_name, spk_position) and torch.equal(mem_name, mem_position)
    with pytest.raises(ValueError, match="reset_mechanism='zero' is not supported by ByName"):
        ByName(4, reset_mechanism="zero")


# -- TSSL-BP's PSPLIF ----------------------------------------------------------------------------
def test_psplif_skin_runs_the_core_and_translates_beta():
    from snn_parallel.adapters.snntorch import PSPLIF

    torch.manual_seed(0)
    assert PSPLIF(4).core.gradient == "surrogate"  # the default; TSSL-BP's gradient is one argument away
    lif = PSPLIF(4, beta=0.8, tau_s=3.0, threshold=1.0, init_hidden=False, gradient="tsslbp")
    assert lif.core.tau_m == pytest.approx(5.0) and lif.core.gradient == "tsslbp"
    x = 1.5 * torch.rand(6, 2, 4)
    psp_seq, mem_seq = lif.multistep(x)
    expected, membrane, _ = sp.PSPLIF(4, tau_m=5.0, tau_s=3.0)(x, return_membrane=True)
    torch.testing.assert_close(psp_seq, expected)
    torch.testing.assert_close(mem_seq, membrane)
    snntorch.utils.reset(nn.Sequential(lif))
    stepped = torch.stack([lif(x_t)[0] for x_t in x.unbind(0)])
    torch.testing.assert_close(stepped, expected)
    with pytest.raises(ValueError, match="reset_mechanism"):
        PSPLIF(4, reset_mechanism="subtract")
    with pytest.raises(ValueError, match="beta"):
        PSPLIF(4, beta=1.0)


# -- snnTorch's tools: backprop, beta, NIR, state dicts, the Leaky mem -------------------------
ALL_SKINS = [DynamicDecay, PRF, DecoupledLIF, LTC, PSPLIF]


def _tbptt_net(cls: type) -> nn.Sequential:
    kwargs = {"beta": 0.9} if cls in (snn.Leaky, DecoupledLIF) else {}
    return nn.Sequential(
        nn.Linear(8, 16),
        cls(init_hidden=True, **kwargs),
        nn.Linear(16, 4),
        cls(init_hidden=True, output=True, **kwargs),
    )


@pytest.mark.parametrize("cls", [snn.Leaky, *ALL_SKINS], ids=lambda c: c.__name__)
def test_snntorch_backprop_tbptt_and_bptt_run_with_every_skin(cls):
    """snnTorch's TBPTT calls ``snn.Leaky.detach_hidden()``, which detaches ``mem`` in place only;
    every other state field is detached with it, so the second truncation does not backward
    through the first one's graph."""
    backprop = pytest.importorskip("snntorch.backprop")
    torch.manual_seed(0)
    net = _tbptt_net(cls)
    loader = [(torch.rand(16, 8) * 2, torch.arange(16) % 4)]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    # time-static data (snnTorch's time_var=True with an explicit K fails inside snnTorch for every neuron)
    loss = backprop.TBPTT(net, loader, optimizer, SF.ce_rate_loss(), num_steps=6, time_var=False, K=2)
    assert torch.isfinite(torch.as_tensor(loss))
    before = [p.detach().clone() for p in net.parameters()]
    loss = backprop.BPTT(net, loader, optimizer, SF.ce_rate_loss(), num_steps=6, time_var=False)
    assert torch.isfinite(torch.as_tensor(loss))
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))


def test_mem_detached_in_place_detaches_the_whole_state():
    neuron = DynamicDecay(init_hidden=True)
    neuron.multistep(torch.rand(4, 2, 8, requires_grad=True) * 3)
    assert neuron.state_history.requires_grad
    neuron.mem.detach_()  # what snn.Leaky.detach_hidden() does
    neuron(torch.rand(2, 8))
    assert not neuron.state_history.grad_fn  # the history was detached before the step
    neuron(torch.rand(2, 8, requires_grad=True)).sum().backward()  # no second backward through the old graph


def test_beta_reflects_the_decay_or_is_refused_with_the_reason():
    lif = DecoupledLIF(beta=0.9)
    assert lif.beta.dim() == 0 and lif.beta.item() == pytest.approx(0.9)
    learned = DecoupledLIF(6, beta=0.8, learn_beta=True)  # one learned value, 0-d as snn.Leaky's
    torch.testing.assert_close(learned.beta, torch.tensor(0.8))
    learned = DecoupledLIF(6, beta=torch.full((6,), 0.8), learn_beta=True)  # per neuron
    torch.testing.assert_close(learned.beta, torch.full((6,), 0.8))
    assert not any(name.endswith("beta") for name in dict(lif.named_buffers()))  # no unused beta buffer
    for cls, reason in (
        (DynamicDecay, "computed from the input"),
        (PRF, "complex"),
        (LTC, "gate"),
        (PSPLIF, "post-synaptic"),
    ):
        with pytest.raises(TypeError, match=rf"{cls.__name__} has no beta: .*{reason}"):
            cls().beta  # noqa: B018 (the attribute read is what raises)
        if cls is not PSPLIF:  # PSPLIF takes beta (its membrane decay)
            with pytest.raises(TypeError, match=rf"{cls.__name__} takes no beta: .*{reason}"):
                cls(beta=0.9)
    with pytest.raises(TypeError, match=r"DynamicDecay\(\) got an unexpected keyword argument 'decay'"):
        DynamicDecay(decay=0.9)


def test_nir_export_writes_decoupled_lif_parameters_and_refuses_the_others():
    """What snnTorch's NIR exporter writes for each module (its per-module converter)."""
    nir = pytest.importorskip("nir")
    pytest.importorskip("nirtorch")
    export_nir = pytest.importorskip("snntorch.export_nir")
    node = export_nir._extract_snntorch_module(DecoupledLIF(5, beta=0.9, threshold=0.7))
    assert isinstance(node, nir.LIF)
    dt = 1e-4  # snnTorch's export step
    assert float(node.tau) == pytest.approx(dt / (1 - 0.9))  # beta = 1 - dt / tau
    assert float(node.v_threshold) == pytest.approx(0.7)
    leaky = export_nir._extract_snntorch_module(snn.Leaky(beta=0.9, threshold=0.7))
    for field in ("tau", "r", "v_leak", "v_threshold", "v_reset"):  # exactly what snn.Leaky(beta=0.9) writes
        torch.testing.assert_close(torch.as_tensor(getattr(node, field)), torch.as_tensor(getattr(leaky, field)))
    for cls in (DynamicDecay, PRF, LTC, PSPLIF):
        with pytest.raises(TypeError, match=rf"{cls.__name__} has no beta.*NIR"):
            export_nir._extract_snntorch_module(cls(5))


def test_nir_export_of_a_whole_network_matches_snn_leaky():
    pytest.importorskip("nir")
    pytest.importorskip("nirtorch")
    export_nir = pytest.importorskip("snntorch.export_nir")

    def net(neuron: nn.Module) -> nn.Sequential:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 5), neuron)

    sample = torch.rand(1, 6)
    try:
        reference = export_nir.export_to_nir(net(snn.Leaky(beta=0.9, threshold=0.7, init_hidden=True)), sample)
    except ValueError as error:  # snnTorch 1.0.0's exporter against nir >= 1.0.5
        pytest.skip(f"snnTorch's NIR exporter fails on snn.Leaky itself here: {error}")
    ours = export_nir.export_to_nir(net(DecoupledLIF(beta=0.9, threshold=0.7, init_hidden=True)), sample)
    assert set(ours.nodes) == set(reference.nodes)
    with pytest.raises(TypeError, match="PRF has no beta"):
        export_nir.export_to_nir(net(PRF(init_hidden=True)), sample)


def test_nir_export_of_per_neuron_parameters_matches_snn_leaky():
    """snnTorch's NIR examples give ``beta`` and ``threshold`` per neuron: equal values are one
    value here, read back in their shape, so the export writes what snn.Leaky's does."""
    nir = pytest.importorskip("nir")
    pytest.importorskip("nirtorch")
    export_nir = pytest.importorskip("snntorch.export_nir")

    def net(neuron: Callable[..., nn.Module]) -> nn.Sequential:
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Linear(12, 8),
            neuron(beta=0.9 * torch.ones(8), threshold=torch.ones(8), init_hidden=True),
            nn.Linear(8, 4),
            neuron(beta=0.9 * torch.ones(4), threshold=torch.ones(4), init_hidden=True, output=True),
        )

    sample = torch.rand(2, 12)
    reference = export_nir.export_to_nir(net(snn.Leaky), sample, ignore_dims=[0])
    ours = export_nir.export_to_nir(net(DecoupledLIF), sample, ignore_dims=[0])
    assert set(ours.edges) == set(reference.edges)
    assert {key: type(node) for key, node in ours.nodes.items()} == {
        key: type(node) for key, node in reference.nodes.items()
    }
    lifs = [key for key, node in reference.nodes.items() if isinstance(node, nir.LIF)]
    assert len(lifs) == 2
    for key in lifs:
        for field in ("tau", "r", "v_leak", "v_threshold", "v_reset"):
            torch.testing.assert_close(
                torch.as_tensor(getattr(ours.nodes[key], field)), torch.as_tensor(getattr(reference.nodes[key], field))
            )


def test_equal_per_neuron_beta_and_threshold_are_one_value():
    beta, threshold = 0.75 * torch.ones(6), 0.875 * torch.ones(6)  # exact in float32
    x = torch.rand(30, 3, 6) * 0.8
    leaky = snn.Leaky(beta=beta, threshold=threshold)
    ours = DecoupledLIF(beta=beta, threshold=threshold)
    expected = torch.stack([leaky(x_t)[0] for x_t in x.unbind(0)])
    assert expected.sum() > 0
    assert torch.equal(ours.multistep(x)[0], expected)
    assert torch.equal(ours.beta, beta) and torch.equal(ours.threshold, threshold)  # read back in their shape
    for cls in ALL_SKINS:
        assert cls(threshold=threshold)._threshold == 0.875


def test_decoupled_lif_takes_a_per_channel_beta_like_snn_leaky():
    beta = torch.linspace(0.125, 0.875, 4)  # exact in float32
    x = torch.rand(30, 3, 4) * 0.8
    leaky = snn.Leaky(beta=beta)
    expected = torch.stack([leaky(x_t)[0] for x_t in x.unbind(0)])
    assert expected.sum() > 0
    for ours in (DecoupledLIF(4, beta=beta), DecoupledLIF(beta=beta), DecoupledLIF(beta=beta, learn_beta=True)):
        assert torch.equal(ours.multistep(x)[0], expected)
        torch.testing.assert_close(ours.beta, beta)  # what snnTorch's NIR export writes
    loaded = DecoupledLIF(4, beta=0.5)
    loaded.load_state_dict(snn.Leaky(beta=beta).state_dict())
    torch.testing.assert_close(loaded.beta, beta)
    assert torch.equal(loaded.multistep(x)[0], expected)
    with pytest.raises(ValueError, match="beta has 4 values for 3 features"):
        DecoupledLIF(3, beta=beta)
    with pytest.raises(ValueError, match=r"beta must be in \(0, 1\]"):
        DecoupledLIF(beta=torch.tensor([0.5, 1.5]))


def test_a_step_of_fewer_dims_is_one_sample_as_snn_leaky_takes_it():
    """snn.Leaky is elementwise: its tests and tutorials feed steps ``[N]`` and scalars."""
    x = torch.rand(30, 6, dtype=torch.float64) * 0.8
    for steps in (x, x[:, 0]):  # steps [6], then scalar steps
        leaky, ours = snn.Leaky(beta=0.75).double(), DecoupledLIF(beta=0.75).double()
        mem_l, mem_o = leaky.init_leaky(), ours.init_leaky()
        for x_t in steps.unbind(0):
            spk_l, mem_l = leaky(x_t, mem_l)
            spk_o, mem_o = ours(x_t, mem_o)
            assert spk_o.shape == mem_o.shape == x_t.shape
            assert torch.equal(spk_o, spk_l)
            torch.testing.assert_close(mem_o, mem_l)
    for cls in ALL_SKINS:  # every skin takes [N] as the batch of one [1, N]
        neuron = cls(init_hidden=True, output=True)
        flat = [neuron(x_t.float() * 3) for x_t in x.unbind(0)]
        adapter.reset(neuron)
        batched = [neuron(x_t.float().unsqueeze(0) * 3) for x_t in x.unbind(0)]
        for (spk_f, mem_f), (spk_b, mem_b) in zip(flat, batched, strict=True):
            assert torch.equal(spk_f, spk_b[0]) and torch.equal(mem_f, mem_b[0])


@pytest.mark.parametrize("cls", ALL_SKINS)
def test_reset_mechanism_cannot_change_after_construction(cls):
    """snn.Leaky's ``reset_mechanism`` setter updates ``reset_mechanism_val``; here the core's reset
    is built in, so a change is refused instead of leaving the neuron on its old reset."""
    neuron = cls(4)
    current = neuron.reset_mechanism
    neuron.reset_mechanism = current
    for other in set(snn.Leaky.reset_dict) - {current}:
        with pytest.raises(ValueError, match="reset_mechanism"):
            neuron.reset_mechanism = other
    assert neuron.reset_mechanism == current
    assert neuron.reset_mechanism_val == snn.Leaky.reset_dict[current]


def test_assigned_threshold_and_beta_take_effect_as_on_snn_leaky():
    """snn.Leaky reads its ``threshold`` and ``beta`` at every step, so assigning them retunes it."""
    x = torch.rand(20, 3, 4) * 2
    for cls in ALL_SKINS:
        torch.manual_seed(0)
        neuron = cls(4)
        torch.manual_seed(0)
        built = cls(4, threshold=0.375)
        neuron.threshold = torch.tensor(0.375)
        assert torch.equal(neuron.multistep(x)[0], built.multistep(x)[0])
        with pytest.raises(ValueError, match="threshold must be one value for all neurons"):
            neuron.threshold = torch.linspace(0.5, 1.0, 4)
    with pytest.raises(TypeError, match="PRF takes no beta"):
        PRF(4).beta = 0.5
    leaky = snn.Leaky(beta=0.5)
    for ours in (DecoupledLIF(4, beta=0.5), DecoupledLIF(beta=0.5), DecoupledLIF(4, beta=0.5, learn_beta=True)):
        for module in (leaky, ours):
            module.beta = torch.tensor(0.75)  # exact in float32
            module.threshold = torch.tensor(0.875)
        leaky.reset_mem()
        expected = torch.stack([leaky(x_t)[0] for x_t in (x * 0.4).unbind(0)])
        assert expected.sum() > 0
        assert torch.equal(ours.multistep(x * 0.4)[0], expected)
        torch.testing.assert_close(ours.beta, torch.full_like(ours.beta, 0.75))
        with pytest.raises(ValueError, match="beta"):
            ours.beta = 1.5


def test_per_neuron_graded_spikes_factor_scales_each_neuron_like_snn_leaky():
    factor = torch.tensor([0.5, 1.0, 2.0, 4.0])
    x = torch.rand(20, 3, 4) * 0.8
    leaky = snn.Leaky(beta=0.75, graded_spikes_factor=factor)
    expected = torch.stack([leaky(x_t)[0] for x_t in x.unbind(0)])
    assert set(expected.unique().tolist()) == {0.0, *factor.tolist()}
    assert torch.equal(DecoupledLIF(beta=0.75, graded_spikes_factor=factor).multistep(x)[0], expected)
    for cls in ALL_SKINS:
        torch.manual_seed(0)
        graded = cls(4, graded_spikes_factor=factor, learn_graded_spikes_factor=True)
        torch.manual_seed(0)
        plain = cls(4)
        assert graded.graded_spikes_factor.shape == (4,)
        torch.testing.assert_close(graded(x[0])[0], plain(x[0])[0] * factor)
    with pytest.raises(ValueError, match="graded_spikes_factor must hold finite real values"):
        DecoupledLIF(graded_spikes_factor=torch.tensor([1.0, float("nan")]))


def test_a_state_dict_with_another_reset_mechanism_is_refused():
    with pytest.raises(ValueError, match="reset_mechanism='subtract'.*PRF has reset_mechanism='none'"):
        PRF(4).load_state_dict(PRF(4, reset_mechanism="subtract").state_dict())
    with pytest.raises(ValueError, match="reset_mechanism='zero'"):
        DecoupledLIF(8).load_state_dict(snn.Leaky(beta=0.8, reset_mechanism="zero").state_dict())


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_skins_build_and_run_under_no_grad_and_inference_mode(mode):
    """As snn.Leaky does (an evaluation script may build its model there)."""
    x = torch.rand(2, 4) * 3
    with mode():
        built = [cls(4, spike_grad=snntorch.surrogate.fast_sigmoid()) for cls in ALL_SKINS]
        for neuron in built:
            assert neuron(x)[0].shape == x.shape
    if mode is torch.no_grad:  # the surrogate still has its derivative outside
        for neuron in built:
            adapter.reset(neuron)
            x_grad = x.clone().requires_grad_()
            neuron(x_grad)[1].sum().backward()
            assert x_grad.grad.abs().sum() > 0


@pytest.mark.parametrize("reset_delay", [True, False])
def test_snn_leaky_state_dict_loads_into_decoupled_lif(reset_delay):
    x = torch.rand(30, 3, 8, dtype=torch.float64) * 0.8
    leaky = snn.Leaky(beta=0.75, threshold=0.875, reset_delay=reset_delay).double()  # values exact in float32
    expected = torch.stack([leaky(x_t)[0] for x_t in x.unbind(0)])
    for ours in (DecoupledLIF(8, reset_delay=reset_delay), DecoupledLIF(reset_delay=reset_delay)):  # eager, lazy
        ours.load_state_dict(leaky.state_dict())
        ours.double()
        assert ours.beta.item() == pytest.approx(0.75) and ours.core.v_threshold == 0.875
        assert torch.equal(ours.multistep(x)[0], expected)
    learned = DecoupledLIF(8, beta=torch.full((8,), 0.5), learn_beta=True)
    learned.load_state_dict(snn.Leaky(beta=torch.linspace(0.1, 0.8, 8), learn_beta=True).state_dict())
    torch.testing.assert_close(learned.beta, torch.linspace(0.1, 0.8, 8))
    with pytest.raises(ValueError, match="reset_mechanism='zero'"):
        DecoupledLIF(8).load_state_dict(snn.Leaky(beta=0.8, reset_mechanism="zero").state_dict())


def test_loaded_threshold_reaches_every_core():
    x = torch.rand(6, 2, 4) * 2
    for cls in ALL_SKINS:
        neuron = cls(4)
        state = neuron.state_dict()
        state["threshold"] = torch.tensor(0.375)
        neuron.load_state_dict(state)
        assert neuron._threshold == 0.375
        built = cls(4, threshold=0.375)
        built.load_state_dict(state)
        assert torch.equal(neuron.multistep(x)[0], built.multistep(x)[0])  # the core uses the loaded threshold


@pytest.mark.parametrize("reset_delay", [True, False])
def test_decoupled_lif_leaky_mem_is_snn_leaky_mem(reset_delay):
    """``mem="leaky"`` (the default): the explicit-state loop of the snnTorch tutorials gives
    snn.Leaky's spikes and membranes, the membrane passed back in each step, in both reset forms."""
    x = torch.rand(40, 3, 8, dtype=torch.float64) * 0.8
    leaky, ours = (
        snn.Leaky(beta=0.75, reset_delay=reset_delay).double(),
        DecoupledLIF(beta=0.75, reset_delay=reset_delay).double(),
    )  # 0.75: exact in float32
    mem_l = mem_o = torch.zeros(3, 8, dtype=torch.float64)
    spikes_l, spikes_o, mems_l, mems_o = [], [], [], []
    for x_t in x.unbind(0):
        s_l, mem_l = leaky(x_t, mem_l)
        s_o, mem_o = ours(x_t, mem_o)
        spikes_l.append(s_l), spikes_o.append(s_o), mems_l.append(mem_l), mems_o.append(mem_o)
    assert torch.stack(spikes_o).sum() > 0
    assert torch.equal(torch.stack(spikes_o), torch.stack(spikes_l))
    torch.testing.assert_close(torch.stack(mems_o), torch.stack(mems_l))
    adapter.reset(ours)
    spk_seq, mem_seq = ours.multistep(x)  # multistep gives the same mem sequence
    assert torch.equal(spk_seq, torch.stack(spikes_l))
    torch.testing.assert_close(mem_seq, torch.stack(mems_l))
    torch.testing.assert_close(ours.mem, mems_l[-1])
    reset_free = DecoupledLIF(beta=0.75, mem="reset_free", reset_delay=reset_delay).double()
    assert torch.equal(reset_free.multistep(x)[0], spk_seq)
    with pytest.raises(ValueError, match="mem must be"):
        DecoupledLIF(mem="post")


@pytest.mark.parametrize("cls", ALL_SKINS)
def test_skins_infer_the_feature_count(cls):
    x = torch.rand(5, 2, 6) * 3
    lazy = cls(init_hidden=True)
    assert lazy.core.features is None
    out = torch.stack([lazy(x_t) for x_t in x.unbind(0)])
    assert lazy.core.features == 6 and out.shape == x.shape
    eager = cls(6, init_hidden=True)
    eager.load_state_dict(lazy.state_dict())
    adapter.reset(eager)
    assert torch.equal(eager.multistep(x), out)
    lazy.mem = torch.zeros(2, 6)  # snnTorch's resets assign mem


@pytest.mark.parametrize("cls", ALL_SKINS)
def test_skins_train_under_cpu_autocast(cls):
    net = nn.Sequential(nn.Linear(6, 6), cls(init_hidden=True))
    x = torch.rand(5, 2, 6) * 3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net[1].multistep(net[0](x)) + torch.stack([net(x_t) for x_t in x.unbind(0)])
    out.float().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


# -- the snnTorch tutorials' networks, every skin at its defaults ----------------------------
def _tutorial_net(arch: str, make: Callable[..., nn.Module]) -> nn.Sequential:
    """Tutorial 5's fully connected net and tutorial 6's conv net (12C5-MP2-64C5-MP2-FC10,
    padded for the 8x8 digits), with the neuron of ``make``."""
    if arch == "fc":
        return nn.Sequential(nn.Linear(64, 256), make(), nn.Linear(256, 10), make(output=True))
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 12, 5, padding=2),
        nn.MaxPool2d(2),
        make(),
        nn.Conv2d(12, 64, 5, padding=2),
        nn.MaxPool2d(2),
        make(),
        nn.Flatten(),
        nn.Linear(256, 10),
        make(output=True),
    )


@pytest.mark.slow
@pytest.mark.parametrize("arch, beta, lr", [("fc", 0.95, 2e-3), ("conv", 0.5, 1e-2)], ids=["tutorial5", "tutorial6"])
@pytest.mark.parametrize("cls", [snn.Leaky, *ALL_SKINS], ids=lambda c: c.__name__)
def test_defaults_fire_and_learn_in_the_snntorch_tutorial_networks(cls, arch, beta, lr):
    """Each skin at its defaults (with the tutorial's ``beta`` where the neuron has one, and
    the tutorial's surrogate), T = 25 steps of the static digit, trained with snnTorch's loss
    for 30 batches of 64 (tutorial 5 at a higher rate than its 5e-4, to learn in 30 steps)."""
    if cls is LTC and arch == "conv":
        pytest.skip("LTC has no spatial dims")
    pytest.importorskip("sklearn")
    from snn_parallel.tasks import SequentialDigits

    data = SequentialDigits("train", "static", repeat=25)
    x, y = data.inputs[:256].transpose(0, 1), data.targets[:256]
    torch.manual_seed(0)
    kwargs = {"beta": beta} if cls in (snn.Leaky, DecoupledLIF) else {}
    net = _tutorial_net(
        arch, lambda **k: cls(init_hidden=True, spike_grad=snntorch.surrogate.fast_sigmoid(slope=25), **kwargs, **k)
    )
    rates: dict[int, list[float]] = {}
    for i, module in enumerate(net):
        if isinstance(module, snn.Leaky):
            module.register_forward_hook(
                lambda mod, args, out, i=i: rates.setdefault(i, []).append(
                    float((out[0] if isinstance(out, tuple) else out).detach().mean())
                )
            )
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn, losses = SF.ce_rate_loss(), []
    for step in range(30):
        batch = torch.arange(64) + 64 * (step % 4)
        adapter.reset(net)
        spikes = torch.stack([net(x_t)[0] for x_t in x[:, batch].unbind(0)])
        if step == 0 and cls is not snn.Leaky and not (cls is DecoupledLIF and arch == "conv"):
            assert all(sum(r) > 0 for r in rates.values()), rates  # every layer fires from the start
        loss = loss_fn(spikes, y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        adapter.reset(net)
        accuracy = SF.accuracy_rate(torch.stack([net(x_t)[0] for x_t in x.unbind(0)]), y)
    assert sum(losses[-4:]) / 4 < losses[0] - 0.1, losses
    assert accuracy >= 0.3, accuracy  # 10 classes


@pytest.mark.parametrize("cls", ALL_SKINS)
def test_another_channel_count_after_the_first_input_is_refused_naming_the_argument(cls):
    """snnTorch's regression tutorial feeds one ``snn.Leaky`` 128 channels and then 1 (elementwise,
    it takes both); a skin's channel count is fixed by its first input, and the error says so in
    the caller's terms (``input_`` / ``x_seq``, the shape as given), not the core's ``x_t``."""
    leaky = snn.Leaky(beta=0.9)
    leaky(torch.rand(4, 16))
    leaky(torch.rand(4, 1))  # what the skins cannot follow
    neuron = cls()
    neuron(torch.rand(4, 16))
    with pytest.raises(ValueError, match=r"input_ has shape \(4, 1\).*has 16, fixed by its first input"):
        neuron(torch.rand(4, 1))
    with pytest.raises(ValueError, match=r"input_ has shape \(3,\).*has 16"):
        neuron(torch.rand(3))
    with pytest.raises(ValueError, match=r"x_seq has shape \(5, 4, 3\).*has 16"):
        neuron.multistep(torch.rand(5, 4, 3))


def test_ltc_refuses_feature_maps_naming_the_argument():
    """snnTorch's CNN tutorials put ``snn.Leaky`` after ``Conv2d``; LTC has no spatial dims and says
    how to feed it (flatten), naming ``input_`` / ``x_seq`` with the shape given."""
    with pytest.raises(ValueError, match=r"input_ has shape \(2, 3, 4, 4\).*LTC takes \[B, C\].*nn\.Flatten"):
        LTC()(torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"x_seq has shape \(5, 2, 3, 4\).*\[T, B, 3\]"):
        LTC(3).multistep(torch.rand(5, 2, 3, 4))
    assert LTC()(nn.Flatten()(torch.rand(2, 3, 4, 4)))[0].shape == (2, 48)


class _ResetInForward(nn.Module):
    """snnTorch's ``torch.compile(fullgraph=True)`` tutorial network: ``reset_mem()`` inside ``forward``."""

    def __init__(self, make: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.fc1, self.lif1, self.fc2, self.lif2 = nn.Linear(6, 8), make(8), nn.Linear(8, 3), make(3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.lif1.reset_mem()
        self.lif2.reset_mem()
        spikes, mems = [], []
        for _ in range(3):
            spk, mem = self.lif2(self.fc2(self.lif1(self.fc1(x))[0]))
            spikes.append(spk)
            mems.append(mem)
        return torch.stack(spikes), torch.stack(mems)


@pytest.mark.parametrize(
    "cls", [DynamicDecay, pytest.param(PRF, marks=pytest.mark.slow), pytest.param(LTC, marks=pytest.mark.slow)]
)
def test_lazy_skin_under_fullgraph_compile_says_how_to_compile_it(cls):
    """A lazy skin builds its parameters on its first call, which ``fullgraph=True`` cannot trace: the
    error says to give the feature count (it was dynamo's bare ``UninitializedParameter`` message); with
    the count, snnTorch's fullgraph tutorial pattern compiles and matches eager, as ``snn.Leaky`` does."""
    torch._dynamo.reset()
    x = torch.rand(4, 6) * 2
    with pytest.raises(torch._dynamo.exc.Unsupported, match=r"builds its per-channel parameters .* features=C"):
        torch.compile(_ResetInForward(lambda n: cls()), fullgraph=True, backend="eager")(x)
    torch.manual_seed(0)
    net = _ResetInForward(lambda n: cls(n))
    eager = net(x)
    compiled = torch.compile(net, fullgraph=True, backend="eager")(x)
    assert all(torch.equal(a, b) for a, b in zip(eager, compiled, strict=True))
    lazy = [_ResetInForward(lambda n: cls()) for _ in range(2)]  # without fullgraph: a graph break, as before
    lazy[1].load_state_dict(lazy[0].state_dict())
    outputs = []
    for run in (lazy[0], torch.compile(lazy[1], backend="eager")):
        torch.manual_seed(1)  # the parameters built at the first call draw the same values
        outputs.append(run(x))
    assert all(torch.equal(a, b) for a, b in zip(*outputs, strict=True))


def test_decoupled_lif_gradient_treats_the_reset_as_a_constant():
    """The documented difference from ``snn.Leaky(reset_delay=False)`` (same spikes): that Leaky's
    ``mem - (spk - reset) * threshold`` keeps ``spk``'s graph, DecoupledLIF detaches the spike it
    subtracts. Reference: the subtract-reset recurrence written out, with and without the detach."""
    torch.manual_seed(0)
    x = (torch.rand(20, 4, 6, dtype=torch.float64) * 0.8).requires_grad_()
    grad = snntorch.surrogate.fast_sigmoid(slope=25)
    weights = torch.linspace(0, 1, 20, dtype=torch.float64)[:, None, None]

    def input_grad(spikes: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad((spikes * weights).sum(), x)[0]

    def reference(detach: bool) -> torch.Tensor:
        mem, spikes = torch.zeros(4, 6, dtype=torch.float64), []
        for x_t in x.unbind(0):
            u = 0.8 * mem + x_t
            spk = grad(u - 1.0)
            mem = u - (spk.detach() if detach else spk)
            spikes.append(spk)
        return torch.stack(spikes)

    ours, leaky = (
        DecoupledLIF(beta=0.8, spike_grad=grad, reset_delay=False).double(),
        snn.Leaky(beta=0.8, reset_delay=False, spike_grad=grad),
    )
    spk_ours = torch.stack([ours(x_t)[0] for x_t in x.unbind(0)])
    spk_leaky = torch.stack([leaky.double()(x_t)[0] for x_t in x.unbind(0)])
    assert torch.equal(spk_ours, spk_leaky) and torch.equal(spk_ours, reference(True).detach())
    assert 0 < spk_ours.mean() < 1
    close = {"rtol": 1e-4, "atol": 1e-5}  # both keep beta in float32: 0.8 to float32 precision
    grad_ours, grad_leaky = input_grad(spk_ours), input_grad(spk_leaky)
    torch.testing.assert_close(grad_ours, input_grad(reference(True)), **close)
    torch.testing.assert_close(grad_leaky, input_grad(reference(False)), **close)
    assert not torch.allclose(grad_ours, grad_leaky, **close)
