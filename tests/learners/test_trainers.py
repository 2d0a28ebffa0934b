"""The learners: gradients against BPTT and the rules' equations, the shared loop, checkpoints, DDP, bad input."""

from __future__ import annotations

import copy

import pytest
import torch

# the helpers, under the names these tests use
from learner_support import assert_close_dicts as _assert_close
from learner_support import (
    assert_resume_is_exact,
    digits_classifier,
    digits_loader,
    join_two_ranks,
    leave_two_ranks,
    needs,
    spawn_two_ranks,
)
from learner_support import bptt_gradients as _bptt_reference
from learner_support import digits_like as _digits_like
from learner_support import trainer_gradients as _gradients
from learner_support import wide as _wide
from torch import nn

from snn_parallel.learners import (
    BPTTTrainer,
    FPTTTrainer,
    HYPRTrainer,
    OTTTTrainer,
    RecurrentBlock,
    SequenceDropout,
    StepLoss,
    UnsupportedModule,
    discover,
)
from snn_parallel.learners.hypr import suffix_scan
from snn_parallel.neurons import BRF, LTC, PRF, DecoupledLIF, DynamicDecay, SEAdLIF, SynapticLIF
from snn_parallel.surrogate import Sigmoid

sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
from spikingjelly.activation_based import layer as sj_layer  # noqa: E402

NEURONS = {
    "prf": lambda n: PRF(n, learn_decay=True, dt_range=(0.1, 1.0), surrogate=Sigmoid()),
    "lif": lambda n: DecoupledLIF(n, learn_decay=True, surrogate=Sigmoid()),
    "synaptic": lambda n: SynapticLIF(n, learn_decay=True, learn_threshold=True, surrogate=Sigmoid()),
    "dsn": lambda n: DynamicDecay(n, surrogate=Sigmoid()),
    "brf": lambda n: BRF(n),
    "adlif": lambda n: SEAdLIF(n),
}


# -- losses --------------------------------------------------------------------------------------------
def test_step_loss_decomposes_over_steps():
    out = torch.randn(6, 4, 3)
    y = torch.randint(0, 3, (4,))
    loss = StepLoss("ce", (2, None))
    whole = loss.sequence_loss(out, y)
    parts = [loss.sequence_loss(out[t : t + 1], y, offset=t, num_steps=6) for t in range(6)]
    assert parts[0] is None and parts[1] is None
    torch.testing.assert_close(sum(p for p in parts if p is not None), whole)
    expected = sum(nn.functional.cross_entropy(out[t], y) for t in range(2, 6)) / 4
    torch.testing.assert_close(whole, expected)


@pytest.mark.parametrize(
    "loss, target, message",
    [
        (StepLoss("ce"), torch.zeros(5, dtype=torch.long), r"\[B\] = \[4\]"),
        (StepLoss("ce"), torch.zeros(4), "int64"),
        (StepLoss("ce"), torch.full((4,), 7), "outside"),
        (StepLoss("mse"), torch.zeros(4), r"\[B, K\] = \[4, 3\]"),
        (StepLoss("mse"), torch.zeros(4, 3, dtype=torch.long), "floating"),
        (StepLoss("mse"), torch.full((4, 3), float("nan")), "NaN"),
    ],
)
def test_step_loss_rejects_targets(loss, target, message):
    with pytest.raises((ValueError, TypeError), match=message):
        loss.check_target(target, 6, 4, 3)


def test_step_loss_rejects_bad_options():
    with pytest.raises(ValueError, match="kind"):
        StepLoss("nll")
    with pytest.raises(ValueError, match="steps"):
        StepLoss("ce", "first")
    with pytest.raises(ValueError, match="selects no step"):
        StepLoss("ce", (10, None)).mask(5)


# -- discovery -----------------------------------------------------------------------------------------
@pytest.mark.legacy
def test_discovery_accepts_supported_networks():
    pytest.importorskip("snntorch")
    from snn_parallel.adapters import snntorch as snt_adapter
    from snn_parallel.adapters import spikingjelly as sj_adapter

    nets = [
        nn.Sequential(nn.Linear(4, 8), PRF(8), nn.Sequential(nn.Linear(8, 8), DynamicDecay(8)), nn.Linear(8, 3)),
        nn.Sequential(nn.Flatten(), sj_layer.Linear(4, 8), sj_adapter.PRFNode(8), sj_layer.Linear(8, 3)),
        nn.Sequential(nn.Linear(4, 8), sj_neuron.LIFNode(), nn.Linear(8, 3)),
        nn.Sequential(nn.Linear(4, 8), snt_adapter.DynamicDecay(8, init_hidden=True), nn.Linear(8, 3)),
        nn.Sequential(RecurrentBlock(4, DecoupledLIF(8)), nn.Linear(8, 3)),
        nn.Sequential(
            nn.Linear(4, 8), sj_layer.LinearRecurrentContainer(sj_adapter.DecoupledLIFNode(8), 8, 8), nn.Linear(8, 3)
        ),
    ]
    x = torch.rand(5, 2, 4)
    for net in nets:
        network = discover(net)
        with network.stepping():
            network.reset()
            out = network.run(x)
            network.reset()
            steps = torch.stack([network.step(x_t) for x_t in x.unbind(0)])
        assert out.shape == (5, 2, 3)
        torch.testing.assert_close(out, steps)


