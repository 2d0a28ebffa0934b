"""``dsn_membrane``: the torch path, the kernels in the CPU harness and (marked ``gpu``) on a GPU, against the
step-by-step reference."""

from __future__ import annotations

import functools
import importlib
import math
import re

import pytest
import torch
from kernel_harness.checks import F64, assert_float32_matches, assert_same_grads, clear_of, compare, grads, leaves
from kernel_harness.gpu import B, C, OpCase, cuda_tests, harness_test, sequence
from torch import nn
from torch.autograd import gradcheck

from snn_parallel.learners import BPTTTrainer, StepLoss
from snn_parallel.neurons import DynamicDecay
from snn_parallel.ops import _cuda, dsn_membrane, dsn_membrane_reference
from snn_parallel.ops.dsn.cupy import MAX_TAPS
from snn_parallel.surrogate import ATan, IntegerSpike, Sigmoid
from snn_parallel.tasks import AddingProblem, make_loader
from snn_parallel.tasks._base import SequenceDataset


# ---- the torch path ---------------------------------------------------------------------------------
def dsn_inputs(steps, taps, dtype=F64):
    return (
        torch.randn(steps, 2, 3, dtype=dtype, requires_grad=True),
        torch.randn(taps - 1, 2, 3, dtype=dtype, requires_grad=True),
        torch.randn(taps, 3, dtype=dtype, requires_grad=True),
        torch.randn(3, dtype=dtype, requires_grad=True),
        torch.randn(2, 3, dtype=dtype, requires_grad=True),
    )


@pytest.mark.parametrize("block", [1 << 16, 6, 13])
@pytest.mark.parametrize("steps", [1, 2, 5, 17])
@pytest.mark.parametrize("taps", [1, 2, 4])
def test_dsn_membrane_matches_reference(block, steps, taps, small_blocks):
    small_blocks(block)
    x, history, weight, bias, h0 = inputs = dsn_inputs(steps, taps)
    spike_fn = ATan()
    spikes, h, last = dsn_membrane(x, history, weight, bias, 0.25, h0, spike_fn, 1.0)
    ref_h, ref_last = dsn_membrane_reference(x, history, weight, bias, 0.25, h0)
    ref_spikes = spike_fn(ref_h - 1.0)
    torch.testing.assert_close(h, ref_h)
    torch.testing.assert_close(last, ref_last)
    torch.testing.assert_close(spikes, ref_spikes)
    assert_same_grads((spikes, h, last), (ref_spikes, ref_h, ref_last), inputs)


@pytest.mark.parametrize("block", [1 << 16, 6, 1])
@pytest.mark.parametrize("steps", [1, 7, 30])
@pytest.mark.parametrize("shift_shape", [(3,), (2, 3)], ids=["channel", "lane"])
def test_shift_tensor_matches_reference(block, steps, shift_shape, small_blocks):
    """A shift tensor requiring a gradient (binary spikes' learned threshold): the spikes, membranes and every
    gradient, the shift's included, of the step-by-step reference's autograd."""
    small_blocks(block)
    inputs = dsn_inputs(steps, 3)
    shift = (0.5 * torch.rand(shift_shape, dtype=F64) - 0.2).requires_grad_()
    out = dsn_membrane(*inputs[:4], 0.25, inputs[4], ATan(), shift)
    ref_h, ref_last = dsn_membrane_reference(*inputs[:4], 0.25, inputs[4])
    ref = (ATan()(ref_h - shift), ref_h, ref_last)
    for o, r in zip(out, ref, strict=True):
        torch.testing.assert_close(o, r)
    assert_same_grads(out, ref, [*inputs, shift])


def test_shift_tensor_gradcheck(smooth):
    shift = (0.5 * torch.rand(3, dtype=F64)).requires_grad_()
    assert gradcheck(lambda *a: dsn_membrane(*a[:4], 0.25, a[4], smooth, a[5]), (*dsn_inputs(6, 3), shift))


@pytest.mark.parametrize("block", [1 << 16, 6])
@pytest.mark.parametrize("steps", [1, 4, 9])
def test_dsn_membrane_gradcheck(block, steps, small_blocks, smooth):
    small_blocks(block)
    assert gradcheck(lambda x, hi, w, b, h0: dsn_membrane(x, hi, w, b, 0.25, h0, smooth, 0.3), dsn_inputs(steps, 4))


