"""The ``Synaptic`` skin against ``snn.Synaptic`` (snnTorch tutorial 4's second-order LIF; its default delayed reset
and ``reset_delay=False``) and against the sequential second-order LIF with a detached reset, written from its
equations, in float64."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

snn = pytest.importorskip("snntorch")
import snntorch.backprop  # noqa: E402
import snntorch.functional as SF  # noqa: E402
import snntorch.utils  # noqa: E402
from snn_parallel.adapters import snntorch as adapter  # noqa: E402
from snn_parallel.adapters.snntorch import Synaptic  # noqa: E402

F64 = torch.float64
C = 6


def _layers(make, seed=0):
    """Tutorial 4's network, smaller: fc1 -> neuron -> fc2 -> neuron, its weights from ``seed``."""
    torch.manual_seed(seed)
    fc1, fc2 = nn.Linear(5, C), nn.Linear(C, 3)
    with torch.no_grad():  # the layers fire, one subtraction bringing each membrane below its threshold
        fc1.weight.mul_(0.15).add_(0.05)
        fc1.bias.mul_(0.15)
        fc2.weight.mul_(0.2).add_(0.2 / 3)
        fc2.bias.mul_(0.2)
    return nn.ModuleList([fc1, make(C), fc2, make(3)]).double()


def _pair(reset="subtract", reset_delay=True, **options):
    """The same network with ``snn.Synaptic`` and with the skin (both with ``reset_delay``), the skin loaded with
    the reference's state dict (so both hold the same float64 decays and thresholds)."""
    ref = _layers(lambda n: snn.Synaptic(reset_mechanism=reset, reset_delay=reset_delay, **_snn_options(n, options)))
    ours = _layers(lambda n: Synaptic(n, reset_mechanism=reset, reset_delay=reset_delay, **_snn_options(n, options)))
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _thresholds(n):
    return torch.linspace(0.8, 1.2, n, dtype=F64)


def _snn_options(n, options):
    """snn.Synaptic's arguments for the skin's ``options``: per-neuron decays and thresholds, learned as asked."""
    return {
        "alpha": torch.linspace(0.7, 0.9, n, dtype=F64),
        "beta": torch.linspace(0.5, 0.7, n, dtype=F64),
        "threshold": _thresholds(n),
        **options,
    }


def _step_run(layers, x):
    """Every step through ``forward(input_, syn, mem)`` from rest, as tutorial 4's loop: spikes (in float64:
    snnTorch's surrogates return float32 spikes), syn, mem of both layers."""
    adapter.reset(layers)  # this network only (snntorch.utils.reset resets every Synaptic in the process)
    states = [(None, None), (None, None)]
    records = []
    for x_t in x.unbind(0):
        out, step = x_t, []
        for i in (0, 1):
            syn, mem = states[i]
            spk, syn, mem = layers[2 * i + 1](layers[2 * i](out), syn, mem)
            spk = spk.to(F64)
            states[i] = (syn, mem)
            step.append((spk, syn, mem))
            out = spk
        records.append(step)
    return [[torch.stack([r[i][k] for r in records]) for k in range(3)] for i in (0, 1)]


def _multistep_run(layers, x):
    adapter.reset(layers)  # this network only (snntorch.utils.reset resets every Synaptic in the process)
    spk1, syn1, mem1 = layers[1].multistep(layers[0](x))
    spk2, syn2, mem2 = layers[3].multistep(layers[2](spk1))
    return [[spk1, syn1, mem1], [spk2, syn2, mem2]]


def _input(steps=40, seed=1):
    torch.manual_seed(seed)
    return torch.rand(steps, 4, 5, dtype=F64) * 0.7


def _loss(run):
    """A loss on every output: the last layer's spikes and membranes, the hidden layer's currents."""
    (_, syn1, _), (spk2, _, mem2) = run
    return spk2.sum() + 0.1 * (mem2**2).sum() + 0.01 * syn1.sum()


