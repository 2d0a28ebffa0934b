"""Framework-agnostic parallel spiking neurons, time-major ``[T, B, C, ...]``.

Each has ``forward(x_seq, state=None)`` (all steps in parallel) and ``step(x_t, state)``
(streaming), with the same numbers; see :class:`ParallelNeuron`. HYPR's :class:`BRF` and
:class:`SEAdLIF` feed their spikes back into the state, so their ``forward`` loops over the
update that ``step`` makes. TSSL-BP's :class:`PSPLIF` outputs its post-synaptic potential
(:class:`PSPFilter` is that filter alone).
"""

from .adlif import AdLIFState, SEAdLIF
from .base import ParallelNeuron
from .brf import BRF, BRFState
from .dsn import DSNState, DynamicDecay
from .lif import DecoupledLIF, LIFState
from .ltc import LTC, LTCState
from .prf import PRF, PRFState
from .psp_lif import PSPLIF, PSPFilter, PSPLIFState, PSPState

__all__ = [
    "ParallelNeuron",
    "DynamicDecay",
    "DSNState",
    "PRF",
    "PRFState",
    "DecoupledLIF",
    "LIFState",
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
]
