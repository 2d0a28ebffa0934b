r"""TSSL-BP (Zhang & Li, NeurIPS 2020): the spike-sequence loss, the trainer and the conv + fc networks.

The networks are ``nn.Sequential`` stacks of bias-free synapses and :class:`~snn_parallel.neurons.PSPLIF`
neurons, whose output is a post-synaptic potential (PSP) :math:`a_t`. TSSL-BP trains them with
the neurons' hand-written backward (:func:`snn_parallel.ops.tssl.tsslbp`) and a loss on the
output PSPs; the same network with ``gradient="surrogate"`` trains with BPTT.

**Loss** (:class:`SpikeSequenceLoss`), with :math:`a_{t,k}` the output PSP of class :math:`k`:

- ``"kernel"``: :math:`E = \tfrac12 \sum_{t,k} (a_{t,k} - \mathrm{PSP}(d_k)_t)^2`, where the desired
  spike train :math:`d_k` of the target class is ``0,1,1,1,1`` (``T < 10``) or ``0,1,0,1,...``
  (``T >= 10``), tiled to ``T`` steps, and all zeros for the other classes. With
  ``kernel_target="psp_psp"`` the target is :math:`\mathrm{PSP}(\mathrm{PSP}(d_k))` instead, as the
  reference code computes it from its revision of 29 October 2020 on (its training script filters
  the desired train and its loss filters it again); at ``T = 5`` that is
  ``0, .111, .259, .407, .539`` against ``0, .333, .556, .704, .802``;
- ``"count"``: :math:`E = \tfrac12\, T \sum_k \delta_k^2` with
  :math:`\delta_k = (\sum_t a_{t,k} - c_k)/T`, :math:`c_k` the desired count (target) or the
  undesired one (others), and :math:`\delta_k` set to 0 where the target class is above its
  count or another class below its own.

The prediction is :math:`\arg\max_k \sum_t a_{t,k}`. The reference code sums :math:`E` over the
batch; :class:`TSSLBPTrainer` does too (``batch_sum=True``) and reports the per-sample mean.

**Training** as in the reference: AdamW, the gradient norm clipped to 1 and every synapse weight
clamped to :math:`[-4, 4]` after each optimizer step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._validation import check_float, check_positive
from ..neurons import PSPLIF, LeakyIntegrator, PSPFilter
from ..ops.tssl import psp_filter
from .losses import StepLoss
from .network import DropoutDriver, MemoryDriver, SequenceDropout
from .rules import BPTTTrainer

__all__ = ["SpikeSequenceLoss", "TSSLBPTrainer", "SumPool2d", "tssl_network", "desired_spikes"]

_VARIANTS = ("kernel", "count")
#: the kernel loss's target: the desired spike train filtered once or, as the reference's later revision, twice
_KERNEL_TARGETS = ("psp", "psp_psp")


def desired_spikes(num_steps: int) -> torch.Tensor:
    """The target class's desired spike train ``[T]``: ``0,1,1,1,1`` tiled (``T < 10``) or ``0,1`` tiled
    (``T >= 10``)."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    pattern = torch.tensor([0.0, 1.0] if num_steps >= 10 else [0.0, 1.0, 1.0, 1.0, 1.0])
    return pattern.repeat(-(-num_steps // pattern.numel()))[:num_steps]


@dataclass(frozen=True)
class SpikeSequenceLoss(StepLoss):
    """TSSL-BP's loss on the output PSPs ``[T, B, K]`` (see the module docstring) for class targets ``[B]``.

    Args:
        variant: ``"kernel"`` (desired PSP trains) or ``"count"`` (desired PSP sums).
        tau_s: :math:`\\tau_s` of the PSP filter applied to the desired spike train.
        desired_count, undesired_count: ``"count"``'s :math:`c_k` for the target and the other
            classes; the defaults 4 and 1 are the reference's MNIST and Fashion-MNIST settings at
            T = 5 (its N-MNIST network, T = 30, uses 15 and 3).
        kernel_target: ``"kernel"``'s target, :math:`\\mathrm{PSP}(d)` (``"psp"``, default: the
            code submitted with the paper filtered the desired train once) or
            :math:`\\mathrm{PSP}(\\mathrm{PSP}(d))` (``"psp_psp"``: the reference code from its revision
            of 29 October 2020 on filters it twice).

    ``kind`` and ``steps`` stay ``"ce"`` and ``"all"``: class targets, and the prediction is the
    class of the largest mean (= sum) output over all steps.
    """

    kind: str = "ce"
    steps: str | tuple[int, int | None] = "all"
    variant: str = "kernel"
    tau_s: float = 3.0
    desired_count: float = 4.0
    undesired_count: float = 1.0
    kernel_target: str = "psp"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind != "ce" or self.steps != "all" or self.mse_weight:
            raise ValueError(
                "SpikeSequenceLoss takes class targets over all steps: "
                "leave kind, steps and mse_weight at their defaults"
            )
        if self.variant not in _VARIANTS:
            raise ValueError(f"variant must be one of {_VARIANTS}, got {self.variant!r}")
        if self.kernel_target not in _KERNEL_TARGETS:
            raise ValueError(f"kernel_target must be one of {_KERNEL_TARGETS}, got {self.kernel_target!r}")
        if isinstance(self.tau_s, bool) or not isinstance(self.tau_s, (int, float)) or not self.tau_s >= 1:
            raise ValueError(f"tau_s must be a number >= 1, got {self.tau_s!r}")
        for value, name in ((self.desired_count, "desired_count"), (self.undesired_count, "undesired_count")):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")

    def check_target(self, target: object, num_steps: int, batch: int, out_features: int) -> torch.Tensor:
        target = super().check_target(target, num_steps, batch, out_features)
        if target.dim() != 1:
            raise ValueError(
                f"target of a SpikeSequenceLoss must be [B] = [{batch}] (one class per sequence), "
                f"got {list(target.shape)}"
            )
        return target

    def term(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise ValueError(
            "SpikeSequenceLoss is a loss on whole output sequences; it has no per-step term (use BPTT or TSSL-BP)"
        )

    def desired_psp(self, num_steps: int, like: torch.Tensor) -> torch.Tensor:
        """The kernel loss's target for the target class, ``[T]``: :math:`\\mathrm{PSP}(d)` of its desired
        spike train, or :math:`\\mathrm{PSP}(\\mathrm{PSP}(d))` with ``kernel_target="psp_psp"``."""
        target = desired_spikes(num_steps).to(dtype=like.dtype, device=like.device)[:, None]
        for _ in range(_KERNEL_TARGETS.index(self.kernel_target) + 1):
            target = psp_filter(target, self.tau_s)[0]
        return target[:, 0]

    def sequence_loss(
        self, outputs: torch.Tensor, target: torch.Tensor, offset: int = 0, num_steps: int | None = None
    ) -> torch.Tensor:
        """Mean over the batch of :math:`E` for ``outputs`` ``[T, B, K]``, the whole sequence."""
        steps = outputs.shape[0]
        if offset != 0 or (num_steps is not None and num_steps != steps):
            raise ValueError("SpikeSequenceLoss needs the whole output sequence at once (offset=0, num_steps=T)")
        if target.dim() != 1:
            raise ValueError(f"target of a SpikeSequenceLoss must be [B] class indices, got {list(target.shape)}")
        is_target = nn.functional.one_hot(target, outputs.shape[-1]).to(torch.bool)
        batch = outputs.shape[1]
        if self.variant == "kernel":
            desired = self.desired_psp(steps, outputs)[:, None, None] * is_target.to(outputs.dtype)
            return 0.5 * (outputs - desired).square().sum() / batch
        wanted = torch.where(is_target, self.desired_count, self.undesired_count).to(outputs.dtype)
        delta = (outputs.sum(0) - wanted) / steps
        keep = torch.where(is_target, delta < 0, delta > 0)
        return 0.5 * steps * (delta * keep).square().sum() / batch


class TSSLBPTrainer(BPTTTrainer):
    """TSSL-BP: the whole sequence runs through :class:`~snn_parallel.neurons.PSPLIF` neurons in
    ``gradient="tsslbp"`` mode, the loss's gradient flows through their hand-written backward,
    and the optimizer steps once per batch.

    It is a :class:`~snn_parallel.learners.BPTTTrainer` with the reference's training recipe as
    defaults; the gradient is the neurons' own. ``BPTTTrainer`` with the same options on the
    same network in ``gradient="surrogate"`` mode trains it by BPTT with everything else equal.

    Args:
        model: any ``nn.Module`` whose stateful parts are all ``PSPLIF(gradient="tsslbp")``
            neurons, ``PSPFilter``, a :class:`~snn_parallel.neurons.LeakyIntegrator` readout (with a
            :class:`~snn_parallel.learners.StepLoss` on its output) or dropout (e.g. from
            :func:`tssl_network`, or a residual net of convolutions, pooling and sums between PSPLIF layers).
        optimizer: the reference uses ``torch.optim.AdamW`` (lr 5e-4 on MNIST, 2e-4 on CIFAR-10).
        batch_sum: back-propagate the loss summed over the batch, as the reference does (the
            reported loss is the per-sample mean either way).
        **options: the shared :class:`~snn_parallel.learners.TrainerOptions`, with the
            reference's recipe as defaults: ``loss="kernel"`` (or ``"count"``: a
            :class:`SpikeSequenceLoss` with the model's :math:`\\tau_s`, or any
            :class:`~snn_parallel.learners.StepLoss`), ``clip_grad_norm=1`` and
            ``weight_clamp=4`` (every ``Linear``/``Conv`` weight clamped to ``[-4, 4]`` after each
            step; ``None``: off).
    """

    rule = "tsslbp"
    defaults = {"loss": "kernel", "clip_grad_norm": 1.0, "weight_clamp": 4.0}

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, *, batch_sum: bool = True, **options: Any
    ) -> None:
        super().__init__(model, optimizer, batch_sum=batch_sum, **options)
        for part in self.network.parts:
            core = getattr(part, "core", None)
            if isinstance(core, (PSPFilter, LeakyIntegrator)) or (
                isinstance(core, PSPLIF) and core.gradient == "tsslbp"
            ):
                continue
            if isinstance(part, DropoutDriver) or (
                isinstance(part, MemoryDriver) and "Dropout" in type(part.module).__name__
            ):
                continue
            what = f"PSPLIF(gradient={core.gradient!r})" if isinstance(core, PSPLIF) else type(part.module).__name__
            raise ValueError(
                f"{part.path or 'model'} is a {what}; TSSL-BP trains feed-forward networks of "
                "PSPLIF(gradient='tsslbp') neurons (convolutions, pooling and residual sums between them)"
            )
        readouts = [
            part.path for part in self.network.parts if isinstance(getattr(part, "core", None), LeakyIntegrator)
        ]
        if readouts and isinstance(self.loss, SpikeSequenceLoss):
            raise ValueError(
                f"loss: {readouts[0]} is a LeakyIntegrator readout, whose output is not spikes; train it with a "
                "StepLoss (e.g. StepLoss('ce', 'all')), not the spike-train loss"
            )

    def resolve_loss(self, loss: str | StepLoss | None) -> StepLoss:
        """``"kernel"`` or ``"count"``: a :class:`SpikeSequenceLoss` with the model's :math:`\\tau_s`; a
        :class:`~snn_parallel.learners.StepLoss` as it is."""
        if loss in _VARIANTS:
            # the output layer's: the desired spike trains are filtered as its PSPs are
            tau_s = ([core.tau_s for core in map(_core, self.model.modules()) if isinstance(core, PSPLIF)] or [3.0])[-1]
            return SpikeSequenceLoss(variant=loss, tau_s=tau_s)
        if isinstance(loss, StepLoss):
            return loss
        raise ValueError(f"loss must be a SpikeSequenceLoss, a StepLoss or one of {_VARIANTS}, got {loss!r}")


def _core(module: nn.Module) -> nn.Module:
    """A neuron's core (adapters hold it as ``.core``), or the module itself."""
    return getattr(module, "core", module)


class SumPool2d(nn.AvgPool2d):
    r"""TSSL-BP's pooling: a fixed sum over each window times ``weight`` (1.1 in the reference), no spikes."""

    def __init__(self, kernel_size: int, *, weight: float = 1.1) -> None:
        super().__init__(kernel_size, divisor_override=1)
        self.weight = check_positive(weight, "weight")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.weight

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight={self.weight}"


_TOKEN = re.compile(r"^(?:(?P<channels>\d+)C(?P<kernel>\d+)|P(?P<pool>\d+)|(?P<units>\d+))$")


def tssl_network(
    spec: str,
    input_shape: tuple[int, int, int],
    classes: int,
    *,
    tau_m: float = 5.0,
    tau_s: float = 3.0,
    v_threshold: float = 1.0,
    gradient: str = "tsslbp",
    conv_scale: float = 1.0,
    linear_scale: float = 1.0,
    pool_weight: float = 1.1,
    padding: int | str | tuple[int | str, ...] = "valid",
    dropout: float = 0.0,
    dt_du_at_spikes: bool = True,
) -> nn.Sequential:
    """A conv + fc :class:`~snn_parallel.neurons.PSPLIF` network in the paper's notation.

    ``spec`` is ``-``-separated: ``15C5`` a 5x5 convolution to 15 channels, ``P2`` a 2x2
    :class:`SumPool2d`, ``300`` a fully connected layer of 300 neurons; convs and pools come
    before the fc layers. An output layer of ``classes`` neurons is appended, so
    ``"15C5-P2-40C5-P2-300"`` is the paper's MNIST network. The input (``[T, B, *input_shape]``,
    e.g. an image repeated over ``T`` steps) first goes through a :class:`~snn_parallel.neurons.PSPFilter`.

    ``padding`` is the convolutions' zero padding: ``"valid"`` (none, the reference's MNIST
    network), ``"same"`` (``k // 2`` for odd ``k``, so a conv keeps the feature map's size: the
    reference's Fashion-MNIST ``32C5-P2-64C5-P2-1024`` and CIFAR-10 networks) or an int ``p >= 0``,
    for every convolution, or a tuple of them, one per convolution of ``spec`` in order (the
    reference's N-MNIST ``12C5-P2-64C5-P2`` pads ``(1, 0)``).

    ``dropout`` ``p > 0`` puts a :class:`~snn_parallel.learners.SequenceDropout` (whole channels,
    the same mask at every step) after every hidden layer, behind the pooling that follows it,
    as in the reference's CIFAR-10 networks (``p = 0.2``); the output layer has none.

    Synapses have no bias; convs keep PyTorch's initialisation times ``conv_scale``, linear
    layers are Kaiming-normal times ``linear_scale``, as in the reference code. ``gradient``
    selects the neurons' backward (``"tsslbp"`` or ``"surrogate"`` for BPTT), ``dt_du_at_spikes``
    the revision of TSSL-BP's (see :class:`~snn_parallel.neurons.PSPLIF`).
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str such as '15C5-P2-40C5-P2-300', got {type(spec).__name__}")
    if (
        not isinstance(input_shape, tuple)
        or len(input_shape) != 3
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in input_shape)
    ):
        raise ValueError(f"input_shape must be (channels, height, width) of positive ints, got {input_shape!r}")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise ValueError(f"classes must be an int >= 2, got {classes!r}")
    tokens = spec.split("-") if spec else []
    convs = sum(1 for token in tokens if (match := _TOKEN.match(token)) and match["kernel"] is not None)
    paddings = list(padding) if isinstance(padding, tuple) else [padding] * convs
    if len(paddings) != convs or not all(
        p in ("valid", "same") or (isinstance(p, int) and not isinstance(p, bool) and p >= 0) for p in paddings
    ):
        raise ValueError(
            f"padding must be 'valid', 'same' or an int >= 0, or a tuple of them with one per conv "
            f"({convs} in {spec!r}), got {padding!r}"
        )
    dropout = check_float(dropout, "dropout", minimum=0.0, maximum=1.0, max_open=True)
    conv_scale, linear_scale = check_positive(conv_scale, "conv_scale"), check_positive(linear_scale, "linear_scale")
    pool_weight = check_positive(pool_weight, "pool_weight")
    neuron = {
        "tau_m": tau_m,
        "tau_s": tau_s,
        "v_threshold": v_threshold,
        "gradient": gradient,
        "dt_du_at_spikes": dt_du_at_spikes,
    }
    channels, height, width = input_shape
    modules: list[nn.Module] = [PSPFilter(channels, tau_s=tau_s)]
    features: int | None = None  # set once the fc part starts
    pending = False  # a hidden layer waits for its dropout, which goes behind its pooling
    for token in tokens + [str(classes)]:
        match = _TOKEN.match(token)
        if match is None:
            raise ValueError(f"spec token {token!r} of {spec!r} is not '<n>C<k>' (conv), 'P<k>' (pool) or '<n>' (fc)")
        if match["pool"] is None:
            if pending:
                modules.append(SequenceDropout(dropout))
            pending = dropout > 0
        if match["units"] is not None:
            units = int(match["units"])
            if features is None:
                features = channels * height * width
                modules.append(nn.Flatten())
            linear = nn.Linear(features, units, bias=False)
            with torch.no_grad():
                nn.init.kaiming_normal_(linear.weight)
                linear.weight.mul_(linear_scale)
            modules += [linear, PSPLIF(units, **neuron)]
            features = units
            continue
        if features is not None:
            raise ValueError(f"spec {spec!r}: {token!r} comes after a fully connected layer; convs and pools go first")
        size = int(match["kernel"] or match["pool"])
        conv = match["kernel"] is not None
        mode = paddings.pop(0) if conv else "valid"
        if mode == "same" and size % 2 == 0:
            raise ValueError(f"spec {spec!r}: padding='same' needs odd kernels, {token!r} has {size}")
        pad = 0 if mode == "valid" else size // 2 if mode == "same" else mode
        if size < 1 or size > min(height, width) + 2 * pad:
            raise ValueError(f"spec {spec!r}: {token!r} does not fit the {height}x{width} feature map there")
        if not conv:
            modules.append(SumPool2d(size, weight=pool_weight))
            height, width = height // size, width // size
        else:
            synapse = nn.Conv2d(channels, int(match["channels"]), size, padding=pad, bias=False)
            with torch.no_grad():
                synapse.weight.mul_(conv_scale)
            channels, height, width = int(match["channels"]), height + 2 * pad - size + 1, width + 2 * pad - size + 1
            modules += [synapse, PSPLIF(channels, **neuron)]
    return nn.Sequential(*modules)
