"""``from_snntorch``: a network written (and trained) with snnTorch's own ``snn.Leaky`` / ``snn.Synaptic`` /
``snn.Lapicque``, swapped for our skins, computes what it computed: the same spikes, membranes and gradients as the
snnTorch network run side by side (float64), stepped by hand (tutorial 5), as an ``init_hidden`` ``nn.Sequential``
(tutorials 6 and 7, a conv net included) or through the skins' ``multistep``; ``to_snntorch`` takes it back."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

snn = pytest.importorskip("snntorch")
import snntorch.backprop  # noqa: E402
import snntorch.functional as SF  # noqa: E402
import snntorch.utils  # noqa: E402
from snn_parallel.adapters import snntorch as adapter  # noqa: E402
from snn_parallel.adapters.snntorch import DecoupledLIF, Lapicque, Synaptic, from_snntorch, to_snntorch  # noqa: E402

# the tutorial-5 network and its data, shared with to_snntorch's tests
from test_snntorch_to_snntorch import ATAN, LEAKY_CASES, Net, _input, _loss, _per_neuron, _value  # noqa: E402

F64 = torch.float64
#: each snnTorch neuron and the skin it becomes
SKIN_OF = {snn.Leaky: DecoupledLIF, snn.Synaptic: Synaptic, snn.Lapicque: Lapicque}


def _snntorch_net(cls, options, synaptic=False):
    """Tutorial 5's network written with snnTorch's neuron ``cls`` built with ``options``, in float64."""
    return Net(
        lambda size: cls(**{name: _value(value, size) for name, value in options.items()}, spike_grad=ATAN),
        synaptic,
    ).double()


def _tutorial_run(net, x):
    return net(x)


# -- a tutorial-6/7 style conv net: init_hidden neurons in an nn.Sequential, stepped through utils.reset -------------
CHANNELS, SIDE = 4, 6


def _conv_net(**options):
    """Conv2d, MaxPool2d, ``snn.Leaky`` on the feature maps, Flatten, Linear, ``snn.Leaky`` (``output=True``), the
    neurons' per-neuron values (callables of the shape) ``[C, 1, 1]`` on the maps."""
    torch.manual_seed(0)

    def leaky(shape, **extra):
        return snn.Leaky(
            **{k: _value(v, shape) for k, v in options.items()}, spike_grad=ATAN, init_hidden=True, **extra
        )

    net = nn.Sequential(
        nn.Conv2d(1, CHANNELS, 3, padding=1),
        nn.MaxPool2d(2),
        leaky((CHANNELS, 1, 1)),
        nn.Flatten(),
        nn.Linear(CHANNELS * (SIDE // 2) ** 2, 3),
        leaky((3,), output=True),
    ).double()
    with torch.no_grad():  # excitatory weights: both layers fire
        net[0].weight.abs_()
        net[4].weight.abs_()
    return net


def _frames(seed=1, requires_grad=False):
    torch.manual_seed(seed)
    return (torch.rand(10, 3, 1, SIDE, SIDE, dtype=F64) * 1.5).requires_grad_(requires_grad)


def _conv_run(net, x):
    snntorch.utils.reset(net)
    spikes, mems = [], []
    for x_t in x.unbind(0):
        spk, mem = net(x_t)
        spikes.append(spk)
        mems.append(torch.cat([net[2].mem.flatten(1), mem], dim=1))
    return torch.stack(spikes), torch.stack(mems)


CONV_CASES = {
    "learned_scalar": dict(beta=0.8, threshold=1.0, learn_beta=True, learn_threshold=True),
    "learned_per_channel": dict(
        beta=lambda shape: torch.linspace(0.6, 0.9, shape[0]).reshape(shape),
        threshold=lambda shape: torch.linspace(0.8, 1.2, shape[0]).reshape(shape),
        learn_beta=True,
        learn_threshold=True,
    ),
    "no_reset": dict(beta=0.8, learn_beta=True, learn_threshold=True, reset_mechanism="none"),
}


def _train(net, run, inputs, steps=4, lr=0.05):
    """A few Adam steps of the snnTorch network, so every learned value moves away from its initial one."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    for seed in range(steps):
        optimizer.zero_grad()
        _loss(*run(net, inputs(seed + 10))).backward()
        optimizer.step()


def _assert_same_run(theirs, ours, run, inputs, gradients=True):
    r"""Both networks' spikes, membranes and (``gradients``) the gradients of the input, the weights and graded
    spikes factors (same names), each converted neuron's threshold, and its learned decays by the chain rule:
    snnTorch learns :math:`\beta` itself, the skin :math:`w` with :math:`\beta = \sigma(w)`."""
    results = []
    for net in (theirs, ours):
        net.zero_grad(set_to_none=True)
        x = inputs(2, True)
        spikes, mems = run(net, x)
        if gradients:
            _loss(spikes.to(F64), mems).backward()
        results.append((x, spikes.to(F64), mems))
    (x_theirs, spikes_theirs, mems_theirs), (x_ours, spikes_ours, mems_ours) = results
    assert spikes_theirs.sum() > 0  # the case fires
    torch.testing.assert_close(spikes_ours, spikes_theirs, rtol=0, atol=1e-12)
    torch.testing.assert_close(mems_ours, mems_theirs, rtol=1e-10, atol=1e-10)
    if not gradients:
        return
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-9, atol=1e-10)
    ours_parameters = dict(ours.named_parameters())
    for name, parameter in theirs.named_parameters():  # the weights and a learned graded spikes factor
        if name in ours_parameters:
            torch.testing.assert_close(ours_parameters[name].grad, parameter.grad, rtol=1e-9, atol=1e-10)
    for name, neuron in theirs.named_modules():
        if type(neuron) not in SKIN_OF:
            continue
        skin = ours.get_submodule(name)
        if type(skin) is type(neuron):  # snnTorch's own (a round trip): its parameters compared by name above
            continue
        assert type(skin) is SKIN_OF[type(neuron)]
        if isinstance(neuron.threshold, nn.Parameter):
            torch.testing.assert_close(
                skin.threshold.grad.reshape(-1), neuron.threshold.grad.reshape(-1), rtol=1e-9, atol=1e-10
            )
        for decay, logit in (("beta", "decay_logit"), ("alpha", "syn_decay_logit")):
            value = getattr(neuron, decay, None)
            if isinstance(value, nn.Parameter):
                chained = value.grad * value.detach() * (1 - value.detach())
                torch.testing.assert_close(
                    getattr(skin.core, logit).grad.reshape(-1), chained.reshape(-1), rtol=1e-9, atol=1e-12
                )


# -- the key use case: an snnTorch network trained with snnTorch, swapped ------------------------------------------
@pytest.mark.parametrize("case", list(LEAKY_CASES))
def test_a_tutorial_5_network_trained_with_snn_leaky_computes_the_same_with_the_skins(case):
    theirs = _snntorch_net(snn.Leaky, LEAKY_CASES[case])
    _train(theirs, _tutorial_run, _input)
    before = copy.deepcopy(theirs.state_dict())
    ours = from_snntorch(theirs)
    assert type(ours.lif1) is DecoupledLIF and type(ours.lif2) is DecoupledLIF
    assert type(theirs.lif1) is snn.Leaky  # net itself is untouched
    for name, value in theirs.state_dict().items():
        assert torch.equal(value, before[name]), name
    for name in ("lif1", "lif2"):  # the trained values, not the initial ones
        torch.testing.assert_close(
            getattr(ours, name).threshold.detach().reshape(-1),
            getattr(theirs, name).threshold.detach().reshape(-1).expand(getattr(ours, name).threshold.numel()),
        )
        torch.testing.assert_close(getattr(ours, name).beta.detach(), getattr(theirs, name).beta.detach())
    _assert_same_run(theirs, ours, _tutorial_run, _input)


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_an_init_hidden_conv_sequential_trained_with_snn_leaky_computes_the_same(case):
    theirs = _conv_net(**CONV_CASES[case])
    _train(theirs, _conv_run, _frames, lr=0.005)  # (the loss soon silences the output at higher rates)
    ours = from_snntorch(theirs)
    assert type(ours[2]) is DecoupledLIF and ours[2].init_hidden and ours[5].output
    _assert_same_run(theirs, ours, _conv_run, _frames)


def test_the_undelayed_reset_fires_and_integrates_as_snn_leaky():
    """``reset_delay=False``: the same spikes and ``mem`` (snnTorch also backpropagates through the reset's spike,
    which the skin detaches, so gradients are not compared)."""
    theirs = _snntorch_net(snn.Leaky, dict(beta=0.5, threshold=2.0, reset_delay=False))
    ours = from_snntorch(theirs)
    assert ours.lif1.core.reset_delay is False
    _assert_same_run(theirs, ours, _tutorial_run, _input, gradients=False)


def test_snntorch_default_spike_grad_gives_the_same_spikes_and_membranes():
    """snnTorch's own ``atan()`` (the default), which the skin computes in closed form."""
    torch.manual_seed(0)
    theirs = nn.Sequential(nn.Linear(5, 4), snn.Leaky(beta=0.8, init_hidden=True, output=True)).double()
    ours = from_snntorch(theirs)
    assert ours[1].spike_grad is theirs[1].spike_grad  # deepcopy keeps a function
    x = _input(4) * 2
    for x_t in x.unbind(0):
        spk_theirs, mem_theirs = theirs(x_t)
        spk_ours, mem_ours = ours(x_t)
        torch.testing.assert_close(spk_ours.to(F64), spk_theirs.to(F64))  # snnTorch's atan() gives float32 spikes
        torch.testing.assert_close(mem_ours, mem_theirs)


@pytest.mark.parametrize(
    "cls, options",
    [
        (snn.Leaky, dict(beta=torch.linspace(0.6, 0.95, 4), threshold=0.8, learn_beta=True)),
        (snn.Synaptic, dict(alpha=0.7, beta=0.85, threshold=0.8)),
        (snn.Lapicque, dict(R=2.0, C=4.0, time_step=0.5, threshold=0.3)),
    ],
    ids=["Leaky", "Synaptic", "Lapicque"],
)
def test_multistep_of_the_converted_neuron_is_snntorch_stepping(cls, options):
    torch.manual_seed(0)
    theirs = cls(**options, spike_grad=ATAN).double()
    ours = from_snntorch(theirs)
    x = torch.rand(12, 3, 4, dtype=F64) * 1.5
    stepped = [theirs(x_t) for x_t in x.unbind(0)]  # (spk, mem) or (spk, syn, mem), its state kept between steps
    expected = [torch.stack(values) for values in zip(*stepped, strict=True)]
    got = ours.multistep(x)
    assert expected[0].sum() > 0
    for mine, reference in zip(got, expected, strict=True):
        torch.testing.assert_close(mine, reference, rtol=1e-10, atol=1e-10)


# -- round trip -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["learned_scalar", "learned_per_neuron", "learned_graded_spikes", "no_reset"])
def test_to_snntorch_takes_the_converted_network_back(case):
    theirs = _snntorch_net(snn.Leaky, LEAKY_CASES[case])
    _train(theirs, _tutorial_run, _input)
    back = to_snntorch(from_snntorch(theirs))
    expected, got = theirs.state_dict(), back.state_dict()
    assert set(got) == set(expected)
    for name, value in expected.items():  # beta went through a logit: to float tolerance
        assert got[name].shape == value.shape and got[name].dtype == value.dtype, name
        torch.testing.assert_close(got[name], value, rtol=1e-12, atol=1e-12)
    assert {name for name, _ in back.named_parameters()} == {name for name, _ in theirs.named_parameters()}
    _assert_same_run(theirs, back, _tutorial_run, _input)


# -- Synaptic and Lapicque ------------------------------------------------------------------------------------------
def test_a_trained_snn_synaptic_network_computes_the_same_with_synaptic():
    options = dict(
        alpha=_per_neuron(0.5, 0.9), beta=0.85, threshold=1.0, learn_alpha=True, learn_beta=True, learn_threshold=True
    )
    theirs = _snntorch_net(snn.Synaptic, options, synaptic=True)
    _train(theirs, _tutorial_run, _input)
    ours = from_snntorch(theirs)
    assert type(ours.lif1) is Synaptic
    torch.testing.assert_close(ours.lif1.alpha.detach(), theirs.lif1.alpha.detach())
    _assert_same_run(theirs, ours, _tutorial_run, _input)


@pytest.mark.parametrize("options", [dict(beta=0.9), dict(R=2.0, C=4.0, time_step=0.5)], ids=["beta", "R_C"])
def test_a_trained_snn_lapicque_network_computes_the_same_with_lapicque(options):
    theirs = _snntorch_net(snn.Lapicque, {**options, "threshold": 0.2, "learn_threshold": True})
    _train(theirs, _tutorial_run, _input, lr=0.01)  # (the loss raises the thresholds, which soon silence the output)
    ours = from_snntorch(theirs)
    assert type(ours.lif1) is Lapicque
    for name in ("R", "C", "time_step", "beta"):
        assert torch.equal(getattr(ours.lif1, name), getattr(theirs.lif1, name)), name
    _assert_same_run(theirs, ours, _tutorial_run, _input)


# -- state, dtype, device, sharing ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, reset_delay",
    [(snn.Leaky, True), (snn.Leaky, False), (snn.Synaptic, True), (snn.Synaptic, False), (snn.Lapicque, True)],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
def test_the_state_is_carried_so_the_copy_continues_the_sequence(cls, reset_delay):
    """A network stopped mid-sequence (the last step fired: with the delayed reset, a subtraction pending, which
    the skin recomputes from ``mem`` as snnTorch does) continues in the copy as in snnTorch (``snn.Lapicque`` always
    delays its reset)."""
    # snn.Lapicque's decay 1 - time_step / (R * C) and input gain time_step / C: 0.5 and 1, the others'
    options = dict(R=2.0, C=1.0) if cls is snn.Lapicque else dict(beta=0.5, reset_delay=reset_delay)
    if cls is snn.Synaptic:
        options["alpha"] = 0.6
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), cls(**options, init_hidden=True, output=True, spike_grad=ATAN)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(4))
        net[0].bias.zero_()
    x = torch.rand(10, 2, 4, dtype=F64) * 0.3
    x[4] = 1.2  # every neuron fires at the last step before the conversion (one subtraction is enough)
    for x_t in x[:5].unbind(0):
        out = net(x_t)
    assert out[0].all()
    assert net[1].mem.requires_grad  # mid-sequence, in a graph
    ours = from_snntorch(net)
    assert not ours[1].mem.requires_grad and net[1].mem.requires_grad
    torch.testing.assert_close(ours[1].mem, net[1].mem.detach())
    for x_t in x[5:].unbind(0):
        for got, expected in zip(ours(x_t), net(x_t), strict=True):
            torch.testing.assert_close(got, expected.detach())
    snntorch.utils.reset(ours)
    assert not ours[1].mem.any()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_copy_keeps_the_dtype(dtype):
    net = nn.Sequential(
        nn.Linear(4, 3),
        snn.Leaky(beta=0.9, learn_beta=True, learn_threshold=True),
        snn.Synaptic(alpha=0.8, beta=0.9),
        snn.Lapicque(beta=0.9),
    ).to(dtype)
    net[1](net[0](torch.rand(2, 4, dtype=dtype)))  # mid-sequence
    ours = from_snntorch(net)
    tensors = dict(ours.named_parameters()) | dict(ours.named_buffers())
    floating = {name: t.dtype for name, t in tensors.items() if t.is_floating_point() and t.numel()}
    assert set(floating.values()) == {dtype}, floating
    assert {"1.core.decay_logit", "1.core.v_threshold", "1.state_filtered", "2.threshold"} <= set(floating)
    spk, mem = ours[1](ours[0](torch.rand(2, 4, dtype=dtype)))
    assert spk.dtype == dtype


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_copy_keeps_the_device():
    net = nn.Sequential(
        nn.Linear(4, 3),
        snn.Leaky(beta=torch.linspace(0.7, 0.9, 3), learn_beta=True, learn_threshold=True),
        snn.Synaptic(alpha=0.8, beta=0.9),
        snn.Lapicque(beta=0.9),
    ).cuda()
    x = torch.rand(2, 4, device="cuda")
    for layer in net[1:]:
        layer(net[0](x))
    ours = from_snntorch(net)
    tensors = [*ours.parameters(), *ours.buffers()]
    assert {t.device.type for t in tensors} == {"cuda"}
    spk, mem = ours[1](ours[0](x))
    assert mem.is_cuda


