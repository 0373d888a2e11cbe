"""Spik-NeRF: spike codes, exact inference re-parameterization, distillation, teacher loading, CLI."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from spikenerf.nerf.distill import distill_losses
from spikenerf.nerf.field import positional_encoding
from spikenerf.nerf.nerf_mlp import NeRFMLPModelConfig
from spikenerf.nerf.packing import pack_index
from spikenerf.nerf.method_configs import spiknerf, spiknerf_ann, spiknerf_mlp, spiknerf_mlp_ann
from spikenerf.nerf.spiknerf_neuron import make_neuron
from spikenerf.nerf.spiknerf import SpikNeRFModelConfig
from spikenerf.nerf.time_layout import ragged_rows, time_buckets
from spikenerf.snn.deploy import count_events, deployed_spikes, fold_consumer

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "data" / "lego-mini"
BLENDER_BOX = torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]])
CODES = ["ternary012", "ternary", "binary"]


def _model(spiking=True, box=BLENDER_BOX, views=1, **kw):
    cfg = SpikNeRFModelConfig(coarse_steps=2, coarse_resolution=12, fine_resolution=20, pg_scale_steps=(2,),
                              hidden_dim=16, spiking=spiking, **kw)
    return cfg.setup(scene_box=SceneBox(aabb=box.clone()), num_train_data=views, metadata={})


def _randomize(m, seed=1, gain=6.0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for grid in (m.field.density_grid, m.field.feature_grid, m.coarse_density, m.coarse_color):
            for p in grid.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        if m.field.spiking:
            m.field.fc1.weight.mul_(gain)  # make the LIF layers fire at all levels
            m.field.fc2.weight.mul_(gain)
            if m.field.spike_code == "ternary":
                m.field.lif1.amplitude.fill_(0.7)
                m.field.lif2.amplitude.fill_(1.3)


def _rays(R=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    o = torch.tensor([0.0, 0.0, 4.0]).expand(R, 3) + 0.1 * torch.randn(R, 3, generator=g)
    d = -o + 0.4 * torch.randn(R, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    return RayBundle(origins=o, directions=d, pixel_area=torch.ones(R, 1),
                     camera_indices=torch.zeros(R, 1, dtype=torch.long))


def _camera(w=12, h=10):
    c2w = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4.0]])[None]
    return Cameras(camera_to_worlds=c2w, fx=14.0, fy=14.0, cx=w / 2, cy=h / 2, width=w, height=h)


# ----------------------------------------------------------------------------- spike codes
def _hand_lif(x, code, tau=4.0, vth=0.5, margin=1.0, amp=1.0):
    """LIF h = (1 - 1/tau) v + x, code, hard reset to 0, as a plain Python loop over scalars."""
    T, N = x.shape
    out = torch.zeros(T, N)
    for n in range(N):
        v = 0.0
        for t in range(T):
            h = (1 - 1 / tau) * v + float(x[t, n])
            if code == "binary":
                s, fired = float(h >= vth), h >= vth
            elif code == "ternary012":
                s, fired = float(h >= vth) + float(h - vth >= margin), h >= vth
            else:
                s = float(h >= vth) - float(-h >= vth)
                fired = s != 0
            v = 0.0 if fired else h
            out[t, n] = s * amp
    return out


@pytest.mark.parametrize("code", CODES)
def test_spike_codes_match_hand_loop(code):
    torch.manual_seed(0)
    x = torch.randn(7, 40) * 1.5
    node = make_neuron(code, tau=4.0, v_threshold=0.5, margin=1.0)
    amp = 1.0
    if code == "ternary":
        with torch.no_grad():
            node.amplitude.fill_(0.6)
        amp = 0.6
    s = node(x)
    torch.testing.assert_close(s, _hand_lif(x, code, amp=amp))
    levels = set(torch.unique(s / amp).round().tolist())
    expect = {"binary": {0, 1}, "ternary012": {0, 1, 2}, "ternary": {-1, 0, 1}}[code]
    assert levels == expect  # every level of the code is reached on this input
    # deployed code: the shifted / un-scaled levels, and the event count is the same from either side
    dep = deployed_spikes(node, x)
    ref = {"ternary012": s - 1, "ternary": s / amp, "binary": s}[code]
    torch.testing.assert_close(dep, ref)
    valid = torch.ones_like(s, dtype=torch.bool)
    assert torch.equal(count_events(code, s, valid, False), count_events(code, dep, valid, True))
    if code == "ternary012":  # a silent neuron sends -1 after the shift: it is an event
        assert torch.equal(count_events(code, s, valid, False), ((s == 0) | (s == 2)).float())


def test_margin_controls_second_level():
    x = torch.tensor([[0.6], [1.6], [3.0]])  # each step from rest (hard reset) since all fire
    assert make_neuron("ternary012", margin=1.0)(x)[:, 0].tolist() == [1.0, 2.0, 2.0]
    assert make_neuron("ternary012", margin=2.0)(x)[:, 0].tolist() == [1.0, 1.0, 2.0]


def test_spiknerf_field_takes_only_its_neuron():
    """SpikingNeRF's colour-neuron options reach Spik-NeRF's field only where its re-parameterization holds:
    the surrogate does, another neuron / reset / threshold is refused by name."""
    from spikenerf.nerf.spiknerf import SpikNeRFField

    box = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    f = SpikNeRFField(box, (4, 4, 4), surrogate="sigmoid", neuron="lif", reset="hard")
    assert type(f.lif1.surrogate).__name__ == "Sigmoid" and f.lif1.spec.reset == "hard"
    for bad in (dict(neuron="plif"), dict(reset="soft"), dict(threshold="learnable"), dict(detach_reset=True)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SpikNeRFField(box, (4, 4, 4), **bad)


# ----------------------------------------------------------------------------- re-parameterization
@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("time_mode", ["repeat", "ray"])
def test_reparameterization_is_exact_on_rendered_image(code, time_mode):
    m = _model(spike_code=code, time_mode=time_mode, time_steps=3)
    m.update_to_step(10)
    _randomize(m)
    m.eval()
    m.config.eval_num_rays_per_chunk = 64
    cam = _camera()
    assert m.field.deployed
    deployed = m.get_outputs_for_camera(cam)
    m.field.reparam = False
    assert not m.field.deployed
    trained = m.get_outputs_for_camera(cam)
    assert deployed["rgb"].shape == (10, 12, 3)
    assert trained["num_color_samples"].sum() > 0 and trained["spike_rate"].max() > 0
    torch.testing.assert_close(deployed["rgb"], trained["rgb"], rtol=1e-5, atol=1e-6)
    # events (and so SOPs / energy) are counted on the deployed code either way
    torch.testing.assert_close(deployed["ray_sops"], trained["ray_sops"])
    if code != "binary":
        assert not torch.allclose(trained["rgb"], torch.zeros_like(trained["rgb"]))


@pytest.mark.parametrize("code", CODES)
def test_grid_energy_both_conventions_and_training_rate(code):
    """Grid backbone: fc1 (the only MAC layer) counted once or x T; the deployed event rate beside the
    training-code firing rate (they differ only for ternary012, whose silent neurons send -1)."""
    m = _model(spike_code=code, time_steps=2)
    m.update_to_step(10)
    _randomize(m)
    m.eval()
    m.config.eval_num_rays_per_chunk = 64
    out = m.get_outputs_for_camera(_camera())
    metrics, _ = m.get_image_metrics_and_images(out, {"image": torch.rand(10, 12, 3)})
    n_col = float(out["num_color_samples"].sum())
    assert n_col > 0
    macs = n_col * m.field.in_dim * m.field.hidden_dim  # by hand: once per sample
    assert metrics["macs_per_image"] == pytest.approx(macs)
    assert metrics["macs_per_image_input_xT"] == pytest.approx(2 * macs)
    sops = metrics["sops_per_image"]
    assert metrics["energy_uj_per_image"] == pytest.approx((macs * 4.6 + sops * 0.9) * 1e-6)
    assert metrics["energy_uj_per_image_input_xT"] == pytest.approx((2 * macs * 4.6 + sops * 0.9) * 1e-6)
    assert 0 < metrics["train_spike_rate"] <= 1 and 0 < metrics["firing_rate"] <= 1
    if code == "ternary012":
        assert metrics["train_spike_rate"] != pytest.approx(metrics["firing_rate"])
    else:
        assert metrics["train_spike_rate"] == pytest.approx(metrics["firing_rate"])


def _lif_spikes(field, x1, layout):
    """What the field's LIF layers send on ``layout`` (deployed or not): ``(s1, s2)`` per valid sample."""
    s1 = layout.run(field.neuron(field.lif1), x1)
    s2 = layout.run(field.neuron(field.lif2), field.consumer(field.fc2, field.lif1)(s1))
    return s1, s2


