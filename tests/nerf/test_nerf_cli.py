"""End-to-end command-line tests of ``spikingnerf`` on a tiny copy of the bundled scene.

One short ``ns-train spikingnerf`` run (a few dozen steps on 8 views of 40x40) is shared by the module;
``ns-eval``, ``ns-render`` (video and dataset) and ``ns-viewer`` then run on its checkpoint, and bad scenes
(missing image, malformed ``transforms.json``, nothing but background) must fail with a clear message or
train to a defined result. Start-up of each ``ns-*`` command (importing nerfstudio) dominates: the module
took 11 minutes on two CPU cores shared with other jobs (load average 10-15).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "data" / "lego-mini"
BIN = Path(sys.executable).parent
ENV_METHODS = ("spikingnerf=spikenerf.nerf.method_configs:spikingnerf,"
               "spikingnerf-ann=spikenerf.nerf.method_configs:spikingnerf_ann")
SIZE = 40
# a short schedule on small grids: coarse stage, then the fine (spiking) stage with one up-scaling
TINY = ["--max-num-iterations", "24", "--steps-per-save", "12", "--steps-per-eval-image", "100000",
        "--steps-per-eval-batch", "100000", "--machine.device-type", "cpu", "--vis", "tensorboard",
        "--viewer.quit-on-train-completion", "True",
        "--pipeline.datamanager.train-num-rays-per-batch", "256",
        "--pipeline.model.coarse-steps", "10", "--pipeline.model.pg-scale-steps", "6",
        "--pipeline.model.coarse-resolution", "16", "--pipeline.model.fine-resolution", "24",
        "--pipeline.model.hidden-dim", "16"]

pytestmark = pytest.mark.skipif(not (BUNDLED / "transforms_train.json").is_file(),
                                reason="needs the bundled scene data/lego-mini")


def _env() -> dict:
    env = dict(os.environ)
    # the installed entry points list the methods; the variable also works from a stale editable install
    env.setdefault("NERFSTUDIO_METHOD_CONFIGS", ENV_METHODS)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _run(args: list, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [str(BIN / args[0]), *map(str, args[1:])]
    return subprocess.run(cmd, env=_env(), cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _ok(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-4000:]}"


def make_tiny_scene(dst: Path, size: int = SIZE, counts=(("train", 8), ("val", 2), ("test", 2))) -> Path:
    """A Blender-format copy of ``data/lego-mini`` with fewer, smaller views (poses unchanged)."""
    for split, n in counts:
        meta = json.loads((BUNDLED / f"transforms_{split}.json").read_text())
        frames = meta["frames"]
        keep = [frames[int(round(i))] for i in np.linspace(0, len(frames) - 1, min(n, len(frames)))]
        (dst / split).mkdir(parents=True, exist_ok=True)
        out = []
        for k, fr in enumerate(keep):
            img = Image.open(BUNDLED / (fr["file_path"].lstrip("./") + ".png")).convert("RGBA")
            img.resize((size, size), Image.Resampling.BOX).save(dst / split / f"r_{k}.png")
            out.append({"file_path": f"./{split}/r_{k}", "transform_matrix": fr["transform_matrix"]})
        (dst / f"transforms_{split}.json").write_text(
            json.dumps({"camera_angle_x": meta["camera_angle_x"], "frames": out}))
    return dst


def _train(scene: Path, out: Path, cwd: Path, method: str = "spikingnerf", extra=(), timeout: int = 400):
    return _run(["ns-train", method, *TINY, *extra, "--output-dir", out, "blender-data", "--data", scene],
                cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny training run: ``(workdir, scene, config.yml)``."""
    work = tmp_path_factory.mktemp("cli")
    scene = make_tiny_scene(work / "scene")
    r = _train(scene, work / "outputs", work)
    _ok(r)
    (work / "train.log").write_text(r.stdout + r.stderr)
    configs = list((work / "outputs").rglob("config.yml"))
    assert len(configs) == 1, configs
    return work, scene, configs[0]


def test_train_writes_weights_only_checkpoint(run):
    _, _, config = run
    ckpts = sorted((config.parent / "nerfstudio_models").glob("step-*.ckpt"))
    assert ckpts, "no checkpoint written"
    state = torch.load(ckpts[-1], weights_only=True, map_location="cpu")
    assert state["step"] == 23  # the last of 24 iterations is saved when training ends
    pipe = state["pipeline"]
    assert any(k.endswith("occupancy") for k in pipe), "occupancy cache missing from the checkpoint"
    assert all(torch.isfinite(v).all() for v in pipe.values() if torch.is_tensor(v) and v.is_floating_point())
    assert {"grids", "mlp"} <= set(state["optimizers"])


