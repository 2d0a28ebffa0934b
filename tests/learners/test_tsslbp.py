"""TSSL-BP: the PSPLIF neuron, the hand-written backward against the step-by-step reference and the
spec's equations, the spike-sequence loss, the network builder, the trainer (clamp, clip, resume, DDP),
the image task, and bad input."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from learner_support import assert_resume_is_exact, join_two_ranks, leave_two_ranks, spawn_two_ranks
from torch import nn

from snn_parallel.learners import (
    BPTTTrainer,
    SequenceDropout,
    SpikeSequenceLoss,
    SumPool2d,
    TSSLBPTrainer,
    tssl_network,
)
from snn_parallel.learners.tsslbp import desired_spikes
from snn_parallel.neurons import PSPLIF, DecoupledLIF, PSPFilter, PSPLIFState
from snn_parallel.ops.scan.parallel import SEQUENTIAL_LANES
from snn_parallel.ops.tssl import (
    psp_filter,
    tssl_backward,
    tssl_backward_reference,
    tssl_forward,
    tssl_forward_reference,
    tsslbp,
)
from snn_parallel.surrogate import Sigmoid

TAU_M, TAU_S, V_TH = 5.0, 3.0, 1.0
D = torch.float64


def _current(steps: int, seed: int = 0, shape=(3, 4, 2, 2)) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 1.2 * torch.randn(steps, *shape, generator=gen, dtype=D) + 0.4


# -- the forward ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("inclusive", [False, True])
def test_forward_in_place_equals_step_by_step_reference_bit_for_bit(dtype, inclusive):
    current = _current(7, seed=5).to(dtype)
    current[2, 0, 0] = 1.0  # a membrane exactly at the threshold (from a zero state): the firing rule decides
    gen = torch.Generator().manual_seed(6)
    u0, a0 = (scale * torch.rand(current.shape[1:], generator=gen, dtype=dtype) for scale in (0.9, 0.5))
    u0[0, 0], a0[0, 0] = 0.0, 0.0
    current[0, 0, 0], current[1, 0, 0] = 0.0, 0.0
    got, expected = (
        forward(current, u0, a0, V_TH, TAU_M, TAU_S, inclusive) for forward in (tssl_forward, tssl_forward_reference)
    )
    assert got[2][2, 0, 0].eq(V_TH).all() and got[1][2, 0, 0].eq(float(inclusive)).all()
    for name, x, y in zip(("psp", "spikes", "membrane", "delta_u", "u_last", "a_last"), got, expected, strict=True):
        assert x.dtype == dtype and torch.equal(x, y), name


# -- the backward -----------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [2, 5, 10])
@pytest.mark.parametrize("carried", [False, True])
@pytest.mark.parametrize("at_spikes", [True, False])
def test_vectorised_backward_equals_step_by_step_reference(steps, carried, at_spikes):
    current = _current(steps, seed=steps)
    gen = torch.Generator().manual_seed(100 + steps)
    u0 = 0.9 * torch.rand(current.shape[1:], generator=gen, dtype=D) if carried else torch.zeros_like(current[0])
    a0 = 0.5 * torch.rand(current.shape[1:], generator=gen, dtype=D) if carried else torch.zeros_like(current[0])
    grad_out = torch.randn(current.shape, generator=gen, dtype=D)
    psp, spikes, membrane, delta_u, _, _ = tssl_forward_reference(current, u0, a0, V_TH, TAU_M, TAU_S)
    # every branch of the reference is taken: spiking, silent, and quiet-but-recently-active neurons
    silent = psp < 1 / (4 * TAU_S)
    assert spikes.any() and silent.any() and (~silent & (spikes == 0)).any()
    saved = (spikes, membrane, delta_u, psp, V_TH, TAU_M, TAU_S)
    expected = tssl_backward_reference(grad_out, *saved, at_spikes)
    torch.testing.assert_close(tssl_backward(grad_out, *saved, at_spikes), expected, atol=1e-13, rtol=1e-12)
    # the revisions differ exactly where a non-silent neuron's membrane rose without a spike
    other = tssl_backward_reference(grad_out, *saved, not at_spikes)
    rising = ~silent & (spikes == 0) & (delta_u > 0)
    assert rising.any() and not torch.allclose(expected[rising], other[rising])
    # and through autograd: the op's gradient with respect to the current
    x = current.clone().requires_grad_()
    out = tsslbp(x, u0, a0, v_threshold=V_TH, tau_m=TAU_M, tau_s=TAU_S, dt_du_at_spikes=at_spikes)
    torch.testing.assert_close(out[0], psp, atol=0, rtol=0)
    (grad,) = torch.autograd.grad(out[0], x, grad_out)
    torch.testing.assert_close(grad, expected, atol=1e-13, rtol=1e-12)


@pytest.mark.parametrize("block", [1, 3, 1 << 30])
@pytest.mark.parametrize("steps", [1, 10])
@pytest.mark.parametrize("at_spikes", [True, False])
def test_backward_over_many_lanes_in_time_blocks_equals_reference(block, steps, at_spikes, small_blocks):
    """With enough lanes for plain step-loop scans the backward walks time in blocks (here of ``block`` steps,
    ragged against ``steps``), each scan carried across: the reference's gradient, and bit for bit the one
    of a single block."""
    lanes = SEQUENTIAL_LANES
    current = _current(steps, seed=steps, shape=(lanes,))
    grad_out = torch.randn(current.shape, generator=torch.Generator().manual_seed(steps), dtype=D)
    zeros = torch.zeros_like(current[0])
    psp, spikes, membrane, delta_u, _, _ = tssl_forward_reference(current, zeros, zeros, V_TH, TAU_M, TAU_S)
    saved = (spikes, membrane, delta_u, psp, V_TH, TAU_M, TAU_S, at_spikes)
    whole = tssl_backward(grad_out, *saved)
    small_blocks(block * lanes)
    got = tssl_backward(grad_out, *saved)
    torch.testing.assert_close(got, tssl_backward_reference(grad_out, *saved), atol=1e-13, rtol=1e-12)
    assert torch.equal(got, whole)


@pytest.mark.parametrize("at_spikes", [True, False])
def test_reference_backward_follows_the_spec_equations_by_hand(at_spikes):
    """One neuron spiking at t = 0 and t = 2, and one silent neuron, worked out from spec section 6.2; without
    the factor o_t of dt/du (``at_spikes=False``), the rise of the first neuron at t = 1 gets a timing gradient too."""
    theta_m, eps = 1 / TAU_M, [(1 - 1 / TAU_S) ** k / TAU_S for k in range(3)]
    current = torch.tensor([[1.5, 0.3], [0.5, 0.3], [2.0, 0.3]], dtype=D)
    g = torch.tensor([[0.7, -0.4], [-1.1, 0.9], [0.5, 0.6]], dtype=D)
    psp, spikes, membrane, delta_u, _, _ = tssl_forward_reference(
        current, torch.zeros(2, dtype=D), torch.zeros(2, dtype=D), V_TH, TAU_M, TAU_S
    )
    assert spikes[:, 0].tolist() == [1.0, 0.0, 1.0] and spikes[:, 1].tolist() == [0.0, 0.0, 0.0]
    # neuron 0: u = 1.5 (spike, reset), 0.5, 0.5 * 0.8 + 2.0 = 2.4 (spike); a_1 = 2/9 is above 1/12
    grad2 = -max(-1 / 1.9, -8) * eps[0] * g[2, 0]
    if at_spikes:
        grad1 = (1 - theta_m) * grad2  # no spike at t = 1: only the carried term
    else:  # du_1 = 0.5: -dt/du = 2 on S_1, and the carried term gains theta_m u_1 (-dt/du)
        grad1 = 2 * (eps[0] * g[1, 0] + eps[1] * g[2, 0]) + (theta_m * 0.5 * 2 + 1 - theta_m) * grad2
    carried0 = (1 - theta_m) * grad2  # theta after t = 1
    dt_du0 = -1 / 1.5
    grad0 = -dt_du0 * (eps[0] * g[0, 0] + eps[1] * g[1, 0] + eps[2] * g[2, 0]) + carried0 * 1.5 * (-theta_m) * dt_du0
    # neuron 1 never fires: a_t = 0 < 1/(4 tau_s), so every step takes the sigmoid fallback
    u1 = [0.3, 0.3 * 0.8 + 0.3, (0.3 * 0.8 + 0.3) * 0.8 + 0.3]

    def slope(u: float) -> float:
        c = min(max((V_TH - u) / 0.2, -8), 8)
        return math.exp(c) / (0.2 * (1 + math.exp(c)) ** 2)

    fallback = [sum(eps[k] * g[t + k, 1] for k in range(3 - t)) * slope(u1[t]) for t in range(3)]
    expected = torch.tensor([[grad0, fallback[0]], [grad1, fallback[1]], [grad2, fallback[2]]], dtype=D)
    saved = (spikes, membrane, delta_u, psp, V_TH, TAU_M, TAU_S, at_spikes)
    torch.testing.assert_close(tssl_backward_reference(g, *saved), expected, atol=1e-14, rtol=1e-12)
    torch.testing.assert_close(tssl_backward(g, *saved), expected, atol=1e-14, rtol=1e-12)


def test_dt_du_is_clamped_at_minus_eight():
    """A spike on a tiny increment: -1/du = -100 is clamped to -8 (spec 6.5: both clamps are needed)."""
    current = torch.tensor([[0.99], [0.01 + 0.99 / TAU_M + 1e-12]], dtype=D)  # u = 0.99, then just above threshold
    g = torch.tensor([[0.0], [1.0]], dtype=D)
    psp, spikes, membrane, delta_u, _, _ = tssl_forward_reference(
        current, torch.zeros(1, dtype=D), torch.zeros(1, dtype=D), V_TH, TAU_M, TAU_S
    )
    assert spikes[:, 0].tolist() == [0.0, 1.0]
    grad = tssl_backward(g, spikes, membrane, delta_u, psp, V_TH, TAU_M, TAU_S)
    torch.testing.assert_close(grad[1], torch.tensor([8 / TAU_S], dtype=D))


# -- the neuron ----------------------------------------------------------------------------------------
def _loop(current: torch.Tensor, u: torch.Tensor, a: torch.Tensor, inclusive: bool = False):
    """The spec's equations (6.1), written out."""
    psps, membranes = [], []
    for i_t in current.unbind(0):
        u = (1 - 1 / TAU_M) * u + i_t
        o = (u >= V_TH if inclusive else u > V_TH).to(u.dtype)
        membranes.append(u)
        u = u * (1 - o)
        a = (1 - 1 / TAU_S) * a + o / TAU_S
        psps.append(a)
    return torch.stack(psps), torch.stack(membranes), u, a


