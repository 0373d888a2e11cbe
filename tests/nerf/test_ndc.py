"""NDC rays (``spikenerf.nerf.ndc``) against NeRF's appendix worked by hand, and the properties samplers need:
samples monotone in world depth, inside the NDC box, and every map inverted by its partner."""

from __future__ import annotations

import math

import pytest
import torch

from spikenerf.nerf.ndc import (NDC_BOX, faces_scene, ndc_frustum_box, ndc_rays, ndc_rays_for_marching, ndc_sample_t,
                                ndc_t_to_world_t, ndc_to_world_points, near_plane_t, world_t_to_ndc_t,
                                world_to_ndc_points)

H, W, FOCAL, NEAR = 4, 6, 3.0, 1.0  # 2f/W = 1, 2f/H = 1.5: numbers easy to follow by hand


def test_ndc_rays_by_hand():
    # ray 1: o = (0.1, -0.2, 0.5), d = (0.2, 0.1, -1)
    #   shift to z = -1: t0 = -(1 + 0.5) / -1 = 1.5, o <- o + 1.5 d = (0.4, -0.05, -1)
    #   o' = (-1 * 0.4 / -1, -1.5 * -0.05 / -1, 1 + 2 * 1 / -1) = (0.4, -0.075, -1)
    #   d' = (-1 * (0.2 / -1 - 0.4 / -1), -1.5 * (0.1 / -1 - -0.05 / -1), -2 * 1 / -1) = (-0.2, 0.225, 2)
    # ray 2: o = (0, 0, 0), d = (0, 0, -2) (the centre ray; its length must not matter)
    #   t0 = 0.5, o <- (0, 0, -1); o' = (0, 0, -1), d' = (0, 0, 2)
    # ray 3, near = 2: o = (1, 1, -1), d = (-1, 0, -1): t0 = 1, o <- (0, 1, -2)
    #   o' = (0, -1.5 * 1 / -2, 1 + 4 / -2) = (0, 0.75, -1); d' = (-(-1 / -1 - 0), -1.5 * (0 - 1 / -2), 2)
    #      = (-1, -0.75, 2)
    o = torch.tensor([[0.1, -0.2, 0.5], [0.0, 0.0, 0.0]], dtype=torch.float64)
    d = torch.tensor([[0.2, 0.1, -1.0], [0.0, 0.0, -2.0]], dtype=torch.float64)
    assert near_plane_t(o, d, NEAR).tolist() == pytest.approx([1.5, 0.5])
    on, dn = ndc_rays(H, W, FOCAL, NEAR, o, d)
    assert on.tolist() == [pytest.approx([0.4, -0.075, -1.0]), pytest.approx([0.0, 0.0, -1.0])]
    assert dn.tolist() == [pytest.approx([-0.2, 0.225, 2.0]), pytest.approx([0.0, 0.0, 2.0])]
    on, dn = ndc_rays(H, W, FOCAL, 2.0, torch.tensor([1.0, 1.0, -1.0]), torch.tensor([-1.0, 0.0, -1.0]))
    assert on.tolist() == pytest.approx([0.0, 0.75, -1.0]) and dn.tolist() == pytest.approx([-1.0, -0.75, 2.0])


def test_points_of_the_ndc_ray_are_the_ndc_images_of_the_world_ray():
    """o' + t' d' is the projection of o + t d with t = ndc_t_to_world_t(t'), for random rays (the relation
    t' = 1 - o_z / (o_z + s d_z) of NeRF's appendix), and both maps invert their partners."""
    g = torch.Generator().manual_seed(0)
    o = torch.rand(64, 3, generator=g, dtype=torch.float64) * 0.6 - 0.3
    d = torch.randn(64, 3, generator=g, dtype=torch.float64) * 0.3
    d[:, 2] = -1.0 - torch.rand(64, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=-1, keepdim=True)  # unit: t is a world distance
    t_ndc = ndc_sample_t(64, 16, stratified=True, generator=g, dtype=torch.float64)
    on, dn = ndc_rays(H, W, FOCAL, NEAR, o, d)
    t = ndc_t_to_world_t(t_ndc, o, d, NEAR)
    world = o[:, None] + d[:, None] * t[..., None]
    ndc = on[:, None] + dn[:, None] * t_ndc[..., None]
    torch.testing.assert_close(world_to_ndc_points(world, H, W, FOCAL, NEAR), ndc)
    torch.testing.assert_close(ndc_to_world_points(ndc, H, W, FOCAL, NEAR), world)
    torch.testing.assert_close(world_t_to_ndc_t(t, o, d, NEAR), t_ndc)
    # the depth of a sample is -near / (1 - t'), whatever the ray
    torch.testing.assert_close(world[..., 2], -NEAR / (1 - t_ndc))


