r"""Network discovery: turn a user's model into layers the trainers can run step by step.

The trainers run the network themselves, so that each learning rule decides where state is
detached, which steps run in parallel and how weight gradients are formed. A model is
accepted if it is an ``nn.Sequential`` (nested ``Sequential`` and SpikingJelly's
``SeqToANNContainer`` are flattened) of

- **synapses and other stateless layers**: ``Linear``, ``Conv1d/2d/3d``, ``Flatten``,
  ``Unflatten``, ``Identity``, ``Dropout``, pooling, normalisation and activation layers, and
  SpikingJelly's ``layer.*`` versions of them, and :class:`SequenceDropout` (one mask per sequence);
- **neurons**: the neurons of :mod:`snn_parallel.neurons`, their snnTorch and SpikingJelly
  adapters (run through their core neuron), and SpikingJelly's own nodes (e.g. ``LIFNode``,
  run through their memories);
- **recurrent blocks**: :class:`RecurrentBlock` and SpikingJelly's ``LinearRecurrentContainer``
  around one neuron, :math:`I_t = W [x_t; z_{t-1}] + b`.

Anything else (an LSTM, snnTorch's own ``Leaky`` whose hidden state lives in a class-wide
registry, an unknown module with state) is refused with the module's path and the reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from ..neurons.base import ParallelNeuron

__all__ = ["RecurrentBlock", "SequenceDropout", "Network", "NeuronLayer", "RecurrentLayer", "StatelessLayer", "discover"]

_STATELESS = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.Dropout,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.LayerNorm,
    nn.ReLU,
    nn.LeakyReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.SiLU,
)
#: layers whose weights are synapses (OTTT routes their weight gradient through traces)
SYNAPSES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class RecurrentBlock(nn.Module):
    r"""A neuron with recurrent synapses: :math:`I_t = W_{in} x_t + W_{rec} z_{t-1} + b`.

    Stored as one ``nn.Linear`` over the concatenation :math:`[x_t; z_{t-1}]` (like
    SpikingJelly's ``LinearRecurrentContainer``), so the trainers see one synapse and one
    neuron. Used directly, ``forward(x_seq)`` ``[T, B, in_features]`` runs the steps in order
    from a resting state and returns the spikes ``[T, B, features]``.

    Args:
        in_features: inputs per step.
        neuron: a :class:`~snn_parallel.neurons.ParallelNeuron` (or an adapter with ``.core``).
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
            raise TypeError(f"neuron must be an snn_parallel neuron (or one of its adapters), got {type(neuron).__name__}")
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"in_features must be a positive int, got {in_features!r}")
        if output not in ("spikes", "membrane"):
            raise ValueError(f"output must be 'spikes' or 'membrane', got {output!r}")
        if output == "membrane" and "u" not in core.state_type._fields:
            raise ValueError(f"output='membrane' reads the state field 'u', which {type(core).__name__} does not have")
        self.in_features, self.features, self.output = in_features, core.features, output
        self.synapse = nn.Linear(in_features + core.features, core.features, bias=bias)
        self.neuron = neuron

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        layer = RecurrentLayer(self.synapse, CoreNeuron(_core_of(self.neuron)), self.features, output=self.output)
        return layer.run(x_seq)


