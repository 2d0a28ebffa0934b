"""``from_spikingjelly``: a network built and trained with SpikingJelly's soft-reset nodes, converted to ours.

The use case: a SpikingJelly network (a zoo model, an example that builds its own nodes) with ``IFNode``, ``LIFNode``,
``ParametricLIFNode`` or ``CUBALIFNode`` (``v_reset=None, detach_reset=True``), trained, handed to
``from_spikingjelly``: the copy must compute what SpikingJelly's network computes, side by side in float64. Under
whichever SpikingJelly is installed (2.0.0 or 0.0.0.0.14; ``CUBALIFNode`` and the examples are 2.0's).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("spikingjelly")

from snn_parallel.adapters import spikingjelly as sjn  # noqa: E402
from spikingjelly.activation_based import functional, layer, neuron  # noqa: E402
from spikingjelly.activation_based import surrogate as sj_surrogate  # noqa: E402
from spikingjelly.activation_based.model import parametric_lif_net  # noqa: E402
from test_spikingjelly_to_spikingjelly import DECAYS, PAIRS, V_TH, _input, _loss, _run, _soft  # noqa: E402

if sjn.SJ2:  # the fixture that imports SpikingJelly 2.0's examples, their missing imports stubbed
    from test_spikingjelly_examples import example  # noqa: E402, F401


def _trained_zoo_network(theirs: type, kwargs: dict, x: torch.Tensor) -> nn.Module:
    """``parametric_lif_net.MNISTNet`` built with SpikingJelly's node, trained three SGD steps in 'm' mode."""
    torch.manual_seed(0)
    net = parametric_lif_net.MNISTNet(channels=2, spiking_neuron=_soft(theirs), v_threshold=V_TH, **kwargs)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    functional.set_step_mode(net, "m")
    for _ in range(3):
        functional.reset_net(net)
        optimizer.zero_grad()
        (net(x).mean(0) - 0.5).square().sum().backward()  # out [T, B, 10]: rates towards 0.5
        optimizer.step()
    functional.reset_net(net)
    for module in net.modules():  # batch statistics, as in training, with the same (no) dropout mask
        if isinstance(module, layer.Dropout):
            module.p = 0.0
    return net


def _outputs_and_gradients(net: nn.Module, x: torch.Tensor, step_mode: str) -> tuple[torch.Tensor, ...]:
    """Outputs, the input's gradient and every weight's (the learned decays left out), from a reset network."""
    functional.reset_net(net)
    net.zero_grad()
    xg = x.clone().requires_grad_()
    out = _run(net, xg, step_mode)
    _loss(out).backward()
    return out, xg.grad, *(p.grad for name, p in net.named_parameters() if not name.endswith(DECAYS))


@pytest.mark.parametrize("ours, theirs, kwargs", PAIRS)
def test_a_trained_zoo_network_converts_and_computes_the_same(float64, ours, theirs, kwargs):
    """The key use case: a zoo network trained with SpikingJelly's nodes (PLIF's ``w`` learned), converted: the same
    outputs, input gradients and weight gradients in both step modes; SpikingJelly's network is left as it was."""
    x = _input((4, 2, 1, 28, 28))
    reference = _trained_zoo_network(theirs, kwargs, x)
    if theirs is neuron.ParametricLIFNode:  # learned: w moved from its start -log(init_tau - 1) = 0
        assert all(float(m.w.detach()) != 0.0 for m in reference.modules() if type(m) is theirs)
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    converted = sjn.from_spikingjelly(reference)
    assert sum(type(m) is ours for m in converted.modules()) == 4
    assert not any(type(m) is theirs for m in converted.modules())
    assert sum(type(m) is theirs for m in reference.modules()) == 4  # untouched
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
    for step_mode in ("s", "m"):
        expected = _outputs_and_gradients(reference, x, step_mode)
        got = _outputs_and_gradients(converted, x, step_mode)
        assert 0 < expected[0].mean() < 1
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    if theirs is neuron.ParametricLIFNode:  # the learned w is ours, a parameter of the copy with a gradient
        for mine, their in zip(
            (m for m in converted.modules() if type(m) is ours),
            (m for m in reference.modules() if type(m) is theirs),
            strict=True,
        ):
            torch.testing.assert_close(mine.w.detach(), their.w.detach(), rtol=0, atol=0)
            assert mine.core.decay_logit.grad is not None and mine.core.decay_logit is not their.w