def test_dsn_integer_spikes_and_spatial_weights():
    x = torch.rand(6, 2, 3, 4, 4, dtype=F64) * 6
    history = torch.zeros(3, 2, 3, 4, 4, dtype=F64)
    weight, bias = torch.randn(4, 3, 1, 1, dtype=F64), torch.randn(3, 1, 1, dtype=F64)
    spikes, h, _ = dsn_membrane(x, history, weight, bias, 0.25, torch.zeros(2, 3, 4, 4, dtype=F64), IntegerSpike(4))
    ref_h, _ = dsn_membrane_reference(x, history, weight, bias, 0.25, torch.zeros(2, 3, 4, 4, dtype=F64))
    torch.testing.assert_close(h, ref_h)
    torch.testing.assert_close(spikes, ref_h.round().clamp(0, 4))


def test_dsn_long_sequence_float32_matches_float64():
    """T = 30 000 in float32 stays finite and within 1e-4 (relative) of the float64 loop."""
    steps = 30_000
    x, history, weight, bias, h0 = (t.detach() for t in dsn_inputs(steps, 4))
    bias = bias - 2.0  # fast decays, where a cumulative-product form would overflow
    _, h32, _ = dsn_membrane(x.float(), history.float(), weight.float(), bias.float(), 0.25, h0.float(), ATan(), 1.0)
    ref, _ = dsn_membrane_reference(x, history, weight, bias, 0.25, h0)
    assert torch.isfinite(h32).all()
    assert ((h32.double() - ref).norm() / ref.norm()).item() < 1e-4


def _reference_with_spikes(x, history, weight, bias, h0, spike_fn=ATan(), shift=1.0, tau=0.25):  # noqa: B008
    h, last = dsn_membrane_reference(x, history, weight, bias, tau, h0)
    return spike_fn(h - shift), h, last


@pytest.mark.parametrize("steps", [1, 40])
def test_float32_gradients(steps):
    """In float32 the op gives the float64 reference's values and gradients."""
    assert_float32_matches(
        lambda *a: dsn_membrane(*a[:4], 0.25, a[4], ATan(), 1.0), _reference_with_spikes, dsn_inputs(steps, 4)
    )


def test_compiled_step_loop_gives_the_eager_gradients():
    """``torch.compile`` (the default backend, ``fullgraph=True``) of a step loop of the neuron gives the gradients
    of the same loop run eagerly in float64; the conv weight's gradient came out 35-70 % off with the taps summed
    one by one."""
    torch.manual_seed(0)
    neuron = DynamicDecay(3)
    x = 2 * torch.rand(6, 2, 3)

    def loop(x: torch.Tensor) -> torch.Tensor:
        state, loss = None, 0
        for x_t in x:
            _, state = neuron.step(x_t, state)
            loss = loss + (state.h * state.h).sum()
        return loss

    compiled = torch.autograd.grad(torch.compile(loop, fullgraph=True)(x), list(neuron.parameters()))
    neuron.double()
    eager = torch.autograd.grad(loop(x.double()), list(neuron.parameters()))
    for got, expected in zip(compiled, eager, strict=True):
        torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5)


def test_bad_arguments_name_the_argument():
    x, history, weight, bias, h0 = (t.detach() for t in dsn_inputs(5, 4))
    with pytest.raises(ValueError, match="x must be time-major"):
        dsn_membrane(x[:0], history, weight, bias, 0.25, h0, ATan())
    with pytest.raises(ValueError, match="history has shape"):
        dsn_membrane(x, history[:1], weight, bias, 0.25, h0, ATan())
    with pytest.raises(ValueError, match="bias with shape"):
        dsn_membrane(x, history, weight, torch.zeros(4, dtype=F64), 0.25, h0, ATan())
    with pytest.raises(ValueError, match="x contains NaN"):
        dsn_membrane(x * float("nan"), history, weight, bias, 0.25, h0, ATan())
    with pytest.raises(TypeError, match="spike_fn must be a Surrogate"):
        dsn_membrane(x, history, weight, bias, 0.25, h0, torch.sigmoid)
    with pytest.raises(ValueError, match="tau must be positive"):
        dsn_membrane(x, history, weight, bias, 0.0, h0, ATan())
    with pytest.raises(TypeError, match="membrane must be a bool"):
        dsn_membrane(x, history, weight, bias, 0.25, h0, ATan(), membrane=1)
    with pytest.raises(ValueError, match=r"shift with shape \(4,\) does not broadcast"):
        dsn_membrane(x, history, weight, bias, 0.25, h0, ATan(), torch.ones(4, dtype=F64))
    with pytest.raises(ValueError, match="shift contains NaN"):
        dsn_membrane(x, history, weight, bias, 0.25, h0, ATan(), torch.tensor([1.0, math.nan, 1.0], dtype=F64))
    with pytest.raises(TypeError, match="shift must have dtype"):
        dsn_membrane(x, history, weight, bias, 0.25, h0, ATan(), torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="shift is on meta"):
        dsn_membrane(x, history, weight, bias, 0.25, h0, ATan(), torch.ones(3, device="meta"))
    with pytest.raises(ValueError, match="shift"):
        dsn_membrane(x, history, weight, bias, 0.25, h0, ATan(), math.inf)


