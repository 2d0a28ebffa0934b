"""snnTorch 1.0.0's tutorials with a skin in place of ``snn.Leaky``: each tutorial's network and training
step as written (regression 1 and 2, population coding, the spiking autoencoder, the exoplanet hunter,
forward-forward, delta, ST-MNIST, fullgraph), small, on random data, against the same code run with
``snn.Leaky`` or against the equations. ``DecoupledLIF`` is the skin that is a Leaky numerically: by default
``snn.Leaky()`` itself (snnTorch's delayed reset: spikes, membranes and, its decay fixed, gradients); with
``reset_delay=False`` it fires like ``snn.Leaky(reset_delay=False)`` while one subtraction brings the membrane
below the threshold (the networks here keep to that, and the tests check it), its gradient that of the
soft-reset LIF with the reset detached; with ``reset_mechanism="none"`` it is the regression tutorials'
leaky-integrator readout, gradients included."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

snn = pytest.importorskip("snntorch")
import snntorch.backprop  # noqa: E402
import snntorch.functional as SF  # noqa: E402
import snntorch.surrogate  # noqa: E402
import snntorch.utils  # noqa: E402
from snn_parallel.adapters.snntorch import LTC, PRF, PSPLIF, DecoupledLIF, DynamicDecay  # noqa: E402
from test_snntorch import _ResetInForward  # noqa: E402  (the fullgraph tutorial's network)

from snn_parallel.surrogate import FastSigmoid  # noqa: E402

SKINS = [DynamicDecay, PRF, DecoupledLIF, LTC, PSPLIF]
SPATIAL = [DynamicDecay, PRF, DecoupledLIF, PSPLIF]  # LTC takes [B, C] steps only
_ids = {"ids": lambda cls: cls.__name__}


def _neuron(cls: type, beta: float | torch.Tensor, **kwargs: object) -> nn.Module:
    """``cls`` where a tutorial writes ``snn.Leaky(beta=beta, **kwargs)``: the skins without a constant decay
    take no ``beta`` (they refuse it, saying why), and keep their own default threshold unless one is given."""
    if cls in (snn.Leaky, DecoupledLIF):
        return cls(beta=beta, **kwargs)
    if cls is not PRF:  # PRF's learn_beta learns its decay rate; the others have no decay to learn
        kwargs.pop("learn_beta", None)
    return cls(**kwargs)


def _stack(outputs: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(outputs).detach()


# -- tutorial_regression_1: membrane readout of a Leaky that does not reset, learnt beta ---------
class _Regression(nn.Module):
    """The tutorial's ``Net``: two spiking layers with a per-neuron, learnt ``beta`` (and with ``thresholds``
    a per-neuron ``threshold``, ``thresholds(hidden)``: the tutorial's is ``torch.rand``) and a leaky-integrator
    readout (``reset_mechanism="none"``) whose membrane is the output, each state from ``init_leaky()``.
    ``forward`` records the hidden layers' spikes in ``self.hidden_spikes``. ``grad``: the spiking layers'
    ``spike_grad`` (default snnTorch's ``fast_sigmoid()``, the tutorial's)."""

    def __init__(
        self,
        make: Callable[..., nn.Module],
        readout: Callable[[], nn.Module],
        hidden: int = 16,
        thresholds: Callable[[int], torch.Tensor] | None = None,
        grad: Callable | None = None,
    ) -> None:
        super().__init__()
        grad = grad or snntorch.surrogate.fast_sigmoid()
        self.fc_in, self.fc_hidden, self.fc_out = nn.Linear(1, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 1)
        per_neuron = (lambda: {"threshold": thresholds(hidden)}) if thresholds else dict
        self.lif_in = make(torch.rand(hidden), spike_grad=grad, learn_beta=True, **per_neuron())
        self.lif_hidden = make(torch.rand(hidden), spike_grad=grad, learn_beta=True, **per_neuron())
        self.li_out = readout()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        mem_1, mem_2, mem_3 = self.lif_in.init_leaky(), self.lif_hidden.init_leaky(), self.li_out.init_leaky()
        mem_3_rec, hidden_mems, self.hidden_spikes = [], [], []
        for x_t in x.unbind(0):
            spk_in, mem_1 = self.lif_in(self.fc_in(x_t), mem_1)
            spk_hidden, mem_2 = self.lif_hidden(self.fc_hidden(spk_in), mem_2)
            _, mem_3 = self.li_out(self.fc_out(spk_hidden), mem_3)
            mem_3_rec.append(mem_3)
            hidden_mems += [mem_1.detach(), mem_2.detach()]
            self.hidden_spikes += [spk_in.detach(), spk_hidden.detach()]
        return torch.stack(mem_3_rec), hidden_mems


def _regression_data(steps: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """The tutorial's ``RegressionDataset(mode="sqrt")``, one sample: ``[T, 1, 1]`` features and labels."""
    feature = torch.linspace(0.0, 0.8, steps).view(steps, 1, 1)
    return feature, torch.sqrt(feature * 0.6)


