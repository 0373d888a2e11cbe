"""TensoRF's VM-split backbone (spikenerf/nerf/tensorf.py) against naive references written out here.

Look-ups by hand (bilinear on each plane, linear on each line, summed), up-sampling of a linear field,
the crop of ``shrink``, the alpha mask against a per-vertex loop, TV / L1 by hand, TensoRF's schedule
against its own per-step loop, SpikingNeRF-T's 150 colour inputs and weight mask + condensing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from spikenerf.nerf.packing import pack_index
from spikenerf.nerf.tensorf import (MAT_MODE, VEC_MODE, TensoRFBackbone, VMSplit, n_samples_for, n_to_reso,
                                    sample_ray, tensorf_color_input, tensorf_color_mask, tensorf_lr,
                                    tensorf_pe, tv_weight_at, upsampling_voxel_counts)

AABB = torch.tensor([[-1.0, -0.5, 0.0], [1.5, 1.0, 2.0]])
RES = (5, 6, 7)


def _backbone(scale: float = 0.1, seed: int = 0, **kw) -> TensoRFBackbone:
    torch.manual_seed(seed)
    return TensoRFBackbone(AABB, RES, density_components=(2, 3, 4), app_components=(3, 2, 5), app_dim=4,
                           init_scale=scale, **kw).double()


def _interp1(v: torch.Tensor, x: float) -> torch.Tensor:
    """Linear interpolation of ``v`` ``[L, C]`` at fractional index ``x`` (0 .. L-1)."""
    i0 = min(int(math.floor(x)), v.shape[0] - 2)
    f = x - i0
    return v[i0] * (1 - f) + v[i0 + 1] * f


def _interp2(p: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Bilinear interpolation of ``p`` ``[H, W, C]`` at fractional (column x, row y)."""
    j0 = min(int(math.floor(y)), p.shape[0] - 2)
    fy = y - j0
    return _interp1(p[j0], x) * (1 - fy) + _interp1(p[j0 + 1], x) * fy


