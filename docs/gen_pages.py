"""Generate the documentation's figures, benchmark page and tutorial sources at build time.

Run by the ``gen-files`` plugin of ``mkdocs build`` (see ``mkdocs.yml``): nothing written
here is committed. Every figure comes from the code in this repository:

- ``figures/neurons/<name>.png``: each neuron driven by one fixed input;
- ``benchmarks.md`` and ``figures/bench_<device>.png``: the tables and plots of
  ``benchmarks/cpu.json`` and, where it exists, ``benchmarks/gpu.json``;
- ``results/{learners,neurons,files}.md``: the learners' and neurons' results in
  ``benchmarks/learners/`` and ``benchmarks/neurons/``, rendered by ``results_tables.py``;
- ``tutorials/*.py``: copies of the jupytext tutorials, rendered by ``mkdocs-jupyter``.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mkdocs_gen_files
import torch

import snn_parallel as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_tables  # noqa: E402 (next to this file)

ROOT = Path(__file__).resolve().parent.parent
# the tutorials find the committed results and write their figures away from the repository
os.environ.setdefault("SNN_BENCHMARKS", str(ROOT / "benchmarks"))
os.environ.setdefault("SNN_TUTORIAL_OUT", str(Path(os.environ.get("TMPDIR", "/tmp")) / "snn_parallel_docs_figures"))


def save(fig: plt.Figure, path: str) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    with mkdocs_gen_files.open(path, "wb") as handle:
        handle.write(buffer.getvalue())


# -- neuron figures -------------------------------------------------------------------------
@torch.no_grad()
def run_checked(name: str, neuron: torch.nn.Module, drive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(output, membrane)`` of ``neuron`` on ``drive`` ``[T, 1, 1]``, after checking that
    ``forward`` (parallel) and ``step`` (a loop) give the same output."""
    output, membrane, _ = neuron(drive, return_membrane=True)
    state, stepped = None, []
    for x_t in drive.unbind(0):
        out, state = neuron.step(x_t, state)
        stepped.append(out)
    assert torch.allclose(torch.stack(stepped), output), f"{name}: forward and step differ"
    return output, membrane


def neuron_figure(name: str, neuron: torch.nn.Module, scale: float, steps: int = 200) -> None:
    torch.manual_seed(0)
    t = torch.arange(steps, dtype=torch.float32)
    drive = scale * (1.0 + 0.8 * torch.sin(t / 12)).view(steps, 1, 1)  # [T, B=1, C=1]
    spikes, membrane = run_checked(name, neuron, drive)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 4.2), sharex=True, gridspec_kw={"height_ratios": [1, 2.2]})
    top.plot(drive[:, 0, 0], color="tab:gray")
    top.set_ylabel("input")
    bottom.plot(membrane[:, 0, 0], label="membrane (compared with the threshold)")
    threshold = getattr(neuron, "v_threshold", getattr(neuron, "b0", None))  # LTC: the baseline b0
    if isinstance(threshold, float):
        bottom.axhline(
            threshold, color="tab:red", lw=0.8, ls="--", label="V_th" if hasattr(neuron, "v_threshold") else "b0"
        )
    times = torch.nonzero(spikes[:, 0, 0]).flatten()
    low = float(membrane[:, 0, 0].min())
    bottom.plot(times, [low] * len(times), "|", color="k", ms=12, label=f"spikes ({len(times)})")
    bottom.set(xlabel="time step", ylabel="membrane")
    bottom.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"{name}: forward (parallel) and step give the same spikes", fontsize=10)
    fig.tight_layout()
    save(fig, f"figures/neurons/{name}.png")


