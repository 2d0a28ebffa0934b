"""``linear_scan``: the torch path, the kernels in the CPU harness and (marked ``gpu``) on a GPU, against
the step-by-step reference."""

from __future__ import annotations

import math

import pytest
import torch
from kernel_harness.checks import compare, grads, leaves
from kernel_harness.gpu import B, C, OpCase, check_op, cuda_tests, harness_test, sequence
from torch.autograd import gradcheck

from snn_parallel.ops import _cuda, linear_scan, linear_scan_reference
from snn_parallel.ops.scan import cupy as scan_cupy

STEPS = [1, 2, 7, 64, 257]


def _decay(shape, dtype, kind):
    if kind == "real":
        return torch.rand(shape, dtype=dtype) * 0.98
    if kind == "log":
        return -torch.rand(shape, dtype=dtype) * 3
    return (
        torch.rand(shape, dtype=torch.float64) * 0.98 * torch.exp(1j * torch.rand(shape, dtype=torch.float64) * 3)
    ).to(dtype)


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("chunk", [None, 1, 3, 16])
@pytest.mark.parametrize("kind", ["real", "log", "complex"])
@pytest.mark.parametrize("varying", [True, False])
def test_forward_matches_reference(steps, chunk, kind, varying):
    dtype = torch.complex128 if kind == "complex" else torch.float64
    shape = (steps, 3, 5) if varying else (5,)
    a = _decay(shape, dtype, kind)
    b = torch.randn(steps, 3, 5, dtype=dtype)
    h0 = torch.randn(3, 5, dtype=dtype)
    h, last = linear_scan(a, b, h0, log_decay=kind == "log", chunk=chunk)
    ref, ref_last = linear_scan_reference(a.exp() if kind == "log" else a, b, h0)
    torch.testing.assert_close(h, ref)
    torch.testing.assert_close(last, ref_last)
    torch.testing.assert_close(last, h[-1])


@pytest.mark.parametrize("steps", [1, 2, 6, 13])
@pytest.mark.parametrize("chunk", [None, 2, 4])
@pytest.mark.parametrize("kind", ["real", "log", "complex"])
@pytest.mark.parametrize("varying", [True, False])
def test_gradcheck(steps, chunk, kind, varying):
    dtype = torch.complex128 if kind == "complex" else torch.float64
    a = _decay((steps, 2, 3) if varying else (3,), dtype, kind).requires_grad_()
    b = torch.randn(steps, 2, 3, dtype=dtype, requires_grad=True)
    h0 = torch.randn(2, 3, dtype=dtype, requires_grad=True)
    assert gradcheck(lambda a, b, h0: linear_scan(a, b, h0, log_decay=kind == "log", chunk=chunk), (a, b, h0))


@pytest.mark.parametrize("steps", [1, 9, 300])
def test_gradients_match_reference_float32(steps):
    a = torch.rand(steps, 4, 6, requires_grad=True)
    b = torch.randn(steps, 4, 6, requires_grad=True)
    h0 = torch.randn(4, 6, requires_grad=True)
    weights = torch.randn(steps, 4, 6), torch.randn(4, 6)
    out = linear_scan(a, b, h0)
    ref = linear_scan_reference(a, b, h0)
    grads = torch.autograd.grad(sum((o * w).sum() for o, w in zip(out, weights, strict=True)), (a, b, h0))
    ref_grads = torch.autograd.grad(sum((o * w).sum() for o, w in zip(ref, weights, strict=True)), (a, b, h0))
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)


def test_state_carried_between_calls():
    a, b = torch.rand(50, 2, 3), torch.randn(50, 2, 3)
    whole, last = linear_scan(a, b)
    first, mid = linear_scan(a[:23], b[:23])
    second, end = linear_scan(a[23:], b[23:], mid)
    torch.testing.assert_close(torch.cat([first, second]), whole)
    torch.testing.assert_close(end, last)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_accumulates_in_float32(dtype):
    a, b = torch.rand(100, 8).to(dtype), torch.randn(100, 8).to(dtype)
    h, _ = linear_scan(a, b)
    assert h.dtype == torch.float32
    ref, _ = linear_scan_reference(a.float(), b.float())
    torch.testing.assert_close(h, ref)


def test_long_sequence_log_space_is_stable():
    """T = 30 000 with fast decays: a cumulative-product form would overflow; the scan stays exact."""
    steps = 30_000
    log_a = -torch.rand(steps, 2, 4, dtype=torch.float64) * 4
    b = torch.randn(steps, 2, 4, dtype=torch.float64)
    h32, _ = linear_scan(log_a.float(), b.float(), log_decay=True)
    ref, _ = linear_scan_reference(log_a.exp(), b)
    assert torch.isfinite(h32).all()
    torch.testing.assert_close(h32.double(), ref, rtol=1e-4, atol=1e-5)


