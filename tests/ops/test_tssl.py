"""``tsslbp``'s kernels in the CPU harness and (marked ``gpu``) on a GPU, against the step-by-step reference and
the torch path (the torch path itself is tested in ``tests/learners/test_tsslbp.py``)."""

from __future__ import annotations

import math
from unittest import mock

import pytest
import torch
from kernel_harness.checks import assert_close
from kernel_harness.gpu import LONG, B, C, OpCase, check_op, sequence
from kernel_harness.gpu import STEPS as GPU_STEPS

from snn_parallel.ops import _cuda, tsslbp
from snn_parallel.ops.tssl.reference import tssl_backward_reference, tssl_forward_reference
from snn_parallel.surrogate import Sigmoid

TSSL = {"v_threshold": 1.0, "tau_m": 5.0, "tau_s": 3.0}


def emu_tssl_fwd(lib, current, u0, a0, inclusive, *, v_threshold=TSSL["v_threshold"], block=256, grid=None):
    """``(psp, spikes, membrane, delta_u, u_last, a_last)`` from ``tssl_fwd``; ``current`` [T, N] float32."""
    T, N = current.shape
    outputs = [torch.empty(T, N) for _ in range(4)] + [torch.empty(N) for _ in range(2)]
    lib.launch_items("tssl_fwd", N, current, u0, a0, *outputs, v_threshold, TSSL["tau_m"], TSSL["tau_s"],
                     int(inclusive), T, N, block=block, grid=grid)  # fmt: skip
    return tuple(outputs)


def emu_tssl_bwd(
    lib, grad_psp, psp, spikes, membrane, delta_u, *, v_threshold=TSSL["v_threshold"], at_spikes=True, per_block=None
):
    """``grad_current`` from ``tssl_bwd`` at the launcher's geometry and look-back buffers (``_cuda.workspace`` on a
    device of 2 multiprocessors; ``per_block`` segments a block forced)."""
    T, N = grad_psp.shape
    grad = torch.empty(T, N)
    with mock.patch.object(_cuda, "processors", lambda device: 2):
        grid, per_block, *look_back = _cuda.workspace(T, N, grad, 2, per_block, decay_floats=4)
    lib.launch("tssl_bwd", (grid,), (32, _cuda.CHUNK_WARPS), grad_psp, spikes, membrane, delta_u, psp, grad,
               *look_back, v_threshold, TSSL["tau_m"], TSSL["tau_s"], int(at_spikes), T, N, per_block)  # fmt: skip
    return grad


def tssl_inputs(T, N, seed, inclusive=False):
    """float32 ``(current [T, N], u0, a0)`` whose float64 membranes stay clear of the threshold (so float32
    spikes are exact) and whose neurons fire, stay silent (the fallback) and rise while quiet but recently active."""
    for attempt in range(100):
        gen = torch.Generator().manual_seed(seed * 100 + attempt)
        current = 1.2 * torch.randn(T, N, generator=gen) + 0.4
        u0 = 0.9 * torch.rand(N, generator=gen)
        a0 = 0.5 * torch.rand(N, generator=gen)
        psp, spikes, membrane, delta_u, _, _ = tssl_forward_reference(
            *(x.double() for x in (current, u0, a0)), **TSSL, inclusive=inclusive
        )
        silent = psp < 1 / (4 * TSSL["tau_s"])
        branches = spikes.any() and silent.any() and (~silent & (spikes == 0) & (delta_u > 0)).any()
        if branches and ((membrane - TSSL["v_threshold"]).abs() > 1e-4).all():
            return current, u0, a0
    raise RuntimeError("could not draw TSSL-BP inputs that take every branch away from the threshold")


def _backward_expected(grad_psp, psp, spikes, membrane, delta_u, v_threshold=TSSL["v_threshold"], at_spikes=True):
    """The step-by-step reference backward in float64 on the kernel forward's (float32) results."""
    wide = (x.double() for x in (grad_psp, spikes, membrane, delta_u, psp))
    return tssl_backward_reference(*wide, v_threshold, TSSL["tau_m"], TSSL["tau_s"], at_spikes)


NAMES = ("psp", "spikes", "membrane", "delta_u", "u_last", "a_last")


@pytest.mark.parametrize("inclusive", [False, True])
@pytest.mark.parametrize("T", [1, 2, 5, 10])
def test_kernels_match_reference(harness, T, inclusive):
    """Forward, and the backward of both revisions of dt/du (at spikes only, or wherever the membrane rose)."""
    current, u0, a0 = tssl_inputs(T, 37, seed=T, inclusive=inclusive)
    got = emu_tssl_fwd(harness, current, u0, a0, inclusive)
    ref = tssl_forward_reference(current, u0, a0, **TSSL, inclusive=inclusive)
    assert torch.equal(got[1], ref[1]), "spikes differ"
    for name, x, y in zip(NAMES, got, ref, strict=True):
        assert_close(x, y, rtol=1e-6, atol=1e-6, what=name)
    grad_psp = torch.randn(T, 37, generator=torch.Generator().manual_seed(T))
    for at_spikes in (True, False):
        expected = _backward_expected(grad_psp, *got[:4], at_spikes=at_spikes)
        grad = emu_tssl_bwd(harness, grad_psp, *got[:4], at_spikes=at_spikes)
        assert_close(
            grad.double(),
            expected,
            rtol=1e-5,
            atol=1e-5 * expected.abs().max().item(),
            what=f"grad current ({at_spikes=})",
        )


