"""Scene contraction for real captures: the map, the contracted marcher, the auto rule, and the model on tiny
synthetic unbounded (inward-facing) and forward-facing scenes."""

from __future__ import annotations

import pytest
import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from nerf_reference import uncontract  # tests/nerf is on sys.path
from spikenerf.nerf.contraction import contract, contracted_box, contracted_lattice, looks_unbounded, near_clip_from_points
from spikenerf.nerf.grid import march_contracted, march_contracted_reference
from spikenerf.nerf.model import SCENE_BOUNDED, SCENE_UNBOUNDED, SpikingNeRFModelConfig

BOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def test_contract_by_hand():
    # b = 1: identity inside, 2 - 1/n outside along an axis, the corner direction by the L-inf norm
    x = torch.tensor([[0.3, -0.5, 1.0], [2.0, 0.0, 0.0], [4.0, 4.0, -2.0], [1e12, 0.0, 0.0]])
    y = contract(x, BOX, 1.0)
    torch.testing.assert_close(y[0], x[0])
    torch.testing.assert_close(y[1], torch.tensor([1.5, 0.0, 0.0]))
    torch.testing.assert_close(y[2], torch.tensor([1.75, 1.75, -0.875]))  # n = 4: (2 - 1/4) * u / 4
    torch.testing.assert_close(y[3], torch.tensor([2.0, 0.0, 0.0]))
    # a non-unit box: centre 1, half size 2 on x
    box = torch.tensor([[-1.0, -1.0, -1.0], [3.0, 1.0, 1.0]])
    torch.testing.assert_close(contract(torch.tensor([[5.0, 0.0, 0.0]]), box, 0.5),
                               torch.tensor([[1.0 + 2.0 * 1.25, 0.0, 0.0]]))  # u = 2: 1.5 - 0.25


@pytest.mark.parametrize("bg", [0.2, 0.5, 1.0])
def test_contract_is_invertible_and_stays_in_its_box(bg):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 3, generator=g, dtype=torch.float64) * torch.logspace(-1, 3, 2000, dtype=torch.float64)[:, None]
    box = BOX.double()
    y = contract(x, box, bg)
    cb = contracted_box(box, bg)
    assert ((y >= cb[0]) & (y <= cb[1])).all()
    torch.testing.assert_close(uncontract(y, box, bg), x, rtol=1e-9, atol=1e-9)


def test_contract_is_monotone_along_rays():
    g = torch.Generator().manual_seed(1)
    d = torch.randn(64, 3, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=-1, keepdim=True)
    t = torch.logspace(-2, 4, 300, dtype=torch.float64)
    # from the centre: the contracted L-inf radius grows strictly with t
    y = contract(d[:, None] * t[None, :, None], BOX.double(), 0.5)
    n = y.abs().amax(-1)
    assert (n[:, 1:] > n[:, :-1]).all()
    # from anywhere inside: once the world radius grows along the ray, so does the contracted one, and the
    # contracted points come in the same order (distinct, moving away from the ray's contracted start)
    o = torch.rand(64, 3, generator=g, dtype=torch.float64) * 1.6 - 0.8
    x = o[:, None] + d[:, None] * t[None, :, None]
    y = contract(x, BOX.double(), 0.5)
    nx, ny = x.abs().amax(-1), y.abs().amax(-1)
    grow = nx[:, 1:] > nx[:, :-1]
    assert ((ny[:, 1:] >= ny[:, :-1]) | ~grow).all()
    step = (y[:, 1:] - y[:, :-1]).norm(dim=-1)
    assert (step > 0).all()


