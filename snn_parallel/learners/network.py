r"""Network discovery: run a user's model, any ``nn.Module``, under a learning rule's control.

The trainers take the network as it was written and find its **stateful parts by type**, over
``model.modules()``:

- the neurons of :mod:`snn_parallel.neurons` and their snnTorch and SpikingJelly adapters (run
  through their core neuron, whose state the trainer holds);
- SpikingJelly's memory modules: its nodes (``LIFNode``, ``ParametricLIFNode``, ``OTTTLIFNode``,
  ...), ``layer.Dropout`` (one mask per sequence), ``LinearRecurrentContainer``, ... (run
  through their own memories);
- :class:`RecurrentBlock` (a neuron with recurrent synapses, :math:`I_t = W [x_t; z_{t-1}] + b`)
  and :class:`SequenceDropout`.

Every other module is stateless, and the model's own ``forward`` runs: residual sums,
concatenation, reshapes, custom modules, SpikingJelly's containers and ``layer.*`` wrappers in
either step mode. While a trainer runs the model, each stateful part's ``forward`` is replaced
by its driver, which carries, detaches and resets its state as the learning rule says; the
SpikingJelly modules are put in single-step mode and their multi-step containers
(``SeqToANNContainer``, ``MultiStepContainer``) apply their children step by step.

:meth:`Network.run` runs a whole sequence ``[T, B, ...]`` in parallel when every stateful part
has a multi-step path (time is folded into the batch for the stateless modules, and each
stateful part unfolds it for its own multi-step forward), and step by step otherwise;
:meth:`Network.step` runs one step ``[B, ...]``. Synapses (``Linear``, ``Conv1d/2d/3d`` and
SpikingJelly's wrappers of them) can be intercepted by the rules with hooks (OTTT's traces).

Refused, naming the module's path and the reason: modules that keep state the trainers cannot
carry or detach per step (``nn.LSTM`` and the other recurrent ANN layers, SpikingJelly's
``rnn.SpikingLSTM`` and its other spiking RNNs, snnTorch's own
neurons with their class-wide hidden state, SpikingJelly modules that take only whole
sequences) when the trainer is built, and (on the first batch) any other module whose buffers
or tensor attributes change during ``forward``.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._validation import check_choice, check_int
from ..neurons.base import Neuron, step_loop

__all__ = ["RecurrentBlock", "SequenceDropout", "Network", "Structure", "UnsupportedModule", "discover", "SYNAPSES"]

#: layers whose weights are synapses (OTTT routes their weight gradient through traces;
#: SpikingJelly's ``layer.Linear``/``layer.Conv*`` subclass them)
SYNAPSES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: buffers that normalisation layers update in training; not state across time steps
_RUNNING_STATISTICS = frozenset({"running_mean", "running_var", "num_batches_tracked"})
#: SpikingJelly's multi-step containers of per-step modules: applied as a plain ``nn.Sequential``
_SJ_CONTAINERS = frozenset(
    {"SeqToANNContainer", "MultiStepContainer", "TLastSeqToANNContainer", "TLastMultiStepContainer"}
)
#: SpikingJelly's online-training nodes: single-step only (built with ``step_mode='s'`` alone; their
#: multi-step forward fails), and they detach their membrane at every step while training
ONLINE_NODES = frozenset({"OTTTLIFNode", "SLTTLIFNode"})
#: the bases of SpikingJelly's spiking RNNs (``rnn.SpikingLSTM``, ...) and their cells, which pass their
#: hidden state in and out of each call
_SJ_RNNS = frozenset({"SpikingRNNBase", "SpikingRNNCellBase"})


class UnsupportedModule(TypeError):
    """A module the trainers cannot run; the message names it and says why."""


class RecurrentBlock(nn.Module):
    r"""A neuron with recurrent synapses: :math:`I_t = W_{in} x_t + W_{rec} z_{t-1} + b`.

    Stored as one ``nn.Linear`` over the concatenation :math:`[x_t; z_{t-1}]` (like
    SpikingJelly's ``LinearRecurrentContainer``), so the trainers see one synapse and one
    neuron. Used directly, ``forward(x_seq)`` ``[T, B, in_features]`` runs the steps in order
    from a resting state and returns ``[T, B, features]``.

    Args:
        in_features: inputs per step.
        neuron: a :class:`~snn_parallel.neurons.Neuron` (or an adapter with ``.core``).
        bias: learn :math:`b`.
        output: what the block passes on: ``"spikes"`` :math:`z_t`, or ``"membrane"``, the
            neuron's state field ``u`` after the step (e.g. for a linear readout of the
            membrane in regression, as the LTC-SNN code reads out its adding-problem network).
            The recurrent input is :math:`z_{t-1}` either way.
    """

    def __init__(self, in_features: int, neuron: nn.Module, *, bias: bool = True, output: str = "spikes") -> None:
        super().__init__()
        core = _core_of(neuron)
        if core is None:
            raise TypeError(
                f"neuron must be an snn_parallel neuron (or one of its adapters), got {type(neuron).__name__}"
            )
        in_features = check_int(in_features, "in_features", minimum=1)
        check_choice(output, "output", ("spikes", "membrane"))
        if core.features is None:
            raise ValueError(
                f"neuron ({type(core).__name__}) has no feature count yet, but RecurrentBlock sizes its recurrent "
                "synapse from it: build the neuron with its features (e.g. PRF(64))"
            )
        if output == "membrane" and "u" not in core.state_type._fields:
            raise ValueError(f"output='membrane' reads the state field 'u', which {type(core).__name__} does not have")
        self.in_features, self.features, self.output = in_features, core.features, output
        self.synapse = nn.Linear(in_features + core.features, core.features, bias=bias)
        self.neuron = neuron

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return discover(self).run(x_seq)


class SequenceDropout(nn.Module):
    r"""Dropout of whole channels, the same at every step of a sequence.

    In training, each (sample, channel) pair is kept with probability :math:`1 - p` and then
    scaled by :math:`1/(1 - p)`, at all positions and all ``T`` steps alike: TSSL-BP's
    ``Dropout3d`` over ``[B, C, H, W, T]``. (``nn.Dropout`` applied step by step draws a new mask
    at every step instead.) In eval mode, or with ``p = 0``, it passes its input through.

    ``forward(x_seq)`` takes ``[T, B, C, *spatial]`` and draws one mask per call. The trainers
    also run it one step at a time: then the mask drawn at the first step is kept until the
    network is reset, i.e. for the whole sequence.
    """

    def __init__(self, p: float = 0.2) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"p must be a probability in [0, 1), got {p!r}")
        self.p = float(p)

    def draw(self, x_t: torch.Tensor) -> torch.Tensor | None:
        """A mask for steps like ``x_t`` ``[B, C, *spatial]`` (``[B, C, 1, ...]``), or ``None`` when it drops
        nothing."""
        if x_t.dim() < 2:
            raise ValueError(f"input of SequenceDropout must be [B, C, *spatial] per step, got {list(x_t.shape)}")
        if not x_t.is_floating_point():
            raise TypeError(f"input of SequenceDropout must be a floating-point tensor, got {x_t.dtype}")
        if not self.training or self.p == 0:
            return None
        shape = (*x_t.shape[:2], *(1,) * (x_t.dim() - 2))
        keep = torch.empty(shape, dtype=x_t.dtype, device=x_t.device).bernoulli_(1 - self.p)
        return keep / (1 - self.p)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.dim() < 3 or x_seq.shape[0] == 0:
            raise ValueError(
                f"x_seq of SequenceDropout must be [T, B, C, *spatial] with T >= 1, got {list(x_seq.shape)}"
            )
        mask = self.draw(x_seq[0])
        return x_seq if mask is None else x_seq * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


# -- drivers: one per stateful part, called in place of its forward ------------------------------------
class Driver:
    """Holds (or reaches) one stateful part's state and runs it one step or a folded sequence."""

    #: has a multi-step path, so a folded whole sequence can run through it
    foldable = True
    #: a spiking neuron (the rules' learning signals and traces are about these)
    is_neuron = False

    def __init__(self, network: Network, module: nn.Module, path: str) -> None:
        self.network, self.module, self.path = network, module, path

    @property
    def label(self) -> str:
        return f"{self.path or 'model'} ({type(self.module).__name__})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        x = self.single_input(args, kwargs)
        override = self.network.neuron_override
        if override is not None and self.is_neuron:
            return override(self, x)
        steps = self.network.folded_steps
        if steps is None:
            return self.step(x)
        return self.run(x.unflatten(0, (steps, -1))).flatten(0, 1)

    def single_input(self, args: tuple, kwargs: dict) -> torch.Tensor:
        if len(args) != 1 or kwargs or not isinstance(args[0], torch.Tensor):
            raise TypeError(
                f"{self.label} was called with {len(args)} positional and {sorted(kwargs)} keyword arguments; "
                "a trainer drives its state itself, so call it with the input tensor alone"
            )
        return args[0]

    def step(self, x_t: torch.Tensor) -> Any:
        raise NotImplementedError

    def run(self, x_seq: torch.Tensor) -> Any:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def detach(self) -> None:
        raise NotImplementedError

    def get_state(self) -> Any:
        raise NotImplementedError

    def set_state(self, state: Any) -> None:
        raise NotImplementedError

    def linear_stages(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...] | None:
        """The neuron's membrane as linear stages (:meth:`Neuron.linear_stages
        <snn_parallel.neurons.Neuron.linear_stages>`); ``None`` where it has none."""
        return None


