"""``llff-data`` (``spikenerf.nerf.llff_dataparser``) on a tiny forward-facing scene the tests write themselves:
a hand-made ``poses_bounds.npy`` and small PNGs. Poses against a hand computation, the hold-out, focal and
scale, the downscaling fallback, the NDC metadata, every bad-input row (one line naming the file), the entry
point, and one ``ns-train`` that must stop with one line."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib import import_module
from pathlib import Path

import numpy as np
import pytest
import torch
from nerfstudio.data.dataparsers.base_dataparser import transform_poses_to_original_space
from nerfstudio.plugins.registry_dataparser import DataParserSpecification, discover_dataparsers
from PIL import Image

from spikenerf.nerf.datamanager import check_scene
from spikenerf.nerf.errors import ConfigError, SceneError
from spikenerf.nerf.llff_dataparser import (LLFFDataParserConfig, average_pose, check_llff_scene, holdout_split,
                                            llff_to_opengl)
from spikenerf.nerf.ndc import ndc_rays

sys.path.insert(0, str(Path(__file__).parent))
from test_nerf_cli import BIN, TINY, _env  # noqa: E402 (the CLI tests' command line and environment)

REPO = Path(__file__).resolve().parents[2]
N, FULL_H, FULL_W, FULL_F, FACTOR = 10, 32, 48, 40.0, 8
THETA = 0.2  # frames turn +-THETA about y in turn, so the average rotation is the identity
NEARS = 2.0 + 0.1 * np.arange(N)  # the nearest bound is 2: scale 1 / (0.75 * 2)
FAR = 10.0
FERN = REPO.parents[1] / "shared" / "data" / "llff-fern"
ENV = {"NERFSTUDIO_DATAPARSER_CONFIGS": "llff-data=spikenerf.nerf.llff_dataparser:llff_data"}


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def gl_rotation(i: int) -> np.ndarray:
    """Frame ``i``'s camera-to-world rotation in OpenGL axes (columns right, up, back)."""
    return rot_y(THETA if i % 2 == 0 else -THETA)


def translation(i: int) -> np.ndarray:
    return np.array([0.1 * i, 0.05 * (i % 3), 0.02 * i])