@pytest.mark.parametrize("gradient", ["tsslbp", "surrogate"])
def test_psplif_forward_matches_equations_steps_and_chaining(gradient):
    neuron = PSPLIF(4, gradient=gradient).to(D)
    current = _current(7, shape=(2, 4, 3))
    psp, membrane, state = neuron(current, return_membrane=True)
    ref_psp, ref_membrane, u, a = _loop(current, torch.zeros_like(current[0]), torch.zeros_like(current[0]))
    torch.testing.assert_close(psp, ref_psp, atol=1e-12, rtol=0)
    torch.testing.assert_close(membrane, ref_membrane, atol=1e-12, rtol=0)
    torch.testing.assert_close(tuple(state), (u, a), atol=1e-12, rtol=0)
    stepped, s = [], None
    for x_t in current.unbind(0):
        out, s = neuron.step(x_t, s)
        stepped.append(out)
    torch.testing.assert_close(torch.stack(stepped), psp, atol=1e-12, rtol=0)
    first, mid = neuron(current[:3])
    second, end = neuron(current[3:], mid)
    torch.testing.assert_close(torch.cat([first, second]), psp, atol=1e-12, rtol=0)
    torch.testing.assert_close(tuple(end), tuple(state), atol=1e-12, rtol=0)
    assert torch.equal(neuron.spikes(membrane), (ref_membrane > V_TH).to(D))


