"""Markdown tables of the committed results files, rendered when the documentation is built.

``docs/gen_pages.py`` writes the results pages from these functions; ``tests/test_docs.py``
checks that every results file is rendered and that the figures the README quotes equal
the files' values. Nothing here is copied by hand: every figure is read from
``benchmarks/**/*.json`` (each file names the command that wrote it in ``meta.command``
or ``argv``).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
LEARNERS = BENCHMARKS / "learners"
NEURONS = BENCHMARKS / "neurons"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def percent(value: float, digits: int = 1) -> str:
    return f"{100 * value:.{digits}f} %"


def table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def heading(title: str, text: str) -> list[str]:
    """A page's title and its first paragraph."""
    return [f"# {title}", "", text, ""]


def machine_line(meta: dict) -> str:
    """One line naming the command and the machine of a results file."""
    where = ", ".join(
        str(part)
        for part in (
            meta.get("cpu", meta.get("machine")),
            f"{meta['cores']} cores" if "cores" in meta else None,
            f"{meta['threads']} torch thread(s)" if meta.get("threads") is not None else None,
            f"torch {meta['torch']}" if "torch" in meta else None,
        )
        if part
    )
    note = f" **{meta['note']}**" if meta.get("note") else ""  # e.g. a file measured before a default changed
    return f"`{meta['command']}` ({where}).{note}"


def sources(paths: Iterable[Path]) -> list[str]:
    """A bullet list of the files behind a table, each with its command and machine."""
    return [f"- `{rel(path)}`: {machine_line(load(path)['meta'])}" for path in paths] + [""]


# -- digits by row and by pixel ---------------------------------------------------------------
DIGITS_TASKS = {"digits-row": "rows, T = 8", "digits-pixel": "pixels, T = 64"}


def digits_files() -> list[Path]:
    """The ``snn-parallel train --task row|pixel`` files (not the FPTT study's, which has its own section)."""
    return [
        p
        for p in sorted(LEARNERS.glob("*.json"))
        if p.stem.startswith(("row", "pixel")) and any(r.get("task") in DIGITS_TASKS for r in load(p)["rows"])
    ]


def digits_setting(row: dict) -> str:
    """The rule and the options that set a digits row apart."""
    rule = row["rule"]
    if rule == "fptt":
        parts = "T" if row.get("parts") == row["steps"] else row.get("parts")
        alpha = f", α = {row['alpha']:g}" if "alpha" in row else ""
        return f"FPTT, K = {parts}{alpha}"
    if rule == "ottt":
        readout = f", readout `{row['readout']}`" if "readout" in row else ""
        return f"OTTT, trace `{row.get('trace', 'presynaptic')}`{readout}"
    return {"bptt": "BPTT", "hypr": "HYPR (λ = T)"}.get(rule, rule.upper())


def digits_results() -> dict[str, dict[str, list[tuple[float, Path]]]]:
    """``{setting: {task: [(test accuracy, file), ...]}}`` over every digits file, seed 0 or as run."""
    results: dict[str, dict[str, list[tuple[float, Path]]]] = {}
    for path in digits_files():
        for row in load(path)["rows"]:
            if row.get("task") in DIGITS_TASKS and "test_accuracy" in row:
                results.setdefault(digits_setting(row), {}).setdefault(row["task"], []).append(
                    (row["test_accuracy"], path)
                )
    return results


def digits_section() -> list[str]:
    results = digits_results()
    rows = []
    for setting in sorted(results, key=lambda s: (s.split(",")[0] != "BPTT", s)):
        cells = []
        for task in DIGITS_TASKS:
            measured = results[setting].get(task, [])
            named = len(measured) > 1  # the same setting in several files: each figure with its file
            cells.append(
                " / ".join(percent(acc) + (f" (`{path.stem}`)" if named else "") for acc, path in measured) or "—"
            )
        rows.append([setting, *cells])
    lines = [
        "## Digits by row and by pixel",
        "",
        "Test accuracy on the built-in digits (`snn-parallel train --task row|pixel`): 2 × 128 PRF, "
        "20 epochs, Adam 3e-3, seed 0, cross-entropy at every step (FPTT: its reference code's "
        "terminal-label loss with the oracle term). Where several files measured the same setting, "
        "each figure is shown with its file.",
        "",
    ]
    lines += table(["rule", *DIGITS_TASKS.values()], rows)
    return lines + ["Files:", ""] + sources(digits_files())


