"""Neurons and surrogates against their equations."""

from __future__ import annotations

import math

import pytest
import torch

from spikenerf.snn import (
    ATan,
    DecayLIFNode,
    IFNode,
    LIFNode,
    MultiGaussian,
    PLIFNode,
    Rect,
    Sigmoid,
    SurrogateSchedule,
    Tanh,
    Triangle,
    get_surrogate,
    heaviside,
)

# the smooth functions whose derivatives the surrogates are
PRIMITIVES = {
    Sigmoid: lambda x, a: torch.sigmoid(a * x),
    ATan: lambda x, a: torch.atan(math.pi / 2 * a * x) / math.pi + 0.5,
    Tanh: lambda x, a: (torch.tanh(a * x) + 1) / 2,
}


@pytest.mark.parametrize("cls", list(PRIMITIVES))
def test_surrogate_is_derivative_of_its_primitive(cls):
    sg = cls(alpha=3.0)
    x = torch.linspace(-2, 2, 101, dtype=torch.float64, requires_grad=True)
    PRIMITIVES[cls](x, 3.0).sum().backward()
    torch.testing.assert_close(sg.grad(x.detach()), x.grad)


@pytest.mark.parametrize("cls", [Sigmoid, ATan, Rect, Triangle, Tanh, MultiGaussian])
def test_surrogates_integrate_to_one(cls):
    """Every surrogate stands in for a Dirac delta: unit area, except the multi-Gaussian whose side lobes
    take away h: (1 + h) - h - h = 1 - h (Yin et al. 2021)."""
    x = torch.linspace(-60, 60, 600001, dtype=torch.float64)
    area = torch.trapezoid(cls().grad(x), x)
    expect = 1.0 - MultiGaussian.height if cls is MultiGaussian else 1.0
    assert abs(area.item() - expect) < 5e-3, (cls, area)  # ATan's 1/x^2 tails leave ~3e-3 outside


def test_rect_triangle_multigaussian_shapes():
    assert Rect(1.0).grad(torch.tensor([0.0, 0.49, 0.51])).tolist() == [1.0, 1.0, 0.0]
    torch.testing.assert_close(Triangle(2.0).grad(torch.tensor([0.0, 1.0, 2.0, 3.0])),
                               torch.tensor([0.5, 0.25, 0.0, 0.0]))
    mg = MultiGaussian(0.5)
    x = torch.tensor([0.0])
    n = lambda x, m, s: math.exp(-((x - m) ** 2) / (2 * s * s)) / (math.sqrt(2 * math.pi) * s)  # noqa: E731
    expect = 1.15 * n(0, 0, 0.5) - 0.15 * n(0, 0.5, 3.0) - 0.15 * n(0, -0.5, 3.0)
    assert abs(mg.grad(x).item() - expect) < 1e-6
    # negative side lobes are the point of the multi-Gaussian
    assert mg.grad(torch.tensor([1.5])).item() < 0


def test_heaviside_forward_exact_backward_surrogate():
    x = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
    y = heaviside(x, ATan(2.0))
    assert y.tolist() == [0.0, 1.0, 1.0]
    y.sum().backward()
    torch.testing.assert_close(x.grad, ATan(2.0).grad(x.detach()))


def test_schedule_linear_exp_and_resume():
    sg = ATan(1.0)
    sched = SurrogateSchedule(sg, start=1.0, end=4.0, total_steps=4, mode="exp")
    vals = [sg.alpha] + [sched.step() for _ in range(5)]
    torch.testing.assert_close(torch.tensor(vals), torch.tensor([1.0, 2 ** 0.5, 2.0, 2 ** 1.5, 4.0, 4.0]))
    lin = SurrogateSchedule([Sigmoid(), Tanh()], 1.0, 3.0, 2, "linear")
    lin.step()
    assert [s.alpha for s in lin.surrogates] == [2.0, 2.0]
    other = SurrogateSchedule(ATan(), 1.0, 3.0, 2, "linear")
    other.load_state_dict(lin.state_dict())
    assert other.surrogates[0].alpha == 2.0
    with pytest.raises(ValueError):
        get_surrogate("nope")


