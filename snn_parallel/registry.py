"""Neurons by name: the one table the demo, the experiments, the benchmark and the CLI build from.

Each entry is a neuron class and the constructor arguments the built-in tasks train it with
(``PRF`` with a learnable decay over ``dt_range=(0.01, 1.0)``, ``LTC`` in its parallel mode, ...).
:func:`build` makes one of ``features`` neurons; its keywords override those defaults::

    from snn_parallel import registry

    registry.build("prf", 128)                     # PRF(128, dt_range=(0.01, 1.0), learn_decay=True)
    registry.build("ltc", 64, mode="paper")        # LTC(64, mode="paper")
    registry.names()                               # ('adlif', 'brf', 'dsn', ...)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ._validation import check_int
from .neurons import BRF, LTC, PRF, PSPLIF, DecoupledLIF, DynamicDecay, Neuron, SEAdLIF, SynapticLIF

__all__ = ["NeuronEntry", "NEURONS", "build", "names"]


@dataclass(frozen=True)
class NeuronEntry:
    """A registered neuron: its class, the arguments the built-in tasks give it, and one line on it."""

    cls: type[Neuron]
    defaults: Mapping[str, Any]
    about: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))


#: every neuron the applications build by name
NEURONS: Mapping[str, NeuronEntry] = MappingProxyType(
    {
        "dsn": NeuronEntry(DynamicDecay, {}, "DSN: a learned causal kernel over the membrane history"),
        "prf": NeuronEntry(
            PRF,
            {"dt_range": (0.01, 1.0), "learn_decay": True},
            "PRF: a resonate-and-fire neuron with a learnable complex decay",
        ),
        # PRF as SpikingJelly's PRFNode(n, dt_range=(0.01, 1.0)) builds it: a fixed decay, the sigmoid surrogate
        "prf_fixed": NeuronEntry(
            PRF,
            {"dt_range": (0.01, 1.0), "surrogate": "sigmoid"},
            "PRF as SpikingJelly's PRFNode: a fixed decay, the sigmoid surrogate",
        ),
        "lif": NeuronEntry(DecoupledLIF, {"tau": 2.0}, "LIF with its reset decoupled from the leak (tau = 2)"),
        "synaptic": NeuronEntry(
            SynapticLIF,
            {"tau_syn": 2.0, "tau": 2.0},
            "snnTorch's Synaptic: a LIF driven by a decaying synaptic current (tau_syn = tau = 2)",
        ),
        "ltc": NeuronEntry(
            LTC, {"mode": "parallel"}, "LTC: liquid time constants, its gates from the input (parallel)"
        ),
        "brf": NeuronEntry(BRF, {}, "HYPR's balanced resonate-and-fire neuron"),
        "adlif": NeuronEntry(SEAdLIF, {}, "HYPR's adaptive LIF (symplectic-Euler discretisation)"),
        "psplif": NeuronEntry(PSPLIF, {}, "TSSL-BP's LIF whose output is the post-synaptic potential"),
    }
)


def names() -> tuple[str, ...]:
    """The registered neuron names, sorted."""
    return tuple(sorted(NEURONS))


def build(name: str, features: int, **kwargs: Any) -> Neuron:
    """``features`` neurons of the registered ``name``, with the built-in tasks' arguments and ``kwargs`` over them.

    Raises:
        ValueError: an unknown ``name`` (the message lists the known ones), or ``features`` < 1.
        TypeError: ``features`` is not an int, or a keyword the neuron does not take.
    """
    if not isinstance(name, str) or name not in NEURONS:
        raise ValueError(f"unknown neuron {name!r}; the known ones are {', '.join(names())}")
    features = check_int(features, "features", minimum=1)
    entry = NEURONS[name]
    return entry.cls(features, **{**entry.defaults, **kwargs})
