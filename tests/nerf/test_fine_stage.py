"""DVGO's fine-stage rules (as the official SpikingNeRF-D code keeps them), each against a hand computation."""

from __future__ import annotations

import math

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from spikenerf.nerf.field import SpikingNeRFField
from spikenerf.nerf.grid import DenseGrid, march
from spikenerf.nerf.model import SpikingNeRFModelConfig
from spikenerf.nerf.rendering import composite, density_shift, distortion_loss, sample_masks
from spikenerf.nerf.sampling import coarse_geometry_box, mask_cache, refresh_occupancy

UNIT = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])


def raw_for_alpha(alpha: float, shift: float, interval: float = 1.0) -> float:
    """The raw density whose alpha over ``interval`` is ``alpha``: softplus(raw + shift) = -log(1 - a) / i."""
    sigma = -math.log(1.0 - alpha) / interval
    return math.log(math.expm1(sigma)) - shift


def _grid(res, values: dict) -> DenseGrid:
    g = DenseGrid(1, res, UNIT)
    with torch.no_grad():
        g.grid.fill_(-100.0)
        for ijk, v in values.items():
            g.grid[ijk] = v
    return g


def test_mask_cache_is_dvgo_maskgrid():
    shift = density_shift(1e-6)
    # one vertex just above alpha 1e-3 over one voxel, one just below: the max-pool spreads the first to its
    # 3x3x3 neighbourhood, the second keeps nothing
    g = _grid((9, 9, 9), {(2, 2, 2): raw_for_alpha(1.2e-3, shift), (6, 6, 6): raw_for_alpha(0.8e-3, shift)})
    occ = mask_cache(lambda x: g(x)[:, 0], UNIT, (9, 9, 9), shift, 1e-3)
    want = torch.zeros(9, 9, 9, dtype=torch.bool)
    want[1:4, 1:4, 1:4] = True
    assert torch.equal(occ, want)
    # >= at the threshold (alpha exactly 1e-3 is kept), and an empty cache falls back to all True
    g = _grid((5, 5, 5), {})
    assert mask_cache(lambda x: g(x)[:, 0], UNIT, (5, 5, 5), shift, 1e-3).all()


def test_refresh_ands_the_old_cache_with_pooled_fine_alpha():
    shift = density_shift(1e-2)
    interval = 0.5  # a fine voxel of half the base voxel
    g = _grid((7, 7, 7), {(3, 3, 3): raw_for_alpha(2e-4, shift, interval),
                          (0, 0, 0): raw_for_alpha(5e-5, shift, interval)})
    old = torch.ones(7, 7, 7, dtype=torch.bool)
    old[4, 4, 4] = False
    occ = refresh_occupancy(old, UNIT, lambda x: g(x)[:, 0], UNIT, (7, 7, 7), shift, interval, 1e-4)
    want = torch.zeros(7, 7, 7, dtype=torch.bool)
    want[2:5, 2:5, 2:5] = True  # pooled alpha 2e-4 > 1e-4 around (3, 3, 3); 5e-5 at the corner is not
    want[4, 4, 4] = False  # AND the old cache
    assert torch.equal(occ, want)
    # a coarser old cache is read at the nearest vertex: 3^3 over the unit box, only its centre set
    old = torch.zeros(3, 3, 3, dtype=torch.bool)
    old[1, 1, 1] = True
    occ = refresh_occupancy(old, UNIT, lambda x: g(x)[:, 0], UNIT, (7, 7, 7), shift, interval, 1e-4)
    # fine vertex i / 6 reads coarse vertex round(i / 3): i = 2, 3, 4 read the centre (round(0.667) = 1)
    want = torch.zeros(7, 7, 7, dtype=torch.bool)
    want[2:5, 2:5, 2:5] = True
    assert torch.equal(occ, want)


