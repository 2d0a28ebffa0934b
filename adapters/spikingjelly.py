r"""SpikingJelly skins for the snn_parallel neurons: change one class name in a SpikingJelly net.

:class:`DynamicDecayNode`, :class:`PRFNode`, :class:`DecoupledLIFNode`, :class:`DecoupledIFNode`,
:class:`DecoupledParametricLIFNode`, :class:`DecoupledCUBALIFNode`, :class:`LTCNode` and :class:`PSPLIFNode`
(TSSL-BP) are SpikingJelly memory modules (``spikingjelly.activation_based.base.MemoryModule``) that own a core
neuron from :mod:`snn_parallel.neurons` and call it; the dynamics live there (:mod:`snn_parallel.neurons.dsn`,
:mod:`~snn_parallel.neurons.prf`, :mod:`~snn_parallel.neurons.lif`, :mod:`~snn_parallel.neurons.synaptic`,
:mod:`~snn_parallel.neurons.ltc`). One class serves SpikingJelly 2.0.0 and 0.0.0.0.14::

    from spikingjelly.activation_based import functional, layer, neuron
    from snn_parallel.adapters.spikingjelly import DecoupledIFNode, DecoupledLIFNode

    net = nn.Sequential(
        layer.Linear(64, 128, step_mode="m"),
        DecoupledLIFNode(128, tau=2.0, decay_input=True, step_mode="m"),  # was neuron.LIFNode(tau=2.0, v_reset=None,
        layer.Linear(128, 10, step_mode="m"),                             #     detach_reset=True, step_mode="m")
        DecoupledIFNode(10, step_mode="m"),  # was neuron.IFNode(v_reset=None, detach_reset=True, step_mode="m")
    )

**Which node for which SpikingJelly neuron.** The soft reset with a detached gradient
(``v_reset=None, detach_reset=True``) of SpikingJelly's ``IFNode``, ``LIFNode`` and ``ParametricLIFNode`` is
:class:`DecoupledIFNode`, :class:`DecoupledLIFNode` and :class:`DecoupledParametricLIFNode`: the same spikes,
``v`` and input gradients. ``DecoupledLIFNode``'s ``decay_input`` defaults to ``False`` (the charge
:math:`u_t = \beta u_{t-1} + x_t` of the core's default), ``LIFNode``'s to ``True``: pass ``decay_input=True`` for a
``LIFNode`` that does not name it. ``DecoupledParametricLIFNode`` learns one time constant per layer, as
``ParametricLIFNode`` (``per_channel=True``: one per channel), and its decay's gradient leaves out the reset's part
(see the class). SpikingJelly 2.0's current-based ``CUBALIFNode`` with that reset is
:class:`DecoupledCUBALIFNode` (memories ``v`` and ``c``, as SpikingJelly's). SpikingJelly's default hard reset
(``v_reset=0.0``) and a reset that keeps its gradient (``detach_reset=False``) are refused, naming the argument.

**Differences from SpikingJelly's nodes.**

- The feature count comes first (the core neurons have per-channel parameters); inputs
  are ``[T, B, features, *spatial]`` in ``'m'`` mode and ``[B, features, *spatial]`` in
  ``'s'`` mode (``LTCNode``: no spatial dims). One sample without its batch dim, ``[T, features]``
  or ``[features]`` (``nn.Linear``'s unbatched input, the only spikes SpikingJelly's
  ``MSTDPETLearner`` takes), runs as a batch of one and keeps its memories without the batch dim.
- ``'s'`` mode calls the core's ``step(x_t, state)``, ``'m'`` mode its parallel
  ``forward(x_seq, state, return_membrane=True)``; both give the same spikes.
- **Firing rule.** Spikes are :math:`\Theta(v - V_{th}) = [v - V_{th} \ge 0]`, as in
  SpikingJelly: the surrogate is built with
  ``snn_parallel.surrogate.resolve(surrogate_function, inclusive=True)``, so a name, one of
  our surrogates, or any SpikingJelly surrogate object (either version) works
  (``ATan`` and ``Sigmoid`` become ours, so the CUDA kernels run them). The
  default is our ``Sigmoid(alpha=4)`` (same forward and derivative as SpikingJelly's
  default ``surrogate.Sigmoid()``, but usable by the fused ops); ``LTCNode`` defaults to
  the multi-Gaussian of its reference code (firing on ``>= 0`` here).
  ``node.surrogate_function`` is the surrogate object passed (or ours, built from a name or
  the default), so tuning a SpikingJelly surrogate's ``alpha`` acts as on SpikingJelly's
  nodes; assigning a new one raises ``AttributeError`` (build a new node).
- **Memories.** One memory per field of the core's state ``NamedTuple``, registered as
  ``None`` and created from the first input, so ``functional.reset_net``,
  ``detach_net``, ``set_step_mode``, ``layer.MultiStepContainer`` and (on 2.0)
  ``base.extract_memories`` / ``to_functional_forward`` work. The memories are named after
  the fields (``LIFNode`` has the single memory ``v``; :class:`DecoupledCUBALIFNode`'s are
  ``CUBALIFNode``'s ``v`` and ``c``). ``self.v`` is the membrane after the
  step's reset, as on SpikingJelly's nodes: the core state's first field (see each class;
  ``DecoupledLIFNode``'s is that field less the resets its core keeps in a threshold bias, so it
  equals ``LIFNode.v``, computed at each read: change it by assigning ``node.v``, not in place;
  ``PRFNode(reset=True)``'s stays the real part :math:`u_t`, before the threshold bias):
  ``None`` before the first input and after a reset, where ``LIFNode``'s is the float ``v_reset``.
  ``node.v = tensor`` (shaped like one step's input) starts the next forward from that membrane,
  the other fields resting if they are ``None``; a float raises ``TypeError``. With
  ``store_v_seq=True``, ``'m'`` mode stores ``self.v_seq`` ``[T, B, ...]``, the membrane compared
  with the threshold (before any reset; SpikingJelly's is after it), and ``'s'`` mode appends each
  step's to it until a reset, as SpikingJelly 2.0 does (on both versions). Setting
  ``store_v_seq`` drops the stored ``v_seq``, as on 2.0.
- **Arguments.** ``v_threshold`` must be a float (an int raises ``TypeError``, like
  SpikingJelly's assertion, so code stays valid when swapped back). ``node.v_threshold`` is the
  core's threshold: assigning a float takes effect at the next step, as on SpikingJelly's nodes;
  a tensor (a per-sample threshold, as ``functional.set_threshold_margin`` assigns while
  training) raises ``TypeError``. ``v_reset`` and ``detach_reset`` accept only what the core
  does (per class below), passed or assigned; anything else raises ``ValueError`` naming the
  argument. ``DecoupledLIFNode.tau`` and ``PSPLIFNode.tau`` (and its ``tau_s``) read and set as
  ``LIFNode.tau`` does, acting from the next step, and so does ``DecoupledLIFNode.decay_input``
  (``DecoupledParametricLIFNode``'s too; ``PSPLIFNode``'s is always ``False``). The nodes
  are not ``neuron.BaseNode`` subclasses (BaseNode's single float membrane ``v`` and its
  charge/fire/reset hooks do not fit a multi-field state): pass these classes to monitors'
  ``instance`` argument. Code that picks neurons by ``isinstance(m, neuron.BaseNode)`` does not
  see them: SpikingJelly's ``op_counter.NeuronStateCounter`` records nothing for them, and the
  op counters skip them only if ``extra_ignore_modules`` names these classes
  (``neuron.BaseNode`` does not). SpikingJelly's plasticity learners (``learning.STDPLearner``,
  ``MSTDPLearner``, ``MSTDPETLearner``) take any of them as ``sn``: they read the node's output
  as the post-synaptic spikes, which for ``PSPLIFNode`` is the post-synaptic potential, not a
  spike.
- **Backends.** On 0.0.0.0.14, ``backend`` (constructor keyword, default ``'torch'``) and
  ``supported_backends`` exist: ``('torch', 'cupy')`` in ``'m'`` mode, ``('torch',)`` in
  ``'s'`` mode. The node's backend is the core's ``ops_backend``:
  ``functional.set_backend(net, 'cupy')`` makes ``'m'`` mode run snn_parallel's CuPy kernels
  (:mod:`snn_parallel.ops._backend`; CUDA tensors only, a CPU tensor raises ``RuntimeError``
  when the node runs), and ``'torch'`` the torch path. ``'s'`` mode always steps in torch,
  whatever the backend, as SpikingJelly's ``LIFNode`` does. On 2.0 there is no backend: passing
  ``backend=`` raises ``TypeError``, as it does for SpikingJelly 2.0's own nodes, and the core
  keeps ``ops_backend='auto'`` (the kernels for CUDA tensors when CuPy works).
- **SpikingJelly 2.0 reset cache.** ``functional.reset_net`` caches each network's module
  list: after swapping one of these nodes into an existing network, call
  ``functional.invalidate_reset_cache(net)`` (2.0 only) before relying on ``reset_net``.

:func:`swap_nodes` replaces the nodes of a network already built (SpikingJelly models and examples
that build ``neuron.LIFNode`` or ``IFNode`` themselves) by nodes of your choice. :func:`from_spikingjelly` does it
for SpikingJelly's soft-reset ``IFNode``, ``LIFNode``, ``ParametricLIFNode`` and ``CUBALIFNode``
(``v_reset=None, detach_reset=True``): a copy of a network built (or trained, a checkpoint loaded) with them,
holding ours, every constant, learned ``w`` and memory carried. :func:`to_spikingjelly` goes back: a copy of a
network trained with our IF, LIF, PLIF and CUBA-LIF nodes holding SpikingJelly's own, whose state dict
SpikingJelly's network loads (for its NIR/Lava/Lynxi exchanges, ``ann2snn``, or users without this library)::

    ours = from_spikingjelly(theirs)  # train ours in parallel, then
    theirs.load_state_dict(to_spikingjelly(ours).state_dict())

:func:`register` makes the nodes reachable as ``spikingjelly.activation_based.neuron.*``
and our ``MultiGaussian`` / ``DoubleGaussian`` as ``spikingjelly.activation_based.surrogate.*``;
:func:`unregister` undoes it. Importing this module registers nothing.
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from spikingjelly.activation_based import base, neuron
from spikingjelly.activation_based import functional as sj_functional
from spikingjelly.activation_based import surrogate as sj_surrogate

from snn_parallel import surrogate as sp_surrogate
from snn_parallel._validation import check_bool, check_float, check_step_input
from snn_parallel.neurons import LTC, PRF, PSPLIF, DecoupledLIF, DynamicDecay, Neuron, SynapticLIF, SynapticLIFState
from snn_parallel.neurons.base import _feature_count
from snn_parallel.neurons.psp_lif import _time_constant

__all__ = [
    "SJ2",
    "SpikingJellyNode",
    "Reset",
    "NO_RESET",
    "SOFT_DETACHED",
    "HARD_ZERO",
    "DynamicDecayNode",
    "PRFNode",
    "DecoupledLIFNode",
    "DecoupledIFNode",
    "DecoupledParametricLIFNode",
    "DecoupledCUBALIFNode",
    "LTCNode",
    "PSPLIFNode",
    "register",
    "unregister",
    "swap_nodes",
    "to_spikingjelly",
    "from_spikingjelly",
]

#: True on SpikingJelly 2.x (functional step methods, no ``backend``), False on 0.0.0.0.14.
SJ2: bool = hasattr(base.MemoryModule, "single_step_functional_forward")

States = tuple[Any, ...]
#: marks an argument that was not passed
_NOT_GIVEN: Any = object()


class Reset(NamedTuple):
    """What a core neuron's reset is, as SpikingJelly's ``v_reset``/``detach_reset`` see it."""

    kind: str  #: description used in error messages
    v_reset: float | None  #: the only ``v_reset`` the neuron expresses
    detached: bool | None  #: the only ``detach_reset`` it expresses (``None``: any, no reset)


NO_RESET = Reset("no reset", None, None)
SOFT_DETACHED = Reset("a soft reset whose gradient is detached", None, True)
HARD_ZERO = Reset("a hard reset to 0 that keeps its gradient", 0.0, False)


class SpikingJellyNode(base.MemoryModule):
    """The base of every node here: memories from the core's state, step modes, checks, backends.

    A subclass builds its core neuron (any :class:`~snn_parallel.neurons.Neuron`, your
    own included) and passes it here with the reset it implements (:data:`NO_RESET`,
    :data:`SOFT_DETACHED` or :data:`HARD_ZERO`) and its own SpikingJelly arguments (by
    position, in this order, or by name); see tutorial 5.
    """

    def __init__(
        self,
        core: Neuron,
        reset: Reset,
        v_reset: float | None,
        detach_reset: bool,
        step_mode: str,
        store_v_seq: bool,
        backend: str | None,
    ) -> None:
        super().__init__()
        self._reset = reset
        self.detach_reset = detach_reset
        self.v_reset = v_reset
        self.core = core
        self.step_mode = step_mode
        self.store_v_seq = store_v_seq
        if SJ2:
            if backend is not None:
                raise TypeError(
                    f"{type(self).__name__}: backend is not an argument on SpikingJelly 2.x (which has no backends); "
                    "remove it"
                )
        else:
            self.backend = "torch" if backend is None else backend
        for field in self._memory_names():
            self.register_memory(field, None)

    # -- SpikingJelly 0.0.0.0.14 backends ------------------------------------------------
    if not SJ2:

        @property
        def supported_backends(self) -> tuple[str, ...]:
            """``('torch', 'cupy')`` in ``'m'`` mode, ``('torch',)`` in ``'s'`` mode."""
            return ("torch", "cupy") if self.step_mode == "m" else ("torch",)

        @property
        def backend(self) -> str:
            """The backend name, passed on to the core neuron's ``ops_backend``."""
            return self._backend

        @backend.setter
        def backend(self, value: str) -> None:
            if value not in self.supported_backends:
                raise NotImplementedError(
                    f"backend={value!r} is not supported by {self._get_name()} in step_mode={self.step_mode!r}; "
                    f"choose one of {self.supported_backends}"
                )
            self._backend = value
            self.core.ops_backend = value

    def _check_backend(self, x_seq: torch.Tensor) -> None:
        """``'cupy'`` runs the CuPy kernels, which need CUDA tensors: say so in the node's terms."""
        if not SJ2 and self.backend == "cupy" and not x_seq.is_cuda:
            raise RuntimeError(
                f"{self._get_name()}: backend='cupy' runs the CuPy kernels of snn_parallel, which need CUDA tensors, "
                f"but the input is on {x_seq.device}; move the network and its inputs to a GPU, or use "
                "functional.set_backend(net, 'torch')"
            )

    # -- threshold and reset, as SpikingJelly's nodes expose them ------------------------
    #: the core attribute that holds ``v_threshold`` (``LTCNode``: the baseline ``b0``)
    _threshold_attribute = "v_threshold"

    @property
    def v_threshold(self) -> float:
        """The firing threshold, the core neuron's (``LTCNode``: the baseline :math:`b_0` of its
        adaptive threshold). Assigning a float takes effect at the next step, as on SpikingJelly's
        nodes; a tensor (a per-sample threshold, as ``functional.set_threshold_margin`` assigns)
        raises ``TypeError``, the core's threshold being one float."""
        return getattr(self.core, self._threshold_attribute)

    @v_threshold.setter
    def v_threshold(self, value: float) -> None:
        if isinstance(value, torch.Tensor):
            raise TypeError(
                f"{type(self).__name__}.v_threshold must be a float: its core neuron has one threshold for "
                f"every neuron and sample, so a tensor of shape {tuple(value.shape)} cannot be expressed"
            )
        setattr(self.core, self._threshold_attribute, _threshold(value))

    @property
    def v_reset(self) -> float | None:
        """The reset value, fixed by the core neuron's reset: ``None`` (soft or no reset) or ``0.0``
        (a hard reset); assigning another raises ``ValueError``, as the constructor does."""
        return self._v_reset

    @v_reset.setter
    def v_reset(self, value: float | None) -> None:
        reset = self._reset
        if isinstance(value, bool) or value != reset.v_reset:
            raise ValueError(
                f"v_reset={value!r} is not supported by {type(self).__name__}, which has {reset.kind}; "
                f"pass v_reset={reset.v_reset!r}"
            )
        self._v_reset = value

    @property
    def detach_reset(self) -> bool:
        """Whether the reset's gradient is detached, fixed by the core neuron's reset (any bool for a
        neuron that does not reset); assigning another raises ``ValueError``, as the constructor does."""
        return self._detach_reset

    @detach_reset.setter
    def detach_reset(self, value: bool) -> None:
        reset = self._reset
        if not isinstance(value, bool):
            raise TypeError(f"detach_reset must be a bool, got {type(value).__name__}")
        if reset.detached is not None and value != reset.detached:
            raise ValueError(
                f"detach_reset={value!r} is not supported by {type(self).__name__}, which has {reset.kind}; "
                f"pass detach_reset={reset.detached!r}"
            )
        self._detach_reset = value

    # -- surrogate -----------------------------------------------------------------------
    @property
    def surrogate_function(self) -> Any:
        """The surrogate as SpikingJelly's nodes keep it: the object passed (a SpikingJelly surrogate
        stays that object, so changing its ``alpha`` changes the node's gradient, as on SpikingJelly's
        nodes), or the :mod:`snn_parallel.surrogate` one built from a name or the default. Fixed
        once the node is built: assigning it raises ``AttributeError``."""
        surrogate = self.core.surrogate
        return surrogate if surrogate.source is None else surrogate.source

    def __setattr__(self, name: str, value: Any) -> None:
        # nn.Module would register a SpikingJelly surrogate (an nn.Module) as a child past the property
        if name == "surrogate_function":
            raise AttributeError(
                f"{type(self).__name__}.surrogate_function is fixed when the node is built (its core neuron is "
                "built around it); build a new node with surrogate_function=..."
            )
        memories = self.__dict__.get("_memories")
        if memories is not None and name in memories and isinstance(getattr(type(self), name, None), property):
            # a memory named as a property (v): its setter checks the value; None is a memory at rest, as
            # SpikingJelly's tools (base.load_memories) restore it
            if value is None:
                memories[name] = None
            else:
                object.__setattr__(self, name, value)
            return
        super().__setattr__(name, value)

    # -- state -------------------------------------------------------------------------
    @property
    def store_v_seq(self) -> bool:
        """Whether the forwards store the membrane in ``v_seq``; setting it drops the stored ``v_seq``, as in
        SpikingJelly."""
        return self._store_v_seq

    @store_v_seq.setter
    def store_v_seq(self, value: bool) -> None:
        self._store_v_seq = bool(value)
        self.v_seq: torch.Tensor | None = None

    def _memory_names(self) -> tuple[str, ...]:
        """The memories' names, the first holding the membrane: the core state's fields (a node whose memories
        differ from them converts in :meth:`_to_core_state` and :meth:`_memory_states`)."""
        return self.core.state_type._fields

    def _to_core_state(self, states: States) -> NamedTuple:
        """The core's state from the memories' values (some may be ``None``: not all are)."""
        return self.core.state_type(*states)

    def _memory_states(self, state: NamedTuple) -> States:
        """The memories' values from the core's state."""
        return tuple(state)

    @property
    def v(self) -> torch.Tensor | None:
        """The membrane after the step's reset, as SpikingJelly's nodes hold it (``None`` before the first
        input): the first memory, less :meth:`_v_offset` where the core keeps its reset apart."""
        first = self._memory(self._memory_names()[0])
        offset = None if first is None else self._v_offset()
        return first if offset is None else first - offset

    def _memory(self, name: str) -> torch.Tensor | None:
        """The memory ``name``, for a property named as a memory (``v``): ``AttributeError`` while it is not yet
        registered (SpikingJelly's ``register_memory`` asks ``hasattr`` first)."""
        if name not in self._memories:
            raise AttributeError(name)
        return self._memories[name]

    def _v_offset(self) -> torch.Tensor | None:
        """What the membrane lies below the core state's first field (``None``: nothing, ``v`` is that field)."""
        return None

    @v.setter
    def v(self, value: torch.Tensor) -> None:
        """Set the membrane, as ``node.v = tensor`` does on SpikingJelly's nodes: ``value`` is
        shaped like one step's input ``[B, features, *spatial]``; the other memories keep their
        values, or rest (the core's ``init_state``) where they are ``None``, so the next step
        starts from the membrane ``value``."""
        self._assign("v", value)

    def _assign(self, name: str, value: torch.Tensor) -> None:
        """Set the memory that ``node.<name>`` reads (``v``: the first, plus :meth:`_v_offset`) to ``value``, shaped
        like one step's input; the other memories keep their values, or rest where they are ``None``."""
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"{type(self).__name__}.{name} must be a tensor shaped like one step's input, got "
                f"{type(value).__name__}; call reset() to bring the neuron back to rest"
            )
        features = _feature_count(value, 1 if value.dim() > 1 else 0)  # [features]: one sample without its batch dim
        if self.core.has_uninitialized_params() and isinstance(features, int):
            self.core.materialize(features)  # a lazy core builds its channels (its decay) as from a first input
        fields = self._memory_names()
        field = fields[0] if name == "v" else name
        current = self._memories[field]
        if current is not None and current.shape != value.shape:
            raise ValueError(
                f"{type(self).__name__}.{name} must have shape {tuple(current.shape)}, got {tuple(value.shape)}"
            )
        missing = [other for other in fields if other != field and self._memories[other] is None]
        if missing:
            resting = dict(zip(fields, self._memory_states(self.core.init_state(value.detach())), strict=True))
            for other in missing:
                self._memories[other] = resting[other]
        offset = self._v_offset() if field == fields[0] else None
        self._memories[field] = value if offset is None else value + offset

    def _core_state(self, states: States) -> NamedTuple | None:
        """The core's state from explicit states; all ``None`` (fresh or reset) means resting."""
        fields = self._memory_names()
        if len(states) != len(fields):
            raise ValueError(
                f"states must hold {len(fields)} entries for {type(self).__name__}, one per memory "
                f"({', '.join(fields)}), got {len(states)}; base.extract_memories(node) lists them"
            )
        if all(s is None for s in states):
            return None
        return self._to_core_state(states)

    def _commit(self, states: States) -> None:
        for field, value in zip(self._memories, states, strict=True):
            self._memories[field] = value

    def reset(self) -> None:
        """Reset every memory to ``None`` (rebuilt from the next input) and drop ``v_seq``."""
        super().reset()
        self.v_seq = None

    def detach(self) -> None:
        """Detach the memories (and ``v_seq``) from the graph, out of place (memories may be views)."""
        for field, value in self._memories.items():
            if isinstance(value, torch.Tensor):
                self._memories[field] = value.detach()
        if self.v_seq is not None:
            self.v_seq = self.v_seq.detach()

    # -- pure transitions (SpikingJelly 2.x calls these directly) -----------------------
    def single_step_functional_forward(
        self, inputs: tuple[torch.Tensor, ...], states: States
    ) -> tuple[tuple[torch.Tensor], States]:
        """One step with explicit states: ``((spike,), new_states)``; touches no memory."""
        (x_t,) = inputs
        spike, state = self.core.step(x_t, self._core_state(states))
        return (spike,), self._memory_states(state)

    def multi_step_functional_forward(
        self, inputs: tuple[torch.Tensor, ...], states: States
    ) -> tuple[tuple[torch.Tensor], States]:
        """All steps with explicit states: ``((spikes,), new_states)``; touches no memory."""
        spikes, _, new_states = self._sequence(inputs, states, membrane=False)
        return (spikes,), new_states

    def _sequence(
        self, inputs: tuple[torch.Tensor, ...], states: States, membrane: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, States]:
        """Spikes, the membrane (``None`` unless ``membrane``: the core may then skip it) and the states."""
        (x_seq,) = inputs
        self._check_backend(x_seq)
        if not membrane:
            spikes, state = self.core(x_seq, self._core_state(states))
            return spikes, None, self._memory_states(state)
        spikes, potential, state = self.core(x_seq, self._core_state(states), return_membrane=True)
        return spikes, potential, self._memory_states(state)

    # -- stateful forwards (both versions) ---------------------------------------------
    #: why NIR cannot describe the node (SpikingJelly's NIR export traces it with torch.fx)
    _nir_refusal: str = "NIR has no primitive for it"

    def _refuse_tracing(self, x: object) -> None:
        """torch.fx tracing (SpikingJelly's NIR export) meets the node: refuse it with the reason."""
        if isinstance(x, torch.fx.Proxy):
            raise TypeError(
                f"{type(self).__name__} cannot be exported to NIR or traced by torch.fx: {self._nir_refusal}"
            )

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step of ``x`` ``[B, features, *spatial]``, or ``[features]`` for one sample without its batch dim;
        returns the spikes, updates the memories. With ``store_v_seq``, appends the step's membrane to ``v_seq``
        (as SpikingJelly 2.0 does) until a reset."""
        self._refuse_tracing(x)
        if isinstance(x, torch.Tensor) and x.dim() == 1:
            return self._unbatched(self.single_step_forward, x, batch_dim=0)
        memories = tuple(self._memories.values())
        if not self.store_v_seq:
            (spike,), states = self.single_step_functional_forward((x,), memories)
            self._commit(states)
            return spike
        # one step, checked as the core's step checks it, then run as a sequence of one for its membrane
        check_step_input(x, "x_t", self.core.features or _feature_count(x, 1), finite=False)
        spikes, membrane, states = self._sequence((x.unsqueeze(0),), memories, membrane=True)
        self._commit(states)
        self.v_seq = membrane if self.v_seq is None else torch.cat((self.v_seq, membrane))
        return spikes[0]

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """All steps of ``x_seq`` ``[T, B, features, *spatial]``, or ``[T, features]`` for one sample without its
        batch dim, in parallel; returns the spikes."""
        self._refuse_tracing(x_seq)
        if isinstance(x_seq, torch.Tensor) and x_seq.dim() == 2:
            return self._unbatched(self.multi_step_forward, x_seq, batch_dim=1)
        spikes, membrane, states = self._sequence((x_seq,), tuple(self._memories.values()), self.store_v_seq)
        self._commit(states)
        if self.store_v_seq:
            self.v_seq = membrane
        return spikes

    def _unbatched(
        self, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_dim: int
    ) -> torch.Tensor:
        """``forward`` on one sample without its batch dim (``nn.Linear``'s unbatched input; SpikingJelly's
        ``MSTDPETLearner`` takes only such spikes): run as a batch of one, the memories and ``v_seq`` kept
        without the batch dim, as SpikingJelly's nodes keep them."""
        self._change_batch_dim(torch.Tensor.unsqueeze)
        try:
            return forward(x.unsqueeze(batch_dim)).squeeze(batch_dim)
        finally:
            self._change_batch_dim(torch.Tensor.squeeze)

    def _change_batch_dim(self, change: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
        for field, value in self._memories.items():
            if isinstance(value, torch.Tensor):
                self._memories[field] = change(value, 0)
        if isinstance(self.v_seq, torch.Tensor):  # [T, B, ...]
            self.v_seq = change(self.v_seq, 1)

    # -- back to SpikingJelly's own nodes (to_spikingjelly) -----------------------------
    def _to_spikingjelly(self) -> base.MemoryModule:
        """SpikingJelly's own node that computes this one (see :func:`to_spikingjelly`); ``ValueError`` with the reason
        where SpikingJelly has none."""
        raise ValueError("SpikingJelly has no neuron with its dynamics")

    def _build_spikingjelly(self, cls: type, memories: tuple[str, ...] = ("v",), **arguments: Any) -> base.MemoryModule:
        """``cls(**arguments)`` with this node's threshold, soft reset with a detached gradient, surrogate, step mode,
        ``store_v_seq`` (and backend on 0.0.0.0.14), and the values of ``memories`` (detached)."""
        threshold = self.v_threshold
        if not isinstance(threshold, float):
            raise ValueError("its threshold is a tensor (per channel or learned), SpikingJelly's is one float")
        node = cls(v_threshold=threshold, v_reset=None, surrogate_function=self._spikingjelly_surrogate(), **arguments)
        node.detach_reset = True  # CUBALIFNode takes neither this nor the step mode as arguments
        node.step_mode = self.step_mode
        node.store_v_seq = self.store_v_seq
        if not SJ2:
            node.backend = self.backend
        for name in memories:
            value = getattr(self, name)
            if value is not None:
                setattr(node, name, value.detach())
        return node

    def _spikingjelly_surrogate(self) -> Any:
        """The surrogate for SpikingJelly's node: the object the node was given (a SpikingJelly surrogate or any
        framework's callable, which SpikingJelly's nodes call as they are), or SpikingJelly's equivalent of ours."""
        chosen = self.surrogate_function
        if not isinstance(chosen, sp_surrogate.Surrogate):
            return chosen
        equivalent = sp_surrogate.spikingjelly_equivalent(chosen)
        if equivalent is None:
            raise ValueError(
                f"its surrogate {chosen!r} has no SpikingJelly equivalent (our ATan, Sigmoid and Rect have); "
                "build the node with one of SpikingJelly's surrogate objects"
            )
        if not chosen.inclusive:
            raise ValueError(f"its surrogate {chosen!r} fires on x > 0, SpikingJelly's nodes on x >= 0")
        name, alpha = equivalent
        cls = getattr(sj_surrogate, name, None)
        if cls is None:
            raise ValueError(f"its surrogate is our {name}, and this SpikingJelly has no surrogate.{name}")
        return cls(alpha=alpha)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, v_reset={self.v_reset}, detach_reset={self.detach_reset}, "
            f"store_v_seq={self.store_v_seq}"
        )


