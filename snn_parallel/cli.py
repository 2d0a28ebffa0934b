"""Command line: ``snn-parallel demo``, ``snn-parallel train`` and ``snn-parallel bench``.

``train`` has a subcommand per task (``row``, ``pixel``, ``adding``, ``image``) and under each one
per rule (``bptt``, ``fptt``, ``hypr``, ``ottt``; ``tsslbp`` and ``bptt`` for ``image``; ``all``
trains each): ``snn-parallel train adding fptt --steps 50``. ``--task`` and ``--rule`` name them
too (``snn-parallel train --task adding --rule fptt --steps 50``; by default ``row`` and ``all``).
``bench`` has two: ``neurons`` (the default) and ``learners`` (also ``--learners``). Each parser
declares only the options its task and rule use, so argparse itself refuses the others; the
refusal says where the option belongs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from ._argtypes import POSITIVE, RATE, SEED, SHARE, comma_list, typed, writable
from ._validation import check_choice
from .learners.nonfinite import NonFiniteError

#: ``train``'s tasks, each with the option sets it takes (see :func:`_train_option_sets`)
TASKS = {
    "row": ("the digits by row (T = 8)", ("digits", "epochs")),
    "pixel": ("the digits by pixel (T = 64)", ("digits", "epochs")),
    "adding": ("the adding problem (LTC, FPTT's reference recipe)", ("adding", "steps")),
    "image": (
        "the digits as pictures repeated over T = 5 (a PSPLIF conv net, TSSL-BP against BPTT)",
        ("epochs", "steps", "image"),
    ),
}
#: a rule's own options: (who owns them, the tasks that take them, whether ``--rule all`` passes them on)
RULE_OPTIONS = {
    "fptt": ("FPTT", ("row", "pixel", "adding"), True),
    "ottt": ("OTTT", ("row", "pixel"), True),
    "tsslbp": ("TSSL-BP", ("image",), False),
}
#: the subcommand levels of ``train`` and ``bench``: the option that also chooses one, the default,
#: and the value of an option that takes none (``None``: the option takes the subcommand's name)
_LEVELS = {
    "train": (("--task", "row", None), ("--rule", "all", None)),
    "bench": (("--learners", "neurons", "learners"),),
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr and exit code 2; an option the
    chosen subcommand does not take is refused with where it belongs, and values that do not go
    together (a subcommand's ``refuse`` default) by that subcommand, before anything runs."""

    #: (command, subcommand names) -> the parser that runs them, for :func:`_misplaced`
    leaves: dict[tuple[str, ...], argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        parsed, extras = self.parse_known_args(_name_subcommands(sys.argv[1:] if args is None else args), namespace)
        leaf = self.leaves.get(parsed.leaf, self) if hasattr(parsed, "leaf") else self
        if extras:
            leaf.error(_misplaced(self.leaves, parsed, extras))
        refusal = parsed.refuse(parsed) if getattr(parsed, "refuse", None) else None
        if refusal is not None:
            leaf.error(refusal)
        return parsed


def _name_subcommands(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``train``'s ``--task``/``--rule`` and ``bench``'s ``--learners`` as the subcommands
    they select, defaults filled in (``train row all``, ``bench neurons``) unless the command's own
    ``--help`` is all there is (``bench --quick --help`` is the help of ``bench neurons``)."""
    argv = list(argv)
    if not argv or argv[0] not in _LEVELS:
        return argv
    command, rest = argv[0], argv[1:]
    selector = _Parser(prog=f"snn-parallel {command}", add_help=False)
    for level, (flag, _, flag_value) in enumerate(_LEVELS[command]):
        selector.add_argument(
            flag, dest=str(level), **({} if flag_value is None else {"action": "store_const", "const": flag_value})
        )
    given, rest = selector.parse_known_args(rest)
    chosen = []
    for level, (_, default, _) in enumerate(_LEVELS[command]):
        name = getattr(given, str(level))
        if name is None and rest and not rest[0].startswith("-"):  # written as a subcommand
            name = rest.pop(0)
        if name is None and level == 0 and rest and set(rest) <= {"-h", "--help"}:
            return [command, *rest]  # the command's own help: its subcommands
        chosen.append(default if name is None else name)
    return [command, *chosen, *rest]


def _misplaced(
    leaves: dict[tuple[str, ...], argparse.ArgumentParser], args: argparse.Namespace, extras: list[str]
) -> str:
    """Why argparse left ``extras`` over: the first option, and where it belongs."""
    text = next((word for word in extras if word.startswith("-")), None)
    unknown = f"unrecognized arguments: {' '.join(extras)}"
    if text is None or not hasattr(args, "leaf"):
        return unknown
    command = args.leaf[0]
    mine = {key: leaf for key, leaf in leaves.items() if key[0] == command}
    flags = {flag for leaf in mine.values() for flag in leaf._option_string_actions}  # noqa: SLF001 (no public list)
    typed_flag = text.split("=", 1)[0]
    matches = [flag for flag in flags if flag == typed_flag] or [flag for flag in flags if flag.startswith(typed_flag)]
    if len(matches) != 1:
        return unknown
    option = matches[0]
    taken = [key[1:] for key, leaf in mine.items() if option in leaf._option_string_actions]  # noqa: SLF001
    if command == "bench":
        return (
            f"{option} is for --learners"
            if ("learners",) in taken
            else f"{option} times the neurons; --learners does not use it"
        )
    task = args.leaf[1]
    tasks = [name for name in TASKS if any(key[0] == name for key in taken)]
    if task not in tasks:
        return f"{option} is for --task {_either(tasks)}, not --task {task}"
    owner = next((owner for rule, (owner, _, _) in RULE_OPTIONS.items() if (task, rule) in taken), None)
    if owner is None:
        return unknown
    return f"{option} is {owner}'s: use it with --rule {_either([rule for name, rule in taken if name == task])}"


def _either(names: Sequence[str]) -> str:
    """``"a"``, ``"a or b"``, ``"a, b or c"``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(  # prints its summary
        args.neuron,
        mode=args.mode,
        epochs=args.epochs,
        hidden=args.hidden,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        progress=not args.no_progress,
    )
    return 0


def _print_rows(rows: list[dict], columns: list[str]) -> None:
    print(" | ".join(f"{c:>14}" for c in columns))
    for row in rows:
        print(" | ".join(f"{row[c]:>14.4f}" if isinstance(row[c], float) else f"{row[c]!s:>14}" for c in columns))


def _write_json(path: Path | None, rows: list[dict]) -> None:
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
            print(
                f"rule={rule}, lr={lr:g}, seeds={len(values)}, mean {metric}={means[rule, lr]:.4f}, "
                f"min={min(values):.4f}, max={max(values):.4f}"
            )
    if len(lrs) > 1:
        pick = min if metric.endswith("mse") else max
        for rule in dict.fromkeys(rule for rule, _ in means):
            best = pick((lr for r, lr in means if r == rule), key=lambda lr: means[rule, lr])
            print(f"rule={rule}, best lr={best:g} by mean {metric}")


def _train_refusal(args: argparse.Namespace) -> str | None:
    """Why the values of ``train``'s options do not go together, or ``None`` (which options a task
    and rule take, their parsers already say)."""
    from .learners import experiments
    from .tasks import SequentialDigits

    steps = {"row": 8, "pixel": 64, "adding": args.steps or 200, "image": args.steps or 5}[args.task]
    if args.task == "adding" and steps < 2:
        return f"--steps of the adding problem must be >= 2 (two numbers to add), got {steps}"
    if args.parts is not None and args.parts > steps:
        return f"--parts {args.parts} is more than the {steps} steps of --task {args.task}"
    if args.task == "image":
        spec, padding = args.network or experiments.IMAGE_NETWORK, args.padding or "valid"
        try:
            experiments.tssl_network(spec, (1, 8, 8), 10, padding=padding)
        except (TypeError, ValueError) as error:
            return f"--network {spec} --padding {padding}: {error}"
    if args.valid is not None:
        try:
            SequentialDigits("valid", "row", valid_fraction=args.valid)
        except ValueError as error:
            return f"--valid {args.valid}: {error}"
    if args.trace == "neuron" and (refusal := _neuron_trace_refusal(args.neuron or "prf")) is not None:
        return refusal
    if args.readout == "trace" and (args.trace or experiments.ottt_trace(args.neuron or "prf")) == "neuron":
        return "--readout trace goes with --trace presynaptic (trace='neuron' keeps the readout's exact gradient)"
    if args.kernel_target is not None and args.loss == "count":
        return "--kernel-target is an option of the kernel loss, not of --loss count"
    return None


def _neuron_trace_refusal(neuron: str) -> str | None:
    """Why OTTT's ``--trace neuron`` cannot trace ``--neuron neuron``, or ``None``: the trace is built
    from the membrane's linear response to its input, which some neurons lack."""
    from .learners.experiments import DIGITS_NEURONS, ottt_trace

    linear = [name for name in DIGITS_NEURONS if ottt_trace(name) == "neuron"]
    if neuron in linear:
        return None
    return (
        f"--trace neuron needs a membrane linear in its input (--neuron {_either(linear)}); "
        f"--neuron {neuron} has none (use --trace presynaptic)"
    )


def _train(args: argparse.Namespace) -> int:
    from .learners import experiments

    image = args.task == "image"
    rules = list(experiments.IMAGE_RULES if image else sorted(experiments.RULES)) if args.rule == "all" else [args.rule]
    seeds, lrs = args.seed or [0], args.lr or [None]
    network = {"spec": args.network or experiments.IMAGE_NETWORK, "padding": args.padding or "valid"}
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
                    row = experiments.train_adding(
                        steps,
                        rule=rule,
                        iterations=args.iterations or 3000,
                        parts=args.parts or min(10, steps),
                        **(fptt if rule == "fptt" else {}),
                        **options,
                    )
                elif image:
                    row = experiments.train_image(
                        rule,
                        steps=args.steps or 5,
                        epochs=args.epochs or 30,
                        recipe=args.recipe or "reference",
                        loss=args.loss or "kernel",
                        **network,
                        **valid,
                        **revision,
                        **options,
                    )
                else:
                    row = experiments.train_digits(
                        rule,
                        args.task,
                        neuron=args.neuron or "prf",
                        epochs=args.epochs or 20,
                        parts=args.parts,
                        trace=args.trace,
                        readout=args.readout,
                        **(fptt if rule == "fptt" else {}),
                        **valid,
                        **options,
                    )
                rows.append({**row, "seed": seed})
                print(
                    ", ".join(
                        f"{k}={v:.4g}" if k == "lr" else f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in rows[-1].items()
                    ),
                    flush=True,
                )
    if len(seeds) > 1 or len(lrs) > 1:
        metric = "test_mse" if args.task == "adding" else "valid_accuracy" if valid else "test_accuracy"
        _summarise(rows, metric, lrs)
    _write_json(args.json, rows)
    return 0


def _bench_neurons(args: argparse.Namespace) -> int:
    from . import bench

    return bench.main(args)


def _bench_learners(args: argparse.Namespace) -> int:
    from .learners.experiments import IMAGE_NETWORK, memory_profile, tsslbp_profile

    resnet = args.network == "resnet"
    size = {"batch": 8} if resnet else {}
    rows = memory_profile(
        args.rules or ["bptt", "fptt", "ottt", "hypr"],
        args.lengths or [512, 4096],
        network=args.network or "mlp",
        **size,
    )
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
    print(
        f"TSSL-BP against BPTT, PSPLIF conv net {IMAGE_NETWORK} on 8x8 pictures, one training step (median), "
        "activations saved for the backward:"
    )
    _print_rows(tssl_rows, ["rule", "steps", "batch", "ms_per_step", "saved_mib", "peak_rss_mib"])
    _write_json(args.learners_json, rows + tssl_rows)
    return 0


def _train_option_sets() -> dict[str, argparse.ArgumentParser]:
    """``train``'s options in sets, each a parent parser: those of every task (``""``), of some
    tasks (:data:`TASKS`) and of a rule (:data:`RULE_OPTIONS`). Each defaults to ``None``, argparse's
    default: :func:`_train` chooses the value by task, as the help says."""
    from .learners.experiments import DIGITS_NEURONS

    def option_set(title: str | None) -> tuple[argparse.ArgumentParser, Any]:
        parser = argparse.ArgumentParser(add_help=False)
        return parser, parser if title is None else parser.add_argument_group(title)

    sets = {}
    sets[""], common = option_set(None)
    common.add_argument(
        "--lr",
        type=comma_list(RATE, "finite numbers > 0"),
        help="Adam(W)'s learning rate, or several separated by commas (default: 3e-3; image: 5e-3)",
    )
    common.add_argument(
        "--seed",
        type=comma_list(SEED, "integers in [0, 2**32 - 1]"),
        help="a seed, or several separated by commas (then the mean per rule and rate is printed too; default: 0)",
    )
    common.add_argument("--json", type=writable, help="write the results here (checked before training)")
    sets["digits"], digits = option_set("the network on the digits (--task row, pixel)")
    digits.add_argument("--neuron", choices=DIGITS_NEURONS, help="neuron of the network (default: prf)")
    sets["epochs"], epochs = option_set("epochs on the digits (--task row, pixel, image)")
    epochs.add_argument("--epochs", type=POSITIVE, help="default: 20 (image: 30)")
    epochs.add_argument(
        "--valid",
        type=SHARE,
        metavar="SHARE",
        help="score on this share of the training digits, set apart, instead of the test split "
        "(to choose --lr and --epochs)",
    )
    sets["adding"], adding = option_set("the adding problem (--task adding)")
    adding.add_argument("--iterations", type=POSITIVE, help="optimizer iterations (default: 3000)")
    sets["steps"], steps = option_set("sequence length (--task adding, image)")
    steps.add_argument(
        "--steps",
        type=POSITIVE,
        help="adding problem: sequence length (default: 200); image: T (default: 5)",
    )
    sets["image"], image = option_set("the PSPLIF conv net, for both rules (--task image)")
    image.add_argument(
        "--recipe",
        choices=("reference", "mean"),
        help="the training recipe: 'reference' (default; TSSL-BP's: loss summed over the batch, gradient "
        "norm clipped to 1, weights clamped to [-4, 4]) or 'mean' (loss averaged, the same clip, no "
        "clamp)",
    )
    image.add_argument(
        "--loss",
        choices=("kernel", "count"),
        help="the spike-sequence loss: desired PSP trains ('kernel', default) or desired PSP sums ('count')",
    )
    image.add_argument(
        "--network",
        metavar="SPEC",
        help="the net in the paper's notation (default: 16C3-32C3-P2-128; the paper's MNIST net on the "
        "8x8 digits: 15C5-P2-40C5-P2-300 --padding same)",
    )
    image.add_argument(
        "--padding",
        choices=("valid", "same"),
        help="the convs' padding, none ('valid', default) or half the kernel ('same')",
    )
    image.add_argument(
        "--kernel-target",
        choices=("psp", "psp_psp"),
        help="kernel loss: the desired PSP filtered once ('psp', default; the code submitted with the "
        "paper) or twice ('psp_psp'; the reference code from its revision of 29 Oct 2020)",
    )
    sets["fptt"], fptt = option_set("FPTT's options (--rule fptt or all)")
    fptt.add_argument(
        "--parts",
        type=POSITIVE,
        help="K, updates per sequence, at most T (default: T; adding problem: 10)",
    )
    fptt.add_argument(
        "--alpha",
        type=RATE,
        help="the regulariser strength (default: the trainer's; adding problem: 0.5, the reference's)",
    )
    sets["ottt"], ottt = option_set("OTTT's options (--rule ottt or all)")
    ottt.add_argument(
        "--trace",
        choices=("presynaptic", "neuron"),
        help="the trace (default: 'neuron' where --trace neuron takes the neuron, else 'presynaptic')",
    )
    ottt.add_argument(
        "--readout",
        choices=("trace", "instant"),
        help="the readout, through its input's trace as the official code ('trace', the default with "
        "--trace presynaptic) or its exact per-step gradient ('instant', the default with 'neuron')",
    )
    sets["tsslbp"], tsslbp = option_set("TSSL-BP's options (--rule tsslbp)")
    tsslbp.add_argument(
        "--dt-du",
        choices=("spikes", "rising"),
        help="its timing gradient dt/du only where a neuron fires ('spikes', default) or wherever its "
        "membrane rose ('rising'); the two revisions of the reference code",
    )
    return sets


def _subcommands(commands: Any, name: str, dest: str, **about: str) -> Any:
    """The subcommand ``name`` of ``commands`` (``about``: its help and description), itself a level
    of required subcommands whose chosen name is stored as ``dest``."""
    return commands.add_parser(name, **about).add_subparsers(dest=dest, metavar=dest.upper(), required=True)


def _leaf(
    leaves: dict[tuple[str, ...], argparse.ArgumentParser],
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], int],
    *path: str,
) -> None:
    """Make ``parser``, the subcommand at ``path``, run ``run`` (and record it for :func:`_misplaced`)."""
    parser.set_defaults(run=run, leaf=path)
    leaves[path] = parser


