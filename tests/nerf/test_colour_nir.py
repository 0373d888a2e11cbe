"""``spikenerf-export nir``: the colour net as a NIR graph, the LIF map, the refusals, and the replays in Norse and
snnTorch against the project's colour net (float64, padding and condensing layouts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spikenerf.nerf.field import SpikingNeRFField
from spikenerf.nerf.colour_nir import (DEFAULT_DT, NIRExportError, colour_net_graph, read_graph,
                                       time_layout_meta)
from spikenerf.nerf.nir_replay import FRAMEWORKS, load_replay, run_layout
from spikenerf.nerf.spiknerf import SpikNeRFField
from spikenerf.snn import LIFNode, PLIFNode, scan_reference
from spikenerf.snn.nir import lif_map

nir = pytest.importorskip("nir")

sys.path.insert(0, str(Path(__file__).parent))
from test_nerf_cli import BIN, BUNDLED, TINY, _env, _ok, make_tiny_scene  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def tiny_field(cls=SpikingNeRFField, seed: int = 0, **kw) -> SpikingNeRFField:
    """A small colour net with random weights large enough that both LIF layers fire often, in float64."""
    torch.manual_seed(seed)
    kw = dict(dict(feature_channels=4, hidden_dim=16, dir_freqs=2, reset="hard"), **kw)
    f = cls(BOX, (5, 5, 5), **kw)
    for p in f.parameters():
        torch.nn.init.normal_(p, std=1.0)
    return f.double().eval()


def written(field, tmp_path: Path, dt: float = DEFAULT_DT):
    path = tmp_path / "colour.nir"
    nir.write(str(path), colour_net_graph(field, dt))
    return read_graph(path)


def random_rays(R: int = 7, S: int = 11, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(R, S, generator=g) < 0.55
    mask[0] = False  # a ray with no sample
    mask[1, :] = True  # one without holes
    xyz = torch.rand(R, S, 3, generator=g, dtype=torch.float64) * 2 - 1
    dirs = torch.nn.functional.normalize(torch.randn(R, 3, generator=g, dtype=torch.float64), dim=-1)
    return xyz, dirs, mask


# ----------------------------------------------------------------------------- the graph
def test_graph_read_back_has_the_models_weights_and_the_lif_map(tmp_path):
    f = tiny_field(tau=3.0, v_threshold=0.7, pack_mode="condensing").float()
    g = written(f, tmp_path)
    assert set(g.nodes) == {"input", "fc1", "lif1", "fc2", "lif2", "fc3", "output"}
    chain = ["input", "fc1", "lif1", "fc2", "lif2", "fc3", "output"]
    assert sorted(map(tuple, g.edges)) == sorted(zip(chain[:-1], chain[1:]))
    assert isinstance(g.nodes["fc1"], nir.Linear)  # no bias
    assert np.array_equal(g.nodes["fc1"].weight, f.fc1.weight.detach().numpy())
    for name in ("fc2", "fc3"):
        assert np.array_equal(g.nodes[name].weight, getattr(f, name).weight.detach().numpy())
        assert np.array_equal(g.nodes[name].bias, getattr(f, name).bias.detach().numpy())
    assert list(g.nodes["input"].input_type["input"]) == [f.in_dim]
    for name in ("lif1", "lif2"):
        n = g.nodes[name]
        assert isinstance(n, nir.LIF) and n.tau.shape == (16,)
        # h = (1 - 1/3) v + (1/3) x: tau = 3 dt, r = 1 (decay_input), v_leak = v_reset = 0
        assert np.allclose(n.tau, 3.0 * DEFAULT_DT, rtol=1e-12) and np.allclose(n.r, 1.0, rtol=1e-12)
        assert np.all(n.v_leak == 0) and np.all(n.v_reset == 0) and np.allclose(n.v_threshold, 0.7)
    assert g.metadata["dt"] == DEFAULT_DT and "Euler" in g.metadata["discretisation"]
    assert g.metadata["pack_mode"] == "condensing" and g.metadata["time_mode"] == "ray"


@pytest.mark.parametrize("node", [LIFNode(tau=2.0, reset="hard"), LIFNode(tau=3.0, reset="hard", v_reset=-0.2),
                                  LIFNode(tau=4.0, decay_input=False, v_threshold=0.5, reset="hard"),
                                  PLIFNode(init_tau=2.7, reset="hard")],
                         ids=["lif2", "lif3-vreset", "spiknerf", "plif"])
@pytest.mark.parametrize("dt", [1e-4, 1.0])
def test_nir_euler_step_with_the_mapped_parameters_is_the_projects_neuron(node, dt):
    """NIR's LIF, stepped by hand (forward Euler with dt, fire on v > v_th, reset to v_reset), gives the scan's
    spikes and membranes: the map of spikenerf.snn.nir is the project's recurrence."""
    p = lif_map(node, dt)
    x = torch.randn(40, 3, 8, dtype=torch.float64) * 1.5 + 0.4
    s_ref, h_ref = scan_reference(x, None, *node.charge_coefficients(), node.v_threshold.double(), node.spec)
    v = torch.zeros(3, 8, dtype=torch.float64)
    k = dt / p["tau"]
    spikes, hs = [], []
    for t in range(x.shape[0]):
        v = v + k * (p["v_leak"] - v + p["r"] * x[t])
        z = (v > float(node.v_threshold)).double()
        hs.append(v)
        spikes.append(z)
        v = torch.where(z > 0, torch.full_like(v, p["v_reset"]), v)
    assert torch.equal(torch.stack(spikes), s_ref.detach())
    assert torch.allclose(torch.stack(hs), h_ref.detach(), atol=1e-12)