def _sj_float(value: float, name: str, **bounds: Any) -> float:
    """SpikingJelly asserts a float here (``v_threshold``, ``init_tau``): raise the same condition as a named
    TypeError, then check the value (``bounds``: :func:`~snn_parallel._validation.check_float`'s)."""
    if not isinstance(value, float):
        hint = f"; write {float(value)!r}" if isinstance(value, int) and not isinstance(value, bool) else ""
        raise TypeError(f"{name} must be a float (as in SpikingJelly), got {value!r}{hint}")
    return check_float(value, name, **bounds)


def _threshold(v_threshold: float) -> float:
    return _sj_float(v_threshold, "v_threshold")


def _surrogate(surrogate_function: object, default: str) -> sp_surrogate.Surrogate:
    chosen = default if surrogate_function is None else surrogate_function
    return sp_surrogate.resolve(chosen, inclusive=True, name="surrogate_function")


class DynamicDecayNode(SpikingJellyNode):
    r"""SpikingJelly node around :class:`snn_parallel.DynamicDecay` (DSN, :mod:`snn_parallel.neurons.dsn`).

    Fires :math:`S_t = [H_t - V_{th} \ge 0]` (``spike_mode="binary"``) or integer spikes
    (``"integer"``). **No reset**: ``v_reset`` must be ``None``; ``detach_reset`` is
    accepted and has no effect. ``v`` is the membrane :math:`H_t` (memory ``h``; the
    other memory, ``history``, holds the last ``kernel_size - 1`` inputs).

    Args:
        features: channels ``C`` (dim 2 of ``[T, B, C, *spatial]``); ``None`` (default)
            infers it from the first input, so SpikingJelly's model zoo can build the node
            with ``spiking_neuron(**kwargs)``.
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq,
        backend: as in SpikingJelly (see the module doc).
        dsn_tau: the DSN paper's :math:`\tau`, the core's ``tau``: the exponent of the decay
            :math:`\alpha_t = \sigma(\alpha'_t)^{1/\tau}` (paper: 0.25), not a time constant.
            ``tau=`` is refused with this reason, as it means a membrane time constant in
            SpikingJelly (``LIFNode(tau=2.0)``).
        kernel_size, init_decay, spike_mode, levels: the core's arguments.
    """

    _nir_refusal = (
        "its decay is computed from the input at every step (a causal convolution), which NIR has no primitive for"
    )

    def __init__(
        self,
        features: int | None = None,
        *,
        v_threshold: float = 1.0,
        v_reset: float | None = None,
        surrogate_function: object = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        store_v_seq: bool = False,
        backend: str | None = None,
        kernel_size: int = 4,
        dsn_tau: float = 0.25,
        init_decay: float = 0.5,
        spike_mode: str = "binary",
        levels: int = 4,
        tau: object = _NOT_GIVEN,
    ) -> None:
        if tau is not _NOT_GIVEN:
            raise TypeError(
                f"DynamicDecayNode takes no tau (got tau={tau!r}): in SpikingJelly tau is a membrane time constant, "
                "but the DSN has none, its decay being computed from the input; the DSN paper's tau, the exponent "
                "of that decay (alpha = sigmoid(.)^(1/tau), paper value 0.25), is dsn_tau"
            )
        core = DynamicDecay(
            features,
            kernel_size=kernel_size,
            tau=dsn_tau,
            init_decay=init_decay,
            spike_mode=spike_mode,
            levels=levels,
            v_threshold=_threshold(v_threshold),
            surrogate=_surrogate(surrogate_function, "sigmoid"),
        )
        super().__init__(core, NO_RESET, v_reset, detach_reset, step_mode, store_v_seq, backend)


