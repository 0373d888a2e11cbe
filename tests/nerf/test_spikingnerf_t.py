"""SpikingNeRF-T (``spikingnerf-t`` / ``spikingnerf-t-ann``): the weight mask and condensing against a per-ray loop,
TensoRF's rules in training, both methods training on the bundled scene, a render, a checkpoint round trip."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from nerfstudio.data.scene_box import SceneBox

from spikenerf.nerf.method_configs import METHODS
from spikenerf.nerf.tensorf import TensoRFBackbone, sample_ray, tensorf_color_input
from spikenerf.nerf.tensorf_model import SpikingNeRFTField, SpikingNeRFTModel, SpikingNeRFTModelConfig
from spikenerf.nerf.tensorf_render import LEGO, render_tensorf

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "data" / "lego-mini"
BOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
TINY = replace(LEGO, num_steps=8, n_voxel_init=12 ** 3 + 4, n_voxel_final=20 ** 3, upsample_steps=(2, 4),
               alpha_mask_steps=(2, 4), rays_per_batch=64)
"""Every TensoRF rule within a few steps: alpha mask + shrink + up-sampling at 2, mask + up-sampling at 4."""


def _rays(R: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    o = torch.tensor([0.0, 0.0, 3.0]).expand(R, 3) + 0.1 * torch.randn(R, 3, generator=g)
    d = -o + 0.4 * torch.randn(R, 3, generator=g)
    return o, d / d.norm(dim=-1, keepdim=True)


def _field(spiking: bool = True, seed: int = 0) -> SpikingNeRFTField:
    torch.manual_seed(seed)
    b = TensoRFBackbone(BOX, (10, 11, 12), density_components=(4, 4, 4), app_components=(6, 6, 6))
    with torch.no_grad():
        for p in b.density.parameters():
            p.mul_(25.0)  # raw densities of +-10s: some samples opaque, some empty, weights on both sides of 1e-4
    f = SpikingNeRFTField(b, spiking=spiking, hidden_dim=16)
    with torch.no_grad():
        f.fc1.weight.mul_(6.0)  # the first LIF layer fires
        f.fc2.weight.mul_(4.0)
    return f


def _lif_by_hand(x: torch.Tensor, tau: float = 2.0) -> torch.Tensor:
    """``[T, C]`` currents of one ray's kept samples in time order -> spikes: SpikingJelly's LIF, hard reset
    to 0, threshold 1 (``h = v + (x - v) / tau``, spike when ``h >= 1``, then ``v = 0`` where it spiked)."""
    v = torch.zeros(x.shape[1])
    out = []
    for xt in x:
        h = v + (xt - v) / tau
        s = (h >= 1.0).to(x.dtype)
        v = h * (1.0 - s)
        out.append(s)
    return torch.stack(out)


def _reference(f: SpikingNeRFTField, o, d, n_samples, jitter, bg):
    """Per ray: TensoRF's weights by a loop, the samples with weight > 1e-4 kept, the colour net run on them
    one ray at a time near -> far (the spiking net with the LIF above), composited."""
    b = f.backbone
    pts, t, inside = sample_ray(o, d, b.aabb, b.step_size, n_samples, 0.05, 1e10, jitter)
    rgbs, counts = [], []
    for r in range(o.shape[0]):
        trans, w_all, kept = 1.0, [], []
        for s in range(n_samples):
            sigma = 0.0
            if inside[r, s] and bool(b.alpha_mask.keep(pts[r, s][None])[0]):
                sigma = float(b.feature2density(b.density_features(pts[r, s][None]))[0])
            dist = float(t[r, s + 1] - t[r, s]) if s + 1 < n_samples else 0.0
            alpha = 1.0 - math.exp(-sigma * dist * 25.0)
            w = alpha * trans
            trans *= 1.0 - alpha
            w_all.append(w)
            if inside[r, s] and w > 1e-4:
                kept.append(s)
        color = bg.clone() * (1.0 - sum(w_all))
        if kept:
            x = tensorf_color_input(b.app_features(pts[r, kept]), d[r].expand(len(kept), 3))
            if f.spiking:
                h = f.fc3(_lif_by_hand(f.fc2(_lif_by_hand(f.fc1(x)))))
            else:
                h = f.fc3(torch.relu(f.fc2(torch.relu(f.fc1(x)))))
            color = color + (torch.tensor([w_all[s] for s in kept])[:, None] * torch.sigmoid(h)).sum(0)
        rgbs.append(color)
        counts.append(len(kept))
    return torch.stack(rgbs), torch.tensor(counts)


@pytest.mark.parametrize("spiking", [True, False])
@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("in_place", [True, False])
def test_weight_mask_and_condensing_match_a_per_ray_loop(spiking, grad, in_place):
    """The masked, condensed colour pass (training: segments with gradients / time buckets; inference: ragged
    rows) gives each ray what running the LIF net over that ray's surviving samples in order gives."""
    if not spiking and not in_place:
        pytest.skip("the twin has no time layout")
    f = _field(spiking)
    f.in_place = in_place
    b = f.backbone
    # an alpha mask that drops part of the box, so the mask and the weights both act
    b.update_alpha_mask((6, 6, 6))
    o, d = _rays()
    n = b.n_samples
    jitter = torch.rand(o.shape[0], generator=torch.Generator().manual_seed(3))
    bg = torch.tensor([1.0, 1.0, 1.0])
    stats = {}

    def color_fn(inputs, keep):
        rgb, stats["s"] = f.color_inputs(inputs, keep)
        return rgb

    with torch.set_grad_enabled(grad):
        out = render_tensorf(b, color_fn, o, d, 0.05, 1e10, n, bg, 25.0, 1e-4, jitter)
    with torch.no_grad():
        ref_rgb, ref_counts = _reference(f, o, d, n, jitter, bg)
    assert torch.equal(out.keep.sum(1), ref_counts)
    assert int(ref_counts.sum()) > 20 and int((ref_counts > 1).sum()) > 3  # several multi-step rays
    assert bool((out.keep.sum(1) < (out.weights > 0).sum(1)).any())  # the weight mask dropped something
    # rays whose kept samples come in several runs: condensing closes the gaps (padding would run them as
    # zero-input steps, and the membrane would decay there), so the loop above checks the time order
    assert bool((out.keep.int().diff(dim=1).eq(1).sum(1) > 1).any())
    torch.testing.assert_close(out.rgb.detach(), ref_rgb, atol=1e-5, rtol=1e-5)
    if spiking:
        assert 0 < float(sum(stats["s"].spikes_per_layer)) < stats["s"].neurons_per_layer[0] * 2
    if grad:
        out.rgb.sum().backward()
        assert f.fc1.weight.grad is not None and f.fc1.weight.grad.abs().sum() > 0
        assert b.app.planes[0].grad is not None and b.density.planes[0].grad is not None


