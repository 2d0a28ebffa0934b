"""``ltc_scan``: the torch path, the kernels in the CPU harness and (marked ``gpu``) on a GPU, against the
step-by-step reference."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from kernel_harness.checks import (
    F64,
    SURROGATES,
    assert_close,
    assert_float32_matches,
    assert_same_grads,
    clear_of,
    compare,
    grads,
    leaves,
)
from kernel_harness.gpu import B, C, OpCase, cuda_tests, harness_test, sequence
from torch.autograd import gradcheck

from snn_parallel.ops import _cuda, ltc_scan, ltc_scan_reference
from snn_parallel.ops._cuda import spike_code
from snn_parallel.ops.ltc.fused import ltc_backward, ltc_forward
from snn_parallel.surrogate import ATan, MultiGaussian

B0, BETA_A = 0.1, 1.8


# ---- the torch path ---------------------------------------------------------------------------------
def ltc_inputs(steps):
    shape = (steps, 2, 3)
    return (
        torch.randn(shape, dtype=F64, requires_grad=True),
        torch.rand(shape, dtype=F64).requires_grad_(),
        torch.rand(shape, dtype=F64).requires_grad_(),
        torch.randn(2, 3, dtype=F64, requires_grad=True),
        torch.rand(2, 3, dtype=F64).round().requires_grad_(),
        torch.rand(2, 3, dtype=F64, requires_grad=True),
    )


@pytest.mark.parametrize("block", [1 << 16, 6, 1])
@pytest.mark.parametrize("steps", [1, 2, 9, 33])
def test_ltc_scan_matches_reference(block, steps, small_blocks):
    small_blocks(block)
    inputs = ltc_inputs(steps)
    surrogate = MultiGaussian(inclusive=False)
    out = ltc_scan(*inputs, 0.1, 1.8, surrogate)
    ref = ltc_scan_reference(*inputs, 0.1, 1.8, surrogate)
    for o, r in zip(out, ref, strict=True):
        torch.testing.assert_close(o, r)
    assert_same_grads(out, ref, inputs)


@pytest.mark.parametrize("block", [1 << 16, 6])
@pytest.mark.parametrize("steps", [1, 3, 7])
def test_ltc_scan_gradcheck(block, steps, smooth, small_blocks):
    small_blocks(block)
    assert gradcheck(lambda *a: ltc_scan(*a, 0.1, 1.8, smooth), ltc_inputs(steps))


@pytest.mark.parametrize("steps", [1, 40])
def test_float32_gradients(steps):
    """In float32 the op gives the float64 reference's values and gradients."""
    assert_float32_matches(
        lambda *a: ltc_scan(*a, 0.1, 1.8, MultiGaussian()),
        lambda *a: ltc_scan_reference(*a, 0.1, 1.8, MultiGaussian()),
        ltc_inputs(steps),
    )


def test_bad_arguments_name_the_argument():
    current, rate, retention, u0, s0, b_init = (t.detach() for t in ltc_inputs(4))
    with pytest.raises(ValueError, match="rate has shape"):
        ltc_scan(current, rate[:2], retention, u0, s0, b_init, 0.1, 1.8, ATan())
    with pytest.raises(ValueError, match="b_init has shape"):
        ltc_scan(current, rate, retention, u0, s0, b_init[0], 0.1, 1.8, ATan())
    with pytest.raises(ValueError, match="current must be time-major"):
        ltc_scan(current[:0], rate, retention, u0, s0, b_init, 0.1, 1.8, ATan())


# ---- the kernels, called directly ---------------------------------------------------------------------
def _spike_args(spike_fn):
    kind, params, inclusive = spike_code(spike_fn)
    return kind, *params, inclusive


def emu_ltc_fwd(lib, current, rate, retention, u0, s0, b_init, surrogate, *, b0=B0, beta_a=BETA_A):
    T, N = current.shape
    spikes, membrane, trace = (torch.empty(T, N) for _ in range(3))
    args = [x.contiguous() for x in (current, rate, retention, u0, s0, b_init)]
    lib.launch_items("ltc_fwd", N, *args, spikes, membrane, trace, b0, beta_a, *_spike_args(surrogate), T, N)
    return spikes, membrane, trace


