import snntorch as snn
import torch
from torch import nn

from snn_parallel.adapters.snntorch import DynamicDecay, reset
from snn_parallel.tasks import SequentialDigits, make_loader

torch.manual_seed(0)
net = nn.Sequential(nn.Linear(8, 128), DynamicDecay(128, init_hidden=True),  # was snn.Leaky(beta=0.9, init_hidden=True)
                    nn.Linear(128, 10), DynamicDecay(10, init_hidden=True, output=True))
nn.init.uniform_(net[0].weight, -1.5, 1.5)                     # wide enough to fire from the start
optimizer = torch.optim.Adam(net.parameters(), lr=5e-3)
for epoch in range(10):
    for x, y in make_loader(SequentialDigits("train", "row"), 64, shuffle=True):  # x: [T=8, B, 8]
        reset(net)
        h = net[1].multistep(net[0](x))                          # all 8 steps at once
        spk, mem = net[3].multistep(net[2](h))
        loss = nn.functional.cross_entropy(mem.mean(0), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
x, y = next(iter(make_loader(SequentialDigits("test", "row"), 360)))
reset(net)
with torch.no_grad():                                             # streaming: one step per call, as with Leaky
    mem = torch.stack([net(x_t)[1] for x_t in x.unbind(0)])
print(f"test accuracy {(mem.mean(0).argmax(1) == y).float().mean():.3f}")
