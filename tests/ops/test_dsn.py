"""``dsn_membrane``: the torch path, the kernels in the CPU harness and (marked ``gpu``) on a GPU, against the
step-by-step reference."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

import kernel_harness
from kernel_harness.checks import F64, assert_float32_matches, assert_same_grads, clear_of, compare, grads, leaves
from kernel_harness.gpu import B, C, OpCase, cuda_tests, harness_test, sequence
from snn_parallel.ops import dsn_membrane, dsn_membrane_reference
from snn_parallel.ops.dsn.cupy import MAX_TAPS
from snn_parallel.surrogate import ATan, IntegerSpike, Sigmoid


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


def _reference_with_spikes(x, history, weight, bias, h0, spike_fn=ATan(), shift=1.0, tau=0.25):
    h, last = dsn_membrane_reference(x, history, weight, bias, tau, h0)
    return spike_fn(h - shift), h, last


@pytest.mark.parametrize("steps", [1, 40])
def test_float32_gradients(steps):
    """In float32 the op gives the float64 reference's values and gradients."""
    assert_float32_matches(
        lambda *a: dsn_membrane(*a[:4], 0.25, a[4], ATan(), 1.0), _reference_with_spikes, dsn_inputs(steps, 4)
    )


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


# ---- the op on each backend, in float32 against the float64 reference ---------------------------------
def dsn_case(T, taps, shape, spike_fn, shift, seed, tau=0.25):
    """float32 DSN inputs whose float64 membranes stay clear of the spike function's jumps."""
    C = shape[1]
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
        if clear_of(h - shift, spike_fn):
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
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_check_bites_on_mutated_kernel(tmp_path, emulate_cupy):
    """A backward whose direct input path uses alpha instead of 1 - alpha is caught; the forward is unaffected."""
    if kernel_harness.GXX is None:
        pytest.skip("g++ not on PATH")
    mutation = ("dsn.cu", "pending[j] += g * (-expm1f(log_a));", "pending[j] += g * expf(log_a);")
    emulate_cupy(kernel_harness.build(tmp_path, mutation=mutation, files=["dsn.cu"], strict=False))
    inputs = dsn_case(20, 4, (2, 3), ATan(), 1.0, seed=4)
    got_in, ref_in = leaves(*inputs), leaves(*inputs, dtype=torch.float64)
    got = dsn_membrane(*got_in[:4], 0.25, got_in[4], ATan(), 1.0, backend="cupy")
    ref = _reference_with_spikes(*ref_in)
    compare(got, ref, ("spikes", "h", "h_last"))
    with pytest.raises(AssertionError, match="grad x"):
        compare(grads(got, got_in), grads(ref, ref_in), ("grad x", "history", "weight", "bias", "h0"), rtol=1e-4)


def test_taps_beyond_the_kernel_fall_back_or_raise(emulate_cupy):
    inputs = dsn_case(5, MAX_TAPS + 1, (2, 3), ATan(), 1.0, seed=5)
    emulate_cupy()
    auto = dsn_membrane(*inputs[:4], 0.25, inputs[4], ATan(), 1.0, backend="auto")
    torch.testing.assert_close(auto[1], dsn_membrane(*inputs[:4], 0.25, inputs[4], ATan(), 1.0, backend="torch")[1])
    with pytest.raises(RuntimeError, match=r"dsn_membrane: backend='cupy' cannot run: weight has 9 taps"):
        dsn_membrane(*inputs[:4], 0.25, inputs[4], ATan(), 1.0, backend="cupy")


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
