"""NDC scenes in the voxel-grid models (issue 34, items 2 and 4): the model reads ``llff-data``'s NDC camera,
marches NDC rays, feeds the colour net world directions, outputs world depth and keeps the camera in its
checkpoint. The scene is test_llff's tiny forward-facing one (10 frames of 6 x 4 pixels)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from spikenerf.nerf.nerf_mlp import NeRFMLPModelConfig
from spikenerf.nerf.model import SCENE_NDC, SCENE_UNDECIDED, SpikingNeRFModelConfig
from spikenerf.nerf.ndc import ndc_rays, ndc_t_to_world_t, ndc_to_world_points, world_t_to_ndc_t, world_to_ndc_points
from spikenerf.nerf.scene import NDCSettings, fit_scene_to_data
from spikenerf.nerf.spiknerf import SpikNeRFModelConfig

sys.path.insert(0, str(Path(__file__).parent))
from test_llff import parse, write_scene  # noqa: E402 (the tiny forward-facing scene)

SMALL = NDCSettings(coarse_steps=2, fine_resolution=20)  # NDC settings sized for a test


def _model(meta_from, config_class=SpikingNeRFModelConfig, **kw):
    cfg = config_class(coarse_resolution=12, fine_resolution=16, pg_scale_steps=(2,), hidden_dim=16,
                       ndc=kw.pop("ndc", SMALL), **kw)
    return cfg.setup(scene_box=meta_from.scene_box, num_train_data=len(meta_from.cameras), metadata=meta_from.metadata)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = write_scene(tmp_path_factory.mktemp("ff") / "scene")
    return parse(root, "train"), parse(root, "test")


def _unit(d):
    return d / d.norm(dim=-1, keepdim=True)


def _train(m, outputs, steps=4):
    """A few training steps on the training cameras' rays (random targets); grid models step their schedule."""
    rays = outputs.cameras.generate_rays(camera_indices=torch.arange(len(outputs.cameras))[:, None]).flatten()
    target = torch.rand(rays.shape[0], 3, generator=torch.Generator().manual_seed(0))
    grid = hasattr(m, "coarse_to_fine")
    if grid:
        fit_scene_to_data(m, outputs)
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    m.train()
    for step in range(steps):
        if grid:
            m.coarse_to_fine.set_step(step)
        out = m.get_outputs(rays)
        loss = sum(m.get_loss_dict(out, {"image": target}).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()


@pytest.mark.parametrize("config_class", [SpikingNeRFModelConfig, SpikNeRFModelConfig])
def test_ndc_chosen_from_the_parser_trains_and_renders(scene, config_class):
    train, test = scene
    m = _model(train, config_class)
    assert int(m.scene_code) == SCENE_NDC and m.ndc and not m.unbounded
    h, w = train.metadata["ndc_hw"]
    assert m.ndc_cam == (h, w, train.metadata["ndc_focal"], 1.0) and m.ndc_camera.tolist() == list(m.ndc_cam)
    # the NDC settings replace the model's own options; the parser's NDC box is kept as it is
    assert (m.config.coarse_steps, m.config.fine_resolution, m.config.tighten_fine_box) == (2, 20, False)
    assert torch.equal(m.aabb, train.scene_box.aabb.float()) and torch.equal(m.fine_box, m.aabb)
    _train(m, train)
    assert m.coarse_to_fine.cache.ready and torch.equal(m.fine_box, m.aabb)  # not tightened
    with torch.no_grad():
        img = m.get_outputs_for_camera(test.cameras[0:1])
    assert img["rgb"].shape == (4, 6, 3) and bool(torch.isfinite(img["rgb"]).all())
    assert bool(torch.isfinite(img["depth"]).all()) and float(img["depth"].min()) > 0


def test_samples_march_ndc_rays_monotone_in_world_depth(scene):
    train, _ = scene
    m = _model(train)
    rays = train.cameras.generate_rays(camera_indices=torch.arange(len(train.cameras))[:, None]).flatten()
    o, d = rays.origins.reshape(-1, 3), _unit(rays.directions.reshape(-1, 3))
    marched, step = m.sample(o, d, fine=True)
    valid = marched.valid
    assert bool(valid.any(1).all())  # every training ray crosses the NDC box
    world_t = m.world_distance(o, d, marched.t, valid)
    # each valid sample one step further along its ray than the last, in NDC and in world distance
    both = valid[:, 1:] & valid[:, :-1]
    assert torch.allclose((marched.t[:, 1:] - marched.t[:, :-1])[both], torch.full_like(marched.t[:, 1:][both], step))
    assert bool(((world_t[:, 1:] - world_t[:, :-1])[both] > 0).all())
    # the look-up point is the NDC image of the world point at that world distance (NeRF's map by hand)
    h, w, f, near = m.ndc_cam
    xyz = m.lookup_points(o, d, marched.t)[valid]
    world = (o[:, None] + d[:, None] * world_t[..., None])[valid]
    ahead = world_t[valid] < 1e3  # far samples lose precision near z' = 1
    by_hand = torch.stack([-(2 * f / w) * world[:, 0] / world[:, 2], -(2 * f / h) * world[:, 1] / world[:, 2],
                           1 + 2 * near / world[:, 2]], -1)
    torch.testing.assert_close(xyz[ahead], by_hand[ahead], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(world_to_ndc_points(world[ahead], int(h), int(w), f, near), xyz[ahead],
                               atol=1e-4, rtol=1e-4)


def test_depth_output_is_world_distance_of_a_wall(scene):
    """A wall of density at world depth z = -D in front of the average camera: the centre ray's depth is D."""
    train, _ = scene
    m = _model(train, ndc=NDCSettings(coarse_steps=0, fine_resolution=64))
    m.coarse_to_fine.set_step(10)  # fine stage, final resolution
    h, w, f, near = m.ndc_cam
    depth = 3.0
    z_wall = 1 - 2 * near / depth  # its NDC z'
    grid = m.field.density_grid
    zs = torch.linspace(float(m.fine_box[0, 2]), float(m.fine_box[1, 2]), grid.resolution[2])
    with torch.no_grad():
        grid.grid.fill_(-30.0)
        grid.grid[:, :, (zs - z_wall).abs().argmin(), 0] = 30.0  # one opaque vertex plane
    o, d = torch.zeros(3, 3), _unit(torch.tensor([[0.0, 0.0, -1.0], [0.05, 0.02, -1.0], [-0.03, 0.04, -1.0]]))
    with torch.no_grad():
        out = m.get_outputs(RayBundle(origins=o, directions=d, pixel_area=torch.ones(3, 1)))
    voxel_z = float(zs[1] - zs[0])
    # the wall plane +- one voxel in z' bounds the world depth: z = 2 near / (z' - 1)
    lo, hi = 2 * near / (1 - (z_wall - voxel_z)), 2 * near / (1 - (z_wall + voxel_z))
    along = depth / (-d[:, 2])  # the world distance to the plane z = -D along each ray
    assert bool((out["accumulation"] > 0.99).all())
    assert bool(((out["depth"][:, 0] > lo / -d[:, 2]) & (out["depth"][:, 0] < hi / -d[:, 2])).all()), (out["depth"], along)
    # rays turned away from the scene (+z) have no NDC form: background, nothing sampled
    back = m.get_outputs(RayBundle(origins=o, directions=-d, pixel_area=torch.ones(3, 1)))
    assert float(back["accumulation"].abs().max()) == 0.0 and float(back["num_color_samples"].max()) == 0.0
    torch.testing.assert_close(back["rgb"], torch.ones(3, 3))  # the white background


def test_colour_net_sees_world_view_directions(scene, monkeypatch):
    train, _ = scene
    m = _model(train)
    m.coarse_to_fine.set_step(10)
    seen = {}

    def color(xyz, dirs, keep, time_index=None):
        seen["dirs"] = dirs
        return xyz.new_zeros(*keep.shape, 3), None

    monkeypatch.setattr(m.field, "color", color)
    o, d = torch.zeros(2, 3), _unit(torch.tensor([[0.1, 0.0, -1.0], [0.0, -0.2, -1.0]]))
    m.get_outputs(RayBundle(origins=o, directions=d, pixel_area=torch.ones(2, 1)))
    torch.testing.assert_close(seen["dirs"], d)
    nd_o, nd_d = ndc_rays(*[int(v) for v in m.ndc_cam[:2]], m.ndc_cam[2], m.ndc_cam[3], o, d)
    assert not torch.allclose(_unit(nd_d), d)  # the NDC direction differs: the test can tell them apart
    assert torch.allclose(ndc_to_world_points(nd_o, *[int(v) for v in m.ndc_cam[:2]], m.ndc_cam[2])[:, 2],
                          torch.full((2,), -1.0))


def test_world_density_maps_points_to_ndc(scene):
    train, _ = scene
    m = _model(train)
    with torch.no_grad():
        m.field.density_grid.grid.normal_(generator=torch.Generator().manual_seed(1))
    h, w, f, near = m.ndc_cam
    pts = torch.tensor([[0.1, 0.05, -2.0], [-0.2, 0.1, -5.0], [0.0, 0.0, -0.5], [0.0, 0.0, 0.3]])
    sig = m.world_density(pts)
    torch.testing.assert_close(sig[:2], m.sigma(world_to_ndc_points(pts[:2], int(h), int(w), f, near)))
    assert sig[2:].tolist() == [0.0, 0.0]  # in front of the near plane / behind the camera


def test_checkpoint_keeps_the_ndc_camera_without_the_parser(scene):
    train, test = scene
    m = _model(train)
    _train(m, train, steps=3)
    state = m.state_dict()
    # a model built with no parser metadata (a viewer / ns-render on the checkpoint alone), scene "auto"
    cfg = SpikingNeRFModelConfig(coarse_resolution=12, fine_resolution=16, pg_scale_steps=(2,), hidden_dim=16,
                                 ndc=SMALL)
    bare = cfg.setup(scene_box=SceneBox(aabb=train.scene_box.aabb.clone()), num_train_data=8, metadata={})
    assert int(bare.scene_code) == SCENE_UNDECIDED and not bare.ndc and bare.config.fine_resolution == 16
    bare.update_to_step(3)
    bare.load_state_dict(state)
    assert int(bare.scene_code) == SCENE_NDC and bare.ndc_cam == m.ndc_cam
    bare.load_state_dict({}, strict=False)  # nerfstudio's second, model-less pass keeps the camera
    assert bare.ndc_cam == m.ndc_cam
    assert bare.config.fine_resolution == 20 and bare.coarse_to_fine.schedule.coarse_steps == 2  # its settings
    bare.eval()
    with torch.no_grad():
        a, b = m.get_outputs_for_camera(test.cameras[0:1]), bare.get_outputs_for_camera(test.cameras[0:1])
    torch.testing.assert_close(a["rgb"], b["rgb"])
    torch.testing.assert_close(a["depth"], b["depth"])


def test_old_checkpoints_without_an_ndc_camera_still_load():
    cfg = SpikingNeRFModelConfig(coarse_resolution=12, fine_resolution=16, pg_scale_steps=(2,), hidden_dim=16)
    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    m = cfg.setup(scene_box=box, num_train_data=1, metadata={})
    state = {k: v for k, v in m.state_dict().items() if k != "ndc_camera"}
    m.load_state_dict(state)
    assert not m.ndc and m.ndc_camera.tolist() == [0.0] * 4


def test_scene_ndc_without_an_ndc_camera_is_refused_when_training_starts(scene):
    train, _ = scene
    cfg = SpikingNeRFModelConfig(coarse_resolution=12, fine_resolution=16, pg_scale_steps=(2,), hidden_dim=16,
                                 scene="ndc")
    no_meta = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    m = cfg.setup(scene_box=no_meta, num_train_data=1, metadata={})
    assert int(m.scene_code) == SCENE_UNDECIDED  # built (a checkpoint may still bring its camera)

    class Outputs:  # a data parser's outputs without NDC metadata (blender-data, colmap, ...)
        cameras, metadata = train.cameras, {}

    with pytest.raises(ValueError, match="llff-data"):
        fit_scene_to_data(m, Outputs())
    # with llff-data's metadata it is chosen, as by "auto"
    m2 = _model(train, scene="ndc")
    assert int(m2.scene_code) == SCENE_NDC
    fit_scene_to_data(m2, train)


def test_bounded_and_unbounded_choices_ignore_ndc_metadata(scene):
    train, _ = scene
    for kind in ("bounded", "unbounded"):
        m = _model(train, scene=kind)
        assert not m.ndc and m.config.fine_resolution == 16 and m.config.coarse_steps == 300


# -- the NeRF-MLP model (spiknerf-mlp) ----------------------------------------------------------------------
def _mlp(meta_from, metadata=None, **kw):
    cfg = NeRFMLPModelConfig(hidden_dim=16, color_hidden=8, num_layers=3, skip_layer=0, num_coarse_samples=6,
                             num_importance_samples=6, **kw)
    return cfg.setup(scene_box=meta_from.scene_box, num_train_data=len(meta_from.cameras),
                     metadata=meta_from.metadata if metadata is None else metadata)


def test_nerf_mlp_in_ndc(scene):
    train, test = scene
    m = _mlp(train)
    h, w = train.metadata["ndc_hw"]
    assert m.ndc and m.ndc_camera.tolist() == [h, w, train.metadata["ndc_focal"], 1.0]
    rays = train.cameras.generate_rays(camera_indices=torch.arange(len(train.cameras))[:, None]).flatten()
    o, d = rays.origins.reshape(-1, 3), _unit(rays.directions.reshape(-1, 3))
    # samples: t' in [0, 1] on NeRF's NDC ray, so monotone in world distance too (beyond the near plane)
    bundle, dirs, valid = m.ndc_bundle(rays)
    assert bool(valid.all()) and torch.allclose(dirs, d)
    rs = m.sampler_uniform(bundle)
    t_ndc = ((rs.frustums.starts + rs.frustums.ends) / 2)[..., 0]
    assert float(t_ndc.min()) > 0 and float(t_ndc.max()) < 1 and bool((t_ndc.diff(dim=1) > 0).all())
    world_t = ndc_t_to_world_t(t_ndc, o, d, 1.0)
    assert bool((world_t.diff(dim=1) > 0).all())
    torch.testing.assert_close(world_t_to_ndc_t(world_t, o, d, 1.0), t_ndc, atol=1e-5, rtol=1e-5)
    _train(m, train, steps=2)
    with torch.no_grad():
        out = m.get_outputs(rays)
        img = m.get_outputs_for_camera(test.cameras[0:1])
    assert img["rgb"].shape == (4, 6, 3) and bool(torch.isfinite(img["rgb"]).all())
    # depth: the world distance, between the ray's nearest and farthest sample (per unit weight)
    near_t = ndc_t_to_world_t(torch.full((o.shape[0], 1), 0.0), o, d, 1.0)[:, 0]
    lit = out["accumulation"][:, 0] > 1e-3
    assert bool((out["depth"][lit, 0] >= near_t[lit] - 1e-4).all())
    # rays turned round: background, nothing accumulated
    with torch.no_grad():
        back = m.get_outputs(RayBundle(origins=o[:3], directions=-d[:3], pixel_area=torch.ones(3, 1),
                                       camera_indices=torch.zeros(3, 1, dtype=torch.long)))
    assert float(back["accumulation"].abs().max()) == 0.0
    torch.testing.assert_close(back["rgb"], torch.ones(3, 3))
    # the camera survives a checkpoint into a model built without the parser's metadata
    bare = _mlp(train, metadata={})
    assert not bare.ndc
    bare.load_state_dict(m.state_dict())
    assert bare.ndc and torch.equal(bare.ndc_camera, m.ndc_camera)
    bare.eval()
    with torch.no_grad():
        torch.testing.assert_close(bare.get_outputs_for_camera(test.cameras[0:1])["rgb"], img["rgb"])
    with pytest.raises(ValueError, match="llff-data"):
        _mlp(train, metadata={}, scene="ndc")
    assert not _mlp(train, scene="world").ndc
