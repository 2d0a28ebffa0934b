r"""snnTorch drop-ins: our neurons behind the ``snntorch.Leaky`` interface.

Take an snnTorch model and change one class name::

    lif = snn.Leaky(beta=0.9, init_hidden=True)            # before
    lif = DynamicDecay(init_hidden=True)                    # after (feature count inferred)

The feature count is optional (``None``: inferred from the first step, as ``nn.LazyLinear``
does; see :class:`snn_parallel.neurons.Neuron`).

:class:`DynamicDecay`, :class:`PRF`, :class:`DecoupledLIF`, :class:`LTC` and :class:`PSPLIF` subclass
``snntorch.Leaky`` (``isinstance`` is snnTorch's only hook: ``utils.reset``, ``spikeplot``
and the losses rely on it), keep its constructor conventions (``threshold``,
``spike_grad``, ``init_hidden``, ``output``, ``learn_*``, ``reset_mechanism``,
``graded_spikes_factor``; an option a neuron cannot express is refused with the reason, as are
``snn.RLeaky``'s recurrent options and ``snn.DeltaLeaky``'s ``delta_threshold``: no skin is
recurrent, its state depending on its input only) and its call contract (:class:`Synaptic`, the drop-in for
``snn.Synaptic``, subclasses ``snntorch.Synaptic`` instead and keeps its contract, ``(spk, syn, mem)``;
:class:`Lapicque`, the drop-in for ``snn.Lapicque``, subclasses ``snntorch.Lapicque`` and keeps Leaky's):

- ``forward(input_, mem=None)`` is **one** time step and returns ``(spk, mem)``, or ``spk``
  alone with ``init_hidden=True, output=False``; passing ``mem`` with ``init_hidden=True``
  raises ``TypeError``. The state is re-created when the input shape changes. A step ``[C]``
  or a scalar (``snn.Leaky`` is elementwise) runs as the one sample ``[1, C]``. The channel
  count is fixed by the first input (the neurons have per-channel parameters), so another one,
  or a feature map into ``LTC``, is a ``ValueError`` naming ``input_`` (``x_seq``).
- ``multistep(x_seq, mem=None)`` runs a whole time-major ``[T, B, ...]`` sequence through
  the core neuron's parallel ``forward`` and returns ``(spk_seq, mem_seq)`` or
  ``spk_seq`` by the same rules; it leaves the state at the sequence end, so ``forward``
  can continue streaming from there.

The dynamics are not re-implemented: each adapter owns the core neuron of
:mod:`snn_parallel.neurons` as ``self.core`` (equations in :mod:`snn_parallel.neurons.dsn`,
:mod:`~snn_parallel.neurons.prf`, :mod:`~snn_parallel.neurons.lif`,
:mod:`~snn_parallel.neurons.ltc`) and translates conventions only.

**Firing rule.** snnTorch's: a spike when ``mem - threshold > 0`` (a membrane exactly at
the threshold does not fire). ``spike_grad`` is any snnTorch surrogate callable, resolved by
:func:`snn_parallel.surrogate.resolve`, which keeps the callable's own rule and rejects one
without a derivative (``TypeError``). The default is Leaky's, ``snntorch.surrogate.atan()``
(``neuron.spike_grad``), which the core computes in closed form,
:class:`~snn_parallel.surrogate.ATan` ``(alpha=2, inclusive=False)``: the same spikes and
gradient, and a ``multistep`` that compiles with ``torch.compile(fullgraph=True)``.
snnTorch's ``atan(alpha)``, ``sigmoid(slope)`` and ``fast_sigmoid(slope)`` passed as
``spike_grad`` become ours the same way (``ATan``, ``Sigmoid``, ``FastSigmoid``; the CUDA kernels
run them), ``neuron.spike_grad`` staying the callable passed. Any other snnTorch callable does
not compile whole in ``multistep``: its derivative is taken by autograd inside the backward,
which the graph cannot hold; pass one of our surrogates instead. One of
our :class:`~snn_parallel.surrogate.Surrogate` objects keeps its own ``inclusive`` flag;
:func:`multi_gaussian` and :func:`double_gaussian` build them with snnTorch's rule.
``surrogate_disable=True`` is snnTorch's: the spikes are the Heaviside step with no gradient through them
(``spike_grad`` ignored, ``neuron.spike_grad`` snnTorch's bypass), so a loss reaches the weights through ``mem``
only; ``DecoupledLIF``, :class:`Synaptic` and :class:`Lapicque` then give ``snn.Leaky``'s, ``snn.Synaptic``'s and
``snn.Lapicque``'s gradients, with ``reset_delay=False`` too (whose spike subtracted carries no gradient then; but
``multistep`` gives a learned decay its gradient through the reset-free membrane, as without the option). It is
refused where the spike's gradient is not ``spike_grad``'s (``DynamicDecay(spike_mode="integer")``,
``PSPLIF(gradient="tsslbp")``). The spikes keep the input's dtype (snnTorch's bypass returns float32).

**Reset.** ``DecoupledLIF`` and :class:`Synaptic` reset as snnTorch's default ``snn.Leaky`` and
``snn.Synaptic`` do (``reset_delay=True``, their default too): the threshold is subtracted one step after the
spike, undecayed, :math:`u_t = \beta u_{t-1} + x_t - V_{th}\,\mathrm{sg}(s_{t-1})`, and their spikes, ``mem``
and (decays fixed) gradients are snnTorch's, its reset's spike being detached too. With ``reset_delay=False``
the reset acts within the step that fired: they then fire like ``Leaky(beta, reset_delay=False)`` as long as
one subtraction brings the membrane below the threshold (``Leaky`` subtracts once more at the next step where
it does not), their gradient treating the reset as a constant where ``Leaky(reset_delay=False)`` also
backpropagates through the :math:`-V_{th} s_t` of the step that fired. The other skins that reset do so within
the step that fired and refuse ``reset_delay=True``. :class:`Lapicque` resets as ``snn.Lapicque`` does, one step
after the spike, undecayed, its spike detached: its spikes, ``mem`` and gradients are snnTorch's (its decay
:math:`1 - \Delta t/(RC)` and input gain :math:`\Delta t/C` held by the core).
``DecoupledLIF(reset_mechanism="none")`` is ``Leaky(reset_mechanism="none")``, the leaky integrator that
snnTorch's regression tutorials read by its membrane: with no reset to detach, its spikes, ``mem`` and every
gradient (weights, a learned ``beta`` and threshold) are ``snn.Leaky``'s. ``DynamicDecay`` and ``PRF``
(default) have no reset.

**Defaults.** ``DynamicDecay``'s ``threshold`` defaults to 0.25 and ``PRF``'s to 0.1 (the
core neurons' is 1.0): their membranes follow the input with gain about 1, where
``snn.Leaky`` integrates it with gain :math:`1/(1-\beta)`, so these are the thresholds at
which they fire and train in networks written for ``snn.Leaky`` (the snnTorch tutorials').
``PSPLIF``'s is 0.5 (TSSL-BP's 1.0), as it passes on its PSP, about a third of a spike,
and it trains with the surrogate unless ``gradient="tsslbp"``.

**Parameters.** ``threshold`` is one value for all neurons: a number, or a tensor whose entries
are equal (snnTorch's per-neuron ``torch.ones(C)``), kept in snnTorch's buffer in its shape.
``DecoupledLIF`` and ``PRF`` also take one per channel, a ``[C]`` tensor of different values (or
``[C, 1, ...]`` over feature maps, as ``snn.Leaky`` broadcasts it). ``learn_threshold=True`` learns it as
``snn.Leaky`` does: from a number (or a tensor of one entry) one threshold for the layer, a 0-d parameter (the
core's ``learn_threshold="shared"``), from a per-neuron tensor one per channel, ``[C]``. ``neuron.threshold`` is
then the core's own ``v_threshold``, the ``nn.Parameter`` an optimizer trains (a per-channel one unlearned is a
buffer), one tensor that nothing has to keep in step. The threshold's gradient is
``snn.Leaky``'s: through the spike's argument and through the reset, which subtracts
:math:`V_{th}\,\mathrm{sg}(s_t)`. The other skins refuse a per-neuron or learned threshold, saying so.
``DecoupledLIF``'s ``beta`` may be per channel, as ``snn.Leaky``'s; equal values are one value,
read back in their shape. ``learn_beta=True`` (and ``Synaptic``'s ``learn_alpha``) learns it as ``snn.Leaky``
does too: from a number one decay for the layer (the core's 0-d ``decay_logit``, :math:`\beta = \sigma(w)`,
read back 0-d), from a per-neuron tensor one per channel. Assigning ``neuron.threshold`` (or
``DecoupledLIF.beta``) retunes the core, as ``snn.Leaky`` reads them at every step (a learned or per-channel
value is copied in place, so an optimizer keeps training it; different values for one learned as one value
are refused, a ``ValueError`` naming it); ``graded_spikes_factor`` may be per neuron. A ``snn.Leaky`` state
dict's ``threshold`` loads into the core (one value standing for every channel of a per-channel one), its
learned ``beta`` and ``threshold`` into the skin's (a per-neuron one into one learned as one value is refused,
as ``snn.Leaky`` refuses it), and the skin's state dict carries ``threshold`` back to ``snn.Leaky``.
``reset_mechanism`` is fixed at construction, and a state dict with another one is refused.

**State and** ``mem``. The core state (a ``NamedTuple``) lives in non-persistent buffers
``state_<field>`` (not in ``state_dict``, like Leaky's ``mem``). ``self.mem`` and the ``mem``
that ``forward`` takes and returns are the state's **first field**; a ``mem`` passed in
replaces that field only. ``forward`` returns the stored tensor itself (``mem is neuron.mem``,
as for ``snn.Leaky``), so a step loop that passes it back carries the state on unchanged,
without checking its values again; any other ``mem`` is checked, as is one assigned to
``neuron.mem``. ``multistep``'s ``mem_seq`` is the potential compared with the
threshold at each step (the core's ``return_membrane``). ``DecoupledLIF`` differs: by default
(``mem="leaky"``) it keeps and returns ``snn.Leaky``'s ``mem``, so that a ``mem`` passed in is its whole
state: with the delayed reset the potential :math:`u_t`, whose pending subtraction :math:`V_{th} s_t` the
next step recomputes from it (as ``snn.Leaky`` does), else the membrane after the step's reset:

================  ========================================  =====================================
class             ``forward``'s ``mem`` (= ``self.mem``)       ``multistep``'s ``mem_seq``
================  ========================================  =====================================
DynamicDecay      membrane :math:`H_t`                       the same
PRF               real part :math:`u_t`                      :math:`u_t - b_t` (:math:`u_t` w/o reset)
DecoupledLIF      potential :math:`u_t` (delayed reset)     the same (``mem="leaky"``)
                  or :math:`u_t - V_{th} s_t` (in step)
Lapicque          potential :math:`u_t` (delayed reset)     the same
  (reset_free)    reset-free filter :math:`u'_t`             :math:`u'_t - b_t = u_t`
LTC               membrane after reset :math:`\hat u_t`      membrane before reset :math:`u_t`
PSPLIF            membrane after reset :math:`\hat u_t`      membrane before reset :math:`u_t`
================  ========================================  =====================================

Under a trainer of :mod:`snn_parallel.learners`, which runs whole sequences, the model still
reads ``forward``'s ``mem`` at every step (the first column).

Assigning ``neuron.mem = m`` (as snnTorch's ``Leaky.reset_hidden``, ``reset_mem`` and
``init_leaky`` do) sets the membrane to ``m`` with every other state field at rest, so
snnTorch's reset utilities reset the whole state. ``snn.Leaky.detach_hidden()``, which
``snntorch.backprop.TBPTT`` calls, detaches ``mem`` in place only: the other fields are
detached with it before the next step, so ``backprop.TBPTT`` and ``backprop.BPTT`` work
with every skin. ``DynamicDecay.detach_hidden()`` etc. detach every field at once.

**beta and NIR.** ``DecoupledLIF.beta`` is its decay in ``(0, 1]`` (a scalar, learned or not, or per
channel; 1 is no leak, the integrate-and-fire neuron, and cannot be learned: the core learns
:math:`\sigma(w)`), which snnTorch's NIR export writes as the LIF time constant (``inf`` for 1) with
the threshold and ``v_reset = 0``, as it writes every ``snn.Leaky`` whatever its ``reset_mechanism``
(NIR's LIF resets to ``v_reset``: it has neither a subtractive reset nor none), so the skin is exported
as the ``snn.Leaky`` it replaces. The other skins have no constant membrane decay: reading
``beta`` raises a ``TypeError`` with the reason, so snnTorch's NIR export refuses them instead
of writing a wrong LIF, and passing ``beta=`` is refused likewise (``PSPLIF`` takes ``beta``,
its membrane decay, but is no Leaky: its output is the PSP).

**Back to snnTorch.** :func:`to_snntorch` returns a copy of a network with ``snn.Leaky`` in place of each
``DecoupledLIF`` (``snn.Synaptic`` of ``Synaptic``, ``snn.Lapicque`` of ``Lapicque``), the trained values, options
and state carried, so that a network trained with the skins loads into the one written with snnTorch's neurons
and goes where only those go (NIR export, sharing with users of snnTorch alone)::

    original.load_state_dict(to_snntorch(trained).state_dict())

**From snnTorch.** :func:`from_snntorch` is its inverse: a copy of a network written with snnTorch's neurons
(trained or loaded from a checkpoint) with :class:`DecoupledLIF` in place of each ``snn.Leaky`` (exactly that class),
:class:`Synaptic` of ``snn.Synaptic`` and :class:`Lapicque` of ``snn.Lapicque``, options, trained values and state
carried, so that it trains in parallel without editing its code; snnTorch's other neurons stay as they are. The copy
has new parameters (a learned ``beta`` becomes the skin's logit): build the optimizer from it::

    model = from_snntorch(model)
    optimizer = torch.optim.Adam(model.parameters())

**StateLeaky and LinearLeaky.** On snnTorch 1.0, :class:`StateLeaky` and :class:`LinearLeaky` are the drop-ins for
``snn.StateLeaky`` and ``snn.LinearLeaky``, snnTorch's leaky neuron without reset over whole sequences ``[T, B, C]``:
subclasses keeping snnTorch's constructor, attributes, call and state dict, whose membrane, snnTorch's causal
convolution with :math:`e^{-k/\tau}` (:math:`O(T^2)` per channel), is the :math:`O(T)` scan
:math:`m_t = \rho m_{t-1} + x_t - \rho^K x_{t-K}`, :math:`\rho = e^{-1/\tau}` (``K``:
``kernel_truncation_steps``), their spikes snnTorch's through the surrogates above (see
``snn_parallel.adapters._snntorch_stateleaky``). They are no :class:`LeakyAdapter` (no core neuron, no step
``forward``); :func:`from_snntorch` and :func:`to_snntorch` swap them with snnTorch's. Before snnTorch 1.0 the
names raise ``AttributeError`` saying so.

:func:`reset` resets the neurons of one network (nested included), unlike
``snntorch.utils.reset``, which scans only direct children and resets every ``Leaky`` in
the process. :func:`register` / :func:`unregister` expose the classes as
``snntorch.DynamicDecay`` etc. (:class:`Synaptic` and :class:`Lapicque` as ``snntorch.SynapticLIF`` and
``snntorch.LapicqueLIF``); nothing is registered on import.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple

import snntorch
import snntorch.surrogate
import torch
from torch import nn

from snn_parallel import neurons
from snn_parallel._validation import (
    check_bool,
    check_choice,
    check_float,
    check_sequence,
    check_state_tensor,
    check_step_input,
    check_tensor,
)
from snn_parallel.neurons.base import check_threshold
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
    "Synaptic",
    "Lapicque",
    "reset",
    "to_snntorch",
    "from_snntorch",
    "multi_gaussian",
    "double_gaussian",
    "register",
    "unregister",
    "registration",
]

#: the ``beta`` handed to ``Leaky.__init__``, which registers no buffer for it here
_UNUSED_BETA = 0.0
#: why the options of ``snn.Leaky`` that the neurons cannot express are refused (each accepted at ``False``)
_UNEXPRESSED = {
    "inhibition": "the core neuron has no lateral inhibition (the option lets only the neuron with the largest "
    "membrane of each sample fire at each step)",
    "learn_threshold": "the core neuron's threshold is a constant, not a parameter (assigning neuron.threshold "
    "retunes it, but it is not trained); DecoupledLIF, PRF and DynamicDecay learn theirs, as snn.Leaky (one value "
    "from a number, one per channel from a per-neuron tensor)",
    "state_quant": "the core neuron's state is not quantised at each step (the option rounds mem after every update, "
    "which would change its dynamics)",
}
#: where a per-neuron threshold is refused: the skins that take one
_PER_CHANNEL_SKINS = (
    " (DecoupledLIF, PRF and DynamicDecay take one threshold per channel, and learn it with learn_threshold=True)"
)
#: ``snn.Leaky``'s remaining options, each accepted at the value the core expresses
_LEAKY_OPTIONS = (
    *_UNEXPRESSED,
    "surrogate_disable",
    "graded_spikes_factor",
    "learn_graded_spikes_factor",
    "reset_delay",
)
#: ``snn.Synaptic``'s remaining options, each accepted at the value the core expresses
_SYNAPTIC_OPTIONS = ("surrogate_disable", "inhibition", "state_quant")
#: the options of snnTorch's other neurons, which a user swapping one of them for a skin may still pass: why not
_OTHER_NEURONS = {
    **dict.fromkeys(
        ("V", "all_to_all", "linear_features", "conv2d_channels", "kernel_size", "learn_recurrent"),
        "{name} takes no {arg}, which belongs to snn.RLeaky's recurrent connection (its spikes fed back into the "
        "membrane): {name} has none, its state depending on its input only, which lets it run all time steps in "
        "parallel. Drop {arg} for a feed-forward layer (called as forward(input_, mem), without spk), or keep "
        "snn.RLeaky",
    ),
    "delta_threshold": "{name} takes no delta_threshold, snn.DeltaLeaky's threshold on the change of the membrane "
    "between steps: {name} fires when its membrane exceeds threshold. Pass threshold=..., or keep snn.DeltaLeaky",
}


class _Bypass(Surrogate):
    """snnTorch's spike function under ``surrogate_disable=True`` (its ``_surrogate_bypass``): the Heaviside step on
    ``x > 0``, through which no gradient flows (:math:`g'(x) = 0`), so that the spikes are constants to autograd,
    as snnTorch's comparison is."""

    name = "bypass"

    def __init__(self) -> None:
        super().__init__(inclusive=False)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def _spike_surrogate(spike_grad: Any, surrogate_disable: bool) -> tuple[Any, Surrogate]:
    """``(spike_grad, surrogate)``: snnTorch's ``spike_grad`` (its default ``atan()`` for ``None``) and the surrogate
    computing its spikes and gradient (see the module docstring); :class:`_Bypass` where ``surrogate_disable``, as
    snnTorch then ignores ``spike_grad``."""
    if surrogate_disable:
        return spike_grad, _Bypass()
    if spike_grad is None:  # snnTorch's default, which resolves to our ATan(alpha=2, inclusive=False)
        spike_grad = snntorch.surrogate.atan()
    return spike_grad, resolve(spike_grad, inclusive=False, name="spike_grad")


