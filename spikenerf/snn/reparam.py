"""Inference-time re-parameterization: fold spike scales and offsets into the next layer.

A spiking layer's output feeds a linear map ``W``. If the emitted value is an affine function of a
cheaper spike code ``s`` (``scale * s + shift``: a ternary amplitude, Real Spike scales, Spik-NeRF's
{0,1,2} -> {-1,0,1} shift), then ``W (scale * s + shift) + b = (W scale) s + (b + W shift)``: the scale goes
into the weights and the constant goes into the bias, so inference sees only the cheap code.

Exactness (all to float rounding; tests in ``tests/snn/test_reparam.py``):

- :func:`fold_bn`: ``BN(L(x)) = L'(x)`` for ``nn.Linear`` / ``nn.ConvNd`` followed by an eval-mode BN: exact.
- :func:`~.affine.fold_input_affine` (Linear) and :func:`~.affine.fold_input_affine_conv`: a scale is exact for any padding
  (padded zeros stay zero). A shift through a conv with zero padding is *position dependent*: the
  constant ``shift`` is absent where the kernel overlaps the padding, so the bias becomes a map
  ``conv(shift_map)`` over output positions. We return a plain conv when that map is constant (no padding,
  or a non-zero padding mode) and a :class:`~.affine.BiasMapConv` (conv + exact bias map for one input size) otherwise.
- :func:`fold_amplitude` (Ternary Spike's learnable amplitude), :func:`fold_ternary012_shift`
  ({0,1,2} -> {-1,0,1}), and beside their modules :func:`~.real_spike.fold_real_spike` (Real Spike),
  :func:`~.mpbn.fold_mpbn` (MPBN -> thresholds), :func:`~.mpr.remove_mpr` (MPR). They are exact only when the spikes feed the layer directly (or through layers
  that commute with the affine map: avg-pooling commutes with a per-channel scale but, with zero padding, not
  with a shift; max-pooling only with a positive scale).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .affine import fold_input_affine_layer
from .deploy import DEPLOY_OFFSET
from .mpbn import bn_affine

__all__ = ["fold_bn", "fold_amplitude", "fold_ternary012_shift"]


# ---------------------------------------------------------------- BN -> conv / linear
@torch.no_grad()
def fold_bn(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """A copy ``L'`` of ``layer`` (``nn.Linear`` / ``nn.ConvNd``) with ``L'(x) == bn(layer(x))`` (``bn`` in eval).

    ``W' = W k`` and ``b' = b k + (beta - mu k)`` per output channel, ``k = gamma / sqrt(var + eps)``.
    """
    if not isinstance(layer, (nn.Linear, nn.modules.conv._ConvNd)) or isinstance(
            layer, nn.modules.conv._ConvTransposeNd):
        raise TypeError(f"fold_bn expects nn.Linear or nn.ConvNd, got {type(layer).__name__}")
    k, b = bn_affine(bn)
    out_ch = layer.weight.shape[0]
    if k.numel() != out_ch:
        raise ValueError(f"BN has {k.numel()} features, the layer has {out_ch} outputs")
    out = copy.deepcopy(layer)
    w = layer.weight
    out.weight.copy_(w * k.view(-1, *([1] * (w.dim() - 1))))
    old = layer.bias if layer.bias is not None else torch.zeros_like(k)
    if out.bias is None:
        out.bias = nn.Parameter(torch.zeros(out_ch, dtype=w.dtype, device=w.device))
    out.bias.copy_(old * k + b)
    return out


def fold_amplitude(layer: nn.Module, amplitude: Tensor | float) -> nn.Module:
    """Ternary Spike: the neuron emits ``alpha * s`` (``s`` in {-1,0,1}); ``L'(s) == layer(alpha * s)``."""
    return fold_input_affine_layer(layer, scale=amplitude)


def fold_ternary012_shift(layer: nn.Module, amplitude: Tensor | float = 1.0,
                          input_size: tuple[int, ...] | None = None) -> nn.Module:
    """Spik-NeRF's {0,1,2} code re-expressed as {-1,0,1}: the neuron emits ``s' = s - 1`` instead of
    ``alpha * s``; ``L'(s') == layer(alpha * (s' + 1))``, i.e. scale ``alpha`` and shift ``alpha``.

    (Only the spike code changes: the neuron still fires as before; subtract 1 from its levels.)
    """
    shift = amplitude * DEPLOY_OFFSET["ternary012"]
    return fold_input_affine_layer(layer, scale=amplitude, shift=shift, input_size=input_size)
