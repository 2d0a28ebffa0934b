"""Command line: ``snn-parallel demo``, ``snn-parallel train`` and ``snn-parallel bench``."""

from __future__ import annotations

import argparse
import math
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


def _print_rows(rows: list[dict], columns: list[str]) -> None:
    print(" | ".join(f"{c:>14}" for c in columns))
    for row in rows:
        print(" | ".join(f"{row[c]:>14.4f}" if isinstance(row[c], float) else f"{row[c]!s:>14}" for c in columns))


def _write_json(path: str | None, rows: list[dict]) -> None:
    if path:
        import json

        from .bench import machine_info

        with open(path, "w", encoding="utf-8") as handle:
            meta = {"command": " ".join(["snn-parallel", *sys.argv[1:]]), **machine_info("cpu")}
            json.dump({"meta": meta, "rows": rows}, handle, indent=2)


def _numbers(text: str, kind: type) -> list | None:
    """``"0,1,2"`` -> ``[0, 1, 2]``, each part read by ``kind``; ``None`` if a part does not read."""
    try:
        return [kind(part) for part in text.split(",")]
    except ValueError:
        return None


def _summarise(rows: list[dict], metric: str, lrs: list[float | None]) -> None:
    """Mean, min and max of ``metric`` per rule and learning rate; with several rates, the best per rule."""
    means: dict[tuple[str, float], float] = {}
    for rule in dict.fromkeys(row["rule"] for row in rows):
        for lr in dict.fromkeys(row["lr"] for row in rows if row["rule"] == rule):
            values = [row[metric] for row in rows if row["rule"] == rule and row["lr"] == lr]
            means[rule, lr] = sum(values) / len(values)
            print(f"rule={rule}, lr={lr:g}, seeds={len(values)}, mean {metric}={means[rule, lr]:.4f}, "
                  f"min={min(values):.4f}, max={max(values):.4f}")
    if len(lrs) > 1:
        pick = min if metric.endswith("mse") else max
        for rule in dict.fromkeys(rule for rule, _ in means):
            best = pick((lr for r, lr in means if r == rule), key=lambda lr: means[rule, lr])
            print(f"rule={rule}, best lr={best:g} by mean {metric}")


def _train(args: argparse.Namespace) -> int:
    from .learners import experiments

    def refuse(message: str) -> int:
        print(f"snn-parallel train: {message}", file=sys.stderr)
        return 2

    image = args.task == "image"
    known = experiments.IMAGE_RULES if image else sorted(experiments.RULES)
    rules = list(known) if args.rule == "all" else [args.rule]
    if rules[0] not in known:
        return refuse(f"--rule {args.rule} does not train --task {args.task}; choose from {', '.join(known)}")
    seeds = _numbers(args.seed, int)
    if seeds is None:
        return refuse(f"--seed takes integers separated by commas, got {args.seed!r}")
    lrs: list[float | None] = [None] if args.lr is None else _numbers(args.lr, float)
    if lrs is None or not all(lr is None or 0 < lr < math.inf for lr in lrs):
        return refuse(f"--lr takes positive numbers separated by commas, got {args.lr!r}")
    if args.steps is not None and args.steps <= 0:
        return refuse(f"--steps must be positive, got {args.steps}")
    if args.valid is not None and (args.task == "adding" or not 0 < args.valid < 1):
        return refuse(f"--valid takes a share in (0, 1) of the training digits (not for --task adding), got {args.valid}")
    if args.recipe is not None and not image:
        return refuse(f"--recipe is for --task image, not --task {args.task}")
    for option in ("loss", "network", "padding"):
        if getattr(args, option) is not None and not image:
            return refuse(f"--{option} is for --task image, not --task {args.task}")
    network = {"spec": args.network or experiments.IMAGE_NETWORK, "padding": args.padding or "valid"}
    if image:
        try:
            experiments.tssl_network(network["spec"], (1, 8, 8), 10, padding=network["padding"])
        except (TypeError, ValueError) as error:
            return refuse(f"--network {network['spec']} --padding {network['padding']}: {error}")
    if args.dt_du is not None and rules != ["tsslbp"]:
        return refuse("--dt-du is an option of TSSL-BP: use it with --task image --rule tsslbp")
    if args.kernel_target is not None and (not image or args.loss == "count"):
        return refuse("--kernel-target is an option of the kernel loss: use it with --task image")
    if args.alpha is not None and (rules != ["fptt"] or not 0 < args.alpha < math.inf):
        return refuse(f"--alpha is FPTT's positive regulariser strength: use it with --rule fptt, got {args.alpha}")
    fptt = {} if args.alpha is None else {"alpha": args.alpha}
    valid = {} if args.valid is None else {"valid_fraction": args.valid}
    revision = {} if args.dt_du is None else {"dt_du_at_spikes": args.dt_du == "spikes"}
    if args.kernel_target is not None:
        revision["kernel_target"] = args.kernel_target
    rows = []
    for seed in seeds:
        for lr in lrs:
            options = {"seed": seed} if lr is None else {"seed": seed, "lr": lr}
            for rule in rules:
                if args.task == "adding":
                    row = experiments.train_adding(args.steps or 200, rule=rule, iterations=args.iterations, **fptt, **options)
                elif image:
                    row = experiments.train_image(rule, steps=args.steps or 5, epochs=args.epochs or 30,
                                                  recipe=args.recipe or "reference", loss=args.loss or "kernel",
                                                  **network, **valid, **revision, **options)
                else:
                    row = experiments.train_digits(rule, args.task, neuron=args.neuron, epochs=args.epochs or 20,
                                                   parts=args.parts, trace=args.trace, **fptt, **valid, **options)
                rows.append({**row, "seed": seed})
                print(", ".join(f"{k}={v:.4g}" if k == "lr" else f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in rows[-1].items()), flush=True)
    if len(seeds) > 1 or len(lrs) > 1:
        metric = "test_mse" if args.task == "adding" else "valid_accuracy" if valid else "test_accuracy"
        _summarise(rows, metric, lrs)
    _write_json(args.json, rows)
    return 0


