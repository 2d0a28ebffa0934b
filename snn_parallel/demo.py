r"""``snn-parallel demo``: train a small spiking network on built-in sequential digits.

The network is ``Linear -> neuron -> Linear -> neuron -> Linear``
(:func:`~snn_parallel.learners.experiments.classifier`), trained in parallel over time by
:class:`~snn_parallel.learners.BPTTTrainer` with Adam and the cross-entropy of every step,
:math:`L = \frac{1}{T}\sum_t \mathrm{CE}(o_t, y)`; a digit's class is the argmax of its mean
readout :math:`\frac{1}{T}\sum_t o_t`. Everything runs on the CPU with scikit-learn's bundled 8x8
digits, so it needs no download.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ._validation import check_bool, check_choice, check_int, check_positive, check_seed
from .learners.experiments import classifier, fit_and_evaluate
from .learners.rules import BPTTTrainer
from .tasks import SequentialDigits

#: the neurons of :mod:`snn_parallel.registry` the demo offers
NEURONS = ("dsn", "ltc", "prf")
#: sequence layouts of the digits the demo offers
MODES = ("row", "pixel", "permuted")
#: a last epoch's mean loss this many times a uniform guess's means the training diverged
_DIVERGED = 10


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
        neuron: ``"dsn"``, ``"prf"`` or ``"ltc"``, built by :func:`snn_parallel.registry.build`.
        mode: :class:`~snn_parallel.tasks.SequentialDigits` mode (``"row"``: T = 8,
            ``"pixel"``: T = 64, ``"permuted"``).
        epochs, hidden, batch_size, lr, seed: training setup.
        progress: show the trainer's progress bar (if tqdm is installed and stderr is a terminal).
        log: where the summary lines go.

    Raises:
        TypeError, ValueError: a bad argument, named.
        NonFiniteError: the loss, a gradient or a weight went NaN or infinite (the message
            names the optimizer step and the epoch); a finite loss that grew instead is reported
            by a warning line after the result.
    """
    check_choice(neuron, "neuron", NEURONS)
    check_choice(mode, "mode", MODES)
    for value, name in ((epochs, "epochs"), (hidden, "hidden"), (batch_size, "batch_size")):
        check_int(value, name, minimum=1)
    lr, seed, progress = check_positive(lr, "lr"), check_seed(seed), check_bool(progress, "progress")
    torch.manual_seed(seed)
    train = SequentialDigits("train", mode, seed=seed)
    test = SequentialDigits("test", mode, seed=seed)
    model = classifier(train.num_inputs, train.num_classes, neuron, hidden)
    trainer = BPTTTrainer(model, torch.optim.Adam(model.parameters(), lr=lr), loss="ce_all", progress=progress)
    log(f"demo: {neuron} on sequential digits ({mode}, T = {train.num_steps}), {len(train)} train / {len(test)} test")

    metrics, elapsed = fit_and_evaluate(trainer, train, test, epochs=epochs, batch_size=batch_size, seed=seed)
    result = DemoResult(
        neuron=neuron,
        mode=mode,
        epochs=epochs,
        test_accuracy=metrics["accuracy"],
        train_seconds=elapsed,
        seconds_per_epoch=elapsed / epochs,
        samples_per_second=epochs * len(train) / elapsed,
    )
    log(
        f"test accuracy {100 * result.test_accuracy:.1f}% | {result.samples_per_second:.0f} samples/s | "
        f"{result.seconds_per_epoch:.2f} s/epoch | {result.train_seconds:.1f} s training"
    )
    chance = math.log(train.num_classes)  # the cross-entropy of a uniform guess
    last = trainer.history[-1]["train_loss"]
    if last > _DIVERGED * chance:
        log(
            f"warning: the training diverged: the last epoch's mean loss {last:.4g} is over {_DIVERGED} times "
            f"a uniform guess's {chance:.3f}, so this accuracy says nothing about {neuron}; lower --lr (it was {lr:g})"
        )
    return result
