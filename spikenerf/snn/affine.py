"""Fold an input affine map into the next linear layer: ``L'(s) == L(scale * s + shift)``.

The one general fold every re-parameterization builds on (spike amplitudes, Real Spike scales, Spik-NeRF's
{0,1,2} -> {-1,0,1} shift; see :mod:`spikenerf.snn.reparam` and :mod:`spikenerf.snn.real_spike`).

- ``nn.Linear`` (:func:`fold_input_affine`): scale into the weights, ``W @ shift`` into the bias; exact.
- ``nn.ConvNd`` (:func:`fold_input_affine_conv`): a scale is exact for any padding (padded zeros stay zero).
  A shift through a zero-padded conv is *position dependent*: the constant is absent where the kernel
  overlaps the padding, so the bias becomes a map over output positions (:class:`BiasMapConv`).

Example::

    >>> import torch
    >>> from torch import nn
    >>> lin = nn.Linear(3, 2)
    >>> folded = fold_input_affine(lin, scale=2.0, shift=1.0)
    >>> s = torch.randn(5, 3)
    >>> torch.allclose(folded(s), lin(2.0 * s + 1.0), atol=1e-6)
    True
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

__all__ = ["fold_input_affine", "fold_input_affine_conv", "fold_input_affine_layer", "scale_conv_input",
           "BiasMapConv"]


def _as_vector(v: Tensor | float | None, n: int, like: Tensor, default: float) -> Tensor:
    if v is None:
        return torch.full((n,), default, dtype=like.dtype, device=like.device)
    v = torch.as_tensor(v, dtype=like.dtype, device=like.device).reshape(-1)
    if v.numel() == 1:
        return v.expand(n).clone()
    if v.numel() != n:
        raise ValueError(f"scale/shift has {v.numel()} entries, the layer has {n} input features")
    return v


@torch.no_grad()
def fold_input_affine(layer: nn.Linear, scale: Tensor | float | None = None,
                      shift: Tensor | float | None = None) -> nn.Linear:
    """A new ``nn.Linear`` ``L'`` with ``L'(s) == layer(scale * s + shift)`` for every ``s``.

    ``scale`` / ``shift`` are scalars or per-input-feature vectors. The input layer is not modified.
    """
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"fold_input_affine expects nn.Linear, got {type(layer).__name__}")
    w = layer.weight
    k = _as_vector(scale, w.shape[1], w, 1.0)
    c = _as_vector(shift, w.shape[1], w, 0.0)
    out = copy.deepcopy(layer)
    if out.bias is None:
        out.bias = nn.Parameter(torch.zeros(w.shape[0], dtype=w.dtype, device=w.device))
    out.bias.copy_((layer.bias if layer.bias is not None else 0.0) + w @ c)
    out.weight.copy_(w * k.unsqueeze(0))
    return out


@torch.no_grad()
def scale_conv_input(conv: nn.modules.conv._ConvNd, scale: Tensor | float) -> nn.modules.conv._ConvNd:
    """A copy of ``conv`` with ``conv'(s) == conv(scale_c * s)`` (scalar or per-input-channel scale; any groups)."""
    k = _as_vector(scale, conv.in_channels, conv.weight, 1.0)
    out = copy.deepcopy(conv)
    g = conv.groups
    w = conv.weight  # [out, in/g, ...]
    spatial = [1] * (w.dim() - 2)
    wg = w.view(g, w.shape[0] // g, w.shape[1], *w.shape[2:])
    out.weight.copy_((wg * k.view(g, 1, -1, *spatial)).view_as(w))
    return out




class BiasMapConv(nn.Module):
    """``conv`` (without its bias) plus a per-output-position bias map ``[C_out, *out_spatial]``.

    The exact fold of a constant input shift through a zero-padded conv, for one input size.
    """

    def __init__(self, conv: nn.modules.conv._ConvNd, bias_map: Tensor) -> None:
        super().__init__()
        self.conv = conv
        self.register_buffer("bias_map", bias_map)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        if tuple(y.shape[1:]) != tuple(self.bias_map.shape):
            raise ValueError(f"BiasMapConv built for outputs {tuple(self.bias_map.shape)}, got {tuple(y.shape[1:])}")
        return y + self.bias_map


def _padding_is_zero(conv: nn.modules.conv._ConvNd) -> bool:
    if isinstance(conv.padding, str):
        return conv.padding == "valid"
    return all(p == 0 for p in conv.padding)


@torch.no_grad()
def fold_input_affine_conv(conv: nn.modules.conv._ConvNd, scale: Tensor | float | None = None,
                           shift: Tensor | float | None = None,
                           input_size: tuple[int, ...] | None = None) -> nn.Module:
    """``C'`` with ``C'(s) == conv(scale * s + shift)``; ``scale`` / ``shift`` scalar or per input channel.

    Returns a conv when the shift's contribution is the same at every output position (no shift, no
    padding, or a non-``zeros`` padding mode, where the padded border carries the shift too); otherwise a
    :class:`BiasMapConv` whose bias map is exact for inputs of spatial size ``input_size`` (required then).
    """
    if not isinstance(conv, nn.modules.conv._ConvNd) or isinstance(conv, nn.modules.conv._ConvTransposeNd):
        raise TypeError(f"fold_input_affine_conv expects nn.ConvNd, got {type(conv).__name__}")
    out = scale_conv_input(conv, 1.0 if scale is None else scale)
    if shift is None:
        return out
    w = conv.weight
    c = _as_vector(shift, conv.in_channels, w, 0.0)
    bias = conv.bias if conv.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    if _padding_is_zero(conv) or conv.padding_mode != "zeros":
        # every output sees the full kernel over a constant input: sum_{c, taps} W[o, c', taps] shift_c
        g = conv.groups
        wg = w.view(g, w.shape[0] // g, w.shape[1], -1)
        const = (wg.sum(-1) * c.view(g, 1, -1)).sum(-1).reshape(-1)
        if out.bias is None:
            out.bias = nn.Parameter(torch.zeros_like(const))
        out.bias.copy_(bias + const)
        return out
    if input_size is None:
        raise ValueError("a shift through a zero-padded conv is position dependent: pass input_size")
    shift_map = c.view(1, -1, *([1] * len(input_size))).expand(1, conv.in_channels, *input_size)
    bias_map = conv._conv_forward(shift_map, w, None)[0] + bias.view(-1, *([1] * len(input_size)))
    out.bias = None
    return BiasMapConv(out, bias_map.clone())


def fold_input_affine_layer(layer: nn.Module, scale: Tensor | float | None = None,
                            shift: Tensor | float | None = None,
                            input_size: tuple[int, ...] | None = None) -> nn.Module:
    """:func:`fold_input_affine` for ``nn.Linear``, :func:`fold_input_affine_conv` for ``nn.ConvNd``."""
    if isinstance(layer, nn.Linear):
        return fold_input_affine(layer, scale, shift)
    return fold_input_affine_conv(layer, scale, shift, input_size)
