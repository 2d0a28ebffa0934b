"""No torch-side waste around the kernels: on the CuPy path (run in the CPU harness) the only full-size work of
``linear_scan`` and ``linear_fire`` is their own kernels, one or two a direction, and a gradient that arrives
expanded (stride 0) is read as it is."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from snn_parallel.ops import _cuda, linear_fire, linear_scan
from snn_parallel.surrogate import ATan

#: aten ops that move no data (views, allocations, metadata)
FREE = {
    "view",
    "_unsafe_view",
    "reshape",
    "expand",
    "as_strided",
    "select",
    "slice",
    "t",
    "transpose",
    "alias",
    "detach",
    "empty",
    "empty_like",
    "empty_strided",
    "new_empty",
    "new_empty_strided",
    "unsqueeze",
    "squeeze",
    "_reshape_alias",
    "view_as_real",
    "view_as_complex",
    "_conj",
    "resolve_conj",
    "lift_fresh",
    "real",
    "imag",
    "permute",
    "is_same_size",
    "ones_like",
    "promote_types",
    "to",
}  # "to" copies through _to_copy


class Recorder(TorchDispatchMode):
    """Records every aten op that moves data, with the largest tensor it touches; our custom ops (the kernels'
    launchers) are looked into: the torch ops they run are recorded too."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if func.namespace == "snn_parallel":
            with self:
                return torch._library.custom_ops.OPDEFS[f"snn_parallel::{name}"]._init_fn(*args, **(kwargs or {}))
        out = func(*args, **(kwargs or {}))
        if name not in FREE:
            tensors = [t for t in torch.utils._pytree.tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)]
            self.ops.append((name, max((t.numel() for t in tensors), default=0)))
        return out


@pytest.fixture
def launches(emulate_cupy, monkeypatch):
    """The kernels launched (name, grid) and the strides of the tensor arguments, through the harness."""
    emulate_cupy()
    seen = []
    harness_launch = _cuda.KernelFile.launch

    def launch(self, kernel, dtype, grid, block, *args):
        seen.append((kernel, [a.stride() if isinstance(a, torch.Tensor) else None for a in args]))
        harness_launch(self, kernel, dtype, grid, block, *args)

    monkeypatch.setattr(_cuda.KernelFile, "launch", launch)
    return seen


def _record(fn):
    with Recorder() as recorder:
        fn()
    return recorder.ops


def _full_size(ops, size):
    return [op for op in ops if op[1] >= size]


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
def test_linear_scan_moves_no_full_size_tensor_outside_its_kernels(launches, complex_):
    T, B, C = 300, 2, 3
    dtype = torch.complex64 if complex_ else torch.float32
    a = (torch.rand(C) * 0.9).to(dtype).requires_grad_()  # per channel: reaches the kernel as [C]
    b = torch.randn(T, B, C, dtype=dtype, requires_grad=True)
    out = {}
    forward = _record(lambda: out.setdefault("h", linear_scan(a, b, validate=False, backend="cupy")[0]))
    ones = torch.ones((), dtype=dtype).expand(T, B, C)  # the gradient h.sum() gives h: stride 0
    backward = _record(lambda: out["h"].backward(ones))
    assert [name for name, _ in launches] == [
        f"scan_fwd_{'complex' if complex_ else 'real'}",
        f"scan_bwd_{'complex' if complex_ else 'real'}",
    ]
    assert _full_size(forward, T * B * C) == [] and len(forward) <= 2, forward  # the flags memset (+ h0's zeros)
    assert _full_size(backward, T * B * C) == [], backward
    assert [name for name, _ in backward] == ["zeros", "sum"], backward  # the flags memset and the decay's partial sums
    assert launches[1][1][1] == (0, 0)  # the expanded gradient, read as it is
    assert a.grad.shape == (C,) and b.grad.shape == b.shape


@pytest.mark.parametrize("reset", [False, True], ids=["no_reset", "reset"])
def test_linear_fire_launches_its_kernels_and_little_else(launches, reset):
    T, B, C = 300, 2, 3
    x = torch.rand(T, B, C, requires_grad=True)
    decay = (torch.rand(C) * 0.9 * torch.exp(1j * torch.rand(C))).requires_grad_()
    scale = torch.rand(C, requires_grad=True)
    h0 = torch.zeros(B, C, dtype=torch.complex64)
    rho = torch.full((C,), 0.8) if reset else None
    out = {}

    def forward():
        out["spikes"] = linear_fire(
            x, decay, scale, h0, torch.zeros(B, C), ATan(), 0.5, rho, backend="cupy", validate=False
        )[0]

    forward_ops = _record(forward)
    ones = torch.ones(()).expand(T, B, C)  # the gradient spikes.sum() gives spikes: stride 0
    backward_ops = _record(lambda: out["spikes"].backward(ones))
    kernels = [name for name, _ in launches]
    assert kernels == (["lf_fwd_complex", "lf_chain_complex"] if reset else ["lf_fwd_complex"]) + ["lf_bwd_complex"]
    assert _full_size(forward_ops, T * B * C) == [], forward_ops
    assert len(forward_ops) <= 3, forward_ops  # the flags memset, bias_next (a copy of bias0 without a reset)
    assert _full_size(backward_ops, T * B * C) == [], backward_ops  # no materialised or copied gradient
    bwd_args = launches[-1][1]
    assert bwd_args[0] == (0, 0) and bwd_args[1] is None  # spikes' expanded gradient as it is; membrane's none
    # the flags memset, one reduction of the parameters' partial sums, and the complex decay's gradient put together
    assert [name for name, _ in backward_ops] == ["zeros", "sum", "complex"], backward_ops
    assert decay.grad.shape == (C,) and scale.grad.shape == (C,) and x.grad.shape == x.shape
