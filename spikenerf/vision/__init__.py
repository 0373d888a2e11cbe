"""Spiking vision on the shared ``spikenerf.snn`` neuron core.

- :mod:`.data`: CIFAR-10 (JPEG folders), CIFAR-10/100, (Fashion-)MNIST, N-MNIST (.bs2), SHD, ModelNet, offline
  8x8 digits, and your own ``image-folder`` / ``event-folder`` class folders; never downloads
  (:class:`~.data.DatasetNotFoundError`).
- :mod:`.models`: spiking ResNet-19/20, VGG-11/16, SEW-ResNet-18/34, Spiking PointNet, Spikformer, each with an
  ANN twin.
- :mod:`.methods`: one module per training method (a config + a :class:`~.methods.base.Method`), named in
  :mod:`.methods.registry`; :mod:`.losses`, :mod:`.joint`: the pieces they use.
- :mod:`.config` (``VisionConfig``, presets, YAML), :mod:`.build` (config / checkpoint -> network),
  :mod:`.checkpoint` (atomic files), :mod:`.engine` (train / eval / export), :mod:`.cli` (``spikenerf-vision``).
- :mod:`.inference_folds`: inference folds (BN, Ternary/Real Spike amplitudes, MPBN, MPR); :mod:`.nir_export`: NIR graphs;
  :mod:`.energy_report`: SOPs / MACs / energy; :mod:`.report`: ``eval --json`` / ``--plot``.
"""

from .data import DatasetNotFoundError, get_dataset
from .blocks import NeuronConfig, SpikeAct
from .models import build_model

__all__ = ["DatasetNotFoundError", "get_dataset", "NeuronConfig", "SpikeAct", "build_model"]
