"""Backend resolution (``snn_parallel.ops._backend``), and the neurons on the CuPy path run in the CPU harness."""

from __future__ import annotations

import pytest
import torch

import snn_parallel as sp
from snn_parallel.ops import linear_fire, linear_scan, ltc_scan, tsslbp
from snn_parallel.surrogate import ATan, ForeignSurrogate

NEURONS = {
    "dsn": lambda: sp.DynamicDecay(4),
    "dsn_integer": lambda: sp.DynamicDecay(4, spike_mode="integer"),
    "prf": lambda: sp.PRF(4),
    "prf_reset": lambda: sp.PRF(4, reset=True, learn_decay=True),
    "lif": lambda: sp.DecoupledLIF(4, learn_decay=True),
    "synaptic": lambda: sp.SynapticLIF(4, learn_decay=True, v_threshold=[0.5, 0.8, 1.1, 1.4], learn_threshold=True),
    "ltc": lambda: sp.LTC(4, mode="parallel"),
    "psplif": lambda: sp.PSPLIF(4),
    # a learned threshold per channel: its gradient from the kernels' backward
    "dsn_threshold": lambda: sp.DynamicDecay(4, v_threshold=[0.3, 0.5, 0.7, 0.9], learn_threshold=True),
    "prf_reset_threshold": lambda: sp.PRF(4, reset=True, v_threshold=[0.2, 0.4, 0.6, 0.8], learn_threshold=True),
    "lif_threshold": lambda: sp.DecoupledLIF(
        4, learn_decay=True, v_threshold=[0.5, 0.8, 1.1, 1.4], learn_threshold=True
    ),
    # the IF neuron (beta = 1), the input scaled by 1 - beta (a gain with a gradient), no reset
    "if": lambda: sp.DecoupledLIF(4, tau=float("inf"), learn_threshold=True),
    "lif_decay_input": lambda: sp.DecoupledLIF(4, tau=1.5, learn_decay=True, decay_input=True),
    "lif_no_reset": lambda: sp.DecoupledLIF(4, learn_decay=True, reset=False, learn_threshold=True),
    # one decay and one threshold shared by the channels (0-d parameters spread to the lanes)
    "lif_shared": lambda: sp.DecoupledLIF(4, learn_decay="shared", learn_threshold="shared"),
    "dsn_shared_threshold": lambda: sp.DynamicDecay(4, v_threshold=0.5, learn_threshold="shared"),
    # snnTorch's delayed reset: the bias decays with the learned beta itself (its gradient from the kernels)
    "lif_reset_delay": lambda: sp.DecoupledLIF(4, learn_decay=True, reset_delay=True, learn_threshold=True),
    "synaptic_reset_delay": lambda: sp.SynapticLIF(4, learn_decay="shared", reset_delay=True),
}


@pytest.mark.parametrize("name", NEURONS)
def test_neurons_on_the_cupy_path(emulate_cupy, name):
    """A neuron built with backend='cupy' gives the torch path's spikes, state and input and parameter
    gradients, also when the state is carried into a second call."""
    emulate_cupy()
    results = {}
    for backend in ("torch", "cupy"):
        torch.manual_seed(0)
        neuron = NEURONS[name]()
        neuron.ops_backend = backend
        x = (torch.rand(13, 2, 4) * 1.5).requires_grad_()
        spikes, state = neuron(x[:6])
        more, state = neuron(x[6:], state)
        loss = (spikes * torch.linspace(0, 1, 4)).sum() + more.sum() + sum(s.abs().sum() for s in state)
        grads = torch.autograd.grad(loss, [x, *neuron.parameters()])
        results[backend] = (spikes, more, *state, *grads)
    for a, b in zip(results["torch"], results["cupy"], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


OPS_WITH_EXPANDED_PARAMETERS = {
    # (op, its outputs), for a per-channel parameter p: decay, and for linear_fire gain, threshold and reset decay too
    "linear_scan": lambda p, x, backend: linear_scan(p, x, backend=backend),
    "linear_fire": lambda p, x, backend: linear_fire(
        x, p, p, torch.zeros_like(x[0]), torch.zeros_like(x[0]), ATan(), p, p, backend=backend
    )[:2],
}


@pytest.mark.parametrize("op", OPS_WITH_EXPANDED_PARAMETERS)
def test_kernels_read_an_expanded_parameter_as_its_values(emulate_cupy, op):
    """The kernels read per-channel parameters as a contiguous ``[C]``: one that is a single value spread to the
    channels (stride 0, as a shared learned parameter is) gives the torch path's outputs and that value's
    gradient, as a contiguous copy of it does."""
    emulate_cupy()
    x = torch.rand(9, 2, 4) * 1.5
    results = []
    for backend in ("torch", "cupy"):
        for expanded in (True, False):
            value = torch.tensor(0.7, requires_grad=True)
            param = value.expand(4) if expanded else value.expand(4).contiguous()
            outputs = OPS_WITH_EXPANDED_PARAMETERS[op](param, x, backend)
            (grad,) = torch.autograd.grad(sum(o.float().sum() for o in outputs), value)
            results.append((*outputs, grad))
    for got in results[1:]:
        for a, b in zip(got, results[0], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_cupy_backend_refuses_what_the_kernels_cannot_run(emulate_cupy):
    """Explicit 'cupy' names the op and the reason; 'auto' takes the torch path for the same inputs."""
    emulate_cupy()
    x = torch.rand(5, 2, 3, dtype=torch.float64)
    one = torch.ones(3, dtype=torch.float64)
    zeros = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r"linear_fire: backend='cupy' cannot run: x has dtype torch.float64"):
        linear_fire(x, one, one, zeros, zeros, ATan(), 1.0, backend="cupy")
    foreign = ForeignSurrogate(lambda v: ATan()(v), inclusive=True)
    with pytest.raises(RuntimeError, match=r"ltc_scan: backend='cupy' cannot run: the spike function .* has no kernel"):
        ltc_scan(
            x.float(),
            x.float(),
            x.float(),
            zeros.float(),
            zeros.float(),
            zeros.float(),
            0.1,
            1.8,
            foreign,
            backend="cupy",
        )
    with pytest.raises(
        RuntimeError, match=r"linear_scan: backend='cupy' cannot run: the scan computes in torch.float64"
    ):
        linear_scan(one, x, backend="cupy")
    out = linear_fire(x, one, one, zeros, zeros, ATan(), 1.0, backend="auto")
    assert out[1].dtype == torch.float64
    with pytest.raises(RuntimeError, match=r"tsslbp: backend='cupy' cannot run: current has dtype torch.float64"):
        tsslbp(x, backend="cupy")
    with pytest.raises(
        RuntimeError,
        match=r"PSPLIF\(backend='cupy'\) cannot run the CuPy kernels of tsslbp: current has dtype torch.float64",
    ):
        sp.PSPLIF(3, backend="cupy")(x)
    assert tsslbp(x, backend="auto")[0].dtype == torch.float64
    assert sp.PSPLIF(3, gradient="surrogate", backend="cupy")(x)[0].dtype == torch.float64  # the step loop, in torch