def test_samples_are_monotone_in_world_depth_and_inside_the_box():
    """Every pixel of a camera at the NDC camera's pose: t' strictly increasing in [0, 1), world t strictly
    increasing from the near plane, points inside [-1, 1]^3."""
    c2w = torch.eye(4, dtype=torch.float64)[:3]
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5,
                          indexing="ij")
    cam = torch.stack([(u - W / 2) / FOCAL, -(v - H / 2) / FOCAL, -torch.ones_like(u)], -1).reshape(-1, 3)
    d = cam @ c2w[:, :3].T
    o = c2w[:, 3].expand_as(d)
    for stratified in (False, True):
        t_ndc = ndc_sample_t(o.shape[0], 32, stratified=stratified, generator=torch.Generator().manual_seed(1),
                             dtype=torch.float64)
        assert bool((t_ndc[:, 1:] > t_ndc[:, :-1]).all()) and float(t_ndc.min()) >= 0 and float(t_ndc.max()) < 1
        t = ndc_t_to_world_t(t_ndc, o, d, NEAR)
        assert bool(torch.isfinite(t).all()) and bool((t[:, 1:] > t[:, :-1]).all())
        assert bool((t >= near_plane_t(o, d, NEAR)[:, None] - 1e-12).all())
        on, dn = ndc_rays(H, W, FOCAL, NEAR, o, d)
        pts = on[:, None] + dn[:, None] * t_ndc[..., None]
        lo, hi = torch.tensor(NDC_BOX, dtype=torch.float64)
        assert bool(((pts >= lo) & (pts <= hi)).all())


def test_bin_centres_and_strata():
    assert ndc_sample_t(2, 4).tolist() == [[0.125, 0.375, 0.625, 0.875]] * 2
    t = ndc_sample_t(1000, 4, stratified=True, generator=torch.Generator().manual_seed(0))
    bins = torch.floor(t * 4)
    assert bins.tolist() == [[0.0, 1.0, 2.0, 3.0]] * 1000  # one sample in each bin
    assert float(t.mean()) == pytest.approx(0.5, abs=0.01)


def test_frustum_box_of_a_centred_and_a_shifted_camera():
    # the NDC camera itself spans exactly [-1, 1]^3: its image corners project to x' = +-1, y' = +-1
    eye = torch.eye(4, dtype=torch.float64)[:3][None]
    torch.testing.assert_close(ndc_frustum_box(eye, H, W, FOCAL, NEAR), torch.tensor(NDC_BOX, dtype=torch.float64))
    # a camera moved right by 0.5: on the near plane (z = -1, where x' = x) its frustum spans
    # x = 0.5 + [-1, 1]; at infinity its directions are the centred camera's (x' in [-1, 1]); y', z' unchanged
    moved = eye.clone()
    moved[0, 0, 3] = 0.5
    box = ndc_frustum_box(torch.cat([eye, moved]), H, W, FOCAL, NEAR)
    torch.testing.assert_close(box, torch.tensor([[-1.0, -1, -1], [1.5, 1, 1]], dtype=torch.float64))
    turned = eye.clone()
    turned[0, :, :3] = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]]).flip(0)  # looks along -x: not forward
    with pytest.raises(ValueError, match="forward-facing"):
        ndc_frustum_box(turned, H, W, FOCAL, NEAR)


def test_faces_scene():
    d = torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 0.3, 0.2], [1.0, 0.0, -1e-9]])
    assert faces_scene(d).tolist() == [True, False, False, False]
    assert math.isinf(float(ndc_t_to_world_t(torch.ones(1, 1), torch.zeros(1, 3), d[:1])))


def test_rays_for_marching_step_in_ndc_units():
    """A step ``r`` along the unit NDC direction is ``t' = r / |d'|``; rays facing away are flagged and finite."""
    o = torch.tensor([[0.1, -0.2, 0.5], [0.0, 0.0, 0.0], [0.3, 0.0, 0.0]], dtype=torch.float64)
    d = torch.tensor([[0.2, 0.1, -1.0], [0.0, 0.0, -2.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    rays = ndc_rays_for_marching(H, W, FOCAL, NEAR, o, d)
    assert rays.valid.tolist() == [True, True, False] and bool(torch.isfinite(rays.origins).all())
    on, dn = ndc_rays(H, W, FOCAL, NEAR, o[:2], d[:2])
    torch.testing.assert_close(rays.origins[:2], on)
    torch.testing.assert_close(rays.length[:2], dn.norm(dim=-1))  # ray 1 by hand: |(-0.2, 0.225, 2)|
    assert float(rays.length[0]) == pytest.approx(math.sqrt(0.04 + 0.050625 + 4))
    r = torch.tensor([0.3, 1.1], dtype=torch.float64)
    torch.testing.assert_close(rays.origins[:2] + rays.directions[:2] * r[:, None],
                               on + dn * (r / rays.length[:2])[:, None])
