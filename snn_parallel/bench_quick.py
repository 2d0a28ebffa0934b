"""``snn-parallel bench --device cuda --quick``: the GPU kernels against the memory-bandwidth bound, in minutes.

For DynamicDecay with binary and integer spikes (``dsn``, ``dsn_int``), PRF (``prf``), DecoupledLIF (``lif``),
LTC in its parallel mode (``ltc``), TSSL-BP's PSPLIF (``psplif``) and ``linear_scan`` (``scan``), at ``T x B x C``
in :data:`QUICK_SHAPES` (the scan also at :data:`SCAN_SHAPE`, 2^28 elements), float32:

- ``forward`` and ``backward``: the op alone (``dsn_membrane``, ``linear_fire``, ``ltc_scan``, ``tsslbp``,
  ``linear_scan`` on inputs prepared beforehand, its per-channel parameters and LTC's gates included), each timed
  with CUDA events; the backward from a fresh forward each run, with a random gradient of the spikes (of the PSP
  for PSPLIF, of ``h`` for the scan);
- ``fwd+bwd``: the module, ``neuron(x)[0].sum().backward()``, as ``snn-parallel bench`` times it;
- the same three for SpikingJelly's ``LIFNode(step_mode='m')`` (``sj_lif``) and ``PSN`` (``sj_psn``) when
  SpikingJelly is installed, and ``copy`` (``y.copy_(x)``, 8 bytes an element) as the device's practical
  bound.

Each row gives the median time of the runs (one warm-up, then runs until :data:`MEASURE_S` has passed, at
most ``--repeats`` and at least one) and the achieved bandwidth on the minimum bytes the op must move
(:data:`MIN_BYTES`, a lower bound: the inputs read once and the outputs written once), with its fraction of
the device's peak. ``ratios`` give the speed-up of each of our neurons over each baseline at each shape
(module ``fwd+bwd`` times), and ``targets`` judge each model against the kernels' performance targets
(:data:`BANDWIDTH_TARGETS`, :data:`SPEEDUP_TARGETS`). The JSON file (``rows``, ``ratios``, ``targets``, ``machine``
naming the GPU, ``complete``, and ``errors`` for cases that failed) is rewritten after every case, and
``--resume`` keeps the cases an interrupted run already measured on the same machine. Everything runs in one
process (no memory column).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ._validation import validation
from .bench import DEFAULT_SHAPES, machine_info, peak_bandwidth, write_json
from .neurons import LTC, PRF, PSPLIF, DecoupledLIF, DynamicDecay
from .ops import dsn_membrane, linear_fire, linear_scan, ltc_scan, tsslbp

Shape = tuple[int, int, int]
QUICK_SHAPES: list[Shape] = [(16384, 1, 256), (65536, 1, 256), (4096, 16, 256), (16384, 16, 256), (1024, 256, 256)]
#: the scan's large case: 2^28 elements
SCAN_SHAPE: Shape = (65536, 16, 256)
OURS = ("dsn", "dsn_int", "prf", "lif", "ltc", "psplif", "scan")
#: our neurons (compared with the baselines)
NEURONS = OURS[:-1]
BASELINES = ("sj_lif", "sj_psn")
MODELS = (*OURS, *BASELINES, "copy")
PASSES = ("forward", "backward", "fwd+bwd")
#: minimum bytes an element each pass must move in float32 (forward, backward): DSN reads x and writes the
#: spikes, and in backward reads x and the spikes' gradient and writes x's; PRF without a reset the same;
#: DecoupledLIF (with its reset) also writes the membrane its threshold chain needs, and reads it back; the
#: scan reads a and b and writes h, and in backward reads a, h and h's gradient and writes those of a and b;
#: LTC reads its current and two gates and writes the spikes and the membrane, and in backward reads the
#: spikes' gradient and the three inputs and writes their gradients; PSPLIF reads the current and writes the PSP,
#: and in backward reads the PSP's gradient and the current and writes the current's (a lower bound: both keep
#: more of the forward for their backward than they must).
#: SpikingJelly's LIFNode counts as DecoupledLIF; PSN (a T x T matrix product) and copy (8 bytes) have no
#: backward bound here.
MIN_BYTES: dict[str, tuple[int, int | None]] = {
    "dsn": (8, 12),
    "dsn_int": (8, 12),
    "prf": (8, 12),
    "lif": (12, 12),
    "ltc": (20, 28),
    "psplif": (8, 12),
    "scan": (12, 20),
    "sj_lif": (12, 12),
    "copy": (8, None),
}
#: the kernels' performance targets, each judged per model: a bandwidth floor, as a fraction of the device's
#: peak, for one pass at every shape of at least ``min_elements`` elements, or a speed-up floor over a baseline
#: (module ``fwd+bwd``) at every shape, or only at the shapes with ``T`` = ``at_T``
BANDWIDTH_TARGETS: list[tuple[tuple[str, ...], str, float]] = [
    (("prf", "scan", "dsn", "dsn_int"), "forward", 0.70),
    (("prf", "scan"), "backward", 0.60),
]
BANDWIDTH_MIN_ELEMENTS = 2**24
SPEEDUP_TARGETS: list[tuple[tuple[str, ...], str, float, int | None]] = [
    (("prf", "lif", "dsn", "dsn_int"), "sj_lif", 1.0, None),
    (("prf",), "sj_psn", 10.0, 16384),
    (("dsn",), "sj_psn", 25.6, 16384),
]
MEASURE_S = 0.5  # measured runs stop once they have taken this long (the session script's time limit holds every model)


def min_bytes(model: str, pass_: str, elements: int) -> int | None:
    """The bytes ``pass_`` of ``model`` must move over ``elements`` elements (``None``: no bound given)."""
    if model not in MIN_BYTES:
        return None
    forward, backward = MIN_BYTES[model]
    per_element = {
        "forward": forward,
        "backward": backward,
        "fwd+bwd": None if backward is None else forward + backward,
    }[pass_]
    return None if per_element is None else per_element * elements


# ----------------------------------------------------------------------------- what is timed
class Runs:
    """One case's three callables: ``forward()`` returns what ``backward(outputs)`` differentiates, and
    ``step()`` is the module forward + backward."""

    def __init__(self, forward: Callable[[], Any], backward: Callable[[Any], None], step: Callable[[], None]) -> None:
        self.forward, self.backward, self.step = forward, backward, step


def _op_runs(model: str, shape: Shape, device: torch.device) -> Runs:
    steps, batch, features = shape
    gen = torch.Generator(device=device).manual_seed(0)
    x = (torch.rand(shape, device=device, generator=gen) * 1.5).requires_grad_()
    grad = torch.randn(shape, device=device, generator=gen)
    if model == "scan":
        a = (torch.rand(shape, device=device, generator=gen) * 0.5 + 0.5).requires_grad_()

        def scan_forward() -> torch.Tensor:
            return linear_scan(a, x, validate=False)[0]

        def scan_step() -> None:
            a.grad = x.grad = None
            linear_scan(a, x, validate=False)[0].sum().backward()

        return Runs(scan_forward, lambda h: torch.autograd.backward(h, grad), scan_step)
    neuron = {
        "dsn": lambda: DynamicDecay(features),
        "dsn_int": lambda: DynamicDecay(features, spike_mode="integer"),
        "prf": lambda: PRF(features),
        "lif": lambda: DecoupledLIF(features),
        "ltc": lambda: LTC(features, mode="parallel"),
        "psplif": lambda: PSPLIF(features),
    }[model]().to(device)
    zeros = torch.zeros(batch, features, device=device)
    if model in ("dsn", "dsn_int"):
        weight, bias = (t.detach().requires_grad_() for t in neuron._taps(x))
        state = neuron.init_state(x[0])

        def forward() -> torch.Tensor:  # spikes only, as the neuron's forward runs it
            return dsn_membrane(x, state.history, weight, bias, neuron.tau, state.h, neuron._spike_fn,
                                neuron._shift(x, 2), validate=False, membrane=False)[0]  # fmt: skip
    elif model == "ltc":
        state = neuron.init_state(x[0])
        with torch.no_grad():
            rate, retention = (g.requires_grad_() for g in neuron._gates(x, state))

        def forward() -> torch.Tensor:
            return ltc_scan(x, rate, retention, *state, neuron.b0, neuron.beta_a, neuron.surrogate, validate=False)[0]
    elif model == "psplif":

        def forward() -> torch.Tensor:
            return tsslbp(
                x,
                zeros,
                zeros,
                v_threshold=neuron.v_threshold,
                tau_m=neuron.tau_m,
                tau_s=neuron.tau_s,
                inclusive=neuron.surrogate.inclusive,
                validate=False,
            )[0]
    else:
        if model == "prf":
            log_a, dt = neuron.coefficients()
            decay, scale, h0, rho = log_a.exp().detach(), dt.detach(), zeros.to(torch.complex64), None
        else:
            decay, scale, h0 = neuron.beta.detach(), torch.ones(features, device=device), zeros
            rho = decay.clone()  # the module's reset carries no gradient
        decay, scale = decay.requires_grad_(), scale.requires_grad_()

        def forward() -> torch.Tensor:
            return linear_fire(x, decay, scale, h0, zeros, neuron.surrogate, neuron.v_threshold, rho, validate=False)[0]

    def step() -> None:
        x.grad = None
        neuron.zero_grad(set_to_none=True)
        neuron(x)[0].sum().backward()

    return Runs(forward, lambda spikes: torch.autograd.backward(spikes, grad), step)


def _baseline_runs(model: str, shape: Shape, device: torch.device) -> Runs:
    from spikingjelly.activation_based import functional, neuron, surrogate

    steps = shape[0]
    module = (neuron.LIFNode(step_mode="m", surrogate_function=surrogate.ATan()) if model == "sj_lif"
              else neuron.PSN(T=steps)).to(device)  # fmt: skip
    x = (torch.rand(shape, device=device) * 1.5).requires_grad_()
    grad = torch.randn(shape, device=device)

    def forward() -> torch.Tensor:
        functional.reset_net(module)
        return module(x)

    def step() -> None:
        x.grad = None
        module.zero_grad(set_to_none=True)
        forward().sum().backward()

    return Runs(forward, lambda out: torch.autograd.backward(out, grad), step)


def _copy_runs(shape: Shape, device: torch.device) -> Runs:
    source, target = torch.rand(shape, device=device), torch.empty(shape, device=device)
    return Runs(lambda: target.copy_(source), lambda _: None, lambda: None)


def runs_for(model: str, shape: Shape, device: torch.device) -> Runs:
    """The callables timed for ``model`` at ``shape``."""
    if model == "copy":
        return _copy_runs(shape, device)
    if model in BASELINES:
        return _baseline_runs(model, shape, device)
    return _op_runs(model, shape, device)


def _passes(model: str) -> tuple[str, ...]:
    return ("forward",) if model == "copy" else PASSES


# ----------------------------------------------------------------------------- timing
def _clock(device: torch.device) -> Callable[[Callable[[], None]], float]:
    """A function that times one call in ms: CUDA events on a GPU (the device synchronised after), else wall time."""
    if device.type == "cuda":

        def cuda_time(fn: Callable[[], None]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)

        return cuda_time

    def wall_time(fn: Callable[[], None]) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3

    return wall_time


def measure(runs: Runs, pass_: str, repeats: int, device: torch.device) -> float:
    """Median ms of ``pass_`` over one warm-up and then up to ``repeats`` runs (see module doc)."""
    clock = _clock(device)

    def once() -> float:
        if pass_ == "forward":
            return clock(runs.forward)
        if pass_ == "backward":
            outputs = runs.forward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return clock(lambda: runs.backward(outputs))
        return clock(runs.step)

    once()
    times, began = [], time.perf_counter()
    while not times or (len(times) < repeats and time.perf_counter() - began < MEASURE_S):
        times.append(once())
    return statistics.median(times)


# ----------------------------------------------------------------------------- the run
def cases(models: Sequence[str], shapes: Sequence[Shape], scan_shape: Shape | None) -> list[tuple[str, Shape]]:
    """(model, shape) in running order: shape by shape, ours first; the scan's large case last."""
    order = [(m, s) for s in shapes for m in models]
    if scan_shape is not None and "scan" in models and scan_shape not in shapes:
        order.append(("scan", scan_shape))
    return order