def _same(got, expected):
    for (g_spk, g_syn, g_mem), (e_spk, e_syn, e_mem) in zip(got, expected, strict=True):
        assert torch.equal(g_spk, e_spk)
        torch.testing.assert_close(g_syn, e_syn)
        torch.testing.assert_close(g_mem, e_mem)


@pytest.mark.parametrize("reset_delay", [True, False])
@pytest.mark.parametrize("reset", ["subtract", "none"])
def test_steps_and_multistep_give_snn_synaptic_spikes_currents_and_membranes(reset, reset_delay):
    ref, ours = _pair(reset, reset_delay)
    x = _input()
    expected = _step_run(ref, x)
    assert expected[0][0].sum() > 50 and expected[1][0].sum() > 50  # both layers fire
    # where snn.Synaptic(reset_delay=False)'s membrane stays above the threshold after a reset it subtracts again
    # at the next step (the delayed reset is the skin's exactly)
    for (_, _, mem), neuron in zip(expected, (ref[1], ref[3]), strict=True):
        assert reset == "none" or reset_delay or (mem < neuron.threshold).all()
    _same(_step_run(ours, x), expected)
    _same(_multistep_run(ours, x), expected)
    # the state is carried: a second sequence continues the first, as snn.Synaptic's steps do
    x2 = _input(seed=2)
    ref_steps = [ref[1](ref[0](x_t), ref[1].syn, ref[1].mem) for x_t in x2.unbind(0)]
    spk, syn, mem = ours[1].multistep(ours[0](x2))
    assert torch.equal(spk, torch.stack([s.to(F64) for s, _, _ in ref_steps]))
    torch.testing.assert_close(mem, torch.stack([m for _, _, m in ref_steps]))
    torch.testing.assert_close(ours[1].syn, ref[1].syn)


def test_without_a_reset_every_gradient_is_snn_synaptics():
    """No reset, all learned: the gradients of the weights, the decays (through the sigmoid the core learns
    them by) and the per-neuron thresholds are snn.Synaptic's, step by step and through multistep."""
    learned = {"learn_alpha": True, "learn_beta": True, "learn_threshold": True}
    ref, ours = _pair("none", **learned)
    x = _input()
    _loss(_step_run(ref, x)).backward()
    assert all(p.grad.abs().max() > 1e-3 for p in ref.parameters())
    for run in (_step_run, _multistep_run):
        ours.zero_grad()
        _loss(run(ours, x)).backward()
        for i in (0, 2):
            torch.testing.assert_close(ours[i].weight.grad, ref[i].weight.grad)
        for i in (1, 3):
            core, neuron = ours[i].core, ref[i]
            for decay, logit in ((neuron.alpha, core.syn_decay_logit), (neuron.beta, core.decay_logit)):
                torch.testing.assert_close(logit.grad, decay.grad * decay * (1 - decay))
            torch.testing.assert_close(core.v_threshold.grad, neuron.threshold.grad)


def _detached_reset_reference(layers, x, beta_through_reset, delayed=False):
    r"""Tutorial 4's network from the equations, one step at a time, the reset detached:
    :math:`i_t = \alpha i_{t-1} + x_t`, :math:`u_t = \beta m_{t-1} + i_t`, :math:`s_t = f(u_t - V_{th})`,
    :math:`m_t = u_t - V_{th}\,\mathrm{sg}(s_t)`; ``delayed``: :math:`u_t = \beta u_{t-1} + i_t - V_{th}\,
    \mathrm{sg}(s_{t-1})`, :math:`m_t = u_t`. With ``beta_through_reset=False``, :math:`\beta` gets its gradient
    through the reset-free membrane only: :math:`u_t = \beta u'_{t-1} + i_t - r_t`, the reset
    :math:`r_t = \mathrm{sg}(\beta)(r_{t-1} + V_{th}\,\mathrm{sg}(s_{t-1}))` (delayed:
    :math:`\mathrm{sg}(\beta) r_{t-1} + V_{th}\,\mathrm{sg}(s_{t-1})`; the same values)."""
    records = []
    out = x
    for i in (0, 1):
        neuron = layers[2 * i + 1]
        current_in = layers[2 * i](out)
        alpha, beta, threshold = neuron.alpha, neuron.beta, neuron.threshold
        syn = torch.zeros_like(current_in[0])
        mem, free, lost, pending = syn, syn, syn, syn
        spikes, syns, mems = [], [], []
        for x_t in current_in.unbind(0):
            syn = alpha * syn + x_t
            if beta_through_reset:
                potential = beta * mem + syn - pending
            else:
                free = beta * free + syn
                potential = free - lost
            spk = neuron.core.surrogate(potential - threshold)
            step = threshold * spk.detach()
            if delayed:
                mem, pending = potential, step
                lost = beta.detach() * lost + step
            else:
                mem = potential - step
                lost = beta.detach() * (lost + step)
            spikes.append(spk)
            syns.append(syn)
            mems.append(mem)
        out = torch.stack(spikes)
        records.append([out, torch.stack(syns), torch.stack(mems)])
    return records


