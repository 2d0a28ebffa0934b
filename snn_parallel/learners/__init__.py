"""Learning rules as trainers around an existing spiking network, any ``nn.Module``.

``XTrainer(model, optimizer, **rule_options, **shared_options).fit(loader, epochs)`` trains
``model`` as it was written (:func:`discover` finds its stateful parts by type and lets its own
``forward`` run) with one rule; the options every rule shares (``loss``, ``progress``,
``clip_grad_norm``, ``weight_clamp``, ``batch_first``) are declared once, in
:class:`TrainerOptions`. The rules:

- :class:`BPTTTrainer`: backpropagation through time (the baseline);
- :class:`FPTTTrainer`: forward propagation through time, ``parts=K`` updates per sequence;
- :class:`OTTTTrainer`: online training through time with presynaptic traces;
- :class:`HYPRTrainer`: hybrid propagation, exact eligibilities computed per sub-sequence;
- :class:`TSSLBPTrainer`: TSSL-BP's timing-based backward through
  :class:`~snn_parallel.neurons.PSPLIF` networks (:func:`tssl_network`), with :class:`SpikeSequenceLoss`.

FPTT (with ``parts=T``), OTTT and HYPR keep memory independent of the sequence length.
"""

from .hypr import HYPRTrainer
from .losses import StepLoss
from .network import Network, RecurrentBlock, SequenceDropout, Structure, UnsupportedModule, discover
from .nonfinite import NonFiniteError
from .resnet import spiking_resnet
from .rules import BPTTTrainer, FPTTTrainer, OTTTTrainer
from .trainer import Trainer, TrainerOptions
from .tsslbp import SpikeSequenceLoss, SumPool2d, TSSLBPTrainer, tssl_network

__all__ = [
    "Trainer",
    "TrainerOptions",
    "BPTTTrainer",
    "FPTTTrainer",
    "OTTTTrainer",
    "HYPRTrainer",
    "TSSLBPTrainer",
    "SpikeSequenceLoss",
    "SumPool2d",
    "tssl_network",
    "StepLoss",
    "RecurrentBlock",
    "SequenceDropout",
    "Network",
    "Structure",
    "spiking_resnet",
    "UnsupportedModule",
    "NonFiniteError",
    "discover",
]
