"""``snn-parallel bench``: time our parallel neurons against snnTorch and SpikingJelly.

**What is timed.** One training step of a lone neuron layer: the forward pass over the whole
sequence ``x = rand(T, B, C) * 1.5`` (``requires_grad=True``) plus ``spikes.sum().backward()``.
Each case gets one warm-up run and then the median of ``--repeats`` runs. Slow cases get fewer
runs: no further run starts once it would take the measured runs past about 10 s, so a run
longer than 5 s is measured once or twice. The count is set from the measured runs and not
from the warm-up, so a stall during the warm-up does not cut it. Every row reports the number
of runs used. Gradients are cleared outside the timed region. On CUDA the device is
synchronised around each run. The baselines are snnTorch's ``Leaky`` stepped in a Python loop
over ``x.unbind(0)`` (indexing ``x[t]`` instead makes the backward pass O(T^2)), and
SpikingJelly's multi-step ``LIFNode``, ``PSN`` and ``SlidingPSN``.

**How memory is measured.** The peak resident memory added by the runs, warm-up included:
``VmHWM`` after the runs minus the ``VmRSS`` just before the first forward pass, both read from
``/proc/self/status``. The high-water mark is reset first by writing ``5`` to
``/proc/self/clear_refs``. Where that fails, the process's lifetime peak is used instead
(``VmHWM``, or ``ru_maxrss`` without ``/proc``). That fallback can under-count, and rows say
which method they used. On CUDA the figure is ``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats``, minus the memory already allocated.

**On a GPU** (``--device cuda``) the default shapes are T in {1024, 4096, 16384, 65536} by
B·C in {256, 4096, 65536} (``CUDA_SHAPES``, up to 2^30 elements), our neurons take their default
``backend="auto"`` (the CuPy kernels when CuPy works; each row names the backend), the input
checks that read data are off, and SpikingJelly 0.0.0.0.14's nodes run their CuPy backend
(SpikingJelly 2.x picks its fastest path itself). Each row also gives the achieved bandwidth:
``bytes`` / time, where ``bytes`` is a lower bound any implementation must move, 4 float32
tensors of T·B·C elements (read x, write the spikes, read their gradient, write x's), and its
fraction of the device's peak bandwidth (from the memory clock and bus width, else a table).
Then the recurrence forward alone, ``linear_scan`` on float32 ``[T, B, C]`` with time-varying
decays at B·C·T = 2^28 (``RECURRENCE_SHAPES``), which moves 12 bytes per element (read a and b,
write h): its bandwidth fraction is the kernel's memory-roofline figure.

**Why subprocesses.** Peak memory belongs to a whole process. If the cases ran one after
another in one process, their allocator caches and high-water marks would mix. A case that
crashed, ran out of memory or hung would also take the whole benchmark down with it. So each
(model, shape) case runs in a fresh ``python -m snn_parallel.bench --worker`` process, which
prints one JSON line. A failure becomes a row with an ``error`` field.

**Interrupted runs.** The ``--json`` file is rewritten after every case (``"complete": false`` until
the last), so a run cut short by a job's time limit keeps what it measured. ``--resume`` continues
it: the cases already in the file are kept and only the others run. It refuses a file measured
on another device, GPU or torch version.

Cases run from the smallest to the largest. Some larger cases of a model are skipped:

- a case that is at least as large in T, B and C as a case that failed;
- a case with the same B and C as a measured case, when the time of that measured case scaled
  linearly to the larger T (a lower bound) says that warm-up plus one run would exceed
  ``--timeout``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch import nn

from ._validation import validation
from .neurons import LTC, PRF, PSPLIF, DecoupledLIF, DynamicDecay
from .ops import linear_scan
from .ops._cuda import unavailable_reason

Shape = tuple[int, int, int]
Runner = Callable[[torch.Tensor], torch.Tensor]
DEFAULT_SHAPES: list[Shape] = [(1024, 32, 256), (1024, 4, 64), (4096, 4, 64), (16384, 4, 64)]
#: default shapes with --device cuda: T x B·C (C = 256), at most 2^30 elements
CUDA_SHAPES: list[Shape] = [(t, lanes // 256, 256) for t in (1024, 4096, 16384, 65536) for lanes in (256, 4096, 65536)
                            if t * lanes <= 1 << 30]
#: shapes of the recurrence-forward measurement with --device cuda (2^28 elements each)
RECURRENCE_SHAPES: list[Shape] = [(1024, 1024, 256), (4096, 256, 256), (16384, 64, 256), (65536, 16, 256)]
RECURRENCE = "recurrence_forward"
#: peak memory bandwidth (bytes/s) by device-name fragment, where the driver does not report the memory clock
PEAK_BANDWIDTH = {"H200": 4.8e12, "H100 NVL": 3.9e12, "H100 PCIe": 2.0e12, "H100": 3.35e12}
MEASURE_BUDGET_S = 10.0  # no further measured run starts once it would take the runs past this
PLOT_BASELINES = ("sj_lif", "sj_psn")


def _ours(cls: type[nn.Module], **kwargs: Any) -> Callable[[int, int], tuple[nn.Module, Runner]]:
    def build(steps: int, features: int) -> tuple[nn.Module, Runner]:
        neuron = cls(features, **kwargs)
        return neuron, lambda x: neuron(x)[0]

    return build


def _snntorch_leaky(steps: int, features: int) -> tuple[nn.Module, Runner]:
    import snntorch

    lif = snntorch.Leaky(beta=0.5)

    def run(x: torch.Tensor) -> torch.Tensor:
        mem, spikes = lif.init_leaky(), []
        for x_t in x.unbind(0):
            spike, mem = lif(x_t, mem)
            spikes.append(spike)
        return torch.stack(spikes)

    return lif, run


def _spikingjelly(make: Callable[[int, Any, Any], nn.Module]) -> Callable[[int, int], tuple[nn.Module, Runner]]:
    def build(steps: int, features: int) -> tuple[nn.Module, Runner]:
        from spikingjelly.activation_based import functional, neuron, surrogate

        module = make(steps, neuron, surrogate)

        def run(x: torch.Tensor) -> torch.Tensor:
            functional.reset_net(module)
            return module(x)

        return module, run

    return build


# name -> (builder (T, C) -> (module, run), package a baseline needs or None for ours)
MODELS: dict[str, tuple[Callable[[int, int], tuple[nn.Module, Runner]], str | None]] = {
    "dsn": (_ours(DynamicDecay), None),
    "prf": (_ours(PRF), None),
    "lif": (_ours(DecoupledLIF), None),
    "ltc": (_ours(LTC, mode="parallel"), None),
    "psplif": (_ours(PSPLIF), None),  # TSSL-BP's neuron and backward; its output is the PSP
    "snntorch_leaky": (_snntorch_leaky, "snntorch"),
    "sj_lif": (_spikingjelly(lambda T, n, s: n.LIFNode(step_mode="m", surrogate_function=s.ATan())), "spikingjelly"),
    "sj_psn": (_spikingjelly(lambda T, n, s: n.PSN(T=T)), "spikingjelly"),  # input [T, N, *]
    "sj_sliding_psn": (_spikingjelly(lambda T, n, s: n.SlidingPSN(k=8, exp_init=True, step_mode="m")), "spikingjelly"),
}


def _parse_shape(text: str) -> Shape:
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdecimal() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected TxBxC with positive integers (e.g. 1024x32x256), got {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to ``parser``."""
    parser.add_argument("--shapes", nargs="+", type=_parse_shape, default=DEFAULT_SHAPES, metavar="TxBxC",
                        help="cases to time (default: 1024x32x256 1024x4x64 4096x4x64 16384x4x64; with --device cuda "
                             "T in 1024..65536 by B*C in 256..65536, see CUDA_SHAPES)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), metavar="NAME",
                        help=f"models to time, from: {', '.join(MODELS)} (default: all)")
    parser.add_argument("--repeats", type=_positive(int), default=5, help="timed runs per case after one warm-up")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write machine info, options, rows and ratios")
    parser.add_argument("--plot", type=Path, metavar="PATH", help="write a PNG (needs matplotlib)")
    parser.add_argument("--timeout", type=_positive(float), default=300.0, metavar="SECONDS", help="limit per case")
    parser.add_argument("--resume", action="store_true",
                        help="keep the cases already in the --json file (of an interrupted run on the same device) "
                             "and measure only the rest")
    parser.add_argument("--quick", action="store_true",
                        help="the quick GPU benchmark (snn_parallel.bench_quick): forward and backward of the kernels "
                             "against the memory-bandwidth bound and SpikingJelly, at fixed shapes (--shapes replaces "
                             "them), in a few minutes")


