"""The SpikingJelly nodes in SpikingJelly 2.0's training machinery: the pieces of its classification
training script (AMP with a gradient scaler, checkpoints, the EMA model), monitors, containers,
``torch.compile`` and copies of a network mid-sequence."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn

pytest.importorskip("spikingjelly")
# SpikingJelly's monitor (imported by its learning rules too) needs tensorboard at import
pytest.importorskip("spikingjelly.activation_based.monitor")

from snn_parallel.adapters import spikingjelly as sjn  # noqa: E402
from spikingjelly.activation_based import functional, layer, monitor  # noqa: E402

pytestmark = pytest.mark.skipif(not sjn.SJ2, reason="SpikingJelly 2.0's training machinery")

C = 6
NODES = [
    pytest.param(sjn.DynamicDecayNode, {}, id="dsn"),
    pytest.param(sjn.PRFNode, {"dt_range": (0.5, 1.0)}, id="prf"),
    pytest.param(sjn.DecoupledLIFNode, {}, id="lif"),
    pytest.param(sjn.DecoupledIFNode, {}, id="if"),
    pytest.param(sjn.DecoupledParametricLIFNode, {}, id="plif"),
    pytest.param(sjn.LTCNode, {}, id="ltc"),
    pytest.param(sjn.PSPLIFNode, {}, id="psplif"),
]


def inputs(steps: int = 5, batch: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(steps, batch, C, generator=torch.Generator().manual_seed(seed)) * 2.5


def network(cls: type, kwargs: dict, step_mode: str = "m") -> nn.Sequential:
    """A small SpikingJelly classifier, its node built without a feature count (as the zoo builds it)."""
    net = nn.Sequential(layer.Linear(C, 8), layer.BatchNorm1d(8), cls(**kwargs), layer.Linear(8, 3))
    functional.set_step_mode(net, step_mode)
    return net


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    optimizer.zero_grad()
    nn.functional.cross_entropy(net(x).mean(0), y).backward()
    optimizer.step()
    functional.reset_net(net)


def evaluated(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    net.eval()
    with torch.inference_mode():  # as the training script evaluates
        out = net(x)
    functional.reset_net(net)
    net.train()
    return out


@pytest.mark.parametrize(("cls", "kwargs"), NODES)
def test_a_first_call_under_inference_mode_leaves_the_network_trainable(cls, kwargs):
    """The training script evaluates under torch.inference_mode(): a network whose nodes see their
    first input there builds ordinary parameters, which then train."""
    net = network(cls, kwargs)
    evaluated(net, inputs())
    assert not any(t.is_inference() for t in [*net.parameters(), *net.buffers()])
    before = [p.detach().clone() for p in net.parameters()]
    train_step(net, torch.optim.SGD(net.parameters(), lr=0.5), inputs(seed=1), torch.tensor([0, 1, 2, 0]))
    assert any(not torch.equal(p, q) for p, q in zip(net.parameters(), before, strict=True))


@pytest.mark.parametrize(("cls", "kwargs"), NODES)
def test_amp_step_and_checkpoint_resume_into_a_freshly_built_network(cls, kwargs):
    """The training script's step (autocast, GradScaler, gradient clipping) and its checkpoint:
    resuming into a network built anew, with its optimizer made before loading, gives the same
    evaluation and the same next step as the network that kept training."""
    torch.manual_seed(0)
    x, y = inputs(), torch.tensor([0, 1, 2, 0])
    net = network(cls, kwargs)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)
    scaler = torch.amp.GradScaler("cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nn.functional.cross_entropy(net(x).mean(0), y)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    functional.reset_net(net)
    assert torch.isfinite(loss)

    buffer = io.BytesIO()
    checkpoint = {
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": scheduler.state_dict(),
    }
    torch.save({**checkpoint, "scaler": scaler.state_dict(), "epoch": 0}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, map_location="cpu")  # weights_only, as the script loads it
    fresh = network(cls, kwargs)
    fresh_optimizer = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    fresh.load_state_dict(loaded["model"])
    fresh_optimizer.load_state_dict(loaded["optimizer"])
    assert torch.equal(evaluated(fresh, x), evaluated(net, x))
    train_step(net, optimizer, x, y)
    train_step(fresh, fresh_optimizer, x, y)
    assert all(torch.equal(p, q) for p, q in zip(fresh.parameters(), net.parameters(), strict=True))

    whole = io.BytesIO()
    torch.save(net, whole)  # the whole module, as some scripts save it
    whole.seek(0)
    assert torch.equal(evaluated(torch.load(whole, weights_only=False), x), evaluated(net, x))


@pytest.mark.parametrize(("cls", "kwargs"), NODES)
def test_ema_model_after_a_dry_run_follows_the_ema_formula(cls, kwargs):
    """The training script's ``--model-ema`` (an ``AveragedModel``): built after one forward, its
    weights are the first update's, then ``decay * ema + (1 - decay) * weights``."""
    from spikingjelly.activation_based.examples.common.tv_ref_classify import utils

    x, y, decay = inputs(), torch.tensor([0, 1, 2, 0]), 0.75
    net = network(cls, kwargs)
    with torch.no_grad():
        net(x)  # the dry run: the nodes build their per-channel tensors
    functional.reset_net(net)
    ema = utils.ExponentialMovingAverage(net, decay=decay)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    expected = None
    for _ in range(3):
        train_step(net, optimizer, x, y)
        ema.update_parameters(net)
        weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if expected is None:
            expected = weights
        else:
            expected = {k: decay * expected[k] + (1 - decay) * v for k, v in weights.items()}
    reference = copy.deepcopy(net)
    reference.load_state_dict(ema.module.state_dict())
    for key, value in ema.module.state_dict().items():
        if value.is_floating_point():  # the script's EMA also averages BatchNorm's integer batch count
            torch.testing.assert_close(value, expected[key], msg=key)
    assert torch.equal(evaluated(ema, x), evaluated(reference, x))


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize(("cls", "kwargs"), NODES)
def test_monitors_record_our_nodes(cls, kwargs, step_mode):
    """Output, input, attribute and gradient monitors with ``instance=`` our class record what the
    node received, returned and holds, and the gradients autograd gives."""
    torch.manual_seed(0)
    x = inputs().double()
    linear, node = layer.Linear(C, C).double(), cls(**kwargs).double()
    net = nn.Sequential(linear, node)
    functional.set_step_mode(net, step_mode)
    weights = torch.randn(x.shape, dtype=torch.float64)
    monitors = {
        "out": monitor.OutputMonitor(net, cls),
        "in": monitor.InputMonitor(net, cls),
        "v": monitor.AttributeMonitor("v", False, net, cls, lambda v: v.detach().clone()),
        "grad_in": monitor.GradInputMonitor(net, cls),
        "grad_out": monitor.GradOutputMonitor(net, cls),
    }
    currents, outs, vs = [], [], []
    for x_t in x if step_mode == "s" else [x]:
        current = linear(x_t)
        current.retain_grad()
        currents.append(current)
        outs.append(node(current))
        vs.append(node.v.detach().clone())
    out = torch.stack(outs) if step_mode == "s" else outs[0]
    (out * weights).sum().backward()
    functional.reset_net(net)
    steps = len(currents)
    records = {name: m.records for name, m in monitors.items()}
    for m in monitors.values():
        m.close()
    assert {name: len(r) for name, r in records.items()} == dict.fromkeys(monitors, steps)
    assert all(torch.equal(r, o) for r, o in zip(records["out"], outs, strict=True))
    assert all(torch.equal(r, c) for r, c in zip(records["in"], currents, strict=True))
    assert all(torch.equal(r, v) for r, v in zip(records["v"], vs, strict=True))
    # backward visits the steps last to first
    grad_out = [weights] if step_mode == "m" else weights.unbind(0)
    assert all(torch.equal(r, w) for r, w in zip(records["grad_out"][::-1], grad_out, strict=True))
    assert all(torch.equal(r, c.grad) for r, c in zip(records["grad_in"][::-1], currents, strict=True))