def _one_value(tensor: torch.Tensor) -> bool:
    """Whether the entries of a non-empty ``tensor`` are all equal (a per-neuron tensor that is one value)."""
    flat = tensor.detach().reshape(-1)
    return bool((flat == flat[0]).all())


def _scalar(value: object, name: str, hint: str = "") -> float:
    """A finite Python float from a number or a tensor of one value (the core neurons take floats):
    a per-neuron tensor whose entries are all equal, such as ``0.9 * torch.ones(C)``, is that value.
    ``hint`` ends the message for a tensor of several values."""
    if isinstance(value, torch.Tensor):
        flat = value.detach().reshape(-1)
        if flat.numel() > 1 and _one_value(flat):
            flat = flat[:1]
        if flat.numel() != 1:
            raise ValueError(
                f"{name} must be one value for all neurons here: the core neuron has one {name} for all its "
                f"channels, where snn.Leaky takes one per neuron; got shape {tuple(value.shape)}"
                f"{' with different values' if flat.numel() else ''}. Pass a number{hint}"
            )
        value = flat.item()
    return check_float(value, name)


def _channel_threshold(value: object) -> float | torch.Tensor:
    """A per-channel skin's ``threshold``: one finite value as a float (a number, or a tensor of equal entries), or
    one per channel, a tensor ``[C]`` (or ``[C, 1, ...]``, broadcasting over spatial dims as ``snn.Leaky``'s would)."""
    if isinstance(value, torch.Tensor) and value.numel() > 1 and not _one_value(value):
        if value.dim() > 1 and all(size == 1 for size in value.shape[1:]):
            value = value.reshape(-1)
        return check_threshold(value, "threshold")
    return _scalar(value, "threshold")


def _refuse_surrogate_disable(options: dict[str, Any], where: str, instead: str) -> None:
    """Refuses snnTorch's ``surrogate_disable=True`` (given among ``options``) on a skin whose spike gradient is not
    ``spike_grad``'s, which the option replaces: ``where`` names the skin and its gradient, ``instead`` the option
    that takes it."""
    if check_bool(options.get("surrogate_disable", False), "surrogate_disable"):
        raise ValueError(
            f"surrogate_disable=True is not supported by {where}, which the option replaces; use {instead} or leave "
            "surrogate_disable at False"
        )


def _learned(value: object, learn: object, name: str) -> bool | str:
    """How the core learns what snnTorch learns as ``nn.Parameter(value)`` where ``learn`` (``learn_<...>``, named
    ``name``) is set: a number or a tensor of one entry is one value for every neuron (``"shared"``, the core's 0-d
    parameter), a per-neuron tensor one value per channel (``True``, even with equal entries); ``False``: not
    learned."""
    if not check_bool(learn, name):
        return False
    return True if isinstance(value, torch.Tensor) and value.numel() > 1 else "shared"


def _check_factor(value: object) -> None:
    """``graded_spikes_factor``: a finite number, or a tensor of finite values (per neuron, as
    ``snn.Leaky`` takes it: the spikes are multiplied by it)."""
    if not isinstance(value, torch.Tensor):
        check_float(value, "graded_spikes_factor")
    elif value.is_complex() or value.dtype == torch.bool or not bool(torch.isfinite(value).all()):
        raise ValueError(f"graded_spikes_factor must hold finite real values, got {value}")


def _tau(decay: float) -> float:
    """The core's time constant :math:`1/(1-d)` for a decay ``d`` in ``(0, 1]`` (``inf`` for 1: no leak)."""
    return math.inf if decay == 1 else 1 / (1 - decay)


class _Decay:
    """A skin's constant decay as snnTorch reads and writes it (``beta``; ``Synaptic``'s ``alpha`` too): one value in
    ``(0, 1)`` (``(0, 1]`` with ``no_leak``), read back in the shape it was given, or one per channel (snnTorch's
    per-neuron tensor). The core holds it as its time constant ``tau`` (:math:`1/(1-d)`, ``inf`` for 1) and its
    per-channel logit ``logit``, a parameter where its flag ``learn`` is set (``learned``: that flag, from
    :func:`_learned`, checked against a decay of 1), a 0-d one where it is ``"shared"`` (snnTorch's learned scalar);
    its property ``read`` is the per-channel decay."""

    def __init__(
        self,
        name: str,
        value: object,
        *,
        tau: str,
        logit: str,
        learn: str,
        read: str,
        learned: bool | str,
        no_leak: bool = False,
    ) -> None:
        self.name, self.tau, self.logit, self.learn, self.read_attr = name, tau, logit, learn, read
        #: the core takes ``tau = inf``, a decay of exactly 1 (no leak: the IF neuron), unless it is learned
        self.no_leak = no_leak
        #: per-channel values given to the constructor, loaded (as a state dict's) once the core exists
        self.pending = (
            value if isinstance(value, torch.Tensor) and value.numel() > 1 and not _one_value(value) else None
        )
        if self.pending is not None and any(size != 1 for size in value.shape[1:]):
            raise ValueError(
                f"{name} must be one value, or one per channel ([C], or [C, 1, ...] over feature maps), got shape "
                f"{tuple(value.shape)} with different values: the core neuron has one {name} per channel, where "
                f"snnTorch's per-neuron {name} may differ within a feature map"
            )
        initial = 0.5 if self.pending is not None else _scalar(value, name)  # the core starts from a placeholder
        given = torch.tensor([initial]) if self.pending is None else self.pending.detach().reshape(-1)
        self._check(given.to("cpu", torch.float64), learned, "")
        #: the core's time constant for the value given (``inf`` for a decay of 1)
        self.initial_tau = _tau(initial)
        self.shape = value.shape if isinstance(value, torch.Tensor) else torch.Size()
        self.per_channel = False  # different values per channel, which the core's tau cannot hold

    def _check(self, values: torch.Tensor, learned: bool | str, owner: str) -> None:
        r"""Refuse decays (float64 ``values``, non-empty) outside ``(0, 1)`` (``(0, 1]`` where :attr:`no_leak`), and
        a decay of 1 that is to be learned (the core learns :math:`\sigma(w)`, which 1 pins at :math:`w = \infty`)."""
        shown = values.item() if values.numel() == 1 else values.tolist()
        if not bool(torch.isfinite(values).all()):
            raise ValueError(f"{self.name} must be a finite number, or finite numbers{owner}, got {shown}")
        if not bool(((values > 0) & (values <= 1 if self.no_leak else values < 1)).all()):
            limits = "(0, 1]" if self.no_leak else "(0, 1)"
            raise ValueError(f"{self.name} must be in {limits}{owner}, got {shown}")
        if learned and bool((values == 1).any()):
            raise ValueError(
                f"learn_{self.name}=True needs {self.name} below 1, got {self.name}={shown}: the decay is learned as "
                f"a sigmoid of a parameter, which cannot reach 1 nor learn its way back from it. Pass "
                f"learn_{self.name}=False for {self.name} = 1 (no leak, the integrate-and-fire neuron), or a "
                f"{self.name} below 1 to learn it"
            )

    def read(self, core: neurons.Neuron) -> torch.Tensor:
        """The decay: in the shape given (0-dim for a number), ``[C]`` where learned or loaded per channel; one learned
        value (snnTorch's scalar parameter) in the shape given too."""
        learn = getattr(core, self.learn)
        if learn == "shared":
            return torch.sigmoid(getattr(core, self.logit)).expand(self.shape)
        if learn or self.per_channel:
            return getattr(core, self.read_attr)
        logit = getattr(core, self.logit)
        return torch.full(self.shape, 1 - 1 / getattr(core, self.tau), device=logit.device, dtype=logit.dtype)

    def load(self, value: object, state_dict: dict[str, Any], key: str, core: neurons.Neuron, owner: str) -> None:
        """Put ``value`` in ``state_dict`` as the core's decay under ``key``; one value (or equal values) also sets
        the core's time constant, from which :meth:`read` reads it back. A decay learned as one value takes one value
        only (``snn.Leaky`` refuses a per-neuron one for its scalar parameter too)."""
        value = torch.as_tensor(value).detach().to("cpu", torch.float64)
        if value.numel() == 0:
            raise ValueError(f"{self.name} must hold one value, or one per channel, got an empty tensor")
        learn = getattr(core, self.learn)
        self._check(value, learn, f" ({owner}'s decay)")
        flat = value.reshape(-1)
        per_channel = not _one_value(flat)
        if per_channel and learn == "shared":
            raise ValueError(
                f"{self.name} is learned as one value for all neurons ({owner} built with learn_{self.name}=True and "
                f"one {self.name}, as snnTorch learns a scalar), got {flat.numel()} different values; build {owner} "
                f"with a per-neuron {self.name} tensor to learn one per neuron"
            )
        features = core.features if core.features is not None else flat.numel()
        if per_channel and flat.numel() != features:
            raise ValueError(f"{self.name} has {flat.numel()} values for {features} features")
        self.per_channel, self.shape = per_channel, value.shape
        if not per_channel:
            flat = flat[:1]
            setattr(core, self.tau, _tau(float(flat[0])))
            if learn == "shared":
                state_dict[key] = torch.logit(flat[0])
                return
            if core.features is None:  # the lazy core builds its decay from tau at the first input
                state_dict[key] = getattr(core, self.logit)
                return
        state_dict[key] = torch.logit(flat.expand(features)).clone()

    def follow(self, logit: torch.Tensor, core: neurons.Neuron) -> None:
        """Read the decay back as the core's loaded ``logit`` holds it: one value (the core's time constant set
        from it), or one per channel."""
        flat = logit.detach().reshape(-1)
        self.per_channel = flat.numel() > 0 and not _one_value(flat)
        if flat.numel() and not self.per_channel:
            setattr(core, self.tau, _tau(float(torch.sigmoid(flat[0].double()))))

    def describe(self, core: neurons.Neuron) -> str:
        learn = getattr(core, self.learn)
        if learn == "shared":
            return f"learned {torch.sigmoid(getattr(core, self.logit)).item():g}"
        return "per channel" if learn or self.per_channel else f"{1 - 1 / getattr(core, self.tau):g}"


def _membrane_decay(beta: object, learned: bool | str) -> _Decay:
    """A skin's membrane decay ``beta``: the core's ``tau`` (``inf`` for ``beta = 1``, no leak), ``decay_logit`` and
    ``learn_decay``."""
    return _Decay(
        "beta", beta, tau="tau", logit="decay_logit", learn="learn_decay", read="beta", learned=learned, no_leak=True
    )


def _decay_property(name: str, doc: str) -> property:
    """A skin's decay ``name`` (a :class:`_Decay` of its ``_decays``), assigned as on snnTorch's neurons: the new value
    loaded as a state dict's ``name``."""

    def read(skin: _CoreSkin) -> torch.Tensor:
        return skin._decays[name].read(skin.core)

    def write(skin: _CoreSkin, value: float | torch.Tensor) -> None:
        skin.load_state_dict({name: torch.as_tensor(value)}, strict=False)

    return property(read, write, doc=doc)