def test_plif_and_learnable_threshold_are_written_as_their_trained_values(tmp_path):
    f = tiny_field(neuron="plif", threshold="learnable", pack_mode="condensing")
    with torch.no_grad():
        f.lif1.w.fill_(0.3)
        f.lif2.v_threshold_param.fill_(1.25)
    g = written(f, tmp_path)
    assert np.allclose(g.nodes["lif1"].tau, DEFAULT_DT / float(torch.sigmoid(torch.tensor(0.3, dtype=torch.float64))))
    assert np.allclose(g.nodes["lif2"].v_threshold, 1.25)


# ----------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("make,feature,avoid", [
    (lambda: tiny_field(reset="soft", pack_mode="condensing"), "soft reset", "--pipeline.model.reset hard"),
    (lambda: tiny_field(spiking=False), "ANN twin", "--pipeline.model.reset hard"),
    (lambda: tiny_field(SpikNeRFField, reset="hard"), "ternary {0,1,2}", "--pipeline.model.spike-code binary"),
    (lambda: tiny_field(SpikNeRFField, reset="hard", spike_code="ternary"), "ternary spikes",
     "--pipeline.model.spike-code binary"),
    (lambda: tiny_field(pack_mode="padding", color_bias=True), "fc2's bias", "--pipeline.model.pack-mode condensing"),
    (lambda: torch.nn.Linear(3, 3), "NeRF-MLP", "spikingnerf"),
], ids=["soft-reset", "ann-twin", "ternary012", "ternary", "padding-bias", "not-a-grid-field"])
def test_refusals_name_the_feature_and_what_avoids_it(make, feature, avoid):
    with pytest.raises(NIRExportError) as e:
        colour_net_graph(make())
    msg = str(e.value)
    assert feature in msg and avoid in msg and "\n" not in msg


# ----------------------------------------------------------------------------- replays
def _replay(framework: str, field, tmp_path: Path):
    pytest.importorskip(framework, reason=f"{framework} is not installed (the `test` extra has it)")
    return load_replay(framework, written(field, tmp_path), torch.float64)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("layout", [dict(pack_mode="condensing"), dict(pack_mode="condensing", flip=True),
                                    dict(pack_mode="padding", color_bias=False)], ids=["condensing", "flip", "padding"])
def test_replay_equals_the_projects_colour_net(framework, layout, tmp_path):
    """float64, random features: each framework's replay of the file gives the field's colours exactly (the
    same spikes), the padding layout with holes inside the rays included."""
    f = tiny_field(**layout)
    net = _replay(framework, f, tmp_path)
    xyz, dirs, mask = random_rays()
    with torch.no_grad():
        ref, stats = f.color(xyz, dirs, mask)
    assert 0.05 < float(stats.spikes_per_layer[0]) / stats.neurons_per_layer[0] < 0.95  # the LIF layers work
    r, s = mask.nonzero(as_tuple=True)
    out = torch.sigmoid(run_layout(net, f.colour_net_inputs(xyz[r, s], dirs[r]), mask, time_layout_meta(f)))
    assert torch.allclose(out, ref[mask], atol=1e-12, rtol=0)
    if layout["pack_mode"] == "padding":  # the holes matter: condensing the same samples gives other colours
        other = torch.sigmoid(run_layout(net, f.colour_net_inputs(xyz[r, s], dirs[r]), mask,
                                         dict(time_layout_meta(f), pack_mode="condensing")))
        assert not torch.allclose(other, ref[mask], atol=1e-3)


