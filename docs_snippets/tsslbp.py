"""TSSL-BP on the built-in 8x8 digits, each picture repeated over T = 5 steps."""

import torch

from snn_parallel.learners import TSSLBPTrainer, tssl_network
from snn_parallel.tasks import SequentialDigits, make_loader

torch.manual_seed(0)
net = tssl_network("16C3-32C3-P2-128", (1, 8, 8), classes=10)  # PSPLIF neurons; the output is their PSP
trainer = TSSLBPTrainer(net, torch.optim.AdamW(net.parameters(), lr=5e-3))  # loss "kernel", clip 1, weights in [-4, 4]
train = make_loader(SequentialDigits("train", "image", repeat=5), 50, shuffle=True)  # x: [T=5, B, 1, 8, 8]
history = trainer.fit(train, epochs=5)
print(f"train loss {history[-1]['train_loss']:.3f}")
print(trainer.evaluate(make_loader(SequentialDigits("test", "image", repeat=5), 256)))
