"""``ns-export pointcloud`` / ``poisson`` on a spikenerf run, and the model outputs they and the viewer need.

One short training run on a tiny copy of the bundled scene (a few dozen steps: far too few for a surface
nerfstudio's exporter accepts, it keeps pixels with accumulation > 0.5). Its outputs are checked directly
(normals, alpha, the viewer's output list); for the exporters (nerfstudio's own ``ExportPointCloud`` /
``ExportPoissonMesh``, in-process as ``ns-export`` runs them) the model renders a known surface instead,
a sphere of radius 0.5 (its ``get_outputs`` and ``query_points`` replaced), so the test can check that the
exported points lie on it and their normals point outwards: everything else (data manager, rays, this
package's normals from the density gradient, alpha, the writers) is the real path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spikenerf.nerf.export import HIDDEN_OUTPUT_PREFIXES, density_normals, viewer_max_res

sys.path.insert(0, str(Path(__file__).parent))
from test_nerf_cli import BIN, BUNDLED, SIZE, TINY, _env, _ok, make_tiny_scene  # noqa: E402

needs_scene = pytest.mark.skipif(not (BUNDLED / "transforms_train.json").is_file(),
                                 reason="needs the bundled scene data/lego-mini")
RADIUS = 0.5


def test_density_normals_of_a_sphere():
    """Central differences of a radial density: normals point outwards, along the position."""
    def density(xyz):
        return torch.relu(1.0 - xyz.norm(dim=-1)) * 10.0

    pts = torch.nn.functional.normalize(torch.randn(200, 3, dtype=torch.float64), dim=-1) * 0.7
    n = density_normals(density, pts, 1e-3)
    assert torch.allclose(n, pts / 0.7, atol=1e-6)
    assert viewer_max_res(100, 100) == 200 and viewer_max_res(800, 800) == 512 and viewer_max_res(40, 30) == 128


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("export")
    scene = make_tiny_scene(work / "scene", counts=(("train", 6), ("val", 1), ("test", 1)))
    cmd = [str(BIN / "ns-train"), "spikingnerf", *TINY, "--output-dir", str(work / "out"), "blender-data",
           "--data", str(scene)]
    _ok(subprocess.run(cmd, env=_env(), cwd=work, capture_output=True, text=True, timeout=600))
    return work, scene, next((work / "out").rglob("config.yml"))


def _sphere_outputs(self, ray_bundle):
    """An opaque red sphere of radius :data:`RADIUS` at the origin on white, as the model's outputs ``[R, k]``."""
    o = ray_bundle.origins.reshape(-1, 3)
    d = torch.nn.functional.normalize(ray_bundle.directions.reshape(-1, 3), dim=-1)
    b = (o * d).sum(-1)
    disc = b * b - (o * o).sum(-1) + RADIUS ** 2
    t = -b - disc.clamp_min(0).sqrt()
    hit = (disc > 0) & (t > 0)
    acc = hit.float()[:, None]
    rgb = torch.tensor([0.8, 0.2, 0.1]) * acc + (1 - acc)
    return {"rgb": rgb, "accumulation": acc, "depth": torch.where(hit, t, torch.full_like(t, 6.0))[:, None]}


def _sphere_density(self, xyz, dirs):
    return 50.0 * torch.sigmoid((RADIUS - xyz.norm(dim=-1)) * 40.0), torch.zeros_like(xyz)


@pytest.fixture
def sphere(monkeypatch):
    from spikenerf.nerf.model import SpikingNeRFModel

    monkeypatch.setattr(SpikingNeRFModel, "get_outputs", _sphere_outputs)
    monkeypatch.setattr(SpikingNeRFModel, "query_points", _sphere_density)
    monkeypatch.setattr(SpikingNeRFModel, "world_density", lambda self, xyz: _sphere_density(self, xyz, None)[0])
    # the analytic surface is sharper than the tiny model's fine voxel (the step used on a real grid)
    monkeypatch.setattr(SpikingNeRFModel, "normal_step", lambda self: 0.01)


