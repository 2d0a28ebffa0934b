"""``to_spikingjelly``: a network trained with our SpikingJelly nodes, handed back with SpikingJelly's own.

The use case: a network built by SpikingJelly's model zoo with our nodes, trained in parallel, then its state dict
loaded strictly into the same network built with SpikingJelly's nodes, which must compute the same (float64).
Under whichever SpikingJelly is installed (2.0.0 or 0.0.0.0.14; ``CUBALIFNode`` is 2.0's).
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

from snn_parallel import surrogate as sp_surrogate  # noqa: E402

HAS_CUBA = hasattr(neuron, "CUBALIFNode")
V_TH = 0.3


def _soft(cls: type) -> type:
    """SpikingJelly's node ``cls`` built with the reset ours compute: ``v_reset=None`` and ``detach_reset=True``
    (``CUBALIFNode`` takes the latter as an attribute only)."""

    def build(**kwargs) -> nn.Module:
        node = cls(v_reset=None, **kwargs)
        node.detach_reset = True
        return node

    return build


#: (our node, SpikingJelly's, the arguments both take, SpikingJelly's class the conversion gives)
PAIRS = [
    pytest.param(sjn.DecoupledIFNode, neuron.IFNode, {}, id="if"),
    pytest.param(sjn.DecoupledLIFNode, neuron.LIFNode, {"tau": 2.0, "decay_input": True}, id="lif"),
    pytest.param(sjn.DecoupledLIFNode, neuron.LIFNode, {"tau": 3.0, "decay_input": False}, id="lif_no_decay_input"),
    pytest.param(sjn.DecoupledParametricLIFNode, neuron.ParametricLIFNode, {"init_tau": 2.0}, id="plif"),
    pytest.param(
        sjn.DecoupledCUBALIFNode,
        getattr(neuron, "CUBALIFNode", None),
        {"c_decay": 0.4},
        id="cuba",
        marks=pytest.mark.skipif(not HAS_CUBA, reason="SpikingJelly 0.0.0.0.14 has no CUBALIFNode (2.0 has)"),
    ),
]


#: the learned decay, whose gradient ours computes without the reset's part (see DecoupledParametricLIFNode)
DECAYS = (".w", ".decay_logit")


def _run(net: nn.Module, x: torch.Tensor, step_mode: str) -> torch.Tensor:
    functional.set_step_mode(net, step_mode)
    return net(x) if step_mode == "m" else torch.stack([net(x_t) for x_t in x])


def _loss(out: torch.Tensor) -> torch.Tensor:
    return (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum()


def _input(shape: tuple[int, ...], scale: float = 2.0, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _train(net: nn.Module, x: torch.Tensor, steps: int = 3) -> None:
    """A few SGD steps in multi-step mode, each from a reset network."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    functional.set_step_mode(net, "m")
    for _ in range(steps):
        functional.reset_net(net)
        optimizer.zero_grad()
        (net(x).mean(0) - 0.5).square().sum().backward()  # out [T, B, 10]: rates towards 0.5
        optimizer.step()
    functional.reset_net(net)