NEURONS = {
    "DynamicDecay": (lambda: sp.DynamicDecay(1), 1.2),
    "PRF": (lambda: sp.PRF(1, dt_range=(0.2, 0.5), fr_scale=8.0), 1.5),
    "DecoupledLIF": (lambda: sp.DecoupledLIF(1, tau=4.0), 0.6),
    "SynapticLIF": (lambda: sp.SynapticLIF(1, tau_syn=4.0, tau=4.0), 0.08),
    "LTC": (lambda: sp.LTC(1), 0.8),
    "BRF": (lambda: sp.BRF(1), 60.0),
    "SEAdLIF": (lambda: sp.SEAdLIF(1), 3.0),
}
for name, (build, scale) in NEURONS.items():
    torch.manual_seed(0)
    neuron_figure(name, build(), scale)


def psp_figure(steps: int = 60) -> None:
    """PSPLIF outputs its post-synaptic potential: the membrane, the spikes and the PSP they make."""
    neuron = sp.PSPLIF(1)
    t = torch.arange(steps, dtype=torch.float32)
    drive = (0.35 * (1.0 + torch.sin(t / 6))).view(steps, 1, 1)
    psp, membrane = run_checked("PSPLIF", neuron, drive)
    spikes = torch.nonzero(membrane[:, 0, 0] > neuron.v_threshold).flatten()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 4.2), sharex=True)
    top.plot(membrane[:, 0, 0], label="membrane u (before the reset)")
    top.axhline(neuron.v_threshold, color="tab:red", lw=0.8, ls="--", label="V_th")
    top.plot(spikes, [float(membrane.min())] * len(spikes), "|", color="k", ms=12, label=f"spikes ({len(spikes)})")
    top.legend(fontsize=8, loc="upper right")
    bottom.plot(psp[:, 0, 0], color="tab:green", label="output: PSP a")
    bottom.set(xlabel="time step")
    bottom.legend(fontsize=8, loc="upper right")
    fig.suptitle("PSPLIF: forward (parallel) and step give the same PSP", fontsize=10)
    fig.tight_layout()
    save(fig, "figures/neurons/PSPLIF.png")


psp_figure()


# -- benchmark page -------------------------------------------------------------------------
LABELS = {
    "dsn": "DynamicDecay",
    "prf": "PRF",
    "lif": "DecoupledLIF",
    "ltc": "LTC (parallel)",
    "psplif": "PSPLIF (TSSL-BP)",
    "scan": "`linear_scan`",
    "copy": "`copy_`",
    "snntorch_leaky": "snnTorch `Leaky` (loop)",
    "sj_lif": "SJ `LIFNode('m')`",
    "sj_psn": "SJ `PSN`",
    "sj_sliding_psn": "SJ `SlidingPSN`",
}
OURS = ("dsn", "prf", "lif", "ltc", "psplif")


