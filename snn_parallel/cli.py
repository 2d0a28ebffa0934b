"""Command line: ``snn-parallel demo``, ``snn-parallel train`` and ``snn-parallel bench``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from ._validation import check_choice, check_float, check_int, check_positive, check_seed
from .learners.nonfinite import NonFiniteError


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- option types: argparse applies them, so a bad value is refused before anything runs ------------
def _typed(kind: type, check: Callable[[Any], Any], what: str) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` that ``check`` accepts, else a usage error that says ``what`` is expected."""

    def parse(text: str) -> Any:
        try:
            return check(kind(text))
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    return parse


def _comma_list(item: Callable[[str], Any], what: str) -> Callable[[str], list]:
    """An argparse type for ``"a,b,c"``, each part read by ``item``."""

    def parse(text: str) -> list:
        try:
            return [item(part) for part in text.split(",")]
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"expected {what} separated by commas, got {text!r}") from None

    return parse


def _writable(text: str) -> str:
    """An output file that can be written: checked before the run, not after it."""
    path = Path(text)
    folder = path.parent
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"the folder of {text!r}, {str(folder)!r}, does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{text!r} cannot be written (no permission)")
    return text


_POSITIVE = _typed(int, lambda value: check_int(value, "value", minimum=1), "an integer >= 1")
_SEED = _typed(int, check_seed, "an integer in [0, 2**32 - 1]")
_RATE = _typed(float, lambda value: check_positive(value, "value"), "a finite number > 0")
_SHARE = _typed(float, lambda value: check_float(value, "value", minimum=0.0, maximum=1.0, min_open=True, max_open=True),
                "a share in (0, 1)")


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


_DIGITS = ("row", "pixel")
#: ``train`` options that only some tasks or rules use: option -> (why it is refused, test on (task, rules))
_TRAIN_SCOPE: dict[str, tuple[str, Callable[[str, list[str]], bool]]] = {
    "neuron": ("is for --task row or pixel, not --task {task}", lambda task, rules: task in _DIGITS),
    "epochs": ("is for --task row, pixel or image; the adding problem counts --iterations", lambda task, rules: task != "adding"),
    "iterations": ("is for --task adding, not --task {task} (which counts --epochs)", lambda task, rules: task == "adding"),
    "parts": ("is FPTT's: use it with --rule fptt (or all) on --task row, pixel or adding", lambda task, rules: "fptt" in rules),
    "trace": ("is OTTT's: use it with --rule ottt (or all) on --task row or pixel",
              lambda task, rules: "ottt" in rules and task in _DIGITS),
    "steps": ("is for --task adding or image, not --task {task} (its T is fixed)", lambda task, rules: task in ("adding", "image")),
    "valid": ("takes a share in (0, 1) of the training digits: not for --task adding", lambda task, rules: task != "adding"),
    "recipe": ("is for --task image, not --task {task}", lambda task, rules: task == "image"),
    "loss": ("is for --task image, not --task {task}", lambda task, rules: task == "image"),
    "network": ("is for --task image, not --task {task}", lambda task, rules: task == "image"),
    "padding": ("is for --task image, not --task {task}", lambda task, rules: task == "image"),
    "dt_du": ("is an option of TSSL-BP: use it with --task image --rule tsslbp", lambda task, rules: rules == ["tsslbp"]),
    "kernel_target": ("is for --task image, not --task {task}", lambda task, rules: task == "image"),
    "alpha": ("is FPTT's: use it with --rule fptt (or all)", lambda task, rules: "fptt" in rules),
    "readout": ("is OTTT's: use it with --rule ottt (or all) on --task row or pixel",
                lambda task, rules: "ottt" in rules and task in _DIGITS),
}


def _train_refusal(args: argparse.Namespace, rules: list[str]) -> str | None:
    """Why the options do not go together, or ``None``."""
    for option, (refusal, used) in _TRAIN_SCOPE.items():
        if getattr(args, option) is not None and not used(args.task, rules):
            return f"--{option.replace('_', '-')} {refusal.format(task=args.task)}"
    steps = {"row": 8, "pixel": 64, "adding": args.steps or 200, "image": args.steps or 5}[args.task]
    if args.task == "adding" and steps < 2:
        return f"--steps of the adding problem must be >= 2 (two numbers to add), got {steps}"
    if args.parts is not None and args.parts > steps:
        return f"--parts {args.parts} is more than the {steps} steps of --task {args.task}"
    return None