@pytest.mark.parametrize("ours, theirs, kwargs", PAIRS)
def test_a_trained_zoo_network_loads_into_spikingjellys_and_computes_the_same(float64, ours, theirs, kwargs):
    """``parametric_lif_net.MNISTNet`` built with our node, trained three steps (PLIF's ``w`` learned), converted:
    its state dict loads strictly into the network built with SpikingJelly's node, which gives the same outputs,
    input gradients and weight gradients in both step modes (PLIF's ``w`` gradient apart: ours leaves out the
    reset's part, see ``DecoupledParametricLIFNode``)."""
    torch.manual_seed(0)
    net = parametric_lif_net.MNISTNet(channels=2, spiking_neuron=ours, v_threshold=V_TH, **kwargs)
    reference = parametric_lif_net.MNISTNet(channels=2, spiking_neuron=_soft(theirs), v_threshold=V_TH, **kwargs)
    x = _input((4, 2, 1, 28, 28))
    _train(net, x)
    if ours is sjn.DecoupledParametricLIFNode:
        # learned: w moved from its start -log(init_tau - 1) = 0
        assert all(float(m.w.detach()) != 0.0 for m in net.modules() if isinstance(m, ours))
    converted = sjn.to_spikingjelly(net)
    assert not any(isinstance(m, sjn.SpikingJellyNode) for m in converted.modules())
    assert sum(type(m) is theirs for m in converted.modules()) == 4
    reference.load_state_dict(converted.state_dict())  # strict
    for model in (net, reference):  # batch statistics, as in training, with the same (no) dropout mask
        for module in model.modules():
            if isinstance(module, layer.Dropout):
                module.p = 0.0
    for step_mode in ("s", "m"):
        results = []
        for model in (net, reference):
            functional.reset_net(model)
            model.zero_grad()
            xg = x.clone().requires_grad_()
            out = _run(model, xg, step_mode)
            _loss(out).backward()
            grads = [p.grad for name, p in model.named_parameters() if not name.endswith(DECAYS)]
            results.append((out, xg.grad, *grads))
        assert results[1][0].abs().sum() > 0
        for a, b in zip(*results, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("ours, theirs, kwargs", PAIRS)
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_a_sequence_stopped_mid_way_goes_on_in_spikingjellys_node(float64, ours, theirs, kwargs, step_mode):
    """The memories (``v``, CUBA's ``c``) are carried: the copy goes on from where ours stopped, with the same
    spikes, ``v`` and input gradients; ``net`` is left as it was."""
    net = nn.Sequential(layer.Linear(3, 5), ours(v_threshold=V_TH, step_mode=step_mode, **kwargs))
    x = _input((10, 2, 3), 1.0).requires_grad_()
    _run(net, x[:4], step_mode)
    memories = dict(net[1]._memories)
    v = net[1].v
    converted = sjn.to_spikingjelly(net)
    assert net[1]._memories == memories and type(net[1]) is ours  # untouched (the same tensors)
    torch.testing.assert_close(converted[1].v, v.detach(), rtol=0, atol=1e-12)
    assert not converted[1].v.requires_grad and converted[0].weight is not net[0].weight
    results = []
    for model in (net, converted):
        out = _run(model, x[4:], step_mode)
        (grad,) = torch.autograd.grad(_loss(out), x)
        results.append((out, model[1].v, grad[4:]))  # the copy starts from a detached v: no gradient before
    assert 0 < results[1][0].mean() < 1
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_a_node_converts_alone_with_its_arguments_dtype_and_state():
    node = sjn.DecoupledParametricLIFNode(
        4, init_tau=3.0, decay_input=False, v_threshold=0.7, step_mode="m", store_v_seq=True
    ).double()
    node(torch.rand(2, 3, 4, dtype=torch.float64))
    their = sjn.to_spikingjelly(node)
    assert type(their) is neuron.ParametricLIFNode
    assert (their.v_threshold, their.v_reset, their.detach_reset, their.step_mode) == (0.7, None, True, "m")
    assert their.store_v_seq and their.v_seq is None and their.decay_input is False
    assert their.w.dtype == torch.float64 and their.w.requires_grad and their.w.device == node.w.device
    torch.testing.assert_close(their.w.detach(), node.w.detach(), rtol=0, atol=0)
    assert their.v.dtype == torch.float64
    if not sjn.SJ2:
        assert their.backend == node.backend == "torch"
    assert type(node) is sjn.DecoupledParametricLIFNode  # the node itself untouched


def test_a_shared_node_becomes_one_spikingjelly_node_and_the_reset_cache_is_renewed():
    shared = sjn.DecoupledLIFNode(tau=2.0)
    net = nn.Sequential(layer.Linear(3, 4), shared, layer.Linear(4, 4), shared)
    functional.reset_net(net)  # SpikingJelly 2.0 caches the modules reset_net resets
    converted = sjn.to_spikingjelly(net)
    assert type(converted[1]) is neuron.LIFNode and converted[1] is converted[3]
    converted(torch.rand(2, 3) * 5)
    assert isinstance(converted[1].v, torch.Tensor)
    functional.reset_net(converted)
    assert converted[1].v == 0.0  # SpikingJelly's soft-reset node rests at 0.0


def test_a_decay_learned_for_the_layer_becomes_a_parametric_lif_node(float64):
    net = nn.Sequential(layer.Linear(3, 4), sjn.DecoupledLIFNode(tau=3.0, learn_decay="shared", v_threshold=V_TH))
    with torch.no_grad():
        net[1].core.decay_logit.fill_(0.3)
    converted = sjn.to_spikingjelly(net)
    assert type(converted[1]) is neuron.ParametricLIFNode
    torch.testing.assert_close(converted[1].w.detach(), torch.tensor(-0.3), rtol=0, atol=0)
    x = _input((6, 2, 3), 1.0)
    torch.testing.assert_close(_run(converted, x, "s"), _run(net, x, "s"), rtol=0, atol=0)


@pytest.mark.parametrize(
    "given, expected",
    [
        (None, (sj_surrogate.Sigmoid, 4.0)),  # our default Sigmoid(alpha=4)
        (sp_surrogate.ATan(alpha=3.0), (sj_surrogate.ATan, 3.0)),
        ("sigmoid", (sj_surrogate.Sigmoid, 4.0)),
        (sj_surrogate.ATan(alpha=1.5), (sj_surrogate.ATan, 1.5)),  # SpikingJelly's object, carried
        (sj_surrogate.PiecewiseQuadratic(alpha=2.5), (sj_surrogate.PiecewiseQuadratic, 2.5)),
    ],
)
def test_surrogates_become_spikingjellys(given, expected):
    node = sjn.DecoupledIFNode(3, surrogate_function=given)
    surrogate = sjn.to_spikingjelly(node).surrogate_function
    assert (type(surrogate), surrogate.alpha) == expected
    if not isinstance(given, sp_surrogate.Surrogate | str | None):
        assert surrogate is not given  # a copy: the network given is left untouched


@pytest.mark.skipif(not hasattr(sj_surrogate, "Rect"), reason="SpikingJelly 0.0.0.0.14 has no Rect")
def test_rect_becomes_spikingjellys_rect_with_the_same_window(float64):
    net = nn.Sequential(layer.Linear(3, 4), sjn.DecoupledLIFNode(surrogate_function=sp_surrogate.Rect(width=0.5)))
    converted = sjn.to_spikingjelly(net)
    assert type(converted[1].surrogate_function) is sj_surrogate.Rect and converted[1].surrogate_function.alpha == 2
    x = _input((6, 2, 3), 2.0).requires_grad_()
    grads = [torch.autograd.grad(_loss(_run(model, x, "s")), x)[0] for model in (net, converted)]
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-12)