@pytest.mark.parametrize("reset_delay", [True, False])
def test_with_a_reset_the_gradients_are_those_of_a_detached_reset(reset_delay):
    """snn.Synaptic(reset_delay=False) backpropagates through the spike its reset subtracts; the skin detaches
    it (snn.Synaptic's default delayed reset detaches it too: see the next test). Its gradients are the sequential
    neuron's with the reset detached: step by step with :math:`\\beta` multiplying the membrane (snnTorch's form),
    through multistep the same with the delayed reset, and with :math:`\\beta`'s gradient through the reset-free
    membrane with the in-step one; the weights', the current's decay's and the thresholds' are the same in both."""
    learned = {"learn_alpha": True, "learn_beta": True, "learn_threshold": True}
    _, ours = _pair("subtract", reset_delay, **learned)
    x = _input()
    params = [p for p in ours.parameters()]
    for run, through_reset in ((_step_run, True), (_multistep_run, reset_delay)):
        got = torch.autograd.grad(_loss(run(ours, x)), params)
        reference = _detached_reset_reference(ours, x, through_reset, delayed=reset_delay)
        expected = torch.autograd.grad(_loss(reference), params)
        assert reference[0][0].sum() > 20
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e)
        if through_reset:
            step_grads = got
    decay_logits = {id(ours[i].core.decay_logit) for i in (1, 3)}
    for p, g_step, g_multi in zip(params, step_grads, got, strict=True):
        if reset_delay or id(p) not in decay_logits:  # only beta's depends on the form, with the in-step reset
            torch.testing.assert_close(g_step, g_multi)


def test_by_default_every_gradient_is_snn_synaptics():
    """snnTorch's default delayed reset detaches the spike it subtracts, as the skin does: with the decays fixed
    every gradient (weights, per-neuron thresholds) is ``snn.Synaptic()``'s, step by step and through multistep.
    Learned decays: every gradient is still ``snn.Synaptic``'s, step by step and through multistep (the pending
    resets decay with :math:`\\beta` itself)."""
    learned = {"learn_alpha": True, "learn_beta": True, "learn_threshold": True}
    for options in ({"learn_threshold": True}, learned):
        ref, ours = _pair("subtract", **options)
        x = _input()
        expected = _step_run(ref, x)
        assert expected[1][0].sum() > 20
        _loss(expected).backward()
        for run in (_step_run, _multistep_run):
            ours.zero_grad()
            _loss(run(ours, x)).backward()
            for i in (0, 2):
                torch.testing.assert_close(ours[i].weight.grad, ref[i].weight.grad)
                torch.testing.assert_close(ours[i].bias.grad, ref[i].bias.grad)
            for i in (1, 3):
                core, neuron = ours[i].core, ref[i]
                assert neuron.threshold.grad.abs().max() > 1e-3
                torch.testing.assert_close(core.v_threshold.grad, neuron.threshold.grad)
                if options is learned:
                    for decay, logit in ((neuron.alpha, core.syn_decay_logit), (neuron.beta, core.decay_logit)):
                        torch.testing.assert_close(logit.grad, decay.grad * decay * (1 - decay))


