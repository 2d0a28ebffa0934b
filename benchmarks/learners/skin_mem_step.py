"""One step of an snnTorch skin whose ``mem`` the model reads: the core's parallel path on a sequence of one
step against its step, the route the trainers take when they run a model one step at a time.

    OMP_NUM_THREADS=1 python benchmarks/learners/skin_mem_step.py --batch 128 --features 1000

prints, per skin, microseconds per step (best of ``--repeats`` runs of 8 steps) of the forward alone and of
forward and backward: ``parallel`` is the skin's whole-sequence path at T = 1, ``stepped`` the same call with
the core's sequence path replaced by its step (what a trainer's single step runs), ``core.step`` the bare step
of the core (no ``mem``, the lower bound).
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
from snn_parallel.adapters import snntorch as skins

from snn_parallel.learners.network import _stepwise

KINDS = [
    ("DynamicDecay", {}),
    ("PRF", {}),
    ("PRF", {"reset_mechanism": "subtract"}),
    ("DecoupledLIF", {}),
    ("DecoupledLIF", {"mem": "reset_free"}),
    ("LTC", {}),
    ("PSPLIF", {}),
]
STEPS = 8


def _run(skin: skins.LeakyAdapter, x: torch.Tensor, route: str, backward: bool) -> None:
    state, outputs = None, []
    for x_t in x:
        if route == "core.step":
            spk, state = skin.core.step(x_t, state)
            mem = state[0]
        else:
            with _stepwise(skin.core) if route == "stepped" else contextlib.nullcontext():
                spk, mem, state = skin._driven_sequence(x_t.unsqueeze(0), state)
        outputs.append(spk.sum() + mem.sum())
    if backward:
        torch.stack(outputs).sum().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--features", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    routes = ("parallel", "stepped", "core.step")
    print(f"B={args.batch} C={args.features}, us per step; forward | forward+backward: {', '.join(routes)}")
    for name, options in KINDS:
        torch.manual_seed(0)
        skin = getattr(skins, name)(args.features, init_hidden=True, output=True, **options)
        x = (torch.rand(STEPS, args.batch, args.features) * 2).requires_grad_()
        figures = []
        for backward in (False, True):
            for route in routes:
                _run(skin, x, route, backward)  # warm-up
                best = float("inf")
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    _run(skin, x, route, backward)
                    best = min(best, time.perf_counter() - start)
                figures.append(f"{best / STEPS * 1e6:8.0f}")
        label = name + "".join(f" {k}={v}" for k, v in options.items())
        print(f"{label:32s} {' '.join(figures[:3])} | {' '.join(figures[3:])}")


if __name__ == "__main__":
    main()