class PRFNode(SpikingJellyNode):
    r"""SpikingJelly node around :class:`snn_parallel.PRF` (:mod:`snn_parallel.neurons.prf`).

    Fires :math:`s_t = [\mathrm{Re}\,\tilde u_t - b_t - V_{th} \ge 0]`. ``v_reset`` must be
    ``None``: with ``reset=False`` (the paper's PRF) there is no reset and
    ``detach_reset`` has no effect; ``reset=True`` is a soft reset through a threshold
    bias that carries no gradient, so ``detach_reset`` must be ``True``. ``v`` is the
    real part :math:`u_t` of the membrane (memories ``u``, ``r``, ``bias``).

    Args:
        features: channels ``C`` (dim 2 of ``[T, B, C, *spatial]``); ``None`` (default)
            infers it from the first input, so SpikingJelly's model zoo can build the node
            with ``spiking_neuron(**kwargs)``.
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq,
        backend: as in SpikingJelly (see the module doc).
        tau, learn_decay, dt_range, fr_scale, reset, mode: the core's arguments.
    """

    _nir_refusal = "its membrane is a complex resonator, which NIR has no primitive for"

    def __init__(
        self,
        features: int | None = None,
        *,
        v_threshold: float = 1.0,
        v_reset: float | None = None,
        surrogate_function: object = None,
        detach_reset: bool = True,
        step_mode: str = "s",
        store_v_seq: bool = False,
        backend: str | None = None,
        tau: float = 2.0,
        learn_decay: bool = False,
        dt_range: tuple[float, float] = PRF.DEFAULT_DT_RANGE,
        fr_scale: float = 1.0,
        reset: bool = False,
        mode: str = "scan",
    ) -> None:
        core = PRF(
            features,
            tau=tau,
            learn_decay=learn_decay,
            dt_range=dt_range,
            fr_scale=fr_scale,
            reset=reset,
            v_threshold=_threshold(v_threshold),
            surrogate=_surrogate(surrogate_function, "sigmoid"),
            mode=mode,
        )
        super().__init__(
            core, SOFT_DETACHED if reset else NO_RESET, v_reset, detach_reset, step_mode, store_v_seq, backend
        )


