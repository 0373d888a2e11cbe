"""Datasets for the vision experiments; nothing is ever downloaded.

Every dataset yields ``(x, label)`` with ``x`` one of three kinds (see :class:`DatasetInfo`):

- ``static``: an image ``[C, H, W]`` (the model input is the image repeated over ``T``: direct encoding);
- ``events``: ``[T, 2, H, W]`` event frames (N-MNIST: ON/OFF polarity counts in ``T`` equal time bins);
- ``points``: ``[3, N]`` point cloud (repeated over ``T``).

:func:`to_sequence` turns a batch into the ``[T, B, ...]`` model input. A dataset that is not on disk
raises :class:`DatasetNotFoundError` whose message says where to put it.
"""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset, TensorDataset

from .augment import pil_augment, tensor_augment
from .base import (DATASETS, FOLDER_INFO, READERS, DatasetFormatError, DatasetInfo, DatasetNotFoundError, InputKind,
                   ReadRequest, _missing, default_data_root, register_dataset)
from .folders import EventFolderSet, ImageFolderSet, bin_events, event_folder_info, image_folder_info, read_events
from .shd import SHD, SHD_POOL

__all__ = [
    "DatasetNotFoundError",
    "DatasetInfo",
    "DATASETS",
    "default_data_root",
    "get_dataset",
    "read_nmnist_bs2",
    "bin_events",
    "NMNIST",
    "ModelNetVoxelPoints",
    "voxels_to_points",
    "read_off",
    "sample_mesh",
    "ModelNetPoints",
    "to_sequence",
    "SHD",
    "DatasetFormatError",
    "ImageFolderSet",
    "EventFolderSet",
    "image_folder_info",
    "event_folder_info",
    "read_events",
    "folder_info",
    "dataset_info",
    "register_dataset",
    "ReadRequest",
]


def folder_info(name: str, root: str | Path | None, image_size: int | None = None) -> DatasetInfo:
    """The :class:`DatasetInfo` of an ``image-folder`` / ``event-folder`` dataset, read from the folder."""
    return FOLDER_INFO[name](root, image_size)


def dataset_info(name: str, root: str | Path | None = None, n_points: int = 1024,
                 image_size: int | None = None) -> DatasetInfo:
    """Class count, channels, input size and kind of dataset ``name`` (points: ``n_points``; class folders: read
    from the folder ``root``)."""
    if name in FOLDER_INFO:
        return folder_info(name, root, image_size)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(READERS)}")
    info = DATASETS[name]
    return replace(info, input_size=n_points) if info.kind == "points" else info


# ----------------------------------------------------------------------------- small offline sets
@register_dataset("digits", DatasetInfo("digits", 10, 1, 8, "static"))
def _read_digits(req: ReadRequest, info: DatasetInfo) -> Dataset:
    return _digits(req.train, req.seed)