@pytest.mark.parametrize("ours, theirs, kwargs", PAIRS)
def test_the_round_trip_gives_spikingjellys_state_dict_and_outputs(float64, ours, theirs, kwargs):
    """``to_spikingjelly(from_spikingjelly(theirs))`` holds SpikingJelly's nodes again, with theirs' state dict
    (the same keys and values) and outputs."""
    x = _input((4, 2, 1, 28, 28))
    reference = _trained_zoo_network(theirs, kwargs, x)
    back = sjn.to_spikingjelly(sjn.from_spikingjelly(reference))
    assert [type(m) for m in back.modules()] == [type(m) for m in reference.modules()]
    expected, got = reference.state_dict(), back.state_dict()
    assert list(got) == list(expected)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)
    with torch.no_grad():
        outs = [(functional.reset_net(net), _run(net, x, "m"))[1] for net in (reference, back)]
    assert outs[0].abs().sum() > 0
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("ours, theirs, kwargs", PAIRS)
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_a_sequence_stopped_mid_way_goes_on_in_our_node(float64, ours, theirs, kwargs, step_mode):
    """The memories (``v``, CUBA's ``c``) are carried, detached: the copy goes on from where SpikingJelly's node
    stopped, with the same spikes, memories and input gradients."""
    node = _soft(theirs)(v_threshold=V_TH, **kwargs)
    node.step_mode = step_mode
    net = nn.Sequential(layer.Linear(3, 5), node)
    x = _input((10, 2, 3), 1.0).requires_grad_()
    _run(net, x[:4], step_mode)
    memories = ("v", "c") if ours is sjn.DecoupledCUBALIFNode else ("v",)
    stopped = {name: getattr(node, name) for name in memories}
    converted = sjn.from_spikingjelly(net)
    assert type(converted[1]) is ours and converted[1].step_mode == step_mode
    assert net[1] is node and all(getattr(node, name) is stopped[name] for name in memories)  # untouched
    for name in memories:
        torch.testing.assert_close(getattr(converted[1], name), stopped[name].detach(), rtol=0, atol=1e-12)
        assert not getattr(converted[1], name).requires_grad
    results = []
    for model in (net, converted):
        out = _run(model, x[4:], step_mode)
        (grad,) = torch.autograd.grad(_loss(out), x)
        results.append((out, *(getattr(model[1], name) for name in memories), grad[4:]))
    assert 0 < results[0][0].mean() < 1
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12)


@pytest.mark.parametrize("ours, theirs, kwargs", PAIRS)
def test_memories_of_one_sample_without_a_batch_dim_are_carried(float64, ours, theirs, kwargs):
    """SpikingJelly's node stepped on ``[features]`` (nn.Linear's unbatched input) holds ``v`` ``[features]``: the
    copy takes it and goes on as SpikingJelly's node does."""
    node = _soft(theirs)(v_threshold=V_TH, **kwargs)
    x = _input((8, 5), 1.0) - 0.4
    first = _run(node, x[:3], "s")
    converted = sjn.from_spikingjelly(node)
    assert converted.v.shape == (5,)
    results = [(_run(model, x[3:], "s"), model.v) for model in (node, converted)]
    assert 0 < torch.cat((first, results[0][0])).mean() < 1
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12)


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_plifs_w_gradient_is_spikingjellys_while_no_neuron_fires(float64, step_mode):
    """Where the two are documented to agree (no reset yet), the converted ``w`` gets PLIF's gradient."""
    torch.manual_seed(0)
    net = nn.Sequential(layer.Linear(3, 4), _soft(neuron.ParametricLIFNode)(init_tau=3.0, v_threshold=50.0))
    with torch.no_grad():
        net[1].w.fill_(-0.4)
    converted = sjn.from_spikingjelly(net)
    x = _input((6, 2, 3), 2.0)
    grads = []
    for model, w in ((net, net[1].w), (converted, converted[1].core.decay_logit)):
        out = _run(model, x, step_mode)
        assert out.sum() == 0
        (grad,) = torch.autograd.grad((model[1].v * torch.linspace(-1, 1, 8).view(2, 4)).sum(), w)
        grads.append(grad)
    assert grads[0] != 0
    torch.testing.assert_close(-grads[1], grads[0], rtol=0, atol=1e-12)  # ours is the gradient of -w


def test_a_saturated_plif_time_constant_converts(float64):
    """A ``w`` so large that 1/tau = sigmoid(w) rounds to 1 in float64 (no memory left) is carried as it is."""
    node = _soft(neuron.ParametricLIFNode)(v_threshold=V_TH)
    with torch.no_grad():
        node.w.fill_(50.0)
    converted = sjn.from_spikingjelly(node)
    assert float(converted.w.detach()) == 50.0
    x = _input((6, 2, 4), 1.0)
    torch.testing.assert_close(_run(converted, x, "s"), _run(node, x, "s"), rtol=0, atol=0)