@pytest.mark.legacy
@pytest.mark.parametrize(
    "model, message",
    [
        (lambda: nn.Sequential(nn.Linear(4, 8), nn.LSTM(8, 8), PRF(8)), r"1 \(LSTM\) is a recurrent ANN layer"),
        (lambda: nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3)), "no spiking neuron"),
        (lambda: nn.Linear(4, 3), "no spiking neuron"),
        (lambda: nn.Sequential(nn.Linear(4, 8), PRF(8), nn.GRUCell(8, 8)), r"2 \(GRUCell\) is a recurrent ANN layer"),
        pytest.param(
            lambda: nn.Sequential(nn.Linear(4, 8), sj_neuron.PSN(T=4)),
            r"1 \(PSN\) takes only whole sequences",
            marks=needs(sj_neuron, "PSN"),
        ),
    ],
)
def test_discovery_refuses_unsupported_modules(model, message):
    with pytest.raises(UnsupportedModule, match=message):
        discover(model())


def test_recurrent_block_passes_on_the_membrane_on_request():
    """output='membrane': the block's output is the state field u after each step, the recurrent input stays z_{t-1}."""
    torch.manual_seed(0)
    block = RecurrentBlock(3, LTC(5), output="membrane")
    x = torch.rand(7, 2, 3) * 4
    core, state, last, expected, spikes = block.neuron, None, torch.zeros(2, 5), [], []
    for x_t in x.unbind(0):
        z, state = core.step(block.synapse(torch.cat([x_t, last], -1)), state)
        last = z
        expected.append(state.u)
        spikes.append(z)
    assert torch.stack(spikes).sum() > 0  # the recurrent spikes take part
    torch.testing.assert_close(block(x), torch.stack(expected))
    model = nn.Sequential(block, nn.Linear(5, 1))
    torch.testing.assert_close(discover(model).run(x), model(x))
    with pytest.raises(ValueError, match="output must be 'spikes' or 'membrane'"):
        RecurrentBlock(3, LTC(5), output="voltage")
    with pytest.raises(ValueError, match="state field 'u', which DecoupledLIF does not have"):
        RecurrentBlock(3, DecoupledLIF(5), output="membrane")


@pytest.mark.legacy
def test_discovery_refuses_snntorch_own_neurons():
    snn = pytest.importorskip("snntorch")
    with pytest.raises(UnsupportedModule, match="snn_parallel.adapters.snntorch"):
        discover(nn.Sequential(nn.Linear(4, 8), snn.Leaky(beta=0.9, init_hidden=True)))


# -- HYPR ----------------------------------------------------------------------------------------------
def test_suffix_scan_matches_loop():
    gen = torch.Generator().manual_seed(0)
    for length in (1, 2, 7, 16):
        a = torch.randn(length, 3, 4, 4, generator=gen, dtype=torch.float64)
        ell = torch.randn(length, 3, 4, generator=gen, dtype=torch.float64)
        q, suffix = suffix_scan(a, ell)
        q_ref, p_ref = [ell[-1]], [torch.eye(4, dtype=torch.float64).expand(3, 4, 4)]
        for t in range(length - 2, -1, -1):
            q_ref.insert(0, ell[t] + torch.einsum("bi,bij->bj", q_ref[0], a[t + 1]))
            p_ref.insert(0, p_ref[0] @ a[t + 1])
        torch.testing.assert_close(q, torch.stack(q_ref))
        torch.testing.assert_close(suffix, torch.stack(p_ref))


@pytest.mark.parametrize("neuron", sorted(NEURONS))
def test_hypr_single_layer_equals_bptt_for_every_chunk(neuron):
    torch.manual_seed(1)
    model = nn.Sequential(_wide(nn.Linear(4, 6)), NEURONS[neuron](6), nn.Linear(6, 3)).double()
    x, y = _digits_like(steps=12)
    x = x * (200 if neuron == "brf" else 1)  # BRF integrates its input with dt = 0.01
    reference = _bptt_reference(model, x, y, StepLoss("ce", "all"))
    assert reference["2.weight"].abs().sum() > 0, "the layer must spike for the check to mean anything"
    for chunk in (1, 7, 3, 12):
        _assert_close(_gradients(HYPRTrainer, model, x, y, chunk=chunk), reference)


def test_hypr_gradient_does_not_depend_on_chunk_in_deep_recurrent_nets():
    torch.manual_seed(2)
    model = nn.Sequential(
        _wide(nn.Linear(4, 6)),
        NEURONS["prf"](6),
        RecurrentBlock(6, SEAdLIF(5)),
        _wide(nn.Linear(5, 5)),
        NEURONS["lif"](5),
        nn.Linear(5, 3),
    ).double()
    _wide(model[2].synapse, gain=10)  # SE-adLIF integrates with (1 - alpha) ~ 0.1
    x, y = _digits_like(steps=16)
    full = _gradients(HYPRTrainer, model, x, y, chunk=None)
    assert all(g.abs().sum() > 0 for n, g in full.items() if n.endswith("weight")), {
        n: float(g.abs().sum()) for n, g in full.items()
    }
    for chunk in (1, 7, 4):
        _assert_close(_gradients(HYPRTrainer, model, x, y, chunk=chunk), full)


