"""Common contract of the neurons: :class:`Neuron`, the base class of every neuron.

Every neuron is an ``nn.Module`` over time-major tensors with two entry points that give
the same numbers:

- ``forward(x_seq, state=None, *, return_membrane=False)``: all ``T`` steps at once
  (parallel in training where the neuron has a parallel path); returns ``(spikes, state)``
  or ``(spikes, membrane, state)``;
- ``step(x_t, state=None)``: one step (streaming inference); returns ``(spike, state)``.

The state is a ``NamedTuple`` of tensors, so ``step`` is a pure function of
``(parameters, state, x_t)`` and can be carried between calls: ``forward`` over ``T``
steps equals ``T`` calls of ``step``, and two chained ``forward`` calls equal one.

**Extension points.** Both entry points check their inputs and resolve the state, then call
one of these hooks on the checked inputs:

- :meth:`Neuron.update` ``(x_t, state) -> (output, membrane, state)``, required: one step, a
  pure function of the parameters, the state and the input (HYPR differentiates it with
  ``torch.func``);
- :meth:`Neuron.update_sequence` ``(x_seq, state) -> (outputs, membrane, state)``, optional:
  all steps at once. The default loops :meth:`~Neuron.update` over time, which is all a
  sequential neuron (one whose spikes feed back into its state) needs; a neuron whose
  membrane is a linear recurrence overrides it with a parallel scan.
- :meth:`Neuron.update_sequence_outputs` ``(x_seq, state) -> (outputs, state)``, optional: the
  same without the membrane, for a ``forward`` not asked for it. The default drops
  :meth:`~Neuron.update_sequence`'s membrane; a neuron whose kernels can skip writing it overrides it.

**Lazy feature count.** ``features=None`` (the default) defers the channel count to the
first input, dim 2 of ``[T, B, C, ...]`` or dim 1 of ``[B, C, ...]``, as PyTorch's lazy
modules (``nn.LazyLinear``) do: the per-channel parameters are
``torch.nn.UninitializedParameter`` until then and are materialised in place, so an
optimizer built before the first call keeps working, ``load_state_dict`` materialises them
from the loaded shapes, ``copy.deepcopy`` copies them uninitialised, and
``DistributedDataParallel`` refuses them until a first (dry-run) call. A first call under
``torch.inference_mode()`` builds ordinary (trainable) tensors, unless the neuron was built
there; ``.bfloat16()``, like ``.half()``, converts them before the first call.

**Mixed precision.** Under ``torch.autocast`` a float16/bfloat16 input is cast up to the
neuron's own dtype (its parameters', float32 for a neuron without any), and the dynamics,
spikes and state are computed in it, as autocast does for its precision-sensitive ops
(``cumsum``, ``softmax``); the next layer casts the spikes down again. Outside autocast
the input's dtype must match the parameters' (``neuron.half()``, ``neuron.bfloat16()``).

**torch.compile.** The data-dependent input check (NaN/inf, :func:`snn_parallel.validation`)
is skipped while ``torch.compile`` traces, so a network compiles without graph breaks; the
structural checks (type, shape, dtype, device) stay. A lazy neuron's first call, which builds
its parameters, breaks the graph: ``fullgraph=True`` then raises with that advice (give
``features``, or run one call before compiling).
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter, is_lazy

from .._validation import (
    check_float,
    check_learn,
    check_same_device,
    check_sequence,
    check_state_tensor,
    check_step_input,
)
from ..ops._backend import BACKENDS, CupyUnavailableError
from ..surrogate import ForeignSurrogate, Surrogate, resolve

#: the dtypes autocast runs matrix products in, too coarse for long scans
LOW_PRECISION = (torch.float16, torch.bfloat16)


def upcast(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is float16/bfloat16, else as it is."""
    return x.float() if x.dtype in LOW_PRECISION else x


