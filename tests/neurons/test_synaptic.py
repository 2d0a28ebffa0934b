"""SynapticLIF against the sequential second-order soft-reset LIF (snnTorch's ``Synaptic``), written from its
equations in float64, and its contract: lazy channels, state dicts, low precision, bad inputs. The generic
suites run it too: forward equals steps with BPTT's gradients, chained calls, feature maps
(tests/neurons/test_neurons.py), the kernels in the CPU harness (tests/ops/test_backend.py), torch.compile."""

from __future__ import annotations

import pytest
import torch

from snn_parallel.neurons import SynapticLIF
from snn_parallel.ops.linear_fire import soft_reset_lif_reference
from snn_parallel.surrogate import ATan

F64 = torch.float64


def _grads(outputs, inputs, seed=0):
    """Gradients of a fixed random weighting of ``outputs``."""
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outputs)
    return list(torch.autograd.grad(loss, inputs))


def _reference(x, alpha, beta, threshold, surrogate, reset=True):
    r"""The neuron one step at a time from its equations: :math:`i_t = \alpha i_{t-1} + x_t`,
    :math:`u_t = \beta u_{t-1} + i_t - r_t`, :math:`s_t = f(u_t - V_{th})`, where the reset
    :math:`r_t = \mathrm{sg}(\beta)(r_{t-1} + V_{th}\,\mathrm{sg}(s_{t-1}))` is what the membrane has lost to the
    spikes so far (the reset detached, its decay too; the threshold not). Returns spikes, membranes, currents."""
    current = torch.zeros_like(x[0])
    free = torch.zeros_like(x[0])  # the membrane without resets
    lost = torch.zeros_like(x[0])
    spikes, membranes, currents = [], [], []
    for x_t in x.unbind(0):
        current = alpha * current + x_t
        free = beta * free + current
        membrane = free - lost
        spike = surrogate(membrane - threshold)
        if reset:
            lost = beta.detach() * (lost + threshold * spike.detach())
        spikes.append(spike)
        membranes.append(membrane)
        currents.append(current)
    return torch.stack(spikes), torch.stack(membranes), torch.stack(currents)


def test_fixed_decays_are_the_soft_reset_lif_driven_by_the_synaptic_current():
    """Spikes, membranes and the gradients of the input and a per-channel learned threshold of the sequential
    soft-reset LIF (:func:`soft_reset_lif_reference`) driven by :math:`i_t = \\alpha i_{t-1} + x_t`."""
    torch.manual_seed(0)
    thresholds = torch.tensor([0.6, 1.0, 1.7])
    neuron = SynapticLIF(3, tau_syn=5.0, tau=4.0, v_threshold=thresholds, learn_threshold=True).double()
    x = (torch.rand(50, 2, 3, 4, dtype=F64) * 0.5).requires_grad_()
    spikes, membrane, state = neuron(x, return_membrane=True)
    alpha, beta = neuron.alpha.view(3, 1), neuron.beta.view(3, 1)  # 0.8 and 0.75, rounded to float32 at build
    torch.testing.assert_close(alpha, torch.full((3, 1), 0.8, dtype=F64))
    current = torch.zeros_like(x[0])
    currents = []
    for x_t in x.unbind(0):
        current = alpha * current + x_t
        currents.append(current)
    currents = torch.stack(currents)
    threshold = neuron.v_threshold
    ref_spikes, ref_membrane, _, _ = soft_reset_lif_reference(currents, beta, threshold.view(3, 1), neuron.surrogate)
    assert ref_spikes.sum((0, 1, 3)).gt(10).all()  # every channel fires, several times
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(membrane, ref_membrane)
    torch.testing.assert_close(state.current, currents[-1])
    got = _grads((spikes, membrane), [x, threshold])
    ref = _grads((ref_spikes, ref_membrane), [x, threshold])
    assert ref[1].abs().min() > 1e-3
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("reset", [True, False])
def test_learned_decays_and_threshold_match_the_equations(reset):
    """Every gradient (input, both decays, threshold) of the documented convention, with and without a reset."""
    torch.manual_seed(1)
    neuron = SynapticLIF(
        3, tau_syn=3.0, tau=2.5, learn_decay=True, v_threshold=[0.5, 0.9, 1.3], learn_threshold=True, reset=reset
    ).double()
    with torch.no_grad():  # a different decay per channel
        neuron.syn_decay_logit.add_(torch.tensor([-0.3, 0.0, 0.4], dtype=F64))
        neuron.decay_logit.add_(torch.tensor([0.2, -0.2, 0.0], dtype=F64))
    x = (torch.randn(40, 2, 3, dtype=F64) * 0.8 + 0.3).requires_grad_()
    spikes, membrane, state = neuron(x, return_membrane=True)
    ref_spikes, ref_membrane, currents = _reference(x, neuron.alpha, neuron.beta, neuron.v_threshold, ATan(), reset)
    assert spikes.sum() > 20 and torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(membrane, ref_membrane)
    torch.testing.assert_close(state.current, currents[-1])
    params = [x, neuron.syn_decay_logit, neuron.decay_logit, neuron.v_threshold]
    got = _grads((spikes, membrane), params)
    ref = _grads((ref_spikes, ref_membrane), params)
    assert all(r.abs().max() > 1e-3 for r in ref)
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r)