def test_tutorial_4_network_trains():
    """Tutorial 4's ``Net`` (fc1, Synaptic, fc2, Synaptic; alpha=0.9, beta=0.8; ``SF.ce_rate_loss``-like loss on
    the output spikes over the steps), on a small separable task, with the tutorial's step loop: it learns."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(8, 16)
            self.lif1 = Synaptic(alpha=0.9, beta=0.8)
            self.fc2 = nn.Linear(16, 2)
            self.lif2 = Synaptic(alpha=0.9, beta=0.8)

        def forward(self, x):
            syn1, mem1 = self.lif1.init_synaptic()
            syn2, mem2 = self.lif2.init_synaptic()
            spk2_rec = []
            for step in range(x.shape[0]):
                cur1 = self.fc1(x[step])
                spk1, syn1, mem1 = self.lif1(cur1, syn1, mem1)
                cur2 = self.fc2(spk1)
                spk2, syn2, mem2 = self.lif2(cur2, syn2, mem2)
                spk2_rec.append(spk2)
            return torch.stack(spk2_rec)

    torch.manual_seed(0)
    labels = torch.arange(32) % 2
    x = torch.rand(10, 32, 8) + 2 * torch.nn.functional.one_hot(labels * 4, 8).float()
    net = Net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = SF.ce_rate_loss()
    losses = []
    for _ in range(25):
        loss = loss_fn(net(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_snntorch_reset_tools_and_backprop_run_it():
    """``utils.reset`` (through ``snn.Synaptic.reset_hidden`` / ``detach_hidden``), ``reset_mem``,
    ``init_synaptic`` and our :func:`~snn_parallel.adapters.snntorch.reset`; ``backprop.BPTT`` and ``TBPTT``
    train an ``init_hidden`` network of skins."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(8, 12), Synaptic(alpha=0.8, beta=0.7, init_hidden=True), nn.Linear(12, 4),
        Synaptic(alpha=0.8, beta=0.7, init_hidden=True, output=True),
    )  # fmt: skip
    spk, syn, mem = net(torch.rand(5, 8) * 3)
    assert mem.abs().sum() > 0 and syn.abs().sum() > 0
    snntorch.utils.reset(net)
    assert not net[3].mem.any() and not net[3].syn.any() and not net[3].mem.requires_grad
    net(torch.rand(5, 8) * 3)
    adapter.reset(nn.Sequential(net))  # nested
    assert not net[1].mem.any() and not net[1].syn.any()
    assert all(not t.any() for t in net[1].reset_mem()) and all(not t.any() for t in net[1].init_synaptic())
    net[1](torch.rand(5, 8 + 4)[:, :12] * 3)
    Synaptic.detach_hidden()
    assert not net[1].mem.requires_grad and not net[1].syn.requires_grad
    loader = [(torch.rand(16, 8) * 2, torch.arange(16) % 4)]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss = snntorch.backprop.TBPTT(net, loader, optimizer, SF.ce_rate_loss(), num_steps=6, time_var=False, K=2)
    assert torch.isfinite(torch.as_tensor(loss))
    before = [p.detach().clone() for p in net.parameters()]
    loss = snntorch.backprop.BPTT(net, loader, optimizer, SF.ce_rate_loss(), num_steps=6, time_var=False)
    assert torch.isfinite(torch.as_tensor(loss))
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))


def test_init_hidden_returns_spikes_and_keeps_the_state():
    neuron = Synaptic(3, init_hidden=True)
    x = torch.rand(7, 2, 3) * 2
    spikes = torch.stack([neuron(x_t) for x_t in x.unbind(0)])
    steps_state = (neuron.syn.clone(), neuron.mem.clone())
    neuron.reset_mem()
    assert torch.equal(neuron.multistep(x), spikes)
    torch.testing.assert_close((neuron.syn, neuron.mem), steps_state)
    with pytest.raises(TypeError, match="should not be passed"):
        neuron(x[0], neuron.syn, neuron.mem)