# -- adding problem -----------------------------------------------------------------------------
def adding_files() -> list[Path]:
    return [p for p in sorted(LEARNERS.glob("adding*.json"))]


def adding_section() -> list[str]:
    rows = []
    for path in adding_files():
        for row in load(path)["rows"]:
            rows.append(
                [
                    row["rule"].upper(),
                    row["neuron"].upper(),
                    row["steps"],
                    row["iterations"],
                    row.get("seed", 0),
                    f"{row['test_mse']:.4f}",
                    f"{row['train_seconds'] / 60:.0f} min",
                    f"`{path.name}`",
                ]
            )
    lines = [
        "## Adding problem",
        "",
        "LTC + FPTT on the adding problem (`snn-parallel train --rule fptt --task adding`): recurrent "
        "LTC(128) with its threshold fixed at 0.5, a linear readout of the membrane, K = 10, α = 0.5, "
        "Adam 3e-3, batch 128. The trivial predictor's test MSE is 0.167; the training time is wall time on a "
        "shared machine.",
        "",
    ]
    lines += table(["rule", "neuron", "T", "iterations", "seed", "test MSE", "training time", "file"], rows)
    return lines + ["Files:", ""] + sources(adding_files())


# -- memory --------------------------------------------------------------------------------------
MEMORY = {
    "memory.json": '2 × 256 LIF, batch 32, HYPR with λ = 64, FPTT with K = T, OTTT with `trace="neuron"`',
    "memory_resnet.json": "SpikingJelly's ResNet-10 (`LIFNode`, 4.9 M parameters) on 3 × 8 × 8 pictures, batch 8, "
    "FPTT with K = T, HYPR with λ = 16, OTTT with its presynaptic traces",
}


def memory_table(path: Path) -> list[str]:
    """Peak resident memory and time of one training step per rule against T."""
    rows = [r for r in load(path)["rows"] if "rss_vs_first_T" in r]
    lengths = sorted({r["steps"] for r in rows})
    out = []
    for rule in dict.fromkeys(r["rule"] for r in rows):
        by_t = {r["steps"]: r for r in rows if r["rule"] == rule}
        out.append(
            [
                rule.upper(),
                *(f"{by_t[t]['peak_rss_mib']:.0f} MiB" if t in by_t else "—" for t in lengths),
                f"{by_t[lengths[-1]]['rss_vs_first_T']:.2f}" if lengths[-1] in by_t else "—",
                *(f"{by_t[t]['seconds']:.1f} s" if t in by_t else "—" for t in lengths),
            ]
        )
    header = [
        "rule",
        *(f"T = {t}" for t in lengths),
        f"ratio T = {lengths[-1]} / {lengths[0]}",
        *(f"step time, T = {t}" for t in lengths),
    ]
    return table(header, out)


def memory_section() -> list[str]:
    lines = [
        "## Memory against T",
        "",
        "Peak resident memory of a fresh process running one training step (`snn-parallel bench "
        "--learners`). About 300 MiB of each figure is the Python process with torch loaded.",
        "",
    ]
    for name, what in MEMORY.items():
        path = LEARNERS / name
        if path.exists():
            lines += [f"### {what}", "", *sources([path]), *memory_table(path)]
    tssl = [r for r in load(LEARNERS / "memory.json")["rows"] if "ms_per_step" in r]
    if tssl:
        lines += [
            "### TSSL-BP against BPTT at T = 5",
            "",
            "One training step of `16C3-32C3-P2-128` (PSPLIF), batch 50, from the same file:",
            "",
        ]
        lines += table(
            ["rule", "ms per step", "activations kept for backward"],
            [
                [
                    r["rule"].upper() if r["rule"] != "tsslbp" else "TSSL-BP",
                    f"{r['ms_per_step']:.1f}",
                    f"{r['saved_mib']:.2f} MiB",
                ]
                for r in tssl
            ],
        )
    return lines


