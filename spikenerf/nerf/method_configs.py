"""Every nerfstudio method of this package, each one ``MethodSpecification`` built by :func:`make_trainer_config`.

| method | model | schedule |
| --- | --- | --- |
| ``spikingnerf`` / ``spikingnerf-ann`` | :class:`~spikenerf.nerf.model.SpikingNeRFModel` (LIF / ReLU colour net) | ``MINI`` |
| ``spikingnerf-full`` / ``spikingnerf-ann-full`` | the same | ``FULL`` |
| ``spiknerf-full`` / ``spiknerf-ann-full`` | Spik-NeRF on the grids | ``SPIKNERF_FULL`` |
| ``spikingnerf-capture`` / ``spikingnerf-ann-capture`` | the same (real captures, contracted space) | ``CAPTURE`` |
| ``spikingnerf-llff`` / ``spikingnerf-ann-llff`` | the same (forward-facing ``llff-data`` scenes, NDC) | ``GRID_LLFF`` |
| ``spiknerf`` / ``spiknerf-ann`` | :class:`~spikenerf.nerf.spiknerf.SpikNeRFModel` on the same grids | ``MINI`` |
| ``spiknerf-mlp`` / ``spiknerf-mlp-ann`` | :class:`~spikenerf.nerf.nerf_mlp.NeRFMLPModel` (NeRF MLP) | 600 steps |
| ``spikingnerf-t`` / ``spikingnerf-t-ann`` | :class:`~spikenerf.nerf.tensorf_model.SpikingNeRFTModel` (TensoRF planes) | ``LEGO`` / ``LLFF`` |
| ``spikingnerf-t-cpu`` / ``spikingnerf-t-ann-cpu`` | the same | ``TENSORF_CPU`` / ``TENSORF_CPU_NDC`` |

Every method gets the same trainer skeleton: the viewer bound to 127.0.0.1, the data manager that checks a
Blender scene before nerfstudio reads it (:class:`~spikenerf.nerf.datamanager.SpikingNeRFDataManagerConfig`),
float-only learning-rate schedules spanning all the steps. Defaults train on the bundled scene
``data/lego-mini`` (~100x100) in a few minutes on a CPU; pass ``blender-data --data <scene>`` for another.
The ``pyproject.toml`` entry points all name this module.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Tuple, Type

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig, OptimizerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.base_model import ModelConfig
from nerfstudio.plugins.types import MethodSpecification

from .datamanager import SpikingNeRFDataManagerConfig
from .llff_dataparser import LLFFDataParserConfig
from .model import SpikingNeRFModelConfig
from .nerf_mlp import NeRFMLPModelConfig
from .optim import FusedAdamOptimizerConfig, GridAdamOptimizerConfig
from .scene import NDCSettings
from .schedulers import FloatExponentialDecaySchedulerConfig
from .spiknerf import SpikNeRFModelConfig
from .tensorf_model import SpikingNeRFTModelConfig
from .tensorf_render import LEGO, LLFF, TensoRFSchedule
from .trainer import SCHEDULE_FIELDS, SpikingNeRFPipelineConfig, SpikingNeRFTrainerConfig

__all__ = ["BUNDLED_SCENE", "VIEWER_HOST", "Schedule", "MINI", "FULL", "SPIKNERF_FULL", "make_trainer_config", "preset_schedule", "optimizer_group",
           "grid_model_config", "grid_trainer_config", "mlp_trainer_config", "METHODS", "spikingnerf",
           "spikingnerf_ann", "spikingnerf_full", "spikingnerf_ann_full", "spikingnerf_capture",
           "spikingnerf_ann_capture", "GRID_LLFF", "llff_trainer_config", "spikingnerf_llff", "spikingnerf_ann_llff", "spiknerf", "spiknerf_ann", "spiknerf_mlp", "spiknerf_mlp_ann"]

BUNDLED_SCENE = Path(__file__).resolve().parents[2] / "data" / "lego-mini"
"""The small scene shipped with the repository (Blender format)."""

VIEWER_HOST = "127.0.0.1"
"""Every method's viewer binds this machine only (nerfstudio's default is 0.0.0.0); pass
``--viewer.websocket-host 0.0.0.0`` to share it."""


DVGO_DECAY_STEPS = 20_000
"""DVGO's learning rates fall by x0.1 over this many steps (``lrate_decay = 20`` thousand)."""