@pytest.mark.parametrize(("cls", "kwargs"), NODES)
def test_step_mode_containers_equal_the_multi_step_node(cls, kwargs):
    x = inputs().double()
    reference = cls(**kwargs, step_mode="m").double()
    expected = reference(x)
    node = cls(**kwargs).double()
    node.load_state_dict(reference.state_dict())
    functional.reset_net(node)
    assert torch.equal(layer.StepModeContainer(True, "m", node)(x), expected)
    functional.reset_net(node)
    assert torch.equal(layer.TLastMultiStepContainer(node)(x.permute(1, 2, 0)), expected.permute(1, 2, 0))
    recurrent = layer.ElementWiseRecurrentContainer(node, lambda a, b: a + b)
    functional.reset_net(recurrent)
    single = torch.stack([recurrent(x_t) for x_t in x])
    functional.reset_net(recurrent)
    recurrent.step_mode = "m"
    assert torch.equal(recurrent(x), single)


@pytest.mark.parametrize(("cls", "kwargs"), NODES)
def test_compiled_fullgraph_after_one_eager_call_matches_eager(cls, kwargs):
    """``torch.compile(net, fullgraph=True)`` after one eager call (which builds the lazy tensors):
    the same spikes and gradients as the eager network, over two sequences with a reset between."""
    torch._dynamo.reset()
    net = network(cls, kwargs)
    net(inputs())
    functional.reset_net(net)
    reference = copy.deepcopy(net)
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)
    for seed in (1, 2):
        out = compiled(inputs(seed=seed))
        out.sum().backward()
        functional.reset_net(compiled)
        expected = reference(inputs(seed=seed))
        expected.sum().backward()
        functional.reset_net(reference)
        torch.testing.assert_close(out, expected)
    for p, q in zip(net.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)


