"""Common contract of the parallel neurons.

Every neuron is an ``nn.Module`` over time-major tensors with two entry points that give
the same numbers:

- ``forward(x_seq, state=None, *, return_membrane=False)``: all ``T`` steps at once
  (parallel in training); returns ``(spikes, state)`` or ``(spikes, membrane, state)``;
- ``step(x_t, state=None)``: one step (streaming inference); returns ``(spike, state)``.

The state is a ``NamedTuple`` of tensors, so ``step`` is a pure function of
``(parameters, state, x_t)`` and can be carried between calls: ``forward`` over ``T``
steps equals ``T`` calls of ``step``, and two chained ``forward`` calls equal one.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import torch
from torch import nn

from ..ops._backend import BACKENDS
from .._validation import check_same_device, check_sequence, check_state_tensor, check_step_input


class ParallelNeuron(nn.Module):
    """Base class: input checks and state handling shared by the neurons.

    Subclasses set ``state_type`` and implement :meth:`init_state`, :meth:`_forward` and
    :meth:`_step` on already-checked inputs.
    """

    state_type: type[NamedTuple]
    #: the number of spatial dims after the feature dim that the neuron accepts (``None``: any)
    max_spatial_dims: int | None = None
    #: each neuron's next state depends only on its own state and input (per-neuron Jacobians,
    #: which the HYPR learner relies on); ``False`` for neurons whose gates mix channels
    channelwise: bool = True

    def __init__(self, features: int, backend: str = "auto") -> None:
        super().__init__()
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be a positive int, got {features!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.features = features
        # not named `backend`: SpikingJelly 0.0.0.0.14 treats any module with that attribute as its own node
        self.ops_backend = backend

    # -- public entry points -------------------------------------------------------------
    def forward(
        self, x_seq: torch.Tensor, state: NamedTuple | None = None, *, return_membrane: bool = False
    ) -> tuple[Any, ...]:
        """Run all time steps of ``x_seq`` ``[T, B, features, *spatial]`` in parallel.

        Returns ``(spikes, state)``, or ``(spikes, membrane, state)`` with
        ``return_membrane=True``; ``membrane`` is the potential compared with the threshold.
        """
        x_seq = check_sequence(x_seq, "x_seq", self.features)
        self._check_spatial(x_seq.dim() - 3, "x_seq")
        self._check_device(x_seq, "x_seq")
        state = self._resolve_state(state, x_seq[0])
        spikes, membrane, new_state = self._forward(x_seq, state)
        return (spikes, membrane, new_state) if return_membrane else (spikes, new_state)

    def step(self, x_t: torch.Tensor, state: NamedTuple | None = None) -> tuple[torch.Tensor, NamedTuple]:
        """Advance one time step for ``x_t`` ``[B, features, *spatial]``; returns ``(spike, state)``."""
        x_t = check_step_input(x_t, "x_t", self.features)
        self._check_spatial(x_t.dim() - 2, "x_t")
        self._check_device(x_t, "x_t")
        state = self._resolve_state(state, x_t)
        return self._step(x_t, state)

    def init_state(self, x_t: torch.Tensor) -> NamedTuple:
        """The resting state for a batch shaped like the single step ``x_t``."""
        raise NotImplementedError

    def linear_response(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        r"""Per-channel ``(rho, gain)`` of a membrane that is linear in its input, resets aside:
        :math:`h_t = \rho\, h_{t-1} + g\, c_t` (:math:`\rho` real or complex, :math:`g` real,
        each ``[C]`` or a scalar, differentiable in the neuron's parameters), the spike being
        driven by :math:`\mathrm{Re}\, h_t`. ``None`` (the default) where the membrane is not
        linear, e.g. a decay that depends on the input. OTTT's ``trace="neuron"`` builds its
        eligibility traces from it."""
        return None

    # -- for subclasses ------------------------------------------------------------------
    def _forward(self, x_seq: torch.Tensor, state: NamedTuple) -> tuple[torch.Tensor, torch.Tensor, NamedTuple]:
        raise NotImplementedError

    def _step(self, x_t: torch.Tensor, state: NamedTuple) -> tuple[torch.Tensor, NamedTuple]:
        raise NotImplementedError

    def _state_shapes(self, x_t: torch.Tensor) -> dict[str, tuple[int, ...]]:
        """Expected shape of each state field for a step input ``x_t`` (default: ``x_t``'s)."""
        return {name: tuple(x_t.shape) for name in self.state_type._fields}

    # -- helpers -------------------------------------------------------------------------
    def _channel_view(self, param: torch.Tensor, x: torch.Tensor, channel_dim: int) -> torch.Tensor:
        """View a per-channel ``[C]`` parameter so it broadcasts over ``x``'s spatial dims."""
        return param.view(param.shape[0], *([1] * (x.dim() - channel_dim - 1)))

    def _check_spatial(self, spatial_dims: int, name: str) -> None:
        if self.max_spatial_dims is not None and spatial_dims > self.max_spatial_dims:
            raise ValueError(
                f"{name} has {spatial_dims} dims after the feature dim; {type(self).__name__} "
                f"accepts [T, B, {self.features}] sequences and [B, {self.features}] steps only"
            )

    def _check_device(self, x: torch.Tensor, name: str) -> None:
        """``x`` must share the parameters' device and dtype (nothing is cast silently)."""
        param = next(itertools.chain(self.parameters(), self.buffers()), None)
        if param is None:
            return
        owner = f"{type(self).__name__}'s parameters"
        check_same_device(x, name, param, owner)
        if x.dtype != param.dtype:
            raise TypeError(
                f"{name} must have dtype {param.dtype} to match {owner}, got {x.dtype}; "
                f"convert one of them (e.g. neuron.to({x.dtype}))"
            )

    def _resolve_state(self, state: NamedTuple | None, x_t: torch.Tensor) -> NamedTuple:
        if state is None:
            return self.init_state(x_t)
        if not isinstance(state, self.state_type):
            raise TypeError(
                f"state must be a {self.state_type.__name__} (as returned by this neuron), got {type(state).__name__}"
            )
        for field, shape in self._state_shapes(x_t).items():
            check_state_tensor(getattr(state, field), f"state.{field}", shape, x_t, "the input")
        return state

    def extra_repr(self) -> str:
        return f"features={self.features}"
