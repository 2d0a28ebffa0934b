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
# # 5. Write your own parallel neuron
#
# Any neuron whose membrane follows a *gated linear recurrence*
#
# $$h_t = a_t \odot h_{t-1} + b_t$$
#
# (the decay $a_t$ and input $b_t$ may depend on the input, but not on the spikes) trains in
# parallel over time with `snn_parallel.ops.linear_scan`. Here we build one, the
# **input-gated leaky neuron**: per channel, with learnable $w$ and $c$,
#
# $$a_t = \sigma(w\,x_t + c), \qquad h_t = a_t h_{t-1} + (1 - a_t)\,x_t, \qquad
# s_t = \Theta(h_t - V_{th}).$$
#
# A strong input can open the gate (small $a_t$: forget and follow the input) or close it
# (large $a_t$: hold), which a fixed-decay LIF cannot. We then
#
# 1. implement its two hooks: `update` (one time step) and `update_sequence` (all steps in
#    parallel, with the scan), which the base class's `step` and `forward` call;
# 2. test the two against each other: spikes, membranes, gradients and carried state;
# 3. time them;
# 4. give the neuron an snnTorch and a SpikingJelly skin and register it in both frameworks;
# 5. train it on the built-in digits.
#
# Needs `matplotlib`; steps 4 and 5 use `snntorch`, `spikingjelly` and `scikit-learn`. Run
# it as a script (`python tutorials/05_custom_neuron.py`) or open it with
# `jupytext --to ipynb tutorials/05_custom_neuron.py`.

# %%
import os
import time
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from snn_parallel.neurons import Neuron
from snn_parallel.ops import linear_scan
from snn_parallel.surrogate import resolve

OUT = Path(os.environ.get("SNN_TUTORIAL_OUT", "figures"))
OUT.mkdir(parents=True, exist_ok=True)
SMALL = os.environ.get("SNN_TUTORIAL_SMALL") == "1"  # CI runs a shrunken version
torch.manual_seed(0)

# %% [markdown]
# ## The neuron
#
# `Neuron` (the base class of every neuron in the library) checks the inputs and handles the
# state in its public `forward` and `step`, then calls two hooks on the checked inputs. A
# subclass provides
#
# - `state_type`: a `NamedTuple` of tensors (here just the membrane `h`);
# - `init_state(x_t)`: the resting state for a batch shaped like one step `x_t`;
# - `update(x_t, state)` (required): one step, returning the spike, the membrane and the next
#   state; a pure function of the parameters, the state and the input;
# - `update_sequence(x_seq, state)` (optional): all steps at once, returning spikes, membrane
#   and the final state. The base class's default loops `update` over time, which is all a
#   neuron whose spikes feed back into its state needs; ours has a parallel path, the scan;
# - per-channel parameters declared with `_declare(name=True)` and built by
#   `_initial_values(features)`, so that the feature count can come from the first input
#   (`GatedLeaky()` with no count, as SpikingJelly's model zoo builds its neurons).
#
# The decay goes to the scan as a logarithm (`log_decay=True`), $\log a_t =
# \log\sigma(w x_t + c)$, which stays exact over long sequences. `resolve(surrogate)` turns
# any surrogate (ours, snnTorch's, SpikingJelly's) into one spike function.


# %%
class GateState(NamedTuple):
    h: torch.Tensor  # membrane, [B, C, *spatial]


class GatedLeaky(Neuron):
    """Input-gated leaky neuron: a_t = sigmoid(w x_t + c), h_t = a_t h_{t-1} + (1 - a_t) x_t."""

    state_type = GateState

    def __init__(self, features=None, *, init_decay=0.9, v_threshold=1.0, surrogate=None, backend="auto"):
        super().__init__(features, backend)
        self.init_decay, self.v_threshold = init_decay, v_threshold
        self.surrogate = resolve(surrogate)
        self._declare(w=True, c=True)  # parameters now, or at the first input without a count

    def _initial_values(self, features):
        logit = float(torch.logit(torch.tensor(self.init_decay)))
        return {"w": torch.zeros(features), "c": torch.full((features,), logit)}

    def init_state(self, x_t):
        return GateState(torch.zeros_like(x_t))

    def _gate(self, x, channel_dim):
        """log a and 1 - a for input x, whose channels are in dim ``channel_dim``."""
        z = self._channel_view(self.w, x, channel_dim) * x + self._channel_view(self.c, x, channel_dim)
        return F.logsigmoid(z), torch.sigmoid(-z)

    def update(self, x_t, state):
        log_a, one_minus_a = self._gate(x_t, 1)  # [B, C, ...]
        h = log_a.exp() * state.h + one_minus_a * x_t
        return self.surrogate(h - self.v_threshold), h, GateState(h)

    def update_sequence(self, x_seq, state):
        log_a, one_minus_a = self._gate(x_seq, 2)  # [T, B, C, ...]
        h, h_last = linear_scan(log_a, one_minus_a * x_seq, state.h, log_decay=True, backend=self.ops_backend)
        return self.surrogate(h - self.v_threshold), h, GateState(h_last)


