"""snnTorch tutorial 4's two-layer network with one class swapped: snn.Synaptic -> Synaptic."""

import snntorch as snn
import snntorch.functional as SF
import torch
from torch import nn

from snn_parallel.adapters.snntorch import Synaptic

torch.manual_seed(0)
steps, batch, inputs, hidden, classes = 25, 64, 20, 64, 4
labels = torch.arange(batch) % classes
rates = torch.rand(classes, inputs)[labels]                    # one firing-rate pattern per class
data = torch.bernoulli(rates.expand(steps, batch, inputs))     # time-major spike input


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(inputs, hidden)
        self.lif1 = Synaptic(alpha=0.9, beta=0.8)              # was: snn.Synaptic(alpha=0.9, beta=0.8)
        self.fc2 = nn.Linear(hidden, classes)
        self.lif2 = Synaptic(alpha=0.9, beta=0.8)              # was: snn.Synaptic(alpha=0.9, beta=0.8)

    def forward(self, x):                                      # the tutorial's loop, one step per call
        syn1, mem1 = self.lif1.init_synaptic()
        syn2, mem2 = self.lif2.init_synaptic()
        spk2_rec = []
        for x_t in x:
            spk1, syn1, mem1 = self.lif1(self.fc1(x_t), syn1, mem1)
            spk2, syn2, mem2 = self.lif2(self.fc2(spk1), syn2, mem2)
            spk2_rec.append(spk2)
        return torch.stack(spk2_rec)

    def parallel(self, x):                                     # the same spikes, all steps at once
        spk1, _, _ = self.lif1.multistep(self.fc1(x), *self.lif1.init_synaptic())
        spk2, _, _ = self.lif2.multistep(self.fc2(spk1), *self.lif2.init_synaptic())
        return spk2


net = Net()
assert isinstance(net.lif1, snn.Synaptic)                      # snnTorch's utilities see a Synaptic
loss_fn, optimizer = SF.ce_rate_loss(), torch.optim.Adam(net.parameters(), lr=5e-3)
for epoch in range(20):
    spk_rec = net.parallel(data) if epoch % 2 else net(data)
    loss = loss_fn(spk_rec, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if epoch in (0, 19):
        print(f"epoch {epoch:2d}  loss {loss.item():.3f}  accuracy {SF.accuracy_rate(spk_rec, labels):.2f}")
with torch.no_grad():
    print(f"steps and multistep fire alike at {(net(data) == net.parallel(data)).float().mean():.1%} of the places")