class _CoreSkin:
    """What every skin shares, whichever snnTorch neuron it subclasses (``snntorch.Leaky`` for
    :class:`LeakyAdapter`'s, ``snntorch.Synaptic`` for :class:`Synaptic`): the core neuron ``self.core`` built from
    snnTorch's arguments, its threshold read and written as snnTorch's ``threshold``, the fixed
    ``reset_mechanism``, the input checks and the spikes returned."""

    _core_type: ClassVar[type[neurons.Neuron]]
    #: the ``reset_mechanism`` values the core neuron expresses
    _resets: ClassVar[tuple[str, ...]]
    #: the core neuron takes a threshold per channel and learns it (``v_threshold``, ``learn_threshold``)
    _threshold_per_channel: ClassVar[bool] = False
    #: the skin's constant decays by snnTorch name (``beta``, ``alpha``), loaded from snnTorch's state dicts
    _decays: Mapping[str, _Decay] = MappingProxyType({})  # each skin with decays sets its own
    #: the snnTorch neuron whose contract the skin keeps (in messages)
    _snntorch_name: ClassVar[str] = "Leaky"
    #: the core neuron expresses snnTorch's ``reset_delay=True`` (its ``reset_delay``)
    _delayed_reset: ClassVar[bool] = False
    core: neurons.Neuron

    def _build_core(
        self,
        make_core: Callable[[Surrogate, float | torch.Tensor], neurons.Neuron],
        threshold: float | torch.Tensor,
        spike_grad: Any,
        reset_mechanism: str,
        options: dict[str, Any],
    ) -> tuple[neurons.Neuron, dict[str, Any]]:
        """The checks every skin makes before snnTorch's ``__init__`` (which adds the neuron to snnTorch's global
        ``instances`` list, whose resets would meet a half-built neuron), then the core neuron:
        ``(core, the arguments snnTorch's __init__ takes from the skin's)``, its ``threshold`` buffer ``None`` where
        the core holds a per-channel one. ``make_core(surrogate, threshold)`` builds it
        (``threshold``: a float, or a ``[C]`` tensor where :attr:`_threshold_per_channel`); ``options`` are
        snnTorch's options (``init_hidden`` and ``output`` among them), refused where the core cannot express
        them."""
        name = type(self).__name__
        for arg, reason in _UNEXPRESSED.items():
            if options.get(arg, False) is not False:
                raise ValueError(f"{arg}={options[arg]!r} is not supported by {name}: {reason}; leave it at False")
        check_bool(options["init_hidden"], "init_hidden")
        check_bool(options["output"], "output")
        if reset_mechanism not in self._resets:
            raise ValueError(
                f"reset_mechanism={reset_mechanism!r} is not supported by {name}; use one of {self._resets}"
                f"{self._reset_refusal(reset_mechanism)}"
            )
        delayed = check_bool(options["reset_delay"], "reset_delay")
        if delayed and reset_mechanism != "none" and not self._delayed_reset:
            raise ValueError(
                f"reset_delay=True is not supported by {name}: its reset acts within the step that "
                f"fired, as {self._snntorch_name}(reset_delay=False) does; pass reset_delay=False"
            )
        # the shape given, in which to_snntorch gives back a threshold the core holds as [C] or 0-d (a plain
        # attribute, set before snnTorch's __init__ makes this a Module)
        self._threshold_shape = threshold.shape if isinstance(threshold, torch.Tensor) else torch.Size()
        if self._threshold_per_channel:
            threshold_value = _channel_threshold(threshold)
        else:
            threshold_value = _scalar(threshold, "threshold", _PER_CHANNEL_SKINS)
        surrogate_disable = check_bool(options.get("surrogate_disable", False), "surrogate_disable")
        spike_grad, surrogate = _spike_surrogate(spike_grad, surrogate_disable)
        core = make_core(surrogate, threshold_value)
        if not isinstance(getattr(core, "v_threshold", None), torch.Tensor):
            # snnTorch's buffer in the shape given (per-neuron for its NIR export); the core takes the value
            buffer = threshold.detach() if isinstance(threshold, torch.Tensor) else torch.as_tensor(threshold_value)
        else:  # per channel or learned: neuron.threshold is the core's tensor itself (see threshold)
            buffer = None
        snntorch_arguments = {
            "threshold": buffer,
            "spike_grad": spike_grad,
            "surrogate_disable": surrogate_disable,
            "init_hidden": options["init_hidden"],
            "output": options["output"],
            "reset_mechanism": reset_mechanism,
            "reset_delay": options["reset_delay"],
        }
        return core, snntorch_arguments

    def _after_reset(self, spk: torch.Tensor, potential: torch.Tensor, channel_dim: int) -> torch.Tensor:
        r"""The membrane after the step's reset, :math:`u_t - V_{th}\,\mathrm{sg}(s_t)` (channels at ``channel_dim``):
        the threshold carries its gradient, as snnTorch's ``learn_threshold=True`` subtraction does. Without a reset
        (``reset_mechanism="none"``) it is the potential :math:`u_t` itself."""
        if not self.core.soft_reset:
            return potential
        return potential - self._reset_step(spk, channel_dim)

    def _reset_step(self, spk: torch.Tensor, channel_dim: int) -> torch.Tensor:
        r""":math:`V_{th}\,\mathrm{sg}(s_t)`, what a reset subtracts (the threshold with its gradient)."""
        return self.core._threshold_at(spk, channel_dim) * spk.detach()

    @property
    def _delays_reset(self) -> bool:
        """The core resets one step after the spike, undecayed (snnTorch's ``reset_delay=True``)."""
        return self.reset_mechanism == "subtract" and bool(getattr(self.core, "reset_delay", False))

    def _leaky_membrane(
        self, spk: torch.Tensor, potential: torch.Tensor, channel_dim: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""snnTorch's ``mem`` after the steps that fired ``spk`` at ``potential`` :math:`u_t`, and the core's
        threshold bias that continues from it as its reset-free filter: with the reset in the step,
        :math:`(u_t - V_{th}\,\mathrm{sg}(s_t), 0)`; delayed (``reset_delay=True``), :math:`(u_t,
        V_{th}\,\mathrm{sg}(s_t))`, the subtraction still pending (:math:`\beta u_t + x - V_{th} s_t` next)."""
        if self._delays_reset:
            return potential, self._reset_step(spk, channel_dim)
        mem = self._after_reset(spk, potential, channel_dim)
        return mem, torch.zeros_like(mem)

    def _pending_reset(self, mem: torch.Tensor, channel_dim: int) -> torch.Tensor:
        r"""The threshold bias that continues from a ``mem`` given from outside, as snnTorch recomputes its
        pending reset from ``mem``: :math:`V_{th}\,\Theta(\mathrm{mem} - V_{th})` (spike detached) where the
        reset is delayed, else 0 (also for a ``mem`` that is no step of this neuron, such as the empty one of
        snnTorch's ``reset_mem`` before the first step: the next step starts at rest then)."""
        features = self.core.features
        if (
            not self._delays_reset
            or mem.dim() <= channel_dim
            or (features is not None and mem.shape[channel_dim] != features)
        ):
            return torch.zeros_like(mem)
        threshold = self.core._threshold_at(mem, channel_dim)
        fixed = threshold.detach() if isinstance(threshold, torch.Tensor) else threshold
        return threshold * self.core.surrogate.heaviside(mem.detach() - fixed)

    def _reset_refusal(self, reset_mechanism: str) -> str:
        """Why ``reset_mechanism`` is refused, beyond the values the neuron takes (``""``: nothing more)."""
        return (
            ": a reset to zero multiplies the membrane by 1 - spk, feeding the spikes back into the state, which "
            f"no parallel scan can run; keep snn.{self._snntorch_name} for it"
            if reset_mechanism == "zero"
            else ""
        )

    @property
    def reset_mechanism(self) -> str:
        """snnTorch's ``reset_mechanism``; it is fixed at construction, as the core neuron's reset is."""
        return self._reset_mechanism

    @reset_mechanism.setter
    def reset_mechanism(self, value: str) -> None:
        """snnTorch's setter, for the value the neuron has: a change raises ``ValueError`` (the core
        neuron would not follow it)."""
        name = type(self).__name__
        if value not in self._resets:
            raise ValueError(f"reset_mechanism={value!r} is not supported by {name}; use one of {self._resets}")
        if value != self._reset_mechanism:
            raise ValueError(
                f"reset_mechanism cannot change from {self._reset_mechanism!r} to {value!r} after construction: "
                f"build a new {name}(reset_mechanism={value!r})"
            )
        snntorch.SpikingNeuron.reset_mechanism.fset(self, value)

    def __setattr__(self, name: str, value: Any) -> None:
        """``neuron.threshold = tensor`` (snnTorch's buffer, which ``snn.Leaky`` reads at every
        step) gives the core the new threshold too; where the core's threshold is a tensor (per channel, or learned
        as one value), the values are copied into it (a learned one stays the parameter its optimizer holds)."""
        if name == "threshold" and "core" in self._modules:
            if "threshold" not in self._buffers:  # a number or a tensor: the core's tensor is kept
                self._retune_channels(value)
                return
            if isinstance(value, torch.Tensor):
                threshold = _scalar(value, "threshold", _PER_CHANNEL_SKINS)
                self._buffers["threshold"] = value
                self._set_threshold(threshold)
                return
        super().__setattr__(name, value)

    def __getattr__(self, name: str) -> Any:
        """``nn.Module``'s lookup of parameters, buffers and submodules, then the skin's properties (``mem``,
        ``threshold``, ``beta``, ...): snnTorch's ``functional.probe.AttributeMonitor`` reads
        ``neuron.__getattr__(name)``, which ``snn.Leaky`` answers from its buffers and a skin from a property."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            attribute = getattr(type(self), name, None)
            if isinstance(attribute, property):
                return attribute.__get__(self)
            raise

    @property
    def threshold(self) -> torch.Tensor:
        """snnTorch's ``threshold``: its buffer, in the shape given, where the core has one constant value; the core's
        ``v_threshold`` itself where it has one per channel or learns it (0-d from a number, as ``snn.Leaky``'s), the
        ``nn.Parameter`` that an optimizer trains with ``learn_threshold=True`` (one tensor: nothing to keep in
        step)."""
        buffers = self._buffers
        return buffers["threshold"] if "threshold" in buffers else self.core.v_threshold

    def _threshold_buffer(self, threshold: torch.Tensor | None, learn_threshold: bool) -> None:
        """Called by ``LIF.__init__``: snnTorch's ``threshold`` buffer, or none (``None``) where the core holds a
        per-channel threshold (see :attr:`threshold`)."""
        if threshold is not None:
            self._buffers["threshold"] = threshold

    def _retune_channels(self, value: object) -> None:
        """Copy ``value`` (one value, or one per channel) into the core's per-channel threshold, in place (one value
        only into a threshold learned as one value)."""
        threshold = _channel_threshold(value)
        core = self.core
        if core.learn_threshold == "shared":
            with torch.no_grad():
                core.v_threshold.copy_(self._shared_threshold(threshold))
            return
        if core.has_uninitialized_params():  # built from this value at the first input
            core._threshold_init = threshold
            return
        if isinstance(threshold, torch.Tensor) and threshold.numel() != core.features:
            raise ValueError(f"threshold has {threshold.numel()} values for {core.features} features (one per channel)")
        with torch.no_grad():
            core.v_threshold.copy_(torch.as_tensor(threshold).expand(core.features))

    @property
    def _threshold(self) -> float | torch.Tensor:
        return self.core.v_threshold

    def _set_threshold(self, value: float) -> None:
        """Give the core the threshold loaded into snnTorch's ``threshold`` buffer."""
        self.core.v_threshold = value

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        """As ``snn.Leaky``'s, ``threshold`` included where it is the core's per-channel tensor, so that the state
        dict loads into an ``snn.Leaky`` too."""
        super()._save_to_state_dict(destination, prefix, keep_vars)
        threshold = self.threshold
        if "threshold" not in self._buffers and not nn.parameter.is_lazy(threshold):
            destination[prefix + "threshold"] = threshold if keep_vars else threshold.detach()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Load as ``snn.Leaky`` does, then pass the loaded ``threshold`` on to the core (a per-channel core takes
        it as its ``v_threshold``, one value standing for every channel); the state dict of a neuron with another
        ``reset_mechanism`` is refused (the core's reset is built in). Its decays (``beta``, ``alpha``) become the
        core's."""
        self._check_loaded_reset(state_dict, prefix)  # before the decays change
        for name, decay in self._decays.items():
            loaded, key = state_dict.pop(prefix + name, None), prefix + "core." + decay.logit
            if loaded is not None:
                decay.load(loaded, state_dict, key, self.core, type(self).__name__)
            elif isinstance(state_dict.get(key), torch.Tensor) and not nn.parameter.is_lazy(state_dict[key]):
                # a skin's own state dict: the core's logits
                decay.follow(state_dict[key], self.core)
        if "threshold" not in self._buffers and prefix + "threshold" in state_dict:
            self._load_channel_threshold(state_dict.pop(prefix + "threshold"), state_dict, prefix + "core.v_threshold")
        self._materialize_for(state_dict, prefix + "core.")
        super()._load_from_state_dict(state_dict, prefix, *args)
        if "threshold" in self._buffers and prefix + "threshold" in state_dict:
            self._set_threshold(_scalar(self.threshold, "threshold", _PER_CHANNEL_SKINS))

    def _materialize_for(self, state_dict: dict[str, Any], prefix: str) -> None:
        """Materialise a lazy core that the state dict's per-channel tensors (its entries under ``prefix``) give a
        channel count, before it loads them: a decay loaded as one value (the core's time constant, its entry the
        lazy core's own placeholder) is then the per-channel tensor the core builds from it, not the empty
        placeholder, which another entry's count would make a size mismatch."""
        core = self.core
        if not core.has_uninitialized_params():
            return
        loaded = (state_dict.get(prefix + name) for name in core._declared)
        counts = [t.shape[0] for t in loaded if isinstance(t, torch.Tensor) and not nn.parameter.is_lazy(t) and t.dim()]
        if not any(counts):
            return
        core.materialize(next(count for count in counts if count))
        for decay in self._decays.values():
            key = prefix + decay.logit
            placeholder = state_dict.get(key)
            if isinstance(placeholder, torch.Tensor) and (nn.parameter.is_lazy(placeholder) or not placeholder.numel()):
                state_dict[key] = getattr(core, decay.logit)

    def _shared_threshold(self, threshold: float | torch.Tensor) -> torch.Tensor:
        """The 0-d value of a threshold learned as one value (``learn_threshold=True`` with one number, snnTorch's
        scalar parameter) for ``threshold`` from :func:`_channel_threshold`; one per channel is refused."""
        if isinstance(threshold, torch.Tensor):
            raise ValueError(
                f"threshold is learned as one value for all neurons ({type(self).__name__} built with "
                f"learn_threshold=True and one threshold, as snnTorch learns a scalar), got {threshold.numel()} "
                f"different values; build {type(self).__name__} with a per-neuron threshold tensor to learn one per "
                "neuron"
            )
        return torch.tensor(threshold, dtype=torch.float64)  # copied into the parameter, in its dtype

    def _load_channel_threshold(self, loaded: object, state_dict: dict[str, Any], key: str) -> None:
        """A loaded ``threshold`` (one value, or one per channel) as the core's ``v_threshold`` under ``key``: per
        channel, or 0-d where it is learned as one value; a lazy per-channel core takes one value at its first
        input."""
        threshold = _channel_threshold(loaded)
        features = self.core.features
        if self.core.learn_threshold == "shared":
            state_dict[key] = self._shared_threshold(threshold)
        elif isinstance(threshold, torch.Tensor):
            if features is not None and threshold.numel() != features:
                raise ValueError(f"threshold has {threshold.numel()} values for {features} features (one per channel)")
            state_dict[key] = threshold
        elif features is None:
            self.core._threshold_init = threshold
        else:
            state_dict[key] = torch.full((features,), threshold)

    def _check_loaded_reset(self, state_dict: dict[str, Any], prefix: str) -> None:
        reset = state_dict.get(prefix + "reset_mechanism_val")
        if isinstance(reset, torch.Tensor) and reset.numel() == 1 and int(reset) != int(self.reset_mechanism_val):
            kind = list(snntorch.SpikingNeuron.reset_dict)[int(reset)]
            raise ValueError(
                f"{prefix}reset_mechanism_val: the state dict is of a neuron with reset_mechanism={kind!r}; "
                f"this {type(self).__name__} has reset_mechanism={self.reset_mechanism!r}, fixed at construction"
            )

    def _returns(
        self, spk: torch.Tensor, *state: torch.Tensor | None
    ) -> torch.Tensor | tuple[torch.Tensor | None, ...]:
        """What ``forward`` returns: the (graded) spikes, and the state tensors (``mem``; ``syn, mem``) unless
        ``init_hidden`` without ``output`` (they may then be ``None``)."""
        spk = spk * self.graded_spikes_factor
        if self.init_hidden and not self.output:
            return spk
        return spk, *state

    def _forward(
        self, input_: torch.Tensor, *state: torch.Tensor | None
    ) -> torch.Tensor | tuple[torch.Tensor | None, ...]:
        """``forward`` of one step, the state tensors passed in (``mem``; ``syn, mem``) given to :meth:`_step`. A step
        of fewer dims, ``[features]`` or a scalar (snnTorch's neurons take any shape), is one sample: the state is
        kept as ``[1, features]`` and comes back in the input's shape."""
        if not isinstance(input_, torch.Tensor):
            raise TypeError(f"input_ must be a torch.Tensor, got {type(input_).__name__}")
        shape = input_.shape
        one_sample = input_.dim() < 2
        if one_sample:
            input_ = input_.reshape(1, -1)
            state = tuple(s.reshape(1, -1) if isinstance(s, torch.Tensor) and s.shape == shape else s for s in state)
        input_ = self._checked(input_, "input_", 1, shape)
        spk, *state = self._step(input_, *state)
        if one_sample:
            spk, state = spk.reshape(shape), [s.reshape(shape) for s in state]
        return self._returns(spk, *state)

    def _checked(self, x: torch.Tensor, name: str, channel_dim: int, shape: torch.Size) -> torch.Tensor:
        """``x`` checked as the core checks it (dtype, NaN, device; cast up under autocast), the errors
        naming the argument the user passed (the core's own ``step`` would name it ``x_t``), shape errors
        in snnTorch's terms (``shape``: as the caller gave it). ``snn.Leaky`` is elementwise and takes any
        shape at any step; a skin's neuron has per-channel parameters, so its channel count is fixed by
        its first input, and ``LTC`` has no spatial dims."""
        core = self.core
        spatial = x.dim() - channel_dim - 1
        if core.max_spatial_dims is not None and spatial > core.max_spatial_dims:
            channels = "C" if core.features is None else core.features
            raise ValueError(
                f"{name} has shape {tuple(shape)}, with {spatial} dims after the channel dim {channel_dim}: "
                f"{type(self).__name__} takes [B, {channels}] steps and [T, B, {channels}] sequences only "
                f"(snn.{self._snntorch_name}, elementwise, takes feature maps); flatten them first, e.g. with "
                "nn.Flatten()"
            )
        if core.features is not None and x.dim() > channel_dim and x.shape[channel_dim] != core.features:
            raise ValueError(
                f"{name} has shape {tuple(shape)}, with {x.shape[channel_dim]} channels in dim {channel_dim}; this "
                f"{type(self).__name__} has {core.features}, fixed by its first input (it has per-channel "
                f"parameters, where snn.{self._snntorch_name} is elementwise and takes any shape): give each layer its "
                "own neuron"
            )
        check = check_step_input if channel_dim == 1 else check_sequence
        return core._checked(x, name, check, channel_dim)

    def extra_repr(self) -> str:
        threshold = self._threshold
        if isinstance(threshold, torch.Tensor) and self.core.learn_threshold == "shared":
            threshold = f"learned {threshold.item():g}"
        elif isinstance(threshold, torch.Tensor):
            threshold = f"{'learned ' if self.core.learn_threshold else ''}per channel"
        return (
            f"features={self.core.features}, threshold={threshold}, reset_mechanism={self.reset_mechanism!r}, "
            f"init_hidden={self.init_hidden}, output={self.output}"
        )


class _StateSkin(_CoreSkin):
    """The skins of the snnTorch neurons whose one state is ``mem`` (``snn.Leaky``'s, ``snn.Lapicque``'s): the core
    state kept in non-persistent buffers ``state_<field>``, ``mem`` its first field, and the entry points ``forward``
    (one step) and ``multistep`` (a sequence, in parallel)."""

    #: ``forward``'s ``mem`` is the core's membrane (``return_membrane``) at every step, so a trainer may take it
    #: from the core's parallel path; otherwise it steps the core (see :meth:`_driven_sequence`)
    _mem_is_membrane: ClassVar[bool] = False
    #: :meth:`_keep` needs ``multistep``'s ``mem_seq`` even where it is not returned
    _keep_reads_membrane: ClassVar[bool] = False

    # -- state: one non-persistent buffer per core state field ---------------------------
    def _init_mem(self) -> None:
        """Called by ``Leaky.__init__``: register the state buffers (empty until the first step)."""
        # a plain attribute, read at every step
        self._state_names = tuple(f"state_{field}" for field in self._core_type.state_type._fields)
        for name in self._state_names:
            self.register_buffer(name, torch.zeros(0), persistent=False)
        self._mem_attached = False

    def _state(self) -> NamedTuple:
        """The core state, detached whole if ``mem`` was detached in place since it was stored:
        ``snn.Leaky.detach_hidden()``, which ``snntorch.backprop.TBPTT`` calls, detaches ``mem`` only."""
        state = self._core_type.state_type(*(getattr(self, name) for name in self._state_names))
        if self._mem_attached and not state[0].requires_grad:
            state = type(state)(*(value.detach() for value in state))
            self._store(state)
        return state

    def _store(self, state: NamedTuple) -> None:
        first = state[0]
        if first._base is not None:  # mem must be detachable in place, which a view is not
            first = first.clone()
        # straight into the buffer dict, which is what Module.__setattr__ does for a buffer after
        # its type checks (about 2 us a field, at every step)
        buffers = self._buffers
        for name, value in zip(self._state_names, (first, *state[1:]), strict=True):
            buffers[name] = value
        self._mem_attached = first.requires_grad

    @property
    def mem(self) -> torch.Tensor:
        """The membrane: the core state's first field (see the module docstring's table)."""
        return getattr(self, self._state_names[0])

    @mem.setter
    def mem(self, value: torch.Tensor) -> None:
        """Set the membrane to ``value`` and every other state field to rest (a reset); ``value`` is checked
        here, so that the next step can take the stored state as checked."""
        check_tensor(value, "mem")
        self._store(self._with_membrane(self._rest(value), value))

    def _rest(self, like: torch.Tensor) -> NamedTuple:
        """The core's resting state for a step shaped like ``like``."""
        if like.dim() >= 2 and self.core.features is None:
            self.core.materialize(like.shape[1])
        return self.core.init_state(like)

    def _with_membrane(self, state: NamedTuple, mem: torch.Tensor) -> NamedTuple:
        """``state`` with the membrane ``mem`` given from outside (passed in, or assigned to ``neuron.mem``)."""
        return state._replace(**{state._fields[0]: mem})

    def _initial_state(self, step: torch.Tensor, name: str, mem: torch.Tensor | None) -> NamedTuple | None:
        """The state to start from for the checked input step ``step`` (of the argument ``name``);
        ``None`` lets the core start at rest (new input shape). Its values are checked: a ``mem``
        passed in is checked here, the rest is the state this neuron stored."""
        if mem is not None and self.init_hidden:
            raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
        if mem is not None and not isinstance(mem, torch.Tensor):
            raise TypeError(f"mem must be a torch.Tensor or None, got {type(mem).__name__}")
        state = self._state()
        fresh = state[0].shape != step.shape
        if mem is state[0]:  # the mem this neuron returned at its last step, as step loops pass it back
            return None if fresh else state
        if mem is not None and mem.shape == step.shape:  # like Leaky, a mem of another shape is ignored
            check_state_tensor(mem, "mem", step.shape, step, name)  # named here: the core would name it state.<field>
            return self._with_membrane(self._rest(mem) if fresh else state, mem)
        return None if fresh else state

    # -- entry points --------------------------------------------------------------------
    def forward(
        self, input_: torch.Tensor, mem: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """One time step for ``input_`` ``[B, features, ...]``; see the module docstring. A step of
        fewer dims, ``[features]`` or a scalar (``snn.Leaky`` takes any shape), is one sample: the
        state is kept as ``[1, features]`` and ``spk``, ``mem`` come back in the input's shape."""
        return self._forward(input_, mem)

    def _step(self, input_: torch.Tensor, mem: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(spk, mem)`` of one step ``[B, features, ...]``, the state stored; ``mem`` is the stored
        membrane itself (as ``snn.Leaky`` returns ``self.mem``)."""
        before = self._initial_state(input_, "input_", mem)
        spk, state = self.core._step_checked(input_, before, state_values_checked=True)
        self._store(self._step_kept(spk, state, before))
        return spk, self.mem

    def _step_kept(self, spk: torch.Tensor, state: NamedTuple, before: NamedTuple | None) -> NamedTuple:
        """The state :meth:`_step` stores after a step from ``before`` (``None``: rest) that fired ``spk`` and left
        the core in ``state`` (default: that state)."""
        return state

    def multistep(
        self, x_seq: torch.Tensor, mem: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """All steps of ``x_seq`` ``[T, B, features, ...]`` in parallel; ``mem`` as in :meth:`forward`."""
        if not isinstance(x_seq, torch.Tensor) or x_seq.dim() < 1:
            raise TypeError(f"x_seq must be a time-major torch.Tensor [T, B, ...], got {type(x_seq).__name__}")
        x_seq = self._checked(x_seq, "x_seq", 2, x_seq.shape)
        state = self._initial_state(x_seq[0], "x_seq", mem)
        if self.init_hidden and not self.output and not self._keep_reads_membrane:
            # nothing reads the membrane: not asked for (DynamicDecay's kernels then do not write it)
            spk_seq, state = self.core(x_seq, state)
            return self._returns(*self._keep(spk_seq, None, state))
        spk_seq, mem_seq, state = self.core(x_seq, state, return_membrane=True)
        return self._returns(*self._keep(spk_seq, mem_seq, state))

    def _driven_sequence(
        self, x_seq: torch.Tensor, state: NamedTuple | None
    ) -> tuple[torch.Tensor, torch.Tensor, NamedTuple]:
        """``(spk_seq, mem_seq, last_state)`` for ``x_seq`` from the core state ``state`` (``None``: at rest),
        ``mem_seq`` being the ``mem`` that :meth:`forward` returns at each step; stores nothing. A trainer, which
        holds the state itself, runs a skin whose ``mem`` the model reads through this: the core's parallel path
        where :attr:`_mem_is_membrane`, else its steps, keeping each state's first field."""
        if self._mem_is_membrane:
            return self.core(x_seq, state, return_membrane=True)
        spikes, mems = [], []
        for x_t in x_seq.unbind(0):
            spike, state = self.core.step(x_t, state)
            spikes.append(spike)
            mems.append(state[0])
        return torch.stack(spikes), torch.stack(mems), state

    def _keep(
        self, spk_seq: torch.Tensor, mem_seq: torch.Tensor | None, state: NamedTuple
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Store the end state; return the spikes and the ``mem`` to give back (default: the
        potentials ``mem_seq`` of ``multistep``, ``None`` where it was not asked for, the state's
        first field of ``forward``)."""
        self._store(state)
        return spk_seq, mem_seq


class LeakyAdapter(_StateSkin, snntorch.Leaky):
    """The base of the ``snn.Leaky`` skins: maps snnTorch's Leaky contract onto a core neuron ``self.core``.

    Subclasses (your own neuron's skin included, see tutorial 5) set :attr:`_core_type`,
    :attr:`_resets` and :attr:`_no_beta` and call ``super().__init__`` with a function that
    builds the core neuron from the resolved surrogate and threshold, followed by their own
    ``snn.Leaky`` arguments (by position, in this order, or by name).
    """

    #: why the neuron has no ``beta`` (a constant membrane decay that NIR's LIF could carry)
    _no_beta: ClassVar[str] = "its membrane decay is not a constant"

    def __init__(
        self,
        make_core: Callable[[Surrogate, float | torch.Tensor], neurons.Neuron],
        threshold: float | torch.Tensor,
        spike_grad: Any,
        init_hidden: bool,
        output: bool,
        reset_mechanism: str,
        **leaky_options: Any,
    ) -> None:
        """``make_core(surrogate, threshold)`` builds the core neuron (``threshold``: a float, or a ``[C]`` tensor
        where :attr:`_threshold_per_channel`, whose subclass takes ``learn_threshold`` and passes it to the core);
        ``leaky_options`` are snnTorch's remaining ``Leaky`` options.

        Everything that can fail runs before ``Leaky.__init__``, which adds the neuron to
        snnTorch's global ``instances`` list (whose resets would meet a half-built neuron).
        """
        name = type(self).__name__
        for arg in leaky_options:
            if arg in ("beta", "learn_beta"):  # a skin with a decay names them in its signature
                raise TypeError(f"{name} takes no {arg}: {self._no_beta}")
            if arg in _OTHER_NEURONS:
                raise TypeError(_OTHER_NEURONS[arg].format(name=name, arg=arg))
            if arg not in _LEAKY_OPTIONS:
                raise TypeError(f"{name}() got an unexpected keyword argument {arg!r}")
        options = {
            "init_hidden": init_hidden,
            "output": output,
            "graded_spikes_factor": 1.0,
            "learn_graded_spikes_factor": False,
            "reset_delay": False,
            **leaky_options,
        }
        check_bool(options["learn_graded_spikes_factor"], "learn_graded_spikes_factor")
        _check_factor(options["graded_spikes_factor"])
        core, snntorch_arguments = self._build_core(make_core, threshold, spike_grad, reset_mechanism, options)
        super().__init__(
            _UNUSED_BETA,
            graded_spikes_factor=options["graded_spikes_factor"],
            learn_graded_spikes_factor=options["learn_graded_spikes_factor"],
            **snntorch_arguments,
        )
        self.core = core

    def _reset_refusal(self, reset_mechanism: str) -> str:
        """snnTorch's regression tutorials read the membrane of a Leaky that does not reset."""
        if reset_mechanism != "none":
            return ""
        return (
            "; for a readout that does not reset (a leaky integrator, snn.Leaky(reset_mechanism='none')), use "
            "DecoupledLIF(reset_mechanism='none'), which is that neuron, or DynamicDecay or PRF"
        )

    def _beta_buffer(self, beta: Any, learn_beta: bool) -> None:
        """Called by ``LIF.__init__``: no ``beta`` buffer (see :attr:`beta`)."""

    @property
    def beta(self) -> torch.Tensor:
        """snnTorch's ``beta``, which its NIR export reads: refused with the reason, since the
        neuron has no constant membrane decay (:class:`DecoupledLIF` has one)."""
        raise TypeError(
            f"{type(self).__name__} has no beta: {self._no_beta}. It is not a Leaky LIF, so tools that read "
            "beta (snnTorch's NIR export among them) cannot describe it: NIR has no primitive for this neuron"
        )

    @beta.setter
    def beta(self, value: object) -> None:
        """``neuron.beta = value``, refused as the constructor's ``beta`` is."""
        raise TypeError(f"{type(self).__name__} takes no beta: {self._no_beta}")

    @classmethod
    def detach_hidden(cls) -> None:
        """Detach the state of every ``Leaky`` in the process from its graph (global, as in
        snnTorch); our neurons detach every state field, not just ``mem``."""
        for neuron in cls.instances:
            if isinstance(neuron, LeakyAdapter):
                neuron._store(tuple(value.detach() for value in neuron._state()))
            elif isinstance(neuron, snntorch.Leaky):
                neuron.mem.detach_()

    @classmethod
    def reset_hidden(cls) -> None:
        """Reset the state of every ``Leaky`` in the process (global, as in snnTorch); our
        neurons reset every state field to rest, not just ``mem``."""
        for neuron in cls.instances:
            if isinstance(neuron, snntorch.Leaky):
                neuron.mem = torch.zeros_like(neuron.mem)


class DynamicDecay(LeakyAdapter):
    """snnTorch skin of :class:`snn_parallel.neurons.DynamicDecay` (DSN, reset-free).

    Args:
        features: channels ``C`` (dim 1 of a step ``[B, C, ...]``); ``None`` (default)
            infers it from the first input.
        threshold: :math:`V_{th}` of binary mode (``v_threshold``). The default, 0.25, is lower
            than ``snn.Leaky``'s 1.0 because the DSN's membrane follows its input with gain 1
            (:math:`H \\to X` for a constant input) where ``snn.Leaky`` integrates it with gain
            :math:`1/(1-\\beta)` (10 to 20 in the snnTorch tutorials), so that it fires in the
            networks written for ``snn.Leaky``; the core's and SpikingJelly's default is 1.0.
            One per channel: a ``[C]`` tensor.
        spike_grad: snnTorch surrogate (binary mode).
        kernel_size, tau, init_decay, spike_mode, levels: as in the core neuron; the decay is
            always learned (the convolution), so there is no ``beta``/``learn_beta``.
        learn_threshold: learn the threshold (binary mode; the core's ``v_threshold``, which
            ``neuron.threshold`` is), initialised from ``threshold``: one for the layer (0-d) from a number, one
            per channel from a per-neuron tensor, as ``snn.Leaky``.
        reset_mechanism: ``"none"`` only (the DSN has no reset).
        **leaky_options: snnTorch's remaining ``Leaky`` options, at supported values.
    """

    _core_type = neurons.DynamicDecay
    _resets = ("none",)
    _threshold_per_channel = True
    _no_beta = "its decay is computed from the input at every step (a causal convolution), not a constant"
    _mem_is_membrane = True

    def __init__(
        self,
        features: int | None = None,
        *,
        threshold: float | torch.Tensor = 0.25,
        spike_grad: Any = None,
        kernel_size: int = 4,
        tau: float = 0.25,
        init_decay: float = 0.5,
        spike_mode: str = "binary",
        levels: int = 4,
        learn_threshold: bool = False,
        init_hidden: bool = False,
        output: bool = False,
        reset_mechanism: str = "none",
        **leaky_options: Any,
    ) -> None:
        learn_threshold = _learned(threshold, learn_threshold, "learn_threshold")
        if spike_mode == "integer":
            _refuse_surrogate_disable(
                leaky_options,
                "DynamicDecay with spike_mode='integer': its spike function is the clip-round of integer spikes with "
                "its own straight-through gradient, not spike_grad",
                "spike_mode='binary'",
            )

        def make_core(surrogate: Surrogate, v_threshold: float | torch.Tensor) -> neurons.DynamicDecay:
            return neurons.DynamicDecay(
                features,
                kernel_size=kernel_size,
                tau=tau,
                init_decay=init_decay,
                spike_mode=spike_mode,
                levels=levels,
                v_threshold=v_threshold,
                learn_threshold=learn_threshold,
                surrogate=surrogate,
            )

        super().__init__(make_core, threshold, spike_grad, init_hidden, output, reset_mechanism, **leaky_options)


class PRF(LeakyAdapter):
    """snnTorch skin of :class:`snn_parallel.neurons.PRF` (parallel resonate-and-fire).

    Args:
        features: channels ``C``; ``None`` (default) infers it from the first input.
        threshold: :math:`V_{th}`. The default, 0.1, is lower than ``snn.Leaky``'s 1.0 because
            the PRF's membrane takes its input with gain :math:`\\Delta \\le 1` where
            ``snn.Leaky`` integrates it with gain :math:`1/(1-\\beta)` (10 to 20 in the snnTorch
            tutorials), so that it fires in the networks written for ``snn.Leaky``; the
            paper's and SpikingJelly's threshold is 1.0. One per channel: a ``[C]`` tensor.
        spike_grad: snnTorch surrogate.
        tau, dt_range, fr_scale, mode: as in the core neuron.
        learn_threshold: learn the threshold (the core's ``v_threshold``, which ``neuron.threshold`` is),
            initialised from ``threshold``: one for the layer (0-d) from a number, one per channel from a
            per-neuron tensor, as ``snn.Leaky``.
        learn_beta: learn the decay rate :math:`1/\\tau` (core ``learn_decay``); the decay itself
            is complex, so there is no ``beta``.
        reset_mechanism: ``"none"`` (the paper's PRF, default) or ``"subtract"`` (core
            ``reset=True``: a soft reset through a decaying threshold bias).
        **leaky_options: snnTorch's remaining ``Leaky`` options, at supported values.
    """

    _core_type = neurons.PRF
    _resets = ("none", "subtract")
    _threshold_per_channel = True
    _no_beta = (
        "its decay is complex, a resonator A = exp(dt * (-1/tau + i*theta)) per channel (learn_beta=True learns 1/tau)"
    )

    def __init__(
        self,
        features: int | None = None,
        *,
        threshold: float | torch.Tensor = 0.1,
        spike_grad: Any = None,
        tau: float = 2.0,
        learn_beta: bool = False,
        dt_range: tuple[float, float] = neurons.PRF.DEFAULT_DT_RANGE,
        fr_scale: float = 1.0,
        mode: str = "scan",
        learn_threshold: bool = False,
        init_hidden: bool = False,
        output: bool = False,
        reset_mechanism: str = "none",
        **leaky_options: Any,
    ) -> None:
        learn_threshold = _learned(threshold, learn_threshold, "learn_threshold")

        def make_core(surrogate: Surrogate, v_threshold: float | torch.Tensor) -> neurons.PRF:
            return neurons.PRF(
                features,
                tau=tau,
                learn_decay=learn_beta,
                dt_range=dt_range,
                fr_scale=fr_scale,
                reset=reset_mechanism == "subtract",
                v_threshold=v_threshold,
                learn_threshold=learn_threshold,
                surrogate=surrogate,
                mode=mode,
            )

        super().__init__(make_core, threshold, spike_grad, init_hidden, output, reset_mechanism, **leaky_options)
        self._mem_is_membrane = reset_mechanism == "none"  # u_t, less a threshold bias that only a reset makes


class _LeakyMembrane(_StateSkin):
    """The skins of a :class:`~snn_parallel.neurons.DecoupledLIF` core whose ``mem`` is snnTorch's (``mem_kind``
    ``"leaky"``): with the delayed reset the potential :math:`u_t`, its spike's subtraction pending, else the
    membrane after the step's reset; a ``mem`` given from outside is the whole state."""

    #: ``"leaky"``: ``mem`` is snnTorch's; ``"reset_free"``: the core's own (``DecoupledLIF(mem=...)``)
    mem_kind: str = "leaky"
    _keep_reads_membrane = True  # the state kept is the membrane after the last reset

    def _keep(
        self, spk_seq: torch.Tensor, mem_seq: torch.Tensor, state: NamedTuple
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """In ``"leaky"`` mode keep the state ``(mem_T, bias)`` of :meth:`_leaky_membrane`, which continues exactly
        as ``(u'_T, b_{T+1})`` does (:math:`\\beta (u - V_{th} s) + x = \\beta u' - b_{next} + x`; delayed,
        :math:`\\beta u + x - V_{th} s`), so that ``mem`` is Leaky's and a ``mem`` passed in is a whole state."""
        if self.mem_kind == "reset_free":
            return super()._keep(spk_seq, mem_seq, state)
        mem, bias = self._leaky_membrane(spk_seq, mem_seq, 2)
        self._store(neurons.DecoupledLIFState(mem[-1], bias[-1]))
        return spk_seq, mem

    def _driven_sequence(
        self, x_seq: torch.Tensor, state: NamedTuple | None
    ) -> tuple[torch.Tensor, torch.Tensor, NamedTuple]:
        """In ``"leaky"`` mode ``mem`` is snnTorch's at every step, from the core's parallel path."""
        if self.mem_kind == "reset_free":
            return super()._driven_sequence(x_seq, state)
        spk_seq, potential, state = self.core(x_seq, state, return_membrane=True)
        return spk_seq, self._leaky_membrane(spk_seq, potential, 2)[0], state

    def _step_kept(self, spk: torch.Tensor, state: NamedTuple, before: NamedTuple | None) -> NamedTuple:
        """In ``"leaky"`` mode keep ``(mem, bias)`` as :meth:`_keep` does, so that ``mem`` is snnTorch's (see the
        ``mem`` argument)."""
        if self.mem_kind == "reset_free":
            return state
        potential = state.filtered if before is None else state.filtered - before.bias
        return neurons.DecoupledLIFState(*self._leaky_membrane(spk, potential, 1))

    def _with_membrane(self, state: NamedTuple, mem: torch.Tensor) -> NamedTuple:
        """In ``"leaky"`` mode a ``mem`` given from outside is the whole state: the delayed reset pending in it is
        recomputed from it, as ``snn.Leaky`` does."""
        if self.mem_kind == "reset_free":
            return super()._with_membrane(state, mem)
        return neurons.DecoupledLIFState(mem, self._pending_reset(mem, 1))


class DecoupledLIF(_LeakyMembrane, LeakyAdapter):
    r"""snnTorch skin of :class:`snn_parallel.neurons.DecoupledLIF`: a subtract-reset LIF
    trained in parallel, by default ``snn.Leaky(beta)`` itself (``reset_delay=True``, snnTorch's default: the
    reset is subtracted one step after the spike, undecayed, :math:`u_t = \beta u_{t-1} + x_t - V_{th}
    \mathrm{sg}(s_{t-1})`), with ``reset_delay=False`` firing like ``snn.Leaky(beta, reset_delay=False)``, or with
    ``reset_mechanism="none"`` the leaky integrator ``snn.Leaky(beta, reset_mechanism="none")``:
    :math:`u_t = \beta u_{t-1} + x_t`, spikes :math:`s_t = \Theta(u_t - V_{th})`, no reset.

    With the delayed reset the spikes, ``mem`` and the gradients of the input, the weights before it and the
    threshold are ``snn.Leaky``'s exactly (its reset is detached too); a learned ``beta``'s gradient differs (see
    ``learn_beta``).

    Args:
        features: channels ``C``; ``None`` (default) infers it from the first input.
        beta: decay in ``(0, 1]``; the core's :math:`\tau = 1/(1-\beta)` (``beta=1.0``: ``tau=inf``, no
            leak, the integrate-and-fire neuron). A tensor of ``C`` different values is a decay per channel (as
            ``snn.Leaky``'s per-neuron ``beta``). Read back as :attr:`beta`, which snnTorch's NIR export writes
            as :math:`\tau_{mem} = dt/(1-\beta)`.
        threshold: :math:`V_{th}`: a number, or one per channel (a ``[C]`` tensor, as ``snn.Leaky``'s
            per-neuron ``threshold``).
        spike_grad: snnTorch surrogate.
        learn_beta: learn the decay :math:`\beta = \sigma(w)` (core ``learn_decay``), as ``snn.Leaky``: one for
            the layer (a 0-d ``decay_logit``) from a number, one per channel from a per-neuron tensor (refused with
            ``beta=1.0``, which a sigmoid cannot reach nor leave); its gradient is ``snn.Leaky``'s with the
            delayed reset (the default) or without a reset; with ``reset_delay=False`` it flows through the
            reset-free membrane only in ``multistep`` (the core's bias then decays with ``beta`` detached).
        reset_delay: ``True`` (default, snnTorch's): the reset subtracted one step after the spike, undecayed;
            ``False``: within the step that fired (``snn.Leaky(reset_delay=False)``).
        learn_threshold: learn the threshold (the core's ``v_threshold``, which ``neuron.threshold`` is),
            initialised from ``threshold``: one for the layer (0-d) from a number, one per channel from a
            per-neuron tensor, as ``snn.Leaky``; its gradient is ``snn.Leaky(learn_threshold=True)``'s.
        mem: the ``mem`` that ``forward`` and ``multistep`` return and ``self.mem`` holds:
            ``"leaky"`` (default) ``snn.Leaky``'s: with the delayed reset the potential :math:`u_t` compared
            with the threshold (the step's own spike still to be subtracted, which the next step recomputes
            from ``mem`` as ``snn.Leaky`` does); with ``reset_delay=False`` the membrane after the step's reset,
            :math:`u_t - V_{th} s_t`. A loss on ``mem`` reads the values it reads with ``snn.Leaky``, and a
            ``mem`` passed back in continues exactly; its gradient treats the reset as a constant, as the
            core's does, where ``snn.Leaky(reset_delay=False)`` backpropagates through it; or
            ``"reset_free"``, the core's filter :math:`u'_t` (``forward``) and the potential
            :math:`u_t` compared with the threshold (``multistep``). Without a reset both are :math:`u_t`.
        reset_mechanism: ``"subtract"`` (default; the core's ``reset=True``) or ``"none"`` (``reset=False``: the
            membrane never resets, and ``reset_delay`` may take either value); ``"zero"`` is refused.
        **leaky_options: snnTorch's remaining ``Leaky`` options, at supported values.

    A ``snn.Leaky`` state dict (``beta``, ``threshold``, the same ``reset_mechanism``) loads
    into it: ``beta`` becomes the core's decay and ``threshold`` its :math:`V_{th}`.
    """

    _core_type = neurons.DecoupledLIF
    _resets = ("subtract", "none")
    _threshold_per_channel = True
    _delayed_reset = True

    def __init__(
        self,
        features: int | None = None,
        *,
        beta: float | torch.Tensor = 0.5,
        threshold: float | torch.Tensor = 1.0,
        spike_grad: Any = None,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        reset_delay: bool = True,
        mem: str = "leaky",
        init_hidden: bool = False,
        output: bool = False,
        reset_mechanism: str = "subtract",
        **leaky_options: Any,
    ) -> None:
        learn_beta = _learned(beta, learn_beta, "learn_beta")
        learn_threshold = _learned(threshold, learn_threshold, "learn_threshold")
        decay = _membrane_decay(beta, learn_beta)
        mem_kind = check_choice(mem, "mem", ("leaky", "reset_free"))

        def make_core(surrogate: Surrogate, v_threshold: float | torch.Tensor) -> neurons.DecoupledLIF:
            return neurons.DecoupledLIF(
                features,
                tau=decay.initial_tau,
                learn_decay=learn_beta,
                v_threshold=v_threshold,
                learn_threshold=learn_threshold,
                reset=reset_mechanism == "subtract",
                reset_delay=reset_delay,
                surrogate=surrogate,
            )

        super().__init__(
            make_core,
            threshold,
            spike_grad,
            init_hidden,
            output,
            reset_mechanism,
            reset_delay=reset_delay,
            **leaky_options,
        )
        self.mem_kind = mem_kind
        self._keep_reads_membrane = mem_kind == "leaky"  # the state kept is the membrane after the last reset
        self._decays = {"beta": decay}
        if decay.pending is not None:  # snn.Leaky's per-neuron beta: the core's decay per channel
            self.beta = decay.pending

    beta = _decay_property(
        "beta",
        r"""The decay :math:`\beta`: in the shape of the ``beta`` given (0-dim for a number, learned or not), ``[C]``
        learned from a per-neuron tensor or after loading different values per channel; assigning it retunes the
        core.""",
    )

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", beta={self._decays['beta'].describe(self.core)}, reset_delay={self.core.reset_delay}, "
            f"mem={self.mem_kind!r}"
        )


class LTC(LeakyAdapter):
    """snnTorch skin of :class:`snn_parallel.neurons.LTC` (liquid time constant, adaptive
    threshold, hard reset). Steps are ``[B, features]``.

    Args:
        features: neurons ``C``; ``None`` (default) infers it from the first input.
        threshold: the baseline threshold (core ``b0``); the adaptive threshold adds
            :math:`\\beta_a b_t` to it.
        spike_grad: snnTorch surrogate (the reference code's is
            ``multi_gaussian()``).
        mode, beta_a, learn_gate_temperature, initial_membrane: as in the core neuron.
        reset_mechanism: ``"zero"`` only.
        **leaky_options: snnTorch's remaining ``Leaky`` options, at supported values.
    """

    _core_type = neurons.LTC
    _resets = ("zero",)
    _no_beta = "its membrane update rate is a gate computed from the input and the state at every step"

    def __init__(
        self,
        features: int | None = None,
        *,
        threshold: float | torch.Tensor = 0.1,
        spike_grad: Any = None,
        mode: str = "paper",
        beta_a: float = 1.8,
        learn_gate_temperature: bool = False,
        initial_membrane: str = "zero",
        init_hidden: bool = False,
        output: bool = False,
        reset_mechanism: str = "zero",
        **leaky_options: Any,
    ) -> None:
        def make_core(surrogate: Surrogate, b0: float) -> neurons.LTC:
            return neurons.LTC(
                features,
                mode=mode,
                b0=b0,
                beta_a=beta_a,
                surrogate=surrogate,
                learn_gate_temperature=learn_gate_temperature,
                initial_membrane=initial_membrane,
            )

        super().__init__(make_core, threshold, spike_grad, init_hidden, output, reset_mechanism, **leaky_options)

    @property
    def _threshold(self) -> float:
        return self.core.b0

    def _set_threshold(self, value: float) -> None:
        self.core.b0 = value


class PSPLIF(LeakyAdapter):
    r"""snnTorch skin of :class:`snn_parallel.neurons.PSPLIF`, TSSL-BP's LIF whose output is its
    post-synaptic potential (:mod:`snn_parallel.neurons.psp_lif`): ``spk`` (and ``multistep``'s
    ``spk_seq``) is the PSP :math:`a_t`, not the spike.

    Args:
        features: channels ``C``; ``None`` (default) infers it from the first input.
        beta: membrane decay in ``[0, 1)``; the core's :math:`\tau_m = 1/(1-\beta)` (TSSL-BP:
            0.8). It is not read back as ``.beta`` (which raises): the neuron is not a Leaky,
            its output being the PSP, so tools that read ``beta`` must not take it for one.
        tau_s: the PSP filter's :math:`\tau_s`.
        threshold: :math:`V_{th}`. The default, 0.5, is half TSSL-BP's 1.0 because the layer
            after this one receives the PSP, about a third of a spike (:math:`1/\tau_s`), where
            the networks written for ``snn.Leaky`` feed it spikes; pass 1.0 for the paper's.
        spike_grad: snnTorch surrogate, used with ``gradient="surrogate"`` and in ``forward`` (one step).
        gradient: ``"surrogate"`` (default: BPTT with the surrogate, as ``forward`` always
            trains) or ``"tsslbp"`` (TSSL-BP's backward in ``multistep``, the paper's).
        reset_mechanism: ``"zero"`` only (a hard reset).
        **leaky_options: snnTorch's remaining ``Leaky`` options, at supported values.
    """

    _core_type = neurons.PSPLIF
    _resets = ("zero",)
    _no_beta = (
        "its output is the post-synaptic potential a_t, not the spike (its membrane decay, "
        "beta = 1 - 1/tau_m, is core.tau_m)"
    )

    def __init__(
        self,
        features: int | None = None,
        *,
        beta: float | torch.Tensor = 0.8,
        tau_s: float = 3.0,
        threshold: float | torch.Tensor = 0.5,
        spike_grad: Any = None,
        gradient: str = "surrogate",
        init_hidden: bool = False,
        output: bool = False,
        reset_mechanism: str = "zero",
        **leaky_options: Any,
    ) -> None:
        decay = _scalar(beta, "beta")
        if not 0 <= decay < 1:
            raise ValueError(f"beta must be in [0, 1), got {decay}")
        if gradient == "tsslbp":
            _refuse_surrogate_disable(
                leaky_options,
                "PSPLIF with gradient='tsslbp': multistep then backpropagates through the spike times by TSSL-BP's "
                "rule, not through spike_grad",
                "gradient='surrogate'",
            )

        def make_core(surrogate: Surrogate, v_threshold: float) -> neurons.PSPLIF:
            return neurons.PSPLIF(
                features,
                tau_m=1 / (1 - decay),
                tau_s=tau_s,
                v_threshold=v_threshold,
                gradient=gradient,
                surrogate=surrogate,
            )

        super().__init__(make_core, threshold, spike_grad, init_hidden, output, reset_mechanism, **leaky_options)


class Synaptic(_CoreSkin, snntorch.Synaptic):
    r"""snnTorch skin of :class:`snn_parallel.neurons.SynapticLIF`, a drop-in for ``snn.Synaptic``: the
    second-order LIF :math:`\mathrm{syn}_t = \alpha\,\mathrm{syn}_{t-1} + x_t`,
    :math:`\mathrm{mem}_t = \beta\,\mathrm{mem}_{t-1} + \mathrm{syn}_t - V_{th} s_{t-1}` (snnTorch's default
    ``reset_delay=True``) or :math:`- V_{th} s_t` (``reset_delay=False``), trained in parallel by
    :meth:`multistep`. It subclasses ``snntorch.Synaptic``, so snnTorch's tools treat it as one
    (``utils.reset``, ``Synaptic.detach_hidden`` / ``reset_hidden``, ``reset_mem``, ``init_synaptic``,
    ``backprop.BPTT`` / ``TBPTT``).

    Args:
        features: channels ``C``; ``None`` (default) infers it from the first input.
        alpha: synaptic decay in ``(0, 1)``; the core's :math:`\tau_{syn} = 1/(1-\alpha)`. A tensor of ``C``
            different values is a decay per channel (``snn.Synaptic``'s per-neuron ``alpha``).
        beta: membrane decay in ``(0, 1]``; the core's :math:`\tau = 1/(1-\beta)` (``inf`` for ``beta=1.0``: no
            leak), per channel likewise.
        threshold: :math:`V_{th}`: a number, or one per channel (a ``[C]`` tensor).
        spike_grad: snnTorch surrogate (default ``snntorch.surrogate.atan()``, as ``snn.Synaptic``'s).
        learn_alpha, learn_beta: learn the decay (the core's ``learn_syn_decay``, ``learn_decay``), as
            ``snn.Synaptic``: one for the layer (a 0-d logit) from a number, one per channel from a per-neuron
            tensor; a sigmoid of a logit where ``snn.Synaptic`` learns the decay itself, clamped to ``[0, 1]``
            (``learn_beta`` is refused with ``beta=1.0``, which a sigmoid cannot reach nor leave).
        learn_threshold: learn the threshold (the core's ``v_threshold``, which ``neuron.threshold`` is),
            initialised from ``threshold``: one for the layer (0-d) from a number, one per channel from a
            per-neuron tensor.
        init_hidden, output: snnTorch's.
        reset_mechanism: ``"subtract"`` (default) or ``"none"`` (no reset, the core's ``reset=False``);
            ``"zero"`` is refused (see below).
        reset_delay: ``True`` (default, snnTorch's): the reset subtracted one step after the spike, undecayed;
            ``False``: within the step that fired.
        **synaptic_options: ``snn.Synaptic``'s ``surrogate_disable`` (see the module docstring: the gradients are
            ``snn.Synaptic``'s, ``reset_delay=False`` included but for the decays' in ``multistep``), ``inhibition``
            and ``state_quant`` (these two at ``False`` only).

    **Contract.** ``forward(input_, syn=None, mem=None)`` is one step and returns ``(spk, syn, mem)`` (``spk``
    alone with ``init_hidden=True, output=False``; passing ``syn`` or ``mem`` then raises ``TypeError``), as
    ``snn.Synaptic``; ``syn`` and ``mem`` are its buffers ``self.syn``, ``self.mem``, the whole state, carried from
    one call to the next. ``multistep(x_seq, syn=None, mem=None)`` runs a time-major ``[T, B, ...]`` sequence
    in parallel and returns ``(spk_seq, syn_seq, mem_seq)`` (or ``spk_seq``), the values ``forward`` returns at
    each step, leaving the state at the sequence end. ``mem`` is ``snn.Synaptic``'s: with the delayed reset the
    potential :math:`u_t` compared with the threshold, its spike's subtraction pending (recomputed from ``mem`` at
    the next step, as ``snn.Synaptic`` does, so ``syn`` and ``mem`` remain the whole state); with
    ``reset_delay=False`` the membrane after the step's reset, :math:`u_t - V_{th} s_t`.

    **Firing and reset.** By default the reset is snnTorch's delayed one, and the spikes, ``syn`` and ``mem`` are
    ``snn.Synaptic``'s exactly. With ``reset_delay=False`` the reset acts within the step that fired, and they
    are ``snn.Synaptic(reset_delay=False)``'s as long as one subtraction brings the membrane below the threshold
    (``snn.Synaptic`` subtracts once more at the next step where it does not). ``"zero"`` would multiply the
    membrane by :math:`1 - s_t`, feeding the spikes back into the state, which no parallel scan can run.

    **Gradient.** The reset is detached: the spike subtracted carries no gradient, the threshold does (as
    ``snn.Synaptic(learn_threshold=True)``'s), which is ``snn.Synaptic``'s default BPTT exactly (with fixed
    decays). ``snn.Synaptic(reset_delay=False)`` also backpropagates through the :math:`-V_{th} s_t` of the step
    that fired, so BPTT gradients differ from it for the same spikes (with ``reset_mechanism="none"`` they are
    the same). The decays' gradients are ``snn.Synaptic``'s with the delayed reset (the default: the pending
    resets decay with :math:`\beta` itself) and without a reset; with ``reset_delay=False``, ``forward`` step by
    step multiplies the membrane after the reset by :math:`\beta`, as ``snn.Synaptic`` does, and ``multistep``
    gives :math:`\beta` its gradient through the reset-free membrane.

    A ``snn.Synaptic`` state dict (``alpha``, ``beta``, ``threshold``) loads into it; assigning ``neuron.alpha``,
    ``neuron.beta`` or ``neuron.threshold`` retunes the core.
    """

    _core_type = neurons.SynapticLIF
    _resets = ("subtract", "none")
    _threshold_per_channel = True
    _snntorch_name = "Synaptic"
    _delayed_reset = True
    core: neurons.SynapticLIF

    def __init__(
        self,
        features: int | None = None,
        *,
        alpha: float | torch.Tensor = 0.5,
        beta: float | torch.Tensor = 0.5,
        threshold: float | torch.Tensor = 1.0,
        spike_grad: Any = None,
        learn_alpha: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        reset_delay: bool = True,
        init_hidden: bool = False,
        output: bool = False,
        reset_mechanism: str = "subtract",
        **synaptic_options: Any,
    ) -> None:
        name = type(self).__name__
        for arg in synaptic_options:
            if arg not in _SYNAPTIC_OPTIONS:
                raise TypeError(f"{name}() got an unexpected keyword argument {arg!r}")
        learn_alpha, learn_beta = _learned(alpha, learn_alpha, "learn_alpha"), _learned(beta, learn_beta, "learn_beta")
        learn_threshold = _learned(threshold, learn_threshold, "learn_threshold")
        decays = {  # the synaptic decay below 1 (the core's tau_syn is finite), the membrane's up to 1
            "alpha": _Decay(
                "alpha",
                alpha,
                tau="tau_syn",
                logit="syn_decay_logit",
                learn="learn_syn_decay",
                read="alpha",
                learned=learn_alpha,
            ),
            "beta": _membrane_decay(beta, learn_beta),
        }

        def make_core(surrogate: Surrogate, v_threshold: float | torch.Tensor) -> neurons.SynapticLIF:
            return neurons.SynapticLIF(
                features,
                tau_syn=decays["alpha"].initial_tau,
                tau=decays["beta"].initial_tau,
                learn_decay=learn_beta,
                learn_syn_decay=learn_alpha,
                v_threshold=v_threshold,
                learn_threshold=learn_threshold,
                reset=reset_mechanism == "subtract",
                reset_delay=reset_delay,
                surrogate=surrogate,
            )

        options = {"init_hidden": init_hidden, "output": output, "reset_delay": reset_delay, **synaptic_options}
        core, snntorch_arguments = self._build_core(make_core, threshold, spike_grad, reset_mechanism, options)
        super().__init__(_UNUSED_BETA, _UNUSED_BETA, **snntorch_arguments)
        self.core = core
        self._decays = decays
        for decay in decays.values():  # snn.Synaptic's per-neuron decays: the core's per channel
            if decay.pending is not None:
                setattr(self, decay.name, decay.pending)

    alpha = _decay_property(
        "alpha",
        r"""The synaptic decay :math:`\alpha`: in the shape of the ``alpha`` given (0-dim for a number, learned or
        not), ``[C]`` learned from a per-neuron tensor or after loading different values per channel; assigning it
        retunes the core.""",
    )
    beta = _decay_property("beta", r"""The membrane decay :math:`\beta`, as :attr:`alpha`.""")

    def _alpha_register_buffer(self, alpha: Any, learn_alpha: bool) -> None:
        """Called by ``Synaptic.__init__``: no ``alpha`` buffer (the core holds it, see :attr:`alpha`)."""

    def _beta_buffer(self, beta: Any, learn_beta: bool) -> None:
        """Called by ``LIF.__init__``: no ``beta`` buffer (see :attr:`beta`)."""

    # -- state: snn.Synaptic's buffers syn and mem, the whole state ---------------------
    def __setattr__(self, name: str, value: Any) -> None:
        """``neuron.syn = tensor`` or ``neuron.mem = tensor`` (snnTorch's reset helpers assign them) is checked
        here, so that the next step can take the stored state as checked."""
        if name in ("syn", "mem") and isinstance(value, torch.Tensor) and "core" in self._modules:
            check_tensor(value, name)
        super().__setattr__(name, value)

    def _state(self, step: torch.Tensor, name: str, syn: torch.Tensor | None, mem: torch.Tensor | None) -> Any:
        """The core state to start the checked step ``step`` (of argument ``name``) from: ``syn`` and ``mem``
        passed in replace the stored ones, as in ``snn.Synaptic``; one of another shape than the step starts at
        rest. ``mem`` is a whole state: the core's threshold bias is the reset pending in it
        (:meth:`_pending_reset`)."""
        if self.init_hidden and (syn is not None or mem is not None):
            raise TypeError("`mem` or `syn` should not be passed as an argument while `init_hidden=True`")
        values = []
        for field, given in (("syn", syn), ("mem", mem)):
            stored = self._buffers[field]
            if given is not None and not isinstance(given, torch.Tensor):
                raise TypeError(f"{field} must be a torch.Tensor or None, got {type(given).__name__}")
            if given is not None and given is not stored and given.shape == step.shape:
                check_state_tensor(given, field, step.shape, step, name)
                stored = given
            values.append(stored if stored.shape == step.shape else torch.zeros_like(step))
        syn, mem = values
        return self.core.state_type(syn, mem, self._pending_reset(mem, 1))

    def _store(self, syn: torch.Tensor, mem: torch.Tensor) -> None:
        """Keep ``syn`` and ``mem`` as the buffers (not views, so that ``detach_hidden`` detaches them in place)."""
        self._buffers["syn"] = syn if syn._base is None else syn.clone()
        self._buffers["mem"] = mem if mem._base is None else mem.clone()

    # -- entry points --------------------------------------------------------------------
    def forward(
        self, input_: torch.Tensor, syn: torch.Tensor | None = None, mem: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One time step for ``input_`` ``[B, features, ...]`` (a ``[features]`` step or a scalar is one sample):
        ``(spk, syn, mem)``, the stored buffers themselves (see the class docstring)."""
        return self._forward(input_, syn, mem)

    def _step(
        self, input_: torch.Tensor, syn: torch.Tensor | None, mem: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        before = self._state(input_, "input_", syn, mem)
        spk, state = self.core._step_checked(input_, before, state_values_checked=True)
        self._store(state.current, self._leaky_membrane(spk, state.filtered - before.bias, 1)[0])
        return spk, self.syn, self.mem

    def multistep(
        self, x_seq: torch.Tensor, syn: torch.Tensor | None = None, mem: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All steps of ``x_seq`` ``[T, B, features, ...]`` in parallel: ``(spk_seq, syn_seq, mem_seq)``, each
        ``[T, B, features, ...]``; ``syn`` and ``mem`` as in :meth:`forward`."""
        if not isinstance(x_seq, torch.Tensor) or x_seq.dim() < 1:
            raise TypeError(f"x_seq must be a time-major torch.Tensor [T, B, ...], got {type(x_seq).__name__}")
        x_seq = self._checked(x_seq, "x_seq", 2, x_seq.shape)
        spk_seq, (syn_seq, mem_seq), _ = self._sequence(x_seq, self._state(x_seq[0], "x_seq", syn, mem))
        self._store(syn_seq[-1], mem_seq[-1])
        return self._returns(spk_seq, syn_seq, mem_seq)

    def _sequence(
        self, x_seq: torch.Tensor, state: NamedTuple
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], NamedTuple]:
        """``(spk_seq, (syn_seq, mem_seq), last core state)`` for the checked ``x_seq`` from the core state
        ``state``: the core's parallel path, ``mem`` snnTorch's (:meth:`_leaky_membrane`)."""
        spk_seq, potential, syn_seq, state = self.core.update_sequence_with_current(x_seq, state)
        return spk_seq, (syn_seq, self._leaky_membrane(spk_seq, potential, 2)[0]), state

    def _driven_sequence(
        self, x_seq: torch.Tensor, state: NamedTuple | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], NamedTuple]:
        """For a trainer of :mod:`snn_parallel.learners`, which holds the core state itself (``None``: at rest):
        ``(spk_seq, (syn_seq, mem_seq), last_state)``, what :meth:`forward` returns beside the spikes at each step;
        stores nothing."""
        x_seq = self.core._checked(x_seq, "x_seq", check_sequence, 2)
        return self._sequence(x_seq, self.core._resolve_state(state, x_seq[0]))

    def extra_repr(self) -> str:
        alpha, beta = (self._decays[name].describe(self.core) for name in ("alpha", "beta"))
        return super().extra_repr() + f", alpha={alpha}, beta={beta}, reset_delay={self.core.reset_delay}"


class _GainLIF(neurons.DecoupledLIF):
    r""":class:`~snn_parallel.neurons.DecoupledLIF` whose input gain is a constant :math:`g` (``gain``):
    :math:`u'_t = \beta u'_{t-1} + g\,x_t`, the reset as the core's. ``snn.Lapicque``'s RC membrane takes its input
    with :math:`g = \Delta t / C` where its decay is :math:`\beta = 1 - \Delta t/(RC)`; the gain enters the core's
    linear response, so its parallel path, step and the trainers of :mod:`snn_parallel.learners` all apply it."""

    #: the input gain :math:`g`
    gain: float = 1.0

    def _decay_and_gain(self) -> tuple[torch.Tensor, torch.Tensor]:
        beta = self.beta
        return beta, torch.full_like(beta, self.gain)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", gain={self.gain:g}"


#: ``snn.Lapicque``'s buffers that set the core's decay and gain
_RC_BUFFERS = ("R", "C", "time_step")


def _given(value: object, name: str) -> float | None:
    """One of ``snn.Lapicque``'s ``beta``, ``R``, ``C``: ``None`` where snnTorch takes it as not given (``False``,
    ``None`` or 0: it tests their truth), else the finite value (a number or a tensor of one value)."""
    if value is None or value is False:
        return None
    value = _scalar(value, name, " (snn.Lapicque takes one value for the layer)")
    return value or None


def _step_rate(time_step: float, R: float, C: float) -> float:
    r"""The fraction :math:`\Delta t/(RC)` that ``snn.Lapicque``'s membrane loses per step (its decay is one minus
    it), refused outside ``(0, 1)``: the core's decay must be in ``(0, 1)``, where snnTorch would run a membrane that
    flips its sign at every step."""
    rate = time_step / (R * C)
    if not 0 < rate < 1:
        raise ValueError(
            f"time_step / (R * C) must be in (0, 1), got {time_step:g} / ({R:g} * {C:g}) = {rate:g}: the membrane "
            f"decays by 1 - time_step / (R * C) per step, which must be in (0, 1) here (with beta given, R * C = "
            "time_step / ln(1 / beta): beta must be above exp(-1) = 0.368). Pass a smaller time_step or larger R, C"
        )
    return rate


def _lapicque_rate(beta: object, R: object, C: object, time_step: object) -> float:
    r""":math:`\Delta t/(RC)` for ``snn.Lapicque``'s arguments, ``R`` and ``C`` derived from ``beta`` as snnTorch
    derives them: ``beta`` alone (``R = 1``), or with one of ``R`` and ``C``, sets :math:`RC = \Delta t/\ln(1/\beta)`;
    without ``beta``, ``R`` and ``C`` are both needed."""
    step = check_float(_scalar(time_step, "time_step"), "time_step", minimum=0, min_open=True)
    decay, resistance, capacitance = _given(beta, "beta"), _given(R, "R"), _given(C, "C")
    for name, value in (("R", resistance), ("C", capacitance)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must be positive, got {value}")
    if decay is None:
        if resistance is None or capacitance is None:
            raise ValueError("Lapicque needs beta, or R and C (beta with one of R and C also derives the other)")
        return _step_rate(step, resistance, capacitance)
    if resistance is not None and capacitance is not None:
        raise ValueError(
            "pass beta, or R and C, not all three: snn.Lapicque derives R or C from beta and then registers neither"
        )
    if not 0 < decay < 1:
        raise ValueError(f"beta must be in (0, 1), got {decay}")
    return _step_rate(step, 1.0, step / math.log(1 / decay))


class Lapicque(_LeakyMembrane, snntorch.Lapicque):
    r"""snnTorch skin of ``snn.Lapicque`` (snnTorch tutorial 2's RC neuron), trained in parallel: a
    :class:`~snn_parallel.neurons.DecoupledLIF` core with decay :math:`1 - \Delta t/(RC)` and input gain
    :math:`\Delta t/C`,

    .. math::
        \mathrm{mem}_t = \Big(1 - \frac{\Delta t}{RC}\Big)\mathrm{mem}_{t-1} + \frac{\Delta t}{C}\,x_t
        - V_{th}\,\mathrm{sg}(s_{t-1}),\qquad s_t = \Theta(\mathrm{mem}_t - V_{th}),

    the reset subtracted one step after the spike, undecayed, its spike detached, as ``snn.Lapicque`` does (its
    ``_base_sub``; ``reset_mechanism="none"``: no reset). ``snn.Lapicque`` reads ``beta`` only to derive ``R`` and
    ``C``: with ``beta`` alone ``R = 1`` and :math:`C = \Delta t/\ln(1/\beta)`; with ``R`` and ``C`` it sets
    :math:`\beta = e^{-\Delta t/(RC)}`, which the update does not use either (its decay is the first-order
    :math:`1 - \Delta t/(RC)`). The spikes, ``mem`` and the gradients of the input, the weights before it and the
    threshold are ``snn.Lapicque``'s.

    Args:
        features: channels ``C``; ``None`` (default) infers it from the first input.
        beta, R, C, time_step: snnTorch's; give ``beta``, or ``R`` and ``C``, or ``beta`` with one of them (each one
            value for the layer, as ``snn.Lapicque`` takes them). :math:`\Delta t/(RC)` must be in ``(0, 1)`` (with
            ``beta``: ``beta`` above :math:`e^{-1}`), a decay the core holds. Read back (and assigned) as snnTorch's
            buffers ``beta``, ``R``, ``C``, ``time_step``; assigning ``R``, ``C`` or ``time_step`` retunes the core.
        threshold: :math:`V_{th}`: a number, or one per channel (a ``[C]`` tensor).
        spike_grad: snnTorch surrogate (default ``snntorch.surrogate.atan()``, as ``snn.Lapicque``'s).
        learn_beta: ``False`` only: ``snn.Lapicque``'s learned ``beta`` never enters its update (``R`` and ``C`` are
            derived from it once, at construction), so it trains nothing.
        learn_threshold: learn the threshold (the core's ``v_threshold``, which ``neuron.threshold`` is): one for the
            layer (0-d) from a number, one per channel from a per-neuron tensor; its gradient is
            ``snn.Lapicque(learn_threshold=True)``'s.
        init_hidden, output: snnTorch's.
        reset_mechanism: ``"subtract"`` (default) or ``"none"``; ``"zero"`` is refused: it multiplies the membrane
            by :math:`1 - s_t`, feeding the spikes back into the state, which no parallel scan can run.
        surrogate_disable: snnTorch's (see the module docstring): no gradient through the spike, ``spike_grad``
            ignored.
        inhibition, state_quant: ``False`` only.

    **Contract.** ``snn.Lapicque``'s: ``forward(input_, mem=None)`` is one step and returns ``(spk, mem)`` (``spk``
    alone with ``init_hidden=True, output=False``), ``mem`` being ``snn.Lapicque``'s (the potential compared with the
    threshold, its spike's subtraction pending and recomputed from ``mem`` at the next step); ``multistep(x_seq,
    mem=None)`` runs a time-major ``[T, B, ...]`` sequence in parallel and returns ``(spk_seq, mem_seq)``. It
    subclasses ``snntorch.Lapicque``, so ``utils.reset``, ``reset_mem``, ``Lapicque.detach_hidden`` /
    ``reset_hidden`` and ``backprop.BPTT`` treat it as one, and a ``snn.Lapicque`` state dict loads into it.
    """

    _core_type = _GainLIF
    _resets = ("subtract", "none")
    _threshold_per_channel = True
    _snntorch_name = "Lapicque"
    _delayed_reset = True
    core: _GainLIF

    def __init__(
        self,
        features: int | None = None,
        *,
        beta: float | torch.Tensor | bool = False,
        R: float | torch.Tensor | bool = False,  # noqa: N803 (snnTorch's names)
        C: float | torch.Tensor | bool = False,  # noqa: N803
        time_step: float | torch.Tensor = 1,
        threshold: float | torch.Tensor = 1.0,
        spike_grad: Any = None,
        surrogate_disable: bool = False,
        init_hidden: bool = False,
        inhibition: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        reset_mechanism: str = "subtract",
        state_quant: Any = False,
        output: bool = False,
    ) -> None:
        if isinstance(features, float | torch.Tensor):  # snn.Lapicque(0.9) passes beta first
            raise TypeError(
                f"features must be a positive int or None, got {features!r}: Lapicque's first argument is the feature "
                "count; pass snnTorch's arguments by name, e.g. Lapicque(beta=0.9)"
            )
        rate = _lapicque_rate(beta, R, C, time_step)
        if check_bool(learn_beta, "learn_beta"):
            raise ValueError(
                "learn_beta=True is not supported by Lapicque: snn.Lapicque's beta enters only the derivation of R "
                "and C at construction, not its update, so its parameter gets no gradient and trains nothing; leave "
                "it at False"
            )
        learn_threshold = _learned(threshold, learn_threshold, "learn_threshold")
        decay = _membrane_decay(1 - rate, False)

        def make_core(surrogate: Surrogate, v_threshold: float | torch.Tensor) -> _GainLIF:
            return _GainLIF(
                features,
                tau=decay.initial_tau,
                v_threshold=v_threshold,
                learn_threshold=learn_threshold,
                reset=reset_mechanism == "subtract",
                reset_delay=True,
                surrogate=surrogate,
            )

        options = {
            "init_hidden": init_hidden,
            "output": output,
            "reset_delay": True,
            "surrogate_disable": surrogate_disable,
            "inhibition": inhibition,
            "state_quant": state_quant,
        }
        core, snntorch_arguments = self._build_core(make_core, threshold, spike_grad, reset_mechanism, options)
        del snntorch_arguments["reset_delay"]  # snn.Lapicque always delays its reset
        super().__init__(beta=beta, R=R, C=C, time_step=time_step, **snntorch_arguments)
        self.core = core
        self._decays = {"decay": decay}
        self._retune()  # from snnTorch's buffers, C or R derived in their dtype as snn.Lapicque holds them

    def _retune(self) -> None:
        """Give the core the decay and gain of snnTorch's buffers ``R``, ``C``, ``time_step``, and the value of its
        ``threshold`` buffer where it has one (in its dtype, as ``snn.Lapicque`` compares with it)."""
        names = (*_RC_BUFFERS, "threshold") if "threshold" in self._buffers else _RC_BUFFERS
        self.load_state_dict({name: getattr(self, name) for name in names}, strict=False)

    def __setattr__(self, name: str, value: Any) -> None:
        """``neuron.R``, ``neuron.C`` or ``neuron.time_step = tensor`` (snnTorch's buffers) retunes the core."""
        if name in _RC_BUFFERS and "core" in self._modules:
            self._checked_rate({name: value})  # before the buffer takes it
            super().__setattr__(name, value)
            self._retune()
            return
        super().__setattr__(name, value)

    def _checked_rate(self, values: Mapping[str, object]) -> float:
        r""":math:`\Delta t/(RC)` for ``R``, ``C``, ``time_step`` taken from ``values`` where there, else the buffers;
        a ``ValueError`` names what is out of range."""
        given = [values.get(name, getattr(self, name)) for name in _RC_BUFFERS]
        resistance, capacitance, step = (_scalar(value, name) for value, name in zip(given, _RC_BUFFERS, strict=True))
        check_float(step, "time_step", minimum=0, min_open=True)
        for name, value in (("R", resistance), ("C", capacitance)):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        return _step_rate(step, resistance, capacitance)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Lapicque:
        """``.double()`` and the like, then the core's decay recomputed in the new dtype from ``R``, ``C`` and
        ``time_step`` (the value of its logit in the old dtype would be rounded)."""
        super()._apply(fn, recurse)
        if "core" in self._modules:
            self._retune()
        return self

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Load as ``snn.Lapicque`` does; the core's decay :math:`1 - \\Delta t/(RC)` and gain :math:`\\Delta t/C`
        follow the loaded ``R``, ``C`` and ``time_step`` (each refused where their decay is out of range)."""
        rate = self._checked_rate(
            {name: state_dict[prefix + name] for name in _RC_BUFFERS if prefix + name in state_dict}
        )
        state_dict[prefix + "decay"] = torch.tensor(1 - rate, dtype=torch.float64)  # the core's, see _Decay.load
        super()._load_from_state_dict(state_dict, prefix, *args)
        R, C, step = (float(getattr(self, name)) for name in _RC_BUFFERS)  # noqa: N806
        self.core.gain = R * (1 / (R * C)) * step  # snn.Lapicque's input * R * (1 / (R * C)) * time_step

    def extra_repr(self) -> str:
        R, C, step = (float(getattr(self, name)) for name in _RC_BUFFERS)  # noqa: N806
        return super().extra_repr() + f", R={R:g}, C={C:g}, time_step={step:g}"


def reset(net: nn.Module) -> None:
    """Reset the state of every ``snntorch.Leaky``, ``snntorch.Synaptic`` and ``snntorch.Lapicque`` (ours included)
    inside ``net``, nested
    ones too, and of no other network; the new state is at rest and carries no graph."""
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be an nn.Module, got {type(net).__name__}")
    for module in net.modules():
        if isinstance(module, (snntorch.Leaky, snntorch.Synaptic, snntorch.Lapicque)):
            module.reset_mem()


# -- back to snnTorch's own neurons --------------------------------------------------------
#: the skins that are snnTorch neurons numerically, and the snnTorch class each becomes
_SNNTORCH_TWINS = (
    "DecoupledLIF -> snn.Leaky, Synaptic -> snn.Synaptic, Lapicque -> snn.Lapicque, StateLeaky -> snn.StateLeaky, "
    "LinearLeaky -> snn.LinearLeaky"
)
#: the drop-ins that subclass their snnTorch neuron and keep its attributes and state dict, by exact class, and that
#: neuron's class (snnTorch 1.0's StateLeaky and LinearLeaky, added at the end of this module where snnTorch has them)
_TWIN_OF: dict[type[nn.Module], type[nn.Module]] = {}


def _no_twin(skin: _CoreSkin) -> str | None:
    """Why ``skin`` has no snnTorch neuron computing what it computes (``None``: it has one)."""
    if type(skin) in _TWIN_OF:
        return None
    if not isinstance(skin, (DecoupledLIF, Synaptic, Lapicque)):
        reason = getattr(skin, "_no_beta", "it is no snnTorch neuron")
        return f"no snnTorch neuron computes it ({reason}); only {_SNNTORCH_TWINS} convert"
    if getattr(skin, "mem_kind", "leaky") != "leaky":
        return (
            f"its mem is {skin.mem_kind!r}, the core's reset-free filter, which snnTorch's mem is not; build it "
            "with mem='leaky' (the default)"
        )
    if skin.core.decay_input:
        return "its core scales the input by 1 - beta (decay_input=True), which snnTorch's update does not"
    return None


def _per_neuron(value: torch.Tensor, shape: torch.Size, spatial: int) -> torch.Tensor:
    """A copy of a skin's tensor for snnTorch's neuron: a per-channel ``[C]`` tensor in ``shape`` where that holds
    ``C`` values (the shape the decay was given in), else ``[C, 1, ...]`` over ``spatial`` dims, as snnTorch
    broadcasts its per-neuron tensors over a step ``[B, C, ...]``; any other tensor in its own shape."""
    value = value.detach().clone()
    if value.dim() != 1:
        return value
    if shape.numel() == value.numel() and len(shape) > 1:
        return value.reshape(shape)
    return value.reshape(-1, *[1] * spatial)


def _snntorch_threshold(skin: _CoreSkin, spatial: int) -> torch.Tensor:
    """The skin's threshold as ``snn.Leaky`` holds it: its buffer in the shape given, or the core's tensor (a lazy
    core's, not yet built, from the value it will be built from) in the shape the threshold was given in (``[C, 1,
    ...]``, ``[1]``) where that holds its values, else ``[C, 1, ...]`` on a layer that ran on feature maps."""
    threshold = skin.threshold
    if "threshold" in skin._buffers:
        return _per_neuron(threshold, torch.Size(), spatial)
    shape = skin._threshold_shape
    if nn.parameter.is_lazy(threshold) or not threshold.numel():  # a per-channel buffer is empty until then
        init = torch.as_tensor(skin.core._threshold_init)
        threshold = (init.expand(shape) if init.dim() == 0 else init).to(threshold.device, threshold.dtype)
    if threshold.numel() == shape.numel() and (len(shape) > 1 or spatial == 0 or shape.numel() == 1):
        return threshold.detach().clone().reshape(shape)
    return _per_neuron(threshold, torch.Size(), spatial)


def _snntorch_twin(skin: _CoreSkin) -> nn.Module:
    """The snnTorch neuron computing what ``skin`` computes (:func:`to_snntorch`), its own copies of the trained
    values, on the skin's device and in its dtype, holding the skin's state detached."""
    if type(skin) in _TWIN_OF:
        return _retyped(skin, _TWIN_OF[type(skin)])
    core = skin.core
    mem = skin.mem
    # the dims after the channel: of the steps the layer ran on ([B, C, H, ...]), or of a decay given [C, 1, ...]
    spatial = max(mem.dim() - 2, *(len(decay.shape) - 1 for decay in skin._decays.values()), 0)
    common = {
        "threshold": _snntorch_threshold(skin, spatial),
        "spike_grad": None if skin.surrogate_disable else copy.deepcopy(skin.spike_grad),
        "surrogate_disable": skin.surrogate_disable,
        "init_hidden": skin.init_hidden,
        "inhibition": skin.inhibition,
        "learn_threshold": bool(core.learn_threshold),
        "reset_mechanism": skin.reset_mechanism,
        "state_quant": skin.state_quant,
        "output": skin.output,
    }
    if isinstance(skin, Lapicque):
        # snnTorch derives R, C (and beta) at construction; its buffers are then set to the skin's, which they are
        R, C, step = (float(getattr(skin, name)) for name in _RC_BUFFERS)  # noqa: N806
        twin = snntorch.Lapicque(R=R, C=C, time_step=step, **common)
        for name in (*_RC_BUFFERS, "beta"):
            setattr(twin, name, getattr(skin, name).detach().clone())
    else:  # beta (and alpha) as the skin reads them back
        decays = {name: _per_neuron(getattr(skin, name), decay.shape, spatial) for name, decay in skin._decays.items()}
        common.update(decays, learn_beta=bool(core.learn_decay), reset_delay=core.reset_delay)
        if isinstance(skin, Synaptic):
            twin = snntorch.Synaptic(learn_alpha=bool(core.learn_syn_decay), **common)
            twin.syn = skin.syn.detach().clone()
        else:
            twin = snntorch.Leaky(**common)
    factor = skin.graded_spikes_factor.detach().clone()
    twin.graded_spikes_factor = nn.Parameter(factor) if isinstance(skin.graded_spikes_factor, nn.Parameter) else factor
    twin.reset_mechanism_val = skin.reset_mechanism_val.detach().clone()
    twin.mem = mem.detach().clone()
    return twin


def to_snntorch(net: nn.Module) -> nn.Module:
    r"""A copy of ``net`` with snnTorch's own neurons in place of the skins that compute what they compute:
    :class:`DecoupledLIF` becomes ``snn.Leaky``, :class:`Synaptic` ``snn.Synaptic`` and :class:`Lapicque`
    ``snn.Lapicque`` (:class:`StateLeaky` and :class:`LinearLeaky` snnTorch's classes of those names), each carrying
    the trained values and every constructor option. ``net`` is left untouched.

    The copy runs without this library's neurons, and its state dict is the one a network built with snnTorch's
    neurons holds: ``original.load_state_dict(to_snntorch(ours).state_dict())`` loads strictly into the same
    network written with ``snn.Leaky`` etc., and snnTorch's tools that need its own classes (NIR export,
    ``utils.reset``, ``backprop``) take it. Each neuron computes the skin's spikes and ``mem`` (with
    ``reset_delay=False`` as long as one subtraction brings the membrane below the threshold, as the skin's
    docstring says) and, with the delayed reset or none, the same gradients for the input, the weights and a
    learned threshold; a learned decay :math:`\beta = \sigma(w)` becomes snnTorch's parameter :math:`\beta`
    itself, whose gradient is the skin's :math:`\partial L/\partial w` divided by :math:`\beta(1-\beta)`.

    Values: ``beta`` (and ``alpha``) as the skin reads them back, in the shape given (0-d from a number), learned
    where the skin learns them (one learned value a 0-d ``nn.Parameter``, one per channel a per-neuron one);
    ``threshold`` likewise (in the shape given: ``[C, 1, 1]`` stays so, as in ``snn.Leaky``, on a skin never run
    too); a per-channel value held by the core as ``[C]`` becomes ``[C, 1, ...]`` on a layer that ran on feature
    maps (snnTorch broadcasts elementwise); ``graded_spikes_factor`` (learned or not),
    ``reset_mechanism``, ``reset_delay``, ``spike_grad`` (a copy), ``surrogate_disable``, ``init_hidden`` and
    ``output`` as the skin's; ``snn.Lapicque``'s ``R``, ``C``, ``time_step`` and ``beta`` buffers as the skin holds
    them. Everything keeps its device and dtype.

    State: each neuron holds the skin's state, detached from its graph (a graph cannot be copied), where snnTorch
    can hold it: ``mem`` (and ``syn``) is the whole state, the pending delayed reset recomputed from ``mem`` as
    snnTorch does; so the copy continues the sequence where ``net`` stands. Call ``utils.reset(net)`` to start a
    new one, as usual. Other modules (and tensors that carry a graph, detached) are deep copies.

    Raises:
        TypeError: ``net`` is not an ``nn.Module``.
        ValueError: ``net`` holds a skin with no snnTorch equivalent (``DynamicDecay``, ``PRF``, ``LTC``,
            ``PSPLIF``) or with an option snnTorch cannot express (``DecoupledLIF(mem="reset_free")``), naming its
            path in ``net``, its class and why; or ``net`` holds no skin, so there is nothing to convert.

    Returns:
        The copy; where ``net`` is itself a skin, the snnTorch neuron.
    """
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    skins = [
        (name, module)
        for name, module in net.named_modules()
        if isinstance(module, _CoreSkin) or type(module) in _TWIN_OF
    ]
    if not skins:
        raise ValueError(
            f"net ({type(net).__name__}) holds no skin of snn_parallel.adapters.snntorch, so to_snntorch has nothing "
            f"to convert ({_SNNTORCH_TWINS}); its neurons are already snnTorch's or none"
        )
    for name, skin in skins:  # all refusals before anything is built (snnTorch lists every neuron it builds)
        reason = _no_twin(skin)
        if reason is not None:
            raise ValueError(f"{name or 'net'} ({type(skin).__name__}) cannot become an snnTorch neuron: {reason}")
    # deepcopy puts each twin wherever its skin is (shared ones included) and copies a graph-carrying tensor
    # (which deepcopy refuses) detached
    return _swapped_copy(net, {id(skin): _snntorch_twin(skin) for _, skin in skins})


def _swapped_copy(net: nn.Module, replacements: dict[int, nn.Module]) -> nn.Module:
    """A deep copy of ``net`` with ``replacements[id(module)]`` wherever ``module`` is (each place a shared one is
    used); a buffer that carries a graph (which deepcopy refuses), the state of a neuron not replaced say, is copied
    detached. ``net`` itself replaced: its replacement."""
    memo: dict[int, Any] = dict(replacements)
    if id(net) in memo:
        return memo[id(net)]
    for tensor in net.buffers():
        if tensor.grad_fn is not None:
            memo[id(tensor)] = tensor.detach().clone()
    return copy.deepcopy(net, memo)


def _retyped(neuron: nn.Module, target: type[nn.Module]) -> nn.Module:
    """``neuron``, an ``snn.StateLeaky`` or ``snn.LinearLeaky`` (snnTorch's or ours), as ``target`` (ours or
    snnTorch's): built with its options, on its device and in its dtype, then given its state dict (``tau``, the
    threshold, the graded factor, the linear layer). The two hold the same attributes and state dict and no state
    between calls."""

    def learned(name: str) -> bool:
        return isinstance(getattr(neuron, name), nn.Parameter)

    options: dict[str, Any] = {
        "beta": torch.zeros(neuron.tau.shape),  # sets tau's shape only: the state dict loads tau
        "threshold": neuron.threshold.detach().clone(),
        "spike_grad": None if neuron.surrogate_disable else copy.deepcopy(neuron.spike_grad),
        "surrogate_disable": neuron.surrogate_disable,
        "learn_beta": learned("tau"),
        "learn_threshold": learned("threshold"),
        "state_quant": neuron.state_quant,
        "output": neuron.output,
        "graded_spikes_factor": neuron.graded_spikes_factor.detach().clone(),
        "learn_graded_spikes_factor": learned("graded_spikes_factor"),
        "kernel_truncation_steps": neuron.kernel_truncation_steps,
    }
    if isinstance(neuron, snntorch.LinearLeaky):
        linear = neuron.linear
        options.update(in_features=linear.in_features, out_features=linear.out_features, bias=linear.bias is not None)
    else:  # snnTorch keeps no channel count: it shapes tau only
        options.update(channels=neuron.tau.numel())
    with warnings.catch_warnings():  # snnTorch's, for options unused with output=False: the user's, warned already
        warnings.filterwarnings("ignore", message="StateLeaky: spike-related settings are unused")
        twin = target(**options)
    values = [t for t in neuron.state_dict().values() if t.is_floating_point()]
    twin.to(values[0].device, functools.reduce(torch.promote_types, (t.dtype for t in values)))
    twin.load_state_dict(neuron.state_dict())
    return twin


# -- from snnTorch's own neurons -----------------------------------------------------------
#: the snnTorch neurons that convert (their exact classes), and the skin each becomes
_SKINS = (
    "snn.Leaky -> DecoupledLIF, snn.Synaptic -> Synaptic, snn.Lapicque -> Lapicque, snn.StateLeaky -> StateLeaky, "
    "snn.LinearLeaky -> LinearLeaky"
)


#: the skin computing what each snnTorch neuron computes, by its exact class (a subclass, ours included, may compute
#: otherwise)
_SKIN_OF: Mapping[type, type[_CoreSkin]] = MappingProxyType(
    {snntorch.Leaky: DecoupledLIF, snntorch.Synaptic: Synaptic, snntorch.Lapicque: Lapicque}
)


def _skin(neuron: nn.Module, skin_type: type[_CoreSkin]) -> _CoreSkin:
    """The skin computing what snnTorch's ``neuron`` computes (:func:`from_snntorch`): built with its options, on its
    device and in its dtype, then given its values as its state dict (which the skins load) and its state detached.
    A ``ValueError`` or ``TypeError`` gives the skin's reason for an option it refuses."""
    if skin_type in _TWIN_OF:
        return _retyped(neuron, skin_type)

    def learned(name: str) -> bool:
        return isinstance(getattr(neuron, name), nn.Parameter)

    options: dict[str, Any] = {
        "threshold": neuron.threshold.detach().clone(),
        "learn_threshold": learned("threshold"),
        # with surrogate_disable snnTorch's spike_grad is its own bypass, which the option sets again
        "spike_grad": None if neuron.surrogate_disable else copy.deepcopy(neuron.spike_grad),
        "surrogate_disable": neuron.surrogate_disable,
        "init_hidden": neuron.init_hidden,
        "inhibition": neuron.inhibition,
        "reset_mechanism": neuron.reset_mechanism,
        "state_quant": neuron.state_quant,
        "output": neuron.output,
        "learn_beta": learned("beta"),
    }
    # buffers assigned before loading, in snnTorch's shapes (snn.Lapicque's beta is 0-d or [1] by how it was built)
    assigned: tuple[str, ...] = ()
    if skin_type is Lapicque:
        R, C, step = (float(getattr(neuron, name)) for name in _RC_BUFFERS)  # noqa: N806
        skin = Lapicque(R=R, C=C, time_step=step, **options)
        assigned = (*_RC_BUFFERS, "beta")
    else:
        options.update(beta=neuron.beta.detach().clone(), reset_delay=neuron.reset_delay)
        if skin_type is Synaptic:
            options.update(alpha=neuron.alpha.detach().clone(), learn_alpha=learned("alpha"))
        skin = skin_type(**options)
    # the values' device and dtype (not the state's: snnTorch's atan() spikes, float32, make a float16 mem float32)
    values = [t for t in neuron.state_dict().values() if t.is_floating_point()]
    device, dtype = values[0].device, functools.reduce(torch.promote_types, (t.dtype for t in values))
    skin.to(device, dtype)
    for name in assigned:
        setattr(skin, name, getattr(neuron, name).detach().clone())
    factor = neuron.graded_spikes_factor.detach().clone()  # learned or not, as snnTorch's
    skin.graded_spikes_factor = nn.Parameter(factor) if learned("graded_spikes_factor") else factor
    skin.load_state_dict(neuron.state_dict())
    for name in ("syn", "mem") if skin_type is Synaptic else ("mem",):
        value = getattr(neuron, name)
        if value.numel():  # mid-sequence (snnTorch's is empty before the first step); one sample kept as [1, C]
            value = value.detach().to(device, dtype, copy=True)
            setattr(skin, name, value.reshape(value.shape if value.dim() > 1 else (1, -1)))
    return skin


def from_snntorch(net: nn.Module) -> nn.Module:
    r"""A copy of ``net`` with the skins in place of snnTorch's own neurons, each computing what the neuron
    computes: ``snn.Leaky`` becomes :class:`DecoupledLIF`, ``snn.Synaptic`` :class:`Synaptic` and ``snn.Lapicque``
    :class:`Lapicque` (``snn.StateLeaky`` and ``snn.LinearLeaky`` :class:`StateLeaky` and :class:`LinearLeaky`, of
    the same options and state dict), each carrying the trained values and every constructor option; the inverse of
    :func:`to_snntorch`. ``net`` is left untouched.

    An existing snnTorch network (or one that loaded a checkpoint trained with snnTorch) trains in parallel without
    editing its code: the copy computes the same spikes and ``mem`` when stepped as before (with ``reset_delay=False``
    as long as one subtraction brings the membrane below the threshold, as :class:`DecoupledLIF`'s docstring says),
    and, with the delayed reset (the default) or none, the same gradients for the input, the weights and a learned
    threshold; each skin's ``multistep`` runs a whole sequence at once. A learned ``beta`` (``alpha``) becomes the
    skin's logit :math:`w`, :math:`\beta = \sigma(w)`, whose gradient is snnTorch's :math:`\partial L/\partial\beta`
    times :math:`\beta(1-\beta)`: the copy has new parameters, so build its optimizer from ``copy.parameters()``.

    Only those exact classes convert (``type(m) is snn.Leaky``; a subclass, ours included, is left as it is), and
    snnTorch's other neurons (``RLeaky``, ``RSynaptic``, ``Alpha``, ``SLSTM``, ``SConv2dLSTM``, ...) stay snnTorch's.

    Values: ``beta``, ``alpha`` and ``threshold`` as one value or per neuron (``[C]``, or ``[C, 1, ...]`` on feature
    maps), learned where snnTorch learns them; ``graded_spikes_factor`` (learned or not), ``reset_mechanism``,
    ``reset_delay``, ``spike_grad`` (a copy), ``surrogate_disable``, ``init_hidden`` and ``output``;
    ``snn.Lapicque``'s ``R``, ``C``, ``time_step`` and ``beta``. The skin's state dict then loads back into the
    snnTorch network. Everything keeps its device and dtype.

    State: each skin holds the neuron's ``mem`` (and ``syn``), detached (a graph cannot be copied), which is the
    whole state, the pending delayed reset recomputed from it as snnTorch does: the copy continues the sequence where
    ``net`` stands. A module used twice becomes one skin used twice. Other modules (and tensors that carry a graph,
    detached) are deep copies.

    Raises:
        TypeError: ``net`` is not an ``nn.Module``.
        ValueError: ``net`` holds an ``snn.Leaky``, ``snn.Synaptic`` or ``snn.Lapicque`` with an option its skin
            cannot express (``reset_mechanism="zero"``, ``inhibition``, ``state_quant``, a learned ``beta`` of 1 or
            one outside ``(0, 1]``, ``snn.Lapicque``'s ``learn_beta``, a per-neuron value that differs within a
            feature map, ...), naming its path in ``net``, its class and the skin's reason, before anything is built;
            or ``net`` holds none of them, so there is nothing to convert.

    Returns:
        The copy; where ``net`` is itself one of those neurons, its skin.
    """
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    found = [(name, module, _SKIN_OF[type(module)]) for name, module in net.named_modules() if type(module) in _SKIN_OF]
    if not found:
        raise ValueError(
            f"net ({type(net).__name__}) holds none of snnTorch's neurons that convert, so from_snntorch has "
            f"nothing to convert ({_SKINS}); its neurons are already skins, other snnTorch neurons or none"
        )
    instances = snntorch.SpikingNeuron.instances
    listed = len(instances)
    skins: dict[int, nn.Module] = {}
    for name, neuron, skin_type in found:
        try:
            skins[id(neuron)] = _skin(neuron, skin_type)
        except (TypeError, ValueError) as error:
            del instances[listed:]  # snnTorch lists every neuron it builds: none of these is left built
            raise ValueError(
                f"{name or 'net'} ({type(neuron).__name__}) cannot become a {skin_type.__name__}: {error}"
            ) from error
    return _swapped_copy(net, skins)


# -- surrogates in snnTorch's factory style -----------------------------------------------
def multi_gaussian(sigma: float = 0.3, scale: float = 6.0, height: float = 0.15, gamma: float = 0.5) -> _MultiGaussian:
    """LTC-SNN's multi-Gaussian surrogate firing on ``x > 0`` (snnTorch's rule), as a ``spike_grad``."""
    return _MultiGaussian(sigma, scale, height, gamma, inclusive=False)


def double_gaussian(
    sigma: float = 0.5, scale: float = 6.0, height: float = 0.15, gamma: float = 0.5
) -> _DoubleGaussian:
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
        (snntorch, "SynapticLIF"): Synaptic,  # snntorch.Synaptic is snnTorch's own
        (snntorch, "LapicqueLIF"): Lapicque,  # snntorch.Lapicque too
        (snntorch.surrogate, "MultiGaussian"): multi_gaussian,
        (snntorch.surrogate, "DoubleGaussian"): double_gaussian,
    }


_ABSENT = object()
_added: dict[tuple[Any, str], object] = {}
_skipped: set[str] = set()


def register() -> None:
    """Make the classes reachable as ``snntorch.DynamicDecay``, ``snntorch.PRF``,
    ``snntorch.DecoupledLIF``, ``snntorch.LTC``, ``snntorch.PSPLIF``, :class:`Synaptic` as ``snntorch.SynapticLIF``,
    :class:`Lapicque` as ``snntorch.LapicqueLIF`` (``snntorch.Synaptic`` and ``snntorch.Lapicque`` being snnTorch's
    own) and the surrogate factories as
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


# -- snnTorch 1.0's state-only leaky neurons (a module of their own; it imports the helpers above) -------------
if hasattr(snntorch, "StateLeaky"):
    from ._snntorch_stateleaky import LinearLeaky, StateLeaky  # noqa: E402

    __all__ += ["StateLeaky", "LinearLeaky"]
    _TWIN_OF.update({StateLeaky: snntorch.StateLeaky, LinearLeaky: snntorch.LinearLeaky})
    _SKIN_OF = MappingProxyType({**_SKIN_OF, **{twin: skin for skin, twin in _TWIN_OF.items()}})
else:

    def __getattr__(name: str) -> Any:
        """``StateLeaky`` and ``LinearLeaky`` where snnTorch has none (before 1.0): say so."""
        if name in ("StateLeaky", "LinearLeaky"):
            raise AttributeError(
                f"{name} is the drop-in for snn.{name}, which snnTorch {snntorch.__version__} lacks (added in 1.0)"
            )
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