# -- the FPTT study ------------------------------------------------------------------------------
def mean_sd(values: list[float]) -> str:
    spread = f" ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else ""
    return f"{100 * statistics.mean(values):.1f}{spread} %"


def mean_se(differences: list[float], digits: int) -> str:
    """The mean of paired differences and its standard error, in points."""
    se = statistics.stdev(differences) / math.sqrt(len(differences)) if len(differences) > 1 else float("nan")
    return f"{100 * statistics.mean(differences):+.{digits}f} ± {100 * se:.{digits}f}"


def by_config(path: Path) -> dict[str, dict[int, float]]:
    configs: dict[str, dict[int, float]] = {}
    for row in load(path)["rows"]:
        configs.setdefault(row["config"], {})[row["seed"]] = row["test_accuracy"]
    return configs


def fptt_study_section() -> list[str]:
    lines = [
        "## FPTT against BPTT on a small network",
        "",
        "`benchmarks/learners/fptt_study.py`: `Linear(F, 64) -> PRF(64, dt_range=(0.01, 1.0)) -> Linear(64, 10)` "
        "(fixed decay, sigmoid surrogate), Adam 3e-3, batch 64, 25 epochs, cross-entropy on the last step "
        "unless the setting says `ce_all`, FPTT at α = 0.01 unless named; each seed draws the split, the "
        "weights and the batches. Mean ± standard deviation over the seeds; the paired difference is "
        "against BPTT with the same loss, per seed. The [FPTT page](../learners/fptt.md) reads these "
        "figures.",
        "",
    ]
    for path in sorted(LEARNERS.glob("fptt_study_*.json")):
        configs = by_config(path)
        rows = []
        for config, seeds in configs.items():
            baseline = configs.get("bptt/ce_all" if config.endswith("ce_all") else "bptt", {})
            paired = [seeds[s] - baseline[s] for s in seeds if s in baseline]
            difference = "—" if config.startswith("bptt") or len(paired) < 2 else mean_se(paired, 1)
            rows.append(
                [
                    f"`{config}`",
                    ",".join(map(str, sorted(seeds))),
                    percent(seeds[min(seeds)]),
                    mean_sd(list(seeds.values())),
                    difference,
                ]
            )
        lines += [f"### {path.stem.removeprefix('fptt_study_')}", "", *sources([path])]
        lines += table(["setting", "seeds", "first seed", "mean ± sd", "− BPTT, paired (± SE), points"], rows)
    return lines


# -- TSSL-BP against BPTT over many seeds ----------------------------------------------------------
def image_tag(path: Path) -> str:
    """``image_test_tsslbp_reference_rising.json`` -> ``reference_rising``; the paper-rate files -> ``paper_lr``."""
    stem = path.stem
    if stem.startswith("image_paper_lr_"):
        return "paper_lr"
    return stem.split("_", 3)[3]


def image_pairs() -> list[tuple[Path, Path]]:
    """Each TSSL-BP test file with the BPTT file of its recipe (BPTT's reference recipe for TSSL-BP-only variants)."""
    pairs = []
    candidates = sorted(LEARNERS.glob("image_test_tsslbp_*.json")) + sorted(LEARNERS.glob("image_paper_lr_tsslbp.json"))
    for tssl in candidates:
        bptt = tssl.with_name(tssl.name.replace("tsslbp", "bptt"))
        if not bptt.exists():
            bptt = LEARNERS / "image_test_bptt_reference.json"
        pairs.append((tssl, bptt))
    return pairs


def accuracies(path: Path, field: str = "test_accuracy") -> dict[int, float]:
    return {row["seed"]: row[field] for row in load(path)["rows"]}


def paired_row(label: str, first: dict[int, float], second: dict[int, float]) -> list[str]:
    seeds = sorted(set(first) & set(second))
    diffs = [first[s] - second[s] for s in seeds]

    def summary(values: dict[int, float]) -> str:
        chosen = [values[s] for s in seeds]
        return f"{100 * statistics.mean(chosen):.2f} % ({100 * min(chosen):.1f}–{100 * max(chosen):.1f})"

    ahead = sum(d > 1e-9 for d in diffs)
    behind = sum(d < -1e-9 for d in diffs)
    return [
        label,
        f"{seeds[0]}–{seeds[-1]}",
        summary(first),
        summary(second),
        mean_se(diffs, 2),
        f"{ahead} / {behind} / {len(diffs) - ahead - behind}",
    ]


