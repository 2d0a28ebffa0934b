"""FPTT against BPTT on a small network, one FPTT setting varied at a time.

The network and recipe: ``Linear(F, 64) -> PRF(64, dt_range=(0.01, 1.0)) -> Linear(64, 10)`` (the
neuron as SpikingJelly's ``PRFNode`` builds it: fixed decay, sigmoid surrogate; the first synapse
uniform in +-3 sqrt(3/F)), Adam 3e-3, batch 64, 25 epochs, cross-entropy on the last step (the
trainers' default loss), on the built-in digits by row (T = 8) or by pixel (T = 64); each seed
draws the split, the weights and the batches. Every run is :func:`snn_parallel.learners.experiments.train_digits`.

    python benchmarks/learners/fptt_study.py --mode row --seeds 0,1,2,3,4 --jobs 2 --json out.json
    python benchmarks/learners/fptt_study.py --mode row --configs bptt,K=1,K=1/alpha=0.1

prints one line per run, then the mean, standard deviation and range per configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor

#: name -> (rule, train_digits options); "K=k" is FPTT at its defaults with k parts
VARIANTS: dict[str, dict[str, object]] = {
    "": {},
    "alpha=0.1": {"alpha": 0.1},
    "alpha=0.03": {"alpha": 0.03},
    "alpha=0.003": {"alpha": 0.003},
    "beta=1": {"beta": 1.0},
    "beta=0.1": {"beta": 0.1},
    "update_first": {"oracle_order": "update_first"},
    "no_oracle": {"oracle": False},
    "warmup=9": {"oracle_warmup": 9},
    "reset_dual": {"reset_dual": True},
    "no_clip": {"clip_grad_norm": None},
    "ce_all": {"loss": "ce_all"},
}


def config(name: str) -> tuple[str, dict[str, object]]:
    """``"bptt"``, ``"bptt/ce_all"``, ``"K=8"`` or ``"K=8/alpha=0.1"`` (any key of :data:`VARIANTS`)."""
    head, _, variant = name.partition("/")
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    if head == "bptt":
        return "bptt", {"loss": "ce", **VARIANTS[variant]}
    if head.startswith("K="):
        return "fptt", {"loss": "ce", "parts": int(head[2:]), **VARIANTS[variant]}
    raise SystemExit(f"a configuration is 'bptt' or 'K=<parts>', optionally '/<variant>', got {name!r}")


def run(job: tuple[str, str, int]) -> dict[str, object]:
    import torch

    from snn_parallel.learners.experiments import train_digits

    torch.set_num_threads(1)
    name, mode, seed = job
    rule, options = config(name)
    row = train_digits(rule, mode, neuron="prf_fixed", layers=1, hidden=64, epochs=25, seed=seed, **options)
    return {"config": name, "seed": seed, **row}


DEFAULT_CONFIGS = {
    "row": "bptt,bptt/ce_all,K=1,K=2,K=4,K=8,K=1/alpha=0.1,K=2/alpha=0.1,K=4/alpha=0.1,K=8/alpha=0.1,"
    "K=1/alpha=0.03,K=1/beta=1,K=1/no_clip,K=1/reset_dual,K=1/ce_all,"
    "K=2/alpha=0.003,K=2/beta=1,K=2/no_oracle,K=2/update_first,K=2/ce_all,"
    "K=8/alpha=0.003,K=8/beta=1,K=8/update_first,K=8/no_oracle,K=8/warmup=9,K=8/reset_dual,K=8/no_clip,K=8/ce_all",
    "pixel": "bptt,K=1,K=8,K=64,K=1/alpha=0.1,K=8/alpha=0.1,K=64/alpha=0.1",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("row", "pixel"), default="row")
    parser.add_argument("--configs", default=None, help="comma-separated configurations (default: the study's grid)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, one thread each")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    names = (args.configs or DEFAULT_CONFIGS[args.mode]).split(",")
    for name in names:
        config(name)
    jobs = [(name, args.mode, int(seed)) for name in names for seed in args.seeds.split(",")]
    os.environ["OMP_NUM_THREADS"] = "1"
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        rows = []
        for row in pool.map(run, jobs):
            rows.append(row)
            print(json.dumps(row), flush=True)
    for name in names:
        values = [100 * row["test_accuracy"] for row in rows if row["config"] == name]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(
            f"{name:24s} {statistics.mean(values):6.2f} +- {spread:4.2f} % "
            f"(n={len(values)}, {min(values):.1f}..{max(values):.1f})"
        )
    if args.json:
        from snn_parallel.bench import machine_info

        meta = {"command": " ".join(["python", *sys.argv]), **machine_info("cpu"), "threads": 1}
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"meta": meta, "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
