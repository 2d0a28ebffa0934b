"""Writes a benchmark's rows as JSON with the command that reproduces them and the machine."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import torch


def write_rows(
    script: str, args: argparse.Namespace, rows: list[dict], *, complete: bool | None = None, **about: Any
) -> None:
    """``{"meta": ..., "complete": ..., "rows": rows}`` to ``args.json``; ``meta`` holds the command
    line (every option of ``args``), torch's version, the thread count, the machine and ``about``."""
    options = " ".join(f"--{k} {v}" for k, v in vars(args).items() if k != "json")
    meta = {
        "command": f"OMP_NUM_THREADS=1 python benchmarks/neurons/{Path(script).name} {options} --json {args.json}",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        **about,
    }
    status = {} if complete is None else {"complete": complete}
    args.json.write_text(json.dumps({"meta": meta, **status, "rows": rows}, indent=1) + "\n")