def bench_section(path: Path, device: str) -> str:
    results = json.loads(path.read_text())
    machine, rows = results["machine"], results["rows"]
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    lookup = {(r["model"], r["shape"]): r for r in rows}

    def cell(model: str, shape: str, field: str, digits: int) -> str:
        row = lookup.get((model, shape))
        if row is None:
            return "-"
        return "failed" if "error" in row else f"{row[field]:.{digits}f}"

    where = machine.get("gpu", machine["device"])
    threads = "torch threads not recorded" if machine["threads"] is None else f"{machine['threads']} torch threads"
    lines = [
        f"## {device}",
        "",
        f"`{path.relative_to(ROOT)}`: {machine['cpu']}, {machine['cores']} cores, {threads}, "
        f"torch {machine['torch']}, device {where}; command `{' '.join(results['argv'])}`.",
        "",
    ]
    if results.get("complete") is False:  # a run cut short (see `snn-parallel bench --resume`)
        planned = len(results["options"]["shapes"]) * len(results["options"]["models"])
        lines += [
            f"**Incomplete run:** {len(rows)} of {planned} planned cases. "
            + results.get("note", "`--resume` on the same machine finishes it."),
            "",
        ]
    lines += [
        "Forward + backward time (ms), median of the runs, per `T x B x C`:",
        "",
        "| model | " + " | ".join(shapes) + " |",
        "|---|" + "---|" * len(shapes),
    ]
    lines += [f"| {LABELS.get(m, m)} | " + " | ".join(cell(m, s, "time_ms", 1) for s in shapes) + " |" for m in models]
    lines += [
        "",
        "Peak memory added by the runs (MiB):",
        "",
        "| model | " + " | ".join(shapes) + " |",
        "|---|" + "---|" * len(shapes),
    ]
    lines += [f"| {LABELS.get(m, m)} | " + " | ".join(cell(m, s, "peak_mib", 1) for s in shapes) + " |" for m in models]
    baselines = list(dict.fromkeys(r["baseline"] for r in results["ratios"]))
    lines += [
        "",
        "Speed-up (baseline time / our time, same run):",
        "",
        "| ours | shape | " + " | ".join(LABELS.get(b, b) for b in baselines) + " |",
        "|---|---|" + "---|" * len(baselines),
    ]
    for model in (m for m in models if m in OURS):
        for shape in shapes:
            values = {
                r["baseline"]: r["speedup"] for r in results["ratios"] if r["model"] == model and r["shape"] == shape
            }
            if values:
                lines.append(
                    f"| {LABELS[model]} | {shape} | "
                    + " | ".join(f"{values[b]:.1f}x" if b in values else "-" for b in baselines)
                    + " |"
                )
    errors = [r for r in rows if "error" in r]
    if errors:
        lines += [
            "",
            "Cases without a time: "
            + "; ".join(f"{LABELS.get(r['model'], r['model'])} {r['shape']}: {r['error']}" for r in errors)
            + ".",
        ]

    # time against T at the most common (B, C)
    timed = [r for r in rows if "error" not in r]
    bc = max({(r["B"], r["C"]) for r in timed}, key=lambda k: sum((r["B"], r["C"]) == k for r in timed))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model in models:
        points = sorted((r["T"], r["time_ms"]) for r in timed if r["model"] == model and (r["B"], r["C"]) == bc)
        if points:
            ax.loglog(
                *zip(*points, strict=True),
                "-" if model in OURS else "--",
                marker="o",
                label=LABELS.get(model, model).replace("`", ""),
            )
    ax.set(
        xlabel=f"sequence length T (B = {bc[0]}, C = {bc[1]})",
        ylabel="forward + backward (ms)",
        title=f"snn-parallel bench, {device}: {machine['cpu'] if device == 'CPU' else where}",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, f"figures/bench_{device.lower()}.png")
    lines += ["", f"![time against T, {device}](figures/bench_{device.lower()}.png)", ""]
    return "\n".join(lines)


