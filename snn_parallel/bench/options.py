"""The options of ``snn-parallel bench`` (timing the neurons)."""

from __future__ import annotations

import argparse

from .._argtypes import POSITIVE, RATE, writable
from .cases import DEFAULT_SHAPES, MODELS, OPT_IN, Shape


def parse_shape(text: str) -> Shape:
    """``"TxBxC"`` as ``(T, B, C)``, each an integer >= 1."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdecimal() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected TxBxC with positive integers (e.g. 1024x32x256), got {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to ``parser``; every value is checked by its type (output files are writable)."""
    parser.add_argument(
        "--shapes",
        nargs="+",
        type=parse_shape,
        default=DEFAULT_SHAPES,
        metavar="TxBxC",
        help="cases to time (default: 1024x32x256 1024x4x64 4096x4x64 16384x4x64; with --device cuda "
        "T in 1024..65536 by B*C in 256..65536, see CUDA_SHAPES)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=list(MODELS),
        default=[model for model in MODELS if model not in OPT_IN],
        metavar="NAME",
        help=f"models to time, from: {', '.join(MODELS)} (default: all but {', '.join(OPT_IN)})",
    )
    parser.add_argument("--repeats", type=POSITIVE, default=5, help="timed runs per case after one warm-up")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--json", type=writable, metavar="PATH", help="write machine info, options, rows and ratios")
    parser.add_argument("--plot", type=writable, metavar="PATH", help="write a PNG (needs matplotlib)")
    parser.add_argument("--timeout", type=RATE, default=300.0, metavar="SECONDS", help="limit per case")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the cases already in the --json file (of an interrupted run on the same device) "
        "and measure only the rest",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the quick GPU benchmark (snn_parallel.bench_quick): forward and backward of the kernels "
        "against the memory-bandwidth bound and SpikingJelly, at fixed shapes (--shapes replaces "
        "them), in a few minutes",
    )