def test_per_neuron_decays_read_back_and_assigned_decays_retune():
    neuron = Synaptic(3, alpha=torch.tensor([0.5, 0.7, 0.9]), beta=0.8)
    torch.testing.assert_close(neuron.alpha, torch.tensor([0.5, 0.7, 0.9]))
    assert neuron.beta.dim() == 0 and neuron.beta.item() == pytest.approx(0.8)
    neuron.beta = 0.6
    assert neuron.core.tau == pytest.approx(2.5)
    learned = Synaptic(4, alpha=0.9, learn_alpha=True)
    assert [name for name, _ in learned.named_parameters()] == ["core.syn_decay_logit"]
    torch.testing.assert_close(learned.alpha, torch.tensor(0.9))  # one learned value, as snn.Synaptic's
    lazy = Synaptic(alpha=0.9, beta=0.8)
    lazy(torch.rand(2, 5))
    assert lazy.core.features == 5
    torch.testing.assert_close(lazy.core.alpha, torch.full((5,), 0.9))
    assert "alpha=per channel" in repr(neuron) and "beta=0.6" in repr(neuron)


def test_register_exposes_it_beside_snntorchs_own_synaptic():
    adapter.unregister()
    try:
        adapter.register()
        assert snn.SynapticLIF is Synaptic and snn.Synaptic is not Synaptic
    finally:
        adapter.unregister()
    assert not hasattr(snn, "SynapticLIF")


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"reset_mechanism": "zero"}, ValueError, "reset_mechanism='zero' is not supported by Synaptic.*feeding"),
        ({"reset_delay": "yes"}, TypeError, "reset_delay must be a bool"),
        ({"surrogate_disable": "yes"}, TypeError, "surrogate_disable must be a bool"),
        ({"inhibition": True}, ValueError, "inhibition=True is not supported"),
        ({"state_quant": lambda m: m}, ValueError, "state_quant=.* is not supported"),
        ({"graded_spikes_factor": 2.0}, TypeError, "unexpected keyword argument 'graded_spikes_factor'"),
        ({"alpha": 1.0}, ValueError, r"alpha must be in \(0, 1\)"),
        ({"beta": 0.0}, ValueError, r"beta must be in \(0, 1\], got 0.0"),
        ({"beta": 1.0, "learn_beta": True}, ValueError, "learn_beta=True needs beta below 1"),
        ({"alpha": float("nan")}, ValueError, "alpha must be a finite number"),
        ({"alpha": torch.tensor([0.5, 0.6])}, ValueError, "alpha has 2 values for 3 features"),
        ({"beta": torch.tensor([0.5, 1.5, 0.2])}, ValueError, r"beta must be in \(0, 1\], got \[0.5, 1.5"),
        ({"learn_alpha": "yes"}, TypeError, "learn_alpha"),
        ({"threshold": torch.tensor([1.0, 2.0])}, ValueError, "threshold has 2 values"),
        ({"spike_grad": 3}, TypeError, "spike_grad"),
    ],
)
def test_what_it_cannot_express_is_refused_with_the_reason(kwargs, error, match):
    with pytest.raises(error, match=match):
        Synaptic(3, **kwargs)(torch.rand(2, 3))


def test_reset_delay_is_accepted_without_a_reset():
    neuron = Synaptic(reset_mechanism="none", reset_delay=True)
    assert neuron(torch.rand(2, 3))[0].shape == (2, 3)