def test_lattice_by_hand():
    # a ray from the centre along +x, step 0.25, b = 1: 4 inner samples, then t_exit / (1 - k q), q = 0.25
    t, valid = contracted_lattice(torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0]]), BOX, 1.0, 0.25, 0.0)
    torch.testing.assert_close(t[valid], torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0, 4 / 3, 2.0, 4.0]))
    # contracted, the outer samples are 0.25 apart as the inner ones: 1, 1.25, 1.5, 1.75
    y = contract(t[valid][:, None] * torch.tensor([1.0, 0.0, 0.0]), BOX, 1.0)[:, 0]
    torch.testing.assert_close(y[1:] - y[:-1], torch.full((7,), 0.25))
    # near plane and a ray starting outside the inner box (enters at t = 1)
    t, valid = contracted_lattice(torch.tensor([[-2.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]), BOX, 1.0,
                                  0.5, 0.1)
    torch.testing.assert_close(t[valid][:5], torch.tensor([1.0, 1.5, 2.0, 2.5, 3.0]))


def test_c_marcher_equals_reference():
    g = torch.Generator().manual_seed(2)
    o = torch.rand(300, 3, generator=g) * 1.8 - 0.9
    o[:20] = torch.tensor([3.0, 0.2, 0.1])  # some cameras outside the inner box
    d = torch.randn(300, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    occ = torch.rand(17, 17, 17, generator=g) > 0.4
    for cache in (None, occ):
        a = march_contracted(o, d, BOX, 0.5, 0.07, 0.05, cache)
        b = march_contracted_reference(o, d, BOX, 0.5, 0.07, 0.05, cache)
        assert a.t.shape == b.t.shape
        assert torch.equal(a.valid, b.valid) and torch.equal(a.index, b.index)
        torch.testing.assert_close(a.t, b.t)


def test_auto_rule():
    blender = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 1.0], [-2.8, -2.8, 1.0]])
    capture = torch.tensor([[0.9, 0.1, 0.0], [0.0, -0.8, 0.2], [0.5, 0.5, -0.3]])
    box = torch.tensor([[-1.5] * 3, [1.5] * 3])
    assert not looks_unbounded(blender, box)
    assert looks_unbounded(capture, box)


def _look_along(o, axis):
    """nerfstudio camera-to-world ``[3, 4]`` at ``o`` looking along ``axis`` (OpenGL: the camera's -z)."""
    z = -torch.tensor(axis, dtype=torch.float32)
    up = torch.tensor([0.0, 0.0, 1.0]) if abs(float(z[2])) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
    x = torch.linalg.cross(up, z)
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    return torch.cat([torch.stack([x, y, z], 1), torch.tensor(o, dtype=torch.float32)[:, None]], 1)


def test_near_clip_by_hand():
    # camera 0 at the origin looking along +x, camera 1 at (0, 0, 2) looking along -z; 90-degree fields of view
    c2w = torch.stack([_look_along([0.0, 0.0, 0.0], [1.0, 0.0, 0.0]), _look_along([0.0, 0.0, 2.0], [0.0, 0.0, -1.0])])
    one = torch.ones(2)
    intr = dict(fx=50 * one, fy=50 * one, cx=50 * one, cy=50 * one, width=100 * one, height=100 * one)
    pts = torch.tensor([
        [3.0, 0.0, 0.0],     # camera 0: depth 3
        [1.5, 0.2, -0.3],    # camera 0: depth 1.5
        [0.5, 3.0, 0.0],     # outside both frusta (camera 0: |y| / depth = 6, camera 1: 1.5)
        [-0.3, 0.0, 0.0],    # behind camera 0; camera 1: depth 2
        [0.1, 0.1, 1.2],     # camera 1: depth 0.8 (camera 0: outside its frustum)
        [0.0, -0.2, 0.4],    # camera 1: depth 1.6
    ])
    args = (c2w, intr["fx"], intr["fy"], intr["cx"], intr["cy"], intr["width"], intr["height"], pts)
    # per camera the nearest point it sees: 1.5 (camera 0), 0.8 (camera 1); the scene's clip: 0.9 x 0.8
    assert near_clip_from_points(*args, quantile=0.0) == pytest.approx(0.9 * 0.8)
    # the median instead: camera 0 sees depths {3, 1.5} (median 2.25), camera 1 {2.3 (point 1), 2, 0.8, 1.6} (1.8)
    assert near_clip_from_points(*args, quantile=0.5, scale=1.0) == pytest.approx(1.8)
    assert near_clip_from_points(c2w, *(v for v in intr.values()), torch.tensor([[0.0, 0.0, 9.0]])) == 0.0


# ----------------------------------------------------------------------------- the model on tiny scenes
def _model(**kw):
    cfg = SpikingNeRFModelConfig(coarse_steps=2, coarse_resolution=12, fine_resolution=20, pg_scale_steps=(2,),
                                 hidden_dim=16, **kw)
    return cfg.setup(scene_box=SceneBox(aabb=BOX.clone()), num_train_data=1, metadata={})


