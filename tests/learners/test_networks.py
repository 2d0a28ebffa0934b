"""The trainers on networks as users write them: SpikingJelly's zoo ResNet, hand-written residual
modules with custom layers, SpikingJelly's containers and layers, SpikingJelly's own OTTT, HYPR on
convolutions, and what is refused."""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("spikingjelly.activation_based")
from learner_support import needs  # noqa: E402
from snn_parallel.adapters.spikingjelly import DecoupledLIFNode  # noqa: E402
from spikingjelly.activation_based import functional, layer, neuron, surrogate  # noqa: E402

from snn_parallel.learners import (  # noqa: E402
    BPTTTrainer,
    FPTTTrainer,
    HYPRTrainer,
    OTTTTrainer,
    RecurrentBlock,
    StepLoss,
    SumPool2d,
    TSSLBPTrainer,
    UnsupportedModule,
    discover,
)
from snn_parallel.learners.resnet import spiking_resnet  # noqa: E402
from snn_parallel.neurons import PRF, PSPLIF, DecoupledLIF, DynamicDecay, PSPFilter  # noqa: E402
from snn_parallel.surrogate import Sigmoid  # noqa: E402
from snn_parallel.tasks import SequentialDigits, make_loader  # noqa: E402

RULES = {
    "bptt": (BPTTTrainer, {}),
    "fptt": (FPTTTrainer, {"parts": 4}),
    "ottt": (OTTTTrainer, {}),
    "hypr": (HYPRTrainer, {"chunk": 2}),
}


# -- SpikingJelly's model zoo ---------------------------------------------------------------------------
@contextlib.contextmanager
def _zoo_module(name: str):
    """One module of SpikingJelly's model zoo. The zoo imports ``load_state_dict_from_url`` from
    torchvision, which does not import on a machine with a CUDA build of it and no GPU: a stand-in
    torchvision holding that one name (pretrained weights are never asked for) lets it import, for
    these tests only."""
    with pytest.MonkeyPatch.context() as patch:
        try:
            import torchvision  # noqa: F401
        except Exception:  # noqa: BLE001 - torchvision raises RuntimeError or OSError on such machines
            stand_in = types.ModuleType("torchvision")
            stand_in.models = types.ModuleType("torchvision.models")
            stand_in.models.utils = types.ModuleType("torchvision.models.utils")
            stand_in.models.utils.load_state_dict_from_url = lambda *args, **kwargs: None
            for key, module in (
                ("torchvision", stand_in),
                ("torchvision.models", stand_in.models),
                ("torchvision.models.utils", stand_in.models.utils),
            ):
                patch.setitem(sys.modules, key, module)
        before = set(sys.modules)
        module = importlib.import_module(f"spikingjelly.activation_based.model.{name}")
        imported = set(sys.modules) - before
        try:
            yield module
        finally:
            # forget the zoo's modules imported against the stand-in (only those: torch's own lazily
            # imported modules register operator libraries, which cannot be registered twice)
            for key in imported:
                if key.startswith("spikingjelly."):
                    del sys.modules[key]


@pytest.fixture(scope="module")
def zoo():
    """SpikingJelly's ``spiking_resnet`` module."""
    with _zoo_module("spiking_resnet") as module:
        yield module


def _lif() -> nn.Module:
    return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=True)


def _zoo_resnet(zoo, node: str) -> nn.Module:
    """``SpikingResNet(BasicBlock, [1, 1, 1, 1])`` with SpikingJelly's ``LIFNode`` or our ``DecoupledLIFNode``,
    built by the zoo itself: it calls ``spiking_neuron(**kwargs)`` with no channel count, which our
    nodes infer from their first input."""
    torch.manual_seed(0)
    if node == "lif":
        return zoo.SpikingResNet(
            zoo.BasicBlock,
            [1, 1, 1, 1],
            num_classes=10,
            spiking_neuron=neuron.LIFNode,
            tau=2.0,
            surrogate_function=surrogate.ATan(),
            detach_reset=True,
        )
    return zoo.SpikingResNet(zoo.BasicBlock, [1, 1, 1, 1], num_classes=10, spiking_neuron=DecoupledLIFNode)


# -- a hand-written residual module with a custom stateless layer ---------------------------------------
class Scale(nn.Module):
    """A constant gain, as the official OTTT networks put after their spiking layers."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class Residual(nn.Module):
    def __init__(self, node) -> None:
        super().__init__()
        self.conv1, self.sn1, self.scale = nn.Conv2d(3, 8, 3, padding=1), node(8), Scale(2.74)
        self.conv2, self.bn2, self.sn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), node(8)
        self.pool, self.fc = nn.AvgPool2d(2), nn.Linear(8 * 4 * 4, 10)
        nn.init.uniform_(self.conv1.weight, -1, 1)  # the first layer spikes from the first batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.scale(self.sn1(self.conv1(x)))
        h = self.sn2(self.bn2(self.conv2(h)) + h)  # residual sum
        return self.fc(torch.flatten(self.pool(h), 1))


def _network(zoo, kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "residual-lif":
        return Residual(lambda channels: _lif())
    if kind == "residual-ours":
        return Residual(lambda channels: DecoupledLIFNode(channels))
    return _zoo_resnet(zoo, kind.removeprefix("zoo-"))


def _pictures(split: str, count: int, steps: int = 4) -> SequentialDigits:
    """Built-in digits as 3-channel 8x8 pictures repeated over ``steps``."""
    data = SequentialDigits(split, "image", repeat=steps)
    data.inputs, data.targets = data.inputs[:count].expand(-1, -1, 3, -1, -1).contiguous(), data.targets[:count]
    return data


@pytest.mark.parametrize(
    "kind",
    ["zoo-lif", "zoo-ours", *(pytest.param(k, marks=pytest.mark.legacy) for k in ("residual-lif", "residual-ours"))],
)
@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_trains_networks_as_written(zoo, rule, kind):
    """The zoo's ResNet (conv stem, max-pool, four residual stages with downsampling shortcuts, global
    pool) and a hand-written module (a custom gain, a residual sum, a norm): a finite loss, and every
    parameter moves."""
    model = _network(zoo, kind)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer_cls, options = RULES[rule]
    trainer = trainer_cls(
        model, torch.optim.Adam(model.parameters(), lr=1e-3), loss="ce_all", progress=False, **options
    )
    history = trainer.fit(make_loader(_pictures("train", 16), 8, shuffle=True), 1)
    assert torch.isfinite(torch.tensor(history[-1]["train_loss"]))
    still = [name for name, p in model.named_parameters() if torch.equal(p, before[name])]
    assert not still, f"{rule} left {still} unchanged"


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_trains_lazy_neurons(rule):
    """Neurons built without a feature count (as the zoo builds them) get it from the first batch,
    their parameters included: the optimizer built before then trains them, and every rule runs."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 12), PRF(dt_range=(0.01, 1.0)), nn.Linear(12, 10))
    nn.init.uniform_(model[0].weight, -1.5, 1.5)
    assert model[1].has_uninitialized_params()
    trainer_cls, options = RULES[rule]
    trainer = trainer_cls(
        model, torch.optim.Adam(model.parameters(), lr=1e-2), loss="ce_all", progress=False, **options
    )
    loader = make_loader(SequentialDigits("train", "row"), 32, shuffle=True)
    trainer.prepare(next(iter(loader)))  # the first batch's dry step gives the neuron its size
    assert model[1].features == 12 and not model[1].has_uninitialized_params()
    start = model[1].log_dt.detach().clone()
    history = trainer.fit(loader, 1)
    assert torch.isfinite(torch.tensor(history[-1]["train_loss"]))
    assert not torch.equal(model[1].log_dt, start)  # trained by the optimizer built before it existed


