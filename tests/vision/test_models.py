"""Models: [T, B, ...] in, mean-over-T logits out, ANN twins, spike values, PointNet properties."""

from __future__ import annotations

import pytest
import torch

from spikenerf.snn import BaseNode
from spikenerf.vision.blocks import NeuronConfig, SpikeAct
from spikenerf.vision.models import build_model

IMAGE_MODELS = ["resnet19", "resnet20", "vgg11", "vgg16", "sew-resnet18", "sew-resnet34"]


def _input(name: str, T: int = 2, B: int = 3) -> torch.Tensor:
    return torch.rand(T, B, 3, 64) if name == "spiking-pointnet" else torch.rand(T, B, 3, 16, 16)


@pytest.mark.parametrize("name", IMAGE_MODELS + ["spiking-pointnet"])
def test_forward_shapes_and_twin(name):
    torch.manual_seed(0)
    snn = build_model(name, 5, 3, True, NeuronConfig(), width=0.0625, input_size=16)
    ann = build_model(name, 5, 3, False, NeuronConfig(), width=0.0625, input_size=16)
    x = _input(name)
    per_step = snn.forward_seq(x)
    assert per_step.shape == (2, 3, 5)
    assert torch.allclose(snn(x), per_step.mean(0))  # prediction = mean over T
    assert ann(x).shape == (3, 5)
    assert any(isinstance(m, BaseNode) for m in snn.modules())
    assert not any(isinstance(m, BaseNode) for m in ann.modules())
    # the twin has exactly the same weights (neurons here have no parameters)
    assert set(snn.state_dict()) == set(ann.state_dict())
    snn(x).sum().backward()
    assert all(p.grad is not None for p in snn.parameters())


def test_spike_values_binary_and_ternary():
    x = torch.randn(3, 2, 3, 8, 8)
    for cfg, allowed in [(NeuronConfig(), {0.0, 1.0}), (NeuronConfig(spike_code="ternary"), {-1.0, 0.0, 1.0})]:
        m = build_model("vgg11", 4, 3, True, cfg, width=0.0625, input_size=8)
        outs = []
        hooks = [a.register_forward_hook(lambda mod, i, o: outs.append(o)) for a in m.modules() if isinstance(a, SpikeAct)]
        m(x)
        for h in hooks:
            h.remove()
        vals = set(torch.cat([o.flatten() for o in outs]).unique().tolist())
        assert vals <= allowed and len(vals) >= 2


def test_ann_twin_time_invariant():
    ann = build_model("resnet20", 4, 3, False, None, width=0.25).eval()
    x = torch.rand(1, 2, 3, 16, 16)
    assert torch.allclose(ann(x), ann(x.expand(4, *x.shape[1:])), atol=1e-6)


def test_pointnet_permutation_invariant_and_perturbation():
    torch.manual_seed(0)
    m = build_model("spiking-pointnet", 2, 3, True, NeuronConfig(init_membrane=(0.0, 0.5)), width=0.25)
    x = torch.randn(1, 4, 3, 128)
    perm = torch.randperm(128)
    m.eval()
    assert torch.allclose(m(x), m(x[..., perm]), atol=1e-5)
    for T in (1, 2, 3, 4):  # trained at T=1, evaluated at T=1..4
        assert m(x.expand(T, *x.shape[1:])).shape == (4, 2)
    from spikenerf.vision.losses import record_membranes

    def first_membrane(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        with record_membranes(m) as acts:
            m(x)
        return acts[0].last_membrane.detach()

    m.train()  # random initial membrane U(0, 0.5) in training only
    a, b = first_membrane(1), first_membrane(2)
    assert not torch.allclose(a, b) and 0.0 < float((a - b).abs().max()) <= 0.5
    m.eval()
    assert torch.equal(first_membrane(1), first_membrane(2))


@pytest.mark.parametrize("name,n_conv3x3", [("vgg11", 8), ("vgg16", 13), ("sew-resnet18", 17), ("sew-resnet34", 33)])
def test_depth_matches_the_architecture(name, n_conv3x3):
    # VGG-11/16: 8/13 3x3 convs; SEW-ResNet-18/34 (CIFAR stem): 3x3 stem + 2 per basic block (2,2,2,2)/(3,4,6,3)
    m = build_model(name, 10, 3, True, NeuronConfig(), width=0.0625, input_size=32)
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d) and c.kernel_size == (3, 3)]
    assert len(convs) == n_conv3x3