class CoreDriver(Driver):
    """An snn_parallel neuron, or an adapter holding one as ``.core``; the state is held here."""

    is_neuron = True

    def __init__(self, network: Network, module: nn.Module, path: str, core: Neuron, spikes_only: bool) -> None:
        super().__init__(network, module, path)
        self.core, self.state = core, None
        # return what the module's own forward returns, so that the model's forward reads it as usual:
        # snnTorch's (spk, mem) or spk, SpikingJelly's spikes, our neurons' (spikes, state)
        self.snntorch = hasattr(module, "init_hidden") and hasattr(module, "_returns")
        self.spikes_only = spikes_only or (module is not core and not self.snntorch)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        x = self.single_input(args, kwargs)
        steps, override = self.network.folded_steps, self.network.neuron_override
        if override is not None:
            spikes, membrane = override(self, x), None
        elif steps is None and not self.returns_membrane:
            spikes, membrane = self.step(x), None
        else:
            x_seq = x.unsqueeze(0) if steps is None else x.unflatten(0, (steps, -1))
            spikes, membrane = self.run(x_seq)
            spikes = spikes.flatten(0, 1)
            if membrane is not None:  # mem, or what a skin returns beside the spikes (Synaptic's (syn, mem))
                membrane = tuple(m.flatten(0, 1) for m in (membrane if isinstance(membrane, tuple) else (membrane,)))
        if self.snntorch:
            if membrane is None and self.returns_membrane:  # HYPR's structure probe (HYPR refuses such modules)
                membrane = (self.state[0] if self.state is not None else torch.zeros_like(spikes),)
            return self.module._returns(spikes, *(membrane or (None,)))
        return spikes if self.spikes_only else (spikes, self.state)

    @property
    def returns_membrane(self) -> bool:
        """The module's forward passes on a membrane beside the spikes (an snnTorch neuron without
        ``init_hidden``, or with ``output=True``)."""
        return self.snntorch and not (self.module.init_hidden and not self.module.output)

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        spike, self.state = self.core.step(x_t, self.state)
        return spike

    def run(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, ...] | None]:
        """Spikes of all steps and, where the module's forward returns it, the ``mem`` it returns at each
        step (a skin returning more, the tuple: ``Synaptic``'s ``(syn, mem)``; else ``None``, so the core may skip
        the membrane); the class's forward, not the instance's (this driver)."""
        if self.returns_membrane:
            # one step (a trainer's single step, an FPTT part of one step) runs the core's step, as the other
            # skins' single steps do: the core's parallel path costs up to twice as much on one step
            with _stepwise(self.core) if x_seq.shape[0] == 1 else contextlib.nullcontext():
                spikes, membrane, self.state = self.module._driven_sequence(x_seq, self.state)
            return spikes, membrane
        spikes, self.state = type(self.core).forward(self.core, x_seq, self.state)
        return spikes, None

    def reset(self) -> None:
        self.state = None

    def detach(self) -> None:
        if self.state is not None:
            self.state = type(self.state)(*(s.detach() for s in self.state))

    def get_state(self) -> Any:
        return self.state

    def set_state(self, state: Any) -> None:
        self.state = state

    def linear_stages(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...] | None:
        return self.core.linear_stages()


