"""Every registered nerfstudio method of this package: one trainer skeleton, viewer local, scene checked."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

from spikenerf.nerf.datamanager import SpikingNeRFDataManagerConfig
from spikenerf.nerf.method_configs import METHODS, VIEWER_HOST

REPO = Path(__file__).resolve().parents[2]


def _entry_points() -> dict[str, str]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    return dict(meta["project"]["entry-points"]["nerfstudio.method_configs"])


def _resolve(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def test_entry_points_are_the_method_table():
    eps = _entry_points()
    assert set(eps) == set(METHODS)
    for name, target in eps.items():
        assert target.startswith("spikenerf.nerf.method_configs:"), f"{name} is registered outside method_configs"
        assert _resolve(target) is METHODS[name]


@pytest.mark.parametrize("name", sorted(_entry_points()))
def test_every_method_binds_local_viewer_and_checks_the_scene(name):
    spec = _resolve(_entry_points()[name])
    cfg = spec.config
    assert cfg.method_name == name
    assert cfg.viewer.websocket_host == VIEWER_HOST == "127.0.0.1", f"{name} viewer binds {cfg.viewer.websocket_host}"
    dm = cfg.pipeline.datamanager
    assert isinstance(dm, SpikingNeRFDataManagerConfig), f"{name} uses {type(dm).__name__} (no scene check)"
    assert cfg.viewer.quit_on_train_completion is True
    # every optimiser's schedule spans the whole run
    for group in cfg.optimizers.values():
        if group["scheduler"] is None:  # spikingnerf-t: the model sets TensoRF's rates (reset at each up-sampling)
            assert cfg.pipeline.model.tensorf.num_steps == cfg.max_num_iterations
        else:
            assert group["scheduler"].max_steps == cfg.max_num_iterations
