"""What ``snn-parallel bench`` times: the models (ours from :mod:`snn_parallel.registry`, the
frameworks' baselines) and the default shapes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .. import registry

Shape = tuple[int, int, int]
Runner = Callable[[torch.Tensor], torch.Tensor]
Builder = Callable[[int, int], tuple[nn.Module, Runner]]
DEFAULT_SHAPES: list[Shape] = [(1024, 32, 256), (1024, 4, 64), (4096, 4, 64), (16384, 4, 64)]
#: default shapes with --device cuda: T x B·C (C = 256), at most 2^30 elements
CUDA_SHAPES: list[Shape] = [
    (t, lanes // 256, 256) for t in (1024, 4096, 16384, 65536) for lanes in (256, 4096, 65536) if t * lanes <= 1 << 30
]
#: shapes of the recurrence-forward measurement with --device cuda (2^28 elements each)
RECURRENCE_SHAPES: list[Shape] = [(1024, 1024, 256), (4096, 256, 256), (16384, 64, 256), (65536, 16, 256)]
RECURRENCE = "recurrence_forward"


def _ours(name: str, **kwargs: Any) -> Builder:
    """A neuron of the registry (``kwargs`` over its defaults); the runner returns its spikes."""

    def build(steps: int, features: int) -> tuple[nn.Module, Runner]:
        neuron = registry.build(name, features, **kwargs)
        return neuron, lambda x: neuron(x)[0]

    return build


def _snntorch_leaky(steps: int, features: int) -> tuple[nn.Module, Runner]:
    import snntorch

    lif = snntorch.Leaky(beta=0.5)

    def run(x: torch.Tensor) -> torch.Tensor:
        mem, spikes = lif.init_leaky(), []
        for x_t in x.unbind(0):
            spike, mem = lif(x_t, mem)
            spikes.append(spike)
        return torch.stack(spikes)

    return lif, run


def _stateleaky(own: bool) -> Builder:
    """snnTorch 1.0's ``StateLeaky`` (``own``: its causal convolution) or our drop-in (the scan), ``beta = 0.9``;
    the runner returns the spikes."""

    def build(steps: int, features: int) -> tuple[nn.Module, Runner]:
        import snntorch

        from snn_parallel.adapters import snntorch as adapter

        lif = (snntorch.StateLeaky if own else adapter.StateLeaky)(beta=0.9, channels=features)
        return lif, lambda x: lif(x)[0]

    return build


def _spikingjelly(make: Callable[[int, Any, Any], nn.Module]) -> Builder:
    def build(steps: int, features: int) -> tuple[nn.Module, Runner]:
        from spikingjelly.activation_based import functional, neuron, surrogate

        module = make(steps, neuron, surrogate)

        def run(x: torch.Tensor) -> torch.Tensor:
            functional.reset_net(module)
            return module(x)

        return module, run

    return build


# name -> (builder (T, C) -> (module, run), package a baseline needs or None for ours)
MODELS: dict[str, tuple[Builder, str | None]] = {
    "dsn": (_ours("dsn"), None),
    "prf": (
        _ours("prf", learn_decay=False),
        None,
    ),  # the decay fixed, as PRF's own defaults (and every benchmark so far)
    "lif": (_ours("lif"), None),
    "ltc": (_ours("ltc"), None),  # mode="parallel"
    "psplif": (_ours("psplif"), None),  # TSSL-BP's neuron and backward; its output is the PSP
    "snntorch_leaky": (_snntorch_leaky, "snntorch"),
    "sj_lif": (_spikingjelly(lambda T, n, s: n.LIFNode(step_mode="m", surrogate_function=s.ATan())), "spikingjelly"),
    "sj_psn": (_spikingjelly(lambda T, n, s: n.PSN(T=T)), "spikingjelly"),  # input [T, N, *]
    "sj_sliding_psn": (_spikingjelly(lambda T, n, s: n.SlidingPSN(k=8, exp_init=True, step_mode="m")), "spikingjelly"),
    # snnTorch 1.0's StateLeaky (no reset) and its drop-in: opt-in, the convolution's O(T^2) being long at large T
    "stateleaky": (_stateleaky(own=False), None),
    "snntorch_stateleaky": (_stateleaky(own=True), "snntorch"),
}
#: the models timed only when named in --models
OPT_IN = ("stateleaky", "snntorch_stateleaky")


def label(shape: Shape) -> str:
    """``"TxBxC"``."""
    return "x".join(map(str, shape))