def _naive_products(vm: VMSplit, aabb: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``[C0 + C1 + C2]`` plane(u, v) * line(w) of one world point, interpolated by hand."""
    res = torch.tensor(vm.resolution, dtype=torch.float64)
    idx = ((q.double() - aabb[0].double()) / (aabb[1] - aabb[0]).double() * (res - 1)).tolist()  # vertex units
    out = []
    for i, ((a, b), w) in enumerate(zip(MAT_MODE, VEC_MODE)):
        plane = vm.planes[i].detach()[0].permute(1, 2, 0)  # [H = axis b, W = axis a, C]
        line = vm.lines[i].detach()[0, :, :, 0].t()  # [L = axis w, C]
        out.append(_interp2(plane, idx[a], idx[b]) * _interp1(line, idx[w]))
    return torch.cat(out)


def _points(n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    inside = AABB[0] + (AABB[1] - AABB[0]) * torch.rand(n, 3, generator=g)
    return torch.cat([inside, AABB, AABB[[0]] * 0.5 + AABB[[1]] * 0.5]).double()


def test_density_and_app_features_against_hand_interpolation():
    cubic = TensoRFBackbone(AABB, (5, 5, 5), (3, 3, 3), (2, 2, 2), app_dim=3, init_scale=0.5).double()
    p = _points(12)
    for m in (_backbone(scale=0.5), cubic):  # one look-up per plane; the batched look-up of equal planes
        ref = torch.stack([_naive_products(m.density, m.aabb, q) for q in p])
        assert torch.allclose(m.density_features(p), ref.sum(-1), atol=1e-10)
        ref_app = torch.stack([_naive_products(m.app, m.aabb, q) for q in p]) @ m.basis_mat.weight.detach().t()
        assert torch.allclose(m.app_features(p), ref_app, atol=1e-10)
    m = _backbone(scale=0.5)
    # the activation: TensoRF's softplus(raw - 10), or relu for its LLFF config
    raw = torch.linspace(-20, 20, 9, dtype=torch.float64)
    assert torch.allclose(m.feature2density(raw), torch.log1p(torch.exp(raw - 10.0)))
    assert torch.equal(_backbone(activation="relu").feature2density(raw), raw.clamp_min(0))


def test_upsample_keeps_a_linear_field_exactly():
    m = _backbone()
    with torch.no_grad():  # every plane and line linear in its own coordinates -> bilinear / linear exact
        for vm in (m.density, m.app):
            for i in range(3):
                _, c, h, w = vm.planes[i].shape
                yy, xx = torch.meshgrid(torch.linspace(-1, 1, h, dtype=torch.float64),
                                        torch.linspace(-1, 1, w, dtype=torch.float64), indexing="ij")
                coef = torch.randn(c, 3, dtype=torch.float64)
                vm.planes[i].copy_((coef[:, 0, None, None] * xx + coef[:, 1, None, None] * yy
                                    + coef[:, 2, None, None])[None])
                L = vm.lines[i].shape[2]
                line = torch.linspace(-1, 1, L, dtype=torch.float64)[None, :, None]
                vm.lines[i].copy_((torch.randn(c, 1, 1, dtype=torch.float64) * line
                                   + torch.randn(c, 1, 1, dtype=torch.float64))[None])
    p = _points(50)
    before_d, before_a = m.density_features(p), m.app_features(p)
    m.upsample((9, 4, 13))
    assert m.resolution == (9, 4, 13)
    assert tuple(m.density.planes[0].shape[2:]) == (4, 9) and tuple(m.app.lines[2].shape[2:]) == (9, 1)
    assert torch.allclose(m.density_features(p), before_d, atol=1e-10)
    assert torch.allclose(m.app_features(p), before_a, atol=1e-10)
    assert all(isinstance(q, torch.nn.Parameter) for q in m.parameters())


def test_shrink_crops_to_the_rounded_vertex_range():
    box = torch.tensor([[0.0, 0.0, 0.0], [10.0, 10.0, 10.0]])
    torch.manual_seed(0)
    m = TensoRFBackbone(box, (11, 11, 11), (2, 2, 2), (2, 2, 2), app_dim=3).double()
    planes = [p.detach().clone() for p in m.density.planes]
    lines = [l.detach().clone() for l in m.app.lines]
    p = torch.tensor([[3.3, 5.1, 2.0], [6.9, 8.7, 9.5], [2.0, 4.0, 0.0]], dtype=torch.float64)
    before = m.density_features(p), m.app_features(p)
    m.shrink(torch.tensor([[2.2, 3.6, 0.0], [7.4, 9.0, 10.0]], dtype=torch.float64))
    lo, hi = [2, 4, 0], [8, 10, 11]  # round(min), round(max) + 1, at most the grid
    assert m.resolution == (6, 6, 11)
    assert torch.equal(m.aabb, torch.tensor([[2.0, 4.0, 0.0], [7.0, 9.0, 10.0]], dtype=m.aabb.dtype))
    for i, ((a, b), w) in enumerate(zip(MAT_MODE, VEC_MODE)):
        assert torch.equal(m.density.planes[i].detach(), planes[i][..., lo[b]:hi[b], lo[a]:hi[a]])
        assert torch.equal(m.app.lines[i].detach(), lines[i][..., lo[w]:hi[w], :])
    after = m.density_features(p), m.app_features(p)  # every kept vertex stayed where it was
    assert torch.allclose(after[0], before[0], atol=1e-12) and torch.allclose(after[1], before[1], atol=1e-12)


def _naive_mask(m: TensoRFBackbone, res: tuple[int, int, int], old=None) -> torch.Tensor:
    """Per vertex: alpha over one step, zero where ``old`` drops it; 3x3x3 max; >= threshold."""
    alpha = torch.zeros(res, dtype=torch.float64)
    for i in range(res[0]):
        for j in range(res[1]):
            for k in range(res[2]):
                t = torch.tensor([i, j, k], dtype=torch.float64) / (torch.tensor(res, dtype=torch.float64) - 1)
                q = (m.aabb[0] * (1 - t) + m.aabb[1] * t)[None]
                if old is not None and not bool(old(q)):
                    continue
                sigma = torch.log1p(torch.exp(m.density_features(q) - 10.0))
                alpha[i, j, k] = 1 - torch.exp(-sigma * m.step_size)[0]
    pooled = torch.zeros_like(alpha)
    for i in range(res[0]):
        for j in range(res[1]):
            for k in range(res[2]):
                pooled[i, j, k] = alpha[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2, max(k - 1, 0):k + 2].max()
    return pooled >= m.alpha_mask_threshold


@torch.no_grad()
def test_alpha_mask_against_direct_evaluation():
    m = _backbone(scale=2.5, seed=3, alpha_mask_threshold=0.05)
    res = (6, 5, 4)
    box = m.update_alpha_mask(res)
    ref = _naive_mask(m, res)
    assert 0 < int(ref.sum()) < ref.numel(), "the test scene should keep some voxels and drop others"
    assert torch.equal(m.alpha_mask.volume, ref)
    t = ref.nonzero().double() / (torch.tensor(res, dtype=torch.float64) - 1)
    kept = m.aabb[0] * (1 - t) + m.aabb[1] * t
    assert torch.allclose(box, torch.stack([kept.amin(0), kept.amax(0)]))
    # look-up: kept where any corner with a positive trilinear weight is occupied
    p = _points(40, seed=5)
    u = ((p - m.aabb[0]) / (m.aabb[1] - m.aabb[0]) * (torch.tensor(res) - 1)).tolist()
    want = []
    for q in u:
        corners = [(math.floor(q[0]) + dx, math.floor(q[1]) + dy, math.floor(q[2]) + dz)
                   for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)]
        want.append(any(
            c[0] < res[0] and c[1] < res[1] and c[2] < res[2] and bool(ref[c])
            and (1 - abs(q[0] - c[0])) * (1 - abs(q[1] - c[1])) * (1 - abs(q[2] - c[2])) > 0 for c in corners))
    assert m.alpha_mask.keep(p).tolist() == want
    # a second update at a finer grid only keeps what the first kept (TensoRF's compute_alpha)
    old = m.alpha_mask.keep
    first = m.alpha_mask.volume.clone()
    m.update_alpha_mask((7, 6, 5))
    assert torch.equal(m.alpha_mask.volume, _naive_mask(m, (7, 6, 5), old=lambda q, f=first: _old(f, res, m, q)))


def _old(volume: torch.Tensor, res, m: TensoRFBackbone, q: torch.Tensor) -> bool:
    """The first mask's look-up, again by corners."""
    u = ((q[0] - m.aabb[0]) / (m.aabb[1] - m.aabb[0]) * (torch.tensor(res) - 1)).tolist()
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                c = (math.floor(u[0]) + dx, math.floor(u[1]) + dy, math.floor(u[2]) + dz)
                wgt = (1 - abs(u[0] - c[0])) * (1 - abs(u[1] - c[1])) * (1 - abs(u[2] - c[2]))
                if all(c[d] < res[d] for d in range(3)) and wgt > 0 and bool(volume[c]):
                    return True
    return False


def test_empty_alpha_mask_keeps_everything():
    m = _backbone(scale=1e-3)  # sigma ~ softplus(-10): nothing passes a 0.05 threshold
    m.alpha_mask_threshold = 0.05
    box = m.update_alpha_mask((4, 4, 4))
    assert torch.equal(box, m.aabb) and bool(m.alpha_mask.volume.all())


def test_tv_and_l1_by_hand():
    vm = VMSplit((1, 2, 1), (3, 4, 2)).double()
    for i in range(3):
        vm.planes[i].data = torch.arange(vm.planes[i].numel(), dtype=torch.float64).reshape(vm.planes[i].shape) ** 1.5
        vm.lines[i].data = -torch.arange(vm.lines[i].numel(), dtype=torch.float64).reshape(vm.lines[i].shape) + 1
    tv = 0.0
    l1 = 0.0
    for i in range(3):
        p = vm.planes[i].detach()[0]
        c, h, w = p.shape
        sh = sum(float(p[k, y + 1, x] - p[k, y, x]) ** 2 for k in range(c) for y in range(h - 1) for x in range(w))
        sw = sum(float(p[k, y, x + 1] - p[k, y, x]) ** 2 for k in range(c) for y in range(h) for x in range(w - 1))
        tv += 1e-2 * 2 * (sh / (c * (h - 1) * w) + sw / (c * h * (w - 1)))
        line = vm.lines[i].detach().flatten().tolist()
        l1 += sum(abs(v) for v in p.flatten().tolist()) / p.numel() + sum(abs(v) for v in line) / len(line)
    assert math.isclose(float(vm.tv().detach()), tv, rel_tol=1e-12)
    assert math.isclose(float(vm.l1().detach()), l1, rel_tol=1e-12)
    m = _backbone()
    d, a = m.tv_loss()
    assert torch.equal(d, m.density.tv()) and torch.equal(a, m.app.tv()) and torch.equal(m.l1_loss(), m.density.l1())


def test_gradients_reach_planes_lines_and_basis_not_points():
    m = _backbone(scale=0.5)
    p = _points(20).requires_grad_(True)
    (m.density_features(p).square().sum() + m.app_features(p).square().sum()
     + m.l1_loss() + sum(m.tv_loss())).backward()
    for name, q in m.named_parameters():
        assert q.grad is not None and bool(q.grad.abs().sum() > 0), name
    assert p.grad is None


def test_checkpoint_round_trip_after_upsample_shrink_and_mask():
    m = _backbone(scale=2.5, seed=3, alpha_mask_threshold=0.05)
    m.upsample((8, 9, 10))
    m.shrink(m.update_alpha_mask((6, 5, 4)))
    fresh = _backbone(seed=9, alpha_mask_threshold=0.05)
    fresh.load_state_dict(m.state_dict())
    p = _points(30)
    assert fresh.resolution == m.resolution and torch.equal(fresh.aabb, m.aabb)
    assert torch.equal(fresh.density_features(p), m.density_features(p))
    assert torch.equal(fresh.app_features(p), m.app_features(p))
    assert torch.equal(fresh.alpha_mask.keep(p), m.alpha_mask.keep(p))


def test_schedule_helpers_against_tensorf_formulas():
    lego = torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]])
    assert n_to_reso(2097156, lego) == [128, 128, 128]  # TensoRF's 128^3 + 4 (a plain 128^3 floors to 127)
    flat = torch.tensor([[0.0, 0.0, 0.0], [2.0, 1.0, 1.0]])
    assert n_to_reso(2 * 16 ** 3 + 4, flat) == [32, 16, 16]
    assert n_samples_for([128, 128, 128], 0.5) == int(math.sqrt(3 * 128 ** 2) / 0.5)
    assert n_samples_for([128, 128, 128], 0.5, cap=100) == 100
    counts = upsampling_voxel_counts(2097156, 27_000_000, 5)
    r = (27_000_000 / 2097156) ** (1 / 5)
    assert counts == [round(2097156 * r ** k) for k in range(1, 6)] and counts[-1] == 27_000_000
    # TensoRF's loop: multiply by the factor after every step, reset to lr_init after an up-sampling step
    n, ups, lr0 = 50, [10, 20, 35], 0.02
    lr, tv = lr0, 1.0
    factor = 0.1 ** (1 / n)
    for step in range(n):
        tv *= factor
        assert math.isclose(tensorf_lr(step, lr0, ups, n), lr, rel_tol=1e-12), step
        assert math.isclose(tv_weight_at(step, 1.0, n), tv, rel_tol=1e-12), step
        lr *= factor
        if step in ups:
            lr = lr0


