"""Inference folds: each one exact to float rounding (double precision), and the position-dependent border."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from spikenerf.snn import IFNode, MPBN, RealSpike, SeqToANNContainer
from spikenerf.snn.affine import BiasMapConv, fold_input_affine_conv
from spikenerf.snn.mpbn import fold_mpbn
from spikenerf.snn.real_spike import fold_real_spike
from spikenerf.snn.reparam import fold_amplitude, fold_bn, fold_ternary012_shift

D = torch.float64


def _rand_bn(n, cls=nn.BatchNorm2d, seed=0):
    g = torch.Generator().manual_seed(seed)
    bn = cls(n).to(D)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(n, generator=g, dtype=D))
        bn.bias.copy_(torch.randn(n, generator=g, dtype=D))
        bn.running_mean.copy_(torch.randn(n, generator=g, dtype=D))
        bn.running_var.copy_(torch.rand(n, generator=g, dtype=D) + 0.3)
    return bn.eval()


@pytest.mark.parametrize("kind", ["linear", "linear_nobias", "conv1d", "conv2d_groups"])
def test_fold_bn_exact(kind):
    torch.manual_seed(0)
    if kind.startswith("linear"):
        layer, bn, x = nn.Linear(5, 4, bias=kind == "linear"), _rand_bn(4, nn.BatchNorm1d), torch.randn(7, 5, dtype=D)
    elif kind == "conv1d":
        layer, bn, x = nn.Conv1d(3, 4, 3, padding=1), _rand_bn(4, nn.BatchNorm1d), torch.randn(2, 3, 9, dtype=D)
    else:
        layer, bn, x = nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False), _rand_bn(6), torch.randn(2, 4, 5, 5, dtype=D)
    layer = layer.to(D)
    f = fold_bn(layer, bn)
    # explicit formula, not nn.BatchNorm, as the reference
    y = layer(x)
    shape = (1, -1) + (1,) * (y.dim() - 2)
    ref = (y - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps) * bn.weight.view(shape) \
        + bn.bias.view(shape)
    torch.testing.assert_close(f(x), ref, rtol=0, atol=1e-12)


def test_shift_through_zero_padded_conv_is_position_dependent_and_bias_map_is_exact():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1).to(D)
    scale, shift = torch.rand(3, dtype=D) + 0.5, torch.randn(3, dtype=D)
    s = torch.randint(-1, 2, (5, 3, 9, 9)).to(D)
    ref = conv(s * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1))
    f = fold_input_affine_conv(conv, scale, shift, input_size=(9, 9))
    assert isinstance(f, BiasMapConv) and f.bias_map.shape == (4, 5, 5)
    torch.testing.assert_close(f(s), ref, rtol=0, atol=1e-12)
    # a constant bias (the no-padding formula) is right inside and wrong on the border
    const = (conv.weight.sum((2, 3)) * shift).sum(1) + conv.bias
    torch.testing.assert_close(f.bias_map[:, 1:-1, 1:-1], const.view(-1, 1, 1).expand(4, 3, 3), rtol=0, atol=1e-12)
    assert (f.bias_map[:, 0, :] - const.view(-1, 1)).abs().max() > 1e-3  # top row reads the padding
    assert (f.bias_map[:, -1, :] - const.view(-1, 1)).abs().max() > 1e-3  # 9 + 2 - 3 is even: so does the last
    with pytest.raises(ValueError, match="input_size"):
        fold_input_affine_conv(conv, scale, shift)


@pytest.mark.parametrize("padding,mode", [(0, "zeros"), (1, "replicate"), (1, "circular")])
def test_shift_position_independent_cases_give_plain_conv(padding, mode):
    torch.manual_seed(2)
    conv = nn.Conv2d(4, 6, 3, padding=padding, padding_mode=mode, groups=2).to(D)
    s = torch.randint(0, 3, (2, 4, 7, 7)).to(D)
    f = fold_input_affine_conv(conv, 0.8, torch.tensor([1.0, -0.5, 0.25, 2.0], dtype=D))
    assert type(f) is nn.Conv2d
    torch.testing.assert_close(f(s), conv(0.8 * s + torch.tensor([1.0, -0.5, 0.25, 2.0], dtype=D).view(1, -1, 1, 1)),
                               rtol=0, atol=1e-12)


def test_ternary_amplitude_fold_exact():
    torch.manual_seed(3)
    node = IFNode(v_threshold=0.5, spike_code="ternary", amplitude="learnable").to(D)
    with torch.no_grad():
        node.amplitude.fill_(0.73)
    nxt = nn.Conv2d(3, 2, 3, padding=1).to(D)
    x = torch.randn(4, 2, 3, 6, 6, dtype=D)
    s_amp = node(x)
    assert set(s_amp.unique().tolist()) == {-0.73, 0.0, 0.73}
    ref = SeqToANNContainer(nxt)(s_amp)
    nxt2 = fold_amplitude(nxt, node.amplitude.detach())
    node.amplitude_mode = None
    s = node(x)
    assert set(s.unique().tolist()) == {-1.0, 0.0, 1.0}
    torch.testing.assert_close(SeqToANNContainer(nxt2)(s), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_ternary012_to_signed_shift_exact(layer):
    torch.manual_seed(4)
    node = IFNode(v_threshold=0.3, spike_code="ternary012", margin=0.5, amplitude="learnable").to(D)
    with torch.no_grad():
        node.amplitude.fill_(1.7)
    if layer == "linear":
        nxt, x, size = nn.Linear(5, 3).to(D), torch.randn(6, 4, 5, dtype=D), None
    else:
        nxt, x, size = nn.Conv2d(5, 3, 3, padding=1).to(D), torch.randn(6, 2, 5, 6, 6, dtype=D), (6, 6)
    s012 = node(x)  # {0, 1.7, 3.4}
    assert set((s012 / 1.7).round().unique().tolist()) == {0.0, 1.0, 2.0}
    ref = SeqToANNContainer(nxt)(s012)
    nxt2 = fold_ternary012_shift(nxt, node.amplitude.detach(), input_size=size)
    signed = (s012 / 1.7).round() - 1.0  # what the exported neuron emits
    assert set(signed.unique().tolist()) == {-1.0, 0.0, 1.0}
    torch.testing.assert_close(SeqToANNContainer(nxt2)(signed), ref, rtol=0, atol=1e-12)


def test_whole_block_conv_bn_mpbn_realspike_conv_folds_exactly():
    """conv -> BN -> IF(MPBN) -> Real Spike (element-wise) -> conv, every fold applied, spikes binary at the end."""
    torch.manual_seed(5)
    c1, bn = nn.Conv2d(2, 3, 3, padding=1).to(D), _rand_bn(3, seed=1)
    node = IFNode(v_threshold=0.5, membrane_transform=MPBN(3)).to(D)
    m = node.membrane_transform.bn
    with torch.no_grad():
        m.weight.copy_(torch.tensor([1.2, -0.7, 0.9], dtype=D))
        m.bias.copy_(torch.tensor([0.1, 0.0, -0.2], dtype=D))
        m.running_mean.copy_(torch.tensor([0.3, -0.2, 0.1], dtype=D))
        m.running_var.copy_(torch.tensor([1.5, 0.8, 1.1], dtype=D))
    node.eval()
    rs = RealSpike(mode="element", element_shape=(3, 6, 6)).to(D)
    with torch.no_grad():
        rs.scale.uniform_(0.2, 2.0)
    c2 = nn.Conv2d(3, 4, 3, stride=2, padding=1).to(D)
    x = torch.randn(5, 2, 2, 6, 6, dtype=D)

    def run(first, neuron, scale, last):
        y = neuron(SeqToANNContainer(first)(x))
        return SeqToANNContainer(last)(y if scale is None else scale(y)), y

    ref, _ = run(nn.Sequential(c1, bn), node, rs, c2)
    f1 = fold_bn(c1, bn)
    n2 = fold_mpbn(copy.deepcopy(node), f1)
    f2 = fold_real_spike(c2, rs)
    out, spikes = run(f1, n2, None, f2)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
