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
# # 2. Parallel neurons in a SpikingJelly network
#
# SpikingJelly users build networks from `layer.*` modules and neuron nodes, run them in
# multi-step mode (`step_mode="m"`, inputs `[T, B, ...]`) and call `functional.reset_net`
# between batches. `snn_parallel.adapters.spikingjelly` provides nodes that follow those
# rules. Here we
#
# 1. train a network with `DynamicDecayNode` (DSN) in multi-step mode, where the node solves
#    its recurrence in parallel over time;
# 2. switch the trained network to single-step mode and stream it one step at a time, with
#    identical spikes;
# 3. run the DSN network far beyond the length it was trained on (train at T = 128, run at
#    T = 4096) and plot its firing rate over time.
#
# Needs `spikingjelly`, `scikit-learn` (built-in digits) and `matplotlib`. Run it as a script
# (`python tutorials/02_spikingjelly.py`; figures go to `figures/` or `SNN_TUTORIAL_OUT`) or
# open it with `jupytext --to ipynb tutorials/02_spikingjelly.py`.

# %%
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import torch
from snn_parallel.adapters.spikingjelly import DynamicDecayNode
from spikingjelly.activation_based import functional, layer
from torch import nn

from snn_parallel.tasks import SequentialDigits

OUT = Path(os.environ.get("SNN_TUTORIAL_OUT", "figures"))
OUT.mkdir(parents=True, exist_ok=True)
SMALL = os.environ.get("SNN_TUTORIAL_SMALL") == "1"  # CI runs a shrunken version
T_TRAIN = 128
T_LONG = 1024 if SMALL else 4096
EPOCHS = 1 if SMALL else 4
torch.manual_seed(0)

# %% [markdown]
# ## Data: digits as Poisson spike trains
#
# The classic SpikingJelly input: each pixel's intensity (in [0, 1]) is the probability of
# a spike at every time step. `SequentialDigits(..., "static")` gives the 64 pixels of each
# built-in 8x8 digit; `encode` draws `T` time steps of spikes from them, time-major
# `[T, B, 64]`.

# %%
train_set, test_set = SequentialDigits("train", "static", repeat=1), SequentialDigits("test", "static", repeat=1)
train_images, train_labels = train_set.inputs[:, 0], train_set.targets
test_images, test_labels = test_set.inputs[:, 0], test_set.targets
if SMALL:
    train_images, train_labels = train_images[:384], train_labels[:384]
    test_images, test_labels = test_images[:128], test_labels[:128]


def encode(images, steps, generator=None):
    """Poisson (Bernoulli) spikes: [B, 64] intensities -> [T, B, 64] spikes."""
    return torch.bernoulli(images.expand(steps, *images.shape), generator=generator)


print(
    "train",
    tuple(train_images.shape),
    "test",
    tuple(test_images.shape),
    "one input",
    tuple(encode(train_images[:2], T_TRAIN).shape),
)

# %% [markdown]
# ## A multi-step network
#
# `layer.Linear` and `DynamicDecayNode` in `step_mode="m"` take the whole sequence. The node
# infers its feature count from the first input (its decay convolution has per-channel
# weights; pass the count first to build them at once, and SpikingJelly's model zoo builds
# the nodes with no count at all) and accepts SpikingJelly's arguments (`v_threshold`,
# `surrogate_function`, `step_mode`, `store_v_seq`, ...). The readout is the time-averaged
# output of a last `Linear`. The first layer starts with weights 3x wider than PyTorch's
# default, so that the neurons fire from the first batch.


# %%
class Classifier(nn.Module):
    def __init__(self, hidden=128):
        super().__init__()
        self.features = nn.Sequential(
            layer.Linear(64, hidden, step_mode="m"),
            DynamicDecayNode(hidden, step_mode="m"),
        )
        self.readout = layer.Linear(hidden, 10, step_mode="m")
        bound = 3 * (3 / 64) ** 0.5  # 3x PyTorch's default init, so the hidden layer fires from the start
        nn.init.uniform_(self.features[0].weight, -bound, bound)

    def forward(self, x_seq):
        return self.readout(self.features(x_seq)).mean(0)


net = Classifier()
print(net)

# %% [markdown]
# ## Training: `functional.reset_net` between batches
#
# The node keeps its state (membrane and its last inputs) as SpikingJelly memories, so
# `functional.reset_net(net)` clears them before each batch, as with any SpikingJelly
# network.

# %%
optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
generator = torch.Generator().manual_seed(0)
start = time.perf_counter()
for epoch in range(EPOCHS):
    order = torch.randperm(len(train_images), generator=generator)
    for batch in order.split(64):
        functional.reset_net(net)
        logits = net(encode(train_images[batch], T_TRAIN, generator))
        loss = nn.functional.cross_entropy(logits, train_labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch + 1}/{EPOCHS}  loss {loss.item():.3f}")
train_seconds = time.perf_counter() - start


