"""``linear_scan``: the torch path, the kernels in the CPU harness and (marked ``gpu``) on a GPU, against
the step-by-step reference."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck

import kernel_harness
from kernel_harness.checks import assert_close, compare, grads, leaves
from kernel_harness.gpu import DTYPES, IDS, LONG, STEPS as GPU_STEPS, B, C, OpCase, check_op, sequence
from snn_parallel.ops import linear_scan, linear_scan_reference
from snn_parallel.ops.scan import cupy as scan_cupy

STEPS = [1, 2, 7, 64, 257]


def _decay(shape, dtype, kind):
    if kind == "real":
        return torch.rand(shape, dtype=dtype) * 0.98
    if kind == "log":
        return -torch.rand(shape, dtype=dtype) * 3
    return (torch.rand(shape, dtype=torch.float64) * 0.98 * torch.exp(1j * torch.rand(shape, dtype=torch.float64) * 3)).to(dtype)


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
    grads = torch.autograd.grad(sum((o * w).sum() for o, w in zip(out, weights)), (a, b, h0))
    ref_grads = torch.autograd.grad(sum((o * w).sum() for o, w in zip(ref, weights)), (a, b, h0))
    for g, r in zip(grads, ref_grads):
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


# ---- the kernels ------------------------------------------------------------------------------------


def emu_scan(lib, a, b, h0, L, reverse, *, block=256, grid=None, corrupt_carry=False):
    """h from the three scan launches; a [T, N] or [N], b [T, N], h0 [N] (float32 or complex64)."""
    a, b, h0 = a.contiguous(), b.contiguous(), h0.contiguous()
    T, N = b.shape
    K = math.ceil(T / L)
    prefix = "c" if b.is_complex() else ""
    chunk_a, chunk_h, carry = (torch.empty(K, N, dtype=b.dtype) for _ in range(3))
    h = torch.empty_like(b)
    varying, rev = int(a.dim() == 2), int(reverse)
    lib.launch_items(f"{prefix}scan_reduce", K * N, a, b, chunk_a, chunk_h, T, N, L, varying, rev, block=block, grid=grid)
    lib.launch_items(f"{prefix}scan_carry", N, chunk_a, chunk_h, h0, carry, K, N, rev, block=block, grid=grid)
    if corrupt_carry:
        carry[K // 2, N // 2] += 1
    lib.launch_items(f"{prefix}scan_apply", K * N, a, b, carry, h, T, N, L, varying, rev, block=block, grid=grid)
    return h


def reverse_scan_reference(a, b, h0):
    """h_t = a_t h_{t+1} + b_t from h_T = h0."""
    h, out = h0, torch.empty_like(b)
    for t in range(b.shape[0] - 1, -1, -1):
        h = (a[t] if a.dim() == 2 else a) * h + b[t]
        out[t] = h
    return out


def _scan_inputs(T, N, varying, complex_, seed):
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
    return a, b, h0


def _chunks(T):
    return sorted({1, 3, 16, T})


SCAN_CASES = [(T, L) for T in (1, 2, 7, 64, 257) for L in _chunks(T)]


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("T,L", SCAN_CASES)
def test_scan_kernels_match_reference(harness, T, L, complex_):
    for N in (1, 5, 33):
        for varying in (False, True):
            for reverse in (False, True):
                a, b, h0 = _scan_inputs(T, N, varying, complex_, seed=T * 1000 + N)
                expected = reverse_scan_reference(a, b, h0) if reverse else linear_scan_reference(a, b, h0)[0]
                got = emu_scan(harness, a, b, h0, L, reverse)
                assert_close(got, expected, what=f"N={N} varying={varying} reverse={reverse}")


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
def test_scan_kernels_any_grid_covers_all_items(harness, complex_):
    """Grid-stride loops: a grid far smaller than the item count gives the same result."""
    a, b, h0 = _scan_inputs(50, 7, True, complex_, seed=1)
    expected = emu_scan(harness, a, b, h0, 4, False)
    for grid, block in ((1, 1), (2, 3), (5, 256)):
        torch.testing.assert_close(emu_scan(harness, a, b, h0, 4, False, block=block, grid=grid), expected, rtol=0, atol=0)


def emu_scan_backward(lib, decay, h, h0, grad_h, grad_last, L):
    """Gradients of (a, b, h0), composed exactly as ``_LinearScan.backward`` does, with the kernels."""
    varying = decay.dim() == 2
    d = grad_h.clone()
    d[-1] += grad_last
    g = torch.empty_like(d)
    g[-1] = d[-1]
    if d.shape[0] > 1:
        reverse_decay = (decay[1:] if varying else decay).conj().resolve_conj()
        g[:-1] = emu_scan(lib, reverse_decay, d[:-1], d[-1], L, reverse=True)
    grad_h0 = (decay[0] if varying else decay).conj() * g[0]
    if varying:
        grad_a = torch.cat([(g[0] * h0.conj())[None], g[1:] * h[:-1].conj()])
    else:
        grad_a = (g[1:] * h[:-1].conj()).sum(0) + g[0] * h0.conj()
    return grad_a, g, grad_h0


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("varying", [False, True], ids=["invariant", "varying"])
@pytest.mark.parametrize("T,L", [(1, 1), (7, 3), (64, 1), (64, 8), (64, 64), (257, 16)])
def test_scan_kernels_backward_matches_autograd(harness, T, L, varying, complex_):
    N = 5
    a, b, h0 = _scan_inputs(T, N, varying, complex_, seed=7 * T + L)
    gen = torch.Generator().manual_seed(T)
    grad_h = torch.randn(T, N, dtype=b.dtype, generator=gen)
    grad_last = torch.randn(N, dtype=b.dtype, generator=gen)
    ref_leaves = [x.clone().requires_grad_(True) for x in (a, b, h0)]
    h_ref, last_ref = linear_scan_reference(*ref_leaves)
    expected = torch.autograd.grad((h_ref, last_ref), ref_leaves, (grad_h, grad_last))
    h = emu_scan(harness, a, b, h0, L, False)
    got = emu_scan_backward(harness, a, h, h0, grad_h, grad_last, L)
    for name, x, y in zip(("a", "b", "h0"), got, expected):
        assert_close(x, y, rtol=1e-4, atol=1e-4, what=f"grad {name}")


def test_scan_check_bites_on_corrupted_carry(harness):
    """The same comparison fails when one carry is wrong; the chunk length does not matter."""
    a, b, h0 = _scan_inputs(64, 5, True, False, seed=3)
    expected = linear_scan_reference(a, b, h0)[0]
    for L in (1, 5, 64):
        assert_close(emu_scan(harness, a, b, h0, L, False), expected)
    with pytest.raises(AssertionError):
        assert_close(emu_scan(harness, a, b, h0, 8, False, corrupt_carry=True), expected)


def test_scan_check_bites_on_mutated_kernel(tmp_path):
    """A carry pass that walks the chunks forwards in reverse mode is caught."""
    if kernel_harness.GXX is None:
        pytest.skip("g++ not on PATH")
    lib = kernel_harness.build(tmp_path, mutation=("scan.cu", "(reverse ? K - 1 - j : j) * N + n", "j * N + n"), strict=False)
    a, b, h0 = _scan_inputs(64, 5, True, False, seed=4)
    assert_close(emu_scan(lib, a, b, h0, 8, False), linear_scan_reference(a, b, h0)[0])  # forward unaffected
    with pytest.raises(AssertionError):
        assert_close(emu_scan(lib, a, b, h0, 8, True), reverse_scan_reference(a, b, h0))


# ---- the op on each backend ---------------------------------------------------------------------------


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("varying", [False, True], ids=["invariant", "varying"])
@pytest.mark.parametrize("T,chunk", [(1, None), (2, 1), (33, 4), (33, None), (100, 7)])
def test_op_matches_reference_on_each_backend(backend, T, chunk, varying, complex_):
    """linear_scan on float32/complex64 inputs (the kernels: with chunk lengths that do and do not divide T;
    ``None`` is the GPU's choice, in the harness for 2 multiprocessors), forward and gradients, against the
    float64 reference."""
    name, device = backend
    a, b, h0 = _scan_inputs(T, 6, varying, complex_, seed=T)
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


def test_gpu_chunk():
    assert scan_cupy.gpu_chunk(1000, 132 * 256, 132) == 1000  # wide: one pass
    length = scan_cupy.gpu_chunk(65536, 256, 132)
    chunks = -(-65536 // length)
    assert abs(chunks * 256 / (132 * 1024) - 1) < 0.01  # narrow: (chunk, lane) items fill the device
    assert scan_cupy.gpu_chunk(3, 1, 132) == 1  # never more chunks than steps


# ---- on a GPU, in three dtypes, against the float64 torch path ------------------------------------------


def _scan_case(complex_: bool, chunk: int | None) -> OpCase:
    def inputs(steps, dtype):
        a = sequence(steps, B, C, dtype=dtype, low=0.5, high=1.0)
        b = sequence(steps, B, C, dtype=dtype, low=-1.0, high=1.0)
        if complex_:
            a = torch.polar(a.float(), torch.rand_like(a.float()) * 3)
            b = torch.complex(b.float(), torch.randn_like(b.float()))
        return [a, b, torch.randn(B, C, device="cuda", dtype=b.dtype)]

    def run(backend, a, b, h0):
        return linear_scan(a, b, h0, chunk=chunk, backend=backend)

    return OpCase(run, inputs)


GPU_CASES = {"scan": (False, None), "scan_chunk7": (False, 7), "cscan": (True, None)}


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
@pytest.mark.parametrize("steps", GPU_STEPS)
@pytest.mark.parametrize("name", GPU_CASES)
def test_cuda_matches_torch_path(name, steps, dtype):
    check_op(_scan_case(*GPU_CASES[name]), steps, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", GPU_CASES)
def test_cuda_matches_torch_path_at_65536_steps(name, dtype):
    check_op(_scan_case(*GPU_CASES[name]), LONG, dtype)