class _SoftResetNode(SpikingJellyNode):
    r"""The nodes around :class:`snn_parallel.DecoupledLIF` (:mod:`snn_parallel.neurons.lif`): SpikingJelly's
    soft reset with a detached gradient (``v_reset=None``, ``detach_reset=True``), kept by the core in a threshold
    bias :math:`b_{t+1} = \beta\,(b_t + V_{th} s_t)` beside the reset-free membrane :math:`u'_t`
    (memories ``filtered`` and ``bias``). ``v`` is the membrane after the reset,
    :math:`u'_t - b_{t+1}/\beta = u'_t - b_t - V_{th} s_t`, which is SpikingJelly's ``v`` (assigning ``v`` moves
    :math:`u'_t` by the same offset)."""

    _nir_refusal = (
        "it resets softly (by subtraction), which NIR's LIF cannot express (its reset sets v to v_reset); "
        "SpikingJelly refuses its own soft-reset LIFNode for the same reason"
    )

    def __init__(self, features: int | None, sj_arguments: tuple[Any, ...], **core_arguments: Any) -> None:
        """The core ``DecoupledLIF(features, **core_arguments)`` and the node's SpikingJelly arguments
        ``sj_arguments``: ``(v_threshold, surrogate_function, v_reset, detach_reset, step_mode, store_v_seq,
        backend)``."""
        v_threshold, surrogate_function, *base_arguments = sj_arguments
        core = DecoupledLIF(
            features,
            v_threshold=_threshold(v_threshold),
            surrogate=_surrogate(surrogate_function, "sigmoid"),
            **core_arguments,
        )
        super().__init__(core, SOFT_DETACHED, *base_arguments)

    def _v_offset(self) -> torch.Tensor | None:
        bias = self._memories["bias"]
        return None if bias is None else _resets_so_far(self.core, bias)

    def _to_spikingjelly(self) -> base.MemoryModule:
        """``IFNode`` (no leak), ``LIFNode`` (a fixed time constant) or ``ParametricLIFNode`` (one learned for the
        layer, its ``w`` carried)."""
        core = self.core
        if math.isinf(core.tau):
            return self._build_spikingjelly(neuron.IFNode)
        if core.learn_decay is True:
            raise ValueError(
                "it learns one time constant per channel (per_channel=True or learn_decay=True), where "
                "ParametricLIFNode learns one for the layer"
            )
        arguments = {"decay_input": core.decay_input}
        if not core.learn_decay:
            if not core.has_uninitialized_params():  # a lazy core builds its decay from tau
                logit = core.decay_logit.detach()
                expected = core._shared_values()["decay_logit"].to(logit.device).expand_as(logit)
                tolerance = 4 * torch.finfo(logit.dtype).eps
                if not torch.allclose(logit.double(), expected, rtol=tolerance, atol=tolerance):
                    raise ValueError(
                        f"its decay (loaded per channel: beta = {core.beta.tolist()}) is not that of its tau = "
                        f"{core.tau:g}, and LIFNode's is one tau for the layer"
                    )
            return self._build_spikingjelly(neuron.LIFNode, tau=core.tau, **arguments)
        node = self._build_spikingjelly(neuron.ParametricLIFNode, init_tau=core.tau, **arguments)
        logit = core.decay_logit
        node.w = torch.nn.Parameter(-logit.detach().clone(), requires_grad=logit.requires_grad)  # 1/tau = sigmoid(w)
        return node


def _resets_so_far(core: DecoupledLIF, bias: torch.Tensor) -> torch.Tensor:
    r""":math:`b_{t+1}/\beta = b_t + V_{th} s_t`: the resets so far, which ``core`` keeps in its threshold bias
    ``bias``, subtracted from the reset-free membrane :math:`u'_t` to give the membrane after the reset."""
    beta = core.beta.detach().to(bias.dtype)  # the bias's decay, as the core steps it
    return bias / core._channel_view(beta, bias, 1)


def _rebuild_decay(core: DecoupledLIF, logit: str, learn: bool | str) -> None:
    """Set the core's decay logit named ``logit`` from its time constant, as the core built it (a lazy core whose
    per-channel logit waits for its first input builds it from the time constant then)."""
    if learn != "shared" and core.has_uninitialized_params():
        return
    tensor = getattr(core, logit)
    with torch.no_grad():
        tensor.copy_(core._shared_values()[logit].expand_as(tensor))


