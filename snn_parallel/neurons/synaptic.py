r"""Synaptic (second-order) LIF, snnTorch's ``Synaptic``, trained in parallel.

A synaptic current :math:`i_t` filters the input, and a soft-reset LIF integrates the current:

.. math::

    i_t = \alpha\, i_{t-1} + x_t, \qquad
    u_t = \beta\,(u_{t-1} - V_{th} s_{t-1}) + i_t, \qquad s_t = \Theta(u_t - V_{th}),
    \qquad \alpha = 1 - 1/\tau_{syn}, \quad \beta = 1 - 1/\tau.

Both recurrences are linear in the input, so the neuron runs all steps in parallel: the current is
one linear scan (:func:`~snn_parallel.ops.linear_scan`), and the membrane is
:class:`~snn_parallel.neurons.DecoupledLIF`'s decoupled reset on that current
(:func:`~snn_parallel.ops.linear_fire`): a reset-free filter :math:`u'_t = \beta u'_{t-1} + i_t` and a
threshold bias :math:`b_{t+1} = \beta(b_t + V_{th} s_t)`, so that :math:`u_t = u'_t - b_t`. The spikes are
those of the sequential neuron above.

**Gradient.** BPTT with the reset detached: the spikes enter the bias detached, and so does its
decay, so :math:`\alpha` and :math:`\beta` get their gradients through the reset-free filters :math:`i` and
:math:`u'`. The threshold's gradient is :class:`~snn_parallel.neurons.DecoupledLIF`'s: through the
spikes' argument :math:`u_t - V_{th}` and through the bias's step :math:`\beta V_{th} s_t` (the reset
subtracts :math:`V_{th}\,\mathrm{sg}(s_{t-1})`, as snnTorch's ``Synaptic(learn_threshold=True)``).

With ``reset=False`` the membrane never resets (:math:`u_t = u'_t`, snnTorch's ``reset_mechanism="none"``).
With ``reset_delay=True`` the reset is subtracted one step later, undecayed (and the bias decays with
:math:`\beta` itself, so that :math:`\beta`'s gradient flows through the pending resets too, as snnTorch's),
:math:`u_t = \beta u_{t-1} + i_t - V_{th}\,\mathrm{sg}(s_{t-1})` (:math:`b_{t+1} = \beta b_t + V_{th} s_t`;
snnTorch's default ``Synaptic``, see :class:`~snn_parallel.neurons.DecoupledLIF`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from .._validation import check_float, check_learn
from ..ops.scan import linear_scan
from .lif import DecoupledLIF


class SynapticLIFState(NamedTuple):
    """State of :class:`SynapticLIF`, each ``[B, C, *spatial]``."""

    current: torch.Tensor  #: synaptic current :math:`i_t`
    filtered: torch.Tensor  #: reset-free membrane :math:`u'_t`
    bias: torch.Tensor  #: threshold bias :math:`b_{t+1}` for the next step


class SynapticLIF(DecoupledLIF):
    r"""Second-order (synaptic-current) soft-reset LIF, trained in parallel (equations in the module doc).

    Args:
        features: channels ``C`` (dim 2 of ``[T, B, C, *spatial]``); ``None`` infers it
            from the first input.
        tau_syn: synaptic time constant, :math:`\alpha = 1 - 1/\tau_{syn}` (``tau_syn > 1``).
        tau: membrane time constant, :math:`\beta = 1 - 1/\tau` (``tau > 1``).
        learn_decay: learn a per-channel :math:`\alpha = \sigma(w_\alpha)` and :math:`\beta = \sigma(w_\beta)`,
            initialised from ``tau_syn`` and ``tau``; ``"shared"``: one of each for every channel (0-d logits, as
            snnTorch's scalar ``learn_alpha``/``learn_beta``).
        learn_syn_decay: learn :math:`\alpha` (``True`` per channel, ``"shared"``) or not (``False``) whatever
            ``learn_decay`` says of :math:`\beta`; ``None`` (default): as ``learn_decay``.
        v_threshold: :math:`V_{th}`: a number, or one per channel (a ``[C]`` tensor or a sequence of
            numbers).
        learn_threshold: learn a per-channel :math:`V_{th}` (the parameter ``v_threshold``, ``[C]``),
            initialised from ``v_threshold``; ``"shared"``: one for every channel (0-d, from one number).
        reset: subtract the threshold at a spike (``False``: the membrane never resets).
        reset_delay: subtract it one step later, undecayed (snnTorch's ``reset_delay=True``; module doc).
        surrogate: any surrogate :func:`~snn_parallel.surrogate.resolve` accepts; its
            firing rule (``>=`` or ``>``) is used by the threshold scan as well.
        backend: ``"auto"``, ``"torch"`` or ``"cupy"`` for the scans.
    """

    state_type = SynapticLIFState

    def __init__(
        self,
        features: int | None = None,
        *,
        tau_syn: float = 2.0,
        tau: float = 2.0,
        learn_decay: bool | str = False,
        learn_syn_decay: bool | str | None = None,
        v_threshold: float | torch.Tensor | Sequence[float] = 1.0,
        learn_threshold: bool | str = False,
        reset: bool = True,
        reset_delay: bool = False,
        surrogate: object = None,
        backend: str = "auto",
    ) -> None:
        self.tau_syn = check_float(tau_syn, "tau_syn", minimum=1, min_open=True)
        # the declaration of the synaptic decay waits for nn.Module.__init__, which the LIF's runs first
        self.learn_syn_decay = check_learn(
            learn_decay if learn_syn_decay is None else learn_syn_decay,
            "learn_decay" if learn_syn_decay is None else "learn_syn_decay",
        )
        super().__init__(
            features,
            tau=tau,
            learn_decay=learn_decay,
            v_threshold=v_threshold,
            learn_threshold=learn_threshold,
            reset=reset,
            reset_delay=reset_delay,
            surrogate=surrogate,
            backend=backend,
        )

    def _declare(self, **parameter: bool | str) -> None:
        """The LIF's tensors, with the synaptic decay's logit declared alongside."""
        super()._declare(syn_decay_logit=self.learn_syn_decay, **parameter)

    def _shared_values(self) -> dict[str, torch.Tensor]:
        # sigma(logit) = 1 - 1/tau_syn, as the membrane's
        return {
            "syn_decay_logit": torch.tensor(math.log(self.tau_syn - 1), dtype=torch.float64),
            **super()._shared_values(),
        }

    @property
    def alpha(self) -> torch.Tensor:
        r"""Per-channel synaptic decay :math:`\alpha`, ``[C]`` (a shared one spread to every channel)."""
        return self._per_channel(torch.sigmoid(self.syn_decay_logit))

    def linear_response(self) -> None:
        """``None``: the membrane is second order in its input (the current is a filter of its own), which the
        first-order form :math:`h_t = \\rho h_{t-1} + g c_t` cannot express; :meth:`linear_stages` gives its two
        stages."""
        return None

    def linear_stages(self) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        r"""The current and the reset-free membrane as two first-order stages, :math:`((\alpha, 1), (\beta, g))`:
        :math:`i_t = \alpha\, i_{t-1} + x_t` and :math:`u'_t = \beta\, u'_{t-1} + g\, i_t`, with the input gain
        :math:`g = 1 - \beta` where ``decay_input`` and 1 otherwise (OTTT's ``trace="neuron"`` builds its
        eligibility traces from them)."""
        alpha = self.alpha
        return (alpha, torch.ones_like(alpha)), self._decay_and_gain()

    def init_state(self, x_t: torch.Tensor) -> SynapticLIFState:
        zeros = torch.zeros_like(x_t)
        return SynapticLIFState(zeros, zeros, zeros)

    def update_sequence(
        self, x_seq: torch.Tensor, state: SynapticLIFState
    ) -> tuple[torch.Tensor, torch.Tensor, SynapticLIFState]:
        spikes, membrane, _, last_state = self.update_sequence_with_current(x_seq, state)
        return spikes, membrane, last_state

    def update_sequence_with_current(
        self, x_seq: torch.Tensor, state: SynapticLIFState
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, SynapticLIFState]:
        """:meth:`update_sequence` on checked inputs with the synaptic current :math:`i_t` of every step too:
        ``(spikes, membrane, current, last_state)``, the first three ``[T, B, C, *spatial]`` (snnTorch's
        ``Synaptic`` returns the current as ``syn``)."""
        alpha = self._channel_view(self.alpha, x_seq, 2)
        current, last = linear_scan(alpha, x_seq, state.current, backend=self.ops_backend, validate=False)
        current, last = current.to(x_seq.dtype), last.to(x_seq.dtype)  # half precision comes back in float32
        spikes, membrane, filtered, bias = self._fire(current, state)
        return spikes, membrane, current, SynapticLIFState(last, filtered, bias)

    def update(self, x_t: torch.Tensor, state: SynapticLIFState) -> tuple[torch.Tensor, torch.Tensor, SynapticLIFState]:
        current = self._channel_view(self.alpha, x_t, 1) * state.current + x_t
        spike, membrane, filtered, bias = self._fire_step(current, state)
        return spike, membrane, SynapticLIFState(current, filtered, bias)

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, tau_syn={self.tau_syn}, tau={self.tau}, {self._threshold_repr()}"
            f"{self._reset_repr()}"
        )
