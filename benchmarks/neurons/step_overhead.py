"""What one time step costs outside the arithmetic, in the step loops of snnTorch-style code.

    OMP_NUM_THREADS=1 python benchmarks/neurons/step_overhead.py [--batch 32 --features 256]

prints microseconds per call (best of ``--repeats`` timings of ``--calls`` calls each) of:

- a spike function on one ``[B, C]`` tensor with autograd on: ours (``ATan``), snnTorch's ``atan()``
  callable run as it is, and the bare comparison ``(x > 0).to(x.dtype)`` (the floor);
- the NaN/inf input check on one ``[B, C]`` tensor as the neurons run it, and the same sum tested by a
  second tensor op (``torch.isfinite(x.sum())``) for comparison;
- one step forward + backward (100 steps of a ``Linear(C, C)`` and a neuron, then one backward), and one
  step forward alone under ``torch.no_grad()``, of snnTorch's ``Leaky(beta=0.9)`` and of our snnTorch skins
  in its place.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import snntorch
import snntorch.surrogate
import torch
from snn_parallel.adapters import snntorch as skins

from snn_parallel._validation import _all_finite
from snn_parallel.surrogate import ATan

STEPS = 100


def best_us(fn: Callable[[], object], calls: int, repeats: int) -> float:
    """Microseconds per call of ``fn``: the best of ``repeats`` timings of ``calls`` calls, after a warm-up."""
    for _ in range(max(1, calls // 10)):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / calls * 1e6


def step_loop(neuron: torch.nn.Module, synapse: torch.nn.Linear, x: torch.Tensor, backward: bool = True) -> None:
    """``STEPS`` steps of ``neuron(synapse(x_t), mem)`` from ``init_leaky()``, as snnTorch's tutorials write them, then
    one backward (or, without ``backward``, the steps alone under ``torch.no_grad()``, as inference runs them)."""
    with torch.set_grad_enabled(backward):
        mem, spikes = neuron.init_leaky(), []
        for x_t in x:
            spk, mem = neuron(synapse(x_t), mem)
            spikes.append(spk)
    if backward:
        torch.stack(spikes).sum().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.features, requires_grad=True)
    plain = x.detach()
    print(f"[B, C] = [{args.batch}, {args.features}], torch {torch.__version__}, {torch.get_num_threads()} thread(s)")

    ours, theirs = ATan(inclusive=False), snntorch.surrogate.atan()
    for label, fn in (
        ("spike function, ours (ATan)", lambda: ours(x)),
        ("spike function, snnTorch's atan()", lambda: theirs(x)),
        ("comparison alone (x > 0)", lambda: (x > 0).to(x.dtype)),
        ("NaN/inf check, as the neurons run it", lambda: _all_finite(plain)),
        ("NaN/inf check, sum tested by a tensor op", lambda: bool(torch.isfinite(plain.sum()))),
    ):
        print(f"{label:42s} {best_us(fn, args.calls, args.repeats):8.1f} us per call")

    sequence = torch.randn(STEPS, args.batch, args.features)
    synapse = torch.nn.Linear(args.features, args.features)
    for label, make in (
        ("snn.Leaky(beta=0.9)", lambda: snntorch.Leaky(beta=0.9)),
        ("DecoupledLIF(beta=0.9)", lambda: skins.DecoupledLIF(beta=0.9)),
        ("PRF", lambda: skins.PRF(args.features)),
        ("DynamicDecay", lambda: skins.DynamicDecay(args.features)),
    ):
        neuron = make()
        for backward, what in ((True, "forward + backward"), (False, "forward, no_grad")):
            per_loop = best_us(lambda n=neuron, b=backward: step_loop(n, synapse, sequence, b), 1, args.repeats)
            print(f"step, {what:18s} {label:22s} {per_loop / STEPS:8.1f} us per step")


if __name__ == "__main__":
    main()
