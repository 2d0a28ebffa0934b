"""Tests for snn_parallel.tasks: built-in datasets and the time-major loader."""

from __future__ import annotations

import importlib.util
import random
import sys

import numpy as np
import pytest
import torch

from snn_parallel.tasks import (
    MNIST1D,
    AddingProblem,
    DelayedCue,
    SequentialDigits,
    TemporalXOR,
    make_loader,
    mnist1d_task,
    time_major_collate,
)
from snn_parallel.tasks import digits as digits_module

NUM_DIGITS = 1797
needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn")

# ----------------------------------------------------------------------------- SequentialDigits


@needs_sklearn
@pytest.mark.parametrize(
    ("mode", "kwargs", "shape"),
    [("pixel", {}, (64, 1)), ("permuted", {}, (64, 1)), ("row", {}, (8, 8)), ("static", {"repeat": 3}, (3, 64))],
)
def test_digits_shapes_and_dtypes(mode, kwargs, shape):
    ds = SequentialDigits("test", mode, **kwargs)
    x, y = ds[0]
    assert x.shape == shape and x.dtype == torch.float32
    assert y.shape == () and y.dtype == torch.int64
    assert ds.inputs.shape == (len(ds), *shape)
    assert (ds.num_steps, ds.num_inputs, ds.num_classes) == (*shape, 10)
    assert 0.0 <= ds.inputs.min() and ds.inputs.max() == 1.0
    assert set(ds.targets.tolist()) == set(range(10))


@needs_sklearn
def test_digits_modes_hold_the_same_images():
    pixel = SequentialDigits("test", "pixel").inputs.squeeze(-1)
    assert torch.equal(SequentialDigits("test", "row").inputs.reshape(-1, 64), pixel)
    static = SequentialDigits("test", "static", repeat=4).inputs
    assert torch.equal(static, pixel.unsqueeze(1).expand(-1, 4, -1))


@needs_sklearn
def test_digits_permuted_is_a_permutation_of_pixel():
    pixel = SequentialDigits("train", "pixel", seed=3)
    permuted = SequentialDigits("train", "permuted", seed=3)
    perm = permuted.permutation
    assert pixel.permutation is None
    assert torch.equal(torch.sort(perm).values, torch.arange(64))
    assert not torch.equal(perm, torch.arange(64))
    assert torch.equal(permuted.inputs, pixel.inputs[:, perm])
    assert torch.equal(permuted.targets, pixel.targets)
    assert not torch.equal(SequentialDigits("train", "permuted", seed=4).permutation, perm)


@needs_sklearn
def test_digits_split_is_disjoint_complete_and_stratified():
    train, test = SequentialDigits("train", seed=7), SequentialDigits("test", seed=7)
    assert len(train) + len(test) == NUM_DIGITS
    train_idx, test_idx = set(train.indices.tolist()), set(test.indices.tolist())
    assert not train_idx & test_idx
    assert train_idx | test_idx == set(range(NUM_DIGITS))
    share = torch.bincount(test.targets, minlength=10) / torch.bincount(
        torch.cat([train.targets, test.targets]), minlength=10
    )
    assert torch.allclose(share, torch.full((10,), 0.2), atol=0.02)
    assert len(SequentialDigits("test", test_fraction=0.5)) in (NUM_DIGITS // 2, NUM_DIGITS // 2 + 1)
    with pytest.raises(ValueError, match="test_fraction"):  # too few test digits to hold every class
        SequentialDigits("test", test_fraction=0.001)


@needs_sklearn
def test_digits_valid_split_is_a_stratified_share_of_train_and_leaves_test_alone():
    full_train, test = SequentialDigits("train", seed=3), SequentialDigits("test", seed=3)
    train, valid = (SequentialDigits(split, seed=3, valid_fraction=0.25) for split in ("train", "valid"))
    train_idx, valid_idx = set(train.indices.tolist()), set(valid.indices.tolist())
    assert not train_idx & valid_idx
    assert train_idx | valid_idx == set(full_train.indices.tolist())
    assert torch.equal(SequentialDigits("test", seed=3, valid_fraction=0.25).indices, test.indices)
    share = torch.bincount(valid.targets, minlength=10) / torch.bincount(full_train.targets, minlength=10)
    assert torch.allclose(share, torch.full((10,), 0.25), atol=0.03)
    assert torch.equal(valid.inputs, full_train.inputs[torch.isin(full_train.indices, valid.indices)])
    with pytest.raises(ValueError, match="valid_fraction"):  # too few validation digits to hold every class
        SequentialDigits("valid", valid_fraction=0.001)


@needs_sklearn
def test_digits_determinism():
    a, b = SequentialDigits("train", seed=1), SequentialDigits("train", seed=1)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.indices, SequentialDigits("train", seed=2).indices)


