"""The Loihi-class chip model: the integer LIF against hand-computed spike trains, the quantized colour net
against the float one, and the per-image cost against a hand count."""

import pytest
import torch

from spikenerf.snn import LIFNode
from spikenerf.snn.chip import (
    MEMBRANE_MAX,
    ChipColourNet,
    ChipCounts,
    chip_cost,
    decay_rz,
    lif_to_cuba,
    loihi_lif,
    quantize_shared_exponent,
)
from spikenerf.snn.energy import (
    E_MAC_PJ,
    LOIHI_BARRIER_NS,
    LOIHI_E_NEURON_ACTIVE_PJ,
    LOIHI_E_NEURON_INACTIVE_PJ,
    LOIHI_E_HOP_PJ,
    LOIHI_E_SPIKE_TILE_PJ,
    LOIHI_E_SYNOP_PJ,
    LOIHI_T_NEURON_ACTIVE_NS,
    LOIHI_T_NEURON_INACTIVE_NS,
    LOIHI_T_SYNOP_NS,
)


def _one(a):
    return torch.tensor(a, dtype=torch.int64)[:, None, None]  # [T, 1, 1]


def test_decay_rounds_toward_zero():
    # 7 * 2048 / 4096 = 3.5 -> 3; -7 -> -3 (a floor would give -4)
    assert decay_rz(torch.tensor([7, -7]), 2048).tolist() == [3, -3]
    assert decay_rz(torch.tensor([5]), 4096).tolist() == [0]  # du = 4096 empties the current


def test_hand_spike_train_tau2():
    # du = 4096, dv = 2048 (tau = 2), vth = 1 -> fires when v > 64. u_t = a_t * 64.
    # t0: v = 64 (not > 64); t1: v = 32 + 64 = 96 fire -> 0; t2: 0; t3: 192 fire -> 0; t4: -64; t5: -32
    s, v = loihi_lif(_one([1, 1, 0, 3, -1, 0]), du=4096, dv=2048, vth=1, return_v=True)
    assert s.flatten().tolist() == [0, 1, 0, 1, 0, 0]
    assert v.flatten().tolist() == [64, 0, 0, 0, -64, -32]


def test_hand_spike_train_rounding_and_current_memory():
    # du = 1024: u keeps 3072/4096 of itself; dv = 1000: v keeps 3096/4096; vth = 2 -> fires when v > 128.
    # u: 128, 96, 72, 54, 40 (40.5 -> 40), 30;  v: 128, 96 + 96 = 192 fire, 72, 54 + 54, 81 + 40, 91 + 30
    s, v = loihi_lif(_one([2, 0, 0, 0, 0, 0]), du=1024, dv=1000, vth=2, return_v=True)
    assert s.flatten().tolist() == [0, 1, 0, 0, 0, 0]
    assert v.flatten().tolist() == [128, 0, 72, 108, 121, 121]
    # negative: toward zero, not floor: -192 * 3096/4096 = -145.1 -> -145 (floor -146)
    s, v = loihi_lif(_one([-2, 0, 0, 0, 0, 0]), du=1024, dv=1000, vth=2, return_v=True)
    assert s.sum() == 0
    assert v.flatten().tolist() == [-128, -192, -217, -218, -204, -184]


def test_saturation_and_wrap():
    # dv = 0 (no leak): v = -6.4M, then -12.8M saturates at -(2^23 - 1)
    s, v = loihi_lif(_one([-100000, -100000, 0, 0, 0, 0]), du=4096, dv=0, vth=1, return_v=True)
    assert v.flatten().tolist()[:3] == [-6400000, -MEMBRANE_MAX, -MEMBRANE_MAX]
    # the current wraps at 24 bits (Lava): (2^17 + 1) << 6 = 2^23 + 64 -> 64 - 2^23
    s, v = loihi_lif(_one([2 ** 17 + 1]), du=4096, dv=4096, vth=1, return_v=True)
    assert v.flatten().tolist() == [64 - 2 ** 23]
    # bias: added to v every step, hard reset to 0
    s, v = loihi_lif(_one([0, 0, 0]), du=4096, dv=4096, vth=1, bias=40, return_v=True)
    assert v.flatten().tolist() == [40, 40, 40] and s.sum() == 0


def test_refuses_bad_parameters():
    with pytest.raises(ValueError, match="du and dv"):
        loihi_lif(_one([1]), du=5000, dv=0, vth=1)
    with pytest.raises(TypeError, match="integer"):
        loihi_lif(torch.ones(1, 1, 1), du=4096, dv=0, vth=1)
    with pytest.raises(ValueError, match="input_max"):
        ChipColourNet.from_float(torch.ones(4, 2), torch.ones(4, 4), None, torch.ones(3, 4), None, 2.0, 1.0,
                                 first_layer="on-chip")


def test_lif_map():
    assert lif_to_cuba(2.0) == (4096, 2048)
    assert lif_to_cuba(4.0) == (4096, 1024)
    assert lif_to_cuba(3.0) == (4096, 1365)


def test_quantize_shared_exponent():
    w = torch.tensor([[0.5, -1.0], [0.25, 0.0]])
    m, e = quantize_shared_exponent(w, 64 * 1024.0)  # peak 65536 units -> 65536 / (127 * 64) -> exp 4
    assert e == 4 and int(m.abs().max()) <= 127
    assert m.tolist() == [[32, -64], [16, 0]]  # 0.5 * 65536 / 2^10 = 32


