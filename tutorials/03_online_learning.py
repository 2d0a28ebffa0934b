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
# # 3. Online learning on long sequences
#
# Backpropagation through time (BPTT) stores every time step of the forward pass, so its
# memory grows with the sequence length T. Online rules update as the sequence goes by and
# keep memory flat. `snn_parallel.learners` wraps one network in any of four trainers:
#
# | trainer | rule |
# |---|---|
# | `BPTTTrainer` | backpropagation through time (the baseline) |
# | `FPTTTrainer` | forward propagation through time: K updates per sequence with a dynamic regulariser |
# | `OTTTTrainer` | online training through time: one step at a time, presynaptic traces |
# | `HYPRTrainer` | hybrid propagation: eligibilities computed per sub-sequence, in parallel |
#
# With `trace="neuron"`, `OTTTTrainer` keeps one trace per synapse instead, with each neuron's own decay.
#
# We measure the peak memory and the time of one training step against T, train the same
# digit classifier with each rule, wrap SpikingJelly's zoo ResNet, as it is, in OTTT and FPTT,
# and train an LTC network with FPTT on the adding problem. Everything is measured when this
# runs. Needs `scikit-learn`, `matplotlib` and `spikingjelly`. It runs for about 15 minutes on
# one CPU thread, most of them on the zoo ResNet.
# Run it as a script (`python tutorials/03_online_learning.py`) or open it with
# `jupytext --to ipynb tutorials/03_online_learning.py`.

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import torch
from torch import nn

from snn_parallel import LTC
from snn_parallel.learners import BPTTTrainer, FPTTTrainer, HYPRTrainer, OTTTTrainer, RecurrentBlock, StepLoss
from snn_parallel.learners.experiments import classifier, digits_loss, memory_profile
from snn_parallel.tasks import AddingProblem, SequentialDigits, make_loader

OUT = Path(os.environ.get("SNN_TUTORIAL_OUT", "figures"))
OUT.mkdir(parents=True, exist_ok=True)
SMALL = os.environ.get("SNN_TUTORIAL_SMALL") == "1"  # CI runs a shrunken version
torch.manual_seed(0)

# %% [markdown]
# ## One network, four trainers
#
# `classifier(inputs, classes, neuron)` builds `Linear -> neuron -> Linear -> neuron ->
# Linear` as an `nn.Sequential`; any `nn.Module` with neurons in it (ours, their snnTorch and
# SpikingJelly adapters, SpikingJelly's own nodes) works, as the zoo ResNet below shows. A
# trainer takes the model, an optimizer, a loss and the rule's options, and `fit` trains it. The loss is
# `StepLoss("ce", "all")`, cross-entropy at every step, except for FPTT, which uses its
# reference code's loss for one label per sequence, `StepLoss("ce", "last")`: each part is
# trained on its last output, weighted by how far into the sequence it is, plus FPTT's
# "oracle" term (`digits_loss(rule)` picks them).


# %%
def make_trainer(rule, model, steps):
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss = digits_loss(rule.lower())
    if rule == "BPTT":
        return BPTTTrainer(model, optimizer, loss=loss, progress=False)
    if rule == "FPTT":  # one update per time step: K = T
        return FPTTTrainer(model, optimizer, parts=steps, loss=loss, progress=False)
    if rule == "OTTT":
        return OTTTTrainer(model, optimizer, trace_input=True, loss=loss, progress=False)
    return HYPRTrainer(model, optimizer, chunk=None, loss=loss, progress=False)  # sub-sequence: the whole sequence


RULES = ["BPTT", "FPTT", "OTTT", "HYPR"]

# %% [markdown]
# ## Memory and time against T
#
# `memory_profile` runs one training step of a two-layer LIF network for each rule and
# length in a fresh Python process (peak memory belongs to a whole process) and reports
# the process's peak resident memory and the step's time. The peak includes the Python
# interpreter and torch (a few hundred MiB); what matters is how it changes with T.

