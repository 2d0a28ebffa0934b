"""The SpikingJelly adapter, under whichever SpikingJelly is installed (2.0.0 or 0.0.0.0.14)."""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

pytest.importorskip("spikingjelly")

from snn_parallel.adapters import spikingjelly as sjn  # noqa: E402
from spikingjelly.activation_based import base, functional, layer, neuron  # noqa: E402
from spikingjelly.activation_based import surrogate as sj_surrogate  # noqa: E402

from snn_parallel import surrogate as sp_surrogate  # noqa: E402
from snn_parallel.neurons import DecoupledLIF, DynamicDecay  # noqa: E402

SJ2 = sjn.SJ2
C = 6
#: each node with the neuron-specific arguments that make it fire on the test inputs
NODES = [
    pytest.param(sjn.DynamicDecayNode, {}, id="dsn"),
    pytest.param(sjn.PRFNode, {"dt_range": (0.5, 1.0)}, id="prf"),
    pytest.param(sjn.PRFNode, {"dt_range": (0.5, 1.0), "reset": True}, id="prf_reset"),
    pytest.param(sjn.DecoupledLIFNode, {"tau": 2.0}, id="lif"),
    pytest.param(sjn.DecoupledLIFNode, {"tau": 2.0, "decay_input": True}, id="lif_decay_input"),
    pytest.param(sjn.DecoupledIFNode, {}, id="if"),
    pytest.param(sjn.DecoupledParametricLIFNode, {"init_tau": 2.0}, id="plif"),
    pytest.param(sjn.LTCNode, {}, id="ltc"),
    pytest.param(sjn.LTCNode, {"mode": "parallel"}, id="ltc_parallel"),
]
#: every node class
CLASSES = [
    sjn.DynamicDecayNode,
    sjn.PRFNode,
    sjn.DecoupledLIFNode,
    sjn.DecoupledIFNode,
    sjn.DecoupledParametricLIFNode,
    sjn.LTCNode,
    sjn.PSPLIFNode,
]
#: our soft-reset nodes beside the SpikingJelly node each stands in for, with the arguments both take
#: (SpikingJelly's node is built with ``v_reset=None, detach_reset=True`` too: the reset ours has)
TWINS = [
    pytest.param(sjn.DecoupledIFNode, neuron.IFNode, {}, id="if"),
    pytest.param(sjn.DecoupledLIFNode, neuron.LIFNode, {"tau": 2.0, "decay_input": False}, id="lif"),
    pytest.param(sjn.DecoupledLIFNode, neuron.LIFNode, {"tau": 3.0, "decay_input": True}, id="lif_decay_input"),
    pytest.param(sjn.DecoupledParametricLIFNode, neuron.ParametricLIFNode, {"init_tau": 3.0}, id="plif"),
    pytest.param(
        sjn.DecoupledParametricLIFNode,
        neuron.ParametricLIFNode,
        {"init_tau": 3.0, "decay_input": False},
        id="plif_no_decay_input",
    ),
]


def twins(
    ours: type, theirs: type, kwargs: dict, per_channel: bool | None = None, **common
) -> tuple[nn.Module, nn.Module]:
    """Our node and SpikingJelly's, built with ``kwargs`` and ``common`` (in float64 under :func:`float64`); ours
    with ``per_channel`` where it is given."""
    own = {} if per_channel is None else {"per_channel": per_channel}
    return ours(C, **kwargs, **common, **own), theirs(**kwargs, v_reset=None, detach_reset=True, **common)


def inputs(steps: int = 9, batch: int = 4) -> torch.Tensor:
    return torch.rand(steps, batch, C, dtype=torch.float64) * 2.5


