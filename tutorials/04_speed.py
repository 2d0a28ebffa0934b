# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     name: python3
# ---

# %% [markdown]
# # 4. Speed: `snn-parallel bench` as plots
#
# `snn-parallel bench` times one training step (forward over the whole sequence plus
# backward) of a lone neuron layer on `rand(T, B, C) * 1.5`, for our neurons and for the
# frameworks' own: snnTorch's `Leaky` stepped in a Python loop, SpikingJelly's multi-step
# `LIFNode`, `PSN` and `SlidingPSN`. Each case runs in a fresh process, which also gives its
# peak memory. `--json` writes everything it measured.
#
# This tutorial plots the results files in `benchmarks/`: `cpu.json` (written by
# `make bench`) and, where it exists, `gpu.json` (the same command with `--device cuda` on a
# GPU machine). It then runs a short benchmark on your machine. Needs `matplotlib`; the
# baselines need `snntorch` and `spikingjelly` (missing ones are skipped). Run it as a
# script (`python tutorials/04_speed.py`) or open it with
# `jupytext --to ipynb tutorials/04_speed.py`.

# %%
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt

import snn_parallel

OUT = Path(os.environ.get("SNN_TUTORIAL_OUT", "figures"))
OUT.mkdir(parents=True, exist_ok=True)
SMALL = os.environ.get("SNN_TUTORIAL_SMALL") == "1"  # CI runs a shrunken version

# the benchmarks/ folder of the checkout this package is installed from (`make` installs it
# editable), whatever the working directory: the repository root, tutorials/ or elsewhere
CHECKOUT = Path(snn_parallel.__file__).resolve().parents[1]
BENCH = Path(os.environ.get("SNN_BENCHMARKS", CHECKOUT / "benchmarks"))
BENCH = BENCH if (BENCH / "cpu.json").exists() else None
print("results folder:", BENCH)

# %% [markdown]
# ## Reading a results file
#
# Each file has `machine` (CPU, cores, torch, device), `rows` (one per model and shape,
# with the median time in ms, the runs used and the peak memory, or an `error` such as a
# time-out) and `ratios` (speed-up = baseline time / our time, per shape).

# %%
NAMES = {
    "dsn": "DynamicDecay (DSN)",
    "prf": "PRF",
    "lif": "DecoupledLIF",
    "ltc": "LTC (parallel)",
    "psplif": "PSPLIF (TSSL-BP)",
    "snntorch_leaky": "snnTorch Leaky (loop)",
    "sj_lif": "SJ LIFNode ('m')",
    "sj_psn": "SJ PSN",
    "sj_sliding_psn": "SJ SlidingPSN",
}
OURS = ("dsn", "prf", "lif", "ltc", "psplif")


def load(path):
    results = json.loads(path.read_text())
    machine = results["machine"]
    device = machine.get("gpu", machine["device"])
    print(f"{path.name}: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, device {device}")
    if results.get("complete") is False:  # a run cut short: only the cases in `rows` were measured
        print(f"  incomplete run: {len(results['rows'])} cases measured. {results.get('note', '')}")
    return results


def table(results):
    """Time (ms) of every model at every shape, as text."""
    shapes = list(dict.fromkeys(r["shape"] for r in results["rows"]))
    models = list(dict.fromkeys(r["model"] for r in results["rows"]))
    lines = [f"{'model':24s}" + "".join(f"{s:>14s}" for s in shapes)]
    for model in models:
        cells = []
        for shape in shapes:
            row = next((r for r in results["rows"] if r["model"] == model and r["shape"] == shape), None)
            cells.append("-" if row is None else ("failed" if "error" in row else f"{row['time_ms']:.1f}"))
        lines.append(f"{NAMES.get(model, model):24s}" + "".join(f"{c:>14s}" for c in cells))
    return "\n".join(lines)