def test_psplif_surrogate_gradient_is_autograd_through_the_equations():
    neuron = PSPLIF(4, gradient="surrogate").to(D)
    current = _current(5, shape=(3, 4)).requires_grad_()
    weights = torch.randn(5, 3, 4, dtype=D)
    (got,) = torch.autograd.grad((neuron(current)[0] * weights).sum(), current)
    surrogate = Sigmoid(alpha=5.0, inclusive=False)
    u = a = torch.zeros(3, 4, dtype=D)
    out = []
    for i_t in current.unbind(0):
        u = u + (i_t - u / TAU_M)
        o = surrogate(u - V_TH)
        u = u * (1 - o)
        a = a + (o - a) / TAU_S
        out.append(a)
    (expected,) = torch.autograd.grad((torch.stack(out) * weights).sum(), current)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
    assert not torch.allclose(got, tssl_backward_reference(weights, *_saved(current.detach())))


def _saved(current):
    psp, spikes, membrane, delta_u, _, _ = tssl_forward_reference(
        current, torch.zeros_like(current[0]), torch.zeros_like(current[0]), V_TH, TAU_M, TAU_S
    )
    return spikes, membrane, delta_u, psp, V_TH, TAU_M, TAU_S


def test_psp_filter_and_its_neuron_match_the_recurrence():
    x = torch.rand(6, 2, 3, dtype=D)
    a, expected = torch.zeros(2, 3, dtype=D), []
    for x_t in x.unbind(0):  # the reference code's psp(): syn = syn - syn/tau_s + x; out = syn/tau_s
        a = a + (x_t - a) / TAU_S
        expected.append(a)
    torch.testing.assert_close(psp_filter(x, TAU_S)[0], torch.stack(expected), atol=1e-14, rtol=0)
    layer = PSPFilter(3).to(D)
    out, state = layer(x)
    torch.testing.assert_close(out, torch.stack(expected), atol=1e-14, rtol=0)
    one, s = layer.step(x[0])
    torch.testing.assert_close(one, expected[0], atol=1e-14, rtol=0)