class _LeakyNode(_SoftResetNode):
    """``LIFNode``'s and ``ParametricLIFNode``'s ``decay_input``, read and set as on SpikingJelly's nodes."""

    @property
    def decay_input(self) -> bool:
        r"""Whether the input is scaled by :math:`1/\tau` (:math:`u_t = u_{t-1} + (x_t - u_{t-1})/\tau`); assigning
        it acts from the next step, as on SpikingJelly's nodes (``v`` is unchanged)."""
        return self.core.decay_input

    @decay_input.setter
    def decay_input(self, value: bool) -> None:
        self.core.decay_input = value  # checked by the core


class DecoupledIFNode(_SoftResetNode):
    r"""SpikingJelly's ``IFNode(v_reset=None, detach_reset=True)`` around :class:`snn_parallel.DecoupledLIF`
    with :math:`\tau = \infty` (:math:`\beta = 1`, no leak).

    :math:`u_t = u_{t-1} + x_t`, fires :math:`s_t = [u_t - V_{th} \ge 0]` and subtracts :math:`V_{th}` per spike
    (the reset's gradient detached). So ``v_reset`` must be ``None`` and ``detach_reset`` ``True`` (the defaults
    here; SpikingJelly's are ``0.0`` and ``False``). Memories and ``v`` as :class:`DecoupledLIFNode`'s.

    Args:
        features: channels ``C`` (dim 2 of ``[T, B, C, *spatial]``); ``None`` (default)
            infers it from the first input, so SpikingJelly's model zoo can build the node
            with ``spiking_neuron(**kwargs)``.
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq,
        backend: as in SpikingJelly (see the module doc).
    """

    def __init__(
        self,
        features: int | None = None,
        *,
        v_threshold: float = 1.0,
        v_reset: float | None = None,
        surrogate_function: object = None,
        detach_reset: bool = True,
        step_mode: str = "s",
        store_v_seq: bool = False,
        backend: str | None = None,
    ) -> None:
        sj_arguments = (v_threshold, surrogate_function, v_reset, detach_reset, step_mode, store_v_seq, backend)
        super().__init__(features, sj_arguments, tau=math.inf)


class DecoupledLIFNode(_LeakyNode):
    r"""SpikingJelly's soft-reset ``LIFNode(v_reset=None, detach_reset=True)`` around
    :class:`snn_parallel.DecoupledLIF` (:mod:`snn_parallel.neurons.lif`).

    :math:`u_t = \beta u_{t-1} + x_t` (``decay_input=False``, the default here) or
    :math:`u_t = u_{t-1} + (x_t - u_{t-1})/\tau` (``decay_input=True``, ``LIFNode``'s default), with
    :math:`\beta = 1 - 1/\tau`; fires :math:`s_t = [u_t - V_{th} \ge 0]` and subtracts :math:`V_{th}` per spike.
    So ``v_reset`` must be ``None`` and ``detach_reset`` ``True`` (these are the defaults here; SpikingJelly's
    differ). The memories are the reset-free membrane :math:`u'_t` (``filtered``) and the threshold
    bias :math:`b_{t+1} = \beta\,(b_t + V_{th} s_t)` (``bias``); ``v`` is the membrane after
    the reset, :math:`u'_t - b_{t+1}/\beta = u'_t - b_t - V_{th} s_t`, which is SpikingJelly's
    ``LIFNode.v`` (assigning ``v`` moves :math:`u'_t` by the same offset).

    Args:
        features: channels ``C`` (dim 2 of ``[T, B, C, *spatial]``); ``None`` (default)
            infers it from the first input, so SpikingJelly's model zoo can build the node
            with ``spiking_neuron(**kwargs)``.
        tau: membrane time constant, :math:`\beta = 1 - 1/\tau` (``tau > 1``).
        decay_input: scale the input by :math:`1/\tau`, as ``LIFNode(decay_input=True)``. The default is
            ``False`` (``LIFNode``'s is ``True``): pass ``decay_input=True`` when swapping a ``LIFNode`` that
            does not name it.
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq,
        backend: as in SpikingJelly (see the module doc).
        learn_decay: the core's argument (``True``: a per-channel :math:`\beta`, ``"shared"``: one for the layer,
            initialised from ``tau``).
    """

    def __init__(
        self,
        features: int | None = None,
        *,
        tau: float = 2.0,
        decay_input: bool = False,
        v_threshold: float = 1.0,
        v_reset: float | None = None,
        surrogate_function: object = None,
        detach_reset: bool = True,
        step_mode: str = "s",
        store_v_seq: bool = False,
        backend: str | None = None,
        learn_decay: bool | str = False,
    ) -> None:
        sj_arguments = (v_threshold, surrogate_function, v_reset, detach_reset, step_mode, store_v_seq, backend)
        super().__init__(features, sj_arguments, tau=tau, learn_decay=learn_decay, decay_input=decay_input)

    @property
    def tau(self) -> float:
        r"""The membrane time constant, :math:`\beta = 1 - 1/\tau`, as ``LIFNode.tau`` (with
        ``learn_decay``, where the per-channel decay started; ``node.core.beta`` is the decay now)."""
        return self.core.tau

    @tau.setter
    def tau(self, value: float) -> None:
        r"""``node.tau = value``, as on ``LIFNode``: every channel's decay becomes :math:`1 - 1/\tau` from the
        next step (a learned decay restarts from it; with ``decay_input`` the input's scale :math:`1/\tau` too)."""
        core = self.core
        core.tau = check_float(value, "tau", minimum=1, min_open=True)
        if core.learn_decay != "shared" and core.has_uninitialized_params():  # built from tau at the first input
            return
        old_beta = core.beta.detach()
        _rebuild_decay(core, "decay_logit", core.learn_decay)
        bias = self._memories["bias"]
        if bias is not None:  # the resets so far, decayed by the old beta: as the new one would have (v unchanged)
            self._memories["bias"] = bias * core._channel_view(core.beta.detach() / old_beta, bias, 1).to(bias.dtype)


class DecoupledParametricLIFNode(_LeakyNode):
    r"""SpikingJelly's ``ParametricLIFNode(v_reset=None, detach_reset=True)`` (PLIF, a learned time constant)
    around :class:`snn_parallel.DecoupledLIF` with ``learn_decay=True``.

    :math:`u_t = u_{t-1} + (x_t - u_{t-1})/\tau` (``decay_input=True``, the default, as PLIF's) or
    :math:`u_t = (1 - 1/\tau)\, u_{t-1} + x_t`, with :math:`1/\tau = \sigma(w)`, learned; fires
    :math:`s_t = [u_t - V_{th} \ge 0]` and subtracts :math:`V_{th}` per spike. ``v_reset`` must be ``None`` and
    ``detach_reset`` ``True`` (the defaults here; SpikingJelly's are ``0.0`` and ``False``).

    **Differences from ``ParametricLIFNode``.** As SpikingJelly, the node learns one :math:`w` for the layer (the
    core's 0-d ``decay_logit`` :math:`= -w`, ``learn_decay="shared"``); ``per_channel=True`` learns one per channel
    instead (``[C]``, every channel starting from ``init_tau``). The gradient of :math:`w` flows through the
    reset-free membrane :math:`u'_t` only (the resets are constants in the threshold bias, decayed by a detached
    :math:`\beta`), while PLIF's also flows through the subtracted thresholds as they decay; the two agree
    wherever no neuron has fired yet. ``w`` reads as SpikingJelly's (per channel with ``per_channel=True``); a
    SpikingJelly ``ParametricLIFNode`` state dict (its ``w``) loads into the node (into every channel with
    ``per_channel=True``); the node's own state dict holds ``core.decay_logit``.

    Args:
        features: channels ``C`` (dim 2 of ``[T, B, C, *spatial]``); ``None`` (default)
            infers it from the first input, so SpikingJelly's model zoo can build the node
            with ``spiking_neuron(**kwargs)``.
        init_tau: the initial time constant (a float ``> 1``, as SpikingJelly asserts).
        decay_input: scale the input by :math:`1/\tau` (default ``True``, as ``ParametricLIFNode``).
        per_channel: learn one :math:`w` per channel (default ``False``: one for the layer, as SpikingJelly).
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq,
        backend: as in SpikingJelly (see the module doc).
    """

    def __init__(
        self,
        features: int | None = None,
        *,
        init_tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = None,
        surrogate_function: object = None,
        detach_reset: bool = True,
        step_mode: str = "s",
        store_v_seq: bool = False,
        backend: str | None = None,
        per_channel: bool = False,
    ) -> None:
        sj_arguments = (v_threshold, surrogate_function, v_reset, detach_reset, step_mode, store_v_seq, backend)
        tau = _sj_float(init_tau, "init_tau", minimum=1, min_open=True)
        learn = True if check_bool(per_channel, "per_channel") else "shared"
        super().__init__(features, sj_arguments, tau=tau, learn_decay=learn, decay_input=decay_input)

    @property
    def init_tau(self) -> float:
        """The time constant the channels start from: the constructor's, or, loaded into a lazy node, that of a
        ``ParametricLIFNode``'s ``w``."""
        return self.core.tau

    @property
    def w(self) -> torch.Tensor:
        r"""SpikingJelly's :math:`w`, :math:`1/\tau = \sigma(w)`: the core's ``-decay_logit`` with its gradient, 0-d as
        ``ParametricLIFNode.w`` (``per_channel=True``: ``[C]``, and before a lazy node's first input the 0-d
        :math:`-\log(\tau_0 - 1)` every channel will start from)."""
        core = self.core
        if core.learn_decay != "shared" and core.has_uninitialized_params():
            return torch.tensor(-math.log(self.init_tau - 1))
        return -core.decay_logit

    @property
    def tau(self) -> torch.Tensor:
        r"""The time constant now, :math:`1/\sigma(w)` (per channel with ``per_channel=True``; detached; PLIF prints the
        same in its repr)."""
        with torch.no_grad():
            return 1 / torch.sigmoid(self.w)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """A SpikingJelly ``ParametricLIFNode`` state dict: its ``w`` becomes ``core.decay_logit`` (:math:`-w`), every
        channel's with ``per_channel=True``, where a lazy node takes :math:`1 + e^{-w}` as ``init_tau`` and builds
        its channels from it at its first input."""
        w = state_dict.pop(prefix + "w", None)
        if w is not None:
            if not isinstance(w, torch.Tensor) or w.numel() != 1 or not torch.isfinite(w).all():
                got = f"shape {tuple(w.shape)}: {w}" if isinstance(w, torch.Tensor) else type(w).__name__
                raise ValueError(f"{prefix}w must be ParametricLIFNode's w, one finite number, got {got}")
            core = self.core
            if core.learn_decay == "shared":  # one w for the layer, as SpikingJelly's
                logit = (-w).reshape(())
            elif core.has_uninitialized_params():
                tau = 1 + torch.exp(-w.detach().double()).item()
                core.tau = check_float(tau, f"the time constant 1 + exp(-w) of {prefix}w", minimum=1, min_open=True)
                logit = core.decay_logit  # the placeholder a lazy node's own state dict holds
            else:
                logit = (-w).reshape(1).expand(core.features)
            state_dict[prefix + "core.decay_logit"] = logit
        super()._load_from_state_dict(state_dict, prefix, *args)


