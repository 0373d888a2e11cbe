"""Issue 6, part 2: HetSyn, S2-STDP + NCG, NeuroCLIP adapter — each equation against a naive loop or a hand computation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikenerf.snn import DecayLIFNode, IFNode
from spikenerf.snn.neurons import HetSynLIF, hetsyn_drive
from spikenerf.vision.cli import main
from spikenerf.vision.methods.neuroclip import (EncoderNotFoundError, FrozenEncoder, InterTimestepAdapter,
                                                event_frames, load_encoder, prototype_logits, smooth_ce)
from spikenerf.vision.methods.stdp_ncg import (NCGClassifier, first_spike, latency_encode, s2stdp_targets,
                                               stdp_delta)


# ============================================================================ HetSyn
def _spikes(T=8, B=3, I=6, p=0.4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, I, generator=g) < p).float()


def _naive_hetsyn(x, w, rho, rho_r, theta):
    """The paper's equations with one state per synapse, written out step by step."""
    T, B, I = x.shape
    J = w.shape[0]
    Isyn = torch.zeros(B, J, I)
    R = torch.zeros(B, J)
    z = torch.zeros(B, J)
    zs, vs = [], []
    for t in range(T):
        Isyn = rho * Isyn + w * x[t].unsqueeze(1)
        R = rho_r * R + theta * z
        V = Isyn.sum(-1) - R
        z = (V >= theta).float()
        zs.append(z)
        vs.append(V)
    return torch.stack(zs), torch.stack(vs)


def test_hetsyn_drive_recurrent_equals_lagged_values_and_grads():
    torch.manual_seed(0)
    x = _spikes()
    w = torch.randn(4, 6, requires_grad=True)
    rho = torch.rand(4, 6).requires_grad_(True)
    a = hetsyn_drive(x, w, rho, "recurrent")
    ga = torch.autograd.grad(a.pow(2).sum(), (w, rho))
    b = hetsyn_drive(x, w, rho, "lagged")
    gb = torch.autograd.grad(b.pow(2).sum(), (w, rho))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, atol=1e-4, rtol=1e-4)


def test_hetsynlif_per_synapse_matches_naive_loop():
    torch.manual_seed(1)
    m = HetSynLIF(6, 4, "synapse", tau_mean=4.0, tau_std=2.0, tau_reset=3.0, v_threshold=0.6)
    with torch.no_grad():
        m.weight.mul_(3)
    x = _spikes(seed=1)
    s, v, _ = m(x, return_state=True)
    s_ref, v_ref = _naive_hetsyn(x, m.weight.detach(), m.rho.detach(), math.exp(-1 / 3.0), 0.6)
    assert s.sum() > 0 and (s == 0).any()
    torch.testing.assert_close(s, s_ref)
    torch.testing.assert_close(v, v_ref, atol=1e-5, rtol=1e-5)
    # the per-synapse decays are trainable through the surrogate
    m(x).sum().backward()
    assert m.rho.grad is not None and m.rho.grad.abs().sum() > 0


def test_hetsyn_equal_decays_is_vanilla_lif():
    """All rho_ji = rho_r = rho: V[t] = rho V[t-1] + W x[t] - theta z[t-1]."""
    rho, theta = 0.8, 0.5
    m = HetSynLIF(6, 4, "synapse", tau_mean=-1 / math.log(rho), tau_std=0.0, tau_reset=-1 / math.log(rho),
                  v_threshold=theta)
    x = _spikes(seed=2)
    s, v, _ = m(x, return_state=True)
    W = m.weight.detach()
    V = torch.zeros(3, 4)
    z = torch.zeros(3, 4)
    for t in range(x.shape[0]):
        V = rho * V + x[t] @ W.t() - theta * z
        z = (V >= theta).float()
        torch.testing.assert_close(s[t], z)
        torch.testing.assert_close(v[t], V, atol=1e-5, rtol=1e-5)
    # the same neuron through the core scan: DecayLIFNode(decay=rho, soft reset) firing on h/rho with
    # threshold theta/rho (the reset current is not decayed in its first step, the core's soft reset is)
    core = DecayLIFNode(decay=rho, v_threshold=theta / rho, reset="soft", backend="reference",
                        membrane_transform=lambda h: h / rho)
    s_core, h_core = core(x @ W.t(), return_membrane=True)
    torch.testing.assert_close(s, s_core)
    torch.testing.assert_close(v, h_core, atol=1e-5, rtol=1e-5)


