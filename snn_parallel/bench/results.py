"""The ``--json`` file: rewritten after every case, so a run cut short keeps what it measured, and
``--resume``, which keeps the cases of such a file and measures only the others."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .cases import Shape, label
from .report import ratios


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` through a temporary file: never a half-written file, even if the run is killed."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2))
    partial.replace(path)


def save(
    args: argparse.Namespace,
    info: dict[str, Any],
    shapes: list[Shape],
    rows: list[dict[str, Any]],
    recurrence: list[dict[str, Any]],
    complete: bool,
) -> None:
    """Write the ``--json`` file (if asked for); called after every case."""
    if args.json is None:
        return
    options = {
        "shapes": [label(s) for s in shapes],
        "models": list(args.models),
        "repeats": args.repeats,
        "device": args.device,
        "timeout": args.timeout,
        "json": str(args.json),
        "plot": None if args.plot is None else str(args.plot),
    }
    data = {
        "machine": info,
        "argv": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "options": options,
        "complete": complete,
        "rows": rows,
        "ratios": ratios(rows),
        "recurrence": recurrence,
    }
    write_json(args.json, data)


def resumed_rows(args: argparse.Namespace, info: dict[str, Any]) -> dict[tuple[str, Shape], dict[str, Any]]:
    """The rows of ``args.json`` to keep with ``--resume``, by (model, shape); raises ``ValueError`` if the
    file cannot be resumed on this machine."""
    if args.json is None:
        raise ValueError("--resume needs --json PATH (the file of the run to continue)")
    if not args.json.exists():
        return {}
    try:
        data = json.loads(args.json.read_text())
        rows, machine = [*data["rows"], *data.get("recurrence", [])], data["machine"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--resume: {args.json} is not a benchmark file ({type(exc).__name__}: {exc})") from None
    where = {key: machine.get(key) for key in ("device", "gpu", "torch")}
    if where != {key: info.get(key) for key in where}:
        raise ValueError(
            f"--resume: {args.json} was measured on {where}, this run is on { {key: info.get(key) for key in where} }"
        )
    return {(row["model"], (row["T"], row["B"], row["C"])): row for row in rows}