def emu_ltc_bwd(lib, grad_outputs, inputs, outputs, surrogate, per_block=None):
    """The backward kernel at the launcher's geometry and look-back buffers (``_cuda.workspace`` on a device of 2
    multiprocessors; ``per_block`` segments a block forced)."""
    T, N = inputs[0].shape
    grad_seq = [torch.empty(T, N) for _ in range(3)]
    grad_state = [torch.empty(N) for _ in range(3)]
    tensors = [x.contiguous() for x in (*grad_outputs, *inputs, *outputs)]
    with mock.patch.object(_cuda, "processors", lambda device: 2):
        grid, per_block, *look_back = _cuda.workspace(T, N, tensors[0], 3, per_block, decay_floats=9)
    lib.launch(
        "ltc_bwd",
        (grid,),
        (32, _cuda.CHUNK_WARPS),
        *tensors,
        *grad_seq,
        *grad_state,
        *look_back,
        B0,
        BETA_A,
        *_spike_args(surrogate)[:-1],
        T,
        N,
        per_block,
    )
    return (*grad_seq, *grad_state)


def kernel_inputs(T, N, seed, surrogate):
    """Inputs whose float64 membranes stay clear of the threshold (and of the kinks of the rect
    surrogate), so float32 spikes are exact."""
    for attempt in range(100):
        gen = torch.Generator().manual_seed(seed * 100 + attempt)
        current = 1.5 * torch.randn(T, N, generator=gen)
        rate = torch.sigmoid(torch.randn(T, N, generator=gen))
        retention = torch.sigmoid(torch.randn(T, N, generator=gen) + 1)
        u0 = 0.5 * torch.randn(N, generator=gen)
        s0 = (torch.rand(N, generator=gen) < 0.3).float()
        b_init = 0.5 * torch.rand(N, generator=gen)
        inputs = (current, rate, retention, u0, s0, b_init)
        with torch.no_grad():
            _, v, _, _, _ = ltc_scan_reference(*(x.double() for x in inputs), B0, BETA_A, surrogate)
            _, _, trace = ltc_forward(*(x.double() for x in inputs), B0, BETA_A, surrogate)
        if clear_of(v - (B0 + BETA_A * trace), surrogate):
            return inputs
    raise RuntimeError("could not draw LTC inputs away from the threshold")


LTC_CASES = [(name, inclusive) for name in SURROGATES for inclusive in (True, False)]


@pytest.mark.parametrize("name,inclusive", LTC_CASES)
def test_kernel_forward_matches_reference(harness, name, inclusive):
    surrogate = SURROGATES[name](inclusive=inclusive)
    inputs = kernel_inputs(40, 33, seed=len(name), surrogate=surrogate)
    spikes, membrane, trace = emu_ltc_fwd(harness, *inputs, surrogate)
    ref_spikes, ref_membrane, u_last, s_last, b_last = ltc_scan_reference(*inputs, B0, BETA_A, surrogate)
    assert torch.equal(spikes, ref_spikes), "spikes differ"
    assert 0 < spikes.mean() < 1
    assert_close(membrane, ref_membrane, what="membrane")
    assert_close(trace, ltc_forward(*inputs, B0, BETA_A, surrogate)[2], what="trace")
    assert_close(membrane[-1] * (1 - spikes[-1]), u_last, what="u_last")
    assert_close(trace[-1], b_last, what="b_last")
    assert torch.equal(spikes[-1], s_last)


@pytest.mark.parametrize("inclusive", [True, False])
def test_kernel_firing_rule_at_threshold(harness, inclusive):
    """v - theta == 0 exactly: fires only under the inclusive rule, as the reference does."""
    one, zero = torch.ones(1, 1), torch.zeros(1)
    inputs = (0.5 * one, one, 0.5 * one, zero, zero, zero)  # v = 0.5 = theta = b0
    surrogate = ATan(inclusive=inclusive)
    spikes, _, _ = emu_ltc_fwd(harness, *inputs, surrogate, b0=0.5)
    ref = ltc_scan_reference(*inputs, 0.5, BETA_A, surrogate)[0]
    assert spikes.item() == ref.item() == float(inclusive)


