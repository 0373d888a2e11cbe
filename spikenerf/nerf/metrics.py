"""Metrics shared by every NeRF model of this package: image quality, op counts and energy, viewer images.

- :func:`ground_truth`: the batch's image as RGB in [0, 1], blended on the model's background.
- :func:`psnr`, :func:`build_lpips`, :func:`image_quality` (:func:`image_quality_of` a rendered image):
  PSNR / SSIM / LPIPS (LPIPS NaN when offline).
- :func:`batch_op_metrics`: per-batch training metrics from a colour pass's :class:`~.field.ColorStats`.
- :func:`image_op_metrics`: per-image MACs / SOPs / energy from the per-ray op counters of the outputs.
- :func:`render_images`: the images ns-eval / the viewer show (rgb next to gt, accumulation, depth, spikes).

Energy constants and the energy function are the core's (:mod:`spikenerf.snn.energy`).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from nerfstudio.utils import colormaps
from torch import Tensor, nn

from spikenerf.snn.energy import E_MAC_PJ, energy_pj

from .rendering import background_rgb

__all__ = ["ground_truth", "psnr", "build_lpips", "image_quality", "image_quality_of", "batch_op_metrics", "image_op_metrics",
           "ray_spike_outputs", "image_firing_rates",
           "render_images"]


def ground_truth(batch: Dict[str, Tensor], ref: Tensor, background_color: str) -> Tensor:
    """``batch["image"]`` on ``ref``'s device as floats in [0, 1], RGBA blended on ``background_color``.

    Raises ``ValueError`` unless its leading shape is ``ref``'s (the rendered rgb) and it has 3 or 4 channels.
    """
    image = batch["image"].to(ref.device)
    if image.dtype == torch.uint8:
        image = image.float() / 255.0
    if image.shape[:-1] != ref.shape[:-1] or image.shape[-1] not in (3, 4):
        raise ValueError(f"batch['image'] {tuple(image.shape)} does not match the rendered rgb "
                         f"{tuple(ref.shape)} (expected the same leading shape and 3 or 4 channels)")
    if image.shape[-1] == 4:  # RGBA without an alpha colour set in the parser: blend like the model
        image = image[..., :3] * image[..., 3:] + background_rgb(background_color, ref) * (1.0 - image[..., 3:])
    return image


def psnr(rgb: Tensor, gt: Tensor) -> Tensor:
    """PSNR in dB of images in [0, 1] (no gradient)."""
    return -10.0 * torch.log10(F.mse_loss(rgb, gt).detach().clamp_min(1e-10))


def build_lpips() -> Optional[nn.Module]:
    """torchmetrics' LPIPS, only when its AlexNet weights are already in the torch hub cache.

    Building it otherwise tries a download (no network here: it fails or stalls); LPIPS is then reported
    as NaN instead of crashing the run like nerfstudio's own models do offline.
    """
    cache = os.path.join(torch.hub.get_dir(), "checkpoints")
    if not (os.path.isdir(cache) and any(f.startswith("alexnet-owt") for f in os.listdir(cache))):
        return None
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity  # noqa: PLC0415 (heavy, optional)

        return LearnedPerceptualImagePatchSimilarity(normalize=True)
    except Exception:
        return None


def image_quality(rgb: Tensor, gt: Tensor, lpips: Optional[nn.Module]) -> Dict[str, float]:
    """PSNR, SSIM and LPIPS of one ``[H, W, 3]`` image in [0, 1].

    ns-eval averages every value as a number, so an unavailable LPIPS is NaN plus ``lpips_available = 0``.
    """
    from torchmetrics.functional import structural_similarity_index_measure  # noqa: PLC0415 (heavy)

    a, b = gt.permute(2, 0, 1)[None], rgb.permute(2, 0, 1)[None]
    metrics: Dict[str, float] = {
        "psnr": float(psnr(rgb, gt)),
        "ssim": float(structural_similarity_index_measure(b, a, data_range=1.0)),
        "lpips": float("nan"),
        "lpips_available": 0.0,
    }
    if lpips is not None:
        try:
            metrics["lpips"] = float(lpips(a, b))
            metrics["lpips_available"] = 1.0
        except Exception:  # e.g. an image smaller than AlexNet's receptive field
            pass
    return metrics


def image_quality_of(outputs: Dict[str, Tensor], batch: Dict[str, Tensor], background_color: str,
                     lpips: Optional[nn.Module]) -> tuple[Tensor, Tensor, Dict[str, float]]:
    """A rendered image ``outputs["rgb"]`` ``[H, W, 3]`` (clamped to [0, 1]), its ground truth ``[H, W, 3]``
    and their :func:`image_quality`."""
    rgb = outputs["rgb"].clamp(0, 1)
    gt = ground_truth(batch, rgb, background_color)[..., :3]
    return rgb, gt, image_quality(rgb, gt, lpips)


def batch_op_metrics(stats: Any, num_rays: int) -> Dict[str, float]:
    """Training metrics of one colour pass (:class:`~.field.ColorStats`) over ``num_rays`` rays."""
    n = max(1, num_rays)
    m: Dict[str, float] = {"color_samples_per_ray": stats.num_samples / n}
    for i, (s, k) in enumerate(zip(stats.spikes_per_layer, stats.neurons_per_layer)):
        m[f"firing_rate_lif{i + 1}"] = s / k if k > 0 else 0.0
    e = energy_pj(stats.macs, stats.sops)
    e_ann = stats.ann_macs * E_MAC_PJ
    m.update({
        "macs_per_ray": stats.macs / n,
        "sops_per_ray": stats.sops / n,
        "energy_pj_per_ray": e / n,
        "energy_reduction_vs_ann": e_ann / e if e > 0 else float("nan"),
        "tensor_density": stats.tensor_density,
    })
    return m


def image_op_metrics(outputs: Dict[str, Tensor], num_rays: int, convention: str = "") -> Dict[str, float]:
    """MACs, SOPs and energy of one image from the per-ray counters ``ray_macs``, ``ray_sops`` and
    ``ray_ann_macs`` (each ``[H, W, 1]`` or ``[R, 1]``); ``energy_reduction_vs_ann`` is the ANN twin's energy
    (its MACs x E_MAC) over this network's. ``convention`` (e.g. ``"_dir_once"``) reads the MAC counters of
    another counting convention, ``ray_macs<convention>`` / ``ray_ann_macs<convention>``, and names the MAC
    and energy keys it returns with the same suffix (the SOPs are the same under every convention)."""
    macs = float(outputs["ray_macs" + convention].sum())
    sops = float(outputs["ray_sops"].sum())
    ann = float(outputs["ray_ann_macs" + convention].sum())
    e = energy_pj(macs, sops)
    out = {
        "macs_per_image": macs, "macs_per_ray": macs / num_rays,
        "energy_uj_per_image": e * 1e-6, "energy_pj_per_ray": e / num_rays,
        "ann_energy_uj_per_image": ann * E_MAC_PJ * 1e-6,
        "energy_reduction_vs_ann": (ann * E_MAC_PJ) / e if e > 0 else float("nan"),
    }
    out = {k + convention: v for k, v in out.items()}
    if not convention:
        out.update({"sops_per_image": sops, "sops_per_ray": sops / num_rays})
    return out


def ray_spike_outputs(stats: Any, like: Tensor) -> Dict[str, Tensor]:
    """Per-ray spike counts ``[R, 1]`` of a colour pass's ``ColorStats`` in ``like``'s dtype: ``ray_spikes``
    (all LIF layers) and ``ray_spikes_lif{i}`` for each layer."""
    out = {"ray_spikes": stats.ray_spikes[:, None].to(like.dtype)}
    for i, sp in enumerate(stats.ray_spikes_per_layer):
        out[f"ray_spikes_lif{i + 1}"] = sp[:, None].to(like.dtype)
    return out


def image_firing_rates(outputs: Dict[str, Tensor], n_col: float, width: int, layers: int) -> Dict[str, float]:
    """Firing rates of an image (spikes over neuron-steps: ``n_col`` colour samples x ``width``), over all
    ``layers`` LIF layers and per layer, from :func:`ray_spike_outputs`' per-ray counts."""
    neurons = n_col * width
    rates = {"firing_rate": float(outputs["ray_spikes"].sum()) / (layers * neurons)}
    for i in range(layers):
        rates[f"firing_rate_lif{i + 1}"] = float(outputs[f"ray_spikes_lif{i + 1}"].sum()) / neurons
    return rates


def render_images(outputs: Dict[str, Tensor], rgb: Tensor, gt: Tensor) -> Dict[str, Tensor]:
    """``img`` (gt | rgb side by side), ``accumulation``, ``depth`` and ``spike_rate`` colour maps."""
    acc = colormaps.apply_colormap(outputs["accumulation"])
    depth = colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"])
    rate = outputs["spike_rate"]
    rate_img = colormaps.apply_colormap(rate / rate.max().clamp_min(1e-8))
    return {"img": torch.cat([gt, rgb], 1), "accumulation": acc, "depth": depth, "spike_rate": rate_img}