def test_sample_ray_steps_from_the_box_entry():
    box = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    o = torch.tensor([[-3.0, 0.2, 0.1], [0.0, 0.0, 0.0], [0.0, -5.0, 0.0]])
    d = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.3, 1.0, 0.0]]), dim=-1)
    pts, t, inside = sample_ray(o, d, box, 0.25, 12, near=0.5, far=6.0, jitter=torch.tensor([0.0, 0.5, 0.25]))
    t_enter = torch.tensor([2.0, 0.5, 4.0 / float(d[2, 1])])  # the second starts inside: clamped to near
    assert torch.allclose(t[:, 0], t_enter + 0.25 * torch.tensor([0.0, 0.5, 0.25]))
    assert torch.allclose(t[:, 1:] - t[:, :-1], torch.full((3, 11), 0.25))
    assert torch.allclose(pts, o[:, None] + d[:, None] * t[..., None])
    assert torch.equal(inside, ((pts >= -1) & (pts <= 1)).all(-1))
    assert inside[0, :9].all() and not inside[0, 9:].any()  # x = -1 .. 1 in 0.25 steps: 9 samples


def test_color_input_has_the_official_150_order():
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(4, 27, generator=g, dtype=torch.float64)
    view = F.normalize(torch.randn(4, 3, generator=g, dtype=torch.float64), dim=-1)
    x = tensorf_color_input(feat, view)
    assert x.shape == (4, 150)
    want = []
    for n in range(4):
        row = feat[n].tolist() + view[n].tolist()
        for fn in (math.sin, math.cos):  # PE(features): all sines (d slowest, then 2^k), then all cosines
            row += [fn(feat[n, d].item() * 2 ** k) for d in range(27) for k in range(2)]
        for fn in (math.sin, math.cos):
            row += [fn(view[n, d].item() * 2 ** k) for d in range(3) for k in range(2)]
        want.append(row)
    assert torch.allclose(x, torch.tensor(want, dtype=torch.float64), atol=1e-12)
    assert tensorf_pe(view, 0).shape == (4, 0)
    assert tensorf_color_input(feat, view, 0, 0).shape == (4, 30)


def test_weight_mask_and_official_condensing():
    g = torch.Generator().manual_seed(4)
    w = torch.rand(6, 9, generator=g) * 3e-4  # about a third below 1e-4
    w[2] = 5e-5  # a ray with no kept sample
    valid = torch.rand(6, 9, generator=g) > 0.2
    mask = tensorf_color_mask(w, valid)
    assert torch.equal(mask, (w > 1e-4) & valid)
    assert torch.equal(tensorf_color_mask(w), w > 1e-4)
    # the official condenser, per ray: kept samples at steps 0, 1, ... near -> far; empty rays dropped
    steps, rays, seq = [], [], 0
    for r in range(mask.shape[0]):
        kept = [s for s in range(mask.shape[1]) if mask[r, s]]
        if not kept:
            continue
        steps += list(range(len(kept)))
        rays += [seq] * len(kept)
        seq += 1
    info = pack_index(mask, "condensing")
    assert info.t_idx.tolist() == steps and info.b_idx.tolist() == rays
    assert info.num_sequences == seq and 2 not in info.ray_idx.tolist()