def _add_train(commands: Any, leaves: dict[tuple[str, ...], argparse.ArgumentParser]) -> None:
    """``train TASK RULE``: a parser per task and rule, with the option sets they use."""
    from .learners.experiments import IMAGE_RULES, RULES

    sets = _train_option_sets()
    dests = {action.dest: None for parent in sets.values() for action in parent._actions}  # noqa: SLF001 (no public list)
    tasks = _subcommands(
        commands,
        "train",
        "task",
        help="train with a learning rule on built-in data and report the test metric",
        description="Train on a built-in task, chosen as a subcommand or with --task (default: "
        "row); see `snn-parallel train TASK --help`.",
    )
    for task, (about, task_sets) in TASKS.items():
        rules = _subcommands(tasks, task, "rule", help=about, description=f"Train on {about}.")
        names = [*(IMAGE_RULES if task == "image" else sorted(RULES)), "all"]
        for rule in names:
            own = [
                name
                for name, (_, on, with_all) in RULE_OPTIONS.items()
                if task in on and (name == rule or (rule == "all" and with_all))
            ]
            leaf = rules.add_parser(
                rule,
                parents=[sets[name] for name in ("", *task_sets, *own)],
                help="every rule in turn" if rule == "all" else f"the {rule} rule",
                description=f"Train on {about} with {'each of ' + ', '.join(names[:-1]) if rule == 'all' else rule}"
                f" (rules: {', '.join(names)}: --rule RULE or `train {task} RULE`). "
                "Options the task or rule does not use are refused, not ignored.",
            )
            leaf.set_defaults(**dests, refuse=_train_refusal)
            _leaf(leaves, leaf, _train, "train", task, rule)


