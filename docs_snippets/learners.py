import torch
from torch import nn
from spikingjelly.activation_based import layer

from snn_parallel.adapters.spikingjelly import PRFNode
from snn_parallel.learners import HYPRTrainer, StepLoss
from snn_parallel.tasks import SequentialDigits, make_loader

torch.manual_seed(0)
train, test = SequentialDigits("train", "row"), SequentialDigits("test", "row")  # T = 8
net = nn.Sequential(
    layer.Linear(8, 64), PRFNode(64, dt_range=(0.01, 1.0)),
    layer.Linear(64, 64), PRFNode(64, dt_range=(0.01, 1.0)),
    layer.Linear(64, 10),
)
for synapse in (net[0], net[2]):  # start wide enough that the neurons fire from the first batch
    nn.init.uniform_(synapse.weight, -3 * (3 / synapse.in_features) ** 0.5, 3 * (3 / synapse.in_features) ** 0.5)
trainer = HYPRTrainer(net, torch.optim.Adam(net.parameters(), lr=1e-2), chunk=4, loss=StepLoss("ce", "all"))
# or: FPTTTrainer(net, optimizer, parts=8, loss=...), OTTTTrainer(..., variant="A"), BPTTTrainer(...)
history = trainer.fit(make_loader(train, 64, shuffle=True), epochs=4, val_loader=make_loader(test, 256))
print(f"loss {history[-1]['train_loss']:.3f}, test accuracy {history[-1]['val_accuracy']:.3f}")
trainer.save("hypr.pt")  # model, optimizer, rule state, RNGs: trainer.load("hypr.pt") resumes exactly