# ---- the op on each backend, in float32 against the float64 reference ---------------------------------
def dsn_case(T, taps, shape, spike_fn, shift, seed, tau=0.25):
    """float32 DSN inputs whose float64 membranes stay clear of the spike function's jumps (by 1e-4, or 1e-5 for
    many elements, where a wider margin would leave no draw)."""
    C = shape[1]
    margin = 1e-4 if T * math.prod(shape) < 5000 else 1e-5
    for attempt in range(100):
        gen = torch.Generator().manual_seed(seed * 100 + attempt)
        spatial = [1] * (len(shape) - 2)
        inputs = (
            2 * torch.rand(T, *shape, generator=gen),
            2 * torch.rand(taps - 1, *shape, generator=gen),
            torch.randn(taps, C, *spatial, generator=gen) / taps**0.5,
            torch.randn(C, *spatial, generator=gen) + 1,
            2 * torch.rand(shape, generator=gen),
        )
        with torch.no_grad():
            h, _ = dsn_membrane_reference(*(t.double() for t in inputs[:4]), tau, inputs[4].double())
        if clear_of(h - shift, spike_fn, margin):
            return inputs
    raise RuntimeError("could not draw DSN inputs away from the threshold")


@pytest.mark.parametrize("spike", ["binary", "integer"])
@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 2)], ids=["BxC", "BxCxS"])
@pytest.mark.parametrize("taps", [1, 2, 4, MAX_TAPS])
@pytest.mark.parametrize("T", [1, 2, 3, 9, 50])
def test_op_matches_reference_on_each_backend(backend, T, taps, shape, spike):
    """Spikes, membrane and the gradients of x, history, weight, bias and h0, incl. T < k - 1."""
    name, device = backend
    spike_fn, shift = (IntegerSpike(3), 0.0) if spike == "integer" else (Sigmoid(inclusive=T % 2 == 1), 1.0)
    inputs = dsn_case(T, taps, shape, spike_fn, shift, seed=T * 10 + taps)
    got_in, ref_in = leaves(*inputs, device=device), leaves(*inputs, dtype=torch.float64)
    got = dsn_membrane(*got_in[:4], 0.25, got_in[4], spike_fn, shift, backend=name)
    ref = _reference_with_spikes(*ref_in, spike_fn, shift)
    assert torch.equal(got[0].cpu(), ref[0].float()), "spikes differ"
    compare(got, ref, ("spikes", "h", "h_last"))
    names = ("grad x", "grad history", "grad weight", "grad bias", "grad h0")
    compare(grads(got, got_in), grads(ref, ref_in), names, rtol=1e-4)


