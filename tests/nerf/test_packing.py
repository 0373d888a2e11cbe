"""Packing (ray-aligned time) vs a naive per-ray Python loop."""

from __future__ import annotations

import pytest
import torch

from nerf_reference import (  # tests/nerf is on sys.path
    pack,
    pack_condensing,
    pack_padding,
    scatter_valid,
    unpack,
    unpack_condensing,
    unpack_padding,
)
from spikenerf.nerf.packing import pack_index, tensor_density
from spikenerf.nerf.time_layout import condensed_rows, ragged_rows, time_buckets


def _data(R=7, S=9, C=3, p=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(R, S, C, generator=g)
    mask = torch.rand(R, S, generator=g) < p
    mask[2] = False  # one empty ray
    return x, mask


def _naive_padding(x, mask, flip):
    R, S, C = x.shape
    out = torch.zeros(S, R, C)
    for r in range(R):
        for s in range(S):
            if mask[r, s]:
                out[(S - 1 - s) if flip else s, r] = x[r, s]
    return out


def _naive_condensing(x, mask, flip):
    rays = [r for r in range(x.shape[0]) if mask[r].any()]
    seqs = [x[r][mask[r]] for r in rays]
    if flip:
        seqs = [q.flip(0) for q in seqs]
    t_max = max((len(q) for q in seqs), default=0)
    out = torch.zeros(t_max, len(rays), x.shape[-1])
    for b, q in enumerate(seqs):
        out[: len(q), b] = q
    return out, rays


@pytest.mark.parametrize("flip", [False, True])
def test_padding_matches_naive_and_roundtrips(flip):
    x, mask = _data()
    y, info = pack_padding(x, mask, flip)
    assert y.shape == (x.shape[1], x.shape[0], x.shape[2])
    torch.testing.assert_close(y, _naive_padding(x, mask, flip))
    back = unpack_padding(y, info)
    torch.testing.assert_close(back[mask], x[mask])
    assert (back[~mask] == 0).all()
    assert info.packed_mask.sum() == mask.sum()


@pytest.mark.parametrize("flip", [False, True])
def test_condensing_matches_naive_and_roundtrips(flip):
    x, mask = _data()
    y, info = pack_condensing(x, mask, flip)
    ref, rays = _naive_condensing(x, mask, flip)
    torch.testing.assert_close(y, ref)
    assert info.ray_idx.tolist() == rays
    back = unpack_condensing(y, info)
    torch.testing.assert_close(back[mask], x[mask])
    assert (back[~mask] == 0).all()
    assert tensor_density(info) >= tensor_density(pack_padding(x, mask)[1])


@pytest.mark.parametrize("flip", [False, True])
def test_padding_equals_condensing_without_masking(flip):
    x, _ = _data()
    mask = torch.ones(x.shape[:2], dtype=torch.bool)
    a, ia = pack(x, mask, "padding", flip)
    b, ib = pack(x, mask, "condensing", flip)
    torch.testing.assert_close(a, b)
    assert tensor_density(ia) == tensor_density(ib) == 1.0


def test_all_masked_and_gradients():
    x, _ = _data()
    mask = torch.zeros(x.shape[:2], dtype=torch.bool)
    y, info = pack_condensing(x, mask)
    assert y.shape == (0, 0, 3) and tensor_density(info) == 0.0
    assert (unpack(y, info) == 0).all()
    x, mask = _data()
    x.requires_grad_(True)
    y, info = pack_condensing(x, mask, flip=True)
    (unpack(y * 2, info)).sum().backward()
    torch.testing.assert_close(x.grad, 2.0 * mask[..., None].float().expand_as(x))


def test_bad_input():
    x, mask = _data()
    with pytest.raises(ValueError):
        pack(x, mask[:, :-1])
    with pytest.raises(TypeError):
        pack(x, mask.float())
    with pytest.raises(ValueError):
        pack(x, mask, mode="zigzag")


@pytest.mark.parametrize("flip", [False, True])
def test_padding_from_compacted_columns_keeps_every_hole(flip):
    """Rays whose empty space was dropped (columns packed left + each entry's sample index) pad exactly like
    the full lattice: the skipped samples are holes again."""

    gen = torch.Generator().manual_seed(21)
    R, S, C = 9, 17, 4
    mask = torch.rand(R, S, generator=gen) < 0.3
    mask[0, S - 1] = True  # so the last step exists in both layouts
    x = torch.randn(R, S, C, generator=gen)
    full, _ = pack_padding(x, mask, flip)
    counts = mask.sum(1)
    smax = int(counts.max())
    mask_c = torch.arange(smax)[None] < counts[:, None]
    index_c = torch.zeros(R, smax, dtype=torch.long)
    index_c[mask_c] = mask.nonzero(as_tuple=True)[1]
    info = pack_index(mask_c, "padding", flip, time_index=index_c)
    torch.testing.assert_close(scatter_valid(x[mask], info), full, rtol=0, atol=0)
    assert torch.equal(info.packed_mask, full.abs().sum(-1) > 0)


@pytest.mark.parametrize("mode", ["padding", "condensing"])
@pytest.mark.parametrize("groups", [1, 4, 200])
def test_time_buckets_equal_the_full_recurrence_on_valid_samples(mode, groups):
    """A LIF layer run per length group on the valid samples equals it on the whole packed layout."""
    from spikenerf.snn import LIFNode

    gen = torch.Generator().manual_seed(31)
    R, S, H = 70, 23, 5
    mask = torch.rand(R, S, generator=gen) < torch.rand(R, 1, generator=gen)  # very different ray lengths
    mask[3] = False
    info = pack_index(mask, mode)
    xv = (2.0 * torch.randn(int(mask.sum()), H, generator=gen)).requires_grad_(True)
    lif = LIFNode(tau=2.0, v_threshold=0.5)
    full = lif(scatter_valid(xv, info))[info.t_idx, info.b_idx]  # [N, H] the reference
    layout = time_buckets(info, groups)
    out = layout.apply(lif, xv)
    torch.testing.assert_close(out, full, rtol=0, atol=0)
    assert bool(full.detach().abs().sum() > 0)
    area = sum(s * w for s, w in zip(layout.steps, layout.widths))
    assert area <= info.packed_mask.numel() and (groups == 1 or area < info.packed_mask.numel())
    g = torch.randn_like(full)
    (ga,) = torch.autograd.grad((full * g).sum(), xv)
    (gb,) = torch.autograd.grad((out * g).sum(), xv)
    torch.testing.assert_close(gb, ga, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["padding", "condensing"])
@pytest.mark.parametrize("flip", [False, True])
def test_ragged_rows_equal_time_buckets(mode, flip):
    """Inference in place (rows) gives the spikes of the training layout (time blocks), bit for bit."""
    from spikenerf.snn import LIFNode

    gen = torch.Generator().manual_seed(37)
    R, S, H = 60, 19, 5
    mask = torch.rand(R, S, generator=gen) < torch.rand(R, 1, generator=gen)
    mask[5] = False
    info = pack_index(mask, mode, flip)
    xv = 2.0 * torch.randn(int(mask.sum()), H, generator=gen)
    lif = LIFNode(tau=2.0, v_threshold=0.5)
    rows = ragged_rows(info)
    assert rows.starts[-1] == xv.shape[0] and rows.reverse == flip
    out = lif.forward_ragged(xv, rows.starts, rows.steps, rows.reverse)
    ref = time_buckets(info).apply(lif, xv)
    assert torch.equal(out, ref) and bool(ref.sum() > 0)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_condensed_rows_equal_the_packed_layout(flip, seed):
    """Inference's shortcut gives the rows and tensor density of ``pack_index(mask, "condensing")``, and the
    rows are those of the naive condensing loop (each ray's valid samples, from step 0, empty rays dropped)."""

    gen = torch.Generator().manual_seed(seed)
    R, S = 1 + seed * 9, 1 + seed * 5
    mask = torch.rand(R, S, generator=gen) < torch.rand(R, 1, generator=gen)
    if seed == 0:
        mask[:] = False  # nothing valid: no sequence, density 0
    info = pack_index(mask, "condensing", flip)
    rows = condensed_rows(mask, flip)
    density = rows.density
    ref = ragged_rows(info)
    assert torch.equal(rows.starts, ref.starts) and torch.equal(rows.steps, ref.steps) and rows.reverse == flip
    assert float(density) == pytest.approx(float(tensor_density(info)))
    lengths = [int(c) for c in mask.sum(1) if c > 0]
    naive = [t if not flip else n - 1 - t for n in lengths for t in range(n)]
    assert rows.steps.tolist() == naive and rows.starts.tolist() == [sum(lengths[:i]) for i in range(len(lengths) + 1)]


@pytest.mark.parametrize("mode,flip", [("padding", False), ("condensing", False), ("condensing", True)])
@pytest.mark.parametrize("block", [1 << 14, 7])  # one block, or many blocks of whole rays
@pytest.mark.parametrize("neuron", [dict(reset="hard"), {},
                                    dict(neuron="plif", reset="soft", surrogate="sigmoid", detach_reset=True,
                                         threshold="learnable")])
def test_field_in_place_equals_time_blocks(mode, flip, block, neuron):
    """The in-place paths (inference: ragged rows in blocks; training, condensing: segments with gradients)
    give the colours, spike counts and parameter gradients of the time blocks (``in_place=False``), for the
    paper's hard-reset LIF, the soft-reset default and the other colour-neuron options (learned tau and
    threshold: their gradients too)."""
    from spikenerf.nerf.field import SpikingNeRFField

    box = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    f = SpikingNeRFField(box, (6, 6, 6), feature_channels=4, hidden_dim=8, dir_freqs=1, pack_mode=mode, flip=flip,
                         **neuron)
    f.rows_per_block = block
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        f.feature_grid.grid.copy_(torch.randn(f.feature_grid.grid.shape, generator=gen))
        f.fc1.weight.mul_(8.0)
        f.fc2.weight.mul_(8.0)
    R, S = 40, 15
    xyz = torch.rand(R, S, 3, generator=gen)
    dirs = torch.nn.functional.normalize(torch.randn(R, 3, generator=gen), dim=-1)
    mask = torch.rand(R, S, generator=gen) < 0.5
    w = torch.randn(R, S, 3, generator=gen)
    res, density = {}, {}
    for in_place in (True, False):
        f.in_place = in_place
        with torch.no_grad():
            rgb_eval, st_eval = f.color(xyz, dirs, mask)
        f.zero_grad()
        rgb, st = f.color(xyz, dirs, mask)
        (rgb * w).sum().backward()
        grads = [p.grad.clone() for p in (f.fc1.weight, f.fc2.weight, f.fc3.weight, f.feature_grid.grid,
                                          *f.lif1.parameters(), *f.lif2.parameters())]
        res[in_place] = (rgb_eval, st_eval.ray_spikes, rgb.detach(), st.ray_spikes, grads)
        density[in_place] = float(st_eval.tensor_density)
    (e1, k1, r1, t1, g1), (e0, k0, r0, t0, g0) = res[True], res[False]
    assert density[True] == pytest.approx(density[False])
    # spikes exactly; colours to float rounding: the read-out GEMM sees the rows in other blocks, and MKL's
    # kernel choice (by shape and address alignment) can move a sum by an ulp from one run to the next
    assert torch.equal(k1, k0) and torch.equal(t1, t0) and float(k1.sum()) > 0
    torch.testing.assert_close(e1, e0, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(r1, r0, rtol=1e-6, atol=1e-6)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert float(g1[0].abs().sum()) > 0
    learned = (neuron.get("neuron") == "plif") + (neuron.get("threshold") == "learnable")
    assert len(g1) == 4 + 2 * learned  # PLIF's 1/tau and the threshold, per layer
    assert all(float(g.abs().sum()) > 0 for g in g1[4:])


def test_ragged_blocks_cover_every_row_once_and_never_split_a_sequence():

    mask = torch.rand(50, 12, generator=torch.Generator().manual_seed(8)) < 0.4
    mask[:4] = False  # empty rays at the start
    rows = ragged_rows(pack_index(mask, "padding"))
    bounds = set(rows.starts.tolist())
    got = []
    for r0, r1, blk in rows.blocks(10):
        assert r0 in bounds and r1 in bounds and blk.starts[0] == 0 and blk.starts[-1] == r1 - r0
        assert torch.equal(blk.steps, rows.steps[r0:r1])
        got.append((r0, r1))
    assert got[0][0] == 0 and got[-1][1] == int(mask.sum())
    assert all(a[1] == b[0] for a, b in zip(got, got[1:])) and len(got) > 3
