r"""DSN: the dynamic-decay spiking neuron (Huang et al., "Parallel Training in Spiking Neural
Networks", arXiv 2602.01133).

A reset-free neuron whose decay is computed from the input by a causal depthwise
convolution over time, per channel :math:`c`:

.. math::

    \alpha'_t &= \mathrm{bias}_c + \sum_{j=0}^{k-1} w_{c,j}\, X_{t-k+1+j} \\
    \alpha_t &= \sigma(\alpha'_t)^{1/\tau}, \qquad
        \log\alpha_t = -\tfrac{1}{\tau}\,\mathrm{softplus}(-\alpha'_t) \\
    H_t &= \alpha_t \odot H_{t-1} + (1 - \alpha_t) \odot X_t \\
    S_t &= \Theta(H_t - V_{th}) \quad\text{(binary)} \qquad
    S_t = \mathrm{clip}(\mathrm{round}(H_t), 0, N) \quad\text{(integer)}

In binary mode :math:`V_{th}` is one number, or one per channel, learned with ``learn_threshold=True``
(its gradient :math:`-\sum_t \bar S_t f'(H_t - V_{th})`, the spikes' argument being its only path).

Spikes do not feed back into :math:`H`, so training solves the gated linear recurrence
with a parallel scan (in log space, no cumulative-product division), fused with the decay
convolution in :func:`~snn_parallel.ops.dsn_membrane`. Defaults follow the
paper: :math:`k = 4`, :math:`\tau = 0.25`, :math:`N = 4`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from .._validation import check_choice, check_float, check_int, check_positive
from ..ops.dsn import dsn_membrane, dsn_step
from ..surrogate import IntegerSpike
from .base import Neuron, neuron_surrogate


class DSNState(NamedTuple):
    """State of :class:`DynamicDecay`: the membrane and the last ``k - 1`` inputs."""

    h: torch.Tensor  #: membrane :math:`H_{t}`, ``[B, C, *spatial]``
    history: torch.Tensor  #: inputs :math:`X_{t-k+2..t}`, ``[k - 1, B, C, *spatial]``


class DynamicDecay(Neuron):
    r"""Dynamic-decay spiking neuron (DSN), binary or integer spikes.

    Args:
        features: number of channels ``C`` (dim 2 of ``[T, B, C, *spatial]``); ``None``
            infers it from the first input (see :class:`~snn_parallel.neurons.Neuron`).
        kernel_size: taps ``k`` of the causal depthwise decay convolution.
        tau: exponent :math:`1/\tau` of the decay; smaller ``tau`` forgets faster.
        init_decay: the decay :math:`\alpha` at zero input when the neuron is built; the
            convolution bias is set to :math:`\mathrm{logit}(\alpha_0^{\tau})`. The paper
            does not state its bias initialisation; with a zero bias :math:`\alpha = 0.0625`
            and the neuron forgets almost everything every step.
        spike_mode: ``"binary"`` (surrogate gradient) or ``"integer"`` (clip-round, with a
            straight-through gradient inside ``[0, levels]``).
        levels: :math:`N`, the largest integer spike.
        v_threshold: :math:`V_{th}` of binary mode: a number, or one per channel (a ``[C]`` tensor or a
            sequence of numbers).
        learn_threshold: learn a per-channel :math:`V_{th}` (the parameter ``v_threshold``, ``[C]``),
            initialised from ``v_threshold``; ``"shared"``: one for every channel (0-d, from one number) (binary mode).
        surrogate: any surrogate :func:`~snn_parallel.surrogate.resolve` accepts (binary mode).
        backend: ``"auto"``, ``"torch"`` or ``"cupy"`` for the scan.

    Shapes: ``x_seq`` is ``[T, B, C, *spatial]``; the conv weights are ``[C, k]``.
    """

    state_type = DSNState

    def __init__(
        self,
        features: int | None = None,
        *,
        kernel_size: int = 4,
        tau: float = 0.25,
        init_decay: float = 0.5,
        spike_mode: str = "binary",
        levels: int = 4,
        v_threshold: float | torch.Tensor | Sequence[float] = 1.0,
        learn_threshold: bool | str = False,
        surrogate: object = None,
        backend: str = "auto",
    ) -> None:
        super().__init__(features, backend)
        self.kernel_size = check_int(kernel_size, "kernel_size", minimum=1)
        self.tau = check_positive(tau, "tau")
        self.init_decay = check_float(init_decay, "init_decay", minimum=0, min_open=True, maximum=1, max_open=True)
        self.spike_mode = check_choice(spike_mode, "spike_mode", ("binary", "integer"))
        self.levels = check_int(levels, "levels", minimum=1)
        threshold = self._declare_threshold(v_threshold, learn_threshold)
        if spike_mode == "integer" and (threshold or self.learn_threshold):
            raise ValueError(
                "a per-channel or learned v_threshold is binary mode's: integer spikes round the membrane and have "
                "no threshold (pass spike_mode='binary', or a number as v_threshold)"
            )
        self.surrogate = neuron_surrogate(surrogate)
        # the spike function, applied to H - shift
        self._spike_fn = IntegerSpike(levels) if spike_mode == "integer" else self.surrogate
        self._declare(weight=True, bias=True, **threshold)

    def _initial_values(self, features: int) -> dict[str, torch.Tensor]:
        bound = 1 / math.sqrt(self.kernel_size)  # PyTorch's conv default for fan-in k
        return {
            "weight": torch.empty(features, self.kernel_size).uniform_(-bound, bound),
            "bias": torch.full((features,), self._bias_for(self.init_decay)),
            **self._threshold_values(features),
        }

    def _shift(self, x: torch.Tensor, channel_dim: int) -> float | torch.Tensor:
        """What the spike function's input is measured from, for ``x`` (channels at ``channel_dim``):
        :math:`V_{th}` (binary) or 0 (integer)."""
        return 0.0 if self.spike_mode == "integer" else self._threshold_at(x, channel_dim)

    def _bias_for(self, decay: float) -> float:
        """The pre-activation that gives decay ``decay``: :math:`\\mathrm{logit}(\\alpha^{\\tau})`."""
        p = decay**self.tau
        return math.log(p / (1 - p))

    def init_state(self, x_t: torch.Tensor) -> DSNState:
        zeros = torch.zeros_like(x_t)
        return DSNState(zeros, zeros.unsqueeze(0).expand(self.kernel_size - 1, *x_t.shape).clone())

    def _state_shapes(self, x_t: torch.Tensor) -> dict[str, tuple[int, ...]]:
        return {"h": tuple(x_t.shape), "history": (self.kernel_size - 1, *x_t.shape)}

    def _taps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Conv taps ``[k, C, 1...]`` and bias ``[C, 1...]`` shaped to broadcast over ``x[0]``."""
        spatial = [1] * (x.dim() - 3)
        return self.weight.t().reshape(self.kernel_size, self.features, *spatial), self.bias.view(
            self.features, *spatial
        )

    def update_sequence(self, x_seq: torch.Tensor, state: DSNState) -> tuple[torch.Tensor, torch.Tensor, DSNState]:
        return self._sequence(x_seq, state, membrane=True)

    def update_sequence_outputs(self, x_seq: torch.Tensor, state: DSNState) -> tuple[torch.Tensor, DSNState]:
        spikes, _, last_state = self._sequence(x_seq, state, membrane=False)
        return spikes, last_state

    def _sequence(
        self, x_seq: torch.Tensor, state: DSNState, membrane: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, DSNState]:
        """All steps through :func:`~snn_parallel.ops.dsn_membrane`; the membrane only if ``membrane``."""
        weight, bias = self._taps(x_seq)
        spikes, h, h_last = dsn_membrane(
            x_seq,
            state.history,
            weight,
            bias,
            self.tau,
            state.h,
            self._spike_fn,
            self._shift(x_seq, 2),
            backend=self.ops_backend,
            validate=False,
            membrane=membrane,
        )
        steps, keep = x_seq.shape[0], self.kernel_size - 1
        # the last k - 1 inputs, reaching into the old history when T < k - 1
        history = x_seq[steps - keep :] if steps >= keep else torch.cat([state.history, x_seq])[steps:]
        return spikes, h, DSNState(h_last, history)

    def update(self, x_t: torch.Tensor, state: DSNState) -> tuple[torch.Tensor, torch.Tensor, DSNState]:
        window = torch.cat([state.history, x_t.unsqueeze(0)])
        weight, bias = self._taps(window)
        h = dsn_step(window, weight, bias, self.tau, state.h)
        return self._spike_fn(h - self._shift(x_t, 1)), h, DSNState(h, window[1:])

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, kernel_size={self.kernel_size}, tau={self.tau}, init_decay={self.init_decay}, "
            f"spike_mode={self.spike_mode!r}, levels={self.levels}, {self._threshold_repr()}"
        )