# -- loss, network, task ---------------------------------------------------------------------------
def test_kernel_and_count_losses_follow_the_reference_code():
    outputs = torch.rand(5, 4, 3, dtype=D)
    target = torch.tensor([0, 2, 1, 2])
    desired = [0, 1, 1, 1, 1]
    syn, psp_d = 0.0, []
    for d in desired:
        syn = syn - syn / TAU_S + d
        psp_d.append(syn / TAU_S)
    kernel = 0.0
    for b in range(4):
        for k in range(3):
            for t in range(5):
                kernel += 0.5 * (outputs[t, b, k].item() - (psp_d[t] if k == target[b] else 0.0)) ** 2
    torch.testing.assert_close(SpikeSequenceLoss().sequence_loss(outputs, target).item(), kernel / 4)
    count = 0.0
    for b in range(4):
        for k in range(3):
            wanted = 4.0 if k == target[b] else 1.0
            delta = (outputs[:, b, k].sum().item() - wanted) / 5
            if (k == target[b] and delta < 0) or (k != target[b] and delta > 0):
                count += 0.5 * 5 * delta**2
    torch.testing.assert_close(SpikeSequenceLoss(variant="count").sequence_loss(outputs, target).item(), count / 4)
    assert desired_spikes(5).tolist() == desired and desired_spikes(10).tolist() == [0, 1] * 5
    assert desired_spikes(7).tolist() == [0, 1, 1, 1, 1, 0, 1]


