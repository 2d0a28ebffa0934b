r"""The leaky-integrator readout of the HYPR configurations (``IMLTUGraz/HYPR``, ``models/li_jax.py``).

A non-spiking output layer that low-pass filters its input current per channel,

.. math::

    y_t = \alpha\, y_{t-1} + (1 - \alpha)\, I_t, \qquad \alpha = e^{-1/\tau},

and passes :math:`y_t` on, one value per class and step (the logits of a per-step loss). The
time constant is learnable per channel: :math:`\tau \sim U(\tau_{min}, \tau_{max})` at init,
used directly (the reference's ``interpolation_tau: false``, its BRF configurations:
:math:`[15, 25]`), or interpolated from a learnable :math:`r \in [0, 1]`,
:math:`\tau = \tau_{min} + (\tau_{max} - \tau_{min})\, r` with :math:`r \sim U(0, 1)` (its
``interpolation_tau: true``, the SE-adLIF configurations, with :math:`[15, 15]`, i.e. a fixed
:math:`\tau = 15`). The stored value is clamped to its range where it is used, and
:meth:`LeakyIntegrator.apply_parameter_constraints` projects it back after an optimiser step, as
the reference does. The input current comes from the synapse before it (the reference's readout
``Linear`` has a bias and Glorot-uniform weights, fan-in and fan-out of the layer, in its BRF
configurations; LeCun-uniform in its SE-adLIF ones).

The membrane is linear in the input and has no reset, so ``forward`` solves it with the parallel
scan (:func:`~snn_parallel.ops.linear_scan`), and ``step`` is the same update one step at a time.
The trainers drive it like a neuron (its state is carried, detached and reset as theirs), HYPR
takes its per-channel Jacobians like a neuron's, and OTTT's ``trace="neuron"`` builds exact traces
from :meth:`LeakyIntegrator.linear_response`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._validation import check_bool, check_pair
from ..ops.scan import linear_scan
from .base import Neuron


class LeakyIntegratorState(NamedTuple):
    """State of :class:`LeakyIntegrator`, ``[B, C, *spatial]``."""

    u: torch.Tensor  #: the output :math:`y_t`


class LeakyIntegrator(Neuron):
    r"""Leaky-integrator readout: :math:`y_t = \alpha y_{t-1} + (1 - \alpha) I_t`, :math:`\alpha = e^{-1/\tau}`.

    Args:
        features: channels ``C`` (the classes, for a readout); ``None`` infers it from the first input.
        tau_range: :math:`(\tau_{min}, \tau_{max})`, both positive: the initial range and the clamp of
            :math:`\tau` (the reference's BRF configurations: ``(15, 25)``; its SE-adLIF ones ``(15, 15)``).
        learn_tau: make :math:`\tau` a learnable per-channel parameter (as the reference does);
            ``False`` keeps it as a buffer.
        interpolate_tau: learn :math:`r \in [0, 1]` with :math:`\tau = \tau_{min} + (\tau_{max} -
            \tau_{min})\,r` (the reference's ``interpolation_tau: true``) instead of :math:`\tau` itself.
        backend: ``"auto"``, ``"torch"`` or ``"cupy"`` for the scan.

    ``forward`` and ``step`` return the output :math:`y_t` where a spiking neuron returns its spikes
    (and ``return_membrane=True`` returns it twice). The per-channel tensor is ``tau`` (or
    ``tau_frac`` with ``interpolate_tau=True``), ``[C]``.
    """

    state_type = LeakyIntegratorState

    def __init__(
        self,
        features: int | None = None,
        *,
        tau_range: tuple[float, float] = (15.0, 25.0),
        learn_tau: bool = True,
        interpolate_tau: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__(features, backend)
        self.tau_range = check_pair(tau_range, "tau_range", minimum=0, min_open=True)
        self.learn_tau = check_bool(learn_tau, "learn_tau")
        self.interpolate_tau = check_bool(interpolate_tau, "interpolate_tau")
        self._declare(**{self._tau_name: self.learn_tau})

    @property
    def _tau_name(self) -> str:
        return "tau_frac" if self.interpolate_tau else "tau"

    def _initial_values(self, features: int) -> dict[str, torch.Tensor]:
        low, high = (0.0, 1.0) if self.interpolate_tau else self.tau_range
        return {self._tau_name: torch.empty(features).uniform_(low, high)}

    @property
    def time_constant(self) -> torch.Tensor:
        r"""Per-channel :math:`\tau`, ``[C]``, from the stored value clamped to its range."""
        low, high = self.tau_range
        if self.interpolate_tau:
            return low + (high - low) * self.tau_frac.clamp(0, 1)
        return self.tau.clamp(low, high)

    @torch.no_grad()
    def apply_parameter_constraints(self) -> None:
        """Project the stored value onto its range (call after each optimiser step; the trainers do)."""
        if self.interpolate_tau:
            self.tau_frac.clamp_(0, 1)
        else:
            self.tau.clamp_(*self.tau_range)

    def linear_response(self) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`(\alpha, 1 - \alpha)`: :math:`y_t = \alpha y_{t-1} + (1 - \alpha) I_t`."""
        alpha = torch.exp(-1 / self.time_constant)
        return alpha, 1 - alpha

    def init_state(self, x_t: torch.Tensor) -> LeakyIntegratorState:
        return LeakyIntegratorState(torch.zeros_like(x_t))

    def update(
        self, x_t: torch.Tensor, state: LeakyIntegratorState
    ) -> tuple[torch.Tensor, torch.Tensor, LeakyIntegratorState]:
        alpha, gain = (self._channel_view(c, x_t, 1) for c in self.linear_response())
        y = alpha * state.u + gain * x_t
        return y, y, LeakyIntegratorState(y)

    def update_sequence(
        self, x_seq: torch.Tensor, state: LeakyIntegratorState
    ) -> tuple[torch.Tensor, torch.Tensor, LeakyIntegratorState]:
        alpha, gain = (self._channel_view(c, x_seq, 2) for c in self.linear_response())
        y, last = linear_scan(alpha, gain * x_seq, state.u, backend=self.ops_backend, validate=False)
        # the scan accumulates float16/bfloat16 in float32: back to the neuron's dtype
        y, last = y.to(x_seq.dtype), last.to(x_seq.dtype)
        return y, y, LeakyIntegratorState(last)

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, tau_range={self.tau_range}"
            + ("" if self.learn_tau else ", learn_tau=False")
            + (", interpolate_tau=True" if self.interpolate_tau else "")
        )
