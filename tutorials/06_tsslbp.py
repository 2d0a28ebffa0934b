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
# # 6. Deep networks in five time steps: TSSL-BP
#
# TSSL-BP (Zhang & Li, NeurIPS 2020) trains conv nets of spiking neurons in a handful of
# time steps. Its neuron, `PSPLIF`, is a LIF with a hard reset whose output is not the spike
# $o_t$ but its post-synaptic potential (PSP) $a_t$:
#
# $$u_t = (1 - \tfrac{1}{\tau_m})\,\hat u_{t-1} + I_t, \qquad o_t = \Theta(u_t - V_{th}), \qquad
# \hat u_t = u_t (1 - o_t), \qquad a_t = (1 - \tfrac{1}{\tau_s})\, a_{t-1} + o_t / \tau_s.$$
#
# Its gradient is not a surrogate of $\partial o / \partial u$. A spike moves in time when
# the membrane changes, so TSSL-BP sends the error through the spike *time*,
# $\partial t / \partial u = -1/\Delta u_t$ (clamped to $[-8, 0]$), plus a term carried across
# the reset within each neuron; neurons too quiet to have a spike to move fall back to a
# sigmoid surrogate. We
#
# 1. look at one neuron's gradient under TSSL-BP and under BPTT through a surrogate;
# 2. check the vectorised backward against the step-by-step reference;
# 3. build conv nets in the paper's notation and look at the spike-sequence loss;
# 4. train the same net on the built-in digits with TSSL-BP and with BPTT;
# 5. time a training step of each, and read the committed multi-seed comparison.
#
# Needs `scikit-learn` and `matplotlib`. Run it as a script (`python tutorials/06_tsslbp.py`)
# or open it with `jupytext --to ipynb tutorials/06_tsslbp.py`.

# %%
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import torch

import snn_parallel
from snn_parallel.learners import BPTTTrainer, SpikeSequenceLoss, TSSLBPTrainer, discover, tssl_network
from snn_parallel.learners.experiments import tsslbp_profile
from snn_parallel.neurons import PSPLIF
from snn_parallel.ops.tssl import tssl_backward, tssl_backward_reference, tssl_forward_reference, tsslbp
from snn_parallel.tasks import SequentialDigits, make_loader

OUT = Path(os.environ.get("SNN_TUTORIAL_OUT", "figures"))
OUT.mkdir(parents=True, exist_ok=True)
SMALL = os.environ.get("SNN_TUTORIAL_SMALL") == "1"  # CI runs a shrunken version
torch.manual_seed(0)

# %% [markdown]
# ## One neuron, two gradients
#
# One neuron over 40 steps with a noisy input current, and the loss
# $L = \sum_t g_t a_t$ for a fixed random $g$. `PSPLIF(gradient="tsslbp")` runs the
# reference's backward; `PSPLIF(gradient="surrogate")` is the same neuron with autograd
# through its step loop and a sigmoid surrogate (BPTT). The forward passes are identical.

# %%
steps = 40
current = (0.35 + 0.35 * torch.randn(steps, 1, 1)).double()
g = torch.randn(steps, 1, 1, dtype=torch.float64)
gradients, psps = {}, {}
for mode in ("tsslbp", "surrogate"):
    x = current.clone().requires_grad_()
    psp, membrane, _ = PSPLIF(1, gradient=mode)(x, return_membrane=True)
    (g * psp).sum().backward()
    gradients[mode], psps[mode] = x.grad.flatten(), psp.detach().flatten()
print("same PSP in both modes:", torch.equal(psps["tsslbp"], psps["surrogate"]))

spike_times = torch.nonzero(membrane.detach().flatten() > 1).flatten()
fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
top.plot(membrane.detach().flatten(), label="membrane $u_t$ (before reset)")
top.plot(psps["tsslbp"], label="PSP $a_t$ (the output)")
top.axhline(1.0, color="k", lw=0.8, ls="--", label="threshold")
top.vlines(spike_times, 0, 1.6, color="k", alpha=0.25, label="spikes")
top.legend(fontsize=8, loc="upper right")
bottom.plot(gradients["tsslbp"], marker=".", label="TSSL-BP")
bottom.plot(gradients["surrogate"], marker=".", label="BPTT, sigmoid surrogate")
bottom.set(xlabel="time step", ylabel=r"$\partial L / \partial I_t$")
bottom.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "06_neuron_gradient.png", dpi=110)

# %% [markdown]
# At a spike, TSSL-BP's gradient is the error of the PSP from then on times how far the
# spike moves, $-1/\Delta u_t$: a membrane that crosses the threshold steeply moves its spike
# little. An input between spikes moves the next spike through the membrane it leaves behind
# (the carried term), and where the PSP has faded ($a_t < 1/(4\tau_s)$) the sigmoid fallback
# takes over. The surrogate instead differentiates every step's spike function, weighted by
# how close the membrane is to the threshold.
#
# ## The vectorised backward equals the reference loop
#
# The reference code walks back over the steps and, at each, sums over the whole future
# (an $O(T^2)$ loop). `tssl_backward` computes the same numbers with two reverse scans for
# all neurons and steps at once; `tssl_backward_reference` is the loop, kept as the
# specification.

