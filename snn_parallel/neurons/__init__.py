"""Framework-agnostic spiking neurons, time-major ``[T, B, C, ...]``.

Each has ``forward(x_seq, state=None)`` (all steps, in parallel where the neuron allows it)
and ``step(x_t, state)`` (streaming), with the same numbers; see :class:`Neuron`, their base
class and its two extension hooks. HYPR's :class:`BRF` and :class:`SEAdLIF` feed their spikes
back into the state, so their ``forward`` loops over the update that ``step`` makes. TSSL-BP's
:class:`PSPLIF` outputs its post-synaptic potential (:class:`PSPFilter` is that filter alone).
snnTorch's ``Synaptic`` is :class:`SynapticLIF`, a current-driven
:class:`DecoupledLIF`. :class:`LeakyIntegrator` is HYPR's non-spiking readout, driven by the trainers like a neuron.
"""

from .adlif import AdLIFState, SEAdLIF
from .base import Neuron, ParallelNeuron
from .brf import BRF, BRFState
from .dsn import DSNState, DynamicDecay
from .lif import DecoupledLIF, DecoupledLIFState, LIFState
from .ltc import LTC, LTCState
from .prf import PRF, PRFState
from .psp_lif import PSPLIF, PSPFilter, PSPLIFState, PSPState
from .readout import LeakyIntegrator, LeakyIntegratorState
from .synaptic import SynapticLIF, SynapticLIFState

__all__ = [
    "Neuron",
    "ParallelNeuron",
    "DynamicDecay",
    "DSNState",
    "PRF",
    "PRFState",
    "DecoupledLIF",
    "DecoupledLIFState",
    "LIFState",
    "SynapticLIF",
    "SynapticLIFState",
    "LTC",
    "LTCState",
    "BRF",
    "BRFState",
    "SEAdLIF",
    "AdLIFState",
    "PSPLIF",
    "PSPLIFState",
    "PSPFilter",
    "PSPState",
    "LeakyIntegrator",
    "LeakyIntegratorState",
]