@pytest.mark.parametrize("requires_grad", [True, False])
def test_a_node_converts_alone_with_its_arguments_dtype_and_w(requires_grad):
    node = neuron.ParametricLIFNode(
        init_tau=3.0, decay_input=False, v_threshold=0.7, v_reset=None, detach_reset=True, step_mode="m"
    ).double()
    node.store_v_seq = True
    with torch.no_grad():
        node.w.fill_(0.25)
    node.w.requires_grad_(requires_grad)
    node(torch.rand(2, 3, 4, dtype=torch.float64) * 3)
    ours = sjn.from_spikingjelly(node)
    assert type(ours) is sjn.DecoupledParametricLIFNode
    assert (ours.v_threshold, ours.v_reset, ours.detach_reset, ours.step_mode) == (0.7, None, True, "m")
    assert ours.store_v_seq and ours.v_seq is None and ours.decay_input is False
    assert ours.w.dtype == torch.float64 and ours.w.device == node.w.device
    assert ours.core.decay_logit.requires_grad is requires_grad
    torch.testing.assert_close(ours.w.detach(), node.w.detach(), rtol=0, atol=0)
    torch.testing.assert_close(ours.v, node.v, rtol=0, atol=0)
    assert ours.v.dtype == torch.float64
    if not sjn.SJ2:
        assert ours.backend == node.backend == "torch"
    assert type(node) is neuron.ParametricLIFNode and node.w.requires_grad is requires_grad  # untouched


def test_a_node_at_rest_takes_the_networks_dtype_and_keeps_spikingjellys_surrogate():
    """An ``IFNode`` holds no tensor before its first input: ours takes the network's float64; the surrogate is a
    copy of SpikingJelly's object, one copy for the nodes that shared it."""
    surrogate = sj_surrogate.ATan(alpha=1.5)
    build = _soft(neuron.IFNode)
    net = nn.Sequential(
        layer.Linear(3, 4), build(surrogate_function=surrogate), layer.Linear(4, 4), build(surrogate_function=surrogate)
    ).double()
    converted = sjn.from_spikingjelly(net)
    first, second = converted[1].surrogate_function, converted[3].surrogate_function
    assert type(first) is sj_surrogate.ATan and first.alpha == 1.5 and first is not surrogate and first is second
    assert all(t.dtype == torch.float64 for t in converted[1].core.buffers())
    x = _input((6, 2, 3), 2.0).double().requires_grad_()
    results = [torch.autograd.grad(_loss(_run(model, x, "s")), x)[0] for model in (net, converted)]
    assert results[0].abs().sum() > 0
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=1e-12)


def test_a_shared_node_becomes_one_node_and_reset_net_resets_the_copy():
    shared = _soft(neuron.LIFNode)(tau=2.0)
    net = nn.Sequential(layer.Linear(3, 4), shared, layer.Linear(4, 4), shared)
    functional.reset_net(net)  # SpikingJelly 2.0 caches the modules reset_net resets
    converted = sjn.from_spikingjelly(net)
    assert type(converted[1]) is sjn.DecoupledLIFNode and converted[1] is converted[3]
    converted(torch.rand(2, 3) * 5)
    assert isinstance(converted[1].v, torch.Tensor)
    functional.reset_net(converted)
    assert converted[1].v is None


class _MyLIFNode(neuron.LIFNode):
    """A user's subclass: its dynamics may differ, so it is not converted."""


def test_other_classes_and_subclasses_are_left_as_they_are():
    others = [_MyLIFNode(v_reset=None, detach_reset=True), neuron.IFNode()]  # a hard-reset IFNode inside one of them
    if hasattr(neuron, "OTTTLIFNode"):
        others.append(neuron.OTTTLIFNode(v_reset=None, detach_reset=True))
    net = nn.Sequential(layer.Linear(3, 4), _soft(neuron.IFNode)(), *others[:1])
    converted = sjn.from_spikingjelly(net)
    assert type(converted[1]) is sjn.DecoupledIFNode
    assert type(converted[2]) is _MyLIFNode and converted[2] is not net[2]
    alone = nn.Sequential(*[other for other in others if type(other) is not neuron.IFNode])
    with pytest.raises(ValueError, match=r"^net \(Sequential\) holds none of SpikingJelly's IFNode, LIFNode"):
        sjn.from_spikingjelly(alone)


def _tensor_threshold() -> nn.Module:
    node = _soft(neuron.IFNode)()
    node.v_threshold = torch.ones(4)
    return node


def _float_membrane() -> nn.Module:
    node = _soft(neuron.IFNode)()
    node.v = 0.25  # SpikingJelly fills the first input's shape with it
    return node