@pytest.mark.parametrize(("cls", "kwargs"), NODES)
def test_copies_and_dtype_changes_mid_sequence_carry_the_state(cls, kwargs):
    """``copy.deepcopy``, pickle and ``.double()`` of a network stopped mid-sequence (its memories
    set) continue the sequence as the original does."""
    x = inputs()
    net = network(cls, kwargs, step_mode="s").eval()
    with torch.no_grad():
        net(x[0])
        copies = [copy.deepcopy(net), pickle.loads(pickle.dumps(net)), copy.deepcopy(net).double()]
        expected = torch.stack([net(x_t) for x_t in x[1:]])
        for clone in copies:
            dtype = next(clone.parameters()).dtype
            got = torch.stack([clone(x_t.to(dtype)) for x_t in x[1:]])
            torch.testing.assert_close(got.float(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("conversion", ["bfloat16", "half", "double"])
@pytest.mark.parametrize(("cls", "kwargs"), NODES)
def test_dtype_conversion_before_the_first_call(cls, kwargs, conversion):
    """``net.bfloat16()`` (or ``.half()``, ``.double()``) on a network whose nodes have not seen their
    first input, as a script converts a zoo model right after building it: the nodes build their
    tensors in that dtype and train."""
    net = network(cls, {**kwargs, "learn_decay": True} if cls in (sjn.PRFNode, sjn.DecoupledLIFNode) else kwargs)
    getattr(net, conversion)()
    dtype = next(net.parameters()).dtype
    out = net(inputs().to(dtype))
    out.float().sum().backward()
    assert out.dtype == dtype
    assert {t.dtype for t in [*net.parameters(), *net.buffers()] if t.is_floating_point()} == {dtype}
    assert all(p.grad is not None and p.grad.dtype == dtype for p in net.parameters())


@pytest.mark.parametrize("dry_run", [True, False], ids=["after a forward", "lazy"])
@pytest.mark.parametrize(("cls", "kwargs"), NODES)
def test_gradient_checkpointing_in_time_chunks_matches_the_plain_network(cls, kwargs, dry_run):
    """``memopt.checkpoint_module`` over two time chunks, after one forward or on nodes still waiting for their
    feature count (which it runs in ``torch.func.functional_call``, on copies of their tensors): the outputs, the
    gradients and the memories left for the next call are the plain network's."""
    from spikingjelly.activation_based import base, memopt

    x = inputs(steps=6).double()
    # no BatchNorm: over a chunk its batch statistics are the chunk's, as with SpikingJelly's nodes
    net = nn.Sequential(layer.Linear(C, 8), cls(**kwargs), layer.Linear(8, 3)).double()
    functional.set_step_mode(net, "m")
    if dry_run:
        with torch.no_grad():
            net(x)
        functional.reset_net(net)
    reference = copy.deepcopy(net)
    wrapped = memopt.checkpoint_module(net, chunks=2)
    weights = torch.randn(2, *x.shape[:2], 3, dtype=torch.float64)
    torch.manual_seed(1)  # the same initial values for a lazy node's random parameters in both
    outs = [wrapped(x), wrapped(x)]  # the memories carry over to the second call
    torch.manual_seed(1)
    expected = [reference(x), reference(x)]
    sum((o * w).sum() for o, w in zip(outs, weights, strict=True)).backward()
    sum((o * w).sum() for o, w in zip(expected, weights, strict=True)).backward()
    for got, want in zip(outs, expected, strict=True):
        torch.testing.assert_close(got, want)
    for p, q in zip(net.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    for got, want in zip(base.extract_memories(net), base.extract_memories(reference), strict=True):
        torch.testing.assert_close(got, want)
