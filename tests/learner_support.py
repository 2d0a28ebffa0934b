"""Helpers shared by the learners' tests: a trainer's gradients for one batch, BPTT's, small inputs, a small digits
classifier and its loader, the check that a resumed run is exact, the rows ``snn-parallel train`` reports, two
``torch.distributed`` ranks."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from snn_parallel.learners import StepLoss, Trainer
from snn_parallel.neurons import DecoupledLIF


def needs(module: object, *names: str) -> pytest.MarkDecorator:
    """Skips a test where ``module`` lacks any of ``names`` (classes SpikingJelly 2.0 added, such as ``neuron.PSN``,
    absent from 0.0.0.0.14), naming what is missing; found by ``hasattr``, not by version."""
    absent = [name for name in names if not hasattr(module, name)]
    return pytest.mark.skipif(bool(absent), reason=f"{module.__name__} has no {', '.join(absent)}")


def wide(linear: nn.Linear, gain: float = 3.0) -> nn.Linear:
    """``linear`` with uniform weights ``gain`` times PyTorch's default bound, so that the neurons after it fire."""
    bound = gain * (3 / linear.in_features) ** 0.5
    nn.init.uniform_(linear.weight, -bound, bound)
    return linear


def digits_loader(mode: str = "row", seed: int = 0, count: int = 96, **options) -> Iterable:
    """The first ``count`` training examples of ``SequentialDigits(mode, **options)`` in shuffled batches of 32
    (``seed``); needs scikit-learn."""
    from snn_parallel.tasks import SequentialDigits, make_loader

    data = SequentialDigits("train", mode, seed=0, **options)
    data.inputs, data.targets = data.inputs[:count], data.targets[:count]
    return make_loader(data, 32, shuffle=True, seed=seed)


def digits_classifier(
    dropout: nn.Module | None = None, neuron: Callable[[int], nn.Module] | None = None
) -> nn.Sequential:
    """8 inputs -> 16 neurons (``DecoupledLIF`` by default, behind :func:`wide` weights) [-> ``dropout``] -> 10
    classes, the same weights at each call (seed 5)."""
    torch.manual_seed(5)
    hidden = (neuron or DecoupledLIF)(16)
    layers = [wide(nn.Linear(8, 16)), hidden] + ([dropout] if dropout is not None else []) + [nn.Linear(16, 10)]
    return nn.Sequential(*layers)


def _untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("seconds", "samples_per_second")} for row in history]


def assert_resume_is_exact(
    tmp_path: Path,
    make_trainer: Callable[[nn.Module], Trainer],
    make_model: Callable[[], nn.Module],
    batches: Callable[[], Iterable],
    resumed_model: Callable[[], nn.Module] | None = None,
) -> None:
    """Two epochs straight, and one epoch, a checkpoint, then a fresh trainer (of ``resumed_model()``, by default
    ``make_model()``) loading it after the global RNG was disturbed and training one more epoch, end with equal
    parameters, history rows (but for the timings) and step counts."""
    straight_model = make_model()
    straight = make_trainer(straight_model)
    history = straight.fit(batches(), 2)

    first = make_trainer(make_model())
    first.fit(batches(), 1)
    first.save(tmp_path / "ckpt.pt")
    torch.manual_seed(123)  # disturb the global RNG: the checkpoint must restore it
    resumed_model = (resumed_model or make_model)()
    resumed = make_trainer(resumed_model)
    resumed.load(tmp_path / "ckpt.pt")
    resumed_history = resumed.fit(batches(), 1)

    for p, q in zip(straight_model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert _untimed(resumed_history) == _untimed(history)
    assert resumed.global_step == straight.global_step


def trainer_gradients(
    trainer_cls, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss="ce_all", **options
) -> dict[str, torch.Tensor]:
    """Gradients a rule hands to the optimizer for one batch (the step itself changes nothing: lr 0)."""
    trainer = trainer_cls(model, torch.optim.SGD(model.parameters(), lr=0.0), loss=loss, progress=False, **options)
    captured: dict[str, torch.Tensor] = {}
    step = trainer.optimizer_step

    def capture() -> None:
        for name, param in model.named_parameters():
            if param.grad is not None:
                captured[name] = captured.get(name, 0) + param.grad.clone()
        step()

    trainer.optimizer_step = capture
    x, y = trainer.prepare((x, y))
    with trainer.network.stepping():
        trainer.train_batch(x, y)
    return captured


def bptt_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: StepLoss) -> dict[str, torch.Tensor]:
    """Plain autograd through the model's own modules over the whole sequence."""
    model.zero_grad()
    h = x
    for module in model:
        h = module(h)[0] if hasattr(module, "state_type") else module(h)
    loss.sequence_loss(h, y).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return grads


