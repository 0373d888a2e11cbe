"""SpikingNeRF-T's rendering step and TensoRF's schedules, ready for the ``spikingnerf-t`` model to call.

- :class:`TensoRFSchedule`: TensoRF's ``configs/lego.txt`` (:data:`LEGO`) and ``configs/flower.txt``
  (:data:`LLFF`) as one dataclass, with the per-step rules its ``train.py`` applies (lr, L1 / TV weights,
  the voxel counts of the up-samplings, the alpha-mask resolution).
- :func:`render_tensorf`: TensoRF's ``forward`` for one batch of rays: :func:`~.tensorf.sample_ray`, the
  alpha mask, density, ``alpha = 1 - exp(-sigma * dist * distance_scale)`` (the last sample's ``dist`` is 0),
  weights, SpikingNeRF-T's weight mask, the colour net on the kept samples only, compositing. The colour net
  is a callable, so the spiking net, its time layout (condensing) and its op counts stay the package's
  shared ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from .rendering import composite, compositing_weights
from .tensorf import (Activation, TensoRFBackbone, n_to_reso, sample_ray, tensorf_color_input, tensorf_color_mask,
                      tensorf_lr, tv_weight_at, upsampling_voxel_counts)

__all__ = ["TensoRFSchedule", "LEGO", "LLFF", "ColorFn", "InputFn", "TensoRFRender", "render_tensorf"]

ColorFn = Callable[[Tensor, Tensor], Tensor]
"""``(inputs [K, 150], keep [R, S]) -> rgb [K, 3]``: the colour net on the kept samples, in the row-major
order of ``keep`` (each ray's samples near -> far, the order condensing packs them in)."""
InputFn = Callable[[Tensor, Tensor], Tensor]
"""``(points [K, 3], view directions [K, 3]) -> inputs [K, 150]`` of the kept samples."""


@dataclass
class TensoRFSchedule:
    """One TensoRF run: its config file's values (TensoRF's names in brackets).

    Not frozen: a method config holds its own copy (``dataclasses.replace(LEGO)``) whose step counts the
    trainer scales with ``--max-num-iterations`` (:func:`~.method_configs.tensorf_trainer_config`); never
    change :data:`LEGO` / :data:`LLFF` themselves."""

    num_steps: int  # [n_iters]
    n_voxel_final: int  # [N_voxel_final]
    upsample_steps: tuple[int, ...]  # [upsamp_list]
    alpha_mask_steps: tuple[int, ...]  # [update_AlphaMask_list]
    density_components: tuple[int, int, int] = (16, 16, 16)  # [n_lamb_sigma]
    app_components: tuple[int, int, int] = (48, 48, 48)  # [n_lamb_sh]
    activation: Activation = "softplus"  # [fea2denseAct]
    ndc: bool = False  # [ndc_ray]
    rays_per_batch: int = 4096  # [batch_size]
    n_voxel_init: int = 2097156  # [N_voxel_init], 128^3 + 4 so that N_to_reso's floor gives 128
    l1_weight_initial: float = 0.0  # [L1_weight_inital]
    l1_weight_rest: float = 0.0  # [L1_weight_rest], from the first alpha-mask update on
    tv_weight_density: float = 0.0  # [TV_weight_density]
    tv_weight_app: float = 0.0  # [TV_weight_app]
    lr_grid: float = 0.02  # [lr_init]: planes and lines
    lr_network: float = 1e-3  # [lr_basis]: basis_mat and the colour net
    lr_decay_ratio: float = 0.1  # [lr_decay_target_ratio] over num_steps
    step_ratio: float = 0.5  # [step_ratio]
    distance_scale: float = 25.0  # [distance_scale]
    weight_threshold: float = 1e-4  # [rm_weight_mask_thre]
    alpha_mask_threshold: float = 1e-4  # [alpha_mask_thre]
    max_samples: int = 1_000_000  # [nSamples]
    max_mask_voxels: int = 256 ** 3  # the alpha mask takes the grid's resolution only below this

    def voxel_counts(self) -> list[int]:
        """Voxels after each of :attr:`upsample_steps` (log-spaced, TensoRF's ``N_voxel_list``)."""
        return upsampling_voxel_counts(self.n_voxel_init, self.n_voxel_final, len(self.upsample_steps))

    def resolution_after(self, step: int, aabb: Tensor) -> list[int]:
        """The grid's ``[X, Y, Z]`` once ``step`` has run, over the box ``aabb`` at that time."""
        done = sum(1 for u in self.upsample_steps if u <= step)
        return n_to_reso(self.voxel_counts()[done - 1] if done else self.n_voxel_init, aabb)

    def lr(self, step: int, grid: bool) -> float:
        """The learning rate at ``step`` of the planes / lines (``grid``) or of the networks."""
        return tensorf_lr(step, self.lr_grid if grid else self.lr_network, self.upsample_steps, self.num_steps,
                          self.lr_decay_ratio)

    def l1_weight(self, step: int) -> float:
        """L1 on the density: the initial weight up to the first alpha-mask update, the rest after it."""
        first = self.alpha_mask_steps[0] if self.alpha_mask_steps else self.num_steps
        return self.l1_weight_initial if step <= first else self.l1_weight_rest

    def tv_weights(self, step: int) -> tuple[float, float]:
        """(density, appearance) TV weights at ``step``, decayed as the lr, never reset."""
        return (tv_weight_at(step, self.tv_weight_density, self.num_steps, self.lr_decay_ratio),
                tv_weight_at(step, self.tv_weight_app, self.num_steps, self.lr_decay_ratio))

    def mask_resolution(self, resolution: Sequence[int], previous: Optional[Sequence[int]]) -> list[int]:
        """TensoRF's ``reso_mask``: the grid's resolution while it has fewer than ``max_mask_voxels``
        voxels, else the previous mask's."""
        if math.prod(int(r) for r in resolution) < self.max_mask_voxels or previous is None:
            return [int(r) for r in resolution]
        return [int(r) for r in previous]


LEGO = TensoRFSchedule(num_steps=30000, n_voxel_final=300 ** 3, upsample_steps=(2000, 3000, 4000, 5500, 7000),
                       alpha_mask_steps=(2000, 4000), l1_weight_initial=8e-5, l1_weight_rest=4e-5)
"""TensoRF's ``configs/lego.txt`` (Blender scenes)."""
LLFF = TensoRFSchedule(num_steps=25000, n_voxel_final=640 ** 3, upsample_steps=(2000, 3000, 4000, 5500),
                       alpha_mask_steps=(2500,), density_components=(16, 4, 4), app_components=(48, 12, 12),
                       activation="relu", ndc=True, tv_weight_density=1.0, tv_weight_app=1.0)
"""TensoRF's ``configs/flower.txt`` (LLFF scenes, NDC rays)."""


class TensoRFRender(NamedTuple):
    """Per-ray outputs ``[R, k]`` and the per-sample masks / weights ``[R, S]`` of one batch."""

    rgb: Tensor
    depth: Tensor
    accumulation: Tensor
    keep: Tensor  # [R, S] bool: the samples the colour net saw
    weights: Tensor  # [R, S]
    t: Tensor  # [R, S]


def render_tensorf(backbone: TensoRFBackbone, color_fn: ColorFn, origins: Tensor, dirs: Tensor, near: float,
                   far: float, n_samples: int, background: Tensor, distance_scale: float = 25.0,
                   weight_threshold: float = 1e-4, jitter: Optional[Tensor] = None, feat_pe: int = 2,
                   view_pe: int = 2, viewdirs: Optional[Tensor] = None,
                   color_inputs: Optional[InputFn] = None) -> TensoRFRender:
    """TensoRF's ``forward`` with SpikingNeRF-T's colour path, for rays ``origins`` / unit ``dirs`` ``[R, 3]``.

    ``background`` ``[3]`` or ``[R, 3]``; ``jitter`` ``[R]`` in ``[0, 1)`` when training. A sample outside
    the box or dropped by the alpha mask has density 0; the colour net sees only the samples whose weight
    passes :func:`~.tensorf.tensorf_color_mask`, and a dropped sample adds no colour (its weight still counts
    in the accumulation, as in TensoRF). ``viewdirs`` ``[R, 3]``: the direction the colour net reads when it
    is not ``dirs`` (NDC scenes march NDC rays but encode the world direction, :mod:`~.ndc`).
    ``color_inputs``: the colour net's inputs of the kept samples (the model passes its field's, so a swapped
    colour net can look them up itself, :mod:`~.nir_replay`); default TensoRF's 150 of ``backbone`` with
    ``feat_pe`` / ``view_pe``.
    """
    pts, t, inside = sample_ray(origins, dirs, backbone.aabb, backbone.step_size, n_samples, near, far, jitter)
    valid = inside.clone()
    valid[inside] = backbone.alpha_mask.keep(pts[inside])
    sigma = pts.new_zeros(valid.shape)
    if bool(valid.any()):
        sigma[valid] = backbone.feature2density(backbone.density_features(pts[valid]))
    dist = torch.cat([t[:, 1:] - t[:, :-1], torch.zeros_like(t[:, :1])], 1)  # TensoRF: the last sample's is 0
    alpha = 1.0 - torch.exp(-sigma * dist * distance_scale)
    weights, _ = compositing_weights(alpha)
    keep = tensorf_color_mask(weights, valid, weight_threshold)
    rgb = pts.new_zeros(*keep.shape, 3)
    if bool(keep.any()):
        view = (dirs if viewdirs is None else viewdirs)[:, None].expand_as(pts)[keep]
        if color_inputs is None:
            inputs = tensorf_color_input(backbone.app_features(pts[keep]), view, feat_pe, view_pe)
        else:
            inputs = color_inputs(pts[keep], view)
        rgb[keep] = color_fn(inputs, keep)
    out = composite(weights, rgb, t, background)
    return TensoRFRender(out.rgb, out.depth, out.accumulation, keep, weights, t)