@contextlib.contextmanager
def _stepwise(core: Neuron) -> Iterator[None]:
    """``core``'s sequence path (:meth:`Neuron.update_sequence`) runs its step (:meth:`Neuron.update`) in a loop,
    which gives the same numbers (the neurons' contract) without the parallel path's setup."""
    core.__dict__["update_sequence"] = functools.partial(step_loop, core.update)
    try:
        yield
    finally:
        del core.__dict__["update_sequence"]


class MemoryDriver(Driver):
    """A SpikingJelly memory module (a node, ``layer.Dropout``, a recurrent container, ...), run
    through its own memories; nodes pass on their spikes alone (an ``OTTTLIFNode`` its spike,
    not ``[spike, trace]``: the trainers keep their own traces)."""

    def __init__(self, network: Network, module: nn.Module, path: str, forward: Callable, contains_parts: bool) -> None:
        super().__init__(network, module, path)
        self.forward = forward  # the module's own forward
        self.is_neuron = hasattr(module, "v_threshold")
        supported = getattr(module, "supported_step_mode", None)
        self.foldable = (supported is None or "m" in supported()) and not contains_parts and not is_online_node(module)

    def _call(self, mode: str, x: torch.Tensor) -> Any:
        previous = self.module.step_mode
        self.module.step_mode = mode
        try:
            out = self.forward(x)
        finally:
            self.module.step_mode = previous
        return out[0] if self.is_neuron and isinstance(out, (tuple, list)) else out

    def step(self, x_t: torch.Tensor) -> Any:
        return self._call("s", x_t)

    def run(self, x_seq: torch.Tensor) -> Any:
        return self._call("m", x_seq)

    def reset(self) -> None:
        self.module.reset()

    def detach(self) -> None:
        memories = self.module._memories
        for name, value in memories.items():
            if isinstance(value, torch.Tensor):
                memories[name] = value.detach()

    def get_state(self) -> Any:
        return dict(self.module._memories)

    def set_state(self, state: Any) -> None:
        self.module._memories.update(state)

    def linear_stages(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...] | None:
        """The one stage ``(1 - 1/tau, 1/tau)`` of SpikingJelly's LIF nodes (gain 1 without ``decay_input``; the
        membrane is reset, so only the synapses' traces are exact); ``None`` for other nodes."""
        kinds = {cls.__name__ for cls in type(self.module).__mro__}
        if "ParametricLIFNode" in kinds:
            rate = torch.sigmoid(self.module.w)
        elif "LIFNode" in kinds and isinstance(getattr(self.module, "tau", None), (int, float)):
            rate = torch.tensor(1 / self.module.tau, dtype=torch.float64)
        else:
            return None
        return ((1 - rate, rate if getattr(self.module, "decay_input", True) else torch.ones_like(rate)),)


