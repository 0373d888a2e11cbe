"""Each method's equation, checked against hand-computed values (fails if the equation is wrong)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from spikenerf.snn import SurrogateSchedule, Tanh
from spikenerf.vision.joint import FactorizedLayer, JointANNSNN
from spikenerf.vision.blocks import MembraneRectifier, NeuronConfig, SpikeAct, spike_acts
from spikenerf.vision.losses import distillation_loss, im_loss, record_membranes, rmp_loss, spike_value
from spikenerf.vision.models import build_model
from spikenerf.vision.inference_folds import reparameterize


def _act(**kw) -> SpikeAct:
    return SpikeAct(True, NeuronConfig(**kw), channels=2, dim=1)


def _randomize(model):
    torch.manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    for n, p in model.named_parameters():
        if n.endswith("amplitude") or n.endswith("real_spike.scale"):
            p.data.uniform_(0.5, 2.0)


# ---------------------------------------------------------------- RMP-Loss
def test_rmp_loss_value():
    a = _act(v_threshold=0.5)
    a.last_membrane = torch.tensor([0.2, 0.7, 1.3, -0.4])
    # Q = [0, 1, 1, 0]; squared gaps 0.04, 0.09, 0.09, 0.16
    assert math.isclose(float(rmp_loss([a])), 0.095, rel_tol=1e-6)
    t = _act(v_threshold=0.5, spike_code="ternary", amplitude="learnable")
    with torch.no_grad():
        t.neuron.amplitude.fill_(2.0)
    t.last_membrane = torch.tensor([-0.7, 0.1, 1.5])
    # Q = [-2, 0, 2]; gaps 1.3^2, 0.1^2, 0.5^2
    assert math.isclose(float(rmp_loss([t])), (1.69 + 0.01 + 0.25) / 3, rel_tol=1e-6)


def test_rmp_loss_gradient_pulls_toward_spike_values():
    u = torch.tensor([0.2, 0.7, 1.3], requires_grad=True)
    a = _act(v_threshold=0.5)
    a.last_membrane = u
    rmp_loss([a]).backward()
    assert torch.allclose(u.grad, 2 * (u.detach() - torch.tensor([0.0, 1.0, 1.0])) / 3)


def test_rmp_in_model_records_membranes():
    m = build_model("vgg11", 3, 1, True, NeuronConfig(), width=0.0625, input_size=8)
    with record_membranes(m) as acts:
        m(torch.rand(2, 2, 1, 8, 8))
        loss = rmp_loss(acts)
    assert len(acts) == 8 and loss.requires_grad and float(loss.detach()) > 0


# ---------------------------------------------------------------- IM-Loss + ESG
def test_im_loss_value():
    a, b = _act(v_threshold=0.5), _act(v_threshold=0.5)
    a.last_membrane = torch.tensor([0.0, 1.0])  # mean 0.5 = V_th -> 0
    b.last_membrane = torch.tensor([0.1, 0.3])  # mean 0.2 -> (0.3)^2
    assert float(im_loss([a])) == 0.0
    assert math.isclose(float(im_loss([a, b])), 0.09 / 2, rel_tol=1e-6)


def test_esg_schedule_follows_im_loss_formula():
    # IM-Loss: K(i) = (10^(i/N) - 1)/9 (K_max - K_min) + K_min, tanh surrogate's K moves 1 -> 10
    # (with K_max = 10 K_min it equals a geometric ramp, so use K 1 -> 5 to tell them apart)
    s = Tanh(1.0)
    sch = SurrogateSchedule([s], 1.0, 5.0, 100, mode="esg")
    assert s.alpha == 1.0
    for _ in range(50):
        sch.step()
    assert math.isclose(s.alpha, (math.sqrt(10.0) - 1.0) / 9.0 * 4.0 + 1.0, rel_tol=1e-9)
    assert not math.isclose(s.alpha, math.sqrt(5.0), rel_tol=1e-3)
    for _ in range(50):
        sch.step()
    assert math.isclose(s.alpha, 5.0, rel_tol=1e-9)


# ---------------------------------------------------------------- MPBN
def test_mpbn_fires_on_normalized_membrane_and_folds():
    act = SpikeAct(True, NeuronConfig(mpbn=True, v_threshold=0.5), channels=3, dim=2)
    bn = act.neuron.membrane_transform.bn
    bn.running_mean.copy_(torch.tensor([0.2, -0.1, 0.5]))
    bn.running_var.copy_(torch.tensor([0.5, 2.0, 1.0]))
    bn.weight.data.copy_(torch.tensor([1.5, 0.7, 1.0]))
    bn.bias.data.copy_(torch.tensor([0.1, -0.2, 0.0]))
    act.eval()
    x = torch.randn(1, 4, 3, 5, 5)  # T=1: membrane = input
    s = act(x)
    assert torch.equal(s[0], (bn(x[0]) >= 0.5).float())
    m = build_model("resnet20", 4, 3, True, NeuronConfig(mpbn=True), width=0.25)
    _randomize(m)
    m.eval()
    x = torch.rand(3, 4, 3, 16, 16)
    y0 = m(x)
    f = copy.deepcopy(m)
    rep = reparameterize(f)
    assert rep["mpbn_folded"] == 19 and rep["bn_folded"] == 21
    assert not any(isinstance(mm, torch.nn.BatchNorm2d) for mm in f.modules())
    assert torch.allclose(f(x), y0, atol=1e-4)


# ---------------------------------------------------------------- soft reset + MPR
def test_mpr_function_and_gradient():
    phi = MembraneRectifier()
    u = torch.tensor([-0.3, 0.0, 0.25, 0.5, 1.0, 1.4])
    k = 3.0
    mid = lambda v: math.tanh(k * (v - 0.5)) / (2 * math.tanh(k / 2)) + 0.5  # noqa: E731
    expect = torch.tensor([-1.0, mid(0.0), mid(0.25), 0.5, mid(1.0), 2.0])
    assert torch.allclose(phi(u), expect, atol=1e-6) and math.isclose(mid(0.0), 0.0, abs_tol=1e-6)
    # spikes unchanged at V_th = 0.5, gradient scaled by phi'(u) (T = 1)
    x = torch.tensor([[[0.3, 0.45, 0.6]]]).requires_grad_(True)
    plain, rect = _act(v_threshold=0.5, reset="soft", surrogate="atan"), _act(v_threshold=0.5, reset="soft", mpr=True, surrogate="atan")
    s0, s1 = plain(x), rect(x)
    assert torch.equal(s0, s1)
    g0 = torch.autograd.grad(s0.sum(), x)[0]
    xr = x.detach().requires_grad_(True)
    g1 = torch.autograd.grad(rect(xr).sum(), xr)[0]
    u = x.detach()
    dphi = k * (1 - torch.tanh(k * (u - 0.5)) ** 2) / (2 * math.tanh(k / 2))
    sg = plain.neuron.surrogate.grad
    assert torch.allclose(g1, sg(phi(u) - 0.5) * dphi, atol=1e-6)
    assert not torch.allclose(g0, g1)


def test_mpr_dropped_at_export():
    m = build_model("vgg11", 4, 3, True, NeuronConfig(reset="soft", mpr=True), width=0.125, input_size=16)
    _randomize(m)
    m.eval()
    x = torch.rand(3, 2, 3, 16, 16)
    f = copy.deepcopy(m)
    rep = reparameterize(f)
    assert rep["mpr_dropped"] == 8
    assert torch.allclose(f(x), m(x), atol=1e-4)


# ---------------------------------------------------------------- Real Spike / Ternary Spike folds
def test_real_spike_scales_and_folds():
    act = SpikeAct(True, NeuronConfig(real_spike=True), channels=2, dim=2)
    with torch.no_grad():
        act.real_spike.scale.copy_(torch.tensor([2.0, 0.5]))
    x = torch.ones(1, 1, 2, 1, 1)
    assert act(x).flatten().tolist() == [2.0, 0.5]
    m = build_model("resnet20", 4, 3, True, NeuronConfig(real_spike=True), width=0.25)
    _randomize(m)
    m.eval()
    x = torch.rand(3, 2, 3, 16, 16)
    f = copy.deepcopy(m)
    rep = reparameterize(f)
    assert rep["amplitudes_folded"] > 0
    assert torch.allclose(f(x), m(x), atol=1e-4)


def test_ternary_amplitude_is_learnable_and_folds():
    m = build_model("vgg11", 4, 3, True, NeuronConfig(spike_code="ternary", amplitude="learnable"), width=0.125,
                    input_size=16)
    x = torch.randn(2, 2, 3, 16, 16)
    m(x).sum().backward()
    amps = [p for n, p in m.named_parameters() if n.endswith("amplitude")]
    assert len(amps) == 8 and all(p.grad is not None for p in amps)
    _randomize(m)
    m.eval()
    f = copy.deepcopy(m)
    rep = reparameterize(f)
    assert rep["amplitudes_folded"] == 8 and not rep["not_folded"]
    assert not any(getattr(mm, "amplitude_mode", None) for mm in f.modules())
    assert torch.allclose(f(x), m(x), atol=1e-4)


# ---------------------------------------------------------------- joint ANN-SNN
def test_joint_factorization_shares_u_v():
    torch.manual_seed(0)
    j = JointANNSNN("vgg11", 4, 1, NeuronConfig(), width=0.125, input_size=8)
    ls, la = j.snn.features[3].conv, j.ann.features[3].conv  # a shared conv (the fc layers are per branch)
    assert isinstance(ls, FactorizedLayer) and ls.factors is la.factors
    assert torch.allclose(ls.weight, la.weight, atol=1e-5)  # same init (s_ann = s_snn = SVD values)
    with torch.no_grad():
        ls.factors.s_snn.mul_(2.0)
    assert torch.allclose(ls.weight, 2 * la.weight, atol=1e-5)  # W_b = U diag(s_b) V^T
    x = torch.rand(2, 3, 1, 8, 8)
    y = torch.tensor([0, 1, 2])
    _, ann_logits = j(x, x[:1])
    F.cross_entropy(ann_logits, y).backward()
    f = la.factors
    assert f.U.grad is not None and f.s_ann.grad is not None and f.s_snn.grad is None
    plain = j.materialize("snn").eval()
    j.eval()
    assert torch.allclose(plain(x), j.snn(x), atol=1e-5)


def test_distillation_loss():
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    assert float(distillation_loss(t.clone(), t)) == pytest.approx(0.0, abs=1e-6)
    tau = 2.0
    pt = F.softmax(t / tau, -1)
    manual = (pt * (pt.log() - F.log_softmax(s / tau, -1))).sum(-1).mean() * tau**2
    assert float(distillation_loss(s, t, tau)) == pytest.approx(float(manual), rel=1e-5)


def test_spike_value_codes():
    u = torch.tensor([-1.0, -0.2, 0.4, 0.6])
    assert spike_value(u, 0.5, "binary").tolist() == [0, 0, 0, 1]
    assert spike_value(u, 0.5, "ternary").tolist() == [-1, 0, 0, 1]


def test_pointnet_folds_with_mpbn_and_real_spike():
    m = build_model("spiking-pointnet", 2, 3, True, NeuronConfig(mpbn=True, real_spike=True), width=0.125)
    m.eval()
    x = torch.randn(2, 4, 3, 64)
    m(x)  # MPBN records the membrane layout it sees
    _randomize(m)
    f = copy.deepcopy(m)
    rep = reparameterize(f)
    assert rep["bn_folded"] == 5 and rep["mpbn_folded"] == 5 and rep["amplitudes_folded"] == 5
    assert torch.allclose(f(x), m(x), atol=1e-4)


# ---------------------------------------------------------------- faithfulness (issue 15, item 6)
def test_mpr_preset_is_the_eccv_neuron():
    """IF, no decay, fires on 2 phi(u) >= 1 (u >= 1/2), soft reset subtracting V_th = 1; raw membrane carried."""
    from spikenerf.vision.config import PRESETS

    act = SpikeAct(True, PRESETS["mpr-resnet20-cifar10"][1].neuron, channels=1, dim=1)
    x = torch.full((4, 1, 1), 0.6)
    act.record_membrane = True
    s = act(x)
    # u: 0.6 fire -> -0.4; 0.2; 0.8 fire -> -0.2; 0.4 (by hand)
    assert s.flatten().tolist() == [1.0, 0.0, 1.0, 0.0]
    assert torch.allclose(act.last_membrane.flatten(), torch.tensor([0.6, 0.2, 0.8, 0.4]))
    old = SpikeAct(True, PRESETS["mpr-resnet20-cifar10-project"][1].neuron, channels=1, dim=1)
    assert old(x).flatten().tolist() == [1.0, 1.0, 1.0, 1.0]  # decay 0.5, subtract 0.5: the project's form


def test_guo_group_presets_use_the_authors_neuron():
    from spikenerf.vision.config import PRESETS

    for name in ("ternary-resnet19-cifar10", "mpbn-resnet19-cifar10", "rmp-resnet19-cifar10", "im-resnet19-cifar10",
                 "realspike-resnet20-cifar10", "joint-resnet20-cifar10"):
        n = PRESETS[name][1].neuron
        assert (n.kind, n.decay, n.v_threshold, n.reset) == ("decaylif", 0.25, 0.5, "hard"), name
        assert PRESETS[name + "-project"][1].neuron.decay == 0.5 and "[project defaults]" in PRESETS[name + "-project"][0]
        assert PRESETS[name][0].startswith("[paper]")
    a = SpikeAct(True, PRESETS["ternary-resnet19-cifar10"][1].neuron, channels=1, dim=1)
    # u = 0.25 u + x: x = 0.4 -> 0.4 (no spike), 0.5 (spike, reset), 0.4 ...
    assert a(torch.full((3, 1, 1), 0.4)).flatten().tolist() == [0.0, 1.0, 0.0]
    # LTMD: surrogate window |u - V_th| < 0.5 (rect of width 1), V_th = tanh(0.5)
    ltmd = SpikeAct(True, PRESETS["ltmd-resnet20-cifar10"][1].neuron, channels=1, dim=1).neuron
    g = ltmd.surrogate.grad(torch.tensor([-0.49, 0.49, 0.51]))
    assert g.tolist() == [1.0, 1.0, 0.0]


def test_spiking_pointnet_draws_the_initial_membrane_at_test_time():
    from spikenerf.vision.config import PRESETS

    cfg = PRESETS["spiking-pointnet-modelnet10"][1]
    assert cfg.timesteps == 1
    act = SpikeAct(True, cfg.neuron, channels=64, dim=1).eval()
    act.record_membrane = True
    torch.manual_seed(0)
    act(torch.zeros(1, 8, 64))
    h = act.last_membrane  # h_1 = decay * v0 + 0, v0 ~ U(0, 0.5)
    assert float(h.min()) >= 0.0 and float(h.max()) <= 0.5 * cfg.neuron.decay and float(h.std()) > 0
    old = SpikeAct(True, PRESETS["spiking-pointnet-modelnet10-project"][1].neuron, channels=64, dim=1).eval()
    old.record_membrane = True
    old(torch.zeros(1, 8, 64))
    assert float(old.last_membrane.abs().max()) == 0.0  # perturbation only in training


def test_ternary_resnet20_export_is_multiplication_free():
    m = build_model("resnet20", 4, 3, True, NeuronConfig(spike_code="ternary", amplitude="learnable", decay=0.25),
                    width=0.25)
    _randomize(m)
    m.eval()
    x = torch.rand(3, 2, 3, 16, 16) * 2
    f = copy.deepcopy(m).double()
    rep = reparameterize(f)
    ternary = [a for _, a in spike_acts(m)]
    assert len(ternary) == 19 and rep["amplitudes_folded"] == 19 and not rep["not_folded"]
    # every spike-fed conv / linear of the export sees the raw code {-1, 0, 1}
    first = {id(l) for l in f.first_layers()}
    seen = []

    def hook(mod, inp, out):
        if id(mod) not in first:
            seen.append(set(inp[0].unique().tolist()) <= {-1.0, 0.0, 1.0})

    # convs, and the global average pool in front of the fc (a sum, then 1/N folded into the fc)
    hs = [mm.register_forward_hook(hook) for mm in f.modules() if isinstance(mm, torch.nn.Conv2d)]
    hs.append(f.pool.register_forward_hook(hook))
    out = f(x.double())
    for h in hs:
        h.remove()
    assert len(seen) == 21 and all(seen)  # 18 block convs, 2 downsample convs, the pool feeding fc
    assert torch.allclose(out.float(), m(x), atol=1e-4)


def test_real_spike_elementwise_trains_from_the_cli_and_exports_exactly(tmp_path):
    from spikenerf.vision.build import restore
    from spikenerf.vision.cli import main
    from spikenerf.snn.real_spike import UnsharedConv2d

    out = tmp_path / "rs"
    main(["train", "realspike-resnet20-cifar10", "--dataset", "digits", "--width", "0.25", "--epochs", "1",
          "--max-batches", "2", "--batch-size", "16", "--no-augment", "--no-progress", "--no-tensorboard",
          "--test-subset", "16", "--neuron.real-spike-mode", "element", "--output-dir", str(out)])
    cfg, m, info, state = restore(out / "last.pt")
    scales = [a.real_spike.scale for _, a in spike_acts(m) if a.real_spike is not None]
    assert scales and all(s.dim() == 3 for s in scales)  # one amplitude per (c, y, x)
    with torch.no_grad():
        for s in scales:
            s.uniform_(0.5, 2.0)
    x = torch.rand(4, 3, 1, 8, 8)
    f = copy.deepcopy(m).double()
    rep = reparameterize(f, x.double())
    assert any(isinstance(mm, UnsharedConv2d) for mm in f.modules())
    # exact: unshared kernels W'_l = W a[position of tap]; only the slots that feed a pool keep their scale
    assert torch.allclose(f(x.double()), m.double()(x.double()), atol=1e-9)
    assert rep["amplitudes_folded"] > 0
    main(["export", "--checkpoint", str(out / "last.pt"), "--batches", "1"])  # raises if predictions changed
    _, g, _, _ = restore(out / "exported.pt")  # loads back with its unshared convs
    assert any(isinstance(mm, UnsharedConv2d) for mm in g.modules())


def test_joint_sharing_is_per_kernel_position_with_separate_fc():
    torch.manual_seed(1)
    j = JointANNSNN("vgg11", 4, 1, NeuronConfig(), width=0.125, input_size=8)
    conv = j.snn.features[3].conv
    f = conv.factors
    o, i = conv.weight.shape[:2]
    assert f.U.shape == (9, o, min(o, i)) and f.V.shape == (9, i, min(o, i)) and f.s_snn.shape == (9, min(o, i))
    # tap (1, 2) by hand: U_p diag(s_p) V_p^T with p = 1 * 3 + 2
    p = 5
    tap = f.U[p] @ torch.diag(f.s_snn[p]) @ f.V[p].T
    assert torch.allclose(conv.weight[:, :, 1, 2], tap, atol=1e-6)
    # the singular values of each tap are that tap's own (not those of the flattened kernel)
    assert torch.allclose(f.s_snn[p], torch.linalg.svdvals(conv.weight[:, :, 1, 2].detach()), atol=1e-5)
    assert isinstance(j.snn.fc, torch.nn.Linear) and isinstance(j.ann.fc, torch.nn.Linear)
    assert j.snn.fc is not j.ann.fc and torch.equal(j.snn.fc.weight, j.ann.fc.weight)


@pytest.mark.parametrize("name", ["resnet20", "vgg11", "sew-resnet18"])
def test_stages_compose_to_the_whole_network(name):
    torch.manual_seed(0)
    m = build_model(name, 5, 3, True, NeuronConfig(), width=0.125, input_size=16)
    _randomize(m)
    m.eval()
    x = torch.rand(2, 3, 3, 16, 16)
    st = m.stages()
    assert len(st) >= 3
    h = x
    for f in st:
        h = f(h)
    assert torch.equal(h, m.forward_seq(x))


def test_joint_branches_are_snn_stages_then_ann_stages_on_the_rate():
    torch.manual_seed(2)
    j = JointANNSNN("resnet20", 4, 3, NeuronConfig(), width=0.25, input_size=8)
    _randomize(j)
    x = torch.rand(3, 2, 3, 8, 8)
    s_st, a_st = j.snn.stages(), j.ann.stages()
    j.eval()  # by hand, against the composition: branch k = SNN stages 1..k, rate, ANN stages k+1..K
    snn_e, _, hyb_e = j.branch_logits(x, x[:1])
    assert len(hyb_e) == len(s_st) - 1 == 2
    h1 = s_st[0](x)
    b1 = a_st[2](a_st[1](h1.mean(0, keepdim=True))).mean(0)
    b2 = a_st[2](s_st[1](h1).mean(0, keepdim=True)).mean(0)
    assert torch.allclose(hyb_e[0], b1, atol=1e-6) and torch.allclose(hyb_e[1], b2, atol=1e-6)
    assert torch.allclose(snn_e, j.snn(x), atol=1e-6)


def test_joint_hybrid_passes_keep_the_ann_running_statistics():
    torch.manual_seed(2)
    j = JointANNSNN("resnet20", 4, 3, NeuronConfig(), width=0.25, input_size=8).train()
    x = torch.rand(3, 2, 3, 8, 8)
    ref = copy.deepcopy(j)
    ref.ann(x[:1])  # the ANN's own pass alone
    j.branch_logits(x, x[:1])
    for a, b in zip(j.ann.modules(), ref.ann.modules()):
        if isinstance(a, torch.nn.BatchNorm2d):
            assert torch.allclose(a.running_mean, b.running_mean) and torch.allclose(a.running_var, b.running_var)
            assert a.momentum == b.momentum


def test_joint_loss_adds_one_kd_term_per_branch_and_reaches_the_first_stage():
    from spikenerf.vision.methods.joint_asnn import JointConfig, JointMethod

    torch.manual_seed(4)
    j = JointANNSNN("resnet20", 4, 3, NeuronConfig(), width=0.25, input_size=8).train()
    x, y = torch.rand(2, 4, 3, 8, 8), torch.tensor([0, 1, 2, 3])

    class _Ctx:  # the two fields the loss reads
        class info:
            kind = "image"

    def loss_of(branches):
        meth = JointMethod.__new__(JointMethod)
        meth.config, meth.ctx = JointConfig(branches=branches, distill_weight=0.7), _Ctx
        torch.manual_seed(9)
        return meth.loss(j, x, y, 0, 1)[1]

    with torch.no_grad():
        s, a, hyb = copy.deepcopy(j).branch_logits(x, x[:1])
    want = (F.cross_entropy(s, y) + F.cross_entropy(a, y)
            + 0.7 * sum(distillation_loss(z, a) for z in [s, *hyb]))
    with_b = loss_of(True)
    assert torch.allclose(with_b, want, atol=1e-5)
    assert not torch.allclose(with_b, loss_of(False))
    # the branch terms alone send gradient into the SNN's stem (their student is the SNN's first stages)
    j.zero_grad()
    _, a_l, hyb = j.branch_logits(x, x[:1])
    sum(distillation_loss(z, a_l) for z in hyb).backward()
    stem = j.snn.stem.conv
    g = stem.factors.s_snn.grad
    assert g is not None and g.abs().sum() > 0


def test_paper_mpr_neuron_is_removed_exactly_at_export():
    """Soft reset at V_th = 1 firing on 2 phi(u) >= 1: the export shifts the membrane by 1/2 instead of keeping phi."""
    from spikenerf.vision.config import PRESETS

    m = build_model("vgg11", 4, 3, True, PRESETS["mpr-resnet20-cifar10"][1].neuron, width=0.125, input_size=16)
    _randomize(m)
    m.eval()
    x = torch.rand(4, 2, 3, 16, 16) * 2
    f = copy.deepcopy(m).double()
    rep = reparameterize(f)
    assert rep["mpr_dropped"] == 8 and not rep["not_folded"]
    assert not any(isinstance(mm, MembraneRectifier) for mm in f.modules())
    assert torch.allclose(f(x.double()).float(), m(x), atol=1e-5)
