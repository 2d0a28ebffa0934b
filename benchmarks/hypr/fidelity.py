"""How far the official HYPR code's three departures move the gradient from ``HYPRTrainer``'s.

A layer of BRF or SE-adLIF neurons (feed-forward or recurrent, as ``RecurrentBlock``) under the
HYPR configurations' leaky-integrator readout (``Linear -> LeakyIntegrator``, tau in [15, 25]),
on a batch of the built-in pixel-serial digits (8x8 images read one pixel per step, T = 64), in
float64. For each seed the gradient of the per-step cross-entropy is taken four ways:

- ``HYPRTrainer`` (exact per-neuron Jacobians; ``chunk=16``, which does not change it);
- the official code's computation with each departure alone and with all of them
  (``tests/hypr_official.py``, written from the official code's equations: BRF's spike
  derivative one step late, SE-adLIF's A_t without the previous spike, the recurrence's
  Jacobians and presynaptic input at the current spike);
- BPTT through the whole network (what a stateful readout's temporal path adds).

Each row is one network and one departure: the relative difference ||g - g_ours|| / ||g_ours|| of
the hidden layer's gradient (synapse weights and biases, the neurons' parameters; all of it, and
per parameter) and its cosine with ours, over the seeds, mean and range. The readout's gradients are the same every way
(exact). Also checks that the official computation with no departure equals ``HYPRTrainer``.

    OMP_NUM_THREADS=1 python benchmarks/hypr/fidelity.py --json benchmarks/hypr/fidelity.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from hypr_official import hypr_network, official_hypr_gradients  # noqa: E402
from learner_support import bptt_gradients, trainer_gradients  # noqa: E402

from snn_parallel.learners import HYPRTrainer, StepLoss  # noqa: E402
from snn_parallel.tasks import SequentialDigits  # noqa: E402

DEPARTURES = {
    "late_spike_derivative": {"late_spike_derivative": True},
    "drop_previous_spike": {"drop_previous_spike": True},
    "current_spike_recurrence": {"current_spike_recurrence": True},
    "official (all three)": {
        "late_spike_derivative": True,
        "drop_previous_spike": True,
        "current_spike_recurrence": True,
    },
}
#: the gain on the Glorot-uniform synapse weights that makes each layer fire a few % of the time on the digits
GAIN = {("BRF", False): 600.0, ("BRF", True): 200.0, ("SEAdLIF", False): 60.0, ("SEAdLIF", True): 25.0}


def hidden_names(model: nn.Sequential) -> list[str]:
    readout = {f"{len(model) - 2}.weight", f"{len(model) - 2}.bias", f"{len(model) - 1}.tau"}
    return [n for n, _ in model.named_parameters() if n not in readout]


def relative(grads: dict, ours: dict, names: list[str]) -> float:
    a = torch.cat([grads[n].flatten() for n in names])
    b = torch.cat([ours[n].flatten() for n in names])
    return float((a - b).norm() / b.norm())


def cosine(grads: dict, ours: dict, names: list[str]) -> float:
    a = torch.cat([grads[n].flatten() for n in names])
    b = torch.cat([ours[n].flatten() for n in names])
    return float(a @ b / (a.norm() * b.norm()))


def summary(values: list[float]) -> dict:
    return {"mean": round(sum(values) / len(values), 4), "min": round(min(values), 4), "max": round(max(values), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data = SequentialDigits("train", "pixel")
    loss = StepLoss("ce", "all")
    rows, worst_exact = [], 0.0
    for kind in ("BRF", "SEAdLIF"):
        for recurrent in (False, True):
            measured: dict[str, dict[str, list[float]]] = {}
            rates = []
            for seed in range(args.seeds):
                model = hypr_network(kind, recurrent, 1, args.hidden, 10, GAIN[kind, recurrent], seed)
                pick = torch.Generator().manual_seed(seed)
                index = torch.randperm(len(data.targets), generator=pick)[: args.batch]
                x = data.inputs[index].transpose(0, 1).double()  # [T, B, 1]
                y = data.targets[index]
                names = hidden_names(model)
                ours = trainer_gradients(HYPRTrainer, model, x, y, chunk=16)
                with torch.no_grad():
                    first = model[0](x) if recurrent else model[1](model[0](x))[0]
                rates.append(float(first.mean()))
                sequence_loss = lambda out: loss.sequence_loss(out, y)  # noqa: E731
                exact = official_hypr_gradients(model, x, sequence_loss)
                worst_exact = max(worst_exact, max(relative(exact, ours, [n]) for n in ours))
                ways = {
                    name: official_hypr_gradients(model, x, sequence_loss, **flags)
                    for name, flags in DEPARTURES.items()
                }
                ways["BPTT (the readout's temporal path)"] = bptt_gradients(model, x, y, loss)
                for way, grads in ways.items():
                    entry = measured.setdefault(way, {})
                    entry.setdefault("hidden layer", []).append(relative(grads, ours, names))
                    entry.setdefault("hidden layer cosine", []).append(cosine(grads, ours, names))
                    for name in names:
                        entry.setdefault(name, []).append(relative(grads, ours, [name]))
                    readout = [n for n in ours if n not in names]
                    entry.setdefault("readout", []).append(relative(grads, ours, readout))
            for way, entry in measured.items():
                rate = round(sum(rates) / len(rates), 4)
                row = {"neuron": kind, "recurrent": recurrent, "against_ours": way, "firing_rate": rate}
                row.update({name: summary(values) for name, values in entry.items()})
                rows.append(row)
                hidden = row["hidden layer"]
                print(
                    f"{kind:8s} {'recurrent' if recurrent else 'feed-forward':12s} {way:36s} hidden layer "
                    f"{100 * hidden['mean']:6.1f} % ({100 * hidden['min']:.1f}-{100 * hidden['max']:.1f}), cosine "
                    f"{row['hidden layer cosine']['mean']:.3f}, readout {row['readout']['max']:.1e}, "
                    f"firing rate {row['firing_rate']:.3f}",
                    flush=True,
                )
    print(
        "HYPRTrainer against the official computation without departures: largest relative difference "
        f"{worst_exact:.1e}"
    )
    if args.json:
        options = " ".join(f"--{k} {v}" for k, v in vars(args).items() if k != "json")
        meta = {
            "command": f"OMP_NUM_THREADS=1 python benchmarks/hypr/fidelity.py {options} --json {args.json}",
            "torch": torch.__version__,
            "machine": platform.machine(),
            "task": "SequentialDigits('train', 'pixel'), T = 64, float64",
            "exact_against_ours": worst_exact,
        }
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
