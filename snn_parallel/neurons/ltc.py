r"""LTC: the liquid-time-constant spiking neuron (Yin, Corradi, Bohté, NMI 2023; reference
code ``byin-cwi/sFPTT``, ``mem_update_adp``).

Two input- and state-dependent gates set how fast the membrane follows the input current
and how long the adaptive threshold remembers spikes:

.. math::

    m_t &= \sigma(W_m [I_t; \hat u_{t-1}] + c_m) \qquad
    \rho_t = \sigma(W_\rho [I_t; b_{t-1}] + c_\rho) \\
    b_t &= \rho_t b_{t-1} + (1 - \rho_t) s_{t-1}, \qquad \theta_t = b_0 + \beta_a b_t \\
    u_t &= (1 - m_t)\hat u_{t-1} + m_t I_t, \qquad s_t = \Theta(u_t - \theta_t),
    \qquad \hat u_t = (1 - s_t) u_t

(:math:`m` is the code's ``tau_m``, an update *rate*; :math:`\rho` is ``tau_adp``, a
*retention*). ``mode="paper"`` is exactly this and is sequential by nature (the gates see
the state). ``mode="parallel"`` feeds the gates :math:`I_t` only, so both gates for all
steps are one matrix product and the rest is the fused multi-step op
:func:`~snn_parallel.ops.ltc_scan` with its hand-written backward.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from .._validation import check_bool, check_choice, check_float
from ..ops.ltc import ltc_scan, ltc_step
from ..surrogate import MultiGaussian
from .base import Neuron, neuron_surrogate


class LTCState(NamedTuple):
    """State of :class:`LTC`, each ``[B, C]``."""

    u: torch.Tensor  #: membrane after reset :math:`\hat u_t`
    s: torch.Tensor  #: last spike :math:`s_t`
    b: torch.Tensor  #: adaptation trace :math:`b_t`


class _Gate(nn.Linear):
    """A gate's ``Linear`` layer, whose weights may wait for the neuron's feature count."""

    _save_to_state_dict = LazyModuleMixin._save_to_state_dict

    def __init__(self) -> None:
        nn.Module.__init__(self)
        self.in_features = self.out_features = 0  # set when the neuron materialises


class LTC(Neuron):
    r"""Liquid-time-constant spiking neuron with an adaptive threshold and hard reset.

    Args:
        features: neurons ``C``; input ``[T, B, C]`` is the synaptic current :math:`I_t`;
            ``None`` infers it from the first input.
        mode: ``"paper"`` (gates from ``[I_t; state]``, sequential) or ``"parallel"``
            (gates from :math:`I_t` only, fused multi-step op).
        b0: baseline threshold :math:`b_0` (also the adaptation trace's initial value).
        beta_a: adaptation strength :math:`\beta_a \ge 0`.
        surrogate: defaults to the multi-Gaussian of the reference code, firing on ``x > 0``.
        learn_gate_temperature: each gate becomes :math:`\sigma(k\, z)` with a learnable
            scalar :math:`k` initialised to 1, per gate, as the reference code's
            ``sigmoid_beta`` activation (off: :math:`\sigma(z)`, i.e. :math:`k = 1` fixed).
        initial_membrane: ``"zero"`` (:math:`\hat u_0 = 0`) or ``"uniform"``
            (:math:`\hat u_0 \sim U(0, 1)`, drawn afresh for every new state, as the
            reference code's ``init_hidden``).
        backend: ``"auto"``, ``"torch"`` or ``"cupy"`` for the fused op.

    Gate weights are Xavier-normal with zero bias, as in the reference code; the resting
    state is :math:`\hat u = 0` (or uniform), :math:`s = 0`, :math:`b = b_0`. The reference
    code's settings are ``learn_gate_temperature=True, initial_membrane="uniform"``.
    """

    state_type = LTCState
    max_spatial_dims = 0
    channelwise = False  # the gates are Linear layers over all neurons

    def __init__(
        self,
        features: int | None = None,
        *,
        mode: str = "paper",
        b0: float = 0.1,
        beta_a: float = 1.8,
        surrogate: object = None,
        learn_gate_temperature: bool = False,
        initial_membrane: str = "zero",
        backend: str = "auto",
    ) -> None:
        super().__init__(features, backend)
        self.mode = check_choice(mode, "mode", ("paper", "parallel"))
        self.b0 = check_float(b0, "b0")
        self.beta_a = check_float(beta_a, "beta_a", minimum=0)
        self.learn_gate_temperature = check_bool(learn_gate_temperature, "learn_gate_temperature")
        self.initial_membrane = check_choice(initial_membrane, "initial_membrane", ("zero", "uniform"))
        self.surrogate = neuron_surrogate(surrogate, MultiGaussian(inclusive=False))
        if self.learn_gate_temperature:
            self.gate_temperature = nn.Parameter(torch.ones(2))  # (rate, retention)
        self.rate_gate, self.retention_gate = _Gate(), _Gate()
        names = ("rate_gate.weight", "rate_gate.bias", "retention_gate.weight", "retention_gate.bias")
        self._declare(**dict.fromkeys(names, True))

    def _fan_in(self, features: int) -> int:
        return 2 * features if self.mode == "paper" else features

    def _initial_values(self, features: int) -> dict[str, torch.Tensor]:
        values = {}
        for gate in ("rate_gate", "retention_gate"):
            values[f"{gate}.weight"] = nn.init.xavier_normal_(torch.empty(features, self._fan_in(features)))
            values[f"{gate}.bias"] = torch.zeros(features)
        return values

    def _on_materialize(self, features: int) -> None:
        for gate in (self.rate_gate, self.retention_gate):
            gate.in_features, gate.out_features = self._fan_in(features), features

    def init_state(self, x_t: torch.Tensor) -> LTCState:
        zeros = torch.zeros_like(x_t)
        u = torch.rand_like(x_t) if self.initial_membrane == "uniform" else zeros
        return LTCState(u, zeros, torch.full_like(x_t, self.b0))

    def _gates(self, current: torch.Tensor, state: LTCState) -> tuple[torch.Tensor, torch.Tensor]:
        """Membrane update rate and adaptation retention for one step (paper mode) or all steps."""
        if self.mode == "paper":
            rate = self.rate_gate(torch.cat([current, state.u], dim=-1))
            retention = self.retention_gate(torch.cat([current, state.b], dim=-1))
        else:
            rate, retention = self.rate_gate(current), self.retention_gate(current)
        if self.learn_gate_temperature:
            rate, retention = rate * self.gate_temperature[0], retention * self.gate_temperature[1]
        # under autocast the Linear layers return float16/bfloat16: the neuron runs in its own dtype
        return torch.sigmoid(rate).to(current.dtype), torch.sigmoid(retention).to(current.dtype)

    def update_sequence(self, x_seq: torch.Tensor, state: LTCState) -> tuple[torch.Tensor, torch.Tensor, LTCState]:
        if self.mode == "paper":  # the gates see the state: the step loop
            return super().update_sequence(x_seq, state)
        rate, retention = self._gates(x_seq, state)
        spikes, membrane, u, s, b = ltc_scan(
            x_seq,
            rate,
            retention,
            *state,
            self.b0,
            self.beta_a,
            self.surrogate,
            backend=self.ops_backend,
            validate=False,
        )
        return spikes, membrane, LTCState(u, s, b)

    def update(self, x_t: torch.Tensor, state: LTCState) -> tuple[torch.Tensor, torch.Tensor, LTCState]:
        rate, retention = self._gates(x_t, state)
        out = ltc_step(x_t, rate, retention, *state, self.b0, self.beta_a, self.surrogate)
        return out.spike, out.membrane, LTCState(out.u, out.spike, out.b)

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, mode={self.mode!r}, b0={self.b0}, beta_a={self.beta_a}"
            + (", learn_gate_temperature=True" if self.learn_gate_temperature else "")
            + (f", initial_membrane={self.initial_membrane!r}" if self.initial_membrane != "zero" else "")
        )
