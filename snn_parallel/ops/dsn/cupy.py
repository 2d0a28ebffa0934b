"""CuPy path of the DSN membrane: ``dsn.cu``, one thread per lane.

Same contracts as :func:`.fused.dsn_forward` / :func:`.fused.dsn_backward`. ``x``, ``history``,
``h0`` and the sequences run in the storage dtype of ``x``; ``weight`` and ``bias`` in float32;
gradients come back in the dtypes of their inputs. The launches are the custom ops
``snn_parallel::dsn_forward`` and ``snn_parallel::dsn_backward``.
"""

from __future__ import annotations

import torch

from ...surrogate import Surrogate
from .._cuda import KernelFile, arg, kernel_op, spike_code

#: the most conv taps ``dsn.cu`` holds in registers (its ``DSN_MAX_TAPS``)
MAX_TAPS = 8
KERNEL = KernelFile(__package__, "dsn.cu", {"DSN_MAX_TAPS": MAX_TAPS})


def _fake_forward(x, history, weight, bias, h0, tau, shift, kind, params, inclusive):
    return torch.empty_like(x), torch.empty_like(x)


@kernel_op("dsn_forward", _fake_forward)
def _forward(x: torch.Tensor, history: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, h0: torch.Tensor,
             tau: float, shift: float, kind: int, params: list[float], inclusive: bool) -> tuple[torch.Tensor, torch.Tensor]:
    steps, lanes = x.shape
    x = x.contiguous()
    spikes, h = torch.empty_like(x), torch.empty_like(x)
    KERNEL.launch_items(
        "dsn_fwd", x.dtype, lanes,
        x, arg(history, x.dtype), arg(weight, torch.float32), arg(bias, torch.float32), arg(h0, x.dtype), spikes, h,
        tau, shift, kind, *params, int(inclusive), weight.shape[0], steps, lanes,
    )  # fmt: skip
    return spikes, h


def dsn_forward_cupy(
    x: torch.Tensor,
    history: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    tau: float,
    h0: torch.Tensor,
    spike_fn: Surrogate,
    shift: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes and membrane ``H`` ``[T, N]`` for ``x`` ``[T, N]``; ``weight`` is ``[k, N]``, ``bias`` ``[N]``."""
    kind, params, inclusive = spike_code(spike_fn)
    return _forward(x, history, weight, bias, h0, float(tau), float(shift), kind, list(params), bool(inclusive))


def _fake_backward(grad_spikes, grad_h, grad_last, x, history, weight, bias, h0, h, tau, shift, kind, params):
    return (torch.empty_like(x), torch.empty_like(history), torch.empty_like(weight), torch.empty_like(bias),
            torch.empty_like(h0))


@kernel_op("dsn_backward", _fake_backward)
def _backward(grad_spikes: torch.Tensor, grad_h: torch.Tensor, grad_last: torch.Tensor, x: torch.Tensor,
              history: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, h0: torch.Tensor, h: torch.Tensor,
              tau: float, shift: float, kind: int, params: list[float],
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    steps, lanes = x.shape
    grad_x = torch.empty_like(x)
    grad_history = torch.empty(history.shape, dtype=x.dtype, device=x.device)
    grad_weight = torch.empty(weight.shape, dtype=torch.float32, device=x.device)
    grad_bias = torch.empty(lanes, dtype=torch.float32, device=x.device)
    grad_h0 = torch.empty(lanes, dtype=x.dtype, device=x.device)
    KERNEL.launch_items(
        "dsn_bwd", x.dtype, lanes,
        arg(grad_spikes, x.dtype), arg(grad_h, x.dtype), arg(grad_last, x.dtype), x, arg(history, x.dtype),
        arg(weight, torch.float32), arg(bias, torch.float32), arg(h0, x.dtype), h,
        grad_x, grad_history, grad_weight, grad_bias, grad_h0, tau, shift, kind, *params, weight.shape[0], steps, lanes,
    )  # fmt: skip
    return (
        grad_x,
        grad_history.to(history.dtype),
        grad_weight.to(weight.dtype),
        grad_bias.to(bias.dtype),
        grad_h0.to(h0.dtype),
    )


def dsn_backward_cupy(
    grad_spikes: torch.Tensor,
    grad_h: torch.Tensor,
    grad_last: torch.Tensor,
    x: torch.Tensor,
    history: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    tau: float,
    h0: torch.Tensor,
    h: torch.Tensor,
    spike_fn: Surrogate,
    shift: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``(x, history, weight, bias, h0)``."""
    kind, params, _ = spike_code(spike_fn)
    return _backward(grad_spikes, grad_h, grad_last, x, history, weight, bias, h0, h, float(tau), float(shift), kind,
                     list(params))  # fmt: skip