def test_recurrent_block_needs_the_neurons_feature_count():
    with pytest.raises(ValueError, match="no feature count yet"):
        RecurrentBlock(4, PRF())


def _accuracy_with_batch_statistics(trainer, loader) -> float:
    """Test accuracy of a copy of the trained model with its norms in training mode: each test batch
    normalised with its own statistics over all steps, as the running statistics stand for."""
    model = copy.deepcopy(trainer.model).train()
    network, correct, total = discover(model), 0, 0
    with torch.no_grad():
        for batch in loader:
            x, target = trainer.prepare(batch)
            network.reset()
            correct += int((network.run(x).mean(0).argmax(-1) == target).sum())
            total += target.numel()
    return correct / total


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["zoo-lif", "zoo-ours"])
@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_learns_digits_with_the_zoo_resnet(zoo, rule, kind):
    """Three epochs on 600 digits pictures: test accuracy above 30 % (chance: 10 %; the norms' running
    statistics take a few epochs to settle), and evaluation with the norms' running statistics within
    10 points of the accuracy with the test batches' own statistics (the running statistics reproduce
    what the network was trained with)."""
    model = _network(zoo, kind)
    trainer_cls, options = RULES[rule]
    options = {**options, "chunk": 4} if rule == "hypr" else options
    trainer = trainer_cls(
        model, torch.optim.Adam(model.parameters(), lr=1e-3), loss="ce_all", progress=False, **options
    )
    trainer.fit(make_loader(_pictures("train", 600), 32, shuffle=True), 3)
    test = make_loader(_pictures("test", 300), 100)
    accuracy = trainer.evaluate(test)["accuracy"]
    batch_statistics = _accuracy_with_batch_statistics(trainer, test)
    assert accuracy > 0.3, f"test accuracy {accuracy:.3f}"
    assert accuracy > batch_statistics - 0.1, (
        f"test accuracy {accuracy:.3f}, with the batches' statistics {batch_statistics:.3f}"
    )


@pytest.mark.legacy
def test_resnet_builder_is_the_zoo_network(zoo):
    """``spiking_resnet`` (which needs no torchvision) builds the zoo's network: the same parameters and
    buffers under the same names, and the same outputs from the same weights, step by step or folded."""
    reference = _zoo_resnet(zoo, "lif")
    ours = spiking_resnet(lambda channels: _lif())
    mine, theirs = ours.state_dict(), reference.state_dict()
    assert {k: v.shape for k, v in mine.items()} == {k: v.shape for k, v in theirs.items()}
    ours.load_state_dict(theirs)
    x = torch.rand(3, 2, 3, 8, 8) * 2
    outputs = []
    for model in (reference, ours):
        functional.set_step_mode(model, "m")
        functional.reset_net(model)
        outputs.append(model(x))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    network = discover(ours)
    network.reset()
    torch.testing.assert_close(network.run(x), outputs[1], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="width"):
        spiking_resnet(lambda channels: _lif(), width=0)
    with pytest.raises(TypeError, match="neuron must be a callable"):
        spiking_resnet(neuron.LIFNode())


# -- OTTT: the same step as SpikingJelly's own ----------------------------------------------------------
def _conv_net(node) -> list[nn.Module]:
    return [
        nn.Conv2d(1, 4, 3, padding=1),
        node(),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        node(),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 10),
    ]


def test_ottt_takes_the_same_sgd_step_as_spikingjelly_ottt():
    """``layer.OTTTSequential`` with ``OTTTLIFNode`` trained by SpikingJelly's ``ottt_online_training``
    (the loss at every step over T, one optimizer step per sequence) and ``OTTTTrainer`` on the same
    weights and data: every parameter equal after one SGD step to float32 rounding, the readout
    included (its weight gradient goes through the trace of its input, as in the official code).
    The trainer gives the same step on SpikingJelly's own network and on a plain ``nn.Sequential``
    with ``LIFNode``; ``readout="instant"`` moves the readout differently."""
    online_learning = pytest.importorskip("spikingjelly.activation_based.learning.online_learning")
    torch.manual_seed(0)
    official = layer.OTTTSequential(*_conv_net(neuron.OTTTLIFNode))
    for module in official:
        if isinstance(module, nn.Conv2d):
            nn.init.uniform_(module.weight, -1, 1)  # the layers spike from the first steps
    plain = nn.Sequential(
        *_conv_net(
            lambda: neuron.LIFNode(
                tau=2.0, decay_input=False, v_reset=None, detach_reset=True, surrogate_function=surrogate.Sigmoid()
            )
        )
    )
    plain.load_state_dict(official.state_dict())
    models = {"OTTTSequential": copy.deepcopy(official), "Sequential": plain, "instant": copy.deepcopy(plain)}
    before = copy.deepcopy(official.state_dict())
    steps, batch = 6, 5
    x, y = torch.rand(steps, batch, 1, 8, 8) * 2, torch.randint(0, 10, (batch,))
    optimizer = torch.optim.SGD(official.parameters(), lr=0.5)
    online_learning.ottt_online_training(
        official,
        optimizer,
        x.transpose(0, 1),
        y[:, None].expand(batch, steps),
        lambda out, target: F.cross_entropy(out, target) / steps,
        online=False,
    )
    functional.reset_net(official)
    expected = official.state_dict()
    assert all(not torch.equal(expected[name], before[name]) for name in expected)  # every layer learnt
    for name, model in models.items():
        readout = {"readout": "instant"} if name == "instant" else {}
        OTTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.5), loss="ce_all", progress=False, **readout).fit(
            [(x, y)], 1
        )
        got = model.state_dict()
        for key in expected:
            if name == "instant" and key == "6.weight":
                assert not torch.allclose(got[key], expected[key], rtol=1e-3, atol=1e-4)
            else:
                torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=f"{name}: {key}")


