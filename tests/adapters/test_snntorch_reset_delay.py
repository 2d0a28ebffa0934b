"""The ``DecoupledLIF`` skin with snnTorch's default reset (``reset_delay=True``, the skin's default too): it is
``snn.Leaky(beta)`` as users build it, in spikes, ``mem`` and (the decay fixed) every gradient, step by step and
through ``multistep``, continuing sequences and ``mem`` passed in exactly; in float64 against ``snn.Leaky`` itself
and, for a learned decay, against the documented reference (the op's step-by-step spec)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

snn = pytest.importorskip("snntorch")
import snntorch.backprop  # noqa: E402
import snntorch.functional as SF  # noqa: E402
from snn_parallel.adapters import snntorch as adapter  # noqa: E402
from snn_parallel.adapters.snntorch import DecoupledLIF  # noqa: E402

from snn_parallel.ops.linear_fire import linear_fire_reference  # noqa: E402
from snn_parallel.surrogate import ATan  # noqa: E402

F64 = torch.float64
C = 6
#: snnTorch's default ``atan()`` computed in float64 (snnTorch's own returns float32 spikes), for ``snn.Leaky``; the
#: skin resolves its default to the same
ATAN = ATan(alpha=2.0, inclusive=False)


def _net(make, seed=0):
    """A Linear before the neuron (its weights get gradients through the neuron)."""
    torch.manual_seed(seed)
    fc = nn.Linear(4, C)
    with torch.no_grad():
        fc.weight.abs_().mul_(1.5)
    return nn.ModuleList([fc, make()]).double()


def _input(steps=40, seed=1):
    torch.manual_seed(seed)
    return torch.rand(steps, 3, 4, dtype=F64)


def _steps(layers, x, mem=None):
    """Every step through ``forward(input_, mem)``, the ``mem`` passed back (the tutorials' loop)."""
    spikes, mems = [], []
    for x_t in x.unbind(0):
        spk, mem = layers[1](layers[0](x_t), mem)
        spikes.append(spk.to(F64))
        mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)


def _multistep(layers, x, mem=None):
    spk, mem_seq = layers[1].multistep(layers[0](x), mem)
    return spk, mem_seq


def _loss(spikes, mems):
    weights = torch.linspace(-1, 1, spikes.shape[0], dtype=F64).view(-1, 1, 1)
    return (spikes * weights).sum() + 0.1 * (mems**2).sum()


THRESHOLDS = {
    "scalar": lambda: {"threshold": 1.0},
    "per_neuron_learned": lambda: {"threshold": torch.linspace(0.4, 1.0, C, dtype=F64), "learn_threshold": True},
}


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_decoupled_lif_is_snn_leaky_by_default(threshold):
    """``DecoupledLIF(beta=...)`` against ``snn.Leaky(beta=...)``, both at their defaults, loaded with the same
    state dict: spikes, ``mem`` and the gradients of the input, the weights and a learned threshold, step by step
    and through ``multistep``. The input drives the membrane well above the threshold, so that after a spike it
    stays above it (the delayed reset then subtracts at every step, as ``snn.Leaky`` does)."""
    ref = _net(lambda: snn.Leaky(beta=torch.tensor(0.75, dtype=F64), spike_grad=ATAN, **THRESHOLDS[threshold]()))
    ours = _net(lambda: DecoupledLIF(C, beta=0.75, **THRESHOLDS[threshold]()))
    ours.load_state_dict(ref.state_dict())
    assert ours[1].reset_delay is True and ours[1].core.reset_delay is True
    x = _input().requires_grad_()
    expected = _steps(ref, x)
    assert 0.2 < expected[0].mean() < 0.8
    assert (expected[1][:-1] > ref[1].threshold)[expected[0][1:] > 0].any()  # fires on from above the threshold
    params = [x, *ref.parameters()]
    want = torch.autograd.grad(_loss(*expected), params)
    for run in (_steps, _multistep):
        adapter.reset(ours)
        got = run(ours, x)
        assert torch.equal(got[0], expected[0])
        torch.testing.assert_close(got[1], expected[1])
        grads = torch.autograd.grad(_loss(*got), [x, *ours.parameters()])
        assert len(grads) == len(want)
        for g, w in zip(grads, want, strict=True):
            torch.testing.assert_close(g.view(w.shape), w)


def test_a_learned_beta_gets_snn_leakys_gradient_step_by_step_and_in_multistep():
    r"""With snnTorch's reset the decay's gradient is ``snn.Leaky(learn_beta=True)``'s (through
    :math:`\beta = \sigma(w)`), step by step and through ``multistep``: the pending resets decay with :math:`\beta`
    itself, :math:`\partial u_t/\partial\beta = u_{t-1} + \beta\,\partial u_{t-1}/\partial\beta`. With the reset's
    decay detached (the in-step reset's convention) it would not be."""
    betas = torch.linspace(0.5, 0.9, C, dtype=F64)
    ref = _net(lambda: snn.Leaky(beta=betas.clone(), learn_beta=True, spike_grad=ATAN))
    ours = _net(lambda: DecoupledLIF(beta=betas, learn_beta=True))
    ours[1].beta = betas  # in float64 (the state dict's are float32-rounded logits otherwise)
    x = _input()
    spikes, mems = _steps(ref, x)
    assert spikes.sum() > 20
    (want,) = torch.autograd.grad(_loss(spikes, mems), ref[1].beta)
    logit = ours[1].core.decay_logit
    got = torch.autograd.grad(_loss(*_steps(ours, x)), logit)[0] / (betas * (1 - betas))
    torch.testing.assert_close(got, want)
    adapter.reset(ours)
    spk_seq, mem_seq = _multistep(ours, x)
    assert torch.equal(spk_seq, spikes)
    multistep = torch.autograd.grad(_loss(spk_seq, mem_seq), logit)[0] / (betas * (1 - betas))
    torch.testing.assert_close(multistep, want)
    beta = ours[1].core.beta
    zeros = torch.zeros(3, C, dtype=F64)
    detached = linear_fire_reference(
        ours[0](x), beta, torch.ones_like(beta), zeros, zeros, ours[1].core.surrogate, 1.0, beta.detach(),
        delayed_reset=True,
    )  # fmt: skip
    assert torch.equal(detached[0], spikes)
    assert not torch.allclose(torch.autograd.grad(_loss(*detached[:2]), logit)[0] / (betas * (1 - betas)), want)


