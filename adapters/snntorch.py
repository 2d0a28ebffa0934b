r"""snnTorch drop-ins: our neurons behind the ``snntorch.Leaky`` interface.

Take an snnTorch model and change one class name::

    lif = snn.Leaky(beta=0.9, init_hidden=True)            # before
    lif = DynamicDecay(64, init_hidden=True)                # after (feature count first)

:class:`DynamicDecay`, :class:`PRF`, :class:`DecoupledLIF`, :class:`LTC` and :class:`PSPLIF` subclass
``snntorch.Leaky`` (``isinstance`` is snnTorch's only hook: ``utils.reset``, ``spikeplot``
and the losses rely on it), keep its constructor conventions (``threshold``,
``spike_grad``, ``init_hidden``, ``output``, ``learn_*``, ``reset_mechanism``,
``graded_spikes_factor``) and its call contract:

- ``forward(input_, mem=None)`` is **one** time step and returns ``(spk, mem)``, or ``spk``
  alone with ``init_hidden=True, output=False``; passing ``mem`` with ``init_hidden=True``
  raises ``TypeError``. The state is re-created when the input shape changes.
- ``multistep(x_seq, mem=None)`` runs a whole time-major ``[T, B, ...]`` sequence through
  the core neuron's parallel ``forward`` and returns ``(spk_seq, mem_seq)`` or
  ``spk_seq`` by the same rules; it leaves the state at the sequence end, so ``forward``
  can continue streaming from there.

The dynamics are not re-implemented: each adapter owns the core neuron of
:mod:`snn_parallel.neurons` as ``self.core`` (equations in :mod:`snn_parallel.neurons.dsn`,
:mod:`~snn_parallel.neurons.prf`, :mod:`~snn_parallel.neurons.lif`,
:mod:`~snn_parallel.neurons.ltc`) and translates conventions only.

**Firing rule.** snnTorch's: a spike when ``mem - threshold > 0`` (a membrane exactly at
the threshold does not fire). ``spike_grad`` is any snnTorch surrogate callable (default
``snntorch.surrogate.atan()``), resolved by :func:`snn_parallel.surrogate.resolve`, which
keeps the callable's own rule and rejects one without a derivative (``TypeError``). One of
our :class:`~snn_parallel.surrogate.Surrogate` objects keeps its own ``inclusive`` flag;
:func:`multi_gaussian` and :func:`double_gaussian` build them with snnTorch's rule.

**Reset.** Every reset here acts within the step that fired, i.e. like
``Leaky(..., reset_delay=False)``; ``reset_delay=True`` is rejected for a neuron that
resets. ``DecoupledLIF`` fires exactly like ``Leaky(beta, reset_delay=False)``
(``reset_mechanism="subtract"``). ``DynamicDecay`` and ``PRF`` (default) have no reset.

**State and** ``mem``. The core state (a ``NamedTuple``) lives in non-persistent buffers
``state_<field>`` (not in ``state_dict``, like Leaky's ``mem``). ``self.mem`` and the ``mem``
that ``forward`` takes and returns are the state's **first field**; a ``mem`` passed in
replaces that field only. ``multistep``'s ``mem_seq`` is the potential compared with the
threshold at each step (the core's ``return_membrane``):

================  ====================================  =====================================
class             ``forward``'s ``mem`` (= ``self.mem``)   ``multistep``'s ``mem_seq``
================  ====================================  =====================================
DynamicDecay      membrane :math:`H_t`                   the same
PRF               real part :math:`u_t`                  :math:`u_t - b_t` (:math:`u_t` w/o reset)
DecoupledLIF      reset-free membrane :math:`u'_t`       :math:`u'_t - b_t`, the LIF membrane
LTC               membrane after reset :math:`\hat u_t`  membrane before reset :math:`u_t`
PSPLIF            membrane after reset :math:`\hat u_t`  membrane before reset :math:`u_t`
================  ====================================  =====================================

Assigning ``neuron.mem = m`` (as snnTorch's ``Leaky.reset_hidden``, ``reset_mem`` and
``init_leaky`` do) sets the membrane to ``m`` with every other state field at rest, so
snnTorch's reset utilities reset the whole state. ``Leaky.detach_hidden()`` (snnTorch's,
called on ``snn.Leaky``) detaches ``mem`` only, in place, which fails on a state that is a
view; call it on one of our classes (``DynamicDecay.detach_hidden()``), which detaches
every field, or use :func:`reset`.

:func:`reset` resets the neurons of one network (nested included), unlike
``snntorch.utils.reset``, which scans only direct children and resets every ``Leaky`` in
the process. :func:`register` / :func:`unregister` expose the classes as
``snntorch.DynamicDecay`` etc.; nothing is registered on import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import snntorch
import snntorch.surrogate
import torch
from torch import nn

from snn_parallel import neurons
from snn_parallel.surrogate import DoubleGaussian as _DoubleGaussian
from snn_parallel.surrogate import MultiGaussian as _MultiGaussian
from snn_parallel.surrogate import Surrogate, resolve

__all__ = [
    "LeakyAdapter",
    "DynamicDecay",
    "PRF",
    "DecoupledLIF",
    "LTC",
    "PSPLIF",
    "reset",
    "multi_gaussian",
    "double_gaussian",
    "register",
    "unregister",
    "registration",
]

#: the ``beta`` handed to ``Leaky.__init__``; Leaky's ``beta`` buffer is not used here
_UNUSED_BETA = 0.0


def _scalar(value: object, name: str) -> float:
    """A Python float from a number or a one-element tensor (the core neurons take floats)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a single value here (per-neuron values are not supported), got shape {tuple(value.shape)}")
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number or a one-element tensor, got {type(value).__name__}")
    return float(value)


