"""Bad input of every data parser ends in one ``SceneError`` naming the file(s) and what to do.

In-process checks (no nerfstudio start-up) for ``blender-data``, ``nerfstudio-data``, ``instant-ngp-data``
and ``colmap`` (on a copy of parts of ``../shared/data/beer-can-colmap``; skipped without it), the checks
after parsing, and two ``ns-train`` runs that must fail with one short line and leave no run folder.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spikenerf.nerf.datamanager import (CheckedInputDataset, SceneError, check_blender_scene, check_colmap_scene,
                                        check_dataset_images, check_transforms_scene)

sys.path.insert(0, str(Path(__file__).parent))
from test_nerf_cli import BIN, BUNDLED, SIZE, TINY, _env, make_tiny_scene  # noqa: E402

BEER = Path(__file__).resolve().parents[3] / "shared" / "data" / "beer-can-colmap"
needs_scene = pytest.mark.skipif(not (BUNDLED / "transforms_train.json").is_file(),
                                 reason="needs the bundled scene data/lego-mini")
needs_beer = pytest.mark.skipif(not (BEER / "sparse" / "0" / "images.bin").is_file(),
                                reason="needs ../shared/data/beer-can-colmap (a real COLMAP capture)")


def _blender(tmp_path: Path) -> Path:
    return make_tiny_scene(tmp_path / "scene", counts=(("train", 4), ("val", 1), ("test", 1)))


def _nerfstudio(tmp_path: Path, extra_frames=()) -> Path:
    """The tiny Blender scene as a nerfstudio-data ``transforms.json`` (train frames only)."""
    scene = _blender(tmp_path)
    meta = json.loads((scene / "transforms_train.json").read_text())
    fl = 0.5 * SIZE / math.tan(0.5 * meta["camera_angle_x"])
    frames = [{"file_path": fr["file_path"].lstrip("./") + ".png", "transform_matrix": fr["transform_matrix"]}
              for fr in meta["frames"]] + list(extra_frames)
    (scene / "transforms.json").write_text(json.dumps(
        {"fl_x": fl, "fl_y": fl, "cx": SIZE / 2, "cy": SIZE / 2, "w": SIZE, "h": SIZE, "frames": frames}))
    return scene


# -- blender-data -----------------------------------------------------------------------------------

@needs_scene
def test_blender_wrong_size_and_unreadable_images_are_named(tmp_path):
    scene = _blender(tmp_path)
    check_blender_scene(scene, ["train", "val"])
    Image.new("RGBA", (SIZE + 10, SIZE)).save(scene / "train" / "r_2.png")
    (scene / "train" / "r_3.png").write_bytes(b"not a png")
    with pytest.raises(SceneError) as e:
        check_blender_scene(scene, ["train", "val"])
    msg = str(e.value)
    assert "transforms_train.json" in msg and "r_2.png (50x40, expected 40x40)" in msg
    assert "1 image files are not readable images: " in msg and "r_3.png" in msg
    assert "remove their frames" in msg


# -- nerfstudio-data / instant-ngp-data --------------------------------------------------------------

@needs_scene
def test_nerfstudio_data_missing_images_are_all_listed(tmp_path):
    extra = [{"file_path": f"images/frame_{i:05d}.png", "transform_matrix": np.eye(4).tolist()} for i in range(7)]
    scene = _nerfstudio(tmp_path, extra)
    with pytest.raises(SceneError, match=r"transforms.json: 7 of 11 image files not found: .*frame_00000.png.*"
                                         r"and 2 more"):
        check_transforms_scene(scene, "nerfstudio-data")
    # without the dropped frames the scene passes
    meta = json.loads((scene / "transforms.json").read_text())
    meta["frames"] = meta["frames"][:4]
    (scene / "transforms.json").write_text(json.dumps(meta))
    check_transforms_scene(scene, "nerfstudio-data")
    check_transforms_scene(scene / "transforms.json", "nerfstudio-data")  # --data may name the file


@needs_scene
@pytest.mark.parametrize("edit, msg", [
    (lambda s: (s / "transforms.json").unlink(), "transforms.json not found: a nerfstudio-data scene"),
    (lambda s: (s / "transforms.json").write_text('{"frames": ['), "transforms.json is not valid JSON"),
    (lambda s: Image.new("RGB", (20, 20)).save(s / "train" / "r_1.png"), "r_1.png (20x20, expected 40x40)"),
    (lambda s: _drop_key(s, "fl_x"), "frames[0] ('train/r_0.png') has no fl_x"),
])
def test_nerfstudio_data_messages(tmp_path, edit, msg):
    scene = _nerfstudio(tmp_path)
    check_transforms_scene(scene, "nerfstudio-data")
    edit(scene)
    with pytest.raises(SceneError, match=msg.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        check_transforms_scene(scene, "nerfstudio-data")


def _drop_key(scene: Path, key: str) -> None:
    meta = json.loads((scene / "transforms.json").read_text())
    del meta[key]
    (scene / "transforms.json").write_text(json.dumps(meta))


@needs_scene
def test_instant_ngp_data_messages(tmp_path):
    scene = _nerfstudio(tmp_path)
    check_transforms_scene(scene, "instant-ngp-data")
    _drop_key(scene, "fl_x")
    with pytest.raises(SceneError, match="needs 'fl_x' or 'camera_angle_x'"):
        check_transforms_scene(scene, "instant-ngp-data")
    with pytest.raises(SceneError, match="does not exist"):
        check_transforms_scene(tmp_path / "nowhere", "instant-ngp-data")


# -- colmap (a real capture) ------------------------------------------------------------------------

def _beer_copy(tmp_path: Path, images: bool = True) -> Path:
    dst = tmp_path / "beer"
    shutil.copytree(BEER / "sparse", dst / "sparse")
    if images:
        shutil.copytree(BEER / "images_4", dst / "images_4")
    return dst


@needs_beer
def test_colmap_capture_passes_and_missing_images_bin_is_named(tmp_path):
    scene = _beer_copy(tmp_path)
    check_colmap_scene(scene, Path("sparse/0"), Path("images"), downscale_factor=4)
    (scene / "sparse" / "0" / "images.bin").unlink()
    with pytest.raises(SceneError, match=r"sparse/0/images.bin not found: a COLMAP model has cameras.bin"):
        check_colmap_scene(scene, Path("sparse/0"), Path("images"), downscale_factor=4)


@needs_beer
def test_colmap_wrong_model_path_and_missing_frames(tmp_path):
    scene = _beer_copy(tmp_path)
    with pytest.raises(SceneError, match=r"colmap/sparse/0 does not exist \(found a model in sparse/0: pass "
                                         r"--colmap-path sparse/0\)"):
        check_colmap_scene(scene)  # nerfstudio's default --colmap-path
    for name in ("0003.jpg", "0040.jpg"):
        (scene / "images_4" / name).unlink()
    with pytest.raises(SceneError, match=r"images.bin: 2 of 71 image files not found: .*0003.jpg.*0040.jpg"):
        check_colmap_scene(scene, Path("sparse/0"), Path("images"), downscale_factor=4)


# -- after parsing ----------------------------------------------------------------------------------

@needs_scene
def test_dataset_images_checked_against_their_cameras(tmp_path):
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

    scene = _blender(tmp_path)
    outputs = BlenderDataParserConfig(data=scene).setup().get_dataparser_outputs("train")
    dataset = CheckedInputDataset(outputs)
    check_dataset_images(dataset, "train")
    Image.new("RGBA", (SIZE, SIZE + 4)).save(scene / "train" / "r_1.png")
    with pytest.raises(SceneError, match=r"the train split: 1 images have the wrong size: .*r_1.png \(40x44, "
                                         r"expected 40x40\)"):
        check_dataset_images(dataset, "train")
    # a file that only fails while decoding names itself and its index
    good = (scene / "train" / "r_2.png").read_bytes()
    (scene / "train" / "r_2.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(SceneError, match=r"image 2 \(.*r_2.png\) could not be read"):
        dataset.get_numpy_image(2)


# -- the command line: one line, no traceback, no config dump, no run folder ------------------------

def _ns_train_fails(tmp_path: Path, parser_args: list) -> str:
    out = tmp_path / "out"
    cmd = [str(BIN / "ns-train"), "spikingnerf", *TINY, "--output-dir", str(out), *map(str, parser_args)]
    r = subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "TrainerConfig(" not in r.stdout, (r.stdout[-2000:], r.stderr[-3000:])
    assert not out.exists() or not any(out.rglob("*")), list(out.rglob("*"))
    return r.stderr.strip().splitlines()[-1]


@needs_scene
def test_cli_wrong_size_image_is_one_line(tmp_path):
    scene = _blender(tmp_path)
    Image.new("RGBA", (SIZE, SIZE // 2)).save(scene / "train" / "r_3.png")
    line = _ns_train_fails(tmp_path, ["blender-data", "--data", scene])
    assert line.startswith("SceneError: ") and "train/r_3.png (40x20, expected 40x40)" in line


@needs_scene
def test_cli_nerfstudio_data_missing_images_is_one_line(tmp_path):
    extra = [{"file_path": f"images/frame_{i:05d}.png", "transform_matrix": np.eye(4).tolist()} for i in range(3)]
    scene = _nerfstudio(tmp_path, extra)
    line = _ns_train_fails(tmp_path, ["nerfstudio-data", "--data", scene, "--downscale-factor", "1"])
    assert line.startswith("SceneError: ") and "3 of 7 image files not found" in line
    assert all(f"frame_0000{i}.png" in line for i in range(3))


def test_data_manager_draws_only_masked_pixels(tmp_path):
    """In-cache ray sampling through nerfstudio's pixel sampler: only pixels where the model's mask is True."""
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

    from spikenerf.nerf.datamanager import SpikingNeRFDataManagerConfig

    scene = make_tiny_scene(tmp_path / "scene", counts=(("train", 3), ("val", 1), ("test", 1)))
    cfg = SpikingNeRFDataManagerConfig(dataparser=BlenderDataParserConfig(data=scene), train_num_rays_per_batch=64)
    dm = cfg.setup(device="cpu", test_mode="val")
    n = len(dm.train_dataset)
    h, w = int(dm.train_dataset.cameras.height[0]), int(dm.train_dataset.cameras.width[0])
    mask = torch.zeros(n, h, w, 1, dtype=torch.bool)
    mask[1, :, : w // 2] = True  # the left half of the second image
    dm.set_ray_mask(mask)
    for step in range(3):
        _, batch = dm.next_train(step)
        idx = batch["indices"]
        assert idx.shape == (64, 3)
        assert (idx[:, 0] == 1).all() and (idx[:, 2] < w // 2).all()
    few = torch.zeros_like(mask)
    few[0, 0, :3] = True  # fewer pixels than a batch: ignored, every pixel again
    dm.set_ray_mask(few)
    assert dm.ray_mask is None
