"""The CuPy kernels on a GPU (``pytest -m gpu``; skipped without a CUDA device or CuPy).

Every op runs with ``backend="cupy"`` in float32, float16 and bfloat16 on non-contiguous inputs,
at T = 1, an odd T that no chunk length divides, 4096 and (float32, bfloat16) 65 536, against the
op's torch path in float64 on the same (rounded) inputs: forward outputs and every gradient,
within a tolerance per dtype (TSSL-BP: float32 only; see its test). Then the calls
themselves: CUDA-graph capture of a forward and backward, ``torch.compile`` of a neuron, no host
synchronisation inside a forward, and the ``"auto"`` choice and its log line.

Spikes. The kernels decide spikes in float32, the reference in float64, so a spike may differ
where the reference's argument of the spike function lies within :data:`TIE` of a jump (a
near-tie). Every first difference in a lane must be such a near-tie; for ops whose spikes feed
back into the state (a reset) that lane is then left out of the value comparison and gets no
upstream gradient, and at most a quarter of the lanes may be left out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

import snn_parallel as sp
from snn_parallel.ops import _backend, _cupy, dsn_membrane, linear_fire, linear_scan, ltc_scan, tsslbp
from snn_parallel.ops.ltc.fused import ltc_forward
from snn_parallel.surrogate import ATan, IntegerSpike, MultiGaussian, Sigmoid, Surrogate
from test_kernels import _discontinuities

pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
pytest.importorskip("cupy", reason="CuPy not installed (pip install snn-parallel[cuda12] or [cuda13])")

CUDA = torch.device("cuda")
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
IDS = ["f32", "f16", "bf16"]
#: (values, gradients): allowed max |cupy - reference| relative to max |reference|
TOL = {torch.float32: (1e-4, 1e-3), torch.float16: (3e-3, 1e-2), torch.bfloat16: (2e-2, 6e-2)}
#: spike-function arguments closer than this to a jump may fire differently in float32 and float64
TIE = 1e-3
STEPS = [1, 333, 4096]
LONG = 65_536


def test_cupy_backend_is_available():
    """CuPy imports, NVRTC compiles and the module loads on this GPU (else every test below fails for this reason)."""
    assert _cupy.unavailable_reason(torch.cuda.current_device()) is None


def test_auto_picks_cupy_for_cuda_tensors_and_says_so_once(caplog, monkeypatch):
    monkeypatch.setattr(_backend, "_announced", set())
    x = torch.rand(4, 3, device=CUDA)
    with caplog.at_level(logging.INFO, logger="snn_parallel"):
        for _ in range(2):
            assert _backend.resolve_backend("auto", x, op="probe") == "cupy"
            assert _backend.resolve_backend("auto", x.double(), op="probe", unsupported=lambda: "float64 inputs") == "torch"
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "probe: backend='auto' uses cupy (CuPy kernels for CUDA tensors)",
        "probe: backend='auto' uses torch (the CuPy kernels cannot run: float64 inputs)",
    ]
    with pytest.raises(RuntimeError, match="probe: backend='cupy' cannot run: the inputs are on cpu"):
        _backend.resolve_backend("cupy", x.cpu(), op="probe")


# ---- ops against the float64 torch path ------------------------------------------------------


def _sequence(steps: int, *shape: int, dtype: torch.dtype, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Uniform values in ``[low, high)``, rounded to ``dtype``, as a non-contiguous ``[T, B, C]`` leaf."""
    base = torch.empty(steps, shape[1], shape[0], device=CUDA).uniform_(low, high).to(dtype)
    return base.transpose(1, 2)


@dataclass
class OpCase:
    """One op: ``inputs(T, dtype)`` builds the differentiable inputs, ``run(backend, *inputs)`` returns
    its outputs (spikes first; those without a gradient get no upstream one), ``spike_arg(inputs, outputs)``
    the reference's spike-function argument."""

    run: Callable[..., tuple[torch.Tensor, ...]]
    inputs: Callable[[int, torch.dtype], list[torch.Tensor]]
    spike_fn: Surrogate | None = None
    spike_arg: Callable[[list[torch.Tensor], tuple[torch.Tensor, ...]], torch.Tensor] | None = None
    feedback: bool = False  # spikes feed back into the state


