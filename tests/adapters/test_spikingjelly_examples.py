"""SpikingJelly 2.0's example networks with our nodes in them, run as a user runs them.

Each example module is imported from SpikingJelly (torchvision, gym and torchaudio, which its training
script imports and the tests do not install, are stubbed for the test) and its network is built
twice with the same weights: once with its neurons replaced by SpikingJelly's soft-reset ``LIFNode``
(``decay_input=False, v_reset=None, detach_reset=True``), the reference, and once by
:class:`DecoupledLIFNode`, the same neuron; the examples built of ``IFNode`` also with their ``IFNode`` given
the soft reset (``v_reset=None, detach_reset=True``) against :class:`DecoupledIFNode`, and the PLIF network
with ``ParametricLIFNode`` against :class:`DecoupledParametricLIFNode`. On tiny random data both must give the
same outputs, gradients, membranes ``v``, learner updates and resets, in the step modes the example runs, and
through the example's own machinery where it has some (memopt's ``optimize_memory``, the ImageNet trainer's
training step and EMA model, the spiking DQN's target net and monitor).
"""

from __future__ import annotations

import importlib
import random
import sys
import types
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("spikingjelly")
# SpikingJelly's monitor (imported by its learning rules too) needs tensorboard at import
pytest.importorskip("spikingjelly.activation_based.monitor")

from snn_parallel.adapters import spikingjelly as sjn  # noqa: E402
from spikingjelly.activation_based import encoding, functional, layer, learning, monitor, neuron, surrogate  # noqa: E402
from spikingjelly.activation_based.model import parametric_lif_net  # noqa: E402

pytestmark = pytest.mark.skipif(not sjn.SJ2, reason="the examples of SpikingJelly 2.0")

EXAMPLES = "spikingjelly.activation_based.examples"
#: modules the examples' training scripts import that the tests do not install (or that need them)
STUBBED = (
    "torchvision",
    "torchvision.datasets",
    "torchvision.datasets.utils",
    "torchvision.transforms",
    "gym",
    "torchaudio",
    "torchaudio.transforms",
    "torchvision.transforms.functional",
    "torchvision._internally_replaced_utils",
    "tensorboardX",
    "spikingjelly.datasets",
    "spikingjelly.datasets.speechcommands",
)
TAU = 2.0
#: the threshold of both nets' nodes: low enough that the untrained, tiny nets fire in every layer
V_TH = 0.5


class _Stubbed(type):
    """A stub's classes: any attribute they are asked for at import (``InterpolationMode.BILINEAR``) is the class."""

    def __getattr__(cls, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return cls


def _stub(name: str) -> types.ModuleType:
    module = types.ModuleType(name)

    def attribute(attribute_name: str) -> type:  # any class the script names at import
        if attribute_name.startswith("__"):
            raise AttributeError(attribute_name)
        return _Stubbed(attribute_name, (), {})

    module.__getattr__ = attribute
    return module


@pytest.fixture
def example(monkeypatch) -> Iterator[Callable[[str], types.ModuleType]]:
    """``example("rsnn_sequential_fmnist")`` imports that example module, its missing imports stubbed."""
    for name in STUBBED:
        monkeypatch.setitem(sys.modules, name, _stub(name))
    before = set(sys.modules)
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    yield lambda name: importlib.import_module(f"{EXAMPLES}.{name}")
    random.setstate(states[0])  # the A2C example seeds every generator at import
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])
    for name in set(sys.modules) - before:  # the examples hold the stubs: import them afresh next time
        if name.startswith(EXAMPLES):
            del sys.modules[name]


def _reference(old: nn.Module) -> nn.Module:
    return neuron.LIFNode(
        tau=TAU,
        decay_input=False,
        v_reset=None,
        detach_reset=True,
        v_threshold=V_TH,
        surrogate_function=old.surrogate_function,
    )


def _ours(old: nn.Module) -> nn.Module:
    return sjn.DecoupledLIFNode(tau=TAU, v_threshold=V_TH, surrogate_function=old.surrogate_function)


def _soft_reset_if(old: nn.Module) -> nn.Module:
    """The example's ``IFNode`` (its surrogate) with the soft reset ``DecoupledIFNode`` has."""
    return neuron.IFNode(v_threshold=V_TH, v_reset=None, detach_reset=True, surrogate_function=old.surrogate_function)