@pytest.mark.parametrize("name,inclusive", LTC_CASES)
def test_kernel_backward_matches_autograd(harness, name, inclusive):
    T, N = 40, 33
    surrogate = SURROGATES[name](inclusive=inclusive)
    inputs = kernel_inputs(T, N, seed=len(name) + 1, surrogate=surrogate)
    gen = torch.Generator().manual_seed(11)
    grad_outputs = (torch.randn(T, N, generator=gen), torch.randn(T, N, generator=gen)) + tuple(
        torch.randn(N, generator=gen) for _ in range(3)
    )
    ref_leaves = [x.clone().requires_grad_(True) for x in inputs]
    expected = torch.autograd.grad(ltc_scan_reference(*ref_leaves, B0, BETA_A, surrogate), ref_leaves, grad_outputs)
    outputs = emu_ltc_fwd(harness, *inputs, surrogate)
    got = emu_ltc_bwd(harness, grad_outputs, inputs, outputs, surrogate)
    names = ("current", "rate", "retention", "u0", "s0", "b_init")
    scale = max(e.abs().max().item() for e in expected)
    for n, x, y in zip(names, got, expected, strict=True):
        assert_close(x, y, rtol=1e-5, atol=1e-5 * scale, what=f"grad {n}")
    # and the fused torch backward, which spells the same equations
    fused = ltc_backward(grad_outputs[0], grad_outputs[1], grad_outputs[2:], (*inputs, *outputs), B0, BETA_A, surrogate)
    for n, x, y in zip(names, got, fused, strict=True):
        assert_close(x, y, rtol=1e-5, atol=1e-6 * scale, what=f"fused grad {n}")


# mutants: (old, new) edits of ltc.cu or (header, old, new), each to fail the check below (built by conftest.py)
MUTANTS = {
    "the spike-gradient carry without its (1 - rho)": (
        "keep[3] = {1.0f - s.rate, 1.0f - s.retention, s.retention};",
        "keep[3] = {1.0f - s.rate, 1.0f, s.retention};",
    ),
    "the state before a thread's steps from the wrong row": (
        "const long long t = (t0 < T ? t0 : T) - 1,",
        "const long long t = (t0 < T ? t0 : T) - 2,",
    ),
    "the surrogate's slope left out of the map's Gu row": (
        "const float gu[4] = {1.0f - s.spike - sg * s.v,",
        "const float gu[4] = {1.0f - s.spike,",
    ),
}


def backward_case(T, N, seed):
    surrogate = ATan()
    inputs = kernel_inputs(T, N, seed=seed, surrogate=surrogate)
    gen = torch.Generator().manual_seed(seed + 1)
    grad_outputs = (torch.randn(T, N, generator=gen), torch.randn(T, N, generator=gen)) + tuple(
        torch.randn(N, generator=gen) for _ in range(3)
    )
    wide = [x.double().requires_grad_(True) for x in inputs]
    exact = torch.autograd.grad(
        ltc_scan_reference(*wide, B0, BETA_A, surrogate), wide, [g.double() for g in grad_outputs]
    )
    low = [x.clone().requires_grad_(True) for x in inputs]
    serial32 = torch.autograd.grad(ltc_scan_reference(*low, B0, BETA_A, surrogate), low, grad_outputs)
    return surrogate, inputs, grad_outputs, exact, serial32


def assert_within_serial_error(got, exact, serial32):
    names = ("current", "rate", "retention", "u0", "s0", "b_init")
    for name, g, e, s in zip(names, got, exact, serial32, strict=True):
        tol = 8 * (s.double() - e).abs().max().item() + 4e-6 * e.abs().max().item() + 1e-7
        error = (g.double() - e).abs().max().item()
        assert error <= tol, f"grad {name}: error {error:.3g} > tolerance {tol:.3g}"