# -- HYPR on convolutions -------------------------------------------------------------------------------
def _grads(
    trainer_cls, model: nn.Module, x: torch.Tensor, y: torch.Tensor, setup=None, **options
) -> dict[str, torch.Tensor]:
    trainer = trainer_cls(model, torch.optim.SGD(model.parameters(), lr=0.0), loss="ce_all", progress=False, **options)
    if setup is not None:
        setup(trainer)
    captured: dict[str, torch.Tensor] = {}

    def capture() -> None:
        captured.update({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        trainer.optimizer.zero_grad()

    trainer.optimizer_step = capture
    with trainer.network.stepping():
        trainer.train_batch(*trainer.prepare((x, y)))
    return captured


@pytest.mark.legacy
@pytest.mark.parametrize("node", ["ours", "spikingjelly"])
def test_hypr_on_one_conv_layer_equals_bptt_for_every_chunk(node):
    """One conv -> neuron layer and a linear readout, in float64: HYPR's gradient (the synapses'
    eligibilities per output position and input patch, carried from one chunk to the next; the
    neuron's own parameters') equals BPTT's for every chunk length."""
    torch.manual_seed(0)
    spiking = (
        DecoupledLIF(3, tau=3.0, learn_decay=True, surrogate=Sigmoid())
        if node == "ours"
        else neuron.ParametricLIFNode(init_tau=3.0, surrogate_function=surrogate.Sigmoid(), detach_reset=True)
    )
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, stride=2), spiking, nn.Flatten(), nn.Linear(3 * 3 * 3, 4)
    ).double()
    nn.init.uniform_(model[0].weight, -1.5, 1.5)
    x, y = torch.rand(10, 3, 2, 6, 6, dtype=torch.float64) * 2, torch.randint(0, 4, (3,))
    reference = _grads(BPTTTrainer, model, x, y)
    assert len(reference) == len(list(model.parameters())) and all(g.abs().sum() > 0 for g in reference.values())
    for chunk in (None, 1, 3, 4):
        got = _grads(HYPRTrainer, model, x, y, chunk=chunk)
        assert got.keys() == reference.keys()
        for name in reference:
            torch.testing.assert_close(got[name], reference[name], rtol=1e-10, atol=1e-12, msg=f"chunk={chunk}: {name}")


def test_hypr_gradient_does_not_depend_on_chunk_in_the_zoo_resnet(zoo):
    """Residual stages, downsampling shortcuts, norms and SpikingJelly's ParametricLIFNode, in float64.
    With the norms' running statistics (constants; element-wise norms): the same gradient for every
    chunk length. With their batch statistics, per step: the same gradient for the sequence as one
    sub-sequence and in chunks, whether the P-stage runs the chunk's steps folded into one batch or
    one after the other."""
    torch.manual_seed(0)
    model = zoo.SpikingResNet(
        zoo.BasicBlock,
        [1, 1, 1, 1],
        num_classes=10,
        spiking_neuron=neuron.ParametricLIFNode,
        surrogate_function=surrogate.ATan(),
        detach_reset=True,
    ).double()
    x, y = torch.rand(6, 3, 3, 8, 8, dtype=torch.float64) * 2, torch.randint(0, 10, (3,))
    with torch.no_grad():  # running statistics: the average of the steps' statistics
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = None
        [model(x_t) for x_t in x.unbind(0)]
        functional.reset_net(model)
    model.eval()
    whole = _grads(HYPRTrainer, model, x, y)
    assert sum(bool(g.abs().sum() > 0) for g in whole.values()) == len(whole) == len(list(model.parameters()))
    for chunk in (1, 4):
        got = _grads(HYPRTrainer, model, x, y, chunk=chunk)
        for name in whole:
            torch.testing.assert_close(got[name], whole[name], rtol=1e-9, atol=1e-13, msg=f"chunk={chunk}: {name}")

    def one_after_the_other(trainer: HYPRTrainer) -> None:
        assert trainer._fold
        trainer._fold = False

    model.train()
    whole = _grads(HYPRTrainer, model, x, y)
    folded = _grads(HYPRTrainer, model, x, y, chunk=4)
    assert sum(bool(g.abs().sum() > 0) for g in folded.values()) == len(folded) == len(list(model.parameters()))
    got = _grads(HYPRTrainer, model, x, y, setup=one_after_the_other, chunk=4)
    for name in folded:
        torch.testing.assert_close(folded[name], whole[name], rtol=1e-9, atol=1e-13, msg=f"in chunks: {name}")
        torch.testing.assert_close(
            got[name], folded[name], rtol=1e-9, atol=1e-13, msg=f"one step after the other: {name}"
        )


@pytest.mark.parametrize("node", ["ours", pytest.param("spikingjelly", marks=pytest.mark.legacy)])
def test_hypr_through_batch_statistics_equals_bptt_per_step(node):
    """conv -> batch norm in training -> neuron layer -> linear readout, in float64: each step is
    normalised with its own batch's statistics (as in HYPR's S-stage, which updates the running
    statistics with them), and HYPR's gradient goes through those statistics: for every chunk length
    it equals BPTT's through the same per-step norm, written out step by step, the eligibilities
    carried from one chunk to the next included (the conv bias, which the norm removes, gets 0).
    (With the statistics taken as constants the weights below a norm drift along the directions the
    norm removes, and evaluation with the running statistics no longer reproduces training.)"""
    torch.manual_seed(0)
    spiking = (
        DecoupledLIFNode(3, learn_decay=True, surrogate_function=Sigmoid())
        if node == "ours"
        else neuron.ParametricLIFNode(init_tau=3.0, surrogate_function=surrogate.Sigmoid(), detach_reset=True)
    )
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, stride=2), nn.BatchNorm2d(3), spiking, nn.Flatten(), nn.Linear(3 * 3 * 3, 4)
    ).double()
    nn.init.uniform_(model[0].weight, -1.5, 1.5)
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 2.0)
        model[1].bias.uniform_(-0.5, 1.0)
    x, y = torch.rand(8, 5, 2, 6, 6, dtype=torch.float64) * 2, torch.randint(0, 4, (5,))
    params = dict(model.named_parameters())
    functional.reset_net(model)
    outputs = torch.stack([model(x_t) for x_t in x.unbind(0)])  # one step at a time: per-step statistics
    functional.reset_net(model)
    reference = dict(
        zip(
            params,
            torch.autograd.grad(StepLoss("ce", "all").sequence_loss(outputs, y), list(params.values())),
            strict=True,
        )
    )
    assert (
        reference["0.weight"].abs().sum() > 0 and reference["0.bias"].abs().max() < 1e-12
    )  # the norm removes the bias
    for chunk in (None, 1, 3, 4, 8):
        got = _grads(HYPRTrainer, model, x, y, chunk=chunk)
        assert got.keys() == reference.keys()
        for name in reference:
            torch.testing.assert_close(got[name], reference[name], rtol=1e-9, atol=1e-12, msg=f"chunk={chunk}: {name}")


