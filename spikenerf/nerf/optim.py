"""Optimisers of the voxel grids: torch's fused Adam, and DVGO's masked Adam.

The grids hold millions of parameters (13 x 160^3 = 53 M at DVGO's final resolution) and a batch of rays
touches a few percent of them.

- :class:`FusedAdamOptimizerConfig`: Adam with ``fused=True``. torch's default CPU Adam runs one pass per
  element-wise op over all parameters, the fused kernel one pass in all (several times faster here).
- :class:`MaskedAdam` (DVGO's ``MaskedAdam``, the official SpikingNeRF-D code's optimiser): entries whose
  gradient is exactly 0 are left alone, value and moments, so a vertex no ray of the batch reached does
  not keep drifting on its old momentum; betas (0.9, 0.99) as DVGO. On the CPU one C pass
  (``csrc/adam.c``) reads only the gradient of a skipped entry.
- :class:`GridAdamOptimizerConfig`: the grid group's config, either of the two (``masked``).

State keys are Adam's (``step``, ``exp_avg``, ``exp_avg_sq``), plain tensors, so checkpoints load with
``weights_only=True`` and resume equals an uninterrupted run.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Tuple, Type

import torch
from nerfstudio.engine.optimizers import AdamOptimizerConfig, OptimizerConfig
from torch import Tensor

from spikenerf.snn.fused import CKernel

__all__ = ["FusedAdamOptimizerConfig", "GridAdamOptimizerConfig", "MaskedAdam", "masked_adam_",
           "masked_adam_reference_"]


@dataclass
class FusedAdamOptimizerConfig(AdamOptimizerConfig):
    """:class:`AdamOptimizerConfig` with ``fused=True`` (torch picks the CPU or CUDA fused kernel)."""

    fused: Optional[bool] = True


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, i32, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    lib.masked_adam.argtypes = [p, p, p, p, i64, f32, f32, f32, f32, i32]
    lib.masked_adam.restype = i32


_KERNEL = CKernel(Path(__file__).with_name("csrc") / "adam.c", "adam", "the torch masked Adam (slower)", _declare)


@torch.no_grad()
def masked_adam_reference_(p: Tensor, g: Tensor, m: Tensor, v: Tensor, b1: float, b2: float, step_size: float,
                           eps: float) -> None:
    """The masked Adam update of :func:`masked_adam_` in torch ops (any device and dtype), in place."""
    keep = g == 0
    m.copy_(torch.where(keep, m, b1 * m + (1.0 - b1) * g))
    v.copy_(torch.where(keep, v, b2 * v + (1.0 - b2) * (g * g)))
    p.copy_(torch.where(keep, p, p - step_size * (m / (v.sqrt() + eps))))


@torch.no_grad()
def masked_adam_(p: Tensor, g: Tensor, m: Tensor, v: Tensor, b1: float, b2: float, step_size: float,
                 eps: float) -> None:
    """One masked Adam step in place: where ``g != 0``, ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``p -= step_size m / (sqrt(v) + eps)``; where ``g == 0``, ``p``, ``m``, ``v`` are unchanged.

    C kernel for contiguous CPU float32 tensors, :func:`masked_adam_reference_` otherwise.
    """
    tensors = (p, g, m, v)
    if (all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors)
            and _KERNEL.load() is not None):
        rc = _KERNEL.lib.masked_adam(p.data_ptr(), g.data_ptr(), m.data_ptr(), v.data_ptr(), p.numel(), b1, b2,  # type: ignore[union-attr]
                                     step_size, eps, torch.get_num_threads())
        if rc != 0:
            raise RuntimeError(f"masked_adam failed with code {rc}")
        return
    masked_adam_reference_(p, g, m, v, b1, b2, step_size, eps)


class MaskedAdam(torch.optim.Optimizer):
    """DVGO's masked Adam: Adam on the entries with a non-zero gradient, nothing on the others.

    ``step_size = lr sqrt(1 - b2^t) / (1 - b1^t)`` with ``t`` the tensor's step count (every step, masked
    entries included, as DVGO), and ``eps`` added to ``sqrt(v)`` (DVGO's form; torch's Adam adds it to the
    bias-corrected ``sqrt(v)``: the same update when ``eps`` is negligible, as the grids' 1e-15 is).

    Args:
        params: parameters or groups.
        lr: learning rate.
        betas: moment decays; DVGO's (0.9, 0.99).
        eps: added to ``sqrt(v)``.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.99),
                 eps: float = 1e-8) -> None:
        if lr < 0.0 or eps < 0.0 or not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"MaskedAdam needs lr >= 0, eps >= 0 and betas in [0, 1): got lr={lr}, eps={eps}, "
                             f"betas={betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps))

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("MaskedAdam takes dense gradients")
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = float(state["step"])
                step_size = group["lr"] * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
                masked_adam_(p, p.grad, state["exp_avg"], state["exp_avg_sq"], b1, b2, step_size, group["eps"])
        return loss


@dataclass
class GridAdamOptimizerConfig(OptimizerConfig):
    """The grid group's optimiser: torch's fused Adam, or DVGO's :class:`MaskedAdam` with ``masked``."""

    _target: Type = torch.optim.Adam
    masked: bool = False
    """DVGO's masked Adam (entries with a zero gradient keep their value and moments) instead of Adam."""
    betas: Tuple[float, float] = (0.9, 0.999)
    """Adam's moment decays (DVGO's masked Adam uses (0.9, 0.99))."""

    def setup(self, params: Any) -> torch.optim.Optimizer:
        if self.masked:
            return MaskedAdam(params, lr=self.lr, betas=self.betas, eps=self.eps)
        return torch.optim.Adam(params, lr=self.lr, betas=self.betas, eps=self.eps, fused=True)