def test_network_builder_matches_the_paper_notation():
    net = tssl_network("15C5-P2-40C5-P2-300", (1, 28, 28), 10)
    kinds = [type(m).__name__ for m in net]
    assert kinds == [
        "PSPFilter",
        "Conv2d",
        "PSPLIF",
        "SumPool2d",
        "Conv2d",
        "PSPLIF",
        "SumPool2d",
        "Flatten",
        "Linear",
        "PSPLIF",
        "Linear",
        "PSPLIF",
    ]
    assert net[8].in_features == 640 and net[8].out_features == 300 and net[10].out_features == 10
    assert all(getattr(m, "bias", None) is None for m in net if isinstance(m, (nn.Conv2d, nn.Linear)))
    x = torch.rand(3, 2, 1, 28, 28)
    h = x
    for m in net:
        h = m(h)[0] if isinstance(m, (PSPLIF, PSPFilter)) else m(h.flatten(0, 1)).unflatten(0, (3, 2))
    assert h.shape == (3, 2, 10)
    assert all(m.dt_du_at_spikes for m in net if isinstance(m, PSPLIF))
    rising = tssl_network("8C3-12", (1, 8, 8), 10, dt_du_at_spikes=False)
    assert [m.dt_du_at_spikes for m in rising if isinstance(m, PSPLIF)] == [False, False, False]
    assert "dt_du_at_spikes=False" in repr(rising)
    # the reference's Fashion-MNIST and CIFAR-10 networks pad their convs to keep the map's size
    fashion = tssl_network("32C5-P2-64C5-P2-1024", (1, 28, 28), 10, padding="same")
    assert [m.padding for m in fashion if isinstance(m, nn.Conv2d)] == [(2, 2), (2, 2)]
    assert fashion[8].in_features == 3136 and fashion[8].out_features == 1024
    cifar = tssl_network(
        "96C3-256C3-P2-384C3-P2-384C3-256C3-1024-1024", (3, 32, 32), 10, padding="same", conv_scale=5.0
    )
    assert [m for m in cifar if isinstance(m, nn.Linear)][0].in_features == 16384
    assert not any(isinstance(m, SequenceDropout) for m in cifar)
    # with dropout, as the reference's CIFAR-10 net: behind every hidden layer and its pooling
    dropped = tssl_network("96C3-256C3-P2-384C3-P2-384C3-256C3-1024-1024", (3, 32, 32), 10, padding="same", dropout=0.2)
    layout = (
        "-".join(
            {"Conv2d": "C", "SumPool2d": "P", "SequenceDropout": "D", "Linear": "F"}.get(type(m).__name__, "")
            for m in dropped
        )
        .replace("--", "-")
        .strip("-")
    )
    assert layout.replace("-", "") == "CDCPDCPDCDCDFDFDF"
    assert all(m.p == 0.2 for m in dropped if isinstance(m, SequenceDropout))
    assert tssl_network("4C3-6", (1, 8, 8), 10, padding=1)[4].in_features == 4 * 8 * 8
    nmnist = tssl_network("12C5-P2-64C5-P2", (2, 34, 34), 10, padding=(1, 0))
    assert [m.padding for m in nmnist if isinstance(m, nn.Conv2d)] == [(1, 1), (0, 0)]
    assert nmnist[-2].in_features == 2304  # the reference's N-MNIST output layer
    torch.manual_seed(0)
    valid = tssl_network("4C3-6", (1, 8, 8), 10)
    torch.manual_seed(0)
    same = tssl_network("4C3-6", (1, 8, 8), 10, padding="same")
    assert valid[4].in_features == 4 * 6 * 6 and same[4].in_features == 4 * 8 * 8
    x = torch.rand(1, 1, 8, 8)  # the padded conv's interior equals the unpadded conv
    torch.testing.assert_close(same[1](x)[..., 1:-1, 1:-1], valid[1](x))
    pool = SumPool2d(2)
    y = torch.rand(1, 1, 4, 4)
    torch.testing.assert_close(pool(y)[0, 0, 0, 0], 1.1 * y[0, 0, :2, :2].sum())


def test_image_task_repeats_the_picture():
    from snn_parallel.tasks import SequentialDigits, make_loader

    pytest.importorskip("sklearn")
    image, static = SequentialDigits("test", "image", repeat=5), SequentialDigits("test", "static", repeat=5)
    assert image.inputs.shape[1:] == (5, 1, 8, 8)
    assert torch.equal(image.inputs.flatten(2), static.inputs)
    x, y = next(iter(make_loader(image, 7)))
    assert x.shape == (5, 7, 1, 8, 8) and y.shape == (7,)


# -- the trainer -----------------------------------------------------------------------------------
def _net(gradient: str = "tsslbp", seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return tssl_network("4C3-P2-12", (1, 8, 8), 3, gradient=gradient, conv_scale=3.0)


def _batches(n: int = 3, batch: int = 6, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.rand(5, batch, 1, 8, 8, generator=gen), torch.randint(0, 3, (batch,), generator=gen)) for _ in range(n)
    ]


