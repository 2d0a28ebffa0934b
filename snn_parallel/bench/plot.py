"""The figure of a run: time against T, the speed-ups, and on a GPU the achieved bandwidth."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cases import RECURRENCE

PLOT_BASELINES = ("sj_lif", "sj_psn")


def plot(
    path: Path,
    rows: list[dict[str, Any]],
    speedups: list[dict[str, Any]],
    info: dict[str, Any],
    recurrence: Sequence[dict[str, Any]] = (),
) -> None:
    """Time against T at the (B, C) measured at the most lengths, speed-ups, and on a GPU the bandwidth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gpu = "peak_bandwidth_gbs" in info
    fig, axes = plt.subplots(1, 3 if gpu else 2, figsize=(19 if gpu else 13, 5))
    left, right = axes[0], axes[1]
    batch, features = Counter((r["B"], r["C"]) for r in rows).most_common(1)[0][0]
    for model in dict.fromkeys(r["model"] for r in rows):
        points = sorted(
            (r["T"], r["time_ms"])
            for r in rows
            if r["model"] == model and "error" not in r and (r["B"], r["C"]) == (batch, features)
        )
        if points:
            left.loglog(*zip(*points, strict=True), marker="o", label=model)
    left.set(xlabel=f"T (B={batch}, C={features})", ylabel="forward + backward (ms)", title="time vs sequence length")
    if gpu:
        _bandwidth(axes[2], rows, recurrence)
    bars = [s for s in speedups if s["baseline"] in PLOT_BASELINES]
    shapes = list(dict.fromkeys(s["shape"] for s in bars))
    pairs = list(dict.fromkeys((s["model"], s["baseline"]) for s in bars))
    width = 0.8 / max(len(pairs), 1)
    for i, (model, baseline) in enumerate(pairs):
        values = {s["shape"]: s["speedup"] for s in bars if (s["model"], s["baseline"]) == (model, baseline)}
        xs = [j + i * width for j, shape in enumerate(shapes) if shape in values]
        right.bar(xs, [values[shape] for shape in shapes if shape in values], width, label=f"{model} vs {baseline}")
    right.set_xticks([j + 0.4 - width / 2 for j in range(len(shapes))], shapes)
    right.axhline(1.0, color="k", lw=0.8)
    right.set(yscale="log", ylabel="speed-up (x)", title="speed-up of our neurons (TxBxC)")
    for axes in (left, right):
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7, ncol=2)
    fig.suptitle(f"snn-parallel bench: {info['cpu']}, {info['cores']} cores, device {info.get('gpu', info['device'])}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _bandwidth(axes: Any, rows: list[dict[str, Any]], recurrence: Sequence[dict[str, Any]]) -> None:
    """Achieved fraction of the peak bandwidth against elements, per model and for the recurrence forward."""
    timed = [r for r in [*rows, *recurrence] if "peak_fraction" in r]
    for model in dict.fromkeys(r["model"] for r in timed):
        points = sorted((r["T"] * r["B"] * r["C"], r["peak_fraction"]) for r in timed if r["model"] == model)
        axes.semilogx(*zip(*points, strict=True), marker="o", ls="" if model != RECURRENCE else "-", label=model)
    axes.axhline(0.7, color="k", lw=0.8, ls="--")
    axes.set_ylim(0, 1.05)
    axes.set(xlabel="elements T·B·C", ylabel="lower-bound bytes / time / peak", title="achieved memory bandwidth")
    if timed:
        axes.legend(fontsize=7, ncol=2)