def test_hetsyn_unit_decays_is_core_if_soft_reset():
    m = HetSynLIF(6, 4, "layer", tau_mean=2.0, tau_std=0.0, tau_reset=float("inf"), v_threshold=0.7, learn_rho=False)
    with torch.no_grad():
        m.rho.fill_(1.0)
        m.weight.mul_(2)
    x = _spikes(seed=3)
    s, v, _ = m(x, return_state=True)
    s_core, h_core = IFNode(v_threshold=0.7, reset="soft")(x @ m.weight.detach().t(), return_membrane=True)
    assert s.sum() > 0
    torch.testing.assert_close(s, s_core)
    torch.testing.assert_close(v, h_core, atol=1e-5, rtol=1e-5)


def test_hetsyn_threshold_adaptation_special_case():
    """Homogeneous synaptic decay rho_s, slower reset current rho_r: LIF without reset, adaptive threshold."""
    rho_s, tau_r, theta = 0.7, 10.0, 0.5
    m = HetSynLIF(6, 4, "layer", tau_mean=-1 / math.log(rho_s), tau_std=0.0, tau_reset=tau_r, v_threshold=theta)
    with torch.no_grad():
        m.weight.mul_(2)
    x = _spikes(seed=4)
    s = m(x)
    W, rho_r = m.weight.detach(), math.exp(-1 / tau_r)
    U = torch.zeros(3, 4)
    A = torch.zeros(3, 4)
    z = torch.zeros(3, 4)
    for t in range(x.shape[0]):
        U = rho_s * U + x[t] @ W.t()
        A = rho_r * A + theta * z  # each spike raises the threshold by theta; the raise decays with rho_r
        z = (U >= theta + A).float()
        torch.testing.assert_close(s[t], z)
    assert s.sum() > 0


def test_hetsyn_neuron_level_heterogeneity():
    """rho_ji = rho_j for every i: the per-synapse layer equals the per-neuron layer and a per-neuron LIF loop."""
    torch.manual_seed(5)
    neu = HetSynLIF(6, 4, "neuron", tau_mean=4.0, tau_std=2.0, tau_reset=None, v_threshold=0.5)
    syn = HetSynLIF(6, 4, "synapse", tau_reset=None, v_threshold=0.5)
    with torch.no_grad():
        neu.weight.mul_(2)
        syn.weight.copy_(neu.weight)
        syn.rho.copy_(neu.rho.unsqueeze(1).expand(4, 6))
    x = _spikes(seed=5)
    s1, v1, _ = neu(x, return_state=True)
    s2, v2, _ = syn(x, return_state=True)
    torch.testing.assert_close(s1, s2)
    torch.testing.assert_close(v1, v2, atol=1e-5, rtol=1e-5)
    r = neu.rho.detach()
    V = torch.zeros(3, 4)
    z = torch.zeros(3, 4)
    for t in range(x.shape[0]):
        V = r * V + x[t] @ neu.weight.detach().t() - 0.5 * z
        z = (V >= 0.5).float()
        torch.testing.assert_close(s1[t], z)
    assert syn.state_size() == 4 * 6 + 4 and neu.state_size() == 4 + 4