@pytest.mark.parametrize("inclusive", [False, True])
@pytest.mark.parametrize("v_threshold", [1.0, -1.0])
def test_kernel_edge_cases_match_reference(harness, v_threshold, inclusive):
    """Lanes that spike on delta_u = +0 (dt/du clamps to -8) and on delta_u < 0 (dt/du = 0), on a tiny increment
    (clamped), reach the threshold exactly, and stay silent far below it (the fallback's clamp); with V_th = -1,
    a lane spikes on delta_u = -0 (-1/du = +inf, so dt/du = 0)."""
    current = torch.tensor([
        [0.5, 0.1, 0.2015, 1.0, -5.0, -0.0],
        [0.3, 0.0, 0.9, 0.0, -5.0, -0.0],
        [1.5, 2.0, 0.1, 1.0, 0.1, 1.2],
    ])  # fmt: skip
    u0 = torch.tensor([2.5, 3.0, 0.999, 0.0, 0.0, 0.0])
    a0 = torch.zeros(6)
    got = emu_tssl_fwd(harness, current, u0, a0, inclusive, v_threshold=v_threshold)
    ref = tssl_forward_reference(current, u0, a0, v_threshold, TSSL["tau_m"], TSSL["tau_s"], inclusive)
    assert torch.equal(got[1], ref[1]), "spikes differ"
    for name, x, y in zip(NAMES, got, ref, strict=True):
        assert torch.equal(x, y), name
    if v_threshold == 1.0:
        assert got[1][0].tolist() == [1, 1, 1, float(inclusive), 0, 0]
        assert got[3][0, 0] == 0 and got[3][0, 1] < 0 and 0 < got[3][0, 2] < 1 / 8
    else:
        assert got[1][0, 5] == 1 and got[3][0, 5] == 0 and math.copysign(1, got[3][0, 5]) < 0
    grad_psp = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    for at_spikes in (True, False):
        expected = _backward_expected(grad_psp, *got[:4], v_threshold=v_threshold, at_spikes=at_spikes)
        grad = emu_tssl_bwd(harness, grad_psp, *got[:4], v_threshold=v_threshold, at_spikes=at_spikes)
        assert_close(grad.double(), expected, rtol=1e-5, atol=1e-6, what=f"grad current ({at_spikes=})")


@pytest.mark.parametrize("T,N", [(10, 37), (200, 5), pytest.param(777, 9, marks=pytest.mark.slow)])
def test_kernels_any_grid_and_schedule(harness, T, N):
    """The forward's grid-stride loop over any grid (the same bits), and the chunked backward with blocks splitting the
    sequence (look-back) or walking all of it against the float64 reference, with the same bits in every schedule."""
    current, u0, a0 = tssl_inputs(T, N, seed=3)
    grad_psp = torch.randn(T, N, generator=torch.Generator().manual_seed(3))
    forwards = [
        emu_tssl_fwd(harness, current, u0, a0, False, block=block, grid=grid)
        for grid, block in ((None, 256), (1, 1), (2, 3), (5, 4))
    ]
    for other in forwards[1:]:
        assert all(torch.equal(a, b) for a, b in zip(forwards[0], other, strict=True))
    expected = _backward_expected(grad_psp, *forwards[0][:4])
    for per_block in (None, 1, 2, 99):
        grads = []
        for workers in (1, 4, 8):
            harness.workers, harness.seed = workers, workers
            try:
                grads.append(emu_tssl_bwd(harness, grad_psp, *forwards[0][:4], per_block=per_block))
            finally:
                harness.workers, harness.seed = 1, 0
        assert_close(
            grads[0].double(),
            expected,
            rtol=1e-5,
            atol=1e-5 * expected.abs().max().item(),
            what=f"grad current ({per_block} segments a block)",
        )
        assert all(torch.equal(grads[0], g) for g in grads[1:]), "the gradient depends on the schedule"


# ---- the op through the CuPy path -----------------------------------------------------------------------
def _on_both_paths(current, u0, a0, inclusive=False, at_spikes=True):
    """backend -> ``(psp, spikes, membrane, u_last, a_last, grad of the current)`` for a random weighting of the PSP."""
    weights = torch.randn(current.shape, generator=torch.Generator().manual_seed(0))
    results = {}
    for backend in ("torch", "cupy"):
        x = current.detach().requires_grad_()
        out = tsslbp(x, u0, a0, **TSSL, inclusive=inclusive, dt_du_at_spikes=at_spikes, backend=backend)
        results[backend] = (*out, *torch.autograd.grad(out[0], x, weights))
    return results


