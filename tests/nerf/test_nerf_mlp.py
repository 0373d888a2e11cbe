"""spiknerf-mlp speed paths against the plain forms: input layers once over T, fused scans vs the per-step
loop, the occupancy cache, and the MAC / SOP counts of both conventions against hand counts."""

from __future__ import annotations

import copy

import pytest
import torch
from nerfstudio.data.scene_box import SceneBox

from spikenerf.nerf.nerf_mlp import NeRFMLPModelConfig, SpikNeRFMLP
from test_spiknerf import _rays  # rays from z = 4 towards the box (tests/nerf is on sys.path)

BOX = torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]])
CODES = ["ternary012", "ternary", "binary"]


def _net(code="ternary012", spiking=True, W=16, seed=0, gain=4.0):
    torch.manual_seed(seed)
    net = SpikNeRFMLP(hidden_dim=W, color_hidden=8, spiking=spiking, spike_code=code)
    with torch.no_grad():  # fire at every level
        for lin in list(net.trunk) + [net.feature, net.color_in]:
            lin.weight.mul_(gain)
        if code == "ternary" and spiking:
            for i, node in enumerate(list(net.acts) + [net.color_act]):
                node.amplitude.fill_(0.6 + 0.1 * i)
    return net


def _inputs(net, B=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, net.pos_dim, generator=g), torch.randn(B, net.dir_dim, generator=g)


def _reference_backend(net):
    ref = copy.deepcopy(net)
    if ref.spiking:
        for node in list(ref.acts) + [ref.color_act]:
            node.backend = "reference"  # the per-step autograd loop of the core
    return ref


def _grads(net, out):
    dl, rl, _, _ = out
    (dl.square().sum() + (rl * torch.linspace(-1, 1, 3)).sum()).backward()
    return {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("code", CODES + ["ann"])
def test_fast_path_equals_repeated_reference_values_and_gradients(code):
    """Input layers once + broadcast, fused scans  ==  input repeated T times, per-step autograd loop."""
    net = _net(code if code != "ann" else "binary", spiking=code != "ann")
    ref = _reference_backend(net)
    pe, de = _inputs(net)
    T = 3 if code != "ann" else 1
    fast = net(pe, de, T=T)
    slow = ref(pe, de, T=T, reference=True)
    torch.testing.assert_close(fast[0], slow[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast[1], slow[1], rtol=1e-5, atol=1e-5)
    for a, b in zip(fast[2] + fast[3], slow[2] + slow[3]):
        torch.testing.assert_close(a, b)
    if code != "ann":
        assert len(fast[2]) == net.num_layers + 1 and float(sum(fast[2]).sum()) > 0
    ga, gb = _grads(net, fast), _grads(ref, slow)
    assert set(ga) == set(gb) and len(ga) > 10
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], rtol=1e-4, atol=1e-5, msg=k)


def _hand_step(code, v, x, tau=4.0, vth=0.5, margin=1.0):
    """One LIF step (h = (1 - 1/tau) v + x, hard reset to 0) of ``[B, C]`` tensors -> (spike level, new v)."""
    h = (1 - 1 / tau) * v + x
    if code == "binary":
        s = (h >= vth).float()
    elif code == "ternary012":
        s = (h >= vth).float() + (h - vth >= margin).float()
    else:
        s = (h >= vth).float() - (-h >= vth).float()
    return s, torch.where(s != 0, torch.zeros_like(h), h)


