"""Small, targeted fixes to nerfstudio 1.1.5, installed when one of this package's runs starts.

:func:`install` is called by :func:`~.startup.start_process` (never on import): ``ns-train`` calls into this
package before it prints the config, ``ns-eval`` / ``ns-viewer`` / ``ns-render`` / ``ns-export`` when they
build the pipeline of a saved ``config.yml``, so it runs before any of these does its work. Each patch touches one nerfstudio function and, where it changes
behaviour, only for this package's runs:

- **Errors**: an uncaught :data:`~.errors.USER_ERRORS` (bad scene, bad option, no loadable checkpoint, divergence) is
  printed as one ``Name: message`` line, no traceback (``SPIKENERF_TRACEBACK=1`` shows it); every other
  exception keeps Python's report.
- **Warnings**: the known, harmless warnings nerfstudio 1.1.5 triggers with this torch after the plugin is
  imported are filtered by message *and* emitting module (:data:`KNOWN_WARNINGS`); the three emitted while
  nerfstudio imports itself, before any plugin loads, remain.
- **Checkpoints**: ``eval_utils.eval_load_checkpoint`` (``ns-eval`` / ``ns-viewer`` / ``ns-render`` /
  ``ns-export``) takes the newest checkpoint that loads and warns about each torn one
  (:func:`~.checkpoints.load_latest_checkpoint`), for this package's configs.
- **ns-render spiral**: ``camera_utils.viewmatrix`` gets float64 vectors from ``get_spiral_path`` (a
  ``torch.tensor`` of 0-d tensors) next to the camera's float32 ``up`` and fails in ``torch.cross``
  ("expected scalar type Float but found Double"); the wrapper casts all three to ``up``'s dtype.
- **Viewer** (models with :class:`~.export.ViewerOutputsMixin`): the output menu hides internal counters
  (``viewer_hidden_outputs``); a new browser starts at the first training camera (outside the scene,
  looking at it; its own frustum hidden) instead of viser's default inside the object, and the maximum
  resolution defaults to
  :func:`~.export.viewer_max_res` (twice the training images', so a sharp image comes in seconds on a CPU).
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Tuple

import numpy as np
import torch
from nerfstudio.cameras import camera_utils
from nerfstudio.utils.rich_utils import CONSOLE

from .checkpoints import load_latest_checkpoint
from .errors import USER_ERRORS
from .export import viewer_max_res

__all__ = ["KNOWN_WARNINGS", "install", "short_error_hook", "eval_load_checkpoint", "viewmatrix",
           "start_at_training_camera"]

KNOWN_WARNINGS: Tuple[Tuple[str, str], ...] = (
    (r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated", r"nerfstudio\.engine\.trainer"),
    (r"Using a non-tuple sequence for multidimensional indexing", r"nerfstudio\.cameras\.cameras"),
    (r"Detected call of `lr_scheduler\.step\(\)` before `optimizer\.step\(\)`", r"nerfstudio\.engine\.optimizers"),
    (r"Converting a tensor with requires_grad=True to a scalar", r"nerfstudio\.utils\.writer"),
    (r"This DataLoader will create \d+ worker processes", r"torch\.utils\.data\.dataloader"),
    (r"`torch\.cuda\.amp\.custom_(fwd|bwd)\(args\.\.\.\)` is deprecated", r"nerfstudio\."),
)
"""(message regex, emitting-module regex) of warnings that say nothing about the user's run: deprecations
inside nerfstudio, a lr-scheduler order check that nerfstudio's optimiser wrapper trips, a logger
converting a scalar, and the DataLoader's worker-count hint for nerfstudio's fixed 4 loader workers."""

_applied: set = set()


def short_error_hook(previous):
    """A ``sys.excepthook`` printing :data:`~.errors.USER_ERRORS` as one line, others via ``previous``."""

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, USER_ERRORS) and not os.environ.get("SPIKENERF_TRACEBACK"):
            print(f"{exc_type.__name__}: {exc}", file=sys.stderr, flush=True)
            return
        previous(exc_type, exc, tb)

    hook.spikenerf = True  # type: ignore[attr-defined]
    return hook


def _ours(config: Any) -> bool:
    return type(config).__module__.startswith("spikenerf.")


_original_eval_load_checkpoint: Any = None


def eval_load_checkpoint(config: Any, pipeline: Any) -> Tuple[Path, int]:
    """``eval_utils.eval_load_checkpoint`` for this package's runs: the newest checkpoint that loads."""
    if not _ours(config) and _original_eval_load_checkpoint is not None:
        return _original_eval_load_checkpoint(config, pipeline)
    path, state = load_latest_checkpoint(config.load_dir, config.load_step)
    pipeline.load_pipeline(state["pipeline"], state["step"])
    CONSOLE.print(f"Loaded checkpoint {path} (step {state['step']})", highlight=False)
    return path, int(state["step"])