neuron = GatedLeaky()  # the feature count comes from the first input
x = torch.rand(300, 4, 16) * 2
spikes, membrane, state = neuron(x, return_membrane=True)
assert neuron.features == 16
print(neuron, "spikes:", tuple(spikes.shape), "state:", type(state).__name__, tuple(state.h.shape))

# %% [markdown]
# `_channel_view` shapes a per-channel `[C]` parameter to broadcast over `[T, B, C, ...]`
# (a sequence, channel dim 2) or `[B, C, ...]` (one step, channel dim 1).
#
# ## Test it against its own step loop
#
# The step loop is the specification: `forward` over T steps must equal T calls of `step`,
# for the spikes, the membrane and every gradient, and two `forward` calls that pass the
# state on must equal one. We check in float64 so that the only differences left are
# rounding.


# %%
def step_loop(neuron, x_seq, state=None):
    spikes, membranes = [], []
    for x_t in x_seq.unbind(0):
        s, state = neuron.step(x_t, state)
        spikes.append(s)
        membranes.append(state.h)
    return torch.stack(spikes), torch.stack(membranes), state


torch.manual_seed(1)
test_neuron = GatedLeaky(8).double()
with torch.no_grad():
    test_neuron.w.normal_()
for steps in (1, 7, 100):  # including T = 1 and a length that is not a power of two
    x_seq = (torch.rand(steps, 3, 8, dtype=torch.float64) * 2).requires_grad_()
    s_par, h_par, last_par = test_neuron(x_seq, return_membrane=True)
    grads_par = torch.autograd.grad((h_par.sin().sum() + s_par.sum()), [x_seq, test_neuron.w, test_neuron.c])
    s_seq, h_seq, last_seq = step_loop(test_neuron, x_seq)
    grads_seq = torch.autograd.grad((h_seq.sin().sum() + s_seq.sum()), [x_seq, test_neuron.w, test_neuron.c])
    assert torch.equal(s_par, s_seq), "spikes differ"
    torch.testing.assert_close(h_par, h_seq)
    torch.testing.assert_close(last_par.h, last_seq.h)
    for g_par, g_seq in zip(grads_par, grads_seq, strict=True):
        torch.testing.assert_close(g_par, g_seq)
    print(f"T = {steps:3d}: spikes, membrane, final state and gradients (input, w, c) match")

with torch.no_grad():  # the state carried between calls
    x_seq = torch.rand(50, 3, 8, dtype=torch.float64) * 2
    whole, _ = test_neuron(x_seq)
    first, carried = test_neuron(x_seq[:23])
    second, _ = test_neuron(x_seq[23:], carried)
assert torch.equal(torch.cat([first, second]), whole)
print("two chained forward calls equal one")

# %%
with torch.no_grad():
    s_seq, h_seq, _ = step_loop(neuron, x[:120])
    s_par, h_par, _ = neuron(x[:120], return_membrane=True)
fig, ax = plt.subplots(figsize=(9, 3.5))
ax.plot(h_par[:, 0, 0], lw=2.5, alpha=0.5, label="membrane, forward (parallel)")
ax.plot(h_seq[:, 0, 0], "k--", lw=1, label="membrane, step loop")
ax.axhline(neuron.v_threshold, color="tab:red", lw=0.8, label="threshold")
ax.vlines(torch.nonzero(s_par[:, 0, 0]).flatten(), 0, 0.15, color="tab:green", label="spikes")
ax.set(xlabel="time step", ylabel="h", title="GatedLeaky, channel 0: parallel and step loop agree")
ax.legend(fontsize=8, loc="upper right")
fig.tight_layout()
fig.savefig(OUT / "05_parallel_vs_step.png", dpi=110)