@pytest.mark.legacy
@pytest.mark.parametrize(
    "model, message",
    [
        (nn.Sequential(nn.Linear(4, 6), LTC(6), nn.Linear(6, 3)), "mixes neurons"),
        (
            nn.Sequential(nn.Linear(4, 6), PRF(6), sj_layer.SynapseFilter(), nn.Linear(6, 3)),
            r"2 \(SynapseFilter\) keeps a state of its own",
        ),
        (nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.5), PRF(6), nn.Linear(6, 3)), "deterministic"),
        (nn.Sequential(RecurrentBlock(4, PRF(6), output="membrane"), nn.Linear(6, 3)), "flow through spikes"),
    ],
)
def test_hypr_refuses_what_it_cannot_train(model, message):
    with pytest.raises(UnsupportedModule, match=message):
        HYPRTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), progress=False)


def test_hypr_carries_only_eligibilities_it_can_keep_per_neuron():
    """A norm over the features between a synapse and its neuron mixes the neurons' currents: HYPR trains
    it over the whole sequence, and refuses to cut the sequence into chunks, naming the synapse."""
    torch.manual_seed(0)
    model = nn.Sequential(_wide(nn.Linear(4, 6)), nn.LayerNorm(6), NEURONS["lif"](6), nn.Linear(6, 3)).double()
    x, y = _digits_like(steps=8)
    whole = _gradients(HYPRTrainer, model, x, y, chunk=None)
    assert whole["0.weight"].abs().sum() > 0 and whole["1.weight"].abs().sum() > 0
    with pytest.raises(
        UnsupportedModule,
        match=r"^0 feeds 2 \(DecoupledLIF\) but reaches it through more than element-wise.*chunk=None",
    ):
        _gradients(HYPRTrainer, model, x, y, chunk=4)


# -- FPTT ----------------------------------------------------------------------------------------------
def _fptt_model(neuron="lif"):
    torch.manual_seed(3)
    return nn.Sequential(_wide(nn.Linear(4, 6)), NEURONS[neuron](6), nn.Linear(6, 3)).double()


@pytest.mark.parametrize("neuron", ["lif", "synaptic"])
def test_fptt_one_part_is_bptt_plus_the_regulariser_gradient(neuron):
    model = _fptt_model(neuron)
    trainer = FPTTTrainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.05),
        parts=1,
        alpha=0.3,
        loss="ce_all",
        progress=False,
        clip_grad_norm=None,
    )
    for seed in range(3):  # move W away from W-bar and lambda away from 0
        trainer.train_batch(*trainer.prepare(_digits_like(seed=seed)))
    x, y = _digits_like(seed=9)
    expected = _bptt_reference(model, x, y, StepLoss("ce", "all"))
    for name, param in model.named_parameters():
        expected[name] = expected[name] - trainer.dual[name] + trainer.alpha * (param.detach() - trainer.running[name])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    dual_before = {n: v.clone() for n, v in trainer.dual.items()}
    running_before = {n: v.clone() for n, v in trainer.running.items()}
    trainer.train_batch(*trainer.prepare((x, y)))
    for name, param in model.named_parameters():
        # plain SGD: W' = W - lr * (grad of loss + grad of R)
        torch.testing.assert_close(param.detach(), before[name] - 0.05 * expected[name])
        # post-update, as in the reference code
        dual = dual_before[name] - trainer.alpha * (param.detach() - running_before[name])
        torch.testing.assert_close(trainer.dual[name], dual)
        torch.testing.assert_close(
            trainer.running[name], 0.5 * running_before[name] + 0.5 * param.detach() - (0.5 / trainer.alpha) * dual
        )


def test_fptt_regulariser_vanishes_as_alpha_goes_to_zero():
    model, reference_model = _fptt_model(), _fptt_model()
    fptt = FPTTTrainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.05),
        parts=1,
        alpha=1e-9,
        loss="ce_all",
        progress=False,
        clip_grad_norm=None,
    )
    bptt = BPTTTrainer(
        reference_model, torch.optim.SGD(reference_model.parameters(), lr=0.05), loss="ce_all", progress=False
    )
    for seed in range(4):
        fptt.train_batch(*fptt.prepare(_digits_like(seed=seed)))
        bptt.train_batch(*bptt.prepare(_digits_like(seed=seed)))
    for p, q in zip(model.parameters(), reference_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-7, rtol=0)


