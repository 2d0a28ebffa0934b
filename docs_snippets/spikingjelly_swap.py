"""Swap SpikingJelly's LIFNode for an snn_parallel neuron by changing one class name.

Runs on SpikingJelly 2.0.0 and 0.0.0.0.14: ``python docs_snippets/spikingjelly_swap.py``.
"""

import torch
from spikingjelly.activation_based import functional, layer, neuron  # noqa: F401 (neuron: the original)
from torch import nn

from snn_parallel.adapters.spikingjelly import DecoupledLIFNode

torch.manual_seed(0)
net = nn.Sequential(
    layer.Linear(8, 32, step_mode="m"),
    DecoupledLIFNode(32, tau=2.0, v_threshold=0.5, step_mode="m"),  # was neuron.LIFNode(tau=2.0, v_threshold=0.5, step_mode="m")
    layer.Linear(32, 4, step_mode="m"),
    DecoupledLIFNode(4, tau=2.0, v_threshold=0.5, step_mode="m"),  # was neuron.LIFNode(...)
)
x = torch.rand(16, 64, 8) * 2  # [T, B, features], time-major as SpikingJelly's multi-step mode
target = nn.functional.one_hot(torch.arange(64) % 4, 4).float()
optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
for step in range(100):
    functional.reset_net(net)  # reset the neurons' memories between batches, as with any SJ net
    loss = nn.functional.mse_loss(net(x).mean(0), target)  # firing rate vs one-hot
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step in (0, 99):
        print(f"step {step:3d}  loss {loss.item():.4f}")

functional.set_step_mode(net, "s")  # the trained net also runs step by step, with the same spikes
functional.reset_net(net)
print("first step spikes:", net(x[0]).sum().item())
