"""Whole-renderer counts and energy against a hand count on a two-ray example."""

import pytest
import torch

from spikenerf.nerf.renderer_energy import (
    RendererShape,
    energy_map_pj,
    padded_steps,
    renderer_energy_metrics,
    renderer_ray_counts,
    renderer_ray_energy_pj,
)
from spikenerf.snn.energy import E_DRAM_32BIT_PJ, E_SRAM_1MB_PJ, E_SRAM_8KB_PJ, memory_read_pj

# C = 2 feature channels, fc1 5 -> 4, read-out 3; 10 voxels x 3 channels x 4 B = 120 B: an 8 KB SRAM (10 pJ)
SHAPE = RendererShape(feature_channels=2, in_dim=5, hidden_dim=4, voxels=10)
# ray 0: 3 alpha samples, 2 reach the colour net, 9 SOPs; ray 1: 1 alpha sample, none coloured
ND, NC, SOPS = torch.tensor([3.0, 1.0]), torch.tensor([2.0, 0.0]), torch.tensor([9.0, 0.0])


def test_memory_table_choice():
    assert memory_read_pj(120) == E_SRAM_8KB_PJ == 10.0
    assert memory_read_pj(1 << 20) == E_SRAM_1MB_PJ == 100.0
    assert memory_read_pj(2e6) == E_DRAM_32BIT_PJ == 640.0  # a 2 MB grid lives in DRAM


def test_two_ray_hand_count():
    c = renderer_ray_counts(ND, NC, SHAPE)
    assert c["reads"].tolist() == [8 * (3 + 2 * 2), 8 * 1]  # 56, 8
    assert c["grid_macs"].tolist() == [56, 8]
    assert c["grid_muls"].tolist() == [12 * 5 + 3, 12 * 1 + 1]  # 63, 13
    assert c["fc1_macs"].tolist() == [2 * 5 * 4, 0]
    assert c["composite_macs"].tolist() == [4 * 2 + 3, 3]
    assert c["composite_muls"].tolist() == [6, 2]
    assert c["composite_adds"].tolist() == [3 + 2 + 1, 1 + 0 + 1]
    assert c["transcendentals"].tolist() == [6 + 6, 2]
    e = renderer_ray_energy_pj(c, SOPS, NC, SHAPE)
    # ray 0: grid 56 x 10 + 56 x 4.6 + 63 x 3.7 = 1050.7; compositing 11 x 4.6 + 6 x 3.7 + 6 x 0.9 = 78.2;
    # SNN net 40 x 4.6 + 9 x 0.9 = 192.1; twin net 2 x (20 + 16 + 12) x 4.6 = 441.6
    assert e["snn_grid"].tolist() == pytest.approx([1050.7, 164.9])
    assert e["snn_composite"].tolist() == pytest.approx([78.2, 23.0])
    assert e["snn_colour_net"].tolist() == pytest.approx([192.1, 0.0])
    assert e["ann_colour_net"].tolist() == pytest.approx([441.6, 0.0])
    assert e["snn_total"].tolist() == pytest.approx([1321.0, 187.9])
    assert e["ann_total"].tolist() == pytest.approx([1570.5, 187.9])


def test_image_metrics_separate_the_reductions():
    m = renderer_energy_metrics(ND[:, None], NC[:, None], SOPS[:, None], SHAPE)
    assert m["colour_net_reduction"] == pytest.approx(1 - 192.1 / 441.6)  # 56.5 %
    assert m["renderer_reduction"] == pytest.approx(1 - 1508.9 / 1758.4)  # 14.2 %
    assert m["renderer_snn_energy_uj_per_image"] == pytest.approx(1508.9e-6)
    assert m["renderer_memory_pj_per_read"] == 10.0


def test_energy_map_shape_and_values():
    snn, ann = energy_map_pj(ND.reshape(1, 2, 1), NC.reshape(1, 2, 1), SOPS.reshape(1, 2, 1), SHAPE)
    assert snn.shape == (1, 2) and snn.flatten().tolist() == pytest.approx([1321.0, 187.9])
    net, _ = energy_map_pj(ND.reshape(1, 2, 1), NC.reshape(1, 2, 1), SOPS.reshape(1, 2, 1), SHAPE, whole_renderer=False)
    assert net.flatten().tolist() == pytest.approx([192.1, 0.0])


def test_padded_steps_span_holes():
    # ray 0: valid at lattice 2, 5 -> 4 steps (2 holes); ray 1: none; ray 2: one sample -> 1 step
    mask = torch.tensor([[False, True, False, True], [False, False, False, False], [True, False, False, False]])
    ti = torch.tensor([[0, 2, 4, 5], [0, 1, 2, 3], [7, 8, 9, 10]])
    assert padded_steps(mask, ti).tolist() == [4, 0, 1]
    assert padded_steps(mask, None).tolist() == [3, 0, 1]  # columns are the lattice
