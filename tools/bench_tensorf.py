"""Benchmark TensoRF's VM look-up on this CPU: nerfstudio's ``TensorVMEncoding`` vs ``spikenerf.nerf.tensorf``.

Side by side in one run, same planes / lines / points, interleaved: forward + backward (a sum of squares) of the
appearance products ``[N, 3 C]`` (C components per plane, TensoRF's 48 by default) at ``--points`` random
points of a ``--resolution``^3 grid, best of ``--repeats``:

- ``nerfstudio``: ``TensorVMEncoding`` (the three planes stacked ``[3, C, R, R]``, one batched
  ``grid_sample`` for the planes and one for the lines);
- ``spikenerf``: ``VMSplit.products`` (one ``grid_sample`` per plane and per line, planes ``[1, C, R_b, R_a]``).

    .venv/bin/python tools/bench_tensorf.py --points 131072 --resolution 128
"""

from __future__ import annotations

import argparse
import time

import torch
from nerfstudio.field_components.encodings import TensorVMEncoding

from spikenerf.nerf.tensorf import VMSplit
from spikenerf.snn.process import configure_process


def main() -> None:
    configure_process()  # the project's OpenMP wait / allocator policy, as its commands run
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=131_072)
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--components", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.manual_seed(0)
    R, C = args.resolution, args.components
    ns = TensorVMEncoding(resolution=R, num_components=C)
    ours = VMSplit((C, C, C), (R, R, R))
    with torch.no_grad():  # the same numbers in both layouts
        for i in range(3):
            ours.planes[i].copy_(ns.plane_coef[i:i + 1])
            ours.lines[i].copy_(ns.line_coef[i:i + 1])
    x = torch.rand(args.points, 3) * 2 - 1
    with torch.no_grad():
        diff = float((ns(x) - ours.products(x)).abs().max())

    arms = {"ns": ns, "ours": ours.products}
    best = {k: float("inf") for k in arms}
    for r in range(args.repeats + 1):  # interleaved, so a busy machine slows both arms alike; round 0 warms up
        for k, fn in arms.items():
            t0 = time.perf_counter()
            fn(x).square().sum().backward()
            if r > 0:
                best[k] = min(best[k], time.perf_counter() - t0)
    t_ns, t_ours = best["ns"], best["ours"]
    print(f"VM look-up, forward + backward: {args.points} points, {R}^3, {C} components per plane, "
          f"{torch.get_num_threads()} threads (max |difference| {diff:.1e})")
    print(f"{'nerfstudio TensorVMEncoding':32s} {t_ns * 1e3:9.1f} ms")
    print(f"{'spikenerf VMSplit':32s} {t_ours * 1e3:9.1f} ms")
    print(f"ratio nerfstudio / spikenerf: {t_ns / t_ours:.2f}x")


if __name__ == "__main__":
    main()
