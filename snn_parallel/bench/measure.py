"""The worker side: time one case in this process (see the package doc) and print it as JSON."""

from __future__ import annotations

import importlib.util
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._validation import validation
from ..ops import linear_scan
from ..ops._cuda import unavailable_reason
from .bandwidth import achieved
from .cases import MODELS, RECURRENCE, Shape
from .memory import peak_kib, reset_peak, status_kib

MEASURE_BUDGET_S = 10.0  # no further measured run starts once it would take the runs past this


def timed(step: Callable[[], None], repeats: int, cuda: bool) -> dict[str, Any]:
    """One warm-up and up to ``repeats`` measured runs of ``step`` (see the package doc), with the peak memory."""

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
        method = reset_peak()
        base = status_kib("VmRSS") or peak_kib()
    warmup, times = once(), [once()]
    while len(times) < repeats and sum(times) + min(times) <= MEASURE_BUDGET_S:
        times.append(once())
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else (peak_kib() - base) / 1024
    return {
        "time_ms": statistics.median(times) * 1e3,
        "times_ms": [t * 1e3 for t in times],
        "warmup_ms": warmup * 1e3,
        "repeats": len(times),
        "peak_mib": peak,
        "memory_method": method,
        "threads": torch.get_num_threads(),
    }


def measure(model: str, shape: Shape, repeats: int, device: str) -> dict[str, Any]:
    """Time forward + backward of ``model`` on ``shape`` in this process (see the package doc)."""
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
        result = timed(step, repeats, cuda)
    if cuda:
        result.update(achieved(4 * 4 * x.numel(), result["time_ms"]))
        if MODELS[model][1] is None:
            result["backend"] = _our_gpu_backend()
    return result


def measure_recurrence(shape: Shape, repeats: int) -> dict[str, Any]:
    """Time the forward of ``linear_scan`` on float32 CUDA tensors ``[T, B, C]`` (see the package doc)."""
    a = torch.rand(shape, device="cuda") * 0.5 + 0.5
    b = torch.randn(shape, device="cuda")
    h0 = torch.zeros(shape[1:], device="cuda")
    with torch.no_grad():
        result = timed(lambda: linear_scan(a, b, h0, validate=False), repeats, True)
    return {**result, **achieved(12 * a.numel(), result["time_ms"]), "backend": _our_gpu_backend()}


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


def worker(job: str) -> int:
    """Measure the case ``job`` (JSON: model, shape, repeats, device) and print its row as one JSON line."""
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
