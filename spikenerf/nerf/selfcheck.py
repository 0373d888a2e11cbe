"""A few training steps and one render of a method of this package on a tiny synthetic scene, on any device.

What the back-end and device comparisons drive: tests/nerf/test_cuda_path.py (the C kernels on against off on
the CPU, i.e. the code a CUDA tensor takes apart from Triton), tests/nerf/test_device_placement.py and
tools/gpu_check.py (the same steps on CUDA against the CPU). Every run of :func:`train_and_render` with the same
arguments sees the same weights (built and seeded on the CPU, then moved), the same ray batches and targets, and
the same camera, so two runs differ only by the code path or the device.

The tiny sizes (:data:`TINY_GRID`, :data:`TINY_MLP`) keep a run to about a second on a CPU while the step counts
still cross the coarse -> fine switch (occupancy cache built), both progressive up-scalings (occupancy refreshed
after each) and, for the NeRF MLP, the occupancy warm-up and its refreshes; :data:`TINY_TENSORF` crosses
SpikingNeRF-T's alpha mask with its shrink and two up-samplings of the planes.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, replace
from typing import Any, Callable, ContextManager, Dict, List, Literal

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.models.base_model import Model
from torch import Tensor

from .method_configs import METHODS
from .model import SpikingNeRFModelConfig
from .nerf_mlp import NeRFMLPModelConfig
from .tensorf_model import SpikingNeRFTModelConfig
from .tensorf_render import TensoRFSchedule

__all__ = ["CHECKED_METHODS", "SceneKind", "SCENES", "TINY_NDC_CAMERA", "is_grid_method", "TINY_GRID", "TINY_MLP", "TINY_TENSORF",
           "GRID_STEPS", "MLP_STEPS", "TENSORF_STEPS", "RunResult", "tiny_model",
           "randomize_grids", "tiny_rays", "tiny_camera", "train_and_render"]

CHECKED_METHODS: tuple[str, ...] = ("spikingnerf", "spikingnerf-ann", "spiknerf", "spiknerf-ann", "spiknerf-mlp",
                                    "spiknerf-mlp-ann", "spikingnerf-t", "spikingnerf-t-ann")
"""The methods the CUDA-path tests, the device-placement test and tools/gpu_check.py run (one of each model and
twin; the presets differ only in sizes). A new method is one entry here (and its tiny sizes in :func:`tiny_model`)."""

SceneKind = Literal["bounded", "unbounded", "ndc"]
SCENES: tuple[str, ...] = ("bounded", "unbounded", "ndc")
"""Scene kinds :func:`train_and_render` builds for the voxel-grid methods: the box, the contraction, and NDC
(forward-facing: the model is given ``llff-data``'s NDC metadata, :data:`TINY_NDC_CAMERA`, and the box is the NDC
box)."""
TINY_NDC_CAMERA: Dict[str, Any] = dict(scene_kind="ndc", ndc_hw=(12, 16), ndc_focal=0.9 * 16, ndc_near=1.0)
"""The NDC camera of :func:`tiny_camera` in the form ``llff-data`` writes it into its metadata."""

TINY_GRID: Dict[str, Any] = dict(coarse_steps=2, coarse_resolution=10, fine_resolution=16, pg_scale_steps=(1, 2),
                                 hidden_dim=16, eval_num_rays_per_chunk=64)
"""Voxel-grid methods: coarse stage of 2 steps, fine grids up-scaled after fine steps 1 and 2."""
GRID_STEPS = 5
"""Steps 0-1 coarse; 2: occupancy cache built; 3, 4: up-scaled, each followed by an occupancy refresh."""

TINY_MLP: Dict[str, Any] = dict(hidden_dim=32, color_hidden=16, num_coarse_samples=12, num_importance_samples=12,
                                occupancy_resolution=12, occupancy_warmup_steps=2, occupancy_update_every=1,
                                occupancy_cells_per_update=512, eval_num_rays_per_chunk=64)
"""NeRF-MLP methods: width 32, 12 + 12 samples, the occupancy cache from step 2, refreshed every step."""
MLP_STEPS = 4

TENSORF_STEPS = 5
TINY_TENSORF: Dict[str, Any] = dict(
    hidden_dim=16, eval_num_rays_per_chunk=64, scene="bounded",
    tensorf=TensoRFSchedule(num_steps=TENSORF_STEPS, n_voxel_init=8 ** 3 + 4, n_voxel_final=16 ** 3,
                            upsample_steps=(2, 3), alpha_mask_steps=(1, 3), density_components=(2, 2, 2),
                            app_components=(3, 3, 3), rays_per_batch=64, l1_weight_initial=8e-5,
                            l1_weight_rest=4e-5, tv_weight_density=0.1, tv_weight_app=0.1))
"""SpikingNeRF-T: VM planes of 8^3 -> 16^3 voxels with 2 / 3 components (density / appearance), width 16. The
model applies a step's rules before the next step (``_set_step``), so in :data:`TENSORF_STEPS` = 5 steps: the
first alpha mask and the shrink to its box after step 1, up-samplings after steps 2 and 3 (11^3-ish, then
16^3 voxels over the shrunk box), a second alpha mask after step 3; the L1 weight switches after step 1 and
the TV losses are on (LEGO has none; they are TensoRF's LLFF losses, the same code)."""

BOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
DENSITY_STD = 3.0
DENSITY_OFFSET = {"bounded": 13.0, "unbounded": 11.0, "ndc": 10.0}  # NDC steps are shorter: denser grids
"""Raw densities ~ N(-shift - offset, 3^2): about half the cache cells set after the coarse stage (bounded:
2,160 of 4,096), and colour samples left in the render of either scene kind."""
CAMERA_Z = 3.0  # every ray starts near (0, 0, 3) and looks at the box


def is_grid_method(method: str) -> bool:
    """Whether ``method`` is a voxel-grid model (SpikingNeRF or a subclass), i.e. has scene kinds and layouts."""
    return isinstance(METHODS[method].config.pipeline.model, SpikingNeRFModelConfig)


def tiny_model(method: str, scene: SceneKind = "bounded", **overrides: Any) -> Model:
    """The model of ``method`` (a key of :data:`~.method_configs.METHODS`) at tiny sizes, on the CPU.

    ``scene``: ``"bounded"`` (samples in the box), ``"unbounded"`` (the box is the inner box of the
    contraction; voxel-grid methods only). ``overrides``: model config fields over the tiny ones.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: one of {sorted(METHODS)}")
    cfg = copy.deepcopy(METHODS[method].config.pipeline.model)
    metadata: Dict[str, Any] = {}
    if isinstance(cfg, SpikingNeRFModelConfig):
        tiny: Dict[str, Any] = {**TINY_GRID, "scene": scene}
        if scene == "ndc":  # chosen from the parser's metadata, as llff-data does; the NDC settings at tiny sizes
            metadata = dict(TINY_NDC_CAMERA)
            tiny["ndc"] = replace(cfg.ndc, coarse_steps=TINY_GRID["coarse_steps"],
                                  fine_resolution=TINY_GRID["fine_resolution"])
    elif isinstance(cfg, NeRFMLPModelConfig):
        if scene != "bounded":
            raise ValueError(f"{method} has bounded scenes only (the NeRF MLP on Blender), got scene={scene!r}")
        tiny = dict(TINY_MLP)
    elif isinstance(cfg, SpikingNeRFTModelConfig):
        if scene != "bounded":
            raise ValueError(f"{method} treats every non-NDC scene as bounded (TensoRF), got scene={scene!r}")
        tiny = {**TINY_TENSORF, "tensorf": copy.deepcopy(TINY_TENSORF["tensorf"])}
    else:
        raise TypeError(f"{method}: no tiny sizes for {type(cfg).__name__}; add them to spikenerf/nerf/selfcheck.py")
    for name, value in {**tiny, **overrides}.items():
        setattr(cfg, name, value)
    return cfg.setup(scene_box=SceneBox(aabb=BOX.clone()), num_train_data=1, metadata=metadata)


def tiny_rays(num_rays: int, seed: int, device: torch.device | str = "cpu") -> tuple[RayBundle, Tensor]:
    """A ray batch ``[R]`` from near ``(0, 0, 3)`` towards the box and its target colours ``[R, 3]`` (a smooth
    function of the direction, so there is something to learn); drawn on the CPU, then moved."""
    g = torch.Generator().manual_seed(seed)
    o = torch.tensor([0.0, 0.0, CAMERA_Z]) + 0.1 * torch.randn(num_rays, 3, generator=g)
    d = -o + 0.5 * torch.randn(num_rays, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    target = 0.5 + 0.5 * torch.sin(3.0 * d)
    bundle = RayBundle(origins=o, directions=d, pixel_area=torch.ones(num_rays, 1),
                       camera_indices=torch.zeros(num_rays, 1, dtype=torch.long))
    return bundle.to(device), target.to(device)


def tiny_camera(width: int = 16, height: int = 12, device: torch.device | str = "cpu") -> Cameras:
    """One pinhole camera at ``(0, 0, 3)`` looking down -z at the box."""
    c2w = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, CAMERA_Z]])[None]
    f = 0.9 * width
    return Cameras(camera_to_worlds=c2w, fx=f, fy=f, cx=width / 2, cy=height / 2, width=width,
                   height=height).to(device)


def randomize_grids(model: Model, seed: int) -> None:
    """Grid methods: N(0, 1) colour grids, densities about their activation shift (so some cells pass the
    occupancy thresholds and some do not) and a 4x first colour layer, so the LIF layers fire from the first
    step (an untrained grid has alpha ~1e-6 everywhere and an all-set cache). Drawn on the CPU."""
    if isinstance(model.config, SpikingNeRFTModelConfig):
        _randomize_tensorf(model, seed)
        return
    if not isinstance(model.config, SpikingNeRFModelConfig):
        return
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.get_param_groups()["grids"]:
            p.copy_(torch.randn(p.shape, generator=g))
        for grid, shift in ((model.coarse_density.grid, model.coarse_shift), (model.field.density_grid.grid,
                                                                               model.field.shift)):
            grid.mul_(DENSITY_STD).sub_(shift + DENSITY_OFFSET[model.config.scene])
        model.field.fc1.weight.mul_(4.0)


def _randomize_tensorf(model: Model, seed: int) -> None:
    """SpikingNeRF-T: N(0, 1) appearance planes / lines; density lines 1 and planes ~ N(TENSORF_DENSITY_MEAN, 1)
    minus :data:`TENSORF_OUTSIDE` outside the middle half of each plane, so the raw density (the sum of the 6
    plane values) is about the alpha-mask threshold in the central cube and far below it elsewhere (two of
    the three planes see a coordinate outside it): the first alpha mask keeps part of the box and the shrink
    crops to it. A 4x first colour layer, so the LIF layers fire."""
    g = torch.Generator().manual_seed(seed)
    b = model.backbone
    with torch.no_grad():
        for p in list(b.app.planes) + list(b.app.lines):
            p.copy_(torch.randn(p.shape, generator=g))
        for line in b.density.lines:
            line.fill_(1.0)
        for plane in b.density.planes:
            h, w = plane.shape[-2:]
            outside = (torch.linspace(-1, 1, h).abs() > 0.5)[:, None] | (torch.linspace(-1, 1, w).abs() > 0.5)[None]
            plane.copy_(torch.randn(plane.shape, generator=g) + TENSORF_DENSITY_MEAN - TENSORF_OUTSIDE * outside)
        model.field.fc1.weight.mul_(4.0)


TENSORF_DENSITY_MEAN = 0.45
"""Per density plane: 6 planes (2 components x 3) sum to ~2.7, where softplus(raw - 10) over one step of
the 8^3 grid is TensoRF's alpha-mask threshold 1e-4."""
TENSORF_OUTSIDE = 20.0


@dataclass
class RunResult:
    """What :func:`train_and_render` returns (every tensor on the CPU)."""

    losses: Tensor
    """``[steps]``: the summed training loss of each step."""
    images: Dict[str, Tensor]
    """``rgb`` ``[H, W, 3]``, ``depth`` / ``accumulation`` ``[H, W, 1]``, ``normals`` ``[H, W, 3]`` (the
    export's) and ``rgba`` ``[H, W, 4]`` of the render after training."""
    stats: Dict[str, Any]
    """What the run went through: ``fine_res`` (fine grid vertices at the end), ``occupied`` (kept cache cells),
    ``color_samples`` (colour-net samples in the render); SpikingNeRF-T: ``fine_res`` the planes' resolution,
    ``occupied`` the alpha mask's kept voxels (None before the first mask), ``aabb`` the (shrunk) box."""


def train_and_render(method: str, *, scene: SceneKind = "bounded", steps: int | None = None,
                     device: torch.device | str = "cpu", seed: int = 0, num_rays: int = 64, width: int = 16,
                     height: int = 12, watch: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
                     time_blocks: bool = False, **overrides: Any) -> RunResult:
    """Train ``method``'s tiny model for ``steps`` steps (default :data:`GRID_STEPS` / :data:`MLP_STEPS`) the
    way nerfstudio's trainer does (its optimisers and schedulers from the method's config, the model's
    training callbacks before each step), then render :func:`tiny_camera` in eval mode. ``watch()`` is entered
    around each step (callbacks, forward, loss, backward, optimisers) and the render, not around building the
    model or drawing the batches (a check of what the model does, such as a ``TorchFunctionMode``).
    ``time_blocks``: the spiking colour layers run in time blocks (``field.in_place = False``), the layout a CUDA
    tensor always takes; on the CPU they otherwise run in place on the valid samples where they can."""
    torch.manual_seed(seed)
    model = tiny_model(method, scene, **overrides)
    randomize_grids(model, seed)
    if time_blocks and hasattr(model, "field"):
        model.field.in_place = False
    device = torch.device(device)
    model.to(device)
    model.train()
    if steps is None:
        steps = GRID_STEPS if isinstance(model.config, SpikingNeRFModelConfig) else \
            TENSORF_STEPS if isinstance(model.config, SpikingNeRFTModelConfig) else MLP_STEPS
    optimizers = Optimizers(copy.deepcopy(METHODS[method].config.optimizers), model.get_param_groups())
    attrs = TrainingCallbackAttributes(optimizers=optimizers, grad_scaler=None, pipeline=None, trainer=None)
    callbacks = model.get_training_callbacks(attrs)
    # the random draws of training (stratified jitter, random backgrounds, occupancy cells) from one seed,
    # on the model's device
    torch.manual_seed(seed)
    losses: List[Tensor] = []
    camera = tiny_camera(width, height, device)
    for step in range(steps):
        bundle, target = tiny_rays(num_rays, seed + 1 + step, device)
        batch = {"image": target}
        with watch():
            for cb in callbacks:
                cb.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
            outputs = model(bundle)
            metrics = model.get_metrics_dict(outputs, batch)
            loss = sum(model.get_loss_dict(outputs, batch, metrics).values())
            optimizers.zero_grad_all()
            loss.backward()  # type: ignore[union-attr]
            optimizers.optimizer_step_all()
            optimizers.scheduler_step_all(step)
        losses.append(loss.detach())  # type: ignore[union-attr]
    model.eval()
    with torch.no_grad(), watch():
        out = model.get_outputs_for_camera(camera)
        out["rgba"] = model.get_rgba_image(out)  # what ns-export / ns-render --rendered-output-names rgba write
    images = {k: out[k].detach().cpu() for k in ("rgb", "depth", "accumulation", "normals", "rgba") if k in out}
    color_samples = float(out["num_color_samples"].sum()) if "num_color_samples" in out else None
    if isinstance(model.config, SpikingNeRFTModelConfig):
        mask = model.backbone.alpha_mask
        stats = {"occupied": int(mask.volume.sum()) if mask.active else None,
                 "fine_res": tuple(model.backbone.resolution), "color_samples": color_samples,
                 "aabb": model.backbone.aabb.cpu().tolist()}
        return RunResult(torch.stack(losses).cpu(), images, stats)
    occ = getattr(model, "occupancy", None)
    stats = {"occupied": None if occ is None else int(occ.sum()),
             "fine_res": tuple(model.field.density_grid.grid.shape[:3]) if hasattr(model, "field") else None,
             "color_samples": color_samples}
    return RunResult(torch.stack(losses).cpu(), images, stats)
