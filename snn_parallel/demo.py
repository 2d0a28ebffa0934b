"""``snn-parallel demo``: train a small spiking network on built-in sequential digits.

The network is ``Linear -> neuron -> Linear -> neuron -> Linear``, trained in parallel over
time with Adam and cross-entropy on the time-averaged readout. Everything runs on the CPU
with scikit-learn's bundled 8x8 digits, so it needs no download.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ._validation import check_bool, check_choice, check_int, check_positive, check_seed
from .learners.nonfinite import describe_nonfinite, nonfinite_error
from .neurons import LTC, PRF, DynamicDecay, Neuron
from .tasks import SequentialDigits, make_loader

#: sequence layouts of the digits the demo offers
MODES = ("row", "pixel", "permuted")
#: a last epoch's mean loss this many times a uniform guess's means the training diverged
_DIVERGED = 10

#: neuron builders by CLI name; each takes the feature count
NEURONS: dict[str, Callable[[int], Neuron]] = {
    "dsn": lambda n: DynamicDecay(n),
    "prf": lambda n: PRF(n, dt_range=(0.01, 1.0), learn_decay=True),
    "ltc": lambda n: LTC(n, mode="parallel"),
}


class SpikingClassifier(nn.Module):
    r"""Stacked ``Linear -> neuron`` blocks and a linear readout averaged over time.

    Args:
        num_inputs: features per time step.
        hidden: neurons per spiking layer.
        num_classes: readout size.
        neuron: builds a neuron for a given feature count.
        layers: number of spiking layers.
        init_gain: synaptic weights start as :math:`U(-g\sqrt{3/n}, g\sqrt{3/n})` for fan-in
            :math:`n`, ``g`` times wider than a plain linear init, so that the spiking
            layers fire from the first batch instead of sitting silent for epochs.
    """

    def __init__(
        self,
        num_inputs: int,
        hidden: int,
        num_classes: int,
        neuron: Callable[[int], Neuron],
        layers: int = 2,
        init_gain: float = 3.0,
    ) -> None:
        super().__init__()
        sizes = [num_inputs] + [hidden] * layers
        self.synapses = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        for synapse in self.synapses:
            bound = init_gain * math.sqrt(3 / synapse.in_features)
            nn.init.uniform_(synapse.weight, -bound, bound)
        self.neurons = nn.ModuleList(neuron(hidden) for _ in range(layers))
        self.readout = nn.Linear(hidden, num_classes)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Class logits ``[B, classes]`` for ``x_seq`` ``[T, B, inputs]``."""
        h = x_seq
        for synapse, neuron in zip(self.synapses, self.neurons):
            h, _ = neuron(synapse(h))
        return self.readout(h).mean(0)


@dataclass
class DemoResult:
    """What the demo measured."""

    neuron: str
    mode: str
    epochs: int
    test_accuracy: float
    train_seconds: float
    seconds_per_epoch: float
    samples_per_second: float


def _accuracy(model: nn.Module, loader) -> float:
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += y.numel()
    return correct / total


def run_demo(
    neuron: str = "dsn",
    *,
    mode: str = "row",
    epochs: int = 40,
    hidden: int = 128,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Train and evaluate the demo network; returns the measured :class:`DemoResult`.

    Args:
        neuron: ``"dsn"``, ``"prf"`` or ``"ltc"``.
        mode: :class:`~snn_parallel.tasks.SequentialDigits` mode (``"row"``: T = 8,
            ``"pixel"``: T = 64, ``"permuted"``).
        epochs, hidden, batch_size, lr, seed: training setup.
        progress: show a tqdm progress bar (if tqdm is installed).
        log: where the summary lines go.

    Raises:
        TypeError, ValueError: a bad argument, named.
        NonFiniteError: the loss, a gradient or a weight went NaN or infinite (the message
            names the step and the epoch); a finite loss that grew instead is reported by a
            warning line after the result.
    """
    check_choice(neuron, "neuron", sorted(NEURONS))
    check_choice(mode, "mode", MODES)
    for value, name in ((epochs, "epochs"), (hidden, "hidden"), (batch_size, "batch_size")):
        check_int(value, name, minimum=1)
    lr, seed, progress = check_positive(lr, "lr"), check_seed(seed), check_bool(progress, "progress")
    torch.manual_seed(seed)
    train = SequentialDigits("train", mode, seed=seed)
    test = SequentialDigits("test", mode, seed=seed)
    train_loader = make_loader(train, batch_size, shuffle=True, seed=seed)
    test_loader = make_loader(test, 256)
    model = SpikingClassifier(train.num_inputs, hidden, train.num_classes, NEURONS[neuron])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * len(train_loader))
    loss_fn = nn.CrossEntropyLoss()
    log(f"demo: {neuron} on sequential digits ({mode}, T = {train.num_steps}), {len(train)} train / {len(test)} test")

    bar = _progress_bar(epochs * len(train_loader), progress)
    start = time.perf_counter()
    losses = []  # the mean loss of each epoch
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for step, (x, y) in enumerate(train_loader, epoch * len(train_loader) + 1):
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            where, value = f"step {step} (epoch {epoch + 1})", loss.item()
            _check_finite(model, where, value)
            optimizer.step()
            _check_finite(model, where)
            schedule.step()
            total += value
            if bar is not None:
                bar.set_postfix(epoch=epoch + 1, loss=f"{value:.3f}")
                bar.update()
        losses.append(total / len(train_loader))
    elapsed = time.perf_counter() - start
    if bar is not None:
        bar.close()
    model.eval()
    result = DemoResult(
        neuron=neuron,
        mode=mode,
        epochs=epochs,
        test_accuracy=_accuracy(model, test_loader),
        train_seconds=elapsed,
        seconds_per_epoch=elapsed / epochs,
        samples_per_second=epochs * len(train) / elapsed,
    )
    log(
        f"test accuracy {100 * result.test_accuracy:.1f}% | {result.samples_per_second:.0f} samples/s | "
        f"{result.seconds_per_epoch:.2f} s/epoch | {result.train_seconds:.1f} s training"
    )
    chance = math.log(train.num_classes)  # the cross-entropy of a uniform guess
    if losses[-1] > _DIVERGED * chance:
        log(f"warning: the training diverged: the last epoch's mean loss {losses[-1]:.4g} is over {_DIVERGED} times "
            f"a uniform guess's {chance:.3f}, so this accuracy says nothing about {neuron}; lower --lr (it was {lr:g})")
    return result


def _check_finite(model: nn.Module, where: str, loss: float | None = None) -> None:
    """Stop at a non-finite loss or gradient (with ``loss``, before the update) or weight (without,
    after it), whatever the validation setting."""
    if loss is None:
        what, bad = "after the update the weights hold non-finite values:", describe_nonfinite(model.named_parameters())
    elif not math.isfinite(loss):
        what, bad = "the loss is", str(loss)
    else:
        what, bad = "the gradient of", describe_nonfinite((n, p.grad) for n, p in model.named_parameters() if p.grad is not None)
    if bad is not None:
        raise nonfinite_error("demo", where, f"{what} {bad}", " (--lr)")


def _progress_bar(total: int, enabled: bool):
    """A tqdm bar, or ``None`` when disabled or tqdm is missing."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="batch", dynamic_ncols=True)