B, C = 2, 8


def _fire_case(complex_: bool, reset: bool) -> OpCase:
    spike_fn = ATan()
    rho = torch.linspace(0.5, 0.95, C, device=CUDA)

    def inputs(steps, dtype):
        decay = torch.linspace(0.6, 0.97, C, device=CUDA)
        h0 = torch.randn(B, C, device=CUDA)
        if complex_:
            decay = decay * torch.exp(1j * torch.linspace(0.1, 1.5, C, device=CUDA))
            h0 = torch.complex(h0, torch.randn(B, C, device=CUDA))
        scale = (torch.rand(C, device=CUDA) + 0.5).to(dtype).float()  # linear_fire casts scale to x's dtype
        return [_sequence(steps, B, C, dtype=dtype, low=-0.5, high=1.5), decay, scale, h0]

    def run(backend, x, decay, scale, h0):
        bias0 = torch.zeros(B, C, device=CUDA, dtype=scale.dtype)
        reset_decay = rho.to(scale.dtype) if reset else None
        return linear_fire(x, decay, scale, h0, bias0, spike_fn, 1.0, reset_decay, backend=backend)[:3]

    return OpCase(run, inputs, spike_fn, lambda ins, outs: outs[1] - 1.0, feedback=reset)


def _dsn_case(spike_mode: str) -> OpCase:
    spike_fn, shift = (IntegerSpike(4), 0.0) if spike_mode == "integer" else (ATan(), 1.0)
    taps = 4

    def inputs(steps, dtype):
        return [
            _sequence(steps, B, C, dtype=dtype, high=3.0),
            torch.rand(taps - 1, B, C, device=CUDA).to(dtype),
            torch.randn(taps, C, device=CUDA) / 2,
            torch.randn(C, device=CUDA) + 1,
            torch.rand(B, C, device=CUDA).to(dtype),
        ]

    def run(backend, x, history, weight, bias, h0):
        return dsn_membrane(x, history, weight, bias, 0.25, h0, spike_fn, shift, backend=backend)

    return OpCase(run, inputs, spike_fn, lambda ins, outs: outs[1] - shift)


def _ltc_case() -> OpCase:
    spike_fn = MultiGaussian(inclusive=False)

    def inputs(steps, dtype):
        return [
            _sequence(steps, B, C, dtype=dtype, low=-1.0, high=2.0),
            _sequence(steps, B, C, dtype=dtype, low=0.05, high=0.95),
            _sequence(steps, B, C, dtype=dtype, low=0.5, high=0.99),
            torch.randn(B, C, device=CUDA).to(dtype),
            torch.zeros(B, C, device=CUDA).to(dtype),
            torch.rand(B, C, device=CUDA).to(dtype),
        ]

    def run(backend, *ins):
        return ltc_scan(*ins, 0.1, 1.8, spike_fn, backend=backend)

    def spike_arg(ins, outs):
        flat = [t.reshape(t.shape[0], -1) if t.dim() == 3 else t.reshape(-1) for t in ins]
        trace = ltc_forward(*flat, 0.1, 1.8, spike_fn)[2].view(outs[1].shape)
        return outs[1] - (0.1 + 1.8 * trace)

    return OpCase(run, inputs, spike_fn, spike_arg, feedback=True)


def _scan_case(complex_: bool, chunk: int | None) -> OpCase:
    def inputs(steps, dtype):
        a = _sequence(steps, B, C, dtype=dtype, low=0.5, high=1.0)
        b = _sequence(steps, B, C, dtype=dtype, low=-1.0, high=1.0)
        if complex_:
            a = torch.polar(a.float(), torch.rand_like(a.float()) * 3)
            b = torch.complex(b.float(), torch.randn_like(b.float()))
        return [a, b, torch.randn(B, C, device=CUDA, dtype=b.dtype)]

    def run(backend, a, b, h0):
        return linear_scan(a, b, h0, chunk=chunk, backend=backend)

    return OpCase(run, inputs)