def _add_bench(commands: Any, leaves: dict[tuple[str, ...], argparse.ArgumentParser]) -> None:
    """``bench neurons`` (the default) and ``bench learners`` (``--learners``)."""
    from . import bench
    from .learners.experiments import RULES

    jobs = _subcommands(
        commands,
        "bench",
        "job",
        help="time neurons against snnTorch and SpikingJelly baselines, or (--learners) the learners' memory",
        description="Benchmarks: `bench` (or `bench neurons`) "
        "times the neurons, `bench --learners` (or `bench learners`) the learners' memory.",
    )
    neurons = jobs.add_parser(
        "neurons",
        help="time neurons against snnTorch and SpikingJelly baselines (the default)",
        description="Time our neurons against snnTorch and SpikingJelly baselines.",
    )
    bench.add_arguments(neurons)
    _leaf(leaves, neurons, _bench_neurons, "bench", "neurons")
    learners = jobs.add_parser(
        "learners",
        help="peak memory of the learners against T (also: bench --learners)",
        description="Peak memory of one training step of each learner against T.",
    )
    learners.add_argument(
        "--rules",
        type=comma_list(
            typed(str, lambda rule: check_choice(rule, "rule", sorted(RULES)), "a rule"),
            f"rules from {', '.join(sorted(RULES))}",
        ),
        help="rules to measure (default: bptt,fptt,ottt,hypr)",
    )
    learners.add_argument(
        "--lengths",
        type=comma_list(POSITIVE, "integers >= 1"),
        help="sequence lengths (default: 512,4096)",
    )
    learners.add_argument("--learners-json", type=writable, help="write the table here")
    learners.add_argument(
        "--network",
        choices=("mlp", "resnet"),
        help="the network, 2 x 256 LIF (default) or SpikingJelly's ResNet-10 on pictures",
    )
    _leaf(leaves, learners, _bench_learners, "bench", "learners")


