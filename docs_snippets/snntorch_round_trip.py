"""A network written for snnTorch, trained in parallel over time by its skins, then handed back to snnTorch."""

import snntorch as snn
import snntorch.functional as SF
import snntorch.utils
import torch
from torch import nn

from snn_parallel.adapters.snntorch import from_snntorch, to_snntorch

torch.manual_seed(0)
steps, batch, inputs, hidden, classes = 25, 64, 20, 64, 4
labels = torch.arange(batch) % classes
rates = torch.rand(classes, inputs)[labels]                    # one firing-rate pattern per class
data = torch.bernoulli(rates.expand(steps, batch, inputs))     # time-major spike input


def build():                                                   # the model code as written for snnTorch
    return nn.Sequential(
        nn.Linear(inputs, hidden),
        snn.Leaky(beta=0.9, learn_beta=True, init_hidden=True),
        nn.Linear(hidden, classes),
        snn.Leaky(beta=0.9, learn_beta=True, init_hidden=True, output=True),
    )


def stepped(net):                                              # snnTorch's way: one step per call
    snntorch.utils.reset(net)
    return torch.stack([net(x_t)[0] for x_t in data])


def parallel(net):                                             # all steps at once: Linear on [T, B, F], multistep
    snntorch.utils.reset(net)
    hidden_spikes = net[1].multistep(net[0](data))
    return net[3].multistep(net[2](hidden_spikes))[0]


model = from_snntorch(build())                                 # each snn.Leaky a DecoupledLIF, values carried
loss_fn, optimizer = SF.ce_rate_loss(), torch.optim.Adam(model.parameters(), lr=2e-2)
for epoch in range(30):
    loss = loss_fn(parallel(model), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"trained in parallel: loss {loss.item():.3f}, beta {model[1].beta.item():.3f}")

original = build()                                             # back into the network written for snnTorch
original.load_state_dict(to_snntorch(model).state_dict())
with torch.no_grad():
    theirs, ours = stepped(original), parallel(model)
same = (theirs == ours).float().mean()
print(f"snn.Leaky stepped: accuracy {SF.accuracy_rate(theirs, labels):.2f}, the same spikes as the skins: {same:.1%}")
assert same > 0.99                                             # float32 sums in another order may flip a rare spike