def test_reparameterization_sends_shifted_spikes():
    """The deployed network really runs on {-1, 0, 1}: LIF outputs are s - 1, fc2 is folded (bias + W 1)."""
    m = _model(spike_code="ternary012")
    m.update_to_step(10)
    _randomize(m)
    torch.manual_seed(0)

    x1 = m.field.fc1(torch.randn(60, m.field.in_dim) * 2)  # 30 sequences of 2 steps, valid samples only
    layout = time_buckets(pack_index(torch.ones(30, 2, dtype=torch.bool), "condensing"))
    m.eval()
    s1_d, s2_d = _lif_spikes(m.field, x1, layout)
    logits_d = m.field.spiking_net(x1, layout)[0]
    m.train()
    s1_t, s2_t = _lif_spikes(m.field, x1, layout)
    logits_t = m.field.spiking_net(x1, layout)[0]
    assert set(s1_d.unique().tolist()) == {-1.0, 0.0, 1.0}
    torch.testing.assert_close(s1_d, s1_t - 1)
    torch.testing.assert_close(logits_d, logits_t, rtol=1e-5, atol=1e-5)

    folded = fold_consumer(m.field.fc2, m.field.lif1)
    torch.testing.assert_close(folded.bias, m.field.fc2.bias + m.field.fc2.weight.sum(1))
    s = torch.randint(-1, 2, (5, 16)).float()
    torch.testing.assert_close(folded(s), m.field.fc2(s + 1))


