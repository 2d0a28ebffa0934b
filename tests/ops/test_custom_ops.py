"""The kernels' launchers as ``torch.library`` custom ops: registered with fake (meta) implementations that give the
real outputs' shapes and dtypes, so that ``torch.compile`` traces through them (here on CPU tensors, the kernels
run by the CPU harness behind the ops)."""

from __future__ import annotations

import pytest
import torch

from snn_parallel.ops import dsn_membrane, linear_fire, linear_scan, ltc_scan, tsslbp
from snn_parallel.surrogate import ATan

OPS = [
    "scan_forward",
    "scan_backward",
    "linear_fire_forward",
    "linear_fire_backward",
    "dsn_forward",
    "dsn_backward",
    "ltc_forward",
    "ltc_backward",
    "tssl_forward",
    "tssl_backward",
]

pytestmark = pytest.mark.skipif(
    not hasattr(torch.library, "custom_op"), reason="torch.library.custom_op needs torch >= 2.4"
)


def test_every_launcher_is_a_registered_op():
    for name in OPS:
        op = getattr(torch.ops.snn_parallel, name).default
        assert op._schema.name == f"snn_parallel::{name}"
        assert not any(a.alias_info and a.alias_info.is_write for a in op._schema.arguments)  # nothing mutated


class Calls(torch.utils._python_dispatch.TorchDispatchMode):
    """The snn_parallel ops called, with their arguments."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "snn_parallel":
            self.calls.append((func, args, kwargs or {}))
        return func(*args, **(kwargs or {}))


def _calls_of_each_op():
    """Run every op forward and backward on the CuPy path (in the harness) and keep the calls of our ops."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(70, 2, 3, generator=gen).requires_grad_()
    decay = (torch.rand(3, generator=gen) * 0.9 * torch.exp(1j * torch.rand(3, generator=gen))).requires_grad_()
    scale = torch.rand(3, generator=gen).requires_grad_()
    zeros = torch.zeros(2, 3)
    with Calls() as mode:
        h, _ = linear_scan(torch.rand(3, generator=gen), x, backend="cupy")
        h.sum().backward()
        out = linear_fire(x, decay, scale, zeros.to(torch.complex64), zeros, ATan(), 0.5, decay.real, backend="cupy")
        (out[0].sum() + out[1].sum()).backward()
        weight, bias = torch.randn(3, 3, generator=gen).requires_grad_(), torch.randn(3, generator=gen).requires_grad_()
        spikes, h, _ = dsn_membrane(
            x, torch.rand(2, 2, 3, generator=gen), weight, bias, 0.25, zeros, ATan(), 1.0, backend="cupy"
        )
        (spikes.sum() + h.sum()).backward()
        gates = [torch.rand(70, 2, 3, generator=gen).requires_grad_() for _ in range(2)]
        ltc_out = ltc_scan(x, *gates, zeros, zeros, zeros, 0.1, 1.8, ATan(), backend="cupy")
        sum(o.sum() for o in ltc_out).backward()
        tsslbp(x, backend="cupy")[0].sum().backward()
    return mode.calls


def test_fake_implementations_match_the_kernels(emulate_cupy):
    """For each op: under a fake-tensor mode the outputs have the real outputs' shapes, dtypes and devices
    (torch.library.opcheck: schema, fake tensor, AOT dispatch)."""
    emulate_cupy()
    calls = _calls_of_each_op()
    assert {func._schema.name.split("::")[1] for func, _, _ in calls} == set(OPS)
    for func, args, kwargs in calls:
        args = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
        torch.library.opcheck(
            func, args, kwargs, test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")
        )


def test_a_fake_implementation_that_lies_is_caught(emulate_cupy, monkeypatch):
    """The check above bites: a fake forward of the scan that gives h the wrong shape fails it."""
    emulate_cupy()
    calls = [c for c in _calls_of_each_op() if c[0]._schema.name == "snn_parallel::scan_forward"]
    from torch._library.custom_ops import OPDEFS

    opdef = OPDEFS["snn_parallel::scan_forward"]
    real_fake = opdef._abstract_fn
    monkeypatch.setattr(opdef, "_abstract_fn", lambda *a, **k: tuple(t[:-1] for t in real_fake(*a, **k)))
    func, args, kwargs = calls[0]
    with pytest.raises(Exception, match="test_faketensor failed"):
        torch.library.opcheck(func, args, kwargs, test_utils=("test_faketensor",))


def _fire(x, decay, scale):
    zeros = torch.zeros(x.shape[1:])
    return linear_fire(
        x, decay, scale, zeros.to(torch.complex64), zeros, ATan(), 0.5, decay.real, backend="cupy", validate=False
    )[0]


def _scan(a, b):
    return linear_scan(a, b, backend="cupy", validate=False)[0]


@pytest.mark.parametrize("fn", [_scan, _fire], ids=["linear_scan", "linear_fire"])
def test_torch_compile_traces_through_the_kernels(emulate_cupy, fn):
    """torch._dynamo.explain: one graph, no break, the kernel's op inside it."""
    emulate_cupy()
    gen = torch.Generator().manual_seed(1)
    args = (
        torch.rand(50, 2, 3, generator=gen),
        torch.rand(3, generator=gen) * torch.exp(1j * torch.rand(3, generator=gen)),
        torch.rand(3, generator=gen),
    )
    args = (args[2], args[0]) if fn is _scan else args
    fn(*args)  # the backend's choice is logged once, eagerly
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(fn)(*args)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    targets = {str(node.target) for graph in explanation.graphs for node in graph.graph.nodes}
    assert any("snn_parallel" in t for t in targets), targets


@pytest.mark.slow
def test_compiled_forward_and_backward_equal_eager(emulate_cupy):
    """torch.compile (inductor on the CPU around the ops) gives eager's spikes and gradients."""
    emulate_cupy()
    gen = torch.Generator().manual_seed(2)
    x, scale = torch.rand(50, 2, 3, generator=gen), torch.rand(3, generator=gen)
    decay = torch.rand(3, generator=gen) * 0.9 * torch.exp(1j * torch.rand(3, generator=gen))
    results = []
    torch._dynamo.reset()
    for fn in (_fire, torch.compile(_fire)):
        leaves = [t.clone().requires_grad_() for t in (x, decay, scale)]
        spikes = fn(*leaves)
        (spikes * torch.linspace(0, 1, 3)).sum().backward()
        results.append((spikes, *(t.grad for t in leaves)))
    for eager, compiled in zip(*results, strict=True):
        torch.testing.assert_close(compiled, eager)


@pytest.mark.gpu
@pytest.mark.parametrize("fn", [_scan, _fire], ids=["linear_scan", "linear_fire"])
def test_torch_compile_traces_through_the_kernels_on_a_gpu(fn):
    from kernel_harness.gpu import require_cuda

    device = require_cuda()
    args = (
        torch.rand(500, 4, 8, device=device),
        torch.rand(8, device=device) * torch.exp(1j * torch.rand(8, device=device)),
        torch.rand(8, device=device),
    )
    args = (args[2], args[0]) if fn is _scan else args
    expected = fn(*args)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(fn)(*args)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    torch.testing.assert_close(torch.compile(fn)(*args), expected)
