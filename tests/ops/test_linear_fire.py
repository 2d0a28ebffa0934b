"""``linear_fire`` (PRF, the decoupled LIF): the torch path, the kernels in the CPU harness and (marked ``gpu``)
on a GPU, against the step-by-step reference."""

from __future__ import annotations

import importlib
import math
from functools import partial

import pytest
import torch
from kernel_harness.checks import (
    F64,
    SURROGATES,
    assert_float32_matches,
    assert_same_grads,
    clear_of,
    compare,
    grads,
    leaves,
)
from kernel_harness.gpu import B, C, OpCase, check_op, cuda_tests, harness_test, sequence
from torch.autograd import gradcheck

from snn_parallel.ops import _cuda, linear_fire, linear_fire_reference, soft_reset_lif_reference
from snn_parallel.surrogate import ATan

#: the threshold bias's forms: name -> (a reset, the delayed reset's undecayed step)
FORMS = {"no_reset": (False, False), "reset": (True, False), "delayed_reset": (True, True)}


# ---- the torch path ---------------------------------------------------------------------------------
def fire_inputs(steps, complex_decay):
    decay = torch.rand(3, dtype=F64)
    if complex_decay:
        decay = decay * torch.exp(1j * torch.rand(3, dtype=F64) * 2)
    return (
        torch.randn(steps, 2, 3, dtype=F64, requires_grad=True),
        decay.requires_grad_(),
        torch.rand(3, dtype=F64, requires_grad=True),
        torch.randn(2, 3, dtype=decay.dtype, requires_grad=True),
    )


@pytest.mark.parametrize("block", [1 << 16, 6, 1])
@pytest.mark.parametrize("steps", [1, 2, 7, 30])
@pytest.mark.parametrize("complex_decay", [False, True])
@pytest.mark.parametrize("form", FORMS)
def test_linear_fire_matches_reference(block, steps, complex_decay, form, small_blocks):
    small_blocks(block)
    reset, delayed = FORMS[form]
    inputs = fire_inputs(steps, complex_decay)
    bias0 = torch.rand(2, 3, dtype=F64)
    rho = torch.rand(3, dtype=F64) if reset else None
    out = linear_fire(*inputs, bias0, ATan(), 0.5, rho, delayed_reset=delayed)
    ref = linear_fire_reference(*inputs, bias0, ATan(), 0.5, rho, delayed_reset=delayed)
    for o, r in zip(out, ref, strict=True):
        torch.testing.assert_close(o, r)
    assert_same_grads(out[:3], ref[:3], inputs)


@pytest.mark.parametrize("block", [1 << 16, 6])
@pytest.mark.parametrize("steps", [1, 5, 11])
@pytest.mark.parametrize("complex_decay", [False, True])
def test_linear_fire_gradcheck(block, steps, complex_decay, small_blocks, smooth):
    small_blocks(block)
    bias0 = torch.zeros(2, 3, dtype=F64)
    assert gradcheck(lambda *a: linear_fire(*a, bias0, smooth, 0.5)[:3], fire_inputs(steps, complex_decay))


def test_gradcheck_through_the_threshold_bias(small_blocks):
    """float64 finite differences of the membrane, the filter's and the bias's last values with respect to every
    input (``reset_decay``, ``bias0`` and the threshold included), in both reset forms: with the Heaviside forward
    and membranes clear of the threshold the spikes do not move, so the detached spikes are exact here."""
    small_blocks(6)
    for delayed in (False, True):
        for _ in range(20):
            inputs = fire_inputs(11, True)
            extra = (
                torch.rand(2, 3, dtype=F64, requires_grad=True),  # bias0
                (0.3 + 0.6 * torch.rand(3, dtype=F64)).requires_grad_(),  # reset_decay
                (0.2 + 0.4 * torch.rand(3, dtype=F64)).requires_grad_(),  # v_threshold
            )
            with torch.no_grad():
                spikes, m, _, _ = linear_fire(*inputs, extra[0], ATan(), extra[2], extra[1], delayed_reset=delayed)
            if clear_of(m - extra[2], ATan(), margin=1e-3) and spikes.sum() > 3:
                break
        else:
            raise RuntimeError("could not draw membranes clear of the threshold")

        def fire(x, decay, scale, h0, bias0, rho, threshold, delayed=delayed):
            return linear_fire(x, decay, scale, h0, bias0, ATan(), threshold, rho, delayed_reset=delayed)[1:]

        assert gradcheck(fire, (*inputs, *extra))


@pytest.mark.parametrize("delayed", [False, True], ids=["reset", "delayed_reset"])
@pytest.mark.parametrize("inclusive", [True, False])
def test_decoupled_reset_spikes_equal_sequential_soft_reset_lif(inclusive, delayed):
    """The PRF paper's decoupled reset: bit-identical spikes over 2 000 steps (and, delayed, those of the LIF whose
    reset is subtracted one step later, undecayed)."""
    steps, beta = 2000, torch.tensor([0.5, 0.8, 0.95], dtype=F64)
    current = torch.rand(steps, 4, 3, dtype=F64) * 0.9
    surrogate = ATan(inclusive=inclusive)
    zeros = torch.zeros(4, 3, dtype=F64)
    spikes, membrane, _, _ = linear_fire(
        current, beta, torch.ones(3, dtype=F64), zeros, zeros, surrogate, 1.0, beta, delayed_reset=delayed
    )
    ref_spikes, ref_membrane, _, _ = soft_reset_lif_reference(current, beta, 1.0, surrogate, delayed_reset=delayed)
    assert ref_spikes.sum() > 100
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(membrane, ref_membrane)