def _decay_attribute(name: str, tau: str, logit: str, learn: str, doc: str) -> property:
    """A node's decay ``name`` read and assigned as on SpikingJelly's node (``doc``): a float in (0, 1), which the
    core holds as its time constant ``tau`` and its logit ``logit`` (learned as its flag ``learn`` says); assigning
    it acts from the next step."""

    def read(node: SpikingJellyNode) -> float:
        return node._decays[name]

    def write(node: SpikingJellyNode, value: float) -> None:
        setattr(node.core, tau, _decay_time_constant(value, name))
        _rebuild_decay(node.core, logit, getattr(node.core, learn))
        node._decays[name] = float(value)

    return property(read, write, doc=f"{doc}; assigning it acts from the next step.")


class DecoupledCUBALIFNode(SpikingJellyNode):
    r"""SpikingJelly 2.0's current-based LIF ``CUBALIFNode`` with a soft reset (``v_reset=None``, ``detach_reset=True``)
    around :class:`snn_parallel.SynapticLIF` (:mod:`snn_parallel.neurons.synaptic`), trained in parallel:

    .. math::

        c_t = d_c\, c_{t-1} + x_t, \qquad h_t = d_v\, v_{t-1} + c_t, \qquad s_t = [h_t - V_{th} \ge 0],
        \qquad v_t = h_t - V_{th}\, \mathrm{sg}(s_t)

    with :math:`d_c` = ``c_decay`` (the core's :math:`\alpha`) and :math:`d_v` = ``v_decay`` (its :math:`\beta`). So
    ``v_reset`` must be ``None`` and ``detach_reset`` ``True`` (the defaults here; SpikingJelly's are ``0.0`` and
    ``False``). The memories are SpikingJelly's: the membrane after the reset ``v`` and the synaptic current ``c``
    (``None`` until the first input; ``node.v``/``node.c`` may be assigned between calls). The default surrogate is
    our ``Rect()`` (width 1: SpikingJelly's default ``surrogate.Rect()``, ``alpha=1``). Built without SpikingJelly's
    class, so it runs on 0.0.0.0.14 too, which has no ``CUBALIFNode``.

    Args:
        features: channels ``C`` (dim 2 of ``[T, B, C, *spatial]``); ``None`` (default)
            infers it from the first input, so SpikingJelly's model zoo can build the node
            with ``spiking_neuron(**kwargs)``.
        c_decay: the current's decay :math:`d_c`, in :math:`(0, 1)` (default 0.5, SpikingJelly's).
        v_decay: the membrane's decay :math:`d_v`, in :math:`(0, 1)` (default 0.75, SpikingJelly's). The core keeps
            each decay as a logit :math:`\log(d / (1 - d))`, finite only inside :math:`(0, 1)`: for
            ``c_decay=0`` (no synaptic memory, :math:`c_t = x_t`) use
            ``DecoupledLIFNode(tau=1 / (1 - v_decay), decay_input=False)``.
        v_threshold: as in SpikingJelly (default 0.5, ``CUBALIFNode``'s).
        v_reset, surrogate_function, detach_reset, step_mode, store_v_seq, backend: as in SpikingJelly (see the
            module doc).
    """

    _nir_refusal = (
        "it resets softly (by subtraction), which NIR's CubaLIF cannot express (its reset sets v to v_reset); "
        "SpikingJelly refuses its own soft-reset CUBALIFNode for the same reason"
    )

    def __init__(
        self,
        features: int | None = None,
        *,
        c_decay: float = 0.5,
        v_decay: float = 0.75,
        v_threshold: float = 0.5,
        v_reset: float | None = None,
        surrogate_function: object = None,
        detach_reset: bool = True,
        step_mode: str = "s",
        store_v_seq: bool = False,
        backend: str | None = None,
    ) -> None:
        core = SynapticLIF(
            features,
            tau_syn=_decay_time_constant(c_decay, "c_decay"),
            tau=_decay_time_constant(v_decay, "v_decay"),
            v_threshold=_threshold(v_threshold),
            surrogate=_surrogate(surrogate_function, "rect"),
        )
        super().__init__(core, SOFT_DETACHED, v_reset, detach_reset, step_mode, store_v_seq, backend)
        self._decays = {"c_decay": float(c_decay), "v_decay": float(v_decay)}

    c_decay = _decay_attribute(
        "c_decay", "tau_syn", "syn_decay_logit", "learn_syn_decay", "The current's decay, as ``CUBALIFNode.c_decay``"
    )
    v_decay = _decay_attribute(
        "v_decay", "tau", "decay_logit", "learn_decay", "The membrane's decay, as ``CUBALIFNode.v_decay``"
    )

    @property
    def c(self) -> torch.Tensor | None:
        """The synaptic current, as ``CUBALIFNode.c`` (``None`` before the first input and after a reset, where
        SpikingJelly's is 0.0); assigning a tensor shaped like one step's input starts the next step from it."""
        return self._memory("c")

    @c.setter
    def c(self, value: torch.Tensor) -> None:
        self._assign("c", value)

    def _memory_names(self) -> tuple[str, ...]:
        return ("v", "c")

    def _to_core_state(self, states: States) -> SynapticLIFState:
        r"""SpikingJelly's ``(v, c)`` as the core's state: the current :math:`c`, the reset-free membrane :math:`v`
        (the resets so far already subtracted) and no threshold bias; a ``None`` one rests at 0."""
        v, c = states
        v = torch.zeros_like(c) if v is None else v
        c = torch.zeros_like(v) if c is None else c
        return SynapticLIFState(c, v, torch.zeros_like(v))

    def _memory_states(self, state: SynapticLIFState) -> States:
        r"""The core's state as ``(v, c)``: :math:`v = u'_t - b_{t+1}/\beta`, the membrane after the reset."""
        return state.filtered - _resets_so_far(self.core, state.bias), state.current

    def _to_spikingjelly(self) -> base.MemoryModule:
        cls = getattr(neuron, "CUBALIFNode", None)
        if cls is None:
            raise ValueError("this SpikingJelly has no CUBALIFNode (SpikingJelly 2.0 has)")
        return self._build_spikingjelly(cls, ("v", "c"), c_decay=self.c_decay, v_decay=self.v_decay)

    def extra_repr(self) -> str:
        return f"c_decay={self.c_decay}, v_decay={self.v_decay}, {super().extra_repr()}"


def _decay_time_constant(decay: float, name: str) -> float:
    r"""The time constant :math:`1 / (1 - d)` of a decay :math:`d` in :math:`(0, 1)` (:math:`d = 1 - 1/\tau`)."""
    if isinstance(decay, bool) or not isinstance(decay, int | float):
        raise TypeError(f"{name} must be a float in (0, 1), got {type(decay).__name__}")
    if not 0 < decay < 1:
        raise ValueError(
            f"{name} must lie in (0, 1), got {decay!r}: the parallel core keeps each decay as a logit "
            "log(d / (1 - d)), which is infinite at 0 and 1"
        )
    return 1 / (1 - decay)


class LTCNode(SpikingJellyNode):
    r"""SpikingJelly node around :class:`snn_parallel.LTC` (:mod:`snn_parallel.neurons.ltc`).

    Fires :math:`s_t = [u_t - \theta_t \ge 0]` with the adaptive threshold
    :math:`\theta_t = V_{th} + \beta_a b_t`: ``v_threshold`` is the baseline threshold
    :math:`b_0` (default 0.1, the core's). It resets hard to 0 and keeps the gradient
    through the reset, so ``v_reset`` must be ``0.0`` and ``detach_reset`` ``False``.
    ``v`` is the membrane after reset :math:`\hat u_t` (memories ``u``, ``s``, ``b``).
    Inputs have no spatial dims: ``[T, B, C]`` / ``[B, C]``. The default surrogate is
    the reference code's multi-Gaussian.

    Args:
        features: neurons ``C``; ``None`` (default) infers it from the first input.
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq,
        backend: as in SpikingJelly (see the module doc).
        mode, beta_a: the core's arguments.
    """

    _nir_refusal = "its time constants are gates computed from the input and the state, which NIR has no primitive for"
    _threshold_attribute = "b0"

    def __init__(
        self,
        features: int | None = None,
        *,
        v_threshold: float = 0.1,
        v_reset: float | None = 0.0,
        surrogate_function: object = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        store_v_seq: bool = False,
        backend: str | None = None,
        mode: str = "paper",
        beta_a: float = 1.8,
    ) -> None:
        core = LTC(
            features,
            mode=mode,
            b0=_threshold(v_threshold),
            beta_a=beta_a,
            surrogate=_surrogate(surrogate_function, "multi_gaussian"),
        )
        super().__init__(core, HARD_ZERO, v_reset, detach_reset, step_mode, store_v_seq, backend)


