"""A SpikingJelly network of soft-reset LIF nodes, trained in parallel over time by ours, then handed back."""

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from snn_parallel.adapters.spikingjelly import from_spikingjelly, to_spikingjelly

torch.manual_seed(0)
steps, batch, inputs, hidden, classes = 25, 64, 20, 64, 4
labels = torch.arange(batch) % classes
rates = torch.rand(classes, inputs)[labels]                    # one firing-rate pattern per class
data = torch.bernoulli(rates.expand(steps, batch, inputs))     # time-major spike input


def build():                                                   # the model code as written for SpikingJelly
    net = nn.Sequential(
        layer.Linear(inputs, hidden),
        neuron.ParametricLIFNode(v_reset=None, detach_reset=True),
        layer.Linear(hidden, classes),
        neuron.ParametricLIFNode(v_reset=None, detach_reset=True),
    )
    functional.set_step_mode(net, "m")
    return net


def rates_of(net):                                             # firing rates over the whole sequence
    functional.reset_net(net)
    return net(data).mean(0)


model = from_spikingjelly(build())                             # each ParametricLIFNode ours, w carried
optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
for epoch in range(30):
    loss = F.mse_loss(rates_of(model), F.one_hot(labels, classes).float())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"trained in parallel: loss {loss.item():.3f}")

original = build()                                             # back into the network built with SpikingJelly's
original.load_state_dict(to_spikingjelly(model).state_dict())
with torch.no_grad():
    theirs, ours = rates_of(original), rates_of(model)
accuracy = (theirs.argmax(1) == labels).float().mean()
print(f"SpikingJelly's nodes: accuracy {accuracy:.2f}, largest rate difference {(theirs - ours).abs().max():.3f}")
assert (theirs - ours).abs().max() < 0.05                      # float32 sums in another order may flip a rare spike