@pytest.mark.parametrize("delayed", [False, True], ids=["reset", "delayed_reset"])
def test_decoupled_reset_gradient_is_detached_reset_bptt(delayed):
    beta = torch.tensor([0.6, 0.9], dtype=F64)
    current = (torch.rand(40, 3, 2, dtype=F64) * 0.8).requires_grad_()
    zeros = torch.zeros(3, 2, dtype=F64)
    spikes, *_ = linear_fire(
        current, beta, torch.ones(2, dtype=F64), zeros, zeros, ATan(), 1.0, beta, delayed_reset=delayed
    )
    ref_spikes, *_ = soft_reset_lif_reference(current, beta, 1.0, ATan(), delayed_reset=delayed)
    weights = torch.randn_like(spikes)
    (g,) = torch.autograd.grad((spikes * weights).sum(), current)
    (r,) = torch.autograd.grad((ref_spikes * weights).sum(), current)
    torch.testing.assert_close(g, r)


@pytest.mark.parametrize("steps", [1, 40])
def test_float32_gradients(steps):
    """In float32 the op gives the float64 reference's values and gradients."""
    zeros = torch.zeros(2, 3, dtype=F64)
    assert_float32_matches(
        lambda *a: linear_fire(*a, zeros.float(), ATan(), 0.5)[:3],
        lambda *a: linear_fire_reference(*a, zeros, ATan(), 0.5)[:3],
        fire_inputs(steps, True),
    )


def test_bad_arguments_name_the_argument():
    x, decay, scale, h0 = (t.detach() for t in fire_inputs(5, True))
    zeros = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(TypeError, match="h0 must be complex"):
        linear_fire(x, decay, scale, zeros, zeros, ATan(), 1.0)
    with pytest.raises(ValueError, match="bias0 has shape"):
        linear_fire(x, decay, scale, h0, zeros[0], ATan(), 1.0)
    with pytest.raises(ValueError, match="scale with shape"):
        linear_fire(x, decay, torch.ones(4, dtype=F64), h0, zeros, ATan(), 1.0)
    with pytest.raises(ValueError, match="decay is on meta"):
        linear_fire(x, decay.to("meta"), scale, h0, zeros, ATan(), 1.0)
    with pytest.raises(TypeError, match="x must have dtype"):
        linear_fire(x.long(), decay, scale, h0, zeros, ATan(), 1.0)
    with pytest.raises(TypeError, match="delayed_reset must be a bool"):
        linear_fire(x, decay, scale, h0, zeros.to(h0.dtype).real, ATan(), 1.0, decay.abs(), delayed_reset=1)


# ---- a threshold per channel or lane, with its gradient ------------------------------------------------
@pytest.mark.parametrize("block", [1 << 16, 6, 1])
@pytest.mark.parametrize("steps", [1, 7, 30])
@pytest.mark.parametrize("complex_decay", [False, True])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("threshold_shape", [(3,), (2, 3)], ids=["channel", "lane"])
def test_threshold_tensor_matches_reference(block, steps, complex_decay, form, threshold_shape, small_blocks):
    """A threshold tensor requiring a gradient: every output and the gradients of every input, the threshold's
    included, are the step-by-step reference's."""
    small_blocks(block)
    reset, delayed = FORMS[form]
    inputs = fire_inputs(steps, complex_decay)
    bias0 = torch.rand(2, 3, dtype=F64, requires_grad=True)
    threshold = (0.2 + 0.6 * torch.rand(threshold_shape, dtype=F64)).requires_grad_()
    rho = torch.rand(3, dtype=F64, requires_grad=True) if reset else None
    out = linear_fire(*inputs, bias0, ATan(), threshold, rho, delayed_reset=delayed)
    ref = linear_fire_reference(*inputs, bias0, ATan(), threshold, rho, delayed_reset=delayed)
    for o, r in zip(out, ref, strict=True):
        torch.testing.assert_close(o, r)
    with_grads = [*inputs, bias0, threshold, *([rho] if reset else [])]
    assert_same_grads(out if reset else out[:3], ref if reset else ref[:3], with_grads)


def test_threshold_tensor_gradcheck(smooth):
    """(Without a reset: with one, the spikes detached in the bias make the analytic gradient differ from finite
    differences by design.)"""
    inputs = fire_inputs(6, True)
    bias0 = torch.zeros(2, 3, dtype=F64)
    threshold = (0.2 + 0.6 * torch.rand(3, dtype=F64)).requires_grad_()
    assert gradcheck(lambda *a: linear_fire(*a[:4], bias0, smooth, a[4])[:3], (*inputs, threshold))


@pytest.mark.parametrize("delayed", [False, True], ids=["reset", "delayed_reset"])
def test_learned_threshold_is_the_soft_reset_lifs_subtracted_threshold(delayed):
    """The decoupled reset with a per-channel threshold that requires a gradient is the sequential soft-reset LIF
    whose reset subtracts that threshold (spikes detached, the threshold not: snnTorch's ``learn_threshold``):
    the same spikes, membranes and gradients of the input and the threshold, in both reset forms."""
    beta = torch.tensor([0.5, 0.8, 0.95], dtype=F64)
    current = (torch.rand(300, 4, 3, dtype=F64) * 0.9).requires_grad_()
    threshold = torch.tensor([0.6, 1.0, 1.7], dtype=F64, requires_grad=True)
    zeros = torch.zeros(4, 3, dtype=F64)
    spikes, membrane, _, _ = linear_fire(
        current, beta, torch.ones(3, dtype=F64), zeros, zeros, ATan(), threshold, beta, delayed_reset=delayed
    )
    ref_spikes, ref_membrane, _, _ = soft_reset_lif_reference(current, beta, threshold, ATan(), delayed_reset=delayed)
    assert ref_spikes.sum(0).gt(20).all()  # every channel fires
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(membrane, ref_membrane)
    weights = torch.randn_like(spikes), torch.randn_like(spikes)
    got = torch.autograd.grad((spikes * weights[0] + membrane * weights[1]).sum(), (current, threshold))
    ref = torch.autograd.grad((ref_spikes * weights[0] + ref_membrane * weights[1]).sum(), (current, threshold))
    assert ref[1].abs().min() > 1e-3
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r)