def test_fptt_parts_detach_state_and_weight_terminal_loss():
    model = _fptt_model()
    trainer = FPTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.0), parts=3, loss="ce", progress=False)
    x, y = _digits_like(steps=9)
    losses = []
    original = trainer._part_loss

    def spy(out, target, part, start, steps, terminal):
        loss = original(out, target, part, start, steps, terminal)
        losses.append(
            (part, out.shape[0], float(loss.detach()), float(nn.functional.cross_entropy(out[-1].detach(), target)))
        )
        return loss

    trainer._part_loss = spy
    trainer.train_batch(*trainer.prepare((x, y)))
    assert [(p, n) for p, n, _, _ in losses] == [(0, 3), (1, 3), (2, 3)]
    # no oracle estimate yet for a class that was classified right -> weight p/K on the CE alone at the last part
    assert losses[-1][2] == pytest.approx(losses[-1][3])
    assert trainer.global_step == 3
    with pytest.raises(ValueError, match="parts=3 is more than the 2 steps"):
        trainer.train_batch(*trainer.prepare(_digits_like(steps=2)))


@pytest.mark.parametrize("part_weight, weights", [("fraction", [1 / 3, 2 / 3, 1.0]), ("adding", [1 / 3, 4 / 3, 7 / 3])])
def test_fptt_part_weight_of_a_terminal_regression_label(part_weight, weights):
    """Part p (from 0) of K = 3 weighs its terminal MSE (p+1)/K or, as the adding-problem code, p + 1/K."""
    model = nn.Sequential(RecurrentBlock(2, LTC(5, b0=0.5, beta_a=0.0), output="membrane"), nn.Linear(5, 1))
    trainer = FPTTTrainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        parts=3,
        loss=StepLoss("mse", "last"),
        part_weight=part_weight,
        progress=False,
    )
    x, y = torch.rand(9, 4, 2), torch.rand(4, 1)
    seen = []
    original = trainer._part_loss

    def spy(out, target, part, start, steps, terminal):
        loss = original(out, target, part, start, steps, terminal)
        seen.append(float(loss.detach()) / float(nn.functional.mse_loss(out[-1].detach(), target)))
        return loss

    trainer._part_loss = spy
    trainer.train_batch(*trainer.prepare((x, y)))
    assert seen == pytest.approx(weights)
    with pytest.raises(ValueError, match="part_weight must be 'fraction' or 'adding'"):
        FPTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.0), parts=3, part_weight="linear")


# -- OTTT ----------------------------------------------------------------------------------------------
@pytest.mark.legacy
@pytest.mark.parametrize("node", ["ours", "spikingjelly"])
def test_ottt_single_lif_layer_equals_bptt_with_detached_reset(node):
    """With a trace decay equal to the membrane decay, OTTT's three-factor gradient is exact for one layer."""
    torch.manual_seed(4)
    neuron = (
        DecoupledLIF(6, tau=2.0, surrogate=Sigmoid())
        if node == "ours"
        else sj_neuron.LIFNode(
            tau=2.0, decay_input=False, v_reset=None, detach_reset=True, surrogate_function=sj_surrogate_sigmoid()
        )
    )
    # the bias's gradient is instantaneous in OTTT (its "input" 1 has no trace), so leave it out
    model = nn.Sequential(_wide(nn.Linear(4, 6, bias=False)), neuron, nn.Linear(6, 3)).double()
    x, y = _digits_like()
    reference = _gradients(BPTTTrainer, model, x, y)
    assert reference["2.weight"].abs().sum() > 0
    _assert_close(_gradients(OTTTTrainer, model, x, y, trace_input=True, trace_decay=0.5, readout="instant"), reference)
    # the official code's readout learns through the trace of its input: another weight gradient, the rest equal
    official = _gradients(OTTTTrainer, model, x, y, trace_input=True, trace_decay=0.5)
    _assert_close(
        {n: g for n, g in official.items() if n != "2.weight"}, {n: g for n, g in reference.items() if n != "2.weight"}
    )
    assert not torch.allclose(official["2.weight"], reference["2.weight"], atol=1e-6)


def sj_surrogate_sigmoid():
    from spikingjelly.activation_based import surrogate

    return surrogate.Sigmoid(alpha=4.0)


def _neuron_trace_nodes():
    return {
        "prf": lambda: PRF(6, dt_range=(0.05, 1.0), learn_decay=True, surrogate=Sigmoid()),
        # the neuron trace is exact with the reset detached (the official gradient through its decay is not traced)
        "prf-reset": lambda: PRF(6, dt_range=(0.05, 1.0), reset=True, reset_gradient="detached", surrogate=Sigmoid()),
        "lif-per-channel": lambda: DecoupledLIF(6, tau=3.0, learn_decay=True, surrogate=Sigmoid()),
        "sj-lif": lambda: sj_neuron.LIFNode(
            tau=3.0, v_reset=None, detach_reset=True, surrogate_function=sj_surrogate_sigmoid()
        ),
        "sj-plif": lambda: sj_neuron.ParametricLIFNode(
            init_tau=3.0, v_reset=None, detach_reset=True, surrogate_function=sj_surrogate_sigmoid()
        ),
    }