# %%
lengths = [16, 64] if SMALL else [128, 512, 2048]
batch, hidden = (4, 32) if SMALL else (32, 256)
profile = memory_profile([rule.lower() for rule in RULES], lengths, batch=batch, hidden=hidden)
for row in profile:
    print(f"{row['rule']:5s} T = {row['steps']:5d}: peak {row['peak_rss_mib']:7.1f} MiB, step {row['seconds']:7.3f} s")

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
for rule in RULES:
    rows = [r for r in profile if r["rule"] == rule.lower()]
    left.plot([r["steps"] for r in rows], [r["peak_rss_mib"] for r in rows], marker="o", label=rule)
    right.loglog([r["steps"] for r in rows], [r["seconds"] for r in rows], marker="o", label=rule)
left.set(
    xscale="log",
    xlabel="sequence length T",
    ylabel="peak memory of the process (MiB)",
    title=f"one training step, B = {batch}, {hidden} LIF x 2",
)
right.set(xlabel="sequence length T", ylabel="time of one step (s)", title="time of one training step")
for axes in (left, right):
    axes.legend()
fig.tight_layout()
fig.savefig(OUT / "03_memory_time.png", dpi=110)

# %% [markdown]
# BPTT keeps every step for its backward pass, so its memory rises with T. FPTT (with K = T
# updates) and OTTT keep one step at a time, and HYPR one sub-sequence (64 steps here) of
# per-step Jacobians, so theirs should stay nearly flat; HYPR starts higher because of those
# Jacobians. The price is time: the online rules walk the sequence step by step (HYPR in
# sub-sequences), while BPTT runs the neurons in parallel.
#
# ## Accuracy: the same classifier with each rule
#
# Digits read one row per step (T = 8), a two-layer LIF network, the same seed and epochs
# for every rule.

# %%
EPOCHS = 1 if SMALL else 10
train_set, test_set = SequentialDigits("train", "row"), SequentialDigits("test", "row")
if SMALL:
    train_set.inputs, train_set.targets = train_set.inputs[:256], train_set.targets[:256]
table = []
curves = {}
for rule in RULES:
    torch.manual_seed(0)
    model = classifier(train_set.num_inputs, train_set.num_classes, "lif", hidden=128)
    trainer = make_trainer(rule, model, train_set.num_steps)
    history = trainer.fit(make_loader(train_set, 64, shuffle=True), EPOCHS, val_loader=make_loader(test_set, 256))
    curves[rule] = [h["val_accuracy"] for h in history]
    table.append((rule, history[-1]["val_accuracy"], sum(h.get("seconds", 0.0) for h in history)))

print(f"{'rule':6s} {'test accuracy':>14s} {'training time':>14s}")
for rule, acc, seconds in table:
    print(f"{rule:6s} {100 * acc:13.1f}% {seconds:12.1f} s")

fig, ax = plt.subplots(figsize=(6, 4))
for rule, values in curves.items():
    ax.plot(range(1, len(values) + 1), [100 * v for v in values], marker="o", label=rule)
ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="digits by row (T = 8), 2 x 128 LIF")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "03_accuracy.png", dpi=110)

# %% [markdown]
# FPTT scores lowest here. With K = T = 8 parts, each update sees one step and its gradient
# stops at the part's start: no weight learns from its effect on later steps, so the network
# does not learn to keep the earlier rows in its state. With one part (K = 1) FPTT scored within
# a point of BPTT on the FPTT page's network; K = T pays off on long sequences, where BPTT's
# memory grows with T.
#
# ## OTTT's trace, matched to the neuron
#
# OTTT's weight gradient runs through a presynaptic trace that leaks with one decay
# `trace_decay`, which is exact only for LIF neurons that all share that decay, as above
# (τ = 2, decay 0.5). A PRF neuron resonates, each channel with its own complex decay.
# `trace="neuron"` keeps one trace per synapse, filtered with the postsynaptic neuron's own
# decay, plus eligibilities for the neuron's parameters: for one layer that is BPTT's
# gradient again, and memory still does not grow with T. The same PRF network, both traces:

# %%
for trace in ("presynaptic", "neuron"):
    torch.manual_seed(0)
    model = classifier(train_set.num_inputs, train_set.num_classes, "prf", hidden=128)
    trainer = OTTTTrainer(
        model,
        torch.optim.Adam(model.parameters(), lr=3e-3),
        trace=trace,
        trace_input=True,
        loss=digits_loss("ottt"),
        progress=False,
    )
    history = trainer.fit(make_loader(train_set, 64, shuffle=True), EPOCHS, val_loader=make_loader(test_set, 256))
    print(f"OTTT, PRF, trace={trace!r:14s}: test accuracy {100 * history[-1]['val_accuracy']:.1f}%")

# %% [markdown]
# `snn-parallel train --rule ottt --task pixel [--trace presynaptic]` does the same on the
# pixel-by-pixel digits (T = 64), where the gap is largest.
#
# ## Any network: SpikingJelly's zoo ResNet with OTTT and FPTT
#
# The trainers take a model as it was written, not only an `nn.Sequential`: they find its
# stateful parts by type (here SpikingJelly's `LIFNode`s) and let its own `forward` run, with
# its residual sums, downsampling shortcuts, norms and pooling. SpikingJelly's zoo ResNet-10,
# `SpikingResNet(BasicBlock, [1, 1, 1, 1])` (4.9 M parameters), classifies the digits shown as
# 3-channel 8x8 pictures for T = 4 steps. SpikingJelly's zoo module imports torchvision; on a
# machine where torchvision does not import (a CUDA build of it and no GPU),
# `snn_parallel.learners.resnet.spiking_resnet` builds the same network from SpikingJelly's
# layers.

# %%
from spikingjelly.activation_based import neuron, surrogate

from snn_parallel.learners.resnet import spiking_resnet

LIF = {"tau": 2.0, "surrogate_function": surrogate.ATan(), "detach_reset": True}
try:
    from spikingjelly.activation_based.model.spiking_resnet import BasicBlock, SpikingResNet

    def resnet():
        return SpikingResNet(BasicBlock, [1, 1, 1, 1], num_classes=10, spiking_neuron=neuron.LIFNode, **LIF)

    print("SpikingJelly's zoo SpikingResNet")
except Exception:  # noqa: BLE001 - torchvision raises RuntimeError or OSError on such machines

    def resnet():
        return spiking_resnet(lambda channels: neuron.LIFNode(**LIF))

    print("spiking_resnet: the zoo's network, built without torchvision")


def pictures(split, count=None):
    data = SequentialDigits(split, "image", repeat=4)  # x: [T = 4, 1, 8, 8] per digit
    data.inputs = data.inputs[:count].expand(-1, -1, 3, -1, -1).contiguous()  # the ResNet takes 3 channels
    data.targets = data.targets[:count]
    return data


picture_train, picture_test = pictures("train", 64 if SMALL else None), pictures("test", 64 if SMALL else None)
for rule in ("OTTT", "FPTT"):
    torch.manual_seed(0)
    model = resnet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    trainer = (
        OTTTTrainer(model, optimizer, loss="ce_all", progress=False)
        if rule == "OTTT"
        else FPTTTrainer(model, optimizer, parts=4, loss="ce_all", progress=False)
    )  # one update per step
    history = trainer.fit(
        make_loader(picture_train, 32, shuffle=True), 1 if SMALL else 4, val_loader=make_loader(picture_test, 256)
    )
    seconds = sum(h["seconds"] for h in history)
    print(
        f"{rule}, zoo ResNet-10: test accuracy {100 * history[-1]['val_accuracy']:.1f}% after {len(history)} epochs, "
        f"{seconds:.0f} s"
    )

# %% [markdown]
# The norms' running statistics take a few epochs to settle, so the first epochs' test accuracy
# lags behind the training accuracy. Memory of one training step of this network against T
# (each point a fresh process running `spiking_resnet`, the same network; batch 8; FPTT with
# K = T, HYPR with sub-sequences of 16 steps), BPTT beside the online rules:

# %%
resnet_lengths, resnet_batch = ([4, 8], 2) if SMALL else ([16, 64, 256], 8)
resnet_rules = ["bptt", "fptt", "ottt"] if SMALL else ["bptt", "fptt", "ottt", "hypr"]
resnet_profile = memory_profile(resnet_rules, resnet_lengths, batch=resnet_batch, network="resnet")
fig, ax = plt.subplots(figsize=(6, 4))
for rule in resnet_rules:
    rows = [r for r in resnet_profile if r["rule"] == rule]
    ax.plot([r["steps"] for r in rows], [r["peak_rss_mib"] for r in rows], marker="o", label=rule.upper())
    print(f"{rule.upper():5s}", ", ".join(f"T = {r['steps']}: {r['peak_rss_mib']:.0f} MiB" for r in rows))
ax.set(
    xscale="log",
    xlabel="sequence length T",
    ylabel="peak memory of the process (MiB)",
    title=f"SpikingJelly's ResNet-10, one training step, B = {resnet_batch}",
)
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "03_resnet_memory.png", dpi=110)

# %% [markdown]
# BPTT keeps every step of every layer; FPTT with K = T and OTTT keep one step (and OTTT one
# trace per synapse input), so their memory stays flat. `snn-parallel bench --learners
# --network resnet --lengths 64,512` measures the same at T = 64 and 512
# (`benchmarks/learners/memory_resnet.json`).
#
# ## LTC + FPTT on the adding problem
#
# The adding problem: two channels, random values and a marker; the target is the sum of
# the two marked values, seen only at the end. Always answering 1 scores an MSE of 1/6, so
# a network must beat that to have learnt anything. The network is a recurrent LTC layer
# (`RecurrentBlock` adds the recurrent weights) with its threshold fixed at 0.5, read out
# linearly from its membrane (`output="membrane"`), as in the LTC-SNN adding-problem code.
# FPTT makes `parts=K` updates per sequence (here K = 5), each on a part of T/K steps, with
# its regulariser keeping the weights close to their running average; every part is
# trained on the final target, weighted as that code weighs it (`part_weight="adding"`).
# T = 50 keeps the tutorial quick; `snn-parallel train --task adding` runs T = 200.

# %%
STEPS = 20 if SMALL else 50
SAMPLES, EPOCHS_ADDING = (128, 2) if SMALL else (4000, 15)
adding_train = AddingProblem(STEPS, SAMPLES, seed=0)
adding_test = AddingProblem(STEPS, 500, seed=1)
to_regression = lambda data: torch.utils.data.TensorDataset(data.inputs, data.targets[:, None])  # noqa: E731
torch.manual_seed(0)
model = nn.Sequential(RecurrentBlock(2, LTC(64, b0=0.5, beta_a=0.0), output="membrane"), nn.Linear(64, 1))
trainer = FPTTTrainer(
    model,
    torch.optim.Adam(model.parameters(), lr=3e-3),
    parts=5,
    alpha=0.5,
    part_weight="adding",
    loss=StepLoss("mse", "last"),
    progress=False,
)
history = trainer.fit(
    make_loader(to_regression(adding_train), 64, shuffle=True),
    EPOCHS_ADDING,
    val_loader=make_loader(to_regression(adding_test), 500),
)
for record in history:
    print(f"epoch {record['epoch']:2.0f}: train loss {record['train_loss']:.4f}, test MSE {record['val_mse']:.4f}")

fig, ax = plt.subplots(figsize=(6, 4))
ax.plot([h["epoch"] for h in history], [h["val_mse"] for h in history], marker="o", label="LTC + FPTT, test MSE")
ax.axhline(AddingProblem.BASELINE_MSE, color="k", ls="--", lw=1, label="always 1 (MSE 1/6)")
ax.set(xlabel="epoch", ylabel="MSE", title=f"adding problem, T = {STEPS}")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "03_adding.png", dpi=110)