def test_cupy_path_any_grid(emulate_cupy):
    inputs = dsn_case(30, 4, (3, 5), ATan(), 1.0, seed=3)
    results = []
    for grid, block in ((None, 256), (2, 4)):
        emulate_cupy(grid=grid, block=block)
        got_in = leaves(*inputs)
        out = dsn_membrane(*got_in[:4], 0.25, got_in[4], ATan(), 1.0, backend="cupy")
        results.append((*out, *grads(out, got_in)))
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_expanded_and_missing_upstream_gradients(emulate_cupy):
    """``spikes.sum()`` (a stride-0 gradient), no gradient for ``h_last``, and the membrane left out: the kernels'
    gradients equal the torch path's."""
    emulate_cupy(workers=2, seed=1)
    inputs = dsn_case(150, 4, (3, 5), ATan(), 1.0, seed=6)
    results = []
    for name in ("torch", "cupy"):
        got_in = leaves(*inputs)
        spikes, h, _ = dsn_membrane(*got_in[:4], 0.25, got_in[4], ATan(), 1.0, backend=name)
        loss = spikes.sum() + h[::2].square().sum()
        results.append(torch.autograd.grad(loss, got_in))
        spikes, none, _ = dsn_membrane(*got_in[:4], 0.25, got_in[4], ATan(), 1.0, backend=name, membrane=False)
        assert none is None
        results.append(torch.autograd.grad(spikes.sum(), got_in))
    for got, want in ((results[2], results[0]), (results[3], results[1])):
        compare(
            got,
            [w.double() for w in want],
            ("grad x", "grad history", "grad weight", "grad bias", "grad h0"),
            rtol=1e-4,
        )


def test_per_lane_and_scalar_parameters(emulate_cupy):
    """Taps and bias per lane (``[k, B, C]``, ``[B, C]``: P = N) and shared by every lane (``[k]``, ``[]``: P = 1) reach
    the kernels in their compact form and give the float64 reference's values and gradients."""
    emulate_cupy(workers=2, seed=3)
    base = dsn_case(70, 3, (2, 5), ATan(), 1.0, seed=7)
    gen = torch.Generator().manual_seed(7)
    for weight, bias in (
        (torch.randn(3, 2, 5, generator=gen) / 2, torch.randn(2, 5, generator=gen) + 1),
        (torch.randn(3, generator=gen) / 2, torch.tensor(1.0)),
    ):
        inputs = (base[0], base[1], weight, bias, base[4])
        got_in, ref_in = leaves(*inputs), leaves(*inputs, dtype=torch.float64)
        got = dsn_membrane(*got_in[:4], 0.25, got_in[4], ATan(), 1.0, backend="cupy")
        ref = _reference_with_spikes(*ref_in)
        compare(got[1:], ref[1:], ("h", "h_last"))
        names = ("grad x", "grad history", "grad weight", "grad bias", "grad h0")
        compare(grads(got[1:], got_in), grads(ref[1:], ref_in), names, rtol=1e-4)


def test_taps_beyond_the_kernel_fall_back_or_raise(emulate_cupy):
    inputs = dsn_case(5, MAX_TAPS + 1, (2, 3), ATan(), 1.0, seed=5)
    emulate_cupy()
    auto = dsn_membrane(*inputs[:4], 0.25, inputs[4], ATan(), 1.0, backend="auto")
    torch.testing.assert_close(auto[1], dsn_membrane(*inputs[:4], 0.25, inputs[4], ATan(), 1.0, backend="torch")[1])
    with pytest.raises(RuntimeError, match=r"dsn_membrane: backend='cupy' cannot run: weight has 9 taps"):
        dsn_membrane(*inputs[:4], 0.25, inputs[4], ATan(), 1.0, backend="cupy")


# ---- the kernels in the CPU harness: every schedule, both shape classes ------------------------------------
DSN_NAMES = ("spikes", "h", "h_last", "grad x", "grad history", "grad weight", "grad bias", "grad h0")


def dsn_outputs(run, inputs, grads_out, dtype, spike_fn, shift):
    """``(spikes, h, h_last, grad x, grad history, grad weight, grad bias, grad h0)`` of ``run`` on ``inputs`` in
    ``dtype`` (float64 or float32), with ``grads_out`` the upstream gradients of ``(spikes, h, h_last)``; then
    ``grad shift`` where ``shift`` is a tensor (which requires a gradient)."""
    leaves_in = [t.detach().to(dtype).requires_grad_() for t in inputs]
    if isinstance(shift, torch.Tensor):
        shift = shift.detach().to(dtype).requires_grad_()
        leaves_in.append(shift)
    out = run(*leaves_in[:4], 0.25, leaves_in[4], spike_fn, shift)
    grads_in = torch.autograd.grad(out, leaves_in, [g.to(dtype) for g in grads_out])
    return (*(o.detach() for o in out), *grads_in)


def reference_run(x, history, weight, bias, tau, h0, spike_fn, shift):
    h, last = dsn_membrane_reference(x, history, weight, bias, tau, h0)
    return spike_fn(h - shift), h, last