def test_deployed_ray_time_runs_in_place_as_in_blocks():
    """Inference in place (rows) sends the deployed {-1, 0, 1} code the time-block path sends."""

    m = _model(spike_code="ternary012")
    m.update_to_step(10)
    _randomize(m)
    mask = torch.rand(30, 7, generator=torch.Generator().manual_seed(2)) < 0.6
    info = pack_index(mask, m.field.pack_mode)
    x1 = m.field.fc1(torch.randn(int(mask.sum()), m.field.in_dim) * 2).detach()
    m.eval()
    with torch.no_grad():
        s_rows = _lif_spikes(m.field, x1, ragged_rows(info))
        s_blk = _lif_spikes(m.field, x1, time_buckets(info))
    assert set(s_rows[0].unique().tolist()) == {-1.0, 0.0, 1.0}
    assert all(torch.equal(a, b) for a, b in zip(s_rows, s_blk))


@pytest.mark.parametrize("time_mode", ["repeat", "ray"])
def test_mlp_backbone_reparameterization_and_ops(time_mode):
    cfg = NeRFMLPModelConfig(hidden_dim=16, num_coarse_samples=6, num_importance_samples=6, time_steps=2,
                             time_mode=time_mode)
    m = cfg.setup(scene_box=SceneBox(aabb=BLENDER_BOX.clone()), num_train_data=1, metadata={})
    with torch.no_grad():
        for net in (m.field_coarse, m.field_fine):
            net.trunk[0].weight.mul_(4.0)
    m.eval()
    m.config.eval_num_rays_per_chunk = 40
    cam = _camera(8, 6)
    a = m.get_outputs_for_camera(cam)
    for net in (m.field_coarse, m.field_fine):
        net.reparam = False
    b = m.get_outputs_for_camera(cam)
    torch.testing.assert_close(a["rgb"], b["rgb"], rtol=1e-5, atol=1e-6)
    metrics, _ = m.get_image_metrics_and_images(a, {"image": torch.rand(6, 8, 3)})
    assert metrics["energy_reduction_vs_ann"] > 0 and 0 <= metrics["firing_rate"] <= 1
    # training step works and only the two fields are optimised
    m.train()
    out = m(_rays(16))
    loss = m.get_loss_dict(out, {"image": torch.rand(16, 3)})
    sum(loss.values()).backward()
    assert m.field_fine.trunk[3].weight.grad.abs().sum() > 0
    n_params = sum(1 for _ in m.parameters()) - 1  # minus nerfstudio's device indicator
    assert len(m.get_param_groups()["fields"]) == n_params


