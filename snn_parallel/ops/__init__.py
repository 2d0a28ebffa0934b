"""Pure tensor math behind the neurons, one folder per op.

Each op has ``reference.py`` (a plain step loop: the specification), a parallel or fused
torch implementation, and a dispatching entry point with a hand-written backward.
"""

from .decoupled_lif import decoupled_lif, soft_reset_lif_reference, threshold_scan
from .ltc import ltc_scan, ltc_scan_reference
from .scan import linear_scan, linear_scan_reference

__all__ = [
    "linear_scan",
    "linear_scan_reference",
    "decoupled_lif",
    "threshold_scan",
    "soft_reset_lif_reference",
    "ltc_scan",
    "ltc_scan_reference",
]
