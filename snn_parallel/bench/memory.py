"""The process's resident high-water mark, resettable on Linux (see the package doc)."""

from __future__ import annotations

import sys
from pathlib import Path


def status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status``, or ``None`` without ``/proc``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_kib() -> int:
    """The resident high-water mark in KiB: ``VmHWM``, else ``ru_maxrss``."""
    peak = status_kib("VmHWM")
    if peak is not None:
        return peak
    import resource  # POSIX only, hence not at the top

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss // 1024 if sys.platform == "darwin" else maxrss  # bytes on macOS, KiB on Linux


def reset_peak() -> str:
    """Reset the resident high-water mark if possible; returns the memory method used."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return "lifetime peak (high-water mark not resettable)"
    rss = status_kib("VmRSS")
    reset = rss is not None and peak_kib() <= rss + 1024  # the mark now sits at the current RSS
    return "VmHWM reset via clear_refs" if reset else "lifetime peak (clear_refs had no effect)"
