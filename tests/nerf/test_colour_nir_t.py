"""``spikenerf-export nir`` on SpikingNeRF-T (``spikingnerf-t``): the graph of a tiny trained model, its 150-wide
input by hand, the sidecar, the replays in Norse and snnTorch through the model's own render (float64, condensed),
the refusals (soft reset, the ANN twin) and the command end to end."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from nerfstudio.data.scene_box import SceneBox

from spikenerf.nerf.colour_nir import DEFAULT_DT, NIRExportError, colour_net_graph, export_nir, read_graph, sidecar
from spikenerf.nerf.nir_replay import FRAMEWORKS, load_replay, project_colours, replay_colours
from spikenerf.nerf.selfcheck import tiny_model
from spikenerf.nerf.tensorf import tensorf_color_input
from spikenerf.nerf.tensorf_model import SpikingNeRFTModelConfig

nir = pytest.importorskip("nir")

sys.path.insert(0, str(Path(__file__).parent))
from test_nerf_cli import _env, _ok  # noqa: E402
from test_spikingnerf_t import BUNDLED, TINY, _trainer_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHAIN = ["input", "fc1", "lif1", "fc2", "lif2", "fc3", "output"]
SCALE = 0.3
"""The bundled scene's 100x100 views at 30x30 (train and test), so the replays run in CI time."""