def _tssl_case(at_spikes: bool = True) -> OpCase:
    def carried(dtype):  # the same (u0, a0) for both paths: TSSL-BP gives them no gradient
        gen = torch.Generator(device=CUDA).manual_seed(0)
        return [(scale * torch.rand(B, C, device=CUDA, generator=gen)).to(dtype) for scale in (0.9, 0.5)]

    def inputs(steps, dtype):
        return [_sequence(steps, B, C, dtype=dtype, low=-0.5, high=1.5)]

    def run(backend, current):
        psp, spikes, membrane, u_last, a_last = tsslbp(current, *carried(current.dtype), dt_du_at_spikes=at_spikes, backend=backend)
        return spikes, psp, membrane, u_last, a_last

    # the neuron fires by the step u_t > V_th, the forward of this surrogate (whose jump the tie check needs)
    return OpCase(run, inputs, Sigmoid(alpha=5.0, inclusive=False), lambda ins, outs: outs[2] - 1.0, feedback=True)


CASES = {
    "scan": _scan_case(False, None),
    "scan_chunk7": _scan_case(False, 7),
    "cscan": _scan_case(True, None),
    "lif": _fire_case(False, True),
    "prf": _fire_case(True, False),
    "prf_reset": _fire_case(True, True),
    "dsn": _dsn_case("binary"),
    "dsn_integer": _dsn_case("integer"),
    "ltc": _ltc_case(),
}


def _wide(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.complex128 if t.is_complex() else torch.float64).requires_grad_()


def _near_jump(arg: torch.Tensor, spike_fn: Surrogate) -> torch.Tensor:
    return torch.stack([(arg - p).abs() for p in _discontinuities(spike_fn)]).amin(0) < TIE


def _left_out_lanes(case: OpCase, got: tuple, ref: tuple, ref_inputs: list) -> torch.Tensor:
    """Lanes ``[B*C]`` to leave out (see the module doc), after checking that every spike difference
    starts at a near-tie."""
    steps = ref[0].shape[0]
    lanes = torch.zeros(ref[0][0].numel(), dtype=torch.bool, device=CUDA)
    if case.spike_fn is None:
        return lanes
    differ = (got[0].double() != ref[0]).reshape(steps, -1)
    near = _near_jump(case.spike_arg(ref_inputs, ref).detach(), case.spike_fn).reshape(steps, -1)
    if case.feedback:
        first = differ.int().argmax(0)
        lanes = differ.any(0)
        assert near[first, torch.arange(lanes.numel(), device=CUDA)][lanes].all(), "a spike differs away from a tie"
        assert lanes.float().mean() <= 0.25, f"{int(lanes.sum())} of {lanes.numel()} lanes hit a near-tie"
    else:
        assert near[differ].all(), "a spike differs away from a tie"
    return lanes


def _assert_close(got: torch.Tensor, ref: torch.Tensor, tol: float, what: str) -> None:
    error = (got.to(ref.dtype) - ref).abs().max().item() if ref.numel() else 0.0
    scale = ref.abs().max().item() if ref.numel() else 0.0
    assert error <= tol * max(scale, 1e-3), f"{what}: max error {error:.3g} vs max |reference| {scale:.3g} (tol {tol})"


