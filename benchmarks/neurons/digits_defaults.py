"""Every SpikingJelly node at its default arguments against SpikingJelly's own ``LIFNode``.

The same ``Linear -> node -> Linear`` network (PyTorch's default initialisation, the node
built with no argument but ``step_mode="m"``) on the built-in row-serial digits (8x8 images
read one row per step, ``T = 8``), trained with Adam on the cross-entropy of the readout
averaged over time, one run per node with the same seed. Prints one line per node and
writes the figures as JSON::

    OMP_NUM_THREADS=1 python benchmarks/neurons/digits_defaults.py --json benchmarks/neurons/digits_defaults.json
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _record import write_rows
from snn_parallel.adapters import spikingjelly as sjn
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from snn_parallel.tasks import SequentialDigits, make_loader

NODES: dict[str, Callable[[], nn.Module]] = {
    "LIFNode (SpikingJelly)": lambda: neuron.LIFNode(step_mode="m"),
    "DynamicDecayNode": lambda: sjn.DynamicDecayNode(step_mode="m"),
    "PRFNode": lambda: sjn.PRFNode(step_mode="m"),
    "DecoupledLIFNode": lambda: sjn.DecoupledLIFNode(step_mode="m"),
    "LTCNode": lambda: sjn.LTCNode(step_mode="m"),
    "PSPLIFNode": lambda: sjn.PSPLIFNode(step_mode="m"),
}


def evaluate(net: nn.Module, loader) -> tuple[float, float]:
    """Test accuracy and the node's mean output (its firing rate; the PSP for PSPLIFNode)."""
    correct = total = 0
    rate = 0.0
    with torch.no_grad():
        for x, y in loader:
            functional.reset_net(net)
            hidden = net[1](net[0](x))
            logits = net[2](hidden).mean(0)
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
            rate += float(hidden.mean()) * len(y)
    return correct / total, rate / total


def train(make_node: Callable[[], nn.Module], args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    net = nn.Sequential(
        layer.Linear(8, args.hidden, step_mode="m"), make_node(), layer.Linear(args.hidden, 10, step_mode="m")
    )
    train_loader = make_loader(
        SequentialDigits("train", "row", seed=args.seed), batch_size=args.batch, shuffle=True, seed=args.seed
    )
    test_loader = make_loader(SequentialDigits("test", "row", seed=args.seed), batch_size=256)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    start = time.perf_counter()
    for _ in range(args.epochs):
        for x, y in train_loader:
            functional.reset_net(net)
            loss = nn.functional.cross_entropy(net(x).mean(0), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    accuracy, rate = evaluate(net, test_loader)
    return {
        "test_accuracy": round(accuracy, 4),
        "node_output_mean": round(rate, 4),
        "train_seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    for name, make_node in NODES.items():
        row = {"node": name, **train(make_node, args)}
        rows.append(row)
        print(
            f"{name:24s} test accuracy {100 * row['test_accuracy']:5.1f} %  "
            f"(mean output {row['node_output_mean']:.3f}, {row['train_seconds']} s)",
            flush=True,
        )
    reference = rows[0]["test_accuracy"]
    for row in rows[1:]:
        row["within_2_points_of_lifnode"] = row["test_accuracy"] >= reference - 0.02
    if args.json:
        write_rows(__file__, args, rows, task="SequentialDigits(mode='row'), T = 8, test split of 20 %")


if __name__ == "__main__":
    main()