def test_no_reset_integrates():
    neuron = SynapticLIF(2, reset=False).double()
    x = torch.ones(6, 1, 2, dtype=F64)
    _, membrane, _ = neuron(x, return_membrane=True)
    # alpha = beta = 1/2: i_t = 2 - 2^(1-t), u_t = u_{t-1}/2 + i_t
    current, u = 0.0, 0.0
    for t in range(6):
        current = 0.5 * current + 1
        u = 0.5 * u + current
        assert membrane[t, 0, 0].item() == pytest.approx(u)
    assert "reset=False" in repr(neuron)


def test_lazy_channels_and_state_dict():
    lazy = SynapticLIF(learn_decay=True, learn_threshold=True)
    optimizer = torch.optim.SGD(lazy.parameters(), lr=0.1)
    assert lazy.has_uninitialized_params()
    spikes, _ = lazy(torch.rand(3, 2, 5) * 3)
    assert lazy.features == 5 and lazy.alpha.shape == (5,)
    spikes.sum().backward()
    optimizer.step()
    loaded = SynapticLIF(learn_decay=True, learn_threshold=True)
    loaded.load_state_dict(lazy.state_dict())
    assert loaded.features == 5
    for name, value in lazy.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert set(lazy.state_dict()) == {"syn_decay_logit", "decay_logit", "v_threshold"}
    # fixed decays: buffers, in the state dict too
    fixed = SynapticLIF(2, tau_syn=10.0)
    assert not list(fixed.parameters())
    only_beta = SynapticLIF(2, learn_decay=True, learn_syn_decay=False)
    assert [name for name, _ in only_beta.named_parameters()] == ["decay_logit"]
    only_alpha = SynapticLIF(2, learn_syn_decay=True)
    assert [name for name, _ in only_alpha.named_parameters()] == ["syn_decay_logit"]
    torch.testing.assert_close(fixed.alpha, torch.full((2,), 0.9))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_runs_in_its_dtype_and_under_autocast(dtype):
    torch.manual_seed(3)
    x = torch.rand(12, 2, 3) * 2
    reference, _ = SynapticLIF(3)(x)
    neuron = SynapticLIF(3).to(dtype)
    spikes, state = neuron(x.to(dtype))
    assert spikes.dtype == dtype and all(s.dtype == dtype for s in state)
    assert (spikes.float() != reference).float().mean() < 0.1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spikes, state = SynapticLIF(3)(x.to(torch.bfloat16))
    assert spikes.dtype == torch.float32


