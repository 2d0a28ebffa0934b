"""snnTorch's ``functional`` package (every loss, the regulariser, the accuracies, the probes) and its ``spikegen``
encoders with the skins. A tutorial-5 network (``Linear -> neuron -> Linear -> neuron``) written with
``snn.Leaky`` (``snn.Synaptic``, ``snn.Lapicque``) is trained a few optimizer steps under each loss, stepped as the
tutorial does; the same network with ``DecoupledLIF`` (``Synaptic``, ``Lapicque``), from the same weights, stepped
and with ``multistep``, must give snnTorch's losses, gradients, updated weights and accuracies. ``snn.Leaky``'s
spikes are float32 in a float64 network (its surrogates return ``(mem > 0).float()``), so the gradients it passes
back through a spike are rounded to float32: the comparison with snnTorch is to that precision, ours stepped
against ours in parallel to float64's. The skins without a twin train under each loss with finite gradients.
snnTorch 0.9.4 has the same losses; one missing from the installed snnTorch is skipped."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

snn = pytest.importorskip("snntorch")
import snntorch.functional as SF  # noqa: E402
import snntorch.utils  # noqa: E402
from snn_parallel.adapters.snntorch import LTC, PRF, PSPLIF, DecoupledLIF, DynamicDecay, Lapicque, Synaptic  # noqa: E402
from snntorch import spikegen  # noqa: E402

STEPS, BATCH, INPUTS, HIDDEN, OUTPUTS = 12, 6, 10, 12, 4
WEIGHT = (1.0, 2.0, 0.5, 1.0)  # per-class weights, for the losses that take them


class _Net(nn.Module):
    """Tutorial 5's network; ``forward`` returns the output layer's spike and membrane recordings ``[T, B, O]``,
    stepped (the tutorial's loop, each state from ``init_leaky()`` / ``init_synaptic()`` and passed back) or with
    ``multistep`` (the state reset first). ``snn.Leaky``'s float32 spikes are cast to the network's dtype."""

    def __init__(self, make: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(INPUTS, HIDDEN), nn.Linear(HIDDEN, OUTPUTS)
        self.lif1, self.lif2 = make(), make()

    @staticmethod
    def _init(neuron: nn.Module) -> tuple[torch.Tensor, ...]:
        if isinstance(neuron, snn.Synaptic):
            return neuron.init_synaptic()
        return (neuron.init_lapicque(),) if isinstance(neuron, snn.Lapicque) else (neuron.init_leaky(),)

    def forward(self, x: torch.Tensor, multistep: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if multistep:
            snntorch.utils.reset(self)
            out = self.lif2.multistep(self.fc2(self.lif1.multistep(self.fc1(x))[0]))
            return out[0], out[-1]
        state1, state2, spikes, mems = self._init(self.lif1), self._init(self.lif2), [], []
        for x_t in x.unbind(0):
            spk1, *state1 = self.lif1(self.fc1(x_t), *state1)
            spk2, *state2 = self.lif2(self.fc2(spk1.to(x.dtype)), *state2)
            spikes.append(spk2.to(x.dtype))
            mems.append(state2[-1])
        return torch.stack(spikes), torch.stack(mems)


def _loss(name: str, weighted: bool = False, **kwargs: object) -> Callable[[], Callable]:
    """``SF.<name>(**kwargs)`` (``weighted``: with ``weight=WEIGHT``) built at call time, skipped where this
    snnTorch has no such loss."""

    def build() -> Callable:
        if not hasattr(SF, name):
            pytest.skip(f"snnTorch {snn.__version__} has no functional.{name}")
        weight = {"weight": torch.tensor(WEIGHT, dtype=torch.float64)} if weighted else {}
        return getattr(SF, name)(**kwargs, **weight)

    return build


# (id, loss factory, what it reads: "spk" labels, "pop" labels of 2 population-coded classes, "mem" labels,
#  "time" first-spike times, "reg" spikes (l1_rate_sparsity, added to ce_rate_loss),
#  "spike-time" the spike times SpikeTime extracts, learning rate)
LOSSES = [
    ("ce_rate", _loss("ce_rate_loss"), "spk", 0.05),
    ("ce_rate-weight", _loss("ce_rate_loss", weighted=True), "spk", 0.05),
    ("ce_rate-sum", _loss("ce_rate_loss", reduction="sum"), "spk", 0.01),
    ("ce_count", _loss("ce_count_loss"), "spk", 0.05),
    ("ce_count-weight", _loss("ce_count_loss", weighted=True), "spk", 0.05),
    ("ce_count-population", _loss("ce_count_loss", population_code=True, num_classes=2), "pop", 0.05),
    ("mse_count", _loss("mse_count_loss", correct_rate=0.8, incorrect_rate=0.2), "spk", 0.05),
    (
        "mse_count-population",
        _loss("mse_count_loss", correct_rate=0.8, incorrect_rate=0.2, population_code=True, num_classes=2),
        "pop",
        0.05,
    ),
    ("ce_max_membrane", _loss("ce_max_membrane_loss"), "mem", 0.05),
    ("ce_max_membrane-weight", _loss("ce_max_membrane_loss", weighted=True), "mem", 0.05),
    ("mse_membrane", _loss("mse_membrane_loss"), "mem", 0.01),
    ("mse_membrane-on-off", _loss("mse_membrane_loss", on_target=1.5, off_target=-0.5), "mem", 0.01),
    ("ce_temporal", _loss("ce_temporal_loss"), "spk", 0.05),
    ("ce_temporal-reciprocal", _loss("ce_temporal_loss", inverse="reciprocal"), "spk", 0.5),
    ("ce_temporal-weight", _loss("ce_temporal_loss", weighted=True), "spk", 0.05),
    ("mse_temporal", _loss("mse_temporal_loss"), "spk", 0.5),
    ("mse_temporal-tolerance", _loss("mse_temporal_loss", on_target=2, off_target=-1, tolerance=2), "spk", 0.5),
    ("mse_temporal-target-is-time", _loss("mse_temporal_loss", target_is_time=True), "time", 0.5),
    (  # snnTorch's MultiSpike zeroes whole time steps between spikes (its bug): the skins' spikes take it the same
        "mse_temporal-multi-spike",
        _loss("mse_temporal_loss", multi_spike=True, on_target=(0, 3), off_target=(8, -1)),
        "spk",
        0.5,
    ),
    ("l1_rate_sparsity", _loss("l1_rate_sparsity", Lambda=1e-2), "reg", 0.05),
    ("SpikeTime", _loss("SpikeTime", on_target=2, off_target=-1), "spike-time", 0.5),
]
# decays exact in float32, in which snnTorch keeps them
TWINS = {
    "leaky": (lambda **kw: snn.Leaky(beta=0.75, **kw), lambda **kw: DecoupledLIF(beta=0.75, **kw)),
    "synaptic": (
        lambda **kw: snn.Synaptic(alpha=0.625, beta=0.75, **kw),
        lambda **kw: Synaptic(alpha=0.625, beta=0.75, **kw),
    ),
    "lapicque": (lambda **kw: snn.Lapicque(R=4.0, C=1.0, **kw), lambda **kw: Lapicque(R=4.0, C=1.0, **kw)),
}
# the snnTorch-twin checks run quick for Leaky, with the slow ones for Synaptic and Lapicque
TWIN_PARAMS = [
    pytest.param("leaky"),
    pytest.param("synaptic", marks=pytest.mark.slow),
    pytest.param("lapicque", marks=pytest.mark.slow),
]
NO_TWIN = {
    "DynamicDecay": lambda: DynamicDecay(threshold=0.25),
    "PRF": lambda: PRF(tau=0.5, dt_range=(0.5, 1.0), threshold=0.25),
    "LTC": LTC,
    "PSPLIF": PSPLIF,
}
NO_TWIN_PARAMS = [
    pytest.param(make, id=name, marks=[pytest.mark.slow] if name in ("LTC", "PSPLIF") else [])
    for name, make in NO_TWIN.items()
]


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    """Rate-coded inputs ``[T, B, I]`` (``spikegen.rate``, float64) and labels ``[B]``."""
    generator = torch.Generator().manual_seed(1)  # not spikegen's seed, whose uniforms would be the pixels
    pixels = torch.rand(BATCH, INPUTS, dtype=torch.float64, generator=generator)
    torch.manual_seed(0)  # spikegen.rate draws from the global generator
    return spikegen.rate(pixels, num_steps=STEPS), torch.arange(BATCH) % OUTPUTS


def _criterion(build: Callable[[], Callable], reads: str, labels: torch.Tensor) -> Callable:
    """The loss of a network's ``(spk_rec, mem_rec)`` for ``labels``, as the loss ``build`` reads it."""
    loss_fn = build()
    if reads == "reg":
        return lambda spk, mem: SF.ce_rate_loss()(spk, labels) + loss_fn(spk)
    if reads == "mem":
        return lambda spk, mem: loss_fn(mem, labels)
    if reads == "pop":
        return lambda spk, mem: loss_fn(spk, labels % 2)
    if reads == "spike-time":  # the first spike times themselves, against the targets it converts the labels to
        return lambda spk, mem: torch.nn.functional.mse_loss(*loss_fn(spk, labels))
    if reads == "time":  # one target time per output neuron; a fresh tensor each call (SpikeTime edits it)
        return lambda spk, mem: loss_fn(spk, labels[:, None].double() + torch.arange(OUTPUTS, dtype=torch.float64))
    return lambda spk, mem: loss_fn(spk, labels)


def _train(net: _Net, criterion: Callable, lr: float, multistep: bool, updates: int = 2) -> dict[str, list]:
    """``updates`` SGD steps of ``net`` on :func:`_data`; the losses, gradients, accuracies and final weights."""
    x, labels = _data()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    record: dict[str, list] = {"loss": [], "grad": [], "accuracy": [], "spike_count": []}
    for _ in range(updates):
        spk, mem = net(x, multistep=multistep)
        loss = criterion(spk, mem)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        record["loss"].append(loss.detach())
        record["grad"].append([p.grad.clone() for p in net.parameters()])
        record["accuracy"].append(
            (
                SF.accuracy_rate(spk, labels),
                SF.accuracy_rate(spk, labels % 2, population_code=True, num_classes=2),
                SF.accuracy_temporal(spk, labels),
            )
        )
        record["spike_count"].append(spk.detach().sum())
    record["weight"] = [p.detach().clone() for p in net.parameters()]
    return record


def _assert_same(ours: dict[str, list], theirs: dict[str, list], rtol: float) -> None:
    scale = max(g.abs().max().item() for grads in theirs["grad"] for g in grads)
    torch.testing.assert_close(ours["loss"], theirs["loss"], rtol=rtol, atol=rtol * 1e-3, check_dtype=False)
    torch.testing.assert_close(ours["grad"], theirs["grad"], rtol=rtol, atol=rtol * scale)
    torch.testing.assert_close(ours["weight"], theirs["weight"], rtol=rtol, atol=rtol * 1e-2)
    assert ours["accuracy"] == theirs["accuracy"]
    assert ours["spike_count"] == theirs["spike_count"]


@pytest.mark.parametrize("twin", TWIN_PARAMS)
@pytest.mark.parametrize("name, build, reads, lr", LOSSES, ids=[case[0] for case in LOSSES])
def test_loss_trains_like_snntorch(twin, name, build, reads, lr):
    """Each loss of ``snntorch.functional``: snnTorch's losses, gradients (the temporal losses' through the first
    spike times of the recording), updated weights and accuracies, stepped and in parallel."""
    theirs_make, ours_make = TWINS[twin]
    torch.manual_seed(1)
    reference = _Net(theirs_make).double()
    weights = {k: v.clone() for k, v in reference.state_dict().items() if k.startswith("fc")}
    _, labels = _data()
    theirs = _train(reference, _criterion(build, reads, labels), lr, multistep=False)
    assert theirs["grad"][0][0].abs().sum() > 0  # the loss reaches the first layer through the spikes
    runs = {}
    for multistep in (False, True):
        net = _Net(ours_make).double()
        net.load_state_dict(weights, strict=False)
        runs[multistep] = _train(net, _criterion(build, reads, labels), lr, multistep=multistep)
        _assert_same(runs[multistep], theirs, rtol=1e-5)  # snnTorch's gradients pass float32 spikes
    _assert_same(runs[True], runs[False], rtol=1e-10)


@pytest.mark.parametrize("make", NO_TWIN_PARAMS)
@pytest.mark.parametrize("name, build, reads, lr", LOSSES, ids=[case[0] for case in LOSSES])
def test_loss_trains_skins_without_twin(make, name, build, reads, lr):
    """The skins with no snnTorch twin under each loss in ``multistep``: a finite loss and finite gradients that
    reach the first layer."""
    torch.manual_seed(1)
    net = _Net(make).double()
    _, labels = _data()
    record = _train(net, _criterion(build, reads, labels), lr, multistep=True, updates=1)
    assert torch.isfinite(record["loss"][0]).all()
    assert all(torch.isfinite(g).all() for g in record["grad"][0])
    assert record["grad"][0][0].abs().sum() > 0


# -- probes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("twin, attribute", [("leaky", "mem"), ("synaptic", "syn"), ("synaptic", "mem")])
def test_probes_record_what_they_record_on_snntorch(twin, attribute):
    """``functional.probe``'s monitors, hooked on every ``snn.Leaky`` / ``snn.Synaptic`` of a network stepped
    with ``forward``: the outputs, inputs, gradients and state attribute recorded with a skin are snnTorch's.
    ``AttributeMonitor`` reads ``neuron.__getattr__(name)`` (``nn.Module``'s lookup), which finds a skin's
    ``mem`` / ``syn`` too."""
    probe = pytest.importorskip("snntorch.functional.probe")
    x, _ = _data()
    instance = snn.Synaptic if twin == "synaptic" else snn.Leaky
    records = []
    for make in TWINS[twin]:
        torch.manual_seed(1)
        net = nn.Sequential(nn.Linear(INPUTS, HIDDEN), make(init_hidden=True)).double()
        monitors = [
            probe.OutputMonitor(net, instance=instance),
            probe.InputMonitor(net, instance=instance),
            probe.GradInputMonitor(net, instance=instance),
            probe.GradOutputMonitor(net, instance=instance),
            probe.AttributeMonitor(attribute, False, net, instance=instance),
        ]
        snntorch.utils.reset(net)
        torch.stack([net(x_t).to(x.dtype) for x_t in x.unbind(0)]).sum().backward()
        records.append([[record.to(x.dtype) for record in monitor.records] for monitor in monitors])
        for monitor in monitors:
            monitor.remove_hooks()
    for theirs, ours in zip(*records, strict=True):
        assert len(ours) == len(theirs) == STEPS
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


# -- encoders ----------------------------------------------------------------------------------------
ENCODERS = {
    "rate": lambda data: spikegen.rate(data[0], num_steps=STEPS),
    "rate-time-var": lambda data: spikegen.rate(data, time_var_input=True),
    "latency": lambda data: spikegen.latency(data[0], num_steps=STEPS, tau=5, normalize=True, clip=True),
    "latency-linear": lambda data: spikegen.latency(data[0], num_steps=STEPS, normalize=True, linear=True),
    "delta": lambda data: spikegen.delta(data, threshold=0.1),
    "delta-off-spike": lambda data: spikegen.delta(data, threshold=0.1, off_spike=True),
}


def _stepped(neuron: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The tutorials' loop over ``x`` ``[T, B, ...]``: the spike and membrane recordings."""
    state, spikes, mems = _Net._init(neuron), [], []
    for x_t in x.unbind(0):
        spk, *state = neuron(x_t, *state)
        spikes.append(spk)
        mems.append(state[-1])
    return torch.stack(spikes), torch.stack(mems)


@pytest.mark.parametrize("twin", TWIN_PARAMS)
@pytest.mark.parametrize("encode", ENCODERS.values(), ids=ENCODERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_encoded_spikes_feed_multistep(twin, encode, dtype):
    """``spikegen``'s ``[T, B, ...]`` spike trains straight into ``multistep``: the spikes and membranes of
    snnTorch's neuron stepped over them, in the trains' dtype (``latency`` gives float32 whatever the data's,
    the others the data's; a neuron takes its input's dtype, converted with ``.to``)."""
    data = torch.rand(STEPS, BATCH, INPUTS, dtype=dtype, generator=torch.Generator().manual_seed(1))  # as _data
    torch.manual_seed(0)
    spikes = encode(data)
    assert spikes.shape == (STEPS, BATCH, INPUTS)
    theirs_make, ours_make = TWINS[twin]
    theirs = _stepped(theirs_make(threshold=0.5).to(spikes.dtype), spikes)
    ours = ours_make(threshold=0.5).to(spikes.dtype).multistep(spikes)
    assert ours[0].dtype == ours[-1].dtype == spikes.dtype
    assert torch.equal(ours[0], theirs[0].to(spikes.dtype))
    torch.testing.assert_close(ours[-1], theirs[1])
    assert 0 < ours[0].sum() < ours[0].numel()


@pytest.mark.parametrize("twin", TWINS)
def test_integer_and_bool_spikes_are_refused_by_name(twin):
    """``spikegen.delta`` of integer frames gives integer spikes, which ``snn.Leaky`` / ``snn.Synaptic`` promote
    to float32; a skin refuses them with a ``TypeError`` naming the argument and the dtypes it takes, and gives
    snnTorch's spikes and membranes for ``spikes.float()``. Bool spikes: snnTorch fails in its own arithmetic
    (a ``RuntimeError``), a skin refuses them the same way."""
    frames = torch.randint(0, 255, (STEPS, BATCH, INPUTS), generator=torch.Generator().manual_seed(0))
    spikes = spikegen.delta(frames, threshold=40)
    assert spikes.dtype == torch.int64 and 0 < spikes.sum() < spikes.numel()
    theirs_make, ours_make = TWINS[twin]
    theirs = _stepped(theirs_make(), spikes)
    for wrong in (spikes, spikes.bool()):
        with pytest.raises(TypeError, match=rf"x_seq must have dtype in .*got {str(wrong.dtype)[6:]}"):
            ours_make().multistep(wrong)
        with pytest.raises(TypeError, match=rf"input_ must have dtype in .*got {str(wrong.dtype)[6:]}"):
            ours_make()(wrong[0])
    with pytest.raises(RuntimeError):
        _stepped(theirs_make(), spikes.bool())
    ours = ours_make().multistep(spikes.float())
    assert torch.equal(ours[0], theirs[0])
    torch.testing.assert_close(ours[-1], theirs[1])