def _no_constants(name):
    raise ValueError(f"non-standard JSON constant {name}")


def test_train_prints_only_nerfstudios_import_warnings(run):
    """The known, harmless warnings after the plugin import are filtered; the three nerfstudio emits while
    importing itself (before any plugin loads) remain."""
    work, _, _ = run
    log = (work / "train.log").read_text()
    warns = re.findall(r"^\S+:\d+: (\w+Warning): (.*)$", log, flags=re.M)
    assert len(warns) <= 3, warns
    assert all("torch.jit.script" in m or "custom_fwd" in m or "custom_bwd" in m for _, m in warns), warns
    assert "Train Loss" in log


def test_ns_eval_json(run):
    work, _, config = run
    out = work / "eval.json"
    r = _run(["ns-eval", "--load-config", config, "--output-path", out], cwd=work)
    _ok(r)
    assert "evaluated image 1/2" in r.stdout and "evaluated image 2/2" in r.stdout  # progress per image
    res = json.loads(out.read_text(), parse_constant=_no_constants)["results"]  # strict JSON: no NaN
    assert 0.0 < res["psnr"] < 60.0 and 0.0 < res["ssim"] <= 1.0
    # LPIPS needs AlexNet weights from the network: unavailable offline -> null, never a crash
    assert "lpips" in res and (res["lpips"] is None or 0.0 <= res["lpips"] <= 1.0)
    assert res["lpips_available"] in (0.0, 1.0) and (res["lpips_available"] == 1.0) == (res["lpips"] is not None)
    for k in ("firing_rate", "firing_rate_lif1", "firing_rate_lif2"):
        assert 0.0 <= res[k] <= 1.0, k
    for k in ("macs_per_image", "sops_per_image", "energy_uj_per_image", "ann_energy_uj_per_image",
              "energy_reduction_vs_ann", "color_samples_per_ray"):
        assert math.isfinite(res[k]) and res[k] >= 0.0, k
    assert res["macs_per_image"] > 0 and res["energy_uj_per_image"] > 0


def test_ns_render_interpolate_mp4(run):
    import imageio.v3 as iio

    work, _, config = run
    out = work / "renders" / "interp.mp4"
    r = _run(["ns-render", "interpolate", "--load-config", config, "--output-path", out,
              "--interpolation-steps", "2", "--frame-rate", "4", "--rendered-output-names", "rgb"], cwd=work)
    _ok(r)
    assert out.is_file() and out.stat().st_size > 0
    frames = iio.imread(out, plugin="pyav") if _has("av") else None
    if frames is None:  # no PyAV: check the container header at least
        assert out.read_bytes()[4:8] == b"ftyp"
    else:
        assert frames.shape[1:] == (SIZE, SIZE, 3) and frames.shape[0] >= 2


def test_ns_render_spiral_mp4(run):
    """nerfstudio 1.1.5's spiral path mixes float64 and float32 in ``viewmatrix``; patched on load."""
    work, _, config = run
    out = work / "renders" / "spiral.mp4"
    r = _run(["ns-render", "spiral", "--load-config", config, "--output-path", out, "--seconds", "1",
              "--frame-rate", "3", "--rendered-output-names", "rgb"], cwd=work)
    _ok(r)
    assert out.is_file() and out.read_bytes()[4:8] == b"ftyp"


