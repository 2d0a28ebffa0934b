# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     name: python3
# ---

# %% [markdown]
# # 0. Parallel neurons at a glance
#
# Every snn_parallel neuron runs a whole sequence at once in training (`forward`) and one
# step at a time at inference (`step`), with the same spikes. This tutorial shows that on
# the four neurons, plots their membranes and spikes, and times the parallel form against
# a step loop.
#
# Open it as a notebook with `jupytext --to ipynb tutorials/00_parallel_neurons.py`, or run
# it as a script: `python tutorials/00_parallel_neurons.py` (figures go to `figures/`,
# or to the folder named by the `SNN_TUTORIAL_OUT` environment variable).

# %%
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import torch

import snn_parallel as sp

OUT = Path(os.environ.get("SNN_TUTORIAL_OUT", "figures"))
OUT.mkdir(parents=True, exist_ok=True)
SMALL = os.environ.get("SNN_TUTORIAL_SMALL") == "1"  # CI runs a shrunken version
torch.manual_seed(0)

# %% [markdown]
# ## One input, four neurons
#
# The input is time-major, `[T, B, C]`: here 200 steps, one sample, three channels of a
# slowly varying drive. Each neuron takes its feature count first.

# %%
T = 200
t = torch.arange(T, dtype=torch.float32)
drive = torch.stack([1.2 + torch.sin(t / 15), 1.0 + 0.8 * torch.sin(t / 7), 0.6 * torch.ones(T)], dim=1)
x = (1.5 * drive).unsqueeze(1)  # [T, 1, 3]

neurons = {
    "DynamicDecay (DSN)": sp.DynamicDecay(3),
    "PRF": sp.PRF(3, dt_range=(0.2, 0.5), fr_scale=8.0),
    "DecoupledLIF": sp.DecoupledLIF(3, tau=4.0),
    "LTC": sp.LTC(3),
}

# %% [markdown]
# ## Parallel and serial give the same spikes
#
# `forward` returns the spikes and the state at the end; `return_membrane=True` adds the
# potential that is compared with the threshold. Feeding the same input to `step` one time
# step at a time reproduces the spikes.

# %%
results = {}
for name, neuron in neurons.items():
    with torch.no_grad():
        spikes, membrane, _ = neuron(x, return_membrane=True)
        state, serial = None, []
        for x_t in x.unbind(0):
            s, state = neuron.step(x_t, state)
            serial.append(s)
    serial = torch.stack(serial)
    mismatches = int((serial != spikes).sum())
    print(f"{name:20s} spikes: {int(spikes.sum()):4d}  parallel vs serial mismatches: {mismatches}")
    results[name] = (spikes[:, 0], membrane[:, 0])

# %%
fig, axes = plt.subplots(len(results), 1, figsize=(9, 8), sharex=True)
for ax, (name, (spikes, membrane)) in zip(axes, results.items(), strict=True):
    ax.plot(membrane[:, 0], lw=1, label="membrane (channel 0)")
    times = torch.nonzero(spikes[:, 0]).flatten()
    ax.vlines(
        times, ymin=membrane[:, 0].min(), ymax=membrane[:, 0].max(), color="k", alpha=0.25, lw=0.8, label="spikes"
    )
    ax.set_title(name, fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
axes[-1].set_xlabel("time step")
fig.tight_layout()
fig.savefig(OUT / "00_membranes.png", dpi=110)

# %% [markdown]
# ## Streaming: carry the state between calls
#
# Two `forward` calls that pass the state on equal one call over the whole sequence, so a
# model trained on whole sequences can run on a stream in chunks of any size.

# %%
dsn = neurons["DynamicDecay (DSN)"]
with torch.no_grad():
    whole, _ = dsn(x)
    first, state = dsn(x[:77])
    second, _ = dsn(x[77:], state)
print("chunked == whole:", torch.equal(torch.cat([first, second]), whole))

# %% [markdown]
# ## Why parallel: time against a step loop
#
# Training needs forward and backward. The parallel form solves the recurrence with a scan
# (no per-step autograd graph); the loop calls `step` `T` times, as a hand-written
# snnTorch-style loop would.

# %%
lengths = [128, 512] if SMALL else [128, 512, 2048, 8192]
timings = {"forward (parallel)": [], "step loop": []}
for length in lengths:
    inputs = (torch.rand(length, 4, 64) * 1.5).requires_grad_()
    neuron = sp.DynamicDecay(64)

    def parallel():
        spikes, _ = neuron(inputs)
        spikes.sum().backward()

    def loop():
        state, out = None, []
        for x_t in inputs.unbind(0):
            s, state = neuron.step(x_t, state)
            out.append(s)
        torch.stack(out).sum().backward()

    for label, fn in (("forward (parallel)", parallel), ("step loop", loop)):
        fn()
        start = time.perf_counter()
        fn()
        timings[label].append(time.perf_counter() - start)
    print(
        f"T = {length:5d}: parallel {1e3 * timings['forward (parallel)'][-1]:7.1f} ms, "
        f"loop {1e3 * timings['step loop'][-1]:7.1f} ms"
    )

fig, ax = plt.subplots(figsize=(6, 4))
for label, values in timings.items():
    ax.loglog(lengths, [1e3 * v for v in values], marker="o", label=label)
ax.set_xlabel("sequence length T")
ax.set_ylabel("forward + backward (ms)")
ax.set_title("DynamicDecay, B = 4, C = 64, CPU")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "00_speed.png", dpi=110)