def test_a_bad_threshold_tensor_is_named():
    x, decay, scale, h0 = (t.detach() for t in fire_inputs(5, True))
    zeros = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"v_threshold with shape \(4,\) does not broadcast"):
        linear_fire(x, decay, scale, h0, zeros, ATan(), torch.ones(4, dtype=F64))
    with pytest.raises(ValueError, match="v_threshold contains NaN"):
        linear_fire(x, decay, scale, h0, zeros, ATan(), torch.tensor([1.0, math.nan, 1.0], dtype=F64))
    with pytest.raises(TypeError, match="v_threshold must have dtype"):
        linear_fire(x, decay, scale, h0, zeros, ATan(), torch.ones(3, dtype=torch.long))
    with pytest.raises(TypeError, match="v_threshold must have dtype"):
        linear_fire(x, decay, scale, h0, zeros, ATan(), torch.ones(3, dtype=torch.complex128))
    with pytest.raises(ValueError, match="v_threshold is on meta"):
        linear_fire(x, decay, scale, h0, zeros, ATan(), torch.ones(3, device="meta"))
    with pytest.raises(ValueError, match="v_threshold"):
        linear_fire(x, decay, scale, h0, zeros, ATan(), math.nan)


# ---- the op on each backend, in float32 against the float64 reference ---------------------------------
def fire_case(T, shape, complex_, reset, spike_fn, seed, v_threshold=0.5, delayed=False):
    """float32 inputs of linear_fire whose float64 membranes stay clear of the spike function's jumps."""
    C = shape[1]
    for attempt in range(100):
        gen = torch.Generator().manual_seed(seed * 100 + attempt)
        decay = 0.5 + 0.45 * torch.rand(C, 1, 1, generator=gen)[:C, :, :].reshape(C, *[1] * (len(shape) - 2))
        h0 = torch.randn(shape, generator=gen)
        if complex_:
            decay = decay * torch.exp(1j * 2 * torch.rand(decay.shape, generator=gen))
            h0 = torch.complex(h0, torch.randn(shape, generator=gen))
        inputs = (
            torch.randn(T, *shape, generator=gen),
            decay,
            0.5 + torch.rand(decay.shape, generator=gen),
            h0,
            0.3 * torch.rand(shape, generator=gen),
        )
        rho = 0.3 + 0.6 * torch.rand(decay.shape, generator=gen) if reset else None
        with torch.no_grad():
            wide = [t.to(torch.complex128 if t.is_complex() else torch.float64) for t in inputs]
            rho64 = None if rho is None else rho.double()
            _, m, _, _ = linear_fire_reference(*wide, spike_fn, v_threshold, rho64, delayed_reset=delayed)
        if clear_of(m - v_threshold, spike_fn):
            return inputs, rho
    raise RuntimeError("could not draw linear_fire inputs away from the threshold")


FIRE_SHAPES = [(3, 5), (2, 3, 2)]


