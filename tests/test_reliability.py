"""Training that never goes silently wrong, checkpoints that cannot load corrupted, bad constants refused.

One test (or a parametrised group) per finding of the reliability review: resume with dropout,
non-finite training, corrupted checkpoints, all-or-nothing loads, empty loaders, unchecked
constants of the surrogates, trainers, builders and ops, and dtype drift of the PSP filter.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from learner_support import assert_resume_is_exact, digits_classifier, digits_loader, wide
from torch import nn

import snn_parallel
from snn_parallel import surrogate as sg
from snn_parallel.learners import (
    BPTTTrainer,
    FPTTTrainer,
    HYPRTrainer,
    NonFiniteError,
    OTTTTrainer,
    SequenceDropout,
    StepLoss,
    TSSLBPTrainer,
    UnsupportedModule,
    tssl_network,
)
from snn_parallel.neurons import DecoupledLIF

pytest.importorskip("sklearn")


# -- 1. resume is exact with dropout ---------------------------------------------------------------
def _image_net():
    torch.manual_seed(5)
    return tssl_network("4C3-P2-16", (1, 8, 8), 10, dropout=0.3)


def _digits_case(rule, dropout, **options):
    """``rule`` (Adam, lr 1e-2, the loss at every step) on the digits classifier with ``dropout(0.3)``."""

    def make_trainer(model):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        return rule(model, optimizer, loss="ce_all", progress=False, **options)

    return make_trainer, lambda: digits_classifier(dropout(0.3)), "row"


RESUME_CASES = {
    "bptt": _digits_case(BPTTTrainer, nn.Dropout),
    "bptt-sequence-dropout": _digits_case(BPTTTrainer, SequenceDropout),
    "fptt": _digits_case(FPTTTrainer, nn.Dropout, parts=4),
    "ottt": _digits_case(OTTTTrainer, SequenceDropout),
    "tsslbp": (
        lambda m: TSSLBPTrainer(m, torch.optim.AdamW(m.parameters(), lr=5e-3), progress=False),
        _image_net,
        "image",
    ),
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_resume_with_dropout_is_exact(tmp_path, case):
    """Finding 1: a fresh trainer's dry step (learning the output width) ran after ``load`` had
    restored the RNG and drew a dropout mask, so the resumed run drew different masks."""
    make_trainer, make_model, mode = RESUME_CASES[case]
    options = {"repeat": 3} if mode == "image" else {}
    assert_resume_is_exact(tmp_path, make_trainer, make_model, lambda: digits_loader(mode, **options))


def test_hypr_refuses_dropout_models_so_its_resume_stays_exact():
    """HYPR recomputes every step in its P-stage, so a dropout model is refused (resume of
    HYPR without dropout is exact: ``tests/learners/test_trainers.py``)."""
    model = digits_classifier(nn.Dropout(0.3))
    with pytest.raises(UnsupportedModule, match="deterministic"):
        HYPRTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1))


def test_dry_step_leaves_batch_norm_statistics_and_rng_alone():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), DecoupledLIF(16), nn.Dropout(0.5), nn.Linear(16, 10))
    trainer = BPTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), progress=False)
    before = copy.deepcopy(model[1].state_dict())
    batch = (torch.rand(8, 4, 8), torch.zeros(4, dtype=torch.long))
    state = torch.get_rng_state()
    trainer.prepare(batch)
    assert torch.equal(torch.get_rng_state(), state)
    for name, value in model[1].state_dict().items():
        assert torch.equal(value, before[name]), name
    assert model.training and model[3].training  # the modes are restored


# -- 2. non-finite training stops at the step it appears ---------------------------------------------
def _fit(trainer, batches, epochs=1):
    return trainer.fit(batches, epochs)


def _batch(steps=8, batch=4, value=None):
    x = torch.rand(steps, batch, 8)
    if value is not None:
        x[3, 1, 2] = value
    return x, torch.randint(0, 10, (batch,))


@pytest.mark.parametrize("rule", [BPTTTrainer, FPTTTrainer, OTTTTrainer, HYPRTrainer])
def test_a_huge_learning_rate_stops_with_the_step_and_epoch(rule):
    """Finding 2: ``lr`` so large that the weights overflow (float32 max ~3e38) trained on silently."""
    model = digits_classifier()
    options = {"parts": 2} if rule is FPTTTrainer else {}
    trainer = rule(model, torch.optim.SGD(model.parameters(), lr=1e38), loss="ce_all", progress=False, **options)
    with pytest.raises(NonFiniteError, match=r"optimizer step \d+ \(epoch 1, batch \d\)"):
        _fit(trainer, [_batch() for _ in range(3)])


@pytest.mark.parametrize("rule", [BPTTTrainer, FPTTTrainer, OTTTTrainer, HYPRTrainer])
def test_a_nan_weight_is_named_before_any_update(rule):
    model = digits_classifier()
    with torch.no_grad():
        model[0].weight[0, 0] = math.nan
    before = copy.deepcopy(model.state_dict())
    options = {"parts": 2} if rule is FPTTTrainer else {}
    trainer = rule(model, torch.optim.SGD(model.parameters(), lr=0.1), loss="ce_all", progress=False, **options)
    with pytest.raises(
        NonFiniteError, match=r"optimizer step 1 \(epoch 1\).*'0\.weight' \(1 NaN, 0 inf of 128 values\)"
    ):
        _fit(trainer, [_batch()])
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]) or name == "0.weight"


@pytest.mark.parametrize("rule", [BPTTTrainer, FPTTTrainer, OTTTTrainer, HYPRTrainer])
@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_non_finite_input_is_refused_by_every_rule(rule, value):
    """HYPR stepped its neurons without their input check: every rule refuses NaN/inf inputs."""
    model = digits_classifier()
    options = {"parts": 2} if rule is FPTTTrainer else {}
    trainer = rule(model, torch.optim.SGD(model.parameters(), lr=0.1), loss="ce_all", progress=False, **options)
    with pytest.raises(ValueError, match="x contains NaN or infinite values"):
        _fit(trainer, [_batch(value=value)])


@pytest.mark.parametrize("rule", [BPTTTrainer, FPTTTrainer, OTTTTrainer, HYPRTrainer])
def test_non_finite_training_is_caught_with_validation_off(rule):
    """``set_validation(False)`` drops the input checks, not the training's own: an inf input
    still stops training at the step it poisons, with every rule (HYPR reported a finite loss)."""
    model = digits_classifier()
    options = {"parts": 2} if rule is FPTTTrainer else {}
    trainer = rule(model, torch.optim.SGD(model.parameters(), lr=0.1), loss="ce_all", progress=False, **options)
    batches = [_batch(), _batch(value=math.inf), _batch()]
    with snn_parallel.validation(False), pytest.raises(NonFiniteError, match=r"\(epoch 1, batch 2\)"):
        _fit(trainer, batches)


def test_an_infinite_regression_target_is_refused():
    with pytest.raises(ValueError, match="target contains NaN or infinite values"):
        StepLoss("mse").check_target(torch.tensor([[1.0], [math.inf]]), 3, 2, 1)


def test_skipping_non_finite_steps_counts_them_and_keeps_the_weights():
    model = digits_classifier()
    trainer = BPTTTrainer(
        model, torch.optim.SGD(model.parameters(), lr=0.1), loss="ce_all", progress=False, nonfinite="skip"
    )
    good, bad = _batch(), _batch(value=math.inf)
    with snn_parallel.validation(False):
        trainer.fit([good], 1)
        weights = copy.deepcopy(model.state_dict())
        history = trainer.fit([bad], 1)
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    assert trainer.skipped_steps == 1 and trainer.global_step == 1
    assert history[-1]["skipped_steps"] == 1.0 and math.isfinite(history[-1]["train_loss"])
    with pytest.raises(ValueError, match="nonfinite must be 'raise' or 'skip'"):
        BPTTTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nonfinite="ignore")


# -- 3. a corrupted checkpoint never loads -------------------------------------------------------------
def _saved(tmp_path):
    model = digits_classifier()
    trainer = BPTTTrainer(model, torch.optim.Adam(model.parameters(), lr=1e-2), loss="ce_all", progress=False)
    trainer.fit([_batch()], 1)
    path = tmp_path / "ckpt.pt"
    trainer.save(path)
    return path, trainer


def _fresh():
    model = digits_classifier()
    return model, BPTTTrainer(model, torch.optim.Adam(model.parameters(), lr=1e-2), loss="ce_all", progress=False)


def test_every_flipped_bit_is_detected(tmp_path):
    """Finding 3: one flipped bit in any tensor record loaded silently (18 of 18 records)."""
    path, _ = _saved(tmp_path)
    data = path.read_bytes()
    model, trainer = _fresh()
    before = copy.deepcopy(model.state_dict())
    for position in range(60, len(data), max(1, len(data) // 40)):  # past the header, through the payload
        flipped = bytearray(data)
        flipped[position] ^= 1 << (position % 8)
        path.write_bytes(bytes(flipped))
        with pytest.raises(ValueError, match=f"{path.name}.*checksum"):
            trainer.load(path)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda data: b"", "is empty"),
        (lambda data: data[: len(data) // 2], "is truncated"),
        (lambda data: data[:30], "is truncated"),
        (lambda data: data + b"\0", "bytes after"),
        (lambda data: b"not a checkpoint at all", "not an snn_parallel checkpoint"),
        (lambda data: data[:8] + b"\x07" + data[9:], "format version 7"),
    ],
)
def test_empty_truncated_and_foreign_files_are_named(tmp_path, damage, reason):
    path, _ = _saved(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    _, trainer = _fresh()
    with pytest.raises(ValueError, match=f"{path.name}.*{reason}"):
        trainer.load(path)


def test_a_plain_torch_save_file_is_named_foreign(tmp_path):
    path = tmp_path / "plain.pt"
    model, trainer = _fresh()
    torch.save(trainer.state_dict(), path)
    with pytest.raises(ValueError, match="plain.pt is not an snn_parallel checkpoint \\(a plain torch.save file"):
        trainer.load(path)


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path, trainer = _saved(tmp_path)
    original = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("snn_parallel.learners.checkpoint.os.fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        trainer.save(path)
    assert path.read_bytes() == original  # the old checkpoint survives a failed write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_a_checkpoint_with_non_finite_weights_is_refused(tmp_path):
    path, trainer = _saved(tmp_path)
    with torch.no_grad():
        trainer.model[0].weight[0, 0] = math.inf
    trainer.save(path)
    _, fresh = _fresh()
    with pytest.raises(ValueError, match="'0.weight' holds NaN or infinite values"):
        fresh.load(path)


# -- 4. a failed load changes nothing ------------------------------------------------------------------
def _assert_unchanged(model, optimizer, before_model, before_optimizer):
    for name, value in model.state_dict().items():
        assert torch.equal(value, before_model[name]), name
    assert repr(optimizer.state_dict()) == repr(before_optimizer)


def test_a_load_that_fails_at_the_optimizer_leaves_the_model_untouched(tmp_path):
    """Finding 4: the weights were overwritten before the optimizer's state failed to load."""
    path, _ = _saved(tmp_path)
    model = digits_classifier()
    optimizer = torch.optim.Adam([{"params": model[0].parameters()}, {"params": list(model[2].parameters())}], lr=1e-2)
    trainer = BPTTTrainer(model, optimizer, loss="ce_all", progress=False)
    trainer.fit([_batch()], 1)
    before_model, before_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    epoch, rng = trainer.epoch, torch.get_rng_state()
    with pytest.raises(ValueError, match="ckpt.pt.*nothing was changed"):
        trainer.load(path)
    _assert_unchanged(model, optimizer, before_model, before_optimizer)
    assert trainer.epoch == epoch and torch.equal(torch.get_rng_state(), rng)


