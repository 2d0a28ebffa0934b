"""``to_snntorch``: a network trained with our skins, converted back to snnTorch's own neurons, is the network the
user wrote with ``snn.Leaky`` / ``snn.Synaptic`` / ``snn.Lapicque``: its state dict loads strictly into that
network, which then computes the same spikes, membranes and gradients (float64, against snnTorch's neurons run
side by side); snnTorch's tools (NIR export, ``utils.reset``, ``backprop.BPTT``) take it."""

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
from snn_parallel.adapters.snntorch import (  # noqa: E402
    LTC,
    PRF,
    PSPLIF,
    DecoupledLIF,
    DynamicDecay,
    Lapicque,
    Synaptic,
    to_snntorch,
)

from snn_parallel.surrogate import ATan  # noqa: E402

F64 = torch.float64
INPUTS, HIDDEN, OUTPUTS, STEPS, BATCH = 5, 6, 3, 12, 4
#: snnTorch's ``atan()`` in float64 (snnTorch's own returns float32 spikes), given to both networks
ATAN = ATan(alpha=2.0, inclusive=False)


class Net(nn.Module):
    """snnTorch tutorial 5's network (Linear, neuron, Linear, neuron), its state passed by hand at each step;
    ``neuron(size)`` builds each neuron (``snn.Leaky`` or a skin, ``snn.Synaptic`` / ``Synaptic``)."""

    def __init__(self, neuron, synaptic=False):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(INPUTS, HIDDEN)
        self.lif1 = neuron(HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, OUTPUTS)
        self.lif2 = neuron(OUTPUTS)
        self.synaptic = synaptic
        with torch.no_grad():  # excitatory weights: both layers fire
            self.fc1.weight.abs_().mul_(2)
            self.fc2.weight.abs_().mul_(2)

    def forward(self, x):
        self.lif1.reset_mem()  # as the tutorials start each batch at rest
        self.lif2.reset_mem()
        states1, states2 = ((None, None), (None, None)) if self.synaptic else ((None,), (None,))
        spikes, mems = [], []
        for x_t in x.unbind(0):
            spk1, *states1 = self.lif1(self.fc1(x_t), *states1)
            spk2, *states2 = self.lif2(self.fc2(spk1), *states2)
            spikes.append(spk2)
            mems.append(torch.cat([states1[-1], states2[-1]], dim=1))
        return torch.stack(spikes), torch.stack(mems)


def _input(seed=1, requires_grad=False):
    torch.manual_seed(seed)
    return (torch.rand(STEPS, BATCH, INPUTS, dtype=F64) * 1.5).requires_grad_(requires_grad)


def _loss(spikes, mems):
    weights = torch.linspace(-1, 1, spikes.shape[0], dtype=F64).view(-1, 1, 1)
    return (spikes * weights).sum() + 0.05 * (mems**2).sum()


def _train(net, steps=4, lr=0.05):
    """A few Adam steps, so every learned value moves away from its initial one."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    for seed in range(steps):
        optimizer.zero_grad()
        _loss(*net(_input(seed + 10))).backward()
        optimizer.step()


def _per_neuron(low, high):
    return lambda size: torch.linspace(low, high, size, dtype=F64)


def _value(value, size):
    return value(size) if callable(value) else value


#: snn.Leaky's options, each a network of neurons built with them: (learned values, reset)
LEAKY_CASES = {
    "learned_scalar": dict(beta=0.9, threshold=1.0, learn_beta=True, learn_threshold=True),
    "learned_per_neuron": dict(
        beta=_per_neuron(0.6, 0.95), threshold=_per_neuron(0.7, 1.3), learn_beta=True, learn_threshold=True
    ),
    "fixed_per_neuron": dict(beta=_per_neuron(0.6, 0.95), threshold=_per_neuron(0.7, 1.3)),
    "learned_graded_spikes": dict(beta=0.85, graded_spikes_factor=1.5, learn_graded_spikes_factor=True),
    "no_reset": dict(beta=0.9, threshold=0.8, learn_beta=True, learn_threshold=True, reset_mechanism="none"),
    "no_reset_undelayed": dict(beta=0.9, learn_threshold=True, reset_mechanism="none", reset_delay=False),
}


def _pair(cls_ours, cls_theirs, options, synaptic=False):
    """The same network written with our skin and with snnTorch's neuron, in float64."""

    def build(cls):
        return lambda size: cls(**{name: _value(value, size) for name, value in options.items()}, spike_grad=ATAN)

    return Net(build(cls_ours), synaptic).double(), Net(build(cls_theirs), synaptic).double()


