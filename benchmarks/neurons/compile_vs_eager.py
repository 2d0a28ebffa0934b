r"""torch.compile against eager for a Linear -> neuron network of each core neuron.

For each neuron: the graph breaks that ``torch._dynamo.explain`` reports, whether the
compiled (inductor) forward gives the eager spikes, and the median time of forward +
backward, eager and compiled. Prints one line per neuron and writes the figures as JSON::

    OMP_NUM_THREADS=1 python benchmarks/neurons/compile_vs_eager.py --steps 16 \
        --json benchmarks/neurons/compile_vs_eager.json

The sequential neurons (LTC in paper mode, BRF, SE-adLIF, PSPLIF's surrogate path) unroll
their step loop into the graph, so their compile time grows with ``--steps``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _record import write_rows
from torch import nn

import snn_parallel as sp
from snn_parallel.neurons import PSPFilter

NEURONS = {
    "DynamicDecay": lambda: sp.DynamicDecay(),
    "PRF": lambda: sp.PRF(),
    "DecoupledLIF": lambda: sp.DecoupledLIF(),
    "LTC (paper)": lambda: sp.LTC(),
    "LTC (parallel)": lambda: sp.LTC(mode="parallel"),
    "BRF": lambda: sp.BRF(),
    "SEAdLIF": lambda: sp.SEAdLIF(),
    "PSPLIF": lambda: sp.PSPLIF(),
    "PSPFilter": lambda: PSPFilter(),
}


class LinearNeuron(nn.Module):
    def __init__(self, neuron: nn.Module, features: int) -> None:
        super().__init__()
        self.linear, self.neuron = nn.Linear(features, features), neuron

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.neuron(self.linear(x_seq))[0]


def median_ms(fn, x: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):  # the first run warms up
        start = time.perf_counter()
        fn(x).sum().backward()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    for name, make in NEURONS.items():
        torch.manual_seed(0)
        net = LinearNeuron(make(), args.features)
        x = torch.rand(args.steps, args.batch, args.features) * 2
        eager = net(x).detach()
        torch._dynamo.reset()
        breaks = torch._dynamo.explain(net)(x).graph_break_count
        torch._dynamo.reset()
        compiled = torch.compile(net)
        start = time.perf_counter()
        out = compiled(x)
        out.sum().backward()
        compile_s = time.perf_counter() - start
        row = {
            "neuron": name,
            "graph_breaks": breaks,
            "equal_spikes": bool(torch.equal(out.detach(), eager)),
            "max_abs_diff": float((out.detach() - eager).abs().max()),
            "compile_s": round(compile_s, 1),
            "eager_ms": round(median_ms(net, x, args.repeats), 2),
            "compiled_ms": round(median_ms(compiled, x, args.repeats), 2),
        }
        rows.append(row)
        print(
            f"{name:15s} breaks {breaks}  equal {row['equal_spikes']!s:5s}  eager {row['eager_ms']:7.2f} ms  "
            f"compiled {row['compiled_ms']:7.2f} ms  (compile {row['compile_s']} s)",
            flush=True,
        )
        if args.json:  # rewritten after every neuron, so that a run cut short keeps what it measured
            write_rows(
                __file__, args, rows, shape=[args.steps, args.batch, args.features], complete=len(rows) == len(NEURONS)
            )


if __name__ == "__main__":
    main()