@pytest.mark.parametrize("spike_name", ["atan", "rect", "multi_gaussian"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("shape", FIRE_SHAPES, ids=["BxC", "BxCxS"])
@pytest.mark.parametrize("T", [1, 2, 31, 32, 33, 97])
def test_op_matches_reference_on_each_backend(backend, T, shape, complex_, form, spike_name):
    """Spikes, membrane, final state, bias and the gradients of x, decay, scale and h0 (T around the checkpoint
    chunk)."""
    name, device = backend
    reset, delayed = FORMS[form]
    spike_fn = SURROGATES[spike_name](inclusive=T % 2 == 0)
    inputs, rho = fire_case(T, shape, complex_, reset, spike_fn, seed=T + len(shape), delayed=delayed)
    bias0 = inputs[4].to(device)
    got_in = leaves(*inputs[:4], device=device)
    ref_in = leaves(*inputs[:4], dtype=torch.float64)
    got = linear_fire(
        *got_in, bias0, spike_fn, 0.5, None if rho is None else rho.to(device), delayed_reset=delayed, backend=name
    )
    ref = linear_fire_reference(
        *ref_in, bias0.cpu().double(), spike_fn, 0.5, None if rho is None else rho.double(), delayed_reset=delayed
    )
    assert torch.equal(got[0].cpu(), ref[0].float()), "spikes differ"
    assert got[2].dtype == (torch.complex64 if complex_ else torch.float32) and got[3].dtype == torch.float32
    compare(got, ref, ("spikes", "membrane", "h_last", "bias_next"))
    names = ("grad x", "grad decay", "grad scale", "grad h0")
    compare(grads(got[:3], got_in), grads(ref[:3], ref_in), names, rtol=1e-4)


def test_cupy_path_any_grid_and_non_contiguous_input(emulate_cupy):
    """Grid-stride loops: one block of 3 threads gives the results of a full grid; a transposed input works."""
    inputs, rho = fire_case(40, (4, 3), True, True, ATan(), seed=1)
    x = inputs[0].transpose(1, 2).contiguous().transpose(1, 2)  # same values, non-contiguous
    assert not x.is_contiguous()
    results = []
    for grid, block in ((None, 256), (1, 3)):
        emulate_cupy(grid=grid, block=block)
        got_in = leaves(x, *inputs[1:4])
        out = linear_fire(*got_in, inputs[4], ATan(), 0.5, rho, backend="cupy")
        results.append((*out, *grads(out[:3], got_in)))
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


@pytest.mark.slow  # builds the mutated kernels
def test_check_bites_on_mutated_kernel(emulate_cupy, mutants):
    """A backward that carries the filter gradient with a instead of conj(a) is caught (complex filters only)."""
    emulate_cupy(mutants["the backward carried with a, not conj(a)"])
    for complex_ in (False, True):
        inputs, rho = fire_case(20, (2, 3), complex_, False, ATan(), seed=2)
        got_in = leaves(*inputs[:4])
        ref_in = leaves(*inputs[:4], dtype=torch.float64)
        got = linear_fire(*got_in, inputs[4], ATan(), 0.5, rho, backend="cupy")
        ref = linear_fire_reference(*ref_in, inputs[4].double(), ATan(), 0.5, rho)
        compare(got, ref, ("spikes", "membrane", "h_last", "bias_next"))  # forward unaffected

        def check() -> None:
            compare(grads(got[:3], got_in), grads(ref[:3], ref_in), ("x", "decay", "scale", "h0"), rtol=1e-4)

        if complex_:
            with pytest.raises(AssertionError):
                check()
        else:
            check()


# ---- the gradients of the threshold bias's inputs (the reset's decay, the initial bias) and of the threshold ----
#: a threshold per channel of the (2, 3, 2) lanes of the cases below
THRESHOLD = torch.tensor([0.4, 0.5, 0.65]).view(3, 1)


def bias_gradients(run, inputs, rho, weights, dtype, threshold=THRESHOLD):
    """Gradients of a weighting of every output (``bias_next`` included) with respect to ``(x, decay, scale, h0,
    bias0, reset_decay, threshold)``, the last three requiring a gradient (``reset_decay`` where it is given), in
    ``dtype``."""
    cast = {torch.float64: (torch.float64, torch.complex128), torch.float32: (torch.float32, torch.complex64)}[dtype]
    leaves_in = [
        None if t is None else t.detach().to(cast[t.is_complex()]).requires_grad_() for t in (*inputs, rho, threshold)
    ]
    out = run(*leaves_in)
    loss = sum(
        ((o.real if o.is_complex() else o) * w.to(o.device, cast[0])).sum() for o, w in zip(out, weights, strict=True)
    )
    return torch.autograd.grad(loss, [t for t in leaves_in if t is not None])


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("T", [1, 40, 200])
@pytest.mark.parametrize("form", FORMS)
def test_threshold_and_bias_gradients_on_each_backend(backend, T, complex_, form):
    """With ``bias0``, ``reset_decay`` and a per-channel threshold requiring a gradient, every backend gives the
    gradients of the step-by-step reference's autograd (spikes detached in the bias): through b into rho, b_0 and
    the threshold, through the spikes' argument into the threshold, and from bias_next."""
    name, device = backend
    reset, delayed = FORMS[form]
    inputs, rho, _ = kernel_inputs(
        T, (2, 3, 2), complex_, reset, ATan(), seed=T + 5, v_threshold=THRESHOLD, delayed=delayed
    )
    gen = torch.Generator().manual_seed(T)
    weights = [
        torch.randn(T, 2, 3, 2, generator=gen),
        torch.randn(T, 2, 3, 2, generator=gen),
        torch.randn(2, 3, 2, generator=gen),
        torch.randn(2, 3, 2, generator=gen),
    ]

    def run(x, decay, scale, h0, bias0, reset_decay, threshold):
        args = [None if t is None else t.to(device) for t in (x, decay, scale, h0, bias0, reset_decay, threshold)]
        return linear_fire(*args[:5], ATan(), args[6], args[5], delayed_reset=delayed, backend=name)

    reference = partial(reference_run, delayed=delayed)
    got = bias_gradients(run, inputs, rho, weights, torch.float32)
    exact = bias_gradients(reference, inputs, rho, weights, torch.float64)
    serial32 = bias_gradients(reference, inputs, rho, weights, torch.float32)
    assert exact[-1].abs().max() > 0.1  # the threshold gets a real gradient
    if reset:
        assert exact[5].abs().max() > 0.1  # and so does the reset's decay
    labels = ("x", "decay", "scale", "h0", "bias0", *(["reset_decay"] if reset else []), "threshold")
    for label, g, e, s in zip(labels, got, exact, serial32, strict=True):
        tol = 8 * (s.to(e.dtype) - e).abs().max().item() + 2e-6 * e.abs().max().item() + 1e-7
        assert (g.cpu().to(e.dtype) - e).abs().max().item() <= tol, label


def test_detached_reset_decay_gets_no_gradient_and_leaves_the_rest_alone():
    """Detaching ``reset_decay`` (BPTT with the reset fully detached) changes none of the other gradients."""
    inputs, rho, _ = kernel_inputs(60, (2, 3), True, True, ATan(), seed=8)
    x, decay = (t.clone().requires_grad_() for t in inputs[:2])
    out = linear_fire(x, decay, *inputs[2:], ATan(), 0.5, rho.clone().requires_grad_())
    detached = linear_fire(x, decay, *inputs[2:], ATan(), 0.5, rho)
    for a, b in zip(out, detached, strict=True):
        torch.testing.assert_close(a, b)
    grad = torch.autograd.grad(detached[0].sum(), x, retain_graph=True)[0]
    assert torch.equal(torch.autograd.grad(out[0].sum(), x)[0], grad)
    assert torch.autograd.grad(detached[3].sum(), x, allow_unused=True, materialize_grads=True)[0].eq(0).all()


# ---- PRF with a reset: the official gradient ---------------------------------------------------------------
def official_prf_reset(x, log_dt, theta_log, rate, v_threshold):
    """Spikes of the PRF paper's ``PRFNeuronReset``, written from its published update order (float64): the
    complex filter z_t = A z_{t-1} + dt x_t with A = exp(dt (-rate + i theta)) (rate = 1/tau), its real part u_t,
    and the
    dynamic threshold v_t of ``scan_dynamic_threshold``: v_0 = V, fire_t = [u_t >= v_t] without gradient,
    bias <- (bias + V fire_t) Re(A), v_{t+1} = V + bias; spikes = ATan surrogate of u_t - v_t."""
    dt, theta = log_dt.exp(), theta_log.exp()
    decay = torch.exp(dt * torch.complex(-rate * torch.ones_like(dt), theta))
    z = torch.zeros(x.shape[1:], dtype=decay.dtype)
    bias = torch.zeros(x.shape[1:], dtype=x.dtype)
    spikes = []
    for x_t in x.unbind(0):
        z = decay * z + dt * x_t
        u, threshold = z.real, v_threshold + bias
        spikes.append(ATan()(u - threshold))
        fire = torch.where(u >= threshold, 1.0, 0.0).detach()
        bias = (bias + v_threshold * fire) * decay.real
    return torch.stack(spikes)


def _prf_reset_case(seed):
    """A PRF with a reset and inputs whose float64 membranes stay clear of the threshold."""
    import snn_parallel as sp

    for attempt in range(50):
        torch.manual_seed(seed * 50 + attempt)
        neuron = sp.PRF(4, reset=True, dt_range=(0.3, 0.9), tau=2.0, surrogate=ATan()).double()
        x = torch.rand(60, 3, 4, dtype=torch.float64) * 2
        with torch.no_grad():
            _, membrane, _ = neuron.update_sequence(x, neuron.init_state(x[0]))
        if clear_of(membrane - neuron.v_threshold, ATan(), margin=1e-4):
            return neuron, x
    raise RuntimeError("could not draw PRF inputs away from the threshold")


@pytest.mark.parametrize("path", ["forward", "step"])
def test_prf_reset_gradient_follows_the_official_update_order(backend, path):
    """PRF(reset=True) by default gives the official code's gradients: through the threshold bias's decay
    Re(A) into log_dt and theta_log (with the spikes detached in the bias); reset_gradient="detached" gives the
    same spikes and input gradient but not those parameter gradients (the earlier behaviour)."""
    name, device = backend
    if path == "step" and name != "torch":
        pytest.skip("the step loop runs on the torch path")
    neuron, x = _prf_reset_case(seed=1)
    assert neuron.reset_gradient == "official"  # the default
    weights = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    leaves_official = [
        x.clone().requires_grad_(),
        neuron.log_dt.detach().clone().requires_grad_(),
        neuron.theta_log.detach().clone().requires_grad_(),
    ]
    rate = neuron.decay_log.exp()  # 1/tau, as the neuron stores it
    official = official_prf_reset(*leaves_official, rate, neuron.v_threshold)
    expected = torch.autograd.grad((official * weights).sum(), leaves_official)
    dtype = torch.float64 if name == "torch" else torch.float32
    results = {}
    for mode in ("official", "detached"):
        ours = neuron.__class__(4, reset=True, tau=2.0, surrogate=ATan(), reset_gradient=mode, backend=name)
        ours.load_state_dict(neuron.state_dict())
        ours = ours.to(device=device, dtype=dtype)
        xs = x.to(device=device, dtype=dtype).requires_grad_()
        if path == "step":
            state, spikes = None, []
            for x_t in xs.unbind(0):
                spike, state = ours.step(x_t, state)
                spikes.append(spike)
            spikes = torch.stack(spikes)
        else:
            spikes, _ = ours(xs)
        assert torch.equal(spikes.detach().cpu().double(), official.detach()), "spikes differ"
        results[mode] = torch.autograd.grad(
            (spikes * weights.to(device, dtype)).sum(), [xs, ours.log_dt, ours.theta_log]
        )
    tol = {"rtol": 1e-9, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-4, "atol": 2e-5}
    for got, want in zip(results["official"], expected, strict=True):
        torch.testing.assert_close(got.cpu().double(), want, **tol)
    torch.testing.assert_close(results["detached"][0].cpu().double(), expected[0], **tol)
    for got, want in zip(results["detached"][1:], expected[1:], strict=True):
        assert (got.cpu().double() - want).abs().max() > 1e-3 * want.abs().max(), "the detached reset should differ"


# ---- the kernels in the CPU harness: every schedule, both shape classes ------------------------------------
def kernel_inputs(T, shape, complex_, reset, spike_fn, seed, layout="channel", v_threshold=0.5, delayed=False):
    """float32 inputs (``layout``: parameters per channel, per channel of a feature map, or per lane) whose float64
    membranes stay clear of the spike function's jumps, and gradients for every output."""
    if layout == "lane":
        for attempt in range(100):
            inputs, rho = fire_case(T, shape, complex_, reset, spike_fn, seed=seed * 7 + attempt, delayed=delayed)
            gen = torch.Generator().manual_seed(seed)
            per_lane = 0.8 + 0.19 * torch.rand(shape, generator=gen)
            decay = per_lane * (inputs[1] / inputs[1].abs()).expand(shape)
            candidate = (inputs[0], decay, inputs[2].expand(shape).clone(), *inputs[3:])
            rho = None if rho is None else rho.expand(shape).clone()
            with torch.no_grad():
                wide = [t.to(torch.complex128 if t.is_complex() else torch.float64) for t in candidate]
                rho64 = None if rho is None else rho.double()
                _, m, _, _ = linear_fire_reference(*wide, spike_fn, 0.5, rho64, delayed_reset=delayed)
            if clear_of(m - 0.5, spike_fn):
                inputs = candidate
                break
    else:
        inputs, rho = fire_case(
            T, shape, complex_, reset, spike_fn, seed=seed, v_threshold=v_threshold, delayed=delayed
        )
    gen = torch.Generator().manual_seed(seed + 1)
    grads_out = (
        torch.randn(T, *shape, generator=gen),
        torch.randn(T, *shape, generator=gen),
        torch.randn(shape, dtype=inputs[3].dtype, generator=gen),
    )
    return inputs, rho, grads_out


def fire_outputs(run, inputs, rho, grads_out, dtype):
    """``(spikes, membrane, h_last, bias_next, grad x, grad decay, grad scale, grad h0)`` of ``run`` on ``inputs``
    in ``dtype`` (float64 or float32)."""
    cast = {torch.float64: (torch.float64, torch.complex128), torch.float32: (torch.float32, torch.complex64)}[dtype]
    wide = [t.detach().to(cast[t.is_complex()]) for t in (*inputs, *grads_out)]
    leaves_in = [t.requires_grad_() for t in wide[:4]]
    out = run(*leaves_in, wide[4], None if rho is None else rho.to(dtype))
    grads = torch.autograd.grad(out[1:3], leaves_in, wide[6:8], retain_graph=True)
    grads = [g + s for g, s in zip(grads, torch.autograd.grad(out[0], leaves_in, wide[5]), strict=True)]
    return (*(o.detach() for o in out), *grads)


FIRE_NAMES = ("spikes", "membrane", "h_last", "bias_next", "grad x", "grad decay", "grad scale", "grad h0")


def assert_fire_within_serial_error(got, exact, serial32, what=""):
    assert torch.equal(got[0].cpu(), exact[0].float()), f"{what} spikes differ"
    for name, g, e, s in zip(FIRE_NAMES[1:], got[1:], exact[1:], serial32[1:], strict=True):
        scale = e.abs().max().item()
        tol = 8 * (s.to(e.dtype) - e).abs().max().item() + 2e-6 * scale + 1e-7
        error = (g.to(e.dtype) - e).abs().max().item()
        assert error <= tol, f"{what} {name}: error {error:.3g} > tolerance {tol:.3g} (size {scale:.3g})"


def cupy_run(**config):
    def run(x, decay, scale, h0, bias0, rho, threshold=0.5, delayed=False):
        return _run_cupy(x, decay, scale, h0, bias0, rho, threshold, delayed, **config)

    return run


def _run_cupy(x, decay, scale, h0, bias0, rho, threshold, delayed, filter_in_chain=None, per_block=None):
    """linear_fire(backend='cupy') with its launch configuration forced."""
    fire_module = importlib.import_module("snn_parallel.ops.linear_fire")
    fire_cupy = importlib.import_module("snn_parallel.ops.linear_fire.cupy")
    real_forward = fire_cupy.linear_fire_forward_cupy
    real_backward = fire_cupy.linear_fire_backward_cupy

    def forward(*args, **kwargs):
        return real_forward(*args, filter_in_chain=filter_in_chain, segments_per_block=per_block)

    def backward(*args, **kwargs):
        return real_backward(*args, segments_per_block=per_block)

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(fire_module._IMPLEMENTATIONS, "cupy", (forward, backward))
        return linear_fire(x, decay, scale, h0, bias0, ATan(), threshold, rho, delayed_reset=delayed, backend="cupy")


def reference_run(x, decay, scale, h0, bias0, rho, threshold=0.5, delayed=False):
    return linear_fire_reference(x, decay, scale, h0, bias0, ATan(), threshold, rho, delayed_reset=delayed)


FIRE_KERNEL_CASES = [  # (T, lane shape, parameter layout, segments per block: 1, 2, all (99), or the launcher's choice)
    (1, (1, 1), "channel", None),
    (37, (1, 5), "channel", 1),
    (64, (3, 11), "lane", 1),
    (65, (1, 33), "channel", 1),
    (130, (2, 3, 2), "channel", 2),
    (200, (5, 14), "lane", None),
    (300, (4, 10), "channel", 99),
    pytest.param(777, (1, 5), "channel", 1, marks=pytest.mark.slow),
]
#: name -> (a reset, the filter run in the threshold chain, the delayed reset)
RESETS = {
    "no_reset": (False, None, False),
    "reset_chunked_filter": (True, False, False),
    "reset_filter_in_chain": (True, True, False),
    "delayed_chunked_filter": (True, False, True),
    "delayed_filter_in_chain": (True, True, True),
}


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("T,shape,layout,per_block", FIRE_KERNEL_CASES)
def test_kernels_match_reference_in_every_schedule(emulate_cupy, harness, T, shape, layout, per_block, reset, complex_):
    """Forward and backward against the float64 reference (spikes exact, the rest within the serial float32
    loop's error); the same bits for every schedule; the look-back taken wherever blocks follow each other."""
    with_reset, in_chain, delayed = RESETS[reset]
    inputs, rho, grads_out = kernel_inputs(
        T, shape, complex_, with_reset, ATan(), seed=T + len(shape), layout=layout, delayed=delayed
    )
    reference = partial(reference_run, delayed=delayed)
    exact = fire_outputs(reference, inputs, rho, grads_out, torch.float64)
    serial32 = fire_outputs(reference, inputs, rho, grads_out, torch.float32)
    first = None
    for workers, seed in [(1, 0), (4, 1), (8, 2)]:
        emulate_cupy(workers=workers, seed=seed)
        harness.reset_counters()
        run = partial(cupy_run(filter_in_chain=in_chain, per_block=per_block), delayed=delayed)
        got = fire_outputs(run, inputs, rho, grads_out, torch.float32)
        assert_fire_within_serial_error(got, exact, serial32, what=f"{workers} workers, seed {seed}:")
        first = got if first is None else first
        for name, x, y in zip(FIRE_NAMES, got, first, strict=True):
            assert torch.equal(x, y), f"{name} depends on the schedule"
        lanes = math.prod(shape)
        groups = _cuda.chunking(T, lanes, 2, per_block)[1]
        assert (harness.counters()["lookback_inclusive"] > 0) == (groups > 1)


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("per_block", [1, 2])
def test_kernels_with_a_threshold_per_channel(emulate_cupy, per_block, reset, complex_):
    """A threshold per channel requiring a gradient, in both filter placements and across blocks: the outputs and
    every gradient (the threshold's included) of the float64 reference, within the serial float32 loop's error."""
    with_reset, in_chain, delayed = RESETS[reset]
    inputs, rho, grads_out = kernel_inputs(
        130, (2, 3, 2), complex_, with_reset, ATan(), seed=6, v_threshold=THRESHOLD, delayed=delayed
    )
    reference = partial(reference_run, threshold=THRESHOLD, delayed=delayed)
    emulate_cupy(workers=4, seed=3)
    run = partial(cupy_run(filter_in_chain=in_chain, per_block=per_block), delayed=delayed)
    assert_fire_within_serial_error(
        fire_outputs(partial(run, threshold=THRESHOLD), inputs, rho, grads_out, torch.float32),
        fire_outputs(reference, inputs, rho, grads_out, torch.float64),
        fire_outputs(reference, inputs, rho, grads_out, torch.float32),
    )
    weights = [grads_out[0], grads_out[1], torch.ones(2, 3, 2), torch.ones(2, 3, 2)]
    unbound = partial(reference_run, delayed=delayed)
    got, exact, serial32 = (
        bias_gradients(f, inputs, rho, weights, dtype)
        for f, dtype in ((run, torch.float32), (unbound, torch.float64), (unbound, torch.float32))
    )
    for g, e, s in zip(got, exact, serial32, strict=True):
        tol = 8 * (s.to(e.dtype) - e).abs().max().item() + 2e-6 * e.abs().max().item() + 1e-7
        assert (g.to(e.dtype) - e).abs().max().item() <= tol


@pytest.mark.parametrize("reset", ["no_reset", "reset_chunked_filter"])
def test_kernels_at_30000_steps(emulate_cupy, reset):
    """T = 30 000, B·C = 2 x 8, complex (PRF), 4 host threads, against the float64 torch path (tested against the
    step-by-step reference above): a spike may differ only at a near-tie of the float64 membrane (the lane is
    then left out with a reset, whose spikes feed back), the rest within 8x the float32 torch path's error."""
    with_reset, in_chain, _ = RESETS[reset]
    T, shape = 30_000, (2, 8)
    gen = torch.Generator().manual_seed(3)
    decay = (0.9 + 0.09 * torch.rand(8, generator=gen)) * torch.exp(1j * torch.rand(8, generator=gen))
    inputs = (
        torch.randn(T, *shape, generator=gen) * 0.5 + 0.2,
        decay,
        0.5 + torch.rand(8, generator=gen),
        torch.complex(torch.randn(shape, generator=gen), torch.zeros(shape)),
        torch.zeros(shape),
    )
    rho = 0.5 + 0.4 * torch.rand(8, generator=gen) if with_reset else None
    grads_out = (
        torch.randn(T, *shape, generator=gen),
        torch.randn(T, *shape, generator=gen),
        torch.randn(shape, dtype=torch.complex64, generator=gen),
    )

    def torch_run(x, decay, scale, h0, bias0, rho):
        return linear_fire(x, decay, scale, h0, bias0, ATan(), 0.5, rho, backend="torch")

    emulate_cupy(workers=4, seed=1)
    exact = fire_outputs(torch_run, inputs, rho, grads_out, torch.float64)
    with torch.no_grad():
        _, m64, _, _ = torch_run(
            *(t.to(torch.complex128 if t.is_complex() else torch.float64) for t in inputs),
            None if rho is None else rho.double(),
        )
    differ = (
        fire_outputs(cupy_run(filter_in_chain=in_chain, per_block=1), inputs, rho, grads_out, torch.float32)[0]
        != exact[0].float()
    )
    near = (m64 - 0.5).abs() < 1e-3
    first_diff = differ.flatten(1).int().argmax(0)
    out = differ.flatten(1).any(0)
    assert near.flatten(1)[first_diff, torch.arange(out.numel())][out].all(), "a spike differs away from a near-tie"
    keep = ~out.view(shape) if with_reset else torch.ones(shape, dtype=torch.bool)
    assert keep.float().mean() >= 0.75
    masked = [g * keep for g in grads_out[:2]] + [grads_out[2] * keep]
    exact = fire_outputs(torch_run, inputs, rho, masked, torch.float64)
    float32 = fire_outputs(torch_run, inputs, rho, masked, torch.float32)
    got = fire_outputs(cupy_run(filter_in_chain=in_chain, per_block=1), inputs, rho, masked, torch.float32)
    for name, g, e, s in zip(FIRE_NAMES[1:], got[1:], exact[1:], float32[1:], strict=True):
        if name in ("membrane", "h_last", "bias_next", "grad x", "grad h0"):
            g, e, s = (v[..., keep] if v.dim() == len(shape) + 1 else v[keep] for v in (g, e, s))
        tol = 8 * (s.to(e.dtype) - e).abs().max().item() + 2e-6 * e.abs().max().item() + 1e-7
        assert (g.to(e.dtype) - e).abs().max().item() <= tol, name


# mutants: (old, new) edits of linear_fire.cu or (header, old, new), each to fail the check below (built by conftest.py)
MUTANTS = {
    "the backward carried with a, not conj(a)": ("back = conjugate(a);", "back = a;"),
    "the backward's filter rerun without its checkpoint": (
        "filter_t h = affine(pre_d, checkpoints[k * N + n], pre_b);",
        "filter_t h = pre_b;",
    ),
    "the threshold bias raised after its decay": (
        "rho * (b + v_threshold * spike);",
        "rho * b + v_threshold * spike;",
    ),
    "the delayed reset's step decayed": (
        "delayed ? rho * b + v_threshold * spike :",
        "delayed ? rho * (b + v_threshold * spike) :",
    ),
    "the delayed reset's decay gradient with the spike's step": (
        "delayed ? real_part(h) - m :",
        "delayed ? real_part(h) - m + v_threshold * s.spike :",
    ),
    "the delayed threshold's reset gradient decayed": ("(delayed ? 1.0f : rho) * before", "rho * before"),
    "grad_last carried through a at the last step": (
        "if (t < T - 1) d.g = back;",
        "if (t <= T - 1) d.g = back;",
    ),
    "a checkpoint written at the wrong segment": (
        "checkpoints[k * N + n] = carry;",
        "checkpoints[(k > 0 ? k - 1 : 0) * N + n] = carry;",
    ),
    "the reset's decay gradient with beta_t, not beta_{t+1}": (
        "partial.rho += before.beta * steps[j].bias_step;",
        "partial.rho += after.beta * steps[j].bias_step;",
    ),
    "the threshold's reset gradient with beta_t, not beta_{t+1}": (
        "* before.beta * steps[j].spike - steps[j].e;",
        "* after.beta * steps[j].spike - steps[j].e;",
    ),
    "the threshold's gradient without its reset term": (
        "partial.threshold += (delayed ? 1.0f : rho) * before.beta * steps[j].spike - steps[j].e;",
        "partial.threshold -= steps[j].e;",
    ),
    "every lane reads the first threshold": ("threshold[p] :", "threshold[0] :"),
}


#: the mutants that touch one reset form only (the others, both): name -> the forms (delayed or not) they change
MUTANT_FORMS = {
    "the threshold bias raised after its decay": (False,),
    "the delayed reset's step decayed": (True,),
    "the delayed reset's decay gradient with the spike's step": (True,),
    "the delayed threshold's reset gradient decayed": (True,),
}


@pytest.mark.slow  # builds a mutated kernel per case
@pytest.mark.parametrize("delayed", [False, True], ids=["reset", "delayed_reset"])
def test_the_kernel_checks_bite(request, emulate_cupy, mutant, delayed):
    """Each mutant fails the comparison above for some case (complex, with a reset and a threshold per channel, both
    filter placements) in the reset's form it touches, and only there."""
    inputs, rho, grads_out = kernel_inputs(
        200, (2, 3, 2), True, True, ATan(), seed=4, v_threshold=THRESHOLD, delayed=delayed
    )
    reference = partial(reference_run, delayed=delayed)
    exact = fire_outputs(partial(reference, threshold=THRESHOLD), inputs, rho, grads_out, torch.float64)
    serial32 = fire_outputs(partial(reference, threshold=THRESHOLD), inputs, rho, grads_out, torch.float32)
    weights = [grads_out[0], grads_out[1], torch.ones(2, 3, 2), torch.ones(2, 3, 2)]
    bias_exact = bias_gradients(reference, inputs[:5], rho, weights, torch.float64)
    caught = []
    for in_chain in (False, True):
        emulate_cupy(mutant, workers=4, seed=1)
        run = partial(cupy_run(filter_in_chain=in_chain, per_block=1), delayed=delayed)
        try:
            got = fire_outputs(partial(run, threshold=THRESHOLD), inputs, rho, grads_out, torch.float32)
            assert_fire_within_serial_error(got, exact, serial32)
            for g, e in zip(bias_gradients(run, inputs[:5], rho, weights, torch.float32), bias_exact, strict=True):
                torch.testing.assert_close(g.to(e.dtype), e, rtol=1e-3, atol=1e-3 * e.abs().max().item())
        except AssertionError:
            caught.append(in_chain)
    if delayed in MUTANT_FORMS.get(request.node.callspec.params["mutant"], (False, True)):
        assert caught, "the mutant passed every case"
    else:
        assert not caught, "a mutant of the other reset form changed this one"


# ---- on a GPU, in three dtypes, against the float64 torch path ------------------------------------------
def _gpu_case(complex_: bool, reset: bool, delayed: bool = False, batch: int = B, channels: int = C) -> OpCase:
    spike_fn = ATan()

    def inputs(steps, dtype, device):
        decay = torch.linspace(0.6, 0.97, channels, device=device)
        h0 = torch.randn(batch, channels, device=device)
        if complex_:
            decay = decay * torch.exp(1j * torch.linspace(0.1, 1.5, channels, device=device))
            h0 = torch.complex(h0, torch.randn(batch, channels, device=device))
        scale = (torch.rand(channels, device=device) + 0.5).to(dtype).float()  # linear_fire casts scale to x's dtype
        return [sequence(steps, batch, channels, dtype=dtype, low=-0.5, high=1.5, device=device), decay, scale, h0]

    def run(backend, x, decay, scale, h0):
        bias0 = torch.zeros(batch, channels, device=x.device, dtype=scale.dtype)
        reset_decay = torch.linspace(0.5, 0.95, channels, device=x.device).to(scale.dtype) if reset else None
        return linear_fire(
            x, decay, scale, h0, bias0, spike_fn, 1.0, reset_decay, delayed_reset=delayed, backend=backend
        )[:3]

    return OpCase(run, inputs, spike_fn, lambda ins, outs: outs[1] - 1.0, feedback=reset, lanes=(batch, channels))


GPU_CASES = {"lif": (False, True), "lif_delayed": (False, True, True), "prf": (True, False), "prf_reset": (True, True)}


test_harness_matches_torch_path_in_every_dtype = harness_test(lambda name: _gpu_case(*GPU_CASES[name]), list(GPU_CASES))
test_cuda_matches_torch_path, test_cuda_matches_torch_path_at_65536_steps = cuda_tests(
    lambda name: _gpu_case(*GPU_CASES[name]), list(GPU_CASES)
)


@pytest.mark.gpu
@pytest.mark.parametrize("name", GPU_CASES)
def test_cuda_wide_layers(name):
    """B·C = 65 536 lanes: each block walks its lanes' whole sequence, and the reset's chain filters inline."""
    check_op(_gpu_case(*GPU_CASES[name], batch=128, channels=512), 300, torch.float32)