#: networks holding a node SpikingJelly cannot express, with the reason the error gives
REFUSED = [
    pytest.param(lambda: sjn.DynamicDecayNode(), "DynamicDecayNode", "no neuron with its dynamics", id="dsn"),
    pytest.param(lambda: sjn.PRFNode(reset=True), "PRFNode", "no neuron with its dynamics", id="prf"),
    pytest.param(lambda: sjn.LTCNode(), "LTCNode", "no neuron with its dynamics", id="ltc"),
    pytest.param(lambda: sjn.PSPLIFNode(), "PSPLIFNode", "no neuron with its dynamics", id="psplif"),
    pytest.param(
        lambda: sjn.DecoupledParametricLIFNode(per_channel=True),
        "DecoupledParametricLIFNode",
        "one time constant per channel",
        id="plif_per_channel",
    ),
    pytest.param(
        lambda: sjn.DecoupledLIFNode(learn_decay=True), "DecoupledLIFNode", "one time constant per channel", id="lif"
    ),
    pytest.param(
        lambda: sjn.DecoupledIFNode(surrogate_function="multi_gaussian"),
        "DecoupledIFNode",
        "surrogate MultiGaussian.* has no SpikingJelly equivalent",
        id="surrogate",
    ),
    pytest.param(
        lambda: sjn.DecoupledIFNode(surrogate_function=sp_surrogate.ATan(inclusive=False)),
        "DecoupledIFNode",
        "fires on x > 0, SpikingJelly's nodes on x >= 0",
        id="exclusive_surrogate",
    ),
    pytest.param(
        lambda: sjn.DecoupledCUBALIFNode(),
        "DecoupledCUBALIFNode",
        r"this SpikingJelly has no CUBALIFNode \(SpikingJelly 2.0 has\)",
        id="cuba_legacy",
        marks=pytest.mark.skipif(HAS_CUBA, reason="SpikingJelly 2.0 has CUBALIFNode"),
    ),
    pytest.param(
        lambda: sjn.DecoupledIFNode(surrogate_function="rect"),
        "DecoupledIFNode",
        "our Rect, and this SpikingJelly has no surrogate.Rect",
        id="rect_legacy",
        marks=pytest.mark.skipif(hasattr(sj_surrogate, "Rect"), reason="this SpikingJelly has Rect"),
    ),
]