def _train(args: argparse.Namespace) -> int:
    from .learners import experiments
    from .tasks import SequentialDigits

    def refuse(message: str) -> int:
        print(f"snn-parallel train: error: {message}", file=sys.stderr)
        return 2

    image = args.task == "image"
    known = experiments.IMAGE_RULES if image else sorted(experiments.RULES)
    rules = list(known) if args.rule == "all" else [args.rule]
    if rules[0] not in known:
        return refuse(f"--rule {args.rule} does not train --task {args.task}; choose from {', '.join(known)}")
    refusal = _train_refusal(args, rules)
    if refusal is not None:
        return refuse(refusal)
    seeds, lrs = args.seed or [0], args.lr or [None]
    network = {"spec": args.network or experiments.IMAGE_NETWORK, "padding": args.padding or "valid"}
    if image:
        try:
            experiments.tssl_network(network["spec"], (1, 8, 8), 10, padding=network["padding"])
        except (TypeError, ValueError) as error:
            return refuse(f"--network {network['spec']} --padding {network['padding']}: {error}")
    if args.valid is not None:
        try:
            SequentialDigits("valid", "row", valid_fraction=args.valid)
        except ValueError as error:
            return refuse(f"--valid {args.valid}: {error}")
    if args.readout == "trace" and (args.trace or experiments.OTTT_TRACES.get(args.neuron or "prf", "presynaptic")) == "neuron":
        return refuse("--readout trace goes with --trace presynaptic (trace='neuron' keeps the readout's exact gradient)")
    if args.kernel_target is not None and args.loss == "count":
        return refuse("--kernel-target is an option of the kernel loss, not of --loss count")
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
                    steps = args.steps or 200
                    row = experiments.train_adding(steps, rule=rule, iterations=args.iterations or 3000,
                                                   parts=args.parts or min(10, steps),
                                                   **(fptt if rule == "fptt" else {}), **options)
                elif image:
                    row = experiments.train_image(rule, steps=args.steps or 5, epochs=args.epochs or 30,
                                                  recipe=args.recipe or "reference", loss=args.loss or "kernel",
                                                  **network, **valid, **revision, **options)
                else:
                    row = experiments.train_digits(rule, args.task, neuron=args.neuron or "prf", epochs=args.epochs or 20,
                                                   parts=args.parts, trace=args.trace, readout=args.readout,
                                                   **(fptt if rule == "fptt" else {}),
                                                   **valid, **options)
                rows.append({**row, "seed": seed})
                print(", ".join(f"{k}={v:.4g}" if k == "lr" else f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in rows[-1].items()), flush=True)
    if len(seeds) > 1 or len(lrs) > 1:
        metric = "test_mse" if args.task == "adding" else "valid_accuracy" if valid else "test_accuracy"
        _summarise(rows, metric, lrs)
    _write_json(args.json, rows)
    return 0


#: ``bench --learners`` options, refused without ``--learners``
_LEARNER_BENCH = ("rules", "lengths", "learners_json", "network")


