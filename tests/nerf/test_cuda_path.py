"""The CUDA code path, on the CPU: every NeRF method trains and renders the same with the C kernels off.

A CUDA tensor never reaches the C kernels (grid look-up, marching, masked Adam, the scan and its ragged rows):
it takes their torch fallbacks, the code ``SPIKENERF_DISABLE_C=1`` selects on the CPU (read on every call, see
``spikenerf.snn.fused.c_kernels_disabled``, so one process runs both), and its spiking colour layers always run
in time blocks (``field.in_place`` is for the CPU; ``time_blocks=True`` here). Each case trains a method's tiny
model (:mod:`spikenerf.nerf.selfcheck`: same weights, rays, targets and seed) and renders a 16x12 view twice,
the CPU's default path (C on, in place) and the CUDA one (C off, time blocks; the scan on the torch backend,
which tests/snn/test_triton_scan.py holds equal to the Triton one), and compares:

- the loss of every step: ``rtol=1e-5, atol=1e-6`` (measured: equal, or 3e-8 apart);
- rgb / accumulation ``atol=1e-5``, depth ``atol=1e-4`` (world units; measured up to 3e-5: the C marcher and
  the torch one compute ``t`` in a different order) - a sample kept by one path and not the other, or a spike
  flipped, moves them by 1e-3 or more.

What the steps cross (selfcheck.GRID_STEPS / MLP_STEPS): the voxel-grid methods' coarse stage, the occupancy
cache built from it, two up-scalings of the fine grids each followed by an occupancy refresh, in padding and
condensing layouts, bounded and unbounded (contracted) scenes; the NeRF-MLP methods' occupancy warm-up and
refreshes (bounded only: they are the Blender NeRF); SpikingNeRF-T's first alpha mask with the shrink of its planes,
two up-samplings and a second alpha mask (selfcheck.TINY_TENSORF; bounded: TensoRF has no contraction).
NDC scenes (the grid methods, given llff-data's metadata: selfcheck.TINY_NDC_CAMERA) cross the same steps
with NDC rays: samples uniform in inverse depth, world view directions, world depth.

Sampled for CI time (all cases: 25 s on a quiet 2-core machine, 75 s when 7 other jobs share it; the ANN twins
in one layout, theirs has no time axis): 64 rays a step, 5 grid / 4 MLP steps, grids of
10^3 -> 16^3 vertices, width 16 colour nets, 12 + 12 NeRF-MLP samples. The full-size presets differ from these
only in sizes and step counts, which select no other code.
"""

from __future__ import annotations

import pytest
import torch

from spikenerf.nerf.method_configs import METHODS
from spikenerf.nerf.selfcheck import CHECKED_METHODS, RunResult, is_grid_method, train_and_render
from spikenerf.nerf.tensorf_model import SpikingNeRFTModelConfig
from spikenerf.snn import c_kernel_available

GRID_METHODS = [m for m in CHECKED_METHODS if is_grid_method(m)]  # a new method: one entry in CHECKED_METHODS
TENSORF_METHODS = [m for m in CHECKED_METHODS
                   if isinstance(METHODS[m].config.pipeline.model, SpikingNeRFTModelConfig)]
MLP_METHODS = [m for m in CHECKED_METHODS if not is_grid_method(m) and m not in TENSORF_METHODS]
SCENES = ["bounded", "unbounded", "ndc"]

pytestmark = pytest.mark.skipif(not c_kernel_available(), reason="needs the C kernels (a C compiler) to compare")


def _both(monkeypatch, method: str, **kw) -> tuple[RunResult, RunResult]:
    monkeypatch.setenv("SPIKENERF_DISABLE_C", "0")
    with_c = train_and_render(method, **kw)
    monkeypatch.setenv("SPIKENERF_DISABLE_C", "1")
    assert not c_kernel_available()  # the switch took
    without = train_and_render(method, time_blocks=True, **kw)
    monkeypatch.setenv("SPIKENERF_DISABLE_C", "0")
    return with_c, without


def _assert_same(a: RunResult, b: RunResult) -> None:
    torch.testing.assert_close(b.losses, a.losses, rtol=1e-5, atol=1e-6, msg="training losses differ")
    for key, atol in (("rgb", 1e-5), ("accumulation", 1e-5), ("depth", 1e-4)):
        torch.testing.assert_close(b.images[key], a.images[key], rtol=0, atol=atol, msg=f"rendered {key} differs")
    assert b.stats == a.stats


@pytest.mark.parametrize("scene", SCENES)
@pytest.mark.parametrize("pack_mode", ["padding", "condensing"])
@pytest.mark.parametrize("method", GRID_METHODS)
def test_grid_method_same_without_c(monkeypatch, method, pack_mode, scene):
    if method.endswith("-ann") and pack_mode == "padding":
        pytest.skip("an ANN colour net has no time layout: condensing covers it")
    a, b = _both(monkeypatch, method, scene=scene, pack_mode=pack_mode)
    _assert_same(a, b)
    # the run crossed what it is meant to: both up-scalings, a cache with empty cells, colour samples rendered
    assert a.stats["fine_res"] == (16, 16, 16)
    assert 0 < a.stats["occupied"] < 16 ** 3
    assert a.stats["color_samples"] > 0
    assert bool(torch.isfinite(a.losses).all())


@pytest.mark.parametrize("method", MLP_METHODS)
def test_mlp_method_same_without_c(monkeypatch, method):
    a, b = _both(monkeypatch, method)
    _assert_same(a, b)
    assert a.stats["occupied"] is not None  # the occupancy cache was on
    assert float(a.images["rgb"].std()) > 0  # a picture, not a constant


@pytest.mark.parametrize("method", TENSORF_METHODS)
def test_tensorf_method_same_without_c(monkeypatch, method):
    a, b = _both(monkeypatch, method)
    _assert_same(a, b)
    # the run crossed the rules: the box shrunk inside [-1, 1]^3, two up-samplings (8^3 -> 16^3 voxels, over
    # the shrunk box fewer vertices), a second alpha mask with empty voxels, colour samples rendered
    lo, hi = torch.tensor(a.stats["aabb"])
    assert bool((lo > -1).all() and (hi < 1).all())
    assert min(a.stats["fine_res"]) > 8
    assert 0 < a.stats["occupied"] < 15 ** 3
    assert a.stats["color_samples"] > 0
    assert bool(torch.isfinite(a.losses).all())
