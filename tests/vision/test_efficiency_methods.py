"""Issue 6 (part 1): adaptive bit allocation, sub-bit SNNs, rate-based BP, LTMD.

Each equation is checked against values computed by hand (or by an independent loop in the test), so a
wrong formula fails.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikenerf.snn import DecayLIFNode
from spikenerf.snn.neurons import RefinedNode
from spikenerf.snn.neurons.refined import resample_matrix, resample_time
from spikenerf.vision.cli import main
from spikenerf.vision.blocks import NeuronConfig, SpikeAct
from spikenerf.vision.losses import record_membranes
from spikenerf.vision.methods.adaptive_bits import (BitRecorder, WeightQuantizer, _costs, bit_report, budget_loss,
                                                    convert_adaptive, renew_steps)
from spikenerf.vision.methods.ltmd import SeqDropout, ltmd_consistency, ltmd_loss
from spikenerf.vision.methods.rate_bp import rate_bp_forward, rate_sensitivity, saved_tensor_bytes
from spikenerf.vision.methods.subbit import (SubBitConv2d, kernel_codebook, model_size, mpfd_loss, os_quant_select,
                                             sign_ste)
from spikenerf.vision.models import SeqClassifier, build_model


# ================================================================ adaptive bit allocation
def test_resample_matrix_values_and_mean():
    assert torch.allclose(resample_matrix(2, 4), torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]]))
    assert torch.allclose(resample_matrix(3, 2), torch.tensor([[1.0, 0], [0.5, 0.5], [0, 1.0]]))
    assert torch.equal(resample_matrix(4, 4), torch.eye(4))
    x = torch.randn(5, 3, 2)
    for t in (1, 2, 3, 7, 11):
        y = resample_time(x, t)
        assert y.shape[0] == t and torch.allclose(y.mean(0), x.mean(0), atol=1e-6)


def _refined(T=2, bits=2, step=0.25):
    n = RefinedNode(decay=1.0, step=step, t_init=T, t_range=(1, 8), bits_init=bits, bits_range=(1, 4))
    return n


def test_refined_neuron_is_multibit_soft_reset_quantizer():
    n = _refined()
    # x = 0.8, d = 0.25, L = 3: h1 = .8 -> 3 levels (.75), v = .05; h2 = .85 -> 3, v = .1
    # x = 0.3: h1 = .3 -> 1 (.25), v = .05; h2 = .35 -> 1
    x = torch.tensor([[0.8, 0.3]]).expand(2, 2).contiguous()
    out = n(x)
    assert torch.allclose(out, torch.tensor([[0.75, 0.25], [0.75, 0.25]]))
    # a 4-step input is resampled to the layer's T = 2 (pairwise means)
    x4 = torch.tensor([[0.2], [0.4], [0.8], [0.8]])
    assert torch.allclose(n(x4), torch.tensor([[0.25], [0.75]]))  # h=.3->1 (v .05); h=.85->3


def test_refined_neuron_T_and_bit_gradients():
    n = _refined()
    x = torch.full((2, 1), 0.3)
    n(x).mean(0).sum().backward()
    # dr/dT = (clip(x_bar, 0, L d) - r) / T = (0.3 - 0.25) / 2
    assert math.isclose(float(n.t_param.grad), 0.025, rel_tol=1e-5)
    n.zero_grad()
    x = torch.full((2, 1), 0.8)  # saturated at L = 3 both steps
    n(x).sum().backward()
    # d out_t / dB = d * dL/dB = d * 2^B ln 2 per saturated step
    assert math.isclose(float(n.bits_param.grad), 2 * 0.25 * 4 * math.log(2), rel_tol=1e-5)


def _brute_min(err, lo, hi, n=2000):
    return min(err(lo * (hi / lo) ** (i / (n - 1))) for i in range(n))


def test_step_size_renewal():
    n = _refined(bits=2, step=0.25)
    n.bits_param.data.fill_(3.2)  # round -> 3 bits: L 3 -> 7; no batch seen: the range L d is kept
    assert n.renew_step() and math.isclose(float(n.v_threshold.detach()), 0.25 * 3 / 7, rel_tol=1e-6)
    assert not n.renew_step()  # unchanged width: no renewal
    torch.manual_seed(0)
    n.train()
    x_in = torch.rand(2, 2000) * 1.5
    n(x_in)
    x, T = n.input_sample(x_in), 2
    d_old = float(n.v_threshold.detach())
    n.bits_param.data.fill_(1.0)  # 3 -> 1 bit, L = 1

    def err(d):  # rate quantization error at the new width (T steps, L levels of d)
        return float(((x - d / T * torch.clamp(torch.round(x * T / d), 0, T * 1)) ** 2).mean())

    assert n.renew_step(x)
    d_new = float(n.v_threshold.detach())
    assert err(d_new) <= min(err(d_old), err(d_old * 7)) + 1e-9
    assert err(d_new) <= 1.02 * _brute_min(err, 0.05, 5.0)
    # weights: 4 -> 2 bits (p 7 -> 1); stale step, range-kept step and LSQ re-init are all worse or equal
    w = torch.randn(4000)
    q = WeightQuantizer(w, bits_init=4)
    d4 = float(q.step)
    assert math.isclose(d4, float(2 * w.abs().mean() / math.sqrt(7)), rel_tol=1e-5)  # LSQ init
    q.bits_param.data.fill_(2.0)

    def werr(d):
        return float(((w - d * torch.clamp(torch.round(w / d), -1, 1)) ** 2).mean())

    assert q.renew_step(w)
    d2 = float(q.step)
    assert werr(d2) <= min(werr(d4), werr(d4 * 7), werr(float(2 * w.abs().mean()))) + 1e-9
    assert werr(d2) <= 1.02 * _brute_min(werr, 0.05, 5.0)
    assert abs(d2 - 1.224) < 0.1  # the MSE-optimal 3-level quantizer of N(0, 1) has levels +-1.224


def test_weight_quantizer_values_and_bit_gradient():
    q = WeightQuantizer(torch.ones(3), bits_init=3)  # p = 3
    q.step.data.fill_(0.2)
    w = torch.tensor([0.1, -0.37, 2.0])
    assert torch.allclose(q(w), torch.tensor([0.0, -0.4, 0.6]), atol=1e-6)  # round(.5)=0 (half to even), clip 10->3
    q(w).sum().backward()
    # only the clipped weight depends on p = 2^(B-1) - 1: d/dB = d * 2^(B-1) ln 2
    assert math.isclose(float(q.bits_param.grad), 0.2 * 4 * math.log(2), rel_tol=1e-5)


def test_bit_budget_sace_and_budget_loss():
    rows = [{"T": torch.tensor(2.0), "B_w": torch.tensor(4.0), "B_s": torch.tensor(2.0), "macs": 100.0,
             "density": 0.5, "quantized": True},
            {"T": torch.tensor(4.0), "B_w": torch.tensor(2.0, requires_grad=True), "B_s": torch.tensor(1.0),
             "macs": 10.0, "density": 0.1, "quantized": True},
            {"T": torch.tensor(4.0), "B_w": torch.tensor(32.0), "B_s": torch.tensor(32.0), "macs": 1e6,
             "density": 1.0, "quantized": False}]
    bb, sace = _costs(rows)
    assert [float(b) for b in bb] == [16.0, 8.0]
    assert [float(s) for s in sace] == pytest.approx([100 * 16 * 0.5, 10 * 8 * 0.1])
    loss = budget_loss(rows, bb_target=6.0, sace_target_m=0.0004)  # mean BB 12 -> 1; S-ACE 808 / 400 - 1
    assert float(loss) == pytest.approx(1.0 + (808 / 400 - 1))
    loss.backward()
    # d/dB_w(2nd) = (T*B_s/2)/6 + macs*T*B_s*dens/400
    assert float(rows[1]["B_w"].grad) == pytest.approx(4 / 2 / 6 + 10 * 4 * 0.1 / 400)
    assert float(budget_loss(rows, bb_target=100.0)) == 0.0


def test_adaptive_resnet_bits_report_and_budget_gradient():
    torch.manual_seed(0)
    m = convert_adaptive(build_model("resnet20", 10, 1, True, NeuronConfig(), width=0.25), t_init=3, t_max=6)
    m.blocks[0].act1.neuron.t_param.data.fill_(2.0)  # a layer at another length: residual / next layer resample
    x = torch.rand(4, 3, 1, 8, 8)
    rep = bit_report(m, x)
    row = next(r for r in rep["layers"] if r["name"] == "blocks.0.cb2")
    # fed by blocks.0.act1 (T=2, 2-bit spikes); 4->4 channels, 3x3, 8x8 output: 9*4*4*64 MACs per step
    assert (row["T"], row["B_s"], row["B_w"], row["macs"]) == (2, 2, 4, 9 * 4 * 4 * 64)
    assert row["bit_budget"] == 2 * 4 * 2
    assert rep["T"]["blocks.0.act1"] == 2 and rep["T"]["stem_act"] == 3
    with BitRecorder(m) as rec:
        out = m(x)
        loss = budget_loss(rec.rows, bb_target=1.0)
    loss.backward()
    assert out.shape == (3, 10)
    assert float(m.blocks[0].act1.neuron.t_param.grad) > 0 and float(m.blocks[0].cb2.conv.wq.bits_param.grad) > 0
    assert renew_steps(m) == 0


def test_spikformer_forward_twin_and_adaptive():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 3, 16, 16)
    for spiking in (True, False):
        m = build_model("spikformer", 10, 3, spiking, NeuronConfig(), width=0.125, input_size=16)
        assert m(x).shape == (3, 10)
    m = convert_adaptive(build_model("spikformer", 10, 3, True, NeuronConfig(), width=0.125, input_size=16), t_init=2)
    m.blocks[0].attn.k_act.neuron.t_param.data.fill_(3.0)
    m.blocks[0].mlp.act1.neuron.t_param.data.fill_(1.0)
    out = m(x)
    out.sum().backward()
    assert out.shape == (3, 10) and m.blocks[0].attn.k_act.neuron.t_param.grad is not None


# ================================================================ sub-bit SNN
def test_kernel_codebook_clusters_by_hamming():
    A = torch.tensor([1.0] * 9)
    B = torch.tensor([-1.0] * 9)
    C = A.clone()
    C[0] = -1  # one flip away from A
    pats = torch.stack([A, A, A, B, B, C])
    cb = kernel_codebook(pats, 2)
    assert {tuple(r.tolist()) for r in cb} == {tuple(A.tolist()), tuple(B.tolist())}
    assert int(os_quant_select(C[None], cb, None)) == [tuple(r.tolist()) for r in cb].index(tuple(A.tolist()))


def test_os_quant_fixes_outlier_codeword_bias():
    cb = torch.stack([torch.ones(9), -torch.ones(9)])
    k = torch.tensor([[3.0] + [-0.2] * 8])  # one outlier, eight negative weights
    # plain: <k, +1> = 3 - 1.6 = 1.4 > -1.4 -> the all-(+1) codeword (8 of 9 signs wrong)
    assert int(os_quant_select(k, cb, None)) == 0
    torch.manual_seed(0)
    layer = torch.cat([k, 0.2 * torch.randn(50, 9)])
    mu, sd = float(layer.mean()), float(layer.std())
    clipped = mu + 2 * sd  # the outlier scaled onto mu + kappa*sigma
    assert clipped - 1.6 < 0  # so the selection flips
    assert int(os_quant_select(layer, cb, 2.0)[0]) == 1


def test_subbit_conv_weights_bits_and_size():
    conv = SubBitConv2d(2, 3, 3, padding=1, bias=False, mode="subbit", codebook_size=4, os_kappa=None)
    torch.manual_seed(1)
    conv.weight.data.normal_()
    conv.fit_codebook()
    wq = conv.quantized_weight()
    alpha = conv.weight.abs().mean(dim=(1, 2, 3), keepdim=True)
    idx = (conv.weight.reshape(-1, 9) @ conv.codebook.t()).argmax(1)
    assert torch.allclose(wq, alpha * conv.codebook[idx].reshape(3, 2, 3, 3))
    assert conv.bits_per_weight() == pytest.approx(2 / 9)
    size = model_size(conv)
    # 54 weights * 2/9 bit + 3 fp32 scales + 4x9 codebook bits
    assert size["quantized_kb"] * 8 * 1024 == pytest.approx(54 * 2 / 9 + 3 * 32 + 36)
    assert size["bits_per_weight_index"] == pytest.approx(2 / 9)
    w = torch.tensor([0.5, -2.0, 0.0], requires_grad=True)
    s = sign_ste(w)
    s.sum().backward()
    assert s.tolist() == [1.0, -1.0, 1.0] and w.grad.tolist() == [1.0, 0.0, 1.0]


def test_mpfd_loss_value():
    a, b = SpikeAct(True, NeuronConfig(), 2, 1), SpikeAct(True, NeuronConfig(), 2, 1)
    a.last_membrane = torch.tensor([0.0, 1.0, 2.0])
    b.last_membrane = torch.tensor([1.0, 1.0, 0.0])
    assert float(mpfd_loss([a], [b])) == pytest.approx((1 + 0 + 4) / 3)
    m = build_model("vgg11", 3, 1, True, NeuronConfig(), width=0.0625, input_size=8)
    t = build_model("vgg11", 3, 1, True, NeuronConfig(), width=0.0625, input_size=8)
    x = torch.rand(2, 2, 1, 8, 8)
    with record_membranes(m) as sa, record_membranes(t) as ta:
        m(x), t(x)
        assert float(mpfd_loss(sa, ta)) > 0


# ================================================================ rate-based backpropagation
class _Tiny(SeqClassifier):
    def __init__(self, reset="soft", decay=0.5, detach_reset=True):
        super().__init__(True, NeuronConfig(reset=reset, decay=decay, surrogate="sigmoid", v_threshold=0.5,
                                            detach_reset=detach_reset))
        self.fc1 = nn.Linear(3, 4, bias=False)
        self.act1 = self.act(4, 1)
        self.fc = nn.Linear(4, 2)

    def forward_seq(self, x):
        return self.fc(self.act1(self.fc1(x)))


def _hand_J(c_seq, lam, vth, reset, alpha=4.0, detach=True):
    """(1/T) sum_t g(h_t - vth) e_t, e_t = lam (dv/dh)_{t-1} e_{t-1} + 1, written as an explicit double loop."""
    T = c_seq.shape[0]
    v = torch.zeros_like(c_seq[0])
    hs, ss, gs = [], [], []
    for t in range(T):
        h = lam * v + c_seq[t]
        s = (h >= vth).float()
        v = h - vth * s if reset == "soft" else h * (1 - s)
        sig = torch.sigmoid(alpha * (h - vth))
        hs.append(h)
        ss.append(s)
        gs.append(alpha * sig * (1 - sig))

    def dvdh(j):
        if reset == "soft":
            return 1.0 if detach else 1.0 - vth * gs[j]
        return (1 - ss[j]) if detach else (1 - ss[j]) - hs[j] * gs[j]

    J = torch.zeros_like(c_seq[0])
    for t in range(T):
        e = torch.zeros_like(J)
        for k in range(t + 1):  # sum_k prod_{j=k}^{t-1} lam * (dv_j/dh_j)
            p = torch.ones_like(J)
            for j in range(k, t):
                p = p * lam * dvdh(j)
            e = e + p
        J = J + gs[t] * e
    return J / T, torch.stack(ss).mean(0)


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("detach", [True, False])
def test_rate_sensitivity_matches_formula(reset, detach):
    torch.manual_seed(0)
    c = torch.rand(6, 5, 4)
    n = DecayLIFNode(decay=0.5, v_threshold=0.5, reset=reset, surrogate="sigmoid", detach_reset=detach)
    r, J = rate_sensitivity(c, n)
    J_hand, r_hand = _hand_J(c, 0.5, 0.5, reset, detach=detach)
    assert torch.allclose(r, r_hand) and torch.allclose(J, J_hand, atol=1e-6)
    if reset == "soft" and detach:  # closed form for the soft reset: sum_{k<=t} lam^(t-k)
        h_J = sum(torch.sigmoid(4 * (h - 0.5)) * (1 - torch.sigmoid(4 * (h - 0.5))) * 4 * (1 - 0.5 ** (t + 1)) / 0.5
                  for t, h in enumerate(_membranes(c, 0.5, 0.5))) / 6
        assert torch.allclose(J, h_J, atol=1e-6)


def _membranes(c, lam, vth):
    v, out = torch.zeros_like(c[0]), []
    for t in range(c.shape[0]):
        h = lam * v + c[t]
        s = (h >= vth).float()
        v = h - vth * s
        out.append(h)
    return out


@pytest.mark.parametrize("detach", [True, False])
def test_rate_bp_gradient_is_paper_formula_on_tiny_layer(detach):
    torch.manual_seed(0)
    m = _Tiny(detach_reset=detach)
    x = torch.rand(1, 5, 3).expand(6, 5, 3).contiguous()  # static input over T = 6
    y = torch.tensor([0, 1, 0, 1, 1])
    logits = rate_bp_forward(m, x)
    # forward value: the spiking network's logits
    assert torch.allclose(logits, m(x), atol=1e-6)
    F.cross_entropy(logits, y).backward()
    # by hand: c = W1 x_bar, (r, J) from the recurrence, dL/dr = W2^T dL/dz, dL/dW1 = (dL/dr * J) x_bar^T
    xb = x.mean(0)
    c = (xb @ m.fc1.weight.t()).unsqueeze(0).expand(6, 5, 4)
    J, r = _hand_J(c, 0.5, 0.5, "soft", detach=detach)
    z = r @ m.fc.weight.t() + m.fc.bias
    dz = (F.softmax(z, -1) - F.one_hot(y, 2).float()) / 5
    dW1 = ((dz @ m.fc.weight) * J).t() @ xb
    assert torch.allclose(m.fc1.weight.grad, dW1, atol=1e-6)
    assert torch.allclose(m.fc.weight.grad, dz.t() @ r, atol=1e-6)


def test_rate_bp_equals_bptt_at_T1():
    torch.manual_seed(1)
    m = _Tiny(reset="hard", detach_reset=False)
    x = torch.rand(1, 5, 3) * 2
    y = torch.tensor([0, 1, 0, 1, 1])
    F.cross_entropy(rate_bp_forward(m, x), y).backward()
    g_rate = m.fc1.weight.grad.clone()
    m.zero_grad()
    F.cross_entropy(m(x), y).backward()
    assert torch.allclose(g_rate, m.fc1.weight.grad, atol=1e-6)


def test_rate_bp_memory_does_not_grow_with_T():
    torch.manual_seed(0)
    m = build_model("vgg11", 10, 1, True, NeuronConfig(reset="soft", surrogate="sigmoid"), width=0.125, input_size=8)
    x1 = torch.rand(8, 1, 8, 8)
    rate, bptt = [], []
    for T in (2, 4, 8):
        x = x1.unsqueeze(0).expand(T, *x1.shape).contiguous()
        with saved_tensor_bytes(m) as b:
            out = rate_bp_forward(m, x)
        out.sum().backward()
        rate.append(b[0])
        with saved_tensor_bytes(m) as b:
            m(x).sum()
        bptt.append(b[0])
    assert rate[0] == rate[1] == rate[2]  # activation memory independent of T
    assert bptt[1] - bptt[0] > 0 and bptt[2] - bptt[1] == 2 * (bptt[1] - bptt[0])  # BPTT: linear in T
    assert bptt[0] > rate[0]


# ================================================================ LTMD
def test_ltmd_consistency_and_loss_values():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    z2 = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    p, q = F.softmax(z1, -1), F.softmax(z2, -1)
    kl_pq = (p * (p.log() - q.log())).sum(-1)  # row-wise KL(p || q)
    kl_qp = (q * (q.log() - p.log())).sum(-1)
    # element-wise mean over B x K = 4 entries of each KL, then the average of both directions
    expect = 0.5 * (kl_qp.sum() / 4 + kl_pq.sum() / 4)
    assert float(ltmd_consistency(z1, z2)) == pytest.approx(float(expect))
    assert float(ltmd_consistency(z1, z1)) == pytest.approx(0.0, abs=1e-7)


def test_ltmd_two_runs_dropout_and_tanh_threshold():
    torch.manual_seed(0)
    from spikenerf.vision.build import build
    from spikenerf.vision.config import PRESETS
    from spikenerf.vision.data import DATASETS

    cfg = PRESETS["ltmd-resnet20-cifar10"][1]
    cfg.width, cfg.dataset = 0.25, "digits"
    m = build(cfg, DATASETS["digits"])
    n = m.stem_act.neuron
    assert math.isclose(float(n.v_threshold), math.tanh(0.5), rel_tol=1e-6) and n.decay == 0.25
    n.v_threshold.backward()
    assert math.isclose(float(n.threshold_w.grad), 1 - math.tanh(0.5) ** 2, rel_tol=1e-6)
    x, y = torch.rand(3, 4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    m.train()
    z1, loss = ltmd_loss(m, x, y, alpha=0.5)
    assert loss.requires_grad and not torch.allclose(z1, m(x))  # another dropout mask
    m.eval()
    assert torch.allclose(m(x), m(x))
    d = SeqDropout(0.5).train()
    out = d(torch.ones(4, 6, 10))
    assert torch.equal(out[0], out[3]) and set(out.unique().tolist()) <= {0.0, 2.0}


# ================================================================ CLI (all four methods, a few batches each)
FAST = ["--epochs", "1", "--max-batches", "2", "--batch-size", "16", "--no-progress", "--no-tensorboard",
        "--dataset", "digits", "--width", "0.125", "--no-augment", "--eval-batch-size", "64", "--test-subset", "64"]


def test_cli_each_method(tmp_path, capsys):
    for preset in ("adaptive-bits-resnet20-cifar10", "ratebp-resnet20-cifar10", "ltmd-resnet20-cifar10",
                   "subbit-binary-resnet20-cifar10"):
        main(["train", preset, *FAST, "--output-dir", str(tmp_path / preset)])
    main(["train", "subbit-resnet20-cifar10", *FAST, "--output-dir", str(tmp_path / "s2"), "--method.teacher",
          str(tmp_path / "subbit-binary-resnet20-cifar10" / "checkpoint.pt"), "--method.codebook", "8"])
    text = capsys.readouterr().out
    assert "bit budget" in text and "thresholds tanh(w)" in text and "index bits/weight 0." in text
    main(["eval", "--checkpoint", str(tmp_path / "s2" / "checkpoint.pt"), "--no-progress", "--max-batches", "1"])
    main(["eval", "--checkpoint", str(tmp_path / "adaptive-bits-resnet20-cifar10" / "checkpoint.pt"), "--no-progress",
          "--max-batches", "1"])
    assert "accuracy" in capsys.readouterr().out
    # quantized-weight checkpoints are not re-parameterized: a clear refusal, no traceback
    with pytest.raises(SystemExit) as e:
        main(["export", "--checkpoint", str(tmp_path / "s2" / "checkpoint.pt")])
    assert e.value.code == 2 and "not re-parameterized" in capsys.readouterr().err


def test_adaptive_bits_param_group_and_wrap_roundtrip():
    import dataclasses

    from spikenerf.vision.build import build, make_method
    from spikenerf.vision.config import PRESETS, config_from_dict, config_to_dict
    from spikenerf.vision.data import DATASETS

    cfg = dataclasses.replace(PRESETS["adaptive-bits-resnet20-cifar10"][1], dataset="digits", width=0.125)
    assert config_from_dict(config_to_dict(cfg)) == cfg
    m = build(cfg, DATASETS["digits"])
    groups = make_method(cfg, DATASETS["digits"]).param_groups(m)
    n_bits = sum(1 for n, _ in m.named_parameters() if n.endswith(("t_param", "bits_param")))
    assert groups[1]["lr"] == cfg.method.bits_lr and len(groups[1]["params"]) == n_bits > 0
    assert len(groups[0]["params"]) + n_bits == len(list(m.parameters()))


class _TinyBN(SeqClassifier):
    def __init__(self):
        super().__init__(True, NeuronConfig(reset="soft", decay=0.5, surrogate="sigmoid", v_threshold=0.5,
                                            detach_reset=True))
        self.fc1 = nn.Linear(3, 4, bias=False)
        self.bn = nn.BatchNorm1d(4)
        self.act1 = self.act(4, 1)
        self.fc = nn.Linear(4, 2)

    def forward_seq(self, x):
        t, b = x.shape[:2]
        c = self.bn(self.fc1(x).flatten(0, 1)).reshape(t, b, -1)
        return self.fc(self.act1(c))


def test_rate_bp_batchnorm_uses_the_spike_pass_statistics():
    """The rate pass normalizes with the mean / variance of the BN input over all T steps of the spike pass,
    held constant (straight-through), not with the rate batch's own statistics."""
    torch.manual_seed(0)
    m = _TinyBN().train()
    with torch.no_grad():
        m.bn.weight.uniform_(0.5, 1.5)
        m.bn.bias.uniform_(-0.2, 0.2)
    x = torch.rand(6, 5, 3) * 2  # an input that changes over T: the spike pass sees T different batches
    y = torch.tensor([0, 1, 0, 1, 1])
    F.cross_entropy(rate_bp_forward(m, x), y).backward()
    # by hand: a = W1 x_t over all t and b; mu, var over (t, b); the rate-pass BN output for the rate input
    W1, g, b = m.fc1.weight.detach(), m.bn.weight.detach(), m.bn.bias.detach()
    a = x @ W1.t()  # [T, B, 4]
    mu, var = a.mean((0, 1)), a.var((0, 1), unbiased=False)
    xb = x.mean(0)
    c_hand = (xb @ W1.t() - mu) / torch.sqrt(var + m.bn.eps) * g + b
    seen = {}
    h = m.act1.register_forward_pre_hook(lambda mod, args: seen.__setitem__("c", args[0]))  # last call: rate pass
    m.zero_grad()
    logits = rate_bp_forward(m, x)
    h.remove()
    assert torch.allclose(seen["c"][0], c_hand, atol=1e-5)
    logits.sum().backward()
    # gradient with the statistics held constant: dL/dW1 = ((dL/dr * J) * g / sigma)^T xb, where (r, J) come from
    # the spike pass's currents (each step normalized by its own batch, as BN in training does step by step)
    c_seq = torch.stack([(a[t] - a[t].mean(0)) / torch.sqrt(a[t].var(0, unbiased=False) + m.bn.eps) * g + b
                         for t in range(6)])
    _, J = rate_sensitivity(c_seq, m.act1.neuron)
    dr = m.fc.weight.detach().sum(0).expand(5, 4)
    dW1 = ((dr * J) * g / torch.sqrt(var + m.bn.eps)).t() @ xb
    assert torch.allclose(m.fc1.weight.grad, dW1, atol=1e-5)