def _digits(train: bool, seed: int = 0) -> TensorDataset:
    """scikit-learn's bundled 8x8 digits (1797 images, no download); 80/20 split with a fixed seed.

    Falls back to :func:`_synthetic` when scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - depends on the environment
        return _synthetic(train, num_classes=10, seed=seed)
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8] in [0, 1]
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_train = int(0.8 * len(y))
    idx = perm[:n_train] if train else perm[n_train:]
    return TensorDataset(x[idx], y[idx])


@register_dataset("synthetic", DatasetInfo("synthetic", 4, 1, 8, "static"))
def _read_synthetic(req: ReadRequest, info: DatasetInfo) -> Dataset:
    return _synthetic(req.train, seed=req.seed)


def _synthetic(train: bool, num_classes: int = 4, n: int = 256, size: int = 8, seed: int = 0) -> TensorDataset:
    """Separable toy images: a class-specific prototype plus noise, ``[1, size, size]`` in [0, 1]."""
    g = torch.Generator().manual_seed(1234)
    protos = (torch.rand(num_classes, 1, size, size, generator=g) > 0.5).float()
    g = torch.Generator().manual_seed(seed + (0 if train else 1))
    y = torch.randint(0, num_classes, (n,), generator=g)
    x = (0.7 * protos[y] + 0.3 * torch.rand(n, 1, size, size, generator=g)).clamp(0, 1)
    return TensorDataset(x, y)


# ----------------------------------------------------------------------------- images
def _cifar_transforms(train: bool, augment: bool | str, size: int = 32, mean=(0.4914, 0.4822, 0.4465),
                      std=(0.2470, 0.2435, 0.2616)):
    """``augment``: True (``crop-flip``), False, or a recipe name of :mod:`.augment`; training only."""
    from torchvision import transforms as T

    aug = augment if train else False
    ops = pil_augment(aug, size) + [T.ToTensor(), T.Normalize(mean, std)] + tensor_augment(aug, size)
    return T.Compose(ops)


@register_dataset("cifar10-jpeg", DatasetInfo("cifar10-jpeg", 10, 3, 32, "static"))
def _read_cifar10_jpeg(req: ReadRequest, info: DatasetInfo) -> Dataset:
    return _cifar10_jpeg(req.root, req.train, req.augment)


def _cifar10_jpeg(root: Path, train: bool, augment: bool | str) -> Dataset:
    from torchvision.datasets import ImageFolder

    folder = root / "cifar10-jpeg" / ("train" if train else "test")
    if not folder.is_dir():
        raise _missing("cifar10-jpeg", folder, "Expected JPEG class folders <root>/cifar10-jpeg/{train,test}/<class>/*.jpg")
    return ImageFolder(str(folder), transform=_cifar_transforms(train, augment))


def _torchvision(name: str, root: Path, train: bool, augment: bool | str) -> Dataset:
    from torchvision import datasets as D
    from torchvision import transforms as T

    if name in ("cifar10", "cifar100"):
        cls = D.CIFAR10 if name == "cifar10" else D.CIFAR100
        tf = _cifar_transforms(train, augment)
        hint = f"Put the python-pickle batches (cifar-10-batches-py / cifar-100-python) under {root}"
    else:
        cls = D.MNIST if name == "mnist" else D.FashionMNIST
        tf = T.Compose([T.ToTensor()])
        hint = f"Put the raw IDX files under {root}/{cls.__name__}/raw"
    try:
        return cls(str(root), train=train, download=False, transform=tf)
    except RuntimeError as e:  # torchvision says "Dataset not found or corrupted"
        if "not found" in str(e).lower():
            raise _missing(name, root, hint) from None
        raise


for _info in (DatasetInfo("cifar10", 10, 3, 32, "static"), DatasetInfo("cifar100", 100, 3, 32, "static"),
              DatasetInfo("mnist", 10, 1, 28, "static"), DatasetInfo("fashion-mnist", 10, 1, 28, "static")):
    register_dataset(_info.name, _info)(lambda req, info: _torchvision(info.name, req.root, req.train, req.augment))


# ----------------------------------------------------------------------------- N-MNIST
def read_nmnist_bs2(path: str | Path) -> dict[str, np.ndarray]:
    """Decode one N-MNIST ``.bs2`` recording (5 bytes / event) into ``x, y, p, t`` (``t`` in microseconds).

    ``x = b0, y = b1, p = b2 >> 7, t = ((b2 & 0x7F) << 16) | (b3 << 8) | b4``.
    """
    raw = np.fromfile(path, dtype=np.uint8)
    raw = raw[: len(raw) - len(raw) % 5].reshape(-1, 5).astype(np.int64)
    return {
        "x": raw[:, 0],
        "y": raw[:, 1],
        "p": raw[:, 2] >> 7,
        "t": ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4],
    }


class NMNIST(Dataset):
    """N-MNIST subset from ``nmnist-small`` (``train1K.txt`` / ``test100.txt``), binned to ``[T, 2, 34, 34]``.

    Frames are cached after the first read (1,100 small files). ``clip`` caps counts (1 = binary frames).
    """

    def __init__(self, root: str | Path, train: bool, T: int = 10, clip: float | None = None) -> None:
        self.dir = Path(root) / "nmnist-small"
        labels = self.dir / ("train1K.txt" if train else "test100.txt")
        if not labels.is_file():
            raise _missing("nmnist", self.dir, "Expected <root>/nmnist-small/{train1K.txt,test100.txt,*.bs2}")
        rows = [ln.split() for ln in labels.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        self.samples = [(int(a), int(b)) for a, b in rows]
        self.T, self.clip = T, clip
        self._cache: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        sid, label = self.samples[i]
        if i not in self._cache:
            f = bin_events(read_nmnist_bs2(self.dir / f"{sid}.bs2"), self.T)
            self._cache[i] = f if self.clip is None else f.clamp(max=self.clip)
        return self._cache[i], label


@register_dataset("nmnist", DatasetInfo("nmnist", 10, 2, 34, "events"))
def _read_nmnist(req: ReadRequest, info: DatasetInfo) -> Dataset:
    return NMNIST(req.root, req.train, T=req.T)


# ----------------------------------------------------------------------------- ModelNet10 voxels
def voxels_to_points(vox: np.ndarray, n_points: int, rng: np.random.Generator, jitter: float = 0.01) -> np.ndarray:
    """Sample ``n_points`` points ``[3, N]`` on the surface voxels of a binary grid ``[D, H, W]``.

    Surface voxel = occupied with at least one empty 6-neighbour. Each point is a uniform position
    inside a (randomly chosen, with replacement when needed) surface voxel plus Gaussian jitter; the
    cloud is centred and scaled into the unit sphere.
    """
    occ = vox > 0.5
    pad = np.pad(occ, 1)
    inner = occ.copy()
    for ax in range(3):
        for sh in (1, -1):
            inner &= np.roll(pad, sh, axis=ax)[1:-1, 1:-1, 1:-1]
    surf = np.argwhere(occ & ~inner).astype(np.float32)
    if len(surf) == 0:
        surf = np.argwhere(occ).astype(np.float32)
    if len(surf) == 0:
        return np.zeros((3, n_points), dtype=np.float32)
    idx = rng.choice(len(surf), n_points, replace=len(surf) < n_points)
    pts = surf[idx] + rng.random((n_points, 3), dtype=np.float32)
    pts -= pts.mean(0, keepdims=True)
    pts /= max(float(np.linalg.norm(pts, axis=1).max()), 1e-6)
    pts += rng.normal(0.0, jitter, pts.shape).astype(np.float32)
    return pts.T.astype(np.float32)


class ModelNetVoxelPoints(Dataset):
    """ModelNet10 chair (0) vs monitor (1) from 32^3 voxel grids, sampled to ``[3, N]`` points.

    Index 0 of each file is an empty grid and is skipped. A seeded 80/20 split of the shapes gives
    train/test. Train samples a fresh point set each access (augmentation); test is fixed per index.
    """

    CLASSES = ("chair", "monitor")

    def __init__(self, root: str | Path, train: bool, n_points: int = 1024, seed: int = 0) -> None:
        d = Path(root) / "modelnet10-voxels-2class"
        files = [d / f"{c}.npy.gz" for c in self.CLASSES]
        if not all(f.is_file() for f in files):
            raise _missing("modelnet10-2class", d, "Expected <root>/modelnet10-voxels-2class/{chair,monitor}.npy.gz")
        vox, labels = [], []
        for c, f in enumerate(files):
            with gzip.open(f, "rb") as fh:
                a = np.load(fh)[1:, 0]  # skip the empty grid at index 0; [N, 32, 32, 32]
            vox.append(a.astype(np.uint8))
            labels.append(np.full(len(a), c))
        allv, ally = np.concatenate(vox), np.concatenate(labels)
        perm = np.random.default_rng(seed).permutation(len(ally))
        n_train = int(0.8 * len(ally))
        sel = perm[:n_train] if train else perm[n_train:]
        self.vox, self.labels = allv[sel], ally[sel]
        self.train, self.n_points, self.seed = train, n_points, seed
        self._epoch_rng = np.random.default_rng(seed + 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        rng = self._epoch_rng if self.train else np.random.default_rng(self.seed * 100003 + i)
        return torch.from_numpy(voxels_to_points(self.vox[i], self.n_points, rng)), int(self.labels[i])


@register_dataset("modelnet10-2class", DatasetInfo("modelnet10-2class", 2, 3, 1024, "points"))
def _read_modelnet_voxels(req: ReadRequest, info: DatasetInfo) -> Dataset:
    return ModelNetVoxelPoints(req.root, req.train, n_points=req.n_points, seed=req.seed)


# ----------------------------------------------------------------------------- ImageNet / tonic event sets
@register_dataset("imagenet", DatasetInfo("imagenet", 1000, 3, 224, "static"))
def _read_imagenet(req: ReadRequest, info: DatasetInfo) -> Dataset:
    return _imagenet(req.root, req.train, req.augment)


def _imagenet(root: Path, train: bool, augment: bool | str) -> Dataset:
    from torchvision import transforms as T
    from torchvision.datasets import ImageFolder

    folder = root / "imagenet" / ("train" if train else "val")
    if not folder.is_dir():
        raise _missing("imagenet", folder, "Expected ImageFolder layout <root>/imagenet/{train,val}/<wnid>/*.JPEG")
    norm = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    if train and augment:
        tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    else:
        tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm])
    return ImageFolder(str(folder), transform=tf)


# tonic's dataset class and the folder it expects under ``save_to`` (checked first: tonic would download)
_TONIC = {"cifar10-dvs": ("CIFAR10DVS", "CIFAR10DVS"), "dvs128-gesture": ("DVSGesture", "DVSGesture")}


class _FramesOf(Dataset):
    """A tonic event dataset as ``([T, 2, H, W] float frames, label)``."""

    def __init__(self, ds, frame_tf) -> None:
        self.ds, self.frame_tf = ds, frame_tf

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        events, label = self.ds[i]
        return torch.from_numpy(np.asarray(self.frame_tf(events), dtype=np.float32)), int(label)


def _tonic_events(name: str, root: Path, train: bool, T: int) -> Dataset:
    cls_name, folder = _TONIC[name]
    where = root / folder
    if not where.is_dir():
        raise _missing(name, where, f"Expected tonic's extracted {cls_name} files under <root>/{folder}")
    try:
        import tonic
    except ImportError:
        raise DatasetNotFoundError(f"dataset {name!r} is read through the `tonic` package, which is not installed: "
                                   f"pip install tonic (its files are already at {where}).") from None
    cls = getattr(tonic.datasets, cls_name)
    kw = {} if name == "cifar10-dvs" else {"train": train}
    ds = cls(save_to=str(root), **kw)
    frames = tonic.transforms.ToFrame(sensor_size=cls.sensor_size, n_time_bins=T)
    if name == "cifar10-dvs":  # no official split: a fixed 90/10 split per class index order
        idx = [i for i in range(len(ds)) if (i % 10 != 0) == train]
        return Subset(_FramesOf(ds, frames), idx)
    return _FramesOf(ds, frames)


for _info in (DatasetInfo("cifar10-dvs", 10, 2, 128, "events"), DatasetInfo("dvs128-gesture", 11, 2, 128, "events")):
    register_dataset(_info.name, _info)(lambda req, info: _tonic_events(info.name, req.root, req.train, req.T))


# ----------------------------------------------------------------------------- ModelNet10/40 meshes
def read_off(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``[V, 3]`` and triangles ``[F, 3]`` of an OFF mesh (polygons fanned into triangles).

    Handles ModelNet's files whose first line fuses the header with the counts (``OFF490 518 0``).
    """
    with open(path) as fh:
        tokens = fh.read().split()
    if not tokens or not tokens[0].startswith("OFF"):
        raise ValueError(f"{path}: not an OFF file")
    head = tokens[0][3:]
    rest = ([head] if head else []) + tokens[1:]
    nv, nf = int(rest[0]), int(rest[1])
    vals = rest[3:]
    verts = np.asarray(vals[: 3 * nv], dtype=np.float64).reshape(nv, 3)
    tris, k = [], 3 * nv
    for _ in range(nf):
        n = int(vals[k])
        poly = [int(v) for v in vals[k + 1: k + 1 + n]]
        tris += [(poly[0], poly[j], poly[j + 1]) for j in range(1, n - 1)]
        k += 1 + n
    return verts, np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def sample_mesh(verts: np.ndarray, tris: np.ndarray, n_points: int, rng: np.random.Generator) -> np.ndarray:
    """``n_points`` points ``[3, N]`` uniform on the surface (area-weighted triangles, uniform barycentrics),
    centred and scaled into the unit sphere."""
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    if area.sum() <= 0:
        raise ValueError("mesh has zero surface area")
    f = rng.choice(len(tris), n_points, p=area / area.sum())
    r1, r2 = rng.random(n_points), rng.random(n_points)
    s1 = np.sqrt(r1)  # uniform over the triangle (Osada et al. 2002)
    pts = (1 - s1)[:, None] * a[f] + (s1 * (1 - r2))[:, None] * b[f] + (s1 * r2)[:, None] * c[f]
    pts -= pts.mean(0, keepdims=True)
    pts /= max(float(np.linalg.norm(pts, axis=1).max()), 1e-12)
    return pts.T.astype(np.float32)