@pytest.mark.parametrize(
    "build,error,match",
    [
        (lambda: SynapticLIF(3, tau_syn=1.0), ValueError, "tau_syn must be > 1"),
        (lambda: SynapticLIF(3, tau_syn=float("nan")), ValueError, "tau_syn"),
        (lambda: SynapticLIF(3, tau_syn="5"), TypeError, "tau_syn must be a real number"),
        (lambda: SynapticLIF(3, tau=0.5), ValueError, "tau must be > 1"),
        (lambda: SynapticLIF(3, learn_decay=1), TypeError, "learn_decay"),
        (lambda: SynapticLIF(3, learn_syn_decay="no"), TypeError, "learn_syn_decay"),
        (lambda: SynapticLIF(3, reset="yes"), TypeError, "reset"),
        (lambda: SynapticLIF(3, v_threshold=float("inf")), ValueError, "v_threshold"),
        (lambda: SynapticLIF(3, v_threshold=[1.0, 2.0]), ValueError, "v_threshold has 2 values"),
        (lambda: SynapticLIF(3, backend="cuda"), ValueError, "backend"),
    ],
)
def test_bad_constructor_arguments_are_named(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_bad_inputs_are_named():
    neuron = SynapticLIF(3)
    x = torch.rand(4, 2, 3)
    with pytest.raises(ValueError, match="x_seq"):
        neuron(torch.full((4, 2, 3), float("nan")))
    with pytest.raises(ValueError, match="x_seq"):
        neuron(torch.rand(4, 2, 5))
    with pytest.raises(TypeError, match="x_seq"):
        neuron(torch.ones(4, 2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="x_seq"):
        neuron(torch.rand(0, 2, 3))
    with pytest.raises(ValueError, match="x_t"):
        neuron.step(torch.rand(2, 4))
    with pytest.raises(TypeError, match="state must be a SynapticLIFState"):
        neuron(x, (torch.zeros(2, 3), torch.zeros(2, 3)))
    _, state = neuron(x)
    with pytest.raises(ValueError, match="state.current"):
        neuron(x, state._replace(current=torch.zeros(2, 4)))
    with pytest.raises(ValueError, match="state.current"):
        neuron(x, state._replace(current=torch.full((2, 3), float("nan"))))


@pytest.mark.parametrize("decay_input", [False, True])
def test_linear_stages_are_the_current_and_the_reset_free_membrane(decay_input):
    r"""Two first-order stages, :math:`((\alpha, 1), (\beta, g))` (:math:`g = 1 - \beta` with ``decay_input``), not
    one (``linear_response`` is ``None``): filtering the input through them gives the membrane of a neuron that never
    resets, :math:`i_t = \alpha i_{t-1} + x_t`, :math:`u_t = \beta u_{t-1} + g\, i_t`."""
    neuron = SynapticLIF(3, tau_syn=4.0, tau=2.0, learn_decay=True, reset=False).double()
    neuron.decay_input = decay_input
    assert neuron.linear_response() is None
    (alpha, unit), (beta, gain) = neuron.linear_stages()
    torch.testing.assert_close(alpha, torch.full((3,), 0.75, dtype=torch.float64))
    torch.testing.assert_close(beta, torch.full((3,), 0.5, dtype=torch.float64))
    assert torch.equal(unit, torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(gain, torch.full((3,), 0.5 if decay_input else 1.0, dtype=torch.float64))
    assert alpha.requires_grad and beta.requires_grad and gain.requires_grad == decay_input
    x = torch.rand(10, 2, 3, dtype=torch.float64)
    _, membrane, _ = neuron(x, return_membrane=True)
    current, filtered, expected = torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64), []
    for x_t in x:
        current = 0.75 * current + x_t
        filtered = 0.5 * filtered + (0.5 if decay_input else 1.0) * current
        expected.append(filtered)
    torch.testing.assert_close(membrane.detach(), torch.stack(expected))