def test_digits_missing_sklearn_says_how_to_install(monkeypatch):
    digits_module._load_digits.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "torch==2\.13\.0" "snn-parallel\[data\]"'):
        SequentialDigits()
    digits_module._load_digits.cache_clear()


# ----------------------------------------------------------------------------- AddingProblem


@pytest.mark.parametrize("num_steps", [2, 3, 10, 11])
def test_adding_problem(num_steps):
    ds = AddingProblem(num_steps, 300, seed=5)
    x, y = ds[0]
    assert x.shape == (num_steps, 2) and x.dtype == torch.float32
    assert y.shape == () and y.dtype == torch.float32
    assert (ds.num_steps, ds.num_inputs) == (num_steps, 2)
    values, marks = ds.inputs[..., 0], ds.inputs[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(marks.unique().tolist()) <= {0.0, 1.0}
    assert (marks[:, : num_steps // 2].sum(1) == 1).all()
    assert (marks[:, (num_steps + 1) // 2 :].sum(1) == 1).all()
    assert marks.sum(1).eq(2).all()
    assert torch.allclose(ds.targets, (values * marks).sum(1))
    assert torch.equal(ds.markers, marks.nonzero()[:, 1].reshape(-1, 2))


def test_adding_problem_baseline_and_determinism():
    assert AddingProblem.BASELINE_MSE == pytest.approx(1 / 6)
    ds = AddingProblem(20, 20000, seed=0)
    assert ((ds.targets - 1) ** 2).mean().item() == pytest.approx(1 / 6, abs=0.01)
    same = AddingProblem(20, 20000, seed=0)
    assert torch.equal(ds.inputs, same.inputs) and torch.equal(ds.targets, same.targets)
    assert not torch.equal(ds.inputs, AddingProblem(20, 20000, seed=1).inputs)


# ----------------------------------------------------------------------------- DelayedCue


@pytest.mark.parametrize("delay", [0, 7])
def test_delayed_cue(delay):
    c, cue_steps = 4, 6
    ds = DelayedCue(delay, 200, seed=2, channels_per_group=c, cue_steps=cue_steps, rate=0.5)
    steps = DelayedCue.SIGNAL_STEPS + delay + cue_steps
    x, y = ds[0]
    assert x.shape == (steps, 3 * c) and x.dtype == torch.float32
    assert y.shape == () and y.dtype == torch.int64
    assert (ds.num_steps, ds.num_inputs, ds.num_classes) == (steps, 3 * c, 2)
    assert set(ds.inputs.unique().tolist()) == {0.0, 1.0}
    labels = ds.targets
    assert set(labels.tolist()) == {0, 1}

    signal = ds.inputs[:, : DelayedCue.SIGNAL_STEPS]
    group_a, group_b = signal[..., :c].sum((1, 2)), signal[..., c : 2 * c].sum((1, 2))
    assert (group_a[labels == 0] > 0).all() and (group_b[labels == 0] == 0).all()
    assert (group_b[labels == 1] > 0).all() and (group_a[labels == 1] == 0).all()
    assert (signal[..., 2 * c :] == 0).all()

    mask = ds.loss_mask
    assert mask.shape == (steps,) and mask.dtype == torch.bool
    assert torch.equal(mask, torch.arange(steps) >= steps - cue_steps)
    assert (ds.inputs[:, DelayedCue.SIGNAL_STEPS : steps - cue_steps] == 0).all()
    cue = ds.inputs[:, mask]
    assert (cue[..., : 2 * c] == 0).all() and (cue[..., 2 * c :].sum((1, 2)) > 0).all()


def test_delayed_cue_defaults_and_determinism():
    ds = DelayedCue(10, 50)
    assert (ds.num_steps, ds.num_inputs) == (50, 15)
    assert torch.equal(ds.inputs, DelayedCue(10, 50).inputs)
    assert not torch.equal(ds.inputs, DelayedCue(10, 50, seed=1).inputs)


# ----------------------------------------------------------------------------- TemporalXOR


@pytest.mark.parametrize(("delay", "pulse_steps"), [(0, 1), (8, 3)])
def test_temporal_xor(delay, pulse_steps):
    ds = TemporalXOR(delay, 400, seed=9, pulse_steps=pulse_steps)
    steps = 2 * pulse_steps + delay + TemporalXOR.TRAILING_STEPS
    x, y = ds[0]
    assert x.shape == (steps, 2) and x.dtype == torch.float32
    assert y.shape == () and y.dtype == torch.int64
    assert (ds.num_steps, ds.num_inputs, ds.num_classes) == (steps, 2, 2)
    second = pulse_steps + delay
    first_bit = ds.inputs[:, :pulse_steps, 0]
    second_bit = ds.inputs[:, second : second + pulse_steps, 1]
    assert torch.equal(first_bit, ds.bits[:, :1].float().expand(-1, pulse_steps))
    assert torch.equal(second_bit, ds.bits[:, 1:].float().expand(-1, pulse_steps))
    assert ds.inputs.sum((1, 2)).eq(ds.bits.sum(1) * pulse_steps).all()  # silent elsewhere
    assert torch.equal(ds.targets, ds.bits[:, 0] ^ ds.bits[:, 1])
    expected = (first_bit[:, 0] != second_bit[:, 0]).long()
    assert torch.equal(ds.targets, expected)
    assert set(ds.targets.tolist()) == {0, 1}


def test_temporal_xor_determinism():
    assert torch.equal(TemporalXOR(4, 64).inputs, TemporalXOR(4, 64).inputs)
    assert not torch.equal(TemporalXOR(4, 64).inputs, TemporalXOR(4, 64, seed=1).inputs)


# ----------------------------------------------------------------------------- MNIST1D


def test_mnist1d():
    pytest.importorskip("mnist1d")
    np_state, py_state = np.random.get_state(), random.getstate()
    train = MNIST1D("train", num_samples=200, final_seq_length=24)
    test = MNIST1D("test", num_samples=200, final_seq_length=24)
    assert (len(train), len(test)) == (160, 40)
    x, y = train[0]
    assert x.shape == (24, 1) and x.dtype == torch.float32
    assert y.shape == () and y.dtype == torch.int64
    assert (train.num_steps, train.num_inputs, train.num_classes) == (24, 1, 10)
    assert set(train.targets.tolist()) <= set(range(10))
    # global RNGs untouched; the second split reused the cached generation
    assert np.array_equal(np.random.get_state()[1], np_state[1]) and random.getstate() == py_state
    assert mnist1d_task._generate.cache_info().hits >= 1
    assert torch.equal(train.inputs, MNIST1D("train", num_samples=200, final_seq_length=24).inputs)
    assert not torch.equal(train.inputs, MNIST1D("train", seed=0, num_samples=200, final_seq_length=24).inputs)
    shuffled = MNIST1D("train", num_samples=200, final_seq_length=24, shuffle_seq=True)
    assert shuffled.inputs.shape == train.inputs.shape and not torch.equal(shuffled.inputs, train.inputs)


def test_mnist1d_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(ImportError, match=r'pip install "torch==2\.13\.0" "snn-parallel\[data\]"'):
        MNIST1D(num_samples=30, final_seq_length=7)


# ----------------------------------------------------------------------------- collate / loader


def test_time_major_collate():
    items = [(torch.full((6, 3), float(i)), torch.tensor(i)) for i in range(4)]
    x, y = time_major_collate(items)
    assert x.shape == (6, 4, 3) and torch.equal(x[:, 2], items[2][0])
    assert torch.equal(y, torch.arange(4))
    _, y_float = time_major_collate([(torch.zeros(2, 1), 0.5), (torch.zeros(2, 1), 1.5)])
    assert y_float.shape == (2,)
    with pytest.raises(ValueError, match="batch"):
        time_major_collate([])
    with pytest.raises(ValueError, match=r"\[T, F\]"):
        time_major_collate([(torch.zeros(2, 3, 4), 0)])


def test_make_loader_shapes_and_drop_last():
    ds = TemporalXOR(3, 10)
    batches = list(make_loader(ds, 4))
    assert [b[0].shape for b in batches] == [(18, 4, 2), (18, 4, 2), (18, 2, 2)]
    assert [b[1].shape for b in batches] == [(4,), (4,), (2,)]
    assert torch.equal(torch.cat([b[0] for b in batches], 1), ds.inputs.transpose(0, 1))
    assert len(list(make_loader(ds, 4, drop_last=True))) == 2


def test_make_loader_seeded_shuffle():
    ds = AddingProblem(4, 32)

    def order(loader):
        return torch.cat([y for _, y in loader])

    first, again = order(make_loader(ds, 8, shuffle=True, seed=3)), order(make_loader(ds, 8, shuffle=True, seed=3))
    assert torch.equal(first, again)
    assert torch.equal(torch.sort(first).values, torch.sort(ds.targets).values)
    assert not torch.equal(first, ds.targets)
    assert not torch.equal(first, order(make_loader(ds, 8, shuffle=True, seed=4)))


# ----------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize(
    ("build", "error", "name"),
    [
        (lambda: SequentialDigits("val"), ValueError, "split"),
        (lambda: SequentialDigits(1), TypeError, "split"),
        (lambda: SequentialDigits(mode="column"), ValueError, "mode"),
        (lambda: SequentialDigits(seed=-1), ValueError, "seed"),
        (lambda: SequentialDigits(seed=1.0), TypeError, "seed"),
        (lambda: SequentialDigits(test_fraction=0.0), ValueError, "test_fraction"),
        (lambda: SequentialDigits(test_fraction=1.0), ValueError, "test_fraction"),
        (lambda: SequentialDigits(test_fraction="0.2"), TypeError, "test_fraction"),
        (lambda: SequentialDigits("valid"), ValueError, "valid_fraction"),
        (lambda: SequentialDigits(valid_fraction=0.0), ValueError, "valid_fraction"),
        (lambda: SequentialDigits(valid_fraction=1.0), ValueError, "valid_fraction"),
        (lambda: SequentialDigits(valid_fraction=float("nan")), ValueError, "valid_fraction"),
        (lambda: SequentialDigits(valid_fraction="0.2"), TypeError, "valid_fraction"),
        (lambda: SequentialDigits(mode="static", repeat=0), ValueError, "repeat"),
        (lambda: AddingProblem(1, 10), ValueError, "num_steps"),
        (lambda: AddingProblem(10, 0), ValueError, "num_samples"),
        (lambda: AddingProblem(10.0, 10), TypeError, "num_steps"),
        (lambda: AddingProblem(True, 10), TypeError, "num_steps"),
        (lambda: DelayedCue(-1, 10), ValueError, "delay"),
        (lambda: DelayedCue(5, 0), ValueError, "num_samples"),
        (lambda: DelayedCue(5, 10, channels_per_group=0), ValueError, "channels_per_group"),
        (lambda: DelayedCue(5, 10, cue_steps=0), ValueError, "cue_steps"),
        (lambda: DelayedCue(5, 10, rate=0.0), ValueError, "rate"),
        (lambda: DelayedCue(5, 10, rate=1.5), ValueError, "rate"),
        (lambda: TemporalXOR(-1, 10), ValueError, "delay"),
        (lambda: TemporalXOR(2, 0), ValueError, "num_samples"),
        (lambda: TemporalXOR(2, 10, pulse_steps=0), ValueError, "pulse_steps"),
        (lambda: MNIST1D("valid"), ValueError, "split"),
        (lambda: MNIST1D(num_samples=9), ValueError, "num_samples"),
        (lambda: MNIST1D(final_seq_length=0), ValueError, "final_seq_length"),
        (lambda: MNIST1D(shuffle_seq=1), TypeError, "shuffle_seq"),
        (lambda: MNIST1D(seed=2**32), ValueError, "seed"),
        (lambda: make_loader([1, 2], 2), TypeError, "dataset"),
        (lambda: make_loader(TemporalXOR(1, 4), 0), ValueError, "batch_size"),
        (lambda: make_loader(TemporalXOR(1, 4), 2, shuffle="yes"), TypeError, "shuffle"),
        (lambda: make_loader(TemporalXOR(1, 4), 2, seed=-3), ValueError, "seed"),
        (lambda: make_loader(TemporalXOR(1, 4), 2, drop_last=None), TypeError, "drop_last"),
    ],
)
def test_bad_arguments_name_the_argument(build, error, name):
    with pytest.raises(error, match=name):
        build()