def test_bad_inputs_are_named():
    neuron = Synaptic(3)
    with pytest.raises(TypeError, match="input_ must be a torch.Tensor"):
        neuron([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="input_"):
        neuron(torch.full((2, 3), float("nan")))
    with pytest.raises(TypeError, match="input_"):
        neuron(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="input_ has shape .* 4 channels"):
        neuron(torch.rand(2, 4))
    with pytest.raises(ValueError, match="syn"):
        neuron(torch.rand(2, 3), torch.full((2, 3), float("nan")))
    with pytest.raises(TypeError, match="mem must be a torch.Tensor"):
        neuron(torch.rand(2, 3), None, 1.0)
    for field in ("syn", "mem"):  # assigned, as snnTorch's reset helpers do: checked at the assignment
        with pytest.raises(ValueError, match=f"{field} contains NaN"):
            setattr(neuron, field, torch.full((2, 3), float("nan")))
        with pytest.raises(TypeError, match=f"{field} must have dtype"):
            setattr(neuron, field, torch.ones(2, 3, dtype=torch.int64))
    neuron.reset_mem()
    with pytest.raises(TypeError, match="x_seq must be a time-major"):
        neuron.multistep(None)
    with pytest.raises(ValueError, match="x_seq"):
        neuron.multistep(torch.rand(0, 2, 3))
    spk, syn, mem = neuron(torch.rand(3) * 3)  # one sample, in its own shape
    assert spk.shape == syn.shape == mem.shape == (3,)


@pytest.mark.parametrize("reset", ["subtract", "none"])
def test_a_model_reading_syn_and_mem_sees_under_a_trainer_what_it_sees_stepping_itself(reset):
    """Tutorial 4's forward reads ``spk, syn, mem``: a trainer of :mod:`snn_parallel.learners` (whole sequence in
    parallel, or step by step) gives the outputs and BPTT gradients of the model called one step at a time."""

    class ReadsState(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 3)
            self.lif = Synaptic(8, alpha=0.8, beta=0.7, init_hidden=True, output=True, reset_mechanism=reset)

        def forward(self, x):
            spk, syn, mem = self.lif(self.fc1(x))
            return self.fc2(mem) + syn[:, :3] + spk[:, 3:6]

    torch.manual_seed(0)
    model = ReadsState().double()
    nn.init.uniform_(model.fc1.weight, -1, 1)
    x = torch.rand(9, 5, 4, dtype=F64)
    assert model.lif.multistep(model.fc1(x))[0].sum() > 10  # it fires
    model.lif.reset_mem()
    by_hand = torch.stack([model(x_t) for x_t in x])
    assert model.lif.mem.abs().sum() > 0 and (model.lif.mem.abs() > 0).any()
    assert_a_trainer_gives_the_steps(model, x, by_hand)


def assert_a_trainer_gives_the_steps(model: nn.Module, x: torch.Tensor, by_hand: torch.Tensor) -> None:
    """A trainer of :mod:`snn_parallel.learners` running ``model`` on ``x`` (the whole sequence in parallel, or step
    by step) gives ``by_hand``, the model's outputs called one step at a time, and their BPTT gradients."""
    from snn_parallel.learners import BPTTTrainer

    want = torch.autograd.grad(by_hand.square().sum(), list(model.parameters()))
    trainer = BPTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.0), progress=False)
    for run in (trainer.network.run, lambda x: torch.stack([trainer.network.step(x_t) for x_t in x])):
        trainer.network.reset()
        out = run(x)
        torch.testing.assert_close(out, by_hand)
        got = torch.autograd.grad(out.square().sum(), list(model.parameters()))
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w)


