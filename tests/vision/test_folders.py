"""A user's own data: image-folder and event-folder datasets through the CLI (train, eval on another folder),
and the clear errors for folders that do not fit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spikenerf.vision.cli import main
from spikenerf.vision.data import get_dataset, read_events

FAST = ["--epochs", "1", "--max-batches", "1", "--batch-size", "8", "--no-progress", "--no-tensorboard"]


def _images(root: Path, classes: list[str], n: int, size=(28, 28), mode="L", seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for split, k in (("train", n), ("test", max(1, n // 2))):
        for ci, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(k):
                shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], len(mode))
                a = (rng.random(shape) * 80 + ci * 10).clip(0, 255).astype(np.uint8)
                Image.fromarray(a, mode).save(d / f"{i}.png")
    return root


def _events(root: Path, classes: list[str], n: int, side: int = 20, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, k in (("train", n), ("test", max(1, n // 2))):
        for ci, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(k):
                m = 200
                x, y = rng.integers(0, side, m), rng.integers(0, side, m)
                t, p = np.sort(rng.integers(0, 10_000, m)), rng.integers(0, 2, m)
                if i % 3 == 0:  # structured (tonic layout)
                    a = np.zeros(m, dtype=[("x", "<i2"), ("y", "<i2"), ("p", "<i1"), ("t", "<i8")])
                    a["x"], a["y"], a["p"], a["t"] = x, y, p, t
                    np.save(d / f"{i}.npy", a)
                elif i % 3 == 1:  # plain [N, 4]: x, y, t, p
                    np.save(d / f"{i}.npy", np.stack([x, y, t, p], 1))
                else:
                    np.savez(d / f"{i}.npz", x=x, y=y, p=p * 2 - 1, t=t)
    return root


def test_image_folder_28px_gray_12_classes_trains_and_evaluates(tmp_path, capsys):
    data = _images(tmp_path / "imgs", [f"c{i:02d}" for i in range(12)], 2)
    out = tmp_path / "run"
    main(["train", "digits-demo", "--dataset", "image-folder", "--data-root", str(data), "--output-dir", str(out), *FAST])
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    info = state["data_info"]
    assert (info["num_classes"], info["in_channels"], info["input_size"]) == (12, 1, 28)
    assert state["model"]["fc.weight"].shape[0] == 12
    # another folder with the same classes, RGB and another size: converted and resized to the model's input
    other = _images(tmp_path / "other", [f"c{i:02d}" for i in range(12)], 2, size=(40, 30), mode="RGB", seed=1)
    main(["eval", "--checkpoint", str(out / "checkpoint.pt"), "--data-root", str(other), "--no-progress"])
    assert "accuracy" in capsys.readouterr().out
    # a folder with other classes is refused, with the class names
    wrong = _images(tmp_path / "wrong", ["a", "b"], 2)
    with pytest.raises(SystemExit) as e:
        main(["eval", "--checkpoint", str(out / "checkpoint.pt"), "--data-root", str(wrong), "--no-progress"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "differ from the model's" in err and "Traceback" not in err



def test_eval_reads_a_test_folder_alone_or_a_folder_of_class_folders(tmp_path, capsys):
    """``eval`` scores only the test split: ``DIR/test/<class>`` without ``train/``, or ``DIR/<class>`` itself."""
    classes = ["cat", "dog", "owl"]
    out = tmp_path / "run"
    main(["train", "digits-demo", "--dataset", "image-folder", "--data-root", str(_images(tmp_path / "imgs", classes, 2)),
          "--output-dir", str(out), *FAST])
    full = _images(tmp_path / "full", classes, 2, seed=3)
    ckpt = ["eval", "--checkpoint", str(out / "checkpoint.pt"), "--no-progress", "--json"]
    test_only = tmp_path / "test-only"
    shutil.copytree(full / "test", test_only / "test")
    flat = tmp_path / "flat"
    shutil.copytree(full / "test", flat)  # flat/<class>/*.png
    results = {}
    for name, root in (("full", full), ("test-only", test_only), ("flat", flat)):
        main([*ckpt, str(tmp_path / f"{name}.json"), "--data-root", str(root)])
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())
    capsys.readouterr()
    per_t = [r["per_T"] for r in results.values()]
    # the same test images in all three layouts: the same samples and the same scores
    assert per_t[0] == per_t[1] == per_t[2], per_t
    n = len(classes) * 1  # _images writes max(1, n // 2) test images per class
    assert all(ev["samples"] == n for r in per_t for ev in r.values()), per_t
    # a flat folder with other classes is still refused
    wrong = tmp_path / "wrong"
    shutil.copytree(full / "test" / "cat", wrong / "lion")
    with pytest.raises(SystemExit) as e:
        main([*ckpt[:-1], "--data-root", str(wrong)])
    assert e.value.code == 2 and "differ from the model's" in capsys.readouterr().err

def test_image_folder_rgb_any_size_and_image_size_flag(tmp_path):
    data = _images(tmp_path / "rgb", ["cat", "dog", "emu"], 2, size=(21, 17), mode="RGBA")
    ds, info = get_dataset("image-folder", True, data, image_size=16)
    x, y = ds[0]
    assert x.shape == (3, 16, 16) and info.num_classes == 3 and info.classes == ("cat", "dog", "emu")
    _, info2 = get_dataset("image-folder", False, data)
    assert info2.input_size == 21 and info2.in_channels == 3


@pytest.mark.parametrize("case", ["differ", "empty", "no-test", "no-root"])
def test_image_folder_bad_layouts_are_one_paragraph(tmp_path, capsys, case):
    data = _images(tmp_path / "d", ["a", "b", "c"], 1)
    if case == "differ":
        (data / "test" / "c").rename(data / "test" / "z")
    elif case == "empty":
        for f in (data / "train" / "b").iterdir():
            f.unlink()
    elif case == "no-test":
        for f in (data / "test").rglob("*.png"):
            f.unlink()
        for d in (data / "test").iterdir():
            d.rmdir()
        (data / "test").rmdir()
    root = [] if case == "no-root" else ["--data-root", str(data)]
    with pytest.raises(SystemExit) as e:
        main(["train", "digits-demo", "--dataset", "image-folder", *root, "--output-dir", str(tmp_path / "o"), *FAST])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err and err.count("\n") == 1
    expect = {"differ": "train and test classes differ", "empty": "holds no", "no-test": "test not found",
              "no-root": "needs --data-root"}[case]
    assert expect in err, err


def test_event_folder_npy_npz_trains(tmp_path, capsys):
    data = _events(tmp_path / "ev", ["left", "right", "up"], 3)
    ev = read_events(next((data / "train" / "up").glob("*.npz")))
    assert set(np.unique(ev["p"])) <= {0, 1}
    ds, info = get_dataset("event-folder", True, data, T=5)
    assert info.num_classes == 3 and info.in_channels == 2 and info.input_size <= 20
    x, _ = ds[0]
    assert x.shape == (5, 2, info.input_size, info.input_size) and float(x.sum()) > 0
    out = tmp_path / "run"
    main(["train", "vgg11-nmnist", "--dataset", "event-folder", "--data-root", str(data), "--timesteps", "4",
          "--width", "0.125", "--output-dir", str(out), *FAST])
    main(["eval", "--checkpoint", str(out / "checkpoint.pt"), "--no-progress"])
    assert "accuracy" in capsys.readouterr().out