def _autocast_on(device_type: str) -> bool:
    """Whether autocast is enabled for ``device_type`` (the per-device API is torch >= 2.4); ``False``
    for devices that have no autocast (``meta``: the device check then names the input)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()
    except RuntimeError:
        return False


def _feature_count(x: object, dim: int) -> int | str:
    """The channel count of a lazy neuron's first input (``"C"`` where it has none, for the messages)."""
    return x.shape[dim] if isinstance(x, torch.Tensor) and x.dim() > dim else "C"


def check_features(features: object, name: str = "features") -> int | None:
    """``features`` as a positive int, or ``None`` (inferred at the first call)."""
    if features is None:
        return None
    if isinstance(features, bool) or not isinstance(features, int):
        raise TypeError(f"{name} must be a positive int or None (inferred from the first input), got {features!r}")
    if features < 1:
        raise ValueError(f"{name} must be a positive int or None (inferred from the first input), got {features!r}")
    return features


def check_threshold(value: object, name: str = "v_threshold") -> float | torch.Tensor:
    """A threshold: one finite number (a ``float``), or one finite value per channel, a 1-D real tensor ``[C]`` or
    a sequence of numbers (a float64 CPU copy)."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and value.is_floating_point():
        value = value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return check_float(value, name)
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value):
            raise TypeError(f"{name} must be a number or one number per channel, got {value!r}")
        value = torch.tensor(list(value), dtype=torch.float64)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a number, or one per channel (a [C] tensor), got {type(value).__name__}")
    if not value.is_floating_point():
        dtype = str(value.dtype).replace("torch.", "")
        raise TypeError(f"{name} must hold real floating-point values, got dtype {dtype}")
    if value.dim() != 1 or value.numel() == 0:
        raise ValueError(f"{name} must be one number or one per channel, shape [C], got shape {tuple(value.shape)}")
    value = value.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must hold finite values, got {value.tolist()}")
    return value.clone()


class _InputDtype(ForeignSurrogate):
    """A foreign surrogate whose spikes take the input's dtype (snnTorch's return float32 for
    any input, so a float64 or float16 neuron would get float32 spikes and a state it refuses)."""

    def __init__(self, inner: ForeignSurrogate) -> None:
        super().__init__(inner.fn, inclusive=inner.inclusive)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        spikes = super().__call__(x)
        if spikes.dtype == x.dtype or torch.compiler.is_compiling():
            return spikes.to(x.dtype)
        # its backward would get the gradient rounded to the spikes' dtype: our spike function instead, with
        # the framework's derivative taken at x's precision
        return Surrogate.__call__(self, x)

    def heaviside(self, x: torch.Tensor) -> torch.Tensor:
        return super().heaviside(x).to(x.dtype)


def step_loop(
    update: Callable[..., tuple[torch.Tensor, torch.Tensor, Any]], x_seq: torch.Tensor, state: Any, *coefficients: Any
) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """``update(x_t, state, *coefficients) -> (output, membrane, state)`` applied to each step of ``x_seq`` in
    order: ``(outputs, membrane, last_state)`` (the default :meth:`Neuron.update_sequence`; a neuron whose step
    derives ``coefficients`` from its parameters passes them, computed once for all steps)."""
    outputs, membranes = [], []
    for x_t in x_seq.unbind(0):
        output, membrane, state = update(x_t, state, *coefficients)
        outputs.append(output)
        membranes.append(membrane)
    return torch.stack(outputs), torch.stack(membranes), state


def neuron_surrogate(surrogate: object, default: Surrogate | None = None) -> Surrogate:
    """A neuron's ``surrogate`` argument resolved by :func:`~snn_parallel.surrogate.resolve`, or ``default``
    for ``None`` where the neuron has its own, with a framework's (foreign) spike function made to return
    the input's dtype."""
    if surrogate is None and default is not None:
        return default
    resolved = resolve(surrogate)
    if isinstance(resolved, ForeignSurrogate) and not isinstance(resolved, _InputDtype):
        return _InputDtype(resolved)
    return resolved