def _compare_paths(results, names):
    for name, a, b in zip(names, results["torch"], results["cupy"], strict=True):
        assert b.shape == a.shape and b.dtype == a.dtype, name
        assert_close(b, a, rtol=1e-5, atol=1e-6 * max(a.abs().max().item(), 1.0), what=name)


OP_NAMES = ("psp", "spikes", "membrane", "u_last", "a_last", "grad current")


@pytest.mark.parametrize("at_spikes", [True, False])
@pytest.mark.parametrize("inclusive", [False, True])
@pytest.mark.parametrize("T", [1, 2, 5, 10])
def test_cupy_path_matches_torch_path(emulate_cupy, T, inclusive, at_spikes):
    """tsslbp(backend='cupy') on a non-contiguous ``[T, B, C, S]`` current with a carried state: every output
    and the current's gradient (either revision of dt/du) equal the torch path's."""
    emulate_cupy()
    flat, u0, a0 = tssl_inputs(T, 24, seed=T + 10, inclusive=inclusive)
    current = flat.view(T, 2, 4, 3).transpose(2, 3)
    assert not current.is_contiguous()
    u0, a0 = (t.view(2, 4, 3).transpose(1, 2) for t in (u0, a0))
    results = _on_both_paths(current, u0, a0, inclusive, at_spikes)
    assert torch.equal(results["cupy"][1], results["torch"][1]), "spikes differ"
    _compare_paths(results, OP_NAMES)


# mutants: (old, new) edits of tssl.cu or (header, old, new), each to fail the check below (built by conftest.py)
MUTANTS = {
    "the carried term without the membrane leak on quiet steps": (
        "(1.0f - s.spike) * (1.0f - 1.0f / tau_m);",
        "(1.0f - s.spike);",
    ),
    "the PSP-kernel sum without its decay": ("d.m[0][0] = keep_s;", "d.m[0][0] = 1.0f;"),
    "the reset-carried term read after the step": (
        "float g = -s.du * inter_sum + s.carried * before.v[1];",
        "float g = -s.du * inter_sum + s.carried * after.v[1];",
    ),
    "the forward's prefetched inputs one chunk late": (
        "common.cuh",
        "const long long t = t0 + SNN_STEPS + j;",
        "const long long t = t0 + 2 * SNN_STEPS + j;",
    ),
}


@pytest.mark.slow  # builds a mutated kernel per case
def test_the_kernel_checks_bite(emulate_cupy, mutant):
    """Each mutant fails the comparison of the CuPy path with the torch path (100 steps: two segments)."""
    emulate_cupy(mutant)
    current, u0, a0 = tssl_inputs(100, 24, seed=6)
    with pytest.raises(AssertionError):
        results = _on_both_paths(current, u0, a0)
        assert torch.equal(results["cupy"][1], results["torch"][1]), "spikes differ"
        _compare_paths(results, OP_NAMES)


# ---- on a GPU, against the float64 torch path -------------------------------------------------------------
def _gpu_case(at_spikes: bool = True) -> OpCase:
    def carried(dtype, device):  # the same (u0, a0) for both paths: TSSL-BP gives them no gradient
        gen = torch.Generator(device=device).manual_seed(0)
        return [(scale * torch.rand(B, C, device=device, generator=gen)).to(dtype) for scale in (0.9, 0.5)]

    def inputs(steps, dtype, device):
        return [sequence(steps, B, C, dtype=dtype, low=-0.5, high=1.5, device=device)]

    def run(backend, current):
        psp, spikes, membrane, u_last, a_last = tsslbp(
            current, *carried(current.dtype, current.device), dt_du_at_spikes=at_spikes, backend=backend
        )
        return spikes, psp, membrane, u_last, a_last

    # the neuron fires by the step u_t > V_th, the forward of this surrogate (whose jump the tie check needs)
    return OpCase(run, inputs, Sigmoid(alpha=5.0, inclusive=False), lambda ins, outs: outs[2] - 1.0, feedback=True)


@pytest.mark.gpu
@pytest.mark.parametrize("at_spikes", [True, False])
@pytest.mark.parametrize("steps", [*GPU_STEPS, LONG])
def test_cuda_matches_torch_path(steps, at_spikes):
    """tsslbp's kernels against its torch path (float64): outputs and the current's gradient, for both revisions
    of dt/du. float32 only, as the kernel rounds the PSP that decides the silent-neuron fallback to the storage
    dtype."""
    check_op(_gpu_case(at_spikes), steps, torch.float32)


@pytest.mark.parametrize("at_spikes", [True, False])
def test_harness_matches_torch_path(emulate_cupy, at_spikes):
    """The GPU test's checks on the CPU, the kernels in the CPU harness (333 steps: six segments across blocks)."""
    emulate_cupy(workers=2, seed=1)
    check_op(_gpu_case(at_spikes), 333, torch.float32, device="cpu")