@pytest.mark.parametrize("gradient", ["tsslbp", "surrogate"])
def test_reference_recipe_sums_over_the_batch_then_clips_and_clamps(gradient):
    """TSSLBPTrainer's defaults, and BPTTTrainer given the same options on the surrogate network."""
    model = _net(gradient)
    x, y = _batches(1)[0]
    manual = copy.deepcopy(model)
    h = x
    for m in manual:
        h = m(h)[0] if isinstance(m, (PSPLIF, PSPFilter)) else m(h.flatten(0, 1)).unflatten(0, (5, 6))
    (SpikeSequenceLoss().sequence_loss(h, y) * 6).backward()
    expected = {n: p.grad.clone() for n, p in manual.named_parameters()}
    total = torch.sqrt(sum(g.square().sum() for g in expected.values()))
    assert total > 1  # the clip to norm 1 acts
    optimizer = torch.optim.SGD(model.parameters(), lr=100.0)
    if gradient == "tsslbp":
        trainer = TSSLBPTrainer(model, optimizer, progress=False)
    else:
        trainer = BPTTTrainer(
            model,
            optimizer,
            loss=SpikeSequenceLoss(),
            clip_grad_norm=1.0,
            weight_clamp=4.0,
            batch_sum=True,
            progress=False,
        )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.fit([(x, y)], 1)
    for name, param in model.named_parameters():
        stepped = before[name] - 100.0 * expected[name] / total
        torch.testing.assert_close(param.detach(), stepped.clamp(-4, 4), atol=1e-5, rtol=1e-5)
    assert any((before[n] - 100.0 * expected[n] / total).abs().max() > 4 for n in expected)  # the clamp acts


def test_tsslbp_and_bptt_train_the_same_network_differently():
    x, y = _batches(1)[0]
    grads = {}
    for gradient, cls, options in (
        ("tsslbp", TSSLBPTrainer, {"batch_sum": False, "clip_grad_norm": None}),
        ("surrogate", BPTTTrainer, {"loss": SpikeSequenceLoss()}),
    ):
        model = _net(gradient)
        trainer = cls(model, torch.optim.SGD(model.parameters(), lr=0.0), progress=False, **options)
        trainer.optimizer_step = lambda: None
        trainer.train_batch(*trainer.prepare((x, y)))
        grads[gradient] = [p.grad.clone() for p in model.parameters()]
    assert all(g.abs().sum() > 0 for g in grads["tsslbp"])
    assert not all(torch.allclose(a, b) for a, b in zip(grads["tsslbp"], grads["surrogate"], strict=True))


def test_image_experiment_gives_both_rules_the_same_recipe():
    from snn_parallel.learners.experiments import IMAGE_RECIPES, _image_trainer

    for recipe, options in IMAGE_RECIPES.items():
        tssl, bptt = (_image_trainer(rule, 1e-3, "4C3-12", recipe) for rule in ("tsslbp", "bptt"))
        assert type(tssl) is TSSLBPTrainer and type(bptt) is BPTTTrainer
        for trainer in (tssl, bptt):
            assert (trainer.batch_sum, trainer.weight_clamp, trainer.clip_grad_norm) == (
                options["batch_sum"],
                options["weight_clamp"],
                1.0,
            )
            assert trainer.loss == SpikeSequenceLoss()
    for rule in ("tsslbp", "bptt"):
        assert _image_trainer(rule, 1e-3, "4C3-12", loss="count").loss == SpikeSequenceLoss(variant="count")
    with pytest.raises(ValueError, match="recipe"):
        _image_trainer("bptt", 1e-3, "4C3-12", "sum")


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    def trainer_for(model):
        return TSSLBPTrainer(model, torch.optim.AdamW(model.parameters(), lr=1e-2), progress=False)

    assert_resume_is_exact(tmp_path, trainer_for, _net, _batches, resumed_model=lambda: _net(seed=7))


def _ddp_worker(rank: int, rendezvous: str, batches, out: str) -> None:
    join_two_ranks(rank, rendezvous)
    model = _net(seed=rank)  # different init per rank: the trainer must broadcast rank 0's
    trainer = TSSLBPTrainer(model, torch.optim.SGD(model.parameters(), lr=0.05), batch_sum=False, progress=False)
    trainer.fit([(x[:, rank * 3 : (rank + 1) * 3], y[rank * 3 : (rank + 1) * 3]) for x, y in batches], 1)
    torch.save(model.state_dict(), f"{out}.{rank}")
    leave_two_ranks()


def test_ddp_two_processes_match_one_process_on_the_whole_batch(tmp_path):
    batches = _batches(2)
    out = str(tmp_path / "state")
    spawn_two_ranks(_ddp_worker, tmp_path, batches, out)
    rank0, rank1 = torch.load(out + ".0"), torch.load(out + ".1")
    model = _net(seed=0)
    # the mean of two per-sample-mean losses on halves is the mean loss on the whole batch
    TSSLBPTrainer(model, torch.optim.SGD(model.parameters(), lr=0.05), batch_sum=False, progress=False).fit(batches, 1)
    for name, value in model.state_dict().items():
        assert torch.equal(rank0[name], rank1[name])
        torch.testing.assert_close(rank0[name], value, atol=1e-6, rtol=1e-5)


