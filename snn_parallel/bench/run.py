"""The parent side: each case in a fresh worker process, the skips, and the loop over the cases."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from .bandwidth import bandwidth_text
from .cases import CUDA_SHAPES, DEFAULT_SHAPES, MODELS, RECURRENCE, RECURRENCE_SHAPES, Shape, label
from .plot import plot
from .report import machine_info, machine_line, print_table, ratios
from .results import resumed_rows, save


def run_case(model: str, shape: Shape, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one case in a fresh ``python -m snn_parallel.bench --worker`` process; failures become
    ``{"error": ...}``."""
    job = json.dumps({"model": model, "shape": shape, "repeats": args.repeats, "device": args.device})
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", __package__, "--worker", job],
            capture_output=True,
            text=True,
            timeout=args.timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout:g} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        return {"error": f"worker killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")}
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"worker exited with code {proc.returncode}: {tail}"}


def skip_reason(model: str, shape: Shape, rows: list[dict[str, Any]], timeout: float) -> str | None:
    """Why ``model`` at ``shape`` need not run given the rows so far (see the package doc), or ``None``."""
    for row in (r for r in rows if r["model"] == model):
        done = (row["T"], row["B"], row["C"])
        if "error" in row and all(d <= s for d, s in zip(done, shape, strict=True)):
            return f"skipped after {row['shape']}: {row['error']}"
        if "error" not in row and done[1:] == shape[1:] and done[0] < shape[0]:
            projected = 2 * row["time_ms"] / 1e3 * shape[0] / done[0]  # warm-up + one run, >= linear in T
            if projected > timeout:
                return f"skipped: >= {projected:.0f} s projected from {row['shape']} (--timeout {timeout:g})"
    return None


def main(args: argparse.Namespace) -> int:
    """Run the benchmark described by ``args`` (see :func:`add_arguments`); returns the exit code."""
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "snn-parallel bench: error: --device cuda: CUDA is not available in this torch build/machine",
            file=sys.stderr,
        )
        return 2
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        print("snn-parallel bench: error: --plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 2
    if getattr(args, "quick", False):
        from .. import bench_quick

        return bench_quick.main(args)
    info = machine_info(args.device)
    try:
        kept = resumed_rows(args, info) if args.resume else {}
    except ValueError as exc:
        print(f"snn-parallel bench: error: {exc}", file=sys.stderr)
        return 2
    models = list(dict.fromkeys(args.models))
    for name in list(models):
        package = MODELS[name][1]
        if package is not None and importlib.util.find_spec(package) is None:
            print(f"note: skipping {name}: {package} is not installed")
            models.remove(name)
    cuda = args.device == "cuda"
    shapes = list(dict.fromkeys(CUDA_SHAPES if cuda and args.shapes is DEFAULT_SHAPES else args.shapes))
    results: dict[tuple[str, Shape], dict[str, Any]] = {}
    cases = [(m, s) for s in sorted(shapes, key=lambda s: (s[0] * s[1] * s[2], s)) for m in models]
    cases += [(RECURRENCE, s) for s in (RECURRENCE_SHAPES if cuda else [])]

    def so_far(recurrent: bool) -> list[dict[str, Any]]:
        return [row for (model, _), row in results.items() if (model == RECURRENCE) == recurrent]

    for i, (model, shape) in enumerate(cases, 1):
        if (model, shape) in kept:
            results[model, shape] = kept[model, shape]
            print(f"[{i}/{len(cases)}] {model} {label(shape)}: kept from {args.json}", file=sys.stderr, flush=True)
            continue
        reason = skip_reason(model, shape, list(results.values()), args.timeout)
        result = {"error": reason} if reason else run_case(model, shape, args)
        results[model, shape] = {
            "model": model,
            "shape": label(shape),
            "T": shape[0],
            "B": shape[1],
            "C": shape[2],
            **result,
        }
        status = result.get("error") or f"{result['time_ms']:.2f} ms x{result['repeats']}, {result['peak_mib']:.1f} MiB"
        print(f"[{i}/{len(cases)}] {model} {label(shape)}: {status}", file=sys.stderr, flush=True)
        save(args, info, shapes, so_far(False), so_far(True), complete=False)
    rows = [results[m, s] for s in shapes for m in models]
    recurrence = so_far(True)
    speedups = ratios(rows)
    print_table(shapes, rows, speedups)
    for row in recurrence:
        print(
            f"\n{RECURRENCE} {row['shape']}: " + (row.get("error") or f"{row['time_ms']:.2f} ms, {bandwidth_text(row)}")
        )
    print("\n" + machine_line(info))
    save(args, info, shapes, rows, recurrence, complete=True)
    if args.plot is not None:
        plot(args.plot, rows, speedups, info, recurrence)
    return 0
