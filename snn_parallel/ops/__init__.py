"""Pure tensor math behind the neurons, one folder per op.

Each op folder holds ``reference.py`` (a plain step loop: the specification), a parallel or fused
torch implementation, ``cupy.py`` (the launchers of its CUDA kernels, registered as
``torch.ops.snn_parallel.*`` custom ops) with the op's ``.cu`` source, and in ``__init__.py`` the
dispatching entry point with a hand-written backward. The shared CUDA header, the time-chunked scan
driver and the launcher are in ``_cuda``; backend resolution in ``_backend``.
"""

from .dsn import dsn_membrane, dsn_membrane_reference
from .linear_fire import linear_fire, linear_fire_reference, soft_reset_lif_reference
from .ltc import ltc_scan, ltc_scan_reference
from .scan import linear_scan, linear_scan_reference
from .tssl import psp_filter, tssl_backward_reference, tsslbp

__all__ = [
    "linear_scan",
    "linear_scan_reference",
    "dsn_membrane",
    "dsn_membrane_reference",
    "linear_fire",
    "linear_fire_reference",
    "soft_reset_lif_reference",
    "ltc_scan",
    "ltc_scan_reference",
    "tsslbp",
    "tssl_backward_reference",
    "psp_filter",
]
