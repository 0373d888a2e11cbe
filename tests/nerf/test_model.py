"""SpikingNeRF model: outputs, losses, SNN/ANN switch, masking edge cases, checkpoint state, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from spikenerf.nerf.model import SpikingNeRFModel, SpikingNeRFModelConfig

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "data" / "lego-mini"
SCENE = Path(os.environ.get("SPIKENERF_TEST_SCENE", BUNDLED))  # override to run the CLI test elsewhere


def _model(spiking=True, mode="padding", coarse_steps=2, **kw) -> SpikingNeRFModel:
    cfg = SpikingNeRFModelConfig(coarse_steps=coarse_steps, coarse_resolution=12, fine_resolution=20,
                                 pg_scale_steps=(2,), hidden_dim=16, spiking=spiking, pack_mode=mode, **kw)
    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    return cfg.setup(scene_box=box, num_train_data=1, metadata={})


def _rays(R=32, seed=0, miss=False) -> RayBundle:
    g = torch.Generator().manual_seed(seed)
    o = torch.tensor([0.0, 0.0, 4.0]).expand(R, 3) + 0.1 * torch.randn(R, 3, generator=g)
    d = -o + 0.3 * torch.randn(R, 3, generator=g)
    if miss:
        d = o.clone()  # pointing away from the box
    d = d / d.norm(dim=-1, keepdim=True)
    return RayBundle(origins=o, directions=d, pixel_area=torch.ones(R, 1),
                     camera_indices=torch.zeros(R, 1, dtype=torch.long))


def _randomize(m: SpikingNeRFModel, std=1.0) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for grid in (m.coarse_density, m.coarse_color, m.field.density_grid, m.field.feature_grid):
            for p in grid.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * std)
        m.field.fc1.weight.mul_(8.0)  # make the first LIF layer fire


KEYS = {"rgb": 3, "depth": 1, "accumulation": 1, "spike_rate": 1}


@pytest.mark.parametrize("spiking", [True, False])
@pytest.mark.parametrize("mode", ["padding", "condensing"])
def test_forward_shapes_and_backward(spiking, mode):
    m = _model(spiking, mode)
    m.train()
    m._set_step(10)  # fine stage, grids up-scaled
    _randomize(m)
    rb = _rays()
    out = m(rb)
    for k, c in KEYS.items():
        assert out[k].shape == (32, c), k
        assert torch.isfinite(out[k]).all(), k
    batch = {"image": torch.rand(32, 3)}
    metrics = m.get_metrics_dict(out, batch)
    loss = m.get_loss_dict(out, batch, metrics)
    assert {"rgb_loss", "entropy_loss", "rgbper_loss"} <= set(loss)
    sum(loss.values()).backward()
    assert m.field.fc1.weight.grad is not None and m.field.fc1.weight.grad.abs().sum() > 0
    assert next(m.field.feature_grid.parameters()).grad is not None
    if spiking:
        assert 0.0 < metrics["firing_rate_lif1"] <= 1.0
        assert out["spike_rate"].max() > 0
        assert metrics["energy_reduction_vs_ann"] > 1.0
    else:
        assert (out["spike_rate"] == 0).all()
        assert not hasattr(m.field, "lif1")


def test_padding_equals_condensing_outputs():
    # no alpha/weight masking and no occupancy cache: every ray's valid samples are contiguous, so the
    # padded (leading zeros, membrane at rest) and condensed sequences give the same colours
    a = _model(True, "padding", alpha_threshold=-1.0, weight_threshold=-1.0)
    b = _model(True, "condensing", alpha_threshold=-1.0, weight_threshold=-1.0)
    for m in (a, b):
        m.eval()
        m.update_to_step(10)
    _randomize(a)
    b.load_state_dict(a.state_dict())
    rb = _rays()
    oa, ob = a(rb), b(rb)
    assert oa["spike_rate"].max() > 0
    torch.testing.assert_close(oa["rgb"], ob["rgb"])
    torch.testing.assert_close(oa["spike_rate"], ob["spike_rate"])


def test_coarse_stage_and_occupancy():
    m = _model(coarse_steps=3)
    m.train()
    m._set_step(0)
    assert not m.in_fine_stage
    out = m(_rays())
    assert (out["spike_rate"] == 0).all()
    assert not bool(m.occupancy_ready)
    m._set_step(3)
    assert m.in_fine_stage and bool(m.occupancy_ready)
    assert m.occupancy.dtype == torch.bool and m.occupancy.any()


def test_coarse_stage_learns_from_its_initial_alpha():
    """With the default thresholds the untrained coarse grids (alpha ~5e-7 per sample) still get samples
    and a gradient; a fine-stage threshold there would drop every sample and the coarse stage would be dead."""
    m = _model(coarse_steps=3)
    m.train()
    m._set_step(0)
    out = m(_rays())
    assert float(out["num_color_samples"].sum()) > 0 and float(out["accumulation"].sum()) > 0
    loss = sum(m.get_loss_dict(out, {"image": torch.zeros(32, 3)}).values())
    loss.backward()
    for grid in (m.coarse_density, m.coarse_color):
        assert float(grid.grid.grad.abs().sum()) > 0


def test_all_masked_batch_returns_background():
    m = _model()
    m.train()
    m._set_step(10)
    out = m(_rays(miss=True))  # no ray hits the box
    torch.testing.assert_close(out["rgb"], torch.ones(32, 3))
    assert (out["accumulation"] == 0).all() and (out["spike_rate"] == 0).all()
    batch = {"image": torch.rand(32, 3)}
    loss = m.get_loss_dict(out, batch, m.get_metrics_dict(out, batch))
    assert torch.isfinite(sum(loss.values()))
    # an impossible alpha threshold masks every sample too
    m2 = _model(alpha_threshold=2.0)
    m2._set_step(10)
    out = m2(_rays())
    assert (out["num_color_samples"] == 0).all()


def test_state_dict_weights_only_and_reload_at_step(tmp_path):
    m = _model()
    m._set_step(10)
    _randomize(m)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": m.state_dict()}, path)
    state = torch.load(path, weights_only=True)["model"]
    fresh = _model()
    fresh.update_to_step(10)  # what VanillaPipeline.load_pipeline does before load_state_dict
    fresh.load_state_dict(state)
    fresh.eval()
    m.eval()
    rb = _rays()
    torch.testing.assert_close(fresh(rb)["rgb"], m(rb)["rgb"])


def test_camera_render_and_image_metrics():
    from nerfstudio.cameras.cameras import Cameras

    m = _model()
    m._set_step(10)
    _randomize(m, 0.5)
    m.eval()
    c2w = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4.0]])[None]
    cam = Cameras(camera_to_worlds=c2w, fx=20.0, fy=20.0, cx=8.0, cy=6.0, width=16, height=12)
    m.config.eval_num_rays_per_chunk = 50  # several chunks
    out = m.get_outputs_for_camera(cam)
    assert out["rgb"].shape == (12, 16, 3)
    metrics, images = m.get_image_metrics_and_images(out, {"image": torch.rand(12, 16, 3)})
    for k in ("psnr", "ssim", "lpips", "energy_uj_per_image", "sops_per_image", "macs_per_image",
              "energy_reduction_vs_ann"):
        assert k in metrics, k
    assert "spike_rate" in images and images["img"].shape == (12, 32, 3)
    # the whole renderer's energy beside the colour net's: grid reads and compositing come on top of the colour
    # net for both nets, so the renderer's saving is the smaller one
    assert out["num_density_samples"].shape == (12, 16, 1)
    assert bool((out["num_density_samples"] >= out["num_color_samples"]).all())
    assert metrics["renderer_snn_energy_uj_per_image"] > metrics["colour_net_snn_energy_uj_per_image"] > 0
    assert metrics["renderer_ann_energy_uj_per_image"] > metrics["colour_net_ann_energy_uj_per_image"] > 0
    assert metrics["renderer_reduction"] < metrics["colour_net_reduction"]


@pytest.mark.parametrize("spiking", [True, False])
def test_op_counts_both_conventions_by_hand(spiking):
    """fc1 per sample (``in_dim * H``) or its view-direction part once per ray with samples, in both nets;
    energies and the reduction from those counts by hand (4.6 pJ a MAC, 0.9 pJ a SOP)."""
    from nerfstudio.cameras.cameras import Cameras

    m = _model(spiking)
    m._set_step(10)
    _randomize(m, 0.5)
    m.eval()
    c2w = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4.0]])[None]
    cam = Cameras(camera_to_worlds=c2w, fx=20.0, fy=20.0, cx=8.0, cy=6.0, width=16, height=12)
    m.config.eval_num_rays_per_chunk = 50
    out = m.get_outputs_for_camera(cam)
    metrics, _ = m.get_image_metrics_and_images(out, {"image": torch.rand(12, 16, 3)})
    n = out["num_color_samples"].flatten()
    n_col, rays_hit = float(n.sum()), float((n > 0).sum())
    assert 0 < rays_hit < n_col  # rays with several samples, so the conventions differ
    f = m.field
    C, D, H = 12, 27, 16  # feature channels, PE(dir) width with 4 frequencies, hidden width
    assert (f.dir_dim, f.in_dim, f.hidden_dim) == (D, C + D, H)
    rest = H * H + 3 * H  # fc2 + fc3 of the twin
    ann = n_col * ((C + D) * H + rest)
    ann_once = n_col * (C * H + rest) + rays_hit * D * H
    if spiking:
        macs, macs_once = n_col * (C + D) * H, n_col * C * H + rays_hit * D * H
    else:
        macs, macs_once = ann, ann_once
    sops = metrics["sops_per_image"]
    assert (sops > 0) == spiking
    assert metrics["macs_per_image"] == pytest.approx(macs)
    assert metrics["macs_per_image_dir_once"] == pytest.approx(macs_once)
    assert metrics["energy_uj_per_image_dir_once"] == pytest.approx((macs_once * 4.6 + sops * 0.9) * 1e-6)
    assert metrics["ann_energy_uj_per_image_dir_once"] == pytest.approx(ann_once * 4.6e-6)
    assert metrics["energy_reduction_vs_ann"] == pytest.approx(ann * 4.6 / (macs * 4.6 + sops * 0.9))
    assert metrics["energy_reduction_vs_ann_dir_once"] == pytest.approx(
        ann_once * 4.6 / (macs_once * 4.6 + sops * 0.9))


def test_bad_config():
    with pytest.raises(ValueError):
        _model(mode="zigzag")
    m = _model()
    out = m(_rays())
    with pytest.raises(ValueError, match="does not match"):
        m.get_loss_dict(out, {"image": torch.rand(31, 3)})
    with pytest.raises(ValueError):
        SpikingNeRFModelConfig(step_ratio=0.0).setup(
            scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=1, metadata={})


def test_method_specs():
    from spikenerf.nerf.method_configs import BUNDLED_SCENE, spikingnerf, spikingnerf_ann

    assert spikingnerf.config.pipeline.model.spiking is True
    assert spikingnerf_ann.config.pipeline.model.spiking is False
    assert spikingnerf.config.mixed_precision is False
    assert spikingnerf.config.pipeline.datamanager.dataparser.data == BUNDLED_SCENE
    assert set(spikingnerf.config.optimizers) == {"grids", "mlp"}


@pytest.mark.skipif(not (SCENE / "transforms_train.json").exists(), reason=f"no Blender scene at {SCENE}")
def test_cli_ns_train(tmp_path):
    env = dict(os.environ)
    # entry points come from the installed metadata; the env var also works from a stale editable install
    env.setdefault("NERFSTUDIO_METHOD_CONFIGS", "spikingnerf=spikenerf.nerf.method_configs:spikingnerf")
    exe = Path(sys.executable).with_name("ns-train")
    cmd = [str(exe), "spikingnerf", "--max-num-iterations", "3", "--output-dir", str(tmp_path),
           "--machine.device-type", "cpu", "--vis", "tensorboard", "--viewer.quit-on-train-completion", "True",
           "--steps-per-eval-image", "1000", "--steps-per-eval-batch", "1000"]
    if SCENE != BUNDLED:  # the default config already points at the bundled scene
        cmd += ["blender-data", "--data", str(SCENE)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ckpts = list(tmp_path.rglob("*.ckpt"))
    assert ckpts, "no checkpoint written"
    state = torch.load(ckpts[0], weights_only=True, map_location="cpu")
    assert "pipeline" in state


def test_upscaling_keeps_training_and_optimizer_in_sync():
    """Grid up-scaling swaps parameters: the optimiser must follow and backward must work afterwards."""
    m = _model()
    m.train()
    groups = m.get_param_groups()
    opt = torch.optim.Adam(groups["grids"], lr=1e-2)

    class _Opts:  # what nerfstudio's Optimizers exposes
        optimizers = {"grids": opt}

    batch = {"image": torch.rand(32, 3)}
    shapes = []
    for step in (2, 3, 4):  # fine stage starts at 2, up-scale at fine step 2 (= global 4)
        m._set_step(step, _Opts())
        out = m(_rays())
        sum(m.get_loss_dict(out, batch).values()).backward()
        opt.step()
        opt.zero_grad()
        shapes.append(tuple(next(m.field.density_grid.parameters()).shape))
        current = {id(p) for p in m.get_param_groups()["grids"]}
        assert {id(p) for p in opt.param_groups[0]["params"]} == current
    assert shapes[0] == shapes[1] != shapes[2]


def test_upscaling_with_in_place_grid(monkeypatch):
    """A grid whose ``scale_to`` resizes ``.data`` in place (same leaf) is re-wrapped so backward works."""
    import torch.nn.functional as F

    from spikenerf.nerf.grid import DenseGrid

    def scale_in_place(self, resolution):
        g = self.grid.data.permute(3, 0, 1, 2)[None]
        g = F.interpolate(g, size=tuple(resolution), mode="trilinear", align_corners=True)
        self.grid.data = g[0].permute(1, 2, 3, 0).contiguous()

    monkeypatch.setattr(DenseGrid, "scale_to", scale_in_place)
    m = _model()
    m.train()
    batch = {"image": torch.rand(32, 3)}
    for step in (3, 4):
        m._set_step(step)
        out = m(_rays())
        sum(m.get_loss_dict(out, batch).values()).backward()
    assert next(m.field.feature_grid.parameters()).grad is not None


def test_first_layer_equals_fc1_of_the_concatenation():
    from spikenerf.nerf.field import positional_encoding

    f = _model().field
    g = torch.Generator().manual_seed(5)
    feat = torch.randn(40, f.feature_grid.channels, generator=g)
    dirs = torch.nn.functional.normalize(torch.randn(6, 3, generator=g), dim=-1)
    ray_of = torch.randint(0, 6, (40,), generator=g)
    want = f.fc1(torch.cat([feat, positional_encoding(dirs, f.dir_freqs)[ray_of]], -1))
    torch.testing.assert_close(f.first_layer(feat, dirs, ray_of), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spiking,mode", [(True, "padding"), (True, "condensing"), (False, "padding")])
def test_ray_groups_render_the_same_as_one_group(spiking, mode):
    """Inference renders a chunk's rays in groups sorted by sample count (``eval_ray_groups``): every output of
    every ray is the one-group output, in the bundle's ray order, with an occupancy cache that leaves the rays
    very different counts (and some none)."""
    m = _model(spiking, mode, coarse_steps=3)
    _randomize(m)
    m.train()
    m._set_step(3)  # builds the occupancy cache
    m.eval()
    m.update_to_step(10)
    with torch.no_grad():
        m.occupancy[: m.occupancy.shape[0] // 2] = False  # half the box empty: rays cross it for longer or shorter
    rb = _rays(R=96, seed=3)
    rb.directions[7:] += 0.12 * torch.randn(89, 3, generator=torch.Generator().manual_seed(4))
    rb.directions[:7] = rb.origins[:7].clone()  # 7 rays miss the box: no samples at all
    with torch.no_grad():
        m.config.eval_ray_groups = 1
        one = m(rb)
        m.config.eval_ray_groups = 5
        grouped = m(rb)
    counts = m.sample(rb.origins, rb.directions / rb.directions.norm(dim=-1, keepdim=True), True)[0].valid.sum(1)
    assert int(counts.min()) == 0 and len(set(counts.tolist())) > 10 and int(counts.max()) > 1.5 * counts.median()
    assert set(one) == set(grouped)
    for k in one:
        assert grouped[k].shape == one[k].shape, k
        torch.testing.assert_close(grouped[k], one[k], rtol=1e-6, atol=1e-6, msg=k)
    assert one["num_color_samples"].sum() > 0