def _in_input_dtype(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """snnTorch's surrogates return float32 spikes for any input; give spikes the input's
    dtype, which the core neurons' state (LTC keeps the last spike) expects."""

    def spike(x: torch.Tensor) -> torch.Tensor:
        return fn(x).to(x.dtype)

    return spike


class LeakyAdapter(snntorch.Leaky):
    """The base of every class here: maps snnTorch's Leaky contract onto a core neuron ``self.core``.

    Subclasses (your own neuron's skin included, see tutorial 5) set :attr:`_core_type` and
    :attr:`_resets` and call ``super().__init__`` with a function that builds the core neuron
    from the resolved surrogate and threshold.
    """

    _core_type: ClassVar[type[neurons.ParallelNeuron]]
    #: the ``reset_mechanism`` values the core neuron expresses
    _resets: ClassVar[tuple[str, ...]]
    core: neurons.ParallelNeuron

    def __init__(
        self,
        make_core: Callable[[Surrogate, float], neurons.ParallelNeuron],
        *,
        threshold: float | torch.Tensor,
        spike_grad: Any,
        init_hidden: bool,
        output: bool,
        reset_mechanism: str,
        surrogate_disable: bool = False,
        inhibition: bool = False,
        learn_threshold: bool = False,
        state_quant: Any = False,
        graded_spikes_factor: float | torch.Tensor = 1.0,
        learn_graded_spikes_factor: bool = False,
        reset_delay: bool = False,
    ) -> None:
        """``make_core(surrogate, threshold)`` builds the core neuron.

        Everything that can fail runs before ``Leaky.__init__``, which adds the neuron to
        snnTorch's global ``instances`` list (whose resets would meet a half-built neuron).
        """
        name = type(self).__name__
        unsupported = {
            "surrogate_disable": surrogate_disable,
            "inhibition": inhibition,
            "learn_threshold": learn_threshold,
            "state_quant": state_quant,
        }
        for arg, value in unsupported.items():
            if value is not False:
                raise ValueError(f"{arg}={value!r} is not supported by {name}; leave it at False")
        if reset_mechanism not in self._resets:
            raise ValueError(f"reset_mechanism={reset_mechanism!r} is not supported by {name}; use one of {self._resets}")
        if reset_delay and reset_mechanism != "none":
            raise ValueError(
                f"reset_delay=True is not supported by {name}: its reset acts within the step that "
                "fired, as Leaky(reset_delay=False) does; pass reset_delay=False"
            )
        threshold_value = _scalar(threshold, "threshold")
        if spike_grad is None:
            spike_grad = snntorch.surrogate.atan()  # Leaky's default
        surrogate = resolve(
            spike_grad if isinstance(spike_grad, Surrogate) or not callable(spike_grad) else _in_input_dtype(spike_grad),
            inclusive=False,
            name="spike_grad",
        )
        core = make_core(surrogate, threshold_value)
        super().__init__(
            _UNUSED_BETA,
            threshold=threshold_value,
            spike_grad=spike_grad,
            init_hidden=init_hidden,
            reset_mechanism=reset_mechanism,
            output=output,
            graded_spikes_factor=graded_spikes_factor,
            learn_graded_spikes_factor=learn_graded_spikes_factor,
            reset_delay=reset_delay,
        )
        self.core = core
        self._threshold = threshold_value

    # -- state: one non-persistent buffer per core state field ---------------------------
    @property
    def _state_names(self) -> tuple[str, ...]:
        return tuple(f"state_{field}" for field in self._core_type.state_type._fields)

    def _init_mem(self) -> None:
        """Called by ``Leaky.__init__``: register the state buffers (empty until the first step)."""
        for name in self._state_names:
            self.register_buffer(name, torch.zeros(0), persistent=False)

    def _state(self) -> NamedTuple:
        return self._core_type.state_type(*(getattr(self, name) for name in self._state_names))

    def _store(self, state: NamedTuple) -> None:
        for name, value in zip(self._state_names, state):
            setattr(self, name, value)

    @property
    def mem(self) -> torch.Tensor:
        """The membrane: the core state's first field (see the module docstring's table)."""
        return getattr(self, self._state_names[0])

    @mem.setter
    def mem(self, value: torch.Tensor) -> None:
        """Set the membrane to ``value`` and every other state field to rest (a reset)."""
        self._store(self._with_membrane(self.core.init_state(value), value))

    def _with_membrane(self, state: NamedTuple, mem: torch.Tensor) -> NamedTuple:
        return state._replace(**{state._fields[0]: mem})

    def _initial_state(self, step_shape: torch.Size, mem: torch.Tensor | None) -> NamedTuple | None:
        """The state to start from; ``None`` lets the core start at rest (new input shape)."""
        if mem is not None and self.init_hidden:
            raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
        if mem is not None and not isinstance(mem, torch.Tensor):
            raise TypeError(f"mem must be a torch.Tensor or None, got {type(mem).__name__}")
        state = self._state()
        fresh = state[0].shape != step_shape
        if mem is not None and mem.shape == step_shape:  # like Leaky, a mem of another shape is ignored
            return self._with_membrane(self.core.init_state(mem) if fresh else state, mem)
        return None if fresh else state

    def _returns(self, spk: torch.Tensor, mem: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        spk = spk * self.graded_spikes_factor
        if self.init_hidden and not self.output:
            return spk
        return spk, mem

    # -- entry points --------------------------------------------------------------------
    def forward(self, input_: torch.Tensor, mem: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """One time step for ``input_`` ``[B, features, ...]``; see the module docstring."""
        if not isinstance(input_, torch.Tensor):
            raise TypeError(f"input_ must be a torch.Tensor, got {type(input_).__name__}")
        spk, state = self.core.step(input_, self._initial_state(input_.shape, mem))
        self._store(state)
        return self._returns(spk, state[0])

    def multistep(self, x_seq: torch.Tensor, mem: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """All steps of ``x_seq`` ``[T, B, features, ...]`` in parallel; ``mem`` as in :meth:`forward`."""
        if not isinstance(x_seq, torch.Tensor) or x_seq.dim() < 1:
            raise TypeError(f"x_seq must be a time-major torch.Tensor [T, B, ...], got {type(x_seq).__name__}")
        spk_seq, mem_seq, state = self.core(x_seq, self._initial_state(x_seq.shape[1:], mem), return_membrane=True)
        self._store(state)
        return self._returns(spk_seq, mem_seq)

    @classmethod
    def detach_hidden(cls) -> None:
        """Detach the state of every ``Leaky`` in the process from its graph (global, as in
        snnTorch); our neurons detach every state field, not just ``mem``."""
        for neuron in cls.instances:
            if isinstance(neuron, LeakyAdapter):
                neuron._store(tuple(value.detach() for value in neuron._state()))
            elif isinstance(neuron, snntorch.Leaky):
                neuron.mem.detach_()

    def extra_repr(self) -> str:
        return f"threshold={self._threshold}, reset_mechanism={self.reset_mechanism!r}, init_hidden={self.init_hidden}, output={self.output}"


class DynamicDecay(LeakyAdapter):
    """snnTorch skin of :class:`snn_parallel.neurons.DynamicDecay` (DSN, reset-free).

    Args:
        features: channels ``C`` (dim 1 of a step ``[B, C, ...]``).
        threshold: :math:`V_{th}` of binary mode (``v_threshold``).
        spike_grad: snnTorch surrogate (binary mode).
        kernel_size, tau, init_decay, spike_mode, levels: as in the core neuron; the decay is
            always learned (the convolution), so there is no ``beta``/``learn_beta``.
        reset_mechanism: ``"none"`` only (the DSN has no reset).
        **leaky_options: snnTorch's remaining ``Leaky`` options, at supported values.
    """

    _core_type = neurons.DynamicDecay
    _resets = ("none",)

    def __init__(
        self,
        features: int,
        *,
        threshold: float | torch.Tensor = 1.0,
        spike_grad: Any = None,
        kernel_size: int = 4,
        tau: float = 0.25,
        init_decay: float = 0.9,
        spike_mode: str = "binary",
        levels: int = 4,
        init_hidden: bool = False,
        output: bool = False,
        reset_mechanism: str = "none",
        **leaky_options: Any,
    ) -> None:
        super().__init__(
            lambda surrogate, v_threshold: neurons.DynamicDecay(
                features, kernel_size=kernel_size, tau=tau, init_decay=init_decay, spike_mode=spike_mode,
                levels=levels, v_threshold=v_threshold, surrogate=surrogate,
            ),
            threshold=threshold, spike_grad=spike_grad, init_hidden=init_hidden, output=output,
            reset_mechanism=reset_mechanism, **leaky_options,
        )


class PRF(LeakyAdapter):
    """snnTorch skin of :class:`snn_parallel.neurons.PRF` (parallel resonate-and-fire).

    Args:
        features: channels ``C``.
        threshold: :math:`V_{th}`.
        spike_grad: snnTorch surrogate.
        tau, dt_range, fr_scale, mode: as in the core neuron.
        learn_beta: learn the decay rate (core ``learn_decay``).
        reset_mechanism: ``"none"`` (the paper's PRF, default) or ``"subtract"`` (core
            ``reset=True``: a soft reset through a decaying threshold bias).
        **leaky_options: snnTorch's remaining ``Leaky`` options, at supported values.
    """

    _core_type = neurons.PRF
    _resets = ("none", "subtract")

    def __init__(
        self,
        features: int,
        *,
        threshold: float | torch.Tensor = 1.0,
        spike_grad: Any = None,
        tau: float = 2.0,
        learn_beta: bool = False,
        dt_range: tuple[float, float] = (0.001, 0.1),
        fr_scale: float = 1.0,
        mode: str = "scan",
        init_hidden: bool = False,
        output: bool = False,
        reset_mechanism: str = "none",
        **leaky_options: Any,
    ) -> None:
        super().__init__(
            lambda surrogate, v_threshold: neurons.PRF(
                features, tau=tau, learn_decay=learn_beta, dt_range=dt_range, fr_scale=fr_scale,
                reset=reset_mechanism == "subtract", v_threshold=v_threshold, surrogate=surrogate, mode=mode,
            ),
            threshold=threshold, spike_grad=spike_grad, init_hidden=init_hidden, output=output,
            reset_mechanism=reset_mechanism, **leaky_options,
        )


class DecoupledLIF(LeakyAdapter):
    r"""snnTorch skin of :class:`snn_parallel.neurons.DecoupledLIF`: a subtract-reset LIF
    trained in parallel, firing exactly like ``snn.Leaky(beta, reset_delay=False)``.

    Args:
        features: channels ``C``.
        beta: decay in ``(0, 1)``; the core's :math:`\tau = 1/(1-\beta)`. The decay in use is
            ``self.core.beta`` (Leaky's own ``beta`` buffer is unused).
        threshold: :math:`V_{th}`.
        spike_grad: snnTorch surrogate.
        learn_beta: learn a per-channel decay (core ``learn_decay``).
        reset_mechanism: ``"subtract"`` only.
        **leaky_options: snnTorch's remaining ``Leaky`` options, at supported values.
    """

    _core_type = neurons.DecoupledLIF
    _resets = ("subtract",)

    def __init__(
        self,
        features: int,
        *,
        beta: float | torch.Tensor = 0.5,
        threshold: float | torch.Tensor = 1.0,
        spike_grad: Any = None,
        learn_beta: bool = False,
        init_hidden: bool = False,
        output: bool = False,
        reset_mechanism: str = "subtract",
        **leaky_options: Any,
    ) -> None:
        decay = _scalar(beta, "beta")
        if not 0 < decay < 1:
            raise ValueError(f"beta must be in (0, 1), got {decay}")
        super().__init__(
            lambda surrogate, v_threshold: neurons.DecoupledLIF(
                features, tau=1 / (1 - decay), learn_decay=learn_beta, v_threshold=v_threshold, surrogate=surrogate,
            ),
            threshold=threshold, spike_grad=spike_grad, init_hidden=init_hidden, output=output,
            reset_mechanism=reset_mechanism, **leaky_options,
        )


class LTC(LeakyAdapter):
    """snnTorch skin of :class:`snn_parallel.neurons.LTC` (liquid time constant, adaptive
    threshold, hard reset). Steps are ``[B, features]``.

    Args:
        features: neurons ``C``.
        threshold: the baseline threshold (core ``b0``); the adaptive threshold adds
            :math:`\\beta_a b_t` to it.
        spike_grad: snnTorch surrogate (the reference code's is
            ``multi_gaussian()``).
        mode, beta_a: as in the core neuron.
        reset_mechanism: ``"zero"`` only.
        **leaky_options: snnTorch's remaining ``Leaky`` options, at supported values.
    """

    _core_type = neurons.LTC
    _resets = ("zero",)

    def __init__(
        self,
        features: int,
        *,
        threshold: float | torch.Tensor = 0.1,
        spike_grad: Any = None,
        mode: str = "paper",
        beta_a: float = 1.8,
        init_hidden: bool = False,
        output: bool = False,
        reset_mechanism: str = "zero",
        **leaky_options: Any,
    ) -> None:
        super().__init__(
            lambda surrogate, b0: neurons.LTC(features, mode=mode, b0=b0, beta_a=beta_a, surrogate=surrogate),
            threshold=threshold, spike_grad=spike_grad, init_hidden=init_hidden, output=output,
            reset_mechanism=reset_mechanism, **leaky_options,
        )


class PSPLIF(LeakyAdapter):
    r"""snnTorch skin of :class:`snn_parallel.neurons.PSPLIF`, TSSL-BP's LIF whose output is its
    post-synaptic potential (:mod:`snn_parallel.neurons.psp_lif`): ``spk`` (and ``multistep``'s
    ``spk_seq``) is the PSP :math:`a_t`, not the spike.

    Args:
        features: channels ``C``.
        beta: membrane decay in ``[0, 1)``; the core's :math:`\tau_m = 1/(1-\beta)` (TSSL-BP: 0.8).
        tau_s: the PSP filter's :math:`\tau_s`.
        threshold: :math:`V_{th}`.
        spike_grad: snnTorch surrogate, used with ``gradient="surrogate"`` and in ``forward`` (one step).
        gradient: ``"tsslbp"`` (TSSL-BP's backward in ``multistep``) or ``"surrogate"``.
        reset_mechanism: ``"zero"`` only (a hard reset).
        **leaky_options: snnTorch's remaining ``Leaky`` options, at supported values.
    """

    _core_type = neurons.PSPLIF
    _resets = ("zero",)

    def __init__(
        self,
        features: int,
        *,
        beta: float | torch.Tensor = 0.8,
        tau_s: float = 3.0,
        threshold: float | torch.Tensor = 1.0,
        spike_grad: Any = None,
        gradient: str = "tsslbp",
        init_hidden: bool = False,
        output: bool = False,
        reset_mechanism: str = "zero",
        **leaky_options: Any,
    ) -> None:
        decay = _scalar(beta, "beta")
        if not 0 <= decay < 1:
            raise ValueError(f"beta must be in [0, 1), got {decay}")
        super().__init__(
            lambda surrogate, v_threshold: neurons.PSPLIF(
                features, tau_m=1 / (1 - decay), tau_s=tau_s, v_threshold=v_threshold, gradient=gradient, surrogate=surrogate,
            ),
            threshold=threshold, spike_grad=spike_grad, init_hidden=init_hidden, output=output,
            reset_mechanism=reset_mechanism, **leaky_options,
        )


def reset(net: nn.Module) -> None:
    """Reset the state of every ``snntorch.Leaky`` (ours included) inside ``net``, nested
    ones too, and of no other network; the new state is at rest and carries no graph."""
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be an nn.Module, got {type(net).__name__}")
    for module in net.modules():
        if isinstance(module, snntorch.Leaky):
            module.reset_mem()


# -- surrogates in snnTorch's factory style -----------------------------------------------
def multi_gaussian(sigma: float = 0.3, scale: float = 6.0, height: float = 0.15, gamma: float = 0.5) -> _MultiGaussian:
    """LTC-SNN's multi-Gaussian surrogate firing on ``x > 0`` (snnTorch's rule), as a ``spike_grad``."""
    return _MultiGaussian(sigma, scale, height, gamma, inclusive=False)


def double_gaussian(sigma: float = 0.5, scale: float = 6.0, height: float = 0.15, gamma: float = 0.5) -> _DoubleGaussian:
    """HYPR's double-Gaussian surrogate firing on ``x > 0`` (snnTorch's rule), as a ``spike_grad``."""
    return _DoubleGaussian(sigma, scale, height, gamma, inclusive=False)


# -- registration into the snntorch namespace --------------------------------------------
def _exports() -> dict[tuple[Any, str], object]:
    """What :func:`register` adds: ``(module, name) -> object``."""
    return {
        (snntorch, "DynamicDecay"): DynamicDecay,
        (snntorch, "PRF"): PRF,
        (snntorch, "DecoupledLIF"): DecoupledLIF,
        (snntorch, "LTC"): LTC,
        (snntorch, "PSPLIF"): PSPLIF,
        (snntorch.surrogate, "MultiGaussian"): multi_gaussian,
        (snntorch.surrogate, "DoubleGaussian"): double_gaussian,
    }


_ABSENT = object()
_added: dict[tuple[Any, str], object] = {}
_skipped: set[str] = set()


def register() -> None:
    """Make the classes reachable as ``snntorch.DynamicDecay``, ``snntorch.PRF``,
    ``snntorch.DecoupledLIF``, ``snntorch.LTC`` and the surrogate factories as
    ``snntorch.surrogate.MultiGaussian()`` / ``DoubleGaussian()`` (factories, called like
    snnTorch's, that return our surrogate with snnTorch's firing rule).

    Idempotent; a name snnTorch already defines is left alone and recorded (see
    :func:`registration`). Never runs on import.
    """
    for (module, name), obj in _exports().items():
        current = getattr(module, name, _ABSENT)
        if current is obj:
            continue
        if current is not _ABSENT:
            _skipped.add(f"{module.__name__}.{name}")
            continue
        setattr(module, name, obj)
        _added[(module, name)] = obj


def unregister() -> None:
    """Remove exactly what :func:`register` added (a name rebound since is left alone)."""
    for (module, name), obj in _added.items():
        if getattr(module, name, None) is obj:
            delattr(module, name)
    _added.clear()
    _skipped.clear()


def registration() -> dict[str, list[str]]:
    """``{"added": [...], "skipped": [...]}``: the qualified names :func:`register` added,
    and those it left alone because snnTorch (or someone else) already defined them."""
    return {
        "added": sorted(f"{module.__name__}.{name}" for module, name in _added),
        "skipped": sorted(_skipped),
    }