@pytest.mark.legacy
@pytest.mark.parametrize("node", list(_neuron_trace_nodes()))
def test_ottt_neuron_trace_is_exact_for_one_layer_of_any_decay(node):
    """trace='neuron' filters each synapse with its neuron's own (per-channel, complex) decay:
    the gradients of one layer equal BPTT's (with PRF's reset detached, as the traces assume);
    the paper's shared trace does not."""
    torch.manual_seed(4)
    model = nn.Sequential(_wide(nn.Linear(4, 6)), _neuron_trace_nodes()[node](), nn.Linear(6, 3)).double()
    x, y = _digits_like()
    reference = _gradients(BPTTTrainer, model, x, y)
    got = _gradients(OTTTTrainer, model, x, y, trace_input=True, trace="neuron")
    # our neurons' own parameters (PRF's step, frequency and decay, a learnt LIF decay) get their
    # eligibility too; SpikingJelly's nodes reset the membrane itself, so theirs stay instantaneous
    exact = (
        reference
        if not node.startswith("sj")
        else {name: reference[name] for name in ("0.weight", "0.bias", "2.weight", "2.bias")}
    )
    assert exact["0.weight"].abs().sum() > 0 and len(exact) >= 4
    _assert_close({name: got[name] for name in exact}, exact)
    shared = _gradients(OTTTTrainer, model, x, y, trace_input=True, trace_decay=0.5, readout="instant")
    assert not torch.allclose(shared["0.weight"], reference["0.weight"], atol=1e-6)


def test_ottt_neuron_trace_in_recurrent_and_deep_networks():
    torch.manual_seed(0)
    model = nn.Sequential(
        RecurrentBlock(4, PRF(5, dt_range=(0.05, 1.0))),
        _wide(nn.Linear(5, 6)),
        DecoupledLIF(6, tau=2.0),
        nn.Linear(6, 3),
    ).double()
    _wide(model[0].synapse, gain=6.0)
    x, y = _digits_like()
    got = _gradients(OTTTTrainer, model, x, y, trace_input=True, trace="neuron")
    for name in ("0.synapse.weight", "1.weight"):
        assert torch.isfinite(got[name]).all() and got[name].abs().sum() > 0, name
    trainer = OTTTTrainer(
        model, torch.optim.SGD(model.parameters(), lr=0.0), trace="neuron", trace_input=True, progress=False
    )
    trainer.train_batch(*trainer.prepare((x, y)))
    assert not trainer._traces  # cleared after each sequence: nothing carried between batches


@pytest.mark.parametrize(
    "model, options, message",
    [
        (
            lambda: nn.Sequential(nn.Linear(4, 6), DynamicDecay(6), nn.Linear(6, 3)),
            {},
            r"after 0 \(DynamicDecay\) has no membrane linear in its input",
        ),
        (
            lambda: nn.Sequential(nn.Unflatten(-1, (1, 4)), nn.Conv1d(1, 2, 3), PRF(2), nn.Flatten(), nn.Linear(4, 3)),
            {},
            "needs Linear synapses; 1 is a Conv1d",
        ),
        (
            lambda: nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.1), PRF(6), nn.Linear(6, 3)),
            {},
            "directly followed by its neuron; 0 is not",
        ),
        (
            lambda: nn.Sequential(nn.Linear(4, 6), PRF(6), nn.Linear(6, 3)),
            {"trace_decay": 0.9},
            "trace_decay sets the presynaptic trace",
        ),
        (
            lambda: nn.Sequential(nn.Linear(4, 6), PRF(6), nn.Linear(6, 3)),
            {"trace": "post"},
            "trace must be 'presynaptic' or 'neuron'",
        ),
        (
            lambda: nn.Sequential(nn.Linear(4, 6), PRF(6), nn.Linear(6, 3)),
            {"readout": "trace"},
            "readout='trace' goes with",
        ),
        (
            lambda: nn.Sequential(nn.Linear(4, 6), PRF(6), nn.Linear(6, 3)),
            {"trace": "presynaptic", "readout": "last"},
            "readout must be",
        ),
    ],
)
def test_ottt_neuron_trace_refuses_what_it_cannot_filter(model, options, message):
    """Options are checked when the trainer is built, the model's graph at the first batch."""
    module = model()
    with pytest.raises(ValueError, match=message):
        trainer = OTTTTrainer(
            module,
            torch.optim.SGD(module.parameters(), lr=0.1),
            trace_input=True,
            progress=False,
            **{"trace": "neuron", **options},
        )
        trainer.fit([(torch.rand(3, 2, 4), torch.zeros(2, dtype=torch.long))], 1)


@pytest.mark.slow
def test_ottt_neuron_trace_learns_digit_rows_with_prf():
    """2 x 128 PRF on the digits by row, 10 epochs: at least 85 % (measured 89.2 %; 83.9 % with
    the presynaptic trace)."""
    from snn_parallel.learners.experiments import train_digits

    assert train_digits("ottt", "row", neuron="prf", epochs=10)["test_accuracy"] >= 0.85