def cut_readout_bptt(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, loss: StepLoss) -> dict[str, torch.Tensor]:
    """BPTT with the readout's state entering each step detached, for the parameters below the readout's
    synapse (``model[:-2]``): the learning signal HYPR gives the layers below a stateful readout (its own
    step's, spatial only)."""
    model.zero_grad()
    h = x
    for module in model[:-1]:
        h = module(h)[0] if hasattr(module, "state_type") else module(h)
    readout = model[-1]
    alpha, gain = readout.linear_response()
    u, out = torch.zeros_like(h[0]), []
    for h_t in h:
        u = alpha * u.detach() + gain * h_t
        out.append(u)
    loss.sequence_loss(torch.stack(out), y).backward()
    grads = {n: p.grad.clone() for n, p in model[:-2].named_parameters() if p.grad is not None}
    model.zero_grad()
    return grads


def digits_like(steps=12, batch=5, inputs=4, classes=3, seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random float64 inputs ``[T, B, F]`` and class targets ``[B]``."""
    gen = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(steps, batch, inputs, generator=gen, dtype=torch.float64)
    return x, torch.randint(0, classes, (batch,), generator=gen)


def assert_close_dicts(a: dict, b: dict, tol=1e-10) -> None:
    """The same keys, each tensor equal to ``tol`` (relative and absolute)."""
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=tol, rtol=tol, msg=name)


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """:math:`\\lVert a - b\\rVert / \\lVert b\\rVert`."""
    return float((a - b).norm() / b.norm())


def train_rows(tmp_path: Path, options: str) -> list[dict]:
    """The rows of the JSON report of ``snn-parallel train <options>`` (split on white space), which must exit 0."""
    from snn_parallel import cli

    out = tmp_path / "train.json"
    assert cli.main(["train", *options.split(), "--json", str(out)]) == 0
    return json.loads(out.read_text())["rows"]


def spawn_two_ranks(worker: Callable, tmp_path: Path, *args) -> None:
    """Runs ``worker(rank, rendezvous, *args)`` in two spawned processes. They meet through a file under ``tmp_path``
    rather than a TCP port, which another process could take between choosing it and binding it.

    A rank killed by a signal (gloo's native threads aborting the process, "terminate called without an active
    exception", seen once in CI) is run again once, both ranks from a fresh rendezvous file; an exception raised in
    Python, the worker's own failures and a collective's timeout included, fails at once."""
    for attempt in range(2):
        rendezvous = f"file://{tmp_path / f'rendezvous{attempt}'}"
        try:
            mp.start_processes(worker, args=(rendezvous, *args), nprocs=2, join=True, start_method="spawn")
            return
        except mp.ProcessExitedException as error:
            if error.signal_name is None or attempt == 1:
                raise
            message = f"rank {error.error_index} was killed by {error.signal_name}; running both ranks again"
            warnings.warn(message, stacklevel=2)


def join_two_ranks(rank: int, rendezvous: str) -> None:
    """Joins the gloo group of :func:`spawn_two_ranks`; a rank that waits a minute for the other one fails rather
    than hanging the run."""
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=2, timeout=timedelta(seconds=60))


def leave_two_ranks() -> None:
    """Leaves the group of :func:`join_two_ranks` once both ranks are done with it: the barrier keeps one rank from
    tearing its connections down while the other still reads from them."""
    dist.barrier()
    dist.destroy_process_group()
