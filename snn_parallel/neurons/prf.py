r"""PRF: the parallel resonate-and-fire neuron (Huang et al., arXiv 2410.03530; official
code ``HuuYuLong/prf``).

A complex membrane :math:`\tilde u = u + i r` per channel :math:`d`, discretised S4-style
with a learnable step :math:`\Delta_d`:

.. math::

    A_d = \exp\big(\Delta_d(-\lambda_d + i\theta_d)\big), \qquad
    \tilde u_t = A_d\,\tilde u_{t-1} + \Delta_d\, c_t, \qquad
    s_t = \Theta(\mathrm{Re}\,\tilde u_t - V_{th} - b_t)

with :math:`\lambda = 1/\tau` fixed (or learnable), :math:`\theta = e^{\theta_{\log}} > 0`
and :math:`\Delta = e^{\log\Delta}`. At inference this is two real states:

.. math::

    u_t = \phi_{re} u_{t-1} - \phi_{im} r_{t-1} + \Delta c_t, \qquad
    r_t = \phi_{im} u_{t-1} + \phi_{re} r_{t-1}, \qquad \phi = A.

Without reset (the paper's PRF) :math:`b_t = 0`. With ``reset=True`` (the "PRF+reset"
ablation, ``PRFNeuronReset``) a soft reset acts through a threshold bias that rises by
:math:`V_{th}` per spike and decays with :math:`\mathrm{Re}\,A`:
:math:`b_{t+1} = \mathrm{Re}(A)\,(b_t + V_{th}\,\mathrm{sg}(s_t))`; the complex state itself is not
reset. The spikes enter :math:`b` detached, as in the official code; its gradient flows through the decay
:math:`\mathrm{Re}\,A` into :math:`\log\Delta` and :math:`\theta_{\log}` (``reset_gradient="official"``,
the official ``scan_dynamic_threshold``), or not at all (``"detached"``).

:math:`V_{th}` is one number, or one per channel, learned with ``learn_threshold=True``; its gradient comes
through the spikes' argument and, with a reset, through the bias's step :math:`\mathrm{Re}(A)\,V_{th} s_t`
(the spikes detached, the threshold not).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from .._validation import check_bool, check_choice, check_pair, check_positive
from ..ops.linear_fire import linear_fire, linear_fire_step
from .base import LOW_PRECISION, Neuron, neuron_surrogate, upcast


class PRFState(NamedTuple):
    """State of :class:`PRF`, each ``[B, C, *spatial]``."""

    u: torch.Tensor  #: real part of the membrane
    r: torch.Tensor  #: imaginary ("resonance") part
    bias: torch.Tensor  #: threshold bias of the reset variant (stays zero without reset)


class PRF(Neuron):
    r"""Parallel resonate-and-fire neuron.

    Args:
        features: channels ``C`` (dim 2 of ``[T, B, C, *spatial]``); ``None`` infers it
            from the first input.
        tau: membrane time constant; the decay rate is :math:`\lambda = 1/\tau`.
        learn_decay: make :math:`\lambda` a learnable per-channel parameter (initialised to
            :math:`1/\tau`; the official ``PRFNeuronTrain``).
        dt_range: :math:`\Delta \sim \mathrm{LogUniform}(\Delta_{min}, \Delta_{max})` at init.
        fr_scale: :math:`\theta \sim U(0, 2\pi / \mathrm{fr\_scale})` at init.
        reset: add the soft reset through a decaying threshold bias (see module doc).
        reset_gradient: with ``reset``, ``"official"`` lets the gradient flow through the bias's decay
            :math:`\mathrm{Re}\,A` into the parameters, as the paper's code does; ``"detached"`` cuts it (BPTT
            with the reset fully detached). Spikes and input gradients are the same either way.
        v_threshold: :math:`V_{th}`: a number, or one per channel (a ``[C]`` tensor or a sequence of
            numbers).
        learn_threshold: learn a per-channel :math:`V_{th}` (the parameter ``v_threshold``, ``[C]``),
            initialised from ``v_threshold``; ``"shared"``: one for every channel (0-d, from one number).
        surrogate: any surrogate :func:`~snn_parallel.surrogate.resolve` accepts.
        mode: ``"scan"`` (complex linear scan, :math:`O(T)`, fused with the spike readout)
            or ``"fft"`` (causal FFT convolution as in the official code,
            :math:`O(T\log T)`, no reset); same numbers.
        backend: ``"auto"``, ``"torch"`` or ``"cupy"`` for the scan.
    """

    state_type = PRFState
    #: the initial range of :math:`\Delta` (see ``dt_range``)
    DEFAULT_DT_RANGE = (0.01, 1.0)

    def __init__(
        self,
        features: int | None = None,
        *,
        tau: float = 2.0,
        learn_decay: bool = False,
        dt_range: tuple[float, float] = DEFAULT_DT_RANGE,
        fr_scale: float = 1.0,
        reset: bool = False,
        reset_gradient: str = "official",
        v_threshold: float | torch.Tensor | Sequence[float] = 1.0,
        learn_threshold: bool | str = False,
        surrogate: object = None,
        mode: str = "scan",
        backend: str = "auto",
    ) -> None:
        super().__init__(features, backend)
        self.tau = check_positive(tau, "tau")
        self.learn_decay = check_bool(learn_decay, "learn_decay")
        self.dt_range = check_pair(dt_range, "dt_range", minimum=0, min_open=True)
        self.fr_scale = check_positive(fr_scale, "fr_scale")
        self.soft_reset = check_bool(reset, "reset")
        threshold = self._declare_threshold(v_threshold, learn_threshold)
        self.mode = check_choice(mode, "mode", ("scan", "fft"))
        if mode == "fft" and reset:
            raise ValueError("reset=True needs mode='scan' (the threshold bias is stepped with the scan)")
        self.reset_gradient = check_choice(reset_gradient, "reset_gradient", ("official", "detached"))
        self.surrogate = neuron_surrogate(surrogate)
        self._declare(log_dt=True, theta_log=True, decay_log=self.learn_decay, **threshold)

    def _initial_values(self, features: int) -> dict[str, torch.Tensor]:
        dt_min, dt_max = self.dt_range
        theta = (2 * math.pi / self.fr_scale) * torch.rand(features).clamp_min(1e-4)
        return {
            "log_dt": torch.empty(features).uniform_(math.log(dt_min), math.log(dt_max)),
            "theta_log": theta.log(),
            "decay_log": torch.full((features,), -math.log(self.tau)),
            **self._threshold_values(features),
        }

    def init_state(self, x_t: torch.Tensor) -> PRFState:
        zeros = torch.zeros_like(x_t)
        return PRFState(zeros, zeros, zeros)

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Per-channel ``(log A, Δ)``: :math:`\log A = \Delta(-\lambda + i\theta)` and the input scale."""
        log_dt, theta_log, decay_log = (upcast(p) for p in (self.log_dt, self.theta_log, self.decay_log))
        dt = log_dt.exp()
        return torch.complex(-dt * decay_log.exp(), dt * theta_log.exp()), dt

    def linear_response(self) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`(A, \Delta)`: :math:`\tilde u_t = A \tilde u_{t-1} + \Delta c_t` (the reset acts on the threshold
        only)."""
        log_a, dt = self.coefficients()
        return log_a.exp(), dt

    def update_sequence(self, x_seq: torch.Tensor, state: PRFState) -> tuple[torch.Tensor, torch.Tensor, PRFState]:
        if x_seq.dtype in LOW_PRECISION:
            return _in_float32(self.update_sequence, x_seq, state)
        log_a, dt = self.coefficients()
        decay, scale = self._channel_view(log_a, x_seq, 2).exp(), self._channel_view(dt, x_seq, 2)
        h0 = torch.complex(state.u, state.r)
        if self.mode == "fft":
            z = _fft_filter(self._channel_view(log_a, x_seq, 2), scale * x_seq, h0)
            membrane = z.real
            spikes = self.surrogate(membrane - self._threshold(x_seq, 2))
            return spikes, membrane, PRFState(z[-1].real, z[-1].imag, state.bias)
        spikes, membrane, z_last, bias = linear_fire(
            x_seq,
            decay,
            scale,
            h0,
            state.bias,
            self.surrogate,
            self._threshold(x_seq, 2),
            self._reset_decay(decay.real) if self.soft_reset else None,
            backend=self.ops_backend,
            validate=False,
        )
        return spikes, membrane, PRFState(z_last.real, z_last.imag, bias)

    def update(self, x_t: torch.Tensor, state: PRFState) -> tuple[torch.Tensor, torch.Tensor, PRFState]:
        if x_t.dtype in LOW_PRECISION:
            return _in_float32(self.update, x_t, state)
        log_a, dt = self.coefficients()
        decay = self._channel_view(log_a, x_t, 1).exp()
        spike, membrane, h, bias = linear_fire_step(
            x_t,
            decay,
            self._channel_view(dt, x_t, 1),
            torch.complex(state.u, state.r),
            state.bias,
            self.surrogate,
            self._threshold(x_t, 1),
            self._reset_decay(decay.real) if self.soft_reset else None,
        )
        return spike, membrane, PRFState(h.real, h.imag, bias)

    def _threshold(self, x: torch.Tensor, channel_dim: int) -> float | torch.Tensor:
        """:math:`V_{th}` for ``x`` (a per-channel one in float32 for a float16/bfloat16 neuron, which computes in
        float32)."""
        threshold = self._threshold_at(x, channel_dim)
        return threshold if isinstance(threshold, float) else upcast(threshold)

    def _reset_decay(self, decay_real: torch.Tensor) -> torch.Tensor:
        r"""The threshold bias's decay :math:`\mathrm{Re}\,A`, detached unless ``reset_gradient="official"``."""
        return decay_real if self.reset_gradient == "official" else decay_real.detach()

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, tau={self.tau}, learn_decay={self.learn_decay}, "
            f"reset={self.soft_reset}, {self._threshold_repr()}, mode={self.mode!r}"
            + (f", reset_gradient={self.reset_gradient!r}" if self.soft_reset else "")
        )


