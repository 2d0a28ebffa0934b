"""A per-channel and learned threshold (``v_threshold`` ``[C]``, ``learn_threshold=True``) in ``DecoupledLIF``,
``PRF`` and ``DynamicDecay``: against soft-reset LIF, resonate-and-fire and DSN loops written from the equations,
parallel == serial, carried state, lazy materialisation, state dicts, low precision and bad input."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from snn_parallel.neurons import PRF, DecoupledLIF, DynamicDecay
from snn_parallel.ops.dsn import dsn_membrane_reference
from snn_parallel.ops.linear_fire import linear_fire_reference, soft_reset_lif_reference
from snn_parallel.surrogate import ATan

F64 = torch.float64
THRESHOLDS = [0.6, 1.0, 1.7]


def _grads(outputs: tuple[torch.Tensor, ...], inputs: list[torch.Tensor], seed: int = 0) -> list[torch.Tensor]:
    """Gradients of a fixed random weighting of ``outputs`` (the same for every run)."""
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outputs)
    return list(torch.autograd.grad(loss, inputs))


def _prf_reference(x, neuron, v_threshold, reset):
    r"""PRF from its equations, one step at a time, in float64: :math:`h_t = A h_{t-1} + \Delta x_t`,
    :math:`s_t = f(\mathrm{Re}\,h_t - b_t - V_{th})`,
    :math:`b_{t+1} = \mathrm{Re}(A)(b_t + V_{th}\,\mathrm{sg}(s_t))`."""
    dt = neuron.log_dt.exp().view(-1, *([1] * (x.dim() - 3)))
    rate = neuron.decay_log.exp().view_as(dt)
    a = torch.exp(torch.complex(-dt * rate, dt * neuron.theta_log.exp().view_as(dt)))
    h = torch.zeros_like(x[0], dtype=torch.complex128)
    b = torch.zeros_like(x[0])
    spikes, membranes = [], []
    for x_t in x.unbind(0):
        h = a * h + dt * x_t
        m = h.real - b
        s = neuron.surrogate(m - v_threshold)
        if reset:
            b = a.real * (b + v_threshold * s.detach())
        spikes.append(s)
        membranes.append(m)
    return torch.stack(spikes), torch.stack(membranes)


# -- against the equations ----------------------------------------------------------------------------
def test_decoupled_lif_learned_threshold_is_the_soft_reset_lif_subtracting_it():
    """Per channel over a spatial dim: the spikes, membranes and gradients of the input and the threshold of the
    sequential soft-reset LIF whose reset subtracts :math:`V_{th}\\,\\mathrm{sg}(s)` (the threshold not detached)."""
    torch.manual_seed(0)
    neuron = DecoupledLIF(3, tau=4.0, v_threshold=torch.tensor(THRESHOLDS), learn_threshold=True).double()
    x = (torch.rand(60, 2, 3, 4, dtype=F64) * 0.9).requires_grad_()
    spikes, membrane, _ = neuron(x, return_membrane=True)
    threshold = neuron.v_threshold
    assert isinstance(threshold, torch.nn.Parameter) and threshold.shape == (3,)
    beta = torch.full((3, 1), 0.75, dtype=F64)
    ref_spikes, ref_membrane, _, _ = soft_reset_lif_reference(x, beta, threshold.view(3, 1), neuron.surrogate)
    assert ref_spikes.sum((0, 1, 3)).gt(10).all()  # every channel fires, several times
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(membrane, ref_membrane)
    got = _grads((spikes, membrane), [x, threshold])
    ref = _grads((ref_spikes, ref_membrane), [x, threshold])
    assert ref[1].abs().min() > 1e-3
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r)


def test_decoupled_lif_learned_threshold_and_decay_gradients_are_the_ops_reference():
    """With the decay learned too: every gradient (input, decay, threshold) of the op's step-by-step spec, the
    reset's decay detached (the neuron's documented gradient)."""
    torch.manual_seed(1)
    neuron = DecoupledLIF(3, learn_decay=True, v_threshold=THRESHOLDS, learn_threshold=True).double()
    x = (torch.rand(40, 2, 3, dtype=F64) * 1.2).requires_grad_()
    spikes, membrane, _ = neuron(x, return_membrane=True)
    beta = neuron.beta
    zeros = torch.zeros(2, 3, dtype=F64)
    ref = linear_fire_reference(
        x, beta, torch.ones(3, dtype=F64), zeros, zeros, ATan(), neuron.v_threshold, beta.detach()
    )
    assert spikes.sum() > 20 and torch.equal(spikes, ref[0])
    params = [x, neuron.decay_logit, neuron.v_threshold]
    for g, r in zip(_grads((spikes, membrane), params), _grads(ref[:2], params), strict=True):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("reset", [False, True])
def test_prf_learned_threshold_matches_its_equations(reset):
    torch.manual_seed(2)
    neuron = PRF(3, dt_range=(0.3, 1.0), reset=reset, v_threshold=[0.3, 0.5, 0.8], learn_threshold=True).double()
    x = (torch.randn(50, 2, 3, 2, dtype=F64) * 2).requires_grad_()
    spikes, membrane, _ = neuron(x, return_membrane=True)
    ref_spikes, ref_membrane = _prf_reference(x, neuron, neuron.v_threshold.view(3, 1), reset)
    assert ref_spikes.sum((0, 1, 3)).gt(5).all()
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(membrane, ref_membrane)
    params = [x, neuron.v_threshold, neuron.log_dt, neuron.theta_log]
    for g, r in zip(_grads((spikes, membrane), params), _grads((ref_spikes, ref_membrane), params), strict=True):
        torch.testing.assert_close(g, r)


def test_dsn_learned_threshold_matches_its_equations():
    """Binary DSN with a learned per-channel threshold: :math:`S_t = f(H_t - V_{th})` over the membrane of the
    step-by-step DSN reference, on feature maps; the spikes, membranes and the gradients of the input, the decay
    conv and the threshold."""
    torch.manual_seed(6)
    neuron = DynamicDecay(3, v_threshold=[0.2, 0.5, 0.8], learn_threshold=True).double()
    x = (torch.rand(40, 2, 3, 2, dtype=F64) * 1.5).requires_grad_()
    spikes, membrane, _ = neuron(x, return_membrane=True)
    weight, bias = neuron._taps(x)
    history = torch.zeros(neuron.kernel_size - 1, *x.shape[1:], dtype=F64)
    ref_membrane, _ = dsn_membrane_reference(x, history, weight, bias, neuron.tau, torch.zeros_like(x[0]))
    ref_spikes = neuron.surrogate(ref_membrane - neuron.v_threshold.view(3, 1))
    assert spikes.sum(dim=(0, 1, 3)).gt(5).all()  # every channel fires
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(membrane, ref_membrane)
    params = [x, neuron.weight, neuron.bias, neuron.v_threshold]
    got, ref = _grads((spikes, membrane), params), _grads((ref_spikes, ref_membrane), params)
    assert ref[-1].abs().min() > 1e-3
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r)


def test_dsn_integer_spikes_refuse_a_per_channel_or_learned_threshold():
    for kwargs in ({"learn_threshold": True}, {"v_threshold": [0.5, 1.0, 1.5]}):
        with pytest.raises(ValueError, match=r"binary mode's: integer spikes .* have no threshold"):
            DynamicDecay(3, spike_mode="integer", **kwargs)
    DynamicDecay(3, spike_mode="integer", v_threshold=0.5)  # a number, unused, as before


# -- parallel == serial, carried state, every mode --------------------------------------------------------
FACTORIES = {
    "lif": lambda: DecoupledLIF(3, learn_decay=True, v_threshold=THRESHOLDS, learn_threshold=True),
    "lif-fixed-per-channel": lambda: DecoupledLIF(3, v_threshold=torch.tensor(THRESHOLDS)),
    "prf": lambda: PRF(3, dt_range=(0.3, 1.0), v_threshold=0.4, learn_threshold=True),
    "prf-reset": lambda: PRF(3, dt_range=(0.3, 1.0), reset=True, v_threshold=[0.3, 0.5, 0.8], learn_threshold=True),
    "prf-fft": lambda: PRF(3, dt_range=(0.3, 1.0), mode="fft", v_threshold=[0.3, 0.5, 0.8], learn_threshold=True),
    "dsn": lambda: DynamicDecay(3, v_threshold=[0.3, 0.6, 0.9], learn_threshold=True),
}


def _steps(neuron, x, state=None):
    spikes, membranes = [], []
    for x_t in x.unbind(0):
        s, m, state = neuron.update(x_t, neuron._resolve_state(state, x_t))
        spikes.append(s)
        membranes.append(m)
    return torch.stack(spikes), torch.stack(membranes), state


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_forward_equals_steps_and_chained_forwards_with_the_threshold_gradient(name):
    torch.manual_seed(3)
    neuron = FACTORIES[name]().double()
    x = (torch.randn(24, 2, 3, 2, dtype=F64) * 2).requires_grad_()
    params = [x, *(p for p in neuron.parameters() if p.requires_grad)]
    spikes, membrane, state = neuron(x, return_membrane=True)
    assert spikes.sum() > 10
    step_spikes, step_membrane, step_state = _steps(neuron, x)
    assert torch.equal(spikes, step_spikes)
    torch.testing.assert_close(membrane, step_membrane)
    for a, b in zip(state, step_state, strict=True):
        torch.testing.assert_close(a, b)
    # step(x_t) is update on the checked input: the public entry point gives the same spike
    torch.testing.assert_close(neuron.step(x[0])[0], spikes[0])
    whole = _grads((spikes, membrane), params)
    for g, r in zip(whole, _grads((step_spikes, step_membrane), params), strict=True):
        torch.testing.assert_close(g, r)
    first = neuron(x[:10], return_membrane=True)
    second = neuron(x[10:], first[2], return_membrane=True)
    assert torch.equal(torch.cat([first[0], second[0]]), spikes)
    chained = _grads((torch.cat([first[0], second[0]]), torch.cat([first[1], second[1]])), params)
    for g, r in zip(chained, whole, strict=True):
        torch.testing.assert_close(g, r)


def test_prf_fft_and_scan_give_the_same_numbers_with_a_learned_threshold():
    torch.manual_seed(4)
    scan = PRF(3, dt_range=(0.3, 1.0), v_threshold=[0.3, 0.5, 0.8], learn_threshold=True).double()
    fft = copy.deepcopy(scan)
    fft.mode = "fft"
    x = torch.randn(30, 2, 3, dtype=F64) * 2
    out_scan, out_fft = scan(x, return_membrane=True), fft(x, return_membrane=True)
    assert torch.equal(out_scan[0], out_fft[0]) and out_scan[0].sum() > 10
    torch.testing.assert_close(out_scan[1], out_fft[1])
    grad_scan = _grads(out_scan[:2], [scan.v_threshold, scan.log_dt])
    grad_fft = _grads(out_fft[:2], [fft.v_threshold, fft.log_dt])
    for g, r in zip(grad_scan, grad_fft, strict=True):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["scan", "fft"])
def test_prf_low_precision_learned_threshold_computes_in_float32(dtype, mode):
    torch.manual_seed(5)
    reference = PRF(3, dt_range=(0.3, 1.0), v_threshold=[0.3, 0.5, 0.8], learn_threshold=True, mode=mode)
    low = copy.deepcopy(reference).to(dtype)
    x = (torch.randn(20, 2, 3) * 2).to(dtype)
    spikes, state = low(x)
    ref_spikes, _ = reference(x.float())
    assert spikes.dtype == dtype and state.u.dtype == dtype
    assert torch.equal(spikes.float(), ref_spikes)
    spikes.float().sum().backward()
    ref_spikes.sum().backward()
    assert low.v_threshold.grad.dtype == dtype
    torch.testing.assert_close(low.v_threshold.grad.float(), reference.v_threshold.grad, rtol=2e-2, atol=2e-2)


# -- lazy, state dicts, repr --------------------------------------------------------------------------
def test_lazy_learned_threshold_is_materialised_at_the_first_input_for_an_optimizer_built_before():
    neuron = DecoupledLIF(v_threshold=0.7, learn_threshold=True)
    assert neuron.has_uninitialized_params()
    optimizer = torch.optim.SGD(neuron.parameters(), lr=0.1)
    spikes, _ = neuron(torch.rand(5, 2, 4, 3) * 2)
    assert neuron.v_threshold.shape == (4,) and torch.equal(neuron.v_threshold.detach(), torch.full((4,), 0.7))
    spikes.sum().backward()
    optimizer.step()
    assert not torch.equal(neuron.v_threshold.detach(), torch.full((4,), 0.7))  # the optimizer's parameter
    lazy = PRF(v_threshold=[0.2, 0.4, 0.6])  # per channel, fixed: a buffer, materialised at the first input too
    lazy(torch.rand(4, 2, 3))
    assert "v_threshold" in dict(lazy.named_buffers()) and lazy.v_threshold.tolist() == pytest.approx([0.2, 0.4, 0.6])


def test_a_threshold_whose_length_is_not_the_feature_count_is_named():
    with pytest.raises(ValueError, match=r"v_threshold has 3 values, one per channel, for 4 features"):
        DecoupledLIF(4, v_threshold=[0.5, 1.0, 1.5])
    lazy = PRF(v_threshold=[0.5, 1.0, 1.5], learn_threshold=True)
    with pytest.raises(ValueError, match=r"v_threshold has 3 values, one per channel, for 5 features"):
        lazy(torch.rand(4, 2, 5))
    assert lazy.has_uninitialized_params()
    lazy(torch.rand(4, 2, 3))  # the right count still builds it


@pytest.mark.parametrize("cls", [DecoupledLIF, PRF, DynamicDecay])
def test_state_dicts_round_trip_and_a_float_threshold_keeps_the_old_keys(cls):
    neuron = cls(3, v_threshold=[0.5, 1.0, 1.5], learn_threshold=True)
    with torch.no_grad():
        neuron.v_threshold.add_(0.25)
    lazy = cls(learn_threshold=True)
    lazy.load_state_dict(neuron.state_dict())
    assert lazy.features == 3 and torch.equal(lazy.v_threshold, neuron.v_threshold)
    old = cls(3, v_threshold=0.5)
    assert "v_threshold" not in old.state_dict() and old.v_threshold == 0.5
    cls(3, v_threshold=0.5).load_state_dict(old.state_dict())  # an old checkpoint loads as before
    fixed = cls(3, v_threshold=torch.tensor([0.5, 1.0, 1.5]))
    assert "v_threshold" in fixed.state_dict() and not fixed.v_threshold.requires_grad


def test_repr_says_how_the_threshold_is_held():
    assert "v_threshold=0.5" in repr(DecoupledLIF(3, v_threshold=0.5))
    assert "v_threshold=learned per channel" in repr(DecoupledLIF(3, learn_threshold=True))
    assert "v_threshold=per channel" in repr(PRF(3, v_threshold=[0.1, 0.2, 0.3]))
    assert "v_threshold=learned per channel" in repr(DynamicDecay(3, learn_threshold=True))


# -- bad input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [DecoupledLIF, PRF, DynamicDecay])
@pytest.mark.parametrize(
    "value, error, match",
    [
        (math.nan, ValueError, "v_threshold must be a finite number"),
        (torch.tensor([0.5, math.inf, 1.0]), ValueError, "v_threshold must hold finite values"),
        ([0.5, math.nan, 1.0], ValueError, "v_threshold must hold finite values"),
        (torch.tensor([1, 2, 3]), TypeError, "v_threshold must hold real floating-point values, got dtype int64"),
        (torch.ones(3, dtype=torch.complex64), TypeError, "v_threshold must hold real floating-point values"),
        (torch.ones(3, 1), ValueError, r"v_threshold must be one number or one per channel, shape \[C\]"),
        (torch.ones(0), ValueError, r"v_threshold must be one number or one per channel"),
        ("1.0", TypeError, "v_threshold must be a number, or one per channel"),
        ([0.5, "1"], TypeError, "v_threshold must be a number or one number per channel"),
        (True, TypeError, "v_threshold must be a number"),
    ],
)
def test_bad_thresholds_are_named(cls, value, error, match):
    with pytest.raises(error, match=match):
        cls(3, v_threshold=value)


def test_bad_learn_threshold_is_named():
    with pytest.raises(TypeError, match="learn_threshold"):
        DecoupledLIF(3, learn_threshold="yes")