def llff_matrix(rot_gl: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``[3, 5]``: LLFF's rotation columns [down, right, back] = [-up, right, back], translation, [H, W, f]."""
    cols = [-rot_gl[:, 1], rot_gl[:, 0], rot_gl[:, 2], t, np.array([FULL_H, FULL_W, FULL_F])]
    return np.stack(cols, 1)


def write_scene(root: Path, world: np.ndarray | None = None, folder: str = f"images_{FACTOR}",
                size: tuple = (FULL_W // FACTOR, FULL_H // FACTOR), suffix: str = ".png") -> Path:
    """A 10-frame forward-facing scene; ``world`` (a 4x4 rigid map) moves every camera when given; frame
    ``i`` is a flat grey of ``20 i`` (so the pairing of poses and files shows)."""
    rows = []
    for i in range(N):
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = gl_rotation(i), translation(i)
        if world is not None:
            pose = world @ pose
        rows.append(np.concatenate([llff_matrix(pose[:3, :3], pose[:3, 3]).reshape(-1), [NEARS[i], FAR]]))
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "poses_bounds.npy", np.array(rows))
    (root / folder).mkdir()
    for i in range(N):
        Image.new("RGB", size, (20 * i, 20 * i, 20 * i)).save(root / folder / f"image{i:03d}{suffix}")
    return root


def parse(root: Path, split: str = "train", **kw):
    return LLFFDataParserConfig(data=root, **kw).setup().get_dataparser_outputs(split)


def expected_c2w(i: int) -> np.ndarray:
    """By hand: the average pose has the identity rotation (the z axes sum to (0, 0, 10 cos THETA), the y axes
    to (0, 10, 0)) and the mean centre, so recentring subtracts the mean; then x 1 / (0.75 * 2)."""
    mean = np.mean([translation(k) for k in range(N)], 0)
    return np.concatenate([gl_rotation(i), ((translation(i) - mean) / 1.5)[:, None]], 1)


def test_poses_focal_scale_and_holdout_by_hand(tmp_path):
    root = write_scene(tmp_path / "scene")
    train, test = parse(root, "train"), parse(root, "test")
    assert holdout_split(N, 8, "test") == [0, 8] and holdout_split(N, 8, "train") == [1, 2, 3, 4, 5, 6, 7, 9]
    assert [f.name for f in test.image_filenames] == ["image000.png", "image008.png"]
    assert [f.name for f in train.image_filenames] == [f"image{i:03d}.png" for i in (1, 2, 3, 4, 5, 6, 7, 9)]
    assert [f.parent.name for f in train.image_filenames] == ["images_8"] * 8
    for out, idx in ((train, holdout_split(N, 8, "train")), (test, [0, 8])):
        want = np.stack([expected_c2w(i) for i in idx])
        np.testing.assert_allclose(out.cameras.camera_to_worlds.numpy(), want, atol=1e-6)
        cams = out.cameras
        assert cams.fx.flatten().tolist() == [FULL_F / FACTOR] * len(idx) == cams.fy.flatten().tolist()
        assert cams.width.flatten().tolist() == [6] * len(idx) and cams.height.flatten().tolist() == [4] * len(idx)
        assert cams.cx.flatten().tolist() == [3.0] * len(idx) and cams.cy.flatten().tolist() == [2.0] * len(idx)
        assert out.dataparser_scale == pytest.approx(1 / 1.5)
        meta = out.metadata
        assert meta["scene_kind"] == "ndc" and meta["ndc_near"] == 1.0 and meta["ndc_focal"] == FULL_F / FACTOR
        assert meta["ndc_hw"] == (4, 6) and meta["near_far"] == pytest.approx((2.0 / 1.5, FAR / 1.5))
    # frame 0 looks down -z turned by +THETA about y: OpenGL's forward is -(back column)
    np.testing.assert_allclose(test.cameras.camera_to_worlds[0, :, 2].numpy(), [np.sin(THETA), 0, np.cos(THETA)],
                               atol=1e-6)
    # nerfstudio's inverse (transform, then scale) gives back the OpenGL poses in LLFF's world frame
    orig = transform_poses_to_original_space(train.cameras.camera_to_worlds.double(),
                                             train.dataparser_transform.double(), train.dataparser_scale,
                                             camera_convention="opengl")
    want = np.stack([np.concatenate([gl_rotation(i), translation(i)[:, None]], 1) for i in (1, 2, 3, 4, 5, 6, 7, 9)])
    np.testing.assert_allclose(orig.numpy(), want, atol=1e-5)


def test_recentring_undoes_any_rigid_map_of_the_world(tmp_path):
    """The same cameras in a world turned about an oblique axis and moved: recentring on the average pose
    gives the same poses (the average pose turns with the cameras)."""
    axis = np.array([1.0, -2.0, 0.5]) / np.linalg.norm([1.0, -2.0, 0.5])
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    world = np.eye(4)
    world[:3, :3] = np.eye(3) + np.sin(0.9) * k + (1 - np.cos(0.9)) * k @ k  # Rodrigues
    world[:3, 3] = [3.0, -1.0, 7.0]
    moved = parse(write_scene(tmp_path / "moved", world), "train")
    plain = parse(write_scene(tmp_path / "plain"), "train")
    np.testing.assert_allclose(moved.cameras.camera_to_worlds.numpy(), plain.cameras.camera_to_worlds.numpy(),
                               atol=1e-5)


def test_axes_and_average_pose():
    # LLFF [down, right, back] of the OpenGL identity camera is [-y, x, z]
    llff = llff_matrix(np.eye(3), np.zeros(3))[None, :, :4]
    np.testing.assert_array_equal(llff_to_opengl(llff)[0], np.eye(4)[:3])
    # two cameras turned +-0.5 about y at (1, 0, 0) and (3, 2, 0): identity rotation, centre (2, 1, 0)
    c2w = np.stack([np.concatenate([rot_y(a), np.array(t, float)[:, None]], 1)
                    for a, t in ((0.5, (1, 0, 0)), (-0.5, (3, 2, 0)))])
    np.testing.assert_allclose(average_pose(c2w), np.concatenate([np.eye(3), [[2], [1], [0]]], 1), atol=1e-12)


def test_ndc_box_covers_the_training_frusta(tmp_path):
    """The scene box is the NDC box of the training cameras' frusta: every training pixel's NDC ray from the
    near plane to infinity stays inside it, and it spans z' in [-1, 1]."""
    out = parse(write_scene(tmp_path / "scene"), "train")
    box = out.scene_box.aabb
    assert box[:, 2].tolist() == pytest.approx([-1.0, 1.0])
    rays = out.cameras.generate_rays(camera_indices=torch.arange(len(out.cameras))[:, None].expand(-1, 1))
    h, w = out.metadata["ndc_hw"]
    o, d = ndc_rays(h, w, out.metadata["ndc_focal"], 1.0, rays.origins.reshape(-1, 3), rays.directions.reshape(-1, 3))
    for t in (0.0, 0.5, 0.999):
        p = o + t * d
        assert bool(((p >= box[0] - 1e-5) & (p <= box[1] + 1e-5)).all())
    assert bool((box[0, :2] < -1).all() and (box[1, :2] > 1).all())  # the side cameras see past [-1, 1]


def test_downscales_images_into_images_factor(tmp_path):
    """No images_8/: images/ (full size, JPEG) is downscaled into images_8/ as PNGs, once."""
    root = write_scene(tmp_path / "scene", folder="images", size=(FULL_W, FULL_H), suffix=".JPG")
    check_llff_scene(root, FACTOR)  # the up-front check accepts it
    out = parse(root, "test")
    assert [f.relative_to(root).as_posix() for f in out.image_filenames] == ["images_8/image000.png",
                                                                            "images_8/image008.png"]
    files = sorted((root / "images_8").iterdir())
    assert len(files) == N and not list(tmp_path.rglob("*.tmp-*"))
    for i, f in enumerate(files):
        im = np.asarray(Image.open(f))
        assert im.shape == (4, 6, 3) and np.abs(im.astype(int) - 20 * i).max() <= 2  # JPEG's rounding
    assert out.cameras.width.flatten().tolist() == [6, 6] and out.cameras.fx[0, 0] == FULL_F / FACTOR
    stamp = files[0].stat().st_mtime_ns
    parse(root, "train")  # the copies are reused
    assert files[0].stat().st_mtime_ns == stamp


def test_factor_one_reads_images(tmp_path):
    root = write_scene(tmp_path / "scene", folder="images", size=(FULL_W, FULL_H))
    out = parse(root, "train", downscale_factor=1)
    assert out.cameras.width[0, 0] == FULL_W and out.cameras.fx[0, 0] == FULL_F
    assert not (root / "images_1").exists()


def _bad(root: Path, *fragments: str, factor: int = FACTOR) -> str:
    """The scene fails the up-front check and the parser with one line holding every fragment."""
    for run in (lambda: check_llff_scene(root, factor),
                lambda: check_scene(LLFFDataParserConfig(data=root, downscale_factor=factor)),
                lambda: parse(root, "train", downscale_factor=factor)):
        with pytest.raises(SceneError) as e:
            run()
        msg = str(e.value)
        assert "\n" not in msg and all(f in msg for f in fragments), msg
    return msg


def test_bad_poses_bounds(tmp_path):
    root = write_scene(tmp_path / "scene")
    arr = np.load(root / "poses_bounds.npy")
    pb = str(root / "poses_bounds.npy")
    (root / "poses_bounds.npy").unlink()
    _bad(root, pb, "not found")
    np.save(root / "poses_bounds.npy", arr[:, :15])
    _bad(root, pb, "shape [10, 15], expected [N, 17]")
    np.save(root / "poses_bounds.npy", arr.reshape(-1))
    _bad(root, pb, "shape [170]")
    (root / "poses_bounds.npy").write_bytes(b"not an array")
    _bad(root, pb, "could not be read")
    bad = arr.copy()
    bad[3, 2] = np.nan
    np.save(root / "poses_bounds.npy", bad)
    _bad(root, pb, "rows [3]", "NaN")
    bad = arr.copy()
    bad[5, 15] = -1.0
    np.save(root / "poses_bounds.npy", bad)
    _bad(root, pb, "rows [5]", "0 < near <= far")
    bad = arr.copy()
    bad[2, 14] = 41.0  # another focal for one frame
    np.save(root / "poses_bounds.npy", bad)
    _bad(root, pb, "[H, W, focal]", "same for every frame")


def test_bad_images(tmp_path):
    root = write_scene(tmp_path / "scene")
    folder = root / "images_8"
    (folder / "image004.png").unlink()
    _bad(root, str(folder), "holds 9 images", "has 10 poses")
    (folder / "image004.png").write_bytes(b"garbage")
    _bad(root, str(folder / "image004.png"), "not a readable image")
    Image.new("RGB", (7, 4)).save(folder / "image004.png")
    _bad(root, str(folder), "differ in size", "image004.png (7x4)")
    for f in folder.iterdir():
        Image.new("RGB", (12, 8)).save(f)
    _bad(root, str(folder / "image000.png"), "12x8", "does not hold 1/8 copies")
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    _bad(root, str(folder), "not found", "images_8/ or images/")
    _bad(tmp_path / "nowhere", str(tmp_path / "nowhere"), "does not exist")
    with pytest.raises(ConfigError, match="--llffhold must be >= 2"):
        parse(write_scene(tmp_path / "good"), "train", llffhold=1)


def test_entry_point_names_the_specification():
    """pyproject.toml registers ``llff-data`` on nerfstudio's entry point, and nerfstudio discovers it (here
    through its environment variable, as the shared editable install may predate the entry point)."""
    entry = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    target = entry["nerfstudio.dataparser_configs"]["llff-data"]
    module, name = target.split(":")
    spec = getattr(import_module(module), name)
    assert isinstance(spec, DataParserSpecification) and isinstance(spec.config, LLFFDataParserConfig)
    os.environ.update(ENV)
    try:
        parsers, _ = discover_dataparsers()
    finally:
        os.environ.pop("NERFSTUDIO_DATAPARSER_CONFIGS")
    assert isinstance(parsers["llff-data"], LLFFDataParserConfig)


@pytest.mark.slow
@pytest.mark.skipif(not (FERN / "poses_bounds.npy").is_file(), reason="needs ../shared/data/llff-fern")
def test_real_fern():
    """The real scene: 20 frames at 504x378, 0 / 8 / 16 held out, focal 3260.5 / 8, nearest bound at 1 / 0.75."""
    train, test = parse(FERN, "train"), parse(FERN, "test")
    assert len(train.image_filenames) == 17
    assert [f.name for f in test.image_filenames] == ["image000.png", "image008.png", "image016.png"]
    raw = np.load(FERN / "poses_bounds.npy")
    assert train.metadata["ndc_hw"] == (378, 504) and train.metadata["ndc_focal"] == pytest.approx(raw[0, 14] / 8)
    near, far = train.metadata["near_far"]
    assert near == pytest.approx(1 / 0.75) and far == pytest.approx(raw[:, 16].max() / raw[:, 15].min() / 0.75)
    centres = torch.cat([train.cameras.camera_to_worlds, test.cameras.camera_to_worlds])[:, :, 3]
    assert float(centres.abs().max()) < 0.5 < near  # the cameras sit well before the near plane


@pytest.mark.slow
def test_ns_train_on_a_bad_llff_scene_is_one_line(tmp_path):
    root = write_scene(tmp_path / "scene")
    (root / "images_8" / "image004.png").unlink()
    out = tmp_path / "out"
    cmd = [str(BIN / "ns-train"), "spikingnerf", *TINY, "--output-dir", str(out), "llff-data", "--data", str(root)]
    env = {**_env(), **ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])  # this tree's code
    r = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr, (r.stdout[-2000:], r.stderr[-3000:])
    assert not out.exists() or not any(out.rglob("*"))
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("SceneError: ") and "holds 9 images" in line and "has 10 poses" in line