def rates(path: Path) -> str:
    """The learning rates and epochs of a run, from its rows."""
    rows = load(path)["rows"]
    lrs = ", ".join(f"{lr:g}" for lr in sorted({r["lr"] for r in rows}))
    return f"lr {lrs}, {rows[0]['epochs']} epochs"


def tsslbp_section() -> list[str]:
    lines = [
        "## TSSL-BP against BPTT over many seeds",
        "",
        "`16C3-32C3-P2-128` (or the network the file names) at T = 5 on the built-in digits as pictures "
        "(`snn-parallel train --task image`; 360 test pictures, so one picture is 0.28 points). Both rules "
        "train with the same loss, AdamW, clip and recipe, so only the gradient differs. Each rule runs at "
        "the rate it scored best at on a validation split (the table after this one). Mean (min–max) test "
        "accuracy; the difference is paired by seed.",
        "",
    ]
    rows = [
        paired_row(
            f"`{image_tag(tssl)}`: TSSL-BP {rates(tssl)}; BPTT {rates(bptt)} (`{bptt.name}`)",
            accuracies(tssl),
            accuracies(bptt),
        )
        for tssl, bptt in image_pairs()
    ]
    lines += table(
        [
            "files `image_test_*_TAG.json`",
            "seeds",
            "TSSL-BP",
            "BPTT",
            "TSSL-BP − BPTT, points (± SE)",
            "TSSL-BP ahead / behind / tied",
        ],
        rows,
    )
    default = LEARNERS / "image_test_tsslbp_reference.json"
    variants = [
        p
        for p in sorted(LEARNERS.glob("image_test_tsslbp_reference_*.json"))
        if not (LEARNERS / p.name.replace("tsslbp", "bptt")).exists()
    ]
    if variants and default.exists():
        lines += ["TSSL-BP's variants against its default (the reference recipe):", ""]
        lines += table(
            ["variant", "seeds", "variant", "default", "variant − default, points (± SE)", "ahead / behind / tied"],
            [paired_row(f"`{image_tag(p)}` ({rates(p)})", accuracies(p), accuracies(default)) for p in variants],
        )
    valid = sorted(LEARNERS.glob("image_valid_*.json"))
    all_rates = sorted({r["lr"] for p in valid for r in load(p)["rows"]})
    rows = []
    for path in valid:
        means = {}
        for lr in all_rates:
            values = [r["valid_accuracy"] for r in load(path)["rows"] if r["lr"] == lr]
            if values:
                means[lr] = statistics.mean(values)
        best = max(means, key=means.get)
        rows.append(
            [
                f"`{path.stem.removeprefix('image_valid_')}`",
                *(
                    (f"**{100 * means[lr]:.1f} %**" if lr == best else f"{100 * means[lr]:.1f} %")
                    if lr in means
                    else "—"
                    for lr in all_rates
                ),
            ]
        )
    lines += [
        "Validation accuracy (mean over the seeds; `--valid 0.2` trains on 80 % of the training digits and "
        "scores on the other 20 %), best rate in bold:",
        "",
    ]
    lines += table(["rule and recipe", *(f"lr {lr:g}" for lr in all_rates)], rows)
    return lines + ["Files:", ""] + sources([p for pair in image_pairs() for p in pair] + valid)


# -- neurons -----------------------------------------------------------------------------------------
def neuron_section(
    name: str, heading: str, intro: Callable[[dict], str], header: list[str], cells: Callable[[dict], list[object]]
) -> list[str]:
    """One table of ``benchmarks/neurons/<name>``: ``intro(meta)`` above it, ``cells(row)`` per row."""
    path = NEURONS / name
    if not path.exists():
        return []
    results = load(path)
    return [
        f"## {heading}",
        "",
        f"{intro(results['meta'])}; {machine_line(results['meta'])}",
        "",
        *table(header, [cells(r) for r in results["rows"]]),
    ]


