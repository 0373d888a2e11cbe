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


# ---- the fast path against the obvious one --------------------------------------------------------------
# A slow, literal transcription of the chip's equations (the package's first version): per step, the decay as
# sign * (|x| >> 12), the 24-bit wrap, the saturation, the reset; synaptic sums as an int64 einsum. The
# package's loop rewrites these (truncating division, u precomputed, float BLAS sums); they must agree bit
# for bit.

def _ref_decay(x, d):
    prod = x * (4096 - d)
    return torch.sign(prod) * (prod.abs() >> 12)


def _ref_wrap24(x):
    m = 1 << 23
    y = torch.where(x > m, x - 2 * m, x)
    return torch.where(y <= -m, x + 2 * m, y)


def _ref_lif(a_in, du, dv, vth, bias=0, reset="hard"):
    a_in = a_in.to(torch.int64)
    u, v = torch.zeros_like(a_in[0]), torch.zeros_like(a_in[0])
    bias = torch.as_tensor(bias, dtype=torch.int64)
    spikes, vs = torch.empty_like(a_in), torch.empty_like(a_in)
    for t in range(a_in.shape[0]):
        u = _ref_wrap24(_ref_decay(u, du) + (a_in[t] << 6))
        v = (_ref_decay(v, dv) + u + bias).clamp(-MEMBRANE_MAX, MEMBRANE_MAX)
        s = v > (vth << 6)
        v = torch.where(s, v - (vth << 6), v) if reset == "soft" else torch.where(s, torch.zeros_like(v), v)
        spikes[t], vs[t] = s.to(torch.int64), v
    return spikes, vs


def _ref_sum(layer, s, valid):
    a = torch.einsum("tbi,oi->tbo", s.to(torch.int64), layer.mant)
    if layer.bias_mant is not None:
        a = a + valid.to(torch.int64)[..., None] * layer.bias_mant
    return a << layer.exp if layer.exp >= 0 else torch.sign(a) * (a.abs() >> -layer.exp)


def _ref_run(net, x, valid):
    x = x * valid[..., None].to(x.dtype)
    if isinstance(net.fc1, torch.Tensor):
        a1 = torch.round(torch.nn.functional.linear(x.double(), net.fc1) * net.fc1_scale).to(torch.int64)
    else:
        q = torch.round(x.double() / net.input_scale).clamp(-127, 127).to(torch.int64)
        a1 = _ref_sum(net.fc1, q, torch.zeros(x.shape[:2], dtype=torch.bool))
    s1, _ = _ref_lif(a1, net.du, net.dv, net.vth, reset=net.reset)
    s2, _ = _ref_lif(_ref_sum(net.fc2, s1, valid), net.du, net.dv, net.vth, reset=net.reset)
    return (_ref_sum(net.fc3, s2, valid) << 6).double() / net.fc3.scale, s1, s2


@pytest.mark.parametrize("du,dv,reset", [(4096, 2048, "hard"), (1024, 1000, "hard"), (4096, 0, "soft"),
                                         (300, 4096, "soft"), (0, 1365, "hard")])
def test_fast_lif_equals_reference(du, dv, reset):
    torch.manual_seed(du + dv)
    # wide inputs: the wrap (|a| << 6 past 2^23), the saturation and both signs all occur
    a = torch.randint(-2 ** 17, 2 ** 17, (40, 9, 11)) // torch.randint(1, 2 ** 12, (40, 9, 11))
    bias = torch.randint(-5000, 5000, (11,))
    s, v = loihi_lif(a, du, dv, vth=37, bias=bias, reset=reset, return_v=True)
    rs, rv = _ref_lif(a, du, dv, 37, bias, reset)
    assert torch.equal(s, rs) and torch.equal(v, rv)
    assert s.dtype == torch.int64 and 0 < int(s.sum()) < s.numel()


@pytest.mark.parametrize("first_layer,tau,vth_bits", [("off-chip", 2.0, 10), ("on-chip", 2.0, 10),
                                                      ("off-chip", 3.0, 4), ("on-chip", 1.5, 12)])
def test_fast_net_equals_reference(first_layer, tau, vth_bits):
    torch.manual_seed(int(tau * 10) + vth_bits)
    T, B, D, H = 24, 50, 13, 40
    x = torch.rand(T, B, D, dtype=torch.float64) * 4 - 2
    valid = torch.rand(T, B) < 0.6
    w1 = torch.randn(H, D, dtype=torch.float64)
    w2, b2 = torch.randn(H, H, dtype=torch.float64) * 0.5, torch.randn(H, dtype=torch.float64) * 0.3
    w3, b3 = torch.randn(3, H, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    net = ChipColourNet.from_float(w1, w2, b2, w3, b3, tau, 1.0, first_layer=first_layer, input_max=2.0,
                                   vth_bits=vth_bits)
    logits, s1, s2 = net.run(x, valid)
    r_logits, r1, r2 = _ref_run(net, x, valid)
    assert torch.equal(s1, r1) and torch.equal(s2, r2) and torch.equal(logits, r_logits)
    assert 0 < int(s2.sum()) < s2.numel()  # a live net, not an all-silent one
    # bool spikes are the same trains
    _, b1, _ = net.run(x, valid, spikes_dtype=torch.bool)
    assert b1.dtype == torch.bool and torch.equal(b1.to(torch.int64), r1)
    # spike counts per step from the ones row of the next layer's matmul
    c_logits, n1, n2 = net.run_counts(x, valid)
    assert torch.equal(c_logits, r_logits) and torch.equal(n1, r1.sum(-1)) and torch.equal(n2, r2.sum(-1))
    # larger integer inputs take the float64 matmul (sums past 2^24) and the int64 einsum (past 2^53); the
    # current (<< 6) leaves float64 for int64 where it would pass 2^53
    for peak in (2 ** 20, 2 ** 40, 2 ** 47):
        big = torch.randint(-peak, peak, (T, B, H))
        ref = _ref_sum(net.fc2, big, valid)
        assert torch.equal(net.fc2.synaptic_sum(big, valid), ref)
        cur, cnt = net.fc2.current(big, valid, count=True)
        assert torch.equal(cur.to(torch.int64), ref << 6) and torch.equal(cnt, big.sum(-1))