class PSPLIFNode(SpikingJellyNode):
    r"""SpikingJelly node around :class:`snn_parallel.PSPLIF`, TSSL-BP's LIF with a PSP output
    (:mod:`snn_parallel.neurons.psp_lif`). Its output is the post-synaptic potential :math:`a_t`,
    not the spike.

    :math:`u_t = (1 - 1/\tau)\, \hat u_{t-1} + x_t`, like ``LIFNode(decay_input=False, v_reset=0.0)``,
    firing :math:`[u_t - V_{th} \ge 0]` (SpikingJelly's rule); it resets hard to 0 and keeps the
    gradient through the reset, so ``v_reset`` must be ``0.0``, ``detach_reset`` ``False`` and
    ``decay_input`` ``False``. ``v`` is the membrane after reset :math:`\hat u_t` (memories ``u``,
    ``a``). As a plasticity learner's ``sn`` it hands the learner :math:`a_t` as the post-synaptic
    "spikes" (STDP on the PSP, not on the spikes). ``gradient="tsslbp"`` trains ``'m'`` mode with
    TSSL-BP's backward (the paper's); ``'s'`` mode and ``gradient="surrogate"`` (the default) use the
    surrogate. On 0.0.0.0.14, ``backend='cupy'`` runs TSSL-BP's op as CUDA kernels in ``'m'`` mode
    with ``gradient="tsslbp"`` (the surrogate mode steps in torch).

    Args:
        features: channels ``C`` (dim 2 of ``[T, B, C, *spatial]``); ``None`` (default)
            infers it from the first input, so SpikingJelly's model zoo can build the node
            with ``spiking_neuron(**kwargs)``.
        tau: membrane time constant :math:`\tau_m` (TSSL-BP: 5).
        tau_s: the PSP filter's :math:`\tau_s` (TSSL-BP: 3).
        decay_input: accepted for ``LIFNode`` compatibility; only ``False`` is expressible.
        v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq,
        backend: as in SpikingJelly (see the module doc).
        gradient: ``"surrogate"`` (default; BPTT through the step loop with the surrogate) or
            ``"tsslbp"`` (TSSL-BP's backward, the paper's), the core's argument.
    """

    _nir_refusal = "its output is the post-synaptic potential, not the spike, which NIR's LIF cannot express"

    def __init__(
        self,
        features: int | None = None,
        *,
        tau: float = 5.0,
        tau_s: float = 3.0,
        decay_input: bool = False,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: object = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        store_v_seq: bool = False,
        backend: str | None = None,
        gradient: str = "surrogate",
    ) -> None:
        if decay_input is not False:
            raise ValueError(
                f"decay_input={decay_input!r} is not supported by PSPLIFNode, whose input is not "
                "scaled by 1/tau (u_t = (1 - 1/tau) u_{t-1} + x_t); pass decay_input=False"
            )
        core = PSPLIF(
            features,
            tau_m=tau,
            tau_s=tau_s,
            v_threshold=_threshold(v_threshold),
            gradient=gradient,
            surrogate=_surrogate(surrogate_function, "sigmoid"),
        )
        super().__init__(core, HARD_ZERO, v_reset, detach_reset, step_mode, store_v_seq, backend)

    #: as ``LIFNode.decay_input``: always ``False`` here (the constructor refuses ``True``)
    decay_input = False

    @property
    def tau(self) -> float:
        r"""The membrane time constant :math:`\tau_m`, as ``LIFNode.tau``; assigning it acts from the next step."""
        return self.core.tau_m

    @tau.setter
    def tau(self, value: float) -> None:
        self.core.tau_m = _time_constant(value, "tau")

    @property
    def tau_s(self) -> float:
        r"""The synaptic time constant :math:`\tau_s` of the PSP the node outputs; assigning it acts from the next
        step."""
        return self.core.tau_s

    @tau_s.setter
    def tau_s(self, value: float) -> None:
        self.core.tau_s = _time_constant(value, "tau_s")


# -- swapping the nodes of a built network ------------------------------------------------
def swap_nodes(
    net: torch.nn.Module,
    factory: Callable[[torch.nn.Module], torch.nn.Module],
    kind: type | tuple[type, ...] = neuron.BaseNode,
) -> int:
    """Replace every ``kind`` module inside ``net`` by ``factory(old)``; returns how many were replaced.

    For SpikingJelly networks that build their neurons themselves (``model.snas_net``,
    ``model.spike_dhs``, the examples' ``IFNode``/``LIFNode`` layers)::

        swap_nodes(
            net, lambda old: DecoupledLIFNode(tau=old.tau, decay_input=old.decay_input, v_threshold=old.v_threshold)
        )
        swap_nodes(net, lambda old: DecoupledIFNode(v_threshold=old.v_threshold), kind=neuron.IFNode)

    For SpikingJelly's soft-reset ``IFNode``, ``LIFNode``, ``ParametricLIFNode`` and ``CUBALIFNode``,
    :func:`from_spikingjelly` is simpler: it carries every constant, ``w`` and memory itself.

    ``factory`` receives the node being replaced (to carry over its constants); the new node
    takes the old one's ``step_mode``, the mode the network runs in. A node reachable by several
    paths is replaced by one new node everywhere. On SpikingJelly 2.0 the network's
    ``functional.reset_net`` cache is invalidated, so ``reset_net`` resets the new nodes. The new
    nodes are built where ``factory`` builds them: move the network (``net.to(device)``) after
    swapping. Every ``kind`` module inside ``net`` is replaced, an encoder's neuron too
    (``encoding.PopSpikeEncoderDeterministic`` holds an ``IFNode``): pass the sub-network whose
    neurons you mean to replace.

    Raises:
        TypeError: ``net`` is not an ``nn.Module``, ``kind`` not a class (or tuple of classes),
            or ``factory`` returns something that is not an ``nn.Module``.
        ValueError: ``net`` is itself a ``kind`` module (build the new node directly), or holds
            none (a network of its own neuron classes: pass ``kind``).
    """
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not kinds or not all(isinstance(k, type) for k in kinds):
        raise TypeError(f"kind must be a class or a tuple of classes, got {kind!r}")
    if isinstance(net, kinds):
        raise ValueError(
            f"net is itself a {type(net).__name__}, which cannot be swapped inside itself; build the new node directly"
        )
    replaced: dict[int, torch.nn.Module] = {}
    # every (parent, child name) first, then replace: the walk never sees a new node
    found = [
        (parent, name, child)
        for parent in net.modules()
        if not isinstance(parent, kinds)
        for name, child in parent._modules.items()  # named_children() would list a shared child once
        if isinstance(child, kinds)
    ]
    if not found:
        names = ", ".join(k.__qualname__ for k in kinds)
        raise ValueError(
            f"net holds no {names} module, so swap_nodes has nothing to replace; if it builds neurons of its own "
            "classes, pass kind= those classes"
        )
    for parent, name, old in found:
        if id(old) not in replaced:
            new = factory(old)
            if not isinstance(new, torch.nn.Module):
                raise TypeError(f"factory must return an nn.Module, got {type(new).__name__} for {type(old).__name__}")
            if hasattr(new, "step_mode") and hasattr(old, "step_mode"):
                new.step_mode = old.step_mode
            replaced[id(old)] = new
        setattr(parent, name, replaced[id(old)])
    invalidate = getattr(sj_functional, "invalidate_reset_cache", None)  # SpikingJelly 2.0
    if invalidate is not None and replaced:
        invalidate(net)
    return len(replaced)


