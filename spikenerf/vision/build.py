"""From a config (or a checkpoint) to a network: below the engine and the CLI, above the methods.

``build(cfg, info)`` asks the configured method for its network (``Method.build``), so ``train``, ``eval`` and
``--resume`` rebuild the same modules; :func:`restore` reads a checkpoint (:mod:`.checkpoint`), rebuilds its
network and loads the weights, with an error a user can act on when they do not fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import Dataset

from .checkpoint import CheckpointError, load_checkpoint
from .config import ConfigFileError, VisionConfig, config_from_dict
from .data import DatasetInfo
from .data import dataset_info as _dataset_info
from .methods.base import Method, MethodContext

__all__ = ["dataset_info", "make_method", "build", "restore", "load_weights"]


def dataset_info(cfg: VisionConfig) -> DatasetInfo:
    """Class count, channels, input size and kind of ``cfg.dataset`` (points: ``cfg.n_points``; class folders: read
    from the folder)."""
    return _dataset_info(cfg.dataset, cfg.data_root, cfg.n_points, cfg.image_size)


def make_method(cfg: VisionConfig, info: DatasetInfo, device: torch.device | None = None,
                datasets: Callable[[], tuple[Dataset, Dataset]] | None = None) -> Method:
    """The run's :class:`Method`, with a context that can restore other checkpoints (teachers, encoders)."""
    ctx = MethodContext(cfg, info, device or torch.device("cpu"), restore=restore, datasets=datasets)
    return cfg.method.setup(ctx)


def build(cfg: VisionConfig, info: DatasetInfo) -> nn.Module:
    """The network ``cfg`` trains (and saves): ``Method.build()`` of its method."""
    return make_method(cfg, info).build()


def load_weights(model: nn.Module, weights: dict, path: str | Path, cfg: VisionConfig) -> None:
    """``model.load_state_dict(weights)`` with a one-paragraph error when the shapes or names differ."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        first = str(e).split("\n")[1].strip() if "\n" in str(e) else str(e)[:200]
        raise CheckpointError(
            f"{path}: its weights do not fit the network its config describes (model {cfg.model}, width "
            f"{cfg.width:g}, method {type(cfg.method).__name__}): {first[:240]}. The file was probably edited or "
            "written by another version; retrain, or pass the checkpoint that belongs to this config.") from None


def restore(path: str | Path) -> tuple[VisionConfig, nn.Module, DatasetInfo, dict]:
    """``(config, evaluated network in eval mode, dataset info, raw checkpoint)`` of a training checkpoint."""
    state = load_checkpoint(path, need=("config",))
    if "model" not in state:
        raise CheckpointError(f"{path} holds no network weights (an own-loop method's checkpoint, e.g. STDP or "
                              "NeuroCLIP, is not evaluated by `spikenerf-vision eval`).")
    try:
        cfg = config_from_dict(state["config"])
    except (ConfigFileError, TypeError) as e:
        raise CheckpointError(f"{path}: its config does not load ({e}).") from None
    # the data the network was built for (class folders: stored with the weights, the folder may be gone)
    info = DatasetInfo(**{**state["data_info"], "classes": tuple(state["data_info"].get("classes", ()))}) \
        if state.get("data_info") else dataset_info(cfg)
    method = make_method(cfg, info)
    if method.own_loop:
        raise CheckpointError(f"{path} was written by the own-loop method {type(cfg.method).__name__}; "
                              "`eval` / `export` take backprop-trained networks.")
    model = method.build()
    if state.get("exported"):
        # an `export` output: the same folds applied to a fresh network give its module structure
        model = method.eval_model(model)
        model.eval()
        with torch.no_grad():
            method.export(model)
        load_weights(model, state["model"], path, cfg)
        return cfg, model, info, state
    # a run with --ema is evaluated (and exported) with its averaged weights
    load_weights(model, state.get("ema_model") or state["model"], path, cfg)
    model = method.eval_model(model)
    model.eval()
    return cfg, model, info, state
