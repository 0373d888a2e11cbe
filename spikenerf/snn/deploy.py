"""What a spike code sends once deployed, and the fold that keeps the next layer's output unchanged.

In training a neuron emits ``scale * s`` (``scale`` = its output scale: a Ternary Spike amplitude, the
multi-bit step, or 1). Deployed, it sends the cheapest code ``s'`` and the next linear layer absorbs the rest:

- ``binary`` {0,1}, ``ternary`` {-1,0,1}, ``multibit`` {0..L}: ``s' = s``; the scale goes into the weights.
- ``ternary012`` {0,1,2} (Spik-NeRF): ``s' = s - 1`` in {-1,0,1}, so ``scale * s = scale * s' + scale``: the
  scale goes into the weights and ``W @ scale`` into the bias. A silent neuron (``s = 0``) now sends -1,
  which *is* an event; a neuron at 1 sends 0 and is not (:func:`count_events`).

This module is the one source of that rule (:data:`DEPLOY_OFFSET`); the NeRF colour nets and the vision
exporters both use it.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from spikenerf.snn import LIFNode
    >>> node = LIFNode(tau=4.0, v_threshold=0.5, spike_code="ternary012").eval()
    >>> layer = nn.Linear(3, 2)
    >>> x = torch.rand(2, 5, 3) * 3          # [T, B, C]
    >>> ref = layer(node(x))                  # training form
    >>> dep = fold_consumer(layer, node)(deployed_spikes(node, x))
    >>> torch.allclose(ref, dep, atol=1e-6)
    True
"""

from __future__ import annotations

from torch import Tensor, nn

from .affine import fold_input_affine_layer
from .fused import multistep_scan
from .neurons.base import BaseNode

__all__ = ["DEPLOY_OFFSET", "deploy_affine", "deployed_spikes", "deployed_code", "fold_consumer", "count_events"]

DEPLOY_OFFSET: dict[str, float] = {"binary": 0.0, "ternary": 0.0, "ternary012": 1.0, "multibit": 0.0}
"""``s' = s - DEPLOY_OFFSET[code]``: the deployed code of each training spike code."""


def deploy_affine(node: BaseNode) -> tuple[Tensor | float, Tensor | float]:
    """``(scale, shift)`` with ``training output == scale * deployed code + shift``.

    ``ternary012``: ``(k, k)`` with ``k`` the output scale (1 without one); other codes: ``(k, 0)``.
    """
    scale = node.output_scale()
    k: Tensor | float = scale.detach() if scale is not None else 1.0
    return k, k * DEPLOY_OFFSET[node.spec.code]


def deployed_spikes(node: BaseNode, x_seq: Tensor) -> Tensor:
    """``[T, B, ...]`` -> what the neuron sends at inference: the raw code (no scale), shifted by its offset."""
    a, b, c = node.charge_coefficients()
    s, _ = multistep_scan(x_seq, node.spec, a=a, b=b, c=c, vth=node.v_threshold, v0=None, backend=node.backend,
                          membrane_transform=node.membrane_transform)
    return deployed_code(node, s)


def deployed_code(node: BaseNode, s: Tensor) -> Tensor:
    """The raw training code ``s`` of ``node`` (no scale) -> the code it sends at inference (shifted)."""
    off = DEPLOY_OFFSET[node.spec.code]
    return s - off if off else s


def fold_consumer(layer: nn.Module, node: BaseNode, input_size: tuple[int, ...] | None = None) -> nn.Module:
    """The next layer with the neuron's ``(scale, shift)`` folded in: ``L'(deployed) == layer(training output)``."""
    scale, shift = deploy_affine(node)
    return fold_input_affine_layer(layer, scale, shift, input_size)


def count_events(code: str, s: Tensor, valid: Tensor | None, deployed: bool) -> Tensor:
    """0/1 tensor of spike *events* (non-zero entries of the deployed code), ``valid`` entries only.

    ``s`` is the raw code (no scale): the training code when ``deployed`` is False, the deployed one otherwise.
    Training codes are mapped to the deployed code first, so the count (and the energy) is the same before
    and after the re-parameterization.
    """
    off = 0.0 if deployed else DEPLOY_OFFSET[code]
    ev = s != off
    return (ev if valid is None else ev & valid).to(s.dtype)
