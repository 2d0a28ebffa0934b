"""Gradients under ``torch.compile(fullgraph=True)`` with its default backend (inductor).

Every public neuron, run as a ``step`` loop and through its parallel ``forward`` (with and without
the membrane), and every op called directly, is compiled in float32 and its gradients with respect
to the input, the initial state and every parameter are compared with the same code run eagerly in
float64. A graph break fails the compile (``fullgraph=True``); a silently wrong gradient fails the
comparison (inductor once got DynamicDecay's conv weight gradient 35-70 % wrong in a step loop).
The inputs make some neurons fire and not others, so that the surrogate gradients and the resets
are both exercised. One case per op class runs by default (each compile takes seconds); the rest is
``slow``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import pytest
import torch

import snn_parallel.neurons as sn
from snn_parallel import ops
from snn_parallel.surrogate import ATan

T, B, C = 6, 3, 4
F64 = torch.float64

#: a compiled float32 gradient may differ from the float64 one by this much, relative to the largest entry;
#: measured differences are below 5e-6, the bug this guards against was 0.35-0.7
RTOL = 1e-4


def _compiled(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    torch._dynamo.reset()  # a fresh compile for each case: no recompile limit, no cached graph of another case
    return torch.compile(fn, fullgraph=True)


def _gradients(
    loss_fn: Callable[..., torch.Tensor],
    weights: torch.Tensor,
    inputs: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
) -> list[torch.Tensor | None]:
    """The gradients of ``loss_fn(weights, *inputs)`` with respect to ``inputs`` and ``params``.

    The loss weights come in as they are and the step loop indexes them: with them converted by ``.to`` inside
    the compiled function and ``unbind``-ed in the loop, inductor (torch 2.13, CPU, its vectorised code) got
    SEAdLIF's per-channel parameter gradients 10-50 % wrong, as it does for the same step written in plain
    torch: a bug of torch, which depends on the whole graph, not of the neurons."""
    leaves = [t.clone().requires_grad_() for t in inputs]
    return list(torch.autograd.grad(loss_fn(weights, *leaves), [*leaves, *params], allow_unused=True))


def _assert_same_gradients(got: list, expected: list, names: list[str]) -> None:
    for name, g, e in zip(names, got, expected, strict=True):
        assert (g is None) == (e is None), f"{name}: gradient {g is not None} compiled, {e is not None} eager"
        if e is None:
            continue
        error = (g.to(e.dtype) - e).abs().max().item()
        scale = e.abs().max().item()
        assert error <= RTOL * scale + 1e-7, f"{name}: compiled gradient off by {error:.3g} (largest entry {scale:.3g})"


# -- neurons -------------------------------------------------------------------------------------------
#: name -> (factory, input scale); the scale makes the neuron fire at some steps and channels, not all
NEURONS: dict[str, tuple[Callable[[], sn.Neuron], float]] = {
    "dsn_binary": (lambda: sn.DynamicDecay(C), 2.0),
    "dsn_integer": (lambda: sn.DynamicDecay(C, spike_mode="integer"), 2.0),
    "dsn_threshold": (lambda: sn.DynamicDecay(C, v_threshold=[0.4, 0.6, 0.8, 1.0], learn_threshold=True), 2.0),
    "prf": (lambda: sn.PRF(C, learn_decay=True), 3.0),
    "prf_reset": (lambda: sn.PRF(C, learn_decay=True, reset=True), 3.0),
    "prf_fft": (lambda: sn.PRF(C, learn_decay=True, mode="fft"), 3.0),
    "prf_reset_threshold": (lambda: sn.PRF(C, reset=True, v_threshold=[0.6, 0.8, 1.0, 1.2], learn_threshold=True), 3.0),
    "decoupled_lif": (lambda: sn.DecoupledLIF(C, learn_decay=True), 2.0),
    "decoupled_lif_threshold": (
        lambda: sn.DecoupledLIF(C, v_threshold=[0.6, 0.8, 1.0, 1.2], learn_threshold=True),
        2.0,
    ),
    "decoupled_lif_decay_input_no_reset": (
        lambda: sn.DecoupledLIF(C, learn_decay=True, decay_input=True, reset=False),
        2.0,
    ),
    "integrate_and_fire": (lambda: sn.DecoupledLIF(C, tau=float("inf")), 0.5),
    "decoupled_lif_shared": (lambda: sn.DecoupledLIF(C, learn_decay="shared", learn_threshold="shared"), 2.0),
    "decoupled_lif_reset_delay": (lambda: sn.DecoupledLIF(C, learn_decay=True, reset_delay=True), 2.0),
    "synaptic": (
        lambda: sn.SynapticLIF(C, learn_decay=True, v_threshold=[0.6, 0.8, 1.0, 1.2], learn_threshold=True),
        1.0,
    ),
    "ltc_paper": (lambda: sn.LTC(C, learn_gate_temperature=True), 2.0),
    "ltc_parallel": (lambda: sn.LTC(C, mode="parallel", learn_gate_temperature=True), 2.0),
    "brf": (lambda: sn.BRF(C), 40.0),
    "seadlif": (lambda: sn.SEAdLIF(C), 4.0),
    "psplif_surrogate": (lambda: sn.PSPLIF(C, gradient="surrogate"), 2.0),
    "psplif_tsslbp": (lambda: sn.PSPLIF(C, gradient="tsslbp"), 2.0),
    "psp_filter": (lambda: sn.PSPFilter(C), 2.0),
    "leaky_integrator": (lambda: sn.LeakyIntegrator(C), 2.0),
    "leaky_integrator_interpolated": (lambda: sn.LeakyIntegrator(C, interpolate_tau=True), 2.0),
}
MODES = ("step", "forward", "forward_membrane")
#: one case a class of torch path by default: a step loop (DSN's, whose weight gradient inductor got wrong), the
#: fused DSN op, PRF's complex linear_fire with reset, the real linear_fire, the fused LTC op, the TSSL-BP op
DEFAULT = {
    ("dsn_binary", "step"),
    ("dsn_binary", "forward_membrane"),
    ("prf_reset", "forward"),
    ("decoupled_lif", "forward_membrane"),
    ("decoupled_lif_threshold", "forward_membrane"),
    ("ltc_parallel", "forward"),
    ("psplif_tsslbp", "forward_membrane"),
}
NEURON_CASES = [
    pytest.param(name, mode, id=f"{name}-{mode}", marks=() if (name, mode) in DEFAULT else pytest.mark.slow)
    for name in NEURONS
    for mode in MODES
]


def _neuron_loss(neuron: sn.Neuron, mode: str, weights: torch.Tensor, x: torch.Tensor, *fields: torch.Tensor):
    """A weighted sum of the outputs (and the membrane) at every step and of the final state."""
    state = neuron.state_type(*fields)
    if mode == "step":
        loss = x.new_zeros(())
        for t, x_t in enumerate(x.unbind(0)):
            out, state = neuron.step(x_t, state)
            loss = loss + (out * weights[t]).sum()
    elif mode == "forward":
        out, state = neuron(x, state)
        loss = (out * weights).sum()
    else:
        out, membrane, state = neuron(x, state, return_membrane=True)
        loss = (out * weights).sum() + (membrane * weights.flip(0)).sum()
    for i, field in enumerate(state):
        loss = loss + (field * weights[i]).sum()
    return loss


def _firing_fraction(neuron: sn.Neuron, x: torch.Tensor, state) -> float:
    """The fraction of (step, lane) where the neuron spikes (its membrane is past the threshold)."""
    with torch.no_grad():
        out, membrane, _ = neuron(x, state, return_membrane=True)
    if isinstance(neuron, sn.PSPLIF):  # its output is the PSP
        return (membrane > neuron.v_threshold).double().mean().item()
    return out.ne(0).double().mean().item()


@pytest.mark.parametrize("name,mode", NEURON_CASES)
def test_neuron_gradients_compiled_equal_eager_float64(name, mode):
    make, scale = NEURONS[name]
    neuron = make()
    eager = copy.deepcopy(neuron).double()
    x = torch.rand(T, B, C, dtype=F64) * scale
    with torch.no_grad():  # a state from a few earlier steps, not the resting one
        *_, state = eager(torch.rand(3, B, C, dtype=F64) * scale)
    if not isinstance(neuron, sn.PSPFilter | sn.LeakyIntegrator):
        assert 0.05 < _firing_fraction(eager, x, state) < 0.95
    weights = torch.randn(T, B, C, dtype=F64)
    names = ["x", *(f"state.{f}" for f in neuron.state_type._fields)]
    names += [n for n, p in neuron.named_parameters() if p.requires_grad]

    def loss_fn(of: sn.Neuron) -> Callable[..., torch.Tensor]:
        return lambda *args: _neuron_loss(of, mode, *args)

    expected = _gradients(loss_fn(eager), weights, [x, *state], [p for p in eager.parameters() if p.requires_grad])
    got = _gradients(
        _compiled(loss_fn(neuron)),
        weights.float(),
        [x.float(), *(f.float() for f in state)],
        [p for p in neuron.parameters() if p.requires_grad],
    )
    _assert_same_gradients(got, expected, names)


# -- ops ---------------------------------------------------------------------------------------------
def _rand(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, dtype=F64)


def _complex_decay() -> torch.Tensor:
    return 0.9 * _rand(C) * torch.exp(1j * _rand(C))


#: name -> (inputs, op on them returning its outputs); the ops run with validate=False, as the neurons call them
#: under torch.compile: their NaN check reads the data (``.item()``), which fullgraph cannot trace for a complex tensor
OPS: dict[str, tuple[Callable[[], list[torch.Tensor]], Callable[..., Sequence[torch.Tensor]]]] = {
    "linear_scan_real": (
        lambda: [0.9 * _rand(C), 2 * _rand(T, B, C) - 1, _rand(B, C)],
        lambda a, b, h0: ops.linear_scan(a, b, h0, validate=False),
    ),
    "linear_scan_time_varying": (
        lambda: [0.9 * _rand(T, B, C), 2 * _rand(T, B, C) - 1, _rand(B, C)],
        lambda a, b, h0: ops.linear_scan(a, b, h0, validate=False),
    ),
    "linear_scan_log_decay": (
        lambda: [-_rand(T, B, C), 2 * _rand(T, B, C) - 1, _rand(B, C)],
        lambda a, b, h0: ops.linear_scan(a, b, h0, log_decay=True, validate=False),
    ),
    "linear_scan_complex": (
        lambda: [_complex_decay(), (2 * _rand(T, B, C) - 1).to(torch.complex128), 1j * _rand(B, C)],
        lambda a, b, h0: ops.linear_scan(a, b, h0, validate=False),
    ),
    "linear_fire_real": (
        lambda: [2 * _rand(T, B, C), 0.9 * _rand(C), _rand(C) + 0.5, _rand(B, C), 0.3 * _rand(B, C)],
        lambda x, a, c, h0, bias0: ops.linear_fire(x, a, c, h0, bias0, ATan(), 1.0, validate=False),
    ),
    "linear_fire_complex_reset": (
        lambda: [
            2 * _rand(T, B, C),
            _complex_decay(),
            _rand(C) + 0.5,
            (1 + 1j) * _rand(B, C),
            0.3 * _rand(B, C),
            0.9 * _rand(C),
        ],  # fmt: skip
        lambda x, a, c, h0, bias0, rho: ops.linear_fire(x, a, c, h0, bias0, ATan(), 1.0, rho, validate=False),
    ),
    "dsn_membrane": (
        lambda: [2 * _rand(T, B, C), 2 * _rand(3, B, C), torch.randn(4, C, dtype=F64) / 2, _rand(C) - 0.5, _rand(B, C)],
        lambda x, hist, w, bias, h0: ops.dsn_membrane(x, hist, w, bias, 0.25, h0, ATan(), 1.0, validate=False),
    ),
    "ltc_scan": (
        lambda: [
            2 * _rand(T, B, C),
            0.8 * _rand(T, B, C) + 0.1,
            0.8 * _rand(T, B, C) + 0.1,
            _rand(B, C) / 2,
            (_rand(B, C) > 0.5).to(F64),
            0.3 * _rand(B, C),
        ],  # fmt: skip
        lambda *a: ops.ltc_scan(*a, 0.1, 1.8, ATan(), validate=False),
    ),
    "tsslbp": (
        lambda: [2 * _rand(T, B, C), _rand(B, C) / 2, _rand(B, C) / 2],
        lambda current, u0, a0: ops.tsslbp(current, u0, a0, validate=False),
    ),
    "psp_filter": (lambda: [2 * _rand(T, B, C), _rand(B, C)], lambda x, a0: ops.psp_filter(x, 3.0, a0)),
}
OP_CASES = [pytest.param(name, id=name, marks=pytest.mark.slow) for name in OPS]


def _single(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.complex64) if t.is_complex() else t.float()


@pytest.mark.parametrize("name", OP_CASES)
def test_op_gradients_compiled_equal_eager_float64(name):
    make_inputs, op = OPS[name]
    inputs = make_inputs()
    weights = torch.randn(5, T, B, C, dtype=F64)

    def loss(weights: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        total = weights.new_zeros(())
        for i, out in enumerate(op(*args)):  # every output, the last step's weights on a state
            w = weights[i] if out.dim() == weights.dim() - 1 else weights[i, -1]
            if out.is_complex():
                total = total + (out.real * w).sum() + (out.imag * w.flip(0)).sum()
            else:
                total = total + (out * w).sum()
        return total

    expected = _gradients(loss, weights, inputs, [])
    got = _gradients(_compiled(loss), weights.float(), [_single(t) for t in inputs], [])
    _assert_same_gradients(got, expected, [f"argument {i}" for i in range(len(inputs))])


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_ops_called_with_their_checks_compile_with_fullgraph(dtype):
    """An op called as a user calls it (``validate=True``) traces with ``fullgraph=True``: its NaN/inf check, which
    reads the data (``.item()``, which torch cannot trace for complex tensors), is skipped while compiling, as the
    neurons skip theirs; eager, the check still raises."""
    torch._dynamo.reset()
    a = (0.9 * torch.rand(6, 2, 3)).to(dtype)
    b = torch.randn(6, 2, 3).to(dtype)
    compiled = torch.compile(lambda a, b: ops.linear_scan(a, b)[0], fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(a, b), ops.linear_scan(a, b)[0])
    with pytest.raises(ValueError, match="^b contains NaN"):
        ops.linear_scan(a, torch.full_like(b, float("nan")))
