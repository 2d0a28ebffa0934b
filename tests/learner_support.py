"""Helpers shared by the learners' tests: a trainer's gradients for one batch, BPTT's, small inputs, the rows
``snn-parallel train`` reports."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from snn_parallel.learners import StepLoss


def wide(linear: nn.Linear, gain: float = 3.0) -> nn.Linear:
    """``linear`` with uniform weights ``gain`` times PyTorch's default bound, so that the neurons after it fire."""
    bound = gain * (3 / linear.in_features) ** 0.5
    nn.init.uniform_(linear.weight, -bound, bound)
    return linear


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