LTC_KERNEL_CASES = [
    (1, 3, None),
    (64, 5, 1),
    (65, 33, 1),
    (200, 7, 2),
    (300, 10, 99),
    (130, 300, None),
    pytest.param(777, 5, 1, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("T,N,per_block", LTC_KERNEL_CASES)
def test_kernel_backward_in_every_schedule(harness, T, N, per_block):
    """The chunked backward against the float64 reference (within 8x the float32 step loop's error) over ragged T, one
    and many segments, blocks splitting the sequence or walking all of it; the same bits in every schedule."""
    surrogate, inputs, grad_outputs, exact, serial32 = backward_case(T, N, seed=T + N)
    outputs = emu_ltc_fwd(harness, *inputs, surrogate)
    first = None
    for workers, seed in [(1, 0), (4, 1), (8, 2)]:
        harness.workers, harness.seed = workers, seed
        try:
            got = emu_ltc_bwd(harness, grad_outputs, inputs, outputs, surrogate, per_block)
        finally:
            harness.workers, harness.seed = 1, 0
        assert_within_serial_error(got, exact, serial32)
        first = got if first is None else first
        assert all(torch.equal(x, y) for x, y in zip(got, first, strict=True)), "the gradients depend on the schedule"


@pytest.mark.slow  # builds a mutated kernel per case
def test_the_kernel_checks_bite(mutant):
    """Each mutant fails the comparison above (200 steps in 4 blocks); the forward is unaffected."""
    surrogate, inputs, grad_outputs, exact, serial32 = backward_case(200, 6, seed=5)
    mutant.workers, mutant.seed = 4, 1
    outputs = emu_ltc_fwd(mutant, *inputs, surrogate)
    assert torch.equal(outputs[0], ltc_scan_reference(*inputs, B0, BETA_A, surrogate)[0])
    with pytest.raises(AssertionError):
        assert_within_serial_error(emu_ltc_bwd(mutant, grad_outputs, inputs, outputs, surrogate, 1), exact, serial32)


# ---- the op on each backend, in float32 against the float64 reference ---------------------------------
@pytest.mark.parametrize("T", [1, 7, 40])
def test_op_matches_reference_on_each_backend(backend, T):
    name, device = backend
    surrogate = MultiGaussian(inclusive=False)
    flat = kernel_inputs(T, 6, seed=T, surrogate=surrogate)
    inputs = [t.reshape(*t.shape[:-1], 2, 3) for t in flat]
    got_in, ref_in = leaves(*inputs, device=device), leaves(*inputs, dtype=torch.float64)
    got = ltc_scan(*got_in, B0, BETA_A, surrogate, backend=name)
    ref = ltc_scan_reference(*ref_in, B0, BETA_A, surrogate)
    assert torch.equal(got[0].cpu(), ref[0].float())
    compare(got, ref, ("spikes", "membrane", "u_last", "s_last", "b_last"))
    names = ("grad current", "grad rate", "grad retention", "grad u0", "grad s0", "grad b_init")
    compare(grads(got, got_in), grads(ref, ref_in), names, rtol=1e-4)


# ---- on a GPU, in three dtypes, against the float64 torch path ------------------------------------------
def _gpu_case() -> OpCase:
    spike_fn = MultiGaussian(inclusive=False)

    def inputs(steps, dtype, device):
        return [
            sequence(steps, B, C, dtype=dtype, low=-1.0, high=2.0, device=device),
            sequence(steps, B, C, dtype=dtype, low=0.05, high=0.95, device=device),
            sequence(steps, B, C, dtype=dtype, low=0.5, high=0.99, device=device),
            torch.randn(B, C, device=device).to(dtype),
            torch.zeros(B, C, device=device).to(dtype),
            torch.rand(B, C, device=device).to(dtype),
        ]

    def run(backend, *ins):
        return ltc_scan(*ins, 0.1, 1.8, spike_fn, backend=backend)

    def spike_arg(ins, outs):
        flat = [t.reshape(t.shape[0], -1) if t.dim() == 3 else t.reshape(-1) for t in ins]
        trace = ltc_forward(*flat, 0.1, 1.8, spike_fn)[2].view(outs[1].shape)
        return outs[1] - (0.1 + 1.8 * trace)

    return OpCase(run, inputs, spike_fn, spike_arg, feedback=True)


test_harness_matches_torch_path_in_every_dtype = harness_test(lambda name: _gpu_case(), ["ltc"])
test_cuda_matches_torch_path, test_cuda_matches_torch_path_at_65536_steps = cuda_tests(
    lambda name: _gpu_case(), ["ltc"]
)
