"""Built-in experiments for the learners: accuracy on sequential digits and the adding problem,
and peak memory of one training step against the sequence length.

``snn-parallel train`` and ``snn-parallel bench --learners`` call these; every figure they print
is measured when they run.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from .. import registry
from ..bench.memory import peak_kib
from ..tasks import AddingProblem, SequentialDigits, make_loader
from ..tasks._base import SequenceDataset
from .hypr import HYPRTrainer
from .losses import StepLoss, resolve_loss
from .network import RecurrentBlock
from .rules import BPTTTrainer, FPTTTrainer, OTTTTrainer
from .trainer import Trainer
from .tsslbp import SpikeSequenceLoss, TSSLBPTrainer, tssl_network

__all__ = [
    "RULES",
    "DIGITS_NEURONS",
    "IMAGE_RULES",
    "IMAGE_NETWORK",
    "classifier",
    "build_trainer",
    "digits_loss",
    "fit_and_evaluate",
    "train_digits",
    "train_adding",
    "train_image",
    "memory_profile",
    "tsslbp_profile",
    "MEMORY_NETWORKS",
]

RULES: dict[str, type[Trainer]] = {"bptt": BPTTTrainer, "fptt": FPTTTrainer, "ottt": OTTTTrainer, "hypr": HYPRTrainer}
#: the neurons of :mod:`snn_parallel.registry` that ``snn-parallel train`` offers on the digits
DIGITS_NEURONS = ("adlif", "brf", "dsn", "lif", "prf", "prf_fixed", "synaptic")


def _synapse(fan_in: int, fan_out: int, gain: float = 3.0) -> nn.Linear:
    """A Linear layer initialised ``gain`` times wider than usual, so spiking layers fire from the start."""
    layer = nn.Linear(fan_in, fan_out)
    bound = gain * math.sqrt(3 / fan_in)
    nn.init.uniform_(layer.weight, -bound, bound)
    return layer


def classifier(inputs: int, classes: int, neuron: str = "lif", hidden: int = 128, layers: int = 2) -> nn.Sequential:
    """``Linear -> neuron`` blocks and a Linear readout, as an ``nn.Sequential`` the trainers accept;
    ``neuron`` is a name of :mod:`snn_parallel.registry`, built with the built-in tasks' arguments."""
    modules: list[nn.Module] = []
    sizes = [inputs] + [hidden] * layers
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        modules += [_synapse(fan_in, fan_out), registry.build(neuron, fan_out)]
    return nn.Sequential(*modules, nn.Linear(hidden, classes))


def ottt_trace(neuron: str) -> str:
    """OTTT's default trace for the neuron named ``neuron`` (a name of :mod:`snn_parallel.registry`): ``"neuron"``,
    the neuron's own linear response, where its membrane is linear in its input (exact for one layer), else
    ``"presynaptic"``."""
    return "presynaptic" if registry.build(neuron, 1).linear_stages() is None else "neuron"


def build_trainer(
    rule: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    steps: int,
    loss: StepLoss,
    chunk: int | None = None,
    parts: int | None = None,
    trace: str = "presynaptic",
    readout: str | None = None,
    **rule_options: object,
) -> Trainer:
    """The rule's trainer as these experiments use it: FPTT with K = ``parts`` (``None``: T),
    OTTT_A with an input trace of kind ``trace`` and its ``readout`` (``None``: the trace's
    default), HYPR with sub-sequences of ``chunk`` steps (``None``: the whole sequence);
    ``rule_options`` go to the trainer as they are (e.g. FPTT's ``alpha``)."""
    ottt = {"trace_input": True, "trace": trace, "readout": readout}
    options = {"fptt": {"parts": parts or steps}, "ottt": ottt, "hypr": {"chunk": chunk}}.get(rule, {})
    return RULES[rule](model, optimizer, loss=loss, progress=False, **options, **rule_options)


def digits_loss(rule: str) -> StepLoss:
    """Cross-entropy at every step, except for FPTT: its reference code's terminal-label loss
    (the last step of each part, weighted p/K, plus the oracle term)."""
    return StepLoss("ce", "last") if rule == "fptt" else StepLoss("ce", "all")


def fit_and_evaluate(
    trainer: Trainer, train: SequenceDataset, test: SequenceDataset, *, epochs: int, batch_size: int, seed: int
) -> tuple[dict[str, float], float]:
    """Train ``epochs`` epochs on ``train`` (batches of ``batch_size``, shuffled from ``seed``), then
    evaluate on ``test``; returns the trainer's test metrics and the training time in seconds."""
    start = time.perf_counter()
    trainer.fit(make_loader(train, batch_size, shuffle=True, seed=seed), epochs)
    seconds = time.perf_counter() - start
    return trainer.evaluate(make_loader(test, 256)), seconds


