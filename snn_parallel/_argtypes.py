"""Argparse types of the command line: each checks its value, so a bad one is refused before anything runs."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._validation import check_float, check_int, check_positive, check_seed


def typed(kind: type, check: Callable[[Any], Any], what: str) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` that ``check`` accepts, else a usage error that says ``what`` is expected."""

    def parse(text: str) -> Any:
        try:
            return check(kind(text))
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    return parse


def comma_list(item: Callable[[str], Any], what: str) -> Callable[[str], list]:
    """An argparse type for ``"a,b,c"``, each part read by ``item``."""

    def parse(text: str) -> list:
        try:
            return [item(part) for part in text.split(",")]
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"expected {what} separated by commas, got {text!r}") from None

    return parse


def writable(text: str) -> Path:
    """An output file that can be written: checked before the run, not after it."""
    path = Path(text)
    folder = path.parent
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"the folder of {text!r}, {str(folder)!r}, does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{text!r} cannot be written (no permission)")
    return path


POSITIVE = typed(int, lambda value: check_int(value, "value", minimum=1), "an integer >= 1")
SEED = typed(int, check_seed, "an integer in [0, 2**32 - 1]")
RATE = typed(float, lambda value: check_positive(value, "value"), "a finite number > 0")
SHARE = typed(
    float,
    lambda value: check_float(value, "value", minimum=0.0, maximum=1.0, min_open=True, max_open=True),
    "a share in (0, 1)",
)
