"""Memory bandwidth on a GPU: the device's peak, and the share of it a measured time achieves."""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

#: peak memory bandwidth (bytes/s) by device-name fragment, where the driver does not report the memory clock
PEAK_BANDWIDTH = {"H200": 4.8e12, "H100 NVL": 3.9e12, "H100 PCIe": 2.0e12, "H100": 3.35e12}


def peak_bandwidth() -> tuple[float, str]:
    """The current GPU's peak memory bandwidth in bytes/s and where the figure comes from: 2 (double data
    rate) x memory clock x bus width, read from torch or the CUDA runtime, else :data:`PEAK_BANDWIDTH`."""
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    source = "torch.cuda.get_device_properties"
    if not (clock_khz and bus_bits) and importlib.util.find_spec("cupy") is not None:
        try:
            from cupy.cuda import runtime

            device = torch.cuda.current_device()
            clock_khz = runtime.deviceGetAttribute(runtime.cudaDevAttrMemoryClockRate, device)
            bus_bits = runtime.deviceGetAttribute(runtime.cudaDevAttrGlobalMemoryBusWidth, device)
            source = "CUDA device attributes (memory clock, bus width)"
        except Exception:  # an attribute this runtime does not report: fall back to the table
            clock_khz = bus_bits = 0
    if clock_khz and bus_bits:
        return 2 * clock_khz * 1e3 * bus_bits / 8, source
    for fragment, value in PEAK_BANDWIDTH.items():
        if fragment in props.name:
            return value, f"table entry {fragment!r}"
    return float("nan"), f"unknown for {props.name}"


def achieved(nbytes: int, time_ms: float) -> dict[str, Any]:
    """A row's bandwidth fields: ``nbytes`` moved in ``time_ms``, in GB/s and as a share of the peak."""
    rate = nbytes / (time_ms / 1e3)
    return {"bytes": nbytes, "bandwidth_gbs": rate / 1e9, "peak_fraction": rate / peak_bandwidth()[0]}


def bandwidth_text(row: dict[str, Any]) -> str:
    """``"812 GB/s (24% of peak)"`` for a row with the fields of :func:`achieved`."""
    return f"{row['bandwidth_gbs']:.0f} GB/s ({row['peak_fraction']:.0%} of peak)"