def test_integer_lif_matches_float_lif_on_a_grid():
    # inputs that are exact on the integer grid: the chip and the project's LIF agree spike for spike,
    # the same membrane up to the scale (tau = 2 halves exactly; the threshold tie is v > vs >=, avoided)
    torch.manual_seed(0)
    a = torch.randint(-40, 80, (12, 5, 7))
    vth = 50
    s_chip = loihi_lif(a, *lif_to_cuba(2.0), vth=vth)
    node = LIFNode(tau=2.0, v_threshold=(vth * 64 + 0.5) / 4096.0, reset="hard")
    s_float = node((a * 64).double() * 2 / 4096.0)  # x / tau = a * 64 units
    assert torch.equal(s_chip, s_float.to(torch.int64))


def _float_net(x, valid, w1, w2, b2, w3, b3, tau, vth):
    m = valid[..., None].to(x.dtype)
    l1, l2 = LIFNode(tau=tau, v_threshold=vth, reset="hard"), LIFNode(tau=tau, v_threshold=vth, reset="hard")
    s1 = l1((x @ w1.t()) * m)
    s2 = l2((s1 @ w2.t() + b2) * m)
    return s2 @ w3.t() + b3, s1, s2


@pytest.mark.parametrize("first_layer", ["off-chip", "on-chip"])
def test_quantized_net_tracks_float(first_layer):
    torch.manual_seed(1)
    T, B, D, H = 16, 64, 10, 32
    x = torch.rand(T, B, D, dtype=torch.float64) * 2 - 1
    valid = torch.rand(T, B) < 0.7
    w1 = torch.randn(H, D, dtype=torch.float64) * 0.8
    w2 = torch.randn(H, H, dtype=torch.float64) * 0.4
    b2 = torch.randn(H, dtype=torch.float64) * 0.2
    w3 = torch.randn(3, H, dtype=torch.float64) * 0.5
    b3 = torch.randn(3, dtype=torch.float64) * 0.1
    ref, f1, f2 = _float_net(x, valid, w1, w2, b2, w3, b3, 2.0, 1.0)
    net = ChipColourNet.from_float(w1, w2, b2, w3, b3, 2.0, 1.0, first_layer=first_layer, input_max=1.0)
    logits, s1, s2 = net.run(x, valid)
    v = valid
    # spikes: a few flip where the float membrane sits within the quantization error of the threshold
    assert (s1[v] == f1[v]).double().mean() > 0.97
    assert (s2[v] == f2[v]).double().mean() > 0.95
    # read-out: an error of the order of the flipped spikes' weights, mostly zero
    err = (logits[v] - ref[v]).abs()
    assert err.median() < 0.02 and err.mean() < 0.1
    # holes produce no spikes in either model's first layer input
    assert net.weight_bits == 8 * (H * H + H + 3 * H + 3) + 8 + (8 * H * D + 4 if first_layer == "on-chip" else 0)


def test_chip_cost_hand_count():
    # 2 rays: TP runs 5 + 3 steps with 3 + 2 valid samples; 10 LIF1 spikes, 4 LIF2 spikes;
    # widths in 6, H 4, out 3, biased, fc1 off-chip
    c = chip_cost(ChipCounts(steps=8, valid=5, spikes=(10, 4), widths=(6, 4, 4, 3)))
    assert c.neuron_updates_active == 5 * 11 and c.neuron_updates_inactive == 3 * 11
    assert c.synops == 10 * 4 + 4 * 3 + 5 * (4 + 3)  # 87
    assert c.messages == 10 + 4 + 2 * 5 + 5 * 4  # spikes, valid flags, injected currents: 44
    assert c.host_macs == 5 * 6 * 4
    assert c.weight_bits == 8 * (16 + 12 + 7) + 8
    e = (55 * LOIHI_E_NEURON_ACTIVE_PJ + 33 * LOIHI_E_NEURON_INACTIVE_PJ + 87 * LOIHI_E_SYNOP_PJ
         + 44 * LOIHI_E_SPIKE_TILE_PJ + 120 * E_MAC_PJ)
    assert c.total_pj == pytest.approx(e)
    # the slowest core is LIF2's: 4 neurons x (5/8 active + 3/8 inactive) + (10 x 4 + 5 x 4) / 8 synops
    core2 = 4 * (5 / 8 * LOIHI_T_NEURON_ACTIVE_NS + 3 / 8 * LOIHI_T_NEURON_INACTIVE_NS) + 60 / 8 * LOIHI_T_SYNOP_NS
    assert c.latency_ns == pytest.approx(8 * (core2 + LOIHI_BARRIER_NS))
    # TCP on the same samples: no holes, fewer steps, cheaper
    tcp = chip_cost(ChipCounts(steps=5, valid=5, spikes=(10, 4), widths=(6, 4, 4, 3)))
    assert tcp.neuron_updates_inactive == 0 and tcp.total_pj < c.total_pj


def test_hops_and_exponent_limits():
    counts = ChipCounts(steps=8, valid=5, spikes=(10, 4), widths=(6, 4, 4, 3))
    near, far = chip_cost(counts), chip_cost(counts, hops=2)
    assert far.energy_pj["messages"] - near.energy_pj["messages"] == pytest.approx(44 * 2 * LOIHI_E_HOP_PJ)
    with pytest.raises(ValueError, match="lower vth_bits"):
        quantize_shared_exponent(torch.tensor([1.0]), 2.0 ** 30)  # 2^30 units: exponent 17 > 7