# ----------------------------------------------------------------------------- worker side
def _status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status``, or ``None`` without ``/proc``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _peak_kib() -> int:
    """The resident high-water mark in KiB: ``VmHWM``, else ``ru_maxrss``."""
    peak = _status_kib("VmHWM")
    if peak is not None:
        return peak
    import resource  # POSIX only, hence not at the top

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss // 1024 if sys.platform == "darwin" else maxrss  # bytes on macOS, KiB on Linux


def _reset_peak() -> str:
    """Reset the resident high-water mark if possible; returns the memory method used."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return "lifetime peak (high-water mark not resettable)"
    rss = _status_kib("VmRSS")
    reset = rss is not None and _peak_kib() <= rss + 1024  # the mark now sits at the current RSS
    return "VmHWM reset via clear_refs" if reset else "lifetime peak (clear_refs had no effect)"


def _timed(step: Callable[[], None], repeats: int, cuda: bool) -> dict[str, Any]:
    """One warm-up and up to ``repeats`` measured runs of ``step`` (see module doc), with the peak memory."""

    def once() -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base, method = torch.cuda.memory_allocated(), "torch.cuda.max_memory_allocated"
    else:
        method = _reset_peak()
        base = _status_kib("VmRSS") or _peak_kib()
    warmup, times = once(), [once()]
    while len(times) < repeats and sum(times) + min(times) <= MEASURE_BUDGET_S:
        times.append(once())
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else (_peak_kib() - base) / 1024
    return {"time_ms": statistics.median(times) * 1e3, "times_ms": [t * 1e3 for t in times],
            "warmup_ms": warmup * 1e3, "repeats": len(times), "peak_mib": peak, "memory_method": method,
            "threads": torch.get_num_threads()}


def measure(model: str, shape: Shape, repeats: int, device: str) -> dict[str, Any]:
    """Time forward + backward of ``model`` on ``shape`` in this process (see module doc)."""
    steps, batch, features = shape
    module, run = MODELS[model][0](steps, features)
    module.to(device)
    x = (torch.rand(steps, batch, features, device=device) * 1.5).requires_grad_()
    cuda = device == "cuda"
    if cuda:
        _use_fastest_gpu_path(module)

    def step() -> None:
        x.grad = None
        module.zero_grad(set_to_none=True)
        run(x).sum().backward()

    with validation(not cuda):  # on a GPU the NaN check would synchronise every call
        result = _timed(step, repeats, cuda)
    if cuda:
        result.update(_bandwidth(4 * 4 * x.numel(), result["time_ms"]))
        if MODELS[model][1] is None:
            result["backend"] = _our_gpu_backend()
    return result


def measure_recurrence(shape: Shape, repeats: int) -> dict[str, Any]:
    """Time the forward of ``linear_scan`` on float32 CUDA tensors ``[T, B, C]`` (see module doc)."""
    a = torch.rand(shape, device="cuda") * 0.5 + 0.5
    b = torch.randn(shape, device="cuda")
    h0 = torch.zeros(shape[1:], device="cuda")
    with torch.no_grad():
        result = _timed(lambda: linear_scan(a, b, h0, validate=False), repeats, True)
    return {**result, **_bandwidth(12 * a.numel(), result["time_ms"]), "backend": _our_gpu_backend()}


def _use_fastest_gpu_path(module: nn.Module) -> None:
    """SpikingJelly 0.0.0.0.14 nodes that offer ``'cupy'`` run it when CuPy is installed (2.x picks its own path)."""
    if importlib.util.find_spec("cupy") is None:
        return
    for node in module.modules():
        if "cupy" in getattr(node, "supported_backends", ()):
            node.backend = "cupy"


def _our_gpu_backend() -> str:
    """What ``backend="auto"`` runs on this GPU: ``"cupy"``, or ``"torch"`` with the reason."""
    reason = unavailable_reason(torch.cuda.current_device())
    return "cupy" if reason is None else f"torch ({reason})"


def peak_bandwidth() -> tuple[float, str]:
    """The current GPU's peak memory bandwidth in bytes/s and where the figure comes from: 2 (double data
    rate) x memory clock x bus width, read from torch or the CUDA runtime, else :data:`PEAK_BANDWIDTH`."""
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    source = "torch.cuda.get_device_properties"
    if not (clock_khz and bus_bits) and importlib.util.find_spec("cupy") is not None:
        try:
            from cupy.cuda import runtime

            device = torch.cuda.current_device()
            clock_khz = runtime.deviceGetAttribute(runtime.cudaDevAttrMemoryClockRate, device)
            bus_bits = runtime.deviceGetAttribute(runtime.cudaDevAttrGlobalMemoryBusWidth, device)
            source = "CUDA device attributes (memory clock, bus width)"
        except Exception:  # an attribute this runtime does not report: fall back to the table
            clock_khz = bus_bits = 0
    if clock_khz and bus_bits:
        return 2 * clock_khz * 1e3 * bus_bits / 8, source
    for fragment, value in PEAK_BANDWIDTH.items():
        if fragment in props.name:
            return value, f"table entry {fragment!r}"
    return float("nan"), f"unknown for {props.name}"


def _bandwidth(nbytes: int, time_ms: float) -> dict[str, Any]:
    achieved = nbytes / (time_ms / 1e3)
    return {"bytes": nbytes, "bandwidth_gbs": achieved / 1e9, "peak_fraction": achieved / peak_bandwidth()[0]}


def _worker(job: str) -> int:
    spec = json.loads(job)
    try:
        if spec["model"] == RECURRENCE:
            result = measure_recurrence(tuple(spec["shape"]), spec["repeats"])
        else:
            result = measure(spec["model"], tuple(spec["shape"]), spec["repeats"], spec["device"])
    except Exception as exc:  # reported as the row's error, never a crash of the benchmark
        result = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result), flush=True)
    return 0


# ----------------------------------------------------------------------------- parent side
def _label(shape: Shape) -> str:
    return "x".join(map(str, shape))


def _run_case(model: str, shape: Shape, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one case in a fresh subprocess; failures become ``{"error": ...}``."""
    job = json.dumps({"model": model, "shape": shape, "repeats": args.repeats, "device": args.device})
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run([sys.executable, "-m", __spec__.name, "--worker", job],
                              capture_output=True, text=True, timeout=args.timeout, env=env)
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