@pytest.mark.parametrize("code", CODES)
def test_batched_over_T_network_equals_per_step_loop(code):
    """One [T*B, C] matmul per layer + one scan over [T, B, C]  ==  the network run one time step at a time."""
    net = _net(code)
    pe, de = _inputs(net)
    T = 3
    dl, rl, _, _ = net(pe, de, T=T)
    amp = [node.output_scale() for node in list(net.acts) + [net.color_act]]
    amp = [1.0 if a is None else float(a.detach()) for a in amp]
    W = net.hidden_dim
    v = [torch.zeros(pe.shape[0], W) for _ in range(net.num_layers)] + [torch.zeros(pe.shape[0], net.color_hidden)]
    with torch.no_grad():
        for t in range(T):
            h = None
            for i, lin in enumerate(net.trunk):
                x = lin(pe) if i == 0 else lin(h)
                if i == net.skip_layer:
                    x = x + net.skip_in(pe)
                s, v[i] = _hand_step(code, v[i], x)
                h = s * amp[i]
            torch.testing.assert_close(dl[t], net.density_head(h)[:, 0], rtol=1e-5, atol=1e-5)
            s, v[-1] = _hand_step(code, v[-1], net.color_in(torch.cat([net.feature(h), de], -1)))
            torch.testing.assert_close(rl[t], net.rgb_head(s * amp[-1]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("code", CODES)
def test_deployed_fast_path_is_exact_and_counts_match(code):
    net = _net(code)
    pe, de = _inputs(net)
    train = net(pe, de, T=2)
    net.eval()
    dep = net(pe, de, T=2)
    torch.testing.assert_close(dep[0], train[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dep[1], train[1], rtol=1e-5, atol=1e-5)
    for a, b in zip(dep[2] + dep[3], train[2] + train[3]):  # events / non-zero spikes, either side
        torch.testing.assert_close(a, b)
    if code == "ternary012":  # silence sends -1 after the shift: more events than non-zero training spikes
        assert float(sum(dep[2]).sum()) != float(sum(dep[3]).sum())
    else:
        torch.testing.assert_close(sum(dep[2]), sum(dep[3]))


# ----------------------------------------------------------------------------- op counts, both conventions
def test_mac_counts_of_both_conventions_by_hand():
    net = SpikNeRFMLP(hidden_dim=16, color_hidden=8)  # pos 63, dir 27, 8 layers, skip at 5
    assert (net.pos_dim, net.dir_dim) == (63, 27)
    # once: layer 1 (63*16) + skip (63*16) + colour direction part (27*8), once; colour feature part 16*8 per step
    assert net.macs_per_sample(2, "once") == 1008 + 1008 + 216 + 2 * 128 == 2488
    # per step (the SpikingNeRF authors' count of a repeated input): every real-valued input x T
    assert net.macs_per_sample(2, "per_step") == 2 * (1008 + 1008 + 216) + 2 * 128 == 4720
    assert net.macs_per_sample(1, "once") == net.macs_per_sample(1, "per_step")
    # ANN: 63*16 + 7*16*16 + skip 63*16 + density 16 + feature 16*16 + colour (16+27)*8 + rgb 8*3
    assert net.ann_macs_per_sample() == 1008 + 1792 + 1008 + 16 + 256 + 344 + 24
    assert net.fanouts() == [16] * 7 + [17, 3]


def _model(**kw):
    cfg = NeRFMLPModelConfig(hidden_dim=16, color_hidden=8, num_coarse_samples=6, num_importance_samples=6, **kw)
    m = cfg.setup(scene_box=SceneBox(aabb=BOX.clone()), num_train_data=1, metadata={})
    with torch.no_grad():
        for net in (m.field_coarse, m.field_fine):
            for lin in net.trunk:
                lin.weight.mul_(4.0)
    return m


def test_model_op_counters_by_hand():
    m = _model(time_steps=2)
    m.eval()
    with torch.no_grad():
        out = m(_rays(24))
    n = out["ray_samples"][:, 0]
    assert torch.all(n == 6 + 13)  # 6 coarse + (6 fine + 6 original + 1) fine samples
    torch.testing.assert_close(out["ray_macs"][:, 0], n * 2488)
    torch.testing.assert_close(out["ray_macs_input_per_step"][:, 0], n * 4720)
    torch.testing.assert_close(out["ray_ann_macs"][:, 0], n * m.field_fine.ann_macs_per_sample())
    # SOPs: events of each spiking layer x its fan-out, by hand on the coarse samples of one ray
    net = m.field_coarse
    rs = m.sampler_uniform(m.collider(_rays(24)))
    pos, dirs = rs.frustums.get_positions()[:1], rs.frustums.directions[:1]
    pe, de = m._encode(net, pos.reshape(-1, 3), dirs.reshape(-1, 3))
    with torch.no_grad():
        _, _, ev, nz = net(pe, de, T=2)
        o = m._eval_net(net, pos, dirs)
    torch.testing.assert_close(o["sops"], sum(e.sum() * f for e, f in zip(ev, net.fanouts())).reshape(1))
    torch.testing.assert_close(o["spikes"], sum(e.sum() for e in ev).reshape(1))
    torch.testing.assert_close(o["train_spikes"], sum(z.sum() for z in nz).reshape(1))
    assert float(o["neurons"]) == 6 * 2 * (16 * 8 + 8)
    with torch.no_grad():
        out = m(_rays(R=144))  # a 12 x 12 image (SSIM's window needs 11)
    n = out["ray_samples"][:, 0]
    metrics, _ = m.get_image_metrics_and_images({k: v.reshape(12, 12, -1) for k, v in out.items()},
                                                {"image": torch.rand(12, 12, 3)})
    e_once, e_xT = metrics["energy_uj_per_image"], metrics["energy_uj_per_image_input_xT"]
    sops = float(out["ray_sops"].sum())
    torch.testing.assert_close(e_once, (float(n.sum()) * 2488 * 4.6 + sops * 0.9) * 1e-6)
    torch.testing.assert_close(e_xT, (float(n.sum()) * 4720 * 4.6 + sops * 0.9) * 1e-6)
    assert 0 < metrics["train_spike_rate"] <= 1 and 0 < metrics["firing_rate"] <= 1


def test_training_steps_skip_op_counts_unless_asked():
    m = _model()
    m.train()
    out = m(_rays(24))
    metrics = m.get_metrics_dict(out, {"image": torch.rand(24, 3)})
    assert "firing_rate" not in metrics and "psnr" in metrics
    m.config.train_op_counts = True
    metrics = m.get_metrics_dict(m(_rays(24)), {"image": torch.rand(24, 3)})
    assert 0 <= metrics["firing_rate"] <= 1


# ----------------------------------------------------------------------------- occupancy cache
def test_occupancy_cache_skips_samples_exactly():
    m = _model(occupancy_resolution=8)
    with torch.no_grad():
        m.occupancy.zero_()
        m.occupancy[2:6, 2:6, 2:6] = True  # the cube [-0.75, 0.75]^3
    rs = m.sampler_uniform(m.collider(_rays(24)))
    pos, dirs = rs.frustums.get_positions(), rs.frustums.directions
    keep = m._occupied(pos)
    inside = (pos.abs() < 0.75).all(-1)
    edge = ((pos.abs() - 0.75).abs() < 1e-5).any(-1)
    assert torch.equal(keep[~edge], inside[~edge]) and 0 < int(keep.sum()) < keep.numel()
    m.eval()
    with torch.no_grad():
        full = m._eval_net(m.field_coarse, pos, dirs)
        cut = m._eval_net(m.field_coarse, pos, dirs, keep)
    torch.testing.assert_close(cut["density"][keep], full["density"][keep], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cut["rgb"][keep], full["rgb"][keep], rtol=1e-5, atol=1e-6)
    assert float(cut["density"][~keep].abs().max()) == 0.0
    torch.testing.assert_close(cut["samples"], keep.sum(1).float())
    torch.testing.assert_close(cut["macs"], keep.sum(1).float() * 2488)
    # training: the distillation points are the fine samples that ran the fine network
    m.train()
    out = m(_rays(24))
    assert out["_xyz"].shape[0] == out["_sigma"].shape[0] == out["_sample_rgb"].shape[0]
    assert bool(((out["_xyz"].abs() <= 0.75 + 1e-5).all(-1)).all())
    sum(m.get_loss_dict(out, {"image": torch.rand(24, 3)}).values()).backward()
    assert m.field_fine.trunk[3].weight.grad.abs().sum() > 0


def test_occupancy_update_sweeps_then_samples_cells(monkeypatch):
    m = _model(occupancy_resolution=8, occupancy_warmup_steps=5, occupancy_update_every=4,
               occupancy_cells_per_update=10, occupancy_decay=0.5)
    ball = lambda net, xyz: 100.0 * (xyz.norm(dim=-1) < 0.4).float()  # noqa: E731  a dense ball, empty elsewhere
    monkeypatch.setattr(m, "_density", ball)
    m.update_occupancy(step=4)  # warm-up: nothing measured
    assert bool(m.occupancy.all()) and not bool(m.occupancy_swept)
    m.update_occupancy(step=5)  # full sweep
    assert bool(m.occupancy_swept)
    centre = m.occupancy[3:5, 3:5, 3:5]
    assert bool(centre.all()) and not bool(m.occupancy[0, 0, 0]) and not bool(m.occupancy[7, 7, 7])
    swept = m.occupancy_sigma.clone()
    m.update_occupancy(step=6)  # not an update step
    assert torch.equal(m.occupancy_sigma, swept)
    m.update_occupancy(step=9)  # decay everything, re-measure 10 random cells
    changed = (m.occupancy_sigma != swept * 0.5).sum()
    assert int(changed) <= 10
    assert float(m.occupancy_sigma.max()) == 100.0 or float(m.occupancy_sigma.max()) == 50.0


def test_occupancy_needs_repeat_time():
    with pytest.raises(ValueError, match="repeat"):
        _model(occupancy_resolution=8, time_mode="ray")
