"""nerfstudio method specifications: ``ns-train spikingnerf`` and its ANN twin ``ns-train spikingnerf-ann``.

Defaults train on the bundled Blender-format scene ``data/lego-mini`` (~100x100) in a few minutes on a CPU;
pass ``blender-data --data <scene>`` for another scene and raise the grid resolutions / iterations for
full-size scenes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
from .schedulers import FloatExponentialDecaySchedulerConfig as ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from .datamanager import SpikingNeRFDataManagerConfig
from .model import SpikingNeRFModel, SpikingNeRFModelConfig
from .optim import FusedAdamOptimizerConfig

__all__ = ["BUNDLED_SCENE", "Schedule", "MINI", "FULL", "make_trainer_config", "spikingnerf", "spikingnerf_ann",
           "spikingnerf_full", "spikingnerf_ann_full"]

BUNDLED_SCENE = Path(__file__).resolve().parents[2] / "data" / "lego-mini"
"""The small scene shipped with the repository (Blender format)."""

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


MINI = Schedule(coarse_steps=200, fine_steps=400, coarse_resolution=40, fine_resolution=64, pg_scale_steps=(100, 200),
                rays_per_batch=512, hidden_dim=64)
"""``spikingnerf``: the bundled 100x100 scene in a few minutes on a CPU."""

FULL = Schedule(coarse_steps=500, fine_steps=4000, coarse_resolution=64, fine_resolution=160,
                pg_scale_steps=(500, 1000, 1500, 2000), rays_per_batch=2048, hidden_dim=128)
"""``spikingnerf-full``: a full-size Blender scene (DVGO's 160^3 final grid and width-128 colour net); lego-400
trains in 20 minutes on a 2-core CPU to 28.65 dB (docs/benchmarks.md)."""


def make_trainer_config(method_name: str, spiking: bool, schedule: Schedule = MINI) -> TrainerConfig:
    """The full TrainerConfig of ``spikingnerf`` (``spiking=True``) or its ANN twin, on a schedule preset."""
    sc = schedule
    max_steps = sc.coarse_steps + sc.fine_steps
    return TrainerConfig(
        method_name=method_name,
        steps_per_eval_batch=100,
        steps_per_eval_image=max(200, max_steps // 4),
        steps_per_eval_all_images=100_000,  # ns-eval does the full test set
        steps_per_save=max(200, max_steps // 8),
        save_only_latest_checkpoint=True,
        max_num_iterations=max_steps,
        mixed_precision=False,  # CPU autocast would only slow this down; GPU gains little for grids
        machine=MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu"),
        pipeline=VanillaPipelineConfig(
            datamanager=SpikingNeRFDataManagerConfig(  # checks Blender scenes up front
                dataparser=BlenderDataParserConfig(data=BUNDLED_SCENE),
                train_num_rays_per_batch=sc.rays_per_batch,
                eval_num_rays_per_batch=1024,
            ),
            model=SpikingNeRFModelConfig(
                _target=SpikingNeRFModel,
                spiking=spiking,
                coarse_steps=sc.coarse_steps,
                pg_scale_steps=sc.pg_scale_steps,
                coarse_resolution=sc.coarse_resolution,
                fine_resolution=sc.fine_resolution,
                hidden_dim=sc.hidden_dim,
                eval_num_rays_per_chunk=4096,
            ),
        ),
        optimizers={
            # DVGO: large learning rate on the explicit grids, a small one on the colour network
            "grids": {
                "optimizer": FusedAdamOptimizerConfig(lr=1e-1, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-2, max_steps=max_steps),
            },
            "mlp": {
                "optimizer": FusedAdamOptimizerConfig(lr=1e-3, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=max_steps),
            },
        },
        # local by default (nerfstudio binds 0.0.0.0); --viewer.websocket-host 0.0.0.0 to share it
        viewer=ViewerConfig(num_rays_per_chunk=4096, quit_on_train_completion=True,
                            websocket_host="127.0.0.1"),
        vis="viewer",
    )


spikingnerf = MethodSpecification(
    config=make_trainer_config("spikingnerf", spiking=True),
    description="SpikingNeRF: voxel grids + LIF colour network, ray samples as SNN time steps.",
)

spikingnerf_ann = MethodSpecification(
    config=make_trainer_config("spikingnerf-ann", spiking=False),
    description="SpikingNeRF's ANN twin (same grids, ReLU colour network) for energy/quality comparison.",
)

spikingnerf_full = MethodSpecification(
    config=make_trainer_config("spikingnerf-full", spiking=True, schedule=FULL),
    description="SpikingNeRF sized for a full Blender scene (160^3 grid, 4500 steps, ~20 min on a 2-core CPU).",
)

spikingnerf_ann_full = MethodSpecification(
    config=make_trainer_config("spikingnerf-ann-full", spiking=False, schedule=FULL),
    description="The ANN twin of spikingnerf-full.",
)
