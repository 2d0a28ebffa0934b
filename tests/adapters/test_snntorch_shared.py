"""A learned scalar on the snnTorch skins is snnTorch's: ``learn_beta``, ``learn_alpha`` and ``learn_threshold`` with
one number learn one value for the layer (a 0-d parameter, the core's ``"shared"``), as ``snn.Leaky`` and
``snn.Synaptic`` learn ``nn.Parameter(value)``; a per-neuron tensor learns one per neuron. Against snnTorch in float64:
the parameters' shapes, the values read back, assigned and carried by state dicts, the gradients and optimizer steps
(snnTorch's decay parametrized as the sigmoid the cores learn it by), ``backprop.BPTT`` and the learners' trainers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

snn = pytest.importorskip("snntorch")
import snntorch.backprop  # noqa: E402
import snntorch.functional as SF  # noqa: E402
import snntorch.utils  # noqa: E402
from learner_support import assert_close_dicts, digits_like, trainer_gradients, wide  # noqa: E402
from snn_parallel.adapters.snntorch import PRF, DecoupledLIF, DynamicDecay, Synaptic  # noqa: E402
from test_snntorch_no_reset import _input, _layers, _loss, _multistep_run, _step_run  # noqa: E402
from test_snntorch_synaptic import _detached_reset_reference  # noqa: E402
from test_snntorch_synaptic import _input as _synaptic_input  # noqa: E402
from test_snntorch_synaptic import _layers as _synaptic_layers  # noqa: E402
from test_snntorch_synaptic import _loss as _synaptic_loss  # noqa: E402
from test_snntorch_synaptic import _multistep_run as _synaptic_multistep  # noqa: E402
from test_snntorch_synaptic import _step_run as _synaptic_steps  # noqa: E402

from snn_parallel.learners import BPTTTrainer, HYPRTrainer, OTTTTrainer, StepLoss  # noqa: E402
from snn_parallel.surrogate import ATan  # noqa: E402

F64 = torch.float64
C = 6
#: snnTorch's name of each learned parameter -> the skin's core parameter (a decay is learned as its logit)
CORE_NAMES = {"beta": "core.decay_logit", "alpha": "core.syn_decay_logit", "threshold": "core.v_threshold"}
LEAKY = {"beta": 0.8, "learn_beta": True, "threshold": 0.9, "learn_threshold": True}
SYNAPTIC = {"alpha": 0.7, "learn_alpha": True, **LEAKY}


class _Sigmoid(nn.Module):
    """A decay parametrized as :math:`\\sigma(w)`, the skins' cores' parametrization, so that snnTorch's neuron and
    the skin learn the same parameter :math:`w` and an optimizer step is the same step in both."""

    def forward(self, logit: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logit)

    def right_inverse(self, decay: torch.Tensor) -> torch.Tensor:
        return torch.logit(decay)


def _as_logits(neuron: nn.Module) -> nn.Module:
    """snnTorch's ``neuron`` with its learned decays (``beta``, ``alpha``) parametrized as :class:`_Sigmoid`."""
    for name in ("alpha", "beta"):
        if isinstance(getattr(neuron, name, None), nn.Parameter):
            parametrize.register_parametrization(neuron, name, _Sigmoid())
    return neuron


def _skin_name(name: str) -> str:
    """The skin's parameter for snnTorch's parameter ``name`` (``1.beta`` or
    ``1.parametrizations.beta.original`` -> ``1.core.decay_logit``)."""
    prefix, _, last = name.replace("parametrizations.", "").replace(".original", "").rpartition(".")
    return f"{prefix}.{CORE_NAMES.get(last, last)}".lstrip(".")


def _chain(name: str, skin: nn.Module, grad: torch.Tensor) -> torch.Tensor:
    r"""The skin's gradient of parameter ``name`` as snnTorch's of the decay it is the logit of:
    :math:`\partial L/\partial\beta = (\partial L/\partial w) / (\beta (1 - \beta))` (others as they are)."""
    if name.endswith("logit"):
        decay = torch.sigmoid(skin.get_parameter(name).detach())
        return grad / (decay * (1 - decay))
    return grad