def test_fine_box_from_coarse_geometry():
    shift = density_shift(1e-6)
    a = raw_for_alpha(5e-3, shift)
    g = _grid((11, 11, 11), {(2, 3, 4): a, (6, 3, 8): a, (4, 7, 5): raw_for_alpha(5e-4, shift)})  # last: too low
    box = coarse_geometry_box(lambda x: g(x)[:, 0], UNIT, (11, 11, 11), shift, 1e-3, 1.05)
    # active vertices x in {0.2, 0.6}, y = 0.3 (one voxel 0.1 at least), z in {0.4, 0.8}; scaled by 1.05
    lo = torch.tensor([0.4 - 0.2 * 1.05, 0.3 - 0.1, 0.6 - 0.2 * 1.05])
    hi = torch.tensor([0.4 + 0.2 * 1.05, 0.3 + 0.1, 0.6 + 0.2 * 1.05])
    torch.testing.assert_close(box, torch.stack([lo, hi]))
    # clipped to the coarse box; nothing active: the coarse box
    g = _grid((11, 11, 11), {(0, 0, 0): a, (10, 10, 10): a})
    torch.testing.assert_close(coarse_geometry_box(lambda x: g(x)[:, 0], UNIT, (11, 11, 11), shift), UNIT)
    g = _grid((11, 11, 11), {})
    torch.testing.assert_close(coarse_geometry_box(lambda x: g(x)[:, 0], UNIT, (11, 11, 11), shift), UNIT)


def test_background_weight_is_the_transmittance_after_alpha_kept_samples():
    alpha = torch.tensor([[0.5, 0.5, 5e-5, 0.2]])
    valid = torch.tensor([[True, True, True, False]])
    m = sample_masks(alpha, valid, 1e-4, 0.3)
    # alpha mask drops 5e-5 (and the invalid 4th); weights 0.5, 0.25 -> the weight mask drops the 0.25 sample,
    # but the background still sees T = 0.5 * 0.5 (DVGO's alphainv_last)
    assert m.keep.tolist() == [[True, False, False, False]]
    torch.testing.assert_close(m.weights, torch.tensor([[0.5, 0.0, 0.0, 0.0]]))
    torch.testing.assert_close(m.background, torch.tensor([[0.25]]))
    rgb = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]])
    out = composite(m.weights, rgb, torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.ones(3), m.background)
    torch.testing.assert_close(out.rgb, torch.tensor([[0.75, 0.25, 0.25]]))
    torch.testing.assert_close(out.accumulation, torch.tensor([[0.75]]))


def test_composite_equals_the_per_ray_loop_with_gradients():
    """rgb, depth, accumulation of random rays against a loop over rays and samples, and their gradients."""
    g = torch.Generator().manual_seed(3)
    R, S = 5, 7
    w = (torch.rand(R, S, generator=g) * 0.2).requires_grad_()
    rgb = torch.rand(R, S, 3, generator=g).requires_grad_()
    t = torch.rand(R, S, generator=g).cumsum(1)
    bg, bg_w = torch.tensor([0.2, 0.5, 1.0]), torch.rand(R, 1, generator=g)
    out = composite(w, rgb, t, bg, bg_w)
    ref_rgb = torch.stack([sum(w[r, s] * rgb[r, s] for s in range(S)) + bg_w[r, 0] * bg for r in range(R)])
    ref_depth = torch.stack([sum(w[r, s] * t[r, s] for s in range(S)) / sum(w[r, s] for s in range(S))
                             for r in range(R)])[:, None]
    torch.testing.assert_close(out.rgb, ref_rgb)
    torch.testing.assert_close(out.depth, ref_depth)
    torch.testing.assert_close(out.accumulation, 1.0 - bg_w)
    gw, grgb = torch.autograd.grad((out.rgb.sum() + out.depth.sum()), (w, rgb))
    rw, rrgb = torch.autograd.grad((ref_rgb.sum() + ref_depth.sum()), (w, rgb))
    torch.testing.assert_close(gw, rw)
    torch.testing.assert_close(grgb, rrgb)