def _primitive_surrogate() -> nn.Module:
    """A SpikingJelly surrogate with ``spiking=False`` computes its smooth primitive, not spikes."""
    return _soft(neuron.IFNode)(surrogate_function=sj_surrogate.Sigmoid(spiking=False))


#: SpikingJelly nodes ours cannot compute, with the reason the error gives
REFUSED = [
    pytest.param(
        neuron.IFNode, "IFNode", r"resets hard \(v_reset=0.0, SpikingJelly's default\).*only the soft reset", id="hard"
    ),
    pytest.param(
        lambda: neuron.LIFNode(v_reset=-0.5, detach_reset=True), "LIFNode", r"resets hard \(v_reset=-0.5", id="hard_lif"
    ),
    pytest.param(
        lambda: neuron.ParametricLIFNode(v_reset=None),
        "ParametricLIFNode",
        r"detach_reset=False.*the same but the gradients differ.*node.detach_reset = True",
        id="attached_reset",
    ),
    pytest.param(_tensor_threshold, "IFNode", "its threshold is a tensor", id="tensor_threshold"),
    pytest.param(_float_membrane, "IFNode", "its memory v is the float 0.25", id="float_membrane"),
    pytest.param(
        _primitive_surrogate,
        "IFNode",
        "surrogate_function: the surrogate's forward pass must be a Heaviside step",
        id="surrogate",
    ),
]


@pytest.mark.parametrize("build, name, reason", REFUSED)
def test_nodes_ours_cannot_compute_are_refused_naming_path_class_and_reason(build, name, reason):
    net = nn.Sequential(layer.Linear(3, 4), nn.Sequential(_soft(neuron.IFNode)(), build()))
    with pytest.raises(ValueError, match=rf"^net\.1\.1 \({name}\) cannot become an snn_parallel node: .*{reason}"):
        sjn.from_spikingjelly(net)
    assert type(net[1][0]) is neuron.IFNode  # untouched
    with pytest.raises(ValueError, match=rf"^net \({name}\) cannot become"):
        sjn.from_spikingjelly(build())


def test_a_reset_whose_gradient_is_kept_converts_once_the_user_detaches_it(float64):
    """As the refusal says: ``node.detach_reset = True`` on SpikingJelly's nodes, then the same spikes."""
    net = nn.Sequential(layer.Linear(3, 4), neuron.LIFNode(v_reset=None, v_threshold=V_TH))
    with pytest.raises(ValueError, match=r"^net\.1 \(LIFNode\) .*detach_reset=False"):
        sjn.from_spikingjelly(net)
    net[1].detach_reset = True
    x = _input((6, 2, 3), 1.0)
    with torch.no_grad():
        expected = _run(net, x, "s")
        functional.reset_net(net)
        got = _run(sjn.from_spikingjelly(net), x, "s")
    assert 0 < expected.mean() < 1
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_bad_input():
    with pytest.raises(TypeError, match="net must be a torch.nn.Module, got int"):
        sjn.from_spikingjelly(3)
    with pytest.raises(ValueError, match=r"net \(Linear\) holds none of SpikingJelly's .*nothing to convert"):
        sjn.from_spikingjelly(nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"net \(Sequential\) holds none of SpikingJelly's"):
        sjn.from_spikingjelly(nn.Sequential(layer.Linear(2, 2), sjn.DecoupledLIFNode()))  # ours already


# -- an example network that builds its own (hard-reset) nodes ------------------------------------------------------
@pytest.mark.skipif(not sjn.SJ2, reason="the examples of SpikingJelly 2.0")
def test_an_example_network_that_builds_its_own_nodes(example):
    """``conv_fashion_mnist.CSNN`` builds ``IFNode(surrogate_function=ATan())``, SpikingJelly's hard reset: refused,
    naming the first; given the soft reset (as a user who trains it so), it converts and computes the same outputs
    and gradients."""
    module = example("conv_fashion_mnist")
    torch.manual_seed(0)
    reference = module.CSNN(T=3, channels=4).double()
    with pytest.raises(ValueError, match=r"^net\.conv_fc\.2 \(IFNode\) .*resets hard"):
        sjn.from_spikingjelly(reference)
    for node in reference.modules():
        if isinstance(node, neuron.IFNode):
            node.v_reset, node.detach_reset, node.v_threshold = None, True, 0.5
    converted = sjn.from_spikingjelly(reference)
    assert sum(type(m) is sjn.DecoupledIFNode for m in converted.modules()) == 4
    img = _input((2, 1, 28, 28)).double()
    results = []
    for net in (reference, converted):
        functional.reset_net(net)
        x = img.clone().requires_grad_()
        out = net(x)
        _loss(out).backward()
        results.append((out, x.grad, *(p.grad for p in net.parameters())))
    assert 0 < results[0][0].mean() < 1
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b, a)