def _bench(args: argparse.Namespace) -> int:
    if not args.learners:
        given = [name for name in _LEARNER_BENCH if getattr(args, name) is not None]
        if given:
            print(f"snn-parallel bench: error: --{given[0].replace('_', '-')} is for --learners", file=sys.stderr)
            return 2
        for option in ("json", "plot"):  # output files: checked before the run, not after it
            try:
                if getattr(args, option) is not None:
                    _writable(str(getattr(args, option)))
            except argparse.ArgumentTypeError as error:
                print(f"snn-parallel bench: error: argument --{option}: {error}", file=sys.stderr)
                return 2
        from . import bench

        return bench.main(args)
    others = [name for name in args.neuron_options if getattr(args, name) != args.neuron_defaults[name]]
    if others:
        print(f"snn-parallel bench: error: --{others[0].replace('_', '-')} times the neurons; --learners does not use it",
              file=sys.stderr)
        return 2
    from .learners.experiments import IMAGE_NETWORK, memory_profile, tsslbp_profile

    resnet = args.network == "resnet"
    size = {"batch": 8} if resnet else {}
    rows = memory_profile(args.rules or ["bptt", "fptt", "ottt", "hypr"], args.lengths or [512, 4096],
                          network=args.network or "mlp", **size)
    for row in rows:
        base = next(r for r in rows if r["rule"] == row["rule"])
        row["rss_vs_first_T"] = row["peak_rss_mib"] / base["peak_rss_mib"]
    what = "SpikingJelly's ResNet-10 (LIFNode) on 3 x 8 x 8 pictures, batch 8" if resnet else "2 x 256 LIF, batch 32"
    print(f"one training step ({what}), peak RSS of a fresh process:")
    _print_rows(rows, ["rule", "steps", "peak_rss_mib", "rss_vs_first_T", "seconds"])
    if resnet:
        _write_json(args.learners_json, rows)
        return 0
    tssl_rows = tsslbp_profile()
    print(f"TSSL-BP against BPTT, PSPLIF conv net {IMAGE_NETWORK} on 8x8 pictures, one training step (median), "
          "activations saved for the backward:")
    _print_rows(tssl_rows, ["rule", "steps", "batch", "ms_per_step", "saved_mib", "peak_rss_mib"])
    _write_json(args.learners_json, rows + tssl_rows)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``snn-parallel`` argument parser; every option's value is checked by its type."""
    from . import bench
    from .demo import MODES, NEURONS

    parser = _Parser(prog="snn-parallel", description=__doc__)
    parser.add_argument("--version", action="version", version=f"snn-parallel {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train a small SNN on built-in sequential digits")
    demo.add_argument("--neuron", choices=sorted(NEURONS), default="dsn", help="neuron to train (default: dsn)")
    demo.add_argument("--mode", choices=MODES, default="row", help="digits as rows (T=8) or pixels (T=64)")
    demo.add_argument("--epochs", type=_POSITIVE, default=40)
    demo.add_argument("--hidden", type=_POSITIVE, default=128)
    demo.add_argument("--batch-size", type=_POSITIVE, default=64)
    demo.add_argument("--lr", type=_RATE, default=3e-3)
    demo.add_argument("--seed", type=_SEED, default=0)
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(run=_demo)

    from .learners.experiments import NEURONS as LEARNER_NEURONS
    from .learners.experiments import RULES

    train = commands.add_parser("train", help="train with a learning rule on built-in data and report the test metric",
                                description="Options a task or rule does not use are refused, not ignored.")
    train.add_argument("--rule", choices=[*sorted(RULES), "tsslbp", "all"], default="all",
                       help="all: every rule for the task (for --task image: tsslbp and bptt)")
    train.add_argument("--task", choices=("row", "pixel", "adding", "image"), default="row",
                       help="digits by row (T=8), by pixel (T=64), the adding problem, or digits as pictures repeated "
                            "over T=5 (a PSPLIF conv net, TSSL-BP against BPTT)")
    train.add_argument("--neuron", choices=sorted(LEARNER_NEURONS), default=None,
                       help="digits: neuron of the network (default: prf)")
    train.add_argument("--epochs", type=_POSITIVE, default=None, help="default: 20 (image: 30)")
    train.add_argument("--parts", type=_POSITIVE, default=None,
                       help="FPTT's K, updates per sequence, at most T (default: T; adding problem: 10)")
    train.add_argument("--trace", choices=("presynaptic", "neuron"), default=None,
                       help="digits: OTTT's trace (default: 'neuron' for prf and lif, else 'presynaptic')")
    train.add_argument("--readout", choices=("trace", "instant"), default=None,
                       help="digits: OTTT's readout, through its input's trace as the official code ('trace', the default "
                            "with --trace presynaptic) or its exact per-step gradient ('instant', the default with 'neuron')")
    train.add_argument("--steps", type=_POSITIVE, default=None,
                       help="adding problem: sequence length (default: 200); image: T (default: 5)")
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
    train.add_argument("--alpha", type=_RATE, default=None,
                       help="FPTT's regulariser strength (default: the trainer's; adding problem: 0.5, the reference's)")
    train.add_argument("--iterations", type=_POSITIVE, default=None, help="adding problem: optimizer iterations (default: 3000)")
    train.add_argument("--lr", type=_comma_list(_RATE, "finite numbers > 0"), default=None,
                       help="Adam(W)'s learning rate, or several separated by commas (default: 3e-3; image: 5e-3)")
    train.add_argument("--seed", type=_comma_list(_SEED, "integers in [0, 2**32 - 1]"), default=None,
                       help="a seed, or several separated by commas (then the mean per rule and rate is printed too; default: 0)")
    train.add_argument("--valid", type=_SHARE, default=None, metavar="SHARE",
                       help="digits: score on this share of the training digits, set apart, instead of the test split "
                            "(to choose --lr and --epochs)")
    train.add_argument("--json", type=_writable, help="write the results here (checked before training)")
    train.set_defaults(run=_train)

    bench_parser = commands.add_parser("bench", help="time neurons against snnTorch and SpikingJelly baselines")
    bench.add_arguments(bench_parser)
    neuron_options = [a.dest for a in bench_parser._actions if a.dest != "help"]  # noqa: SLF001 (argparse keeps no public list)
    bench_parser.add_argument("--learners", action="store_true", help="instead: peak memory of the learners against T")
    bench_parser.add_argument("--rules", type=_comma_list(_typed(str, lambda rule: check_choice(rule, "rule", sorted(RULES)),
                                                                 "a rule"), f"rules from {', '.join(sorted(RULES))}"),
                              default=None, help="--learners: rules to measure (default: bptt,fptt,ottt,hypr)")
    bench_parser.add_argument("--lengths", type=_comma_list(_POSITIVE, "integers >= 1"), default=None,
                              help="--learners: sequence lengths (default: 512,4096)")
    bench_parser.add_argument("--learners-json", type=_writable, help="--learners: write the table here")
    bench_parser.add_argument("--network", choices=("mlp", "resnet"), default=None,
                              help="--learners: the network, 2 x 256 LIF (default) or SpikingJelly's ResNet-10 on pictures")
    bench_parser.set_defaults(run=_bench, neuron_options=neuron_options,
                              neuron_defaults={name: bench_parser.get_default(name) for name in neuron_options})
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``snn-parallel`` console script; returns the exit code.

    A usage mistake is one line on stderr and exit code 2, never a traceback; training that
    goes non-finite is one line and exit code 1.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # argparse printed the help, the version or a usage error
        return done.code if isinstance(done.code, int) else 2
    try:
        return args.run(args)
    except NonFiniteError as error:
        print(f"snn-parallel {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"snn-parallel {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