def test_a_load_that_fails_at_the_rule_state_leaves_everything_untouched():
    model = digits_classifier()
    trainer = FPTTTrainer(model, torch.optim.Adam(model.parameters(), lr=1e-2), parts=2, loss="ce_all", progress=False)
    trainer.fit([_batch()], 1)
    state = copy.deepcopy(trainer.state_dict())
    trainer.fit([_batch()], 1)
    del state["rule_state"]["running"]["2.bias"]
    before_model, before_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(trainer.optimizer.state_dict())
    running = copy.deepcopy(trainer.running)
    with pytest.raises(ValueError, match="nothing was changed"):
        trainer.load_state_dict(state)
    _assert_unchanged(model, trainer.optimizer, before_model, before_optimizer)
    for name, value in trainer.running.items():
        assert torch.equal(value, running[name])


def test_a_state_of_another_model_is_refused_before_anything_changes():
    model, trainer = _fresh()
    other = nn.Sequential(wide(nn.Linear(8, 12)), DecoupledLIF(12), nn.Linear(12, 10))
    state = BPTTTrainer(other, torch.optim.Adam(other.parameters()), progress=False).state_dict()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"'0.weight' has shape \[12, 8\], this model's \[16, 8\]"):
        trainer.load_state_dict(state)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])


# -- 6. empty or exhausted loaders -------------------------------------------------------------------
def test_empty_loaders_are_refused():
    """Finding 6: ``fit([])`` and ``evaluate([])`` reported a loss of 0.0."""
    _, trainer = _fresh()
    with pytest.raises(ValueError, match="train_loader is empty"):
        trainer.fit([], 1)
    with pytest.raises(ValueError, match="loader is empty"):
        trainer.evaluate([])
    with pytest.raises(ValueError, match="loader yielded no batch"):
        trainer.evaluate(iter([]))
    with pytest.raises(TypeError, match="train_loader must be an iterable"):
        trainer.fit(None, 1)
    assert trainer.history == [] and trainer.epoch == 0