def test_a_shared_neuron_becomes_one_skin_used_twice_and_nested_ones_are_found():
    shared = snn.Leaky(beta=0.9)
    net = nn.ModuleDict(
        {"a": nn.Sequential(nn.Linear(2, 2), shared), "b": nn.ModuleList([shared, snn.Synaptic(0.8, 0.9)])}
    )
    ours = from_snntorch(net)
    assert type(ours["a"][1]) is DecoupledLIF and ours["a"][1] is ours["b"][0]
    assert type(ours["b"][1]) is Synaptic
    assert type(from_snntorch(shared)) is DecoupledLIF  # net itself a neuron: its skin


def test_other_snntorch_neurons_and_subclasses_are_left_as_they_are():
    class MyLeaky(snn.Leaky):
        pass

    net = nn.Sequential(
        nn.Linear(3, 3),
        snn.RLeaky(beta=0.9, linear_features=3),
        snn.Leaky(beta=0.8),
        MyLeaky(beta=0.7),
        DecoupledLIF(beta=0.6),
        snn.Alpha(alpha=0.9, beta=0.8),
    )
    ours = from_snntorch(net)
    assert [type(m) for m in ours] == [nn.Linear, snn.RLeaky, DecoupledLIF, MyLeaky, DecoupledLIF, snn.Alpha]
    assert ours[1] is not net[1] and ours[4] is not net[4]  # deep copies
    torch.testing.assert_close(ours[1].recurrent.weight, net[1].recurrent.weight)