def test_padding_replay_uses_the_lattice_index(tmp_path):
    """Columns that are not consecutive samples (empty space dropped): the padding time is the lattice index."""
    pytest.importorskip("norse")
    f = tiny_field(pack_mode="padding", color_bias=False)
    net = _replay("norse", f, tmp_path)
    xyz, dirs, mask = random_rays()
    index = torch.cumsum(torch.randint(1, 4, mask.shape), 1)
    with torch.no_grad():
        ref, _ = f.color(xyz, dirs, mask, time_index=index)
    r, s = mask.nonzero(as_tuple=True)
    out = torch.sigmoid(run_layout(net, f.colour_net_inputs(xyz[r, s], dirs[r]), mask, time_layout_meta(f), index))
    assert torch.allclose(out, ref[mask], atol=1e-12, rtol=0)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_spiknerf_binary_repeat_time_replays(framework, tmp_path):
    """Spik-NeRF with binary spikes: decay_input=False gives r = tau (Norse's importer drops r: refused there);
    T = 2 repeated steps per sample, read-out averaged."""
    f = tiny_field(SpikNeRFField, reset="hard", spike_code="binary", tau=4.0, v_threshold=0.5)
    g = written(f, tmp_path)
    assert np.allclose(g.nodes["lif1"].r, 4.0) and g.metadata["time_steps"] == 2
    pytest.importorskip(framework)
    if framework == "norse":
        with pytest.raises(NIRExportError, match="drops r"):
            load_replay(framework, g)
        return
    net = load_replay(framework, g)
    xyz, dirs, mask = random_rays()
    with torch.no_grad():
        ref, _ = f.color(xyz, dirs, mask)
    r, s = mask.nonzero(as_tuple=True)
    out = torch.sigmoid(run_layout(net, f.colour_net_inputs(xyz[r, s], dirs[r]), mask, time_layout_meta(f)))
    assert torch.allclose(out, ref[mask], atol=1e-12, rtol=0)


def test_snntorch_replay_needs_its_dt(tmp_path):
    pytest.importorskip("snntorch")
    g = written(tiny_field(pack_mode="condensing"), tmp_path, dt=1e-3)
    with pytest.raises(NIRExportError, match="--dt 0.0001"):
        load_replay("snntorch", g)


# ----------------------------------------------------------------------------- the command
@pytest.mark.skipif(not (BUNDLED / "transforms_train.json").is_file(), reason="needs the bundled scene")
def test_cli_exports_and_replays_a_trained_run(tmp_path):
    pytest.importorskip("norse")
    pytest.importorskip("snntorch")
    scene = make_tiny_scene(tmp_path / "scene", counts=(("train", 4), ("val", 1), ("test", 1)))
    env = dict(_env(), PYTHONPATH=str(ROOT))
    train = [str(BIN / "ns-train"), "spikingnerf", *TINY, "--pipeline.model.reset", "hard",
             "--output-dir", str(tmp_path / "out"), "blender-data", "--data", str(scene)]
    _ok(subprocess.run(train, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600))
    config = next((tmp_path / "out").rglob("config.yml"))
    out = tmp_path / "colour.nir"
    cmd = [sys.executable, "-m", "spikenerf.nerf.export_cli", "nir", "--load-config", str(config), "--output-path",
           str(out), "--replay", "norse,snntorch", "--views", "1"]
    r = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    _ok(r)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("replay ")]
    assert [ln.split(":")[0] for ln in lines] == ["replay norse", "replay snntorch"]
    for ln in lines:  # float64 replays: the project's colours exactly
        assert float(ln.split("max |rgb diff| ")[1].split(",")[0]) < 1e-6, ln
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["input"]["size"] == 12 + 27 and side["time"]["pack_mode"] == "condensing"
    assert side["feature_grid"]["channels"] == 12 and side["compositing"]["background"] == "white"
    # the default soft reset is refused in one line, exit 2
    soft = [a if a != "hard" else "soft" for a in train]
    soft[soft.index(str(tmp_path / "out"))] = str(tmp_path / "soft")
    _ok(subprocess.run(soft, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600))
    cmd[cmd.index("--load-config") + 1] = str(next((tmp_path / "soft").rglob("config.yml")))
    r = subprocess.run(cmd[:cmd.index("--replay")], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "soft reset" in r.stderr and "--pipeline.model.reset hard" in r.stderr
    assert "Traceback" not in r.stderr
