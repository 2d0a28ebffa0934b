"""Test support: an op's CuPy kernels on a GPU against its torch path in float64 (the ``cuda`` backend of the op tests).

Every op runs with ``backend="cupy"`` in float32, float16 and bfloat16 on non-contiguous inputs, against the
op's torch path in float64 on the same (rounded) inputs: forward outputs and every gradient, within a
tolerance per dtype.

Spikes. The kernels decide spikes in float32, the reference in float64, so a spike may differ where the
reference's argument of the spike function lies within :data:`TIE` of a jump (a near-tie). Every first
difference in a lane must be such a near-tie; for ops whose spikes feed back into the state (a reset) that
lane is then left out of the value comparison and gets no upstream gradient, and at most a quarter of the
lanes may be left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
import torch

from snn_parallel.surrogate import Surrogate

from .checks import discontinuities

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
IDS = ["f32", "f16", "bf16"]
#: (values, gradients): allowed max |cupy - reference| relative to max |reference|
TOL = {torch.float32: (1e-4, 1e-3), torch.float16: (3e-3, 1e-2), torch.bfloat16: (2e-2, 6e-2)}
#: spike-function arguments closer than this to a jump may fire differently in float32 and float64
TIE = 1e-3
STEPS = [1, 333, 4096]
LONG = 65_536
B, C = 2, 8


def require_cuda() -> torch.device:
    """The CUDA device, or skip the test (no device, or no CuPy)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    pytest.importorskip("cupy", reason="CuPy not installed (pip install snn-parallel[cuda12] or [cuda13])")
    return torch.device("cuda")


def sequence(
    steps: int,
    *shape: int,
    dtype: torch.dtype,
    low: float = 0.0,
    high: float = 1.0,
    device: torch.device | str = "cuda",
) -> torch.Tensor:
    """Uniform values in ``[low, high)``, rounded to ``dtype``, as a non-contiguous ``[T, B, C]`` leaf."""
    base = torch.empty(steps, shape[1], shape[0], device=device).uniform_(low, high).to(dtype)
    return base.transpose(1, 2)


@dataclass
class OpCase:
    """One op: ``inputs(T, dtype, device)`` builds the differentiable inputs, ``run(backend, *inputs)`` returns
    its outputs (spikes first; those without a gradient get no upstream one), ``spike_arg(inputs, outputs)``
    the reference's spike-function argument."""

    run: Callable[..., tuple[torch.Tensor, ...]]
    inputs: Callable[[int, torch.dtype, torch.device], list[torch.Tensor]]
    spike_fn: Surrogate | None = None
    spike_arg: Callable[[list[torch.Tensor], tuple[torch.Tensor, ...]], torch.Tensor] | None = None
    feedback: bool = False  # spikes feed back into the state
    lanes: tuple[int, int] = (B, C)  # the (B, C) its inputs have


def _wide(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.complex128 if t.is_complex() else torch.float64).requires_grad_()


def _near_jump(arg: torch.Tensor, spike_fn: Surrogate) -> torch.Tensor:
    return torch.stack([(arg - p).abs() for p in discontinuities(spike_fn)]).amin(0) < TIE


def _left_out_lanes(case: OpCase, got: tuple, ref: tuple, ref_inputs: list) -> torch.Tensor:
    """Lanes ``[B*C]`` to leave out (see the module doc), after checking that every spike difference
    starts at a near-tie."""
    steps = ref[0].shape[0]
    lanes = torch.zeros(ref[0][0].numel(), dtype=torch.bool, device=ref[0].device)
    if case.spike_fn is None:
        return lanes
    differ = (got[0].double() != ref[0]).reshape(steps, -1)
    near = _near_jump(case.spike_arg(ref_inputs, ref).detach(), case.spike_fn).reshape(steps, -1)
    if case.feedback:
        first = differ.int().argmax(0)
        lanes = differ.any(0)
        assert near[first, torch.arange(lanes.numel(), device=lanes.device)][lanes].all(), (
            "a spike differs away from a tie"
        )
        assert lanes.float().mean() <= 0.25, f"{int(lanes.sum())} of {lanes.numel()} lanes hit a near-tie"
    else:
        assert near[differ].all(), "a spike differs away from a tie"
    return lanes