def _digits_splits(
    mode: str, seed: int, valid_fraction: float | None, **options: int
) -> tuple[SequentialDigits, SequentialDigits]:
    """The digits to train on and to score: train and test, or with ``valid_fraction`` the
    training digits less that share and the share itself (the test split stays unseen)."""
    scored = "test" if valid_fraction is None else "valid"
    return tuple(
        SequentialDigits(split, mode, seed=seed, valid_fraction=valid_fraction, **options)
        for split in ("train", scored)
    )


def train_digits(
    rule: str,
    mode: str = "row",
    *,
    neuron: str = "lif",
    epochs: int = 20,
    hidden: int = 128,
    layers: int = 2,
    lr: float = 3e-3,
    batch_size: int = 64,
    parts: int | None = None,
    trace: str | None = None,
    readout: str | None = None,
    loss: str | None = None,
    valid_fraction: float | None = None,
    seed: int = 0,
    **rule_options: object,
) -> dict[str, float | str]:
    """Train :func:`classifier` (``layers`` x ``hidden``) on :class:`~snn_parallel.tasks.SequentialDigits`
    with :func:`digits_loss` (or ``loss``, e.g. ``"ce"``); returns the test accuracy (``valid_accuracy``
    with ``valid_fraction``) and time. ``parts``: FPTT's K (``None``: K = T); ``trace``: OTTT's trace
    (``None``: :func:`ottt_trace` of the neuron); ``readout``: OTTT's readout (``None``: the trace's
    default); ``rule_options``: more arguments of the rule's trainer (e.g. FPTT's ``alpha``), recorded
    in the row."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {sorted(RULES)}, got {rule!r}")
    torch.manual_seed(seed)
    train, test = _digits_splits(mode, seed, valid_fraction)
    model = classifier(train.num_inputs, train.num_classes, neuron, hidden, layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss = digits_loss(rule) if loss is None else resolve_loss(loss)
    trainer = build_trainer(
        rule,
        model,
        optimizer,
        train.num_steps,
        loss,
        parts=parts,
        trace=trace or ottt_trace(neuron),
        readout=readout,
        **rule_options,
    )
    result, seconds = fit_and_evaluate(trainer, train, test, epochs=epochs, batch_size=batch_size, seed=seed)
    row = {
        "rule": rule,
        "task": f"digits-{mode}",
        "steps": train.num_steps,
        "neuron": neuron,
        "epochs": epochs,
        "lr": lr,
        "loss": f"ce_{loss.steps}",
        f"{test.split}_accuracy": result["accuracy"],
        "train_seconds": seconds,
    }
    if (layers, hidden) != (2, 128):
        row["network"] = f"{layers}x{hidden}"
    if rule == "fptt":
        row.update(parts=parts or train.num_steps, alpha=trainer.alpha)
    row.update(rule_options)
    if rule == "ottt":
        row["trace"], row["readout"] = trainer.trace, trainer.readout
    return row


def train_adding(
    steps: int = 200,
    *,
    rule: str = "fptt",
    parts: int = 10,
    iterations: int = 3000,
    hidden: int = 128,
    batch_size: int = 128,
    lr: float = 3e-3,
    alpha: float = 0.5,
    seed: int = 0,
) -> dict[str, float | str]:
    """LTC with recurrent weights on the adding problem (terminal MSE); returns the test MSE (trivial: 0.167).

    As the LTC-SNN adding-problem code: the threshold fixed at 0.5 (no adaptation), a linear
    readout of the membrane, and FPTT with its ``part_weight="adding"``.
    """
    torch.manual_seed(seed)
    # the trainers take regression targets as [B, K]: one output, K = 1
    train, test = (
        SequenceDataset(data.inputs, data.targets[:, None])
        for data in (
            AddingProblem(steps, iterations * batch_size // 10, seed=seed),
            AddingProblem(steps, 1000, seed=seed + 1),
        )
    )
    ltc = registry.build("ltc", hidden, mode="paper", b0=0.5, beta_a=0.0)
    model = nn.Sequential(RecurrentBlock(2, ltc, output="membrane"), nn.Linear(hidden, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    options = {"parts": parts, "alpha": alpha, "part_weight": "adding"} if rule == "fptt" else {}
    trainer = RULES[rule](model, optimizer, loss=StepLoss("mse", "last"), progress=False, **options)
    loader = make_loader(train, batch_size, shuffle=True, seed=seed)
    epochs = max(1, round(iterations / len(loader)))
    start = time.perf_counter()
    trainer.fit(loader, epochs)
    seconds = time.perf_counter() - start
    result = trainer.evaluate(make_loader(test, 500))
    fptt = {"parts": parts, "alpha": alpha} if rule == "fptt" else {}
    return {
        "rule": rule,
        "task": f"adding-{steps}",
        "steps": steps,
        "neuron": "ltc",
        "lr": lr,
        **fptt,
        "iterations": epochs * len(loader),
        "test_mse": result["mse"],
        "train_seconds": seconds,
    }


# -- TSSL-BP against BPTT on the 8x8 digits as pictures repeated over T = 5 steps ----------------------
#: the rules that train the PSPLIF conv net, and the net (paper notation) sized for 8x8 pictures
IMAGE_RULES = ("tsslbp", "bptt")
IMAGE_NETWORK = "16C3-32C3-P2-128"
#: training recipes shared by both rules: the reference's (the spike-sequence loss summed over the batch, the
#: gradient norm clipped to 1, weights clamped to [-4, 4]) and the usual one (the loss averaged, the same clip,
#: no clamp)
IMAGE_RECIPES = {
    "reference": {"batch_sum": True, "weight_clamp": 4.0},
    "mean": {"batch_sum": False, "weight_clamp": None},
}


def _image_trainer(
    rule: str,
    lr: float,
    spec: str,
    recipe: str = "reference",
    dt_du_at_spikes: bool = True,
    loss: str = "kernel",
    padding: str = "valid",
    kernel_target: str = "psp",
) -> Trainer:
    """The PSPLIF conv net ``spec`` (its convs padded as ``padding``, see :func:`tssl_network`) with
    AdamW, the spike-sequence loss (``loss``: its variant; ``kernel_target``: the kernel loss's target) and the recipe,
    trained with TSSL-BP (``dt_du_at_spikes``: its revision, see :class:`~snn_parallel.neurons.PSPLIF`)
    or with BPTT through the surrogate: everything but the gradient is the same."""
    if rule not in IMAGE_RULES:
        raise ValueError(f"rule must be one of {IMAGE_RULES} for the image task, got {rule!r}")
    if recipe not in IMAGE_RECIPES:
        raise ValueError(f"recipe must be one of {tuple(IMAGE_RECIPES)}, got {recipe!r}")
    spike_loss = SpikeSequenceLoss(variant=loss, kernel_target=kernel_target)
    model = tssl_network(
        spec,
        (1, 8, 8),
        10,
        gradient="tsslbp" if rule == "tsslbp" else "surrogate",
        padding=padding,
        dt_du_at_spikes=dt_du_at_spikes,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    trainer = TSSLBPTrainer if rule == "tsslbp" else BPTTTrainer
    return trainer(model, optimizer, loss=spike_loss, clip_grad_norm=1.0, progress=False, **IMAGE_RECIPES[recipe])


def train_image(
    rule: str,
    *,
    steps: int = 5,
    epochs: int = 30,
    lr: float = 5e-3,
    batch_size: int = 50,
    spec: str = IMAGE_NETWORK,
    recipe: str = "reference",
    valid_fraction: float | None = None,
    seed: int = 0,
    dt_du_at_spikes: bool = True,
    loss: str = "kernel",
    padding: str = "valid",
    kernel_target: str = "psp",
) -> dict[str, float | str]:
    """Train the PSPLIF conv net ``spec`` (convs padded as ``padding``) on the digits as pictures
    repeated over ``steps`` steps with the spike-sequence loss's variant ``loss`` (``"kernel"`` or
    ``"count"``; the kernel loss against ``kernel_target``, see :class:`SpikeSequenceLoss`); returns the test accuracy
    (``valid_accuracy`` with ``valid_fraction``) and time. TSSL-BP's rows say which revision of its
    gradient trained them (``dt_du``: ``"spikes"`` or ``"rising"``)."""
    torch.manual_seed(seed)
    train, test = _digits_splits("image", seed, valid_fraction, repeat=steps)
    trainer = _image_trainer(rule, lr, spec, recipe, dt_du_at_spikes, loss, padding, kernel_target)
    result, seconds = fit_and_evaluate(trainer, train, test, epochs=epochs, batch_size=batch_size, seed=seed)
    revision = {"dt_du": "spikes" if dt_du_at_spikes else "rising"} if rule == "tsslbp" else {}
    target = {"kernel_target": kernel_target} if loss == "kernel" else {}
    return {
        "rule": rule,
        "task": "digits-image",
        "steps": steps,
        "network": spec,
        "padding": padding,
        "recipe": recipe,
        "loss": loss,
        **target,
        **revision,
        "epochs": epochs,
        "lr": lr,
        f"{test.split}_accuracy": result["accuracy"],
        "train_seconds": seconds,
    }


def _saved_bytes(run: Callable[[], None]) -> int:
    """Bytes of the distinct storages autograd saves for the backward while ``run`` builds the graph."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(storages.values())