def test_a_generator_cannot_feed_several_epochs():
    """A generator exhausted after epoch 1 "trained" epochs 2-3 on nothing."""
    _, trainer = _fresh()
    with pytest.raises(ValueError, match="one-pass iterator .* 3 passes"):
        trainer.fit((b for b in [_batch()]), 3)
    with pytest.raises(ValueError, match="val_loader is a one-pass iterator"):
        trainer.fit([_batch()], 2, val_loader=iter([_batch()]))
    assert trainer.epoch == 0
    trainer.fit((b for b in [_batch()]), 1)  # one pass of a generator is fine


def test_an_epoch_without_batches_is_refused():
    class Once:
        """Iterable (not an iterator) that yields its batches only the first time."""

        def __init__(self):
            self.batches = [_batch()]

        def __iter__(self):
            batches, self.batches = self.batches, []
            return iter(batches)

    _, trainer = _fresh()
    with pytest.raises(ValueError, match="yielded no batch in epoch 2"):
        trainer.fit(Once(), 3)
    assert trainer.epoch == 1 and len(trainer.history) == 1


# -- 7. constants: surrogates, trainers, builders, ops ---------------------------------------------
@pytest.mark.parametrize(
    "build, error, name",
    [
        (lambda: sg.ATan(alpha=-2), ValueError, "alpha"),  # flipped the gradient's sign
        (lambda: sg.ATan(alpha=math.inf), ValueError, "alpha"),
        (lambda: sg.Sigmoid(alpha=0), ValueError, "alpha"),  # a zero gradient
        (lambda: sg.Sigmoid(alpha="4"), TypeError, "alpha"),
        (lambda: sg.MultiGaussian(sigma=0), ValueError, "sigma"),  # NaN gradient
        (lambda: sg.MultiGaussian(height=-0.1), ValueError, "height"),
        (lambda: sg.DoubleGaussian(scale=math.nan), ValueError, "scale"),
        (lambda: sg.CenteredDoubleGaussian(gamma=None), TypeError, "gamma"),
        (lambda: sg.Rect(width=math.nan), ValueError, "width"),
        (lambda: sg.Rect(width="1"), TypeError, "width"),  # a raw comparison error before
        (lambda: sg.Slayer(scale=-0.2), ValueError, "scale"),
        (lambda: sg.ATan(inclusive="no"), TypeError, "inclusive"),
        (lambda: sg.resolve("atan", inclusive=None), TypeError, "inclusive"),
        (lambda: sg.IntegerSpike(True), TypeError, "levels"),
    ],
)
def test_surrogate_constants_are_checked(build, error, name):
    with pytest.raises(error, match=name):
        build()


