"""Data loading: offline sets, binary N-MNIST decoding, voxel sampling, and clear errors for absent data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikenerf.vision.data import (
    DatasetNotFoundError,
    bin_events,
    get_dataset,
    read_nmnist_bs2,
    to_sequence,
    voxels_to_points,
)


def test_digits_offline():
    pytest.importorskip("sklearn", reason="8x8 digits come from scikit-learn (else generated toy data)")
    ds, info = get_dataset("digits", True)
    x, y = ds[0]
    assert x.shape == (1, 8, 8) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert info.num_classes == 10 and info.kind == "static"
    test, _ = get_dataset("digits", False)
    assert len(ds) + len(test) == 1797


@pytest.mark.parametrize("name", ["cifar10-jpeg", "nmnist", "modelnet10-2class", "cifar10", "mnist", "fashion-mnist",
                                  "imagenet", "cifar10-dvs", "dvs128-gesture", "modelnet10", "modelnet40"])
def test_absent_dataset_raises_clear_error(tmp_path, name):
    with pytest.raises(DatasetNotFoundError) as e:
        get_dataset(name, True, root=tmp_path)
    assert str(tmp_path) in str(e.value) and "nothing is downloaded" in str(e.value)


def test_bs2_decoding(tmp_path):
    # events: (x, y, p, t_us) -> 5 bytes each as in the N-MNIST binary format
    events = [(3, 4, 1, 0x12345), (33, 0, 0, 0x7FFFFF), (0, 33, 1, 7)]
    raw = bytearray()
    for x, y, p, t in events:
        raw += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    f = tmp_path / "1.bs2"
    f.write_bytes(bytes(raw))
    ev = read_nmnist_bs2(f)
    assert ev["x"].tolist() == [3, 33, 0] and ev["y"].tolist() == [4, 0, 33]
    assert ev["p"].tolist() == [1, 0, 1] and ev["t"].tolist() == [0x12345, 0x7FFFFF, 7]
    frames = bin_events(ev, T=4)
    assert frames.shape == (4, 2, 34, 34) and float(frames.sum()) == 3.0
    # the earliest event (t=7) lands in bin 0, the latest in bin T-1
    assert frames[0, 1, 33, 0] == 1 and frames[3, 0, 0, 33] == 1


def test_voxel_surface_points():
    vox = np.zeros((32, 32, 32))
    vox[8:24, 8:24, 8:24] = 1
    pts = voxels_to_points(vox, 512, np.random.default_rng(0), jitter=0.0)
    assert pts.shape == (3, 512) and np.isfinite(pts).all()
    r = np.linalg.norm(pts, axis=0)
    assert r.max() <= 1.0 + 1e-5
    # surface sampling: no point deep inside the cube (interior voxels are never chosen)
    assert np.abs(pts).max(axis=0).min() > 0.3


def test_to_sequence():
    x = torch.rand(5, 1, 8, 8)
    s = to_sequence(x, "static", 3)
    assert s.shape == (3, 5, 1, 8, 8) and torch.equal(s[2], x)
    ev = torch.rand(5, 6, 2, 34, 34)
    assert to_sequence(ev, "events", 6).shape == (6, 5, 2, 34, 34)


@pytest.mark.slow
def test_real_nmnist(shared_data):
    root = shared_data("nmnist-small")
    ds, info = get_dataset("nmnist", False, root=root, T=5)
    x, y = ds[0]
    assert len(ds) == 100 and x.shape == (5, 2, 34, 34) and float(x.sum()) > 100 and 0 <= y < 10


@pytest.mark.slow
def test_real_modelnet(shared_data):
    root = shared_data("modelnet10-voxels-2class")
    tr, info = get_dataset("modelnet10-2class", True, root=root, n_points=256)
    te, _ = get_dataset("modelnet10-2class", False, root=root, n_points=256)
    assert len(tr) + len(te) == 889 + 465 and info.num_classes == 2
    x, y = te[0]
    assert x.shape == (3, 256) and torch.equal(x, te[0][0])  # test points fixed per index


@pytest.mark.slow
def test_real_cifar_jpeg(shared_data):
    root = shared_data("cifar10-jpeg")
    ds, info = get_dataset("cifar10-jpeg", False, root=root, subset=20)
    x, y = ds[0]
    assert len(ds) == 20 and x.shape == (3, 32, 32) and info.num_classes == 10
    assert len({int(ds[i][1]) for i in range(20)}) > 5  # subset spreads over the classes


def _write_off(path, fused_header: bool = False):
    # a unit square at z=0 as one quad (area 1) + a triangle at z=1 of area 3: fanning and area weighting
    head = "OFF7 2 0\n" if fused_header else "OFF\n7 2 0\n"
    path.write_text(head + "0 0 0\n1 0 0\n1 1 0\n0 1 0\n0 0 1\n3 0 1\n0 2 1\n4 0 1 2 3\n3 4 5 6\n")


@pytest.mark.parametrize("fused", [False, True])
def test_read_off_and_area_weighted_sampling(tmp_path, fused):
    from spikenerf.vision.data import read_off, sample_mesh

    _write_off(tmp_path / "m.off", fused)
    v, f = read_off(tmp_path / "m.off")
    assert v.shape == (7, 3) and f.tolist() == [[0, 1, 2], [0, 2, 3], [4, 5, 6]]
    pts = sample_mesh(v, f, 20000, np.random.default_rng(0))
    assert pts.shape == (3, 20000)
    # raw z is 0 or 1 only; after centring/scaling two z levels remain, in proportion 1 : 3 (the areas)
    z = np.round(pts[2], 5)
    levels = np.unique(z)
    assert len(levels) == 2
    frac_top = float((z == levels.max()).mean())
    assert abs(frac_top - 0.75) < 0.02
    assert np.linalg.norm(pts, axis=0).max() == pytest.approx(1.0, abs=1e-6)


def test_modelnet_folder_layouts(tmp_path):
    for cls in ("chair", "desk"):
        for split in ("train", "test"):
            d = tmp_path / "ModelNet10" / cls / split
            d.mkdir(parents=True)
            _write_off(d / f"{cls}_0001.off")
    ds, info = get_dataset("modelnet10", True, tmp_path, n_points=64)
    x, y = ds[1]
    assert len(ds) == 2 and x.shape == (3, 64) and y == 1 and info.input_size == 64 and info.kind == "points"
    # the resampled .txt layout
    txt = tmp_path / "r" / "modelnet40_normal_resampled"
    (txt / "airplane").mkdir(parents=True)
    rows = "\n".join(f"{i},{2 * i},{-i},0,0,1" for i in range(10))
    (txt / "airplane" / "airplane_0001.txt").write_text(rows)
    (txt / "modelnet40_test.txt").write_text("airplane_0001\n")
    ds, _ = get_dataset("modelnet40", False, tmp_path / "r", n_points=8)
    x, y = ds[0]
    assert x.shape == (3, 8) and y == 0
    assert torch.allclose(x[:, 1] - x[:, 0], (x[:, 2] - x[:, 1]))  # collinear input rows stay collinear


def test_every_dataset_the_config_names_has_one_registered_reader():
    """The readers register themselves beside their code; ``--dataset`` offers exactly those names."""
    from typing import get_args, get_type_hints

    from spikenerf.vision.config import VisionConfig
    from spikenerf.vision.data import DATASETS, READERS
    from spikenerf.vision.data.base import FOLDER_INFO

    offered = set(get_args(get_type_hints(VisionConfig)["dataset"]))
    assert offered == set(READERS), offered ^ set(READERS)
    assert set(DATASETS) | set(FOLDER_INFO) == set(READERS) and not set(DATASETS) & set(FOLDER_INFO)
    assert all(info.name == name for name, info in DATASETS.items())
