"""The C trilinear look-up (spikenerf/nerf/csrc/grid.c) against grid_sample and a naive per-point loop."""

from __future__ import annotations

import pytest
import torch

from spikenerf.nerf.grid import DenseGrid, c_grid_available, trilinear, trilinear_reference

needs_c = pytest.mark.skipif(not c_grid_available(), reason="no C compiler: the grid_sample fallback is used")

AABB = torch.tensor([[-1.0, -0.5, -2.0], [1.5, 1.0, 2.0]])


def _points(n: int, gen: torch.Generator) -> torch.Tensor:
    """Points inside, outside, exactly on the faces and on the corners of AABB."""
    lo, hi = AABB
    inside = lo + (hi - lo) * torch.rand(n, 3, generator=gen)
    outside = lo - 0.3 + (hi - lo + 0.6) * torch.rand(n // 2, 3, generator=gen)
    faces = inside[: n // 4].clone()
    faces[:, 0] = hi[0]
    faces[n // 8:, 2] = lo[2]
    corners = torch.stack([lo, hi, torch.stack([lo[0], hi[1], lo[2]])])
    return torch.cat([inside, outside, faces, corners])


def _naive(grid: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Trilinear interpolation written out per point (float64), zero outside."""
    X, Y, Z, C = grid.shape
    res = torch.tensor([X, Y, Z], dtype=torch.float64)
    lo, hi = AABB.double()
    out = torch.zeros(p.shape[0], C, dtype=torch.float64)
    for n, q in enumerate(p.double()):
        u = (q - lo) / (hi - lo) * (res - 1)
        if (u < 0).any() or (u > res - 1).any():
            continue
        i0 = torch.minimum(u.floor(), res - 2).long()
        f = u - i0
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    w = ((f[0] if dx else 1 - f[0]) * (f[1] if dy else 1 - f[1]) * (f[2] if dz else 1 - f[2]))
                    out[n] += w * grid[i0[0] + dx, i0[1] + dy, i0[2] + dz].double()
    return out


@needs_c
@pytest.mark.parametrize("shape", [(5, 4, 7, 1), (9, 6, 11, 12), (2, 2, 2, 3)])
def test_forward_matches_grid_sample_and_naive_loop(shape):
    gen = torch.Generator().manual_seed(sum(shape))
    grid = torch.randn(*shape, generator=gen)
    p = _points(64, gen)
    out = trilinear(grid, p, AABB)
    torch.testing.assert_close(out, trilinear_reference(grid, p, AABB), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.double(), _naive(grid, p), rtol=1e-5, atol=1e-5)
    assert (out[64:96].abs().sum(1) == 0).sum() > 0  # some outside points read exactly zero


@needs_c
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_backward_matches_grid_sample(threads):
    gen = torch.Generator().manual_seed(7)
    grid = torch.randn(9, 6, 11, 12, generator=gen)
    p = _points(500, gen)
    gout = torch.randn(p.shape[0], 12, generator=gen)
    g1 = grid.clone().requires_grad_(True)
    g2 = grid.clone().requires_grad_(True)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        (trilinear(g1, p, AABB) * gout).sum().backward()
    finally:
        torch.set_num_threads(before)
    (trilinear_reference(g2, p, AABB) * gout).sum().backward()
    torch.testing.assert_close(g1.grad, g2.grad, rtol=1e-4, atol=1e-5)


@needs_c
def test_backward_is_the_adjoint_in_float64():
    """<lookup(G), g> = <G, lookup^T(g)>: the C backward is exactly the transpose of the C forward."""
    gen = torch.Generator().manual_seed(3)
    grid = torch.randn(6, 5, 4, 2, generator=gen, requires_grad=True)
    p = _points(40, gen)
    gout = torch.randn(p.shape[0], 2, generator=gen)
    (trilinear(grid, p, AABB) * gout).sum().backward()
    lhs = (_naive(grid.detach(), p) * gout.double()).sum()
    rhs = (grid.detach().double() * grid.grad.double()).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-5, atol=1e-5)


def test_fallback_paths_agree():
    """float64 and positions that need a gradient go through grid_sample, with the same numbers."""
    gen = torch.Generator().manual_seed(1)
    grid = torch.randn(5, 4, 7, 3, generator=gen)
    p = _points(32, gen)
    ref = trilinear_reference(grid, p, AABB)
    torch.testing.assert_close(trilinear(grid.double(), p.double(), AABB.double()).float(), ref,
                               rtol=1e-5, atol=1e-5)
    pg = p.clone().requires_grad_(True)
    out = trilinear(grid, pg, AABB)
    out.sum().backward()
    assert pg.grad is not None
    torch.testing.assert_close(out.detach(), ref, rtol=1e-5, atol=1e-5)


def test_dense_grid_scale_and_tv():
    """Up-scaling 3 -> 5 vertices halves every cell; a cell-wise trilinear field is reproduced exactly."""
    gen = torch.Generator().manual_seed(5)
    g = DenseGrid(2, (3, 3, 3), AABB)
    with torch.no_grad():
        g.grid.copy_(torch.randn(3, 3, 3, 2, generator=gen))
    lo, hi = AABB
    p = lo + (hi - lo) * torch.rand(50, 3, generator=gen)
    before = g(p)
    g.scale_to((5, 5, 5))
    assert g.resolution == (5, 5, 5) and g.grid.shape == (5, 5, 5, 2)
    assert isinstance(g.grid, torch.nn.Parameter)
    torch.testing.assert_close(g(p), before, rtol=1e-5, atol=1e-5)
    flat = DenseGrid(1, (4, 4, 4), AABB)
    assert float(flat.total_variation().detach()) == 0.0
    with torch.no_grad():
        flat.grid[2] = 0.5  # one x-slab raised: only the 2 x 16 x differences of the slab's faces are non-zero
    assert float(flat.total_variation().detach()) == pytest.approx(32 * 0.5 * 0.5 ** 2, rel=1e-6)
    with torch.no_grad():
        flat.grid[2] = 3.0  # beyond the Huber knee: |d| - 1/2 per pair
    assert float(flat.total_variation().detach()) == pytest.approx(32 * 2.5, rel=1e-6)
    # DVGO's per-vertex gradient: sum over the 6 neighbours of clamp(v - v_n, -1, 1), by hand
    with torch.no_grad():
        flat.grid.copy_(torch.randn(4, 4, 4, 1, generator=gen) * 1.5)
    flat.grid.grad = None
    flat.total_variation().backward()
    v = flat.grid.detach()[..., 0]
    want = torch.zeros_like(v)
    for dim in range(3):
        for shift in (1, -1):
            nb = torch.roll(v, shift, dims=dim)
            edge = [slice(None)] * 3
            edge[dim] = 0 if shift == 1 else -1  # roll wraps around: no neighbour there
            term = (v - nb).clamp(-1, 1)
            term[tuple(edge)] = 0
            want += term
    torch.testing.assert_close(flat.grid.grad[..., 0], want)


# ----------------------------------------------------------------------------- ray marching
def _rays(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays from a sphere of cameras around AABB towards random points near it (some miss the box)."""
    centre = AABB.mean(0)
    o = torch.randn(n, 3, generator=gen)
    o = centre + 4.0 * o / o.norm(dim=-1, keepdim=True)
    target = centre + 1.5 * (torch.rand(n, 3, generator=gen) - 0.5) * (AABB[1] - AABB[0])
    d = target - o
    d = d / d.norm(dim=-1, keepdim=True)
    d[:3] = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])  # axis-aligned: inf slabs
    o[:3] = centre - 3.0 * d[:3]
    return o, d


@needs_c
@pytest.mark.parametrize("with_occupancy", [False, True])
def test_march_matches_torch_reference(with_occupancy):
    from spikenerf.nerf.grid import march, march_reference

    gen = torch.Generator().manual_seed(11)
    o, d = _rays(300, gen)
    occ = (torch.rand(7, 5, 9, generator=gen) < 0.3) if with_occupancy else None
    step, S = 0.05, 200
    ref = march_reference(o, d, AABB, step, S, 0.05, occ)
    out = march(o, d, AABB, step, S, 0.05, occ)
    assert out.t.shape == ref.t.shape
    assert torch.equal(out.valid, ref.valid) and torch.equal(out.index, ref.index)
    torch.testing.assert_close(out.t, ref.t, rtol=0, atol=0)
    assert 0 < int(out.valid.sum()) < out.valid.numel()
    assert not out.valid[~out.valid.any(1)].any()


@needs_c
@pytest.mark.parametrize("guess", [None, 1, 3, 10_000])
def test_one_pass_march_keeps_the_samples_whatever_the_width_guess(monkeypatch, guess):
    """No guess (first call: count, then fill), too small (the second pass at the exact width), large (one
    pass, the layout cut to the longest ray): the samples of the torch reference, bit for bit, at every guess,
    for both marchers; each call leaves the next one a guess at least as wide as its own rays."""
    from spikenerf.nerf import grid
    from spikenerf.nerf.grid import march, march_contracted, march_contracted_reference, march_reference

    gen = torch.Generator().manual_seed(23)
    occ = torch.rand(7, 5, 9, generator=gen) < 0.4
    o, d = _rays(200, gen)
    box = torch.tensor([[-0.6, -0.4, -0.5], [0.7, 0.3, 0.5]])
    cases = [(lambda: march(o, d, AABB, 0.05, 200, 0.05, occ), march_reference(o, d, AABB, 0.05, 200, 0.05, occ),
              "march"),
             (lambda: march_contracted(0.1 * o, d, box, 0.5, 0.02, 0.02, occ),
              march_contracted_reference(0.1 * o, d, box, 0.5, 0.02, 0.02, occ), "march_contracted")]
    for call, ref, name in cases:
        monkeypatch.setattr(grid, "_march_width", {} if guess is None else {name: guess})
        out = call()
        assert out.t.shape == ref.t.shape and out.t.is_contiguous()
        assert torch.equal(out.valid, ref.valid) and torch.equal(out.index, ref.index) and torch.equal(out.t, ref.t)
        assert grid._march_width[name] > ref.t.shape[1] > 3


def test_march_reference_against_a_per_ray_loop():
    """Each ray keeps exactly the lattice samples inside the box (and occupied), in order."""
    from spikenerf.nerf.grid import march_reference, occupied

    gen = torch.Generator().manual_seed(12)
    o, d = _rays(40, gen)
    occ = torch.rand(6, 6, 6, generator=gen) < 0.5
    step, S = 0.07, 120
    out = march_reference(o, d, AABB, step, S, 0.05, occ)
    for r in range(o.shape[0]):
        kept = []
        for s in range(S):
            lo_t = ((AABB - o[r]) / torch.where(d[r].abs() < 1e-9, torch.full_like(d[r], 1e-9), d[r]))
            near = max(float(lo_t.min(0).values.max()), 0.05)
            far = float(lo_t.max(0).values.min())
            t = near + step * s
            if not (t < far and far > near):
                continue
            if bool(occupied(occ, (o[r] + d[r] * t)[None], AABB)[0]):
                kept.append(s)
        got = out.index[r][out.valid[r]].tolist()
        assert got == kept, r


def _sparse_cache(shape: tuple[int, int, int], gen: torch.Generator) -> torch.Tensor:
    """A cache that is empty but for a few blobs and lone vertices, some on block edges (SKIP_BLOCK = 8): most
    blocks are empty, so the C marchers skip a lot, and many rays graze a set vertex right past a block."""
    occ = torch.zeros(shape, dtype=torch.bool)
    occ[10:14, 5:9, 20:27] = True
    occ[7, 8, 15] = occ[8, 7, 16] = occ[15, 0, 0] = occ[0, 16, 31] = True
    idx = [torch.randint(0, n, (12,), generator=gen) for n in shape]
    occ[idx[0], idx[1], idx[2]] = True
    return occ


@needs_c
def test_occupancy_blocks_mark_each_block_and_its_shell():
    """Block (i, j, k) is set iff a vertex of [8i - 1, 8i + 8] x ... (clamped) is set: a max-pool by hand."""
    from spikenerf.nerf.grid import SKIP_BLOCK, _c_occupancy

    occ = _sparse_cache((30, 17, 40), torch.Generator().manual_seed(3))
    _, blk = _c_occupancy(occ)
    B = SKIP_BLOCK
    want = torch.zeros(blk.shape, dtype=torch.bool)
    for i in range(blk.shape[0]):
        for j in range(blk.shape[1]):
            for k in range(blk.shape[2]):
                want[i, j, k] = occ[max(0, B * i - 1):B * i + B + 1, max(0, B * j - 1):B * j + B + 1,
                                    max(0, B * k - 1):B * k + B + 1].any()
    assert torch.equal(blk.bool(), want) and 0 < int(want.sum()) < want.numel()


@needs_c
def test_empty_space_skipping_keeps_exactly_the_samples_of_every_step():
    """Jumping over empty blocks (bounded and contracted marchers) keeps the samples, indices and distances of
    the step-by-step C loop and of the torch reference, bit for bit, on rays that graze lone set vertices."""
    from spikenerf.nerf.grid import march, march_contracted, march_contracted_reference, march_reference

    gen = torch.Generator().manual_seed(5)
    occ = _sparse_cache((30, 17, 40), gen)
    o, d = _rays(3000, gen)
    for step in (0.013, 0.05):
        ref = march_reference(o, d, AABB, step, 600, 0.05, occ)
        slow = march(o, d, AABB, step, 600, 0.05, occ, skip_empty=False)
        fast = march(o, d, AABB, step, 600, 0.05, occ)
        for m in (slow, fast):
            assert torch.equal(m.valid, ref.valid) and torch.equal(m.index, ref.index) and torch.equal(m.t, ref.t)
        assert int(ref.valid.sum()) > 100
    box = torch.tensor([[-0.6, -0.4, -0.5], [0.7, 0.3, 0.5]])
    oc = 0.2 * torch.randn(2000, 3, generator=gen)  # cameras inside the inner box, as in a real capture
    dc = torch.nn.functional.normalize(torch.randn(2000, 3, generator=gen), dim=-1)
    ref = march_contracted_reference(oc, dc, box, 0.5, 0.011, 0.02, occ)
    slow = march_contracted(oc, dc, box, 0.5, 0.011, 0.02, occ, skip_empty=False)
    fast = march_contracted(oc, dc, box, 0.5, 0.011, 0.02, occ)
    for m in (slow, fast):
        assert torch.equal(m.valid, ref.valid) and torch.equal(m.index, ref.index) and torch.equal(m.t, ref.t)
    assert int(ref.valid.sum()) > 100