def test_bad_inputs_name_the_argument():
    b = torch.randn(5, 2, 3)
    with pytest.raises(TypeError, match="a must be a torch.Tensor"):
        linear_scan([0.5], b)
    with pytest.raises(TypeError, match="b must have dtype"):
        linear_scan(torch.rand(5, 2, 3), torch.ones(5, 2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="T >= 1"):
        linear_scan(torch.rand(3), torch.randn(0, 2, 3))
    with pytest.raises(ValueError, match="time-varying decay must match"):
        linear_scan(torch.rand(4, 2, 3), b)
    with pytest.raises(ValueError, match="time-invariant decay must broadcast"):
        linear_scan(torch.rand(4), b)
    with pytest.raises(ValueError, match="larger shape"):
        linear_scan(torch.rand(7, 1, 1, 1), b)
    with pytest.raises(ValueError, match="h0 has shape"):
        linear_scan(torch.rand(3), b, torch.zeros(3))
    with pytest.raises(ValueError, match="b contains NaN"):
        linear_scan(torch.rand(3), torch.full((5, 2, 3), float("nan")))
    with pytest.raises(TypeError, match="log_decay=True"):
        linear_scan(torch.rand(3, dtype=torch.complex64), b, log_decay=True)
    with pytest.raises(ValueError, match="chunk must be"):
        linear_scan(torch.rand(3), b, chunk=0)
    with pytest.raises(ValueError, match="a is on meta"):
        linear_scan(torch.rand(3, device="meta"), b)
    with pytest.raises(ValueError, match="backend must be one of"):
        linear_scan(torch.rand(3), b, backend="triton")
    with pytest.raises(RuntimeError, match="linear_scan: backend='cupy' cannot run: the inputs are on cpu"):
        linear_scan(torch.rand(3), b, backend="cupy")


# ---- the kernels in the CPU harness --------------------------------------------------------------------
# scan_fwd_* / scan_bwd_* run through the launcher with the harness behind it: the blocks of a launch on
# several host threads in a seeded order, so a block really waits for the blocks before it (decoupled look-back).


def scan_inputs(T, N, varying, complex_, seed):
    gen = torch.Generator().manual_seed(seed)
    shape = (T, N) if varying else (N,)
    radius = 0.5 + 0.5 * torch.rand(shape, generator=gen)
    if complex_:
        angle = (2 * torch.rand(shape, generator=gen) - 1) * math.pi
        a = torch.polar(radius, angle)
        b = torch.randn(T, N, dtype=torch.complex64, generator=gen)
        h0 = torch.randn(N, dtype=torch.complex64, generator=gen)
    else:
        a = radius * torch.where(torch.rand(shape, generator=gen) < 0.2, -1.0, 1.0)
        b, h0 = torch.randn(T, N, generator=gen), torch.randn(N, generator=gen)
    grad_h = torch.randn(T, N, dtype=b.dtype, generator=gen)
    grad_last = torch.randn(N, dtype=b.dtype, generator=gen)
    return a, b, h0, grad_h, grad_last


def run_kernels(a, b, h0, grad_h, grad_last, per_block):
    """``(h, h_last, grad_a, grad_b, grad_h0)`` from the forward and backward kernels (a time-invariant ``a``
    per lane)."""
    layout = (1, 1) if a.dim() == 2 else (a.shape[0], 1)
    h, last = scan_cupy.scan_forward_cupy(a, b, h0, layout, segments_per_block=per_block)
    grads = scan_cupy.scan_backward_cupy(a, grad_h, grad_last, h, h0, layout, segments_per_block=per_block)
    return (h, last, *grads)


def serial(a, b, h0, grad_h, grad_last, dtype, *, scan=linear_scan_reference):
    """The same five tensors from ``scan`` (the step-by-step reference) and autograd, in ``dtype``."""
    wide = [
        x.to(dtype if not x.is_complex() else {torch.float64: torch.complex128, torch.float32: torch.complex64}[dtype])
        for x in (a, b, h0, grad_h, grad_last)
    ]
    inputs = [x.requires_grad_() for x in wide[:3]]
    h, last = scan(*inputs)
    return (h.detach(), last.detach(), *torch.autograd.grad((h, last), inputs, wide[3:]))


def torch_path(a, b, h0):
    return linear_scan(a, b, h0, backend="torch")


NAMES = ("h", "h_last", "grad a", "grad b", "grad h0")


def assert_within_serial_error(got, exact, serial32, what=""):
    """Each of ``got`` within 8x the error of the serial float32 loop (``serial32``) of the float64 ``exact``,
    plus 1e-6 of its size."""
    for name, g, e, s in zip(NAMES, got, exact, serial32, strict=True):
        scale = e.abs().max().item()
        tol = 8 * (s.to(e.dtype) - e).abs().max().item() + 1e-6 * scale + 1e-7
        error = (g.to(e.dtype) - e).abs().max().item()
        assert error <= tol, f"{what} {name}: error {error:.3g} > tolerance {tol:.3g} (size {scale:.3g})"


SCHEDULES = [(1, 0), (4, 1), (8, 2)]  # (host threads, seed)
# (T, N, segments per block): T < S, T = S, T ragged; N < 32 and ragged; 1, 2 or all (99) segments a block
KERNEL_CASES = [
    (1, 1, None),
    (37, 5, 1),
    (64, 33, 1),
    (65, 33, 1),
    (65, 1, 2),
    (200, 33, 2),
    (200, 70, None),
    (300, 40, 99),
    pytest.param(777, 5, 1, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("varying", [False, True], ids=["invariant", "varying"])
@pytest.mark.parametrize("T,N,per_block", KERNEL_CASES)
def test_kernels_match_reference_in_every_schedule(emulate_cupy, harness, T, N, per_block, varying, complex_):
    """Forward and backward against the float64 reference, within the serial float32 loop's error; the same bits
    for every schedule; the look-back taken wherever blocks follow each other in time."""
    inputs = scan_inputs(T, N, varying, complex_, seed=T * 7 + N)
    exact, serial32 = serial(*inputs, torch.float64), serial(*inputs, torch.float32)
    first = None
    for workers, seed in SCHEDULES:
        emulate_cupy(workers=workers, seed=seed)
        harness.reset_counters()
        got = run_kernels(*inputs, per_block)
        assert_within_serial_error(got, exact, serial32, what=f"{workers} workers, seed {seed}:")
        if first is None:
            first = got
        for name, x, y in zip(NAMES, got, first, strict=True):
            assert torch.equal(x, y), f"{name} depends on the schedule"
        groups = _cuda.chunking(T, N, 2, per_block)[1]
        assert (harness.counters()["lookback_inclusive"] > 0) == (groups > 1)


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
def test_kernels_wait_for_and_step_over_other_blocks(emulate_cupy, harness, complex_):
    """Many segments (K = 66), one a block, on 8 host threads: some block waits for a predecessor still running,
    some walks back over a published aggregate, and the result holds."""
    inputs = scan_inputs(66 * 64 - 3, 5, True, complex_, seed=11)
    exact, serial32 = serial(*inputs, torch.float64), serial(*inputs, torch.float32)
    seen = {"lookback_wait": 0, "lookback_aggregate": 0}
    for seed in range(6):
        emulate_cupy(workers=8, seed=seed)
        harness.reset_counters()
        assert_within_serial_error(run_kernels(*inputs, 1), exact, serial32, what=f"seed {seed}:")
        for key in seen:
            seen[key] += harness.counters()[key]
        if all(seen.values()):
            break
    assert all(seen.values()), seen


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
def test_kernels_at_30000_steps(emulate_cupy, complex_):
    """T = 30 000, B·C = 40, one segment a block, 4 host threads: within 8x the float32 error of the torch path
    (itself tested against the step-by-step reference above) of its float64 result."""
    inputs = scan_inputs(30_000, 40, True, complex_, seed=5)
    emulate_cupy(workers=4, seed=1)
    exact, float32 = (serial(*inputs, dtype, scan=torch_path) for dtype in (torch.float64, torch.float32))
    assert_within_serial_error(run_kernels(*inputs, 1), exact, float32)


# mutants: (old, new) edits of scan.cu or (header, old, new), each to fail the check below (built by conftest.py)
MUTANTS = {
    "warps combined in the wrong order": (
        "chunked.cuh",
        "const int w = reverse ? SNN_WARPS - 1 - i : i;",
        "const int w = reverse ? i : SNN_WARPS - 1 - i;",
    ),
    "the carry dropped": ("chunked.cuh", "State h = affine(pre_d, carry, pre_b);", "State h = pre_b;"),
    "the aggregates after the inclusive state dropped": (
        "chunked.cuh",
        "for (long long i = j + 1; i < g; ++i)",
        "for (long long i = g; i < g; ++i)",
    ),
    "the carry between a block's segments dropped": (
        "chunked.cuh",
        "            shared_carry[lane] = h;\n",
        "            (void)h;\n",
    ),
    "the backward's decay read at t, not t + 1": (
        "if (t + 1 < T) s.alpha = decay(t + 1, n);",
        "if (t + 1 < T) s.alpha = decay(t, n);",
    ),
}


@pytest.mark.slow  # builds a mutated kernel per case
def test_the_kernel_checks_bite(emulate_cupy, mutant):
    """Each mutant fails the comparison for some of the cases above (in some schedule)."""
    caught = False
    for T, N, per_block in [(200, 33, 2), (66 * 64 - 3, 5, 1)]:
        inputs = scan_inputs(T, N, True, False, seed=3)
        exact, serial32 = serial(*inputs, torch.float64), serial(*inputs, torch.float32)
        for workers, seed in [(1, 0), *((8, s) for s in range(4))]:
            emulate_cupy(mutant, workers=workers, seed=seed)
            try:
                assert_within_serial_error(run_kernels(*inputs, per_block), exact, serial32)
            except AssertionError:
                caught = True
                break
        if caught:
            break
    assert caught, "the mutant passed every case"


# ---- the op on each backend ---------------------------------------------------------------------------


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("varying", [False, True], ids=["invariant", "varying"])
@pytest.mark.parametrize("T,chunk", [(1, None), (2, 1), (33, 4), (33, None), (100, 7)])
def test_op_matches_reference_on_each_backend(backend, T, chunk, varying, complex_):
    """linear_scan on float32/complex64 inputs (the kernels: with chunk lengths that do and do not divide T;
    ``None`` is the GPU's choice, in the harness for 2 multiprocessors), forward and gradients, against the
    float64 reference."""
    name, device = backend
    a, b, h0 = scan_inputs(T, 6, varying, complex_, seed=T)[:3]
    a, b, h0 = a.reshape(*a.shape[:-1], 2, 3), b.reshape(T, 2, 3), h0.reshape(2, 3)
    if not varying:
        a = a[0]  # per-channel decay [3], broadcast over the batch
    if not complex_:
        a = a.abs()  # a log decay must be real and positive
    for log_decay in (False, True) if not complex_ else (False,):
        decay = a.log() if log_decay else a
        got_in, ref_in = leaves(decay, b, h0, device=device), leaves(decay, b, h0, dtype=torch.float64)
        got = linear_scan(*got_in, log_decay=log_decay, chunk=chunk, backend=name)
        ref_a = ref_in[0].exp() if log_decay else ref_in[0]
        ref = linear_scan_reference(ref_a.expand_as(ref_in[1]) if varying else ref_a, *ref_in[1:])
        compare(got, ref, ("h", "h_last"))
        compare(grads(got, got_in), grads(ref, ref_in), ("grad a", "grad b", "grad h0"), rtol=1e-4)


def test_launch_configuration():
    """Wide scans: each block walks its lanes' whole sequence; narrow ones: one segment a block (a look-back)."""
    assert _cuda.chunking(1000, 132 * 4 * 32, 132) == (16, 1, 528)
    assert _cuda.chunking(65536, 256, 132) == (1, 1024, 8)
    assert _cuda.chunking(3, 1, 132) == (1, 1, 1)
    assert _cuda.chunking(200, 5, 2, 2) == (2, 2, 1) and _cuda.chunking(200, 5, 2, 99) == (4, 1, 1)


# ---- on a GPU, in three dtypes, against the float64 torch path ------------------------------------------


def _scan_case(complex_: bool, chunk: int | None, batch: int = B, channels: int = C) -> OpCase:
    def inputs(steps, dtype, device):
        a = sequence(steps, batch, channels, dtype=dtype, low=0.5, high=1.0, device=device)
        b = sequence(steps, batch, channels, dtype=dtype, low=-1.0, high=1.0, device=device)
        if complex_:
            a = torch.polar(a.float(), torch.rand_like(a.float()) * 3)
            b = torch.complex(b.float(), torch.randn_like(b.float()))
        return [a, b, torch.randn(batch, channels, device=device, dtype=b.dtype)]

    def run(backend, a, b, h0):
        return linear_scan(a, b, h0, chunk=chunk, backend=backend)

    return OpCase(run, inputs, lanes=(batch, channels))


GPU_CASES = {"scan": (False, None), "scan_chunk7": (False, 7), "cscan": (True, None)}


test_harness_matches_torch_path_in_every_dtype = harness_test(
    lambda name: _scan_case(*GPU_CASES[name]), list(GPU_CASES)
)
test_cuda_matches_torch_path, test_cuda_matches_torch_path_at_65536_steps = cuda_tests(
    lambda name: _scan_case(*GPU_CASES[name]), list(GPU_CASES)
)


@pytest.mark.gpu
@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
def test_cuda_wide_layers_walk_their_whole_sequence(complex_):
    """B·C = 65 536 lanes: each block walks its lanes' whole sequence (no look-back); a per-channel decay."""
    check_op(_scan_case(complex_, None, batch=128, channels=512), 300, torch.float32)
