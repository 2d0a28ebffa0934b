"""The shared training loop; each learning rule only says how one batch becomes updates.

:class:`Trainer` owns the epochs, evaluation, metrics history, progress bar, gradient
clipping, weight clamping, checkpoints that resume exactly, and data-parallel training with
``torch.distributed``. A rule subclasses it and implements :meth:`Trainer.train_batch`, calling
:meth:`Trainer.optimizer_step` whenever it wants the optimizer to step.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import random
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import nn

from .._validation import _all_finite, check_bool, check_choice, check_int, check_positive, validation_enabled
from .checkpoint import check_state, numpy_rng_state, read_checkpoint, set_numpy_rng_state, write_checkpoint
from .losses import StepLoss, resolve_loss
from .network import SYNAPSES, Network, UnsupportedModule, discover
from .nonfinite import NonFiniteError, all_finite, describe_nonfinite, nonfinite_error

__all__ = ["Trainer", "TrainerOptions"]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _check_loader(loader: object, name: str, epochs: int) -> None:
    """Refuse what cannot give ``epochs`` passes of batches: no iterable, an empty sized loader,
    or a one-pass iterator (a generator) for more than one pass."""
    if not isinstance(loader, Iterable):
        raise TypeError(f"{name} must be an iterable of (x, target) batches, got {type(loader).__name__}")
    try:
        empty = len(loader) == 0  # type: ignore[arg-type]
    except TypeError:  # no length (a generator, an iterable dataset's loader)
        empty = False
    if empty:
        raise ValueError(f"{name} is empty: it holds no batch")
    if epochs > 1 and isinstance(loader, Iterator):
        raise ValueError(
            f"{name} is a one-pass iterator ({type(loader).__name__}), but {epochs} passes are needed; "
            "pass a list or a DataLoader, which can be read again"
        )


@dataclass(frozen=True)
class TrainerOptions:
    r"""The options every trainer takes, declared once; each rule adds only its own.

    Pass them as keywords to any trainer (``BPTTTrainer(model, optimizer, loss="ce_all",
    clip_grad_norm=1.0)``), or build them once and share them between trainers
    (``options = TrainerOptions(loss="ce_all")``, ``OTTTTrainer(model, optimizer, options=options)``).

    Args:
        loss: a :class:`~snn_parallel.learners.StepLoss` or its name (``"ce"`` = cross-entropy on
            the last step, ``"ce_all"``, ``"mse"``, ``"mse_all"``; TSSL-BP also takes ``"kernel"``
            and ``"count"``). ``None``: the rule's default (``"ce"``; TSSL-BP's ``"kernel"``).
        progress: show a tqdm bar with loss, metric and throughput (only when stderr is a
            terminal, and only on rank 0).
        clip_grad_norm: clip the global gradient norm to this before every optimizer step
            (``None``: off).
        weight_clamp: clamp the weight of every synapse (``Linear``/``Conv``) to ``[-c, c]`` after
            every optimizer step (TSSL-BP's reference training clamps to 4); ``None``: off.
        batch_first: the loaders yield ``[B, T, ...]`` inputs (and ``[B, T]``/``[B, T, K]``
            per-step targets); they are moved to time-major ``[T, B, ...]``.
        nonfinite: what a NaN or infinite gradient does: ``"raise"`` a
            :class:`~snn_parallel.learners.NonFiniteError` naming the step (default), or ``"skip"``
            the optimizer step and count it (``Trainer.skipped_steps``), as AMP's gradient scaler
            does; a batch whose loss is not finite is then left out of the epoch's averages.
            Non-finite weights always raise.
    """

    loss: str | StepLoss | None = None
    progress: bool = True
    clip_grad_norm: float | None = None
    weight_clamp: float | None = None
    batch_first: bool = False
    nonfinite: str = "raise"

    def __post_init__(self) -> None:
        for name in ("clip_grad_norm", "weight_clamp"):
            if getattr(self, name) is not None:
                check_positive(getattr(self, name), name)
        check_bool(self.progress, "progress")
        check_bool(self.batch_first, "batch_first")
        check_choice(self.nonfinite, "nonfinite", ("raise", "skip"))
        if self.loss is not None and not isinstance(self.loss, (str, StepLoss)):
            raise TypeError(f"loss must be a StepLoss or its name, got {type(self.loss).__name__}")

    def replace(self, **changes: Any) -> TrainerOptions:
        """A copy with ``changes``; an unknown name raises a ``TypeError`` that lists the options."""
        known = [f.name for f in fields(self)]
        for name in changes:
            if name not in known:
                raise TypeError(
                    f"unknown trainer option {name!r}; the options every trainer takes are {known} "
                    "(and each rule's own, see its docstring)"
                )
        return dataclasses.replace(self, **changes)


class Trainer:
    r"""Training loop around a spiking network; subclasses implement one learning rule.

    Args:
        model: the spiking network, any ``nn.Module`` (see :func:`~snn_parallel.learners.discover`).
        optimizer: any ``torch.optim`` optimizer over the model's parameters.
        options: a :class:`TrainerOptions` to start from (default: the rule's defaults).
        **changes: single :class:`TrainerOptions` fields (``loss``, ``progress``,
            ``clip_grad_norm``, ``weight_clamp``, ``batch_first``) over ``options``.

    Batches are ``(x, target)`` with ``x`` ``[T, B, ...]``. A NaN or infinite gradient or
    weight stops training with a :class:`~snn_parallel.learners.NonFiniteError` that names the
    optimizer step, the epoch, the batch and the tensor (whatever :func:`snn_parallel.set_validation`
    says); with the option ``nonfinite="skip"`` a step whose gradient is not finite is dropped
    instead and counted in :attr:`skipped_steps`, as AMP's gradient scaler does. Under ``torch.distributed`` the
    parameters are broadcast from rank 0 when the trainer is built and gradients are averaged
    over ranks with one all-reduce per optimizer step (give each rank its own shard of the data,
    e.g. with a ``DistributedSampler``); metrics are summed over ranks.

    A new rule subclasses this, takes its own options as keywords and passes ``**changes`` on,
    sets :attr:`defaults` where its recipe differs, and implements :meth:`train_batch`.
    """

    #: name of the rule in logs and the history
    rule = "trainer"
    #: optimizer steps dropped so far because their gradient was not finite (``nonfinite="skip"``)
    skipped_steps: int = 0
    #: the batch of the epoch being trained (1-based; 0 outside :meth:`fit`), for error messages
    _batch_index: int = 0
    #: the rule's own defaults for the shared options, e.g. ``{"clip_grad_norm": 1.0}``
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        options: TrainerOptions | None = None,
        **changes: Any,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if options is not None and not isinstance(options, TrainerOptions):
            raise TypeError(f"options must be a TrainerOptions, got {type(options).__name__}")
        self.options = (options or TrainerOptions().replace(**self.defaults)).replace(**changes)
        self.model, self.optimizer = model, optimizer
        self.network: Network = discover(model)
        self.loss = self.resolve_loss(self.options.loss)
        self.progress, self.clip_grad_norm = bool(self.options.progress), self.options.clip_grad_norm
        self.weight_clamp, self.batch_first = self.options.weight_clamp, bool(self.options.batch_first)
        self.epoch = 0
        self.global_step = 0
        self.history: list[dict[str, float]] = []
        self._out_features: int | None = None
        self._pending_loader_state: torch.Tensor | None = None
        self._train_loader_generator: torch.Generator | None = None
        self._check_optimizer()
        if _distributed():
            for param in self.model.state_dict().values():
                dist.broadcast(param, src=0)

    def resolve_loss(self, loss: str | StepLoss | None) -> StepLoss:
        """The rule's :class:`~snn_parallel.learners.StepLoss` from the ``loss`` option (``None``: ``"ce"``)."""
        return resolve_loss("ce" if loss is None else loss)

    def _check_optimizer(self) -> None:
        owned = {id(p) for p in self.model.parameters()}
        for group in self.optimizer.param_groups:
            for param in group["params"]:
                if id(param) not in owned:
                    raise ValueError(
                        "optimizer holds a parameter that is not in model; build it from model.parameters()"
                    )

    # -- the rule -------------------------------------------------------------------------
    def train_batch(self, x: torch.Tensor, target: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Turn one checked batch into updates; returns ``(loss, outputs [T, B, K])`` for the metrics."""
        raise NotImplementedError

    def end_epoch(self) -> None:
        """Called after each training epoch (FPTT copies its running average into the weights)."""

    def rule_state(self) -> dict[str, Any]:
        """The rule's own state for checkpoints."""
        return {}

    def load_rule_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`rule_state`."""

    # -- helpers for the rules ------------------------------------------------------------
    @staticmethod
    def record(outputs: torch.Tensor | None, out: torch.Tensor, start: int, steps: int) -> torch.Tensor:
        """Write the detached outputs ``out`` ``[n, B, K]`` of steps ``start .. start + n`` into
        ``outputs`` ``[steps, B, K]``, allocated at the first call (``outputs=None``).

        One buffer per sequence, not a small tensor kept per step or part: those would pin heap
        pages between each step's freed temporaries, so the process's resident memory would grow
        with T although the live memory does not.
        """
        if outputs is None:
            outputs = out.new_empty((steps, *out.shape[1:]))
        outputs[start : start + out.shape[0]] = out.detach()
        return outputs

    def parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def optimizer_step(self) -> None:
        """Average gradients over ranks, clip, step the optimizer, clear the gradients and clamp the weights."""
        params = [p for p in self.parameters() if p.grad is not None]
        if _distributed() and params:
            flat = torch.cat([p.grad.reshape(-1) for p in params])
            dist.all_reduce(flat)
            flat /= dist.get_world_size()
            offset = 0
            for p in params:
                p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
                offset += p.numel()
        if not self._gradients_finite(params):
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            return
        if self.clip_grad_norm is not None and params:
            nn.utils.clip_grad_norm_(params, self.clip_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._constrain()
        self.global_step += 1
        self._check_weights("after")

    # -- non-finite values ----------------------------------------------------------------
    def _nonfinite(self, what: str, *, step_done: bool = False) -> NonFiniteError:
        """The error for ``what`` went non-finite, naming the optimizer step (the one about to be
        taken, or with ``step_done`` the last one taken), the epoch and the batch."""
        batch = f", batch {self._batch_index}" if self._batch_index else ""
        step = self.global_step if step_done else self.global_step + 1
        return nonfinite_error(
            self.rule,
            f"optimizer step {step} (epoch {self.epoch + 1}{batch})",
            what,
            " or clip the gradients (clip_grad_norm); nonfinite='skip' drops the steps whose gradient is not finite",
        )

    def _gradients_finite(self, params: list[nn.Parameter]) -> bool:
        """Check the gradients about to be applied: ``True`` if finite; else raise, or ``False`` to skip the step."""
        if all_finite(p.grad for p in params):
            return True
        self._check_weights("before")  # a non-finite weight poisons every gradient: name it first
        if self._skipping:
            return False
        names = {id(p): n for n, p in self.model.named_parameters()}
        raise self._nonfinite(f"the gradient of {describe_nonfinite((names.get(id(p), '?'), p.grad) for p in params)}")

    def _check_weights(self, when: str) -> None:
        """Raise if a parameter holds a NaN or inf (``when``: ``"before"``/``"after"`` the optimizer step)."""
        bad = describe_nonfinite(self.model.named_parameters())
        if bad is not None:
            raise self._nonfinite(
                f"{when} the update the weights hold non-finite values: {bad}", step_done=when == "after"
            )

    @property
    def _skipping(self) -> bool:
        return self.options.nonfinite == "skip"

    def _constrain(self) -> None:
        """Bring the parameters back into range after they change: the neurons' own constraints
        (e.g. SEAdLIF's) and ``weight_clamp``."""
        for module in self.model.modules():
            constrain = getattr(module, "apply_parameter_constraints", None)
            if callable(constrain):
                constrain()
            if self.weight_clamp is not None and isinstance(module, SYNAPSES):
                with torch.no_grad():
                    module.weight.clamp_(-self.weight_clamp, self.weight_clamp)

    # -- batches --------------------------------------------------------------------------
    def prepare(self, batch: object) -> tuple[torch.Tensor, torch.Tensor]:
        """Check a loader batch, make it time-major and move it to the model's device."""
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise TypeError("each batch must be a pair (x, target)")
        x, target = batch
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        param = self.network.first_parameter()
        if not x.is_floating_point():
            raise TypeError(f"x must be floating point, got {x.dtype}")
        if x.dim() < 3:
            layout = "[B, T, features...]" if self.batch_first else "[T, B, features...]"
            raise ValueError(f"x must be {layout} with at least 3 dims, got shape {list(x.shape)}")
        if self.batch_first:
            x = x.transpose(0, 1)
            if isinstance(target, torch.Tensor) and target.dim() == self.loss.sequence_target_dims + 1:
                target = target.transpose(0, 1)
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"x must have at least one step and one sample, got shape {list(x.shape)} (time-major)")
        if param is not None:
            if x.device != param.device and x.device.type != "cpu":
                raise ValueError(f"x is on {x.device} but the model is on {param.device}")
            x = x.to(param.device)
            if x.dtype != param.dtype:
                raise TypeError(f"x has dtype {x.dtype} but the model's parameters are {param.dtype}")
        if validation_enabled() and not _all_finite(x):
            raise ValueError("x contains NaN or infinite values")
        if isinstance(target, torch.Tensor) and param is not None:
            target = target.to(param.device)
        out_features = self._output_features(x)
        return x, self.loss.check_target(target, x.shape[0], x.shape[1], out_features)

    def _output_features(self, x: torch.Tensor) -> int:
        """Features of the model's output, from one dry step of the first batch (:meth:`Network.probe
        <snn_parallel.learners.Network.probe>`, which also checks the model's modules)."""
        if self._out_features is None:
            try:
                structure = self.network.probe(x[0])
            except UnsupportedModule:
                raise
            except (RuntimeError, ValueError, TypeError, IndexError) as error:
                raise ValueError(
                    f"the batch x of shape {list(x.shape)} (time-major [T, B, ...]) does not fit the model: {error}"
                ) from error
            self._out_features = structure.out_features
        return self._out_features

    # -- the loop -------------------------------------------------------------------------
    def fit(self, train_loader: Iterable, epochs: int, val_loader: Iterable | None = None) -> list[dict[str, float]]:
        """Train for ``epochs`` more epochs; returns the whole metric history (one dict per epoch).

        Raises:
            ValueError: an empty loader, an epoch in which ``train_loader`` yields no batch, or a
                one-pass iterator (e.g. a generator) as a loader for more than one epoch.
            NonFiniteError: the training went non-finite (see :attr:`nonfinite`).
        """
        epochs = check_int(epochs, "epochs", minimum=1)
        _check_loader(train_loader, "train_loader", epochs)
        if val_loader is not None:
            _check_loader(val_loader, "val_loader", epochs)
        self._check_weights("before")
        self._adopt_loader(train_loader)
        metric = self.loss.metric
        for _ in range(epochs):
            self.model.train()
            start, total, loss_sum, score_sum, count = time.perf_counter(), 0, 0.0, 0.0, 0
            skipped = self.skipped_steps
            self._batch_index = 0
            try:
                with self._bar(train_loader) as bar, self.network.stepping():
                    for batch in train_loader:
                        self._batch_index += 1
                        x, target = self.prepare(batch)
                        loss, outputs = self.train_batch(x, target)
                        if not math.isfinite(loss):
                            if not self._skipping:
                                raise self._nonfinite(f"the loss is {loss}", step_done=True)
                            continue  # leave it out of the epoch's averages
                        batch_size = x.shape[1]
                        score, n = self.loss.score(outputs, target)
                        loss_sum, score_sum, count, total = (
                            loss_sum + loss * batch_size,
                            score_sum + score,
                            count + n,
                            total + batch_size,
                        )
                        if bar is not None:
                            bar.update()
                            bar.set_postfix(
                                loss=f"{loss_sum / max(total, 1):.4f}",
                                **{metric: f"{score_sum / max(count, 1):.4f}"},
                                samples_s=f"{total / (time.perf_counter() - start):.0f}",
                            )
                if self._batch_index == 0:
                    raise ValueError(
                        f"train_loader yielded no batch in epoch {self.epoch + 1}; nothing was trained "
                        "(an exhausted iterator? pass a list or a DataLoader, which can be read again)"
                    )
            finally:
                self._batch_index = 0
            self.end_epoch()
            self._constrain()  # FPTT's end of epoch replaces the weights
            self.epoch += 1
            loss_sum, score_sum, count, total = self._reduce(loss_sum, score_sum, count, total)
            seconds = time.perf_counter() - start
            record = {
                "epoch": float(self.epoch),
                "train_loss": loss_sum / total if total else math.nan,
                f"train_{metric}": score_sum / count if count else math.nan,
                "seconds": seconds,
                "samples_per_second": total / seconds,
            }
            if self._skipping:
                record["skipped_steps"] = float(self.skipped_steps - skipped)
            if val_loader is not None:
                record.update({f"val_{k}": v for k, v in self.evaluate(val_loader).items() if k != "samples"})
            self.history.append(record)
        return self.history

    def evaluate(self, loader: Iterable) -> dict[str, float]:
        """Loss and metric (``accuracy`` or ``mse``) over ``loader``, in parallel over time, no gradients.

        Raises:
            ValueError: ``loader`` is empty or yields no batch.
        """
        _check_loader(loader, "loader", 1)
        self.model.eval()
        loss_sum = score_sum = 0.0
        count = total = 0
        with torch.no_grad(), self.network.stepping():
            for batch in loader:
                x, target = self.prepare(batch)
                self.network.reset()
                outputs = self.network.run(x)
                self.network.reset()
                loss = self.loss.sequence_loss(outputs, target)
                score, n = self.loss.score(outputs, target)
                loss_sum, score_sum, count, total = (
                    loss_sum + float(loss) * x.shape[1],
                    score_sum + score,
                    count + n,
                    total + x.shape[1],
                )
        if total == 0:
            raise ValueError("loader yielded no batch to evaluate (an exhausted iterator?)")
        loss_sum, score_sum, count, total = self._reduce(loss_sum, score_sum, count, total)
        return {"loss": loss_sum / total, self.loss.metric: score_sum / max(count, 1), "samples": float(total)}

    @staticmethod
    def _reduce(*values: float) -> tuple[float, ...]:
        if not _distributed():
            return values
        sums = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(sums)
        return tuple(sums.tolist())

    def _bar(self, loader: Iterable):
        """A tqdm bar over one epoch, or a null context."""
        if not self.progress or not sys.stderr.isatty() or (_distributed() and dist.get_rank() != 0):
            return contextlib.nullcontext(None)
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return contextlib.nullcontext(None)
        length = len(loader) if hasattr(loader, "__len__") else None
        return tqdm(
            total=length, desc=f"{self.rule} epoch {self.epoch + 1}", unit="batch", dynamic_ncols=True, leave=False
        )

    def _adopt_loader(self, loader: Iterable) -> None:
        """Remember the loader's shuffling generator (checkpointed) and apply a loaded state."""
        generator = getattr(loader, "generator", None)
        self._train_loader_generator = generator if isinstance(generator, torch.Generator) else None
        if self._pending_loader_state is not None and self._train_loader_generator is not None:
            self._train_loader_generator.set_state(self._pending_loader_state)
        self._pending_loader_state = None

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: model, optimizer, rule state, RNGs, counters, history."""
        loader = self._train_loader_generator
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rule": self.rule,
            "rule_state": self.rule_state(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "skipped_steps": self.skipped_steps,
            "history": list(self.history),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": numpy_rng_state(),
                "python": random.getstate(),
                "loader": loader.get_state() if loader is not None else None,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`, all or nothing; the loader's shuffling state is applied at the next :meth:`fit`.

        Raises:
            ValueError: the state is of another rule or does not fit this model, optimizer or rule
                (the message says what); the trainer is then left exactly as it was.
        """
        check_state(state, self.rule, self.model)
        backup = self._snapshot()
        try:
            self._restore(state)
        except Exception as error:  # any failure part-way: put back what was there
            self._restore(backup)
            raise ValueError(
                f"the state does not fit this trainer, nothing was changed ({type(error).__name__}: {error})"
            ) from error
        self.epoch, self.global_step, self.history = state["epoch"], state["global_step"], list(state["history"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self._pending_loader_state = state["rng"]["loader"]

    def _snapshot(self) -> dict[str, Any]:
        """A copy of what :meth:`_restore` changes, to undo a failed restore."""
        return copy.deepcopy(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "rule_state": self.rule_state(),
                "rng": {"torch": torch.get_rng_state(), "numpy": numpy_rng_state(), "python": random.getstate()},
            }
        )

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.load_rule_state(state["rule_state"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        set_numpy_rng_state(rng["numpy"])
        random.setstate(rng["python"])

    def save(self, path: str | Path) -> None:
        """Write :meth:`state_dict` to ``path`` atomically, with a checksum (rank 0 only under
        ``torch.distributed``); see :mod:`snn_parallel.learners.checkpoint` for the format."""
        if _distributed() and dist.get_rank() != 0:
            return
        write_checkpoint(path, self.state_dict())

    def load(self, path: str | Path) -> None:
        """Resume from a checkpoint written by :meth:`save`: all or nothing.

        Raises:
            ValueError: naming ``path`` and the reason: an empty, truncated, foreign or corrupted
                file (its checksum does not match), or a state of another rule or model. The
                trainer is then left exactly as it was.
        """
        param = self.network.first_parameter()
        state = read_checkpoint(path, map_location=param.device if param is not None else "cpu")
        try:
            self.load_state_dict(state)
        except ValueError as error:
            raise ValueError(f"checkpoint {path}: {error}") from error

    def summary(self) -> str:
        """One line on the last epoch."""
        if not self.history:
            return f"{self.rule}: not trained yet"
        last = self.history[-1]
        parts = [f"{self.rule} epoch {int(last['epoch'])}"]
        parts += [
            f"{k} {v:.4f}"
            for k, v in last.items()
            if k not in ("epoch", "seconds", "samples_per_second") and not math.isnan(v)
        ]
        parts.append(f"{last['samples_per_second']:.0f} samples/s")
        return " | ".join(parts)