needs_scene = pytest.mark.skipif(not (BUNDLED / "transforms_train.json").is_file(), reason="needs the bundled scene")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``spikingnerf-t`` trained 6 steps on the bundled scene (every TensoRF rule: alpha mask, shrink,
    up-samplings), its config saved as ``ns-train`` does: ``(config path, pipeline)``."""
    if not (BUNDLED / "transforms_train.json").is_file():
        pytest.skip("needs the bundled scene")
    cfg = _trainer_config("spikingnerf-t", tmp_path_factory.mktemp("t"), steps=6)
    cfg.pipeline.datamanager.camera_res_scale_factor = SCALE
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    cfg.save_config()
    trainer.pipeline.eval()
    return cfg.get_base_dir() / "config.yml", trainer.pipeline


def firing(model):
    """A copy of ``model`` that is opaque and whose LIF layers fire: 6 steps leave the scene nearly empty
    (accumulation < 0.01) and fc1's currents below the threshold, so TensoRF's density shift -10 -> -2 (the
    accumulation about 1, 20 - 30 colour samples per ray), fc1 x 8 and fc2 x 4 (lif1 fires on ~40 %, lif2 on a
    few % of their steps)."""
    m = copy.deepcopy(model)
    m.backbone.density_shift = -2.0
    with torch.no_grad():
        m.field.fc1.weight.mul_(8.0)
        m.field.fc2.weight.mul_(4.0)
    return m


# ----------------------------------------------------------------------------- the graph and its input
def test_graph_has_the_trained_models_weights(trained, tmp_path):
    _, pipeline = trained
    f = pipeline.model.field
    graph, side = export_nir(pipeline.model, tmp_path / "t.nir", method="spikingnerf-t")
    g = read_graph(tmp_path / "t.nir")
    assert sorted(map(tuple, g.edges)) == sorted(zip(CHAIN[:-1], CHAIN[1:]))
    assert f.in_dim == 150 and list(g.nodes["input"].input_type["input"]) == [150]
    for name in ("fc1", "fc2", "fc3"):  # the official nets have no bias anywhere: Linear nodes
        assert isinstance(g.nodes[name], nir.Linear)
        assert np.array_equal(g.nodes[name].weight, getattr(f, name).weight.detach().numpy())
    for name in ("lif1", "lif2"):  # LIF tau 2 (decay_input), threshold 1, hard reset to 0
        n = g.nodes[name]
        assert isinstance(n, nir.LIF) and n.tau.shape == (f.hidden_dim,)
        assert np.allclose(n.tau, 2.0 * DEFAULT_DT, rtol=1e-12) and np.allclose(n.r, 1.0, rtol=1e-12)
        assert np.all(n.v_leak == 0) and np.all(n.v_reset == 0) and np.allclose(n.v_threshold, 1.0)
    meta = g.metadata
    assert meta["pack_mode"] == "condensing" and meta["time_mode"] == "ray" and meta["method"] == "spikingnerf-t"
    assert meta["input"] == ("[features (27), view direction (3), PE(features) (108), PE(view direction) (12)]")
    assert side.is_file()


def test_the_input_layout_by_hand(trained):
    """The field's input function is fc1's input as the render builds it, and its blocks (the sidecar's slices)
    are: the appearance features, the direction, then TensoRF's PE (all sines, then all cosines, d slowest)."""
    _, pipeline = trained
    m = pipeline.model
    f, b = m.field, m.backbone
    g = torch.Generator().manual_seed(0)
    pts = b.aabb[0] + (b.aabb[1] - b.aabb[0]) * torch.rand(9, 3, generator=g)
    dirs = torch.nn.functional.normalize(torch.randn(9, 3, generator=g), dim=-1)
    with torch.no_grad():
        x = f.colour_net_inputs(pts, dirs)
        feat = b.basis_mat(b.app.products((pts - b.aabb[0]) * 2 / (b.aabb[1] - b.aabb[0]) - 1))
        assert torch.equal(x, tensorf_color_input(b.app_features(pts), dirs))  # what render_tensorf builds
    side = sidecar(m, "t.nir")
    sl = {p["name"]: slice(*p["slice"]) for p in side["input"]["parts"]}
    assert side["input"]["size"] == 150 and sl["PE(view direction)"].stop == 150
    torch.testing.assert_close(x[:, sl["features"]], feat)
    assert torch.equal(x[:, sl["view direction"]], dirs)
    pe_f, pe_v = x[:, sl["PE(features)"]], x[:, sl["PE(view direction)"]]
    for block, v, width in ((pe_f, feat, 27), (pe_v, dirs, 3)):
        for d in (0, width - 1):
            for k in (0, 1):
                assert torch.allclose(block[:, d * 2 + k], torch.sin(2.0 ** k * v[:, d]), atol=1e-6)
                assert torch.allclose(block[:, 2 * width + d * 2 + k], torch.cos(2.0 ** k * v[:, d]), atol=1e-6)


def test_sidecar_describes_the_vm_planes_masks_and_compositing(trained, tmp_path):
    _, pipeline = trained
    m = pipeline.model
    b = m.backbone
    _, path = export_nir(m, tmp_path / "t.nir")
    side = json.loads(path.read_text())
    assert side["graph"] == "t.nir" and side["readout"].startswith("sample colour = sigmoid")
    assert side["vm_planes"]["resolution"] == list(b.resolution)
    assert np.allclose(side["vm_planes"]["aabb"], b.aabb.numpy())  # the shrunk box
    assert side["vm_planes"]["app_components"] == list(b.app.components)
    assert side["features"]["size"] == 27 and side["density"] == {"raw": "sum of all density products", "sigma": "softplus(raw + shift)", "shift": -10.0}
    assert side["alpha_mask"]["resolution"] == list(b.alpha_mask.volume.shape) != [0, 0, 0]
    assert "weight > 0.0001" in side["samples"]["masks"] and side["samples"]["distance_scale"] == 25.0
    assert side["time"]["pack_mode"] == "condensing" and side["time"]["flip"] is False
    assert side["scene"] == {"kind": "bounded", "near_plane": m.config.near_plane}
    assert side["compositing"]["background"] == "white" and "keeps its weight" in side["compositing"]["rgb"]
    assert len(path.read_text()) < 6000  # short


# ----------------------------------------------------------------------------- replays through the render
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_replay_through_the_models_render_equals_the_projects_colours(trained, framework):
    """A test view of the trained model rendered with the replayed colour net in place of the field's: the
    project's float64 colours to 1e-10 on every pixel, with both LIF layers firing on every ray's condensed
    sequence of many samples (the membranes carried along the ray)."""
    pytest.importorskip(framework, reason=f"{framework} is not installed (the `test` extra has it)")
    _, pipeline = trained
    m = firing(pipeline.model)
    cam = pipeline.datamanager.eval_dataset.cameras[0:1]
    net = load_replay(framework, colour_net_graph(m.field))
    with torch.no_grad():
        out = m.get_outputs_for_camera(cam)
        with project_colours(m):
            ref = m.get_outputs_for_camera(cam)
        with replay_colours(m, net):
            rep = m.get_outputs_for_camera(cam)
    n = out["num_color_samples"]
    assert float(out["accumulation"].mean()) > 0.5 and int((n > 10).sum()) > n.numel() // 2
    for layer in ("lif1", "lif2"):
        rate = float(out[f"ray_spikes_{layer}"].sum() / (n.sum() * m.field.hidden_dim))
        assert 0.01 < rate < 0.9, (layer, rate)
    assert float((rep["rgb"] - ref["rgb"]).abs().max()) <= 1e-10
    assert float((ref["rgb"] - out["rgb"]).abs().max()) < 0.05  # float64 vs the float32 render: a few flips
    with torch.no_grad():
        m.field.lif2.v_threshold_value.fill_(0.8)  # another neuron in the project's net: the pixels show it
        with project_colours(m):
            other = m.get_outputs_for_camera(cam)
    assert float((other["rgb"] - rep["rgb"]).abs().max()) > 1e-3


def test_ndc_scene_replays_and_its_sidecar_says_ndc():
    """An NDC scene (llff-data's metadata): the colour net reads the world direction; the replay still equals
    the project's colours, and the sidecar carries the NDC numbers and the black background."""
    pytest.importorskip("norse")
    meta = {"scene_kind": "ndc", "ndc_near": 1.0, "ndc_focal": 40.0, "ndc_hw": (30, 40)}
    cfg = SpikingNeRFTModelConfig(ndc_tensorf=replace(TINY, activation="relu", density_components=(4, 2, 2),
                                                      app_components=(6, 3, 3)), hidden_dim=16)
    torch.manual_seed(0)
    m = cfg.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.5, -1.5, -1.0], [1.5, 1.5, 1.0]])), num_train_data=1,
                  metadata=meta)
    with torch.no_grad():
        for p in m.backbone.density.parameters():
            p.abs_().mul_(5.0)
        m.field.fc1.weight.mul_(8.0)
        m.field.fc2.weight.mul_(4.0)
    m.eval()
    g = torch.Generator().manual_seed(1)
    d = torch.nn.functional.normalize(torch.randn(64, 3, generator=g) * 0.2 + torch.tensor([0.0, 0.0, -1.0]), dim=-1)
    o = torch.zeros(64, 3) + torch.tensor([0.0, 0.0, 0.5])
    net = load_replay("norse", colour_net_graph(m.field))
    with torch.no_grad():
        out = m.render_rays(o, d)
        with project_colours(m):
            ref = m.render_rays(o, d)
        with replay_colours(m, net):
            rep = m.render_rays(o, d)
    assert float(out["num_color_samples"].sum()) > 50 and float(out["ray_spikes_lif2"].sum()) > 0
    assert float((rep["rgb"] - ref["rgb"]).abs().max()) <= 1e-10
    side = sidecar(m, "t.nir")
    assert side["scene"]["kind"] == "ndc" and side["scene"]["ndc_hw"] == [30, 40]
    assert side["density"]["sigma"] == "relu(raw)" and side["compositing"]["background"] == "black"