def plot(results, title, path):
    """Left: time against T at the benchmark's most common (B, C). Right: speed-up against T."""
    rows = [r for r in results["rows"] if "error" not in r]
    bc = max({(r["B"], r["C"]) for r in rows}, key=lambda k: sum((r["B"], r["C"]) == k for r in rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for model in dict.fromkeys(r["model"] for r in rows):
        points = sorted((r["T"], r["time_ms"]) for r in rows if r["model"] == model and (r["B"], r["C"]) == bc)
        if points:
            style = "-" if model in OURS else "--"
            left.loglog(*zip(*points, strict=True), style, marker="o", label=NAMES.get(model, model))
    left.set(
        xlabel=f"sequence length T (B = {bc[0]}, C = {bc[1]})", ylabel="forward + backward (ms)", title=f"{title}: time"
    )
    times = {(r["model"], r["shape"]): r for r in rows}
    for ratio in results["ratios"]:
        ratio["T"] = times[ratio["model"], ratio["shape"]]["T"]
        ratio["BC"] = (times[ratio["model"], ratio["shape"]]["B"], times[ratio["model"], ratio["shape"]]["C"])
    for model in ("dsn", "prf"):
        for baseline in dict.fromkeys(r["baseline"] for r in results["ratios"]):
            points = sorted(
                (r["T"], r["speedup"])
                for r in results["ratios"]
                if r["model"] == model and r["baseline"] == baseline and r["BC"] == bc
            )
            if points:
                right.loglog(
                    *zip(*points, strict=True), marker="o", label=f"{NAMES[model]} vs {NAMES.get(baseline, baseline)}"
                )
    right.axhline(1.0, color="k", lw=0.8)
    right.set(
        xlabel=f"sequence length T (B = {bc[0]}, C = {bc[1]})",
        ylabel="speed-up (x)",
        title=f"{title}: speed-up of DSN and PRF",
    )
    for axes in (left, right):
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# %% [markdown]
# ## CPU results

# %%
if BENCH is not None:
    cpu = load(BENCH / "cpu.json")
    print(table(cpu))
    plot(cpu, "CPU", OUT / "04_cpu.png")
else:
    print("benchmarks/cpu.json not found: run `make bench` from the repository root to create it")

# %% [markdown]
# ## GPU results, where they exist
#
# `benchmarks/gpu.json` is written by
# `snn-parallel bench --device cuda --json benchmarks/gpu.json` on a machine with a GPU.

# %%
gpu_path = None if BENCH is None else BENCH / "gpu.json"
if gpu_path is not None and gpu_path.exists():
    gpu = load(gpu_path)
    print(table(gpu))
    plot(gpu, "GPU", OUT / "04_gpu.png")
else:
    print("no benchmarks/gpu.json in this checkout: the GPU plot is skipped")

# %% [markdown]
# ## A short benchmark on this machine
#
# The same tool, on a few small shapes so that it finishes in about a minute. Each case
# runs in its own process; `--json` keeps the results. The command line is what you would
# type in a shell (`snn-parallel bench ...`).

# %%
shapes = ["128x2x16", "512x2x16"] if SMALL else ["256x4x64", "1024x4x64", "4096x4x64"]
models = ["dsn", "sj_lif"] if SMALL else ["dsn", "prf", "snntorch_leaky", "sj_lif", "sj_psn"]
live_path = Path(tempfile.mkdtemp()) / "live.json"
command = [
    sys.executable,
    "-m",
    "snn_parallel.cli",
    "bench",
    "--shapes",
    *shapes,
    "--models",
    *models,
    "--repeats",
    "2" if SMALL else "3",
    "--timeout",
    "60",
    "--json",
    str(live_path),
]
print("snn-parallel", " ".join(command[3:]))
done = subprocess.run(command, capture_output=True, text=True)
print(done.stdout)
if done.returncode != 0:
    raise RuntimeError(done.stderr[-2000:])
live = load(live_path)
plot(live, "this machine", OUT / "04_live.png")