def _skip_reason(model: str, shape: Shape, rows: list[dict[str, Any]], timeout: float) -> str | None:
    """Why ``model`` at ``shape`` need not run given the rows so far (see module doc), or ``None``."""
    for row in (r for r in rows if r["model"] == model):
        done = (row["T"], row["B"], row["C"])
        if "error" in row and all(d <= s for d, s in zip(done, shape)):
            return f"skipped after {row['shape']}: {row['error']}"
        if "error" not in row and done[1:] == shape[1:] and done[0] < shape[0]:
            projected = 2 * row["time_ms"] / 1e3 * shape[0] / done[0]  # warm-up + one run, >= linear in T
            if projected > timeout:
                return f"skipped: >= {projected:.0f} s projected from {row['shape']} (--timeout {timeout:g})"
    return None


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Speed-up (baseline time / our time) of each of our neurons against each baseline, per shape."""
    timed = [r for r in rows if "error" not in r]
    return [{"shape": ours["shape"], "model": ours["model"], "baseline": base["model"],
             "speedup": base["time_ms"] / ours["time_ms"]}
            for ours in timed if MODELS[ours["model"]][1] is None
            for base in timed if MODELS[base["model"]][1] is not None and base["shape"] == ours["shape"]]


def machine_info(device: str) -> dict[str, Any]:
    """CPU model, core count, torch version and threads, and device (with the GPU name on CUDA)."""
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
    except OSError:
        names = []
    info = {"cpu": names[0] if names else platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "device": device,
            "python": platform.python_version()}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        peak, source = peak_bandwidth()
        info["peak_bandwidth_gbs"], info["peak_bandwidth_source"] = peak / 1e9, source
    return info


def _machine_line(info: dict[str, Any]) -> str:
    device = f"cuda ({info['gpu']}, peak {info['peak_bandwidth_gbs']:.0f} GB/s)" if "gpu" in info else info["device"]
    return (f"Machine: {info['cpu']}, {info['cores']} cores, {info['threads']} torch threads, "
            f"torch {info['torch']}, device {device}")


def _print_table(shapes: list[Shape], rows: list[dict[str, Any]], speedups: list[dict[str, Any]]) -> None:
    for shape in shapes:
        print(f"\nT={shape[0]} B={shape[1]} C={shape[2]}")
        print(f"  {'model':<15} {'time ms':>10} {'runs':>5} {'peak MiB':>9}  speed-up")
        for row in (r for r in rows if r["shape"] == _label(shape)):
            if "error" in row:
                print(f"  {row['model']:<15} {row['error']}")
                continue
            mine = ", ".join(f"x{s['speedup']:.1f} vs {s['baseline']}" for s in speedups
                             if s["shape"] == row["shape"] and s["model"] == row["model"])
            print(f"  {row['model']:<15} {row['time_ms']:>10.2f} {row['repeats']:>5} {row['peak_mib']:>9.1f}  {mine}"
                  + (f"  {_bandwidth_text(row)}" if "bandwidth_gbs" in row else ""))


def _bandwidth_text(row: dict[str, Any]) -> str:
    return f"{row['bandwidth_gbs']:.0f} GB/s ({row['peak_fraction']:.0%} of peak)"


def _plot(path: Path, rows: list[dict[str, Any]], speedups: list[dict[str, Any]], info: dict[str, Any],
          recurrence: Sequence[dict[str, Any]] = ()) -> None:
    """Time against T at the (B, C) measured at the most lengths, speed-ups, and on a GPU the bandwidth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gpu = "peak_bandwidth_gbs" in info
    fig, axes = plt.subplots(1, 3 if gpu else 2, figsize=(19 if gpu else 13, 5))
    left, right = axes[0], axes[1]
    batch, features = Counter((r["B"], r["C"]) for r in rows).most_common(1)[0][0]
    for model in dict.fromkeys(r["model"] for r in rows):
        points = sorted((r["T"], r["time_ms"]) for r in rows
                        if r["model"] == model and "error" not in r and (r["B"], r["C"]) == (batch, features))
        if points:
            left.loglog(*zip(*points), marker="o", label=model)
    left.set(xlabel=f"T (B={batch}, C={features})", ylabel="forward + backward (ms)", title="time vs sequence length")
    if gpu:
        _plot_bandwidth(axes[2], rows, recurrence)
    bars = [s for s in speedups if s["baseline"] in PLOT_BASELINES]
    shapes = list(dict.fromkeys(s["shape"] for s in bars))
    pairs = list(dict.fromkeys((s["model"], s["baseline"]) for s in bars))
    width = 0.8 / max(len(pairs), 1)
    for i, (model, baseline) in enumerate(pairs):
        values = {s["shape"]: s["speedup"] for s in bars if (s["model"], s["baseline"]) == (model, baseline)}
        xs = [j + i * width for j, shape in enumerate(shapes) if shape in values]
        right.bar(xs, [values[shape] for shape in shapes if shape in values], width, label=f"{model} vs {baseline}")
    right.set_xticks([j + 0.4 - width / 2 for j in range(len(shapes))], shapes)
    right.axhline(1.0, color="k", lw=0.8)
    right.set(yscale="log", ylabel="speed-up (x)", title="speed-up of our neurons (TxBxC)")
    for axes in (left, right):
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7, ncol=2)
    fig.suptitle(f"snn-parallel bench: {info['cpu']}, {info['cores']} cores, device {info.get('gpu', info['device'])}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_bandwidth(axes: Any, rows: list[dict[str, Any]], recurrence: Sequence[dict[str, Any]]) -> None:
    """Achieved fraction of the peak bandwidth against elements, per model and for the recurrence forward."""
    timed = [r for r in [*rows, *recurrence] if "peak_fraction" in r]
    for model in dict.fromkeys(r["model"] for r in timed):
        points = sorted((r["T"] * r["B"] * r["C"], r["peak_fraction"]) for r in timed if r["model"] == model)
        axes.semilogx(*zip(*points), marker="o", ls="" if model != RECURRENCE else "-", label=model)
    axes.axhline(0.7, color="k", lw=0.8, ls="--")
    axes.set_ylim(0, 1.05)
    axes.set(xlabel="elements T·B·C", ylabel="lower-bound bytes / time / peak", title="achieved memory bandwidth")
    if timed:
        axes.legend(fontsize=7, ncol=2)


def _resumed_rows(args: argparse.Namespace, info: dict[str, Any]) -> dict[tuple[str, Shape], dict[str, Any]]:
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
        raise ValueError(f"--resume: {args.json} was measured on {where}, this run is on "
                         f"{ {key: info.get(key) for key in where} }")
    return {(row["model"], (row["T"], row["B"], row["C"])): row for row in rows}


def _save(args: argparse.Namespace, info: dict[str, Any], shapes: list[Shape], rows: list[dict[str, Any]],
          recurrence: list[dict[str, Any]], complete: bool) -> None:
    """Write the ``--json`` file; called after every case, so an interrupted run keeps what it measured."""
    if args.json is None:
        return
    options = {"shapes": [_label(s) for s in shapes], "models": list(args.models), "repeats": args.repeats,
               "device": args.device, "timeout": args.timeout, "json": str(args.json),
               "plot": None if args.plot is None else str(args.plot)}
    data = {"machine": info, "argv": [Path(sys.argv[0]).name, *sys.argv[1:]], "options": options,
            "complete": complete, "rows": rows, "ratios": ratios(rows), "recurrence": recurrence}
    write_json(args.json, data)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` through a temporary file: never a half-written file, even if the run is killed."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2))
    partial.replace(path)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark described by ``args`` (see :func:`add_arguments`); returns the exit code."""
    if args.device == "cuda" and not torch.cuda.is_available():
        print("snn-parallel bench: error: --device cuda: CUDA is not available in this torch build/machine",
              file=sys.stderr)
        return 2
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        print("snn-parallel bench: error: --plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 2
    if getattr(args, "quick", False):
        from . import bench_quick

        return bench_quick.main(args)
    info = machine_info(args.device)
    try:
        kept = _resumed_rows(args, info) if args.resume else {}
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
            print(f"[{i}/{len(cases)}] {model} {_label(shape)}: kept from {args.json}", file=sys.stderr, flush=True)
            continue
        reason = _skip_reason(model, shape, list(results.values()), args.timeout)
        result = {"error": reason} if reason else _run_case(model, shape, args)
        results[model, shape] = {"model": model, "shape": _label(shape), "T": shape[0], "B": shape[1], "C": shape[2],
                                 **result}
        status = result.get("error") or f"{result['time_ms']:.2f} ms x{result['repeats']}, {result['peak_mib']:.1f} MiB"
        print(f"[{i}/{len(cases)}] {model} {_label(shape)}: {status}", file=sys.stderr, flush=True)
        _save(args, info, shapes, so_far(False), so_far(True), complete=False)
    rows = [results[m, s] for s in shapes for m in models]
    recurrence = so_far(True)
    speedups = ratios(rows)
    _print_table(shapes, rows, speedups)
    for row in recurrence:
        print(f"\n{RECURRENCE} {row['shape']}: " + (row.get("error") or f"{row['time_ms']:.2f} ms, {_bandwidth_text(row)}"))
    print("\n" + _machine_line(info))
    _save(args, info, shapes, rows, recurrence, complete=True)
    if args.plot is not None:
        _plot(args.plot, rows, speedups, info, recurrence)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        raise SystemExit(_worker(sys.argv[2]))
    _parser = argparse.ArgumentParser(prog="python -m snn_parallel.bench", description=__doc__.split("\n")[0])
    add_arguments(_parser)
    raise SystemExit(main(_parser.parse_args()))