def build_parser() -> argparse.ArgumentParser:
    """The ``snn-parallel`` argument parser; every option's value is checked by its type, and each
    subcommand takes only its own options."""
    from .demo import MODES, NEURONS

    parser = _Parser(
        prog="snn-parallel",
        description="Spiking neurons that train in parallel over time, on built-in "
        "data: `demo`, `train TASK RULE` (or --task/--rule), `bench` (or `bench --learners`); "
        "`snn-parallel COMMAND --help` for each.",
    )
    parser.leaves = {}
    parser.add_argument("--version", action="version", version=f"snn-parallel {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train a small SNN on built-in sequential digits")
    demo.add_argument("--neuron", choices=NEURONS, default="dsn", help="neuron to train (default: dsn)")
    demo.add_argument("--mode", choices=MODES, default="row", help="digits as rows (T=8) or pixels (T=64)")
    demo.add_argument("--epochs", type=POSITIVE, default=40)
    demo.add_argument("--hidden", type=POSITIVE, default=128)
    demo.add_argument("--batch-size", type=POSITIVE, default=64)
    demo.add_argument("--lr", type=RATE, default=3e-3)
    demo.add_argument("--seed", type=SEED, default=0)
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(run=_demo)
    _add_train(commands, parser.leaves)
    _add_bench(commands, parser.leaves)
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