# %%
for steps in (2, 5, 10, 100):
    x = 0.6 * torch.randn(steps, 256, dtype=torch.float64) + 0.3
    zeros = torch.zeros(256, dtype=torch.float64)
    psp, spikes, membrane, delta_u, _, _ = tssl_forward_reference(x, zeros, zeros, 1.0, 5.0, 3.0)
    grad_psp = torch.randn_like(x)
    loop = tssl_backward_reference(grad_psp, spikes, membrane, delta_u, psp, 1.0, 5.0, 3.0)
    scans = tssl_backward(grad_psp, spikes, membrane, delta_u, psp, 1.0, 5.0, 3.0)
    x.requires_grad_()
    (tsslbp(x)[0] * grad_psp).sum().backward()  # the autograd op used by PSPLIF
    print(
        f"T = {steps:3d}: max |scans - loop| = {(scans - loop).abs().max():.1e}, "
        f"max |autograd - loop| = {(x.grad - loop).abs().max():.1e}, spikes {int(spikes.sum())}"
    )

# %% [markdown]
# ## Conv nets in the paper's notation
#
# `tssl_network` reads the paper's layer strings: `15C5` is a 5x5 convolution to 15
# channels, `P2` a 2x2 sum pooling (times 1.1, as in the reference code), `300` a fully
# connected layer; an output layer of one neuron per class is appended. Every synapse is
# followed by `PSPLIF` neurons, and the input image, repeated over the steps, goes through
# a PSP filter first. The result is an `nn.Sequential`; `discover(net).run(x)` runs a whole
# sequence `[T, B, ...]` through it (the trainers do the same). Here is the paper's MNIST
# network and the smaller one we train on the 8x8 digits:

# %%
for spec, shape in (("15C5-P2-40C5-P2-300", (1, 28, 28)), ("16C3-32C3-P2-128", (1, 8, 8))):
    net = tssl_network(spec, shape, classes=10)
    weights = sum(p.numel() for p in net.parameters())
    with torch.no_grad():
        out = discover(net).run(torch.rand(5, 2, *shape))  # [T, B, 10]: the output PSPs
    print(f"{spec:20s} on {shape}: {weights:7d} weights, output {list(out.shape)}")
print(tssl_network("16C3-32C3-P2-128", (1, 8, 8), classes=10))

# %% [markdown]
# ## The spike-sequence loss
#
# `SpikeSequenceLoss("kernel")` asks the output neuron of the right class for the PSP of a
# desired spike train (`0,1,1,1,1` for T < 10, `0,1,0,1,...` from T = 10 on) and every other
# output neuron for silence: $E = \frac12 \sum_{t,k} (a_{t,k} - \mathrm{PSP}(d_k)_t)^2$. The
# `"count"` variant compares only the PSP sums with desired counts. The prediction is the
# class of the largest summed PSP.

# %%
loss = SpikeSequenceLoss()
fig, ax = plt.subplots(figsize=(6, 3.5))
for steps in (5, 20):
    ax.plot(loss.desired_psp(steps, torch.zeros(())), marker="o", label=f"T = {steps}")
ax.set(xlabel="time step", ylabel="desired PSP", title="the target class's desired PSP (kernel loss)")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "06_desired_psp.png", dpi=110)

# %% [markdown]
# ## TSSL-BP against BPTT on the digits
#
# The 8x8 digits, each picture repeated over T = 5 steps. Both rules train the same network
# with the same loss and the reference's recipe: AdamW, the loss summed over the batch, the
# gradient norm clipped to 1 and the weights clamped to $[-4, 4]$. `TSSLBPTrainer` has these
# as defaults; `BPTTTrainer` takes them as options. The only difference is the gradient:
# the network with `gradient="surrogate"` is BPTT through the sigmoid surrogate. Each rule
# runs at the rate chosen for it on a validation split (see the end). We record the test
# accuracy after every epoch for a few seeds.

# %%
RATES = {"TSSL-BP": 1e-2, "BPTT": 5e-3}
EPOCHS = 1 if SMALL else 30
SEEDS = [0] if SMALL else [0, 1, 2]


def make_trainer(rule: str, net: torch.nn.Module):
    optimizer = torch.optim.AdamW(net.parameters(), lr=RATES[rule])
    if rule == "TSSL-BP":
        return TSSLBPTrainer(net, optimizer, progress=False)
    return BPTTTrainer(
        net, optimizer, loss=SpikeSequenceLoss(), clip_grad_norm=1.0, weight_clamp=4.0, batch_sum=True, progress=False
    )