class ModelNetPoints(Dataset):
    """ModelNet10/40 from the usual layouts, as ``[3, N]`` points:

    - ``<root>/ModelNet40/<class>/{train,test}/*.off`` (original meshes, sampled with :func:`sample_mesh`);
    - ``<root>/modelnet40_normal_resampled/<class>/<class>_0001.txt`` with ``modelnet40_{train,test}.txt``
      lists (pre-sampled ``x,y,z,nx,ny,nz`` rows; the first ``N`` points are used).
    """

    def __init__(self, root: str | Path, train: bool, classes: int = 40, n_points: int = 1024, seed: int = 0) -> None:
        root = Path(root)
        split = "train" if train else "test"
        mesh_dir = root / f"ModelNet{classes}"
        txt_dir = root / "modelnet40_normal_resampled"
        self.n_points, self.train, self.seed = n_points, train, seed
        self._rng = np.random.default_rng(seed + 1)
        if mesh_dir.is_dir():
            self.classes = sorted(p.name for p in mesh_dir.iterdir() if p.is_dir())
            self.items = [(f, ci) for ci, c in enumerate(self.classes) for f in sorted((mesh_dir / c / split).glob("*.off"))]
            self.kind = "off"
        elif txt_dir.is_dir() and (txt_dir / f"modelnet{classes}_{split}.txt").is_file():
            names = (txt_dir / f"modelnet{classes}_{split}.txt").read_text().split()
            self.classes = sorted({n.rsplit("_", 1)[0] for n in names})
            cidx = {c: i for i, c in enumerate(self.classes)}
            self.items = [(txt_dir / n.rsplit("_", 1)[0] / f"{n}.txt", cidx[n.rsplit("_", 1)[0]]) for n in names]
            self.kind = "txt"
        else:
            raise _missing(f"modelnet{classes}", root, f"Expected <root>/ModelNet{classes}/<class>/{{train,test}}/*.off "
                           f"or <root>/modelnet40_normal_resampled/ with modelnet{classes}_{{train,test}}.txt")
        if not self.items:
            raise _missing(f"modelnet{classes}", mesh_dir, f"no {split} shapes found")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path, label = self.items[i]
        rng = self._rng if self.train else np.random.default_rng(self.seed * 100003 + i)
        if self.kind == "off":
            pts = sample_mesh(*read_off(path), self.n_points, rng)
        else:
            xyz = np.loadtxt(path, delimiter=",", dtype=np.float32)[: self.n_points, :3]
            xyz = xyz - xyz.mean(0, keepdims=True)
            pts = (xyz / max(float(np.linalg.norm(xyz, axis=1).max()), 1e-12)).T.astype(np.float32)
        return torch.from_numpy(pts), int(label)