# ----------------------------------------------------------------------------- distillation
def _save_teacher(root: Path, box=BLENDER_BOX, views=6, step=20, make_ckpt=True, scene=BUNDLED) -> Path:
    """A spiknerf-ann run directory (config.yml + step-*.ckpt) with random grids, like ns-train writes."""
    cfg = copy.deepcopy(spiknerf_ann.config)
    m = cfg.pipeline.model
    m.coarse_steps, m.coarse_resolution, m.fine_resolution, m.pg_scale_steps, m.hidden_dim = 2, 12, 20, (2,), 16
    cfg.pipeline.datamanager.dataparser.data = scene
    cfg.output_dir = root
    cfg.set_timestamp()
    cfg.save_config()
    teacher = m.setup(scene_box=SceneBox(aabb=box.clone()), num_train_data=views, metadata={})
    teacher.update_to_step(step)
    _randomize(teacher, seed=7)
    if make_ckpt:
        d = cfg.get_checkpoint_dir()
        d.mkdir(parents=True, exist_ok=True)
        torch.save({"step": step, "pipeline": {"_model." + k: v for k, v in teacher.state_dict().items()}},
                   d / f"step-{step:09d}.ckpt")
    return cfg.get_base_dir() / "config.yml"


def _student_with_teacher(tmp_path, **kw):
    cfg_path = _save_teacher(tmp_path)
    s = _model(views=6, teacher_config=cfg_path, **kw)
    s.load_teacher()
    return s


@pytest.mark.parametrize("space", ["sigma", "alpha"])
def test_distillation_loss_matches_hand_computation(tmp_path, space):
    s = _student_with_teacher(tmp_path, distill_density_weight=0.3, distill_color_weight=0.7,
                              distill_density_space=space)
    t = s.teacher
    s.train()
    s._set_step(10)
    _randomize(s, seed=3)
    out = s(_rays())
    loss = s.get_loss_dict(out, {"image": torch.rand(48, 3)})
    keep = out["_keep"]
    assert keep.sum() > 10
    xyz = out["_xyz"][keep]
    dirs = out["_dirs"][keep.nonzero(as_tuple=True)[0]]
    with torch.no_grad():
        # teacher by hand: density grid -> shifted softplus per world unit; ReLU colour MLP
        sig_t = F.softplus(t.field.density_grid(xyz)[:, 0] + t.field.shift) / t.fine_voxel_base
        h = torch.cat([t.field.feature_grid(xyz), positional_encoding(dirs, t.field.dir_freqs)], -1)
        rgb_t = torch.sigmoid(t.field.fc3(F.relu(t.field.fc2(F.relu(t.field.fc1(h))))))
        sig_s = F.softplus(s.field.density_grid(xyz)[:, 0] + s.field.shift) / s.fine_voxel_base
        rgb_s = out["_sample_rgb"][keep]
        if space == "alpha":  # the alpha of one fine sampling step, step_ratio fine voxels long
            delta = s.config.step_ratio * s.fine_voxel()
            sig_s, sig_t = 1 - torch.exp(-sig_s * delta), 1 - torch.exp(-sig_t * delta)
            assert 0 < float(delta) < 1 and bool(((sig_s >= 0) & (sig_s <= 1)).all())
    torch.testing.assert_close(loss["distill_density"], 0.3 * ((sig_s - sig_t) ** 2).mean())
    torch.testing.assert_close(loss["distill_color"], 0.7 * ((rgb_s - rgb_t) ** 2).mean())
    assert float(loss["distill_density"]) > 0 and float(loss["distill_color"]) > 0
    # gradients reach the student's grids and colour net, never the teacher
    sum(loss.values()).backward()
    assert s.field.fc1.weight.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in t.parameters())


