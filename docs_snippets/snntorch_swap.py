"""A snnTorch tutorial network with one class swapped: snn.Leaky -> DynamicDecay."""

import snntorch as snn
import snntorch.functional as SF
import snntorch.utils
import torch
from torch import nn

from snn_parallel.adapters.snntorch import DynamicDecay

torch.manual_seed(0)
steps, batch, inputs, hidden, classes = 10, 64, 20, 64, 4
labels = torch.arange(batch) % classes
rates = torch.rand(classes, inputs)[labels]                    # one firing-rate pattern per class
data = torch.bernoulli(rates.expand(steps, batch, inputs))     # time-major spike input

net = nn.Sequential(
    nn.Linear(inputs, hidden),
    DynamicDecay(hidden, init_hidden=True),                    # was: snn.Leaky(beta=0.9, init_hidden=True)
    nn.Linear(hidden, classes),
    DynamicDecay(classes, init_hidden=True, output=True),      # was: snn.Leaky(beta=0.9, init_hidden=True, output=True)
)
assert isinstance(net[1], snn.Leaky)                           # snnTorch's utilities see a Leaky

loss_fn, optimizer = SF.ce_rate_loss(), torch.optim.Adam(net.parameters(), lr=2e-2)
for epoch in range(30):
    snntorch.utils.reset(net)
    spk_rec = torch.stack([net(x_t)[0] for x_t in data])      # one step per call, as with Leaky
    loss = loss_fn(spk_rec, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if epoch in (0, 29):
        print(f"epoch {epoch:2d}  loss {loss.item():.3f}  accuracy {SF.accuracy_rate(spk_rec, labels):.2f}")