def test_samples_outside_the_box_are_dropped():
    # box [0, 1]^3, a ray from x = -1 along +x, step 0.25: x = 0, 0.25, 0.5, 0.75 inside; x = 1 is the far face
    m = march(torch.tensor([[-1.0, 0.5, 0.5]]), torch.tensor([[1.0, 0.0, 0.0]]), UNIT, 0.25, 20, 0.0)
    assert m.t[m.valid].tolist() == [1.0, 1.25, 1.5, 1.75]


def _model(**kw):
    base = dict(coarse_steps=2, coarse_resolution=11, fine_resolution=21, pg_scale_steps=(2, 4), hidden_dim=8,
                scene="bounded")
    base.update(kw)
    cfg = SpikingNeRFModelConfig(**base)
    return cfg.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=1, metadata={})


def _rays(o, d):
    o, d = torch.tensor(o).float(), torch.tensor(d).float()
    d = d / d.norm(dim=-1, keepdim=True)
    R = o.shape[0]
    return RayBundle(origins=o, directions=d, pixel_area=torch.ones(R, 1),
                     camera_indices=torch.zeros(R, 1, dtype=torch.long))


def test_model_tightens_the_fine_box_and_drops_samples_outside_it():
    m = _model()
    shift = m.coarse_shift
    with torch.no_grad():
        m.coarse_density.grid.fill_(-100.0)
        m.coarse_density.grid[4:7, 4:7, 4:7] = raw_for_alpha(0.5, shift)  # a cube at [-0.2, 0.2]^3
    m._set_step(2)
    h = 0.2 * 1.05
    torch.testing.assert_close(m.fine_box, torch.tensor([[-h] * 3, [h] * 3]))
    assert m.field.density_grid.resolution == m.coarse_to_fine.fine_resolution_at(2)
    assert m.occupancy.shape == m.field.density_grid.resolution and m._occ_ready
    # a ray through the coarse box that misses the fine box gets no sample (not the fine grid's alpha_init)
    m.eval()
    out = m(_rays([[0.6, 0.6, -3.0], [0.0, 0.0, -3.0]], [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    assert float(out["num_color_samples"][0]) == 0 and float(out["accumulation"][0]) == 0
    assert float(out["num_color_samples"][1]) > 0


def test_shift_decays_after_each_upscale_and_the_cache_is_refreshed():
    m = _model(occupancy_refresh_every=3, decay_after_scale=1.0)  # DVGO's value (the default is 0)
    s0 = density_shift(m.config.alpha_init_fine)
    seen = []
    c2f = m.coarse_to_fine
    orig = c2f.refresh_occupancy
    c2f.refresh_occupancy = lambda shift=None: (seen.append((m.step, shift)), orig(shift))[1]  # type: ignore
    for step in range(0, 10):
        m._set_step(step)
        passed = sum(1 for s in (2, 4) if step - 2 >= s)
        assert m.field.shift == s0 - 1.0 * passed
    # refreshes: up-scale at steps 4 and 6 (with the shift of before the decay), every 3 fine steps (5, 8)
    assert [s for s, _ in seen] == [4, 5, 6, 8]
    assert seen[0][1] == s0 and seen[2][1] == s0 - 1.0 and seen[1][1] is None


def test_loss_weights_per_stage_and_detached_per_point_weights():
    m = _model()
    m.train()
    w = torch.tensor([[0.5, 0.2]], requires_grad=True)
    acc = torch.tensor([[0.7]])
    rgb_s = torch.tensor([[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]], requires_grad=True)
    out = {"rgb": torch.full((1, 3), 0.5), "accumulation": acc, "_weights": w, "_sample_rgb": rgb_s}
    gt = {"image": torch.full((1, 3), 0.5)}
    ent = -(0.3 * math.log(0.3) + 0.7 * math.log(0.7))
    per = 0.5 * 3 * 0.25 + 0.2 * 3 * 0.25
    for step, (w_ent, w_per) in ((0, (0.01, 0.1)), (5, (0.001, 0.01))):
        m._set_step(step)
        loss = m.get_loss_dict(out, gt)
        assert math.isclose(float(loss["entropy_loss"]), w_ent * ent, rel_tol=1e-5)
        assert math.isclose(float(loss["rgbper_loss"]), w_per * per, rel_tol=1e-5)
    loss["rgbper_loss"].backward()
    assert w.grad is None and rgb_s.grad is not None  # the weights are detached


def test_total_variation_weights_as_dvgo():
    """``tv_density`` / ``tv_feature`` are DVGO's weights: x 1 / rays x max resolution / 128, fine stage only."""
    from spikenerf.nerf.model import SpikingNeRFModelConfig

    c = dict(SpikingNeRFModelConfig().loss_coefficients, tv_density=1e-2, tv_feature=1e-3)
    m = _model(loss_coefficients=c)
    m.train()
    out = {"rgb": torch.full((4, 3), 0.5), "accumulation": torch.ones(4, 1)}
    gt = {"image": torch.full((4, 3), 0.5)}
    m._set_step(0)
    assert "tv_density" not in m.get_loss_dict(out, gt)  # DVGO's coarse stage has no TV
    m._set_step(5)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for grid in (m.field.density_grid, m.field.feature_grid):
            grid.grid.copy_(torch.randn(grid.grid.shape, generator=g))
    loss = m.get_loss_dict(out, gt)
    for key, w, grid in (("tv_density", 1e-2, m.field.density_grid), ("tv_feature", 1e-3, m.field.feature_grid)):
        torch.testing.assert_close(loss[key], w / 4 * max(grid.resolution) / 128 * grid.total_variation())
        assert float(loss[key]) > 0
    plain = _model()
    plain._set_step(5)
    assert "tv_density" not in plain.get_loss_dict(out, gt)  # off by default


def test_colour_net_without_biases():
    f = SpikingNeRFField(UNIT, (3, 3, 3), feature_channels=2, hidden_dim=4, dir_freqs=0, color_bias=False)
    assert f.fc1.bias is None and f.fc2.bias is None and f.fc3.bias is None
    with torch.no_grad():
        f.fc1.weight.zero_()  # no input current: no spike, and with no bias the read-out is sigmoid(0)
    dirs = torch.tensor([[0.0, 0.0, 1.0]] * 2)
    rgb, stats = f.color(torch.rand(2, 3, 3), dirs, torch.ones(2, 3, dtype=torch.bool))
    torch.testing.assert_close(rgb, torch.full((2, 3, 3), 0.5))
    assert float(stats.spikes_per_layer[0]) == 0


def test_distortion_loss_by_hand():
    w = torch.tensor([[0.2, 0.0, 0.3, 0.5]])
    s = torch.tensor([[0.0, 0.1, 0.2, 0.4]])
    pairs = 2 * (0.2 * 0.3 * 0.2 + 0.2 * 0.5 * 0.4 + 0.3 * 0.5 * 0.2)
    uni = (0.04 + 0.09 + 0.25) * 0.1 / 3
    assert math.isclose(float(distortion_loss(w, s, 0.1)), pairs + uni, rel_tol=1e-5)


def test_tightened_model_reloads_from_its_checkpoint(tmp_path):
    m = _model()
    with torch.no_grad():
        m.coarse_density.grid.fill_(-100.0)
        m.coarse_density.grid[3:8, 4:7, 4:6] = raw_for_alpha(0.5, m.coarse_shift)
    m._set_step(7)
    with torch.no_grad():
        m.field.density_grid.grid.normal_()
    torch.save(m.state_dict(), tmp_path / "m.pt")
    fresh = _model()
    fresh.update_to_step(7)
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    torch.testing.assert_close(fresh.fine_box, m.fine_box)
    assert fresh.occupancy.shape == m.occupancy.shape and fresh._occ_ready
    m.eval()
    fresh.eval()
    rb = _rays([[0.0, 0.0, -3.0], [0.1, 0.05, -3.0]], [[0.0, 0.0, 1.0], [0.0, 0.01, 1.0]])
    torch.testing.assert_close(fresh(rb)["rgb"], m(rb)["rgb"])


def test_training_rays_drawn_in_the_occupancy_cache():
    """DVGO's ``in_maskcache`` sampler: a ray counts when one of its fine samples lies in the cache."""
    from nerfstudio.cameras.cameras import Cameras

    m = _model()
    with torch.no_grad():
        m.coarse_density.grid.fill_(-100.0)
        m.coarse_density.grid[4:7, 4:7, 4:7] = raw_for_alpha(0.5, m.coarse_shift)  # a cube at [-0.2, 0.2]^3
    c2f = m.coarse_to_fine
    before = c2f.cache.version
    m._set_step(2)
    assert c2f.cache.version == before + 1
    o = torch.tensor([[0.0, 0.0, -3.0], [0.6, 0.6, -3.0], [0.1, -0.1, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 2.0]])  # (directions need not be unit)
    assert c2f.rays_in_cache(o, d).tolist() == [True, False, True]
    # per pixel of a camera looking down -z at the cube from z = 3: the centre pixel hits, a corner misses
    c2w = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 3.0]])
    cams = Cameras(camera_to_worlds=c2w[None].expand(2, 3, 4), fx=8.0, fy=8.0, cx=4.0, cy=4.0, width=8, height=8)
    mask = c2f.pixel_mask(cams)
    assert mask.shape == (2, 8, 8, 1) and mask.dtype == torch.bool
    assert bool(mask[0, 4, 4, 0]) and not bool(mask[0, 0, 0, 0])
    rays = cams.generate_rays(camera_indices=0)
    want = c2f.rays_in_cache(rays.origins.reshape(-1, 3), rays.directions.reshape(-1, 3)).reshape(8, 8, 1)
    assert torch.equal(mask[0], want) and torch.equal(mask[1], want)

    class _DM:  # the two things the model reads from a data manager
        def __init__(self):
            self.train_dataset, self.masks = type("D", (), {"cameras": cams})(), []

        def set_ray_mask(self, mk):
            self.masks.append(mk)

    dm = _DM()
    c2f.update_ray_mask(dm)
    c2f.update_ray_mask(dm)  # unchanged cache: not rebuilt
    assert len(dm.masks) == 1 and torch.equal(dm.masks[0], mask)
    c2f.refresh_occupancy()
    c2f.update_ray_mask(dm)
    assert len(dm.masks) == 2