def test_distill_losses_alpha_per_sample_step():
    """The NeRF MLP's form: a step length per sample (its stratified deltas), alphas compared, not sigmas."""

    class Teacher(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(2.0))

        def query_points(self, xyz, dirs):
            return self.w * xyz.norm(dim=-1), torch.sigmoid(xyz + dirs)

    g = torch.Generator().manual_seed(0)
    xyz, dirs = torch.randn(9, 3, generator=g), torch.randn(9, 3, generator=g)
    sigma = (10 * torch.rand(9, generator=g)).requires_grad_(True)
    rgb, delta = torch.rand(9, 3, generator=g), 0.05 + 0.1 * torch.rand(9, generator=g)
    loss = distill_losses(Teacher(), xyz, dirs, sigma, rgb, 0.5, 0.25, "alpha", delta)
    a_s, a_t = 1 - torch.exp(-sigma * delta), 1 - torch.exp(-2.0 * xyz.norm(dim=-1) * delta)
    torch.testing.assert_close(loss["distill_density"], 0.5 * ((a_s - a_t) ** 2).mean())
    torch.testing.assert_close(loss["distill_color"], 0.25 * ((rgb - torch.sigmoid(xyz + dirs)) ** 2).mean())
    loss["distill_density"].backward()  # d/dsigma of the alpha MSE: 0.5 * 2 (a_s - a_t) delta exp(-sigma delta) / N
    torch.testing.assert_close(sigma.grad, (a_s - a_t).detach() * delta * torch.exp(-sigma.detach() * delta) / 9)
    with pytest.raises(ValueError, match="sigma' or 'alpha"):
        distill_losses(Teacher(), xyz, dirs, sigma, rgb, 0.5, 0.25, "log", delta)


def test_teacher_not_trained_not_in_params_or_state_dict(tmp_path):
    s = _student_with_teacher(tmp_path)
    plain = _model(views=6)
    assert set(s.state_dict()) == set(plain.state_dict())
    assert not any("teacher" in k for k in s.state_dict())
    t_ids = {id(p) for p in s.teacher.parameters()}
    assert not t_ids & {id(p) for g in s.get_param_groups().values() for p in g}
    assert not t_ids & {id(p) for p in s.parameters()}
    before = {k: v.clone() for k, v in s.teacher.state_dict().items()}
    s.train()
    s._set_step(10)
    opt = torch.optim.Adam([p for g in s.get_param_groups().values() for p in g], lr=0.1)
    for _ in range(2):
        out = s(_rays())
        sum(s.get_loss_dict(out, {"image": torch.rand(48, 3)}).values()).backward()
        opt.step()
        opt.zero_grad()
    assert not s.teacher.training
    for k, v in s.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_teacher_loading_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="ns-train spiknerf-ann"):
        _model(teacher_config=tmp_path / "nope" / "config.yml").load_teacher()
    no_ckpt = _save_teacher(tmp_path / "a", make_ckpt=False)
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        _model(views=6, teacher_config=no_ckpt).load_teacher()
    other_box = _save_teacher(tmp_path / "b", box=BLENDER_BOX * 2)
    with pytest.raises(ValueError, match="different scene"):
        _model(views=6, teacher_config=other_box).load_teacher()
    other_views = _save_teacher(tmp_path / "c", views=9)
    with pytest.raises(ValueError, match="different dataset"):
        _model(views=6, teacher_config=other_views).load_teacher()
    coarse = _save_teacher(tmp_path / "d", step=1)
    with pytest.raises(ValueError, match="coarse stage"):
        _model(views=6, teacher_config=coarse).load_teacher()


