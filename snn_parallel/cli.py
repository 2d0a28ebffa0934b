"""Command line: ``snn-parallel demo`` and ``snn-parallel bench``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = run_demo(
        args.neuron,
        mode=args.mode,
        epochs=args.epochs,
        hidden=args.hidden,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    del result  # run_demo printed the summary
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``snn-parallel`` argument parser."""
    from . import bench
    from .demo import NEURONS

    parser = argparse.ArgumentParser(prog="snn-parallel", description=__doc__)
    parser.add_argument("--version", action="version", version=f"snn-parallel {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train a small SNN on built-in sequential digits")
    demo.add_argument("--neuron", choices=sorted(NEURONS), default="dsn", help="neuron to train (default: dsn)")
    demo.add_argument("--mode", choices=("row", "pixel", "permuted"), default="row", help="digits as rows (T=8) or pixels (T=64)")
    demo.add_argument("--epochs", type=int, default=40)
    demo.add_argument("--hidden", type=int, default=128)
    demo.add_argument("--batch-size", type=int, default=64)
    demo.add_argument("--lr", type=float, default=3e-3)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(run=_demo)

    bench_parser = commands.add_parser("bench", help="time neurons against snnTorch and SpikingJelly baselines")
    bench.add_arguments(bench_parser)
    bench_parser.set_defaults(run=bench.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``snn-parallel`` console script."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