# ----------------------------------------------------------------------------- presets and refusals
def test_the_cpu_preset_exports():
    g = colour_net_graph(tiny_model("spikingnerf-t-cpu").field)
    assert list(g.nodes["input"].input_type["input"]) == [150] and set(g.nodes) == set(CHAIN)


@pytest.mark.parametrize("method,overrides,feature", [
    ("spikingnerf-t", dict(reset="soft"), "soft reset"),
    ("spikingnerf-t-ann", {}, "ANN twin"),
], ids=["soft-reset", "ann-twin"])
def test_refusals_name_the_feature_and_what_avoids_it(method, overrides, feature, tmp_path):
    with pytest.raises(NIRExportError) as e:
        export_nir(tiny_model(method, **overrides), tmp_path / "t.nir")
    msg = str(e.value)
    assert feature in msg and "--pipeline.model.reset hard" in msg and "\n" not in msg
    assert not (tmp_path / "t.nir").exists() and not (tmp_path / "t.json").exists()
    if method.endswith("-ann"):
        assert "spikingnerf-t" in msg


# ----------------------------------------------------------------------------- the command
@needs_scene
def test_cli_exports_and_replays_a_trained_run(trained, tmp_path):
    pytest.importorskip("norse")
    pytest.importorskip("snntorch")
    config, _ = trained
    out = tmp_path / "t.nir"
    cmd = [sys.executable, "-m", "spikenerf.nerf.export_cli", "nir", "--load-config", str(config), "--output-path",
           str(out), "--replay", "norse,snntorch", "--views", "1"]
    r = subprocess.run(cmd, env=dict(_env(), PYTHONPATH=str(ROOT)), cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)
    _ok(r)
    assert "(spikingnerf-t, step" in r.stdout
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("replay ")]
    assert [ln.split(":")[0] for ln in lines] == ["replay norse", "replay snntorch"]
    for ln in lines:
        assert float(ln.split("max |rgb diff| ")[1].split(",")[0]) <= 1e-10, ln
        psnr = float(ln.split("PSNR ")[1].split(" dB")[0])
        assert math.isfinite(psnr) and f"(project {psnr:.2f} dB)" in ln
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["input"]["size"] == 150 and side["time"]["pack_mode"] == "condensing"
    assert set(read_graph(out).nodes) == set(CHAIN)