# %% [markdown]
# ## Time: scan against step loop
#
# Forward and backward of one layer, B = 4, C = 64.

# %%
lengths = [64, 256] if SMALL else [128, 512, 2048, 8192]
times = {"forward (scan)": [], "step loop": []}
for steps in lengths:
    layer = GatedLeaky(64)
    x_seq = (torch.rand(steps, 4, 64) * 2).requires_grad_()
    runs = {"forward (scan)": lambda: layer(x_seq)[0], "step loop": lambda: step_loop(layer, x_seq)[0]}
    for name, run in runs.items():
        run().sum().backward()  # warm-up
        start = time.perf_counter()
        run().sum().backward()
        times[name].append(time.perf_counter() - start)
    print(
        f"T = {steps:5d}: scan {1e3 * times['forward (scan)'][-1]:7.1f} ms, loop {1e3 * times['step loop'][-1]:7.1f} ms"
    )

fig, ax = plt.subplots(figsize=(6, 4))
for name, values in times.items():
    ax.loglog(lengths, [1e3 * v for v in values], marker="o", label=name)
ax.set(xlabel="sequence length T", ylabel="forward + backward (ms)", title="GatedLeaky, B = 4, C = 64, CPU")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "05_speed.png", dpi=110)

# %% [markdown]
# ## Skins for snnTorch and SpikingJelly, and registration
#
# The adapters of `snn_parallel.adapters` are thin skins around a core neuron: they map the
# framework's conventions (arguments, surrogate objects, where the state lives, reset
# helpers) and call the core's `forward`/`step`. Their bases, `LeakyAdapter` (snnTorch) and
# `SpikingJellyNode` (SpikingJelly), take any `Neuron`, so a new neuron needs only a
# constructor.
#
# "Registering" means making the class reachable from the framework's own namespace, as
# `register()` does for the built-in neurons: `snntorch.GatedLeaky` and
# `spikingjelly.activation_based.neuron.GatedLeakyNode`.

# %%
import importlib.util

HAVE_SNNTORCH = importlib.util.find_spec("snntorch") is not None
HAVE_SPIKINGJELLY = importlib.util.find_spec("spikingjelly") is not None

if HAVE_SNNTORCH:
    import snntorch
    from snn_parallel.adapters.snntorch import LeakyAdapter

    class SnnTorchGatedLeaky(LeakyAdapter):
        """snnTorch skin: ``forward`` is one step, ``multistep`` a whole sequence."""

        _core_type = GatedLeaky
        _resets = ("none",)  # no reset: reset_mechanism must be "none"

        def __init__(
            self,
            features,
            *,
            threshold=1.0,
            spike_grad=None,
            init_hidden=False,
            output=False,
            reset_mechanism="none",
            **leaky_options,
        ):
            def make_core(surrogate, v_threshold):  # called with the checked threshold and surrogate
                return GatedLeaky(features, v_threshold=v_threshold, surrogate=surrogate)

            # then the snn.Leaky arguments, in the base's order (or by name)
            super().__init__(make_core, threshold, spike_grad, init_hidden, output, reset_mechanism, **leaky_options)

    snntorch.GatedLeaky = SnnTorchGatedLeaky  # registered
    lif = snntorch.GatedLeaky(16)
    assert isinstance(lif, snntorch.Leaky)
    x_seq = torch.rand(40, 2, 16) * 2
    lif.init_leaky()
    stepped = torch.stack([lif(x_t)[0] for x_t in x_seq.unbind(0)])
    lif.reset_mem()  # back to rest, as snntorch.utils.reset(net) does for a network
    whole, _ = lif.multistep(x_seq)
    print("snntorch.GatedLeaky: step loop == multistep:", torch.equal(stepped, whole))

