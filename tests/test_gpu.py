"""The CuPy kernels on a GPU (``pytest -m gpu``; skipped without a CUDA device or CuPy): the calls themselves.

Each op's kernels are checked against its float64 torch path in ``tests/ops/test_<op>.py`` (their ``cuda``
tests); here: CUDA-graph capture of a forward and backward, ``torch.compile`` of a neuron, no host
synchronisation inside a forward, and the ``"auto"`` choice and its log line.
"""

from __future__ import annotations

import logging

import pytest
import torch

import snn_parallel as sp
from snn_parallel.ops import _backend, _cuda

pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
pytest.importorskip("cupy", reason="CuPy not installed (pip install snn-parallel[cuda12] or [cuda13])")

CUDA = torch.device("cuda")
B, C = 2, 8


def test_cupy_backend_is_available():
    """CuPy imports, NVRTC compiles and the module loads on this GPU (else every test below fails for this reason)."""
    assert _cuda.unavailable_reason(torch.cuda.current_device()) is None


def test_auto_picks_cupy_for_cuda_tensors_and_says_so_once(caplog, monkeypatch):
    monkeypatch.setattr(_backend, "_announced", set())
    x = torch.rand(4, 3, device=CUDA)
    with caplog.at_level(logging.INFO, logger="snn_parallel"):
        for _ in range(2):
            assert _backend.resolve_backend("auto", x, op="probe") == "cupy"
            assert (
                _backend.resolve_backend("auto", x.double(), op="probe", unsupported=lambda: "float64 inputs")
                == "torch"
            )
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "probe: backend='auto' uses cupy (CuPy kernels for CUDA tensors)",
        "probe: backend='auto' uses torch (the CuPy kernels cannot run: float64 inputs)",
    ]
    with pytest.raises(RuntimeError, match="probe: backend='cupy' cannot run: the inputs are on cpu"):
        _backend.resolve_backend("cupy", x.cpu(), op="probe")


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