def test_hypr_refuses_to_carry_through_batch_statistics_it_cannot():
    """A batch norm in training reached other than straight from a synapse's output (here through a
    clipping): its statistics couple the samples in a way the per-sample eligibilities do not carry,
    so ``chunk`` shorter than the sequence is refused, naming the synapse and the norm; the whole
    sequence at once, or the norm in eval mode, train."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.Hardtanh(-0.5, 0.5),
        nn.BatchNorm2d(3),
        DecoupledLIFNode(3),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 3),
    ).double()
    x, y = torch.rand(5, 4, 2, 4, 4, dtype=torch.float64) * 2, torch.randint(0, 3, (4,))
    assert _grads(HYPRTrainer, model, x, y).keys() == dict(model.named_parameters()).keys()
    with pytest.raises(
        UnsupportedModule,
        match=r"^0 feeds 3 \(DecoupledLIFNode\) through the batch norm 2 in training, "
        r"other than straight from a Linear/Conv output.*chunk=None.*eval mode",
    ):
        _grads(HYPRTrainer, model, x, y, chunk=2)
    model.eval()
    assert _grads(HYPRTrainer, model, x, y, chunk=2)


@pytest.mark.legacy
def test_hypr_through_spikingjelly_recurrent_container():
    """``LinearRecurrentContainer`` around our node: its synapse sees ``[x_t; z_{t-1}]``, the recurrent
    input replayed from the S-stage; the gradient (e-prop's, through the neuron's own state) does not
    depend on the chunk length."""
    torch.manual_seed(0)
    model = nn.Sequential(
        layer.LinearRecurrentContainer(DecoupledLIFNode(6, learn_decay=True), 6, 6), nn.Linear(6, 3)
    ).double()
    nn.init.uniform_(model[0].rc.weight, -1.5, 1.5)
    x, y = torch.rand(9, 4, 6, dtype=torch.float64) * 2, torch.randint(0, 3, (4,))
    whole = _grads(HYPRTrainer, model, x, y)
    assert len(whole) == len(list(model.parameters())) and all(g.abs().sum() > 0 for g in whole.values())
    for chunk in (2, 5):
        got = _grads(HYPRTrainer, model, x, y, chunk=chunk)
        for name in whole:
            torch.testing.assert_close(got[name], whole[name], rtol=1e-10, atol=1e-12, msg=f"chunk={chunk}: {name}")
    # a synapse feeding the container's synapse reaches the neuron through more than element-wise operations
    deeper = nn.Sequential(nn.Linear(4, 6), *model).double()
    x4 = torch.rand(9, 4, 4, dtype=torch.float64)
    assert _grads(HYPRTrainer, deeper, x4, y)  # the whole sequence at once
    with pytest.raises(UnsupportedModule, match=r"^0 feeds 1\.sub_module \(DecoupledLIFNode\) but reaches it through"):
        _grads(HYPRTrainer, deeper, x4, y, chunk=3)


@pytest.mark.legacy
def test_hypr_with_snntorch_adapters():
    """An snnTorch skin of our neuron: BPTT's gradient for one layer (snnTorch's own surrogates:
    test_hypr_surrogates.py); a skin that passes on its membrane is refused when the trainer is built."""
    pytest.importorskip("snntorch")
    from snn_parallel.adapters import snntorch as skins

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 8), skins.DecoupledLIF(8, init_hidden=True, spike_grad=Sigmoid()), nn.Linear(8, 3)
    ).double()
    nn.init.uniform_(model[0].weight, -3, 3)
    x, y = torch.rand(6, 5, 4, dtype=torch.float64) * 2, torch.randint(0, 3, (5,))
    reference = _grads(BPTTTrainer, model, x, y)
    assert all(g.abs().sum() > 0 for g in reference.values())
    got = _grads(HYPRTrainer, model, x, y, chunk=2)
    for name in reference:
        torch.testing.assert_close(got[name], reference[name], rtol=1e-10, atol=1e-12)
    other = nn.Sequential(nn.Linear(4, 8), skins.DecoupledLIF(8, init_hidden=True, output=True), nn.Linear(8, 3))
    with pytest.raises(UnsupportedModule, match=r"^1 \(DecoupledLIF\) passes on its membrane"):
        HYPRTrainer(other, torch.optim.SGD(other.parameters(), lr=0.1))


def test_hypr_frees_each_chunks_graph():
    """The P-stage's graph of each chunk is freed once the chunk is done (memory does not grow with
    the number of chunks): no tensor with a graph outlives a batch."""
    import gc
    import warnings

    def graph_tensors() -> int:
        gc.collect()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gc.get_objects() touches deprecated module attributes
            return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor) and o.grad_fn is not None)

    model = _network(None, "residual-lif")
    trainer = HYPRTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), chunk=2, loss="ce_all", progress=False)
    before = graph_tensors()
    trainer.fit([(torch.rand(8, 2, 3, 8, 8), torch.zeros(2, dtype=torch.long))], 1)
    assert graph_tensors() <= before


# -- TSSL-BP on a residual PSPLIF network --------------------------------------------------------------
class ResidualPSP(nn.Module):
    """Our neurons used directly return ``(spikes, state)``, as their own forward does."""

    def __init__(self, output: nn.Module | None = None) -> None:
        super().__init__()
        self.psp = PSPFilter(1)
        self.conv1, self.n1 = nn.Conv2d(1, 6, 3, padding=1, bias=False), PSPLIF(6)
        self.conv2, self.n2 = nn.Conv2d(6, 6, 3, padding=1, bias=False), PSPLIF(6)
        self.pool, self.fc, self.out = SumPool2d(2), nn.Linear(6 * 4 * 4, 10, bias=False), output or PSPLIF(10)
        for conv in (self.conv1, self.conv2):
            conv.weight.data.mul_(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, _ = self.psp(x)
        a, _ = self.n1(self.conv1(a))
        b, _ = self.n2(self.conv2(a))
        out = self.out(self.fc(torch.flatten(self.pool(a + b), 1)))  # residual sum
        return out[0] if isinstance(out, tuple) else out


@pytest.mark.legacy
def test_tsslbp_trains_a_residual_psplif_network():
    torch.manual_seed(0)
    model = ResidualPSP()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    data = SequentialDigits("train", "image", repeat=5)
    data.inputs, data.targets = data.inputs[:32], data.targets[:32]
    trainer = TSSLBPTrainer(model, torch.optim.AdamW(model.parameters(), lr=5e-3), progress=False)
    history = trainer.fit(make_loader(data, 16, shuffle=True), 2)
    assert torch.isfinite(torch.tensor([h["train_loss"] for h in history])).all()
    assert all(not torch.equal(p, before[name]) for name, p in model.named_parameters())
    other = ResidualPSP(output=_lif())
    with pytest.raises(ValueError, match=r"^out is a LIFNode; TSSL-BP trains feed-forward networks of PSPLIF"):
        TSSLBPTrainer(other, torch.optim.AdamW(other.parameters()))


# -- SpikingJelly's containers and layers ---------------------------------------------------------------
class CSNN(nn.Module):
    """SpikingJelly's tutorial classifier: a module holding a Sequential, in multi-step mode."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_fc = nn.Sequential(
            layer.SeqToANNContainer(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.GroupNorm(2, 8)),
            neuron.LIFNode(surrogate_function=surrogate.ATan()),
            layer.MaxPool2d(2),
            layer.Flatten(),
            layer.Dropout(0.5),
            layer.Linear(8 * 4 * 4, 40, bias=False),
            neuron.LIFNode(surrogate_function=surrogate.ATan()),
            layer.VotingLayer(4),
        )
        functional.set_step_mode(self, "m")

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.conv_fc(x_seq)