if HAVE_SPIKINGJELLY:
    from snn_parallel.adapters.spikingjelly import NO_RESET, SpikingJellyNode
    from spikingjelly.activation_based import functional, layer
    from spikingjelly.activation_based import neuron as sj_neuron

    class GatedLeakyNode(SpikingJellyNode):
        """SpikingJelly node: step_mode 's' calls ``step``, 'm' calls the parallel ``forward``."""

        def __init__(
            self,
            features,
            *,
            v_threshold=1.0,
            v_reset=None,
            surrogate_function=None,
            detach_reset=False,
            step_mode="s",
            store_v_seq=False,
            backend=None,
        ):
            core = GatedLeaky(
                features,
                v_threshold=v_threshold,
                surrogate=resolve("sigmoid" if surrogate_function is None else surrogate_function, inclusive=True),
            )
            # the reset it has, then the SpikingJelly arguments, in the base's order (or by name)
            super().__init__(core, NO_RESET, v_reset, detach_reset, step_mode, store_v_seq, backend)

    sj_neuron.GatedLeakyNode = GatedLeakyNode  # registered
    net = nn.Sequential(layer.Linear(16, 32, step_mode="m"), sj_neuron.GatedLeakyNode(32, step_mode="m"))
    x_seq = torch.rand(40, 2, 16)
    with torch.no_grad():
        functional.reset_net(net)
        multi = net(x_seq)
        functional.set_step_mode(net, "s")
        functional.reset_net(net)
        single = torch.stack([net(x_t) for x_t in x_seq.unbind(0)])
    print("neuron.GatedLeakyNode: 's' mode == 'm' mode:", torch.equal(multi, single))

# %% [markdown]
# ## Train it
#
# A `Linear -> GatedLeaky -> Linear` classifier on the built-in digits read one row per step
# (T = 8), trained in parallel over time with a plain PyTorch loop; the readout is averaged
# over time.

# %%
from snn_parallel.tasks import SequentialDigits, make_loader

train_set, test_set = SequentialDigits("train", "row"), SequentialDigits("test", "row")
if SMALL:
    train_set.inputs, train_set.targets = train_set.inputs[:256], train_set.targets[:256]
EPOCHS = 1 if SMALL else 20


class Net(nn.Module):
    def __init__(self, hidden=128):
        super().__init__()
        self.fc = nn.Linear(8, hidden)
        bound = 3 * (3 / 8) ** 0.5  # 3x PyTorch's default, so that the neurons fire from the start
        nn.init.uniform_(self.fc.weight, -bound, bound)
        self.neuron = GatedLeaky(hidden)
        self.readout = nn.Linear(hidden, 10)

    def forward(self, x_seq):
        spikes, _ = self.neuron(self.fc(x_seq))
        return self.readout(spikes).mean(0)


torch.manual_seed(0)
model = Net()
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
accuracies = []
start = time.perf_counter()
for epoch in range(EPOCHS):
    for x_seq, y in make_loader(train_set, 64, shuffle=True, seed=epoch):
        loss = F.cross_entropy(model(x_seq), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        correct = sum(int((model(x_seq).argmax(1) == y).sum()) for x_seq, y in make_loader(test_set, 256))
    accuracies.append(correct / len(test_set))
    print(f"epoch {epoch + 1:2d}: loss {loss.item():.3f}, test accuracy {accuracies[-1]:.3f}")
print(f"{time.perf_counter() - start:.1f} s of training")

fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(range(1, EPOCHS + 1), [100 * a for a in accuracies], marker="o")
ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="GatedLeaky on digits by row (T = 8)")
fig.tight_layout()
fig.savefig(OUT / "05_training.png", dpi=110)

# %% [markdown]
# ## Checklist for a new neuron
#
# - The membrane must be a linear recurrence in its own state (spikes must not feed back)
#   for the scan to apply; a reset can often be moved into a threshold bias, as
#   `DecoupledLIF` does.
# - Give the decay to `linear_scan` as a log (`log_decay=True`) when it comes from a sigmoid
#   or an exponential.
# - Keep `update` pure (no attribute changed, no randomness): `step` is replayed from saved
#   states, and the HYPR learner differentiates it with `torch.func`.
# - Test `forward` against the `step` loop: spikes, membrane, gradients, T = 1, an odd T,
#   and two chained calls. Without a parallel path, leave `update_sequence` out: the
#   default step loop gives the same numbers by construction.
# - Wrap it for the frameworks with a constructor, not new dynamics.