def _inward_rays(R=48, seed=0):
    """Cameras on a circle of radius 0.8 inside the box, looking at the centre (a phone capture)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(R, generator=g) * 6.283
    o = torch.stack([0.8 * a.cos(), 0.8 * a.sin(), 0.2 + 0.1 * torch.rand(R, generator=g)], -1)
    d = -o + 0.4 * torch.randn(R, 3, generator=g)
    return o, d / d.norm(dim=-1, keepdim=True)


def _forward_rays(R=48, seed=0):
    """Forward-facing (LLFF): cameras on a small plane at z = -0.5 inside the box, all looking along +z."""
    g = torch.Generator().manual_seed(seed)
    o = torch.cat([0.2 * torch.rand(R, 2, generator=g) - 0.1, torch.full((R, 1), -0.5)], -1)
    d = torch.cat([0.4 * torch.rand(R, 2, generator=g) - 0.2, torch.ones(R, 1)], -1)
    return o, d / d.norm(dim=-1, keepdim=True)


def _bundle(o, d):
    R = o.shape[0]
    return RayBundle(origins=o, directions=d, pixel_area=torch.ones(R, 1),
                     camera_indices=torch.zeros(R, 1, dtype=torch.long))


def _randomize(m):
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for grid in (m.coarse_density, m.coarse_color, m.field.density_grid, m.field.feature_grid):
            grid.grid.copy_(torch.randn(grid.grid.shape, generator=g))
        m.field.fc1.weight.mul_(8.0)


@pytest.mark.parametrize("rays", [_inward_rays, _forward_rays])
def test_auto_detects_captures_and_samples_the_background(rays):
    o, d = rays()
    m = _model()
    assert not m.unbounded and int(m.scene_code) == 0
    assert m.detect_scene(o)
    assert int(m.scene_code) == SCENE_UNBOUNDED
    torch.testing.assert_close(m.coarse_box, contracted_box(BOX, m.config.bg_len))
    m.train()
    m._set_step(10)
    _randomize(m)
    out = m(_bundle(o, d))
    assert torch.isfinite(out["rgb"]).all() and out["spike_rate"].max() > 0
    # every look-up point is in the contracted box, and the samples reach far beyond the inner box
    marched, _ = m.sample(o, d, True)
    xyz = m.lookup_points(o, d, marched.t)[marched.valid]
    cb = m.fine_box
    assert ((xyz >= cb[0] - 1e-5) & (xyz <= cb[1] + 1e-5)).all()
    world = (o[:, None] + d[:, None] * marched.t[..., None])[marched.valid]
    assert float(world.abs().amax()) > 4.0  # the last outer sample: ~t_exit / q, far outside the inner box
    loss = sum(m.get_loss_dict(out, {"image": torch.rand(48, 3)}).values())
    loss.backward()
    assert m.field.feature_grid.grid.grad.abs().sum() > 0


def test_random_background_only_in_training_on_unbounded_scenes():
    """DVGOv2's ``rand_bkgd``: in training each ray of an unbounded scene composites its own random colour
    over its background weight (rgb = sum w c + bg * u, u ~ U[0,1]^3); evaluation uses ``background_color``."""
    o, d = _inward_rays()
    m = _model(random_background=True)
    m.detect_scene(o)
    m.train()
    m._set_step(10)
    _randomize(m)
    with torch.no_grad():
        m.field.density_grid.grid.sub_(4.0)  # see-through: most of each ray's weight is background
        torch.manual_seed(0)
        a = m(_bundle(o, d))
        torch.manual_seed(0)
        m.config.random_background = False
        white = m(_bundle(o, d))
        m.config.random_background = True
        bg = 1.0 - white["accumulation"]
        assert float(bg.min()) > 0.05
        torch.manual_seed(0)
        u = torch.rand(o.shape[0], 3)  # the colours the model drew
        torch.testing.assert_close(a["rgb"], white["rgb"] - bg * 1.0 + bg * u, rtol=1e-5, atol=1e-5)
        m.eval()
        torch.testing.assert_close(m(_bundle(o, d))["rgb"], white["rgb"], rtol=1e-5, atol=1e-5)


def test_blender_cameras_stay_bounded():
    m = _model()
    assert not m.detect_scene(torch.tensor([[0.0, 0.0, 4.0], [4.0, 0.0, 0.0]]))
    assert int(m.scene_code) == SCENE_BOUNDED
    torch.testing.assert_close(m.coarse_box, BOX)


@pytest.mark.parametrize("rays", [_inward_rays, _forward_rays])
def test_packing_unchanged_by_contraction(rays):
    # no alpha/weight masks: padding and condensing give the same colours on the contracted samples too
    o, d = rays()
    ms = [_model(scene="unbounded", pack_mode=mode, alpha_threshold=-1.0, weight_threshold=-1.0)
          for mode in ("padding", "condensing")]
    for m in ms:
        m.eval()
        m.update_to_step(10)
    _randomize(ms[0])
    ms[1].load_state_dict(ms[0].state_dict())
    oa, ob = (m(_bundle(o, d)) for m in ms)
    assert oa["spike_rate"].max() > 0
    torch.testing.assert_close(oa["rgb"], ob["rgb"])
    torch.testing.assert_close(oa["spike_rate"], ob["spike_rate"])
    torch.testing.assert_close(oa["ray_sops"], ob["ray_sops"])


def test_scene_decision_survives_a_checkpoint(tmp_path):
    o, d = _inward_rays()
    m = _model()
    m.detect_scene(o)
    m.train()
    m._set_step(10)
    _randomize(m)
    torch.save(m.state_dict(), tmp_path / "m.pt")
    fresh = _model()  # "auto", undecided: ns-eval / ns-viewer build the model like this, then load
    fresh.update_to_step(10)
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    assert fresh.unbounded and fresh._occ_ready
    m.eval()
    fresh.eval()
    torch.testing.assert_close(fresh(_bundle(o, d))["rgb"], m(_bundle(o, d))["rgb"])


def test_near_clip_penalty_pushes_near_density_down():
    # DVGOv2's near-clip loss: every valid training sample closer than near_clip to its camera gets a gradient of
    # exactly the loss weight on its raw density, in both stages; farther samples get none from it
    o, d = _inward_rays()
    for step in (1, 10):  # coarse, fine
        m = _model(scene="unbounded", near_clip=0.6, alpha_threshold=-1.0, weight_threshold=-1.0,
                   loss_coefficients={"rgb_loss": 0.0, "nearclip_loss": 0.5})
        m.train()
        m._set_step(step)
        _randomize(m)
        out = m(_bundle(o, d))
        fine = m.in_fine_stage
        marched, _ = m.sample(o, d, fine)
        near = marched.valid & (marched.t < 0.6)
        assert 0 < int(near.sum()) < int(marched.valid.sum())
        xyz = m.lookup_points(o, d, marched.t)[near]
        torch.testing.assert_close(out["_near_raw"], m.raw_density(xyz, fine).detach())
        loss = m.get_loss_dict(out, {"image": torch.rand(48, 3)})
        assert float(loss["nearclip_loss"]) == 0.0 and set(loss) >= {"nearclip_loss"}
        loss["nearclip_loss"].backward()
        grid = m.field.density_grid.grid if fine else m.coarse_density.grid
        got = grid.grad.clone()
        grid.grad = None
        (0.5 * m.raw_density(xyz, fine).sum()).backward()
        torch.testing.assert_close(got, grid.grad)
        assert got.abs().sum() > 0


def test_near_clip_from_the_data_only_in_unbounded_scenes():
    m = _model(scene="bounded")
    from nerfstudio.cameras.cameras import Cameras

    cams = Cameras(camera_to_worlds=_look_along([0.0, 0.0, 0.0], [1.0, 0.0, 0.0])[None], fx=50.0, fy=50.0,
                   cx=50.0, cy=50.0, width=100, height=100)
    pts = torch.tensor([[2.0, 0.0, 0.0]])
    assert m.data_near_clip(cams, pts) == 0.0  # Blender scenes: no near-clip loss (DVGO has none)
    m = _model(scene="unbounded")
    assert m.data_near_clip(cams, None) == 0.0  # a parser without sparse points: off
    assert m.data_near_clip(cams, pts) == pytest.approx(0.9 * 2.0, rel=1e-5)