def _model_and_optimizer():
    model = digits_classifier()
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


@pytest.mark.parametrize(
    "build, error, name",
    [
        (lambda m, o: FPTTTrainer(m, o, parts=2, alpha=math.inf), ValueError, "alpha"),
        (lambda m, o: FPTTTrainer(m, o, parts=2, alpha="0.1"), TypeError, "alpha"),
        (lambda m, o: FPTTTrainer(m, o, parts=2, beta=math.nan), ValueError, "beta"),
        (lambda m, o: FPTTTrainer(m, o, parts=2.0), TypeError, "parts"),
        (lambda m, o: FPTTTrainer(m, o, parts=2, part_weight=None), TypeError, "part_weight"),
        (lambda m, o: OTTTTrainer(m, o, trace_decay="0.5"), TypeError, "trace_decay"),
        (lambda m, o: OTTTTrainer(m, o, trace_decay=math.nan), ValueError, "trace_decay"),
        (lambda m, o: OTTTTrainer(m, o, variant=None), TypeError, "variant"),
        (lambda m, o: HYPRTrainer(m, o, chunk=True), TypeError, "chunk"),
        (lambda m, o: BPTTTrainer(m, o).fit([_batch()], True), TypeError, "epochs"),
    ],
)
def test_trainer_constants_are_checked(build, error, name):
    model, optimizer = _model_and_optimizer()
    with pytest.raises(error, match=name):
        build(model, optimizer)