def _readout(cls: type = snn.Leaky) -> nn.Module:
    """The tutorial's readout, ``snn.Leaky(beta=torch.rand(1), learn_beta=True, reset_mechanism="none")``, or ``cls``
    (``DecoupledLIF``) in its place."""
    grad = snntorch.surrogate.fast_sigmoid()
    return cls(beta=torch.rand(1), threshold=1.0, learn_beta=True, spike_grad=grad, reset_mechanism="none")


def _decoupled_readout() -> nn.Module:
    return _readout(DecoupledLIF)


def test_regression_tutorial_with_decoupled_lif_matches_snn_leaky_and_learns_its_per_neuron_beta():
    """The tutorial's network with ``DecoupledLIF(beta=torch.rand(H), learn_beta=True, threshold=1.0)`` in both
    spiking layers and ``DecoupledLIF(reset_mechanism="none")`` as the readout gives ``snn.Leaky``'s readout membrane
    (from ``snn.Leaky(reset_mechanism="none")``) and learns its per-neuron beta."""
    x, y = _regression_data()
    runs = {}
    for name, cls in (("leaky", snn.Leaky), ("ours", DecoupledLIF)):
        torch.manual_seed(3)  # weights and betas under which both layers fire
        net = _Regression(lambda beta, **k: cls(beta=beta, threshold=1.0, **k), lambda: _readout(cls))
        beta_before = net.lif_in.beta.detach().clone()
        mem, hidden = net(x)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
        losses = []
        for _ in range(15):
            loss = F.mse_loss(net(x)[0], y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        runs[name] = (mem.detach(), hidden, beta_before, net.lif_in.beta.detach(), losses)
    leaky, ours = runs["leaky"], runs["ours"]
    assert sum(bool((m > 1.0).any()) for m in leaky[1]) > 0  # the hidden layers fire
    torch.testing.assert_close(ours[0], leaky[0])
    torch.testing.assert_close(ours[2], leaky[2])  # the per-neuron beta given, read back in its shape
    assert ours[3].shape == (16,) and not torch.equal(ours[3], ours[2])  # learnt, per neuron
    assert bool(((ours[3] > 0) & (ours[3] < 1)).all())
    assert ours[4][-1] < 0.5 * ours[4][0] and leaky[4][-1] < 0.5 * leaky[4][0]


@pytest.mark.parametrize("cls", SKINS, **_ids)
def test_regression_tutorial_trains_every_skin_under_a_readout_that_does_not_reset(cls):
    """Each skin in the spiking layers (its own threshold, the tutorial's ``beta``/``learn_beta`` where it
    has them), under the tutorial's ``snn.Leaky(reset_mechanism="none")`` readout and with ``DecoupledLIF``,
    ``DynamicDecay`` or ``PRF`` (``reset_mechanism="none"``) in its place: the readout membrane ``[T, B, 1]`` is the
    output, as with snn.Leaky, and the MSE falls."""
    x, y = _regression_data()
    for readout in (
        _readout,
        _decoupled_readout,
        lambda: DynamicDecay(reset_mechanism="none"),
        lambda: PRF(reset_mechanism="none"),
    ):
        torch.manual_seed(0)
        net = _Regression(lambda beta, **k: _neuron(cls, beta, **k), readout)
        optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
        losses = []
        for _ in range(15):
            mem, _ = net(x)
            loss = F.mse_loss(mem, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert mem.shape == y.shape
        assert losses[-1] < losses[0], (readout, losses)


@pytest.mark.parametrize("cls", SKINS, **_ids)
def test_regression_tutorial_options_the_neurons_cannot_take_are_refused_with_the_reason(cls):
    """The tutorial's per-neuron random ``threshold`` (``torch.rand(H)``) and ``learn_threshold=True``, which
    ``DecoupledLIF``, ``PRF`` and ``DynamicDecay`` take (``neuron.threshold`` is then the parameter an optimizer
    trains) and the
    other skins refuse, saying which take them; a readout with ``reset_mechanism="none"`` on a skin whose reset
    is built in: each refusal a ``ValueError`` that names the argument, says why, and what to do instead."""
    snn.Leaky(beta=0.9, threshold=torch.rand(16), learn_threshold=True)  # what snn.Leaky takes
    if cls in (DecoupledLIF, PRF, DynamicDecay):
        neuron = cls(threshold=torch.rand(16), learn_threshold=True)
        neuron(torch.rand(2, 16))
        assert isinstance(neuron.threshold, nn.Parameter) and neuron.threshold.shape == (16,)
        assert any(p is neuron.threshold for p in neuron.parameters())
    else:
        with pytest.raises(
            ValueError, match=r"threshold must be one value .* for all .*DecoupledLIF, PRF and DynamicDecay"
        ):
            cls(threshold=torch.rand(16))
        with pytest.raises(ValueError, match=r"learn_threshold=True .*not a parameter.*PRF and DynamicDecay learn"):
            cls(learn_threshold=True)
    if "none" not in cls._resets:
        with pytest.raises(ValueError, match=r"reset_mechanism='none' .* use DecoupledLIF\(reset_mechanism='none'\)"):
            cls(reset_mechanism="none")


class _SoftResetLeaky(snn.Leaky):
    """The soft-reset LIF in snnTorch's terms: ``snn.Leaky``'s own state function (``beta * mem + input_``),
    firing and threshold, the reset subtracting the spike, detached, within the step that fired. It is
    ``snn.Leaky(reset_delay=False)`` wherever one subtraction brings the membrane below the threshold (where it
    does not, ``Leaky`` subtracts once more at the next step), but for the reset's spike, through which
    ``Leaky`` also backpropagates."""

    def forward(self, input_: torch.Tensor, mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.mem = mem if mem.shape == input_.shape else torch.zeros_like(input_)
        self.mem = self._base_state_function(input_)
        spk = self.fire(self.mem)
        self.mem = self.mem - spk.detach() * self.threshold
        return spk, self.mem


def _tutorial_network(
    cls: type,
    learn_beta: bool,
    learn_threshold: bool,
    seed: int = 0,
    thresholds: Callable = torch.rand,
    readout: Callable[[], nn.Module] = _readout,
    reset_delay: bool = True,
) -> _Regression:
    """The regression tutorial's network in float64, its spiking layers ``cls`` with the same per-neuron
    random ``beta`` and ``threshold`` (``thresholds(H)``, the tutorial's ``torch.rand``) for every ``cls``, and the
    same random ``beta`` in the ``readout`` (``snn.Leaky(reset_mechanism="none")`` or the skin in its place);
    ``snn.Leaky`` and ``DecoupledLIF`` with ``reset_delay``."""
    extra = {"reset_delay": reset_delay} if cls in (snn.Leaky, DecoupledLIF) else {}
    torch.manual_seed(seed)

    betas = []

    def make(beta: torch.Tensor, learn_beta: bool, **kwargs: object) -> nn.Module:
        betas.append(beta)
        return cls(beta=beta, learn_beta=learn, learn_threshold=learn_threshold, **kwargs, **extra)

    learn = learn_beta
    # snnTorch's fast_sigmoid(), which the skin computes with, as ours: snn.Leaky's spikes then keep float64
    net = _Regression(make, readout, thresholds=thresholds, grad=FastSigmoid(inclusive=False)).double()
    if cls is DecoupledLIF:  # the decays set again in float64: the core's logits were rounded to float32
        for layer, beta in zip((net.lif_in, net.lif_hidden), betas, strict=True):
            layer.beta = beta.double()
    return net


def _shared_grads(net: _Regression) -> dict[str, torch.Tensor | None]:
    r"""The gradients of what every build names alike: the synapses, the readout, the thresholds. The skin's readout
    learns :math:`\beta = \sigma(w)`: its ``beta`` gradient is :math:`\partial L/\partial w / (\beta (1 - \beta))`."""
    grads = {name: p.grad for name, p in net.named_parameters() if name.startswith(("fc_", "li_out"))}
    if isinstance(net.li_out, DecoupledLIF):
        beta = net.li_out.beta.detach()
        grads["li_out.beta"] = grads.pop("li_out.core.decay_logit") / (beta * (1 - beta))
    for layer in ("lif_in", "lif_hidden"):
        grads[f"{layer}.threshold"] = getattr(net, layer).threshold.grad
    return grads


def _run(net: _Regression, x: torch.Tensor, y: torch.Tensor) -> tuple:
    """One pass and backward: the readout membrane, the hidden membranes and spikes, the loss, the gradients."""
    mem, hidden = net(x)
    loss = F.mse_loss(mem, y)
    loss.backward()
    return mem.detach(), hidden, net.hidden_spikes, loss.detach(), _shared_grads(net)


def _assert_same_run(got: tuple, expected: tuple, grads: bool = True) -> None:
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[1])
    assert all(torch.equal(a, b) for a, b in zip(got[2], expected[2], strict=True))
    torch.testing.assert_close(got[3], expected[3])
    if grads:
        assert got[4].keys() == expected[4].keys()
        for name, grad in expected[4].items():
            torch.testing.assert_close(got[4][name], grad, msg=name)


#: the reference of ``DecoupledLIF(reset_delay=...)`` with a detached reset: ``snn.Leaky`` itself (its default
#: delayed reset detaches the spike it subtracts), or the soft-reset LIF within the step in snnTorch's terms
DETACHED_REFERENCES = {True: snn.Leaky, False: _SoftResetLeaky}


@pytest.mark.parametrize("reset_delay", [True, False], ids=["delayed", "in_step"])
@pytest.mark.parametrize("readout", [_readout, _decoupled_readout], ids=["leaky_readout", "decoupled_readout"])
@pytest.mark.parametrize("learn_threshold", [False, True], ids=["tutorial", "learn_threshold"])
def test_regression_tutorial_with_per_neuron_thresholds_is_the_soft_reset_lif(learn_threshold, readout, reset_delay):
    """The tutorial's network as written (``threshold=torch.rand(H)``, ``learn_beta=True``), and with
    ``learn_threshold=True``, in float64: ``DecoupledLIF`` gives the soft-reset LIF's spikes, membranes and loss
    (``snn.Leaky`` itself by default, ``_SoftResetLeaky`` with ``reset_delay=False``), and its gradients for the
    weights, the readout and the thresholds, with the tutorial's
    ``snn.Leaky(reset_mechanism="none")`` readout or ``DecoupledLIF(reset_mechanism="none")`` in its place (its
    learnt ``beta``'s gradient included: no reset, nothing detached). (The spiking layers' learnt decay is another
    parameter, ``sigmoid(logit)``, whose gradient leaves out the reset, as ``DecoupledLIF`` documents: it is not
    compared.)"""
    x, y = (t.double() for t in _regression_data())
    reference = _run(_tutorial_network(DETACHED_REFERENCES[reset_delay], True, learn_threshold), x, y)
    ours = _run(_tutorial_network(DecoupledLIF, True, learn_threshold, readout=readout, reset_delay=reset_delay), x, y)
    assert reference[4]["li_out.beta"].abs().sum() > 0
    assert all(sum(s.sum() for s in reference[2][i::2]) > 10 for i in (0, 1))  # both layers fire
    assert (reference[4]["lif_in.threshold"] is not None) == learn_threshold
    assert all(g.abs().sum() > 0 for g in reference[4].values() if g is not None)
    _assert_same_run(ours, reference)


@pytest.mark.parametrize("reset_delay", [True, False], ids=["delayed", "in_step"])
@pytest.mark.parametrize("readout", [_readout, _decoupled_readout], ids=["leaky_readout", "decoupled_readout"])
def test_regression_tutorial_with_per_neuron_thresholds_fires_as_snn_leaky(readout, reset_delay):
    """``snn.Leaky(threshold=..., learn_threshold=True)`` itself, with per-neuron thresholds (the tutorial's
    ``torch.rand(H)`` raised by 0.5): ``DecoupledLIF`` gives its spikes, membranes and loss, and so does the whole
    network swapped (its readout too); by default (both delayed) its gradients of the weights, the readout and
    the thresholds too. With ``reset_delay=False`` (whose gradient runs through the reset's spike, not compared)
    one subtraction brings each membrane below its threshold here."""
    x, y = (t.double() for t in _regression_data())
    raised = lambda hidden: 0.5 + torch.rand(hidden)  # noqa: E731
    leaky_net = _tutorial_network(snn.Leaky, True, True, seed=1, thresholds=raised, reset_delay=reset_delay)
    leaky = _run(leaky_net, x, y)
    ours = _run(
        _tutorial_network(
            DecoupledLIF, True, True, seed=1, thresholds=raised, readout=readout, reset_delay=reset_delay
        ),
        x,
        y,
    )
    limits = (leaky_net.lif_in.threshold.detach(), leaky_net.lif_hidden.threshold.detach())
    assert reset_delay or all(bool((m < limits[i % 2]).all()) for i, m in enumerate(leaky[1]))
    assert all(sum(s.sum() for s in leaky[2][i::2]) > 10 for i in (0, 1))
    _assert_same_run(ours, leaky, grads=reset_delay)


@pytest.mark.parametrize("reset_delay", [True, False], ids=["delayed", "in_step"])
def test_regression_tutorial_learns_per_neuron_thresholds_as_the_soft_reset_lif_over_optimiser_steps(reset_delay):
    """``learn_threshold=True`` (each spiking layer's per-neuron decay fixed): five Adam steps of ``DecoupledLIF``
    and of the soft-reset LIF in snnTorch's terms (``snn.Leaky`` itself by default) give the same losses and end
    with the same weights and thresholds, the skin's ``threshold`` being the parameter its optimizer trains; the
    thresholds moved."""
    x, y = (t.double() for t in _regression_data())
    reference_cls = DETACHED_REFERENCES[reset_delay]
    nets = {cls: _tutorial_network(cls, False, True, reset_delay=reset_delay) for cls in (reference_cls, DecoupledLIF)}
    start = nets[DecoupledLIF].lif_hidden.threshold.detach().clone()
    losses = {cls: [] for cls in nets}
    for cls, net in nets.items():
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(5):
            loss = F.mse_loss(net(x)[0], y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses[cls].append(loss.detach())
    ours, reference = nets[DecoupledLIF], nets[reference_cls]
    torch.testing.assert_close(torch.stack(losses[DecoupledLIF]), torch.stack(losses[reference_cls]))
    assert losses[DecoupledLIF][-1] < losses[DecoupledLIF][0]
    for layer in ("lif_in", "lif_hidden"):
        torch.testing.assert_close(getattr(ours, layer).threshold, getattr(reference, layer).threshold)
    for name, param in reference.named_parameters():
        if name.startswith(("fc_", "li_out")):
            torch.testing.assert_close(ours.get_parameter(name), param, msg=name)
    assert not torch.allclose(ours.lif_hidden.threshold, start)
    assert ours.lif_hidden.threshold is ours.lif_hidden.core.v_threshold  # one tensor, trained in place


# -- tutorial_regression_2: RLeaky (and the delta tutorial's DeltaLeaky) -------------------------
@pytest.mark.parametrize("cls", SKINS, **_ids)
@pytest.mark.parametrize(
    "kwargs",
    [{"linear_features": 10}, {"all_to_all": False}, {"conv2d_channels": 3}, {"V": 0.5}, {"learn_recurrent": False}],
    ids=lambda k: next(iter(k)),
)
def test_rleaky_arguments_are_refused_saying_the_skins_are_not_recurrent(cls, kwargs):
    """Swapping the tutorial's ``snn.RLeaky(beta, linear_features=...)`` for a skin: its recurrent options
    have no meaning for a neuron whose state depends on its input only (a ``TypeError`` naming the option
    and why, where it was Python's bare "unexpected keyword argument")."""
    (arg,) = kwargs
    with pytest.raises(TypeError, match=rf"{cls.__name__} takes no {arg}, which belongs to snn.RLeaky's recurrent"):
        cls(**kwargs)


def test_rleaky_kernel_size_and_deltaleaky_delta_threshold_are_refused_with_the_reason():
    """``kernel_size`` is RLeaky's recurrent convolution's for every skin but ``DynamicDecay`` (whose own
    ``kernel_size`` is its decay's); ``delta_threshold`` is ``snn.DeltaLeaky``'s threshold on the change."""
    for cls in (PRF, DecoupledLIF, LTC, PSPLIF):
        with pytest.raises(TypeError, match=r"takes no kernel_size, which belongs to snn.RLeaky's recurrent"):
            cls(kernel_size=(5, 5))
    assert DynamicDecay(kernel_size=3).core.kernel_size == 3
    for cls in SKINS:
        with pytest.raises(TypeError, match=r"takes no delta_threshold, snn.DeltaLeaky's .* Pass threshold="):
            cls(delta_threshold=0.3)


class _FeedForward(nn.Module):
    """The regression 2 tutorial's MNIST ``Net`` with its ``RLeaky`` layers replaced by feed-forward ones."""

    def __init__(self, make: Callable[[], nn.Module], steps: int = 8) -> None:
        super().__init__()
        self.steps, self.fc1, self.lif1, self.fc2, self.lif2 = (
            steps,
            nn.Linear(64, 32),
            make(),
            nn.Linear(32, 10),
            make(),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spikes, mems = [], []
        for _ in range(self.steps):
            spk1, mem1 = self.lif1(self.fc1(x), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spikes.append(spk2)
            mems.append(mem2)
        return torch.stack(spikes), torch.stack(mems)


def test_regression_2_losses_on_spikes_and_membranes_read_decoupled_lif_as_snn_leaky():
    """``SF.mse_count_loss`` on the spikes and ``SF.mse_membrane_loss`` on the membranes, and
    ``SF.accuracy_rate``, give ``snn.Leaky``'s values and gradients' first update."""
    torch.manual_seed(0)
    x, y = torch.rand(16, 64) * 0.5, torch.randint(0, 10, (16,))
    results = []
    for make in (lambda: snn.Leaky(beta=0.9), lambda: DecoupledLIF(beta=0.9)):
        torch.manual_seed(1)
        net = _FeedForward(make)
        spk, mem = net(x)
        count = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)(spk, y)
        membrane = SF.mse_membrane_loss(on_target=1.05, off_target=0.2)(mem, y)
        results.append((spk.detach(), mem.detach(), count.item(), membrane.item(), SF.accuracy_rate(spk, y)))
    (spk_l, mem_l, *losses_l), (spk_o, mem_o, *losses_o) = results
    assert 0 < spk_l.mean() < 1
    assert torch.equal(spk_o, spk_l)
    torch.testing.assert_close(mem_o, mem_l)
    assert losses_o == pytest.approx(losses_l, rel=1e-5)


# -- tutorial_pop: population coding through backprop.BPTT ---------------------------------------
def _population_net(make: Callable[..., nn.Module], outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 32),
        make(init_hidden=True),
        nn.Linear(32, outputs),
        make(init_hidden=True, output=True),
    )


@pytest.mark.parametrize("cls", SKINS, **_ids)
def test_population_coding_tutorial_trains_through_backprop_bptt_as_snn_leaky(cls):
    """``backprop.BPTT(num_steps=1, time_var=False)`` with ``SF.mse_count_loss(population_code=True,
    num_classes=10)`` and the tutorial's ``test_accuracy`` (``utils.reset``, ``net(data)`` with
    ``output=True``, ``SF.accuracy_rate(population_code=True)``). One step from rest, ``DecoupledLIF`` and the
    tutorial's own ``snn.Leaky`` give the same losses and accuracy, epoch after epoch; every skin learns."""
    torch.manual_seed(0)
    labels = torch.arange(48) % 10
    images = 3 * (torch.rand(10, 1, 8, 8)[labels] + 0.1 * torch.rand(48, 1, 8, 8))  # a noisy prototype per class
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=16)
    grad = snntorch.surrogate.fast_sigmoid()
    loss_fn = SF.mse_count_loss(correct_rate=1.0, incorrect_rate=0.0, population_code=True, num_classes=10)
    losses, accuracies = {}, {}
    for neuron in (snn.Leaky, cls):
        torch.manual_seed(1)
        net = _population_net(lambda **k: _neuron(neuron, 0.9, spike_grad=grad, **k), 50)
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
        losses[neuron], accuracies[neuron] = [], []
        for _ in range(4):
            average = snntorch.backprop.BPTT(
                net, loader, num_steps=1, optimizer=optimizer, criterion=loss_fn, time_var=False, device="cpu"
            )
            with torch.no_grad():
                snntorch.utils.reset(net)
                spk_rec, _ = net(images)
            assert spk_rec.shape == (48, 50)
            losses[neuron].append(torch.as_tensor(average).item())
            accuracies[neuron].append(
                SF.accuracy_rate(spk_rec.unsqueeze(0), labels, population_code=True, num_classes=10)
            )
    if cls is DecoupledLIF:
        assert losses[cls] == pytest.approx(losses[snn.Leaky], rel=1e-5)
        assert accuracies[cls] == accuracies[snn.Leaky]
    assert losses[cls][-1] < losses[cls][0], losses
    assert all(0 <= a <= 1 for a in accuracies[cls])


# -- tutorial_sae: spiking autoencoder, conv feature maps, a readout that never fires -------------
class _SAE(nn.Module):
    """The tutorial's SAE (encoder conv net, ``linearNet``, transposed-conv decoder, ``utils.reset`` of each
    part inside ``forward``), 8x8 images; the decoder's last neuron (``threshold=20000``) is read by its membrane."""

    def __init__(self, make: Callable[..., nn.Module], steps: int = 3, latent: int = 8) -> None:
        super().__init__()
        self.steps = steps
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, stride=2),
            nn.BatchNorm2d(4),
            make(),
            nn.Conv2d(4, 8, 3, padding=1, stride=2),
            nn.BatchNorm2d(8),
            make(),
            nn.Flatten(1, 3),
            nn.Linear(8 * 2 * 2, latent),
            make(output=True),
        )
        self.linearNet = nn.Sequential(nn.Linear(latent, 8 * 2 * 2), make(output=True))
        self.decoder = nn.Sequential(
            nn.Unflatten(1, (8, 2, 2)),
            make(),
            nn.ConvTranspose2d(8, 4, 3, padding=1, stride=2, output_padding=1),
            nn.BatchNorm2d(4),
            make(),
            nn.ConvTranspose2d(4, 1, 3, padding=1, stride=2, output_padding=1),
        )
        self.readout = make(output=True, threshold=20000)  # the decoder's last layer, kept apart to hook it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for part in (self.encoder, self.decoder, self.linearNet, nn.Sequential(self.readout)):
            snntorch.utils.reset(part)
        spikes = torch.stack([self.encoder(x)[0] for _ in range(self.steps)], dim=2)
        mems = [self.readout(self.decoder(self.linearNet(spikes[..., t])[0]))[1] for t in range(self.steps)]
        return torch.stack(mems, dim=4)[..., -1]