@dataclass(frozen=True)
class Schedule:
    """Grid sizes, batch and step counts of one preset (the learning-rate decay spans all the steps)."""

    coarse_steps: int
    fine_steps: int
    coarse_resolution: int
    fine_resolution: int
    pg_scale_steps: Tuple[int, ...]
    rays_per_batch: int
    hidden_dim: int

    @property
    def max_steps(self) -> int:
        return self.coarse_steps + self.fine_steps


MINI = Schedule(coarse_steps=400, fine_steps=800, coarse_resolution=40, fine_resolution=64, pg_scale_steps=(200, 400),
                rays_per_batch=512, hidden_dim=64)
"""``spikingnerf``: the bundled 100x100 scene in about three minutes on a CPU (training is ~1 minute of it)."""

FULL = Schedule(coarse_steps=500, fine_steps=6000, coarse_resolution=64, fine_resolution=160,
                pg_scale_steps=(500, 1000, 1500, 2000), rays_per_batch=4096, hidden_dim=128)
"""``spikingnerf-full``: a full-size Blender scene (DVGO's 160^3 final grid and width-128 colour net) in about
27 minutes on a 2-core CPU: 24.6 M training rays, 3x those of :data:`SPIKNERF_FULL` (docs/benchmarks.md). DVGO's
own lego schedule is 164 M rays (20,000 x 8,192)."""

SPIKNERF_FULL = Schedule(coarse_steps=500, fine_steps=4000, coarse_resolution=64, fine_resolution=160,
                         pg_scale_steps=(500, 1000, 1500, 2000), rays_per_batch=2048, hidden_dim=128)
"""``spiknerf-full``: the same grids on 8.2 M rays. Spik-NeRF runs T = 2 steps per sample, so a step costs about
twice SpikingNeRF's: this fits its ~30-minute budget, and its lego-400 table was measured on it."""

CAPTURE = Schedule(coarse_steps=500, fine_steps=3500, coarse_resolution=64, fine_resolution=128,
                   pg_scale_steps=(500, 1000, 1500, 2000), rays_per_batch=1024, hidden_dim=128)
"""``spikingnerf-capture``: a real capture (``colmap`` / ``nerfstudio-data`` / ``instant-ngp-data``) for quality,
sized for about 30 minutes on a 2-core CPU. The scene parameterization is the model's ``scene="auto"`` (the
contracted space for cameras inside the data parser's box), as for the first look with plain ``spikingnerf``."""

GRID_LLFF = Schedule(coarse_steps=100, fine_steps=3000, coarse_resolution=64, fine_resolution=160,
                     pg_scale_steps=(500, 1000, 1500), rays_per_batch=2048, hidden_dim=64)
"""``spikingnerf-llff``: a forward-facing ``llff-data`` scene in NDC at the papers' 1/8 resolution, for about 30
minutes on a 2-core CPU (measured in docs/benchmarks.md). 6.1 M training rays (each of fern's 3.2 M training pixels
about twice; DVGO's LLFF schedule is 123 M) in batches of 2,048 (a step's Adam and TV passes over the whole grid
cost the same at any batch), 160 fine vertices along the NDC box's ``x'`` (~3 of fern's 504 pixels per voxel), the
first look's width-64 net (DVGO's LLFF ``rgbnet_width``; ``--pipeline.model.hidden-dim 128`` saves 72 % of
the colour net's energy against its twin instead of 58 %, +0.11 dB, in 26.9 min on fern). The NDC coarse stage
(:class:`~.scene.NDCSettings`) is short: the fine stage is where the quality comes from."""


# ----------------------------------------------------------------------------- the one trainer skeleton
def optimizer_group(optimizer: OptimizerConfig, lr_final: float, max_steps: int) -> Dict[str, Any]:
    """One optimiser group: ``optimizer`` with an exponential decay to ``lr_final`` over ``max_steps``."""
    return {"optimizer": optimizer,
            "scheduler": FloatExponentialDecaySchedulerConfig(lr_final=lr_final, max_steps=max_steps)}