def _ours_if(old: nn.Module) -> nn.Module:
    return sjn.DecoupledIFNode(v_threshold=V_TH, surrogate_function=old.surrogate_function)


#: the reference and our node, built from the node they replace
PAIRS = {"lif": (_reference, _ours), "if": (_soft_reset_if, _ours_if)}


def _twins(
    build: Callable[[], nn.Module], part=lambda net: net, kind=neuron.BaseNode, pair: str = "lif"
) -> list[nn.Module]:
    """The network built twice with the same weights, ``part(net)``'s nodes swapped for the reference / ours."""
    nets = []
    for factory in PAIRS[pair]:
        torch.manual_seed(0)
        net = build()
        assert sjn.swap_nodes(part(net), factory, kind) > 0
        nets.append(net.double())
    return nets


#: the learned decays: ``ParametricLIFNode``'s ``w`` (one per layer) and our per-channel ``decay_logit``, whose
#: gradients differ where neurons fired (the reset's part; tests/adapters/test_spikingjelly.py)
DECAYS = (".w", ".core.decay_logit")


def _assert_same_gradients(reference: nn.Module, ours: nn.Module) -> None:
    expected, got = ({n: p for n, p in net.named_parameters() if not n.endswith(DECAYS)} for net in (reference, ours))
    assert expected.keys() == got.keys()
    decays = [p for n, p in ours.named_parameters() if n.endswith(DECAYS)]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.any() for p in decays)
    assert all(p.grad is not None for p in got.values())
    for name, p in expected.items():
        torch.testing.assert_close(got[name].grad, p.grad, msg=name)


