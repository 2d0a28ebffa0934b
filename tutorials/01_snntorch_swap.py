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
# # 1. Swap a neuron in an snnTorch model
#
# This is the network of snnTorch's tutorials: `Linear -> Leaky -> Linear -> Leaky`, stepped
# through time in a Python loop and trained with a cross-entropy loss on the output
# membrane. We train it on handwritten digits read one row per time step, then change one
# line to use `DynamicDecay` (DSN) or `PRF` instead of `snn.Leaky`, and compare accuracy and
# speed. The new neurons also run a whole sequence at once (`multistep`), which is where
# their speed comes from.
#
# Needs `snntorch`, `scikit-learn` (for the built-in digits, no download) and `matplotlib`.
# Run it as a script, `python tutorials/01_snntorch_swap.py` (figures go to `figures/`, or to
# the folder in `SNN_TUTORIAL_OUT`), or open it as a notebook with
# `jupytext --to ipynb tutorials/01_snntorch_swap.py`.

# %%
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import snntorch as snn
import torch
from snn_parallel.adapters.snntorch import PRF, DynamicDecay, reset
from torch import nn

from snn_parallel.tasks import SequentialDigits, make_loader

OUT = Path(os.environ.get("SNN_TUTORIAL_OUT", "figures"))
OUT.mkdir(parents=True, exist_ok=True)
SMALL = os.environ.get("SNN_TUTORIAL_SMALL") == "1"  # CI runs a shrunken version
EPOCHS = 2 if SMALL else 15
torch.manual_seed(0)

# %% [markdown]
# ## Built-in data: digits as sequences
#
# `SequentialDigits` turns scikit-learn's 8x8 digits into sequences. In `"row"` mode each
# image is 8 time steps of 8 pixels. `make_loader` batches them time-major, `[T, B, F]`, the
# layout snnTorch's loops (and SpikingJelly) use.

# %%
train_set, test_set = SequentialDigits("train", "row"), SequentialDigits("test", "row")
if SMALL:
    train_set.inputs, train_set.targets = train_set.inputs[:256], train_set.targets[:256]
train_loader = make_loader(train_set, 64, shuffle=True)
test_loader = make_loader(test_set, 256)
x, y = next(iter(train_loader))
print("one batch:", tuple(x.shape), "(T, B, F); labels", tuple(y.shape), f"; {len(train_set)} training digits")

# %% [markdown]
# ## The snnTorch network
#
# `make_neuron(size, output)` builds one spiking layer. This is the only thing that differs
# between the three models below.

# %%
HIDDEN = 128


class Net(nn.Module):
    def __init__(self, make_neuron):
        super().__init__()
        self.fc1 = nn.Linear(8, HIDDEN)
        self.lif1 = make_neuron(HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, 10)
        self.lif2 = make_neuron(10)
        for fc in (self.fc1, self.fc2):  # 3x wider than PyTorch's default, so every neuron type fires from the start
            bound = 3 * (3 / fc.in_features) ** 0.5
            nn.init.uniform_(fc.weight, -bound, bound)

    def forward(self, x):
        """The snnTorch tutorial loop: one call per time step; x is [T, B, 8]."""
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk1_rec, spk2_rec, mem2_rec = [], [], []
        for x_t in x.unbind(0):
            spk1, mem1 = self.lif1(self.fc1(x_t), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spk1_rec.append(spk1)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk1_rec), torch.stack(spk2_rec), torch.stack(mem2_rec)

    def forward_parallel(self, x):
        """The same network over the whole sequence at once (our neurons' `multistep`)."""
        reset(self)  # start from rest, as init_leaky() does in the loop
        spk1, _ = self.lif1.multistep(self.fc1(x))
        spk2, mem2 = self.lif2.multistep(self.fc2(spk1))
        return spk1, spk2, mem2


# %% [markdown]
# ## The one-line swap
#
# `snn.Leaky(beta=0.9)` becomes `DynamicDecay()` or `PRF(...)`: our neurons have
# per-channel parameters, whose count they infer from the first input (as `nn.LazyLinear`
# does; pass it first, `DynamicDecay(size)`, to build them at once), and keep Leaky's keyword
# arguments (`threshold`, `spike_grad`, `init_hidden`, `output`, ...). They are `snn.Leaky`
# subclasses, so `init_leaky()`, `snntorch.backprop.TBPTT` and snnTorch's utilities work on
# them unchanged. `DecoupledLIF(beta=0.9)` is the soft-reset LIF itself, trained in parallel.
# `multistep` continues from the state a neuron holds, so `forward_parallel` first calls
# `reset(net)`, which puts every neuron of `net` back at rest.