def test_voxel_view_counts_by_hand():
    """DVGO's rule: a view counts for a vertex when its samples' trilinear weights there sum to more than 1."""
    from spikenerf.nerf.grid_training import voxel_view_counts

    centre = torch.tensor([[0.5, 0.5, 0.5]])
    edge = torch.tensor([[0.25, 0.0, 0.0]])  # half on vertex (0, 0, 0), half on (1, 0, 0)
    views = [
        [centre.expand(3, 3)],  # weight 3 on the centre vertex
        [centre, edge.expand(4, 3)],  # weight 1 on the centre (not > 1), 2 on each edge vertex
        [edge.expand(2, 3), edge.expand(1, 3)],  # chunks of one view add up: 1.5 on each edge vertex
    ]
    count = voxel_view_counts(iter([iter(v) for v in views]), (3, 3, 3), UNIT)
    want = torch.zeros(3, 3, 3)
    want[1, 1, 1] = 1
    want[0, 0, 0] = want[1, 0, 0] = 2
    torch.testing.assert_close(count, want)


def test_pervoxel_lr_in_the_coarse_stage_only():
    """Each coarse-density update is scaled by views-that-see-the-vertex / the most views; the colour grid and
    the fine stage are untouched (DVGO's MaskedAdam scales only parameters shaped like the count)."""
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation

    from spikenerf.nerf.grid_training import voxel_view_counts

    m = _model(pervoxel_lr=True)
    c2w = torch.tensor([[[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 3.0]],
                        [[1.0, 0, 0, 0.5], [0, 1.0, 0, 0], [0, 0, 1.0, 3.0]]])
    cams = Cameras(camera_to_worlds=c2w, fx=8.0, fy=8.0, cx=4.0, cy=4.0, width=8, height=8)
    dm = type("DM", (), {"train_dataset": type("D", (), {"cameras": cams})()})()
    adam = torch.optim.Adam(m.get_param_groups()["grids"], lr=0.1)
    attrs = TrainingCallbackAttributes(optimizers=type("O", (), {"optimizers": {"grids": adam}})(),
                                       grad_scaler=None, pipeline=type("P", (), {"datamanager": dm})(), trainer=None)
    (cb,) = m.get_training_callbacks(attrs)
    count = voxel_view_counts(m.coarse_to_fine.coarse_view_points(cams), m.coarse_res, m.coarse_box)
    assert float(count.max()) == 2 and bool((count == 1).any()) and bool((count == 0).any())

    def step(at: int) -> tuple[Tensor, Tensor]:
        cb.run_callback_at_location(at, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        adam.state.clear()  # a first Adam step moves every value by lr * sign(grad)
        d0, c0 = m.coarse_density.grid.detach().clone(), m.coarse_color.grid.detach().clone()
        for p in adam.param_groups[0]["params"]:
            p.grad = torch.ones_like(p)
        adam.step()
        return m.coarse_density.grid.detach() - d0, m.coarse_color.grid.detach() - c0

    d_density, d_color = step(0)
    torch.testing.assert_close(d_density, -0.1 * (count / 2)[..., None], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(d_color, torch.full_like(d_color, -0.1), rtol=1e-4, atol=1e-6)
    d_density, _ = step(2)  # fine stage: plain Adam
    torch.testing.assert_close(d_density, torch.full_like(d_density, -0.1), rtol=1e-4, atol=1e-6)


def test_grid_schedule_by_hand():
    """The timetable the model asks each step: 3 coarse steps, up-scales at fine steps 2 and 4, refreshes every
    3 fine steps and at every up-scale (never at the first fine step, which builds the cache)."""
    from spikenerf.nerf.grid_training import GridSchedule

    s = GridSchedule(coarse_steps=3, scale_steps=(2, 4), final_resolution=65, refresh_every=3)
    assert [s.in_fine_stage(k) for k in range(5)] == [False, False, False, True, True]
    assert [s.scales_done(k) for k in (3, 4, 5, 6, 7, 100)] == [0, 0, 1, 1, 2, 2]
    # (65 - 1) x 2^(-pending / 3) + 1: the voxel count halves per pending up-scale
    assert [s.resolution_at(k) for k in (0, 5, 7)] == [round(64 * 2 ** (-2 / 3)) + 1, round(64 * 2 ** (-1 / 3)) + 1, 65]
    assert [k for k in range(10) if s.builds_cache(k, cache_ready=False)] == list(range(3, 10))
    assert not s.builds_cache(5, cache_ready=True)
    assert not GridSchedule(0, (), 9).builds_cache(0, cache_ready=False)  # no coarse stage, no cache
    assert [k for k in range(12) if s.refreshes_cache(k, scaled=False)] == [6, 9]
    assert [k for k in range(12) if s.refreshes_cache(k, scaled=True)] == list(range(4, 12))
    assert not GridSchedule(3, (2,), 9, refresh_every=0, refresh_on_upscale=False).refreshes_cache(6, scaled=True)
    for bad in (dict(coarse_steps=-1, scale_steps=()), dict(coarse_steps=0, scale_steps=(4, 2))):
        try:
            GridSchedule(final_resolution=9, **bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")


def test_checkpoint_keys_stay_on_the_model():
    """The cache is the model's buffers (``occupancy``, ``occupancy_ready``), so checkpoints written before the
    coarse-to-fine component existed load, and the component adds no key of its own."""
    m = _model()
    m._set_step(2)
    keys = set(m.state_dict())
    assert {"occupancy", "occupancy_ready", "scene_code", "aabb"} <= keys
    assert not any(k.startswith("coarse_to_fine") for k in keys)
    assert m.occupancy is m.coarse_to_fine.cache.grid and bool(m.occupancy_ready)
