r"""Decoupled-reset LIF (PRF paper, ``DecoupledResetLIF``): a soft-reset LIF trained in parallel.

The neuron is the ordinary soft-reset LIF

.. math::

    u_t = \beta\,(u_{t-1} - V_{th} s_{t-1}) + c_t, \qquad s_t = \Theta(u_t - V_{th}),
    \qquad \beta = 1 - 1/\tau,

computed as a reset-free filter :math:`u'_t = \beta u'_{t-1} + c_t` (a parallel scan) and a
threshold bias :math:`b_{t+1} = \beta(b_t + V_{th} s_t)`, so that :math:`u_t = u'_t - b_t`.
Forward spikes are those of the sequential soft-reset LIF; the gradient is that of a
*detached* reset (it flows through :math:`u'` only).

With ``reset_delay=True`` the reset is subtracted one step after the spike, undecayed (snnTorch's default
``Leaky``, ``reset_delay=True``):

.. math::

    u_t = \beta\,u_{t-1} + c_t - V_{th}\,\mathrm{sg}(s_{t-1}), \qquad
    b_{t+1} = \beta\,b_t + V_{th}\,\mathrm{sg}(s_t),

the same reset-free filter with the spike's step entering the bias undecayed; the membrane returned is
:math:`u_t`, the potential compared with the threshold (before the pending subtraction of the step's own spike),
and the state's bias :math:`b_{t+1}` holds that pending reset. Here the bias decays with :math:`\beta` itself, not
detached, so that a learned :math:`\beta` gets snnTorch's gradient, through the resets already subtracted too:
:math:`\partial u_t/\partial\beta = u_{t-1} + \beta\,\partial u_{t-1}/\partial\beta` (the spikes stay detached).

The drive :math:`c_t` is the input :math:`x_t`, or with ``decay_input=True`` the input scaled by
:math:`1 - \beta = 1/\tau`, :math:`u_t = u_{t-1} + (x_t - u_{t-1})/\tau` before the reset (SpikingJelly's
``LIFNode(decay_input=True)`` and ``ParametricLIFNode``). ``tau=math.inf`` gives :math:`\beta = 1`, the
integrate-and-fire neuron (SpikingJelly's ``IFNode``, snnTorch's ``Leaky(beta=1)``). ``reset=False`` keeps
the threshold out of the membrane, :math:`u_t = u'_t` (snnTorch's ``reset_mechanism="none"``).

:math:`V_{th}` is one number, or one per channel, learned with ``learn_threshold=True``. Its gradient
is the soft-reset LIF's whose reset subtracts :math:`V_{th}\,\mathrm{sg}(s_{t-1})` (the spike detached,
the threshold not, as snnTorch's ``Leaky(learn_threshold=True)``): through the spikes' argument
:math:`u_t - V_{th}` and through the bias's step :math:`\beta V_{th} s_t` (:math:`V_{th} s_t` with
``reset_delay``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from .._validation import check_bool, check_float, check_learn
from ..ops.linear_fire import linear_fire, linear_fire_step
from .base import Neuron, neuron_surrogate


class DecoupledLIFState(NamedTuple):
    """State of :class:`DecoupledLIF`, each ``[B, C, *spatial]``."""

    filtered: torch.Tensor  #: reset-free membrane :math:`u'_t`
    bias: torch.Tensor  #: threshold bias :math:`b_{t+1}` for the next step


#: the former name of :class:`DecoupledLIFState`, kept so that code written against it keeps working
LIFState = DecoupledLIFState


class DecoupledLIF(Neuron):
    r"""Soft-reset LIF with the decoupled (parallel) training of the PRF paper.

    Args:
        features: channels ``C`` (dim 2 of ``[T, B, C, *spatial]``); ``None`` infers it
            from the first input.
        tau: membrane time constant, :math:`\beta = 1 - 1/\tau` (``tau > 1``; ``math.inf``: :math:`\beta = 1`,
            no leak, the IF neuron).
        learn_decay: learn a per-channel :math:`\beta = \sigma(w)`, initialised from ``tau`` (a finite one);
            ``"shared"``: one :math:`w` for every channel (a 0-d ``decay_logit``, as snnTorch's scalar
            ``learn_beta`` and SpikingJelly's ``ParametricLIFNode``).
        decay_input: scale the input by :math:`1 - \beta`, :math:`c_t = (1 - \beta) x_t` (a finite ``tau``);
            ``False``: :math:`c_t = x_t`.
        v_threshold: :math:`V_{th}`: a number, or one per channel (a ``[C]`` tensor or a sequence of
            numbers).
        learn_threshold: learn a per-channel :math:`V_{th}` (the parameter ``v_threshold``, ``[C]``),
            initialised from ``v_threshold``; ``"shared"``: one for every channel (0-d, from one number).
        reset: subtract the threshold at a spike (``False``: the membrane never resets).
        reset_delay: subtract it one step later, undecayed (snnTorch's ``reset_delay=True``; module doc);
            ``False``: at the spike's step, decayed with the membrane (SpikingJelly's ``LIFNode``).
        surrogate: any surrogate :func:`~snn_parallel.surrogate.resolve` accepts; its
            firing rule (``>=`` or ``>``) is used by the threshold scan as well.
        backend: ``"auto"``, ``"torch"`` or ``"cupy"`` for the scan.
    """

    state_type = DecoupledLIFState

    def __init__(
        self,
        features: int | None = None,
        *,
        tau: float = 2.0,
        learn_decay: bool | str = False,
        decay_input: bool = False,
        v_threshold: float | torch.Tensor | Sequence[float] = 1.0,
        learn_threshold: bool | str = False,
        reset: bool = True,
        reset_delay: bool = False,
        surrogate: object = None,
        backend: str = "auto",
    ) -> None:
        super().__init__(features, backend)
        self.reset_delay = check_bool(reset_delay, "reset_delay")
        self.tau = check_float(tau, "tau", minimum=1, min_open=True, finite=False)
        self.learn_decay = check_learn(learn_decay, "learn_decay")
        if math.isinf(self.tau) and self.learn_decay:
            why = "beta = 1: a sigmoid cannot learn its way back from 1"
            raise ValueError(f"learn_decay=True needs a finite tau, got tau=inf ({why})")
        self.decay_input = decay_input
        # not "reset": SpikingJelly 0.0.0.0.14's functional.reset_net calls the reset() of any module that has one
        self.soft_reset = check_bool(reset, "reset")
        threshold = self._declare_threshold(v_threshold, learn_threshold)
        self.surrogate = neuron_surrogate(surrogate)
        self._declare(decay_logit=self.learn_decay, **threshold)

    def _shared_values(self) -> dict[str, torch.Tensor]:
        # sigma(logit) = 1 - 1/tau: logit = log(tau - 1), +inf for the IF neuron's tau = inf (beta = 1 exactly)
        return {"decay_logit": torch.tensor(math.log(self.tau - 1), dtype=torch.float64)}

    def _initial_values(self, features: int) -> dict[str, torch.Tensor]:
        per_channel = {name: value.expand(features).clone() for name, value in self._shared_values().items()}
        return {**per_channel, **self._threshold_values(features)}

    @property
    def decay_input(self) -> bool:
        r"""Whether the input is scaled by :math:`1 - \beta` (a finite ``tau`` only); assigning it acts from the next
        step."""
        return self._decay_input

    @decay_input.setter
    def decay_input(self, value: bool) -> None:
        if check_bool(value, "decay_input") and math.isinf(self.tau):
            why = "beta = 1: the input would be scaled by 0"
            raise ValueError(f"decay_input=True needs a finite tau, got tau=inf ({why})")
        self._decay_input = value

    @property
    def beta(self) -> torch.Tensor:
        r"""Per-channel decay :math:`\beta`, ``[C]`` (a shared one spread to every channel)."""
        return self._per_channel(torch.sigmoid(self.decay_logit))

    def linear_response(self) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`(\beta, g)`: the reset-free membrane :math:`u'_t = \beta u'_{t-1} + g x_t`, with the input gain
        :math:`g = 1 - \beta` where ``decay_input`` and 1 otherwise."""
        return self._decay_and_gain()

    def _decay_and_gain(self) -> tuple[torch.Tensor, torch.Tensor]:
        beta = self.beta
        return beta, (1 - beta) if self.decay_input else torch.ones_like(beta)

    def init_state(self, x_t: torch.Tensor) -> DecoupledLIFState:
        zeros = torch.zeros_like(x_t)
        return DecoupledLIFState(zeros, zeros)

    def _fire_arguments(self, x: torch.Tensor, state: DecoupledLIFState, channel_dim: int) -> tuple[Any, ...]:
        r"""The positional arguments of ``linear_fire`` / ``linear_fire_step`` for input ``x``
        (channels at ``channel_dim``): decay :math:`\beta`, input gain, the state, the
        surrogate, :math:`V_{th}`, and the reset's decay, or ``None`` without a reset: detached for the reset within
        the step (the reset carries no gradient but the threshold's), not detached for the delayed one (a learned
        :math:`\beta` gets its gradient through the pending resets too, as snnTorch's default ``Leaky``)."""
        beta, gain = (self._channel_view(c, x, channel_dim) for c in self._decay_and_gain())
        return (
            x,
            beta,
            gain,
            state.filtered,
            state.bias,
            self.surrogate,
            self._threshold_at(x, channel_dim),
            (beta if self.reset_delay else beta.detach()) if self.soft_reset else None,
        )

    def _fire(self, drive: torch.Tensor, state: Any) -> tuple[torch.Tensor, ...]:
        """``linear_fire``'s ``(spikes, membrane, filtered, bias)`` for the drive ``[T, B, C, *spatial]``."""
        arguments = self._fire_arguments(drive, state, 2)
        return linear_fire(*arguments, delayed_reset=self.reset_delay, backend=self.ops_backend, validate=False)

    def _fire_step(self, drive: torch.Tensor, state: Any) -> tuple[torch.Tensor, ...]:
        """``linear_fire_step``'s ``(spike, membrane, filtered, bias)`` for one step's drive ``[B, C, *spatial]``."""
        return linear_fire_step(*self._fire_arguments(drive, state, 1), delayed_reset=self.reset_delay)

    def update_sequence(
        self, x_seq: torch.Tensor, state: DecoupledLIFState
    ) -> tuple[torch.Tensor, torch.Tensor, DecoupledLIFState]:
        spikes, membrane, filtered, bias = self._fire(x_seq, state)
        return spikes, membrane, DecoupledLIFState(filtered, bias)

    def update(
        self, x_t: torch.Tensor, state: DecoupledLIFState
    ) -> tuple[torch.Tensor, torch.Tensor, DecoupledLIFState]:
        spike, membrane, filtered, bias = self._fire_step(x_t, state)
        return spike, membrane, DecoupledLIFState(filtered, bias)

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, tau={self.tau}, {self._threshold_repr()}"
            f"{', decay_input=True' if self.decay_input else ''}{self._reset_repr()}"
        )

    def _reset_repr(self) -> str:
        return ("" if self.soft_reset else ", reset=False") + (", reset_delay=True" if self.reset_delay else "")
