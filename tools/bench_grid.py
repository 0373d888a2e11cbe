"""Benchmark the voxel-grid hot spots of SpikingNeRF: trilinear look-up (forward + backward) and ray marching.

Side by side in one run, same inputs:
- look-up: ``spikenerf.nerf.grid.trilinear`` (C kernel, channels last) vs ``F.grid_sample`` (PyTorch's CPU
  kernel, channels first, the usual NeRF-on-PyTorch way) on a 13-channel grid (DVGO's density + 12 features);
- marching: ``grid.march`` (C, returns only the kept samples) vs ``grid.march_reference`` (the same in torch:
  the full ``[R, S]`` lattice, then the occupancy test and packing);
- the optimiser step on the grid: DVGO's masked Adam (``spikenerf.nerf.optim.MaskedAdam``, C) vs torch's
  fused Adam, on the gradient of ``--step-points`` look-ups (a fine-stage batch: 2,048 rays x ~100 samples).

    .venv/bin/python tools/bench_grid.py --resolution 160 --points 1000000
"""

from __future__ import annotations

import argparse
import time

import torch

from spikenerf.snn.process import configure_process
from spikenerf.nerf.grid import c_grid_available, march, march_reference, trilinear, trilinear_reference
from spikenerf.nerf.optim import MaskedAdam, masked_adam_reference_


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up (and C compile on first use)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    configure_process()  # the project's OpenMP wait / allocator policy, as its commands run
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=160)
    ap.add_argument("--channels", type=int, default=13)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--rays", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--step-points", type=int, default=200_000, help="look-ups whose gradient the optimisers step on")
    args = ap.parse_args()
    if not c_grid_available():
        raise SystemExit("the C grid kernel is not available here (no C compiler?)")
    torch.manual_seed(0)
    n, r, c = args.points, args.resolution, args.channels
    aabb = torch.tensor([[-1.5] * 3, [1.5] * 3])
    grid = torch.randn(r, r, r, c)
    # points along rays, as a renderer produces them (spatially coherent), all inside the box
    rays = max(1, n // 256)
    o = (torch.rand(rays, 3) * 2 - 1) * 1.4
    d = torch.nn.functional.normalize(torch.randn(rays, 3), dim=-1)
    xyz = (o[:, None] + d[:, None] * torch.linspace(0, 1.2, 256)[None, :, None]).reshape(-1, 3)[:n]
    xyz = xyz.clamp(-1.49, 1.49)
    gout = torch.randn(xyz.shape[0], c)

    grid_param = grid.clone().requires_grad_(True)

    def fwd_bwd(fn):
        def run():
            grid_param.grad = None
            (fn(grid_param, xyz, aabb) * gout).sum().backward()
        return run

    with torch.no_grad():
        t_f_c = best_of(lambda: trilinear(grid, xyz, aabb), args.repeats)
        t_f_t = best_of(lambda: trilinear_reference(grid, xyz, aabb), args.repeats)
    t_fb_c = best_of(fwd_bwd(trilinear), args.repeats)
    t_fb_t = best_of(fwd_bwd(trilinear_reference), args.repeats)
    with torch.no_grad():
        err = float((trilinear(grid, xyz, aabb) - trilinear_reference(grid, xyz, aabb)).abs().max())

    # marching: cameras on a sphere looking at the box, an occupancy cache with ~10 % of the voxels set
    R = args.rays
    cam = torch.nn.functional.normalize(torch.randn(R, 3), dim=-1) * 4.0
    dirs = torch.nn.functional.normalize(-cam + 0.5 * torch.randn(R, 3), dim=-1)
    xs = torch.linspace(-1, 1, 96)
    X, Y, Z = torch.meshgrid(xs, xs, xs, indexing="ij")
    occ = (X ** 2 + Y ** 2 + Z ** 2).sqrt().sub(0.6).abs() < 0.08  # a spherical shell
    step = 0.5 * 3.0 / (r - 1)
    steps = int(3.0 * 3 ** 0.5 / step) + 1
    t_m_c = best_of(lambda: march(cam, dirs, aabb, step, steps, 0.05, occ), args.repeats)
    t_m_t = best_of(lambda: march_reference(cam, dirs, aabb, step, steps, 0.05, occ), args.repeats)
    kept = int(march(cam, dirs, aabb, step, steps, 0.05, occ).valid.sum())

    # optimiser step: the gradient of one batch's look-ups (most vertices get none)
    grid_param.grad = None
    (trilinear(grid_param, xyz[:args.step_points], aabb) * gout[:args.step_points]).sum().backward()
    g = grid_param.grad
    nonzero = float(g.ne(0).float().mean())
    arms = {}
    for name in ("masked", "fused"):
        w = torch.nn.Parameter(grid.clone())
        opt = MaskedAdam([w], lr=0.1, eps=1e-15) if name == "masked" else torch.optim.Adam([w], lr=0.1, eps=1e-15,
                                                                                                fused=True)
        w.grad = g
        arms[name] = opt
    m, v, p = torch.zeros_like(grid), torch.zeros_like(grid), grid.clone()
    t_o = {name: best_of(opt.step, args.repeats) for name, opt in arms.items()}
    t_o_ref = best_of(lambda: masked_adam_reference_(p, g, m, v, 0.9, 0.99, 0.1, 1e-15), args.repeats)

    print(f"threads {torch.get_num_threads()}, grid {r}^3 x {c} channels, {xyz.shape[0]:,} points")
    print("| operation | ours (C) s | torch s | torch / ours |")
    print("|---|---|---|---|")
    print(f"| look-up forward | {t_f_c:.4f} | {t_f_t:.4f} (grid_sample) | {t_f_t / t_f_c:.1f}x |")
    print(f"| look-up forward + backward | {t_fb_c:.4f} | {t_fb_t:.4f} (grid_sample) | {t_fb_t / t_fb_c:.1f}x |")
    print(f"| march {R} rays, {steps} lattice steps, occupancy {float(occ.float().mean()):.1%} "
          f"({kept:,} samples kept) | {t_m_c:.4f} | {t_m_t:.4f} (dense lattice) | {t_m_t / t_m_c:.1f}x |")
    print(f"| optimiser step, {grid.numel() / 1e6:.0f} M parameters, {nonzero:.1%} non-zero gradient "
          f"({args.step_points:,} look-ups) | {t_o['masked']:.4f} (masked Adam) | {t_o['fused']:.4f} (fused Adam; "
          f"masked in torch ops {t_o_ref:.4f}) | {t_o['fused'] / t_o['masked']:.1f}x |")
    print(f"max |ours - grid_sample| on the forward: {err:.2e}")


if __name__ == "__main__":
    main()
