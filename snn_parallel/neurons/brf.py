r"""BRF: the balanced resonate-and-fire neuron (Higuchi et al., ICML 2024), as shipped with the
HYPR learner (``IMLTUGraz/HYPR``, ``models/brf_jax.py``, Euler form).

A damped oscillator per channel, membrane :math:`u` and a second state :math:`v`, Euler-stepped
with :math:`\delta`, whose damping sits on the divergence boundary :math:`p(\omega)` and is
deepened by a refractory trace :math:`q`:

.. math::

    p(\omega) &= \frac{-1 + \sqrt{1 - (\delta\omega)^2}}{\delta}, \qquad
        b_t = p(\omega) - |b'| - q_{t-1} \\
    u_t &= u_{t-1} + \delta\,(b_t u_{t-1} - \omega v_{t-1} + I_t) \\
    v_t &= v_{t-1} + \delta\,(\omega u_{t-1} + b_t v_{t-1}) \\
    z_t &= \Theta(u_t - \vartheta - q_{t-1}), \qquad q_t = 0.9\, q_{t-1} + z_t

with :math:`\omega = |\omega'|` and :math:`|b'|` from the learnable per-channel
:math:`\omega'`, :math:`b'`; :math:`\delta = 0.01`, :math:`\vartheta = 1`. There is no reset:
a spike raises the threshold and the damping through :math:`q`. The membrane that
``return_membrane=True`` gives is :math:`u_t` (its threshold is :math:`\vartheta + q_{t-1}`).
The spike feeds back into the state, so the neuron is sequential: ``forward`` loops over time
with the same update as ``step`` (its coefficients computed once).

:math:`p(\omega)` is real for :math:`\omega \le 1/\delta` only. The radicand is clamped to the
dtype's machine epsilon, so beyond that :math:`p` saturates at :math:`\approx -1/\delta` (with
zero gradient) and its gradient stays finite at the boundary; HYPR's code returns NaN there.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._validation import check_float, check_pair, check_positive
from ..surrogate import CenteredDoubleGaussian
from .base import Neuron, neuron_surrogate, step_loop

#: decay of the refractory trace :math:`q` (fixed in the reference code)
Q_DECAY = 0.9


class BRFState(NamedTuple):
    """State of :class:`BRF`, each ``[B, C]``."""

    u: torch.Tensor  #: membrane :math:`u_t`
    v: torch.Tensor  #: oscillator partner :math:`v_t`
    q: torch.Tensor  #: refractory trace :math:`q_t`


class BRF(Neuron):
    r"""Balanced resonate-and-fire neuron (HYPR's BRF), ``[T, B, C]`` inputs only.

    Args:
        features: neurons ``C``; input ``[T, B, C]`` is the synaptic current :math:`I_t`;
            ``None`` infers it from the first input.
        omega_range: :math:`\omega' \sim U(\text{low}, \text{high})` at init, within
            ``[0, 1/dt]`` (HYPR's SHD config: ``(5, 10)``; sMNIST ``(15, 50)``).
        b_offset_range: :math:`b' \sim U(\text{low}, \text{high})` at init (SHD: ``(2, 3)``;
            sMNIST ``(0.1, 1)``).
        dt: Euler step :math:`\delta`.
        v_threshold: :math:`\vartheta`.
        surrogate: defaults to HYPR's double Gaussian
            (:class:`~snn_parallel.surrogate.CenteredDoubleGaussian`), firing on ``x > 0``.

    Parameters: ``omega`` and ``b_offset``, each ``[C]``, used as absolute values.
    """

    state_type = BRFState
    max_spatial_dims = 0

    def __init__(
        self,
        features: int | None = None,
        *,
        omega_range: tuple[float, float] = (5.0, 10.0),
        b_offset_range: tuple[float, float] = (2.0, 3.0),
        dt: float = 0.01,
        v_threshold: float = 1.0,
        surrogate: object = None,
    ) -> None:
        super().__init__(features)
        self.dt = check_positive(dt, "dt")
        self.v_threshold = check_float(v_threshold, "v_threshold")
        self.omega_range = check_pair(omega_range, "omega_range", minimum=0, maximum=1 / self.dt)
        self.b_offset_range = check_pair(b_offset_range, "b_offset_range", minimum=0)
        self.surrogate = neuron_surrogate(surrogate, CenteredDoubleGaussian(inclusive=False))
        self._declare(omega=True, b_offset=True)

    def _initial_values(self, features: int) -> dict[str, torch.Tensor]:
        return {
            "omega": torch.empty(features).uniform_(*self.omega_range),
            "b_offset": torch.empty(features).uniform_(*self.b_offset_range),
        }

    def init_state(self, x_t: torch.Tensor) -> BRFState:
        zeros = torch.zeros_like(x_t)
        return BRFState(zeros, zeros, zeros)

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Per-channel ``(ω, p(ω) - |b'|)``, each ``[C]``: the frequency and the resting damping."""
        omega = self.omega.abs()
        radicand = (1 - (self.dt * omega).square()).clamp_min(torch.finfo(omega.dtype).eps)
        return omega, (radicand.sqrt() - 1) / self.dt - self.b_offset.abs()

    def _update(
        self, x_t: torch.Tensor, state: BRFState, omega: torch.Tensor, damping: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, BRFState]:
        """One step from the coefficients."""
        u, v, q = state
        b = damping - q
        u_t = u + self.dt * (b * u - omega * v + x_t)
        v_t = v + self.dt * (omega * u + b * v)
        spike = self.surrogate(u_t - self.v_threshold - q)
        return spike, u_t, BRFState(u_t, v_t, Q_DECAY * q + spike)

    def update(self, x_t: torch.Tensor, state: BRFState) -> tuple[torch.Tensor, torch.Tensor, BRFState]:
        return self._update(x_t, state, *self.coefficients())

    def update_sequence(self, x_seq: torch.Tensor, state: BRFState) -> tuple[torch.Tensor, torch.Tensor, BRFState]:
        return step_loop(self._update, x_seq, state, *self.coefficients())  # coefficients once for all steps

    def extra_repr(self) -> str:
        return f"features={self.features}, dt={self.dt}, v_threshold={self.v_threshold}"