def _own_peak_mib() -> float:
    """The resident high-water mark of this child process in MiB.

    ``VmHWM`` belongs to the address space that ``exec`` gave the child, so it starts afresh;
    ``ru_maxrss`` would carry over the parent's peak on Linux, which ``peak_kib`` only falls back
    to where ``/proc`` is missing.
    """
    return peak_kib() / 1024


def _image_step(rule: str, steps: int, batch: int, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    trainer = _image_trainer(rule, 1e-3, IMAGE_NETWORK)
    x = torch.rand(steps, batch, 1, 8, 8)
    target = torch.randint(0, 10, (batch,))
    x, target = trainer.prepare((x, target))
    trainer.train_batch(x, target)  # warm-up
    saved = _saved_bytes(lambda: trainer.loss.sequence_loss(trainer.network.run(x), target))
    trainer.network.reset()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        trainer.train_batch(x, target)
        times.append(time.perf_counter() - start)
    return {
        "ms_per_step": 1000 * sorted(times)[len(times) // 2],
        "saved_mib": saved / 2**20,
        "peak_rss_mib": _own_peak_mib(),
    }


def tsslbp_profile(*, steps: int = 5, batch: int = 50, repeats: int = 20) -> list[dict[str, float | str]]:
    """Median time of one training step, activation memory saved for the backward and peak RSS of
    the PSPLIF conv net, TSSL-BP against BPTT, each in a fresh Python process."""
    rows = []
    for rule in IMAGE_RULES:
        code = (
            "import json; from snn_parallel.learners.experiments import _image_step; "
            f"print(json.dumps(_image_step({rule!r}, {steps}, {batch}, {repeats})))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        rows.append({"rule": rule, "steps": steps, "batch": batch, **json.loads(out.strip().splitlines()[-1])})
    return rows


# -- memory against T: one training step in a fresh process ------------------------------------------
#: the networks of the memory benchmark: 2 x ``hidden`` LIF on 16 inputs, or SpikingJelly's ResNet-10
#: (``spiking_resnet``, LIFNode) on 3 x 8 x 8 pictures
MEMORY_NETWORKS = ("mlp", "resnet")


def _memory_setup(rule: str, network: str, steps: int, batch: int, hidden: int) -> tuple[nn.Module, torch.Tensor, dict]:
    """The network, a random input ``[T, B, ...]`` and the rule's options for :func:`build_trainer`."""
    if network == "mlp":
        return (
            classifier(16, 10, "lif", hidden),
            (torch.rand(steps, batch, 16) < 0.3).float(),
            {"chunk": 64, "trace": ottt_trace("lif")},
        )
    from spikingjelly.activation_based import neuron, surrogate

    from .resnet import spiking_resnet

    model = spiking_resnet(
        lambda channels: neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=True)
    )
    # HYPR's sub-sequences shorter than every T measured: its eligibilities are carried at every length
    return model, torch.rand(steps, batch, 3, 8, 8), {"chunk": 16}


def _one_step(rule: str, steps: int, batch: int, hidden: int, network: str = "mlp") -> dict[str, float]:
    torch.manual_seed(0)
    model, x, options = _memory_setup(rule, network, steps, batch, hidden)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    target = torch.randint(0, 10, (batch,))
    warm_up = build_trainer(rule, model, optimizer, 4, StepLoss("ce", "all"), **options)
    with warm_up.network.stepping():  # lazy initialisation and thread pools, on 4 steps
        warm_up.train_batch(*warm_up.prepare((x[:4], target)))
    trainer = build_trainer(rule, model, optimizer, steps, StepLoss("ce", "all"), **options)
    x, target = trainer.prepare((x, target))
    with trainer.network.stepping():
        start = time.perf_counter()
        trainer.train_batch(x, target)
        seconds = time.perf_counter() - start
    return {"peak_rss_mib": _own_peak_mib(), "seconds": seconds}


def memory_profile(
    rules: list[str], lengths: list[int], *, batch: int = 32, hidden: int = 256, network: str = "mlp"
) -> list[dict[str, float | str]]:
    """Peak RSS and time of one training step per (rule, T), each in a fresh Python process, on the
    network ``network`` (one of :data:`MEMORY_NETWORKS`)."""
    if network not in MEMORY_NETWORKS:
        raise ValueError(f"network must be one of {MEMORY_NETWORKS}, got {network!r}")
    rows = []
    for rule in rules:
        for steps in lengths:
            code = (
                "import json, sys; from snn_parallel.learners.experiments import _one_step; "
                f"print(json.dumps(_one_step({rule!r}, {steps}, {batch}, {hidden}, {network!r})))"
            )
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            shape = {"hidden": hidden} if network == "mlp" else {"network": "spiking_resnet"}
            rows.append(
                {"rule": rule, "steps": steps, "batch": batch, **shape, **json.loads(out.strip().splitlines()[-1])}
            )
    return rows
