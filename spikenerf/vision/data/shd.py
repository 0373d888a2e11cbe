"""Spiking Heidelberg Digits (Cramer et al. 2020) from the Zenke lab's ``shd_{train,test}.h5``; never downloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .base import DatasetInfo, DatasetNotFoundError, ReadRequest, register_dataset

__all__ = ["SHD", "SHD_POOL"]

SHD_POOL = 5
"""700 cochlea channels are summed in groups of this many (-> 140 inputs)."""


class SHD(Dataset):
    """SHD from ``<root>/shd/shd_{train,test}.h5`` (read with ``h5py``), binned into ``[T, 700 / pool]`` spike
    counts clipped to 1. Recordings last at most 1.4 s; the bins split that span equally."""

    def __init__(self, root: str | Path, train: bool, T: int = 50, pool: int = SHD_POOL) -> None:
        d = Path(root) / "shd"
        f = d / ("shd_train.h5" if train else "shd_test.h5")
        if not f.is_file():
            raise DatasetNotFoundError(
                f"dataset 'shd' not found at {f}. Put shd_train.h5 / shd_test.h5 (Zenke lab release) under {d} "
                "(nothing is downloaded; tonic.datasets.SHD(save_to=<root>/shd) produces the same files).")
        self.T, self.pool = T, pool
        self.units, self.times, self.labels = self._read(f)

    @staticmethod
    def _read(f: Path):
        try:
            import h5py
        except ImportError:  # pragma: no cover - depends on the environment
            raise DatasetNotFoundError("reading SHD needs h5py (pip install h5py) or tonic") from None
        with h5py.File(f, "r") as h:
            return list(h["spikes"]["units"]), list(h["spikes"]["times"]), np.asarray(h["labels"])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        n = 700 // self.pool
        x = torch.zeros(self.T, n)
        t = np.minimum((np.asarray(self.times[i]) / 1.4 * self.T).astype(np.int64), self.T - 1)
        u = np.asarray(self.units[i]).astype(np.int64) // self.pool
        keep = u < n
        x[t[keep], u[keep]] = 1.0
        return x, int(self.labels[i])


@register_dataset("shd", DatasetInfo("shd", 20, 1, 700 // SHD_POOL, "events"))
def _read_shd(req: ReadRequest, info: DatasetInfo) -> SHD:
    return SHD(req.root, req.train, T=req.T)