def to_spikingjelly(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``net`` with our nodes swapped back to SpikingJelly's own (``net`` itself is left untouched; ``net``
    one of our nodes: SpikingJelly's node)::

        theirs.load_state_dict(to_spikingjelly(ours).state_dict())  # ours: theirs built with our nodes, trained

    ``DecoupledIFNode`` becomes ``neuron.IFNode``, ``DecoupledLIFNode`` ``neuron.LIFNode`` (with its ``tau`` and
    ``decay_input``; one learned for the layer, ``learn_decay="shared"``: ``neuron.ParametricLIFNode``),
    ``DecoupledParametricLIFNode`` ``neuron.ParametricLIFNode`` with its learned ``w``, and
    ``DecoupledCUBALIFNode`` ``neuron.CUBALIFNode`` (SpikingJelly 2.0), each with ``v_reset=None,
    detach_reset=True`` (the reset ours compute, so the copy gives the same spikes and input gradients), the
    threshold, the step mode, ``store_v_seq`` (on 0.0.0.0.14 the backend) and the surrogate: the SpikingJelly or
    other framework's object the node was built with, or SpikingJelly's ``ATan``/``Sigmoid``/``Rect`` for ours. A
    sequence stopped mid-way goes on: the memories ``v`` (and ``c``) are carried, detached (every memory of the copy
    is, as a saved state would be); ``v_seq`` is not. On SpikingJelly 2.0 the copy's ``functional.reset_net`` cache
    is invalidated.

    Raises:
        TypeError: ``net`` is not an ``nn.Module``.
        ValueError: ``net`` holds none of our nodes, or one SpikingJelly cannot express (``DynamicDecayNode``,
            ``PRFNode``, ``LTCNode``, ``PSPLIFNode``, a time constant learned per channel, a surrogate SpikingJelly
            lacks, ``CUBALIFNode`` on 0.0.0.0.14): the message names its path in ``net``, its class and why.
    """
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    if not any(isinstance(m, SpikingJellyNode) for m in net.modules()):
        raise ValueError(
            f"net ({type(net).__name__}) holds none of snn_parallel's SpikingJelly nodes, so to_spikingjelly has "
            "nothing to convert"
        )
    copied = _copy_without_graphs(net)
    paths: dict[int, str] = {}
    for path, module in copied.named_modules(remove_duplicate=False):
        if isinstance(module, SpikingJellyNode):
            paths.setdefault(id(module), f"net.{path}" if path else "net")

    def convert(node: SpikingJellyNode) -> torch.nn.Module:
        try:
            return node._to_spikingjelly()
        except ValueError as exc:
            where = paths[id(node)]
            raise ValueError(f"{where} ({type(node).__name__}) cannot become a SpikingJelly node: {exc}") from None

    if isinstance(copied, SpikingJellyNode):
        return convert(copied)
    swap_nodes(copied, convert, kind=SpikingJellyNode)
    return copied


#: SpikingJelly's nodes that :func:`from_spikingjelly` converts (exactly these classes, not their subclasses): our
#: node and its own arguments, read from SpikingJelly's node
_FROM_SPIKINGJELLY: dict[type, tuple[type[SpikingJellyNode], Callable[[Any], dict[str, Any]]]] = {
    neuron.IFNode: (DecoupledIFNode, lambda old: {}),
    neuron.LIFNode: (DecoupledLIFNode, lambda old: {"tau": old.tau, "decay_input": old.decay_input}),
    neuron.ParametricLIFNode: (DecoupledParametricLIFNode, lambda old: {"decay_input": old.decay_input}),  # w after
}
if hasattr(neuron, "CUBALIFNode"):  # SpikingJelly 2.0
    _FROM_SPIKINGJELLY[neuron.CUBALIFNode] = (
        DecoupledCUBALIFNode,
        lambda old: {"c_decay": old.c_decay, "v_decay": old.v_decay},
    )


def from_spikingjelly(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``net`` with SpikingJelly's soft-reset nodes swapped for ours, which train in parallel (``net`` itself
    is left untouched; ``net`` one of SpikingJelly's nodes: our node), the inverse of :func:`to_spikingjelly`::

        ours = from_spikingjelly(theirs)  # theirs: built with IFNode/LIFNode(v_reset=None, detach_reset=True), trained

    Exactly these classes convert (not their subclasses, such as ``OTTTLIFNode``): ``neuron.IFNode`` becomes
    ``DecoupledIFNode``, ``neuron.LIFNode`` ``DecoupledLIFNode`` (its ``tau`` and ``decay_input``),
    ``neuron.ParametricLIFNode`` ``DecoupledParametricLIFNode`` with its learned ``w`` (and its ``requires_grad``;
    ``init_tau``, which SpikingJelly's node does not keep, is the default 2.0) and
    ``neuron.CUBALIFNode`` (SpikingJelly 2.0) ``DecoupledCUBALIFNode`` (its ``c_decay`` and ``v_decay``), each
    with the threshold, the surrogate (a copy of SpikingJelly's object), the step mode, ``store_v_seq`` and, on
    0.0.0.0.14, the backend: the copy gives the same spikes, ``v`` and input and weight gradients (PLIF's ``w``
    gradient apart, see :class:`DecoupledParametricLIFNode`). Every other module, SpikingJelly's other nodes
    included, is copied as it is. A sequence stopped mid-way goes on: the memories ``v`` (and ``c``) are carried,
    detached; ``v_seq`` is not. Each new node takes the dtype and device of its node's tensors (PLIF's ``w``, the
    memories), or else of the network's first floating-point parameter or buffer. A node shared by several paths
    becomes one node. PLIF's ``w`` becomes a new parameter of the copy: build the optimizer on the copy.

    SpikingJelly's defaults, a hard reset (``v_reset=0.0``) and a reset that keeps its gradient
    (``detach_reset=False``), are refused: ours compute the soft reset only (a hard-reset network fires
    differently), and their reset's gradient is detached (the same spikes and values, other gradients: set
    ``node.detach_reset = True`` on SpikingJelly's nodes first to accept that).

    Raises:
        TypeError: ``net`` is not an ``nn.Module``.
        ValueError: ``net`` holds none of these classes, or one of them ours cannot compute: a hard reset
            (``v_reset`` a float, SpikingJelly's default), ``detach_reset=False``, a tensor threshold, or a surrogate
            ours cannot take. The message names its path in ``net``, its class and why; ``net`` is not copied.
    """
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    paths: dict[int, tuple[str, torch.nn.Module]] = {}
    for path, module in net.named_modules(remove_duplicate=False):
        if type(module) in _FROM_SPIKINGJELLY:
            paths.setdefault(id(module), (f"net.{path}" if path else "net", module))
    if not paths:
        names = ", ".join(cls.__name__ for cls in _FROM_SPIKINGJELLY)
        raise ValueError(
            f"net ({type(net).__name__}) holds none of SpikingJelly's {names}, so from_spikingjelly has nothing to "
            "convert"
        )
    floating = (t for t in itertools.chain(net.parameters(), net.buffers()) if t.is_floating_point())
    network_tensor = next(floating, None)
    memo: dict[int, Any] = {}  # each node's copy, the surrogates' copies: the network's copy reuses them
    for where, old in paths.values():
        try:
            memo[id(old)] = _from_spikingjelly_node(old, network_tensor, memo)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where} ({type(old).__name__}) cannot become an snn_parallel node: {exc}") from None
    return memo[id(net)] if id(net) in memo else _copy_without_graphs(net, memo)


def _from_spikingjelly_node(old: Any, network_tensor: torch.Tensor | None, memo: dict[int, Any]) -> SpikingJellyNode:
    """Our node computing SpikingJelly's node ``old`` (see :func:`from_spikingjelly`); ``ValueError`` or ``TypeError``
    with the reason where ours cannot."""
    if old.v_reset is not None:
        raise ValueError(
            f"it resets hard (v_reset={old.v_reset!r}, SpikingJelly's default), and snn_parallel's nodes compute "
            "only the soft reset v_reset=None (the threshold subtracted), which changes the dynamics: build and train "
            "the network with v_reset=None, detach_reset=True to convert it, or keep SpikingJelly's node"
        )
    if not old.detach_reset:
        raise ValueError(
            "detach_reset=False, and snn_parallel's nodes detach the reset's gradient: the spikes and values are the "
            "same but the gradients differ; to accept that, set node.detach_reset = True on the network's nodes first"
        )
    cls, arguments = _FROM_SPIKINGJELLY[type(old)]
    if isinstance(old.v_threshold, torch.Tensor):
        raise ValueError("its threshold is a tensor, where snn_parallel's node has one float")
    node = cls(
        v_threshold=old.v_threshold,
        surrogate_function=copy.deepcopy(old.surrogate_function, memo),
        step_mode=old.step_mode,
        store_v_seq=old.store_v_seq,
        **({} if SJ2 else {"backend": old.backend}),
        **arguments(old),
    )
    memories = node._memory_names() if isinstance(node, DecoupledCUBALIFNode) else ("v",)
    own = [t for t in (getattr(old, "w", None), *(getattr(old, m) for m in memories)) if isinstance(t, torch.Tensor)]
    like = own[0] if own else network_tensor
    if like is not None:
        node.to(device=like.device, dtype=like.dtype)
    if isinstance(node, DecoupledParametricLIFNode):  # its w, as from ParametricLIFNode's state dict
        node.load_state_dict({"w": old.w.detach()})
        node.core.decay_logit.requires_grad_(old.w.requires_grad)
    for name in memories:
        value = getattr(old, name)
        if isinstance(value, torch.Tensor):
            setattr(node, name, value.detach().clone())
        elif value != 0.0:  # at rest: 0.0 for the soft reset
            raise ValueError(f"its memory {name} is the float {value!r}, where snn_parallel's node rests at 0")
    return node


def _copy_without_graphs(net: torch.nn.Module, memo: dict[int, Any] | None = None) -> torch.nn.Module:
    """``copy.deepcopy(net, memo)``, with the memories (and ``v_seq``) of its memory modules detached: a tensor in an
    autograd graph, which a sequence stopped mid-way leaves there, cannot be deep-copied. ``memo`` may hold copies
    already made (``id(original) -> copy``), which the copy takes in place of those modules."""
    memo = {} if memo is None else memo
    for module in net.modules():
        if isinstance(module, base.MemoryModule):
            for value in (*module._memories.values(), module.__dict__.get("v_seq")):
                if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                    memo[id(value)] = value.detach().clone()
    return copy.deepcopy(net, memo)


# -- registration into SpikingJelly's namespaces ------------------------------------------
_TARGETS: tuple[tuple[Any, tuple[type, ...]], ...] = (
    (
        neuron,
        (
            DynamicDecayNode,
            PRFNode,
            DecoupledLIFNode,
            DecoupledIFNode,
            DecoupledParametricLIFNode,
            DecoupledCUBALIFNode,
            LTCNode,
            PSPLIFNode,
        ),
    ),
    (sj_surrogate, (sp_surrogate.MultiGaussian, sp_surrogate.DoubleGaussian)),
)
_added: list[tuple[Any, str, type]] = []
#: ``module.name`` strings that :func:`register` left alone because SpikingJelly defines them
skipped: list[str] = []


def register() -> None:
    """Make the nodes reachable as ``spikingjelly.activation_based.neuron.<Name>`` and our
    ``MultiGaussian``/``DoubleGaussian`` as ``spikingjelly.activation_based.surrogate.<Name>``.

    Idempotent; a name SpikingJelly already defines is never overwritten: it is skipped,
    recorded in :data:`skipped` and reported with a ``RuntimeWarning``. Undo with
    :func:`unregister`.
    """
    for module, classes in _TARGETS:
        for cls in classes:
            name = cls.__name__
            current = getattr(module, name, None)
            if current is cls:
                continue
            if current is not None:
                label = f"{module.__name__}.{name}"
                if label not in skipped:
                    skipped.append(label)
                    warnings.warn(
                        f"{label} already exists; snn_parallel did not overwrite it", RuntimeWarning, stacklevel=2
                    )
                continue
            setattr(module, name, cls)
            _added.append((module, name, cls))


def unregister() -> None:
    """Remove exactly the names :func:`register` added (those still bound to our classes)."""
    while _added:
        module, name, cls = _added.pop()
        if getattr(module, name, None) is cls:
            delattr(module, name)
    skipped.clear()