def run_single(node: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    functional.set_step_mode(node, "s")
    functional.reset_net(node)
    return torch.stack([node(x_t) for x_t in x_seq.unbind(0)])


def run_multi(node: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    functional.set_step_mode(node, "m")
    functional.reset_net(node)
    return node(x_seq)


@pytest.mark.parametrize("cls, kwargs", NODES)
def test_single_step_equals_multi_step_equals_core(cls, kwargs):
    node = cls(C, **kwargs).double()
    x = inputs()
    multi = run_multi(node, x)
    assert 0 < multi.mean() < 1
    assert torch.equal(run_single(node, x), multi)
    assert torch.equal(node.core(x)[0], multi)
    assert node.v.shape == (4, C)
    if not isinstance(node.core, DecoupledLIF):  # its v is the membrane after the reset (TWINS)
        assert node.v is getattr(node, node.core.state_type._fields[0])


@pytest.mark.parametrize("cls, kwargs", NODES)
def test_store_v_seq_is_the_core_membrane(cls, kwargs):
    node = cls(C, step_mode="m", store_v_seq=True, **kwargs).double()
    x = inputs()
    node(x)
    _, membrane, _ = node.core(x, return_membrane=True)
    assert torch.equal(node.v_seq, membrane)
    functional.reset_net(node)
    assert node.v_seq is None and node.v is None


@pytest.mark.parametrize("cls, kwargs", NODES)
def test_single_steps_append_to_v_seq_until_a_reset(cls, kwargs):
    """With ``store_v_seq``, ``'s'`` mode appends each step's membrane to ``v_seq`` (SpikingJelly 2.0's rule), so
    that ``T`` steps give what ``'m'`` mode stores for the sequence."""
    node = cls(C, store_v_seq=True, **kwargs).double()
    x = inputs()
    run_multi(node, x)
    whole = node.v_seq
    functional.set_step_mode(node, "s")
    functional.reset_net(node)
    for t, x_t in enumerate(x.unbind(0)):
        node(x_t)
        assert node.v_seq.shape == (t + 1, *x_t.shape)
    torch.testing.assert_close(node.v_seq, whole, rtol=0, atol=1e-12)
    functional.reset_net(node)
    assert node.v_seq is None


@pytest.mark.skipif(not SJ2, reason="SpikingJelly 0.0.0.0.14 stores no v_seq in 's' mode")
@pytest.mark.parametrize("ours, theirs, kwargs", TWINS)
def test_single_step_v_seq_is_spikingjellys_before_the_reset(float64, ours, theirs, kwargs):
    """Our soft-reset nodes' ``v_seq`` in ``'s'`` mode is SpikingJelly's (after the reset) plus the threshold where
    it fired."""
    x = inputs()
    ours, theirs = twins(ours, theirs, kwargs, store_v_seq=True)
    spikes = [torch.stack([node(x_t) for x_t in x]) for node in (theirs, ours)]
    assert 0 < spikes[0].mean() < 1 and torch.equal(spikes[1], spikes[0])
    torch.testing.assert_close(ours.v_seq, theirs.v_seq + theirs.v_threshold * spikes[0], rtol=0, atol=1e-12)


def _stored_then_switched_off(node: nn.Module) -> torch.Tensor | None:
    node.store_v_seq = True
    node(inputs())
    assert node.v_seq is not None
    node.store_v_seq = False
    return node.v_seq


@pytest.mark.parametrize("cls, kwargs", NODES)
def test_switching_store_v_seq_drops_the_stored_v_seq(cls, kwargs):
    if SJ2:  # SpikingJelly 2.0's nodes drop v_seq when store_v_seq is set
        assert _stored_then_switched_off(neuron.LIFNode(step_mode="m").double()) is None
    assert _stored_then_switched_off(cls(C, step_mode="m", **kwargs).double()) is None


@pytest.mark.parametrize("cls, kwargs", NODES)
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_setting_v_starts_the_next_forward_from_it(cls, kwargs, step_mode):
    """``node.v = tensor`` (SpikingJelly's way to start from a given membrane) sets the first state
    field, rests the others, and the gradient reaches the tensor."""
    node = cls(C, step_mode=step_mode, **kwargs).double()
    x = inputs()
    v = torch.randn(4, C, dtype=torch.float64, requires_grad=True)
    node.v = v
    assert torch.equal(node.v, v)
    state = node.core.init_state(x[0])._replace(**{node.core.state_type._fields[0]: v})
    if step_mode == "m":
        expected, new_state = node.core(x, state)
        out = node(x)
    else:
        expected, new_state = node.core.step(x[0], state)
        out = node(x[0])
    assert torch.equal(out, expected)
    assert all(torch.equal(a, b) for a, b in zip(node.memories(), new_state, strict=True))
    (out.sum() + node.v.sum()).backward()
    assert v.grad is not None


@pytest.mark.parametrize("ours, theirs, kwargs", TWINS)
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_setting_v_matches_spikingjelly(float64, ours, theirs, kwargs, step_mode):
    """From the same membrane, our soft-reset nodes fire as SpikingJelly's."""
    x = inputs()
    v = torch.randn(4, C)
    spikes = []
    for node in twins(ours, theirs, kwargs, step_mode=step_mode):
        node.v = v.clone()
        spikes.append(node(x) if step_mode == "m" else torch.stack([node(x_t) for x_t in x]))
    assert 0 < spikes[0].mean() < 1
    assert torch.equal(spikes[1], spikes[0])


def _spikes_and_v(node: nn.Module, x: torch.Tensor, step_mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The spikes, and ``v`` after every step (``'s'``) or after the sequence (``'m'``)."""
    node.step_mode = step_mode
    if step_mode == "m":
        return node(x), node.v.unsqueeze(0)
    spikes, v = zip(*((node(x_t), node.v) for x_t in x), strict=True)
    return torch.stack(spikes), torch.stack(v)


@pytest.mark.parametrize("ours, theirs, kwargs", TWINS)
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_soft_reset_nodes_match_spikingjellys_own(float64, ours, theirs, kwargs, step_mode):
    """``DecoupledIFNode``, ``DecoupledLIFNode`` (with and without ``decay_input``) and ``DecoupledParametricLIFNode``
    give the spikes, ``v`` and input gradients of SpikingJelly's ``IFNode``, ``LIFNode`` and ``ParametricLIFNode``
    with ``v_reset=None, detach_reset=True``."""
    x = inputs(12)
    weights = torch.linspace(-1, 1, 12).view(12, 1, 1), torch.randn(4, C, generator=torch.Generator().manual_seed(1))
    results = []
    for node in twins(ours, theirs, kwargs, surrogate_function=sj_surrogate.ATan()):
        x_node = x.clone().requires_grad_()
        spikes, v = _spikes_and_v(node, x_node, step_mode)
        ((spikes * weights[0]).sum() + (v[-1] * weights[1]).sum()).backward()
        results.append((spikes, v, x_node.grad))
    (spikes, v, grad), (our_spikes, our_v, our_grad) = results
    assert 0 < spikes.mean() < 1 and torch.equal(our_spikes, spikes)
    torch.testing.assert_close(our_v, v, rtol=0, atol=1e-12)
    torch.testing.assert_close(our_grad, grad, rtol=1e-10, atol=1e-12)


def _detached_reset_reference(
    x: torch.Tensor, logit: torch.Tensor, v_threshold: float, decay_input: bool, surrogate: nn.Module
) -> torch.Tensor:
    """The PLIF's spikes with the gradient ``DecoupledParametricLIFNode`` documents, from its equations: the
    reset-free membrane u'_t = beta u'_{t-1} + g x_t (beta = sigmoid(logit), g = 1 - beta with ``decay_input``,
    else 1) carries the gradient; the subtracted thresholds are constants, b_{t+1} = sg(beta) (b_t + V_th sg(s_t));
    s_t = Theta(u'_t - b_t - V_th) with SpikingJelly's ``surrogate``."""
    beta = torch.sigmoid(logit)
    gain = 1 - beta if decay_input else 1.0
    u = b = torch.zeros_like(x[0])
    spikes = []
    for x_t in x:
        u = beta * u + gain * x_t
        spikes.append(surrogate(u - b - v_threshold))
        b = beta.detach() * (b + v_threshold * spikes[-1].detach())
    return torch.stack(spikes)


@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "per_channel"])
@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_plif_decay_gradient(float64, decay_input, step_mode, per_channel):
    """Where no neuron fires, the gradient of ``ParametricLIFNode``'s one ``w`` is minus that of our one
    ``decay_logit`` (w = -logit), or minus the sum of the per-channel ones. Where they fire, ours (and the input's)
    is the detached-reset reference's, which differs from PLIF's: PLIF's also flows through the decaying
    subtracted thresholds."""
    surrogate = sj_surrogate.ATan()
    time_weights = torch.linspace(-1, 1, 9).view(9, 1, 1)
    kwargs = {"init_tau": 3.0, "decay_input": decay_input, "surrogate_function": surrogate}
    for scale, fires in ((0.12, False), (1.0, True)):  # u < 0.9 < V_th at the smaller inputs, with either charge
        ours, theirs = twins(sjn.DecoupledParametricLIFNode, neuron.ParametricLIFNode, kwargs, per_channel=per_channel)
        x = inputs() * scale
        grads = []
        for node in (ours, theirs):
            x_node = x.clone().requires_grad_()
            spikes, _ = _spikes_and_v(node, x_node, step_mode)
            (spikes * time_weights).sum().backward()
            grads.append(x_node.grad)
        assert bool(spikes.any()) is fires and (not fires or spikes.mean() < 1)
        our_decay, their_w = ours.core.decay_logit.grad, theirs.w.grad
        assert our_decay.shape == ((C,) if per_channel else ())
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)
        x_ref = x.clone().requires_grad_()
        logit = ours.core.decay_logit.detach().clone().requires_grad_()
        expected = _detached_reset_reference(x_ref, logit, 1.0, decay_input, surrogate)
        assert torch.equal(expected.detach(), spikes)
        (expected * time_weights).sum().backward()
        torch.testing.assert_close(our_decay, logit.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grads[0], x_ref.grad, rtol=1e-10, atol=1e-12)
        assert torch.allclose(-our_decay.sum(), their_w, rtol=1e-10, atol=1e-12) is not fires


@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "per_channel"])
@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_spikingjelly_plif_state_dicts_load_into_the_node(float64, lazy, per_channel):
    """A ``ParametricLIFNode`` state dict (its one ``w``) loads into ``DecoupledParametricLIFNode``, as its one
    ``w`` or into every channel (a lazy per-channel node builds its channels from it at the first input): the same
    spikes and ``v`` as the PLIF; ``w`` and ``tau`` read as the PLIF's."""
    theirs = neuron.ParametricLIFNode(init_tau=2.0, v_reset=None, detach_reset=True, step_mode="m")
    with torch.no_grad():
        theirs.w.fill_(-0.9)  # trained to tau = 1 + e^0.9
    ours = sjn.DecoupledParametricLIFNode(None if lazy else C, step_mode="m", per_channel=per_channel)
    ours.load_state_dict(theirs.state_dict())
    assert ours.init_tau == (1 + math.exp(0.9) if lazy and per_channel else 2.0)
    x = inputs()
    spikes = theirs(x)
    assert 0 < spikes.mean() < 1 and torch.equal(ours(x), spikes)
    torch.testing.assert_close(ours.v, theirs.v, rtol=0, atol=1e-12)
    shape = (C,) if per_channel else ()
    torch.testing.assert_close(ours.w, theirs.w.detach().expand(shape), rtol=0, atol=1e-15)
    torch.testing.assert_close(ours.tau, (1 / theirs.w.sigmoid()).detach().expand(shape), rtol=0, atol=1e-12)
    assert list(ours.state_dict()) == ["core.decay_logit"]


def test_plif_w_reads_before_the_first_input_and_bad_w_is_refused():
    shared, per_channel = (
        sjn.DecoupledParametricLIFNode(init_tau=3.0),
        sjn.DecoupledParametricLIFNode(init_tau=3.0, per_channel=True),
    )
    assert isinstance(shared.w, torch.Tensor) and shared.w.requires_grad  # the parameter itself, before any input
    for node in (shared, per_channel):
        assert node.w.shape == () and node.w.item() == pytest.approx(-math.log(2.0))
        assert node.tau.item() == pytest.approx(3.0)
    for w, match in ((torch.zeros(3), r"w must be ParametricLIFNode's w, one finite number, got shape \(3,\)"),
                     (torch.tensor(float("nan")), "one finite number")):  # fmt: skip
        for features, per in ((None, False), (C, False), (None, True), (C, True)):
            with pytest.raises(ValueError, match=match):
                sjn.DecoupledParametricLIFNode(features, per_channel=per).load_state_dict({"w": w})
    with pytest.raises(ValueError, match=r"time constant 1 \+ exp\(-w\) of w must be > 1"):
        sjn.DecoupledParametricLIFNode(per_channel=True).load_state_dict({"w": torch.tensor(60.0)})
    with pytest.raises(TypeError, match="per_channel must be a bool"):
        sjn.DecoupledParametricLIFNode(per_channel="yes")


def test_setting_v_checks_the_value():
    node = sjn.DecoupledLIFNode(C)
    with pytest.raises(TypeError, match=r"DecoupledLIFNode\.v must be a tensor"):
        node.v = 0.5
    node(torch.rand(4, C))
    with pytest.raises(ValueError, match=r"DecoupledLIFNode\.v must have shape \(4, 6\), got \(2, 6\)"):
        node.v = torch.zeros(2, C)


@pytest.mark.parametrize("store_v_seq", [False, True])
def test_membrane_asked_of_the_core_only_for_v_seq(monkeypatch, store_v_seq):
    """A multi-step node asks its core for the membrane only when it stores ``v_seq`` (without it the DSN kernels
    skip writing the membrane); the functional forward never asks. The spikes are the same either way."""
    asked = []
    with_membrane = DynamicDecay.update_sequence
    monkeypatch.setattr(DynamicDecay, "update_sequence", lambda self, *a: asked.append(True) or with_membrane(self, *a))
    node = sjn.DynamicDecayNode(C, step_mode="m", store_v_seq=store_v_seq).double()
    x = inputs()
    spikes = node(x)
    assert asked == [True] * store_v_seq
    assert (node.v_seq is not None) == store_v_seq
    if SJ2:
        functional.reset_net(node)
        (out,), _ = base.to_functional_forward(node)((x,), tuple(node._memories.values()))
        assert asked == [True] * store_v_seq and torch.equal(out, spikes)
    assert torch.equal(spikes, node.core(x, return_membrane=True)[0])


@pytest.mark.parametrize("cls, kwargs", NODES)
def test_reset_net_repeats_and_state_carries(cls, kwargs):
    node = cls(C, step_mode="m", **kwargs).double()
    x = inputs()
    first = node(x)
    second = node(x)  # carries the state on, as the core does with its state
    assert torch.equal(torch.cat([first, second]), node.core(torch.cat([x, x]))[0])
    functional.reset_net(node)
    assert torch.equal(node(x), first)


@pytest.mark.parametrize("cls, kwargs", NODES)
def test_detach_net_cuts_the_graph(cls, kwargs):
    node = cls(C, step_mode="m", **kwargs)
    x = torch.rand(5, 2, C, requires_grad=True) * 2
    node(x).sum().backward(retain_graph=True)
    functional.detach_net(node)
    assert all(not m.requires_grad for m in node.memories() if isinstance(m, torch.Tensor))
    x2 = torch.rand(5, 2, C, requires_grad=True)
    node(x2).sum().backward()  # would fail if the old graph were still attached (freed by the first backward)
    assert x2.grad is not None


@pytest.mark.parametrize("cls, kwargs", NODES)
def test_set_step_mode_and_multistep_container(cls, kwargs):
    node = cls(C, **kwargs).double()
    assert node.step_mode == "s"
    functional.set_step_mode(node, "m")
    assert node.step_mode == "m"
    x = inputs()
    expected = run_multi(node, x)
    functional.set_step_mode(node, "s")
    wrapped = layer.MultiStepContainer(node)
    functional.reset_net(wrapped)
    assert torch.equal(wrapped(x), expected)


@pytest.mark.parametrize("cls, kwargs", NODES)
def test_fires_at_exactly_the_threshold(cls, kwargs):
    extra = {"beta_a": 0.0} if cls is sjn.LTCNode else {}  # constant threshold b0 for LTC
    probe = cls(1, step_mode="m", store_v_seq=True, **kwargs, **extra).double()
    x = torch.full((1, 1, 1), 0.7, dtype=torch.float64)
    probe(x)
    level = probe.v_seq[0, 0, 0].item()
    for threshold, expected in ((level, 1.0), (math.nextafter(level, math.inf), 0.0)):
        node = cls(1, step_mode="m", v_threshold=threshold, **kwargs, **extra).double()
        node.load_state_dict(probe.state_dict())
        assert node(x).item() == expected
        functional.set_step_mode(node, "s")
        functional.reset_net(node)
        assert node(x[0]).item() == expected


def test_surrogates_resolved_with_the_inclusive_rule():
    assert isinstance(sjn.DecoupledLIFNode(C).core.surrogate, sp_surrogate.Sigmoid)
    assert isinstance(sjn.LTCNode(C).core.surrogate, sp_surrogate.MultiGaussian)
    for node in (sjn.DecoupledLIFNode(C), sjn.LTCNode(C), sjn.PRFNode(C, surrogate_function="atan")):
        assert node.core.surrogate.inclusive
    passed = sj_surrogate.ATan()
    mapped = sjn.DynamicDecayNode(C, surrogate_function=passed).core.surrogate  # SpikingJelly's ATan is ours
    assert isinstance(mapped, sp_surrogate.ATan) and mapped.source is passed and mapped.inclusive
    wrapped = sjn.DynamicDecayNode(C, surrogate_function=sj_surrogate.SoftSign()).core.surrogate
    assert isinstance(wrapped, sp_surrogate.ForeignSurrogate) and wrapped.inclusive


def make_net(node_factory) -> nn.Sequential:
    return nn.Sequential(
        layer.Linear(8, 16, step_mode="m"),
        node_factory(16),
        layer.Linear(16, 4, step_mode="m"),
        node_factory(4),
    ).double()


SWAPS = [
    pytest.param(lambda n: sjn.DynamicDecayNode(n, v_threshold=0.5, step_mode="m"), id="dsn"),
    pytest.param(lambda n: sjn.PRFNode(n, v_threshold=0.5, step_mode="m", dt_range=(0.5, 1.0)), id="prf"),
    pytest.param(lambda n: sjn.DecoupledLIFNode(n, tau=2.0, v_threshold=0.5, step_mode="m"), id="lif"),
    pytest.param(lambda n: sjn.LTCNode(n, step_mode="m"), id="ltc"),
]


@pytest.mark.parametrize("swap", SWAPS)
def test_swap_into_spikingjelly_network_trains_and_runs_step_by_step(swap):
    net = make_net(lambda n: neuron.LIFNode(tau=2.0, v_threshold=0.5, step_mode="m"))
    x = torch.rand(8, 16, 8, dtype=torch.float64) * 2
    target = nn.functional.one_hot(torch.arange(16) % 4, 4).double()
    functional.reset_net(net)  # populates SpikingJelly 2.0's reset cache with the LIF nodes
    net[1], net[3] = swap(16), swap(4)  # the one-class swap
    net.double()
    if SJ2:
        functional.invalidate_reset_cache(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
    losses = []
    for _ in range(25):
        functional.reset_net(net)
        loss = nn.functional.mse_loss(net(x).mean(0), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < losses[0]
    with torch.no_grad():
        multi = run_multi(net, x)
        assert torch.equal(run_single(net, x), multi)


@pytest.mark.skipif(not SJ2, reason="SpikingJelly 2.0 reset cache")
def test_reset_cache_needs_invalidation_after_a_swap():
    net = nn.Sequential(layer.Linear(C, C, step_mode="m"), neuron.LIFNode(step_mode="m")).double()
    functional.reset_net(net)
    old = net[1]  # alive, so the cached module list stays valid (a dead entry clears the cache)
    net[1] = sjn.DecoupledLIFNode(C, step_mode="m").double()
    net(inputs())
    functional.reset_net(net)
    assert net[1].v is not None  # stale cache: the new node was not reset
    functional.invalidate_reset_cache(net)
    functional.reset_net(net)
    assert net[1].v is None and old.v == 0.0


@pytest.mark.skipif(not SJ2, reason="functional step methods are SpikingJelly 2.0 only")
@pytest.mark.parametrize("cls, kwargs", NODES)
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_functional_forward_is_pure_and_matches_forward(cls, kwargs, step_mode):
    net = nn.Sequential(layer.Linear(C, C, step_mode=step_mode), cls(C, step_mode=step_mode, **kwargs)).double()
    node = net[1]
    x = inputs(6)
    x = x if step_mode == "m" else x[0]
    states = tuple(base.extract_memories(net))
    assert len(states) == len(node.core.state_type._fields)
    f = base.to_functional_forward(net)
    (out1,), states1 = f((x,), states)
    (out2,), states2 = f((x,), states1)
    assert all(s is None for s in base.extract_memories(net))  # pure: memories untouched
    assert torch.equal(net(x), out1) and torch.equal(net(x), out2)
    assert all(torch.equal(a, b) for a, b in zip(base.extract_memories(net), states2, strict=True))
    (out_node,), _ = base.to_functional_forward(node)((net[0](x),), states1)
    assert torch.equal(out_node, out2)


@pytest.mark.parametrize("cls, kwargs", NODES)
def test_functional_forward_refuses_a_wrong_number_of_states(cls, kwargs):
    """One state per memory, as SpikingJelly 2.0's ``to_functional_forward`` demands (a ``ValueError``)."""
    x = inputs()
    if SJ2:
        with pytest.raises(ValueError):
            base.to_functional_forward(neuron.LIFNode())((x[0],), (x[0], x[0]))
    node = cls(C, **kwargs).double()
    count = len(node.core.state_type._fields)
    for states in ((x[0],) * (count - 1), (x[0],) * (count + 1)):
        match = rf"states must hold {count} entries for {cls.__name__}.*got {len(states)}"
        with pytest.raises(ValueError, match=match):
            node.single_step_functional_forward((x[0],), states)
        with pytest.raises(ValueError, match=match):
            node.multi_step_functional_forward((x,), states)


@pytest.mark.skipif(SJ2, reason="backends exist on SpikingJelly 0.0.0.0.14 only")
@pytest.mark.parametrize("cls, kwargs", [*NODES, pytest.param(sjn.PSPLIFNode, {}, id="psplif")])
def test_legacy_backends(cls, kwargs):
    net = nn.Sequential(layer.Linear(C, C, step_mode="m"), cls(C, step_mode="m", **kwargs)).double()
    node = net[1]
    assert node.supported_backends == ("torch", "cupy")
    functional.set_backend(net, "cupy")
    assert node.backend == node.core.ops_backend == "cupy"  # 'm' mode runs the CuPy kernels
    with pytest.raises(
        RuntimeError, match=rf"{cls.__name__}: backend='cupy' runs the CuPy kernels .* need CUDA tensors"
    ):
        net(inputs())  # a CPU tensor
    functional.set_step_mode(net, "s")
    assert node.supported_backends == ("torch",)
    assert net(inputs()[0]).shape == (4, C)  # 's' mode steps in torch whatever the backend, as SJ's LIFNode
    functional.set_step_mode(net, "m")
    functional.set_backend(net, "torch")
    assert node.core.ops_backend == "torch"
    functional.reset_net(net)
    assert net(inputs()).shape == (9, 4, C)
    with pytest.raises(NotImplementedError, match="backend"):
        cls(C, step_mode="s", backend="cupy", **kwargs)


@pytest.mark.skipif(not SJ2, reason="SpikingJelly 2.0 has no backend argument")
def test_backend_argument_rejected_on_sj2():
    with pytest.raises(TypeError, match="backend"):
        sjn.DecoupledLIFNode(C, backend="torch")
    assert not hasattr(sjn.DecoupledLIFNode(C), "backend")


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: sjn.DecoupledLIFNode(C, v_threshold=1), TypeError, "v_threshold"),
        (lambda: sjn.LTCNode(C, v_threshold=1), TypeError, "v_threshold"),
        (lambda: sjn.DecoupledLIFNode(C, v_reset=0.0), ValueError, "v_reset"),
        (lambda: sjn.DynamicDecayNode(C, v_reset=0.0), ValueError, "v_reset"),
        (lambda: sjn.PRFNode(C, v_reset=0.0), ValueError, "v_reset"),
        (lambda: sjn.LTCNode(C, v_reset=None), ValueError, "v_reset"),
        (lambda: sjn.DecoupledLIFNode(C, detach_reset=False), ValueError, "detach_reset"),
        (lambda: sjn.PRFNode(C, reset=True, detach_reset=False), ValueError, "detach_reset"),
        (lambda: sjn.LTCNode(C, detach_reset=True), ValueError, "detach_reset"),
        (lambda: sjn.DecoupledLIFNode(C, detach_reset=1), TypeError, "detach_reset"),
        (lambda: sjn.DecoupledLIFNode(C, decay_input=1), TypeError, "decay_input must be a bool"),
        (
            lambda: sjn.DecoupledLIFNode(C, tau=math.inf, decay_input=True),
            ValueError,
            "decay_input=True needs a finite",
        ),
        (lambda: sjn.DecoupledIFNode(C, v_reset=0.0), ValueError, "v_reset=0.0 is not supported by DecoupledIFNode"),
        (lambda: sjn.DecoupledIFNode(C, detach_reset=False), ValueError, "detach_reset=False is not supported"),
        (lambda: sjn.DecoupledIFNode(C, v_threshold=1), TypeError, r"v_threshold must be a float .*write 1\.0"),
        (lambda: sjn.DecoupledIFNode(C, tau=2.0), TypeError, "tau"),
        (lambda: sjn.DecoupledParametricLIFNode(C, init_tau=1.0), ValueError, "init_tau must be > 1, got 1.0"),
        (lambda: sjn.DecoupledParametricLIFNode(C, init_tau=0.5), ValueError, "init_tau must be > 1"),
        (lambda: sjn.DecoupledParametricLIFNode(C, init_tau=math.nan), ValueError, "init_tau must be a finite"),
        (lambda: sjn.DecoupledParametricLIFNode(C, init_tau=math.inf), ValueError, "init_tau must be a finite"),
        (lambda: sjn.DecoupledParametricLIFNode(C, init_tau=2), TypeError, r"init_tau must be a float .*write 2\.0"),
        (lambda: sjn.DecoupledParametricLIFNode(C, decay_input=None), TypeError, "decay_input must be a bool"),
        (lambda: sjn.DecoupledParametricLIFNode(C, v_reset=0.0), ValueError, "v_reset"),
        (lambda: sjn.DecoupledParametricLIFNode(C, detach_reset=False), ValueError, "detach_reset"),
        (lambda: sjn.DecoupledParametricLIFNode(C, tau=2.0), TypeError, "tau"),
        (lambda: sjn.DecoupledLIFNode(C, step_mode="x"), ValueError, "step_mode"),
        (lambda: sjn.PRFNode(C, surrogate_function="nope"), ValueError, "surrogate_function"),
        (lambda: sjn.PRFNode(C, surrogate_function=3), TypeError, "surrogate_function"),
        (lambda: sjn.DynamicDecayNode(C, kernel_size=0), ValueError, "kernel_size"),
    ],
)
def test_bad_arguments_name_the_argument(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_accepted_reset_arguments():
    sjn.DynamicDecayNode(C, detach_reset=True)
    sjn.PRFNode(C, detach_reset=False)  # no reset: detach_reset has no effect
    sjn.LTCNode(C, v_reset=0.0, detach_reset=False)


def test_a_node_passes_its_spikingjelly_arguments_to_its_base_by_name_or_by_position():
    """The built-in nodes pass them by position; a node written by name (as before) runs the same."""

    class ByName(sjn.SpikingJellyNode):
        def __init__(self, features, *, v_reset=None, detach_reset=True, step_mode="s"):
            surrogate = sp_surrogate.resolve("sigmoid", inclusive=True)
            super().__init__(
                DecoupledLIF(features, tau=2.0, surrogate=surrogate),
                reset=sjn.SOFT_DETACHED,
                v_reset=v_reset,
                detach_reset=detach_reset,
                step_mode=step_mode,
                store_v_seq=False,
                backend=None,
            )

    x_seq = inputs().float()
    by_name = run_multi(ByName(C), x_seq)
    assert 0 < by_name.sum() < by_name.numel()
    assert torch.equal(by_name, run_multi(sjn.DecoupledLIFNode(C, tau=2.0), x_seq))
    with pytest.raises(ValueError, match="detach_reset=False is not supported by ByName"):
        ByName(C, detach_reset=False)


@pytest.mark.parametrize("cls", [sjn.DecoupledLIFNode, sjn.DecoupledIFNode, sjn.DecoupledParametricLIFNode])
def test_wrong_inputs_forwarded_from_the_core(cls):
    """Wrong shapes, dtypes, NaN and empty sequences raise the core's errors, naming the input."""
    node = cls(C, step_mode="m")
    bad = [
        (torch.rand(3, 2, C + 1), ValueError, "x_seq"),
        (torch.ones(3, 2, C, dtype=torch.int64), TypeError, "x_seq must have dtype"),
        (torch.full((3, 2, C), math.nan), ValueError, "x_seq contains NaN"),
        (torch.rand(0, 2, C), ValueError, "x_seq is an empty sequence"),
    ]
    for x, error, match in bad:
        with pytest.raises(error, match=match):
            node(x)
    functional.set_step_mode(node, "s")
    for x, error, match in bad[:-1]:  # one step of each
        with pytest.raises(error, match=match.replace("x_seq", "x_t")):
            node(x[0])
    with pytest.raises(ValueError, match="x_seq"):
        sjn.LTCNode(C, step_mode="m")(torch.rand(3, 2, C, 5))


def test_register_is_idempotent_reversible_and_never_overwrites():
    from spikingjelly.activation_based import surrogate as sj_sur

    names = [cls.__name__ for cls in CLASSES]
    assert not any(hasattr(neuron, n) for n in names)  # importing registered nothing
    sj_sur.MultiGaussian = sentinel = object()  # pretend SpikingJelly defines this name
    try:
        with pytest.warns(RuntimeWarning, match="MultiGaussian"):
            sjn.register()
        sjn.register()  # idempotent, no second warning for the same skip
        assert all(getattr(neuron, cls.__name__) is cls for cls in CLASSES)
        assert sj_sur.DoubleGaussian is sp_surrogate.DoubleGaussian
        assert sj_sur.MultiGaussian is sentinel
        assert sjn.skipped == ["spikingjelly.activation_based.surrogate.MultiGaussian"]
        net = neuron.DecoupledLIFNode(C, step_mode="m")
        assert isinstance(net, sjn.DecoupledLIFNode)
        sjn.unregister()
        assert not any(hasattr(neuron, n) for n in names)
        assert not hasattr(sj_sur, "DoubleGaussian") and sj_sur.MultiGaussian is sentinel
        sjn.unregister()  # idempotent
    finally:
        del sj_sur.MultiGaussian
        sjn.unregister()
    sjn.register()
    assert sj_sur.MultiGaussian is sp_surrogate.MultiGaussian and sjn.skipped == []
    sjn.unregister()
    assert not hasattr(sj_sur, "MultiGaussian")


def test_import_registers_nothing_in_a_fresh_process():
    code = (
        "import snn_parallel, snn_parallel.adapters.spikingjelly\n"
        "from spikingjelly.activation_based import neuron, surrogate\n"
        "assert not hasattr(neuron, 'DynamicDecayNode') and not hasattr(surrogate, 'MultiGaussian')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- TSSL-BP's PSPLIF ------------------------------------------------------------------------------
def test_psplif_node_steps_and_sequences_match_the_core():
    from snn_parallel.neurons import PSPLIF

    torch.manual_seed(0)
    x = 1.5 * torch.rand(6, 2, C, 3)
    node = sjn.PSPLIFNode(C, tau=5.0, tau_s=3.0, step_mode="m", store_v_seq=True)
    out = node(x)
    core = PSPLIF(C, tau_m=5.0, tau_s=3.0, surrogate=sp_surrogate.Sigmoid(inclusive=True))
    expected, membrane, state = core(x, return_membrane=True)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(node.v_seq, membrane)
    torch.testing.assert_close(node.v, state.u)
    functional.reset_net(node)
    node.step_mode = "s"
    torch.testing.assert_close(torch.stack([node(x_t) for x_t in x.unbind(0)]), expected)
    with pytest.raises(ValueError, match="v_reset"):
        sjn.PSPLIFNode(C, v_reset=None)
    with pytest.raises(ValueError, match="decay_input"):
        sjn.PSPLIFNode(C, decay_input=True)


# -- SpikingJelly's model zoo ----------------------------------------------------------------
class _Zoo(dict):
    """The zoo modules by name; a test asking for one that this SpikingJelly lacks (0.0.0.0.14 has the
    ResNets, the VGGs and ``parametric_lif_net`` only) is skipped."""

    def __missing__(self, name: str) -> None:
        pytest.skip(f"this SpikingJelly has no activation_based.model.{name}")


@pytest.fixture(scope="module")
def zoo() -> _Zoo:
    """SpikingJelly's zoo modules. They import one helper from torchvision, which does not
    import on a CPU-only machine with torchvision's CUDA wheel: stub that helper (tests only)."""
    import importlib
    import types
    from pathlib import Path

    import spikingjelly.activation_based as sj

    every = (
        "spiking_resnet",
        "sew_resnet",
        "spiking_vgg",
        "parametric_lif_net",
        "spikformer",
        "spike_driven_transformer",
        "qkformer",
        "maxformer",
        "ms_resnet",
        "masnn",
        "spike_dhs",
    )
    names = [name for name in every if (Path(sj.__file__).parent / "model" / f"{name}.py").exists()]

    def imported() -> _Zoo:
        return _Zoo({name: importlib.import_module(f"spikingjelly.activation_based.model.{name}") for name in names})

    try:
        return imported()
    except (ImportError, RuntimeError, OSError):
        pass
    stub = {name: types.ModuleType(name) for name in ("torchvision", "torchvision.models", "torchvision.models.utils")}
    stub["torchvision.models.utils"].load_state_dict_from_url = None  # pretrained weights are never loaded here
    saved = {name: sys.modules.get(name) for name in stub}
    sys.modules.update(stub)
    try:
        return imported()
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


ZOO_NODES = [
    sjn.DynamicDecayNode,
    sjn.PRFNode,
    sjn.DecoupledLIFNode,
    sjn.DecoupledIFNode,
    sjn.DecoupledParametricLIFNode,
    sjn.PSPLIFNode,
]


def _node_kwargs(node: type) -> dict:
    """The zoo's usual keyword arguments, as far as the node expresses them."""
    return {"surrogate_function": sj_surrogate.ATan(), "detach_reset": node is not sjn.PSPLIFNode}


def _firing_and_equal_steps(net: nn.Module, node: type, x: torch.Tensor, *, every_layer: bool = True) -> None:
    """Forward + backward in multi-step mode with every node layer firing (or some, where the
    zoo's own initialisation leaves its classifier layers silent for SpikingJelly's LIFNode too);
    then in eval mode the multi-step output equals the single-step one."""
    rates = []
    hooks = [
        m.register_forward_hook(lambda mod, args, out: rates.append(float(out.detach().mean())))
        for m in net.modules()
        if isinstance(m, node)
    ]
    functional.set_step_mode(net, "m")
    functional.reset_net(net)
    net(x).sum().backward()
    for hook in hooks:
        hook.remove()
    assert rates and (min(rates) if every_layer else max(rates)) > 0, rates  # at T = 4, with the defaults
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    net.eval()
    with torch.no_grad():
        multi = run_multi(net, x)
        assert torch.equal(run_single(net, x), multi)


@pytest.mark.parametrize("node", ZOO_NODES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("builder", ["spiking_resnet.spiking_resnet18", "sew_resnet.sew_resnet18"])
def test_zoo_resnets_build_train_and_step_with_every_node(zoo, builder, node):
    torch.manual_seed(0)
    module, name = builder.split(".")
    extra = {"cnf": "ADD"} if module == "sew_resnet" else {}
    net = getattr(zoo[module], name)(spiking_neuron=node, num_classes=10, **extra, **_node_kwargs(node)).double()
    _firing_and_equal_steps(net, node, torch.rand(4, 2, 3, 16, 16, dtype=torch.float64))


def test_zoo_refuses_ltc_on_feature_maps(zoo):
    net = zoo["spiking_resnet"].spiking_resnet18(spiking_neuron=sjn.LTCNode, num_classes=10)
    functional.set_step_mode(net, "m")
    with pytest.raises(ValueError, match=r"LTC accepts \[T, B, C\] sequences"):
        net(torch.rand(2, 1, 3, 16, 16))


@pytest.mark.slow
@pytest.mark.parametrize("node", ZOO_NODES, ids=lambda c: c.__name__)
def test_zoo_vgg_and_plif_nets_with_every_node(zoo, node):
    torch.manual_seed(0)
    vgg = zoo["spiking_vgg"].spiking_vgg11_bn(spiking_neuron=node, num_classes=10, **_node_kwargs(node))
    _firing_and_equal_steps(vgg, node, torch.rand(4, 1, 3, 32, 32), every_layer=False)
    plif = zoo["parametric_lif_net"].MNISTNet(channels=8, spiking_neuron=node, **_node_kwargs(node)).double()
    _firing_and_equal_steps(plif, node, torch.rand(4, 2, 1, 28, 28, dtype=torch.float64), every_layer=False)


def test_a_spikingjelly_plif_network_checkpoint_loads_into_the_network_built_with_ours(zoo, float64):
    """``parametric_lif_net.MNISTNet`` of ``ParametricLIFNode`` (each layer's ``w`` trained apart), its state dict
    loaded strictly into the same network built with ``DecoupledParametricLIFNode`` (lazy nodes, as the zoo builds
    them, and other weights): the same outputs."""
    plif_net = zoo["parametric_lif_net"]
    kwargs = {"channels": 4, "surrogate_function": sj_surrogate.ATan(), "detach_reset": True, "v_threshold": 0.1}
    theirs = plif_net.MNISTNet(spiking_neuron=neuron.ParametricLIFNode, v_reset=None, **kwargs)
    nodes = [m for m in theirs.modules() if isinstance(m, neuron.ParametricLIFNode)]
    with torch.no_grad():
        for i, node in enumerate(nodes):
            node.w.fill_(0.5 - 0.5 * i)
    ours = plif_net.MNISTNet(spiking_neuron=sjn.DecoupledParametricLIFNode, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    x = torch.rand(4, 2, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 3
    out = []
    for net in (theirs, ours):
        functional.set_step_mode(net, "m")
        out.append(net.eval()(x))
    assert out[0].abs().sum() > 0
    torch.testing.assert_close(out[1], out[0], rtol=0, atol=1e-12)
    ours_nodes = [m for m in ours.modules() if isinstance(m, sjn.DecoupledParametricLIFNode)]
    for node, their_node in zip(ours_nodes, nodes, strict=True):
        torch.testing.assert_close(node.w, their_node.w.detach().expand_as(node.w), rtol=0, atol=1e-12)


#: the zoo's attention and membrane-shortcut models, tiny: (module, builder, input shape [T, B, C, H, W])
ZOO_SEQUENCE_MODELS = {
    "spikformer": (
        "spikformer",
        lambda m, **kw: m.Spikformer(
            T=2, img_size_h=16, img_size_w=16, patch_size=4, num_classes=10, embed_dims=16, num_heads=2, mlp_ratio=2,
            depths=1, **kw,
        ),
        (2, 2, 3, 16, 16),
    ),
    "spike_driven_transformer": (
        "spike_driven_transformer",
        lambda m, **kw: m.SpikeDrivenTransformer(
            T=2, num_classes=10, embed_dims=16, num_heads=2, depths=1, mlp_ratio=2, **kw
        ),
        (2, 2, 3, 16, 16),
    ),
    "qkformer": (
        "qkformer",
        lambda m, **kw: m.QKFormer(
            T=2, num_classes=10, embed_dims=16, num_heads=(1, 2, 2), depths=(1, 1, 1), mlp_ratio=2, **kw
        ),
        (2, 2, 3, 32, 32),
    ),
    "maxformer": (
        "maxformer",
        lambda m, **kw: m.MaxFormer(
            T=2, num_classes=10, embed_dims=16, depths=(1, 1, 1), mlp_ratio=2, cifar=True, **kw
        ),
        (2, 2, 3, 32, 32),
    ),
    "ms_resnet": (
        "ms_resnet",
        lambda m, **kw: m.MSResNet(
            T=2, num_classes=10, layers=(1, 1, 1), base_channels=4, stem_kernel_size=3, stem_stride=1, **kw
        ),
        (2, 2, 3, 16, 16),
    ),
    "att_ms_resnet": (
        "masnn",
        lambda m, **kw: m.AttMSResNet(
            T=2, num_classes=10, layers=(1, 1, 1), base_channels=4, stem_kernel_size=3, stem_stride=1,
            reduction_c=2, dropout=0.0, **kw,
        ),
        (2, 2, 3, 16, 16),
    ),
}  # fmt: skip


@pytest.mark.parametrize("model", sorted(ZOO_SEQUENCE_MODELS))
def test_zoo_attention_and_shortcut_models_with_our_nodes(zoo, model):
    """Spiking self-attention (Spikformer's, the spike-driven one, QKFormer's, MaxFormer's), MS-ResNet's
    membrane shortcuts and MA-SNN's attention, on ``[T, B, C, H, W]``: built with ``DecoupledLIFNode``
    they give the outputs and weight gradients of the same model built with SpikingJelly's soft-reset
    ``LIFNode`` (input not decayed, reset detached), with spikes in most node layers; the other nodes
    run forward and backward with a gradient for every parameter."""
    module, build, shape = ZOO_SEQUENCE_MODELS[model]
    torch.manual_seed(1)
    x = torch.rand(*shape, dtype=torch.float64) * 2
    lif = {"tau": 2.0, "decay_input": False, "v_reset": None, "detach_reset": True}
    nets = []
    for node, kwargs in ((neuron.LIFNode, lif), (sjn.DecoupledLIFNode, {"tau": 2.0})):
        torch.manual_seed(0)
        nets.append(build(zoo[module], spiking_neuron=node, surrogate_function=sj_surrogate.ATan(), **kwargs).double())
    fired = []
    for m in nets[1].modules():
        if isinstance(m, sjn.DecoupledLIFNode):
            m.register_forward_hook(lambda mod, args, out: fired.append(bool(out.detach().any())))
    out = []
    for net in nets:
        functional.reset_net(net)
        out.append(net(x))
        out[-1].square().sum().backward()
    assert sum(fired) >= 0.75 * len(fired), fired  # at T = 2 a layer or two of the tiny models stays silent
    torch.testing.assert_close(out[1], out[0], rtol=0, atol=0)
    reference = dict(nets[0].named_parameters())
    for name, p in nets[1].named_parameters():
        torch.testing.assert_close(p.grad, reference[name].grad, rtol=1e-9, atol=1e-12, msg=name)
    for node in (sjn.DynamicDecayNode, sjn.PRFNode, sjn.PSPLIFNode):
        net = build(zoo[module], spiking_neuron=node, **_node_kwargs(node)).double()
        net(x).square().sum().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters()), node.__name__


def test_nodes_infer_the_feature_count_and_load_state_dicts():
    for cls in CLASSES:
        lazy = cls(step_mode="m").double()
        x = inputs()
        out = lazy(x)
        assert lazy.core.features == C
        eager = cls(C, step_mode="m").double()
        eager.load_state_dict(lazy.state_dict())
        assert torch.equal(eager(x), out)
        fresh = cls(step_mode="s")
        fresh.load_state_dict(lazy.state_dict())
        per_channel = any(t.dim() for t in (*lazy.parameters(), *lazy.buffers()))  # a shared 0-d one has no C
        assert fresh.core.features == (C if per_channel else None)


def test_dsn_tau_is_refused_with_the_reason():
    with pytest.raises(TypeError, match=r"DynamicDecayNode takes no tau .*membrane time constant.*dsn_tau"):
        sjn.DynamicDecayNode(tau=2.0)
    assert sjn.DynamicDecayNode(dsn_tau=0.5).core.tau == 0.5
    assert sjn.DynamicDecayNode().core.tau == 0.25  # the paper's value


@pytest.mark.parametrize("cls", CLASSES)
def test_nodes_train_under_cpu_autocast(cls):
    net = nn.Sequential(layer.Linear(C, C, step_mode="m"), cls(step_mode="m"))
    x = torch.rand(5, 2, C) * 3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    out.float().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("cls", CLASSES)
def test_nir_export_refuses_every_node_with_the_reason(cls):
    pytest.importorskip("nir")
    pytest.importorskip("nirtorch")
    try:
        from spikingjelly.activation_based.nir_exchange import export_to_nir
    except ImportError:
        pytest.skip("this SpikingJelly has no NIR exchange")
    net = nn.Sequential(layer.Linear(4, C, step_mode="m"), cls(step_mode="m"))
    with pytest.raises(TypeError, match=rf"{cls.__name__} cannot be exported to NIR.*: .*NIR"):
        export_to_nir(net, torch.rand(3, 2, 4))
    reference = nn.Sequential(layer.Linear(4, C, step_mode="m"), neuron.LIFNode(step_mode="m", v_reset=0.0))
    assert export_to_nir(reference, torch.rand(3, 2, 4)) is not None  # the exporter itself works


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: sjn.PRFNode(v_threshold=float("nan")), ValueError, "v_threshold must be a finite number"),
        (lambda: sjn.DecoupledLIFNode(v_threshold=float("inf")), ValueError, "v_threshold must be a finite number"),
        (lambda: sjn.LTCNode(beta_a=float("nan")), ValueError, "beta_a must be a finite number"),
        (lambda: sjn.PSPLIFNode(tau_s=float("inf")), ValueError, "tau_s must be a finite number"),
        (lambda: sjn.PRFNode(dt_range=(1,)), ValueError, "dt_range must be a pair"),
        (lambda: sjn.PRFNode(reset="yes"), TypeError, "reset must be a bool"),
    ],
)
def test_node_constants_are_checked(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_ann2snn_conversion_runs_with_decoupled_if_nodes(float64):
    """SpikingJelly's ANN-to-SNN conversion (ReLU -> scaled ``IFNode(v_reset=None)``) with ``DecoupledIFNode`` in
    place of its IF nodes (``swap_nodes``; on 2.0 also built by the recipe's ``neuron_factory``): the same
    rate-coded outputs over 20 steps as SpikingJelly's converted network."""
    from spikingjelly.activation_based import ann2snn

    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    calibration = [(torch.rand(32, 8), torch.zeros(32)) for _ in range(2)]
    if SJ2:
        from spikingjelly.activation_based.ann2snn.recipes import RateCodingRecipe

        def convert(**recipe):
            return ann2snn.Converter(RateCodingRecipe(calibration, **recipe)).convert(copy.deepcopy(ann))
    else:

        def convert():
            return ann2snn.Converter(calibration, mode="max")(copy.deepcopy(ann))

    theirs = convert()
    ours = [convert()]
    assert sjn.swap_nodes(ours[0], lambda old: sjn.DecoupledIFNode(v_threshold=old.v_threshold), neuron.IFNode) == 2
    if SJ2:
        ours.append(convert(neuron_factory=lambda scale: sjn.DecoupledIFNode()))
    x = torch.rand(5, 8)
    rates = []
    for net in (theirs, *ours):
        functional.reset_net(net)
        with torch.no_grad():
            rates.append(sum(net(x) for _ in range(20)) / 20)
    assert rates[0].abs().sum() > 0
    for rate in rates[1:]:
        torch.testing.assert_close(rate, rates[0], rtol=0, atol=1e-12)


# -- swap_nodes ------------------------------------------------------------------------------------
def _lif_net() -> nn.Module:
    """``lif_fc_mnist``'s layer stack with a recurrent layer, the LIF nodes built by the network itself
    (soft reset, no input decay: the nodes ``DecoupledLIFNode`` equals)."""

    def lif() -> nn.Module:
        return neuron.LIFNode(tau=2.0, decay_input=False, v_reset=None, detach_reset=True, v_threshold=0.5)

    torch.manual_seed(0)
    net = nn.Sequential(
        layer.Flatten(),
        layer.Linear(12, C),
        lif(),
        layer.LinearRecurrentContainer(lif(), in_features=C, out_features=C),
        layer.Linear(C, 4),
        lif(),
    )
    functional.set_step_mode(net, "m")
    net[3].step_mode = "s"  # a recurrent container steps its node itself
    return net.double()


def test_swap_nodes_replaces_spikingjellys_own_nodes_and_keeps_the_networks_spikes():
    net = _lif_net()
    x = torch.rand(9, 4, 3, 4, dtype=torch.float64) * 2
    expected = net(x)
    assert 0 < expected.mean() < 1
    functional.reset_net(net)  # fills SpikingJelly 2.0's reset cache with the LIF nodes
    count = sjn.swap_nodes(net, lambda old: sjn.DecoupledLIFNode(tau=old.tau, v_threshold=old.v_threshold))
    assert count == 3 and not any(isinstance(m, neuron.BaseNode) for m in net.modules())
    assert [net[2].step_mode, net[3].sub_module.step_mode, net[5].step_mode] == ["m", "s", "m"]
    net.double()
    assert torch.equal(net(x), expected)
    functional.reset_net(net)  # the new nodes are reset (the cache was invalidated)
    assert net[2].v is None and net[3].sub_module.v is None
    assert torch.equal(net(x), expected)


def test_swap_nodes_shares_a_shared_node_and_checks_its_arguments():
    shared = neuron.IFNode()
    net = nn.Sequential(layer.Linear(C, C), shared, layer.Linear(C, C), shared)
    assert sjn.swap_nodes(net, lambda old: sjn.PRFNode(), kind=neuron.IFNode) == 1
    assert isinstance(net[1], sjn.PRFNode) and net[1] is net[3]
    with pytest.raises(ValueError, match="net is itself a LIFNode"):
        sjn.swap_nodes(neuron.LIFNode(), lambda old: sjn.PRFNode())
    with pytest.raises(TypeError, match="factory must return an nn.Module, got NoneType for LIFNode"):
        sjn.swap_nodes(_lif_net(), lambda old: None)
    with pytest.raises(TypeError, match="kind must be a class"):
        sjn.swap_nodes(_lif_net(), lambda old: sjn.PRFNode(), kind="LIFNode")
    with pytest.raises(TypeError, match="net must be a torch.nn.Module"):
        sjn.swap_nodes([neuron.LIFNode()], lambda old: sjn.PRFNode())


def test_surrogate_function_is_the_object_passed_as_on_spikingjelly_nodes(zoo):
    """``node.surrogate_function`` is the SpikingJelly surrogate passed, so code that tunes its ``alpha``
    (spike_dhs's gradient search) changes the gradient as it does on SpikingJelly's ``LIFNode``."""
    x = inputs().requires_grad_()
    grads = {}
    for name, build in (
        (
            "lif",
            lambda s: neuron.LIFNode(tau=2.0, decay_input=False, v_reset=None, detach_reset=True, surrogate_function=s),
        ),
        ("ours", lambda s: sjn.DecoupledLIFNode(C, tau=2.0, surrogate_function=s)),
    ):
        passed = sj_surrogate.Sigmoid(alpha=4.0)
        node = build(passed).double()
        node.step_mode = "m"
        assert node.surrogate_function is passed
        for alpha in (4.0, 8.0):
            node.surrogate_function.alpha = alpha
            functional.reset_net(node)
            (grads[name, alpha],) = torch.autograd.grad(node(x).sum(), x)
    assert not torch.allclose(grads["lif", 4.0], grads["lif", 8.0])
    for alpha in (4.0, 8.0):
        torch.testing.assert_close(grads["ours", alpha], grads["lif", alpha], rtol=1e-12, atol=1e-12)
    assert isinstance(sjn.LTCNode().surrogate_function, sp_surrogate.MultiGaussian)  # our default, as built
    with pytest.raises(AttributeError, match=r"DecoupledLIFNode\.surrogate_function is fixed when the node is built"):
        sjn.DecoupledLIFNode().surrogate_function = sj_surrogate.ATan()
    # spike_dhs's stem, its LIF nodes swapped for ours, runs its gradient-search stage
    stem = zoo["spike_dhs"].SearchSpikingConv2d_stem(3, 4)
    sjn.swap_nodes(stem, lambda old: sjn.DecoupledLIFNode(tau=old.tau, surrogate_function=old.surrogate_function))
    stem.dgs_init_stage()
    assert stem.spike_b.surrogate_function.alpha - stem.spike_s.surrogate_function.alpha == pytest.approx(0.4)
    stem(torch.rand(2, 3, 8, 8)).sum().backward()
    assert stem.dgs_alpha.grad is not None


@pytest.mark.parametrize(("cls", "kwargs"), NODES)
def test_assigning_v_threshold_acts_as_building_with_it(cls, kwargs):
    """``node.v_threshold`` reads and sets the core's threshold, as SpikingJelly's nodes expose theirs
    (threshold schedules, ``functional.set_threshold_margin``); it was unreadable, and an assignment
    was silently ignored."""
    x = inputs()
    node = cls(C, **kwargs, step_mode="m").double()
    assert node.v_threshold == cls(C, **kwargs).v_threshold
    node.v_threshold = 0.625
    expected = cls(C, **kwargs, v_threshold=0.625, step_mode="m").double()
    expected.load_state_dict(node.state_dict())
    assert node.v_threshold == 0.625
    assert torch.equal(node(x), expected(x))
    with pytest.raises(TypeError, match="v_threshold must be a float"):
        node.v_threshold = 1
    with pytest.raises(TypeError, match=r"v_threshold must be a float: .*shape \(4, 6\)"):
        node.v_threshold = torch.ones(4, C)
    assert node.v_threshold == 0.625


@pytest.mark.parametrize("learn_decay", [False, "shared"])
@pytest.mark.parametrize("switch_at", [0, 6], ids=["before-the-first-input", "mid-run"])
@pytest.mark.parametrize("decay_input", [False, True])
@pytest.mark.parametrize("assigned", [("tau", 4.0), ("decay_input", None)], ids=["tau", "decay_input"])
def test_decoupled_lif_tau_and_decay_input_read_and_assigning_them_acts_as_on_lifnode(
    float64, switch_at, decay_input, assigned, learn_decay
):
    """``DecoupledLIFNode.tau`` and ``decay_input`` read as ``LIFNode``'s (code swapped from SpikingJelly reads
    ``old.tau``), and assigning either changes the charge from the next step as on ``LIFNode``: the same spikes
    and ``v`` as SpikingJelly's soft-reset ``LIFNode`` given the same assignment (a learned decay, one for the
    layer too, restarts from the assigned ``tau``)."""
    name, value = assigned
    value = (not decay_input) if name == "decay_input" else value
    x = 1.5 * torch.rand(12, 3, C) * (1 + decay_input)
    ours = sjn.DecoupledLIFNode(
        None if switch_at == 0 else C, tau=2.0, decay_input=decay_input, learn_decay=learn_decay
    )
    theirs = neuron.LIFNode(tau=2.0, decay_input=decay_input, v_reset=None, detach_reset=True)
    assert ours.tau == theirs.tau == 2.0 and ours.decay_input is theirs.decay_input is decay_input
    spikes = []
    for t, x_t in enumerate(x):
        if t == switch_at:
            setattr(ours, name, value)
            setattr(theirs, name, value)
        spikes.append(ours(x_t))
        assert torch.equal(spikes[-1], theirs(x_t))
        torch.testing.assert_close(ours.v, theirs.v, rtol=0, atol=1e-12)
    assert 0 < torch.stack(spikes).mean() < 1 and getattr(ours, name) == value
    with pytest.raises(ValueError, match="tau"):
        ours.tau = 1.0
    with pytest.raises(TypeError, match="tau"):
        ours.tau = "slow"
    with pytest.raises(TypeError, match="decay_input must be a bool"):
        ours.decay_input = 1
    assert getattr(ours, name) == value
    if_node = sjn.DecoupledLIFNode(tau=math.inf)
    with pytest.raises(ValueError, match="decay_input=True needs a finite tau"):
        if_node.decay_input = True
    assert if_node.decay_input is False


def test_psplif_time_constants_read_and_assigning_them_acts_from_the_next_step():
    """``PSPLIFNode.tau`` (the membrane's) and ``tau_s`` read as given and act from the next step when assigned:
    against TSSL-BP's equations stepped in float64, ``u_t = (1 - 1/tau_m) u^_{t-1} + x_t``, ``o_t = [u_t >= V_th]``,
    ``u^_t = u_t (1 - o_t)``, ``a_t = (1 - 1/tau_s) a_{t-1} + o_t / tau_s``."""
    x = 1.5 * torch.rand(12, 3, C, dtype=torch.float64)
    node = sjn.PSPLIFNode(C, tau=5.0, tau_s=3.0).double()
    assert (node.tau, node.tau_s, node.decay_input) == (5.0, 3.0, False)
    tau_m, tau_s, u, a = 5.0, 3.0, torch.zeros_like(x[0]), torch.zeros_like(x[0])
    for t, x_t in enumerate(x):
        if t == 6:
            node.tau, node.tau_s = tau_m, tau_s = 2.0, 1.5
        u = (1 - 1 / tau_m) * u + x_t
        spike = (u >= node.v_threshold).double()
        u = u * (1 - spike)
        a = (1 - 1 / tau_s) * a + spike / tau_s
        torch.testing.assert_close(node(x_t), a, rtol=1e-12, atol=1e-12)
    assert (node.tau, node.tau_s) == (2.0, 1.5)
    with pytest.raises(ValueError, match="tau_s"):
        node.tau_s = 0.5
    with pytest.raises(TypeError, match="tau"):
        node.tau = None


def test_set_threshold_margin_is_refused_in_training_and_sets_the_eval_threshold():
    """SpikingJelly's ``set_threshold_margin`` gives the output layer per-sample thresholds while
    training, which the cores cannot express: a named ``TypeError``; in eval mode it sets one float."""
    node = sjn.DecoupledLIFNode(4)
    with pytest.raises(TypeError, match="v_threshold"):
        functional.set_threshold_margin(node, nn.functional.one_hot(torch.tensor([0, 3]), 4).float())
    node.eval()
    functional.set_threshold_margin(node, nn.functional.one_hot(torch.tensor([0, 3]), 4).float(), eval_threshold=0.75)
    assert node.v_threshold == 0.75 and node.core.v_threshold == 0.75


@pytest.mark.parametrize(("cls", "kwargs"), NODES)
def test_assigning_a_reset_the_node_cannot_express_raises(cls, kwargs):
    """``v_reset`` and ``detach_reset`` are checked when assigned as when passed to the constructor
    (SpikingJelly's nodes honour an assignment at the next step; ours would have ignored it)."""
    node = cls(C, **kwargs)
    node.v_reset, node.detach_reset = node.v_reset, node.detach_reset  # the values it has are accepted
    with pytest.raises(ValueError, match="v_reset=0.5 is not supported"):
        node.v_reset = 0.5
    with pytest.raises(TypeError, match="detach_reset must be a bool"):
        node.detach_reset = 1
    if node._reset.detached is not None:
        with pytest.raises(ValueError, match="detach_reset=.* is not supported"):
            node.detach_reset = not node.detach_reset
