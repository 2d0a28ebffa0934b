"""What a run reports: the machine, the speed-ups of our neurons over the baselines, and the table."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from .bandwidth import bandwidth_text, peak_bandwidth
from .cases import MODELS, Shape, label


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Speed-up (baseline time / our time) of each of our neurons against each baseline, per shape."""
    timed = [r for r in rows if "error" not in r]
    return [
        {
            "shape": ours["shape"],
            "model": ours["model"],
            "baseline": base["model"],
            "speedup": base["time_ms"] / ours["time_ms"],
        }
        for ours in timed
        if MODELS[ours["model"]][1] is None
        for base in timed
        if MODELS[base["model"]][1] is not None and base["shape"] == ours["shape"]
    ]


def machine_info(device: str) -> dict[str, Any]:
    """CPU model, core count, torch version and threads, and device (with the GPU name on CUDA)."""
    try:
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
    except OSError:
        names = []
    info = {
        "cpu": names[0] if names else platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": device,
        "python": platform.python_version(),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        peak, source = peak_bandwidth()
        info["peak_bandwidth_gbs"], info["peak_bandwidth_source"] = peak / 1e9, source
    return info


def machine_line(info: dict[str, Any]) -> str:
    """``"Machine: <cpu>, <n> cores, ..."`` for :func:`machine_info`."""
    device = f"cuda ({info['gpu']}, peak {info['peak_bandwidth_gbs']:.0f} GB/s)" if "gpu" in info else info["device"]
    return (
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['threads']} torch threads, "
        f"torch {info['torch']}, device {device}"
    )


def print_table(shapes: list[Shape], rows: list[dict[str, Any]], speedups: list[dict[str, Any]]) -> None:
    """One block per shape: each model's time, runs, peak memory, speed-ups and (on a GPU) bandwidth."""
    width = max([15, *(len(row["model"]) for row in rows)])  # snntorch_stateleaky is longer
    for shape in shapes:
        print(f"\nT={shape[0]} B={shape[1]} C={shape[2]}")
        print(f"  {'model':<{width}} {'time ms':>10} {'runs':>5} {'peak MiB':>9}  speed-up")
        for row in (r for r in rows if r["shape"] == label(shape)):
            if "error" in row:
                print(f"  {row['model']:<{width}} {row['error']}")
                continue
            mine = ", ".join(
                f"x{s['speedup']:.1f} vs {s['baseline']}"
                for s in speedups
                if s["shape"] == row["shape"] and s["model"] == row["model"]
            )
            print(
                f"  {row['model']:<{width}} {row['time_ms']:>10.2f} {row['repeats']:>5} {row['peak_mib']:>9.1f}  {mine}"
                + (f"  {bandwidth_text(row)}" if "bandwidth_gbs" in row else "")
            )