# -- neuron drivers: one interface over the kinds of neuron --------------------------------------
class CoreNeuron:
    """Drives an snn_parallel neuron with an explicit state held here."""

    def __init__(self, core: ParallelNeuron) -> None:
        self.core, self.state = core, None

    def reset(self) -> None:
        self.state = None

    def detach(self) -> None:
        if self.state is not None:
            self.state = type(self.state)(*(s.detach() for s in self.state))

    def run(self, x_seq: torch.Tensor) -> torch.Tensor:
        spikes, self.state = self.core(x_seq, self.state)
        return spikes

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        spike, self.state = self.core.step(x_t, self.state)
        return spike

    def linear_response(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """See :meth:`ParallelNeuron.linear_response <snn_parallel.neurons.ParallelNeuron.linear_response>`."""
        return self.core.linear_response()


class MemoryNeuron:
    """Drives a SpikingJelly node through its own memories and step modes."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def reset(self) -> None:
        self.module.reset()

    def detach(self) -> None:
        memories = self.module._memories
        for name, value in memories.items():
            if isinstance(value, torch.Tensor):
                memories[name] = value.detach()

    def run(self, x_seq: torch.Tensor) -> torch.Tensor:
        supported = getattr(self.module, "supported_step_mode", None)
        if supported is None or "m" in supported():
            self.module.step_mode = "m"
            return _first(self.module(x_seq))
        return torch.stack([self.step(x_t) for x_t in x_seq.unbind(0)])

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        self.module.step_mode = "s"
        return _first(self.module(x_t))

    def linear_response(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(1 - 1/tau, 1/tau)`` of SpikingJelly's LIF nodes (gain 1 without ``decay_input``; the
        membrane is reset, so only the synapses' traces are exact); ``None`` for other nodes."""
        kinds = {cls.__name__ for cls in type(self.module).__mro__}
        if "ParametricLIFNode" in kinds:
            rate = torch.sigmoid(self.module.w)
        elif "LIFNode" in kinds and isinstance(getattr(self.module, "tau", None), (int, float)):
            rate = torch.tensor(1 / self.module.tau, dtype=torch.float64)
        else:
            return None
        return 1 - rate, rate if getattr(self.module, "decay_input", True) else torch.ones_like(rate)


def _first(output: Any) -> torch.Tensor:
    """The spikes of a node that may return ``[spike, trace]`` (SpikingJelly's OTTT nodes)."""
    return output[0] if isinstance(output, (tuple, list)) else output


# -- layers ---------------------------------------------------------------------------------------
@dataclass
class StatelessLayer:
    """A per-step layer with no state: applied to every step independently."""

    module: nn.Module
    path: str

    @property
    def is_synapse(self) -> bool:
        return isinstance(self.module, SYNAPSES)

    def run(self, x_seq: torch.Tensor) -> torch.Tensor:
        steps, batch = x_seq.shape[:2]
        return self.module(x_seq.flatten(0, 1)).unflatten(0, (steps, batch))

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        return self.module(x_t)

    def reset(self) -> None:
        """Nothing to forget: the layer has no state."""


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
        """A mask for steps like ``x_t`` ``[B, C, *spatial]`` (``[B, C, 1, ...]``), or ``None`` when it drops nothing."""
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
            raise ValueError(f"x_seq of SequenceDropout must be [T, B, C, *spatial] with T >= 1, got {list(x_seq.shape)}")
        mask = self.draw(x_seq[0])
        return x_seq if mask is None else x_seq * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SequenceDropoutLayer(StatelessLayer):
    """A :class:`SequenceDropout`: one mask per sequence, whether run whole or step by step."""

    def __init__(self, module: SequenceDropout, path: str) -> None:
        super().__init__(module, path)
        self.reset()

    def run(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.module(x_seq)

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        if not self.drawn:  # the first step after a reset draws the sequence's mask
            self.mask, self.drawn = self.module.draw(x_t), True
        return x_t if self.mask is None else x_t * self.mask

    def reset(self) -> None:
        self.mask: torch.Tensor | None = None
        self.drawn = False


@dataclass
class NeuronLayer:
    """A neuron layer; ``driver`` holds (or reaches) its state."""

    driver: CoreNeuron | MemoryNeuron
    path: str

    def run(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.driver.run(x_seq)

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        return self.driver.step(x_t)


class RecurrentLayer:
    r"""A synapse over :math:`[x_t; z_{t-1}]` feeding a neuron; runs step by step and passes on
    the spikes or (``output="membrane"``, our neurons only) the state field ``u``."""

    def __init__(
        self, synapse: nn.Linear, driver: CoreNeuron | MemoryNeuron, features: int, path: str = "", *, output: str = "spikes"
    ) -> None:
        self.synapse, self.driver, self.features, self.path, self.output = synapse, driver, features, path, output
        self.last: torch.Tensor | None = None  # z_{t-1}

    def reset(self) -> None:
        self.driver.reset()
        self.last = None

    def detach(self) -> None:
        self.driver.detach()
        if self.last is not None:
            self.last = self.last.detach()

    def presynaptic(self, x_t: torch.Tensor) -> torch.Tensor:
        """:math:`[x_t; z_{t-1}]`, with :math:`z_{-1} = 0`."""
        last = self.last if self.last is not None else x_t.new_zeros(*x_t.shape[:-1], self.features)
        return torch.cat([x_t, last], dim=-1)

    def step(self, x_t: torch.Tensor, synapse: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        pre = self.presynaptic(x_t)
        current = synapse(self.synapse, pre) if synapse is not None else self.synapse(pre)
        self.last = self.driver.step(current)
        return self.last if self.output == "spikes" else self.driver.state.u

    def run(self, x_seq: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.step(x_t) for x_t in x_seq.unbind(0)])


Layer = StatelessLayer | NeuronLayer | RecurrentLayer
#: how a rule may replace a synapse's call: ``(layer index, module, input) -> output``
SynapseCall = Callable[[int, nn.Module, torch.Tensor], torch.Tensor]


class Network:
    """The discovered layers of a model, run over a sequence or one step at a time.

    State is carried between calls until :meth:`reset`; :meth:`detach` cuts the graph
    at the current step (the online rules' part/step boundaries).
    """

    def __init__(self, model: nn.Module, layers: list[Layer]) -> None:
        self.model, self.layers = model, layers

    @contextlib.contextmanager
    def stepping(self) -> Iterator[None]:
        """Put SpikingJelly layers in single-step mode (the trainers handle time) and restore them."""
        modes = [(m, m.step_mode) for m in self.model.modules() if isinstance(getattr(m, "step_mode", None), str)]
        try:
            for module, _ in modes:
                module.step_mode = "s"
            yield
        finally:
            for module, mode in modes:
                module.step_mode = mode

    def neurons(self) -> Iterator[CoreNeuron | MemoryNeuron | RecurrentLayer]:
        for layer in self.layers:
            if isinstance(layer, NeuronLayer):
                yield layer.driver
            elif isinstance(layer, RecurrentLayer):
                yield layer

    def reset(self) -> None:
        for neuron in self.neurons():
            neuron.reset()
        for layer in self.layers:
            if isinstance(layer, StatelessLayer):
                layer.reset()

    def detach(self) -> None:
        for neuron in self.neurons():
            neuron.detach()

    def run(self, x_seq: torch.Tensor) -> torch.Tensor:
        """All steps of ``x_seq`` ``[T, B, ...]``: parallel where a layer allows it."""
        h = x_seq
        for layer in self.layers:
            h = layer.run(h)
        return h

    def step(self, x_t: torch.Tensor, synapse: SynapseCall | None = None) -> torch.Tensor:
        """One step; ``synapse`` (if given) replaces every synapse call (see :data:`SynapseCall`)."""
        h = x_t
        for index, layer in enumerate(self.layers):
            if synapse is not None and isinstance(layer, StatelessLayer) and layer.is_synapse:
                h = synapse(index, layer.module, h)
            elif synapse is not None and isinstance(layer, RecurrentLayer):
                h = layer.step(h, lambda module, x, index=index: synapse(index, module, x))
            else:
                h = layer.step(h)
        return h

    def first_parameter(self) -> torch.Tensor | None:
        return next(self.model.parameters(), None)


# -- discovery ------------------------------------------------------------------------------------
class UnsupportedModule(TypeError):
    """A module the trainers cannot run; the message names it and says why."""


def _core_of(module: nn.Module) -> ParallelNeuron | None:
    if isinstance(module, ParallelNeuron):
        return module
    core = getattr(module, "core", None)
    return core if isinstance(core, ParallelNeuron) else None


def _is_spikingjelly(module: nn.Module) -> bool:
    return type(module).__module__.startswith("spikingjelly")


def _is_memory_neuron(module: nn.Module) -> bool:
    """A SpikingJelly node: a memory module with a threshold (``LIFNode``, ``OTTTLIFNode``, ...)."""
    return _is_spikingjelly(module) and hasattr(module, "_memories") and hasattr(module, "v_threshold")


def _driver(module: nn.Module) -> CoreNeuron | MemoryNeuron | None:
    core = _core_of(module)
    if core is not None:
        return CoreNeuron(core)
    return MemoryNeuron(module) if _is_memory_neuron(module) else None


class _Recurrent(NamedTuple):
    synapse: nn.Linear
    neuron: nn.Module
    features: int
    output: str = "spikes"


def _recurrent_parts(module: nn.Module, path: str) -> _Recurrent | None:
    if isinstance(module, RecurrentBlock):
        return _Recurrent(module.synapse, module.neuron, module.features, module.output)
    if _is_spikingjelly(module) and type(module).__name__ == "LinearRecurrentContainer":
        rc, inner = module.rc, module.sub_module
        if _driver(inner) is None:
            raise UnsupportedModule(
                f"{path} (LinearRecurrentContainer) must wrap a single neuron, got {type(inner).__name__}; "
                "put synapses outside the container"
            )
        if rc.out_features != rc.in_features - rc.out_features:
            raise UnsupportedModule(
                f"{path} (LinearRecurrentContainer) maps [x; z] to {rc.out_features} features but its neuron "
                f"returns {rc.in_features - rc.out_features}; use in_features == out_features"
            )
        return _Recurrent(rc, inner, rc.out_features)
    return None


def _flatten(model: nn.Module, path: str) -> Iterator[tuple[str, nn.Module]]:
    container = isinstance(model, nn.Sequential) or (
        _is_spikingjelly(model) and type(model).__name__ == "SeqToANNContainer"
    )
    if not container:
        yield path, model
        return
    for name, child in model.named_children():
        yield from _flatten(child, f"{path}.{name}" if path else name)


def discover(model: nn.Module) -> Network:
    """Build the :class:`Network` of ``model``.

    Raises:
        UnsupportedModule: ``model`` is not a sequential stack of supported layers; the
            message names the first offending module, its path, and why.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if getattr(model, "module", None) is not None and type(model).__name__ == "DistributedDataParallel":
        raise UnsupportedModule(
            "pass the bare model, not a DistributedDataParallel wrapper: the trainers all-reduce "
            "gradients themselves once per optimizer step"
        )
    if _driver(model) is not None or _recurrent_parts(model, "model") is not None:
        modules = [("", model)]
    elif not isinstance(model, nn.Sequential):
        raise UnsupportedModule(
            f"model must be an nn.Sequential of synapses, neurons and stateless layers; got {type(model).__name__}, "
            "whose forward the trainers cannot see into (build it as nn.Sequential(...))"
        )
    else:
        modules = list(_flatten(model, ""))
    layers: list[Layer] = []
    for path, module in modules:
        label = path or type(module).__name__
        recurrent = _recurrent_parts(module, label)
        driver = _driver(module)
        if recurrent is not None:
            layers.append(RecurrentLayer(recurrent.synapse, _driver(recurrent.neuron), recurrent.features, label,
                                         output=recurrent.output))
        elif driver is not None:
            layers.append(NeuronLayer(driver, label))
        elif isinstance(module, SequenceDropout):
            layers.append(SequenceDropoutLayer(module, label))
        elif isinstance(module, _STATELESS):
            layers.append(StatelessLayer(module, label))
        else:
            raise UnsupportedModule(_refusal(module, label))
    if not any(not isinstance(layer, StatelessLayer) for layer in layers):
        raise UnsupportedModule("model has no spiking neuron; the trainers train spiking networks")
    return Network(model, layers)


def _refusal(module: nn.Module, path: str) -> str:
    name = type(module).__name__
    if type(module).__module__.startswith("snntorch"):
        return (
            f"{path} ({name}) is an snnTorch neuron, whose hidden state the trainers cannot carry or detach "
            "per step; use the same neuron from snn_parallel.adapters.snntorch or snn_parallel.neurons"
        )
    if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
        return f"{path} ({name}) is a recurrent ANN layer; the trainers run spiking networks (synapses and neurons)"
    if _is_spikingjelly(module) and hasattr(module, "_memories"):
        return f"{path} ({name}) keeps SpikingJelly memories but is not a neuron the trainers can step"
    return (
        f"{path} ({name}) is not a layer the trainers know how to run step by step; supported: synapses "
        "(Linear, Conv), stateless layers (pooling, Flatten, Dropout, norms, activations), snn_parallel neurons "
        "and their adapters, SpikingJelly nodes, and RecurrentBlock / LinearRecurrentContainer"
    )
