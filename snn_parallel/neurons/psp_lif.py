r"""TSSL-BP's neuron: an SRM-style LIF with a first-order synaptic (PSP) filter on its output.

Zhang & Li, "Temporal spike sequence learning via backpropagation for deep spiking neural
networks" (NeurIPS 2020), code ``stonezwr/TSSL-BP``. Per channel, with the input current
:math:`I_t` (a conv or linear layer without bias):

.. math::

    u_t &= (1 - 1/\tau_m)\, \hat u_{t-1} + I_t, \qquad o_t = \Theta(u_t - V_{th})\ (u_t > V_{th}),
    \qquad \hat u_t = u_t (1 - o_t) \\
    a_t &= (1 - 1/\tau_s)\, a_{t-1} + o_t/\tau_s

The layer's output is the post-synaptic potential :math:`a_t`, not the spike :math:`o_t`
(``forward`` and ``step`` return :math:`a_t`; ``return_membrane=True`` adds :math:`u_t`
before the reset). The reset is hard, to 0, and applied after :math:`u_t` is recorded.

``gradient="tsslbp"`` trains with TSSL-BP's hand-written backward
(:func:`snn_parallel.ops.tssl.tsslbp`: spike timing through :math:`\partial t/\partial u`, the
reset-carried term, and the silent-neuron fallback); ``gradient="surrogate"`` lets autograd
run through the same step loop with a surrogate spike function (BPTT). ``step`` always uses
the surrogate: TSSL-BP's gradient needs the future steps. Only ``gradient="tsslbp"`` has fused
CUDA kernels (``backend``); the surrogate mode's step loop always runs in torch.

:class:`PSPFilter` is the same PSP filter without a neuron, :math:`a_t = (1 - 1/\tau_s)
a_{t-1} + x_t/\tau_s`: TSSL-BP passes the (repeated) input image through it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._validation import check_bool, check_choice, check_float
from ..ops.tssl import psp_filter, tssl_step, tsslbp
from ..ops.tssl.reference import heaviside
from ..surrogate import Sigmoid
from .base import Neuron, neuron_surrogate

_GRADIENTS = ("tsslbp", "surrogate")


class PSPLIFState(NamedTuple):
    """State of :class:`PSPLIF`, each ``[B, C, *spatial]``."""

    u: torch.Tensor  #: membrane after the reset, :math:`\hat u_t`
    a: torch.Tensor  #: post-synaptic potential :math:`a_t`


class PSPState(NamedTuple):
    """State of :class:`PSPFilter`, ``[B, C, *spatial]``."""

    a: torch.Tensor  #: post-synaptic potential :math:`a_t`


def _time_constant(value: object, name: str) -> float:
    """A finite time constant ``>= 1`` (its inverse is a rate in ``(0, 1]``)."""
    return check_float(value, name, minimum=1)


class PSPLIF(Neuron):
    r"""TSSL-BP's LIF neuron with a PSP output (equations in the module docstring).

    Args:
        features: channels ``C`` (dim 2 of ``[T, B, C, *spatial]``); ``None`` infers it
            from the first input.
        tau_m: membrane time constant :math:`\tau_m` (reference: 5).
        tau_s: synaptic time constant :math:`\tau_s` (reference: 3).
        v_threshold: :math:`V_{th}` (reference: 1).
        gradient: ``"tsslbp"`` (the reference's backward) or ``"surrogate"`` (autograd through
            the step loop, for BPTT).
        surrogate: spike function for ``"surrogate"`` and for ``step``; its firing rule is used
            in both modes. Default: :class:`~snn_parallel.surrogate.Sigmoid` with
            :math:`\alpha = 5` firing on :math:`u_t > V_{th}` (the reference's rule; the
            derivative is the unclamped version of TSSL-BP's silent-neuron fallback).
        backend: ``"auto"``, ``"torch"`` or ``"cupy"`` for TSSL-BP's op (``gradient="tsslbp"``;
            the surrogate mode does not use it).
        dt_du_at_spikes: with ``gradient="tsslbp"``, the timing gradient
            :math:`\partial t/\partial u = \mathrm{clamp}(-1/\Delta u_t, -8, 0)` only where the
            neuron fires (``True``, default) or wherever its membrane rose (``False``): the two
            revisions of the reference code (see :mod:`snn_parallel.ops.tssl.reference`).

    The neuron has no parameters: its weights are in the synapse before it.
    """

    state_type = PSPLIFState

    def __init__(
        self,
        features: int | None = None,
        *,
        tau_m: float = 5.0,
        tau_s: float = 3.0,
        v_threshold: float = 1.0,
        gradient: str = "tsslbp",
        surrogate: object = None,
        backend: str = "auto",
        dt_du_at_spikes: bool = True,
    ) -> None:
        super().__init__(features, backend)
        self.tau_m, self.tau_s = _time_constant(tau_m, "tau_m"), _time_constant(tau_s, "tau_s")
        self.v_threshold = check_float(v_threshold, "v_threshold")
        self.gradient = check_choice(gradient, "gradient", _GRADIENTS)
        check_bool(dt_du_at_spikes, "dt_du_at_spikes")
        if not dt_du_at_spikes and gradient != "tsslbp":
            raise ValueError(f"dt_du_at_spikes=False is an option of gradient='tsslbp', not of gradient={gradient!r}")
        self.dt_du_at_spikes = dt_du_at_spikes
        self.surrogate = neuron_surrogate(surrogate, Sigmoid(alpha=5.0, inclusive=False))

    def init_state(self, x_t: torch.Tensor) -> PSPLIFState:
        zeros = torch.zeros_like(x_t)
        return PSPLIFState(zeros, zeros)

    def update(self, x_t: torch.Tensor, state: PSPLIFState) -> tuple[torch.Tensor, torch.Tensor, PSPLIFState]:
        out = tssl_step(x_t, state.u, state.a, self.surrogate, self.v_threshold, self.tau_m, self.tau_s)
        return out.psp, out.membrane, PSPLIFState(out.u, out.psp)

    def update_sequence(
        self, x_seq: torch.Tensor, state: PSPLIFState
    ) -> tuple[torch.Tensor, torch.Tensor, PSPLIFState]:
        if self.gradient == "surrogate":  # autograd through the step loop
            return super().update_sequence(x_seq, state)
        psp, _, membrane, u_last, a_last = tsslbp(
            x_seq,
            state.u,
            state.a,
            v_threshold=self.v_threshold,
            tau_m=self.tau_m,
            tau_s=self.tau_s,
            inclusive=self.surrogate.inclusive,
            dt_du_at_spikes=self.dt_du_at_spikes,
            backend=self.ops_backend,
            validate=False,
        )
        return psp, membrane, PSPLIFState(u_last, a_last)

    def spikes(self, membrane: torch.Tensor) -> torch.Tensor:
        """The spikes :math:`o_t` from the membrane ``forward(..., return_membrane=True)`` returns (no gradient)."""
        return heaviside(self.surrogate.inclusive)(membrane - self.v_threshold)

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, tau_m={self.tau_m}, tau_s={self.tau_s}, v_threshold={self.v_threshold}, "
            f"gradient={self.gradient!r}" + ("" if self.dt_du_at_spikes else ", dt_du_at_spikes=False")
        )


class PSPFilter(Neuron):
    r"""The PSP filter alone, :math:`a_t = (1 - 1/\tau_s)\, a_{t-1} + x_t/\tau_s` (no spikes).

    TSSL-BP feeds the input image, repeated over the ``T`` steps, through it before the first
    synapse. ``forward`` is a parallel scan; ``return_membrane=True`` returns :math:`a_t` twice.
    """

    state_type = PSPState

    def __init__(self, features: int | None = None, *, tau_s: float = 3.0) -> None:
        super().__init__(features)
        self.tau_s = _time_constant(tau_s, "tau_s")

    def init_state(self, x_t: torch.Tensor) -> PSPState:
        return PSPState(torch.zeros_like(x_t))

    def update_sequence(self, x_seq: torch.Tensor, state: PSPState) -> tuple[torch.Tensor, torch.Tensor, PSPState]:
        psp, last = psp_filter(x_seq, self.tau_s, state.a)
        return psp, psp, PSPState(last)

    def update(self, x_t: torch.Tensor, state: PSPState) -> tuple[torch.Tensor, torch.Tensor, PSPState]:
        a = (1 - 1 / self.tau_s) * state.a + x_t / self.tau_s
        return a, a, PSPState(a)

    def extra_repr(self) -> str:
        return f"features={self.features}, tau_s={self.tau_s}"