def test_ottt_online_variant_steps_every_time_step():
    model = _fptt_model()
    trainer = OTTTTrainer(
        model, torch.optim.SGD(model.parameters(), lr=0.01), variant="O", loss="ce_all", progress=False
    )
    trainer.train_batch(*trainer.prepare(_digits_like(steps=7)))
    assert trainer.global_step == 7
    with pytest.raises(ValueError, match="variant"):
        OTTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.01), variant="B")


# -- the loop: fit, checkpoints, progress --------------------------------------------------------------
@pytest.mark.parametrize("rule, options", [("bptt", {}), ("fptt", {"parts": 4}), ("ottt", {}), ("hypr", {"chunk": 3})])
def test_resumed_run_matches_uninterrupted_run(tmp_path, rule, options):
    classes = {"bptt": BPTTTrainer, "fptt": FPTTTrainer, "ottt": OTTTTrainer, "hypr": HYPRTrainer}

    def trainer_for(model):
        return classes[rule](
            model, torch.optim.Adam(model.parameters(), lr=1e-2), loss="ce_all", progress=False, **options
        )

    assert_resume_is_exact(tmp_path, trainer_for, digits_classifier, digits_loader)


def test_fit_returns_history_and_evaluates(capsys):
    model = digits_classifier()
    trainer = BPTTTrainer(model, torch.optim.Adam(model.parameters(), lr=1e-2), progress=True)
    history = trainer.fit(digits_loader(), 2, val_loader=digits_loader())
    assert [r["epoch"] for r in history] == [1.0, 2.0]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "samples_per_second"} <= history[-1].keys()
    assert "bptt epoch 2" in trainer.summary()
    assert capsys.readouterr().err == ""  # no bar when stderr is not a terminal


def test_batch_first_loader_is_made_time_major():
    model = digits_classifier()
    trainer = BPTTTrainer(
        model, torch.optim.SGD(model.parameters(), lr=0.0), batch_first=True, loss="ce_all", progress=False
    )
    x, y = torch.rand(4, 8, 8), torch.randint(0, 10, (4, 8))
    x_tm, y_tm = trainer.prepare((x, y))
    assert x_tm.shape == (8, 4, 8) and torch.equal(y_tm, y.t())


# -- bad input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "batch, error, message",
    [
        ((torch.rand(8, 4), torch.zeros(4, dtype=torch.long)), ValueError, "at least 3 dims"),
        ((torch.zeros(8, 4, 8, dtype=torch.long), torch.zeros(4, dtype=torch.long)), TypeError, "floating point"),
        ((torch.rand(0, 4, 8), torch.zeros(4, dtype=torch.long)), ValueError, "at least one step"),
        ((torch.full((8, 4, 8), float("nan")), torch.zeros(4, dtype=torch.long)), ValueError, "NaN"),
        ((torch.rand(8, 4, 5), torch.zeros(4, dtype=torch.long)), ValueError, "does not fit the model"),
        ((torch.rand(8, 4, 8, dtype=torch.float64), torch.zeros(4, dtype=torch.long)), TypeError, "dtype"),
        ((torch.rand(8, 4, 8), torch.zeros(3, dtype=torch.long)), ValueError, "target of a 'ce' loss"),
        ((torch.rand(8, 4, 8),), TypeError, "pair"),
        ((torch.rand(8, 4, 8, device="meta"), torch.zeros(4, dtype=torch.long)), ValueError, "meta"),
    ],
)
def test_bad_batches_are_refused_before_training(batch, error, message):
    model = digits_classifier()
    before = copy.deepcopy(model.state_dict())
    trainer = BPTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), progress=False)
    with pytest.raises(error, match=message):
        trainer.fit([batch], 1)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])


def test_bad_trainer_arguments():
    model = digits_classifier()
    other = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="optimizer"):
        BPTTTrainer(model, "adam")
    with pytest.raises(ValueError, match="not in model"):
        BPTTTrainer(model, torch.optim.SGD(other.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="parts"):
        FPTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), parts=0)
    with pytest.raises(ValueError, match="chunk"):
        HYPRTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), chunk=0)
    with pytest.raises(ValueError, match="epochs"):
        BPTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1)).fit([], 0)
    with pytest.raises(ValueError, match="loss"):
        BPTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss="hinge")


@pytest.mark.parametrize(
    "value, error",
    [(0, ValueError), (-1.0, ValueError), (True, TypeError), ("4", TypeError), (float("nan"), ValueError)],
)
@pytest.mark.parametrize("rule", [BPTTTrainer, FPTTTrainer, OTTTTrainer, HYPRTrainer])
def test_every_rule_refuses_a_bad_weight_clamp(rule, value, error):
    model = digits_classifier()
    options = {"parts": 2} if rule is FPTTTrainer else {}
    with pytest.raises(error, match="weight_clamp"):
        rule(model, torch.optim.SGD(model.parameters(), lr=0.1), weight_clamp=value, **options)