def test_threshold_assigned_learned_and_carried_by_state_dicts():
    neuron = Synaptic(3, alpha=0.8, beta=0.6)
    x = torch.rand(5, 2, 3) * 2
    neuron.threshold = torch.tensor(0.5)  # as snn.Synaptic reads it at every step
    assert neuron.core.v_threshold == 0.5
    low, _, _ = neuron.multistep(x)
    assert torch.equal(low, Synaptic(3, alpha=0.8, beta=0.6, threshold=0.5).multistep(x)[0])
    learned = Synaptic(3, alpha=torch.tensor([0.5, 0.6, 0.7]), threshold=0.7, learn_threshold=True)
    assert learned.threshold is learned.core.v_threshold and isinstance(learned.threshold, nn.Parameter)
    learned.multistep(x)[0].sum().backward()
    assert learned.threshold.grad is not None and learned.threshold.grad.abs().sum() > 0
    copy = Synaptic(3, learn_threshold=True)
    copy.load_state_dict(learned.state_dict())
    torch.testing.assert_close(copy.threshold, learned.threshold)
    torch.testing.assert_close(copy.alpha, learned.alpha)
    reference = snn.Synaptic(alpha=0.9, beta=0.8, reset_mechanism="none")
    with pytest.raises(ValueError, match="reset_mechanism='none'.*this Synaptic has reset_mechanism='subtract'"):
        Synaptic(3).load_state_dict(reference.state_dict())


@pytest.mark.parametrize("cls, name", [(Synaptic, "alpha"), (Synaptic, "beta"), (adapter.DecoupledLIF, "beta")])
def test_a_skins_own_state_dict_reads_back_its_decays(cls, name):
    """Different values per channel, or one value: the skin loaded with another's state dict reads them back (the
    core's logits say which) and runs as it does."""
    x = torch.rand(6, 2, 3) * 2
    for value in (torch.tensor([0.5, 0.6, 0.7]), 0.7):
        source = cls(3, **{name: value})
        copy = cls(3)
        copy.load_state_dict(source.state_dict())
        torch.testing.assert_close(getattr(copy, name), getattr(source, name))
        assert torch.equal(copy.multistep(x)[0], source.multistep(x)[0])


@pytest.mark.parametrize("learn", [False, True])
@pytest.mark.parametrize("per_neuron", [False, True])
def test_nir_export_writes_the_cuba_lif_of_snn_synaptic(per_neuron, learn):
    """snnTorch's exporter writes ``snn.Synaptic`` as NIR's ``CubaLIF`` from its ``alpha``, ``beta`` and
    ``threshold``: the skin, which subclasses it, gives the same graph and values, learned decays included, and
    fails where snnTorch's own neuron fails (one value for the layer)."""
    nir = pytest.importorskip("nir")
    pytest.importorskip("nirtorch")
    export_nir = pytest.importorskip("snntorch.export_nir")

    def net(cls):
        torch.manual_seed(0)
        n = 4
        if per_neuron:
            alpha, beta = torch.linspace(0.7, 0.9, n), torch.linspace(0.5, 0.6, n)
            threshold = torch.linspace(0.8, 1.1, n)
        else:
            alpha, beta, threshold = 0.8, 0.6, 0.9
        neuron = cls(alpha=alpha, beta=beta, threshold=threshold, learn_alpha=learn, learn_beta=learn, init_hidden=True)
        return nn.Sequential(nn.Linear(3, n), neuron)

    sample = torch.rand(2, 3)
    if not per_neuron:  # snnTorch 1.0.0's exporter writes 0-d decays, which nir's type check refuses
        with pytest.raises(ValueError) as theirs:
            export_nir.export_to_nir(net(snn.Synaptic), sample, ignore_dims=[0])
        with pytest.raises(ValueError, match=re.escape(str(theirs.value))):
            export_nir.export_to_nir(net(Synaptic), sample, ignore_dims=[0])
        return
    reference = export_nir.export_to_nir(net(snn.Synaptic), sample, ignore_dims=[0])
    ours = export_nir.export_to_nir(net(Synaptic), sample, ignore_dims=[0])
    assert set(ours.edges) == set(reference.edges)
    assert {key: type(node) for key, node in ours.nodes.items()} == {
        key: type(node) for key, node in reference.nodes.items()
    }
    (key,) = [key for key, node in reference.nodes.items() if isinstance(node, nir.CubaLIF)]
    for field in ("tau_syn", "tau_mem", "r", "w_in", "v_leak", "v_threshold", "v_reset"):
        torch.testing.assert_close(
            torch.as_tensor(getattr(ours.nodes[key], field)), torch.as_tensor(getattr(reference.nodes[key], field))
        )