def _run_both(nets, forward, x, loss=lambda out: (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum()):
    """Forward, backward, compare outputs and gradients; returns the outputs."""
    outs = []
    for net in nets:
        torch.manual_seed(2)  # the same dropout masks
        out = forward(net, x)
        loss(out).backward()
        outs.append(out)
    assert outs[0].abs().sum() > 0
    torch.testing.assert_close(outs[1], outs[0])
    _assert_same_gradients(*nets)
    return outs


# -- rsnn_sequential_fmnist: feed-forward, stateful-synapse and recurrent (LinearRecurrentContainer) nets ----------
@pytest.mark.parametrize("pair", list(PAIRS))
@pytest.mark.parametrize("model", ["PlainNet", "StatefulSynapseNet", "FeedBackNet"])
@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_rsnn_sequential_fmnist_nets(example, model, step_mode, pair):
    """The example runs 'm' mode on [W, N, H] (its recurrent container steps its node in 's' mode); in 's'
    mode a user steps ``net.fc`` over the columns. Outputs, gradients, ``v`` and the reset agree."""
    module = example("rsnn_sequential_fmnist")
    nets = _twins(getattr(module, model), pair=pair)
    torch.manual_seed(1)
    img = torch.rand(8, 3, 28, dtype=torch.float64) * 2  # [W, N, H], the example's layout (W: time)
    for net in nets:
        functional.set_step_mode(net, step_mode)

    def forward(net, x):
        return net(x) if step_mode == "m" else torch.stack([net.fc(x_t) for x_t in x]).mean(0)

    first, _ = _run_both(nets, forward, img)
    nodes = [[m for m in net.modules() if isinstance(m, (neuron.BaseNode, sjn.SpikingJellyNode))] for net in nets]
    assert len(nodes[1]) == 2 and all(isinstance(m, type(PAIRS[pair][1](neuron.IFNode()))) for m in nodes[1])
    for expected, got in zip(*nodes, strict=True):
        torch.testing.assert_close(got.v, expected.v)
    for net in nets:
        functional.reset_net(net)
    with torch.no_grad():
        torch.testing.assert_close(forward(nets[1], img), first.detach())


# -- conv_fashion_mnist: the CSNN in 'm' mode, its spiking encoder, a monitor on the nodes ------------------------
@pytest.mark.parametrize("pair", list(PAIRS))
def test_conv_fashion_mnist_csnn_and_its_encoder(example, pair):
    module = example("conv_fashion_mnist")
    nets = _twins(lambda: module.CSNN(T=3, channels=4), pair=pair)
    monitors = [monitor.OutputMonitor(net, (neuron.BaseNode, sjn.SpikingJellyNode)) for net in nets]
    torch.manual_seed(1)
    img = torch.rand(2, 1, 28, 28, dtype=torch.float64) * 2
    _run_both(nets, lambda net, x: net(x), img)
    records = [m.records for m in monitors]
    for m in monitors:
        m.close()
    assert len(records[1]) == 4
    for expected, got in zip(*records, strict=True):
        assert torch.equal(got, expected)
    spikes = []
    with torch.no_grad():
        for net in nets:
            functional.reset_net(net)
            encoder = net.spiking_encoder()  # the example's main: the first block on [T, N, C, H, W]
            spikes.append(encoder(img.unsqueeze(0).expand(net.T, -1, -1, -1, -1)))
            functional.reset_net(encoder)
            assert encoder[2].v is None or isinstance(encoder[2].v, float)
    assert 0 < spikes[0].mean() < 1 and torch.equal(spikes[1], spikes[0])


# -- lif_fc_mnist: a forward hook that records the output layer's v, as the example plots it ---------------------
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_lif_fc_mnist_records_spikingjellys_membrane(example, step_mode):
    """The example's ``save_hook`` stacks ``m.v`` after every step: our node's ``v`` is SpikingJelly's
    membrane after the reset, step after step (and the last one in 'm' mode)."""
    module = example("lif_fc_mnist")
    nets = _twins(lambda: module.SNN(tau=TAU))
    torch.manual_seed(1)
    encoder = encoding.PoissonEncoder()
    img = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    frames = torch.stack([encoder(img) for _ in range(6)]) * 2  # Poisson frames, shared by both nets
    recorded = []
    for net in nets:
        functional.set_step_mode(net, step_mode)
        v_seq, s_seq = [], []

        def save_hook(m, x, y, v_seq=v_seq, s_seq=s_seq):
            v_seq.append(m.v.unsqueeze(0))
            s_seq.append(y.unsqueeze(0))

        handle = net.layer[-1].register_forward_hook(save_hook)
        out = torch.stack([net(f) for f in frames]) if step_mode == "s" else net(frames)
        out.sum().backward()
        handle.remove()
        recorded.append((torch.cat(v_seq), torch.cat(s_seq)))
    (v_ref, s_ref), (v_ours, s_ours) = recorded
    assert 0 < s_ref.mean() < 1
    assert torch.equal(s_ours, s_ref)
    torch.testing.assert_close(v_ours, v_ref)
    _assert_same_gradients(*nets)


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_assigning_v_mid_sequence_continues_as_spikingjelly(step_mode):
    """``node.v = ...`` after some spikes sets the membrane the next step starts from, as on ``LIFNode``."""
    torch.manual_seed(0)
    x = torch.rand(2, 6, 3, 5, dtype=torch.float64) * 1.5
    results = []
    for node in (_reference(neuron.IFNode()), _ours(neuron.IFNode()).double()):
        node.step_mode = step_mode
        run = (lambda n, s: n(s)) if step_mode == "m" else (lambda n, s: torch.stack([n(s_t) for s_t in s]))
        first = run(node, x[0])
        node.v = node.v * 0.5 - 0.25
        results.append((first, run(node, x[1]), node.v))
    assert 0 < results[0][0].mean() < 1
    for expected, got in zip(*results, strict=True):
        torch.testing.assert_close(got, expected)


# -- Spiking_A2C and DSQN: spiking hidden layers read out by SpikingJelly's non-spiking nodes ----------------------
def test_spiking_a2c_actor_critic_keeps_its_non_spiking_readouts(example):
    """swap_nodes replaces the IFNode hidden layers; the readouts (``SimpleLIFNode`` subclasses that return
    ``v``) stay, and the value and policy read from their ``v`` agree, and so do the gradients."""
    module = example("spiking_a2c")
    nets = _twins(lambda: module.ActorCritic(4, 3, 16, T=4))
    assert all(type(net.critic[-1]).__name__ == "NonSpikingLIFNode" for net in nets)
    assert isinstance(nets[1].actor[1], sjn.DecoupledLIFNode)
    torch.manual_seed(1)
    state = torch.randn(5, 4, dtype=torch.float64) * 2  # a batch of fake environment observations
    action = torch.tensor([0, 1, 2, 1, 0])
    outs = []
    for net in nets:
        dist, value = net(state)
        (-(dist.log_prob(action) * value.detach().squeeze(1)).mean() + value.pow(2).mean()).backward()
        outs.append((dist.probs, value))
        functional.reset_net(net)
        assert net.actor[1].v is None or isinstance(net.actor[1].v, float)
    for expected, got in zip(*outs, strict=True):
        torch.testing.assert_close(got, expected)
    _assert_same_gradients(*nets)


@pytest.mark.parametrize("dec_type", ["max-mem", "fr-mlp"])
def test_dsqn_with_our_nodes(example, dec_type):
    module = example("dsqn.utils.model")
    nets = _twins(lambda: module.DSQN((4, 84, 84), 3, T=2, dec_type=dec_type))
    torch.manual_seed(1)
    _run_both(nets, lambda net, x: net(x), torch.rand(2, 4, 84, 84, dtype=torch.float64) * 4)


# -- classify_dvsg: DVSGestureNet built with spiking_neuron= and the example's keyword arguments ------------------
@pytest.mark.parametrize(
    ("theirs", "ours", "extra"),
    [
        pytest.param(neuron.LIFNode, sjn.DecoupledLIFNode, {"decay_input": False, "v_threshold": V_TH}, id="lif"),
        # the input halved by decay_input at tau = 2: half the threshold, for the tiny net to fire through
        pytest.param(neuron.ParametricLIFNode, sjn.DecoupledParametricLIFNode, {"v_threshold": V_TH / 2}, id="plif"),
    ],
)
def test_classify_dvsg_network(theirs, ours, extra):
    """The PLIF paper's DVS-gesture network, as the example builds it (``spiking_neuron=``, its keyword arguments)
    and with the PLIF the paper trains it with (``init_tau=2``: every channel of ours at PLIF's ``w``)."""
    nets = []
    for node, kwargs in ((theirs, {**extra, "v_reset": None}), (ours, extra)):
        torch.manual_seed(0)
        net = parametric_lif_net.DVSGestureNet(
            channels=2,
            spiking_neuron=node,
            surrogate_function=surrogate.ATan(),
            detach_reset=True,
            **kwargs,
        )
        functional.set_step_mode(net, "m")
        nets.append(net.double())
    torch.manual_seed(1)
    _run_both(nets, lambda net, x: net(x).mean(0), torch.rand(2, 1, 2, 128, 128, dtype=torch.float64) * 2)
    for node in (sjn.LTCNode, sjn.PSPLIFNode):  # hard resets that keep their gradient
        with pytest.raises(ValueError, match="detach_reset=True is not supported"):
            parametric_lif_net.DVSGestureNet(
                channels=2, spiking_neuron=node, surrogate_function=surrogate.ATan(), detach_reset=True
            )


# -- speech_commands: LIFWrapper hands the node [T, channel, batch, n_mel] -----------------------------------------
def test_speech_commands_wrapper_gives_the_node_the_batch_as_features(example):
    """With the batch at dim 2 the node infers the batch size as its features: the same spikes as
    SpikingJelly's node for that batch size, and a clear error, naming the shape, at another."""
    module = example("speech_commands")
    nets = _twins(module.Net)
    torch.manual_seed(1)
    x = torch.rand(3, 1, 6, 40, dtype=torch.float64) * 2  # [batch, delta_order + 1, T, n_mel]
    _run_both(nets, lambda net, x: net(x), x)
    for net in nets:
        functional.reset_net(net)
    nets[0](x[:2])
    with pytest.raises(ValueError, match=r"must have 3 features in dim 2 .*got shape \(\d+, 64, 2, 40\)"):
        nets[1](x[:2])


# -- SpikingJelly's plasticity learners with our node as the post-synaptic neuron --------------------------------
LEARNERS = {
    "stdp": (learning.STDPLearner, {"tau_pre": 2.0, "tau_post": 2.0}),
    "mstdp": (learning.MSTDPLearner, {"tau_pre": 20.0, "tau_post": 20.0}),
    "mstdpet": (learning.MSTDPETLearner, {"tau_pre": 10.0, "tau_post": 10.0, "tau_trace": 25.0}),
}


@pytest.mark.parametrize(("learner", "step_mode"), [("stdp", "s"), ("stdp", "m"), ("mstdp", "s"), ("mstdpet", "s")])
def test_plasticity_learners_hooked_on_our_node(learner, step_mode):
    """The stdp_trace / mstdp / mstdpet examples' loop (forward, ``learner.step``, SGD, clamp) moves the
    weights as with SpikingJelly's node: the learner reads the spikes our node returns. MSTDPETLearner
    takes unbatched spikes only, so the node steps one sample ``[features]`` without a batch dim."""
    cls, taus = LEARNERS[learner]
    torch.manual_seed(0)
    batch = (1,) if learner == "mstdpet" else (2,)
    spikes_in = (torch.rand(32, *batch, 4) > 0.5).double()
    reward = torch.rand(32, *batch, dtype=torch.float64) * 2 - 1
    if learner == "mstdpet":  # the example's layout: [T, N_in] spikes, one reward per step
        spikes_in, reward = spikes_in[:, 0], reward[:, 0]
    weights = []
    for factory in (_reference, _ours):
        net = nn.Sequential(layer.Linear(4, 3, bias=False), factory(neuron.IFNode())).double()
        nn.init.constant_(net[0].weight.data, 0.4)
        functional.set_step_mode(net, step_mode)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
        rule = cls(step_mode=step_mode, synapse=net[0], sn=net[1], f_pre=lambda w: w.clamp(-1, 1), **taus)
        trajectory = []
        with torch.no_grad():
            for t, x in enumerate(spikes_in.split(1 if step_mode == "s" else 8)):
                optimizer.zero_grad()
                out = net(x[0] if step_mode == "s" else x)
                assert out.shape == (*x.shape[int(step_mode == "s") :][:-1], 3)
                rule.step(on_grad=True) if learner == "stdp" else rule.step(reward[t], on_grad=True)
                optimizer.step()
                net[0].weight.data.clamp_(-1.0, 1.0)
                trajectory.append(net[0].weight.detach().clone())
        rule.close()
        weights.append(torch.stack(trajectory))
    assert not torch.equal(weights[0][-1], torch.full_like(weights[0][-1], 0.4))
    torch.testing.assert_close(weights[1], weights[0])


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_one_sample_without_a_batch_dim_runs_as_spikingjellys_node(step_mode):
    """``[features]`` steps and ``[T, features]`` sequences (nn.Linear's unbatched input) give SpikingJelly's
    spikes and keep ``v`` and ``v_seq`` without the batch dim, as SpikingJelly's node does."""
    torch.manual_seed(0)
    x = torch.rand(6, 5, dtype=torch.float64) * 1.5
    results = []
    for node in (_reference(neuron.IFNode()), _ours(neuron.IFNode()).double()):
        node.step_mode, node.store_v_seq = step_mode, True
        out = node(x) if step_mode == "m" else torch.stack([node(x_t) for x_t in x])
        v_seq = torch.stack(node.v_seq) if isinstance(node.v_seq, list) else node.v_seq
        results.append((out, node.v, v_seq.shape))
    (out_ref, v_ref, shape_ref), (out, v, shape) = results
    assert 0 < out_ref.mean() < 1 and torch.equal(out, out_ref)
    torch.testing.assert_close(v, v_ref)
    assert shape == shape_ref == (6, 5)


# -- ILC-SAN and NoisySAN: population-coded actors --------------------------------------------------------------
@pytest.mark.parametrize("encode", ["pop-det", "pop-raw"])
def test_ilc_san_actor_with_our_hidden_nodes(example, encode):
    """Swapping the spiking MLP's ``CUBALIFNode`` layers (pass ``actor.snn``: the deterministic encoder holds
    an ``IFNode`` of its own) leaves the encoder and the ILC output layer alone; the actions and gradients
    agree with SpikingJelly's node."""
    module = example("ilc_san.ilc_san")

    def build():
        return module.PopSpikeActor(3, 2, 5, 4, [16, 16], (-3, 3), 0.5, 5, encode, "mean-mem", 1.0)

    nets = _twins(build, part=lambda actor: actor.snn)
    kinds = [type(m).__name__ for m in nets[1].snn.hidden_layers]
    assert kinds == ["Linear", "DecoupledLIFNode", "Linear", "DecoupledLIFNode", "Linear", "ILCCUBALIFNode"]
    if encode == "pop-det":
        assert isinstance(nets[1].encoder.neurons, neuron.IFNode)
    torch.manual_seed(1)
    obs = torch.randn(4, 3, dtype=torch.float64)  # fake observations
    first, _ = _run_both(nets, lambda net, x: net(x), obs)
    functional.reset_net(nets[1])
    with torch.no_grad():
        torch.testing.assert_close(nets[1](obs), first.detach())


def test_networks_of_their_own_neuron_classes_name_the_kind_to_swap(example):
    """NoisySAN's nodes and the cifar10_r11 example's neurons are not ``BaseNode`` subclasses: swap_nodes with
    the default kind says so rather than replacing nothing. Given NoisySAN's class it replaces those nodes, and
    the actor runs, with the colored noise of the swapped layer gone (the noise lives in SpikingJelly's node)."""
    r11 = example("cifar10_r11_enabling_spikebased_backpropagation")
    with pytest.raises(ValueError, match="net holds no BaseNode module.*pass kind="):
        sjn.swap_nodes(r11.ResNet11(), _ours)
    module = example("noisy_san.noisy_san")
    actor = module.NoisyPopSpikeActor(3, 2, 5, 4, [16], (-3, 3), 0.5, 5, 1.0, 0.0, 0.5)
    actor.decoder.decoder.decode = "mean-mem"  # the example's "last-mem" is not a mode of SpikingJelly 2.0's node
    with pytest.raises(ValueError, match="net holds no BaseNode module.*pass kind="):
        sjn.swap_nodes(actor.snn, _ours)
    noise = actor.get_colored_noise_length()
    assert sjn.swap_nodes(actor.snn, _ours, kind=neuron.NoisyCUBALIFNode) == 1
    assert actor.get_colored_noise_length() < noise
    actor.reset_noise(3)
    out = actor(torch.randn(2, 3))
    out.sum().backward()
    assert out.shape == (2, 2) and actor.snn.hidden_layers[0].weight.grad is not None


# -- memopt: the example's optimize_memory call (levels 1 and 3, spike compression) on a net of its VGG blocks ----
@pytest.mark.parametrize("level", [1, 3])
def test_memopt_optimize_memory_checkpoints_splits_and_chunks_our_nodes(example, monkeypatch, level):
    """``memopt/train.py``'s ``optimize_memory`` call (``VGGBlock`` targets, its ``split_fn`` and ``can_chunk``):
    at level 1, the level a CPU runs, every block is checkpointed and the blocks fed by our spikes have them
    bit-compressed as SpikingJelly's (they are strictly binary). Levels 2-4 keep what lowers the CUDA peak memory:
    here every trial is run (forward, backward, the runtime state restored) and reported lower than the last, so
    level 3 splits every block into its convolution and its node and halves the nodes' time chunks down to one
    step each, ours too when ``can_chunk`` names our class (docs/compatibility.md). Either way the outputs,
    gradients, BatchNorm statistics and membranes are the reference's. The probe forward builds our lazy nodes."""
    from spikingjelly.activation_based import memopt
    from spikingjelly.activation_based.memopt import pipeline
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper

    trials = []

    def peak(model, example_forward):  # _measure_peak without CUDA: the trial run, a lower peak each time
        state = pipeline._capture_runtime(model)
        try:
            pipeline._execute_example(model, example_forward, backward=True)
        finally:
            pipeline._restore_runtime(model, state)
        trials.append(None)
        return 1e9 - len(trials)

    monkeypatch.setattr(pipeline, "_measure_peak", peak)
    models = example("memopt.models")
    kwargs = {"tau": TAU, "decay_input": False, "detach_reset": True, "step_mode": "m"}  # the model's, tau apart

    def build():
        net = nn.Sequential(
            models.VGGBlock(2, 4, 3, 1, 1, False, **kwargs), models.VGGBlock(4, 4, 3, 1, 1, True, **kwargs)
        )
        functional.set_step_mode(net, "m")  # as CIFAR10DVSVGG sets it
        return net

    nets = _twins(build)
    torch.manual_seed(1)
    x = torch.rand(2, 2, 2, 8, 8, dtype=torch.float64) * 2  # [T, N, C, H, W]
    wrappers = []
    for net, node_kind in zip(nets, (neuron.BaseNode, (neuron.BaseNode, sjn.SpikingJellyNode)), strict=True):
        memopt.optimize_memory(
            net,
            models.VGGBlock,
            lambda current: current(x),
            level=level,
            compress=True,
            # the example's split_fn, which levels 2-4 also call on the parts it returned (and so fail on, with
            # SpikingJelly's nodes too), given a block only
            split_fn=lambda module: (module.proj_bn, module.neuron) if isinstance(module, models.VGGBlock) else (),
            can_chunk=lambda module, node_kind=node_kind: isinstance(module, node_kind),
        )
        options = [
            (path, type(m.checkpoint_fn.keywords["compressor"]).__name__, m.checkpoint_fn.keywords["chunks"])
            for path, m in net.named_modules()
            if isinstance(m, CheckpointWrapper)
        ]
        wrappers.append(options)
        functional.reset_net(net)  # as the model's forward does
    assert wrappers[1] == wrappers[0]
    if level == 1:
        assert wrappers[1] == [("0", "NoneType", 1), ("1", "BitSpikeCompressor", 1)]
    else:
        assert wrappers[1] == [
            ("0.proj_bn", "NoneType", 1),
            ("0.neuron", "NoneType", 2),
            ("1.proj_bn", "BitSpikeCompressor", 1),
            ("1.neuron", "NoneType", 2),
        ]
    _run_both(nets, lambda net, x: net(x), x)
    ours = dict(nets[1].named_buffers())
    for name, expected in nets[0].named_buffers():  # BatchNorm's (ours add their decays)
        torch.testing.assert_close(ours[name], expected, msg=name)
    nodes = [[m for m in net.modules() if isinstance(m, (neuron.BaseNode, sjn.SpikingJellyNode))] for net in nets]
    assert len(nodes[1]) == 2
    for expected, got in zip(*nodes, strict=True):
        torch.testing.assert_close(got.v, expected.v)


# -- train_imagenet: the trainer's zoo ResNet, converted with from_spikingjelly, through its training step ---------
@pytest.mark.slow  # ResNet-18's 11 M weights in float64, copied for the conversion and the EMA (4 s on one thread)
@pytest.mark.filterwarnings("ignore:`torch.cuda.amp.autocast:FutureWarning")  # the trainer's step, on CPU
def test_train_imagenet_trainer_step_with_from_spikingjelly(example):
    """``SResNetTrainer.load_model`` (``spiking_resnet18`` of ``IFNode``, given the soft reset) converted with
    ``from_spikingjelly``, then the trainer's own ``train_one_epoch`` on one batch (its ``[T, N, ...]`` repeat,
    label smoothing, gradient clipping, the EMA model updated every step) and its EMA evaluation: the loss,
    weights, BatchNorm statistics and EMA outputs are the reference's. The EMA copy is built after a dry run in
    eval mode (which leaves BatchNorm's statistics alone), as docs/compatibility.md says."""
    module = example("train_imagenet")
    from spikingjelly.activation_based.examples.common.tv_ref_classify import utils

    trainer = module.SResNetTrainer()
    args = trainer.get_args_parser().parse_args(["--T", "2", "--model", "spiking_resnet18", "--clip-grad-norm", "1"])
    args.model_ema_steps, args.lr_warmup_epochs = 1, 0
    torch.manual_seed(0)
    reference = trainer.load_model(args, num_classes=1000).double()
    for node in reference.modules():
        if isinstance(node, neuron.IFNode):
            node.v_reset = None
    ours = sjn.from_spikingjelly(reference)
    assert isinstance(ours.layer4[1].sn2, sjn.DecoupledIFNode) and ours.layer4[1].sn2.step_mode == "m"
    torch.manual_seed(1)
    image, target = torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2, torch.tensor([3, 7])
    initial = reference.conv1.weight.detach().clone()
    results = []
    for net in (reference, ours):
        net.eval()
        with torch.no_grad():
            net(trainer.preprocess_test_sample(args, image[:1]))
        functional.reset_net(net)
        net.train()
        ema = utils.ExponentialMovingAverage(net, decay=0.5)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
        loss, _, _ = trainer.train_one_epoch(
            net, criterion, optimizer, [(image, target)], torch.device("cpu"), 0, args, ema, None
        )
        ema.eval()
        with torch.no_grad():
            evaluated = trainer.process_model_output(args, ema(trainer.preprocess_test_sample(args, image)))
        functional.reset_net(ema)
        results.append((loss, net.state_dict(), evaluated))
    (loss_ref, state_ref, ema_ref), (loss, state, ema_out) = results
    assert loss == pytest.approx(loss_ref, rel=1e-12)
    assert not torch.equal(state_ref["conv1.weight"], initial)
    for name, expected in state_ref.items():
        torch.testing.assert_close(state[name], expected, msg=name)
    assert ema_ref.abs().sum() > 0
    torch.testing.assert_close(ema_out, ema_ref)


# -- spiking_dqn_state: the DQSN's optimisation step, its target net and the monitor that play() plots -----------
def test_spiking_dqn_state_training_step_target_net_and_play_monitor(example):
    """``train``'s ``select_action`` (one state, reset) and ``optimize_model`` (the policy's Q of a batch, the target
    net's max over the next states, the smooth L1 loss, clamped gradients, Adam, the resets), the target net
    loaded from the policy's state dict, and ``play``'s loaded policy with an ``OutputMonitor`` on its IF layer:
    the same Q values, weights and recorded spikes as with the soft-reset ``IFNode``. The monitor names our class
    (it finds modules by class, and ours is not an ``IFNode``)."""
    module = example("spiking_dqn_state")

    def build():
        return module.DQSN(4, 16, 2, T=4)

    policies = _twins(build, pair="if")
    targets = _twins(build, pair="if")
    torch.manual_seed(1)
    states = torch.randn(6, 4, dtype=torch.float64) * 2  # a replayed batch of CartPole states
    next_states, actions = torch.randn(6, 4, dtype=torch.float64) * 2, torch.tensor([[0], [1], [1], [0], [1], [0]])
    rewards, non_final = torch.ones(6, dtype=torch.float64), torch.tensor([True, True, False, True, True, True])
    results = []
    for policy, target in zip(policies, targets, strict=True):
        target.load_state_dict(policy.state_dict())
        optimizer = torch.optim.Adam(policy.parameters())
        with torch.no_grad():
            action = policy(states[:1]).max(1)[1]  # select_action
        functional.reset_net(policy)
        q = policy(states).gather(1, actions)
        next_q = torch.zeros(6, dtype=torch.float64)
        next_q[non_final] = target(next_states[non_final]).max(1)[0].detach()
        functional.reset_net(target)
        loss = nn.functional.smooth_l1_loss(q, (next_q * 0.999 + rewards).unsqueeze(1))
        optimizer.zero_grad()
        loss.backward()
        for p in policy.parameters():
            p.grad.data.clamp_(-1, 1)
        optimizer.step()
        functional.reset_net(policy)
        target.load_state_dict(policy.state_dict())  # TARGET_UPDATE
        played = build()  # play(): a fresh net loads the saved policy
        sjn.swap_nodes(played, PAIRS["if"][policy is policies[1]], neuron.BaseNode)
        played.double().load_state_dict(policy.state_dict())
        kind = neuron.IFNode if policy is policies[0] else sjn.DecoupledIFNode
        with torch.no_grad():
            spike_seq_monitor = monitor.OutputMonitor(played, kind)
            v = played(states[:1])
            spikes = torch.cat(spike_seq_monitor.records, 0)
            spike_seq_monitor.remove_hooks()
            functional.reset_net(played)
            assert torch.equal(target(states[:1]), v)
        results.append((action, q, policy.fc[0].weight, v, spikes))
    assert 0 < results[0][4].mean() < 1 and results[0][4].shape == (4, 16)
    for expected, got in zip(*results, strict=True):
        torch.testing.assert_close(got, expected)
    assert not monitor.OutputMonitor(policies[1], neuron.IFNode).monitored_layers
