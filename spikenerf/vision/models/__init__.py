"""Vision models, each with an ANN twin (``spiking=False``: same layers, ReLU in every neuron slot)."""

from __future__ import annotations

from typing import Callable

from ..blocks import NeuronConfig
from .base import SeqClassifier
from .pointnet import SpikingPointNet, spiking_pointnet
from .resnet import SpikingResNet, resnet19, resnet20, sew_resnet18, sew_resnet34
from .spikformer import Spikformer, spikformer
from .vgg import SpikingVGG, vgg11, vgg16

__all__ = ["SeqClassifier", "SpikingResNet", "SpikingVGG", "SpikingPointNet", "MODELS", "build_model",
           "resnet19", "resnet20", "sew_resnet18", "sew_resnet34", "vgg11", "vgg16", "spiking_pointnet",
           "Spikformer", "spikformer"]

MODELS: dict[str, Callable[..., SeqClassifier]] = {
    "resnet19": resnet19,
    "resnet20": resnet20,
    "vgg11": vgg11,
    "vgg16": vgg16,
    "sew-resnet18": sew_resnet18,
    "sew-resnet34": sew_resnet34,
    "spiking-pointnet": spiking_pointnet,
    "spikformer": spikformer,
}


def build_model(name: str, num_classes: int, in_channels: int, spiking: bool = True,
                neuron: NeuronConfig | None = None, width: float = 1.0, input_size: int = 32) -> SeqClassifier:
    """Build a registered model by name (see ``MODELS``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    kwargs = dict(num_classes=num_classes, in_channels=in_channels, spiking=spiking, neuron=neuron, width=width)
    if name in ("vgg11", "vgg16", "spikformer"):
        kwargs["input_size"] = input_size
    return MODELS[name](**kwargs)
