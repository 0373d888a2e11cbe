"""The grids' optimisers: DVGO's masked Adam against a naive per-entry loop, Adam, and a resume."""

from __future__ import annotations

import io
import math

import pytest
import torch

from spikenerf.nerf.grid import DenseGrid
from spikenerf.nerf.optim import (GridAdamOptimizerConfig, MaskedAdam, _KERNEL, masked_adam_,
                                  masked_adam_reference_)


def _naive(p, grads, lr, b1, b2, eps):
    """DVGO's masked Adam, one Python float (double) at a time, over a list of gradients."""
    p = [float(x) for x in p]
    m, v = [0.0] * len(p), [0.0] * len(p)
    for t, g in enumerate(grads, start=1):
        step_size = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        for i, gi in enumerate(g.tolist()):
            if gi == 0.0:
                continue
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            p[i] -= step_size * m[i] / (math.sqrt(v[i]) + eps)
    return torch.tensor(p), torch.tensor(m), torch.tensor(v)


def _sparse_grads(n, steps, keep, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=gen) * (torch.rand(n, generator=gen) < keep) for _ in range(steps)]


@pytest.mark.parametrize("kernel", ["c", "torch"])
def test_masked_adam_step_equals_naive_loop(kernel):
    if kernel == "c" and _KERNEL.load() is None:
        pytest.skip("no C compiler")
    n, lr, b1, b2, eps = 257, 0.1, 0.9, 0.99, 1e-8
    p0 = torch.randn(n, generator=torch.Generator().manual_seed(1))
    grads = _sparse_grads(n, 6, keep=0.3)
    grads[0][:5] = 0.0  # entries 0-4 first seen at a later step
    p, m, v = p0.clone(), torch.zeros(n), torch.zeros(n)
    step = masked_adam_ if kernel == "c" else masked_adam_reference_
    for t, g in enumerate(grads, start=1):
        step(p, g, m, v, b1, b2, lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t), eps)
    ref_p, ref_m, ref_v = _naive(p0, grads, lr, b1, b2, eps)
    torch.testing.assert_close(p, ref_p, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m, ref_m, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(v, ref_v, rtol=1e-5, atol=1e-9)
    never = torch.stack(grads).eq(0).all(0)
    assert never.any() and torch.equal(p[never], p0[never])  # untouched entries: bit for bit
    assert torch.equal(m[never], torch.zeros(int(never.sum())))


def test_c_kernel_equals_torch_reference():
    if _KERNEL.load() is None:
        pytest.skip("no C compiler")
    n = 100_003  # past one OpenMP chunk per thread
    gen = torch.Generator().manual_seed(2)
    tensors = [torch.randn(n, generator=gen) for _ in range(3)]
    tensors[2] = tensors[2].abs()
    g = torch.randn(n, generator=gen) * (torch.rand(n, generator=gen) < 0.05)
    a = [t.clone() for t in tensors]
    b = [t.clone() for t in tensors]
    masked_adam_(a[0], g, a[1], a[2], 0.9, 0.99, 0.05, 1e-15)
    masked_adam_reference_(b[0], g, b[1], b[2], 0.9, 0.99, 0.05, 1e-15)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=2e-6, atol=1e-7)
        assert torch.equal(x[g == 0], y[g == 0])


def test_dense_gradients_equal_torch_adam():
    """With no zero gradient, masked Adam is Adam (eps on sqrt(v) vs on the corrected sqrt(v): negligible)."""
    w0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(3))
    target = torch.randn(64, 3, generator=torch.Generator().manual_seed(4))
    out = []
    for cls in (MaskedAdam, torch.optim.Adam):
        w = torch.nn.Parameter(w0.clone())
        opt = cls([w], lr=0.01, betas=(0.9, 0.99), eps=1e-15)
        for _ in range(20):
            opt.zero_grad()
            ((w - target) ** 3).abs().sum().backward()
            opt.step()
        out.append(w.detach())
    torch.testing.assert_close(out[0], out[1], rtol=1e-5, atol=1e-6)


def test_grid_vertices_no_ray_reached_stay_put():
    """Step 1 reads one corner of the box, step 2 the opposite one: at step 2 masked Adam leaves the first
    corner's vertices where step 1 put them; Adam keeps moving them on their momentum (what DVGO avoids)."""
    aabb = torch.tensor([[0.0, 0, 0], [1, 1, 1]])
    gen = torch.Generator().manual_seed(6)
    corner_a, corner_b = torch.rand(20, 3, generator=gen) * 0.2, 0.8 + torch.rand(20, 3, generator=gen) * 0.2
    moved_at_2 = {}
    for name, cls in (("masked", MaskedAdam), ("adam", torch.optim.Adam)):
        grid = DenseGrid(4, (9, 9, 9), aabb)
        with torch.no_grad():
            grid.grid.copy_(torch.randn(9, 9, 9, 4, generator=torch.Generator().manual_seed(7)))
        opt = cls(grid.parameters(), lr=0.1)
        touched = []
        for pts in (corner_a, corner_b):
            before = grid.grid.detach().clone()
            opt.zero_grad()
            grid(pts).square().sum().backward()
            touched.append(grid.grid.grad.ne(0))
            opt.step()
        moved_at_2[name] = grid.grid.detach().ne(before)
    only_a = touched[0] & ~touched[1]
    assert only_a.any() and not (touched[0] & touched[1]).any()
    assert torch.equal(moved_at_2["masked"], touched[1])  # exactly the vertices step 2's points reached
    assert moved_at_2["adam"][only_a].all()  # Adam: step 1's vertices drift on


def test_state_dict_resume_equals_uninterrupted():
    grads = _sparse_grads(50, 6, keep=0.5, seed=5)

    def run(p, opt, gs):
        for g in gs:
            p.grad = g.clone()
            opt.step()

    p = torch.nn.Parameter(torch.zeros(50))
    opt = MaskedAdam([p], lr=0.1)
    run(p, opt, grads)

    q = torch.nn.Parameter(torch.zeros(50))
    opt_q = MaskedAdam([q], lr=0.1)
    run(q, opt_q, grads[:3])
    buf = io.BytesIO()
    torch.save({"p": q.detach(), "opt": opt_q.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    r = torch.nn.Parameter(saved["p"].clone())
    opt_r = MaskedAdam([r], lr=0.1)
    opt_r.load_state_dict(saved["opt"])
    run(r, opt_r, grads[3:])
    assert torch.equal(r.detach(), p.detach())


def test_config_builds_either_optimiser_and_rejects_bad_values():
    w = [torch.nn.Parameter(torch.zeros(3))]
    masked = GridAdamOptimizerConfig(lr=0.1, eps=1e-15, masked=True, betas=(0.9, 0.99)).setup(w)
    assert isinstance(masked, MaskedAdam) and masked.defaults["betas"] == (0.9, 0.99)
    plain = GridAdamOptimizerConfig(lr=0.1, eps=1e-15).setup(w)
    assert type(plain) is torch.optim.Adam and plain.defaults["fused"] and plain.defaults["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="betas"):
        MaskedAdam(w, betas=(0.9, 1.0))