@needs_scene
def test_outputs_for_export_and_viewer(trained):
    from nerfstudio.utils.eval_utils import eval_setup

    _, _, config = trained
    _, pipeline, _, _ = eval_setup(config, test_mode="test")
    model = pipeline.model
    cams = pipeline.datamanager.train_dataset.cameras
    with torch.no_grad():
        out = model.get_outputs_for_camera(cams[0:1])
    n = out["normals"]
    assert n.shape == (SIZE, SIZE, 3) and float(n.min()) >= 0.0 and float(n.max()) <= 1.0
    acc = out["accumulation"][..., 0] > 0.5 * float(out["accumulation"].max())
    assert acc.any()
    unit = n[acc] * 2 - 1
    assert torch.allclose(unit.norm(dim=-1), torch.ones(int(acc.sum())), atol=1e-3)
    rgba = model.get_rgba_image(out)
    assert torch.equal(rgba[..., 3:], out["accumulation"])  # background pixels are transparent
    hidden = model.viewer_hidden_outputs(out.keys())
    shown = [k for k in out if k not in hidden]
    assert {"rgb", "depth", "accumulation", "spike_rate", "normals"} <= set(shown)
    assert not any(k.startswith(HIDDEN_OUTPUT_PREFIXES) for k in shown) and "ray_macs" in hidden


@needs_scene
@pytest.mark.parametrize("normal_method", ["model_output", "open3d"])
def test_ns_export_pointcloud_lies_on_the_surface(trained, sphere, normal_method):
    o3d = pytest.importorskip("open3d", reason="open3d (pip) and libusb-1.0 (apt) needed by ns-export")
    from nerfstudio.scripts.exporter import ExportPointCloud

    work, _, config = trained
    out = work / f"pcd-{normal_method}"
    ExportPointCloud(load_config=config, output_dir=out, num_points=3000, num_rays_per_batch=4096,
                     normal_method=normal_method).main()
    pcd = o3d.io.read_point_cloud(str(out / "point_cloud.ply"))
    points, normals = np.asarray(pcd.points), np.asarray(pcd.normals)
    assert len(points) > 1000 and pcd.has_colors() and len(normals) == len(points)
    radius = np.linalg.norm(points, axis=1)
    assert np.abs(radius - RADIUS).max() < 0.01 * RADIUS, (radius.min(), radius.max())
    outward = (normals * points / radius[:, None]).sum(1)
    assert np.median(outward) > 0.99 and (outward > 0.9).mean() > 0.95, np.percentile(outward, [5, 50])


@needs_scene
def test_ns_export_poisson_mesh(trained, sphere):
    o3d = pytest.importorskip("open3d", reason="open3d (pip) and libusb-1.0 (apt) needed by ns-export")
    from nerfstudio.scripts.exporter import ExportPoissonMesh

    work, _, config = trained
    out = work / "mesh"
    ExportPoissonMesh(load_config=config, output_dir=out, num_points=3000, num_rays_per_batch=4096,
                      texture_method="point_cloud").main()
    mesh = o3d.io.read_triangle_mesh(str(out / "poisson_mesh.ply"))
    verts = np.asarray(mesh.vertices)
    assert len(verts) > 100 and len(np.asarray(mesh.triangles)) > 100
    assert np.abs(np.linalg.norm(verts, axis=1) - RADIUS).mean() < 0.05 * RADIUS


# -- viewer -----------------------------------------------------------------------------------------