class RecurrentDriver(Driver):
    r"""A :class:`RecurrentBlock`: its synapse over :math:`[x_t; z_{t-1}]` and its neuron (driven
    itself), one step at a time; holds :math:`z_{t-1}`."""

    foldable = False

    def __init__(self, network: Network, module: RecurrentBlock, path: str) -> None:
        super().__init__(network, module, path)
        self.last: torch.Tensor | None = None

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        block = self.module
        last = self.last if self.last is not None else x_t.new_zeros(*x_t.shape[:-1], block.features)
        self.last = block.neuron(block.synapse(torch.cat([x_t, last], dim=-1)))
        if block.output == "spikes":
            return self.last
        return self.network.driver(block.neuron).state.u

    def reset(self) -> None:
        self.last = None

    def detach(self) -> None:
        if self.last is not None:
            self.last = self.last.detach()

    def get_state(self) -> Any:
        return self.last

    def set_state(self, state: Any) -> None:
        self.last = state


class DropoutDriver(Driver):
    """A :class:`SequenceDropout`: the mask drawn at the first step after a reset lasts the sequence."""

    def __init__(self, network: Network, module: SequenceDropout, path: str) -> None:
        super().__init__(network, module, path)
        self.mask: torch.Tensor | None = None
        self.drawn = False

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        if not self.drawn:
            self.mask, self.drawn = self.module.draw(x_t), True
        return x_t if self.mask is None else x_t * self.mask

    def run(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.shape[0] == 0:
            return x_seq
        self.step(x_seq[0])
        return x_seq if self.mask is None else x_seq * self.mask

    def reset(self) -> None:
        self.mask, self.drawn = None, False

    def detach(self) -> None:
        """The mask carries no gradient."""

    def get_state(self) -> Any:
        return self.mask, self.drawn

    def set_state(self, state: Any) -> None:
        self.mask, self.drawn = state


# -- the network -----------------------------------------------------------------------------------------
@dataclass
class Structure:
    """What one dry step shows about the model's graph (:meth:`Network.probe`)."""

    out_features: int
    #: synapse path -> how often it is called per step
    calls: dict[str, int] = field(default_factory=dict)
    #: synapses whose input depends on the raw input through stateless modules only (no neuron upstream)
    input_fed: set[str] = field(default_factory=set)
    #: synapses whose output reaches the model's output through neither a stateful part nor another synapse
    readouts: set[str] = field(default_factory=set)
    #: synapse path -> path of the stateful part whose input is that synapse's output itself
    feeds: dict[str, str] = field(default_factory=dict)


#: how a rule may replace a synapse's output: ``(path, module, input, output) -> output``
SynapseHook = Callable[[str, nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class Network:
    """A model with its stateful parts found, run over a sequence or one step at a time.

    State is carried between calls until :meth:`reset`; :meth:`detach` cuts the graph at the
    current step (the online rules' part and step boundaries).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.parts: list[Driver] = []
        self.synapses: list[tuple[str, nn.Module]] = []
        self._containers: list[nn.Module] = []
        self._by_module: dict[int, Driver] = {}
        self._depth = 0
        self._saved: list[tuple[nn.Module, str, Any]] = []
        #: ``None`` for single steps, else ``T`` of the folded sequence being run
        self.folded_steps: int | None = None
        #: replaces every neuron's step, or its folded sequence (HYPR's P-stage): ``(driver, input) -> spikes``
        self.neuron_override: Callable[[Driver, torch.Tensor], torch.Tensor] | None = None
        self.structure: Structure | None = None
        self._owned: set[str] = set()  # paths of modules a driver runs itself (an adapter's core)

    # -- parts ----------------------------------------------------------------------------------
    @property
    def neurons(self) -> list[Driver]:
        return [part for part in self.parts if part.is_neuron]

    def driver(self, module: nn.Module) -> Driver:
        return self._by_module[id(module)]

    def first_parameter(self) -> torch.Tensor | None:
        return next(self.model.parameters(), None)

    # -- running ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def stepping(self) -> Iterator[None]:
        """Drive the stateful parts (their ``forward`` replaced by their drivers), SpikingJelly modules
        in single-step mode and its multi-step containers as plain sequences; restored on exit."""
        if self._depth == 0:
            for module in self.model.modules():
                mode, supported = getattr(module, "step_mode", None), getattr(module, "supported_step_mode", None)
                if isinstance(mode, str) and mode != "s" and callable(supported) and "s" in supported():
                    self._saved.append((module, "step_mode", mode))
                    module.step_mode = "s"
            for part in self.parts:
                self._patch(part.module, part)
            for container in self._containers:
                self._patch(container, lambda x, container=container: nn.Sequential.forward(container, x))
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                for module, name, value in reversed(self._saved):
                    if name == "step_mode":
                        module.step_mode = value
                    elif value is None:
                        del module.__dict__[name]
                    else:
                        module.__dict__[name] = value
                self._saved.clear()

    def _patch(self, module: nn.Module, forward: Callable) -> None:
        self._saved.append((module, "forward", module.__dict__.get("forward")))
        module.__dict__["forward"] = forward

    @property
    def foldable(self) -> bool:
        """Every stateful part has a multi-step path: a whole sequence can run in parallel."""
        return all(part.foldable for part in self.parts)

    def run(self, x_seq: torch.Tensor) -> torch.Tensor:
        """All steps of ``x_seq`` ``[T, B, ...]``: in parallel where every stateful part allows it."""
        if not self.foldable:
            with self.stepping():
                return torch.stack([self.step(x_t) for x_t in x_seq.unbind(0)])
        steps, batch = x_seq.shape[:2]
        with self.stepping():
            self.folded_steps = steps
            try:
                out = _first(self.model(x_seq.flatten(0, 1)))
            finally:
                self.folded_steps = None
        if out.dim() == 0 or out.shape[0] != steps * batch:
            raise ValueError(
                f"the model's output {list(out.shape)} has lost the batch dim: it must be [B, ...] per step"
            )
        return out.unflatten(0, (steps, batch))

    def step(self, x_t: torch.Tensor, synapse: SynapseHook | None = None) -> torch.Tensor:
        """One step of ``x_t`` ``[B, ...]``; ``synapse`` (if given) may replace every synapse's output."""
        with self.stepping(), self.intercept(synapse):
            return _first(self.model(x_t))

    @contextlib.contextmanager
    def intercept(self, synapse: SynapseHook | None) -> Iterator[None]:
        """Forward hooks on every synapse that pass ``(path, module, input, output)`` to ``synapse``."""
        if synapse is None:
            yield
            return
        handles = [
            module.register_forward_hook(lambda m, args, out, path=path: synapse(path, m, args[0], out))
            for path, module in self.synapses
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def reset(self) -> None:
        for part in self.parts:
            part.reset()

    def detach(self) -> None:
        for part in self.parts:
            part.detach()

    def get_state(self) -> list[Any]:
        """Every stateful part's state (to replay steps from, as HYPR's P-stage does)."""
        return [part.get_state() for part in self.parts]

    def set_state(self, states: list[Any]) -> None:
        for part, state in zip(self.parts, states, strict=True):
            part.set_state(state)

    # -- the first batch ----------------------------------------------------------------------------
    def probe(self, x_t: torch.Tensor) -> Structure:
        """One dry step of ``x_t`` ``[B, ...]``, which changes nothing: checks that the batch fits
        the model (naming the module where it does not) and that no module outside the stateful
        parts keeps state of its own, and records the graph's :class:`Structure`."""
        modules = dict(self.model.named_modules())
        driven = {
            path for path, module in modules.items() if id(module) in self._by_module or _inside(path, self._owned)
        }
        # the buffers of the modules outside the stateful parts (whose state is reset after the probe, and
        # whose lazy tensors stay materialised, as nn.LazyLinear's do); lazy ones have nothing to keep yet
        buffers = {
            (path, name): b.clone()
            for path, m in modules.items()
            if path not in driven
            for name, b in m.named_buffers(recurse=False)
            if not isinstance(b, nn.parameter.UninitializedBuffer)
        }
        attributes = {path: _tensor_attributes(m) for path, m in modules.items() if path not in driven}
        flags = [(p, p.requires_grad) for p in self.model.parameters() if not nn.parameter.is_lazy(p)]
        devices = [x_t.device] if x_t.device.type == "cuda" else []
        try:
            for p, _ in flags:
                p.requires_grad_(False)
            # the random draws of the dry steps (dropout masks) leave the training's unchanged
            with _locate_errors(self.model, x_t), torch.random.fork_rng(devices=devices):
                structure = self._probe_structure(x_t)
            for path, module in modules.items():
                if path in driven:
                    continue
                for name, value in module.named_buffers(recurse=False):
                    if (
                        (path, name) in buffers
                        and name not in _RUNNING_STATISTICS
                        and not torch.equal(value, buffers[(path, name)])
                    ):
                        raise UnsupportedModule(
                            f"{path or 'model'} ({type(module).__name__}) changes its buffer {name!r} during forward: "
                            "state the trainers cannot carry, detach or reset; make it a SpikingJelly memory module "
                            "or an snn_parallel neuron"
                        )
                changed = _tensor_attributes(module).items() ^ attributes[path].items()
                if changed:
                    name = sorted(changed)[0][0]
                    raise UnsupportedModule(
                        f"{path or 'model'} ({type(module).__name__}) keeps a tensor in self.{name} that changes "
                        "during forward: state the trainers cannot carry, detach or reset"
                    )
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)
            with torch.no_grad():
                for (path, name), value in buffers.items():
                    modules[path].get_buffer(name).copy_(value)
            self.reset()
        self.structure = structure
        return structure

    def _probe_structure(self, x_t: torch.Tensor) -> Structure:
        overriding = self.neuron_override

        def detached(driver: Driver, x: torch.Tensor) -> torch.Tensor:
            return _first(driver.step(x)).detach()

        # 1. which synapses see the raw input and no neuron's output, through stateless modules (the
        #    parameters are frozen: only the raw input, or only the neurons' outputs, carry a gradient)
        seen: dict[str, list[bool]] = {}

        def count(path: str, module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
            seen.setdefault(path, []).append(x.requires_grad)
            return out

        def marked(driver: Driver, x: torch.Tensor) -> torch.Tensor:
            return detached(driver, x).requires_grad_()

        try:
            with torch.enable_grad():
                from_input, from_neurons = {}, {}
                for source, override, found in ((True, detached, from_input), (False, marked, from_neurons)):
                    seen.clear()
                    self.neuron_override = override
                    self.reset()
                    out = self.step(x_t.detach().requires_grad_(source), synapse=count)
                    found.update(seen)
            calls = {path: len(flags) for path, flags in from_input.items()}
            input_fed = {path for path, flags in from_input.items() if any(flags) and not any(from_neurons[path])}
            # 2. which synapse outputs reach the output, and which feed a stateful part directly
            leaves: dict[str, torch.Tensor] = {}

            def leaf(path: str, module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
                leaves[path] = out.detach().requires_grad_()
                return leaves[path]

            inputs: dict[int, tuple[str, torch.Tensor]] = {}  # the tensors kept alive, so that ids stay unique

            order: list[str] = []  # the neurons, in the order the step calls them

            def record(driver: Driver, x: torch.Tensor) -> torch.Tensor:
                inputs[id(x)] = driver.path, x
                order.append(driver.path)
                return detached(driver, x)

            self.neuron_override = record
            self.reset()
            with torch.enable_grad(), _recording_inputs(self.parts, inputs), _same_inputs(self.model) as same:
                out = self.step(x_t.detach(), synapse=leaf)
            _warn_inner_steps(type(self.model).__name__, order, same)
            found = (
                torch.autograd.grad(out.sum(), list(leaves.values()), allow_unused=True)
                if out.requires_grad
                else [None] * len(leaves)
            )
            readouts = {path for path, grad in zip(leaves, found, strict=True) if grad is not None}
            feeds = {path: inputs[id(tensor)][0] for path, tensor in leaves.items() if id(tensor) in inputs}
        finally:
            self.neuron_override = overriding
        if out.dim() != 2:
            raise ValueError(f"the model must output [B, K] per step, got {list(out.shape)}")
        return Structure(out.shape[-1], calls, input_fed, readouts, feeds)


@contextlib.contextmanager
def _recording_inputs(parts: list[Driver], inputs: dict[int, tuple[str, torch.Tensor]]) -> Iterator[None]:
    """Record the input of every non-neuron stateful part too (neurons record through the override)."""
    originals = []
    for part in parts:
        if part.is_neuron:
            continue
        original = part.step

        def step(x: torch.Tensor, part=part, original=original) -> Any:
            inputs[id(x)] = part.path, x
            return original(x)

        originals.append((part, original))
        part.step = step
    try:
        yield
    finally:
        for part, _ in originals:
            del part.step


@contextlib.contextmanager
def _same_inputs(model: nn.Module) -> Iterator[dict[str, int]]:
    """The modules called more than once with the very same input tensor, with their number of calls (the
    dict is filled on exit)."""
    seen: dict[str, list[torch.Tensor]] = {}
    handles = []
    for path, module in model.named_modules():

        def enter(module: nn.Module, args: Any, path: str = path) -> None:
            if args and isinstance(args[0], torch.Tensor):
                seen.setdefault(path, []).append(args[0])

        handles.append(module.register_forward_pre_hook(enter))
    same: dict[str, int] = {}
    try:
        yield same
    finally:
        for handle in handles:
            handle.remove()
    same.update({path: len(xs) for path, xs in seen.items() if len(xs) > 1 and len({id(x) for x in xs}) == 1})


def _warn_inner_steps(name: str, order: list[str], same: dict[str, int]) -> None:
    r"""Warn when one call of the model runs time steps of its own: its neurons are called in the same order
    :math:`k \ge 2` times over (every one of them :math:`k` times) and a module gets the very same input at
    each round, a static input run over the model's own time steps (SpikingJelly's ``SNASNet`` loops over its
    ``args.timestep``). A neuron shared by two layers, or a block applied twice to its own output, does not
    match both."""
    calls = len(order)
    for rounds in range(2, calls + 1):
        period = calls // rounds
        static = [path for path, count in same.items() if count == rounds]
        if calls % rounds == 0 and order == order[:period] * rounds and static:
            warnings.warn(
                f"{name}.forward runs {rounds} time steps of its own at every step ({static[0] or 'model'} gets the "
                f"same input {rounds} times, and every neuron steps {rounds} times in the same order): under the "
                f"trainers each step of the input runs all {rounds} of them. If the model loops over its own "
                "timesteps, build it with one and let the trainers' input carry the time axis",
                stacklevel=2,
            )
            return


def _first(output: Any) -> torch.Tensor:
    """The spikes of a module that returns a tuple (our neurons' ``(spikes, state)``, ``[spike, trace]``)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def _tensor_attributes(module: nn.Module) -> dict[str, int]:
    """Plain tensor attributes (not parameters, buffers or submodules), by identity."""
    return {name: id(value) for name, value in vars(module).items() if isinstance(value, torch.Tensor)}


def _inside(path: str, owners: set[str]) -> bool:
    return any(path == owner or path.startswith(owner + ".") if owner else True for owner in owners)


@contextlib.contextmanager
def _locate_errors(model: nn.Module, x_t: torch.Tensor) -> Iterator[None]:
    """Name the innermost module whose ``forward`` raised; if the model's forward had given the step
    ``x_t`` a leading time axis of its own and the failure is inside a module that got that axis
    (``[T', B, ...]``), say so instead (the cause), naming the module that first received it.

    A time axis that a module added and took away again (a per-step model feeding a sequence-first
    attention ``x_t.unsqueeze(0)``, or stacking two views through one layer) is not the cause of a
    failure after it: then the failing module's own error is raised."""
    stack: list[tuple[str, list[int] | None]] = []  # the modules being called, with their input's shape
    sequenced: list[tuple[str, list[int]]] = []  # the first module handed [T', *x_t.shape]
    handles = []
    for path, module in model.named_modules():

        def enter(module: nn.Module, args: Any, path: str = path) -> None:
            x = args[0] if args and isinstance(args[0], torch.Tensor) else None
            stack.append((path, None if x is None else list(x.shape)))
            if not sequenced and x is not None and x.dim() == x_t.dim() + 1 and x.shape[1:] == x_t.shape:
                sequenced.append((path, list(x.shape)))

        def leave(module: nn.Module, args: Any, out: Any) -> None:
            stack.pop()

        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    try:
        try:
            yield
        except (RuntimeError, ValueError, TypeError, IndexError) as error:
            if isinstance(error, UnsupportedModule) or not stack:
                raise
            failing = stack[-1][0]
            where = f"{failing or 'model'} ({type(model.get_submodule(failing)).__name__})"
            if sequenced:
                path, shape = sequenced[0]
                axis = shape[:1] + list(x_t.shape[:1])
                if any(got is not None and len(got) >= 3 and got[:2] == axis for _, got in stack):
                    raise UnsupportedModule(
                        f"{type(model).__name__}.forward takes whole sequences: it gave the step {list(x_t.shape)} a "
                        f"time axis of its own ({path} ({type(model.get_submodule(path)).__name__}) received {shape}), "
                        "e.g. by repeating an image over its own T or averaging over dim 0. The trainers call the "
                        "model once per step with [B, ...] and need [B, K] back: pass them the per-step part of the "
                        f"network, or a module whose forward maps one step to its output ({where} failed with: "
                        f"{error})"
                    ) from error
            raise ValueError(f"at {where}: {error}") from error
    finally:
        for handle in handles:
            handle.remove()


# -- discovery ------------------------------------------------------------------------------------------
def _core_of(module: nn.Module) -> Neuron | None:
    if isinstance(module, Neuron):
        return module
    core = getattr(module, "core", None)
    return core if isinstance(core, Neuron) else None


def is_online_node(module: nn.Module) -> bool:
    """One of SpikingJelly's :data:`ONLINE_NODES` (or a subclass)."""
    return _derives_from_spikingjelly(module, ONLINE_NODES)


def _derives_from_spikingjelly(module: nn.Module, names: frozenset[str]) -> bool:
    """``module``'s class, or one of its bases, is the SpikingJelly class of one of ``names``."""
    return any(cls.__name__ in names and cls.__module__.startswith("spikingjelly") for cls in type(module).__mro__)


def _is_spikingjelly(module: nn.Module) -> bool:
    return type(module).__module__.startswith("spikingjelly")


def _is_memory_module(module: nn.Module) -> bool:
    """A SpikingJelly memory module (any version): state in ``_memories``, ``reset()`` to forget it."""
    return isinstance(getattr(module, "_memories", None), dict) and callable(getattr(module, "reset", None))


def _is_snntorch_neuron(module: nn.Module) -> bool:
    return any(
        cls.__name__ == "SpikingNeuron" and cls.__module__.startswith("snntorch") for cls in type(module).__mro__
    )


def _multi_step_only(module: nn.Module) -> bool:
    supported = getattr(module, "supported_step_mode", None)
    return callable(supported) and tuple(supported()) == ("m",)


def discover(model: nn.Module) -> Network:
    """Find the stateful parts of ``model`` (see the module's docstring) and build its :class:`Network`.

    Raises:
        UnsupportedModule: a module keeps state the trainers cannot manage, or the model has
            no spiking neuron; the message names the module's path and why.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if getattr(model, "module", None) is not None and type(model).__name__ == "DistributedDataParallel":
        raise UnsupportedModule(
            "pass the bare model, not a DistributedDataParallel wrapper: the trainers all-reduce "
            "gradients themselves once per optimizer step"
        )
    network = Network(model)
    modules = dict(model.named_modules())
    for path, module in modules.items():
        if _inside(path, network._owned):
            continue
        label = f"{path or 'model'} ({type(module).__name__})"
        parent = modules.get(path.rpartition(".")[0]) if path else None
        core = _core_of(module)
        part: Driver | None = None
        if core is not None:
            # inside a Sequential (or one of our blocks) the next module takes the spikes; elsewhere the
            # model's forward reads the neuron's own return value
            spikes_only = (
                parent is None or isinstance(parent, (nn.Sequential, RecurrentBlock)) or _is_memory_module(parent)
            )
            part = CoreDriver(network, module, path, core, spikes_only)
            if module is not core:
                network._owned.add(f"{path}.core" if path else "core")
        elif isinstance(module, RecurrentBlock):
            part = RecurrentDriver(network, module, path)
        elif isinstance(module, SequenceDropout):
            part = DropoutDriver(network, module, path)
        elif _is_memory_module(module):
            contains = any(_core_of(m) is not None or _is_memory_module(m) for m in module.modules() if m is not module)
            part = MemoryDriver(network, module, path, module.forward, contains)
        elif isinstance(module, (nn.RNNBase, nn.RNNCellBase)) or _derives_from_spikingjelly(module, _SJ_RNNS):
            kind = "recurrent ANN" if isinstance(module, (nn.RNNBase, nn.RNNCellBase)) else "SpikingJelly spiking RNN"
            raise UnsupportedModule(
                f"{label} is a {kind} layer that keeps its hidden state inside each call; the trainers "
                "cannot carry or detach it step by step (use a RecurrentBlock or SpikingJelly's "
                "LinearRecurrentContainer)"
            )
        elif _is_snntorch_neuron(module):
            raise UnsupportedModule(
                f"{label} is an snnTorch neuron, whose hidden state lives in a class-wide registry the trainers cannot "
                "carry or detach per network; use the same neuron from snn_parallel.adapters.snntorch or "
                "snn_parallel.neurons"
            )
        elif _is_spikingjelly(module) and type(module).__name__ in _SJ_CONTAINERS:
            network._containers.append(module)
        elif _multi_step_only(module):
            raise UnsupportedModule(
                f"{label} takes only whole sequences [T, B, ...] (multi-step only), which the trainers cannot run "
                "step by step"
            )
        elif isinstance(module, SYNAPSES):
            network.synapses.append((path, module))
        if part is not None:
            network.parts.append(part)
            network._by_module[id(module)] = part
    if not network.neurons:
        raise UnsupportedModule("model has no spiking neuron; the trainers train spiking networks")
    return network
