"""SpikingJelly's spiking ResNet-10, built without its model zoo.

SpikingJelly's zoo module (``spikingjelly.activation_based.model.spiking_resnet``) imports a
helper from torchvision at import time, and torchvision does not import on every machine (a
CUDA build of it on a CPU-only one raises). :func:`spiking_resnet` builds the zoo's
``SpikingResNet(BasicBlock, [1, 1, 1, 1])`` from SpikingJelly's ``layer`` modules: the same
modules under the same names (so a zoo ``state_dict`` loads into it), the same initialisation
and the same ``forward``; the tests check it against the zoo's own. The memory benchmark and
tutorial 3 use it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["spiking_resnet"]


class BasicBlock(nn.Module):
    """Two 3x3 conv -> norm -> neuron stages around a shortcut, as the zoo's ``BasicBlock``."""

    def __init__(self, inplanes: int, planes: int, stride: int, neuron: Callable[[int], nn.Module]) -> None:
        super().__init__()
        from spikingjelly.activation_based import layer

        self.conv1 = layer.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = layer.BatchNorm2d(planes)
        self.sn1 = neuron(planes)
        self.conv2 = layer.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = layer.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                layer.Conv2d(inplanes, planes, 1, stride=stride, bias=False), layer.BatchNorm2d(planes)
            )
        self.sn2 = neuron(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.sn2(out + identity)


class SpikingResNet(nn.Module):
    """Stem (7x7 conv, norm, neuron, max-pool), four one-block stages, global average pool, linear readout."""

    def __init__(self, neuron: Callable[[int], nn.Module], *, in_channels: int, classes: int, width: int) -> None:
        super().__init__()
        from spikingjelly.activation_based import layer

        self.conv1 = layer.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = layer.BatchNorm2d(width)
        self.sn1 = neuron(width)
        self.maxpool = layer.MaxPool2d(3, stride=2, padding=1)
        planes = [width, 2 * width, 4 * width, 8 * width]
        for index, (inplanes, out) in enumerate(zip([width] + planes[:-1], planes, strict=True), start=1):
            setattr(self, f"layer{index}", nn.Sequential(BasicBlock(inplanes, out, 1 if index == 1 else 2, neuron)))
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1))
        self.fc = layer.Linear(planes[-1], classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.sn1(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        x = torch.flatten(x, 1) if self.avgpool.step_mode == "s" else torch.flatten(x, 2)
        return self.fc(x)


def spiking_resnet(
    neuron: Callable[[int], nn.Module], *, in_channels: int = 3, classes: int = 10, width: int = 64
) -> nn.Module:
    """SpikingJelly's ``SpikingResNet(BasicBlock, [1, 1, 1, 1], num_classes=classes)`` (``width=64``,
    ``in_channels=3``), with ``neuron(channels)`` building each spiking layer.

    Args:
        neuron: the spiking layer for a given channel count, e.g. ``lambda c: neuron.LIFNode()``
            or ``lambda c: DecoupledLIFNode(c)``.
        in_channels: channels of the input pictures (the zoo's network takes 3).
        classes: outputs of the readout.
        width: channels of the stem and the first stage, doubled at each later stage (the zoo's
            is 64; smaller is faster).
    """
    for value, name in ((in_channels, "in_channels"), (classes, "classes"), (width, "width")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not callable(neuron) or isinstance(neuron, nn.Module):
        raise TypeError(
            f"neuron must be a callable that builds a new spiking layer for a channel count (e.g. "
            f"lambda channels: LIFNode()), got {type(neuron).__name__}"
        )
    return SpikingResNet(neuron, in_channels=in_channels, classes=classes, width=width)
