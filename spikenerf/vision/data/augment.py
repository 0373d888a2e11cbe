"""Training augmentation recipes for images (``--augment-recipe``; off with ``--no-augment``).

- ``crop-flip``: random crop with zero padding ``side / 8`` (4 on 32x32) and a horizontal flip (the CIFAR
  recipe of the Guo-group and most SNN papers);
- ``autoaugment``: ``crop-flip`` + AutoAugment with the CIFAR-10 policy (torchvision);
- ``cutout``: ``crop-flip`` + Cutout (DeVries & Taylor 2017): one ``side / 2`` square (16 on 32x32) centred on a
  uniformly drawn pixel, clipped at the border, set to 0 after normalization;
- ``autoaugment-cutout``: both, as in the papers that train with AutoAugment and Cutout.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torchvision import transforms as T

__all__ = ["Recipe", "RECIPES", "Cutout", "pil_augment", "tensor_augment"]

Recipe = Literal["crop-flip", "autoaugment", "cutout", "autoaugment-cutout"]
RECIPES = ("crop-flip", "autoaugment", "cutout", "autoaugment-cutout")


class Cutout(nn.Module):
    """Zero one ``size x size`` square (centre uniform over the image, clipped at the border) of ``[C, H, W]``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = int(size)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        y0, y1 = max(0, cy - self.size // 2), min(h, cy + (self.size + 1) // 2)
        x0, x1 = max(0, cx - self.size // 2), min(w, cx + (self.size + 1) // 2)
        x = x.clone()
        x[..., y0:y1, x0:x1] = 0.0
        return x


def _recipe(augment: bool | str) -> str | None:
    if augment is False or augment is None:
        return None
    recipe = "crop-flip" if augment is True else str(augment)
    if recipe not in RECIPES:
        raise ValueError(f"unknown augmentation recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    return recipe


def pil_augment(augment: bool | str, side: int) -> list:
    """Transforms on the PIL image (before ``ToTensor``) for ``augment`` (True = ``crop-flip``, False = none)."""
    recipe = _recipe(augment)
    if recipe is None:
        return []
    ops: list = [T.RandomCrop(side, padding=max(1, side // 8)), T.RandomHorizontalFlip()]
    if recipe.startswith("autoaugment"):
        ops.append(T.AutoAugment(T.AutoAugmentPolicy.CIFAR10))
    return ops


def tensor_augment(augment: bool | str, side: int) -> list:
    """Transforms on the normalized tensor (after ``Normalize``)."""
    recipe = _recipe(augment)
    return [Cutout(max(1, side // 2))] if recipe is not None and recipe.endswith("cutout") else []
