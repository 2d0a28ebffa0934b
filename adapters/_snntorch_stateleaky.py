r"""``snn.StateLeaky`` and ``snn.LinearLeaky`` (snnTorch 1.0) with the membrane computed by the parallel scan.

snnTorch's state-only leaky neuron has no reset: over a whole time-major sequence ``[T, B, C]`` its membrane is
the causal convolution of the input with the kernel :math:`h_k = e^{-k/\tau}`,
:math:`\tau = 1/(1 - \beta + 10^{-12})` (per channel or one for all), which snnTorch builds ``T`` (or
``kernel_truncation_steps`` :math:`= K`) taps long and convolves in :math:`O(T^2)` (:math:`O(TK)`) per channel.
The same membrane is the first-order recurrence, solved in :math:`O(T)` by
:func:`~snn_parallel.ops.linear_scan` (its backward the reverse scan):

.. math::

    m_t = \rho\, m_{t-1} + x_t - \rho^K x_{t-K}, \qquad \rho = e^{-1/\tau}, \qquad m_0 = 0,

the last term (absent without truncation, or where :math:`t \le K`) removing the input that leaves the window of
:math:`K` taps: :math:`m_t = \sum_{k=0}^{\min(t, K) - 1} \rho^k x_{t-k}`, snnTorch's sum. The decay per step is
:math:`\rho = e^{-(1 - \beta)}` to first order, not :math:`\beta`: snnTorch's convention, kept.

The rest is snnTorch's: the spikes are ``fire(mem) * graded_spikes_factor``, :math:`s_t = H(m_t - V_{th})\,g^2`
(snnTorch 1.0's ``fire`` multiplies by the factor :math:`g` too, so it counts twice, and ``state_quant``, where
set, quantises ``mem`` and then again inside ``fire``), their gradient that of ``spike_grad`` through the
library's surrogates, as for the other skins; the constructor, the attributes (``tau`` a parameter with
``learn_beta``, a buffer otherwise; ``beta`` the property :math:`(\tau - 1)/\tau`) and the state dict are
snnTorch's own, so state dicts load both ways.
"""

from __future__ import annotations

from typing import Any

import snntorch
import torch
from torch import nn

from snn_parallel._validation import check_bool, check_float, check_int, check_sequence
from snn_parallel.neurons.base import check_threshold
from snn_parallel.ops.scan import linear_scan
from snn_parallel.surrogate import Surrogate

from .snntorch import _check_factor, _spike_surrogate

__all__ = ["StateLeaky", "LinearLeaky"]


def _check_beta(beta: object) -> None:
    r"""``beta``: a real number, or a real tensor, every value in ``[0, 1]`` (snnTorch's :math:`\tau = 1/(1-\beta)`
    is then at least 1, infinite for 1: no leak; above 1 it is negative and the kernel grows without bound)."""
    if not isinstance(beta, torch.Tensor):
        check_float(beta, "beta", minimum=0.0, maximum=1.0)
        return
    if beta.is_complex() or not beta.is_floating_point():
        raise TypeError(f"beta must hold real floating-point values, got dtype {str(beta.dtype).replace('torch.', '')}")
    values = beta.detach().double()
    if not bool(((values >= 0) & (values <= 1)).all()):  # NaN fails both
        shown = values.item() if values.numel() == 1 else values.tolist()
        raise ValueError(
            f"beta must be in [0, 1] (snnTorch's decay per step is exp(-(1 - beta)), its tau 1/(1 - beta)), got {shown}"
        )


def _check_options(options: dict[str, Any]) -> None:
    """The checks snnTorch's constructor leaves out, each error naming its argument."""
    _check_beta(options["beta"])
    check_threshold(options["threshold"], "threshold")
    _check_factor(options["graded_spikes_factor"])
    for name in ("surrogate_disable", "learn_beta", "learn_threshold", "output", "learn_graded_spikes_factor"):
        check_bool(options[name], name)
    if options["state_quant"] is not False and not callable(options["state_quant"]):
        raise TypeError(f"state_quant must be False or a quantiser (callable), got {options['state_quant']!r}")
    if options["output"]:  # without spikes snnTorch only warns of a spike_grad, which is then never called
        _spike_surrogate(options["spike_grad"], options["surrogate_disable"])  # a TypeError for one refused
    _truncation(options["kernel_truncation_steps"])