@pytest.mark.legacy
def test_spikingjelly_layers_and_containers_in_multi_step_mode():
    """``SeqToANNContainer``, ``GroupNorm``, ``layer.Dropout`` (one mask for the whole sequence, whether
    the network runs folded or step by step) and ``VotingLayer`` in a multi-step model: the same
    outputs whole and step by step, the model's step modes restored, and every rule trains it."""
    torch.manual_seed(0)
    model = CSNN()
    nn.init.uniform_(model.conv_fc[0][0].weight, -1, 1)
    x = torch.rand(5, 4, 3, 8, 8) * 2
    network = discover(model)
    assert network.foldable and {part.path for part in network.parts} == {"conv_fc.1", "conv_fc.4", "conv_fc.6"}
    torch.manual_seed(1)
    whole = network.run(x)
    network.reset()
    torch.manual_seed(1)
    steps = torch.stack([network.step(x_t) for x_t in x.unbind(0)])
    network.reset()
    assert whole.shape == (5, 4, 10) and whole.abs().sum() > 0
    torch.testing.assert_close(whole, steps)
    assert model.conv_fc[1].step_mode == "m" and model.conv_fc[4].step_mode == "m"
    for rule, (trainer_cls, options) in RULES.items():
        if rule == "hypr":  # its P-stage recomputes each step, so the trainer refuses random layers
            continue
        trainer = trainer_cls(
            model, torch.optim.Adam(model.parameters(), lr=1e-3), loss="ce_all", progress=False, **options
        )
        history = trainer.fit([(x, torch.randint(0, 10, (4,)))], 1)
        assert torch.isfinite(torch.tensor(history[-1]["train_loss"]))


def test_hypr_replays_sequence_masks():
    """SpikingJelly's ``layer.Dropout`` keeps its mask for the sequence, so HYPR's P-stage replays it: the
    gradient does not depend on the chunk length."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), layer.Dropout(0.5), DecoupledLIF(6), nn.Linear(6, 3)).double()
    nn.init.uniform_(model[0].weight, -3, 3)
    x, y = torch.rand(8, 5, 4, dtype=torch.float64) * 2, torch.randint(0, 3, (5,))
    grads = []
    for chunk in (None, 3):
        torch.manual_seed(7)  # the same mask
        grads.append(_grads(HYPRTrainer, model, x, y, chunk=chunk))
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-10, atol=1e-12)


# -- bad input -------------------------------------------------------------------------------------------
class Encoder(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.sn = inner, DecoupledLIFNode(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sn(self.inner(x))


@pytest.mark.legacy
def test_modules_with_hidden_state_are_refused_when_the_trainer_is_built():
    snn = pytest.importorskip("snntorch")
    lstm = nn.Sequential(nn.Linear(4, 8), Encoder(nn.LSTM(8, 8)))
    with pytest.raises(UnsupportedModule, match=r"^1\.inner \(LSTM\) is a recurrent ANN layer"):
        BPTTTrainer(lstm, torch.optim.SGD(lstm.parameters(), lr=0.1))
    leaky = nn.Sequential(nn.Linear(4, 8), Encoder(nn.Identity()), snn.Leaky(beta=0.9, init_hidden=True))
    with pytest.raises(
        UnsupportedModule, match=r"^2 \(Leaky\) is an snnTorch neuron.*snn_parallel\.adapters\.snntorch"
    ):
        OTTTTrainer(leaky, torch.optim.SGD(leaky.parameters(), lr=0.1))


class Counter(nn.Module):
    """Counts its calls in a buffer: state of its own, hidden from the trainers."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x