# -- the parameters, read back, assigned, carried by state dicts --------------------------------------------
@pytest.mark.parametrize(
    "skin, reference",
    [
        (lambda: DecoupledLIF(C, **LEAKY), lambda: snn.Leaky(**LEAKY)),
        (lambda: Synaptic(C, **SYNAPTIC), lambda: snn.Synaptic(**SYNAPTIC)),
        (
            lambda: PRF(C, threshold=0.9, learn_threshold=True),
            lambda: snn.Leaky(0.5, threshold=0.9, learn_threshold=True),
        ),
        (
            lambda: DynamicDecay(C, threshold=0.9, learn_threshold=True),
            lambda: snn.Leaky(0.5, threshold=0.9, learn_threshold=True),
        ),
    ],
    ids=["DecoupledLIF", "Synaptic", "PRF", "DynamicDecay"],
)
def test_a_learned_number_is_one_parameter_as_in_snntorch(skin, reference):
    """Each learned number is one 0-d parameter, as snnTorch's; read back 0-d with the value given, the threshold
    being the core's parameter itself (the one an optimizer trains)."""
    neuron, theirs = skin(), reference()
    learned = {name: tuple(p.shape) for name, p in neuron.named_parameters() if name in CORE_NAMES.values()}
    assert learned == {CORE_NAMES[name]: tuple(p.shape) for name, p in theirs.named_parameters()}
    assert set(learned.values()) == {()}
    assert neuron.threshold is neuron.core.v_threshold and isinstance(neuron.threshold, nn.Parameter)
    assert neuron.threshold.item() == pytest.approx(0.9) and "threshold=learned 0.9" in repr(neuron)
    for name in ("alpha", "beta"):
        if CORE_NAMES[name] in learned:
            value = getattr(neuron, name)
            assert value.shape == getattr(theirs, name).shape == ()
            assert value.item() == pytest.approx(getattr(theirs, name).item())
            value.backward()  # the decay read back is the learned parameter's sigmoid, with its gradient
            assert neuron.get_parameter(CORE_NAMES[name]).grad.item() == pytest.approx(
                value.item() * (1 - value.item())
            )
    out = neuron(torch.rand(3, C) * 2)
    (out[0].sum() + out[-1].sum()).backward()
    assert neuron.threshold.grad.shape == ()


def test_a_per_neuron_tensor_learns_one_value_per_neuron_as_in_snntorch():
    """A per-neuron tensor, even of equal entries, is one parameter per neuron, as ``nn.Parameter(tensor)`` is; a
    tensor of one entry is one value for the layer, read back in its shape (the regression tutorial's readout,
    ``snn.Leaky(beta=torch.rand(1), learn_beta=True)``)."""
    beta, threshold = torch.full((C,), 0.8), torch.full((C,), 0.9)
    per_neuron = DecoupledLIF(beta=beta, threshold=threshold, learn_beta=True, learn_threshold=True)
    per_neuron(torch.rand(2, C))
    theirs = snn.Leaky(beta=beta, threshold=threshold, learn_beta=True, learn_threshold=True)
    assert per_neuron.beta.shape == theirs.beta.shape == (C,) and per_neuron.threshold.shape == (C,)
    assert {tuple(p.shape) for p in per_neuron.parameters()} == {(C,)}
    synaptic = Synaptic(C, alpha=torch.full((C,), 0.7), learn_alpha=True, learn_beta=True, beta=0.8)
    assert synaptic.core.syn_decay_logit.shape == (C,) and synaptic.core.decay_logit.shape == ()
    one = torch.tensor([0.6])
    readout = DecoupledLIF(beta=one, learn_beta=True, reset_mechanism="none")
    assert (
        readout.core.decay_logit.shape == () and readout.beta.shape == snn.Leaky(beta=one, learn_beta=True).beta.shape
    )
    torch.testing.assert_close(readout.beta, one)


def test_a_lazy_skin_holds_its_learned_numbers_before_the_first_input():
    """The shared parameters exist before the channel count is known: an optimizer built then trains them."""
    neuron = DecoupledLIF(**LEAKY)
    optimizer = torch.optim.SGD(neuron.parameters(), lr=0.5)
    before = [p.detach().clone() for p in neuron.parameters()]
    assert [p.shape for p in before] == [(), ()]
    outputs = [neuron(x_t) for x_t in torch.rand(3, 4, C) * 2]
    sum(spk.sum() + mem.sum() for spk, mem in outputs).backward()
    optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, neuron.parameters(), strict=True))
    assert neuron.core.features == C and neuron.beta.shape == ()


