"""ANN-teacher distillation for Spik-NeRF (``--pipeline.model.teacher-config outputs/.../config.yml``).

The teacher is any trained model of this package (``spiknerf-ann``, ``spiknerf-mlp-ann``, ``spikingnerf-ann``;
spiking ones work too). It is loaded from its ``config.yml`` and the latest checkpoint next to it
(``torch.load(weights_only=True)``), frozen, kept out of the student's modules (so it is never trained, never
in ``get_param_groups`` and never saved), and queried at the student's sample positions and directions:

    loss += lambda_d * MSE(sigma_student, sigma_teacher) + lambda_c * MSE(rgb_student, rgb_teacher)

where the densities enter as the alpha of the student's sampling step, ``1 - exp(-sigma delta)`` (the default
``distill_density_space="alpha"``: bounded, so the density term cannot drown the colour loss) or as the volume
density per world unit itself (``"sigma"``, the paper's form), and ``rgb`` is the per-sample colour.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
import yaml
from nerfstudio.engine.trainer import TrainerConfig
from torch import Tensor, nn

from .rendering import sigma_to_alpha

__all__ = ["TeacherMixin", "load_teacher", "latest_checkpoint", "query_points", "distill_losses"]

_HOW = ("train the ANN teacher first on the same scene (e.g. `ns-train spiknerf-ann ... blender-data --data "
        "<scene>`) and pass its outputs/<experiment>/<method>/<timestamp>/config.yml as "
        "--pipeline.model.teacher-config")


def latest_checkpoint(config_path: Path, trainer_config: Any) -> tuple[Path, int]:
    """The ``step-*.ckpt`` with the highest step next to ``config.yml`` (or in the config's checkpoint dir)."""
    dirs = [config_path.parent / str(getattr(trainer_config, "relative_model_dir", "nerfstudio_models"))]
    try:
        dirs.append(Path(trainer_config.get_checkpoint_dir()))
    except Exception:
        pass
    for d in dirs:
        found = []
        for p in d.glob("step-*.ckpt") if d.is_dir() else []:
            m = re.fullmatch(r"step-(\d+)\.ckpt", p.name)
            if m:
                found.append((int(m.group(1)), p))
        if found:
            step, path = max(found)
            return path, step
    raise FileNotFoundError(f"no teacher checkpoint (step-*.ckpt) in {' or '.join(str(d) for d in dirs)}: "
                            f"let the teacher's training finish and save a checkpoint, or {_HOW}")


def load_teacher(config_path: Optional[Path | str], scene_box: Any, num_train_data: int,
                 metadata: Optional[Dict[str, Any]] = None, device: Any = "cpu") -> nn.Module:
    """Build the teacher from its config, load its latest checkpoint, check the scene, freeze it."""
    if config_path is None:
        raise ValueError(f"teacher_config is not set: {_HOW}")
    path = Path(config_path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher config {path} not found: {_HOW}")
    cfg = yaml.load(path.read_text(), Loader=yaml.Loader)
    if not isinstance(cfg, TrainerConfig):
        raise ValueError(f"{path} is not a nerfstudio config.yml (got {type(cfg).__name__}): {_HOW}")
    ckpt, step = latest_checkpoint(path, cfg)
    loaded = torch.load(ckpt, map_location="cpu", weights_only=True)
    pipe = loaded.get("pipeline", {})
    state = {}
    for k, v in pipe.items():
        k = k[len("module."):] if k.startswith("module.") else k
        if k.startswith("_model."):
            state[k[len("_model."):]] = v
    if not state:
        raise ValueError(f"{ckpt} holds no model state ('pipeline' -> '_model.*'): {_HOW}")
    # same scene: the scene box the teacher was trained in and, when recorded, its number of training views
    box = scene_box.aabb.detach().cpu().float()
    t_box = state.get("aabb")
    if t_box is not None and (t_box.shape != box.shape or not torch.allclose(t_box.float(), box, atol=1e-5)):
        raise ValueError(f"teacher {path} was trained on a different scene: its scene box {t_box.tolist()} != the "
                         f"student's {box.tolist()}; {_HOW}")
    t_views = state.get("num_train_views")
    if t_views is not None and int(t_views) != int(num_train_data):
        raise ValueError(f"teacher {path} was trained on a different dataset: {int(t_views)} training views, the "
                         f"student has {int(num_train_data)}; {_HOW}")
    mcfg = copy.deepcopy(cfg.pipeline.model)
    if hasattr(mcfg, "teacher_config"):
        mcfg.teacher_config = None  # no teacher chains
    teacher = mcfg.setup(scene_box=scene_box, num_train_data=num_train_data, metadata=metadata or {})
    if hasattr(teacher, "update_to_step"):
        teacher.update_to_step(step)
    missing, unexpected = teacher.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("lpips")]
    unexpected = [k for k in unexpected if not k.startswith("lpips")]
    if missing or unexpected:
        raise ValueError(f"teacher checkpoint {ckpt} does not match its config {path} (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    if getattr(teacher, "in_fine_stage", True) is False:
        raise ValueError(f"teacher checkpoint {ckpt} (step {step}) is still in the coarse stage (coarse_steps="
                         f"{teacher.config.coarse_steps}): train the teacher longer")
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher.to(device)


@torch.no_grad()
def query_points(model: nn.Module, xyz: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
    """Volume density per world unit ``[N]`` and colour ``[N, 3]`` of a model at points ``[N, 3]``.

    Every model of this package answers through its ``query_points`` (voxel-grid models: fine density grid
    and colour network, each point its own one-sample ray; NeRF-MLP models: the fine network).
    """
    if not hasattr(model, "query_points"):
        raise TypeError(f"cannot query a {type(model).__name__} as a teacher (it has no query_points)")
    return model.query_points(xyz, dirs)


def distill_losses(teacher: nn.Module, xyz: Tensor, dirs: Tensor, sigma: Tensor, rgb: Tensor,
                   w_density: float, w_color: float, space: str = "sigma", delta: float | Tensor = 1.0
                   ) -> Dict[str, Tensor]:
    """``{"distill_density": w_d MSE, "distill_color": w_c MSE}`` against the teacher at ``xyz`` / ``dirs``.

    ``sigma`` ``[N]`` and ``rgb`` ``[N, 3]`` are the student's at the same points (with gradients). With
    ``space="alpha"`` densities are compared as ``1 - exp(-sigma * delta)`` (``delta`` the step length).
    """
    dev = next((p.device for p in teacher.parameters()), xyz.device)
    with torch.no_grad():
        t_sigma, t_rgb = query_points(teacher, xyz.detach().to(dev), dirs.detach().to(dev))
    t_sigma, t_rgb = t_sigma.to(sigma.device).reshape(sigma.shape), t_rgb.to(rgb.device).reshape(rgb.shape)
    if space == "alpha":
        sigma, t_sigma = sigma_to_alpha(sigma, delta), sigma_to_alpha(t_sigma, delta)
    elif space != "sigma":
        raise ValueError(f"distill_density_space must be 'sigma' or 'alpha', got {space!r}")
    return {"distill_density": w_density * F.mse_loss(sigma, t_sigma),
            "distill_color": w_color * F.mse_loss(rgb, t_rgb)}


class TeacherMixin:
    """Teacher handling shared by the distilling models (``config.teacher_config``, ``self.teacher``).

    The teacher is kept outside the module tree (``object.__setattr__``): never trained, never saved.
    """

    def load_teacher(self) -> None:
        object.__setattr__(self, "teacher", load_teacher(
            self.config.teacher_config, scene_box=self.scene_box, num_train_data=self.num_train_data,
            metadata=self.kwargs.get("metadata", {}), device=self.aabb.device))

    def load_teacher_if_configured(self) -> None:
        """At set-up, so a bad teacher fails before the first step."""
        if self.config.teacher_config is not None and self.teacher is None:
            self.load_teacher()