@pytest.mark.parametrize("cls", SPATIAL, **_ids)
def test_spiking_autoencoder_tutorial_reads_the_membrane_of_a_neuron_that_never_fires(cls):
    """Every skin with feature maps (``LTC`` refuses them, naming ``input_``): the reconstruction has the
    image's shape, repeats (``utils.reset`` inside ``forward``), and trains; the readout membrane at
    ``threshold=20000`` is the leaky integral of its input, as snn.Leaky's (``DecoupledLIF``: the same beta)."""
    torch.manual_seed(0)
    x = torch.rand(6, 1, 8, 8)
    beta = 0.5

    def make(**k: object) -> nn.Module:
        return _neuron(cls, beta, spike_grad=snntorch.surrogate.atan(alpha=2.0), init_hidden=True, **k)

    net = _SAE(make)
    inputs: list[torch.Tensor] = []
    net.readout.register_forward_pre_hook(lambda mod, args: inputs.append(args[0].detach()))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.001)
    losses = []
    for _ in range(8):
        inputs.clear()
        out = net(x)
        loss = F.mse_loss(out, x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert out.shape == x.shape and losses[-1] < losses[0], losses
    net.eval()
    with torch.no_grad():
        inputs.clear()
        first, second = net(x), net(x)
    assert torch.equal(first, second)
    if cls is DecoupledLIF:
        integral = torch.zeros_like(x)
        for current in inputs[: net.steps]:
            integral = beta * integral + current
        torch.testing.assert_close(first, integral)
    with pytest.raises(ValueError, match=r"input_ has shape \(6, 4, 4, 4\).*nn.Flatten"):
        _SAE(lambda **k: _neuron(LTC, beta, init_hidden=True, **k))(x)


# -- one-step tutorials: the exoplanet hunter and forward-forward ---------------------------------
class _Exoplanet(nn.Module):
    """The exoplanet hunter's ``Net``: one step from ``init_leaky()`` after ``F.max_pool1d``, logits from fc3."""

    def __init__(self, make: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.fc1, self.lif1, self.fc2, self.lif2, self.fc3 = (
            nn.Linear(100, 32),
            make(),
            nn.Linear(16, 16),
            make(),
            nn.Linear(8, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk1, mem1 = self.lif1(F.max_pool1d(self.fc1(x), 2), mem1)
        spk2, mem2 = self.lif2(F.max_pool1d(self.fc2(spk1), 2), mem2)
        return self.fc3(spk2.view(x.shape[0], -1))


def test_exoplanet_tutorial_trains_decoupled_lif_exactly_as_snn_leaky():
    """One step from rest is the same for any Leaky: the tutorial's SGD run (CrossEntropy on the logits)
    gives the same losses and weights with ``DecoupledLIF`` and with ``snn.Leaky``; every skin trains."""
    torch.manual_seed(0)
    x, y = torch.rand(8, 100) * 4, torch.randint(0, 2, (8,))
    grad = snntorch.surrogate.fast_sigmoid(slope=25)
    runs = {}
    for cls in [snn.Leaky, *SKINS]:
        torch.manual_seed(1)
        net = _Exoplanet(lambda cls=cls: _neuron(cls, 0.88, spike_grad=grad))
        optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
        losses = []
        for _ in range(6):
            loss = nn.CrossEntropyLoss()(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        runs[cls] = (losses, net.fc1.weight.detach())
    assert runs[DecoupledLIF][0] == pytest.approx(runs[snn.Leaky][0], rel=1e-5)
    torch.testing.assert_close(runs[DecoupledLIF][1], runs[snn.Leaky][1])
    assert runs[snn.Leaky][0][-1] < runs[snn.Leaky][0][0]
    for cls in SKINS:
        assert runs[cls][0][-1] < runs[cls][0][0], (cls, runs[cls][0])


class _ForwardForwardLayer(nn.Linear):
    """The forward-forward tutorial's ``LeakyLayer``: its own Adam over its parameters (the neuron's
    included), made in ``__init__``, before the first call; the output is the membrane of one step."""

    def __init__(self, features_in: int, features_out: int, make: Callable[[], nn.Module]) -> None:
        super().__init__(features_in, features_out, bias=False)
        self.activation = make()
        self.opt = torch.optim.Adam(self.parameters(), lr=0.03)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem = self.activation.init_leaky()
        direction = x / (torch.norm(x, p=2, dim=1, keepdim=True) + 1e-4)
        _, potential = self.activation(torch.mm(direction, self.weight.T), mem)
        return potential

    def fit(self, x_pos: torch.Tensor, x_neg: torch.Tensor, epochs: int = 4) -> list[float]:
        losses = []
        for _ in range(epochs):
            g_pos, g_neg = self.forward(x_pos).pow(2).mean(1), self.forward(x_neg).pow(2).mean(1)
            loss = F.softplus(torch.cat([-g_pos + 5.0, g_neg - 5.0])).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            losses.append(loss.item())
        return losses


def test_forward_forward_layer_trains_the_parameters_a_lazy_skin_builds_after_its_optimizer():
    """The layer's Adam is made before the neuron's first call, when a lazy skin's per-channel parameters
    are not built yet: Adam still trains them (they are materialised in place). ``DecoupledLIF``'s
    potentials and losses are ``snn.Leaky``'s (below the threshold, where the reset has not acted)."""
    torch.manual_seed(0)
    x_pos, x_neg = torch.rand(8, 20), torch.rand(8, 20)
    losses = {}
    for cls in [snn.Leaky, *SKINS]:
        torch.manual_seed(1)
        layer = _ForwardForwardLayer(20, 12, lambda cls=cls: _neuron(cls, 0.8))
        neuron_params = list(layer.activation.parameters())
        losses[cls] = layer.fit(x_pos, x_neg)
        if cls in (DynamicDecay, PRF, LTC):
            built = [p.detach().clone() for p in neuron_params]
            layer.fit(x_pos, x_neg, epochs=1)
            assert all(isinstance(p, nn.Parameter) for p in neuron_params)
            assert any(not torch.equal(b, p) for b, p in zip(built, neuron_params, strict=True))
    assert losses[DecoupledLIF] == pytest.approx(losses[snn.Leaky], rel=1e-5)


# -- tutorial_delta_SNNs' Leaky part, ST-MNIST's and BSNN's conv networks -------------------------
@pytest.mark.parametrize("cls", SKINS, **_ids)
def test_delta_tutorial_leaky_simulation_steps_scalars(cls):
    """``simulate_neuron``: ``init_hidden=True, output=True``, ``utils.reset(neuron)`` on the bare neuron,
    a scalar input at each step, the membrane recorded as ``[T]``; ``DecoupledLIF`` gives ``snn.Leaky``'s spikes
    and membranes."""
    current = torch.cat([torch.zeros(5), torch.full((20,), 0.25)])

    def simulate(neuron: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        snntorch.utils.reset(neuron)
        outputs = [neuron(current[t]) for t in range(current.numel())]
        return _stack([o[0] for o in outputs]), _stack([o[1] for o in outputs])

    spk_l, mem_l = simulate(snn.Leaky(beta=0.8, threshold=0.3, init_hidden=True, output=True))
    spk, mem = simulate(_neuron(cls, 0.8, threshold=0.3, init_hidden=True, output=True))
    assert spk.shape == mem.shape == mem_l.shape == (25,)
    if cls is DecoupledLIF:
        assert torch.equal(spk, spk_l) and spk_l.sum() > 0
        torch.testing.assert_close(mem, mem_l)


def _stmnist_net(make: Callable[..., nn.Module]) -> nn.Sequential:
    """The ST-MNIST tutorial's ``scnn_net`` (2-channel 10x10 frames here)."""
    return nn.Sequential(
        nn.Conv2d(2, 4, kernel_size=4),
        make(init_hidden=True),
        nn.Conv2d(4, 8, kernel_size=3),
        make(init_hidden=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 2 * 2, 10),
        make(init_hidden=True, output=True),
    )


@pytest.mark.parametrize("cls", SPATIAL, **_ids)
def test_stmnist_conv_network_per_step_loop_as_snn_leaky(cls):
    """``utils.reset(net)`` then ``net(data[step])`` for each frame, ``SF.mse_count_loss`` and
    ``SF.accuracy_rate`` on the stacked spikes: ``DecoupledLIF`` gives ``snn.Leaky``'s spikes and losses, its
    gradients being ``snn.Leaky``'s; every skin with feature maps trains through the loop."""
    torch.manual_seed(0)
    data, targets = torch.rand(6, 4, 2, 10, 10), torch.randint(0, 10, (4,))
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
    spikes, losses = {}, {}
    for name, make in (
        ("leaky", lambda **k: snn.Leaky(beta=0.95, **k)),
        ("ours", lambda **k: _neuron(cls, 0.95, **k)),
    ):
        torch.manual_seed(1)
        net = _stmnist_net(make)
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-2)
        losses[name] = []
        for _ in range(4):
            snntorch.utils.reset(net)
            spk_rec = torch.stack([net(data[t])[0] for t in range(data.size(0))])
            spikes.setdefault(name, spk_rec.detach())  # before training
            loss = loss_fn(spk_rec, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses[name].append(loss.item())
        assert spk_rec.shape == (6, 4, 10) and 0 <= SF.accuracy_rate(spk_rec, targets) <= 1
    assert all(p.grad is not None for p in net.parameters())
    if cls is DecoupledLIF:
        assert 0 < spikes["leaky"].mean() < 1
        assert torch.equal(spikes["ours"], spikes["leaky"])
        assert losses["ours"] == pytest.approx(losses["leaky"], rel=1e-5)


# -- tutorial_5_fullgraph: the training step through torch.compile(fullgraph=True) ---------------
@pytest.mark.parametrize(
    "cls", [DecoupledLIF, *(pytest.param(c, marks=pytest.mark.slow) for c in (DynamicDecay, PRF, LTC, PSPLIF))], **_ids
)
def test_fullgraph_tutorial_training_step_gives_the_eager_gradients(cls):
    """The tutorial's step (CrossEntropy on the membrane at every step, backward) through
    ``torch.compile(net, fullgraph=True)`` (AOT autograd, eager kernels: the backward is traced too) gives the
    eager losses and gradients, twice in a row (the state is reset inside ``forward``), as with snn.Leaky."""
    x, y = torch.rand(5, 6) * 2, torch.randint(0, 3, (5,))
    for neuron in (lambda n: snn.Leaky(beta=0.95), lambda n: _neuron(cls, 0.95, features=n)):
        torch._dynamo.reset()
        torch.manual_seed(0)
        net = _ResetInForward(neuron)
        runs = []
        for model in (net, torch.compile(net, fullgraph=True, backend="aot_eager")):
            for _ in range(2):
                spikes, mems = model(x)
                loss = sum(F.cross_entropy(mem, y) for mem in mems.unbind(0))
                net.zero_grad()
                loss.backward()
                runs.append((loss.detach(), spikes.detach(), [p.grad.clone() for p in net.parameters()]))
        for loss, spikes, grads in runs[1:]:
            torch.testing.assert_close(loss, runs[0][0])
            assert torch.equal(spikes, runs[0][1])
            torch.testing.assert_close(grads, runs[0][2])