_original_viewmatrix = camera_utils.viewmatrix


def viewmatrix(lookat: torch.Tensor, up: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``camera_utils.viewmatrix`` with ``lookat`` and ``pos`` cast to ``up``'s dtype (the camera's)."""
    return _original_viewmatrix(lookat.to(up.dtype), up, pos.to(up.dtype))


# ----------------------------------------------------------------------------- viewer
def _train_camera_view(viewer: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(position, look_at, up, vertical fov)`` of the first training camera (world units)."""
    dataset = viewer.pipeline.datamanager.train_dataset
    cams = dataset.cameras
    c2w = cams.camera_to_worlds[0].detach().cpu().double().numpy()
    pos, up, forward = c2w[:3, 3], c2w[:3, 1], -c2w[:3, 2]
    center = dataset.scene_box.get_center().detach().cpu().double().numpy()
    distance = max(float(np.dot(center - pos, forward)), 1e-3)
    fov = 2.0 * math.atan(float(cams.height[0]) / (2.0 * float(cams.fy[0])))
    return pos, pos + forward * distance, up, fov


def start_at_training_camera(viewer: Any, client: Any, ratio: float) -> None:
    """Move ``client``'s camera to the first training camera when its first camera state arrives."""
    pos, look_at, up, fov = _train_camera_view(viewer)
    moved = [False]

    @client.camera.on_update
    def _(camera: Any) -> None:
        if moved[0]:
            return
        moved[0] = True
        camera.up_direction = up
        camera.position = pos * ratio
        camera.look_at = look_at * ratio
        camera.fov = fov


def _patch_viewer(viewer_module: Any, RenderStateMachine: Any) -> None:
    send = RenderStateMachine._send_output_to_viewer

    def send_visible(self, outputs, static_render: bool = True):
        hidden = getattr(self.viewer.get_model(), "viewer_hidden_outputs", None)
        if hidden is not None:
            drop = set(hidden(outputs.keys()))
            outputs = {k: v for k, v in outputs.items() if k not in drop}
        return send(self, outputs, static_render)

    RenderStateMachine._send_output_to_viewer = send_visible

    handle = viewer_module.Viewer.handle_new_client

    def handle_new_client(self, client):
        handle(self, client)
        model = self.get_model()
        if getattr(model, "viewer_hidden_outputs", None) is None:
            return
        if not getattr(self, "_spikenerf_max_res_set", False):
            self._spikenerf_max_res_set = True
            cams = self.pipeline.datamanager.train_dataset.cameras
            self.control_panel._max_res.value = viewer_max_res(int(cams.width.max()), int(cams.height.max()))
        start_at_training_camera(self, client, viewer_module.VISER_NERFSTUDIO_SCALE_RATIO)
        first = getattr(self, "camera_handles", {}).get(0)
        if first is not None:  # the frustum of the camera the view starts in would frame the image
            first.visible = False

    viewer_module.Viewer.handle_new_client = handle_new_client


def _loaded(name: str, attribute: str) -> Any:
    """Module ``name`` if it has finished importing far enough to have ``attribute``, else ``None``.

    nerfstudio's ``eval_utils`` and viewer modules import the method registry, which imports this package:
    at that moment they are half-initialised, so their patches wait for the next :func:`install` (the
    trainer and pipeline call it when they are built, after every import is done)."""
    module = sys.modules.get(name)
    return module if module is not None and hasattr(module, attribute) else None


def install() -> None:
    """Install every patch of the module docstring whose target is importable now (idempotent)."""
    global _original_eval_load_checkpoint
    if "base" not in _applied:
        _applied.add("base")
        if not getattr(sys.excepthook, "spikenerf", False):
            sys.excepthook = short_error_hook(sys.excepthook)
        for message, module in KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=message, module=module)
        camera_utils.viewmatrix = viewmatrix
    if "eval" not in _applied:
        eval_utils = _loaded("nerfstudio.utils.eval_utils", "eval_setup")
        if eval_utils is not None:
            _applied.add("eval")
            _original_eval_load_checkpoint = eval_utils.eval_load_checkpoint
            eval_utils.eval_load_checkpoint = eval_load_checkpoint
    if "viewer" not in _applied:
        viewer = _loaded("nerfstudio.viewer.viewer", "Viewer")
        machine = _loaded("nerfstudio.viewer.render_state_machine", "RenderStateMachine")
        if viewer is not None and machine is not None:
            _applied.add("viewer")
            _patch_viewer(viewer, machine.RenderStateMachine)