@pytest.mark.parametrize(
    "option, value, error",
    [
        ("conv_scale", math.nan, ValueError),
        ("linear_scale", math.inf, ValueError),
        ("pool_weight", -1.1, ValueError),
        ("conv_scale", "1", TypeError),
        ("dropout", math.nan, ValueError),
    ],
)
def test_tssl_network_constants_are_checked(option, value, error):
    with pytest.raises(error, match=option):
        tssl_network("4C3-P2-16", (1, 8, 8), 10, **{option: value})


# -- 8. dtypes are kept --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_psp_filter_keeps_the_dtype_and_takes_its_state_back(dtype):
    """Finding 8: ``psp_filter`` returned float32 for half-precision input, and that state could not be fed back."""
    from snn_parallel.ops import psp_filter

    x = torch.rand(6, 3, 4, dtype=torch.float64)
    whole, _ = psp_filter(x, 3.0)
    first, state = psp_filter(x[:3].to(dtype), 3.0)
    second, last = psp_filter(x[3:].to(dtype), 3.0, state)
    assert first.dtype == second.dtype == state.dtype == last.dtype == dtype
    tolerance = {torch.float16: 2e-3, torch.bfloat16: 2e-2}.get(dtype, 1e-6)
    torch.testing.assert_close(torch.cat([first, second]).double(), whole, atol=tolerance, rtol=tolerance)


def _op_inputs():
    x = torch.rand(4, 2, 3)
    zeros = torch.zeros(2, 3)
    return {
        "dsn_membrane": lambda **c: snn_parallel.ops.dsn_membrane(
            x,
            torch.zeros(2, 2, 3),
            torch.rand(3, 3),
            torch.zeros(3),
            c.get("tau", 0.5),
            zeros,
            sg.ATan(),
            c.get("shift", 1.0),
        ),
        "linear_fire": lambda **c: snn_parallel.ops.linear_fire(
            x, torch.full((3,), 0.5), torch.ones(3), zeros, zeros, sg.ATan(), c.get("v_threshold", 1.0)
        ),
        "ltc_scan": lambda **c: snn_parallel.ops.ltc_scan(
            x,
            torch.full_like(x, 0.5),
            torch.full_like(x, 0.5),
            zeros,
            zeros,
            zeros,
            c.get("b0", 0.1),
            c.get("beta_a", 1.8),
            sg.ATan(),
        ),
        "tsslbp": lambda **c: snn_parallel.ops.tsslbp(x, **c),
        "linear_scan": lambda **c: snn_parallel.ops.linear_scan(torch.full((3,), 0.5), x, **c),
        "psp_filter": lambda **c: snn_parallel.ops.psp_filter(x, c.get("tau_s", 3.0)),
    }


@pytest.mark.parametrize(
    "op, constants, error",
    [
        ("dsn_membrane", {"tau": math.inf}, ValueError),
        ("dsn_membrane", {"tau": "2"}, TypeError),
        ("dsn_membrane", {"shift": math.nan}, ValueError),
        ("linear_fire", {"v_threshold": math.nan}, ValueError),
        ("linear_fire", {"v_threshold": None}, TypeError),
        ("ltc_scan", {"b0": math.inf}, ValueError),
        ("ltc_scan", {"beta_a": "1.8"}, TypeError),
        ("tsslbp", {"v_threshold": math.inf}, ValueError),
        ("tsslbp", {"tau_m": math.inf}, ValueError),
        ("linear_scan", {"chunk": True}, TypeError),
        ("psp_filter", {"tau_s": math.inf}, ValueError),
        ("psp_filter", {"tau_s": None}, TypeError),
    ],
)
def test_op_constants_are_checked(op, constants, error):
    run = _op_inputs()[op]
    run()  # the defaults work
    with pytest.raises(error, match=next(iter(constants))):
        run(**constants)