def test_hetsyn_cli_runs_on_nmnist(shared_data, tmp_path, capsys):
    root = shared_data("nmnist-small")
    main(["train", "hetsyn-nmnist", "--data-root", str(root), "--epochs", "1", "--train-subset", "32",
          "--test-subset", "16", "--method.hidden", "16", "--timesteps", "4", "--no-progress", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "hetsyn on nmnist" in out and "state mults" in out
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["config"]["method"]["variant"] == "hetsyn"


def test_hetsyn_shd_missing_is_clear(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "hetsyn-shd", "--data-root", str(tmp_path), "--no-progress"])
    assert e.value.code == 2 and "shd" in capsys.readouterr().err


# ============================================================================ S2-STDP + NCG
def test_latency_encoding_and_first_spike():
    t = latency_encode(torch.tensor([[1.0, 0.5, 0.0, 0.25]]), T=5)
    assert t.tolist() == [[0.0, 2.0, math.inf, 3.0]]
    w = torch.tensor([[0.5, 0.5, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0]])
    t_out, V = first_spike(t, w, torch.tensor([0.9, 2.0]), T=5)
    # neuron 0: V(0)=0.5, V(2)=1.0 >= 0.9 -> t=2; neuron 1 never reaches 2.0 -> t=T, V at the last step = 1.0
    torch.testing.assert_close(t_out, torch.tensor([[2.0, 5.0]]))
    torch.testing.assert_close(V, torch.tensor([[1.0, 1.0]]))


def test_s2stdp_targets_and_update_rule_by_hand():
    # C = 3 winners at t = 4, 6 and silent (T_lim = 10); g = 3, label 1
    tgt = s2stdp_targets(torch.tensor([4.0, 6.0, 10.0]), y=1, g=3.0, T_lim=10.0)
    # t_base = (4 + 6) / 2 = 5; target 5 - 3 * 2/3 = 3; others 5 + 3/3 = 6
    torch.testing.assert_close(tgt, torch.tensor([6.0, 3.0, 6.0]))
    w = torch.tensor([0.2, 0.5, 0.9])
    dw = stdp_delta(w, torch.tensor([1.0, 3.0, math.inf]), t_post=2.0, error=0.5, a_plus=0.1, a_minus=-0.2)
    hand = torch.tensor([0.5 * 0.1 * math.exp(-0.2), 0.5 * -0.2 * math.exp(-0.5), 0.5 * -0.2 * math.exp(-0.1)])
    torch.testing.assert_close(dw, hand)


def test_ncg_step_by_hand():
    """2 classes x 2 neurons, inputs spiking at t = 0, 1, 2 (T = 5), sample of class 0."""
    clf = NCGClassifier(3, 2, m=2, T=5, threshold=0.8, a_plus=0.1, a_minus=-0.1, g=2.0, beta=1.0, eta_th=0.05)
    clf.w = torch.tensor([[0.5, 0.5, 0.5], [0.2, 0.2, 0.2], [0.9, 0.1, 0.1], [0.3, 0.3, 0.3]])
    clf.theta_train[:2] = 1.4  # NCG of class 0 fires with its training thresholds
    t_in = torch.tensor([0.0, 1.0, 2.0])
    w0 = clf.w.clone()
    out = clf.step(t_in, 0)
    # n0: 0.5, 1.0, 1.5 >= 1.4 at t=2; n1 silent (0.6 < 1.4); n2: 0.9 >= 0.8 at t=0; n3: 0.9 at t=2
    torch.testing.assert_close(out["t"], torch.tensor([2.0, 5.0, 0.0, 2.0]))
    assert out["winners"].tolist() == [0, 2]
    # t_base = mean(2, 0) = 1; g/C = 1 and g(C-1)/C = 1: target 0 for class 0, 2 for class 1
    torch.testing.assert_close(out["targets"], torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(out["errors"], torch.tensor([0.4, -0.4]))
    exp_w = w0.clone()
    exp_w[0] = w0[0] + 0.4 * 0.1 * torch.exp(-w0[0])  # every input is causal (t_i <= 2)
    exp_w[2] = w0[2] + torch.tensor([-0.4 * 0.1 * math.exp(-0.9), -0.4 * -0.1 * math.exp(-0.9),
                                     -0.4 * -0.1 * math.exp(-0.9)])  # only input 0 is causal (t_post = 0)
    torch.testing.assert_close(clf.w, exp_w)
    # competition regulation inside the NCG of class 0 only: winner +eta, the other -eta/(M-1)
    torch.testing.assert_close(clf.theta_train, torch.tensor([1.45, 1.35, 0.8, 0.8]))
    # inference uses the fixed test thresholds: n2 fires first (t=0) -> class 1
    assert clf.predict(t_in.unsqueeze(0)).tolist() == [1]


def test_stdp_ncg_cli_runs(tmp_path, capsys):
    main(["train", "stdp-ncg-digits", "--method.extractor", "pixels", "--epochs", "1", "--train-subset", "200",
          "--test-subset", "50", "--no-progress", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "S2-STDP+NCG" in out and "test accuracy" in out


# ============================================================================ NeuroCLIP
def test_event_frames():
    x = torch.zeros(1, 1, 2, 1, 4)
    x[0, 0, 0, 0, 1] = 1  # ON
    x[0, 0, 1, 0, 2] = 2  # OFF
    x[0, 0, 0, 0, 3] = 1  # ON and OFF: OFF wins (written last)
    x[0, 0, 1, 0, 3] = 1
    torch.testing.assert_close(event_frames(x).flatten(), torch.tensor([127 / 255 - 0.5, 0.5, -0.5, -0.5]))


def _tiny_encoder() -> FrozenEncoder:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
    return FrozenEncoder(net, "torchvision", in_channels=1, size=8)


def test_adapter_equations_on_tiny_encoder():
    enc = _tiny_encoder()
    x = (torch.rand(3, 4, 2, 12, 12) > 0.7).float()  # [B, T, 2, H, W] events
    feats = torch.stack([enc(event_frames(x[b:b + 1])[0]) for b in range(3)])  # [B, T, 16]
    assert feats.shape == (3, 4, 16) and not any(p.requires_grad for p in enc.parameters())
    ad = InterTimestepAdapter(16, 4, ratio=0.3, reduction=8)
    torch.manual_seed(1)
    for bn in (ad.bn1, ad.bn2):
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    ad.eval()
    with torch.no_grad():
        ad.fc1.weight.mul_(8)
        out = ad(feats)
        u = torch.zeros(3, 2)
        adapted = []
        for t in range(4):
            pre = ad.bn2(ad.fc1(ad.bn1(feats[:, t])))
            u = 0.25 * u + pre  # the paper's LIF: decay 0.25, threshold 0.5, hard reset to 0
            s = (u >= 0.5).float()
            u = u * (1 - s)
            adapted.append(F.relu(ad.fc2(s)))
        ref = 0.3 * torch.cat(adapted, 1) + 0.7 * feats.reshape(3, 64)
    assert 0 < ad.last_spikes.mean() < 1
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # the adapter (only) trains through the spikes, against class prototypes
    ad.train()
    protos = torch.randn(2, 64)
    loss = smooth_ce(prototype_logits(ad(feats), protos), torch.tensor([0, 1, 1]))
    loss.backward()
    assert ad.fc1.weight.grad.abs().sum() > 0 and ad.fc2.weight.grad.abs().sum() > 0


def test_smooth_ce_and_prototype_logits_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    p = torch.log_softmax(logits, 1)[0]
    hand = -(0.8 * p[0] + 0.1 * p[1] + 0.1 * p[2])
    torch.testing.assert_close(smooth_ce(logits, torch.tensor([0])), hand)
    f, P = torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    torch.testing.assert_close(prototype_logits(f, P, 100.0), torch.tensor([[60.0, 80.0]]))


def test_neuroclip_encoder_from_project_checkpoint(tmp_path):
    from spikenerf.vision.build import build, restore
    from spikenerf.vision.config import VisionConfig, config_to_dict
    from spikenerf.vision.data import DATASETS

    cfg = VisionConfig(model="vgg11", dataset="nmnist", width=0.0625, spiking=False, timesteps=2)
    torch.save({"model": build(cfg, DATASETS["nmnist"]).state_dict(), "config": config_to_dict(cfg)},
               tmp_path / "checkpoint.pt")
    enc = load_encoder("checkpoint", str(tmp_path / "checkpoint.pt"), restore=restore)
    x = (torch.rand(1, 3, 2, 34, 34) > 0.9).float()
    f = enc(event_frames(x)[0], x[0])
    assert f.shape == (3, 32)


def test_neuroclip_without_encoder_is_clear(tmp_path, capsys):
    with pytest.raises(EncoderNotFoundError):
        load_encoder("resnet18", str(tmp_path / "missing.pth"))
    with pytest.raises(SystemExit) as e:
        main(["train", "neuroclip-nmnist", "--no-progress"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "never downloads" in err and "Traceback" not in err