def quick_section(path: Path) -> str:
    """The quick GPU benchmark (`snn-parallel bench --device cuda --quick`): time and bandwidth per op and pass."""
    results = json.loads(path.read_text())
    machine = results["machine"]
    lines = [
        f"## GPU kernels: `{path.relative_to(ROOT)}`",
        "",
        f"{machine.get('gpu', machine['device'])}, torch {machine['torch']}; `{results.get('command', '')}`"
        + ("" if results.get("complete") else " (**incomplete run**)")
        + ". Forward and backward: the op alone "
        "(CUDA events); fwd+bwd: the module's training step. Bandwidth on the minimum bytes each pass must "
        "move, and its fraction of the device's peak.",
        "",
        "| model | pass | T x B x C | ms | GB/s | of peak |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        bandwidth = "-" if r["bandwidth_gbs"] is None else f"{r['bandwidth_gbs']:.0f}"
        fraction = "-" if r["peak_fraction"] is None else f"{r['peak_fraction']:.0%}"
        lines.append(
            f"| {LABELS.get(r['model'], r['model'])} | {r['pass']} | {r['T']}x{r['B']}x{r['C']} | "
            f"{r['time_ms']:.3f} | {bandwidth} | {fraction} |"
        )
    if results["ratios"]:
        lines += ["", "| ours | baseline | T x B x C | speed-up (fwd+bwd) |", "|---|---|---|---|"]
        lines += [
            f"| {LABELS.get(s['model'], s['model'])} | {LABELS.get(s['baseline'], s['baseline'])} | {s['shape']} | "
            f"{s['speedup']:.2f}x |"
            for s in results["ratios"]
        ]
    for e in results.get("errors", []):
        lines.append(f"\n{e['model']} {e['T']}x{e['B']}x{e['C']}: {e['error']}")
    return "\n".join(lines) + "\n"


page = [
    "# Benchmarks",
    "",
    "Generated from the committed results files when the documentation is built. `snn-parallel bench` times "
    "forward + backward of one neuron layer on `rand(T, B, C) * 1.5`: one warm-up, then the median of up to "
    "`--repeats` runs, each case in a fresh process (which also gives its peak memory). The baselines are "
    "snnTorch's `Leaky` stepped in a Python loop and SpikingJelly's multi-step `LIFNode`, `PSN` and "
    "`SlidingPSN`. Reproduce with `make bench` (CPU) or "
    "`snn-parallel bench --device cuda --json benchmarks/gpu.json` on a GPU machine; "
    "[tutorial 4](tutorials/04_speed.py) plots the same files.",
    "",
    "Reading them: the parallel neurons win most where sequences are long, since their cost grows linearly in T "
    "with few Python-level steps while a step loop pays a few kernel launches per step and `PSN` a T x T matrix; "
    'at short T on a CPU `PSN`\'s single matrix product is as fast. `LTC(mode="parallel")` carries two C x C '
    "gate layers and a sequential fused loop, so it is slower than a LIF at large B x C. `PSPLIF` with TSSL-BP's "
    "backward steps its forward in torch, which dominates at large B x C. On a GPU the neurons run far ahead of "
    "the `Leaky` loop but are only level with SpikingJelly 2.0's `LIFNode`, which also runs the whole sequence "
    "in one fused kernel. The GPU results predate the current DSN, LTC and TSSL-BP kernels, which have not "
    "been timed on a GPU yet ([GPU kernels](kernels.md#checked-without-a-gpu)). The runs on a shared 2-core VM "
    "vary from run to run.",
    "",
]
for device, name in (("CPU", "cpu.json"), ("GPU", "gpu.json")):
    path = ROOT / "benchmarks" / name
    if path.exists():
        page.append(bench_section(path, device))
    else:
        page += [f"## {device}", "", f"No `benchmarks/{name}` in this checkout.", ""]
for path in sorted((ROOT / "benchmarks").glob("gpu_quick*.json")):
    page.append(quick_section(path))
if not list((ROOT / "benchmarks").glob("gpu_quick*.json")):
    page += [
        "## GPU kernels",
        "",
        "No quick GPU benchmark (`benchmarks/gpu_quick*.json`) in this checkout yet: "
        "`make gpu-quick`, or `bash benchmarks/gpu_session.sh` for the GPU tests and the benchmark in one go.",
        "",
    ]
page += [
    "## Learners and neurons",
    "",
    "The learning rules' and the neurons' results are on their own pages: "
    "[learners](results/learners.md), [neurons](results/neurons.md), [every results file](results/files.md).",
    "",
]
with mkdocs_gen_files.open("benchmarks.md", "w") as handle:
    handle.write("\n".join(page) + "\n")


# -- results pages (docs/results_tables.py) -----------------------------------------------------
for name, render in (
    ("learners", results_tables.learners_page),
    ("neurons", results_tables.neurons_page),
    ("files", results_tables.files_page),
):
    with mkdocs_gen_files.open(f"results/{name}.md", "w") as handle:
        handle.write(render())


# -- tutorials ------------------------------------------------------------------------------
for source in sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py")):
    with mkdocs_gen_files.open(f"tutorials/{source.name}", "w") as handle:
        handle.write(source.read_text())