def _bench(args: argparse.Namespace) -> int:
    if not args.learners:
        from . import bench

        return bench.main(args)
    from .learners.experiments import IMAGE_NETWORK, memory_profile, tsslbp_profile

    rows = memory_profile(args.rules.split(","), [int(t) for t in args.lengths.split(",")])
    for row in rows:
        base = next(r for r in rows if r["rule"] == row["rule"])
        row["rss_vs_first_T"] = row["peak_rss_mib"] / base["peak_rss_mib"]
    print("one training step (2 x 256 LIF, batch 32), peak RSS of a fresh process:")
    _print_rows(rows, ["rule", "steps", "peak_rss_mib", "rss_vs_first_T", "seconds"])
    tssl_rows = tsslbp_profile()
    print(f"TSSL-BP against BPTT, PSPLIF conv net {IMAGE_NETWORK} on 8x8 pictures, one training step (median), "
          "activations saved for the backward:")
    _print_rows(tssl_rows, ["rule", "steps", "batch", "ms_per_step", "saved_mib", "peak_rss_mib"])
    _write_json(args.learners_json, rows + tssl_rows)
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

    from .learners.experiments import NEURONS as LEARNER_NEURONS
    from .learners.experiments import RULES

    train = commands.add_parser("train", help="train with a learning rule on built-in data and report the test metric")
    train.add_argument("--rule", choices=[*sorted(RULES), "tsslbp", "all"], default="all",
                       help="all: every rule for the task (for --task image: tsslbp and bptt)")
    train.add_argument("--task", choices=("row", "pixel", "adding", "image"), default="row",
                       help="digits by row (T=8), by pixel (T=64), the adding problem, or digits as pictures repeated "
                            "over T=5 (a PSPLIF conv net, TSSL-BP against BPTT)")
    train.add_argument("--neuron", choices=sorted(LEARNER_NEURONS), default="prf", help="neuron of the digits network")
    train.add_argument("--epochs", type=int, default=None, help="default: 20 (image: 30)")
    train.add_argument("--parts", type=int, default=None, help="digits: FPTT's K, updates per sequence (default: T)")
    train.add_argument("--trace", choices=("presynaptic", "neuron"), default=None,
                       help="digits: OTTT's trace (default: 'neuron' for prf and lif, else 'presynaptic')")
    train.add_argument("--steps", type=int, default=None, help="adding problem: sequence length (default: 200); image: T (default: 5)")
    train.add_argument("--recipe", choices=("reference", "mean"), default=None,
                       help="image: the training recipe of both rules: 'reference' (default; TSSL-BP's: loss summed over "
                            "the batch, gradient norm clipped to 1, weights clamped to [-4, 4]) or 'mean' (loss averaged, "
                            "the same clip, no clamp)")
    train.add_argument("--loss", choices=("kernel", "count"), default=None,
                       help="image: the spike-sequence loss of both rules: desired PSP trains ('kernel', default) or "
                            "desired PSP sums ('count')")
    train.add_argument("--network", default=None, metavar="SPEC",
                       help="image: the PSPLIF conv net of both rules in the paper's notation (default: 16C3-32C3-P2-128; "
                            "the paper's MNIST net on the 8x8 digits: 15C5-P2-40C5-P2-300 --padding same)")
    train.add_argument("--padding", choices=("valid", "same"), default=None,
                       help="image: the convs' padding, none ('valid', default) or half the kernel ('same')")
    train.add_argument("--dt-du", choices=("spikes", "rising"), default=None,
                       help="image, TSSL-BP: its timing gradient dt/du only where a neuron fires ('spikes', default) or "
                            "wherever its membrane rose ('rising'); the two revisions of the reference code")
    train.add_argument("--kernel-target", choices=("psp", "psp_psp"), default=None,
                       help="image, kernel loss: the desired PSP filtered once ('psp', default; the code submitted with "
                            "the paper) or twice ('psp_psp'; the reference code from its revision of 29 Oct 2020)")
    train.add_argument("--alpha", type=float, default=None,
                       help="FPTT's regulariser strength (default: the trainer's; adding problem: 0.5, the reference's)")
    train.add_argument("--iterations", type=int, default=3000, help="adding problem: optimizer iterations")
    train.add_argument("--lr", default=None,
                       help="Adam(W)'s learning rate, or several separated by commas (default: 3e-3; image: 5e-3)")
    train.add_argument("--seed", default="0",
                       help="a seed, or several separated by commas (then the mean per rule and rate is printed too)")
    train.add_argument("--valid", type=float, default=None, metavar="SHARE",
                       help="digits: score on this share of the training digits, set apart, instead of the test split "
                            "(to choose --lr and --epochs)")
    train.add_argument("--json", help="write the results here")
    train.set_defaults(run=_train)

    bench_parser = commands.add_parser("bench", help="time neurons against snnTorch and SpikingJelly baselines")
    bench.add_arguments(bench_parser)
    bench_parser.add_argument("--learners", action="store_true", help="instead: peak memory of the learners against T")
    bench_parser.add_argument("--rules", default="bptt,fptt,ottt,hypr", help="--learners: rules to measure")
    bench_parser.add_argument("--lengths", default="512,4096", help="--learners: sequence lengths")
    bench_parser.add_argument("--learners-json", help="--learners: write the table here")
    bench_parser.set_defaults(run=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``snn-parallel`` console script."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
