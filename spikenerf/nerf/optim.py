"""Adam with torch's fused kernel for the voxel grids.

The grids hold millions of parameters (13 x 160^3 = 53 M at DVGO's final resolution) and every step
updates all of them; torch's default CPU Adam runs one pass per element-wise op over them, the fused
kernel one pass in all (several times faster here). Same update rule, same state keys, so checkpoints
stay plain tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nerfstudio.engine.optimizers import AdamOptimizerConfig

__all__ = ["FusedAdamOptimizerConfig"]


@dataclass
class FusedAdamOptimizerConfig(AdamOptimizerConfig):
    """:class:`AdamOptimizerConfig` with ``fused=True`` (torch picks the CPU or CUDA fused kernel)."""

    fused: Optional[bool] = True