class Memo(nn.Module):
    """Keeps its last input in an attribute and adds it to the next."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        previous = getattr(self, "last", torch.zeros_like(x))
        self.last = x
        return x + previous


@pytest.mark.parametrize(
    "inner, message",
    [
        (Counter(), r"1\.inner \(Counter\) changes its buffer 'calls'"),
        (Memo(), r"1\.inner \(Memo\) keeps a tensor in self\.last"),
    ],
)
def test_modules_that_keep_state_of_their_own_are_refused_at_the_first_batch(inner, message):
    model = nn.Sequential(nn.Linear(4, 8), Encoder(inner), nn.Linear(8, 3))
    before = copy.deepcopy(model.state_dict())
    trainer = BPTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), progress=False)
    with pytest.raises(UnsupportedModule, match=message):
        trainer.fit([(torch.rand(5, 2, 4), torch.zeros(2, dtype=torch.long))], 1)
    for name, value in model.state_dict().items():  # the dry step changed nothing
        assert torch.equal(value, before[name])


def test_a_batch_that_does_not_fit_is_named_with_the_module_where_it_fails(zoo):
    model = _network(zoo, "residual-lif")
    trainer = OTTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), progress=False)
    with pytest.raises(
        ValueError,
        match=r"^the batch x of shape \[4, 2, 1, 8, 8\] \(time-major \[T, B, \.\.\.\]\) does not "
        r"fit the model: at conv1 \(Conv2d\): .*channels",
    ):
        trainer.fit([(torch.rand(4, 2, 1, 8, 8), torch.zeros(2, dtype=torch.long))], 1)
    with pytest.raises(ValueError, match=r"does not fit the model: at fc \(Linear\)"):
        trainer.fit([(torch.rand(4, 2, 3, 6, 6), torch.zeros(2, dtype=torch.long))], 1)


def test_a_trainer_driven_neuron_refuses_a_state_passed_in():
    class Explicit(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.sn = nn.Linear(4, 3), DecoupledLIF(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            spikes, state = self.sn(self.fc(x), None)
            return spikes

    model = Explicit()
    trainer = BPTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), progress=False)
    with pytest.raises(
        ValueError, match=r"sn \(DecoupledLIF\) was called with 2 positional.*call it with the input tensor alone"
    ):
        trainer.fit([(torch.rand(5, 2, 4), torch.zeros(2, dtype=torch.long))], 1)


def test_a_trainer_asks_a_neuron_for_its_membrane_only_where_the_model_reads_it(monkeypatch):
    """A trainer runs each neuron without its membrane (DSN's kernels then skip writing it) unless the module passes
    it on: an snnTorch skin without ``init_hidden`` returns ``(spk, mem)``, and the model reads ``mem``."""
    pytest.importorskip("snntorch")
    from snn_parallel.adapters import snntorch as skins
    from snn_parallel.adapters.spikingjelly import DynamicDecayNode

    asked = []
    with_membrane = DynamicDecay.update_sequence
    monkeypatch.setattr(DynamicDecay, "update_sequence", lambda self, *a: asked.append(True) or with_membrane(self, *a))

    class ReadsMembrane(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.lif, self.fc2 = nn.Linear(4, 8), skins.DynamicDecay(8), nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            spk, mem = self.lif(self.fc1(x))
            return self.fc2(spk + mem)

    x, y = torch.rand(6, 5, 4, dtype=torch.float64) * 2, torch.randint(0, 3, (5,))
    for model, reads in (
        (nn.Sequential(layer.Linear(4, 8), DynamicDecayNode(8, step_mode="m"), layer.Linear(8, 3)), False),
        (nn.Sequential(nn.Linear(4, 8), skins.DynamicDecay(8, init_hidden=True), nn.Linear(8, 3)), False),
        (ReadsMembrane(), True),
    ):
        asked.clear()
        grads = _grads(BPTTTrainer, model.double(), x, y)
        assert asked == [True] * reads, type(model).__name__
        assert grads["0.weight" if reads is False else "fc1.weight"].abs().sum() > 0


@pytest.mark.legacy
@pytest.mark.parametrize(
    "skin, kwargs",
    [("DynamicDecay", {}), ("PRF", {}), ("PRF", {"reset_mechanism": "subtract"}), ("DecoupledLIF", {}),
     ("DecoupledLIF", {"mem": "reset_free"}), ("LTC", {}), ("PSPLIF", {})],
)  # fmt: skip
def test_a_model_that_reads_mem_sees_under_a_trainer_what_it_sees_stepping_itself(skin, kwargs):
    """An snnTorch model whose readout reads a skin's ``mem``: the trainer's whole-sequence run and its step
    run give the outputs and the BPTT gradient of the model called one step at a time by hand (``mem`` after
    the reset, as the skin documents it, not the potential before it)."""
    pytest.importorskip("snntorch")
    from snn_parallel.adapters import snntorch as skins

    class ReadsMembrane(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 3)
            self.lif = getattr(skins, skin)(8, init_hidden=True, output=True, **kwargs)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            spk, mem = self.lif(self.fc1(x))
            return self.fc2(mem) + spk[:, :3]

    torch.manual_seed(0)
    model = ReadsMembrane().double()
    nn.init.uniform_(model.fc1.weight, -3, 3)
    x = torch.rand(7, 5, 4, dtype=torch.float64) * 2
    model.lif.mem = torch.zeros(5, 8, dtype=torch.float64)  # at rest, as snnTorch's reset_mem does
    by_hand = torch.stack([model(x_t) for x_t in x])
    assert (model.lif.mem != 0).any() and by_hand.abs().sum() > 0
    want = torch.autograd.grad(by_hand.square().sum(), list(model.parameters()))
    trainer = BPTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.0), progress=False)
    for run in (trainer.network.run, lambda x: torch.stack([trainer.network.step(x_t) for x_t in x])):
        trainer.network.reset()
        out = run(x)
        torch.testing.assert_close(out, by_hand, rtol=1e-10, atol=1e-10)
        got = torch.autograd.grad(out.square().sum(), list(model.parameters()))
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-9)  # the parallel paths round differently


@pytest.mark.parametrize(
    "skin, kwargs",
    [("DynamicDecay", {}), ("PRF", {}), ("DecoupledLIF", {}), ("DecoupledLIF", {"mem": "reset_free"}), ("LTC", {})],
)
def test_a_skin_whose_mem_is_read_steps_its_core_one_step_at_a_time(skin, kwargs, monkeypatch):
    """Stepped by a trainer, a skin whose ``mem`` the model reads runs its core's step, as a skin that returns no
    ``mem`` does, never the core's parallel path for a sequence of one step (which costs up to twice as much);
    spikes, ``mem`` and the BPTT gradient equal those of the whole sequence run in parallel."""
    pytest.importorskip("snntorch")
    from snn_parallel.adapters import snntorch as skins

    class ReadsMembrane(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(4, 8)
            self.lif = getattr(skins, skin)(8, init_hidden=True, output=True, **kwargs)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            spk, mem = self.lif(self.fc1(x))
            return torch.cat([spk, mem], dim=1)

    torch.manual_seed(0)
    model = ReadsMembrane().double()
    nn.init.uniform_(model.fc1.weight, -3, 3)
    x = torch.rand(6, 5, 4, dtype=torch.float64) * 2
    network = BPTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.0), progress=False).network
    sequences = []
    parallel = type(model.lif.core).update_sequence

    def counted(core, x_seq, state):
        sequences.append(x_seq.shape[0])
        return parallel(core, x_seq, state)

    monkeypatch.setattr(type(model.lif.core), "update_sequence", counted)
    whole = network.run(x)
    assert whole[..., :8].sum() > 0 and whole[..., :8].mean() < 1  # some spikes, not all
    want = torch.autograd.grad(whole.square().sum(), list(model.parameters()))
    calls = len(sequences)
    # single steps (OTTT, a network that cannot fold) and folded sequences of one step (FPTT with parts=T)
    for run in (network.step, lambda x_t: network.run(x_t.unsqueeze(0))[0]):
        network.reset()
        stepped = torch.stack([run(x_t) for x_t in x])
        assert sequences[calls:] == []
        torch.testing.assert_close(stepped, whole, rtol=1e-10, atol=1e-10)
        got = torch.autograd.grad(stepped.square().sum(), list(model.parameters()))
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-9)


# -- SpikingJelly's zoo and examples beyond the ResNets ------------------------------------------------
class ExampleCSNN(nn.Module):
    """``examples/conv_fashion_mnist.py``'s ``CSNN`` (fewer channels, 8x8 pictures): its forward repeats
    each picture over its own ``T`` and returns the firing rate averaged over time."""

    def __init__(self, steps: int, node) -> None:
        super().__init__()
        self.steps = steps
        self.conv_fc = nn.Sequential(
            layer.Conv2d(1, 4, 3, padding=1, bias=False),
            layer.BatchNorm2d(4),
            node(4),
            layer.MaxPool2d(2, 2),
            layer.Flatten(),
            layer.Linear(4 * 4 * 4, 10, bias=False),
            node(10),
        )
        functional.set_step_mode(self, "m")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_fc(x.unsqueeze(0).expand(self.steps, -1, -1, -1, -1)).mean(0)


def _digits(steps: int = 3, count: int = 8) -> SequentialDigits:
    data = SequentialDigits("train", "image", repeat=steps)
    data.inputs, data.targets = data.inputs[:count] * 3, data.targets[:count]
    return data


_SEQUENCE_ZOO = ("spikformer", "ms_resnet")


def test_a_model_whose_forward_takes_whole_sequences_is_refused_with_the_reason():
    """SpikingJelly's CSNN example makes its own time axis in ``forward``; the trainers step a model
    ``[B, ...] -> [B, K]``, so they name that (not the conv layer that failed on a 5-D input); the
    per-step part of the same network trains."""
    torch.manual_seed(0)
    net = ExampleCSNN(3, lambda n: DecoupledLIFNode(n, surrogate_function="atan"))
    loader = make_loader(_digits(), 4)
    with pytest.raises(
        UnsupportedModule,
        match=r"^ExampleCSNN\.forward takes whole sequences: it gave the step \[4, 1, 8, 8\] a time axis of its own "
        r"\(conv_fc \(Sequential\) received \[3, 4, 1, 8, 8\]\).*per-step part",
    ):
        BPTTTrainer(net, torch.optim.SGD(net.parameters(), lr=0.1), loss="ce_all", progress=False).fit(loader, 1)
    history = BPTTTrainer(net.conv_fc, torch.optim.SGD(net.parameters(), lr=0.1), loss="ce_all", progress=False).fit(
        loader, 1
    )
    assert torch.isfinite(torch.tensor(history[-1]["train_loss"]))


@pytest.mark.skipif(
    any(importlib.util.find_spec(f"spikingjelly.activation_based.model.{name}") is None for name in _SEQUENCE_ZOO),
    reason=f"SpikingJelly's model zoo has no {' or '.join(_SEQUENCE_ZOO)}",
)
def test_the_zoos_transformers_and_ms_resnets_are_refused_with_the_reason():
    """SpikingJelly's zoo's transformers and MS-ResNets make their own time axis in ``forward`` too:
    refused with that reason, the MS-ResNet's with the error of the layer that failed."""
    torch.manual_seed(0)
    loader = make_loader(_digits(), 4)
    with _zoo_module("spikformer") as spikformer:
        transformer = spikformer.Spikformer(
            T=2, img_size_h=8, img_size_w=8, patch_size=4, num_classes=10, embed_dims=8, num_heads=2, depths=1,
            in_channels=1, spiking_neuron=DecoupledLIFNode, surrogate_function="atan",
        )  # fmt: skip
    with pytest.raises(
        UnsupportedModule, match=r"^Spikformer\.forward takes whole sequences.*received \[2, 4, 1, 8, 8\]"
    ):
        OTTTTrainer(transformer, torch.optim.SGD(transformer.parameters(), lr=0.1), progress=False).fit(loader, 1)
    with _zoo_module("ms_resnet") as ms_resnet:
        resnet = ms_resnet.MSResNet(
            T=2, in_channels=1, num_classes=10, layers=(1, 1, 1), base_channels=4, spiking_neuron=DecoupledLIFNode,
            surrogate_function="atan",
        )  # fmt: skip
    with pytest.raises(
        UnsupportedModule,
        match=r"^MSResNet\.forward takes whole sequences.*\(stem \(Sequential\) received \[2, 4, 1, 8, 8\]\).*"
        r"\(stem\.0 \(Conv2d\) failed with: .*conv2d",
    ):
        BPTTTrainer(resnet, torch.optim.SGD(resnet.parameters(), lr=0.1), progress=False).fit(loader, 1)


class _SequenceFirstAttention(nn.Module):
    """A per-step model that runs a sequence-first ``nn.MultiheadAttention`` on a sequence of one step
    (``x_t.unsqueeze(0)``), then a readout of the wrong width."""

    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(4, 1)
        self.fc1, self.lif, self.fc2 = nn.Linear(4, 8), DecoupledLIF(8), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.unsqueeze(0)
        return self.fc2(self.lif(self.fc1(self.attention(q, q, q)[0][0]))[0])


class _TwoViews(nn.Module):
    """A per-step model that passes two views of the step through one layer stacked (``[2, B, F]``),
    then a readout of the wrong width."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(4, 4)
        self.fc1, self.lif, self.fc2 = nn.Linear(8, 8), DecoupledLIF(8), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = self.encoder(torch.stack([x, -x]))
        return self.fc2(self.lif(self.fc1(torch.cat(views.unbind(0), dim=1)))[0])


@pytest.mark.parametrize("model", [_SequenceFirstAttention, _TwoViews])
def test_a_per_step_model_that_adds_and_removes_a_leading_axis_gets_its_own_error(model):
    """A model that maps one step to its output but calls a layer on a tensor with a leading axis of its own
    (a sequence-first attention on one step, two views stacked) and then fails in another layer for a reason
    of its own (a readout of the wrong width) gets that error, at that layer, not the advice for models that
    take whole sequences."""
    torch.manual_seed(0)
    net = model()
    x, y = torch.rand(3, 5, 4), torch.randint(0, 3, (5,))
    trainer = BPTTTrainer(net, torch.optim.SGD(net.parameters(), lr=0.1), progress=False)
    # torch 2.15 names the op before its message ("addmm: mat1 and mat2 ..."), earlier releases do not
    with pytest.raises(
        ValueError, match=r"model: at fc2 \(Linear\): (addmm: )?mat1 and mat2 shapes cannot be multiplied"
    ) as caught:
        trainer.prepare((x, y))
    assert not isinstance(caught.value, UnsupportedModule)


class _InnerSteps(nn.Module):
    """``SNASNet``'s pattern: one call encodes the step once, then runs its cell over its own ``steps`` time
    steps on that same encoding and averages the readout."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps
        self.stem, self.cell, self.readout = (
            nn.Linear(4, 8),
            nn.Sequential(nn.Linear(8, 8), DecoupledLIF(8)),
            nn.Linear(8, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded = self.stem(x)
        return sum(self.readout(self.cell(encoded)) for _ in range(self.steps)) / self.steps


class _SharedNeuron(nn.Module):
    """One neuron called by two layers at every step."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.lif, self.readout = nn.Linear(4, 8), nn.Linear(8, 8), DecoupledLIF(8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.lif(self.fc2(self.lif(self.fc1(x))[0]))[0])


class _BlockTwice(nn.Module):
    """One block (synapse and neuron) applied twice at every step, the second time to its own output."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.block, self.readout = (
            nn.Linear(4, 8),
            nn.Sequential(nn.Linear(8, 8), DecoupledLIF(8)),
            nn.Linear(8, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.block(self.block(self.fc(x))))


@pytest.mark.parametrize(
    "model, warned",
    [(lambda: _InnerSteps(3), 3), (lambda: _InnerSteps(1), None), (_SharedNeuron, None), (_BlockTwice, None)],
)
def test_a_model_that_runs_time_steps_of_its_own_is_warned_about(model, warned):
    """A model whose forward runs its neurons over time steps of its own on one input (SNASNet's
    ``args.timestep`` loop) is warned about at the first batch, with the advice; a neuron shared by two
    layers, or a block applied twice to its own output, which also step a neuron twice per step, are not."""
    import warnings

    torch.manual_seed(0)
    net = model()
    trainer = BPTTTrainer(net, torch.optim.SGD(net.parameters(), lr=0.1), progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.prepare((torch.rand(3, 5, 4), torch.randint(0, 3, (5,))))
    messages = [str(w.message) for w in caught if "time steps of its own" in str(w.message)]
    if warned is None:
        assert messages == []
    else:
        assert len(messages) == 1
        assert messages[0].startswith(f"_InnerSteps.forward runs {warned} time steps of its own at every step (cell ")
        assert "build it with one" in messages[0]


def _online_net(node) -> nn.Module:
    torch.manual_seed(0)
    net = layer.OTTTSequential(*_conv_net(node))
    for module in net:
        if isinstance(module, nn.Conv2d):
            nn.init.uniform_(module.weight, -1, 1)
    return net


@pytest.mark.legacy
@pytest.mark.parametrize(
    "node", [pytest.param(name, marks=needs(neuron, name)) for name in ("OTTTLIFNode", "SLTTLIFNode")]
)
def test_spikingjelly_online_nodes_run_step_by_step_under_every_rule(node):
    """SpikingJelly's OTTT/SLTT nodes are built single-step only (their multi-step forward fails): the
    trainers step them, giving SpikingJelly's own step-by-step outputs, and BPTT/FPTT train them;
    HYPR, whose membrane Jacobians these nodes cut at every step, refuses them by name."""
    net = _online_net(getattr(neuron, node))
    x, y = torch.rand(4, 3, 1, 8, 8) * 2, torch.randint(0, 10, (3,))
    net.eval()
    functional.reset_net(net)
    with torch.no_grad():
        expected = torch.stack([net(x_t) for x_t in x])
        functional.reset_net(net)
        torch.testing.assert_close(discover(net).run(x), expected, rtol=0, atol=0)
    net.train()
    if node == "SLTTLIFNode":  # its step detaches the membrane: the gradient is SpikingJelly's stepped one
        functional.reset_net(net)
        torch.stack([net(x_t) for x_t in x]).square().sum().backward()
        expected = {name: p.grad.clone() for name, p in net.named_parameters()}
        net.zero_grad()
        functional.reset_net(net)
        discover(net).run(x).square().sum().backward()
        for name, p in net.named_parameters():
            torch.testing.assert_close(p.grad, expected[name], msg=name)
    for rule in ("bptt", "fptt"):
        model = _online_net(getattr(neuron, node))
        before = copy.deepcopy(model.state_dict())
        trainer_cls, options = RULES[rule]
        trainer_cls(model, torch.optim.SGD(model.parameters(), lr=0.5), loss="ce_all", progress=False, **options).fit(
            [(x, y)], 1
        )
        moved = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
        assert len(moved) == len(before), f"{rule}: only {moved} moved"
    with pytest.raises(UnsupportedModule, match=rf"^1 \({node}\) detaches its membrane at every training step"):
        HYPRTrainer(net, torch.optim.SGD(net.parameters(), lr=0.5), progress=False, chunk=2).fit([(x, y)], 1)


@pytest.mark.legacy
def test_spikingjelly_spiking_rnns_are_refused_when_the_trainer_is_built():
    """``examples/spiking_lstm_sequential_mnist.py``: ``rnn.SpikingLSTM`` passes its hidden state in and
    out of each call, which the trainers cannot carry (it was reported as a model without neurons)."""
    rnn = pytest.importorskip("spikingjelly.activation_based.rnn")
    model = nn.Sequential(nn.Linear(4, 8), Encoder(rnn.SpikingLSTM(8, 8, 1)))
    with pytest.raises(UnsupportedModule, match=r"^1\.inner \(SpikingLSTM\) is a SpikingJelly spiking RNN layer"):
        BPTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