for _info in (DatasetInfo("modelnet10", 10, 3, 1024, "points"), DatasetInfo("modelnet40", 40, 3, 1024, "points")):
    register_dataset(_info.name, _info)(lambda req, info: ModelNetPoints(
        req.root, req.train, classes=info.num_classes, n_points=req.n_points, seed=req.seed))


# ----------------------------------------------------------------------------- entry points
def get_dataset(name: str, train: bool, root: str | Path | None = None, T: int = 10, augment: bool = True,
                n_points: int = 1024, subset: int | None = None, seed: int = 0,
                info: DatasetInfo | None = None, image_size: int | None = None) -> tuple[Dataset, DatasetInfo]:
    """Build ``(dataset, info)``; ``subset`` keeps the first ``subset`` samples (short CPU runs).

    Folder datasets (``image-folder``, ``event-folder``: ``root`` is the folder itself) take their classes and
    input size from the data, or from ``info`` (a trained model's: the images are converted and resized to it, and
    the classes must match).
    """
    if name in FOLDER_INFO:  # class folders: ``root`` is the folder itself
        info = info or folder_info(name, root, image_size)
    else:  # named sets: fixed shape, under the data root
        info = dataset_info(name, n_points=n_points)
        root = root if root is not None else default_data_root()
    request = ReadRequest(Path(root) if root is not None else None, train, T, augment, n_points, seed)
    return _subset(READERS[name](request, info), subset), info


def _subset(ds: Dataset, subset: int | None) -> Dataset:
    """``subset`` samples spread over the set (class folders are sorted by label), or the set itself."""
    if subset is not None and subset < len(ds):  # type: ignore[arg-type]
        idx = torch.linspace(0, len(ds) - 1, subset).round().long().tolist()  # type: ignore[arg-type]
        ds = Subset(ds, idx)
    return ds


def to_sequence(x: Tensor, kind: InputKind, T: int) -> Tensor:
    """Batch -> model input ``[T, B, ...]``: static / points are repeated over ``T`` (direct encoding);
    event frames ``[B, T, ...]`` are transposed (their ``T`` was fixed when binning)."""
    if kind == "events":
        return x.transpose(0, 1).contiguous()
    return x.unsqueeze(0).expand(T, *x.shape).contiguous()