@pytest.mark.parametrize("build, name, reason", REFUSED)
def test_nodes_spikingjelly_cannot_express_are_refused_naming_path_class_and_reason(build, name, reason):
    net = nn.Sequential(layer.Linear(3, 4), nn.Sequential(sjn.DecoupledIFNode(), build()))
    with pytest.raises(ValueError, match=rf"^net\.1\.1 \({name}\) cannot become a SpikingJelly node: .*{reason}"):
        sjn.to_spikingjelly(net)
    assert type(net[1][0]) is sjn.DecoupledIFNode  # untouched
    with pytest.raises(ValueError, match=rf"^net \({name}\) cannot become"):
        sjn.to_spikingjelly(build())


def _lif_loaded_per_channel() -> sjn.DecoupledLIFNode:
    """A fixed-decay LIF node whose state dict brought a different decay per channel (tau stays 2)."""
    node = sjn.DecoupledLIFNode(4, tau=2.0)
    node.load_state_dict({"core.decay_logit": torch.tensor([0.0, 1.0, 2.0, 3.0])})
    return node


def test_a_decay_loaded_per_channel_is_refused_rather_than_dropped():
    """LIFNode holds one tau: a node whose loaded decay differs per channel is refused, not converted with its tau."""
    with pytest.raises(ValueError, match=r"^net \(DecoupledLIFNode\) cannot become .*not that of its tau = 2"):
        sjn.to_spikingjelly(_lif_loaded_per_channel())
    node = sjn.DecoupledLIFNode(4, tau=3.0).to(torch.bfloat16)  # its own decay, in bfloat16: converted
    node.single_step_forward(torch.ones(2, 4, dtype=torch.bfloat16))
    assert sjn.to_spikingjelly(node).tau == 3.0


def test_bad_input():
    with pytest.raises(TypeError, match="net must be a torch.nn.Module, got int"):
        sjn.to_spikingjelly(3)
    with pytest.raises(ValueError, match=r"net \(Linear\) holds none of snn_parallel's SpikingJelly nodes"):
        sjn.to_spikingjelly(nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"net \(Sequential\) holds none .*nothing to convert"):
        sjn.to_spikingjelly(nn.Sequential(layer.Linear(2, 2), neuron.LIFNode()))


@pytest.mark.parametrize("ours, theirs, kwargs", PAIRS)
def test_spikingjellys_nir_export_gives_its_own_refusal_of_the_soft_reset(ours, theirs, kwargs):
    """SpikingJelly's NIR export refuses its own soft-reset nodes (NIR's neurons reset to ``v_reset``): the converted
    network meets SpikingJelly's refusal, not ours; with a hard reset set on the converted nodes it exports."""
    pytest.importorskip("nir")
    pytest.importorskip("nirtorch")
    try:
        from spikingjelly.activation_based.nir_exchange import export_to_nir
    except ImportError:
        pytest.skip("this SpikingJelly has no NIR exchange")
    net = nn.Sequential(layer.Linear(4, 5, step_mode="m"), ours(step_mode="m", **kwargs))
    converted = sjn.to_spikingjelly(net)
    with pytest.raises(NotImplementedError, match="NIR does not distinguish soft reset"):
        export_to_nir(converted, torch.rand(3, 2, 4))
    converted[1].v_reset = 0.0
    functional.reset_net(converted)
    graph = export_to_nir(converted, torch.rand(3, 2, 4))
    assert len(graph.nodes) >= 3  # input, linear, neuron (, output)