def cupy_run(per_block=None):
    """dsn_membrane(backend='cupy') with ``per_block`` segments a block forced (``None``: the launcher's choice)."""
    dsn_module = importlib.import_module("snn_parallel.ops.dsn")
    forward, backward = dsn_module._IMPLEMENTATIONS["cupy"]

    def run(*args, **kwargs):
        with pytest.MonkeyPatch.context() as patch:
            patch.setitem(
                dsn_module._IMPLEMENTATIONS,
                "cupy",
                (
                    functools.partial(forward, segments_per_block=per_block),
                    functools.partial(backward, segments_per_block=per_block),
                ),
            )
            return dsn_membrane(*args, backend="cupy", **kwargs)

    return run


def assert_dsn_within_serial_error(got, exact, serial32, what="", spikes=True):
    """Spikes exact (``spikes``); every other output within 8x the float32 step loop's error (plus a few ulps of its
    size)."""
    assert not spikes or torch.equal(got[0], exact[0].float()), f"{what} spikes differ"
    names = (*DSN_NAMES, "grad shift")[1 : len(got)]
    for name, g, e, s in zip(names, got[1:], exact[1:], serial32[1:], strict=True):
        scale = e.abs().max().item() if e.numel() else 0.0
        tol = 8 * (s.double() - e).abs().max().item() if e.numel() else 0.0
        tol += 4e-6 * scale + 1e-7
        error = (g.double() - e).abs().max().item() if e.numel() else 0.0
        assert error <= tol, f"{what} {name}: error {error:.3g} > tolerance {tol:.3g} (size {scale:.3g})"


