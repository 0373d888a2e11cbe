"""spikenerf: spiking neural networks for neural rendering and vision."""

__version__ = "0.1.0"
