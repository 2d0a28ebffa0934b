"""``DecoupledCUBALIFNode``: SpikingJelly 2.0's soft-reset ``CUBALIFNode`` trained in parallel.

Against SpikingJelly's own ``CUBALIFNode(v_reset=None)`` with ``detach_reset=True`` (2.0 only) in float64, and
against the equations written out here (both SpikingJelly versions: 0.0.0.0.14 has no ``CUBALIFNode``).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("spikingjelly")

from snn_parallel.adapters import spikingjelly as sjn  # noqa: E402
from spikingjelly.activation_based import base, functional, layer, neuron  # noqa: E402
from spikingjelly.activation_based import surrogate as sj_surrogate  # noqa: E402
from spikingjelly.activation_based.model import parametric_lif_net  # noqa: E402

from snn_parallel import surrogate as sp_surrogate  # noqa: E402

HAS_CUBA = hasattr(neuron, "CUBALIFNode")
needs_cuba = pytest.mark.skipif(not HAS_CUBA, reason="SpikingJelly 0.0.0.0.14 has no CUBALIFNode (2.0 has)")
C = 5
#: decays and threshold the twins share (not SpikingJelly's defaults, so that passing them is tested)
ARGS = {"c_decay": 0.3, "v_decay": 0.6, "v_threshold": 0.4}


def theirs(step_mode: str = "s", **kwargs) -> nn.Module:
    """SpikingJelly's ``CUBALIFNode`` with the soft reset ours computes (its constructor takes no ``detach_reset``
    nor ``step_mode``: set as attributes)."""
    node = neuron.CUBALIFNode(v_reset=None, **kwargs)
    node.detach_reset = True
    node.step_mode = step_mode
    return node


def run(node: nn.Module, x: torch.Tensor, step_mode: str | None = None) -> torch.Tensor:
    """``x`` ``[T, ...]`` through ``node`` in ``step_mode`` (default: the node's)."""
    step_mode = step_mode or node.step_mode
    return node(x) if step_mode == "m" else torch.stack([node(x_t) for x_t in x])


def reference(x: torch.Tensor, c_decay: float, v_decay: float, v_threshold: float, v=None, c=None):
    """The soft-reset CUBA LIF, written out: spikes ``[T, ...]``, the last ``v`` and ``c``."""
    v = torch.zeros_like(x[0]) if v is None else v
    c = torch.zeros_like(x[0]) if c is None else c
    spikes = []
    for x_t in x.unbind(0):
        c = c_decay * c + x_t
        h = v_decay * v + c
        s = (h >= v_threshold).to(x.dtype)
        v = h - v_threshold * s
        spikes.append(s)
    return torch.stack(spikes), v, c


def _input(shape=(12, 3, C), scale=0.5, seed=0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_matches_the_equations_on_every_spikingjelly(float64, step_mode):
    """Spikes, ``v`` and ``c`` of two calls in a row equal the written-out soft-reset CUBA LIF (both versions)."""
    node = sjn.DecoupledCUBALIFNode(C, **ARGS, step_mode=step_mode)
    x = _input()
    first, second = run(node, x[:7]), run(node, x[7:])
    spikes, v, c = reference(x, **ARGS)
    assert 0 < spikes.mean() < 1
    torch.testing.assert_close(torch.cat([first, second]), spikes, rtol=0, atol=0)
    torch.testing.assert_close(node.v, v, rtol=0, atol=1e-12)
    torch.testing.assert_close(node.c, c, rtol=0, atol=1e-12)
    functional.reset_net(node)
    assert node.v is None and node.c is None
    torch.testing.assert_close(run(node, x), spikes, rtol=0, atol=0)


@needs_cuba
@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("kwargs", [{}, ARGS], ids=["defaults", "given"])
def test_matches_spikingjellys_cuba_lif_node(float64, step_mode, kwargs):
    """Spikes, ``v``, ``c`` and the input gradient (through the spikes and the last ``v`` and ``c``) of three calls
    in a row, a reset, and one more call: SpikingJelly's, with our default surrogate ``Rect()`` for its ``Rect()``."""
    x = _input(scale=0.35 if not kwargs else 0.5).requires_grad_()
    results = []
    for node in (sjn.DecoupledCUBALIFNode(C, **kwargs, step_mode=step_mode), theirs(step_mode, **kwargs)):
        calls = [run(node, part) for part in (x[:3], x[3:4], x[4:])]
        state = (node.v, node.c)
        functional.reset_net(node)
        again = run(node, x)
        loss = sum((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum() for out in [*calls, again])
        loss = loss + (state[0] * 0.7).sum() + (state[1] * 0.3).sum()
        (grad,) = torch.autograd.grad(loss, x)
        results.append((torch.cat(calls), again, *state, node.v, node.c, grad))
    assert 0 < results[1][0].mean() < 1
    for ours, their in zip(*results, strict=True):
        torch.testing.assert_close(ours, their, rtol=0, atol=1e-12)


@needs_cuba
def test_memories_are_spikingjellys_v_and_c(float64):
    ours, their = sjn.DecoupledCUBALIFNode(C), theirs()
    assert list(ours._memories) == list(their._memories) == ["v", "c"]
    if sjn.SJ2:
        x = _input()[0]
        for node in (ours, their):
            node(x)
        for mine, its in zip(base.extract_memories(ours), base.extract_memories(their), strict=True):  # v, then c
            torch.testing.assert_close(mine, its, rtol=0, atol=1e-12)


@needs_cuba
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_assigning_v_and_c_mid_run_continues_as_spikingjelly(float64, step_mode):
    x = _input()
    v0, c0 = _input((3, C), 1.0, seed=1), _input((3, C), 0.3, seed=2)
    results = []
    for node in (sjn.DecoupledCUBALIFNode(C, **ARGS, step_mode=step_mode), theirs(step_mode, **ARGS)):
        run(node, x[:4])
        node.v, node.c = v0, c0
        after = run(node, x[4:])
        node.c = c0  # the current alone: v as it is
        results.append((after, run(node, x[4:8]), node.v, node.c))
    for ours, their in zip(*results, strict=True):
        torch.testing.assert_close(ours, their, rtol=0, atol=1e-12)
    fresh = sjn.DecoupledCUBALIFNode(C, **ARGS)
    fresh.c = c0  # before any input, v rests at 0
    spikes, v, c = reference(x, **ARGS, c=c0)
    torch.testing.assert_close(run(fresh, x), spikes, rtol=0, atol=0)


@needs_cuba
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_decays_read_and_assigning_them_acts_from_the_next_step_as_on_spikingjelly(float64, step_mode):
    x = _input()
    results = []
    for node in (sjn.DecoupledCUBALIFNode(C, step_mode=step_mode), theirs(step_mode)):
        assert (node.c_decay, node.v_decay) == (0.5, 0.75)
        first = run(node, x[:5])
        node.c_decay, node.v_decay = 0.2, 0.9
        assert (node.c_decay, node.v_decay) == (0.2, 0.9)
        results.append((first, run(node, x[5:]), node.v, node.c))
    for ours, their in zip(*results, strict=True):
        torch.testing.assert_close(ours, their, rtol=0, atol=1e-12)
    lazy = sjn.DecoupledCUBALIFNode(**ARGS)  # assigned before the lazy core builds its decays
    lazy.c_decay, lazy.v_decay = 0.2, 0.9
    spikes, _, _ = reference(x, 0.2, 0.9, ARGS["v_threshold"])
    torch.testing.assert_close(lazy(x[0]), spikes[0], rtol=0, atol=0)


@pytest.mark.parametrize("memory", ["v", "c"])
def test_a_lazy_node_takes_a_memory_before_its_first_input(float64, memory):
    """Assigned before the first input, a memory gives the lazy node its channels: the next call starts from it."""
    x, start = _input(), _input((3, C), 0.8, seed=3)
    node = sjn.DecoupledCUBALIFNode(**ARGS)
    setattr(node, memory, start)
    spikes, v, c = reference(x, **ARGS, **{memory: start})
    torch.testing.assert_close(run(node, x), spikes, rtol=0, atol=0)
    torch.testing.assert_close((node.v, node.c), (v, c), rtol=0, atol=1e-12)
    lif = sjn.DecoupledLIFNode(tau=2.0)  # the LIF nodes' v too (their core keeps the resets in a bias)
    lif.v = start * 2
    h = 0.5 * start * 2 + x[0]  # u_t = (1 - 1/tau) v + x_t, no decay_input
    torch.testing.assert_close(lif(x[0]), (h >= 1.0).to(x.dtype), rtol=0, atol=0)
    torch.testing.assert_close(lif.v, h - (h >= 1.0).to(x.dtype), rtol=0, atol=1e-12)


@needs_cuba
def test_v_seq_is_spikingjellys_before_the_reset(float64):
    """``store_v_seq``: ours stores :math:`h_t` (compared with the threshold), SpikingJelly's :math:`v_t` after the
    reset, :math:`h_t - V_{th} s_t`."""
    x = _input()
    ours, their = sjn.DecoupledCUBALIFNode(C, **ARGS, step_mode="m", store_v_seq=True), theirs("m", **ARGS)
    their.store_v_seq = True
    spikes = ours(x)
    their(x)
    torch.testing.assert_close(ours.v_seq - ARGS["v_threshold"] * spikes, their.v_seq, rtol=0, atol=1e-12)


@needs_cuba
def test_lazy_nodes_in_a_conv_network_and_spikingjellys_zoo(float64):
    """Feature count inferred from ``[T, B, C, H, W]`` in a small conv network, and in ``parametric_lif_net.MNISTNet``
    built by ``spiking_neuron(**kwargs)``: the outputs, input and weight gradients of the same network of
    ``CUBALIFNode``, in both step modes."""
    torch.manual_seed(0)
    conv = nn.Sequential(
        layer.Conv2d(2, 4, 3, padding=1), sjn.DecoupledCUBALIFNode(), layer.Flatten(), layer.Linear(64, 3)
    )
    conv.append(sjn.DecoupledCUBALIFNode(v_threshold=0.2))
    their_conv = nn.Sequential(layer.Conv2d(2, 4, 3, padding=1), theirs(), layer.Flatten(), layer.Linear(64, 3))
    their_conv.append(theirs(v_threshold=0.2))
    torch.manual_seed(1)
    zoo = parametric_lif_net.MNISTNet(channels=2, spiking_neuron=sjn.DecoupledCUBALIFNode, v_threshold=0.3)
    their_zoo = parametric_lif_net.MNISTNet(channels=2, spiking_neuron=lambda **kw: theirs(**kw), v_threshold=0.3)
    pairs = [(conv, their_conv, _input((4, 2, 2, 4, 4), 2.0)), (zoo, their_zoo, _input((3, 2, 1, 28, 28), 2.0))]
    for ours, their, x in pairs:
        ours(x[0])  # builds the lazy nodes, so that the weights load strictly
        their.load_state_dict({k: v for k, v in ours.state_dict().items() if ".core." not in k})
        assert all(m.core.features is not None for m in ours.modules() if isinstance(m, sjn.DecoupledCUBALIFNode))
        for step_mode in ("s", "m"):
            results = []
            for net in (ours.eval(), their.eval()):
                functional.set_step_mode(net, step_mode)
                functional.reset_net(net)
                net.zero_grad()
                xg = x.clone().requires_grad_()
                out = run(net, xg, step_mode)
                (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
                results.append((out, xg.grad, *(p.grad for p in net.parameters())))
            assert results[1][0].abs().sum() > 0
            for a, b in zip(*results, strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@needs_cuba
def test_spikingjellys_surrogate_object_is_kept_and_computes_the_same(float64):
    surrogate = sj_surrogate.Rect(alpha=2.0)
    ours = sjn.DecoupledCUBALIFNode(C, **ARGS, surrogate_function=surrogate)
    assert ours.surrogate_function is surrogate
    their = theirs(**ARGS, surrogate_function=sj_surrogate.Rect(alpha=2.0))
    x = _input().requires_grad_()
    grads = [torch.autograd.grad(run(node, x).sum(), x)[0] for node in (ours, their)]
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-12)
    assert isinstance(sjn.DecoupledCUBALIFNode().surrogate_function, sp_surrogate.Rect)


def test_registered_with_the_other_nodes():
    sjn.register()
    try:
        assert neuron.DecoupledCUBALIFNode is sjn.DecoupledCUBALIFNode
    finally:
        sjn.unregister()
    assert not hasattr(neuron, "DecoupledCUBALIFNode")


def test_nir_export_refuses_the_node_with_the_reason():
    pytest.importorskip("nir")
    pytest.importorskip("nirtorch")
    try:
        from spikingjelly.activation_based.nir_exchange import export_to_nir
    except ImportError:
        pytest.skip("this SpikingJelly has no NIR exchange")
    net = nn.Sequential(layer.Linear(4, C, step_mode="m"), sjn.DecoupledCUBALIFNode(step_mode="m"))
    with pytest.raises(TypeError, match="DecoupledCUBALIFNode cannot be exported to NIR.*CubaLIF"):
        export_to_nir(net, torch.rand(3, 2, 4))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"c_decay": 0.0}, ValueError, r"c_decay must lie in \(0, 1\), got 0.0: .*logit"),
        ({"c_decay": 1.0}, ValueError, r"c_decay must lie in \(0, 1\)"),
        ({"v_decay": -0.5}, ValueError, r"v_decay must lie in \(0, 1\)"),
        ({"v_decay": float("nan")}, ValueError, r"v_decay must lie in \(0, 1\), got nan"),
        ({"c_decay": "0.5"}, TypeError, "c_decay must be a float"),
        ({"v_decay": True}, TypeError, "v_decay must be a float"),
        ({"v_threshold": 1}, TypeError, "v_threshold must be a float"),
        ({"v_reset": 0.0}, ValueError, "v_reset=0.0 is not supported by DecoupledCUBALIFNode"),
        ({"detach_reset": False}, ValueError, "detach_reset=False is not supported by DecoupledCUBALIFNode"),
        ({"surrogate_function": 3}, TypeError, "surrogate_function must be"),
        ({"step_mode": "x"}, ValueError, "step_mode"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises((error, AssertionError) if "step_mode" in kwargs else error, match=match):
        sjn.DecoupledCUBALIFNode(C, **kwargs)


def test_bad_assignments_and_inputs_name_the_argument():
    node = sjn.DecoupledCUBALIFNode(C)
    with pytest.raises(ValueError, match="c_decay must lie in"):
        node.c_decay = 1.5
    with pytest.raises(TypeError, match="v_decay must be a float"):
        node.v_decay = None
    assert (node.c_decay, node.v_decay) == (0.5, 0.75)  # unchanged
    with pytest.raises(ValueError, match=f"{C}"):
        node(torch.rand(3, C + 1))
    node(torch.rand(3, C))
    with pytest.raises(ValueError, match=r"v must have shape \(3, 5\)"):
        node.v = torch.zeros(2, C)
    with pytest.raises(TypeError, match="v must be a tensor"):
        node.v = 0.0
    with pytest.raises(TypeError, match="c must be a tensor"):
        node.c = 0.0
    with pytest.raises(ValueError, match=r"c must have shape \(3, 5\)"):
        node.c = torch.zeros(3, C, 1)
    with pytest.raises(ValueError, match="states must hold 2 entries .*v, c"):
        node._core_state((None,))
    node.v = None  # a memory at rest, as SpikingJelly's base.load_memories restores it: c goes on alone
    spikes, v, _ = reference(torch.zeros(1, 3, C), 0.5, 0.75, 0.5, c=node.c)
    torch.testing.assert_close(node(torch.zeros(3, C)), spikes[0], rtol=0, atol=0)
    torch.testing.assert_close(node.v, v, rtol=0, atol=1e-12)