def _hand_loop(x, charge, vth=1.0, reset="hard", v_reset=0.0):
    v = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        h = charge(v, x[t])
        s = (h >= vth).float()
        v = h * (1 - s) + v_reset * s if reset == "hard" else h - vth * s
        out.append(s)
    return torch.stack(out)


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_neuron_forms_match_their_equations(reset):
    torch.manual_seed(1)
    x = torch.randn(30, 4, 9)
    vr = 0.2 if reset == "hard" else 0.0
    cases = [
        (IFNode(reset=reset, v_reset=vr), lambda v, xt: v + xt),
        (LIFNode(tau=3.0, reset=reset, v_reset=vr), lambda v, xt: v + (xt - (v - vr)) / 3.0),
        (LIFNode(tau=3.0, decay_input=False, reset=reset, v_reset=vr), lambda v, xt: v - (v - vr) / 3.0 + xt),
        (DecayLIFNode(decay=0.25, reset=reset, v_reset=vr), lambda v, xt: 0.25 * v + xt),
    ]
    for node, charge in cases:
        expect = _hand_loop(x, charge, reset=reset, v_reset=vr)
        got = node(x)
        # spikes may differ only where h is within float rounding of the threshold
        assert (got != expect).float().mean() < 1e-3, node


def test_plif_and_tanh_threshold_gradients_match_reference():
    torch.manual_seed(2)
    x = torch.randn(12, 3, 40)
    grads = {}
    for backend in ["auto", "reference"]:
        torch.manual_seed(0)
        node = PLIFNode(init_tau=2.5, threshold_mode="tanh", v_threshold=0.6, v_reset=0.1, backend=backend)
        node(x).pow(2).sum().backward()
        grads[backend] = (node.w.grad.clone(), node.threshold_w.grad.clone())
    for a, b in zip(grads["auto"], grads["reference"]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert abs(PLIFNode(init_tau=2.5).tau - 2.5) < 1e-6
    assert abs(PLIFNode(threshold_mode="tanh", v_threshold=0.6).v_threshold.item() - 0.6) < 1e-6


def test_random_initial_membrane_only_in_training():
    node = LIFNode(init_membrane=(0.0, 0.5), v_threshold=0.3)
    x = torch.zeros(1, 1000)
    node.train()
    s_train = node(x)
    # h_0 = v0 / 2 for tau = 2 with zero input: fires where U(0, 0.5)/2 >= 0.3 -> never; use membrane instead
    _, h = node(x, return_membrane=True)
    assert 0.0 <= h.min() and h.max() <= 0.25 and h.std() > 0.05
    node.eval()
    _, h_eval = node(x, return_membrane=True)
    assert torch.count_nonzero(h_eval) == 0 and s_train.sum() == 0


def test_amplitude_modes():
    x = torch.full((3, 2), 5.0)
    node = IFNode(spike_code="ternary", amplitude="learnable")
    with torch.no_grad():
        node.amplitude.fill_(0.7)
    assert torch.allclose(node(x), torch.full((3, 2), 0.7))
    mb = IFNode(spike_code="multibit", levels=3, v_threshold=0.5, amplitude="threshold", reset="soft")
    # h = 5 crosses 0.5,1.0,1.5 -> level 3, emitted as 3 * step
    assert mb(x)[0, 0].item() == pytest.approx(1.5)


def test_state_does_not_leak_between_calls():
    node = LIFNode()
    x = torch.rand(5, 2, 3) * 3
    assert torch.equal(node(x), node(x))


def test_bad_construction_errors():
    with pytest.raises(ValueError, match="DecayLIFNode"):
        LIFNode(tau=0.5)
    with pytest.raises(ValueError, match="decay"):
        DecayLIFNode(decay=1.5)
    with pytest.raises(ValueError, match="tanh"):
        LIFNode(threshold_mode="tanh", v_threshold=1.0)


def test_make_node_builds_each_kind_with_its_constants():
    from spikenerf.snn import DecayLIFNode, IFNode, LIFNode, PLIFNode, make_node

    lif = make_node("lif", tau=4.0, reset="hard")
    assert type(lif) is LIFNode and lif.tau == 4.0 and lif.spec.reset == "hard"
    plif = make_node("plif", tau=3.0)
    assert type(plif) is PLIFNode and abs(plif.tau - 3.0) < 1e-6
    assert type(make_node("decaylif", decay=0.25)) is DecayLIFNode and make_node("decaylif", decay=0.25).decay == 0.25
    assert type(make_node("if")) is IFNode
    with pytest.raises(ValueError, match="unknown neuron kind"):
        make_node("lifx")