# %%
models = {
    "snn.Leaky": lambda size: snn.Leaky(beta=0.9),
    "DynamicDecay": lambda size: DynamicDecay(),
    "PRF": lambda size: PRF(size, dt_range=(0.01, 1.0), learn_beta=True),
}
assert isinstance(DynamicDecay(4), snn.Leaky) and isinstance(PRF(4), snn.Leaky)

# %% [markdown]
# ## Training
#
# The loss is snnTorch's: cross-entropy of the output membrane at every step, summed. The
# prediction is the class whose membrane is highest on average. Leaky is trained with the
# step loop; our neurons are trained with `forward_parallel` (the same network, computed
# all at once) and also timed with the step loop, to separate the effect of the swap from
# the effect of parallel training.


# %%
def loss_of(mem_rec, labels):
    return sum(nn.functional.cross_entropy(m, labels) for m in mem_rec.unbind(0))


def accuracy(net, loader, parallel):
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            _, _, mem = net.forward_parallel(x) if parallel else net(x)
            correct += int((mem.mean(0).argmax(1) == y).sum())
            total += len(y)
    return correct / total


def train(name, parallel):
    torch.manual_seed(0)
    net = Net(models[name])
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-3)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        for x, y in train_loader:
            _, _, mem = net.forward_parallel(x) if parallel else net(x)
            loss = loss_of(mem, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    return net, {
        "model": name,
        "training": "parallel" if parallel else "step loop",
        "test accuracy": accuracy(net, test_loader, parallel),
        "seconds per epoch": seconds / EPOCHS,
        "final loss": loss.item(),
    }


results, trained = [], {}
for name in models:
    for parallel in [False] if name == "snn.Leaky" else [False, True]:
        net, row = train(name, parallel)
        results.append(row)
        trained[name] = net
        print(
            f"{row['model']:13s} {row['training']:10s} accuracy {row['test accuracy']:.3f}  "
            f"{row['seconds per epoch']:.2f} s/epoch  loss {row['final loss']:.2f}"
        )

# %% [markdown]
# ## Accuracy and speed side by side
#
# The numbers are the ones measured above, on this machine. With only 8 time steps a
# step loop is cheap, so the parallel form gains little here; tutorial 4 shows the gap
# growing with the sequence length.

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
labels = [f"{r['model']}\n({r['training']})" for r in results]
colors = [
    "tab:gray" if r["model"] == "snn.Leaky" else ("tab:blue" if r["model"] == "DynamicDecay" else "tab:orange")
    for r in results
]
left.bar(labels, [100 * r["test accuracy"] for r in results], color=colors)
left.set(ylabel="test accuracy (%)", title=f"digits by row, {EPOCHS} epochs", ylim=(0, 100))
right.bar(labels, [r["seconds per epoch"] for r in results], color=colors)
right.set(ylabel="seconds per epoch", title="training time (this machine)")
for axes in (left, right):
    axes.tick_params(axis="x", labelsize=7)
fig.tight_layout()
fig.savefig(OUT / "01_accuracy_speed.png", dpi=110)

# %% [markdown]
# ## Spike raster and membrane traces
#
# One test digit through each trained network: the hidden layer's spikes (a raster, one
# row per neuron) and the output membranes (the correct class drawn thick).

# %%
x, y = next(iter(test_loader))
sample = x[:, :1]
fig, axes = plt.subplots(2, len(trained), figsize=(12, 6))
for column, (name, net) in enumerate(trained.items()):
    with torch.no_grad():
        spk1, _, mem2 = net(sample)
    steps, neurons_ = torch.nonzero(spk1[:, 0], as_tuple=True)
    axes[0, column].scatter(steps, neurons_, s=6, marker="|", color="k")
    axes[0, column].set(title=f"{name}: hidden spikes", xlabel="time step", ylabel="neuron", ylim=(-1, HIDDEN))
    for cls in range(10):
        bold = cls == int(y[0])
        axes[1, column].plot(
            mem2[:, 0, cls], lw=2.5 if bold else 0.8, alpha=1 if bold else 0.5, label=f"class {cls}" if bold else None
        )
    axes[1, column].set(title=f"{name}: output membranes", xlabel="time step", ylabel="membrane")
    axes[1, column].legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "01_raster_membrane.png", dpi=110)

# %% [markdown]
# ## What to take away
#
# - Changing `snn.Leaky(beta=0.9)` to `DynamicDecay(size)` or `PRF(size)` is the whole swap:
#   the loop, the loss, `init_leaky()` and snnTorch's utilities stay.
# - `multistep(x_seq)` computes the same layer for all time steps at once; use it in
#   training, and the per-step `forward` for streaming inference.
# - The DSN has no reset and decays by an amount computed from its input; PRF is a
#   resonator with a complex membrane. Their equations are in the documentation's neuron
#   pages.
