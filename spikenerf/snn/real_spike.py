"""Real Spike (Guo et al., ECCV 2022): real-valued spikes in training, binary spikes at inference.

Training: a spiking layer emits ``a * s`` with a learnable scale ``a`` (layer-wise, channel-wise or
element-wise) and binary ``s``; the next layer sees ``W * (a * s)``. Inference (training-inference
decoupling by re-parameterization): because conv / linear are linear, ``W * (a * s) = W' * s``:

- layer- or channel-wise ``a``: ``W'[o, c, ...] = W[o, c, ...] a_c``: an ordinary conv / linear, exact with
  zero padding (a padded zero times ``a`` is still zero);
- element-wise ``a`` (one scale per input position ``(c, y, x)``): each output position sees a different
  scaled kernel ``W'_l[o, c, i, j] = W[o, c, i, j] a[c, y_l(i), x_l(j)]``, i.e. an *unshared* convolution
  (:class:`UnsharedConv2d`, one kernel per output position). For a linear layer element-wise is simply
  per-input-feature.

:func:`fold_real_spike` returns the folded layer; the neuron then emits plain binary spikes.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from .affine import fold_input_affine, scale_conv_input

__all__ = ["RealSpike", "UnsharedConv2d", "fold_real_spike"]


class RealSpike(nn.Module):
    """Multiply spikes ``s`` ``[T, B, C, ...]`` by a learnable scale (init ``init``).

    mode: ``layer`` (one scalar), ``channel`` (``[C]``, broadcast over positions; ``channels`` needed) or
    ``element`` (``element_shape`` = one step's ``(C, H, W)`` or ``(F,)``).
    """

    def __init__(
        self,
        channels: int | None = None,
        mode: Literal["layer", "channel", "element"] = "channel",
        element_shape: tuple[int, ...] | None = None,
        init: float = 1.0,
    ) -> None:
        super().__init__()
        if mode == "layer":
            shape: tuple[int, ...] = ()
        elif mode == "channel":
            if channels is None:
                raise ValueError("RealSpike(mode='channel') needs channels")
            shape = (channels,)
        elif mode == "element":
            if element_shape is None:
                raise ValueError("RealSpike(mode='element') needs element_shape")
            shape = tuple(element_shape)
        else:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self.scale = nn.Parameter(torch.full(shape, float(init)))

    def broadcast_scale(self, ndim: int) -> Tensor:
        """The scale shaped to broadcast against a ``[T, B, ...]`` tensor of ``ndim`` dims."""
        if self.mode == "layer":
            return self.scale
        if self.mode == "channel":
            return self.scale.view(-1, *([1] * (ndim - 3)))
        if ndim - 2 != self.scale.dim():
            raise ValueError(f"element-wise scale {tuple(self.scale.shape)} does not match a step of {ndim - 2} dims")
        return self.scale

    def forward(self, s: Tensor) -> Tensor:
        return s * self.broadcast_scale(s.dim())

    def extra_repr(self) -> str:
        return f"mode={self.mode}, shape={tuple(self.scale.shape)}"


class UnsharedConv2d(nn.Module):
    """2-d convolution with a separate kernel (and bias) for every output position (locally connected).

    ``weight`` ``[L, out_channels, in_channels * kh * kw]`` with ``L = H_out * W_out``; ``bias``
    ``[out_channels, H_out, W_out]``. Zero padding, stride and dilation as in ``nn.Conv2d``; only inputs of
    ``input_size`` are accepted.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, input_size: tuple[int, int], stride=1,
                 padding=0, dilation=1, bias: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        self.input_size = tuple(input_size)
        self.output_size = tuple(
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, p, d, k, s in zip(self.input_size, self.padding, self.dilation, self.kernel_size, self.stride)
        )
        L = self.output_size[0] * self.output_size[1]
        kk = in_channels * self.kernel_size[0] * self.kernel_size[1]
        self.weight = nn.Parameter(torch.empty(L, out_channels, kk))
        nn.init.uniform_(self.weight, -1 / math.sqrt(kk), 1 / math.sqrt(kk))
        self.bias = nn.Parameter(torch.zeros(out_channels, *self.output_size)) if bias else None

    def unfold(self, x: Tensor) -> Tensor:
        return F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(f"UnsharedConv2d built for inputs {self.input_size}, got {tuple(x.shape[-2:])}")
        cols = self.unfold(x)  # [N, C*kh*kw, L]
        y = torch.einsum("nkl,lok->nol", cols, self.weight).reshape(x.shape[0], self.out_channels, *self.output_size)
        return y if self.bias is None else y + self.bias

    @classmethod
    @torch.no_grad()
    def from_conv(cls, conv: nn.Conv2d, input_size: tuple[int, int]) -> "UnsharedConv2d":
        """The same map as ``conv`` (shared kernel copied to every position)."""
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("UnsharedConv2d.from_conv supports groups=1, numeric zero padding")
        m = cls(conv.in_channels, conv.out_channels, conv.kernel_size, input_size, conv.stride, conv.padding,
                conv.dilation, bias=conv.bias is not None).to(conv.weight)
        w = conv.weight.reshape(conv.out_channels, -1)
        m.weight.copy_(w.unsqueeze(0).expand_as(m.weight))
        if conv.bias is not None:
            m.bias.copy_(conv.bias.view(-1, 1, 1).expand_as(m.bias))
        return m

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, input_size={self.input_size}, output_size={self.output_size}")


@torch.no_grad()
def fold_real_spike(layer: nn.Module, scale: Tensor | float, input_size: tuple[int, ...] | None = None) -> nn.Module:
    """The layer ``L'`` with ``L'(s) == layer(a * s)`` for the Real Spike scale ``a`` feeding ``layer``.

    ``scale``: scalar, ``[C]`` (per input channel / feature) or, for a ``Conv2d``, ``[C, H, W]`` element-wise
    (then ``input_size`` defaults to ``(H, W)`` and an :class:`UnsharedConv2d` is returned). The input layer is
    not modified. A :class:`RealSpike` module may be passed as ``scale``.
    """
    if isinstance(scale, RealSpike):
        scale = scale.scale.detach()
    w = getattr(layer, "weight", None)
    scale = torch.as_tensor(scale, dtype=None if w is None else w.dtype, device=None if w is None else w.device)
    if isinstance(layer, nn.Linear):
        return fold_input_affine(layer, scale.reshape(-1) if scale.dim() > 0 else scale)
    if not isinstance(layer, nn.modules.conv._ConvNd) or isinstance(layer, nn.modules.conv._ConvTransposeNd):
        raise TypeError(f"fold_real_spike expects nn.Linear or nn.ConvNd, got {type(layer).__name__}")
    if scale.dim() <= 1:
        return scale_conv_input(layer, scale)
    if not isinstance(layer, nn.Conv2d) or scale.dim() != 3:
        raise ValueError("element-wise Real Spike folds into nn.Conv2d with a [C, H, W] scale")
    if input_size is None:
        input_size = tuple(scale.shape[-2:])
    if tuple(scale.shape) != (layer.in_channels, *input_size):
        raise ValueError(f"scale {tuple(scale.shape)} must be [C_in, H, W] = {(layer.in_channels, *input_size)}")
    m = UnsharedConv2d.from_conv(layer, input_size)
    a = scale.to(m.weight).unsqueeze(0)
    # unfolding the scale map gives, for every output position, the scale under each kernel tap;
    # zero padding taps get 0, harmless since the padded input is 0 as well
    a_cols = m.unfold(a)[0]  # [C*kh*kw, L]
    m.weight.mul_(a_cols.t().unsqueeze(1))
    return m