def _model(spiking: bool = True, **kw) -> SpikingNeRFTModel:
    cfg = SpikingNeRFTModelConfig(spiking=spiking, tensorf=TINY, hidden_dim=16, **kw)
    return cfg.setup(scene_box=SceneBox(aabb=BOX.clone()), num_train_data=1, metadata={})


class _Opts:
    """What nerfstudio's ``Optimizers`` exposes to the model's callback."""

    def __init__(self, m: SpikingNeRFTModel) -> None:
        g = m.get_param_groups()
        self.optimizers = {k: torch.optim.Adam(v, lr=1.0, betas=(0.9, 0.99)) for k, v in g.items()}


def test_tensorf_rules_run_at_their_steps_and_the_optimisers_follow():
    m = _model()
    m.train()
    opts = _Opts(m)
    res, lrs = [], []
    for step in range(7):
        m._set_step(step, opts)
        out = m.get_outputs(_ray_bundle())
        loss = m.get_loss_dict(out, {"image": torch.rand(24, 3)})
        sum(loss.values()).backward()
        for o in opts.optimizers.values():
            o.step()
            o.zero_grad()
        res.append(m.backbone.resolution)
        lrs.append(opts.optimizers["grids"].param_groups[0]["lr"])
        for name, group in m.get_param_groups().items():
            assert {id(p) for p in opts.optimizers[name].param_groups[0]["params"]} == {id(p) for p in group}
        assert ("l1_loss" in loss) == (TINY.l1_weight(step) > 0)
    # rules of step 2 run before step 3: shrink + up-sampling; of step 4 before step 5
    assert res[0] == res[1] == res[2] != res[3] == res[4] != res[5]
    assert m.backbone.alpha_mask.active and int(m.rules_done_step) == 5
    # TensoRF's lr: decays each step, back to lr_init after each up-sampling
    assert lrs[0] == pytest.approx(TINY.lr_grid) and lrs[3] == pytest.approx(TINY.lr_grid)
    assert lrs[1] < lrs[0] and lrs[2] < lrs[1]