def _truncation(steps: object) -> int | None:
    """``kernel_truncation_steps``: ``None`` (the whole sequence) or a positive int ``K``."""
    return None if steps is None else check_int(steps, "kernel_truncation_steps", minimum=1)


class _ScanStateLeaky:
    """What the two skins share: the membrane by the scan, the spikes through the library's surrogate, the call."""

    tau: torch.Tensor
    threshold: torch.Tensor
    graded_spikes_factor: torch.Tensor
    spike_grad: Any
    surrogate_disable: bool
    state_quant: Any
    output: bool
    kernel_truncation_steps: int | None
    #: ``(spike_grad, its surrogate)``, resolved again when ``spike_grad`` or ``surrogate_disable`` is reassigned
    _resolved: tuple[Any, Surrogate] | None = None

    def _surrogate(self) -> Surrogate:
        key = None if self.surrogate_disable else self.spike_grad
        if self._resolved is None or self._resolved[0] is not key:
            self._resolved = (key, _spike_surrogate(key, self.surrogate_disable)[1])
        return self._resolved[1]

    def fire(self, mem: torch.Tensor) -> torch.Tensor:
        """snnTorch's ``LIF.fire``: ``state_quant(mem)`` (where set) minus the threshold, through the surrogate,
        times ``graded_spikes_factor``."""
        return self._spikes(mem, self.graded_spikes_factor)

    def _spikes(self, mem: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        """``fire(mem)`` with ``factor`` in place of ``graded_spikes_factor``: the spikes are 0 or 1 before it, so
        ``forward``'s ``fire(mem) * g`` is ``_spikes(mem, g * g)`` to the bit, one product over the sequence
        fewer."""
        if self.state_quant:
            mem = self.state_quant(mem)
        return self._surrogate()(mem - self.threshold) * factor

    def _base_state_function(self, input_: torch.Tensor) -> torch.Tensor:
        r"""The membrane ``[T, B, C]`` of ``input_`` ``[T, B, C]`` (checked), by the scan of the module docstring."""
        steps, _, channels = input_.shape
        # log rho per channel, in float32 at least (the scan accumulates half precision in float32)
        log_decay = (-1 / self.tau).to(torch.promote_types(input_.dtype, torch.float32)).expand(channels)
        window = _truncation(self.kernel_truncation_steps)
        drive = input_
        if window is not None and window < steps:
            leaving = torch.exp(window * log_decay) * input_[:-window]  # rho^K x_{t-K}
            drive = torch.cat((input_[:window], input_[window:] - leaving))
        mem, _ = linear_scan(log_decay, drive, log_decay=True, validate=False)
        return mem.to(input_.dtype)

    def _checked(self, input_: object, channels: int | None, what: str) -> torch.Tensor:
        """``input_`` as a sequence ``[T, B, channels]`` of finite floats (any ``C`` where ``channels`` is
        ``None``); ``what`` names the channels in messages."""
        if isinstance(input_, torch.Tensor) and input_.dim() != 3:
            raise ValueError(
                f"input_ must be a time-major sequence [T, B, {what}] (3 dims), got shape {tuple(input_.shape)}"
            )
        if channels is None:
            channels = input_.shape[2] if isinstance(input_, torch.Tensor) else 0
        return check_sequence(input_, "input_", channels)

    def _channels(self) -> int | None:
        """The channel count the decay fixes (one ``tau`` per channel), else ``None``: any."""
        return self.tau.numel() if self.tau.numel() > 1 else None

    def _sequence(self, input_: object) -> torch.Tensor:
        """The checked input to the leaky state, ``[T, B, C]``."""
        return self._checked(input_, self._channels(), "C")

    def forward(self, input_: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """snnTorch's call: ``(spk, mem)``, each ``[T, B, C]``, or ``mem`` alone with ``output=False``."""
        mem = self._base_state_function(self._sequence(input_))
        if self.state_quant:
            mem = self.state_quant(mem)
        if not self.output:
            return mem
        factor = self.graded_spikes_factor
        self.spk = self._spikes(mem, factor * factor)  # snnTorch's fire(mem) * factor: the factor counts twice
        return self.spk, mem


class StateLeaky(_ScanStateLeaky, snntorch.StateLeaky):
    r"""Drop-in for ``snn.StateLeaky`` (same constructor, attributes, state dict and call ``[T, B, C] -> (spk,
    mem)``), its membrane the :math:`O(T)` scan :math:`m_t = \rho m_{t-1} + x_t - \rho^K x_{t-K}`,
    :math:`\rho = e^{-1/\tau}` (see :mod:`snn_parallel.adapters.snntorch`) in place of snnTorch's :math:`O(T^2)`
    convolution.

    Beyond snnTorch, bad arguments are refused naming them: ``beta`` outside ``[0, 1]`` or not finite,
    ``kernel_truncation_steps`` not a positive int, an input not ``[T, B, C]`` with ``T >= 1`` finite floats (``C``
    = ``channels`` where ``beta`` is per channel; with one ``beta``, any ``C``, as snnTorch).
    """

    def __init__(
        self,
        beta: float | torch.Tensor,
        channels: int,
        threshold: float | torch.Tensor = 1.0,
        spike_grad: Any = None,
        surrogate_disable: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        state_quant: Any = False,
        output: bool = True,
        graded_spikes_factor: float | torch.Tensor = 1.0,
        learn_graded_spikes_factor: bool = False,
        kernel_truncation_steps: int | None = None,
    ) -> None:
        options = dict(locals())  # the arguments by name, snnTorch's __init__ takes them so
        options.pop("self"), options.pop("__class__", None)
        check_int(channels, "channels", minimum=1)
        _check_options(options)
        super().__init__(**options)


class LinearLeaky(StateLeaky, snntorch.LinearLeaky):
    r"""Drop-in for ``snn.LinearLeaky``: ``nn.Linear(in_features, out_features)`` (``self.linear``) at each step, then
    :class:`StateLeaky`'s scan over ``out_features`` channels; snnTorch's constructor, attributes and state dict
    (``linear.weight``, ``linear.bias``). It is a :class:`StateLeaky`, as snnTorch's ``LinearLeaky`` is its
    ``StateLeaky``; the input is ``[T, B, in_features]``.
    """

    linear: nn.Linear

    def __init__(
        self,
        beta: float | torch.Tensor,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        threshold: float | torch.Tensor = 1.0,
        spike_grad: Any = None,
        surrogate_disable: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        state_quant: Any = False,
        output: bool = True,
        graded_spikes_factor: float | torch.Tensor = 1.0,
        learn_graded_spikes_factor: bool = False,
        kernel_truncation_steps: int | None = None,
    ) -> None:
        options = dict(locals())  # the arguments by name, snnTorch's __init__ takes them so
        options.pop("self"), options.pop("__class__", None)
        check_int(in_features, "in_features", minimum=1)
        check_int(out_features, "out_features", minimum=1)
        check_bool(bias, "bias")
        _check_options(options)
        snntorch.LinearLeaky.__init__(self, **options)

    def _sequence(self, input_: object) -> torch.Tensor:
        """snnTorch's projection of the checked ``[T, B, in_features]`` input (as snnTorch computes it, over the
        flattened steps), ``[T, B, out_features]``; ``self.mem`` is set after it, as snnTorch sets it."""
        linear = self.linear
        input_ = self._checked(input_, linear.in_features, "in_features")
        steps, batch, _ = input_.shape
        return linear(input_.reshape(-1, linear.in_features)).reshape(steps, batch, linear.out_features)

    def forward(self, input_: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """snnTorch's call: ``(spk, mem)``, each ``[T, B, out_features]``, or ``mem`` alone with ``output=False``;
        ``self.mem`` (and ``self.spk``) hold them after the call, as snnTorch's do."""
        out = super().forward(input_)
        self.mem = out[1] if self.output else out
        return out
