"""The SpikingJelly adapter, under whichever SpikingJelly is installed (2.0.0 or 0.0.0.0.14)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

pytest.importorskip("spikingjelly")

from spikingjelly.activation_based import base, functional, layer, neuron  # noqa: E402
from spikingjelly.activation_based import surrogate as sj_surrogate  # noqa: E402

from snn_parallel import surrogate as sp_surrogate  # noqa: E402
from snn_parallel.adapters import spikingjelly as sjn  # noqa: E402

SJ2 = sjn.SJ2
C = 6
#: each node with the neuron-specific arguments that make it fire on the test inputs
NODES = [
    pytest.param(sjn.DynamicDecayNode, {}, id="dsn"),
    pytest.param(sjn.PRFNode, {"dt_range": (0.5, 1.0)}, id="prf"),
    pytest.param(sjn.PRFNode, {"dt_range": (0.5, 1.0), "reset": True}, id="prf_reset"),
    pytest.param(sjn.DecoupledLIFNode, {"tau": 2.0}, id="lif"),
    pytest.param(sjn.LTCNode, {}, id="ltc"),
    pytest.param(sjn.LTCNode, {"mode": "parallel"}, id="ltc_parallel"),
]


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
    wrapped = sjn.DynamicDecayNode(C, surrogate_function=sj_surrogate.ATan()).core.surrogate
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
    assert all(torch.equal(a, b) for a, b in zip(base.extract_memories(net), states2))
    (out_node,), _ = base.to_functional_forward(node)((net[0](x),), states1)
    assert torch.equal(out_node, out2)


@pytest.mark.skipif(SJ2, reason="backends exist on SpikingJelly 0.0.0.0.14 only")
@pytest.mark.parametrize("cls, kwargs", [*NODES, pytest.param(sjn.PSPLIFNode, {}, id="psplif")])
def test_legacy_backends(cls, kwargs):
    net = nn.Sequential(layer.Linear(C, C, step_mode="m"), cls(C, step_mode="m", **kwargs)).double()
    node = net[1]
    assert node.supported_backends == ("torch", "cupy")
    functional.set_backend(net, "cupy")
    assert node.backend == node.core.ops_backend == "cupy"  # 'm' mode runs the CuPy kernels
    with pytest.raises(RuntimeError, match=rf"{cls.__name__}: backend='cupy' runs the CuPy kernels .* need CUDA tensors"):
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
        (lambda: sjn.DecoupledLIFNode(C, decay_input=True), ValueError, "decay_input"),
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


def test_wrong_input_shapes_forwarded_from_the_core():
    node = sjn.DecoupledLIFNode(C, step_mode="m")
    with pytest.raises(ValueError, match="x_seq"):
        node(torch.rand(3, 2, C + 1))
    functional.set_step_mode(node, "s")
    with pytest.raises(ValueError, match="x_t"):
        node(torch.rand(2, C + 1))
    with pytest.raises(ValueError, match="x_seq"):
        sjn.LTCNode(C, step_mode="m")(torch.rand(3, 2, C, 5))


def test_register_is_idempotent_reversible_and_never_overwrites():
    from spikingjelly.activation_based import surrogate as sj_sur

    names = ("DynamicDecayNode", "PRFNode", "DecoupledLIFNode", "LTCNode", "PSPLIFNode")
    assert not any(hasattr(neuron, n) for n in names)  # importing registered nothing
    sj_sur.MultiGaussian = sentinel = object()  # pretend SpikingJelly defines this name
    try:
        with pytest.warns(RuntimeWarning, match="MultiGaussian"):
            sjn.register()
        sjn.register()  # idempotent, no second warning for the same skip
        assert neuron.PRFNode is sjn.PRFNode and neuron.LTCNode is sjn.LTCNode
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