curves, trained = {}, {}
for seed in SEEDS:
    train_set = SequentialDigits("train", "image", seed=seed, repeat=5)
    test_set = SequentialDigits("test", "image", seed=seed, repeat=5)
    if SMALL:
        train_set.inputs, train_set.targets = train_set.inputs[:300], train_set.targets[:300]
    for rule in RATES:
        torch.manual_seed(seed)
        net = tssl_network(
            "16C3-32C3-P2-128", (1, 8, 8), classes=10, gradient="tsslbp" if rule == "TSSL-BP" else "surrogate"
        )
        trainer = make_trainer(rule, net)
        history = trainer.fit(
            make_loader(train_set, 50, shuffle=True, seed=seed), EPOCHS, val_loader=make_loader(test_set, 256)
        )
        curves[rule, seed] = [100 * h["val_accuracy"] for h in history]
        trained[rule] = net
        print(
            f"seed {seed} {rule:7s}: test accuracy {curves[rule, seed][-1]:.1f} %, "
            f"{sum(h['seconds'] for h in history):.1f} s"
        )

fig, ax = plt.subplots(figsize=(6.5, 4))
for (rule, seed), values in curves.items():
    ax.plot(
        range(1, len(values) + 1),
        values,
        color="C0" if rule == "TSSL-BP" else "C1",
        alpha=0.8,
        label=rule if seed == SEEDS[0] else None,
    )
ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="16C3-32C3-P2-128, T = 5, one line per seed", ylim=(80, 100))
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "06_training.png", dpi=110)

# %% [markdown]
# What the trained TSSL-BP network answers: the output PSPs of one test picture against the
# desired PSP of its class.

# %%
x, label = test_set[0]
with torch.no_grad():
    psp = discover(trained["TSSL-BP"]).run(x[:, None])[:, 0]  # [T, 10]
fig, ax = plt.subplots(figsize=(6.5, 3.5))
for k in range(10):
    ax.plot(psp[:, k], marker="o", lw=2.5 if k == int(label) else 0.8, label=f"class {k}" if k == int(label) else None)
ax.plot(loss.desired_psp(5, psp), "k--", label="desired")
ax.set(xlabel="time step", ylabel="output PSP", title=f"a test digit {int(label)}: the output neurons")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "06_output_psp.png", dpi=110)

# %% [markdown]
# ## Time and memory of a training step
#
# `tsslbp_profile` times one training step of this network (batch 50, T = 5) with each rule
# in a fresh process and adds up the activations kept for the backward. TSSL-BP stores the
# spikes, membranes, membrane increments and PSPs of each layer; BPTT stores its autograd
# graph of the step loop.

# %%
for row in tsslbp_profile(repeats=3 if SMALL else 20):
    print(
        f"{row['rule']:7s}: {row['ms_per_step']:6.1f} ms per step, {row['saved_mib']:5.2f} MiB saved for the backward"
    )

# %% [markdown]
# ## Over many seeds
#
# The learning curves above are a few seeds on one split each. A run differs by seed in its
# split, its initial weights and its batches, and the test split holds 360 pictures (one
# picture is 0.28 points), so single runs say little. The committed files in
# `benchmarks/learners/` hold `snn-parallel train --task image` over 30 seeds, with both
# rules under the reference recipe and under the usual one (the loss averaged over the
# batch, no weight clamp), each rule at the rate it scored best at on a validation split
# (`image_valid_*.json`).

# %%
# the checkout this package is installed from, whatever the working directory
checkout = Path(snn_parallel.__file__).resolve().parents[1]
benchmarks = Path(os.environ.get("SNN_BENCHMARKS", checkout / "benchmarks")) / "learners"
fig, axes = plt.subplots(1, 2, figsize=(9, 4.5), sharex=True, sharey=True)
for ax, recipe in zip(axes, ("reference", "mean"), strict=True):
    accuracy = {}
    for rule in ("tsslbp", "bptt"):
        rows = json.loads((benchmarks / f"image_test_{rule}_{recipe}.json").read_text())["rows"]
        accuracy[rule] = {r["seed"]: 100 * r["test_accuracy"] for r in rows}
    seeds = sorted(set(accuracy["tsslbp"]) & set(accuracy["bptt"]))
    tssl, bptt = (torch.tensor([accuracy[rule][s] for s in seeds]) for rule in ("tsslbp", "bptt"))
    difference = tssl - bptt
    print(
        f"{recipe:9s} recipe, {len(seeds)} seeds: TSSL-BP {tssl.mean():.2f} %, BPTT {bptt.mean():.2f} %, "
        f"paired difference {difference.mean():+.2f} ± {difference.std() / len(seeds) ** 0.5:.2f} "
        f"(standard error); TSSL-BP ahead on {int((difference > 0).sum())}, behind on {int((difference < 0).sum())}"
    )
    ax.scatter(bptt, tssl, alpha=0.6)
    ax.plot([95, 100], [95, 100], "k--", lw=0.8)
    ax.set(xlabel="BPTT test accuracy (%)", title=f"{recipe} recipe, one point per seed")
axes[0].set_ylabel("TSSL-BP test accuracy (%)")
fig.tight_layout()
fig.savefig(OUT / "06_seeds.png", dpi=110)

# %% [markdown]
# On this small task TSSL-BP trains the network to within about a third of a point of
# BPTT through the surrogate, under either recipe, but not beyond it: more points lie below
# the diagonal than above. Running the same comparison on your own data takes the two
# trainers above and nothing else.