def test_snntorch_tools_take_the_converted_network():
    """``utils.reset`` and ``backprop.BPTT`` run on the copy, whose skins are snnTorch neurons to them."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(8, 16),
        snn.Leaky(beta=0.9, learn_beta=True, init_hidden=True),
        nn.Linear(16, 4),
        snn.Synaptic(alpha=0.8, beta=0.9, init_hidden=True, output=True),
    )
    ours = from_snntorch(net)
    loader = [(torch.rand(16, 8) * 2, torch.arange(16) % 4)]
    optimizer = torch.optim.Adam(ours.parameters(), lr=1e-2)  # the copy's own parameters
    before = [p.detach().clone() for p in ours.parameters()]
    snntorch.utils.reset(ours)
    loss = snntorch.backprop.BPTT(ours, loader, optimizer, SF.ce_rate_loss(), num_steps=6, time_var=False)
    assert torch.isfinite(torch.as_tensor(loss))
    assert any(not torch.equal(b, p) for b, p in zip(before, ours.parameters(), strict=True))


# -- refusals and bad input -----------------------------------------------------------------------------------------
REFUSED = {
    "reset_zero": (snn.Leaky, dict(beta=0.9, reset_mechanism="zero"), "reset_mechanism='zero' is not supported"),
    "inhibition": (snn.Leaky, dict(beta=0.9, inhibition=True), "inhibition=True is not supported"),
    "state_quant": (snn.Synaptic, dict(alpha=0.8, beta=0.9, state_quant=torch.round), "state_quant=.* not supported"),
    "learned_beta_of_1": (snn.Leaky, dict(beta=1.0, learn_beta=True), "learn_beta=True needs beta below 1"),
    "beta_above_1": (snn.Leaky, dict(beta=1.2), r"beta must be in \(0, 1\]"),
    "lapicque_learn_beta": (snn.Lapicque, dict(beta=0.9, learn_beta=True), "learn_beta=True is not supported"),
    "beta_per_element": (snn.Leaky, dict(beta=torch.rand(3, 2, 2) * 0.5 + 0.2), r"one per channel \(\[C\]"),
    "threshold_per_element": (snn.Leaky, dict(beta=0.9, threshold=torch.rand(3, 2, 2) + 0.5), "one per channel"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_an_option_the_skin_refuses_is_a_value_error_naming_the_path(case):
    cls, options, reason = REFUSED[case]
    net = nn.Sequential(nn.Linear(2, 2), snn.Leaky(beta=0.9), nn.Sequential(nn.Linear(2, 2), cls(**options)))
    before = len(snn.SpikingNeuron.instances)
    skin = SKIN_OF[cls].__name__
    with pytest.raises(ValueError, match=rf"^2\.1 \({cls.__name__}\) cannot become a {skin}: .*{reason}"):
        from_snntorch(net)
    assert len(snn.SpikingNeuron.instances) == before  # nothing built is left (the Leaky at 1 was built first)


def test_a_neuron_itself_refused_is_named_net():
    with pytest.raises(ValueError, match=r"^net \(Leaky\) cannot become a DecoupledLIF: reset_mechanism='zero'"):
        from_snntorch(snn.Leaky(beta=0.9, reset_mechanism="zero"))


def test_net_that_is_no_module_is_a_type_error():
    with pytest.raises(TypeError, match="net must be a torch.nn.Module, got list"):
        from_snntorch([snn.Leaky(beta=0.9)])


@pytest.mark.parametrize(
    "net",
    [nn.Sequential(nn.Linear(2, 2), DecoupledLIF()), nn.Sequential(snn.RLeaky(beta=0.9, all_to_all=False)), nn.ReLU()],
    ids=["skins", "rleaky", "none"],
)
def test_a_network_without_snntorch_leaky_is_refused_as_nothing_to_convert(net):
    with pytest.raises(ValueError, match=r"net \(\w+\) holds none of snnTorch's neurons that convert.*nothing"):
        from_snntorch(net)


def test_from_snntorch_is_public():
    assert "from_snntorch" in adapter.__all__ and adapter.from_snntorch is from_snntorch