def _ray_bundle(R: int = 24):
    from nerfstudio.cameras.rays import RayBundle

    o, d = _rays(R)
    return RayBundle(origins=o, directions=d, pixel_area=torch.ones(R, 1),
                     camera_indices=torch.zeros(R, 1, dtype=torch.long))


@pytest.mark.parametrize("spiking", [True, False])
def test_outputs_metrics_and_op_counts(spiking):
    m = _model(spiking)
    with torch.no_grad():
        for p in m.backbone.density.parameters():
            p.mul_(25.0)
        m.field.fc1.weight.mul_(6.0)
    m.train()
    out = m.get_outputs(_ray_bundle())
    for k, c in {"rgb": 3, "depth": 1, "accumulation": 1, "spike_rate": 1, "num_color_samples": 1}.items():
        assert out[k].shape == (24, c) and torch.isfinite(out[k]).all(), k
    metrics = m.get_metrics_dict(out, {"image": torch.rand(24, 3)})
    n_col = out["num_color_samples"]
    assert float(n_col.sum()) > 0
    # fc1 per sample (150 x H), fc2 / fc3 by spikes; the twin's MACs on the same samples
    H = 16
    assert torch.equal(out["ray_ann_macs"], n_col * (150 * H + H * H + H * 3))
    if spiking:
        assert torch.equal(out["ray_macs"], n_col * 150 * H)
        sops = out["ray_spikes_lif1"] * H + out["ray_spikes_lif2"] * 3
        torch.testing.assert_close(out["ray_sops"], sops)
        assert metrics["energy_reduction_vs_ann"] > 1.0 and 0 < metrics["firing_rate_lif1"] <= 1
    else:
        assert torch.equal(out["ray_sops"], torch.zeros_like(n_col))


def test_ndc_scene_needs_the_parsers_metadata():
    cfg = SpikingNeRFTModelConfig(scene="ndc")
    with pytest.raises(ValueError, match="llff-data"):
        cfg.setup(scene_box=SceneBox(aabb=BOX.clone()), num_train_data=1, metadata={})


def test_ndc_scene_renders_with_world_depth():
    """On an NDC scene (the metadata of ``llff-data``) rays are marched in NDC and ``depth`` is the world
    distance; a ray that never reaches the near plane renders the background."""
    meta = {"scene_kind": "ndc", "ndc_near": 1.0, "ndc_focal": 40.0, "ndc_hw": (30, 40)}
    cfg = SpikingNeRFTModelConfig(ndc_tensorf=replace(TINY, activation="relu", density_components=(4, 2, 2),
                                                      app_components=(6, 3, 3), tv_weight_density=1.0,
                                                      tv_weight_app=1.0), hidden_dim=16)
    m = cfg.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.5, -1.5, -1.0], [1.5, 1.5, 1.0]])), num_train_data=1,
                  metadata=meta)
    assert m.ndc and m.background_color == "black" and m.backbone.activation == "relu"
    with torch.no_grad():
        for p in m.backbone.density.parameters():
            p.abs_().mul_(5.0)
    m.eval()
    R = 16
    o = torch.zeros(R, 3) + torch.tensor([0.0, 0.0, 0.5])
    d = torch.randn(R, 3, generator=torch.Generator().manual_seed(0)) * 0.2 + torch.tensor([0.0, 0.0, -1.0])
    d[0] = torch.tensor([0.0, 0.0, 1.0])  # facing away
    d = d / d.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        out = m.render_rays(o, d)
    assert torch.isfinite(out["rgb"]).all() and torch.isfinite(out["depth"]).all()
    assert float(out["accumulation"][0]) == 0.0 and torch.equal(out["rgb"][0], torch.zeros(3))
    hit = out["accumulation"][1:, 0] > 0.5
    assert bool(hit.any())
    # the world depth lies beyond the near plane (z = -1 from a camera at z = 0.5: at least 1.5 along z)
    assert bool((out["depth"][1:][hit] >= 1.5 - 1e-4).all())
    loss = m.get_loss_dict({"rgb": out["rgb"]}, {"image": torch.rand(R, 3)})
    assert {"tv_density", "tv_app"} <= set(loss)