@pytest.mark.parametrize("make", [lambda: DecoupledLIF(C, **LEAKY), lambda: Synaptic(C, **SYNAPTIC)])
def test_assigning_a_number_retunes_the_learned_parameter_in_place_and_a_per_neuron_tensor_is_refused(make):
    """A number (or a tensor of one value) assigned to a learned number is copied into its parameter, which stays
    the one an optimizer holds (snnTorch refuses any assignment to a parameter but a new ``nn.Parameter``); a
    per-neuron tensor of different values, which one value cannot hold, is a ``ValueError`` naming the attribute;
    the neuron keeps its values."""
    neuron = make()
    names = [name for name in ("alpha", "beta", "threshold") if hasattr(type(neuron), name)]
    parameters = dict(neuron.named_parameters())
    for i, name in enumerate(names):
        value = 0.55 + 0.1 * i
        setattr(neuron, name, value)
        assert getattr(neuron, name).shape == () and getattr(neuron, name).item() == pytest.approx(value)
        setattr(neuron, name, torch.tensor([value + 0.05]))
        assert getattr(neuron, name).item() == pytest.approx(value + 0.05)
        with pytest.raises(ValueError, match=rf"^{name} is learned as one value for all neurons .*learn_{name}=True"):
            setattr(neuron, name, torch.linspace(0.3, 0.6, C))
        assert getattr(neuron, name).item() == pytest.approx(value + 0.05)
    assert dict(neuron.named_parameters()) == parameters  # the same parameters, trained in place
    with pytest.raises(ValueError, match="beta must be in"):
        neuron.beta = 1.5


@pytest.mark.parametrize(
    "skin, reference",
    [
        (lambda: DecoupledLIF(C, learn_beta=True, learn_threshold=True), lambda: snn.Leaky(**LEAKY)),
        (
            lambda: Synaptic(C, learn_alpha=True, learn_beta=True, learn_threshold=True),
            lambda: snn.Synaptic(**SYNAPTIC),
        ),
    ],
    ids=["Leaky", "Synaptic"],
)
def test_state_dicts_of_learned_numbers_go_to_and_from_snntorch(skin, reference):
    """``snn.Leaky(beta=0.8, learn_beta=True, learn_threshold=True)``'s state dict (``snn.Synaptic``'s with
    ``learn_alpha`` too), its values moved from those given, loads into the skin built with learned numbers: its learned
    values are snnTorch's, 0-d; the skin's state dict carries the learned threshold back to snnTorch's neuron (the
    decays stay the core's logits). A per-neuron tensor for a learned number is refused, naming it, as snnTorch
    refuses it."""
    theirs, ours = reference(), skin()
    with torch.no_grad():
        for value in theirs.parameters():
            value.mul_(0.9)
    ours.load_state_dict(theirs.state_dict())
    for name, value in theirs.named_parameters():
        assert getattr(ours, name).shape == value.shape == ()
        assert getattr(ours, name).item() == pytest.approx(value.item(), rel=1e-6)
    assert ours.threshold is ours.core.v_threshold
    back = reference()
    back.load_state_dict(ours.state_dict(), strict=False)
    assert back.threshold.item() == ours.threshold.item() != reference().threshold.item()
    for name, _ in theirs.named_parameters():
        per_neuron = torch.linspace(0.5, 0.7, C)
        with pytest.raises(ValueError, match=rf"^{name} is learned as one value for all neurons"):
            ours.load_state_dict({**theirs.state_dict(), name: per_neuron})
        with pytest.raises(RuntimeError, match=rf"size mismatch for {name}"):  # snnTorch's own refusal
            theirs.load_state_dict({**theirs.state_dict(), name: per_neuron})


# -- gradients and optimizer steps against snnTorch in float64 ----------------------------------------------
def _same_parameters(reference: nn.Module, ours: nn.Module) -> None:
    """Give ``ours`` the values of ``reference``'s parameters (a decay's logit to the core's logit), checking that
    they correspond one to one, in snnTorch's shapes."""
    mapped = {_skin_name(name): value for name, value in reference.named_parameters()}
    assert {name: value.shape for name, value in mapped.items()} == {n: p.shape for n, p in ours.named_parameters()}
    with torch.no_grad():
        for name, value in mapped.items():
            ours.get_parameter(name).copy_(value)


def _assert_same_grads(reference: nn.Module, ours: nn.Module) -> None:
    for name, value in reference.named_parameters():
        mine = _skin_name(name)
        torch.testing.assert_close(ours.get_parameter(mine).grad, value.grad, msg=mine)


