import torch
from spikingjelly.activation_based import functional, layer
from torch import nn

from snn_parallel.adapters.spikingjelly import PRFNode
from snn_parallel.tasks import SequentialDigits, make_loader

torch.manual_seed(0)
net = nn.Sequential(layer.Linear(8, 128, step_mode="m"), PRFNode(128, dt_range=(0.01, 1.0), step_mode="m"),  # was neuron.LIFNode
                    layer.Linear(128, 10, step_mode="m"))
nn.init.uniform_(net[0].weight, -1.5, 1.5)                     # wide enough to fire from the start
optimizer = torch.optim.Adam(net.parameters(), lr=5e-3)
for epoch in range(10):
    for x, y in make_loader(SequentialDigits("train", "row"), 64, shuffle=True):  # x: [T=8, B, 8]
        functional.reset_net(net)
        loss = nn.functional.cross_entropy(net(x).mean(0), y)    # 'm' mode: all steps in parallel
        optimizer.zero_grad(); loss.backward(); optimizer.step()
x, y = next(iter(make_loader(SequentialDigits("test", "row"), 360)))
functional.set_step_mode(net, "s")                                # streaming: one step per call, same spikes
functional.reset_net(net)
with torch.no_grad():
    out = torch.stack([net(x_t) for x_t in x.unbind(0)])
print(f"test accuracy {(out.mean(0).argmax(1) == y).float().mean():.3f}")