@pytest.mark.parametrize("rule", [BPTTTrainer, FPTTTrainer, OTTTTrainer, HYPRTrainer])
def test_weight_clamp_bounds_every_synapse_after_each_step(rule):
    model = digits_classifier()
    x, y = torch.rand(8, 4, 8), torch.randint(0, 10, (4,))
    options = {"parts": 2} if rule is FPTTTrainer else {}
    # plain SGD with a huge rate: the unclamped step would leave the weights far outside [-0.05, 0.05]
    trainer = rule(
        model, torch.optim.SGD(model.parameters(), lr=50.0), weight_clamp=0.05, loss="ce_all", progress=False, **options
    )
    trainer.fit([(x, y)], 1)
    synapses = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert synapses and all(m.weight.abs().max() <= 0.05 for m in synapses)
    assert any(m.weight.abs().max() == 0.05 for m in synapses)  # the clamp acted
    assert any(m.bias.abs().max() > 0.05 for m in synapses)  # biases are not clamped


def test_shared_options_are_declared_once_with_each_rules_defaults():
    """TrainerOptions holds the options every rule takes; rules differ only in their defaults."""
    from snn_parallel.learners import TrainerOptions, TSSLBPTrainer, tssl_network

    model = digits_classifier()
    opt = lambda m: torch.optim.SGD(m.parameters(), lr=0.1)  # noqa: E731
    assert BPTTTrainer(model, opt(model)).options == TrainerOptions()
    assert FPTTTrainer(model, opt(model), parts=2).clip_grad_norm == 1.0  # the reference code's clip
    fptt = FPTTTrainer(model, opt(model), parts=2, clip_grad_norm=None, batch_first=True)
    assert fptt.clip_grad_norm is None and fptt.batch_first and fptt.options.batch_first
    tssl = tssl_network("4C3-12", (1, 8, 8), 3)
    reference = TSSLBPTrainer(tssl, opt(tssl))
    assert (reference.loss.variant, reference.clip_grad_norm, reference.weight_clamp) == ("kernel", 1.0, 4.0)
    # one options object shared between rules, taken as given
    shared = TrainerOptions(loss="ce_all", clip_grad_norm=0.5, progress=False)
    for rule, extra in ((BPTTTrainer, {}), (FPTTTrainer, {"parts": 2}), (OTTTTrainer, {}), (HYPRTrainer, {})):
        trainer = rule(model, opt(model), options=shared, **extra)
        assert trainer.options == shared and trainer.loss == StepLoss("ce", "all") and trainer.clip_grad_norm == 0.5
    assert OTTTTrainer(model, opt(model), options=shared, weight_clamp=2.0).options == shared.replace(weight_clamp=2.0)
    with pytest.raises(TypeError, match=r"unknown trainer option 'clip'.*'clip_grad_norm'"):
        BPTTTrainer(model, opt(model), clip=1.0)
    with pytest.raises(TypeError, match="options must be a TrainerOptions"):
        BPTTTrainer(model, opt(model), options={"loss": "ce"})
    with pytest.raises(TypeError, match="loss must be a StepLoss or its name"):
        TrainerOptions(loss=3)


def test_bptt_batch_sum_scales_the_gradient_by_the_batch():
    x, y = torch.rand(8, 4, 8), torch.randint(0, 10, (4,))
    grads = {}
    for batch_sum in (False, True):
        model = digits_classifier()
        trainer = BPTTTrainer(
            model, torch.optim.SGD(model.parameters(), lr=0.0), batch_sum=batch_sum, loss="ce_all", progress=False
        )
        trainer.optimizer_step = lambda: None
        loss, _ = trainer.train_batch(*trainer.prepare((x, y)))
        grads[batch_sum] = ([p.grad.clone() for p in model.parameters()], loss)
    assert grads[True][1] == grads[False][1]  # the reported loss is the per-sample mean either way
    for summed, mean in zip(grads[True][0], grads[False][0], strict=True):
        torch.testing.assert_close(summed, 4 * mean)


def test_checkpoint_of_another_rule_is_refused(tmp_path):
    model = digits_classifier()
    BPTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1)).save(tmp_path / "bptt.pt")
    with pytest.raises(ValueError, match="'bptt' trainer"):
        OTTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1)).load(tmp_path / "bptt.pt")


# -- torch.distributed ---------------------------------------------------------------------------------
def _ddp_worker(rank: int, rendezvous: str, x: torch.Tensor, y: torch.Tensor, out: str) -> None:
    join_two_ranks(rank, rendezvous)
    torch.manual_seed(rank)  # different init per rank: the trainer must broadcast rank 0's
    model = nn.Sequential(_wide(nn.Linear(8, 16)), DecoupledLIF(16), nn.Linear(16, 10))
    if rank == 0:
        torch.save(copy.deepcopy(model.state_dict()), out + ".init")
    trainer = OTTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss="ce_all", progress=False)
    shard = slice(rank * 4, (rank + 1) * 4)
    trainer.fit([(x[:, shard], y[shard])] * 2, 1)
    torch.save(model.state_dict(), f"{out}.{rank}")
    leave_two_ranks()