# ----------------------------------------------------------------------------- training on the bundled scene
def _trainer_config(name: str, tmp_path: Path, steps: int):
    cfg = copy.deepcopy(METHODS[name].config)
    cfg.output_dir = tmp_path
    cfg.vis = "tensorboard"
    cfg.max_num_iterations = steps
    cfg.preset_steps = steps
    cfg.steps_per_save = steps
    cfg.steps_per_eval_image = 10 ** 6
    cfg.steps_per_eval_batch = 10 ** 6
    cfg.machine.device_type = "cpu"
    cfg.pipeline.datamanager.dataparser.data = BUNDLED
    cfg.pipeline.model.tensorf = replace(TINY, rays_per_batch=128, n_voxel_init=16 ** 3 + 4, n_voxel_final=24 ** 3)
    cfg.pipeline.model.hidden_dim = 16
    cfg.pipeline.datamanager.train_num_rays_per_batch = 128
    cfg.set_timestamp()
    return cfg


@pytest.mark.parametrize("name", ["spikingnerf-t", "spikingnerf-t-ann"])
def test_both_methods_train_render_and_round_trip_a_checkpoint(name, tmp_path):
    cfg = _trainer_config(name, tmp_path, steps=6)
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    pipeline = trainer.pipeline
    model = pipeline.model
    assert isinstance(model, SpikingNeRFTModel) and model.config.spiking == (name == "spikingnerf-t")
    assert model.backbone.alpha_mask.active and model.backbone.resolution != (16, 16, 16)
    # a training batch: finite losses
    model.train()
    ray_bundle, batch = pipeline.datamanager.next_train(6)
    out = model(ray_bundle)
    losses = model.get_loss_dict(out, batch, model.get_metrics_dict(out, batch))
    assert all(torch.isfinite(v) for v in losses.values())
    # a render of a test camera, with ns-eval's metrics
    model.eval()
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    with torch.no_grad():
        image = model.get_outputs_for_camera(camera)
    h, w = int(camera.height), int(camera.width)
    assert image["rgb"].shape == (h, w, 3) and torch.isfinite(image["rgb"]).all()
    assert image["depth"].shape == (h, w, 1)
    metrics, _ = model.get_image_metrics_and_images(image, {"image": pipeline.datamanager.eval_dataset[0]["image"]})
    assert math.isfinite(metrics["psnr"]) and "energy_uj_per_image" in metrics
    # checkpoint: a fresh pipeline takes the saved (shrunk, up-sampled) shapes and renders the same
    ckpt = sorted((tmp_path).rglob("*.ckpt"))[-1]
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    fresh = cfg.pipeline.setup(device="cpu", test_mode="test", world_size=1, local_rank=0)
    fresh.load_pipeline(state["pipeline"], state["step"])
    fresh.eval()
    assert fresh.model.backbone.resolution == model.backbone.resolution
    torch.testing.assert_close(fresh.model.backbone.aabb, model.backbone.aabb)
    assert torch.equal(fresh.model.backbone.alpha_mask.volume, model.backbone.alpha_mask.volume)
    assert int(fresh.model.rules_done_step) == int(model.rules_done_step)
    with torch.no_grad():
        again = fresh.model.get_outputs_for_camera(camera)
    torch.testing.assert_close(again["rgb"], image["rgb"])


@pytest.mark.parametrize("spiking", [True, False])
def test_rays_that_miss_the_box_render_the_background_with_zero_counts(spiking):
    m = _model(spiking)
    m.train()
    o, d = _rays(8)
    out = m.render_rays(o, -d)  # pointing away from the box
    assert torch.equal(out["rgb"], torch.ones(8, 3)) and torch.equal(out["accumulation"], torch.zeros(8, 1))
    assert float(out["ray_macs"].sum()) == 0 and float(out["ray_sops"].sum()) == 0
    metrics = m.get_metrics_dict(out, {"image": torch.ones(8, 3)})
    assert metrics["color_samples_per_ray"] == 0