@needs_scene
def test_viewer_starts_outside_the_scene_at_a_training_camera(trained):
    """The patched viewer: counters hidden from its menu, a new browser starts at the first training camera
    (outside the scene box, looking at its centre), max resolution twice the training images'."""
    from types import SimpleNamespace

    from nerfstudio.utils.eval_utils import eval_setup
    from nerfstudio.viewer.render_state_machine import RenderStateMachine
    from nerfstudio.viewer.viewer import Viewer

    from spikenerf.nerf import nerfstudio_patches

    _, _, config = trained
    _, pipeline, _, _ = eval_setup(config, test_mode="test")
    assert RenderStateMachine._send_output_to_viewer.__name__ == "send_visible"
    assert Viewer.handle_new_client.__module__ == nerfstudio_patches.__name__
    pos, look_at, up, fov = nerfstudio_patches._train_camera_view(SimpleNamespace(pipeline=pipeline))
    aabb = pipeline.datamanager.train_dataset.scene_box.aabb.numpy()
    assert (np.abs(pos) > aabb[1]).any(), pos  # outside the box
    centre = aabb.mean(0)
    forward = (look_at - pos) / np.linalg.norm(look_at - pos)
    to_centre = (centre - pos) / np.linalg.norm(centre - pos)
    assert float(forward @ to_centre) > 0.95 and 0.1 < fov < 2.5 and abs(np.linalg.norm(up) - 1) < 1e-6


def test_screenshot_check_tells_a_render_from_an_empty_viewer():
    import io

    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    from viewer_screenshot import looks_rendered

    shot = Path(__file__).resolve().parents[2] / "docs" / "img" / "viewer.png"
    assert looks_rendered(shot.read_bytes())  # the README's screenshot of a trained lego
    fern = shot.with_name("viewer_fern_ndc.jpg")  # a forward-facing NDC run: the scene fills the view
    buf = io.BytesIO()
    Image.open(fern).save(buf, format="png")
    assert looks_rendered(buf.getvalue())
    buf = io.BytesIO()
    Image.new("RGB", (1200, 800), (30, 30, 30)).save(buf, format="png")  # connected, nothing drawn
    assert not looks_rendered(buf.getvalue())


def test_normal_step_is_the_current_fine_voxel():
    """``fine_voxel`` is a method on the grid models: the step must be its value, not the 1/256 fallback."""
    from spikenerf.nerf.export import NerfstudioToolsMixin

    class Grid(NerfstudioToolsMixin):
        def fine_voxel(self) -> float:
            return 0.125

    assert Grid().normal_step() == 0.125


@pytest.mark.parametrize("counter", ["num_color_samples", "accumulation"])
def test_normals_only_where_a_ray_rendered_something(counter):
    """Rays with a colour sample (or, without that counter, an accumulation) get the density normal at their
    depth; the others the zero normal (0.5 after the [0, 1] mapping), without a density look-up."""
    from spikenerf.nerf.export import NerfstudioToolsMixin

    looked_up = []

    class Base(torch.nn.Module):
        def forward(self, ray_bundle):
            hit = torch.tensor([[1.0], [0.0], [2.0], [0.0]])
            return {"rgb": torch.zeros(4, 3), "depth": torch.tensor([[0.5], [3.0], [0.2], [0.5]]), counter: hit}

    class Model(NerfstudioToolsMixin, Base):
        def normal_step(self) -> float:
            return 1e-3

        def world_density(self, xyz):
            looked_up.append(xyz.shape[0])
            return torch.relu(1.0 - xyz.norm(dim=-1)) * 10.0  # normals point along the position

    class Bundle:
        origins = torch.zeros(4, 3)
        directions = torch.tensor([[0.6, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -0.1], [1.0, 0.0, 0.0]])

    m = Model().eval()
    normals = m(Bundle())["normals"] * 2 - 1
    # hit rays 0 and 2 (unit directions): points at 0.5 x and -0.2 z, inside the ball, where the gradient is radial
    torch.testing.assert_close(normals[[0, 2]], torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]), atol=1e-4, rtol=0)
    assert torch.equal(normals[[1, 3]], torch.zeros(2, 3)) and looked_up == [2 * 6]