def _assert_same_run(ours, theirs, gradients=True):
    """The two networks' spikes, membranes and (``gradients``) the gradients of the input and of every parameter
    of ``theirs`` that ``ours`` has under the same name, after the same loss."""
    ours.zero_grad(set_to_none=True)
    theirs.zero_grad(set_to_none=True)
    x_ours, x_theirs = _input(2, True), _input(2, True)
    spikes_ours, mems_ours = ours(x_ours)
    spikes_theirs, mems_theirs = theirs(x_theirs)
    assert spikes_theirs.sum() > 0  # the case fires
    torch.testing.assert_close(spikes_theirs.to(F64), spikes_ours.to(F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(mems_theirs, mems_ours, rtol=1e-10, atol=1e-10)
    if not gradients:
        return
    _loss(spikes_ours, mems_ours).backward()
    _loss(spikes_theirs.to(F64), mems_theirs).backward()
    torch.testing.assert_close(x_theirs.grad, x_ours.grad, rtol=1e-9, atol=1e-10)
    ours_parameters = dict(ours.named_parameters())
    for name, parameter in theirs.named_parameters():
        if name in ours_parameters:  # the Linears' weights, a learned threshold and graded spikes factor
            torch.testing.assert_close(parameter.grad, ours_parameters[name].grad, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("case", list(LEAKY_CASES))
def test_a_network_trained_with_decoupled_lif_loads_into_the_snn_leaky_network(case):
    """The point of ``to_snntorch``: train with the skin, hand the weights to the network written with
    ``snn.Leaky``, which loads them strictly and computes what ours does."""
    ours, original = _pair(DecoupledLIF, snn.Leaky, LEAKY_CASES[case])
    _train(ours)
    before = copy.deepcopy(ours.state_dict())
    converted = to_snntorch(ours)
    assert type(converted.lif1) is snn.Leaky and type(converted.lif2) is snn.Leaky
    assert isinstance(ours.lif1, DecoupledLIF)  # net itself is untouched
    for name, value in ours.state_dict().items():
        assert torch.equal(value, before[name]), name
    result = original.load_state_dict(converted.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for name, parameter in original.named_parameters():  # the learned values are the trained ones
        if name.endswith("threshold"):
            torch.testing.assert_close(parameter.detach(), getattr(ours, name.split(".")[0]).threshold.detach())
    _assert_same_run(ours, original)
    _assert_same_run(ours, converted)


def test_a_learned_decay_becomes_snntorch_beta_with_the_chain_rule_gradient():
    r"""snnTorch learns :math:`\beta` itself, the skin :math:`w` with :math:`\beta = \sigma(w)`: the converted
    network's :math:`\partial L/\partial\beta` times :math:`\beta(1-\beta)` is the skin's :math:`\partial L/\partial
    w`, for one learned value and one per neuron."""
    for options in (LEAKY_CASES["learned_scalar"], LEAKY_CASES["learned_per_neuron"]):
        ours, _ = _pair(DecoupledLIF, snn.Leaky, options)
        _train(ours)
        converted = to_snntorch(ours)
        ours.zero_grad(set_to_none=True)
        converted.zero_grad(set_to_none=True)
        _loss(*ours(_input(3))).backward()
        _loss(*converted(_input(3))).backward()
        for name in ("lif1", "lif2"):
            beta = getattr(converted, name).beta
            logit = getattr(ours, name).core.decay_logit
            assert beta.shape == getattr(ours, name).beta.shape
            torch.testing.assert_close(beta.grad * beta.detach() * (1 - beta.detach()), logit.grad, rtol=1e-9, atol=0)


def test_the_undelayed_reset_fires_and_integrates_as_the_snn_leaky_network():
    """``reset_delay=False``: the same spikes and ``mem`` (snnTorch also backpropagates through the reset's spike,
    which the skin detaches, so gradients are not compared)."""
    ours, original = _pair(DecoupledLIF, snn.Leaky, dict(beta=0.5, threshold=2.0, reset_delay=False))
    converted = to_snntorch(ours)
    assert converted.lif1.reset_delay is False
    original.load_state_dict(converted.state_dict())
    _assert_same_run(ours, original, gradients=False)


def test_the_default_spike_grad_and_options_are_carried():
    neuron = DecoupledLIF(beta=0.7, threshold=0.5, init_hidden=True, output=True, reset_mechanism="none")
    twin = to_snntorch(neuron)  # a skin itself: the snnTorch neuron
    assert type(twin) is snn.Leaky
    assert (twin.init_hidden, twin.output, twin.reset_mechanism, twin.reset_delay) == (True, True, "none", True)
    assert twin.spike_grad.__name__ == neuron.spike_grad.__name__  # a copy of snnTorch's default atan()
    x = torch.rand(8, 2, 4) * 0.8
    for x_t in x.unbind(0):
        spk, mem = neuron(x_t)
        spk_twin, mem_twin = twin(x_t)
        torch.testing.assert_close(spk_twin, spk)
        torch.testing.assert_close(mem_twin, mem)


def test_synaptic_converts_to_snn_synaptic():
    options = dict(
        alpha=_per_neuron(0.5, 0.9), beta=0.85, threshold=1.0, learn_alpha=True, learn_beta=True, learn_threshold=True
    )
    ours, original = _pair(Synaptic, snn.Synaptic, options, synaptic=True)
    _train(ours)
    converted = to_snntorch(ours)
    assert type(converted.lif1) is snn.Synaptic
    original.load_state_dict(converted.state_dict(), strict=True)
    assert original.lif1.alpha.shape == (HIDDEN,) and original.lif1.beta.dim() == 0
    _assert_same_run(ours, original)


@pytest.mark.parametrize("options", [dict(beta=0.9), dict(R=2.0, C=4.0, time_step=0.5)], ids=["beta", "R_C"])
def test_lapicque_converts_to_snn_lapicque(options):
    ours, original = _pair(Lapicque, snn.Lapicque, {**options, "threshold": 0.2, "learn_threshold": True})
    _train(ours, lr=0.01)  # (the loss raises the thresholds, which soon silence the output layer)
    converted = to_snntorch(ours)
    assert type(converted.lif1) is snn.Lapicque
    original.load_state_dict(converted.state_dict(), strict=True)
    for name in ("R", "C", "time_step", "beta"):
        assert torch.equal(getattr(converted.lif1, name), getattr(ours.lif1, name))
    _assert_same_run(ours, original)


@pytest.mark.parametrize("reset_delay", [True, False])
def test_the_state_is_carried_so_the_copy_continues_the_sequence(reset_delay):
    """A network stopped mid-sequence (the last step fired: with the delayed reset, a subtraction pending) continues
    in the copy as it continues in ours, and ``utils.reset`` starts the copy at rest."""
    torch.manual_seed(0)
    x = torch.rand(10, 2, 4, dtype=F64) * 0.4
    x[4] = 1.5  # every neuron fires at the last step before the conversion (one subtraction is enough)
    net = nn.Sequential(nn.Linear(4, 4), DecoupledLIF(beta=0.5, reset_delay=reset_delay, init_hidden=True, output=True))
    net = net.double()
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(4))
        net[0].bias.zero_()
        for x_t in x[:5].unbind(0):
            net(x_t)
    converted = to_snntorch(net)
    torch.testing.assert_close(converted[1].mem, net[1].mem)
    for x_t in x[5:].unbind(0):
        spk, mem = net(x_t)
        spk_twin, mem_twin = converted(x_t)
        torch.testing.assert_close(spk_twin.to(F64), spk)  # snnTorch's atan() returns float32 spikes
        torch.testing.assert_close(mem_twin, mem)
    snntorch.utils.reset(converted)
    assert not converted[1].mem.any()


def test_a_state_carrying_a_graph_is_copied_detached_and_net_keeps_its_own():
    net = nn.Sequential(nn.Linear(4, 3), DecoupledLIF(beta=0.9, init_hidden=True), nn.Linear(3, 2))
    net.append(snn.Leaky(beta=0.8, init_hidden=True))  # snnTorch's own neuron, its mem in a graph too
    net(torch.rand(2, 4))
    assert net[1].mem.requires_grad and net[3].mem.requires_grad
    converted = to_snntorch(net)
    assert not converted[1].mem.requires_grad and not converted[3].mem.requires_grad
    assert net[1].mem.requires_grad  # ours still in its graph
    torch.testing.assert_close(converted[1].mem, net[1].mem.detach())
    assert converted[0].weight is not net[0].weight


def test_nested_and_shared_skins_are_replaced_everywhere():
    shared = DecoupledLIF(beta=0.9)
    net = nn.ModuleDict({"a": nn.Sequential(nn.Linear(2, 2), shared), "b": nn.ModuleList([shared, Synaptic()])})
    converted = to_snntorch(net)
    assert type(converted["a"][1]) is snn.Leaky and converted["a"][1] is converted["b"][0]
    assert type(converted["b"][1]) is snn.Synaptic


def test_feature_maps_get_per_channel_values_shaped_for_snntorch_broadcasting():
    """A per-channel threshold the core holds as ``[C]``, on a layer run on ``[B, C, H, W]``, becomes ``[C, 1, 1]``
    (snnTorch broadcasts elementwise)."""
    torch.manual_seed(0)
    neuron = DecoupledLIF(beta=0.8, threshold=torch.linspace(0.5, 1.5, 3, dtype=F64), learn_threshold=True).double()
    x = torch.rand(6, 2, 3, 4, 4, dtype=F64) * 1.5
    spikes, mems = neuron.multistep(x)
    twin = to_snntorch(neuron)
    assert twin.threshold.shape == (3, 1, 1)
    twin.reset_mem()  # it holds the state at the sequence end
    for t, x_t in enumerate(x.unbind(0)):
        spk, mem = twin(x_t)
        torch.testing.assert_close(spk.to(F64), spikes[t])  # snnTorch's atan() returns float32 spikes
        torch.testing.assert_close(mem, mems[t])


def test_a_lazy_skin_not_yet_run_converts_with_its_initial_values():
    twin = to_snntorch(DecoupledLIF(beta=0.9, threshold=torch.tensor([0.5, 1.0, 1.5]), learn_threshold=True))
    assert isinstance(twin.threshold, nn.Parameter)
    torch.testing.assert_close(twin.threshold.detach(), torch.tensor([0.5, 1.0, 1.5]))
    torch.testing.assert_close(twin.beta, torch.tensor(0.9))


THRESHOLDS = {
    "per_channel_maps": lambda: torch.linspace(0.5, 1.0, 3).reshape(3, 1, 1),
    "equal_maps": lambda: torch.full((3, 1, 1), 0.75),
    "per_channel": lambda: torch.linspace(0.5, 1.0, 3),
    "equal": lambda: torch.full((3,), 0.75),
    "one_entry": lambda: torch.tensor([0.75]),
    "zero_dim": lambda: torch.tensor(0.75),
    "number": lambda: 0.75,
}
TWINS = [(DecoupledLIF, snn.Leaky, {"beta": 0.8}), (Synaptic, snn.Synaptic, {"alpha": 0.7, "beta": 0.8})]
TWINS.append((Lapicque, snn.Lapicque, {"beta": 0.9}))


@pytest.mark.parametrize("threshold", list(THRESHOLDS))
@pytest.mark.parametrize("learn_threshold", [False, True], ids=["fixed", "learned"])
@pytest.mark.parametrize("features", [None, 3], ids=["lazy", "sized"])
@pytest.mark.parametrize("skin, cls, options", TWINS, ids=["Leaky", "Synaptic", "Lapicque"])
def test_a_fresh_skin_converts_to_the_snntorch_neuron_built_the_same_way(
    skin, cls, options, features, learn_threshold, threshold
):
    """Never run, the skin becomes the neuron snnTorch builds from the same arguments: its state dict has the same
    keys, shapes (the threshold in the shape given) and values, and each loads strictly into the other."""
    made = THRESHOLDS[threshold]
    twin = to_snntorch(skin(features, **options, threshold=made(), learn_threshold=learn_threshold))
    reference = cls(**options, threshold=made(), learn_threshold=learn_threshold)
    expected, got = reference.state_dict(), twin.state_dict()
    assert {name: value.shape for name, value in got.items()} == {name: value.shape for name, value in expected.items()}
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-6, atol=0)  # (a decay through its logit)
    assert isinstance(twin.threshold, nn.Parameter) == learn_threshold
    twin.load_state_dict(expected, strict=True)
    reference.load_state_dict(got, strict=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_copy_keeps_the_dtype(dtype):
    net = nn.Sequential(nn.Linear(4, 3), DecoupledLIF(beta=0.9, learn_beta=True, learn_threshold=True))
    net.append(Synaptic(alpha=0.8, beta=0.9))
    net = net.to(dtype)
    converted = to_snntorch(net)
    tensors = dict(converted.named_parameters()) | dict(converted.named_buffers())
    floating = {name: t.dtype for name, t in tensors.items() if t.is_floating_point() and t.numel()}
    assert set(floating.values()) == {dtype}, floating
    assert {"1.beta", "1.threshold", "2.alpha", "2.beta"} <= set(floating)
    x = converted[0](torch.rand(2, 4, dtype=dtype))
    _, mem = converted[1](x)
    # the dtype snn.Leaky itself computes in this dtype (float32: its atan() returns float32 spikes, whatever the
    # dtype, and the reset subtracts them)
    assert mem.dtype == snn.Leaky(beta=torch.tensor(0.9), threshold=torch.tensor(1.0)).to(dtype)(x)[1].dtype


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_copy_keeps_the_device():
    net = nn.Sequential(
        nn.Linear(4, 3),
        DecoupledLIF(beta=torch.linspace(0.7, 0.9, 3), learn_beta=True, learn_threshold=True),
        Synaptic(alpha=0.8, beta=0.9),
        Lapicque(beta=0.9),
    ).cuda()
    x = torch.rand(2, 4, device="cuda")
    for layer in net[1:]:
        layer(net[0](x))
    converted = to_snntorch(net)
    tensors = [*converted.parameters(), *converted.buffers()]
    assert {t.device.type for t in tensors} == {"cuda"}
    spk, mem = converted[1](converted[0](x))
    assert mem.is_cuda


def test_snntorch_tools_take_the_converted_network():
    """``utils.reset`` and ``backprop.BPTT`` run on the copy (they need snnTorch's own classes)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(8, 16),
        DecoupledLIF(beta=0.9, learn_beta=True, init_hidden=True),
        nn.Linear(16, 4),
        Synaptic(alpha=0.8, beta=0.9, init_hidden=True, output=True),
    )
    converted = to_snntorch(net)
    loader = [(torch.rand(16, 8) * 2, torch.arange(16) % 4)]
    optimizer = torch.optim.Adam(converted.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in converted.parameters()]
    snntorch.utils.reset(converted)
    loss = snntorch.backprop.BPTT(converted, loader, optimizer, SF.ce_rate_loss(), num_steps=6, time_var=False)
    assert torch.isfinite(torch.as_tensor(loss))
    assert any(not torch.equal(b, p) for b, p in zip(before, converted.parameters(), strict=True))


def test_nir_export_of_the_converted_network_is_the_original_network_s():
    pytest.importorskip("nir")
    pytest.importorskip("nirtorch")
    export_nir = pytest.importorskip("snntorch.export_nir")

    def net(leaky, synaptic, **learn):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Linear(6, 5),
            leaky(beta=torch.linspace(0.6, 0.9, 5), threshold=torch.full((5,), 0.7), init_hidden=True, **learn),
            nn.Linear(5, 4),
            # per neuron, as snnTorch's exporter needs for the graph's shapes to match
            synaptic(
                alpha=torch.full((4,), 0.8),
                beta=torch.linspace(0.7, 0.9, 4),
                threshold=torch.ones(4),
                init_hidden=True,
                output=True,
            ),
        )

    ours = net(DecoupledLIF, Synaptic, learn_beta=True)
    _train_once = torch.optim.SGD(ours.parameters(), lr=0.1)
    ours[3](ours[2](ours[1](ours[0](torch.rand(3, 6) * 3))))[0].sum().backward()
    _train_once.step()
    original = net(snn.Leaky, snn.Synaptic, learn_beta=True)
    converted = to_snntorch(ours)
    original.load_state_dict(converted.state_dict())
    sample = torch.rand(6)  # unbatched: snnTorch 1.0.0's exporter with nir >= 1.0.5 refuses a batch of one
    try:
        reference = export_nir.export_to_nir(original, sample)
    except ValueError as error:  # snnTorch 1.0.0's exporter against nir >= 1.0.5
        pytest.skip(f"snnTorch's NIR exporter fails on snnTorch's own network here: {error}")
    exported = export_nir.export_to_nir(converted, sample)
    assert set(exported.nodes) == set(reference.nodes)
    for name, node in reference.nodes.items():
        assert type(exported.nodes[name]) is type(node)
        for field, value in vars(node).items():
            if isinstance(getattr(value, "shape", None), tuple):
                torch.testing.assert_close(
                    torch.as_tensor(getattr(exported.nodes[name], field)), torch.as_tensor(value)
                )


# -- bad input ------------------------------------------------------------------------------------
def test_net_that_is_no_module_is_a_type_error():
    with pytest.raises(TypeError, match="net must be a torch.nn.Module, got list"):
        to_snntorch([DecoupledLIF()])


def test_a_network_without_skins_is_refused_as_nothing_to_convert():
    with pytest.raises(ValueError, match=r"net \(Sequential\) holds no skin .* nothing to convert"):
        to_snntorch(nn.Sequential(nn.Linear(2, 2), snn.Leaky(beta=0.9)))


@pytest.mark.parametrize("cls", [DynamicDecay, PRF, LTC, PSPLIF], ids=lambda c: c.__name__)
def test_a_skin_without_snntorch_equivalent_is_refused_naming_its_path(cls):
    net = nn.Sequential(nn.Linear(2, 2), DecoupledLIF(), nn.Sequential(nn.Linear(2, 2), cls()))
    before = len(snn.SpikingNeuron.instances)
    with pytest.raises(ValueError, match=rf"^2\.1 \({cls.__name__}\) cannot become an snnTorch neuron: no snnTorch"):
        to_snntorch(net)
    assert len(snn.SpikingNeuron.instances) == before  # nothing built before the refusal


def test_options_snntorch_cannot_express_are_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"^net \(DecoupledLIF\) cannot .* its mem is 'reset_free'"):
        to_snntorch(DecoupledLIF(mem="reset_free"))
    neuron = DecoupledLIF(beta=0.9)
    neuron.core.decay_input = True
    with pytest.raises(ValueError, match=r"lif \(DecoupledLIF\) cannot .*\(decay_input=True\)"):
        to_snntorch(nn.ModuleDict({"lif": neuron}))


def test_to_snntorch_is_public():
    assert "to_snntorch" in adapter.__all__ and adapter.to_snntorch is to_snntorch