def _in_float32(hook: Callable, x: torch.Tensor, state: PRFState) -> tuple[torch.Tensor, torch.Tensor, PRFState]:
    """``hook(x, state)`` computed in float32 for a float16/bfloat16 ``x`` (there is no complex float16),
    its results cast back to ``x``'s dtype."""
    output, membrane, end = hook(x.float(), PRFState(*map(upcast, state)))
    return output.to(x.dtype), membrane.to(x.dtype), PRFState(*(v.to(x.dtype) for v in end))


def _fft_filter(log_a: torch.Tensor, drive: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    r"""Causal convolution :math:`z_t = \sum_{i \le t} A^{t-i} x_i + A^{t+1} z_{-1}` by FFT.

    The kernel :math:`A^t = e^{t \log A}` is built from the log, so it never multiplies
    a running product; zero padding to at least ``2T - 1`` makes the convolution causal.
    """
    steps = drive.shape[0]
    t = torch.arange(steps + 1, device=drive.device, dtype=drive.dtype).view(-1, *([1] * (drive.dim() - 1)))
    powers = torch.exp(t * log_a)  # A^0 .. A^T, [T + 1, 1, C, ...]
    n = 1 << (2 * steps - 1).bit_length()
    # the real drive transformed along its last dim: torch 2.11's fake kernel of a real FFT along dim 0 gave other
    # strides than the real one, which torch.compile refused
    drive_spectrum = torch.fft.fft(drive.movedim(0, -1), n=n, dim=-1).movedim(-1, 0)
    spectrum = torch.fft.fft(powers[:steps], n=n, dim=0) * drive_spectrum
    return torch.fft.ifft(spectrum, dim=0)[:steps] + powers[1:] * h0