@pytest.mark.parametrize("mem_kind", ["leaky", "reset_free"])
def test_sequences_continue_exactly_and_a_mem_passed_in_carries_its_pending_reset(mem_kind):
    """A sequence cut after a spike (its reset still pending) continues exactly through ``multistep`` or the
    steps; in ``"leaky"`` mode a ``mem`` taken from ``snn.Leaky`` mid-sequence, or assigned to ``neuron.mem``,
    continues as ``snn.Leaky`` does from it (the pending reset recomputed from ``mem``)."""
    ref = _net(lambda: snn.Leaky(beta=torch.tensor(0.75, dtype=F64), spike_grad=ATAN))
    ours = _net(lambda: DecoupledLIF(beta=0.75, mem=mem_kind))
    x = _input()
    spikes, mems = _steps(ref, x)
    cut = int(spikes.flatten(1).any(1).nonzero()[2]) + 1  # right after the third step with a spike
    adapter.reset(ours)
    head = _multistep(ours, x[:cut])
    tail_seq = _multistep(ours, x[cut:])
    adapter.reset(ours)
    _multistep(ours, x[:cut])
    tail_steps = _steps(ours, x[cut:], ours[1].mem)
    for tail in (tail_seq, tail_steps):
        assert torch.equal(torch.cat([head[0], tail[0]]), spikes)
        if mem_kind == "leaky":
            torch.testing.assert_close(torch.cat([head[1], tail[1]]), mems)
    if mem_kind == "reset_free":
        return
    for start in (cut, cut + 5):
        given = mems[start - 1].clone()
        assert tail_seq[0].sum() > 0
        for continued in (_multistep(ours, x[start:], given), _steps(ours, x[start:], given)):
            assert torch.equal(continued[0], spikes[start:])
            torch.testing.assert_close(continued[1], mems[start:])
        ours[1].mem = given
        continued = _steps(ours, x[start:])
        assert torch.equal(continued[0], spikes[start:])


def test_backprop_bptt_and_tbptt_train_as_snn_leaky():
    """``backprop.BPTT`` and ``TBPTT`` (``init_hidden=True``, ``detach_hidden`` between the truncations) over a
    network of two spiking layers (snnTorch's default surrogate, float32): the same losses as with ``snn.Leaky``,
    epoch after epoch (the same gradients give the same updates)."""
    torch.manual_seed(0)
    loader = [(torch.rand(8, 16) * 1.5, torch.arange(8) % 4)]
    losses = {}
    for cls in (snn.Leaky, DecoupledLIF):
        torch.manual_seed(1)
        net = nn.Sequential(
            nn.Linear(16, 12),
            cls(beta=0.75, init_hidden=True),
            nn.Linear(12, 4),
            cls(beta=0.75, init_hidden=True, output=True),
        )
        optimizer = torch.optim.SGD(net.parameters(), lr=0.2)
        losses[cls] = []
        for _ in range(3):
            for method in ("BPTT", "TBPTT"):
                options = {"K": 3} if method == "TBPTT" else {}
                loss = getattr(snntorch.backprop, method)(
                    net, loader, optimizer, SF.ce_rate_loss(), num_steps=8, time_var=False, **options
                )
                losses[cls].append(torch.as_tensor(loss).item())
    assert losses[DecoupledLIF] == pytest.approx(losses[snn.Leaky], rel=1e-5)
    assert losses[DecoupledLIF][-1] != losses[DecoupledLIF][0]


def test_reset_delay_false_keeps_the_reset_within_the_step():
    """``reset_delay=False`` is the skin's former behaviour: ``mem`` after the step's reset, as
    ``snn.Leaky(reset_delay=False)`` (one subtraction bringing the membrane below the threshold here)."""
    x = torch.rand(30, 3, C, dtype=F64) * 0.8
    leaky = snn.Leaky(beta=torch.tensor(0.75, dtype=F64), reset_delay=False)
    ours = DecoupledLIF(beta=0.75, reset_delay=False).double()
    expected = [leaky(x_t) for x_t in x.unbind(0)]
    spk_seq, mem_seq = ours.multistep(x)
    assert torch.equal(spk_seq, torch.stack([s for s, _ in expected]).double())
    torch.testing.assert_close(mem_seq, torch.stack([m for _, m in expected]))
    assert "reset_delay=False" in repr(ours) and "reset_delay=True" in repr(DecoupledLIF())