def test_method_specs():
    assert spiknerf.config.pipeline.model.spike_code == "ternary012"
    m = spiknerf.config.pipeline.model
    assert (m.tau, m.v_threshold, m.margin, m.time_mode, m.time_steps) == (4.0, 0.5, 1.0, "repeat", 2)
    assert spiknerf_ann.config.pipeline.model.spiking is False
    assert spiknerf_mlp.config.pipeline.model.spiking and not spiknerf_mlp_ann.config.pipeline.model.spiking
    # shares spikingnerf's schedule / grids
    from spikenerf.nerf.method_configs import spikingnerf

    for k in ("coarse_steps", "fine_resolution", "pg_scale_steps", "hidden_dim"):
        assert getattr(m, k) == getattr(spikingnerf.config.pipeline.model, k)


# ----------------------------------------------------------------------------- CLI
@pytest.mark.skipif(not (BUNDLED / "transforms_train.json").is_file(), reason="needs data/lego-mini")
def test_cli_ns_train_spiknerf_with_teacher(tmp_path):
    sys.path.insert(0, str(REPO / "tools"))
    from make_lego_mini import build

    scene = tmp_path / "scene"
    build(BUNDLED, scene, 40, {"train": 6, "val": 2, "test": 2})
    teacher_cfg = _save_teacher(tmp_path / "teacher", views=6, scene=scene)
    env = dict(os.environ)
    env.setdefault("NERFSTUDIO_METHOD_CONFIGS", "spiknerf=spikenerf.nerf.method_configs:spiknerf")
    env.setdefault("MPLBACKEND", "Agg")
    cmd = [str(Path(sys.executable).with_name("ns-train")), "spiknerf", "--max-num-iterations", "10",
           "--output-dir", str(tmp_path / "out"), "--machine.device-type", "cpu", "--vis", "tensorboard",
           "--viewer.quit-on-train-completion", "True", "--steps-per-eval-image", "100000",
           "--steps-per-eval-batch", "100000", "--steps-per-save", "10",
           "--pipeline.datamanager.train-num-rays-per-batch", "128", "--pipeline.model.coarse-steps", "4",
           "--pipeline.model.pg-scale-steps", "3", "--pipeline.model.coarse-resolution", "12",
           "--pipeline.model.fine-resolution", "20", "--pipeline.model.hidden-dim", "16",
           "--pipeline.model.teacher-config", str(teacher_cfg), "blender-data", "--data", str(scene)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ckpts = sorted((tmp_path / "out").rglob("step-*.ckpt"))
    assert ckpts, "no checkpoint written"
    state = torch.load(ckpts[-1], weights_only=True, map_location="cpu")
    keys = list(state["pipeline"])
    assert not any("teacher" in k for k in keys)
    # reload: the student model comes back from the saved config + weights-only state, and renders
    from nerfstudio.utils.eval_utils import eval_setup

    config_path = next((tmp_path / "out").rglob("config.yml"))
    _, pipeline, _, step = eval_setup(config_path, test_mode="inference")
    model = pipeline.model
    assert step == 9 and model.teacher is None  # the teacher is only loaded for training
    ref = {k[len("_model."):]: v for k, v in state["pipeline"].items() if k.startswith("_model.")}
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v.cpu(), ref[k].cpu(), msg=k)
    out = model.get_outputs_for_camera(_camera(8, 6))
    assert torch.isfinite(out["rgb"]).all()


def test_ray_groups_keep_the_training_code_rate_per_ray():
    """The training-code spike count of repeat time (``ray_train_spikes``) follows each ray through the
    inference ray groups, as every other output."""
    m = _model(spike_code="ternary012", time_steps=2)
    m.update_to_step(10)
    _randomize(m)
    m.eval()
    rb = _rays(R=64, seed=2)
    with torch.no_grad():
        m.config.eval_ray_groups = 1
        one = m(rb)
        m.config.eval_ray_groups = 4
        grouped = m(rb)
    assert one["ray_train_spikes"].shape == (64, 1) and one["ray_train_spikes"].sum() > 0
    for k in ("ray_train_spikes", "rgb", "ray_sops"):
        torch.testing.assert_close(grouped[k], one[k], rtol=1e-6, atol=1e-6)