class Neuron(nn.Module):
    """Base class of every neuron: input checks, state handling and the lazy feature count.

    A subclass sets ``state_type`` (a ``NamedTuple`` of tensors) and implements
    :meth:`init_state` and the step hook :meth:`update`; a neuron with a parallel path also
    overrides :meth:`update_sequence` (the default loops :meth:`update` over time). Both hooks
    run on inputs that :meth:`forward` and :meth:`step` have checked. A subclass whose
    parameters are per channel declares them with :meth:`_declare` and builds their values in
    :meth:`_initial_values`, which makes it lazy for free; one that creates them itself needs
    ``features``. The documentation's "Adding a neuron" page walks through one.
    """

    state_type: type[NamedTuple]
    #: the number of spatial dims after the feature dim that the neuron accepts (``None``: any)
    max_spatial_dims: int | None = None
    #: each neuron's next state depends only on its own state and input (per-neuron Jacobians,
    #: which the HYPR learner relies on); ``False`` for neurons whose gates mix channels
    channelwise: bool = True

    def __init__(self, features: int | None = None, backend: str = "auto") -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        #: the channel count ``C``; ``None`` until the first input of a lazy neuron
        self.features = check_features(features)
        # not named `backend`: SpikingJelly 0.0.0.0.14 treats any module with that attribute as its own node
        self.ops_backend = backend
        self._declared: dict[str, bool] = {}
        # the declared buffers (not parameters) of a lazy neuron, built at its first input (those of a neuron given
        # its features are built here, never lost: see _lost_buffers)
        self._lazy_buffers: tuple[str, ...] = ()
        self._pending = self.features is None  # the feature count (and its tensors) still to come

    # -- public entry points -------------------------------------------------------------
    def forward(
        self, x_seq: torch.Tensor, state: NamedTuple | None = None, *, return_membrane: bool = False
    ) -> tuple[Any, ...]:
        """Run all time steps of ``x_seq`` ``[T, B, features, *spatial]`` in parallel.

        Returns ``(spikes, state)``, or ``(spikes, membrane, state)`` with
        ``return_membrane=True``; ``membrane`` is the potential compared with the threshold.

        Raises:
            RuntimeError: ``backend="cupy"`` where the CuPy kernels cannot run these inputs.
        """
        x_seq = self._checked(x_seq, "x_seq", check_sequence, channel_dim=2)
        state = self._resolve_state(state, x_seq[0])
        try:
            if return_membrane:
                return self.update_sequence(x_seq, state)
            return self.update_sequence_outputs(x_seq, state)
        except CupyUnavailableError as error:  # raised by the op: say which neuron and argument asked for it
            name = type(self).__name__
            raise RuntimeError(
                f"{name}(backend='cupy') cannot run the CuPy kernels of {error.op}: {error.reason}; "
                f"build the {name} with backend='torch' or 'auto'"
            ) from None

    def step(self, x_t: torch.Tensor, state: NamedTuple | None = None) -> tuple[torch.Tensor, NamedTuple]:
        """Advance one time step for ``x_t`` ``[B, features, *spatial]``; returns ``(spike, state)``."""
        x_t = self._checked(x_t, "x_t", check_step_input, channel_dim=1)
        return self._step_checked(x_t, state)

    def _step_checked(
        self, x_t: torch.Tensor, state: NamedTuple | None, *, state_values_checked: bool = False
    ) -> tuple[torch.Tensor, NamedTuple]:
        """:meth:`step` for an ``x_t`` that :meth:`_checked` has checked already (a framework skin checks it
        under its own argument name): the state resolved and checked, then one :meth:`update`.
        ``state_values_checked``: the state's values are known to be finite (a skin's own state, carried
        from its previous step), so only its type, shapes, dtypes and device are checked."""
        state = self._resolve_state(state, x_t, finite=not state_values_checked)
        spike, _, new_state = self.update(x_t, state)
        return spike, new_state

    def _checked(self, x: object, name: str, check: Any, channel_dim: int) -> torch.Tensor:
        """``x`` checked by ``check`` (``check_sequence`` or ``check_step_input``), cast up under
        autocast, with the neuron materialised for its feature count (dim ``channel_dim``)."""
        features = self.features if self.features is not None else _feature_count(x, channel_dim)
        x = self._autocast(check(x, name, features))
        self._check_spatial(x.dim() - channel_dim - 1, name)
        self._check_device(x, name)
        self.materialize(features)
        return x

    def init_state(self, x_t: torch.Tensor) -> NamedTuple:
        """The resting state for a batch shaped like the single step ``x_t``."""
        raise NotImplementedError

    def linear_response(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        r"""Per-channel ``(rho, gain)`` of a membrane that is linear in its input, resets aside:
        :math:`h_t = \rho\, h_{t-1} + g\, c_t` (:math:`\rho` real or complex, :math:`g` real,
        each ``[C]`` or a scalar, differentiable in the neuron's parameters), the spike being
        driven by :math:`\mathrm{Re}\, h_t`. ``None`` (the default) where the membrane is not
        linear, e.g. a decay that depends on the input. OTTT's ``trace="neuron"`` builds its
        eligibility traces from it (through :meth:`linear_stages`)."""
        return None

    def linear_stages(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...] | None:
        r"""The membrane as a cascade of first-order linear filters of its input, resets aside: per stage
        :math:`k = 1..K` a per-channel ``(rho_k, gain_k)`` (each ``[C]`` or a scalar, differentiable in the
        neuron's parameters) of

        .. math::

            h^{(k)}_t = \rho_k\, h^{(k)}_{t-1} + g_k\, h^{(k-1)}_t, \qquad h^{(0)}_t = c_t,

        the spike being driven by :math:`\mathrm{Re}\, h^{(K)}_t`; only the last stage's :math:`\rho_K` may be
        complex. The default is the one stage of :meth:`linear_response` (``None`` where that is ``None``); a
        synaptic current before the membrane is a stage of its own (:class:`~snn_parallel.neurons.SynapticLIF`).
        OTTT's ``trace="neuron"`` builds its eligibility traces from it."""
        response = self.linear_response()
        return None if response is None else (response,)

    # -- lazy feature count ----------------------------------------------------------------
    def materialize(self, features: int) -> None:
        """Fix the channel count of a lazy neuron and build its per-channel tensors in place
        (the first call does it by itself; a materialised neuron only checks the count)."""
        if not self._pending:  # a Python flag, so that torch.compile never looks inside
            if features != self.features:
                raise ValueError(f"{type(self).__name__} has {self.features} features, got {features!r}")
            if self._lost_buffers():
                self._restore_buffers()
            return
        features = check_features(features)
        if features is None:
            raise ValueError("features must be a positive int to materialize a neuron")
        if torch.compiler.is_compiling():  # built outside the graph; with fullgraph=True this message is the error
            torch._dynamo.graph_break(msg=self._compile_advice)
        # outside inference mode, so that a first call under torch.inference_mode() leaves trainable tensors,
        # unless the neuron was built in it: its placeholders are then inference tensors, filled only there
        built_in_inference = any(getattr(*self._owner(name)).data.is_inference() for name in self._declared)
        with torch.inference_mode(built_in_inference), torch.no_grad():
            values = self._initial_values(features)
            for name, is_parameter in self._declared.items():
                owner, attr = self._owner(name)
                current = getattr(owner, attr)
                if is_parameter:
                    if is_lazy(current):
                        current.materialize(values[name].shape)
                        current.copy_(values[name])
                elif current.numel() == 0:
                    owner.register_buffer(attr, values[name].to(current), persistent=True)
        self.features, self._pending = features, False
        self._on_materialize(features)

    def _lost_buffers(self) -> bool:
        """Whether a per-channel buffer built at the first input is empty again: ``torch.func.functional_call``
        (SpikingJelly's ``memopt.checkpoint_module`` runs the neuron in it) swaps the module's tensors for the
        given ones during the call and puts its own back after it, the empty placeholders of a first call made
        there included."""
        return any(getattr(*self._owner(name)).numel() == 0 for name in self._lazy_buffers)

    def _restore_buffers(self) -> None:
        """Build the lost buffers (:meth:`_lost_buffers`), which are never trained, again from the constructor's
        values, without drawing from the global random generator (the initial values of random parameters)."""
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            values = self._initial_values(self.features)
        for name in self._lazy_buffers:
            owner, attr = self._owner(name)
            current = getattr(owner, attr)
            if current.numel() == 0:
                owner.register_buffer(attr, values[name].to(current), persistent=True)

    @property
    def _compile_advice(self) -> str:
        return (
            f"{type(self).__name__} builds its per-channel parameters at its first input, which torch.compile "
            "cannot trace: give it features=C, or run one call before compiling with fullgraph=True"
        )

    def has_uninitialized_params(self) -> bool:
        """Whether the per-channel tensors still wait for the first input (as ``nn.LazyLinear``'s)."""
        return self._pending

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> nn.Module:
        """``.bfloat16()`` and the like on a lazy neuron: PyTorch's uninitialised parameters allow
        ``.to``/``.half``/``.double`` but refuse ``.bfloat16()``, so ``fn`` meets them as an empty
        tensor of their dtype and device, whose converted dtype and device they take (as under ``.half()``)."""
        if not self._pending:
            return super()._apply(fn, recurse)

        def applied(t: torch.Tensor) -> torch.Tensor:
            return fn(torch.empty(0, dtype=t.dtype, device=t.device)) if is_lazy(t) else fn(t)

        return super()._apply(applied, recurse)

    def _declare(self, **parameter: bool | str) -> None:
        """Declare the per-channel tensors (``name=True`` for a parameter, ``False`` for a
        buffer; a dotted name for a submodule's), whose values :meth:`_initial_values` builds,
        now or, for a lazy neuron, at the first input. ``name="shared"`` is one parameter for every
        channel, 0-d, built now from :meth:`_shared_values` (it does not depend on the channel count)."""
        shared = self._shared_values() if "shared" in parameter.values() else {}
        for name, is_parameter in parameter.items():
            owner, attr = self._owner(name)
            if is_parameter == "shared":
                owner.register_parameter(attr, nn.Parameter(shared[name].to(torch.get_default_dtype())))
                continue
            if is_parameter:
                owner.register_parameter(attr, UninitializedParameter())
            else:
                owner.register_buffer(attr, torch.empty(0))
                if self.features is None:
                    self._lazy_buffers += (name,)
            self._declared[name] = is_parameter
        if self.features is not None:
            self._pending = True
            self.materialize(self.features)

    def _initial_values(self, features: int) -> dict[str, torch.Tensor]:
        """The initial value of every declared tensor for ``features`` channels (dim 0 of each)."""
        return {}

    def _shared_values(self) -> dict[str, torch.Tensor]:
        """The initial value, 0-d, of every tensor that may be declared ``"shared"`` (in float64: a lazy neuron rounds
        it to its own dtype when it builds its tensors, so that a float64 one keeps it exact)."""
        return {}

    def _declare_threshold(self, v_threshold: object, learn_threshold: object) -> dict[str, bool]:
        """Set up a threshold :math:`V_{th}` that may be per channel and learned (``v_threshold``, ``learn_threshold``):
        one value, not learned, stays the float ``self.v_threshold`` (no tensor, no state-dict entry); one value
        learned with ``learn_threshold="shared"`` is a 0-d parameter ``v_threshold``, the same for every channel;
        otherwise ``v_threshold`` is a per-channel ``[C]`` parameter (``learn_threshold=True``) or buffer, built by
        :meth:`_threshold_values` from the value given. Returns the declaration to pass to :meth:`_declare`."""
        self.learn_threshold = check_learn(learn_threshold, "learn_threshold")
        threshold = check_threshold(v_threshold)
        if self.learn_threshold == "shared":
            if not isinstance(threshold, float):
                raise ValueError(
                    "learn_threshold='shared' learns one threshold for every channel: v_threshold must be one number, "
                    f"got {threshold.numel()} values (pass learn_threshold=True to learn one per channel)"
                )
            self.v_threshold = nn.Parameter(torch.tensor(threshold))
            return {}
        if isinstance(threshold, float) and not self.learn_threshold:
            self.v_threshold = threshold
            return {}
        self._threshold_init = threshold
        return {"v_threshold": self.learn_threshold}

    def _threshold_values(self, features: int) -> dict[str, torch.Tensor]:
        """The initial per-channel threshold of :meth:`_declare_threshold` for :meth:`_initial_values` (none where
        the threshold is a float or shared)."""
        init = getattr(self, "_threshold_init", None)
        if init is None:
            return {}
        if isinstance(init, float):
            return {"v_threshold": torch.full((features,), init, dtype=torch.float64)}
        if init.numel() != features:
            raise ValueError(f"v_threshold has {init.numel()} values, one per channel, for {features} features")
        return {"v_threshold": init}

    def _threshold_at(self, x: torch.Tensor, channel_dim: int) -> float | torch.Tensor:
        """:math:`V_{th}` for input ``x`` (channels at ``channel_dim``): the float, or the per-channel tensor (a shared
        one spread to every channel) viewed to broadcast over ``x``'s spatial dims."""
        threshold = self.v_threshold
        if isinstance(threshold, float):
            return threshold
        return self._channel_view(self._per_channel(threshold), x, channel_dim)

    def _per_channel(self, value: torch.Tensor) -> torch.Tensor:
        """A per-channel ``[C]`` tensor as it is, a shared 0-d one spread to the ``C`` channels (its gradient summed
        back by autograd; as it is before a lazy neuron knows ``C``)."""
        return value if value.dim() or self.features is None else value.expand(self.features)

    def _threshold_repr(self) -> str:
        threshold = self.v_threshold
        if isinstance(threshold, float):
            return f"v_threshold={threshold}"
        if threshold.dim() == 0:
            return f"v_threshold=learned shared {threshold.item():g}"
        return f"v_threshold={'learned ' if self.learn_threshold else ''}per channel"

    def _on_materialize(self, features: int) -> None:
        """Called once the per-channel tensors exist (e.g. to record sizes in submodules)."""

    def _owner(self, name: str) -> tuple[nn.Module, str]:
        path, _, attr = name.rpartition(".")
        return (self.get_submodule(path) if path else self), attr

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        """A lazy neuron's state dict holds its uninitialised parameters as they are, as ``LazyLinear``'s; a
        materialised one's, its lost buffers built again (:meth:`_lost_buffers`)."""
        if not self._pending and self._lost_buffers():
            self._restore_buffers()
        LazyModuleMixin._save_to_state_dict(self, destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Loading into a lazy neuron materialises it with the loaded feature count first."""
        if self._pending:
            for name in self._declared:
                loaded = state_dict.get(prefix + name)
                if (
                    isinstance(loaded, torch.Tensor)
                    and not is_lazy(loaded)
                    and loaded.dim() > 0
                    and loaded.shape[0] > 0
                ):
                    self.materialize(loaded.shape[0])
                    break
        super()._load_from_state_dict(state_dict, prefix, *args)

    # -- the hooks subclasses implement ----------------------------------------------------
    def update(self, x_t: torch.Tensor, state: NamedTuple) -> tuple[torch.Tensor, torch.Tensor, NamedTuple]:
        """One time step on checked inputs (required): ``x_t`` ``[B, C, *spatial]`` and a ``state_type``
        state to ``(output, membrane, new_state)``.

        ``output`` is what the neuron passes on (its spike; :class:`~snn_parallel.neurons.PSPLIF`'s
        post-synaptic potential), ``membrane`` the potential compared with the threshold. It must
        be a pure function of the parameters, ``state`` and ``x_t``: no attribute it changes, no
        randomness, so that :meth:`step` can be replayed and HYPR can take its Jacobians with
        ``torch.func`` (``functional_call`` swaps the parameters). :meth:`step` calls it after
        checking the input and resolving the state; call :meth:`step` rather than this to get the checks.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement update(x_t, state), its step")

    def update_sequence(self, x_seq: torch.Tensor, state: NamedTuple) -> tuple[torch.Tensor, torch.Tensor, NamedTuple]:
        """All time steps of ``x_seq`` ``[T, B, C, *spatial]`` on checked inputs (optional):
        ``(outputs, membrane, last_state)``, the first two ``[T, B, C, *spatial]``.

        The default is the step loop, :meth:`update` applied to each step in order; a neuron with
        a parallel path (a scan, a fused op) overrides it and must give the same numbers.
        :meth:`forward` calls it.
        """
        return step_loop(self.update, x_seq, state)

    def update_sequence_outputs(self, x_seq: torch.Tensor, state: NamedTuple) -> tuple[torch.Tensor, NamedTuple]:
        """:meth:`update_sequence` without the membrane (optional): ``(outputs, last_state)``, what
        :meth:`forward` calls when it is not asked for the membrane.

        The default drops :meth:`update_sequence`'s membrane. A neuron whose parallel path can skip
        the membrane overrides it (:class:`~snn_parallel.neurons.DynamicDecay`'s kernels then write
        only the spikes, a third less memory traffic in the forward).
        """
        outputs, _, last_state = self.update_sequence(x_seq, state)
        return outputs, last_state

    def _state_shapes(self, x_t: torch.Tensor) -> dict[str, tuple[int, ...]]:
        """Expected shape of each state field for a step input ``x_t`` (default: ``x_t``'s)."""
        return {name: tuple(x_t.shape) for name in self.state_type._fields}

    # -- helpers -------------------------------------------------------------------------
    def _channel_view(self, param: torch.Tensor, x: torch.Tensor, channel_dim: int) -> torch.Tensor:
        """View a per-channel ``[C]`` parameter so it broadcasts over ``x``'s spatial dims."""
        return param.view(param.shape[0], *([1] * (x.dim() - channel_dim - 1)))

    def _first_tensor(self) -> torch.Tensor | None:
        """The neuron's first parameter, else its first buffer (``None`` where it has neither)."""
        return next(itertools.chain(self.parameters(), self.buffers()), None)

    def _compute_dtype(self) -> torch.dtype:
        """The dtype the neuron computes in: its parameters' (float32 for a neuron without any)."""
        tensor = self._first_tensor()
        return torch.float32 if tensor is None else tensor.dtype

    def _autocast(self, x: torch.Tensor) -> torch.Tensor:
        """Under autocast, a float16/bfloat16 input is cast up to the neuron's own dtype."""
        if x.dtype in LOW_PRECISION and _autocast_on(x.device.type):
            return x.to(self._compute_dtype())
        return x

    def _check_spatial(self, spatial_dims: int, name: str) -> None:
        if self.max_spatial_dims is not None and spatial_dims > self.max_spatial_dims:
            features = "C" if self.features is None else self.features
            raise ValueError(
                f"{name} has {spatial_dims} dims after the feature dim; {type(self).__name__} "
                f"accepts [T, B, {features}] sequences and [B, {features}] steps only"
            )

    def _check_device(self, x: torch.Tensor, name: str) -> None:
        """``x`` must share the parameters' device and dtype (nothing is cast silently)."""
        param = self._first_tensor()
        if param is None:
            return
        owner = f"{type(self).__name__}'s parameters"
        check_same_device(x, name, param, owner)
        if x.dtype != param.dtype:
            raise TypeError(
                f"{name} must have dtype {param.dtype} to match {owner}, got {x.dtype}; "
                f"convert one of them (e.g. neuron.to({x.dtype}))"
            )

    def _resolve_state(self, state: NamedTuple | None, x_t: torch.Tensor, *, finite: bool = True) -> NamedTuple:
        if state is None:
            return self.init_state(x_t)
        if not isinstance(state, self.state_type):
            raise TypeError(
                f"state must be a {self.state_type.__name__} (as returned by this neuron), got {type(state).__name__}"
            )
        for field, shape in self._state_shapes(x_t).items():
            check_state_tensor(getattr(state, field), f"state.{field}", shape, x_t, "the input", finite=finite)
        return state

    def extra_repr(self) -> str:
        return f"features={self.features}"


#: the former name of :class:`Neuron`, kept so that code written against it keeps working
ParallelNeuron = Neuron