def _train_alike(reference, ours, runs, loss, x, steps: int = 4) -> list[float]:
    """``steps`` Adam steps of both networks (``runs``: how each is run on ``x``, ``loss`` of its outputs), the
    gradients the same at each step, and the parameters after each step; returns the losses."""
    optimizers = [torch.optim.Adam(net.parameters(), lr=0.02) for net in (reference, ours)]
    losses = []
    for _ in range(steps):
        values = []
        for net, run, optimizer in zip((reference, ours), runs, optimizers, strict=True):
            optimizer.zero_grad()
            value = loss(run(net, x))
            value.backward()
            values.append(value)
        torch.testing.assert_close(values[1], values[0])
        _assert_same_grads(reference, ours)
        for optimizer in optimizers:
            optimizer.step()
        for name, value in reference.named_parameters():
            torch.testing.assert_close(ours.get_parameter(_skin_name(name)), value, msg=name)
        losses.append(values[0].item())
    return losses


def _float64(**values: float) -> dict[str, torch.Tensor]:
    """Float64 tensors of ``values``, new ones at each call (snnTorch's ``nn.Parameter(tensor)`` shares the tensor
    given: neurons built from one tensor would train one value)."""
    return {name: torch.tensor(value, dtype=F64) for name, value in values.items()}


@pytest.mark.parametrize("reset", ["none", "subtract"])
@pytest.mark.parametrize("run", [_step_run, _multistep_run], ids=["forward", "multistep"])
def test_gradients_and_optimizer_steps_are_snn_leakys(run, reset):
    r"""``snn.Leaky(beta=0.8, learn_beta=True, threshold=0.9, learn_threshold=True)`` and the skin, without a reset
    and with snnTorch's default one (one step later, its spike detached): the same parameters in shape, and over
    Adam steps, step by step and through ``multistep``, the same losses, gradients (the weights', the shared
    ``beta``'s and threshold's) and parameters, snnTorch's ``beta`` parametrized as the core's :math:`\sigma(w)`.
    snnTorch's ``atan()`` is ours here, in float64 (its own gives float32 spikes); ``test_snntorch_no_reset``
    compares the plain ``beta``'s gradient through the chain rule."""
    learned = {
        "learn_beta": True,
        "learn_threshold": True,
        "reset_mechanism": reset,
        "spike_grad": ATan(2.0, inclusive=False),
    }
    reference = _layers(lambda n: _as_logits(snn.Leaky(**_float64(beta=0.8, threshold=0.9), **learned)))
    ours = _layers(lambda n: DecoupledLIF(n, **{**LEAKY, **learned}))
    _same_parameters(reference, ours)
    x = _input()
    for spk, _ in _step_run(reference, x):
        assert 0.05 < spk.mean() < 0.95
    losses = _train_alike(reference, ours, (_step_run, run), _loss, x)
    assert losses[-1] < losses[0]
    assert ours[1].beta.shape == ours[1].threshold.shape == ()


@pytest.mark.parametrize("run", [_synaptic_steps, _synaptic_multistep], ids=["forward", "multistep"])
def test_synaptic_learned_numbers_train_as_snn_synaptics(run):
    """``snn.Synaptic(alpha=0.7, beta=0.8, threshold=0.9)`` with all three learned: without a reset the skin's
    gradients and Adam steps are snnTorch's (its decays parametrized as the core's sigmoids); with a reset the
    gradients are those of the second-order LIF with the reset's spike detached, :math:`\\beta`'s through the membrane
    after the reset step by step (snnTorch's form) and through the reset-free membrane in ``multistep``."""
    learned = {
        "learn_alpha": True,
        "learn_beta": True,
        "learn_threshold": True,
        "spike_grad": ATan(2.0, inclusive=False),
    }
    reference = _synaptic_layers(
        lambda n: _as_logits(
            snn.Synaptic(**_float64(alpha=0.7, beta=0.8, threshold=0.9), **learned, reset_mechanism="none")
        )
    )
    ours = _synaptic_layers(lambda n: Synaptic(n, **{**SYNAPTIC, **learned}, reset_mechanism="none"))
    _same_parameters(reference, ours)
    x = _synaptic_input()
    assert all(spk.sum() > 20 for spk, _, _ in _synaptic_steps(reference, x))
    losses = _train_alike(reference, ours, (_synaptic_steps, run), _synaptic_loss, x)
    assert losses[-1] < losses[0]
    # the in-step reset, whose second-order equations the reference writes out (the default is snnTorch's)
    resetting = _synaptic_layers(lambda n: Synaptic(n, **{**SYNAPTIC, **learned}, reset_delay=False))
    params = list(resetting.parameters())
    assert {p.shape for p in params if p.dim() < 2} >= {torch.Size([])}
    got = torch.autograd.grad(_synaptic_loss(run(resetting, x)), params)
    reference = _detached_reset_reference(resetting, x, beta_through_reset=run is _synaptic_steps)
    assert reference[0][0].sum() > 20
    for g, e in zip(got, torch.autograd.grad(_synaptic_loss(reference), params), strict=True):
        torch.testing.assert_close(g, e)