def preset_schedule(model: ModelConfig, optimizers: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Every step count of a preset that ``--max-num-iterations`` scales (dotted config path -> value): the
    schedulers' ``max_steps`` and the model's :data:`~.trainer.SCHEDULE_FIELDS`."""
    steps: Dict[str, Any] = {f"pipeline.model.{name}": getattr(model, name) for name in SCHEDULE_FIELDS
                             if hasattr(model, name)}
    ndc = getattr(model, "ndc", None)  # what NDC scenes train with instead (scene.NDCSettings): scaled alike
    steps.update({f"pipeline.model.ndc.{name}": getattr(ndc, name) for name in SCHEDULE_FIELDS
                  if getattr(ndc, name, None) is not None})
    for group, spec in optimizers.items():
        if getattr(spec.get("scheduler"), "max_steps", None) is not None:
            steps[f"optimizers.{group}.scheduler.max_steps"] = spec["scheduler"].max_steps
    return steps


def make_trainer_config(method_name: str, model: ModelConfig, optimizers: Dict[str, Dict[str, Any]], *,
                        max_steps: int, rays_per_batch: int, eval_rays_per_batch: int = 1024,
                        viewer_rays_per_chunk: int = 4096) -> SpikingNeRFTrainerConfig:
    """The TrainerConfig every method of this package is built on.

    It fixes what all methods share: the crash-safe, divergence-guarded trainer
    (:class:`~.trainer.SpikingNeRFTrainerConfig`; its schedules follow ``--max-num-iterations``, see
    :func:`preset_schedule`), the scene-checking data manager on the bundled scene, the viewer on
    :data:`VIEWER_HOST` (quitting when training ends), evaluation / checkpoint cadence from ``max_steps``,
    no mixed precision, CUDA when there is one. ``model`` and ``optimizers`` (built with
    :func:`optimizer_group`, decaying over ``max_steps``) are the method's own.
    """
    return SpikingNeRFTrainerConfig(
        method_name=method_name,
        steps_per_eval_batch=100,
        steps_per_eval_image=max(200, max_steps // 2),  # a 504x378 NDC image is ~10 s on 2 cores
        steps_per_eval_all_images=100_000,  # ns-eval does the full test set
        steps_per_save=max(200, max_steps // 8),
        save_only_latest_checkpoint=True,
        max_num_iterations=max_steps,
        preset_steps=max_steps,
        preset_schedule=preset_schedule(model, optimizers),
        mixed_precision=False,  # CPU autocast would only slow this down; GPU gains little for grids
        machine=MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu"),
        pipeline=SpikingNeRFPipelineConfig(
            datamanager=SpikingNeRFDataManagerConfig(  # checks the scene up front (every parser)
                dataparser=BlenderDataParserConfig(data=BUNDLED_SCENE),
                train_num_rays_per_batch=rays_per_batch,
                eval_num_rays_per_batch=eval_rays_per_batch,
            ),
            model=model,
        ),
        optimizers=optimizers,
        viewer=ViewerConfig(num_rays_per_chunk=viewer_rays_per_chunk, quit_on_train_completion=True,
                            websocket_host=VIEWER_HOST),
        vis="viewer",
    )


# ----------------------------------------------------------------------------- voxel-grid methods
def grid_model_config(spiking: bool, schedule: Schedule = MINI,
                      config_class: Type[SpikingNeRFModelConfig] = SpikingNeRFModelConfig) -> SpikingNeRFModelConfig:
    """A voxel-grid model config (SpikingNeRF or a subclass such as Spik-NeRF's) sized by ``schedule``."""
    sc = schedule
    return config_class(spiking=spiking, coarse_steps=sc.coarse_steps, pg_scale_steps=sc.pg_scale_steps,
                        coarse_resolution=sc.coarse_resolution, fine_resolution=sc.fine_resolution,
                        hidden_dim=sc.hidden_dim, eval_num_rays_per_chunk=4096)


def grid_trainer_config(method_name: str, spiking: bool, schedule: Schedule = MINI,
                        config_class: Type[SpikingNeRFModelConfig] = SpikingNeRFModelConfig) -> TrainerConfig:
    """TrainerConfig of a voxel-grid method: DVGO's large learning rate on the grids, a small one on the net."""
    steps = schedule.max_steps
    # DVGO's decay, x0.1 every 20,000 steps: a short schedule keeps most of its learning rate. (Decaying x0.1
    # over MINI's 1,200 steps instead cost 3.1 dB on the bundled scene: 23.03 vs 26.13 dB, docs/nerf.md.)
    decay = 0.1 ** (steps / DVGO_DECAY_STEPS)
    optimizers = {
        "grids": optimizer_group(GridAdamOptimizerConfig(lr=1e-1, eps=1e-15), lr_final=1e-1 * decay, max_steps=steps),
        "mlp": optimizer_group(FusedAdamOptimizerConfig(lr=1e-3, eps=1e-15), lr_final=1e-3 * decay, max_steps=steps),
    }
    return make_trainer_config(method_name, grid_model_config(spiking, schedule, config_class), optimizers,
                               max_steps=steps, rays_per_batch=schedule.rays_per_batch)


def llff_trainer_config(method_name: str, spiking: bool) -> TrainerConfig:
    """:func:`grid_trainer_config` on :data:`GRID_LLFF`, its fine resolution kept in NDC scenes (the NDC settings'
    own would replace it) and the ``llff-data`` parser as the default data."""
    cfg = grid_trainer_config(method_name, spiking, schedule=GRID_LLFF)
    cfg.pipeline.model.ndc = NDCSettings(coarse_steps=GRID_LLFF.coarse_steps, fine_resolution=GRID_LLFF.fine_resolution)
    cfg.preset_schedule["pipeline.model.ndc.coarse_steps"] = GRID_LLFF.coarse_steps
    cfg.pipeline.datamanager.dataparser = LLFFDataParserConfig()
    return cfg


# ----------------------------------------------------------------------------- NeRF-MLP methods
def mlp_trainer_config(method_name: str, spiking: bool, max_steps: int = 600) -> TrainerConfig:
    """TrainerConfig of ``spiknerf-mlp`` / ``spiknerf-mlp-ann`` on the bundled scene (CPU-sized)."""
    optimizers = {"fields": optimizer_group(AdamOptimizerConfig(lr=1e-3, eps=1e-8), lr_final=1e-4,
                                            max_steps=max_steps)}
    return make_trainer_config(method_name, NeRFMLPModelConfig(spiking=spiking), optimizers, max_steps=max_steps,
                               rays_per_batch=256, eval_rays_per_batch=512, viewer_rays_per_chunk=1024)


# ----------------------------------------------------------------------------- SpikingNeRF-T (TensoRF planes)
TENSORF_SCHEDULE_FIELDS = ("num_steps", "upsample_steps", "alpha_mask_steps")
"""Step counts of a :class:`~.tensorf_render.TensoRFSchedule` that ``--max-num-iterations`` scales."""


def tensorf_trainer_config(method_name: str, spiking: bool, schedule: TensoRFSchedule = LEGO,
                           ndc_schedule: TensoRFSchedule = LLFF) -> TrainerConfig:
    """TrainerConfig of ``spikingnerf-t`` / its twin: TensoRF's Adam (betas 0.9 / 0.99) on the planes and on the
    networks; no scheduler, the model sets TensoRF's learning rates every step (decay with a reset after each
    up-sampling). ``schedule`` serves bounded scenes, ``ndc_schedule`` NDC ones (``llff-data``); the trainer's
    step count and batch are ``schedule``'s, and ``--max-num-iterations`` scales the step counts of both by
    the same factor (TensoRF's flower config has 25,000 steps to lego's 30,000: ``spikingnerf-t llff-data``
    then runs 30,000 steps, the last 5,000 at the decayed rate)."""
    model = SpikingNeRFTModelConfig(spiking=spiking, tensorf=replace(schedule), ndc_tensorf=replace(ndc_schedule))
    optimizers = {
        "grids": {"optimizer": GridAdamOptimizerConfig(lr=schedule.lr_grid, betas=(0.9, 0.99)), "scheduler": None},
        "mlp": {"optimizer": GridAdamOptimizerConfig(lr=schedule.lr_network, betas=(0.9, 0.99)), "scheduler": None},
    }
    cfg = make_trainer_config(method_name, model, optimizers, max_steps=schedule.num_steps,
                              rays_per_batch=schedule.rays_per_batch)
    for which in ("tensorf", "ndc_tensorf"):
        for name in TENSORF_SCHEDULE_FIELDS:
            cfg.preset_schedule[f"pipeline.model.{which}.{name}"] = getattr(getattr(model, which), name)
    return cfg


# ----------------------------------------------------------------------------- the methods
spikingnerf = MethodSpecification(
    config=grid_trainer_config("spikingnerf", spiking=True),
    description="SpikingNeRF: voxel grids + LIF colour network, ray samples as SNN time steps.",
)
spikingnerf_ann = MethodSpecification(
    config=grid_trainer_config("spikingnerf-ann", spiking=False),
    description="SpikingNeRF's ANN twin (same grids, ReLU colour network) for energy/quality comparison.",
)
spikingnerf_full = MethodSpecification(
    config=grid_trainer_config("spikingnerf-full", spiking=True, schedule=FULL),
    description="SpikingNeRF sized for a full Blender scene (160^3 grid, 6500 steps of 4096 rays, ~27 min on a 2-core CPU).",
)
spikingnerf_ann_full = MethodSpecification(
    config=grid_trainer_config("spikingnerf-ann-full", spiking=False, schedule=FULL),
    description="The ANN twin of spikingnerf-full.",
)
spikingnerf_capture = MethodSpecification(
    config=grid_trainer_config("spikingnerf-capture", spiking=True, schedule=CAPTURE),
    description="SpikingNeRF for a real capture (colmap / nerfstudio-data / instant-ngp-data): grids in the "
                "contracted space, ~30 min on a 2-core CPU.",
)
spikingnerf_ann_capture = MethodSpecification(
    config=grid_trainer_config("spikingnerf-ann-capture", spiking=False, schedule=CAPTURE),
    description="The ANN twin of spikingnerf-capture.",
)
spikingnerf_llff = MethodSpecification(
    config=llff_trainer_config("spikingnerf-llff", spiking=True),
    description="SpikingNeRF for a forward-facing capture (llff-data, NDC): 160 fine vertices across, 100 coarse + "
                "3000 fine steps of 2048 rays, ~30 min on a 2-core CPU (fern: 24.3 dB, docs/benchmarks.md).",
)
spikingnerf_ann_llff = MethodSpecification(
    config=llff_trainer_config("spikingnerf-ann-llff", spiking=False),
    description="The ANN twin of spikingnerf-llff.",
)
spiknerf = MethodSpecification(
    config=grid_trainer_config("spiknerf", spiking=True, config_class=SpikNeRFModelConfig),
    description="Spik-NeRF: ternary {0,1,2} LIF colour network on SpikingNeRF's voxel grids, re-parameterized "
                "at inference, optional ANN-teacher distillation.",
)
spiknerf_ann = MethodSpecification(
    config=grid_trainer_config("spiknerf-ann", spiking=False, config_class=SpikNeRFModelConfig),
    description="Spik-NeRF's ANN twin on the voxel grids (ReLU colour network); also the distillation teacher.",
)
spiknerf_mlp = MethodSpecification(
    config=mlp_trainer_config("spiknerf-mlp", spiking=True),
    description="Spik-NeRF on the original NeRF MLP (PE 10/4, 8 layers + skip, coarse 64 + fine 128), spiking "
                "hidden layers (CPU-sized width by default).",
)
spiknerf_mlp_ann = MethodSpecification(
    config=mlp_trainer_config("spiknerf-mlp-ann", spiking=False),
    description="ANN NeRF MLP twin of spiknerf-mlp (ReLU); usable as the distillation teacher.",
)

# ----------------------------------------------------------------------------- Spik-NeRF presets at scale
def spiknerf_mlp_preset(method_name: str, spiking: bool, *, max_steps: int, rays_per_batch: int, lr: float,
                        lr_final: float, **model: Any) -> TrainerConfig:
    """A ``spiknerf-mlp`` preset: :func:`mlp_trainer_config` with its own batch, learning rates and model fields."""
    cfg = mlp_trainer_config(method_name, spiking, max_steps=max_steps)
    cfg.pipeline.datamanager.train_num_rays_per_batch = rays_per_batch
    group = cfg.optimizers["fields"]
    group["optimizer"].lr, group["scheduler"].lr_final = lr, lr_final
    for name, value in model.items():
        setattr(cfg.pipeline.model, name, value)
    return cfg


SPIKNERF_MLP_PAPER: Dict[str, Any] = dict(
    max_steps=200_000, rays_per_batch=1024, lr=5e-4, lr_final=5e-5, hidden_dim=256, color_hidden=128,
    num_coarse_samples=64, num_importance_samples=128, occupancy_resolution=0, eval_num_rays_per_chunk=4096)
"""The paper's NeRF (GPU): 8 x 256, skip at 5, T = 2, 64 + 128 samples on every ray, batch 1024 rays, Adam
5e-4 decaying exponentially to 5e-5, 200k steps (NeRF-PyTorch's Blender recipe at 400 x 400, which we take
Spik-NeRF to follow; its exact iteration count is not in the text we could check)."""

SPIKNERF_MLP_CPU: Dict[str, Any] = dict(
    max_steps=2500, rays_per_batch=512, lr=1e-3, lr_final=1e-4, hidden_dim=128, color_hidden=64,
    num_coarse_samples=64, num_importance_samples=64, occupancy_resolution=64, occupancy_warmup_steps=100)
"""~23 minutes for a spiking row on a 2-core CPU, ~9 for the ANN twin (lego-400, docs/benchmarks.md): width 128,
64 + 64 samples, the occupancy cache (samples outside the box and in empty cells skip both networks), 512 rays,
2,500 steps (a T = 2 step ~0.45 s once the cache is on; 1,000 steps had used a third of the budget). Not the
paper's protocol (see SPIKNERF_MLP_PAPER)."""

spiknerf_full = MethodSpecification(
    config=grid_trainer_config("spiknerf-full", spiking=True, schedule=SPIKNERF_FULL, config_class=SpikNeRFModelConfig),
    description="Spik-NeRF on the voxel grids sized for a full Blender scene (4500 steps of 2048 rays, T = 2).",
)
spiknerf_ann_full = MethodSpecification(
    config=grid_trainer_config("spiknerf-ann-full", spiking=False, schedule=SPIKNERF_FULL, config_class=SpikNeRFModelConfig),
    description="The ANN twin / distillation teacher of spiknerf-full.",
)
spiknerf_mlp_paper = MethodSpecification(
    config=spiknerf_mlp_preset("spiknerf-mlp-paper", True, **SPIKNERF_MLP_PAPER),
    description="GPU: Spik-NeRF's configuration (8x256 spiking NeRF MLP, T=2, 64+128 samples, 1024 rays, 200k steps).",
)
spiknerf_mlp_ann_paper = MethodSpecification(
    config=spiknerf_mlp_preset("spiknerf-mlp-ann-paper", False, **SPIKNERF_MLP_PAPER),
    description="GPU: the ANN NeRF twin / teacher of spiknerf-mlp-paper.",
)
spiknerf_mlp_cpu = MethodSpecification(
    config=spiknerf_mlp_preset("spiknerf-mlp-cpu", True, **SPIKNERF_MLP_CPU),
    description="Spik-NeRF MLP in ~23 min on a 2-core CPU (width 128, 64+64 samples, occupancy cache, 2500 steps of 512 rays).",
)
spiknerf_mlp_ann_cpu = MethodSpecification(
    config=spiknerf_mlp_preset("spiknerf-mlp-ann-cpu", False, **SPIKNERF_MLP_CPU),
    description="The ANN twin / teacher of spiknerf-mlp-cpu.",
)

TENSORF_CPU = replace(LEGO, num_steps=800, n_voxel_init=32 ** 3 + 4, n_voxel_final=128 ** 3,
                      upsample_steps=(100, 150, 200, 275, 350), alpha_mask_steps=(100, 200), rays_per_batch=512)
"""``spikingnerf-t-cpu`` on bounded scenes: TensoRF's lego rules at CPU size: 32^3 -> 128^3 voxels, 512 rays,
800 steps, the first alpha mask + shrink at step 100 (TensoRF: 128^3 -> 300^3, 4,096 rays, 30,000 steps, 2,000).
On lego-400, one thread beside its twin: 800 steps in 3.1 min; ``--max-num-iterations 6000`` in 10.8 min,
28.93 dB on 8 test views; with 1,024 rays and ``--pipeline.model.tensorf.n-voxel-final 4096000`` (160^3) as well,
22.5 min and **30.29 dB** on the 200 test views (docs/benchmarks.md, "SpikingNeRF-T")."""
TENSORF_CPU_NDC = replace(LLFF, num_steps=800, n_voxel_init=48 ** 3 + 4, n_voxel_final=128 ** 3,
                          upsample_steps=(100, 150, 200, 275), alpha_mask_steps=(125,), rays_per_batch=512)
"""``spikingnerf-t-cpu`` on NDC scenes: TensoRF's flower rules at CPU size (48^3 -> 128^3; TensoRF: 128^3 ->
640^3). With 192^3 at the end a fern step took 4 s at 79x70x55 and 8 s at 159x141x110 here (the NDC box is
barely shrunk: the content fills the frustum), hence 128^3. With it, on fern, one thread beside its twin: 800
steps in 7.1 min, 21.47 dB / SSIM 0.571 on the 3 held-out views (the twin 21.68 dB)."""

def tensorf_method_pair(name: str, description: str, **schedules: TensoRFSchedule
                        ) -> Tuple[MethodSpecification, MethodSpecification]:
    """``name`` (spiking) and ``name`` with ``-ann`` after ``spikingnerf-t`` (its ReLU twin) on the same
    schedules (:func:`tensorf_trainer_config`'s ``schedule`` / ``ndc_schedule``)."""
    twin = name.replace("spikingnerf-t", "spikingnerf-t-ann", 1)
    return (MethodSpecification(config=tensorf_trainer_config(name, True, **schedules), description=description),
            MethodSpecification(config=tensorf_trainer_config(twin, False, **schedules),
                                description=f"The ANN twin of {name} (ReLU appearance net)."))


spikingnerf_t, spikingnerf_t_ann = tensorf_method_pair(
    "spikingnerf-t", "SpikingNeRF-T: TensoRF VM planes + a spiking (LIF) appearance net on the weight-masked, "
    "condensed samples; TensoRF's lego / flower schedules (30k / 25k steps of 4096 rays: GPU-sized).")
spikingnerf_t_cpu, spikingnerf_t_ann_cpu = tensorf_method_pair(
    "spikingnerf-t-cpu", "spikingnerf-t sized for this CPU: 32^3 -> 128^3 voxels (NDC: 48^3 -> 128^3), 800 "
    "steps of 512 rays.", schedule=TENSORF_CPU, ndc_schedule=TENSORF_CPU_NDC)

METHODS: Dict[str, MethodSpecification] = {
    "spikingnerf": spikingnerf,
    "spikingnerf-ann": spikingnerf_ann,
    "spikingnerf-full": spikingnerf_full,
    "spikingnerf-ann-full": spikingnerf_ann_full,
    "spikingnerf-capture": spikingnerf_capture,
    "spikingnerf-ann-capture": spikingnerf_ann_capture,
    "spikingnerf-llff": spikingnerf_llff,
    "spikingnerf-ann-llff": spikingnerf_ann_llff,
    "spiknerf": spiknerf,
    "spiknerf-ann": spiknerf_ann,
    "spiknerf-mlp": spiknerf_mlp,
    "spiknerf-mlp-ann": spiknerf_mlp_ann,
    "spiknerf-full": spiknerf_full,
    "spiknerf-ann-full": spiknerf_ann_full,
    "spiknerf-mlp-paper": spiknerf_mlp_paper,
    "spiknerf-mlp-ann-paper": spiknerf_mlp_ann_paper,
    "spiknerf-mlp-cpu": spiknerf_mlp_cpu,
    "spiknerf-mlp-ann-cpu": spiknerf_mlp_ann_cpu,
    "spikingnerf-t": spikingnerf_t,
    "spikingnerf-t-ann": spikingnerf_t_ann,
    "spikingnerf-t-cpu": spikingnerf_t_cpu,
    "spikingnerf-t-ann-cpu": spikingnerf_t_ann_cpu,
}
"""Method name -> specification: the ``[project.entry-points."nerfstudio.method_configs"]`` of pyproject.toml."""