# -- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: tsslbp(torch.rand(0, 2, 3)), ValueError, "current"),
        (lambda: tsslbp(torch.full((3, 2), float("nan"))), ValueError, "current"),
        (lambda: tsslbp(torch.zeros(3, 2, dtype=torch.long)), TypeError, "current"),
        (lambda: tsslbp(torch.rand(3, 2), torch.rand(3)), ValueError, "u0"),
        (lambda: tsslbp(torch.rand(3, 2), None, torch.rand(2, dtype=D)), TypeError, "a0"),
        (lambda: tsslbp(torch.rand(3, 2), tau_m=0.5), ValueError, "tau_m"),
        (lambda: tsslbp(torch.rand(3, 2), v_threshold="1"), TypeError, "v_threshold"),
        (lambda: tsslbp(torch.rand(3, 2), backend="gpu"), ValueError, "backend"),
        (lambda: tsslbp(torch.rand(3, 2), dt_du_at_spikes="no"), TypeError, "dt_du_at_spikes"),
        (lambda: tsslbp(torch.rand(3, 2), inclusive=1), TypeError, "inclusive"),
        (
            lambda: tsslbp(torch.rand(3, 2), backend="cupy"),
            RuntimeError,
            "tsslbp: backend='cupy' cannot run: the inputs are on cpu",
        ),
        (lambda: psp_filter(torch.rand(3, 2), 0.0), ValueError, "tau_s"),
        (lambda: PSPLIF(4, gradient="exact"), ValueError, "gradient"),
        (lambda: PSPLIF(4, tau_s=0.2), ValueError, "tau_s"),
        (lambda: PSPLIF(0), ValueError, "features"),
        (lambda: PSPLIF(4, backend="gpu"), ValueError, "backend"),
        (lambda: PSPLIF(4, dt_du_at_spikes=0), TypeError, "dt_du_at_spikes"),
        (lambda: PSPLIF(4, gradient="surrogate", dt_du_at_spikes=False), ValueError, "dt_du_at_spikes=False"),
        (
            lambda: tssl_network("8C3", (1, 8, 8), 10, gradient="surrogate", dt_du_at_spikes=False),
            ValueError,
            "dt_du_at_spikes",
        ),
        (
            lambda: PSPLIF(4, backend="cupy")(torch.rand(3, 2, 4)),
            RuntimeError,
            r"PSPLIF\(backend='cupy'\) cannot run the CuPy kernels of tsslbp: the inputs are on cpu",
        ),
        (lambda: PSPLIF(4)(torch.rand(3, 2, 5)), ValueError, "x_seq"),
        (lambda: PSPLIF(4)(torch.rand(0, 2, 4)), ValueError, "x_seq"),
        (lambda: PSPLIF(4)(torch.full((3, 2, 4), float("nan"))), ValueError, "x_seq"),
        (
            lambda: PSPLIF(4)(torch.rand(3, 2, 4), PSPLIFState(torch.rand(2, 3), torch.rand(2, 4))),
            ValueError,
            "state.u",
        ),
        (lambda: PSPLIF(4).step(torch.rand(2, 5)), ValueError, "x_t"),
        (lambda: SpikeSequenceLoss(variant="softmax"), ValueError, "variant"),
        (lambda: SpikeSequenceLoss(steps="last"), ValueError, "steps"),
        (lambda: SpikeSequenceLoss().check_target(torch.zeros(5, 2, dtype=torch.long), 5, 2, 3), ValueError, "target"),
        (
            lambda: SpikeSequenceLoss().sequence_loss(torch.rand(2, 2, 3), torch.zeros(2, dtype=torch.long), 1, 5),
            ValueError,
            "whole",
        ),
        (lambda: tssl_network("15X5", (1, 28, 28), 10), ValueError, "15X5"),
        (lambda: tssl_network("15C9", (1, 8, 8), 10), ValueError, "does not fit"),
        (lambda: tssl_network("15C9", (1, 8, 8), 10, padding=0), ValueError, "does not fit"),
        (lambda: tssl_network("4C4", (1, 8, 8), 10, padding="same"), ValueError, "odd kernels"),
        (lambda: tssl_network("4C3", (1, 8, 8), 10, padding="full"), ValueError, "padding"),
        (lambda: tssl_network("4C3", (1, 8, 8), 10, padding=-1), ValueError, "padding"),
        (lambda: tssl_network("4C3", (1, 8, 8), 10, padding=True), ValueError, "padding"),
        (lambda: tssl_network("4C3", (1, 8, 8), 10, padding=1.0), ValueError, "padding"),
        (lambda: tssl_network("4C3-P2-4C3", (1, 8, 8), 10, padding=(1,)), ValueError, "one per conv"),
        (lambda: tssl_network("4C3", (1, 8, 8), 10, padding=("same", -1)), ValueError, "padding"),
        (lambda: tssl_network("4C3", (1, 8, 8), 10, padding=[1]), ValueError, "padding"),
        (lambda: tssl_network("4C3", (1, 8, 8), 10, dropout=1.0), ValueError, "dropout"),
        (lambda: tssl_network("4C3", (1, 8, 8), 10, dropout=-0.1), ValueError, "dropout"),
        (lambda: tssl_network("4C3", (1, 8, 8), 10, dropout=True), TypeError, "dropout"),
        (lambda: tssl_network("100-P2", (1, 8, 8), 10), ValueError, "after a fully connected"),
        (lambda: tssl_network("8C3", (8, 8), 10), ValueError, "input_shape"),
        (lambda: tssl_network(15, (1, 8, 8), 10), TypeError, "spec"),
        (lambda: tssl_network("8C3", (1, 8, 8), 1), ValueError, "classes"),
    ],
)
def test_bad_input_is_refused_naming_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_trainer_refuses_networks_and_options_it_cannot_train():
    opt = lambda m: torch.optim.SGD(m.parameters(), lr=0.1)  # noqa: E731
    surrogate = _net("surrogate")
    with pytest.raises(ValueError, match=r"2 is a PSPLIF\(gradient='surrogate'\)"):
        TSSLBPTrainer(surrogate, opt(surrogate))
    lif = nn.Sequential(nn.Linear(4, 4), DecoupledLIF(4))
    with pytest.raises(ValueError, match="1 is a DecoupledLIF"):
        TSSLBPTrainer(lif, opt(lif))
    model = _net()
    with pytest.raises(ValueError, match="weight_clamp"):
        TSSLBPTrainer(model, opt(model), weight_clamp=0)
    with pytest.raises(ValueError, match="loss"):
        TSSLBPTrainer(model, opt(model), loss="hinge")
    with pytest.raises(ValueError, match="target of a SpikeSequenceLoss"):
        TSSLBPTrainer(model, opt(model), progress=False).fit(
            [(torch.rand(5, 2, 1, 8, 8), torch.zeros(5, 2, dtype=torch.long))], 1
        )