def neurons_page() -> str:
    lines = heading("Neuron results", "Generated from `benchmarks/neurons/*.json` when the documentation is built.")
    lines += neuron_section(
        "digits_defaults.json",
        "Every SpikingJelly node at its defaults",
        lambda meta: (
            f'`Linear -> node -> Linear` on {meta["task"]}, each node built with no argument but `step_mode="m"`'
        ),
        ["node", "test accuracy", "mean node output", "training time"],
        lambda r: [
            r["node"],
            percent(r["test_accuracy"]),
            f"{r['node_output_mean']:.3f}",
            f"{r['train_seconds']:.1f} s",
        ],
    )
    lines += neuron_section(
        "compile_vs_eager.json",
        "`torch.compile` against eager",
        lambda meta: (
            f"Forward + backward of one layer, shape T x B x C = {' x '.join(map(str, meta['shape']))}, on "
            "one thread of a shared 2-core CPU, so the times are noisy"
        ),
        ["neuron", "graph breaks", "same output", "max abs difference", "compile time", "eager", "compiled"],
        lambda r: [
            r["neuron"],
            r["graph_breaks"],
            "yes" if r["equal_spikes"] else "no",
            f"{r['max_abs_diff']:.3g}",
            f"{r['compile_s']:.0f} s",
            f"{r['eager_ms']:.2f} ms",
            f"{r['compiled_ms']:.2f} ms",
        ],
    )
    return "\n".join(lines) + "\n"


def learners_page() -> str:
    lines = heading(
        "Learner results",
        "Generated from `benchmarks/learners/*.json` when the documentation is built; each file names the "
        "command that wrote it and the machine it ran on. [Every results file](files.md) lists each file's "
        "rows as measured.",
    )
    lines += digits_section() + adding_section() + memory_section() + fptt_study_section() + tsslbp_section()
    return "\n".join(lines) + "\n"


def files_page() -> str:
    """Every learner and neuron results file, one table per file, its rows as measured."""
    lines = heading(
        "Every results file",
        "One table per file of `benchmarks/learners/` and `benchmarks/neurons/`, its rows as measured "
        "(floats to four significant digits).",
    )
    for path in sorted(LEARNERS.glob("*.json")) + sorted(NEURONS.glob("*.json")):
        results = load(path)
        rows = results["rows"]
        columns = list(dict.fromkeys(key for row in rows for key in row))
        lines += [f"## `{rel(path)}`", "", machine_line(results["meta"]), ""]
        lines += table(
            columns,
            [
                [
                    f"{v:.4g}" if isinstance(v, float) else ("" if v is None else v)
                    for v in (row.get(c) for c in columns)
                ]
                for row in rows
            ],
        )
    return "\n".join(lines) + "\n"


# -- the README's headline figures -------------------------------------------------------------------
def headlines() -> dict[str, str]:
    """The figures the README quotes, formatted as it quotes them, from their files: PRF's speed-up over
    SpikingJelly's ``LIFNode`` at the longest CPU shape, and BPTT's and OTTT's growth of peak memory with T."""
    cpu = load(BENCHMARKS / "cpu.json")
    speed = {(r["model"], r["baseline"]): r["speedup"] for r in cpu["ratios"] if r["shape"] == "16384x4x64"}
    memory = {(r["rule"], r["steps"]): r for r in load(LEARNERS / "memory.json")["rows"] if "rss_vs_first_T" in r}
    return {
        "HEADLINE_SPEED": f"{speed['prf', 'sj_lif']:.0f}×",
        "HEADLINE_BPTT": f"{memory['bptt', 4096]['rss_vs_first_T']:.2f}×",
        "HEADLINE_OTTT": f"{memory['ottt', 4096]['rss_vs_first_T']:.2f}×",
    }


def rendered_files() -> set[str]:
    """The results files the generated pages name (a test checks that this is every one of them)."""
    pages = learners_page() + neurons_page() + files_page()
    return {rel(p) for p in BENCHMARKS.glob("**/*.json") if rel(p) in pages}