def _label(shape: Shape) -> str:
    return "x".join(map(str, shape))


def row(model: str, pass_: str, shape: Shape, time_ms: float, peak: float) -> dict[str, Any]:
    """A result row: the fields the JSON schema names."""
    nbytes = min_bytes(model, pass_, shape[0] * shape[1] * shape[2])
    bandwidth = None if nbytes is None else nbytes / (time_ms / 1e3) / 1e9
    return {
        "model": model,
        "pass": pass_,
        "T": shape[0],
        "B": shape[1],
        "C": shape[2],
        "dtype": "float32",
        "time_ms": time_ms,
        "bandwidth_gbs": bandwidth,
        "peak_fraction": None if bandwidth is None or not peak == peak else bandwidth * 1e9 / peak,
    }


def ratios(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Speed-up (baseline time / our time) of each of our neurons over each baseline at each shape, ``fwd+bwd``."""
    timed = {(r["model"], _label((r["T"], r["B"], r["C"]))): r["time_ms"] for r in rows if r["pass"] == "fwd+bwd"}
    return [
        {"model": model, "baseline": base, "shape": shape, "speedup": timed[base, shape] / timed[model, shape]}
        for (model, shape) in timed
        if model in NEURONS
        for base in BASELINES
        if (base, shape) in timed
    ]


def targets(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each performance target of :data:`BANDWIDTH_TARGETS` and :data:`SPEEDUP_TARGETS`, per model: ``met``
    (``None`` where no case measured it), the ``worst`` case's value and the number of ``cases`` judged."""

    def judged(text: str, model: str, values: list[float], floor: float) -> dict[str, Any]:
        worst = min(values) if values else None
        met = None if worst is None else worst >= floor
        return {"target": text, "model": model, "met": met, "worst": worst, "cases": len(values)}

    out = []
    for models, pass_, floor in BANDWIDTH_TARGETS:
        for model in models:
            values = [
                r["peak_fraction"]
                for r in rows
                if r["model"] == model
                and r["pass"] == pass_
                and r["peak_fraction"] is not None
                and r["T"] * r["B"] * r["C"] >= BANDWIDTH_MIN_ELEMENTS
            ]
            text = (
                f"{pass_} >= {floor:.0%} of peak bandwidth at >= 2^{BANDWIDTH_MIN_ELEMENTS.bit_length() - 1} elements"
            )
            out.append(judged(text, model, values, floor))
    for models, baseline, floor, at_t in SPEEDUP_TARGETS:
        for model in models:
            values = [
                s["speedup"]
                for s in ratios(rows)
                if s["model"] == model
                and s["baseline"] == baseline
                and (at_t is None or s["shape"].startswith(f"{at_t}x"))
            ]
            where = "every shape" if at_t is None else f"T = {at_t}"
            out.append(judged(f"fwd+bwd >= {floor:g}x {baseline} at {where}", model, values, floor))
    return out


def _kept(path: Path | None, machine: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows and errors of an interrupted run in ``path`` on the same machine (raises ``ValueError`` otherwise)."""
    if path is None:
        raise ValueError("--resume needs --json PATH (the file of the run to continue)")
    if not path.exists():
        return [], []
    try:
        data = json.loads(path.read_text())
        rows, errors, where = data["rows"], data.get("errors", []), data["machine"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--resume: {path} is not a quick benchmark file ({type(exc).__name__}: {exc})") from None
    keys = ("device", "gpu", "torch")
    if {k: where.get(k) for k in keys} != {k: machine.get(k) for k in keys}:
        raise ValueError(
            f"--resume: {path} was measured on { ({k: where.get(k) for k in keys}) }, this run is on "
            f"{ ({k: machine.get(k) for k in keys}) }"
        )
    return rows, errors


def run(
    device: str,
    *,
    models: Sequence[str] = MODELS,
    shapes: Sequence[Shape] = QUICK_SHAPES,
    scan_shape: Shape | None = SCAN_SHAPE,
    repeats: int = 10,
    json_path: Path | None = None,
    resume: bool = False,
    measure_case: Callable[..., dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Run the quick benchmark (see module doc) and return its results; ``measure_case(model, shape, repeats,
    device) -> {pass: ms}`` replaces the timing (tests)."""
    machine = machine_info(device)
    peak = peak_bandwidth()[0] if device == "cuda" else float("nan")
    rows, errors = _kept(json_path, machine) if resume else ([], [])
    done = {(r["model"], (r["T"], r["B"], r["C"])) for r in [*rows, *errors]}
    if measure_case is None:  # the real timing imports SpikingJelly for the baselines
        measure_case = _measure_case
        if importlib.util.find_spec("spikingjelly") is None:
            skipped = [m for m in models if m in BASELINES]
            models = [m for m in models if m not in BASELINES]
            if skipped:
                print(f"note: SpikingJelly is not installed: {', '.join(skipped)} not measured", file=sys.stderr)
    plan = cases(models, shapes, scan_shape)
    results = {
        "machine": machine,
        "command": " ".join(["snn-parallel", *sys.argv[1:]]),
        "complete": False,
        "rows": rows,
        "ratios": ratios(rows),
        "targets": targets(rows),
        "errors": errors,
    }
    for i, (model, shape) in enumerate(plan, 1):
        if (model, shape) in done:
            print(f"[{i}/{len(plan)}] {model} {_label(shape)}: kept from {json_path}", file=sys.stderr, flush=True)
            continue
        try:
            times = measure_case(model, shape, repeats, device)
        except Exception as exc:  # an out-of-memory shape or a missing kernel: reported, the run goes on
            errors.append(
                {"model": model, "T": shape[0], "B": shape[1], "C": shape[2], "error": f"{type(exc).__name__}: {exc}"}
            )
            print(f"[{i}/{len(plan)}] {model} {_label(shape)}: {errors[-1]['error']}", file=sys.stderr, flush=True)
        else:
            new = [row(model, p, shape, times[p], peak) for p in _passes(model)]
            rows.extend(new)
            print(
                f"[{i}/{len(plan)}] {model} {_label(shape)}: " + ", ".join(_text(r) for r in new),
                file=sys.stderr,
                flush=True,
            )
        results["ratios"], results["targets"] = ratios(rows), targets(rows)
        if json_path is not None:
            write_json(json_path, results)
        if device == "cuda":
            torch.cuda.empty_cache()
    results["complete"] = True
    if json_path is not None:
        write_json(json_path, results)
    return results


def _measure_case(model: str, shape: Shape, repeats: int, device: str) -> dict[str, float]:
    where = torch.device(device)
    with validation(False):  # the NaN checks would synchronise the device every call
        runs = runs_for(model, shape, where)
        return {p: measure(runs, p, repeats, where) for p in _passes(model)}


def _text(r: dict[str, Any]) -> str:
    extra = (
        ""
        if r["bandwidth_gbs"] is None
        else f" {r['bandwidth_gbs']:.0f} GB/s" + ("" if r["peak_fraction"] is None else f" ({r['peak_fraction']:.0%})")
    )
    return f"{r['pass']} {r['time_ms']:.3f} ms{extra}"


def print_table(results: dict[str, Any]) -> None:
    """The rows as one table, then the speed-ups."""
    print(f"{'model':<8} {'pass':<9} {'T x B x C':>16} {'ms':>10} {'GB/s':>8} {'of peak':>8}")
    for r in results["rows"]:
        bandwidth = "-" if r["bandwidth_gbs"] is None else f"{r['bandwidth_gbs']:.0f}"
        fraction = "-" if r["peak_fraction"] is None else f"{r['peak_fraction']:.0%}"
        print(
            f"{r['model']:<8} {r['pass']:<9} {_label((r['T'], r['B'], r['C'])):>16} "
            f"{r['time_ms']:>10.3f} {bandwidth:>8} {fraction:>8}"
        )
    for s in results["ratios"]:
        print(f"{s['model']} vs {s['baseline']} at {s['shape']}: x{s['speedup']:.2f}")
    for t in results["targets"]:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        worst = "" if t["worst"] is None else f" (worst of {t['cases']}: {t['worst']:.3g})"
        print(f"target {t['model']} {t['target']}: {verdict}{worst}")
    for e in results["errors"]:
        print(f"{e['model']} {_label((e['T'], e['B'], e['C']))}: {e['error']}")
    machine = results["machine"]
    print(f"Machine: {machine.get('gpu', machine['device'])}, torch {machine['torch']}")


def plot(path: Path, results: dict[str, Any]) -> None:
    """Bandwidth fraction of each op and pass against elements, and the speed-ups."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5))
    for model in dict.fromkeys(r["model"] for r in results["rows"]):
        for pass_, marker in zip(PASSES, "o^s", strict=True):
            points = sorted(
                (r["T"] * r["B"] * r["C"], r["peak_fraction"] or r["bandwidth_gbs"] or 0)
                for r in results["rows"]
                if r["model"] == model and r["pass"] == pass_ and r["bandwidth_gbs"] is not None
            )
            if points:
                left.semilogx(*zip(*points, strict=True), marker=marker, ls="", label=f"{model} {pass_}")
    left.axhline(0.7, color="k", lw=0.8, ls="--")
    left.set(xlabel="elements T·B·C", ylabel="minimum bytes / time / peak", title="achieved bandwidth")
    left.legend(fontsize=6, ncol=3)
    labels = [f"{s['model']} vs {s['baseline']}\n{s['shape']}" for s in results["ratios"]]
    right.bar(range(len(labels)), [s["speedup"] for s in results["ratios"]])
    right.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
    right.axhline(1.0, color="k", lw=0.8)
    right.set(yscale="log", ylabel="speed-up (x), fwd+bwd", title="our neurons against SpikingJelly")
    machine = results["machine"]
    fig.suptitle(f"snn-parallel bench --quick: {machine.get('gpu', machine['device'])}, torch {machine['torch']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    """``snn-parallel bench --quick`` (the options of :func:`snn_parallel.bench.add_arguments`), reached through
    :func:`snn_parallel.bench.run.main`, which has checked the device and ``--plot``."""
    explicit = args.shapes is not DEFAULT_SHAPES
    shapes = args.shapes if explicit else QUICK_SHAPES
    try:
        results = run(
            args.device,
            shapes=shapes,
            scan_shape=None if explicit else SCAN_SHAPE,
            repeats=args.repeats,
            json_path=args.json,
            resume=args.resume,
        )
    except ValueError as exc:
        print(f"snn-parallel bench: error: {exc}", file=sys.stderr)
        return 2
    print_table(results)
    if args.plot is not None:
        plot(args.plot, results)
    return 0