def test_ddp_two_processes_average_gradients_once_per_step(tmp_path):
    torch.manual_seed(0)
    x, y = torch.rand(8, 8, 8), torch.randint(0, 10, (8,))
    out = str(tmp_path / "state")
    spawn_two_ranks(_ddp_worker, tmp_path, x, y, out)
    rank0, rank1 = torch.load(out + ".0"), torch.load(out + ".1")
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name])
    # single process on the whole batch from rank 0's initial weights: the mean of the two shards' gradients
    model = nn.Sequential(nn.Linear(8, 16), DecoupledLIF(16), nn.Linear(16, 10))
    model.load_state_dict(torch.load(out + ".init"))
    trainer = OTTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss="ce_all", progress=False)
    trainer.fit([(x, y)] * 2, 1)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(rank0[name], value, atol=1e-6, rtol=1e-5)


# -- SequenceDropout: one channel mask per sequence ------------------------------------------------
def test_sequence_dropout_drops_whole_channels_alike_at_every_step():
    torch.manual_seed(0)
    drop = SequenceDropout(0.25)
    x = torch.rand(4, 64, 32, 3, 3) + 0.5  # [T, B, C, H, W], nothing zero
    y = drop(x)
    kept = y[0, :, :, 0, 0] != 0  # [B, C]
    assert (y != 0).eq(kept[None, :, :, None, None]).all()  # same mask at every step and position
    torch.testing.assert_close(y[:, kept], x[:, kept] / 0.75)
    assert abs(1 - kept.float().mean().item() - 0.25) < 0.03  # 2048 pairs
    assert not torch.equal(drop(x) != 0, y != 0)  # a new mask per call
    drop.eval()
    assert drop(x) is x
    assert SequenceDropout(0.0)(x) is x


def test_sequence_dropout_keeps_its_mask_over_the_steps_of_a_sequence():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), PRF(16), SequenceDropout(0.5), nn.Linear(16, 3))
    network = discover(model)
    layer = network.driver(model[2])
    h = torch.rand(6, 8, 16) + 0.5  # what reaches the dropout, step by step
    masks = []
    for _ in range(2):
        network.reset()
        first = layer.step(h[0])
        mask = first / h[0]  # the mask the first step drew, [B, C]
        for h_t in h.unbind(0)[1:]:
            torch.testing.assert_close(layer.step(h_t), h_t * mask)
        masks.append(mask)
        assert masks[-1].shape == (8, 16) and set(masks[-1].unique().tolist()) == {0.0, 2.0}
    assert not torch.equal(*masks)  # each reset starts a sequence with a new mask
    model.eval()
    network.reset()
    h_0 = h[0]
    assert layer.step(h_0) is h_0


def test_bptt_and_fptt_train_through_one_mask_per_sequence():
    torch.manual_seed(0)
    x, y = torch.rand(6, 1, 4) * 4, torch.randint(0, 3, (1,))
    for cls, options in ((BPTTTrainer, {}), (FPTTTrainer, {"parts": 3})):  # FPTT: the mask lasts over its parts
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(4, 32), DecoupledLIF(32, tau=2.0), SequenceDropout(0.5), nn.Linear(32, 3))
        nn.init.uniform_(model[0].weight, -3, 3)  # most channels fire
        trainer = cls(model, torch.optim.SGD(model.parameters(), lr=0.1), progress=False, **options)
        trainer.optimizer_step = lambda: None
        trainer.train_batch(*trainer.prepare((x, y)))
        silent = model[3].weight.grad.abs().sum(0) == 0  # [32]: channels that reached no output
        torch.manual_seed(1)
        reference = nn.Sequential(nn.Linear(4, 32), DecoupledLIF(32, tau=2.0), nn.Identity(), nn.Linear(32, 3))
        reference.load_state_dict(model.state_dict())
        trainer = cls(reference, torch.optim.SGD(reference.parameters(), lr=0.1), progress=False, **options)
        trainer.optimizer_step = lambda: None
        trainer.train_batch(*trainer.prepare((x, y)))
        quiet = reference[3].weight.grad.abs().sum(0) == 0  # channels that never fire
        dropped = silent & ~quiet  # firing channels the mask dropped for the whole sequence
        assert (quiet <= silent).all() and 0 < dropped.sum() < (~quiet).sum(), cls.__name__


@pytest.mark.parametrize("p", [-0.1, 1.0, float("nan"), True, "0.2"])
def test_sequence_dropout_refuses_bad_p(p):
    with pytest.raises(ValueError, match="p must be a probability"):
        SequenceDropout(p)


def test_sequence_dropout_refuses_inputs_without_time_and_channels():
    with pytest.raises(ValueError, match=r"x_seq of SequenceDropout must be \[T, B, C"):
        SequenceDropout(0.2)(torch.rand(4, 3))
    with pytest.raises(ValueError, match="per step"):
        SequenceDropout(0.2).draw(torch.rand(3))
    with pytest.raises(ValueError, match="T >= 1"):
        SequenceDropout(0.2)(torch.rand(0, 2, 3))
    with pytest.raises(TypeError, match="floating-point"):
        SequenceDropout(0.2)(torch.ones(2, 2, 3, dtype=torch.long))