# -- the claim -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tsslbp_reaches_95_percent_on_digits_images():
    pytest.importorskip("sklearn")
    from snn_parallel.learners.experiments import train_image

    assert train_image("tsslbp")["test_accuracy"] >= 0.95


def test_tsslbp_trains_through_sequence_dropout():
    torch.manual_seed(0)
    model = tssl_network("4C3-P2-12", (1, 8, 8), 3, conv_scale=3.0, dropout=0.5)
    assert [type(m).__name__ for m in model].count("SequenceDropout") == 2
    plain = _net()  # the same weights without dropout
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), plain.parameters(), strict=True))
    x, y = _batches(1)[0]
    runs = {}
    for name, net in (("dropout", model), ("plain", plain)):
        trainer = TSSLBPTrainer(net, torch.optim.SGD(net.parameters(), lr=0.0), progress=False)
        trainer.optimizer_step = lambda: None
        trainer.train_batch(*trainer.prepare((x, y)))
        net.eval()
        trainer.network.reset()
        runs[name] = ([p.grad.clone() for p in net.parameters()], trainer.network.run(trainer.prepare((x, y))[0]))
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in runs["dropout"][0])
    assert not all(torch.allclose(a, b) for a, b in zip(runs["dropout"][0], runs["plain"][0], strict=True))
    torch.testing.assert_close(runs["dropout"][1], runs["plain"][1])  # eval: no dropout
