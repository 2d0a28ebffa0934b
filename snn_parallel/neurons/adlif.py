r"""SE-adLIF: the adaptive LIF neuron of Baronig et al. (symplectic-Euler adLIF), as shipped with
the HYPR learner (``IMLTUGraz/HYPR``, ``models/adlif_jax.py``).

A LIF membrane :math:`u` coupled to an adaptation current :math:`w`, per channel:

.. math::

    u_t &= \alpha\, u_{t-1}(1 - z_{t-1}) + (1 - \alpha)(I_t - w_{t-1}) \\
    z_t &= \Theta(u_t - \vartheta) \\
    w_t &= \beta\, w_{t-1} + (1 - \beta)\, q\,\big(a\, u_t (1 - z_t) + b\, z_{t-1}\big)

with :math:`\alpha = e^{-1/\tau_u}`, :math:`\beta = e^{-1/\tau_w}`, :math:`q = 120`,
:math:`\vartheta = 1`. The time constants are interpolated from learnable per-channel values
:math:`r_u, r_w \in [0, 1]`: :math:`\tau_u = \tau_{u,min} + (\tau_{u,max} - \tau_{u,min})\,r_u`
with :math:`\tau_u \in [5, 25]` and :math:`\tau_w \in [60, 300]`; :math:`a, b \in [0, 1]` are
learnable too. Every constrained parameter is clamped where it is used (so the step is valid
for any parameter values) and :meth:`SEAdLIF.apply_parameter_constraints` projects the stored
values back after an optimiser step, as HYPR does.

This is HYPR's variant: the membrane is reset through :math:`(1 - z_{t-1})` one step after
the spike, and the spike-triggered adaptation uses :math:`z_{t-1}`. The SE-adLIF repository
(``IGITUGraz/SE-adlif``, ``models/alif.py``) resets immediately and uses :math:`z_t` in the
:math:`b` term, so the two give different spike trains. The spike feeds back into the state,
so the neuron is sequential: ``forward`` loops over time with the same update as ``step`` (its
coefficients computed once).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._validation import check_float, check_pair
from ..surrogate import Slayer
from .base import Neuron, neuron_surrogate, step_loop


class AdLIFState(NamedTuple):
    """State of :class:`SEAdLIF`, each ``[B, C]``."""

    u: torch.Tensor  #: membrane :math:`u_t` (before the reset, which acts at the next step)
    w: torch.Tensor  #: adaptation current :math:`w_t`
    z: torch.Tensor  #: last spike :math:`z_t`


class SEAdLIF(Neuron):
    r"""Adaptive LIF with HYPR's reset and adaptation timing, ``[T, B, C]`` inputs only.

    Args:
        features: neurons ``C``; input ``[T, B, C]`` is the synaptic current :math:`I_t`;
            ``None`` infers it from the first input.
        tau_u_range: :math:`(\tau_{u,min}, \tau_{u,max})` of the membrane.
        tau_w_range: :math:`(\tau_{w,min}, \tau_{w,max})` of the adaptation.
        a_range: init range and clamp of the subthreshold coupling :math:`a`.
        b_range: init range and clamp of the spike-triggered adaptation :math:`b`.
        adapt_coeff: the adaptation scale :math:`q`.
        v_threshold: :math:`\vartheta`.
        surrogate: defaults to HYPR's SLAYER surrogate
            (:class:`~snn_parallel.surrogate.Slayer` with ``alpha=5, scale=0.2``), firing on ``x > 0``.

    Parameters, each ``[C]``: ``tau_u_frac`` and ``tau_w_frac`` (:math:`r_u, r_w \sim U(0, 1)`),
    ``a`` and ``b`` (uniform in their ranges).
    """

    state_type = AdLIFState
    max_spatial_dims = 0

    def __init__(
        self,
        features: int | None = None,
        *,
        tau_u_range: tuple[float, float] = (5.0, 25.0),
        tau_w_range: tuple[float, float] = (60.0, 300.0),
        a_range: tuple[float, float] = (0.0, 1.0),
        b_range: tuple[float, float] = (0.0, 1.0),
        adapt_coeff: float = 120.0,
        v_threshold: float = 1.0,
        surrogate: object = None,
    ) -> None:
        super().__init__(features)
        self.tau_u_range = check_pair(tau_u_range, "tau_u_range", minimum=0, min_open=True)
        self.tau_w_range = check_pair(tau_w_range, "tau_w_range", minimum=0, min_open=True)
        self.a_range = check_pair(a_range, "a_range")
        self.b_range = check_pair(b_range, "b_range")
        self.adapt_coeff = check_float(adapt_coeff, "adapt_coeff")
        self.v_threshold = check_float(v_threshold, "v_threshold")
        self.surrogate = neuron_surrogate(surrogate, Slayer(alpha=5.0, scale=0.2, inclusive=False))
        self._declare(tau_u_frac=True, tau_w_frac=True, a=True, b=True)

    def _initial_values(self, features: int) -> dict[str, torch.Tensor]:
        return {
            "tau_u_frac": torch.rand(features),
            "tau_w_frac": torch.rand(features),
            "a": torch.empty(features).uniform_(*self.a_range),
            "b": torch.empty(features).uniform_(*self.b_range),
        }

    @property
    def tau_u(self) -> torch.Tensor:
        r"""Membrane time constant :math:`\tau_u`, ``[C]``."""
        low, high = self.tau_u_range
        return low + (high - low) * self.tau_u_frac.clamp(0, 1)

    @property
    def tau_w(self) -> torch.Tensor:
        r"""Adaptation time constant :math:`\tau_w`, ``[C]``."""
        low, high = self.tau_w_range
        return low + (high - low) * self.tau_w_frac.clamp(0, 1)

    @torch.no_grad()
    def apply_parameter_constraints(self) -> None:
        r"""Project the stored parameters onto their ranges (call after each optimiser step).

        The step clamps them anyway, but a value pushed past its bound gets no gradient there
        and would stay stuck; HYPR projects after every update.
        """
        self.tau_u_frac.clamp_(0, 1)
        self.tau_w_frac.clamp_(0, 1)
        self.a.clamp_(*self.a_range)
        self.b.clamp_(*self.b_range)

    def init_state(self, x_t: torch.Tensor) -> AdLIFState:
        zeros = torch.zeros_like(x_t)
        return AdLIFState(zeros, zeros, zeros)

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""Per-channel ``(α, β, q·a, q·b)``, each ``[C]``, with the parameters clamped."""
        alpha = torch.exp(-1 / self.tau_u)
        beta = torch.exp(-1 / self.tau_w)
        a = self.adapt_coeff * self.a.clamp(*self.a_range)
        b = self.adapt_coeff * self.b.clamp(*self.b_range)
        return alpha, beta, a, b

    def _update(
        self,
        x_t: torch.Tensor,
        state: AdLIFState,
        alpha: torch.Tensor,
        beta: torch.Tensor,
        a: torch.Tensor,
        b: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, AdLIFState]:
        """One step from the coefficients (``a``, ``b`` already scaled by ``q``)."""
        u, w, z = state
        u_t = alpha * u * (1 - z) + (1 - alpha) * (x_t - w)
        z_t = self.surrogate(u_t - self.v_threshold)
        w_t = beta * w + (1 - beta) * (a * u_t * (1 - z_t) + b * z)
        return z_t, u_t, AdLIFState(u_t, w_t, z_t)

    def update(self, x_t: torch.Tensor, state: AdLIFState) -> tuple[torch.Tensor, torch.Tensor, AdLIFState]:
        return self._update(x_t, state, *self.coefficients())

    def update_sequence(self, x_seq: torch.Tensor, state: AdLIFState) -> tuple[torch.Tensor, torch.Tensor, AdLIFState]:
        return step_loop(self._update, x_seq, state, *self.coefficients())  # coefficients once for all steps

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, tau_u_range={self.tau_u_range}, tau_w_range={self.tau_w_range}, "
            f"adapt_coeff={self.adapt_coeff}, v_threshold={self.v_threshold}"
        )
