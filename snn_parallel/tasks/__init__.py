"""Built-in tasks: deterministic, download-free datasets of ``(x [T, F], y)`` items.

* :class:`SequentialDigits`: scikit-learn's 8x8 digits, pixel-, permuted-, row-serial or static.
* :class:`MNIST1D`: MNIST-1D generated locally with ``mnist1d``.
* :class:`AddingProblem`, :class:`DelayedCue`, :class:`TemporalXOR`: synthetic memory tasks.
* :func:`make_loader` / :func:`time_major_collate`: batches as ``(x [T, B, F], y [B, ...])``.

``SequentialDigits`` and ``MNIST1D`` need the optional extra: ``pip install "torch==2.13.0" "snn-parallel[data]"``.
"""

from .digits import SequentialDigits
from .loader import make_loader, time_major_collate
from .mnist1d_task import MNIST1D
from .synthetic import AddingProblem, DelayedCue, TemporalXOR

__all__ = [
    "AddingProblem",
    "DelayedCue",
    "MNIST1D",
    "SequentialDigits",
    "TemporalXOR",
    "make_loader",
    "time_major_collate",
]