def _has(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


def test_ns_render_dataset_images(run):
    work, _, config = run
    out = work / "renders" / "dataset"
    r = _run(["ns-render", "dataset", "--load-config", config, "--output-path", out, "--split", "test",
              "--rendered-output-names", "rgb", "depth", "--image-format", "png"], cwd=work)
    _ok(r)
    pngs = sorted(out.rglob("*.png"))
    rgb = [p for p in pngs if "rgb" in p.parts[-2]]
    assert len(rgb) == 2, pngs
    img = np.asarray(Image.open(rgb[0]))
    assert img.shape[:2] == (SIZE, SIZE)
    assert any("depth" in p.parts[-2] for p in pngs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ns_viewer_serves_page_and_websocket(run):
    """``spikenerf-viewer`` (``ns-viewer`` bound to 127.0.0.1 unless told otherwise; no host flag here)."""
    work, _, config = run
    port = _free_port()
    cmd = [str(BIN / "spikenerf-viewer"), "--load-config", str(config), "--viewer.websocket-port", str(port)]
    log = (work / "viewer.log").open("w+")
    p = subprocess.Popen(cmd, env=_env(), cwd=work, stdout=log, stderr=subprocess.STDOUT)
    try:
        page = None
        deadline = time.time() + 240
        while time.time() < deadline and p.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                    page = resp.read().decode("utf-8", "replace")
                    break
            except OSError:
                time.sleep(1.0)
        log.flush()
        log.seek(0)
        assert page is not None, f"viewer did not answer on port {port} (exit {p.poll()}):\n{log.read()[-3000:]}"
        assert "<html" in page.lower() and "<script" in page.lower()
        # the websocket (same port) accepts a client and sends the scene state
        if _has("websockets"):
            from websockets.sync.client import connect

            with connect(f"ws://127.0.0.1:{port}", open_timeout=30) as ws:
                msg = ws.recv(timeout=60)
            assert isinstance(msg, (bytes, bytearray)) and len(msg) > 0
        else:  # raw HTTP upgrade handshake
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
                assert s.recv(4096).startswith(b"HTTP/1.1 101")
        # bound to the loopback only
        assert not re.search(r"0\.0\.0\.0", _listening(port)), _listening(port)
    finally:
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=20)
        log.close()


def _listening(port: int) -> str:
    """The local addresses listening on ``port`` (from /proc/net/tcp), as dotted quads."""
    rows = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, p = local.split(":")
        if state == "0A" and int(p, 16) == port:
            rows.append(".".join(str(b) for b in reversed(bytes.fromhex(addr))))
    return " ".join(rows)


# -- bad input --------------------------------------------------------------------------------------

def _error_text(r: subprocess.CompletedProcess) -> str:
    return r.stdout + r.stderr


def test_missing_image_file_gives_clear_error(tmp_path):
    """In-process (the CLI path is the same check, see the malformed-JSON test): every missing file named."""
    from spikenerf.nerf.datamanager import SceneError, check_blender_scene

    scene = make_tiny_scene(tmp_path / "scene", counts=(("train", 4), ("val", 1)))
    (scene / "train" / "r_2.png").unlink()
    (scene / "train" / "r_3.png").unlink()
    with pytest.raises(SceneError, match=r"transforms_train.json: 2 of 4 image files not found: .*r_2.png.*r_3.png"):
        check_blender_scene(scene, ["train", "val"])


def test_malformed_transforms_gives_clear_error(tmp_path):
    scene = make_tiny_scene(tmp_path / "scene", counts=(("train", 4), ("val", 1), ("test", 1)))
    (scene / "transforms_train.json").write_text('{"camera_angle_x": 0.69, "frames": [')  # truncated
    r = _train(scene, tmp_path / "out", tmp_path, timeout=200)
    assert r.returncode != 0
    text = _error_text(r)
    assert "SceneError" in text and "transforms_train.json is not valid JSON" in text, text[-3000:]


@pytest.mark.parametrize("meta, msg", [
    ({"frames": []}, "camera_angle_x"),
    ({"camera_angle_x": 0.7, "frames": []}, "'frames' must be a non-empty list"),
    ({"camera_angle_x": 0.7, "frames": [{"file_path": "./train/r_0"}]}, "transform_matrix"),
    ({"camera_angle_x": 0.7, "frames": [{"transform_matrix": [[1, 0, 0, 0]] * 4}]}, "file_path"),
    ([1, 2], "expected a JSON object"),
])
def test_scene_check_messages(tmp_path, meta, msg):
    """The up-front scene check (in-process: no nerfstudio start-up) names the file and the problem."""
    from spikenerf.nerf.datamanager import SceneError, check_blender_scene

    scene = make_tiny_scene(tmp_path / "scene", counts=(("train", 1), ("val", 1)))
    check_blender_scene(scene, ["train", "val"])  # the untouched copy passes
    (scene / "transforms_val.json").write_text(json.dumps(meta))
    with pytest.raises(SceneError, match=re.escape(msg)) as e:
        check_blender_scene(scene, ["train", "val"])
    assert "transforms_val.json" in str(e.value)
    with pytest.raises(SceneError, match="does not exist"):
        check_blender_scene(tmp_path / "nowhere", ["train"])


def test_empty_scene_trains_to_background(tmp_path):
    """Fully transparent images (nothing but background): training finishes and renders background."""
    scene = make_tiny_scene(tmp_path / "scene", counts=(("train", 4), ("val", 1), ("test", 1)))
    for png in scene.rglob("*.png"):
        Image.fromarray(np.zeros((SIZE, SIZE, 4), np.uint8)).save(png)
    # 20 steps: the learning rates decay over --max-num-iterations (to lr_final at the last step)
    r = _train(scene, tmp_path / "out", tmp_path, extra=["--max-num-iterations", "20"], timeout=300)
    _ok(r)
    config = next((tmp_path / "out").rglob("config.yml"))
    from nerfstudio.utils.eval_utils import eval_setup  # in-process: saves an ns-eval start-up

    _, pipeline, _, _ = eval_setup(config, test_mode="test")
    ds = pipeline.datamanager.eval_dataset
    with torch.no_grad():
        out = pipeline.model.get_outputs_for_camera(ds.cameras[0:1])
    metrics, _ = pipeline.model.get_image_metrics_and_images(out, ds[0])
    assert metrics["psnr"] > 20.0, metrics  # (nearly) white background against the white target
    assert all(math.isfinite(metrics[k]) for k in ("ssim", "energy_uj_per_image", "color_samples_per_ray"))



# -- chunked rendering ------------------------------------------------------------------------------

RENDER_SCRIPT = r"""
import resource, sys, time, torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.scene_box import SceneBox
from spikenerf.nerf.model import SpikingNeRFModelConfig

size, chunk = int(sys.argv[1]), int(sys.argv[2])
torch.manual_seed(0)
cfg = SpikingNeRFModelConfig(coarse_steps=2, coarse_resolution=12, fine_resolution=20, pg_scale_steps=(2,),
                             hidden_dim=16, eval_num_rays_per_chunk=chunk)
m = cfg.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.5] * 3, [1.5] * 3])), num_train_data=1, metadata={})
m._set_step(10)
with torch.no_grad():
    for g in (m.field.density_grid, m.field.feature_grid):
        for p in g.parameters():
            p.normal_(0.0, 0.5)
m.eval()
seen = []
fwd = m.forward
m.forward = lambda ray_bundle: (seen.append(len(ray_bundle)), fwd(ray_bundle))[1]
c2w = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4.0]])[None]  # looks down -z at the box
cam = Cameras(camera_to_worlds=c2w, fx=size * 1.1, fy=size * 1.1, cx=size / 2, cy=size / 2, width=size, height=size)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.time()
out = m.get_outputs_for_camera(cam)
dt = time.time() - t0
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert out["rgb"].shape == (size, size, 3) and torch.isfinite(out["rgb"]).all()
print(f"size={size} chunks={len(seen)} max_chunk={max(seen)} render_s={dt:.1f} "
      f"peak_rss_mb={rss1 / 1024:.0f} peak_growth_mb={(rss1 - rss0) / 1024:.0f} "
      f"samples_per_ray={float(out['num_color_samples'].float().mean()):.1f}")
"""


def render_peak_rss(size: int, chunk: int = 4096, timeout: int = 600) -> dict:
    """Render a ``size`` x ``size`` camera in a fresh process; its chunk sizes, time and peak RSS."""
    r = subprocess.run([sys.executable, "-c", RENDER_SCRIPT, str(size), str(chunk)], capture_output=True,
                       text=True, timeout=timeout, env=_env())
    assert r.returncode == 0, r.stderr[-3000:]
    line = r.stdout.strip().splitlines()[-1]
    return {k: float(v) for k, v in (kv.split("=") for kv in line.split())}


def test_camera_render_is_chunked():
    """A 200x200 camera renders in chunks of ``eval_num_rays_per_chunk`` rays with bounded memory
    (``python tests/nerf/test_nerf_cli.py 800`` measures an 800x800 render the same way)."""
    res = render_peak_rss(200, chunk=4096)
    assert res["max_chunk"] <= 4096 and res["chunks"] == math.ceil(200 * 200 / 4096)
    assert res["samples_per_ray"] > 1.0  # the rays do cross the randomised grid
    assert res["peak_growth_mb"] < 1024, res


if __name__ == "__main__":  # peak-RSS measurement of a bigger render, e.g. `python tests/nerf/test_nerf_cli.py 800`
    print(render_peak_rss(int(sys.argv[1]) if len(sys.argv) > 1 else 800))