def _assert_close(got: torch.Tensor, ref: torch.Tensor, tol: float, what: str) -> None:
    error = (got.to(ref.dtype) - ref).abs().max().item() if ref.numel() else 0.0
    scale = ref.abs().max().item() if ref.numel() else 0.0
    assert error <= tol * max(scale, 1e-3), f"{what}: max error {error:.3g} vs max |reference| {scale:.3g} (tol {tol})"


def check_op(case: OpCase, steps: int, dtype: torch.dtype, device: torch.device | str = "cuda") -> None:
    """``case`` with the kernels in ``dtype`` against its torch path in float64 (see the module doc), on a GPU (or on
    the CPU, with the kernels in the CPU harness behind ``backend='cupy'``)."""
    if torch.device(device).type == "cuda":
        require_cuda()
    torch.manual_seed(steps)
    inputs = [t.requires_grad_() for t in case.inputs(steps, dtype, torch.device(device))]
    ref_inputs = [_wide(t) for t in inputs]
    got = case.run("cupy", *inputs)
    ref = case.run("torch", *ref_inputs)
    left_out = _left_out_lanes(case, got, ref, ref_inputs)
    keep = (~left_out).view(case.lanes)
    values, grad_tol = TOL[dtype]
    for i, (g, r) in enumerate(zip(got, ref, strict=True)):
        if i > 0 or case.spike_fn is None:  # spikes were checked above
            mask = keep.expand_as(r)
            _assert_close(g.detach()[mask], r.detach()[mask], values, f"output {i}")
    differentiable = [(g, r) for g, r in zip(got, ref, strict=True) if g.requires_grad]
    weights = [torch.randn(g.shape, dtype=g.dtype, device=g.device) * keep.expand(g.shape) for g, _ in differentiable]
    got_grads = torch.autograd.grad([g for g, _ in differentiable], inputs, weights)
    ref_grads = torch.autograd.grad([r for _, r in differentiable], ref_inputs, [_wide(w).detach() for w in weights])
    for i, (g, r) in enumerate(zip(got_grads, ref_grads, strict=True)):
        assert g.dtype == inputs[i].dtype and g.shape == inputs[i].shape
        _assert_close(g, r, grad_tol, f"grad of input {i}")


def cuda_tests(make_case: Callable[[str], OpCase], names: Sequence[str]):
    """The two tests of an op's kernels on a GPU (marked ``gpu``): every case in :data:`DTYPES` at :data:`STEPS`, and
    in float32 and bfloat16 at :data:`LONG` steps; ``make_case(name)`` builds the case ``name``. Assign them to
    module-level ``test_*`` names."""

    @pytest.mark.gpu
    @pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
    @pytest.mark.parametrize("steps", STEPS)
    @pytest.mark.parametrize("name", names)
    def test_cuda_matches_torch_path(name, steps, dtype):
        check_op(make_case(name), steps, dtype)

    @pytest.mark.gpu
    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
    @pytest.mark.parametrize("name", names)
    def test_cuda_matches_torch_path_at_65536_steps(name, dtype):
        check_op(make_case(name), LONG, dtype)

    return test_cuda_matches_torch_path, test_cuda_matches_torch_path_at_65536_steps


def harness_test(make_case: Callable[[str], OpCase], names: Sequence[str]):
    """The GPU test's checks on the CPU, the kernels in the CPU harness in all three dtypes (T = 1 and 333): the op
    test module's ``emulate_cupy`` fixture redirects ``backend='cupy'``. Assign it to a module-level ``test_*`` name."""

    @pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
    @pytest.mark.parametrize("steps", STEPS[:2])
    @pytest.mark.parametrize("name", names)
    def test_harness_matches_torch_path_in_every_dtype(emulate_cupy, name, steps, dtype):
        emulate_cupy(workers=2, seed=steps)
        check_op(make_case(name), steps, dtype, device="cpu")

    return test_harness_matches_torch_path_in_every_dtype
