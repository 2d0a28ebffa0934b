"""snnTorch skins: bad input named as the user passed it, and multistep without an unread membrane."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("snntorch")
from snn_parallel.adapters import snntorch as adapter  # noqa: E402
from snn_parallel.adapters.snntorch import LTC, PRF, PSPLIF, DecoupledLIF, DynamicDecay  # noqa: E402

SKINS = [DynamicDecay, PRF, DecoupledLIF, LTC, PSPLIF]
# (class, kwargs, input scale that makes some but not all neurons fire)
FIRING = [
    pytest.param(DynamicDecay, {}, 3.0, id="dsn"),
    pytest.param(PRF, {"tau": 0.5, "dt_range": (0.5, 1.0), "reset_mechanism": "subtract"}, 3.0, id="prf-reset"),
    pytest.param(DecoupledLIF, {"beta": 0.8}, 1.0, id="lif"),
    pytest.param(DecoupledLIF, {"beta": 0.8, "mem": "reset_free"}, 1.0, id="lif-reset-free"),
    pytest.param(LTC, {}, 1.0, id="ltc"),
    pytest.param(PSPLIF, {}, 3.0, id="psplif"),
]


def _call(neuron: adapter.LeakyAdapter, path: str, x: torch.Tensor, mem: torch.Tensor | None = None) -> object:
    """``forward`` on one step ``x`` ``[B, C]``, or ``multistep`` on it repeated as a sequence of 3."""
    if path == "forward":
        return neuron(x, mem)
    return neuron.multistep(x.expand(3, *x.shape), mem)


NAME = {"forward": "input_", "multistep": "x_seq"}  # snnTorch's argument, and the skins' multistep's


@pytest.mark.parametrize("path", ["forward", "multistep"])
@pytest.mark.parametrize("cls", SKINS)
def test_a_bad_input_is_named_as_the_argument_passed(cls, path):
    cases = [
        (torch.zeros(2, 4, dtype=torch.long), TypeError, "dtype"),
        (torch.full((2, 4), float("nan")), ValueError, "NaN"),
    ]
    if cls is not PSPLIF:  # PSPLIF has no parameters, so no dtype of its own
        cases.append((torch.zeros(2, 4, dtype=torch.float64), TypeError, "dtype"))
    for x, error, what in cases:
        with pytest.raises(error, match=rf"^{NAME[path]} .*{what}") as caught:
            _call(cls(4), path, x)
        assert "x_t" not in str(caught.value)


@pytest.mark.parametrize("path", ["forward", "multistep"])
@pytest.mark.parametrize("cls", SKINS)
def test_a_bad_mem_is_named_mem(cls, path):
    x = torch.zeros(2, 4)
    with pytest.raises(TypeError, match=rf"^mem has dtype torch.float64, expected torch.float32 to match {NAME[path]}"):
        _call(cls(4), path, x, torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="^mem contains NaN"):
        _call(cls(4), path, x, torch.full((2, 4), float("inf")))
    spk, mem = _call(cls(4), path, x, torch.zeros(2, 4))  # a good mem still runs
    assert torch.isfinite(mem).all()


@pytest.mark.parametrize("cls", SKINS)
def test_a_bad_mem_assigned_is_refused_at_the_assignment(cls):
    neuron = cls(4)
    neuron(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="^mem contains NaN"):
        neuron.mem = torch.full((2, 4), float("nan"))
    with pytest.raises(TypeError, match="^mem must have dtype"):
        neuron.mem = torch.zeros(2, 4, dtype=torch.long)
    neuron.mem = torch.ones(2, 4)  # a good one is taken, and the next step starts from it
    assert torch.equal(neuron.mem, torch.ones(2, 4))
    neuron(torch.zeros(2, 4))


@pytest.mark.parametrize("cls, kwargs, scale", FIRING)
def test_the_mem_returned_is_the_neurons_own_and_a_step_loop_checks_only_its_inputs(cls, kwargs, scale, monkeypatch):
    """As ``snn.Leaky`` returns ``self.mem``, so do the skins: passing it back each step, as snnTorch's
    tutorials do, carries the stored state on without re-checking its values; the input is checked once a
    step. The spikes and membranes equal those of the same loop with ``mem`` passed as a copy (which is
    checked and taken as given)."""
    import snntorch

    leaky = snntorch.Leaky(beta=0.9)
    _, leaky_mem = leaky(torch.ones(2, 4), leaky.init_leaky())
    assert leaky_mem is leaky.mem  # the behaviour followed

    torch.manual_seed(0)
    xs = scale * torch.rand(6, 2, 4)
    checks = []
    original = adapter.check_tensor.__globals__["_all_finite"]
    monkeypatch.setitem(adapter.check_tensor.__globals__, "_all_finite", lambda x: checks.append(x) or original(x))

    def loop(copy: bool) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(1)
        neuron = cls(4, **kwargs)
        mem, spikes, mems = neuron.init_leaky(), [], []
        checks.clear()
        for x_t in xs:
            spk, mem = neuron(x_t, mem.clone() if copy else mem)
            assert copy or mem is neuron.mem
            spikes.append(spk)
            mems.append(mem)
        return torch.stack(spikes), torch.stack(mems), len(checks)

    spikes, mems, own_checks = loop(copy=False)
    copied_spikes, copied_mems, copied_checks = loop(copy=True)
    assert torch.equal(spikes, copied_spikes) and torch.equal(mems, copied_mems)
    assert 0 < spikes.mean() < 1
    assert own_checks == len(xs)  # the inputs only
    assert copied_checks > own_checks  # a mem of the user's own is checked


@pytest.mark.parametrize("cls, kwargs, scale", FIRING)
def test_multistep_without_output_gives_the_spikes_and_state_of_the_full_call(cls, kwargs, scale):
    """``init_hidden=True, output=False`` returns the spikes only: the same spikes, and the same state
    to stream on from, as the call that also returns the membrane."""
    torch.manual_seed(0)
    x = torch.rand(12, 3, 8) * scale
    with_mem = cls(8, init_hidden=True, output=True, **kwargs)
    spikes_only = cls(8, init_hidden=True, **kwargs)
    spikes_only.load_state_dict(with_mem.state_dict())
    spk, _ = with_mem.multistep(x[:8])
    assert torch.equal(spikes_only.multistep(x[:8]), spk)
    assert 0 < spk.count_nonzero() < spk.numel()  # the case is not trivial
    for a, b in zip(with_mem._state(), spikes_only._state(), strict=True):
        assert torch.equal(a, b)
    for x_t in x[8:].unbind(0):
        assert torch.equal(spikes_only(x_t), with_mem(x_t)[0])


def test_multistep_without_output_does_not_ask_the_core_for_the_membrane(monkeypatch):
    """DynamicDecay's core has a path without the membrane (its kernels then do not write it): a
    skin whose membrane nobody reads takes it; one that returns the membrane does not."""
    x = torch.rand(6, 2, 4) * 3
    for output, membrane_calls in ((False, 0), (True, 1)):
        neuron = DynamicDecay(4, init_hidden=True, output=output)
        calls = []
        full = neuron.core.update_sequence
        monkeypatch.setattr(neuron.core, "update_sequence", lambda *args, full=full: calls.append(1) or full(*args))
        neuron.multistep(x)
        assert len(calls) == membrane_calls


@pytest.mark.parametrize("cls", [DynamicDecay, PRF, DecoupledLIF])
def test_multistep_compiles_with_fullgraph_at_the_default_spike_grad_which_trains_as_snntorch_atan(cls):
    """The default ``spike_grad`` is snnTorch's ``atan()``, which the core spikes through in closed form
    (``ATan(alpha=2, inclusive=False)``): the spikes and gradients of snnTorch's own callable, compiled with
    ``fullgraph=True`` or not, as snnTorch's ``atan()`` passed explicitly (ours too); a callable that is not
    ours (``triangular()``) cannot be compiled whole."""
    import snntorch.surrogate

    from snn_parallel.surrogate import ATan

    torch._dynamo.reset()
    x = torch.rand(6, 3, 5) * 3

    def run(net: torch.nn.Sequential, compile: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        def model(x: torch.Tensor) -> torch.Tensor:
            net[1].reset_mem()
            return net[1].multistep(net[0](x))

        spikes = (torch.compile(model, fullgraph=True, backend="eager") if compile else model)(x)
        spikes.sum().backward()
        return spikes, [p.grad.clone() for p in net.parameters()]

    def make(**kwargs: object) -> torch.nn.Sequential:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(5, 4), cls(4, init_hidden=True, **kwargs))

    reference, reference_grads = run(make(spike_grad=snntorch.surrogate.atan()))  # snnTorch's callable
    assert 0 < reference.count_nonzero() < reference.numel()
    default = make()
    assert default[1].spike_grad.__qualname__.startswith("atan")  # snnTorch's, as on snn.Leaky
    runs = [run(default), run(make(), compile=True), run(make(spike_grad=ATan(inclusive=False)), compile=True)]
    runs.append(run(make(spike_grad=snntorch.surrogate.atan()), compile=True))
    for spikes, grads in runs:
        assert torch.equal(spikes, reference)
        for grad, expected in zip(grads, reference_grads, strict=True):
            torch.testing.assert_close(grad, expected)
    with pytest.raises(torch._dynamo.exc.Unsupported, match="autograd"):  # derivative by autograd
        run(make(spike_grad=snntorch.surrogate.triangular()), compile=True)