def test_accuracy(steps):
    functional.reset_net(net)
    with torch.no_grad():
        logits = net(encode(test_images, steps, torch.Generator().manual_seed(1)))
    return (logits.argmax(1) == test_labels).float().mean().item()


print(f"trained in {train_seconds:.1f} s; test accuracy at T = {T_TRAIN}: {test_accuracy(T_TRAIN):.3f}")

# %% [markdown]
# ## Streaming: single-step mode gives the same spikes
#
# A network trained in parallel can run one step at a time, e.g. on a live input stream:
# `functional.set_step_mode(net, "s")` switches every layer and node, and each call then
# takes one `[B, 64]` step. The node's state carries over between calls.

# %%
x_seq = encode(test_images[:16], T_TRAIN, torch.Generator().manual_seed(2))
with torch.no_grad():
    functional.reset_net(net)
    parallel_spikes = net.features(x_seq)  # multi-step: all T at once

    functional.set_step_mode(net, "s")
    functional.reset_net(net)
    streamed_spikes = torch.stack([net.features(x_t) for x_t in x_seq.unbind(0)])  # one step per call
    functional.set_step_mode(net, "m")

mismatches = int((parallel_spikes != streamed_spikes).sum())
print(
    f"{int(parallel_spikes.sum())} spikes in multi-step mode, {int(streamed_spikes.sum())} streamed; "
    f"positions that differ: {mismatches}"
)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.5), sharey=True)
for ax, spikes, title in (
    (axes[0], parallel_spikes, "multi-step ('m'), parallel"),
    (axes[1], streamed_spikes, "single-step ('s'), streamed"),
):
    steps, neurons_ = torch.nonzero(spikes[:, 0], as_tuple=True)
    ax.scatter(steps, neurons_, s=4, marker="|", color="k")
    ax.set(title=title, xlabel="time step")
axes[0].set_ylabel("hidden neuron")
fig.suptitle(f"one test digit, hidden-layer spikes; differing positions: {mismatches}")
fig.tight_layout()
fig.savefig(OUT / "02_streaming_raster.png", dpi=110)

# %% [markdown]
# ## Far beyond the training length
#
# The DSN has no reset and its decay is computed from the last few inputs, so nothing in it
# depends on where the sequence started or how long it is. We trained at T = 128; here the
# same network runs on T = 4096 (a shorter run in CI). The firing rate of the hidden layer,
# averaged over neurons and test digits in windows of 32 steps, stays where it was during
# training, and the classification (the time-averaged readout) keeps working.

# %%
x_long = encode(test_images, T_LONG, torch.Generator().manual_seed(3))
with torch.no_grad():
    functional.reset_net(net)
    start = time.perf_counter()
    long_spikes = net.features(x_long)
    long_seconds = time.perf_counter() - start
    functional.reset_net(net)
    long_logits = net.readout(long_spikes).mean(0)
long_accuracy = (long_logits.argmax(1) == test_labels).float().mean().item()
print(
    f"T = {T_LONG}: {long_seconds:.2f} s for {len(test_images)} digits in one parallel call; "
    f"test accuracy {long_accuracy:.3f} (at T = {T_TRAIN}: {test_accuracy(T_TRAIN):.3f})"
)

window = 32
rate = long_spikes.mean(dim=(1, 2))  # [T]: fraction of hidden neurons firing per step
windowed = rate[: T_LONG // window * window].view(-1, window).mean(1)
fig, ax = plt.subplots(figsize=(9, 3.5))
ax.plot(torch.arange(len(windowed)) * window + window / 2, windowed, lw=1.2)
ax.axvspan(0, T_TRAIN, color="tab:green", alpha=0.15, label=f"training length T = {T_TRAIN}")
ax.set(
    xlabel="time step",
    ylabel="hidden firing rate",
    title=f"DSN run to T = {T_LONG} (window {window} steps)",
    ylim=(0, max(float(windowed.max()) * 1.3, 1e-3)),
)
ax.legend(loc="lower right")
fig.tight_layout()
fig.savefig(OUT / "02_long_rate.png", dpi=110)

# %% [markdown]
# ## What to take away
#
# - `DynamicDecayNode`, `PRFNode`, `DecoupledLIFNode` and `LTCNode` drop into SpikingJelly
#   networks; `functional.reset_net`, `set_step_mode` and `detach_net` work on them.
# - SpikingJelly's own soft-reset neurons have twins with the same spikes: `IFNode`,
#   `LIFNode` and `ParametricLIFNode` with `v_reset=None, detach_reset=True` become
#   `DecoupledIFNode`, `DecoupledLIFNode` (pass `decay_input=True` for `LIFNode`'s default charge)
#   and `DecoupledParametricLIFNode`, which train in parallel over time in `'m'` mode.
# - `'m'` mode trains in parallel; `'s'` mode streams the trained network with the same
#   spikes.
# - A DSN trained on short sequences runs on much longer ones at a steady firing rate.