# -- snnTorch's backprop and the learners' trainers ---------------------------------------------------------
def _leaky_pair(reset: str, readout: bool) -> tuple[nn.Module, nn.Module]:
    """``fc -> neuron -> fc`` (``-> neuron`` with ``readout``, returning its membrane too) of ``init_hidden`` neurons,
    ``snn.Leaky`` (with its default reset, one step later) with its ``beta`` as the core's logit, and the skin, both
    learning ``beta`` and ``threshold`` as one number each, from the same values."""
    learned = {
        "learn_beta": True,
        "learn_threshold": True,
        "spike_grad": ATan(2.0, inclusive=False),
        "init_hidden": True,
    }

    def model(make: Callable[..., nn.Module]) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(
            wide(nn.Linear(4, C)), make(), nn.Linear(C, 3), *([make(output=True)] if readout else [])
        ).double()

    reference = model(
        lambda **k: _as_logits(snn.Leaky(**_float64(beta=0.8, threshold=0.9), reset_mechanism=reset, **learned, **k))
    )
    ours = model(lambda **k: DecoupledLIF(**{**LEAKY, **learned, **k}, reset_mechanism=reset))  # lazy
    _same_parameters(reference, ours)
    return reference, ours


def test_snntorch_backprop_bptt_trains_the_learned_numbers_as_snn_leakys():
    """``snntorch.backprop.BPTT`` (an ``init_hidden`` network, time-static input, ``ce_rate_loss``) over three batches:
    the same losses and parameters as with ``snn.Leaky``, whose ``beta`` and ``threshold`` are learned as one value
    each."""
    nets = _leaky_pair("none", readout=True)
    gen = torch.Generator().manual_seed(2)
    loader = [(torch.rand(16, 4, generator=gen, dtype=F64) * 2, torch.arange(16) % 3) for _ in range(3)]
    losses = []
    for net in nets:
        optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
        losses.append(snntorch.backprop.BPTT(net, loader, optimizer, SF.ce_rate_loss(), num_steps=8, time_var=False))
    torch.testing.assert_close(torch.as_tensor(losses[1]), torch.as_tensor(losses[0]))
    reference, ours = nets
    for name, value in reference.named_parameters():
        torch.testing.assert_close(ours.get_parameter(_skin_name(name)), value, msg=name)
    assert ours[1].core.decay_logit.shape == () and ours[1].beta.item() != pytest.approx(0.8)


@pytest.mark.parametrize("reset", ["none", "subtract"])
@pytest.mark.parametrize(
    "trainer, options",
    [(BPTTTrainer, {}), (HYPRTrainer, {"chunk": 4}), (OTTTTrainer, {"trace": "neuron", "trace_input": True})],
    ids=["BPTT", "HYPR", "OTTT-neuron"],
)
def test_the_trainers_give_the_learned_numbers_snntorchs_gradients(trainer, options, reset):
    """The learners' ``BPTTTrainer``, ``HYPRTrainer`` (which takes the 0-d parameters) and OTTT's neuron trace (one
    layer, whose pending resets decay with the learned beta) on the skin give the gradients of the ``snn.Leaky``
    network stepped by hand, all of them, without a reset and with snnTorch's default one."""
    reference, ours = _leaky_pair(reset, readout=False)
    x, y = digits_like(steps=10)
    snntorch.utils.reset(reference)
    outputs = [reference(x_t) for x_t in x.unbind(0)]
    StepLoss("ce", "all").sequence_loss(torch.stack(outputs), y).backward()
    got = trainer_gradients(trainer, ours, x, y, **options)
    expected = {_skin_name(name): value.grad for name, value in reference.named_parameters()}
    assert expected["1.core.v_threshold"].abs() > 0
    assert_close_dicts(got, expected)