def kernel_case(T, shape, taps, spike, seed, shift=1.0):
    """Inputs and upstream gradients; binary spikes at ``shift`` (a number or a tensor), integer spikes at 0."""
    spike_fn, shift = (IntegerSpike(3), 0.0) if spike == "integer" else (ATan(), shift)
    inputs = dsn_case(T, taps, shape, spike_fn, shift, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    grads_out = (
        torch.randn(T, *shape, generator=gen),
        torch.randn(T, *shape, generator=gen),
        torch.randn(shape, generator=gen),
    )
    return inputs, grads_out, spike_fn, shift


DSN_KERNEL_CASES = [  # (T, lane shape, taps, segments per block: 1, 2, all (99), or the launcher's choice)
    (1, (1, 1), 4, None),
    (2, (1, 3), 8, 1),
    (64, (3, 11), 4, 1),
    (65, (1, 33), 2, 1),
    (130, (2, 3, 2), 4, 2),
    (200, (5, 14), 8, None),
    (300, (4, 10), 3, 99),
    (129, (16, 16), 4, None),
    (70, (2, 5), 1, 1),
    pytest.param(777, (1, 5), 4, 1, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("spike", ["binary", "integer"])
@pytest.mark.parametrize("T,shape,taps,per_block", DSN_KERNEL_CASES)
def test_kernels_match_reference_in_every_schedule(emulate_cupy, harness, T, shape, taps, per_block, spike):
    """Forward and backward against the float64 reference (spikes exact, the rest within the float32 step loop's
    error), over ragged T, one and many segments, blocks that split the sequence (look-back) and blocks that walk
    all of it; the same bits for every schedule and run (deterministic parameter gradients); the membrane left
    out changes nothing else."""
    inputs, grads_out, spike_fn, shift = kernel_case(T, shape, taps, spike, seed=T + taps)
    exact = dsn_outputs(reference_run, inputs, grads_out, torch.float64, spike_fn, shift)
    serial32 = dsn_outputs(reference_run, inputs, grads_out, torch.float32, spike_fn, shift)
    first = None
    for workers, seed in [(1, 0), (4, 1), (8, 2), (8, 2)]:
        emulate_cupy(workers=workers, seed=seed)
        harness.reset_counters()
        got = dsn_outputs(cupy_run(per_block), inputs, grads_out, torch.float32, spike_fn, shift)
        assert_dsn_within_serial_error(got, exact, serial32, what=f"{workers} workers, seed {seed}:")
        first = got if first is None else first
        for name, x, y in zip(DSN_NAMES, got, first, strict=True):
            assert torch.equal(x, y), f"{name} depends on the schedule"
        groups = _cuda.chunking(T, math.prod(shape), 2, per_block)[1]
        assert (harness.counters()["lookback_inclusive"] > 0) == (groups > 1)
    leaves_in = [t.detach().requires_grad_() for t in inputs]
    spikes, h, last = cupy_run(per_block)(*leaves_in[:4], 0.25, leaves_in[4], spike_fn, shift, membrane=False)
    assert h is None and torch.equal(spikes, first[0]) and torch.equal(last, first[2])
    grads_in = torch.autograd.grad((spikes, last), leaves_in, (grads_out[0], grads_out[2]))
    masked = dsn_outputs(
        cupy_run(per_block),
        inputs,
        (grads_out[0], torch.zeros_like(grads_out[1]), grads_out[2]),
        torch.float32,
        spike_fn,
        shift,
    )
    for name, x, y in zip(DSN_NAMES[3:], grads_in, masked[3:], strict=True):
        assert torch.equal(x, y), f"{name} changes without the membrane"


# mutants: (old, new) edits of dsn.cu or (header, old, new), each to fail the check below (built by conftest.py)
MUTANTS = {
    "the carried gradient without alpha": ("b = s.a * s.d;", "b = s.d;"),
    "the halo one row late": (
        "const long long s = t0 - DSN_HALO + i;",
        "const long long s = t0 - DSN_HALO + i + 1;",
    ),
    "the backward's membrane rerun without its checkpoint": (
        "float h = affine(pre_d, checkpoints[k * conv.N + n], pre_b);",
        "float h = pre_b;",
    ),
    "a segment's last input gradient left to the direct store": (
        "if (end < T && s >= end - edge)",
        "if (end < T && s > end - edge)",
    ),
    "the fix-up without the segment's own taps": ("float acc = e > 0 ? tail[", "float acc = e < 0 ? tail["),
    "log(1 + e) by its series too far": ("if (e < 0.125f)", "if (e < 1.0f)"),
    "sigmoid(p) for sigmoid(-p)": ("__expf(fminf(-p, 0.0f) - l)", "__expf(fminf(p, 0.0f) - l)"),
    "the bias gradient from the first block only": (
        "for (long long g = 0; g < groups; ++g) sum +=",
        "for (long long g = 0; g < 1; ++g) sum +=",
    ),
    "every lane reads the first shift": ("shift = shifts ? shifts[p]", "shift = shifts ? shifts[0]"),
    "the shift's gradient with the sign of the bias's": ("partial.shift -= s.gs", "partial.shift += s.gs"),
}

#: a shift (binary spikes' threshold) per channel of the (2, 3, 2) lanes of the cases below
SHIFT = torch.tensor([0.8, 1.0, 1.25]).view(3, 1)


@pytest.mark.parametrize("per_block", [1, 2, None])
def test_kernels_with_a_shift_per_channel(emulate_cupy, per_block):
    """A per-channel shift requiring a gradient: the float64 reference's outputs and gradients (the shift's
    included: minus the sum over steps of the spikes' gradient times the surrogate's derivative), within the
    float32 step loop's error."""
    inputs, grads_out, spike_fn, shift = kernel_case(130, (2, 3, 2), 4, "binary", seed=9, shift=SHIFT)
    exact = dsn_outputs(reference_run, inputs, grads_out, torch.float64, spike_fn, shift)
    serial32 = dsn_outputs(reference_run, inputs, grads_out, torch.float32, spike_fn, shift)
    assert exact[-1].abs().min() > 0.1  # every channel's shift gets a gradient
    emulate_cupy(workers=4, seed=2)
    got = dsn_outputs(cupy_run(per_block), inputs, grads_out, torch.float32, spike_fn, shift)
    assert len(got) == len(DSN_NAMES) + 1
    assert_dsn_within_serial_error(got, exact, serial32)


@pytest.mark.slow  # builds a mutated kernel per case
def test_the_kernel_checks_bite(emulate_cupy, mutant):
    """Each mutant fails the comparison above (200 steps, 4 segments in 4 blocks, 4 taps, binary spikes at a shift
    per channel)."""
    inputs, grads_out, spike_fn, shift = kernel_case(200, (2, 3, 2), 4, "binary", seed=4, shift=SHIFT)
    exact = dsn_outputs(reference_run, inputs, grads_out, torch.float64, spike_fn, shift)
    serial32 = dsn_outputs(reference_run, inputs, grads_out, torch.float32, spike_fn, shift)
    emulate_cupy(mutant, workers=4, seed=1)
    got = dsn_outputs(cupy_run(1), inputs, grads_out, torch.float32, spike_fn, shift)
    with pytest.raises(AssertionError):
        assert_dsn_within_serial_error(got, exact, serial32)


@pytest.mark.slow
def test_kernels_at_30000_steps(emulate_cupy):
    """T = 30 000, B·C = 2 x 8, 4 host threads, blocks splitting the sequence: spikes equal to the float64 step loop's
    except at near-ties of its membrane, the membrane and every gradient within 8x the float32 step loop's error."""
    T, shape = 30_000, (2, 8)
    spike_fn, shift = ATan(), 1.0
    gen = torch.Generator().manual_seed(3)
    inputs = (
        2 * torch.rand(T, *shape, generator=gen),
        2 * torch.rand(3, *shape, generator=gen),
        torch.randn(4, 8, generator=gen) / 2,
        torch.randn(8, generator=gen) + 1,
        2 * torch.rand(shape, generator=gen),
    )
    grads_out = (
        torch.randn(T, *shape, generator=gen),
        torch.randn(T, *shape, generator=gen),
        torch.randn(shape, generator=gen),
    )

    def torch_run(*args):
        return dsn_membrane(*args, backend="torch")

    exact = dsn_outputs(torch_run, inputs, grads_out, torch.float64, spike_fn, shift)
    serial32 = dsn_outputs(torch_run, inputs, grads_out, torch.float32, spike_fn, shift)
    emulate_cupy(workers=4, seed=1)
    got = dsn_outputs(cupy_run(1), inputs, grads_out, torch.float32, spike_fn, shift)
    differ = got[0] != exact[0].float()
    assert ((exact[1] - shift).abs() < 1e-3)[differ].all(), "a spike differs away from a near-tie"
    assert_dsn_within_serial_error(got, exact, serial32, spikes=False)


# ---- on a GPU, in three dtypes, against the float64 torch path ------------------------------------------
def _gpu_case(spike_mode: str) -> OpCase:
    spike_fn, shift = (IntegerSpike(4), 0.0) if spike_mode == "integer" else (ATan(), 1.0)
    taps = 4

    def inputs(steps, dtype, device):
        return [
            sequence(steps, B, C, dtype=dtype, high=3.0, device=device),
            torch.rand(taps - 1, B, C, device=device).to(dtype),
            torch.randn(taps, C, device=device) / 2,
            torch.randn(C, device=device) + 1,
            torch.rand(B, C, device=device).to(dtype),
        ]

    def run(backend, x, history, weight, bias, h0):
        return dsn_membrane(x, history, weight, bias, 0.25, h0, spike_fn, shift, backend=backend)

    return OpCase(run, inputs, spike_fn, lambda ins, outs: outs[1] - shift)


test_harness_matches_torch_path_in_every_dtype = harness_test(_gpu_case, ["binary", "integer"])
test_cuda_matches_torch_path, test_cuda_matches_torch_path_at_65536_steps = cuda_tests(_gpu_case, ["binary", "integer"])


# ---- trained at T = 2048, run at T = 30 000 --------------------------------------------------------------
@pytest.fixture(params=["harness", pytest.param("cuda", marks=pytest.mark.gpu)])
def kernels_on(request) -> torch.device:
    """Where ``backend='cupy'`` runs: the CPU harness, or the GPU (marked ``gpu``)."""
    if request.param == "cuda":
        from kernel_harness.gpu import require_cuda

        return require_cuda()
    request.getfixturevalue("emulate_cupy")(workers=4, seed=5)
    return torch.device("cpu")


def test_trained_at_2048_steps_runs_at_30000(kernels_on):
    """DSN trained with BPTT at T = 2048 (the adding problem, torch path), then run by the kernels at T = 30 000 in
    float32: its spikes equal the float64 torch path's except where that membrane is within float32 rounding of the
    threshold (8x the float32 torch path's own largest membrane error), and the membrane within 1e-4 (relative)."""
    torch.manual_seed(0)
    data = AddingProblem(2048, 64, seed=0)
    neuron = DynamicDecay(16, backend="torch")
    model = nn.Sequential(nn.Linear(2, 16), neuron, nn.Linear(16, 1))
    nn.init.normal_(model[0].weight, std=2.0)  # enough drive that the neurons fire
    nn.init.uniform_(model[0].bias, 0.0, 1.0)
    before = [p.detach().clone() for p in neuron.parameters()]
    trainer = BPTTTrainer(model, torch.optim.Adam(model.parameters(), lr=1e-2), loss=StepLoss("mse", "last"),
                          progress=False)  # fmt: skip
    trainer.fit(make_loader(SequenceDataset(data.inputs, data.targets[:, None]), 16, shuffle=True, seed=0), 1)
    assert any(not torch.equal(b, p) for b, p in zip(before, neuron.parameters(), strict=True)), "nothing trained"

    with torch.no_grad():
        x = model[0](AddingProblem(30_000, 2, seed=1).inputs)  # [T, 2, 16]
        runs = {}
        for name, dtype, backend in [("exact", F64, "torch"), ("torch32", torch.float32, "torch"),
                                     ("kernels", torch.float32, "cupy")]:  # fmt: skip
            copy = DynamicDecay(16, backend=backend).to(device=kernels_on, dtype=dtype)
            copy.load_state_dict(neuron.state_dict())
            spikes, h, _ = copy(x.to(device=kernels_on, dtype=dtype), return_membrane=True)
            runs[name] = (spikes.cpu().double(), h.cpu().double())
    exact_spikes, exact_h = runs["exact"]
    rounding = 8 * (runs["torch32"][1] - exact_h).abs().max().item()
    spikes, h = runs["kernels"]
    assert torch.isfinite(h).all()
    assert ((h - exact_h).norm() / exact_h.norm()).item() < 1e-4
    differ = spikes != exact_spikes
    assert ((exact_h - neuron.v_threshold).abs() <= rounding)[differ].all(), "a spike differs away from the threshold"
    assert 0.01 < exact_spikes.mean().item() < 0.5, "the trained neurons barely fire, or fire all the time"


# ---- the membrane only when asked ------------------------------------------------------------------------
def _membrane_written(monkeypatch) -> list[bool]:
    """Record, for each ``dsn_fwd`` launch, whether the kernel is handed a membrane buffer (its parameter
    ``membrane``, found by name in the declaration) or a null pointer."""
    declaration = re.search(r"dsn_fwd\((.*?)\)", _cuda.kernel_files()["dsn.cu"].source(), re.S).group(1)
    index = [re.findall(r"\w+", p)[-1] for p in declaration.split(",")].index("membrane")
    written, launch = [], _cuda.KernelFile.launch

    def spy(self, kernel, dtype, grid, block, *args):
        if kernel == "dsn_fwd":
            written.append(args[index] is not None)
        return launch(self, kernel, dtype, grid, block, *args)

    monkeypatch.setattr(_cuda.KernelFile, "launch", spy)
    return written


def test_neuron_asks_the_kernels_for_the_membrane_only_when_it_returns_it(emulate_cupy, monkeypatch):
    """``DynamicDecay(x)`` runs the kernels without the membrane, ``DynamicDecay(x, return_membrane=True)`` with it;
    spikes, state and gradients are the same (the backward recomputes the membrane from checkpoints either way)."""
    emulate_cupy(workers=2, seed=4)
    written = _membrane_written(monkeypatch)
    torch.manual_seed(0)
    x, weight = torch.randn(70, 2, 5) * 2, torch.randn(5, 4) / 2
    runs = []
    for asked in (False, True):
        neuron = DynamicDecay(5, backend="cupy")
        with torch.no_grad():
            neuron.weight.copy_(weight)
        leaf = x.clone().requires_grad_()
        out = neuron(leaf, return_membrane=asked)
        spikes, state = out[0], out[-1]
        if asked:  # the membrane H_t of the step-by-step reference, from rest
            taps = [t.double() for t in neuron._taps(x)]
            h, _ = dsn_membrane_reference(x.double(), torch.zeros(3, 2, 5, dtype=F64), *taps, 0.25,
                                          torch.zeros(2, 5, dtype=F64))  # fmt: skip
            torch.testing.assert_close(out[1].double(), h, rtol=1e-5, atol=1e-5)
        loss = (spikes * torch.linspace(0, 1, 70)[:, None, None]).sum() + state.h.square().sum()
        runs.append((spikes, *state, *torch.autograd.grad(loss, (leaf, *neuron.parameters()))))
    assert written == [False, True]
    for got, want in zip(*runs, strict=True):
        assert torch.equal(got, want)
