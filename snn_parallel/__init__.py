"""snn_parallel: spiking neurons that train in parallel over time and run step by step.

Neurons (:mod:`snn_parallel.neurons`): :class:`DynamicDecay` (DSN), :class:`PRF`,
:class:`DecoupledLIF`, :class:`SynapticLIF` (snnTorch's ``Synaptic``), :class:`LTC`, HYPR's
:class:`BRF` and :class:`SEAdLIF` (and its :class:`LeakyIntegrator` readout), and TSSL-BP's :class:`PSPLIF`. Ops
(:mod:`snn_parallel.ops`): the gated linear scan and the fused recurrences behind them.
Surrogates (:mod:`snn_parallel.surrogate`) accept ours, snnTorch's and SpikingJelly's.
Built-in data: :mod:`snn_parallel.tasks`.
Framework adapters live in :mod:`snn_parallel.adapters` and are never imported here.
"""

from . import ops, surrogate
from ._validation import set_validation, validation, validation_enabled
from .neurons import BRF, LTC, PRF, PSPLIF, DecoupledLIF, DynamicDecay, LeakyIntegrator, SEAdLIF, SynapticLIF

__version__ = "0.1.0"

__all__ = [
    "DynamicDecay",
    "PRF",
    "DecoupledLIF",
    "SynapticLIF",
    "LTC",
    "BRF",
    "SEAdLIF",
    "PSPLIF",
    "LeakyIntegrator",
    "ops",
    "surrogate",
    "set_validation",
    "validation",
    "validation_enabled",
    "__version__",
]
