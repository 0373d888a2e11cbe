"""SpikingNeRF-T's render step (spikenerf/nerf/tensorf_render.py) against a per-ray loop of TensoRF's
``forward``, and TensoRF's lego / flower schedules against their config values and ``train.py``'s rules."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from spikenerf.nerf.tensorf import TensoRFBackbone, tensorf_color_input
from spikenerf.nerf.tensorf_render import LEGO, LLFF, render_tensorf

BOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], dtype=torch.float64)


def _scene() -> TensoRFBackbone:
    torch.manual_seed(0)
    m = TensoRFBackbone(BOX, (9, 9, 9), (2, 2, 2), (2, 2, 2), app_dim=27, init_scale=2.0,
                        alpha_mask_threshold=0.02).double()
    m.update_alpha_mask((5, 5, 5))
    return m


def _rays(n: int = 7):
    g = torch.Generator().manual_seed(2)
    o = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.3 + torch.tensor([0.0, 0.0, -3.0],
                                                                                   dtype=torch.float64)
    d = F.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.3
                    + torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), dim=-1)
    return o, d, torch.rand(n, generator=g, dtype=torch.float64)


@torch.no_grad()
def test_render_against_a_per_ray_loop():
    m = _scene()
    o, d, jit = _rays()
    lin = torch.randn(150, 3, dtype=torch.float64)
    seen = {}

    def color(x, keep):
        seen["x"], seen["keep"] = x, keep
        return torch.sigmoid(x @ lin)

    bg = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    n = m.n_samples
    out = render_tensorf(m, color, o, d, 0.5, 6.0, n, bg, jitter=jit)
    step = m.step_size
    for r in range(o.shape[0]):
        t_in = max(min((float(BOX[0, a]) - float(o[r, a])) / float(d[r, a]),
                       (float(BOX[1, a]) - float(o[r, a])) / float(d[r, a])) for a in range(3))
        t_in = min(max(t_in, 0.5), 6.0)
        trans, rgb, acc, kept = 1.0, torch.zeros(3, dtype=torch.float64), 0.0, []
        for s in range(n):
            t = t_in + step * (s + float(jit[r]))
            assert math.isclose(float(out.t[r, s]), t, rel_tol=1e-9, abs_tol=1e-9)
            q = o[r] + d[r] * t
            inside = bool(((q >= BOX[0]) & (q <= BOX[1])).all())
            sigma = 0.0
            if inside and bool(m.alpha_mask.keep(q[None])[0]):
                sigma = float(torch.log1p(torch.exp(m.density_features(q[None]) - 10.0))[0])
            dist = step if s < n - 1 else 0.0  # TensoRF: the last sample's distance is 0
            alpha = 1.0 - math.exp(-sigma * dist * 25.0)
            w = alpha * trans
            trans *= 1.0 - alpha + 1e-10
            acc += w
            assert math.isclose(float(out.weights[r, s]), w, rel_tol=1e-8, abs_tol=1e-12)
            if w > 1e-4:
                kept.append(s)
                x = tensorf_color_input(m.app_features(q[None]), d[r][None])
                rgb = rgb + w * torch.sigmoid(x @ lin)[0]
        assert out.keep[r].nonzero().flatten().tolist() == kept
        assert torch.allclose(out.rgb[r], rgb + (1.0 - acc) * bg, atol=1e-9)
        assert math.isclose(float(out.accumulation[r]), acc, rel_tol=1e-9, abs_tol=1e-12)
    assert 0 < int(out.keep.sum()) < out.keep.numel(), "the scene should keep some samples and drop others"
    # the colour net got the kept samples in the row-major order of keep (each ray near -> far)
    assert torch.equal(seen["keep"], out.keep) and seen["x"].shape == (int(out.keep.sum()), 150)


def test_render_gradients_reach_backbone_and_color_net():
    m = _scene()
    o, d, jit = _rays()
    lin = torch.randn(150, 3, dtype=torch.float64, requires_grad=True)
    out = render_tensorf(m, lambda x, keep: torch.sigmoid(x @ lin), o, d, 0.5, 6.0, m.n_samples,
                         torch.zeros(3, dtype=torch.float64), jitter=jit)
    out.rgb.sum().backward()
    assert lin.grad is not None and bool(lin.grad.abs().sum() > 0)
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in m.parameters())


def test_lego_and_llff_schedules():
    lego = torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]])
    assert LEGO.resolution_after(0, lego) == [128, 128, 128]
    assert all(299 <= r <= 300 for r in LEGO.resolution_after(7000, lego))  # N_to_reso floors 300 - eps
    assert LEGO.resolution_after(2999, lego) == LEGO.resolution_after(2000, lego) != [128, 128, 128]
    counts = LEGO.voxel_counts()
    assert len(counts) == 5 and counts[-1] == 300 ** 3 and counts == sorted(counts)
    assert LEGO.lr(0, grid=True) == 0.02 and LEGO.lr(0, grid=False) == 1e-3
    assert math.isclose(LEGO.lr(2001, grid=True), 0.02)  # reset after the up-sampling at step 2000
    assert math.isclose(LEGO.lr(29999, grid=True), 0.02 * 0.1 ** ((29999 - 7001) / 30000))
    assert LEGO.l1_weight(2000) == 8e-5 and LEGO.l1_weight(2001) == 4e-5
    assert LEGO.tv_weights(100) == (0.0, 0.0)
    d, a = LLFF.tv_weights(0)
    assert math.isclose(d, 0.1 ** (1 / 25000)) and d == a
    assert LLFF.ndc and LLFF.activation == "relu" and LLFF.density_components == (16, 4, 4)
    assert LEGO.mask_resolution([200, 200, 200], [128] * 3) == [200, 200, 200]
    assert LEGO.mask_resolution([300, 300, 300], [253] * 3) == [253, 253, 253]