def _check_op(case: OpCase, steps: int, dtype: torch.dtype) -> None:
    torch.manual_seed(steps)
    inputs = [t.requires_grad_() for t in case.inputs(steps, dtype)]
    ref_inputs = [_wide(t) for t in inputs]
    got = case.run("cupy", *inputs)
    ref = case.run("torch", *ref_inputs)
    left_out = _left_out_lanes(case, got, ref, ref_inputs)
    keep = (~left_out).view(B, C)
    values, grads = TOL[dtype]
    for i, (g, r) in enumerate(zip(got, ref, strict=True)):
        if i > 0 or case.spike_fn is None:  # spikes were checked above
            mask = keep.expand_as(r)
            _assert_close(g.detach()[mask], r.detach()[mask], values, f"output {i}")
    differentiable = [(g, r) for g, r in zip(got, ref) if g.requires_grad]
    weights = [torch.randn(g.shape, dtype=g.dtype, device=CUDA) * keep.expand(g.shape) for g, _ in differentiable]
    got_grads = torch.autograd.grad([g for g, _ in differentiable], inputs, weights)
    ref_grads = torch.autograd.grad([r for _, r in differentiable], ref_inputs, [_wide(w).detach() for w in weights])
    for i, (g, r) in enumerate(zip(got_grads, ref_grads, strict=True)):
        assert g.dtype == inputs[i].dtype and g.shape == inputs[i].shape
        _assert_close(g, r, grads, f"grad of input {i}")


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("name", CASES)
def test_op_matches_torch_path(name, steps, dtype):
    _check_op(CASES[name], steps, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", CASES)
def test_op_matches_torch_path_at_65536_steps(name, dtype):
    _check_op(CASES[name], LONG, dtype)


@pytest.mark.parametrize("at_spikes", [True, False])
@pytest.mark.parametrize("steps", [*STEPS, LONG])
def test_tsslbp_matches_torch_path(steps, at_spikes):
    """tsslbp's kernels against its torch path (float64): outputs and the current's gradient, for both revisions
    of dt/du. float32 only, as the kernel rounds the PSP that decides the silent-neuron fallback to the storage dtype."""
    _check_op(_tssl_case(at_spikes), steps, torch.float32)


# ---- the calls: CUDA graphs, torch.compile, no host sync ----------------------------------------

NEURONS = {
    "dsn": lambda: sp.DynamicDecay(C, backend="cupy"),
    "prf": lambda: sp.PRF(C, reset=True, backend="cupy"),
    "lif": lambda: sp.DecoupledLIF(C, learn_decay=True, backend="cupy"),
    "ltc": lambda: sp.LTC(C, mode="parallel", backend="cupy"),
}


def _train_step(neuron: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    spikes, state = neuron(x)
    loss = spikes.sum() + sum(s.real.sum() if s.is_complex() else s.sum() for s in state)
    loss.backward()
    return spikes


@pytest.mark.parametrize("name", NEURONS)
def test_cuda_graph_capture_of_forward_and_backward(name):
    neuron = NEURONS[name]().to(CUDA)
    static_x = torch.rand(300, B, C, device=CUDA, requires_grad=True)
    with sp.validation(False):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: compiles and loads the kernels outside the capture
            for _ in range(2):
                _train_step(neuron, static_x)
        torch.cuda.current_stream().wait_stream(side)
        neuron.zero_grad(set_to_none=True)
        static_x.grad = None
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_spikes = _train_step(neuron, static_x)
        new_x = torch.rand_like(static_x)
        with torch.no_grad():
            static_x.copy_(new_x)
        graph.replay()
        torch.cuda.synchronize()
        replayed = [static_spikes.clone(), static_x.grad.clone(), *(p.grad.clone() for p in neuron.parameters())]
        neuron.zero_grad(set_to_none=True)
        eager_x = new_x.clone().requires_grad_()
        eager = [_train_step(neuron, eager_x), eager_x.grad, *(p.grad for p in neuron.parameters())]
    for r, e in zip(replayed, eager, strict=True):
        torch.testing.assert_close(r, e)


@pytest.mark.parametrize("name", NEURONS)
def test_torch_compile_of_a_neuron_call(name):
    neuron = NEURONS[name]().to(CUDA)
    compiled = torch.compile(neuron)
    x = torch.rand(200, B, C, device=CUDA)
    with sp.validation(False):
        spikes, _ = compiled(x)
        expected, _ = neuron(x)
        spikes.sum().backward()
        grads = [p.grad.clone() for p in neuron.parameters()]
        neuron.zero_grad(set_to_none=True)
        expected.sum().backward()
    torch.testing.assert_close(spikes, expected)
    for g, p in zip(grads, neuron.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad)


@pytest.mark.parametrize("name", NEURONS)
def test_forward_never_synchronises_the_host(name):
    neuron = NEURONS[name]().to(CUDA)
    x = torch.rand(500, B, C, device=CUDA, requires_grad=True)
    with sp.validation(False):
        neuron(x)  # first call: compiles the kernels and checks CuPy once
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            spikes, _ = neuron(x)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert spikes.shape == x.shape
